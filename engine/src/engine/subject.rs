//! Data-subject requests (PIPL art. 44–47, GDPR art. 15–20): finding a
//! person by phone, email or ID number, a complete machine-readable copy of
//! everything held about them, correction and erasure; and the deletion
//! records removals leave.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::customers::IndexKey;
use super::privacy::{Lifecycle, consent_record, is_privacy_officer, stored_lifecycle};
use super::retention::Removal;
use super::{Context, Engine, Event, Inner, from_micros};
use crate::audit::{self, AuditEntry, Outcome};
use crate::identity::Actor;
use crate::model::{CustomerId, FollowUp, Interaction, ModelError};
use crate::privacy::ConsentRecord;
use crate::store::{Reader, StoredDeletion};
use crate::{Error, Result};

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

impl Inner {
    /// Resolves a privacy officer in a snapshot; anyone else is refused
    /// (audited).
    fn officer(
        &self,
        r: &Reader,
        ctx: &Context,
        what: &str,
        event: impl Fn() -> Event<'static>,
    ) -> Result<Actor> {
        let actor = self.actor(r, ctx, &event)?;
        if !is_privacy_officer(&actor) {
            let why = format!(
                "principal `{}` may not {what}: only admins and data stewards may",
                actor.name
            );
            return self.deny(ctx, event(), why);
        }
        Ok(actor)
    }
}

impl Engine {
    /// The customers filed under a phone number, email address or ID
    /// number (any blind-indexed field): the people a subject request is
    /// about. Admins and data stewards; audited without the value.
    pub fn find_subject(&self, ctx: &Context, field: &str, value: &str) -> Result<Vec<CustomerId>> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let def = inner.schema.require(field)?;
        if !def.is_blind_indexed() {
            return Err(ModelError::Attribute {
                what: "subject lookup".into(),
                reason: format!(
                    "field `{field}` is not a lookup field; use phone, email or id_number"
                ),
            }
            .into());
        }
        let normalized = inner.schema.normalize(field, value)?;
        let key = IndexKey::Blind(inner.ring.blind_index(field, &normalized));
        let target = format!("subject lookup by {field}");
        let event = || Event::new("subject.find").target(target.clone());
        let ids = inner.store.read(|r| {
            inner.officer(r, ctx, "look up data subjects", || {
                Event::new("subject.find").target(format!("subject lookup by {field}"))
            })?;
            Ok::<_, Error>(r.lookup(key.as_index(), 1_000)?)
        })?;
        let mut entry = event();
        entry.customers = ids.clone();
        inner.audit_read(entry.record(ctx, Outcome::Ok))?;
        Ok(ids)
    }

    /// A complete machine-readable copy of everything held about customer
    /// `id` (subject access and portability). Admins and data stewards;
    /// audited as an export of every field.
    pub fn subject_export(&self, ctx: &Context, id: CustomerId) -> Result<SubjectExport> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let event = move || Event::new("subject.export").customer(id);
        // Reads still buffered for the group commit are accesses too.
        inner.flush_audit()?;
        let snapshot = inner.store.read(|r| {
            inner.officer(r, ctx, "export a data subject's data", event)?;
            let Some(record) = r.customer(id)? else {
                return Ok::<_, Error>(None);
            };
            let lifecycle = stored_lifecycle(r, &record)?;
            let mut accesses = Vec::new();
            r.scan_audit(1, |seq, bytes| {
                let mut entry = audit::decode_entry(seq, bytes)?;
                if entry.customers.contains(&id) {
                    // Other people in the same entry are not the subject's business.
                    entry.customers = vec![id];
                    accesses.push(entry);
                }
                Ok::<_, Error>(true)
            })?;
            let messages = r
                .messages_of(id)?
                .into_iter()
                .map(|m| QueuedMessage {
                    sender: m.plugin,
                    channel: m.channel,
                    template: m.template,
                    params: m.params,
                    marketing: m.marketing,
                    created_at: from_micros(m.created_at),
                })
                .collect();
            Ok(Some((
                record,
                lifecycle,
                r.interactions(id)?,
                r.followups_of(id)?,
                r.consent_ledger(id)?,
                messages,
                accesses,
            )))
        })?;
        let Some((record, lifecycle, interactions, followups, ledger, messages, accesses)) =
            snapshot
        else {
            let error = Error::NotFound(format!("customer {id}"));
            inner.audit_read(event().record(ctx, Outcome::Failed(error.to_string())))?;
            return Err(error);
        };
        let built = (|| {
            let key = inner.data_key(id)?;
            let mut fields: BTreeMap<String, String> = record.public.clone();
            for (name, sealed) in &record.sealed {
                fields.insert(name.clone(), key.open(name, &sealed.sealed)?);
            }
            let interactions = inner.show_interactions(id, (true, true), interactions)?;
            let follow_ups = followups
                .into_iter()
                .map(|f| {
                    Ok(FollowUp {
                        note: Some(key.open(&format!("followup/{}/note", f.id), &f.note)?),
                        id: f.id,
                        customer: f.customer,
                        due: from_micros(f.due),
                        assignee: f.assignee,
                        done: f.done,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok::<_, Error>(SubjectExport {
                exported_at: inner.clock.now(),
                customer: id,
                owner: record.owner.clone(),
                lifecycle,
                created_at: from_micros(record.created_at),
                updated_at: from_micros(record.updated_at),
                last_interaction_at: record.last_interaction_at.map(from_micros),
                fields,
                interactions,
                follow_ups,
                consents: ledger.into_iter().map(consent_record).collect(),
                queued_messages: messages,
                accesses,
            })
        })();
        let fields = |e: &SubjectExport| e.fields.keys().cloned().collect();
        inner.audit_read(super::customers::read_record(event(), ctx, &built, fields))?;
        built
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
        self.remove_customer(ctx, id, Removal::Delete, reason)
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
        self.remove_customer(ctx, id, Removal::Anonymize, reason)
    }

    fn remove_customer(
        &self,
        ctx: &Context,
        id: CustomerId,
        how: Removal,
        reason: &str,
    ) -> Result<DeletionRecord> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        super::activity::check_len("reason", reason, 500)?;
        let verb = match how {
            Removal::Anonymize => "subject.anonymize",
            Removal::Delete => "subject.erase",
        };
        let reason = match reason.trim() {
            "" => "subject request",
            given => given,
        };
        inner.remove_on_request(ctx, id, verb, how, Some(reason), |_, actor, _| {
            Ok(match is_privacy_officer(actor) {
                true => Ok(()),
                false => Err(Error::Denied(format!(
                    "principal `{}` may not erase or anonymize customers: only admins and data stewards may",
                    actor.name
                ))),
            })
        })?;
        self.deletion_record(ctx, id)?
            .ok_or_else(|| Error::NotFound(format!("deletion record of customer {id}")))
    }

    /// The deletion record a removed customer left, if any. Admins and data
    /// stewards.
    pub fn deletion_record(&self, ctx: &Context, id: CustomerId) -> Result<Option<DeletionRecord>> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let event = move || Event::new("deletion.read").target(format!("deletion record {id}"));
        let found = inner.store.read(|r| {
            inner.officer(r, ctx, "read deletion records", event)?;
            let record = r.deletion(id)?;
            let aggregate = r.aggregate(id)?;
            Ok::<_, Error>(record.map(|d| deletion_record(id, d, aggregate)))
        })?;
        inner.audit_read(event().record(ctx, Outcome::Ok))?;
        Ok(found)
    }

    /// Deletion records of customers with ids above `after`, at most
    /// `limit`, in id order. Admins and data stewards.
    pub fn deletion_records(
        &self,
        ctx: &Context,
        after: CustomerId,
        limit: usize,
    ) -> Result<Vec<DeletionRecord>> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let event = || Event::new("deletion.read").target("deletion records".to_string());
        let found = inner.store.read(|r| {
            inner.officer(r, ctx, "read deletion records", event)?;
            Ok::<_, Error>(r.deletions(after, limit)?)
        })?;
        inner.audit_read(event().record(ctx, Outcome::Ok))?;
        Ok(found
            .into_iter()
            .map(|(id, d, a)| deletion_record(id, d, a))
            .collect())
    }
}
