//! Retention: the sweep that applies `retention.rhai` to every customer,
//! and the removal (anonymize or delete) that sweeps and erasure requests
//! share.
//!
//! A sweep reads only what is stored in the clear (status, timestamps,
//! tags, holds, notices): deciding never decrypts. It commits in batches;
//! each batch records how far it got, so a sweep cut short resumes where
//! it stopped, and since every transition is a function of the customer's
//! state and the sweep's `now`, running it again changes nothing more.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, PoisonError};

use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;

use super::customers::{refuse, writer_actor};
use super::privacy::is_privacy_officer;
use super::{Context, Engine, Event, Inner, from_micros};
use crate::audit::{self, Outcome};
use crate::identity::Actor;
use crate::model::{Channel, CustomerId, Status};
use crate::privacy::{RetentionAction, RetentionFacts, RetentionPolicy, Verdict};
use crate::store::{
    CustomerRef, Index, StoredAggregate, StoredCustomer, StoredDeletion, StoredMessage,
    StoredNotice, StoredRun, Writer,
};
use crate::{Error, Result};

/// The sender of the engine's own notices in the outbox. Not a valid
/// plugin name, so no plugin can pose as it.
pub const NOTICE_SENDER: &str = "(custodian)";

/// The outbox template of a retention notice.
pub const NOTICE_TEMPLATE: &str = "retention-notice";

/// Customers decided and changed per transaction unless told otherwise.
pub const DEFAULT_SWEEP_BATCH: usize = 1_000;

const DAY_MICROS: i64 = 86_400_000_000;

/// How a sweep runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepOptions {
    /// Decide and report, change nothing.
    pub dry_run: bool,
    /// Customers per transaction (default [`DEFAULT_SWEEP_BATCH`]).
    pub batch_size: usize,
}

impl Default for SweepOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            batch_size: DEFAULT_SWEEP_BATCH,
        }
    }
}

/// What a sweep did (or, in a dry run, would do) to one customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// Dormant or notified, active again.
    Reactivated,
    /// Made dormant.
    Dormant,
    /// Sent a notice of removal.
    Notified,
    /// Identity destroyed, aggregates kept.
    Anonymized,
    /// Removed entirely.
    Deleted,
    /// The policy asked for removal or a notice; a legal hold kept it.
    Held,
}

impl Transition {
    /// The lowercase name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Reactivated => "reactivated",
            Transition::Dormant => "dormant",
            Transition::Notified => "notified",
            Transition::Anonymized => "anonymized",
            Transition::Deleted => "deleted",
            Transition::Held => "held",
        }
    }
}

/// One change of a sweep, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RetentionChange {
    /// The customer.
    pub customer: CustomerId,
    /// What happened to it.
    pub transition: Transition,
    /// The retention policy's reason.
    pub reason: String,
}

/// The report of a sweep.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// The time the sweep ran at.
    pub now: DateTime<Utc>,
    /// Nothing was changed.
    pub dry_run: bool,
    /// A sweep at the same `now` was cut short; this one went on after
    /// this customer id.
    pub resumed_after: Option<CustomerId>,
    /// Customers decided.
    pub examined: u64,
    /// Changes by kind.
    pub counts: BTreeMap<Transition, u64>,
    /// Customers the policy failed on (kept; see `faults`).
    pub faults: u64,
    /// The first policy faults, with the customer.
    pub fault_examples: Vec<(CustomerId, String)>,
    /// Every change, in id order.
    pub changes: Vec<RetentionChange>,
}

impl RetentionReport {
    fn note(&mut self, customer: CustomerId, transition: Transition, reason: &str) {
        *self.counts.entry(transition).or_insert(0) += 1;
        self.changes.push(RetentionChange {
            customer,
            transition,
            reason: reason.to_string(),
        });
    }
}

/// Progress after each committed batch of a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepProgress {
    /// Customers decided so far.
    pub examined: u64,
    /// Changes committed so far.
    pub changed: u64,
    /// Every customer up to this id is done.
    pub done_through: CustomerId,
}

/// What the sweep knows of a customer besides its record.
struct Known {
    hold: bool,
    notice: Option<i64>,
}

/// What a customer's verdict means given its state.
fn plan(facts: &RetentionFacts, verdict: &Verdict) -> Option<Transition> {
    // A failed script changes nothing: no removal, and no reactivation of
    // a dormant or notified customer either.
    if verdict.fault {
        return None;
    }
    let removal = matches!(
        verdict.action,
        RetentionAction::Notify | RetentionAction::Anonymize | RetentionAction::Delete
    );
    if removal && facts.legal_hold {
        return Some(Transition::Held);
    }
    match verdict.action {
        RetentionAction::Keep => {
            (facts.status != Status::Active || facts.notified).then_some(Transition::Reactivated)
        }
        RetentionAction::Dormant => {
            (facts.status != Status::Dormant || facts.notified).then_some(Transition::Dormant)
        }
        RetentionAction::Notify => (!facts.notified).then_some(Transition::Notified),
        RetentionAction::Anonymize => Some(Transition::Anonymized),
        RetentionAction::Delete => Some(Transition::Deleted),
    }
}

/// The clear-text parts of a record the sweep decides on.
struct Stored<'a> {
    status: &'a str,
    created_at: i64,
    last_interaction_at: Option<i64>,
    tags: Option<&'a str>,
}

impl<'a> Stored<'a> {
    fn of_ref(record: &CustomerRef<'a>) -> Self {
        Self {
            status: record.status,
            created_at: record.created_at,
            last_interaction_at: record.last_interaction_at,
            tags: record
                .public
                .iter()
                .find(|(name, _)| *name == "tags")
                .map(|(_, v)| *v),
        }
    }

    fn of(record: &'a StoredCustomer) -> Self {
        Self {
            status: &record.status,
            created_at: record.created_at,
            last_interaction_at: record.last_interaction_at,
            tags: record.public.get("tags").map(String::as_str),
        }
    }
}

fn facts_of(record: &Stored<'_>, known: &Known, now: i64) -> RetentionFacts {
    let last = record
        .last_interaction_at
        .map_or(record.created_at, |t| t.max(record.created_at));
    let tags = record
        .tags
        .map(|v| {
            v.split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    RetentionFacts {
        // A status this build does not know is decided as dormant: never
        // more open than it was.
        status: Status::parse(record.status).unwrap_or(Status::Dormant),
        notified: known.notice.is_some(),
        days_inactive: now.saturating_sub(last).max(0) / DAY_MICROS,
        days_since_notice: known
            .notice
            .map_or(0, |at| now.saturating_sub(at).max(0) / DAY_MICROS),
        tags,
        legal_hold: known.hold,
    }
}

/// How a customer is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Removal {
    /// Identity destroyed; non-identifying aggregates kept.
    Anonymize,
    /// Everything removed.
    Delete,
}

impl Removal {
    fn as_str(self) -> &'static str {
        match self {
            Removal::Anonymize => "anonymized",
            Removal::Delete => "deleted",
        }
    }
}

/// Why and by whom a customer is removed, for its deletion record.
pub(crate) struct RemovalCause<'a> {
    pub(crate) how: Removal,
    pub(crate) reason: &'a str,
    pub(crate) by: &'a str,
    pub(crate) rule: Option<&'a str>,
    pub(crate) at: i64,
}

impl Inner {
    /// The retention policy in force.
    pub(crate) fn retention(&self) -> Arc<RetentionPolicy> {
        Arc::clone(
            &self
                .retention
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Loads the installed retention policy, if one was installed.
    pub(crate) fn load_retention(&self) -> Result<()> {
        if let Some(source) = self.store.read(|r| r.retention_script())? {
            let policy = RetentionPolicy::compile(&source)?;
            *self
                .retention
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Arc::new(policy);
        }
        Ok(())
    }

    /// Removes a customer inside a write transaction and leaves its
    /// deletion record (with aggregates, for an anonymization). The caller
    /// holds its key's pending mark and destroys the key after commit.
    pub(crate) fn remove_in(
        &self,
        w: &mut Writer<'_>,
        record: &StoredCustomer,
        cause: &RemovalCause<'_>,
    ) -> Result<()> {
        let id = record.id;
        let aggregate = match cause.how {
            Removal::Anonymize => Some(self.aggregate(w, record)?),
            Removal::Delete => None,
        };
        self.index(w, record, false)?;
        w.remove_customer(id)?;
        w.remove_interactions(id)?;
        w.remove_followups(id)?;
        w.remove_plugin_traces(id)?;
        w.remove_privacy_traces(id)?;
        w.put_deletion(
            id,
            &StoredDeletion {
                at: cause.at,
                kind: cause.how.as_str().to_string(),
                reason: cause.reason.to_string(),
                by: cause.by.to_string(),
                rule: cause.rule.map(str::to_string),
            },
            aggregate.as_ref(),
        )?;
        Ok(())
    }

    /// Removes one customer on request, with its audit entry `action`:
    /// `permit` decides whether the actor may (inside the transaction); a
    /// legal hold refuses. The key is marked pending before the record goes
    /// and destroyed after; a crash in between is settled at the next open.
    /// Without a `reason`, the deletion record says who deleted it.
    pub(crate) fn remove_on_request(
        self: &Arc<Self>,
        ctx: &Context,
        id: CustomerId,
        action: &str,
        how: Removal,
        reason: Option<&str>,
        permit: impl FnOnce(&Writer<'_>, &Actor, &StoredCustomer) -> Result<Result<()>>,
    ) -> Result<()> {
        let inner = self;
        let event = || Event::new(action).customer(id);
        inner.hold_pending(&[id]);
        if let Err(e) = inner.keys.mark_pending(&[id]) {
            inner.release_pending(&[id]);
            return Err(e.into());
        }
        let removed = inner.store.write(|w| {
            let actor = match writer_actor(w, ctx)? {
                Ok(a) => a,
                Err(reason) => return refuse(inner, w, ctx, event(), Error::Denied(reason)),
            };
            let Some(record) = w.customer(id)? else {
                let missing = Error::NotFound(format!("customer {id}"));
                return refuse(inner, w, ctx, event(), missing);
            };
            if let Err(e) = permit(w, &actor, &record)? {
                return refuse(inner, w, ctx, event(), e);
            }
            // The hold's reason stays with privacy officers: refusals are
            // shown to the caller and kept in the audit chain.
            if w.hold(id)?.is_some() {
                let why = format!("customer {id} is under legal hold: release the hold first");
                return refuse(inner, w, ctx, event(), Error::Denied(why));
            }
            let by_actor = format!("{} by {}", how.as_str(), actor.name);
            let cause = RemovalCause {
                how,
                reason: reason.unwrap_or(&by_actor),
                by: &actor.name,
                rule: None,
                at: inner.now_micros(),
            };
            inner.remove_in(w, &record, &cause)?;
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(()))
        });
        let settle = inner.release_pending(&[id]);
        match removed {
            Ok(Ok(())) => {
                inner.key_cache.forget(id);
                inner.keys.remove(&[id])?;
            }
            Ok(Err(refusal)) => {
                // Cleared only if no other operation (an import committing
                // this id) still holds the mark.
                inner.keys.settle(&settle)?;
                return Err(refusal);
            }
            // Whether the record is gone is unknown: the mark stays and the
            // next open settles it.
            Err(e) => return Err(e),
        }
        inner.emit(vec![super::plugins::Emitted::Erased(id)], None);
        Ok(())
    }

    /// What statistics keep of a customer: no value that identifies it.
    fn aggregate(&self, w: &Writer<'_>, record: &StoredCustomer) -> Result<StoredAggregate> {
        let interactions = w.interactions_of(record.id)?;
        let orders: Vec<_> = interactions
            .iter()
            .filter(|i| i.channel == Channel::Order)
            .collect();
        // An address that cannot be opened gives no region; it must not
        // stop the removal.
        let region = record.sealed.get("address").and_then(|sealed| {
            let key = self.data_key(record.id).ok()?;
            let address = key.open("address", &sealed.sealed).ok()?;
            crate::privacy::coarse_region(&address)
        });
        Ok(StoredAggregate {
            first_purchase_year: orders
                .iter()
                .map(|o| o.at)
                .min()
                .map(|at| from_micros(at).year()),
            orders: orders.len() as u64,
            order_total_minor: orders
                .iter()
                .filter_map(|o| o.amount_minor)
                .fold(0i64, i64::saturating_add),
            interactions: interactions.len() as u64,
            region,
            customer_since_year: from_micros(record.created_at).year(),
        })
    }

    /// Applies one planned transition inside the batch's transaction.
    fn apply_transition(
        &self,
        w: &mut Writer<'_>,
        record: &mut StoredCustomer,
        transition: Transition,
        reason: &str,
        now: i64,
        ctx: &Context,
    ) -> Result<()> {
        let id = record.id;
        // Only the status index moves: the record's other index entries
        // (owner, blind indexes, tags) stay as they are.
        let set_status =
            |_: &Inner, w: &mut Writer<'_>, record: &mut StoredCustomer, status: Status| {
                if record.status != status.as_str() {
                    w.index(Index::Status(&record.status), record.id, false)?;
                    record.status = status.as_str().to_string();
                    w.index(Index::Status(&record.status), record.id, true)?;
                    w.put_customer(record)?;
                }
                Ok::<_, Error>(())
            };
        // A withdrawn notice takes its undelivered message with it.
        let withdraw_notice = |w: &mut Writer<'_>| {
            if let Some(notice) = w.notice(id)? {
                if let Some(message) = notice.message {
                    w.remove_message(message)?;
                }
                w.set_notice(id, None)?;
            }
            Ok::<_, Error>(())
        };
        match transition {
            Transition::Reactivated => {
                withdraw_notice(w)?;
                set_status(self, w, record, Status::Active)?;
            }
            Transition::Dormant => {
                withdraw_notice(w)?;
                set_status(self, w, record, Status::Dormant)?;
            }
            Transition::Notified => {
                set_status(self, w, record, Status::Dormant)?;
                let channel = ["email", "phone"]
                    .into_iter()
                    .find(|f| record.sealed.contains_key(*f) || record.public.contains_key(*f));
                let mut queued = None;
                if let Some(field) = channel {
                    let message = self.reserve_ids(1);
                    queued = Some(message);
                    w.put_message(
                        message,
                        &StoredMessage {
                            plugin: NOTICE_SENDER.to_string(),
                            channel: if field == "email" { "email" } else { "sms" }.to_string(),
                            customer: id,
                            template: NOTICE_TEMPLATE.to_string(),
                            params: vec![
                                ("reason".into(), reason.to_string()),
                                ("notified_at".into(), from_micros(now).to_rfc3339()),
                            ],
                            marketing: false,
                            created_at: now,
                        },
                    )?;
                    w.record_id(message);
                }
                w.set_notice(
                    id,
                    Some(&StoredNotice {
                        at: now,
                        reason: reason.to_string(),
                        message: queued,
                    }),
                )?;
            }
            Transition::Anonymized | Transition::Deleted => {
                let how = if transition == Transition::Anonymized {
                    Removal::Anonymize
                } else {
                    Removal::Delete
                };
                self.remove_in(
                    w,
                    record,
                    &RemovalCause {
                        how,
                        reason: "retention policy",
                        by: ctx.principal(),
                        rule: Some(reason),
                        at: now,
                    },
                )?;
            }
            Transition::Held => {}
        }
        Ok(())
    }
}

impl Engine {
    /// Applies the retention policy to every customer as of `now`:
    /// dormant, notified, anonymized or deleted as `retention.rhai`
    /// decides, never past a legal hold. With `dry_run`, reports what it
    /// would do and changes nothing. Admins and data stewards.
    pub fn retention_sweep(
        &self,
        ctx: &Context,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<RetentionReport> {
        let options = SweepOptions {
            dry_run,
            ..SweepOptions::default()
        };
        self.retention_sweep_with(ctx, now, &options, |_| {})
    }

    /// [`Engine::retention_sweep`] with options and a progress callback
    /// called after each committed batch.
    pub fn retention_sweep_with(
        &self,
        ctx: &Context,
        now: DateTime<Utc>,
        options: &SweepOptions,
        mut progress: impl FnMut(&SweepProgress),
    ) -> Result<RetentionReport> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let now_us = now.timestamp_micros();
        let mode = if options.dry_run { "dry run" } else { "sweep" };
        let event =
            || Event::new("retention.sweep").target(format!("{mode} at {}", now.to_rfc3339()));
        let (actor, run) = inner
            .store
            .read(|r| Ok::<_, Error>((inner.actor(r, ctx, event)?, r.retention_run()?)))?;
        if !is_privacy_officer(&actor) {
            let why = format!(
                "principal `{}` may not run retention sweeps: only admins and data stewards may",
                actor.name
            );
            return inner.deny(ctx, event(), why);
        }
        // A sweep dated ahead of the engine clock removes customers before
        // their time: only an administrator may run one, and it is audited
        // with its date. A dry run may look ahead freely.
        let ahead = now - inner.clock.now() > chrono::Duration::days(1);
        if ahead && !options.dry_run && !actor.admin {
            let why = format!(
                "principal `{}` may not sweep at {}, ahead of the engine clock: only admins may; a dry run may look ahead",
                actor.name,
                now.to_rfc3339()
            );
            return inner.deny(ctx, event(), why);
        }
        let policy = inner.retention();
        let batch = options.batch_size.clamp(1, 100_000);
        let mut report = RetentionReport {
            now,
            dry_run: options.dry_run,
            ..RetentionReport::default()
        };
        let mut after = 0;
        if !options.dry_run
            && let Some(run) = run
            && run.now == now_us
        {
            after = run.done_through;
            report.resumed_after = Some(after);
        }
        loop {
            // Decide on a snapshot, outside the write transaction.
            let mut decided: Vec<(u64, RetentionFacts, Verdict)> = Vec::with_capacity(batch);
            let last = inner.store.read(|r| {
                let (holds, notices) = r.holds_and_notices()?;
                r.scan_customers(after, batch, |record| {
                    let known = Known {
                        hold: holds > 0 && r.hold(record.id)?.is_some(),
                        notice: match notices {
                            0 => None,
                            _ => r.notice(record.id)?.map(|n| n.at),
                        },
                    };
                    let facts = facts_of(&Stored::of_ref(&record), &known, now_us);
                    let verdict = policy.decide(&facts);
                    decided.push((record.id, facts, verdict));
                    Ok::<_, Error>(true)
                })
            })?;
            let Some(last) = last else { break };
            report.examined += decided.len() as u64;
            let mut planned = Vec::new();
            for (id, facts, verdict) in decided {
                if verdict.fault {
                    report.faults += 1;
                    if report.fault_examples.len() < 10 {
                        report.fault_examples.push((id, verdict.reason.to_string()));
                    }
                }
                if let Some(t) = plan(&facts, &verdict) {
                    planned.push((id, t, verdict.reason));
                }
            }
            // A held customer is reported, not changed: nothing to commit.
            let (held, planned): (Vec<_>, Vec<_>) = planned
                .into_iter()
                .partition(|(_, t, _)| *t == Transition::Held);
            for (id, t, reason) in &held {
                report.note(*id, *t, reason);
            }
            if options.dry_run {
                for (id, t, reason) in &planned {
                    report.note(*id, *t, reason);
                }
            } else if !planned.is_empty() {
                // A batch with nothing to change writes nothing, not even
                // the cursor: a rerun decides it again and changes nothing.
                self.commit_batch(ctx, &policy, &mut report, planned, last, now_us)?;
                progress(&SweepProgress {
                    examined: report.examined,
                    changed: report.changes.len() as u64,
                    done_through: last,
                });
            }
            after = last;
        }
        // The sweep is complete: forget where it was, and say what it did.
        let summary = report
            .counts
            .iter()
            .map(|(t, n)| format!("{} {n}", t.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let entry = Event::new("retention.sweep").target(format!(
            "{mode} at {}: {} examined; {}",
            now.to_rfc3339(),
            report.examined,
            if summary.is_empty() {
                "no change".to_string()
            } else {
                summary
            }
        ));
        if options.dry_run {
            inner.audit_read(entry.record(ctx, Outcome::Ok))?;
        } else {
            inner.store.write(|w| {
                w.set_retention_run(None)?;
                audit::append(w, inner.ring.audit_key(), &entry.record(ctx, Outcome::Ok))?;
                Ok::<_, Error>(())
            })?;
        }
        Ok(report)
    }

    /// Commits one batch of planned transitions, re-deciding each customer
    /// on the transaction's own state.
    fn commit_batch(
        &self,
        ctx: &Context,
        policy: &RetentionPolicy,
        report: &mut RetentionReport,
        planned: Vec<(u64, Transition, Arc<str>)>,
        last: u64,
        now: i64,
    ) -> Result<()> {
        let inner = &self.inner;
        // INVARIANT: keys of customers that may be removed are marked
        // pending before the transaction and destroyed after it commits; a
        // crash in between is settled at the next open.
        let removable: Vec<u64> = planned
            .iter()
            .filter(|(_, t, _)| matches!(t, Transition::Anonymized | Transition::Deleted))
            .map(|(id, _, _)| *id)
            .collect();
        let marked: HashSet<u64> = removable.iter().copied().collect();
        if !removable.is_empty() {
            inner.hold_pending(&removable);
            if let Err(e) = inner.keys.mark_pending(&removable) {
                inner.release_pending(&removable);
                return Err(e.into());
            }
        }
        let event = || Event::new("retention.sweep");
        let committed = inner.store.write(|w| {
            match writer_actor(w, ctx)? {
                Ok(actor) if is_privacy_officer(&actor) => {}
                Ok(actor) => {
                    let why = format!(
                        "principal `{}` may no longer run retention sweeps",
                        actor.name
                    );
                    return refuse(inner, w, ctx, event(), Error::Denied(why));
                }
                Err(reason) => return refuse(inner, w, ctx, event(), Error::Denied(reason)),
            }
            let mut done = Vec::new();
            let mut removed = Vec::new();
            for (id, _, _) in &planned {
                let Some(mut record) = w.customer(*id)? else {
                    continue;
                };
                // Decide again on this transaction's state: the customer
                // may have changed since the snapshot.
                let known = Known {
                    hold: w.hold(*id)?.is_some(),
                    notice: w.notice(*id)?.map(|n| n.at),
                };
                let facts = facts_of(&Stored::of(&record), &known, now);
                let verdict = policy.decide(&facts);
                let Some(transition) = plan(&facts, &verdict) else {
                    continue;
                };
                let removes = matches!(transition, Transition::Anonymized | Transition::Deleted);
                // INVARIANT: only keys marked pending are destroyed; a
                // customer that became removable since the snapshot waits
                // for the next sweep. A hold is reported, never changed.
                if (removes && !marked.contains(id)) || transition == Transition::Held {
                    continue;
                }
                inner.apply_transition(w, &mut record, transition, &verdict.reason, now, ctx)?;
                let action = format!("retention.{}", transition.as_str());
                let entry = Event::new(&action)
                    .customer(*id)
                    .target(format!("customer {id}: {}", verdict.reason));
                audit::append(w, inner.ring.audit_key(), &entry.record(ctx, Outcome::Ok))?;
                if removes {
                    removed.push(*id);
                }
                done.push((*id, transition, verdict.reason));
            }
            w.set_retention_run(Some(&StoredRun {
                now,
                done_through: last,
            }))?;
            Ok::<_, Error>(Ok((done, removed)))
        });
        let settle = if removable.is_empty() {
            Vec::new()
        } else {
            inner.release_pending(&removable)
        };
        match committed {
            Ok(Ok((done, removed))) => {
                for id in &removed {
                    inner.key_cache.forget(*id);
                }
                inner.keys.remove(&removed)?;
                let erased = removed
                    .iter()
                    .map(|id| super::plugins::Emitted::Erased(*id));
                inner.emit(erased.collect(), None);
                let removed_set: HashSet<u64> = removed.iter().copied().collect();
                let kept: Vec<u64> = settle
                    .into_iter()
                    .filter(|id| !removed_set.contains(id))
                    .collect();
                inner.keys.settle(&kept)?;
                for (id, t, reason) in done {
                    report.note(id, t, &reason);
                }
                Ok(())
            }
            Ok(Err(refusal)) => {
                inner.keys.settle(&settle)?;
                Err(refusal)
            }
            Err(e) => Err(e),
        }
    }
}
