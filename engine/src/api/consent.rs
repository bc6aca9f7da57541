//! Consent and legal holds: the ledger of what each customer agreed to,
//! retired purposes, holds, and where a customer is in its lifecycle.

use std::collections::{BTreeMap, BTreeSet};

use super::Engine;
use crate::audit::Outcome;
use crate::model::{Basis, ConsentChange, CustomerId, Status, from_micros};
use crate::op::{Emitted, Entry, Op, Read};
use crate::policy::Action;
use crate::privacy::{ConsentRecord, LifecycleState, PrivacyError};
use crate::records::check_len;
use crate::store::{Snapshot, StoredConsentEntry, StoredCustomer, StoredHold};
use crate::{Context, Error, Result};

/// A customer's place in its lifecycle, with any legal hold on it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Lifecycle {
    /// Active, dormant or notified.
    pub state: LifecycleState,
    /// The reason of the legal hold on it, if any.
    pub legal_hold: Option<String>,
}

/// A stored customer's lifecycle: its status, notice and hold.
pub(super) fn stored_lifecycle(r: &dyn Snapshot, record: &StoredCustomer) -> Result<Lifecycle> {
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

pub(super) fn consent_record(e: StoredConsentEntry) -> ConsentRecord {
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

impl Read<'_> {
    /// The stored customer `id` if the actor may read it: by the policy's
    /// `read`, or (with `officers`) as a privacy officer.
    fn readable(&mut self, id: CustomerId, officers: bool) -> Result<StoredCustomer> {
        let snapshot = self.snapshot();
        let record =
            (snapshot.customer(id)?).ok_or_else(|| Error::NotFound(format!("customer {id}")))?;
        if !(officers && self.actor().is_privacy_officer()) {
            self.decider().require(snapshot, Action::Read, &record)?;
        }
        Ok(record)
    }
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
        self.core
            .records
            .check_consent(change, &self.core.records.retired())?;
        let verb = if change.granted { "grant" } else { "withdraw" };
        let mut target = format!("{verb} {}", change.purpose);
        for field in &change.fields {
            target.push_str(&format!(" +{field}"));
        }
        let op = Op::new(Entry::new("consent.record").customer(customer));
        self.core.write(ctx, op, |tx| {
            let mut record = tx.customer(customer, Action::Update)?;
            tx.retarget(target);
            // Checked again on this transaction: the purpose may have been
            // retired since.
            let retired = tx.txn().retired_purposes()?.into_iter().collect();
            tx.records().check_consent(change, &retired)?;
            let by = tx.actor().name.clone();
            tx.records()
                .record_consent(tx.txn(), customer, change, &by)?;
            // Only a withdrawal takes a basis away; a legal hold keeps the
            // data (the inventory counts it as held without basis).
            if change.granted || tx.txn().hold(customer)?.is_some() {
                return Ok(Vec::new());
            }
            let erased = tx.records().erase_unfounded(tx.txn(), &mut record)?;
            if !erased.is_empty() {
                let entry = Entry::new("customer.update")
                    .customer(customer)
                    .target(format!(
                        "customer {customer}: erased, no basis left after withdrawal of `{}`",
                        change.purpose
                    ))
                    .fields(erased.clone());
                tx.audit(entry, Outcome::Ok)?;
                tx.emit(Emitted::Updated(customer));
            }
            Ok(erased)
        })
    }

    /// A customer's consents in force: purpose (or `purpose:field` for a
    /// separate consent to a sensitive field) → granted. Needs the
    /// policy's `read`.
    pub fn consents(&self, ctx: &Context, customer: CustomerId) -> Result<BTreeMap<String, bool>> {
        let op = Op::new(Entry::new("consent.read").customer(customer));
        self.core.read(ctx, op, |read| {
            read.readable(customer, false)?;
            let consents = read.snapshot().consents(customer)?;
            Ok(consents.into_iter().map(|(p, c)| (p, c.granted)).collect())
        })
    }

    /// A customer's consent ledger, oldest first. Needs the policy's `read`.
    pub fn consent_history(
        &self,
        ctx: &Context,
        customer: CustomerId,
    ) -> Result<Vec<ConsentRecord>> {
        let op = Op::new(Entry::new("consent.read").customer(customer));
        self.core.read(ctx, op, |read| {
            read.readable(customer, false)?;
            let ledger = read.snapshot().consent_ledger(customer)?;
            Ok(ledger.into_iter().map(consent_record).collect())
        })
    }

    /// Retires a purpose the company no longer pursues (`retired`), or
    /// restores it. A retired purpose gives no basis: nothing is stored for
    /// it any more, no consent to it is recorded, and the inventory flags
    /// the values held only for it. Admins only.
    pub fn retire_purpose(&self, ctx: &Context, purpose: &str, retired: bool) -> Result<()> {
        let schema = &self.core.records.schema;
        if schema.purpose(purpose).is_none() {
            let why = format!(
                "purpose `{}` is not declared in the schema",
                purpose.escape_debug()
            );
            return Err(PrivacyError::Consent(why).into());
        }
        let verb = if retired { "retire" } else { "restore" };
        let entry = Entry::new("purpose.retire").target(format!("{verb} purpose {purpose}"));
        let op = Op::new(entry).admins("retire purposes");
        self.core.write(ctx, op, |tx| {
            let mut list: BTreeSet<String> = tx.txn().retired_purposes()?.into_iter().collect();
            match retired {
                true => list.insert(purpose.to_string()),
                false => list.remove(purpose),
            };
            // A required field must keep a purpose that needs no consent.
            let needs_no_consent = |p: &String| {
                !list.contains(p) && schema.purpose(p).is_some_and(|d| d.basis != Basis::Consent)
            };
            let stranded = (schema.fields().iter())
                .find(|f| f.required && !f.purposes.iter().any(needs_no_consent));
            if let Some(field) = stranded {
                return Err(PrivacyError::Consent(format!(
                    "retiring `{purpose}` would leave required field `{}` without a purpose that needs no consent",
                    field.name
                ))
                .into());
            }
            let list: Vec<String> = list.into_iter().collect();
            tx.txn().put_retired_purposes(&list)?;
            Ok(())
        })?;
        let core = &self.core;
        core.records
            .reload_retired(|| core.store.read(|r| r.retired_purposes()))
    }

    /// The purposes retired with [`Engine::retire_purpose`].
    pub fn retired_purposes(&self) -> Vec<String> {
        self.core.records.retired().iter().cloned().collect()
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
        if let Some(reason) = reason {
            check_len("legal hold reason", reason, 500)?;
            if reason.trim().is_empty() {
                return Err(PrivacyError::Consent("a legal hold needs a reason".into()).into());
            }
        }
        let verb = if reason.is_some() { "place" } else { "release" };
        let entry = Entry::new("customer.hold")
            .customer(customer)
            .target(format!("{verb} legal hold on customer {customer}"));
        let op = Op::new(entry).officers(format!("{verb} legal holds"));
        self.core.write(ctx, op, |tx| {
            if tx.txn().customer(customer)?.is_none() {
                return Err(Error::NotFound(format!("customer {customer}")));
            }
            let hold = reason.map(|r| StoredHold {
                reason: r.to_string(),
                by: tx.actor().name.clone(),
                at: tx.records().now(),
            });
            tx.txn().set_hold(customer, hold.as_ref())?;
            Ok(())
        })
    }

    /// Where a customer is in its lifecycle. Admins and data stewards may
    /// ask about any customer (dormant ones included); others need the
    /// policy's `read`, and see only that a hold exists, not its reason.
    pub fn lifecycle(&self, ctx: &Context, customer: CustomerId) -> Result<Lifecycle> {
        let op = Op::new(Entry::new("customer.lifecycle").customer(customer));
        self.core.read(ctx, op, |read| {
            let record = read.readable(customer, true)?;
            let mut lifecycle = stored_lifecycle(read.snapshot(), &record)?;
            // The reason of a hold is for privacy officers only.
            if !read.actor().is_privacy_officer() && lifecycle.legal_hold.is_some() {
                lifecycle.legal_hold = Some("under legal hold".into());
            }
            Ok(lifecycle)
        })
    }
}
