//! THE operation path. Every operation (each public method, each plugin
//! command, each value handed to a plugin, every subject request and
//! report) runs through [`Core::read`] or [`Core::write`]:
//!
//! ```text
//! Context → identity: session valid, principal active, 2FA     (Caller, Actor)
//!         → the operation's rule (admins only, ...)           (Rule)
//!         → guard → approval                                  (steps)
//!         → ONE snapshot, or ONE transaction with its audit entry
//!           and, inside it, the policy per customer           (Read / Write)
//!           and the events it caused, queued                  (events)
//!         → events delivered after commit, by a worker        (events)
//!         → the view the policy allows                        (Read::view)
//! ```
//!
//! A refusal anywhere on the path is audited with its reason. A write's
//! body returns `Result`: `Ok` commits the change with its audit entry;
//! `Err` rolls the change back and commits only the audit entry that
//! records the refusal (and what [`Write::on_refusal`] asked for), so no
//! caller can forget either half.

mod access;
mod alerts;
mod commands;
mod context;
mod events;
mod execute;
mod handles;
mod login;
mod operation;
mod plugins;
mod steps;

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

pub(crate) use access::{Admitted, Decider, Prepared, allowed, shows_text, split_tags};
pub(crate) use alerts::Raise;
pub(crate) use context::Caller;
pub use context::Context;
pub(crate) use context::token_hash;
pub(crate) use events::Queue;
pub(crate) use handles::{Read, Write};
pub use login::{AuthSettings, Session, SessionInfo, TotpEnrollment};
pub(crate) use login::{name_key, session_id, token_is_id};
pub(crate) use operation::{Entry, Op, Rule, outcome_of};
pub use plugins::CallReport;
pub(crate) use plugins::{Host, NoServices, code_hash};

use crate::audit::{self, Batcher, Outcome, Queued, Record};
use crate::guard::{Charge, Guard};
use crate::identity::Actor;
use crate::policy::Policy;
use crate::privacy::RetentionPolicy;
use crate::records::{KeyClaim, Records};
pub(crate) use crate::store::Emitted;
use crate::store::{Rewrite, Snapshot, Store, StoreError, Txn};
use crate::{Denied, Error, Result};

/// The engine below its public handle: its files, its keys, what decides,
/// and the plugin host.
pub(crate) struct Core {
    pub(crate) store: Store,
    pub(crate) records: Records,
    pub(crate) batcher: Batcher,
    pub(crate) auth: AuthSettings,
    pub(crate) plugins: Host,
    pub(crate) key_store_path: PathBuf,
    /// The durable event queue's signals to its delivery worker.
    pub(crate) events: Queue,
    /// What each actor has been shown, against its budgets.
    pub(crate) guard: Guard,
    /// The access policy in force; replaced whole by an install.
    policy: RwLock<Arc<Policy>>,
    /// The retention policy in force; replaced whole by an install.
    retention: RwLock<Arc<RetentionPolicy>>,
}

/// What a refused write keeps besides its audit entry: the record of the
/// attempt itself, written in the refusal's transaction.
pub(crate) enum Keep {
    /// A failed proof of a password counts against the account and the
    /// source, as a failed login does.
    Failure { name: String, source: String },
    /// The log of a plugin call whose commands were refused.
    PluginLog {
        plugin: String,
        lines: Vec<crate::plugin::runtime::LogLine>,
    },
}

/// Why a write transaction ended without committing.
enum Stop {
    /// The path or the body refused (or failed): rolled back for sure.
    Refused(Error),
    /// The storage failed, maybe while committing: the outcome is unknown.
    Store(StoreError),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Store(e)
    }
}

impl Core {
    pub(crate) fn new(
        store: Store,
        records: Records,
        batcher: Batcher,
        auth: AuthSettings,
        plugins: Host,
        key_store_path: PathBuf,
        policy: Policy,
    ) -> Self {
        Self {
            store,
            records,
            batcher,
            auth,
            plugins,
            key_store_path,
            events: Queue::default(),
            guard: Guard::default(),
            policy: RwLock::new(Arc::new(policy)),
            retention: RwLock::new(Arc::new(RetentionPolicy::default())),
        }
    }

    /// The access policy in force.
    pub(crate) fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.policy.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the access policy in force.
    pub(crate) fn set_policy(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(policy);
    }

    /// Replaces the access policy with what `load` returns, computed under
    /// the lock: of two concurrent installs, the one that sets memory last
    /// has read the version stored last.
    pub(crate) fn reload_policy(&self, load: impl FnOnce() -> Result<Policy>) -> Result<()> {
        let mut memory = self.policy.write().unwrap_or_else(PoisonError::into_inner);
        *memory = Arc::new(load()?);
        Ok(())
    }

    /// The retention policy in force.
    pub(crate) fn retention(&self) -> Arc<RetentionPolicy> {
        Arc::clone(
            &self
                .retention
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Replaces the retention policy with what `load` returns, computed
    /// under the lock: of two concurrent installs, the one that sets
    /// memory last has read the script stored last.
    pub(crate) fn reload_retention(
        &self,
        load: impl FnOnce() -> Result<Option<RetentionPolicy>>,
    ) -> Result<()> {
        let mut memory = self
            .retention
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(policy) = load()? {
            *memory = Arc::new(policy);
        }
        Ok(())
    }

    /// Runs `body` on one snapshot, as `ctx`'s principal, after the
    /// identity, the rule, the guard and the approval steps. Its audit
    /// entry (with the fields the body showed) goes through the group
    /// commit; a refusal or failure is audited too.
    pub(crate) fn read<T>(
        &self,
        ctx: &Context,
        op: Op<'_>,
        body: impl FnOnce(&mut Read<'_>) -> Result<T>,
    ) -> Result<T> {
        let caller = self.authenticate(ctx)?;
        let mut entry = op.entry;
        let mut charge = Charge::default();
        let policy = self.policy();
        let result = self.store.read(|snapshot| {
            let actor = self.admit(snapshot, &caller, &op.rule, &entry)?;
            let mut read = Read {
                core: self,
                snapshot,
                decider: Decider::new(&policy, actor, caller.purpose()),
                entry: &mut entry,
                access: op.access,
                charge: &mut charge,
                caller: &caller,
                pending_miss: None,
            };
            body(&mut read)
        });
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(e) => {
                entry.fields.clear();
                outcome_of(e)
            }
        };
        // What the guard counted is written with the entry, even for a
        // read that failed after it was counted.
        let record = entry.into_record(&caller, outcome);
        self.batcher.record(
            Queued {
                record,
                charge: (!charge.is_empty()).then_some(charge),
            },
            &|items| self.write_records(items),
        )?;
        result
    }

    /// Runs `body` in one write transaction as `ctx`'s principal, after
    /// the identity, the rule, the guard and the approval steps (checked
    /// inside the transaction). `Ok` commits the change and its audit
    /// entry and queues the events the body emitted; `Err` rolls the
    /// change back and commits only the refusal's audit entry.
    pub(crate) fn write<T>(
        self: &Arc<Self>,
        ctx: &Context,
        op: Op<'_>,
        body: impl FnOnce(&mut Write<'_>) -> Result<T>,
    ) -> Result<T> {
        let caller = self.authenticate(ctx)?;
        self.write_as(&caller, op, body)
    }

    /// The identity, the rule, the guard and the approval steps on a
    /// snapshot, for an operation with costly preparation (hashing a
    /// password, compiling a policy, sealing an import): refused callers
    /// are turned away, audited, before the work. The write that follows
    /// ([`Core::write_as`]) checks again inside its transaction.
    pub(crate) fn admit_early(&self, ctx: &Context, op: &Op<'_>) -> Result<Admitted> {
        let caller = self.authenticate(ctx)?;
        match self
            .store
            .read(|s| self.admit(s, &caller, &op.rule, &op.entry))
        {
            Ok(actor) => Ok(Admitted::new(caller, actor, self.policy())),
            Err(e) => {
                self.audit_read(op.entry.record(&caller, outcome_of(&e)))?;
                Err(e)
            }
        }
    }

    /// A write the engine makes on its own while a database is opened (the
    /// default policy, the first administrator): there is no caller to
    /// identify or decide for yet. One transaction with its audit entry,
    /// made by `by`; `body` returns whether it wrote anything (another
    /// open may have done it), and without a write there is no entry.
    pub(crate) fn setup(
        &self,
        by: &str,
        entry: Entry,
        body: impl FnOnce(&mut dyn Txn) -> Result<bool>,
    ) -> Result<()> {
        let caller = Caller::internal(by, "setup");
        // A rewrite is left to the end of the open.
        self.store.write_then(Rewrite::Later, |txn| {
            if body(txn)? {
                let record = entry.into_record(&caller, Outcome::Ok);
                audit::append(txn, self.records.ring.audit_key(), &record)?;
            }
            Ok(())
        })
    }

    /// Refuses before any transaction (a check on a snapshot, or on input
    /// the caller gave): audited like a read, returned as the error.
    pub(crate) fn refuse<T>(&self, caller: &Caller, entry: &Entry, error: Error) -> Result<T> {
        self.audit_read(entry.record(caller, outcome_of(&error)))?;
        Err(error)
    }

    /// [`Core::write`] for a caller already authenticated.
    pub(crate) fn write_as<T>(
        self: &Arc<Self>,
        caller: &Caller,
        op: Op<'_>,
        body: impl FnOnce(&mut Write<'_>) -> Result<T>,
    ) -> Result<T> {
        let Op {
            mut entry,
            rule,
            claim,
            itemized,
            rewrite_later,
            access: _,
        } = op;
        let policy = self.policy();
        let mut emitted = Vec::new();
        let mut keep = Vec::new();
        let mut refused_as = None;
        let mut consequences = Vec::new();
        let mut source = None;
        let mut queued = false;
        // The rewrite a removal owes comes after its keys are settled: a
        // rewrite that fails then loses nothing (the file stays marked).
        let committed = self.deferring_alerts(|| {
            self.store.write_then(Rewrite::Later, |txn| {
                let actor = (self.admit(&*txn, caller, &rule, &entry)).map_err(Stop::Refused)?;
                source = actor.plugin_name().map(str::to_string);
                let mut write = Write {
                    core: self,
                    txn,
                    decider: Decider::new(&policy, actor, caller.purpose()),
                    caller,
                    entry: &mut entry,
                    emitted: &mut emitted,
                    keep: &mut keep,
                    refused_as: &mut refused_as,
                    consequences: (!itemized).then_some(&mut consequences),
                };
                let value = body(&mut write).map_err(Stop::Refused)?;
                // The change's events are queued with it, in its transaction.
                queued = self.enqueue(&mut *write.txn, write.emitted, source.as_deref())?;
                if !itemized {
                    let record = std::mem::replace(write.entry, Entry::new(""))
                        .into_record(caller, Outcome::Ok);
                    let key = self.records.ring.audit_key();
                    audit::append(write.txn, key, &record)?;
                    for record in write.consequences.take().into_iter().flatten() {
                        audit::append(write.txn, key, record)?;
                    }
                }
                Ok::<_, Stop>(value)
            })
        });
        match committed {
            Ok(value) => {
                // The change stands, its events queued with it: the worker
                // delivers them even if settling its keys fails (their
                // marks then wait for the next open).
                if queued {
                    self.events.wake();
                }
                self.settle(claim)?;
                if !rewrite_later {
                    self.store.scrub_if_owed()?;
                }
                Ok(value)
            }
            Err(Stop::Refused(error)) => {
                // Nothing of the body is kept: only the refusal's entry, and
                // what the body asked to keep of the attempt.
                let entry = refused_as.unwrap_or(entry);
                let record = entry.record(caller, outcome_of(&error));
                self.store.write(|txn| {
                    for kept in &keep {
                        self.keep(txn, kept)?;
                    }
                    audit::append(txn, self.records.ring.audit_key(), &record)?;
                    Ok::<_, Error>(())
                })?;
                self.settle(claim)?;
                Err(error)
            }
            // The commit may or may not have reached the disk: the claim's
            // marks stay for the next open to settle.
            Err(Stop::Store(e)) => Err(e.into()),
        }
    }

    /// Writes what a refused write keeps of the attempt.
    fn keep(&self, txn: &mut dyn Txn, kept: &Keep) -> Result<()> {
        match kept {
            Keep::Failure { name, source } => {
                self.count_failure(txn, name, Some(name), source, self.records.now())?;
            }
            Keep::PluginLog { plugin, lines } => self.write_log(txn, plugin, lines)?,
        }
        Ok(())
    }

    /// Settles a write's key claim: keys of customers not in the data file
    /// are destroyed, the other marks cleared.
    fn settle(&self, claim: Option<KeyClaim<'_>>) -> Result<()> {
        let Some(claim) = claim else {
            return Ok(());
        };
        claim.settle(|ids| self.store.read(|r| Ok(r.contains_customers(ids)?)))
    }

    /// Resolves the acting principal on `snapshot` and applies the rule,
    /// the guard and the approval steps to the operation `entry` describes.
    fn admit(
        &self,
        snapshot: &dyn Snapshot,
        caller: &Caller,
        rule: &Rule,
        entry: &Entry,
    ) -> Result<Actor> {
        let name = caller.principal();
        let actor = match snapshot.principal(name)? {
            None => return Err(Denied::UnknownPrincipal(name.to_string()).into()),
            Some(p) if !p.active => return Err(Denied::Deactivated(name.to_string()).into()),
            Some(p) => Actor::from_record(p),
        };
        let refuse = |what: &str, who: &str| {
            Err(Denied::NotPermitted {
                principal: actor.name.clone(),
                what: what.to_string(),
                who: who.to_string(),
            }
            .into())
        };
        match rule {
            Rule::Active => {}
            Rule::Admins(what) if !actor.admin => return refuse(what, "admins"),
            Rule::Officers(what) if !actor.is_privacy_officer() => {
                return refuse(what, "admins and data stewards");
            }
            Rule::SelfOrAdmin { name, what } if !actor.admin && actor.name != *name => {
                return refuse(&format!("{what} `{name}`"), "itself or an admin");
            }
            _ => {}
        }
        steps::approval(snapshot, &actor, entry)?;
        Ok(actor)
    }

    /// Audits an operation that changed nothing (a read, a search, a
    /// refusal before any write), through the group commit.
    pub(crate) fn audit_read(&self, record: Record) -> Result<()> {
        self.batcher
            .record(record.into(), &|items| self.write_records(items))?;
        Ok(())
    }

    /// Commits every queued read entry now.
    pub(crate) fn flush_audit(&self) -> Result<()> {
        self.batcher.flush(&|records| self.write_records(records))?;
        Ok(())
    }

    /// Writes queued read entries, with what the guard counted for each,
    /// in one transaction (the group commit).
    pub(crate) fn write_records(&self, items: &[Queued]) -> Result<(), String> {
        let key = self.records.ring.audit_key();
        // Counts older than the longest window go, once an hour, with a
        // group commit.
        let prune = self.guard.prune_due(self.records.clock.now().timestamp());
        self.store
            .write(|w| {
                for item in items {
                    audit::append(w, key, &item.record)?;
                    if let Some(charge) = &item.charge {
                        w.add_guard_charge(charge)?;
                    }
                }
                if let Some(before) = prune {
                    w.prune_guard(before)?;
                    // The indexes hold every entry appended so far: an
                    // open indexes again only what comes after.
                    let head = w.audit_head()?.seq;
                    audit::mark_indexed(w, head)?;
                }
                Ok::<_, StoreError>(())
            })
            .map_err(|e| e.to_string())
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        let _ = self.flush_audit();
    }
}
