//! Consent and legal holds: the ledger of what each customer agreed to,
//! the minimum-necessary check every write passes, and what a withdrawal
//! erases at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, PoisonError};

use super::access::{Teams, refusal, subject};
use super::customers::{refuse, writer_actor};
use super::{Context, Engine, Event, Inner, from_micros};
use crate::audit::{self, Outcome};
use crate::identity::Actor;
use crate::model::{ConsentChange, CustomerId, Status};
use crate::policy::Action;
use crate::privacy::{ConsentRecord, LifecycleState, PrivacyError, consent_key};
use crate::store::{Reader, StoredConsent, StoredConsentEntry, StoredCustomer, StoredHold, Writer};
use crate::{Error, Result};

/// The role that handles dormant customers and privacy requests.
pub const STEWARD_ROLE: &str = "steward";

/// A customer's place in its lifecycle, with any legal hold on it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Lifecycle {
    /// Active, dormant or notified.
    pub state: LifecycleState,
    /// The reason of the legal hold on it, if any.
    pub legal_hold: Option<String>,
}

impl Inner {
    /// The purposes no longer pursued.
    pub(crate) fn retired(&self) -> Arc<BTreeSet<String>> {
        Arc::clone(&self.retired.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Loads the retired purposes.
    pub(crate) fn load_retired(&self) -> Result<()> {
        let retired = self.store.read(|r| r.retired_purposes())?;
        *self.retired.write().unwrap_or_else(PoisonError::into_inner) =
            Arc::new(retired.into_iter().collect());
        Ok(())
    }

    /// Refuses a grant to a retired purpose.
    fn check_live(&self, change: &ConsentChange) -> Result<()> {
        if change.granted && self.retired().contains(&change.purpose) {
            return Err(PrivacyError::Consent(format!(
                "purpose `{}` is retired: the company no longer collects data for it",
                change.purpose
            ))
            .into());
        }
        Ok(())
    }

    /// The engine clock in µs: every record timestamp comes from it.
    pub(crate) fn now_micros(&self) -> i64 {
        self.clock.now().timestamp_micros()
    }

    /// Checks the consents a new customer comes with, and that they give
    /// every field a basis.
    pub(crate) fn check_new_consents(
        &self,
        fields: &BTreeMap<String, String>,
        consents: &[ConsentChange],
    ) -> Result<()> {
        let mut granted = BTreeSet::new();
        for consent in consents {
            if !consent.granted {
                return Err(PrivacyError::Consent(format!(
                    "a new customer cannot withdraw consent to `{}`: it has given none",
                    consent.purpose
                ))
                .into());
            }
            crate::privacy::check_consent(consent, &self.schema)?;
            self.check_live(consent)?;
            granted.insert(consent.purpose.clone());
            for field in &consent.fields {
                granted.insert(consent_key(&consent.purpose, Some(field)));
            }
        }
        let granted = |key: &str| granted.contains(key);
        crate::privacy::check_basis(
            &self.schema,
            &self.retired(),
            fields.keys().map(String::as_str),
            &granted,
        )?;
        crate::privacy::check_minor(
            &self.schema,
            fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &granted,
            self.clock.now().date_naive(),
        )?;
        Ok(())
    }

    /// Checks that a customer's stored consents give the fields being set
    /// (field → normalized value) a basis.
    pub(crate) fn check_stored_basis(
        &self,
        w: &Writer<'_>,
        customer: u64,
        set: &BTreeMap<String, String>,
    ) -> Result<Result<()>> {
        if !self.schema.enforces_purposes() {
            return Ok(Ok(()));
        }
        let granted = granted_keys(w.consents_of(customer)?);
        let granted = |key: &str| granted.contains(key);
        let checked = crate::privacy::check_basis(
            &self.schema,
            &self.retired(),
            set.keys().map(String::as_str),
            &granted,
        )
        .and_then(|()| {
            crate::privacy::check_minor(
                &self.schema,
                set.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                &granted,
                self.clock.now().date_naive(),
            )
        });
        Ok(checked.map_err(Error::from))
    }

    /// Writes consents given with a new customer: ledger and state.
    pub(crate) fn write_consents(
        &self,
        w: &mut Writer<'_>,
        ctx: &Context,
        customer: u64,
        consents: &[ConsentChange],
    ) -> Result<()> {
        // The creation's own audit entry covers the consents it came with.
        for consent in consents {
            self.apply_consent(w, ctx, customer, consent, false)?;
        }
        Ok(())
    }

    /// Records one consent change: the ledger entries, the current state
    /// and its audit entry. A withdrawal of a purpose withdraws the
    /// separate consents under it too.
    fn apply_consent(
        &self,
        w: &mut Writer<'_>,
        ctx: &Context,
        customer: u64,
        change: &ConsentChange,
        audited: bool,
    ) -> Result<()> {
        let at = self.now_micros();
        let mut keys: Vec<Option<String>> = Vec::new();
        if change.granted || change.fields.is_empty() {
            keys.push(None);
        }
        keys.extend(change.fields.iter().cloned().map(Some));
        if !change.granted && change.fields.is_empty() {
            // Withdrawing a purpose ends every separate consent under it.
            let prefix = format!("{}:", change.purpose);
            for (key, state) in w.consents_of(customer)? {
                if state.granted
                    && let Some(field) = key.strip_prefix(&prefix)
                {
                    keys.push(Some(field.to_string()));
                }
            }
        }
        for field in keys {
            w.append_consent(
                customer,
                &StoredConsentEntry {
                    purpose: change.purpose.clone(),
                    field: field.clone(),
                    granted: change.granted,
                    at,
                    channel: change.channel.clone(),
                    notice_version: change.notice_version.clone(),
                    by: ctx.principal().to_string(),
                },
            )?;
            w.put_consent(
                customer,
                &consent_key(&change.purpose, field.as_deref()),
                &StoredConsent {
                    granted: change.granted,
                    at,
                    by: ctx.principal().to_string(),
                },
            )?;
        }
        if !audited {
            return Ok(());
        }
        let verb = if change.granted { "grant" } else { "withdraw" };
        let mut target = format!("{verb} {}", change.purpose);
        for field in &change.fields {
            target.push_str(&format!(" +{field}"));
        }
        let event = Event::new("consent.record")
            .customer(customer)
            .target(target);
        audit::append(w, self.ring.audit_key(), &event.record(ctx, Outcome::Ok))?;
        Ok(())
    }

    /// Erases the fields of `record` left with no basis; returns their names.
    fn erase_unfounded(
        &self,
        w: &mut Writer<'_>,
        record: &mut StoredCustomer,
    ) -> Result<Vec<String>> {
        if !self.schema.enforces_purposes() {
            return Ok(Vec::new());
        }
        let granted = granted_keys(w.consents_of(record.id)?);
        let retired = self.retired();
        let present: Vec<String> = record
            .public
            .keys()
            .chain(record.sealed.keys())
            .cloned()
            .collect();
        let granted = |k: &str| granted.contains(k);
        // A child without a guardian's consent keeps only what the record
        // cannot exist without.
        let child = crate::privacy::check_minor(
            &self.schema,
            record
                .public
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain(
                    self.open_birth_dates(record)
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str())),
                ),
            &granted,
            self.clock.now().date_naive(),
        )
        .is_err();
        let unfounded: Vec<String> = present
            .into_iter()
            .filter(|f| {
                let required = self.schema.field(f).is_some_and(|d| d.required);
                (child && !required)
                    || crate::privacy::missing_basis(&self.schema, &retired, f, &granted).is_some()
            })
            .collect();
        if unfounded.is_empty() {
            return Ok(unfounded);
        }
        let before = self.index_keys(record);
        for name in &unfounded {
            self.clear_field(record, name);
        }
        record.updated_at = self.now_micros();
        w.put_customer(record)?;
        self.reindex(w, before, record)?;
        Ok(unfounded)
    }
}

impl Inner {
    /// The customer's sealed birth-date fields, opened (for the age check).
    fn open_birth_dates(&self, record: &StoredCustomer) -> Vec<(String, String)> {
        let key = match self.data_key(record.id) {
            Ok(key) => key,
            Err(_) => return Vec::new(),
        };
        record
            .sealed
            .iter()
            .filter(|(name, _)| self.schema.field(name).is_some_and(|d| d.birth_date))
            .filter_map(|(name, f)| Some((name.clone(), key.open(name, &f.sealed).ok()?)))
            .collect()
    }
}

/// The consent keys a customer has granted.
fn granted_keys(state: Vec<(String, StoredConsent)>) -> BTreeSet<String> {
    state
        .into_iter()
        .filter(|(_, c)| c.granted)
        .map(|(k, _)| k)
        .collect()
}

/// Whether `actor` handles privacy requests: an admin or a data steward.
pub(crate) fn is_privacy_officer(actor: &Actor) -> bool {
    actor.admin || actor.roles.iter().any(|r| r == STEWARD_ROLE)
}

impl Engine {
    /// Records a customer's consent to a purpose, or its withdrawal, in the
    /// consent ledger (with time, channel and privacy-notice version).
    ///
    /// A withdrawal takes effect at once: fields left with no basis are
    /// erased in the same transaction (their names are returned), messages
    /// for the purpose are no longer queued or handed out, and plugins no
    /// longer see what was erased. Needs the policy's `update`.
    pub fn record_consent(
        &self,
        ctx: &Context,
        customer: CustomerId,
        change: &ConsentChange,
    ) -> Result<Vec<String>> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        crate::privacy::check_consent(change, &inner.schema)?;
        inner.check_live(change)?;
        let event = || Event::new("consent.record").customer(customer);
        let erased = inner.store.write(|w| {
            let actor = match writer_actor(w, ctx)? {
                Ok(a) => a,
                Err(reason) => return refuse(inner, w, ctx, event(), Error::Denied(reason)),
            };
            let Some(mut record) = w.customer(customer)? else {
                return refuse(
                    inner,
                    w,
                    ctx,
                    event(),
                    Error::NotFound(format!("customer {customer}")),
                );
            };
            if let Err(e) = inner.allow_write(w, &actor, Action::Update, ctx.purpose(), &record)? {
                return refuse(inner, w, ctx, event(), e);
            }
            inner.apply_consent(w, ctx, customer, change, true)?;
            // Only a withdrawal takes a basis away; a legal hold keeps the
            // data (the inventory counts it as held without basis).
            let erased = match change.granted || w.hold(customer)?.is_some() {
                true => Vec::new(),
                false => inner.erase_unfounded(w, &mut record)?,
            };
            if !erased.is_empty() {
                let entry = Event::new("customer.update")
                    .customer(customer)
                    .target(format!(
                        "customer {customer}: erased, no basis left after withdrawal of `{}`",
                        change.purpose
                    ))
                    .fields(erased.clone());
                audit::append(w, inner.ring.audit_key(), &entry.record(ctx, Outcome::Ok))?;
            }
            Ok::<_, Error>(Ok(erased))
        })??;
        if !erased.is_empty() {
            inner.emit(vec![super::plugins::Emitted::Updated(customer)], None);
        }
        Ok(erased)
    }

    /// Retires a purpose the company no longer pursues (`retired`), or
    /// restores it. A retired purpose gives no basis: nothing is stored for
    /// it any more, no consent to it is recorded, and the inventory flags
    /// the values held only for it. Admins only.
    pub fn retire_purpose(&self, ctx: &Context, purpose: &str, retired: bool) -> Result<()> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        if inner.schema.purpose(purpose).is_none() {
            return Err(PrivacyError::Consent(format!(
                "purpose `{}` is not declared in the schema",
                purpose.escape_debug()
            ))
            .into());
        }
        let verb = if retired { "retire" } else { "restore" };
        let event = || Event::new("purpose.retire").target(format!("{verb} purpose {purpose}"));
        inner.store.write(|w| {
            if let Err(e) = super::auth::admin_only(w, ctx, "retire purposes")? {
                return refuse(inner, w, ctx, event(), e);
            }
            let mut list: BTreeSet<String> = w.retired_purposes()?.into_iter().collect();
            match retired {
                true => list.insert(purpose.to_string()),
                false => list.remove(purpose),
            };
            // A required field must keep a purpose that needs no consent.
            let stranded = inner.schema.fields().iter().find(|f| {
                f.required
                    && !f.purposes.iter().any(|p| {
                        !list.contains(p)
                            && inner
                                .schema
                                .purpose(p)
                                .is_some_and(|d| d.basis != crate::model::Basis::Consent)
                    })
            });
            if let Some(field) = stranded {
                let why = PrivacyError::Consent(format!(
                    "retiring `{purpose}` would leave required field `{}` without a purpose that needs no consent",
                    field.name
                ));
                return refuse(inner, w, ctx, event(), why.into());
            }
            let list: Vec<String> = list.into_iter().collect();
            w.put_retired_purposes(&list)?;
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(()))
        })??;
        // Read back under the lock: of two concurrent calls, the one that
        // sets memory last has read a list that holds both changes.
        let mut memory = inner
            .retired
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let stored = inner.store.read(|r| r.retired_purposes())?;
        *memory = Arc::new(stored.into_iter().collect());
        Ok(())
    }

    /// The purposes retired with [`Engine::retire_purpose`].
    pub fn retired_purposes(&self) -> Vec<String> {
        self.inner.retired().iter().cloned().collect()
    }

    /// A customer's consent ledger, oldest first. Needs the policy's `read`.
    pub fn consent_history(
        &self,
        ctx: &Context,
        customer: CustomerId,
    ) -> Result<Vec<ConsentRecord>> {
        let entries = self.read_about(ctx, customer, "consent.read", false, |r| {
            Ok(r.consent_ledger(customer)?)
        })?;
        Ok(entries.into_iter().map(consent_record).collect())
    }

    /// Places a legal hold on a customer (`Some(reason)`) or releases it
    /// (`None`). While held, nothing removes the customer: no retention
    /// notice, anonymization, deletion or erasure. Admins and data stewards.
    pub fn set_legal_hold(
        &self,
        ctx: &Context,
        customer: CustomerId,
        reason: Option<&str>,
    ) -> Result<()> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        if let Some(reason) = reason {
            super::activity::check_len("legal hold reason", reason, 500)?;
            if reason.trim().is_empty() {
                return Err(PrivacyError::Consent("a legal hold needs a reason".into()).into());
            }
        }
        let verb = if reason.is_some() { "place" } else { "release" };
        let event = || {
            Event::new("customer.hold")
                .customer(customer)
                .target(format!("{verb} legal hold on customer {customer}"))
        };
        inner.store.write(|w| {
            let actor = match writer_actor(w, ctx)? {
                Ok(a) => a,
                Err(reason) => return refuse(inner, w, ctx, event(), Error::Denied(reason)),
            };
            if !is_privacy_officer(&actor) {
                let why = format!(
                    "principal `{}` may not {verb} legal holds: only admins and data stewards may",
                    actor.name
                );
                return refuse(inner, w, ctx, event(), Error::Denied(why));
            }
            if w.customer(customer)?.is_none() {
                return refuse(
                    inner,
                    w,
                    ctx,
                    event(),
                    Error::NotFound(format!("customer {customer}")),
                );
            }
            let hold = reason.map(|r| StoredHold {
                reason: r.to_string(),
                by: actor.name.clone(),
                at: inner.now_micros(),
            });
            w.set_hold(customer, hold.as_ref())?;
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(()))
        })?
    }

    /// Where a customer is in its lifecycle. Admins and data stewards may
    /// ask about any customer (dormant ones included); others need the
    /// policy's `read`.
    pub fn lifecycle(&self, ctx: &Context, customer: CustomerId) -> Result<Lifecycle> {
        let ctx = &self.inner.authenticate(ctx)?;
        let mut officer = false;
        self.read_about(ctx, customer, "customer.lifecycle", true, |r| {
            officer = Actor::resolve(ctx.principal(), r.principal(ctx.principal())?)
                .is_ok_and(|a| is_privacy_officer(&a));
            let Some(record) = r.customer(customer)? else {
                return Err(Error::NotFound(format!("customer {customer}")));
            };
            stored_lifecycle(r, &record)
        })
        .map(|mut lifecycle| {
            // The reason of a hold is for privacy officers only.
            if !officer && lifecycle.legal_hold.is_some() {
                lifecycle.legal_hold = Some("under legal hold".into());
            }
            lifecycle
        })
    }

    /// Runs `f` on a snapshot if the policy lets the actor read the
    /// customer, or with `officers` if the actor is a privacy officer;
    /// audited as `action`.
    pub(crate) fn read_about<T>(
        &self,
        ctx: &Context,
        customer: CustomerId,
        action: &'static str,
        officers: bool,
        f: impl FnOnce(&Reader) -> Result<T>,
    ) -> Result<T> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let event = move || Event::new(action).customer(customer);
        let policy = inner.policy();
        let result = inner.store.read(|r| {
            let actor = inner.actor(r, ctx, event)?;
            let Some(record) = r.customer(customer)? else {
                return Ok::<_, Error>(Err(Error::NotFound(format!("customer {customer}"))));
            };
            if !(officers && is_privacy_officer(&actor)) {
                let facts = inner.facts_of(r, &mut Teams::default(), &record)?;
                let decision =
                    policy.authorize(&subject(&actor), Action::Read, ctx.purpose(), Some(&facts));
                if !decision.allowed() {
                    return Ok(Err(Error::Denied(refusal(&decision))));
                }
            }
            Ok(f(r))
        })?;
        match result {
            Ok(value) => {
                inner.audit_read(event().record(ctx, Outcome::Ok))?;
                Ok(value)
            }
            Err(Error::Denied(reason)) => inner.deny(ctx, event(), reason),
            Err(e) => {
                inner.audit_read(event().record(ctx, Outcome::Failed(e.to_string())))?;
                Err(e)
            }
        }
    }
}

/// A stored customer's lifecycle: its status, notice and hold.
pub(crate) fn stored_lifecycle(r: &Reader, record: &StoredCustomer) -> Result<Lifecycle> {
    let state = match (r.notice(record.id)?, Status::parse(&record.status)?) {
        (Some(n), _) => LifecycleState::Notified {
            at: from_micros(n.at),
        },
        (None, Status::Dormant) => LifecycleState::Dormant,
        (None, _) => LifecycleState::Active,
    };
    Ok(Lifecycle {
        state,
        legal_hold: r.hold(record.id)?.map(|h| h.reason),
    })
}

pub(crate) fn consent_record(e: StoredConsentEntry) -> ConsentRecord {
    ConsentRecord {
        purpose: e.purpose,
        field: e.field,
        granted: e.granted,
        at: from_micros(e.at),
        channel: e.channel,
        notice_version: e.notice_version,
        by: e.by,
    }
}
