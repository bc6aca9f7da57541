//! Data-subject requests (PIPL art. 44–47, GDPR art. 15–20): finding a
//! person by phone, email or ID number, a complete machine-readable copy of
//! everything held about them, erasure and anonymization (one removal path
//! with deletes), and the deletion records removals leave.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Engine;
use super::consent::{Lifecycle, consent_record, stored_lifecycle};
use crate::audit::AuditEntry;
use crate::guard::Access;
use crate::model::{CustomerId, FollowUp, Interaction, ModelError, from_micros};
use crate::op::{Emitted, Entry, Op, Rule};
use crate::policy::Action;
use crate::privacy::ConsentRecord;
use crate::records::{IndexKey, Removal, RemovalCause, Slot};
use crate::store::{SnapshotExt, StoredDeletion, StoredMessage};
use crate::{Context, Denied, Error, Result};

/// Everything held about one person, as a subject access request returns
/// it: the export is complete, so it is also what portability hands over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SubjectExport {
    /// When the copy was made.
    pub exported_at: DateTime<Utc>,
    /// The customer id.
    pub customer: CustomerId,
    /// Its owner.
    pub owner: String,
    /// Where it is in its lifecycle.
    pub lifecycle: Lifecycle,
    /// When it was created and last changed.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
    /// When the last interaction happened.
    pub last_interaction_at: Option<DateTime<Utc>>,
    /// Every field, in full.
    pub fields: BTreeMap<String, String>,
    /// Every interaction, in full.
    pub interactions: Vec<Interaction>,
    /// Every follow-up, with its note.
    pub follow_ups: Vec<FollowUp>,
    /// The consent ledger, oldest first.
    pub consents: Vec<ConsentRecord>,
    /// Messages queued for the person (template and purpose; no address).
    pub queued_messages: Vec<QueuedMessage>,
    /// Every audited operation on the person's data: who (principal or
    /// `plugin:<name>`), when, what, which fields and why.
    pub accesses: Vec<AuditEntry>,
}

/// A message waiting in the outbox, as a subject export shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueuedMessage {
    /// Who queued it.
    pub sender: String,
    /// `sms` or `email`.
    pub channel: String,
    /// Its template.
    pub template: String,
    /// Its parameters.
    pub params: Vec<(String, String)>,
    /// Whether it is marketing.
    pub marketing: bool,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
}

/// What a removal leaves: no personal data, kept for good.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeletionRecord {
    /// The former customer id.
    pub customer: CustomerId,
    /// When.
    pub at: DateTime<Utc>,
    /// `anonymized` or `deleted`.
    pub kind: String,
    /// Why.
    pub reason: String,
    /// Who.
    pub by: String,
    /// The retention rule, when a sweep removed it.
    pub rule: Option<String>,
    /// For an anonymized customer, the statistics kept.
    pub aggregate: Option<Aggregate>,
}

/// The non-identifying statistics an anonymized customer leaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Aggregate {
    /// The year it became a customer.
    pub customer_since_year: i32,
    /// The year of its first order.
    pub first_purchase_year: Option<i32>,
    /// How many orders.
    pub orders: u64,
    /// Their total, in minor units.
    pub order_total_minor: i64,
    /// How many interactions.
    pub interactions: u64,
    /// Province or city, never more precise.
    pub region: Option<String>,
}

fn deletion_record(
    customer: u64,
    d: StoredDeletion,
    a: Option<crate::store::StoredAggregate>,
) -> DeletionRecord {
    DeletionRecord {
        customer,
        at: from_micros(d.at),
        kind: d.kind,
        reason: d.reason,
        by: d.by,
        rule: d.rule,
        aggregate: a.map(|a| Aggregate {
            customer_since_year: a.customer_since_year,
            first_purchase_year: a.first_purchase_year,
            orders: a.orders,
            order_total_minor: a.order_total_minor,
            interactions: a.interactions,
            region: a.region,
        }),
    }
}

impl Engine {
    /// The customers filed under a phone number, email address or ID
    /// number (any blind-indexed field): the people a subject request is
    /// about. Admins and data stewards; audited without the value.
    pub fn find_subject(&self, ctx: &Context, field: &str, value: &str) -> Result<Vec<CustomerId>> {
        let records = &self.core.records;
        let def = records.schema.require(field)?;
        if !def.is_blind_indexed() {
            return Err(ModelError::Attribute {
                what: "subject lookup".into(),
                reason: format!(
                    "field `{field}` is not a lookup field; use phone, email or id_number"
                ),
            }
            .into());
        }
        let normalized = records.schema.normalize(field, value)?;
        let key = IndexKey::Blind(records.ring.blind_index(field, &normalized));
        let entry = Entry::new("subject.find").target(format!("subject lookup by {field}"));
        let op = Op::new(entry)
            .officers("look up data subjects")
            .access(Access::Lookup);
        self.core.read(ctx, op, |read| {
            // An answer tells whether the value is held: lookups that find
            // nothing count against the actor's budget, as searches do.
            read.check_lookup(1)?;
            let mut ids = Vec::new();
            // An erased customer's record is a miss.
            for id in read.snapshot().lookup(key.as_index(), 1_000)? {
                if records.has_key(id)? {
                    ids.push(id);
                }
            }
            // Each customer found counts as shown (the answer ties the
            // value to it), past the budget if need be: a refusal now would
            // tell that the value is held.
            read.count_answered(&ids)?;
            read.touched(ids.iter().copied(), []);
            Ok(ids)
        })
    }

    /// A complete machine-readable copy of everything held about customer
    /// `id` (subject access and portability). Admins and data stewards;
    /// audited as an export of every field.
    pub fn subject_export(&self, ctx: &Context, id: CustomerId) -> Result<SubjectExport> {
        // Reads still buffered for the group commit are accesses too.
        self.core.flush_audit()?;
        let entry = Entry::new("subject.export").customer(id);
        let op = Op::new(entry)
            .officers("export a data subject's data")
            .access(Access::Export);
        let exported_at = self.core.records.clock.now();
        self.core.read(ctx, op, |read| {
            let r = read.snapshot();
            let record =
                (r.customer(id)?).ok_or_else(|| Error::NotFound(format!("customer {id}")))?;
            read.reveal(&[id])?;
            let records = read.records();
            let mut fields: BTreeMap<String, String> = record.public.clone();
            for (name, sealed) in &record.sealed {
                fields.insert(
                    name.clone(),
                    records.open(id, Slot::Field(name), &sealed.sealed)?,
                );
            }
            read.touched([], fields.keys().cloned());
            // Through the index by customer: what it returns, not the chain.
            let key = records.ring.audit_key();
            let mut accesses = super::audit::entries_of(r, key, id, usize::MAX)?;
            for entry in &mut accesses {
                // Other people in the same entry are not the subject's business.
                entry.customers = vec![id];
            }
            let follow_ups = (r.followups_of(id)?.into_iter())
                .map(|f| records.show_follow_up(f, true))
                .collect::<Result<Vec<_>>>()?;
            Ok(SubjectExport {
                exported_at,
                customer: id,
                owner: record.owner.clone(),
                lifecycle: stored_lifecycle(r, &record)?,
                created_at: from_micros(record.created_at),
                updated_at: from_micros(record.updated_at),
                last_interaction_at: record.last_interaction_at.map(from_micros),
                fields,
                interactions: records.show_interactions(id, (true, true), r.interactions(id)?)?,
                follow_ups,
                consents: r
                    .consent_ledger(id)?
                    .into_iter()
                    .map(consent_record)
                    .collect(),
                queued_messages: (r.messages_of(id)?.into_iter())
                    .map(|m| queued(records, m))
                    .collect::<Result<_>>()?,
                accesses,
            })
        })
    }

    /// Erases customer `id` at the person's request: everything is
    /// removed, its data key is destroyed in the key store and every
    /// mirror (so older copies of the data file and data backups can no
    /// longer open its fields), and a deletion record without personal
    /// data is kept. Refused under a legal hold. Admins and data stewards.
    pub fn subject_erase(
        &self,
        ctx: &Context,
        id: CustomerId,
        reason: &str,
    ) -> Result<DeletionRecord> {
        self.remove_on_request(ctx, id, Removal::Delete, reason)
    }

    /// Anonymizes customer `id`: its identity is destroyed as by erasure,
    /// and non-identifying aggregates (year of first purchase, order count
    /// and total, coarse region) are kept for statistics. Admins and data
    /// stewards.
    pub fn anonymize_customer(
        &self,
        ctx: &Context,
        id: CustomerId,
        reason: &str,
    ) -> Result<DeletionRecord> {
        self.remove_on_request(ctx, id, Removal::Anonymize, reason)
    }

    fn remove_on_request(
        &self,
        ctx: &Context,
        id: CustomerId,
        how: Removal,
        reason: &str,
    ) -> Result<DeletionRecord> {
        crate::records::check_len("reason", reason, 500)?;
        let action = match how {
            Removal::Anonymize => "subject.anonymize",
            Removal::Delete => "subject.erase",
        };
        let reason = match reason.trim() {
            "" => "subject request",
            given => given,
        };
        self.remove(ctx, id, action, how, Some(reason))?;
        (self.deletion_record(ctx, id)?)
            .ok_or_else(|| Error::NotFound(format!("deletion record of customer {id}")))
    }

    /// Removes one customer (the one path of deletes and subject
    /// requests): a delete needs the policy's `delete`, an erasure or
    /// anonymization a privacy officer; a legal hold refuses either. The
    /// key is claimed before the write and destroyed after its commit.
    /// Without a `reason`, the deletion record says who deleted it.
    pub(super) fn remove(
        &self,
        ctx: &Context,
        id: CustomerId,
        action: &str,
        how: Removal,
        reason: Option<&str>,
    ) -> Result<()> {
        let by_officer = reason.is_some();
        let rule = match by_officer {
            true => Rule::Officers("erase or anonymize customers".into()),
            false => Rule::Active,
        };
        let op = Op::new(Entry::new(action).customer(id)).rule(rule);
        // Who acts first: a caller turned away touches no key.
        let admitted = self.core.admit_early(ctx, &op)?;
        let op = op.claim(self.core.records.claim_doomed(&[id])?);
        self.core.write_as(admitted.caller(), op, |tx| {
            let record = match by_officer {
                true => tx.records().customer(tx.txn(), id)?,
                false => tx.customer(id, Action::Delete)?,
            };
            // The hold's reason stays with privacy officers: refusals are
            // shown to the caller and kept in the audit chain.
            if tx.txn().hold(id)?.is_some() {
                return Err(Denied::LegalHold(id).into());
            }
            let by = tx.actor().name.clone();
            let by_actor = format!("{} by {by}", how.as_str());
            let cause = RemovalCause {
                how,
                reason: reason.unwrap_or(&by_actor),
                by: &by,
                rule: None,
                at: tx.records().now(),
            };
            tx.records().remove(tx.txn(), &record, &cause)?;
            tx.emit(Emitted::Erased(id));
            Ok(())
        })
    }

    /// The deletion record a removed customer left, if any. Admins and data
    /// stewards.
    pub fn deletion_record(&self, ctx: &Context, id: CustomerId) -> Result<Option<DeletionRecord>> {
        let entry = Entry::new("deletion.read").target(format!("deletion record {id}"));
        let op = Op::new(entry).officers("read deletion records");
        self.core.read(ctx, op, |read| {
            let r = read.snapshot();
            let aggregate = r.aggregate(id)?;
            Ok(r.deletion(id)?.map(|d| deletion_record(id, d, aggregate)))
        })
    }

    /// Deletion records of customers with ids above `after`, at most
    /// `limit`, in id order. Admins and data stewards.
    pub fn deletion_records(
        &self,
        ctx: &Context,
        after: CustomerId,
        limit: usize,
    ) -> Result<Vec<DeletionRecord>> {
        let entry = Entry::new("deletion.read").target("deletion records");
        let op = Op::new(entry).officers("read deletion records");
        let found = self.core.read(ctx, op, |read| {
            Ok(read.snapshot().deletions(after, limit)?)
        })?;
        Ok(found
            .into_iter()
            .map(|(id, d, a)| deletion_record(id, d, a))
            .collect())
    }
}

fn queued(records: &crate::records::Records, m: StoredMessage) -> Result<QueuedMessage> {
    Ok(QueuedMessage {
        params: records.message_params(&m)?,
        sender: m.plugin,
        channel: m.channel,
        template: m.template,
        marketing: m.marketing,
        created_at: from_micros(m.created_at),
    })
}
