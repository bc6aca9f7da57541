//! Customer records: create, read, update, delete, search, count.

use super::{Engine, ImportOptions};
use crate::guard::Access;
use crate::model::{
    Customer, CustomerId, CustomerUpdate, ModelError, NewCustomer, Sensitivity, Status,
};
use crate::op::{Emitted, Entry, Op, Prepared};
use crate::policy::{Action, Decision, Treatment};
use crate::records::{IndexKey, owner_rule};
use crate::store::{SnapshotExt, StoredCustomer};
use crate::{Context, Denied, Error, Result};

/// What to look customers up by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// Exact value of a blind-indexed field (phone, email, ID number),
    /// through its keyed index: no plaintext is compared or stored.
    Field {
        /// The field, e.g. `phone`.
        field: String,
        /// The value as a person would type it; normalized before lookup.
        value: String,
    },
    /// Customers owned by a principal.
    Owner(String),
    /// Customers carrying a tag (in the `tags` field).
    Tag(String),
    /// Customers in a lifecycle status.
    Status(Status),
}

impl Query {
    /// Shorthand for [`Query::Field`].
    pub fn field(field: impl Into<String>, value: impl Into<String>) -> Self {
        Query::Field {
            field: field.into(),
            value: value.into(),
        }
    }

    /// How the query is named in the audit chain: never the searched value.
    fn audit_target(&self) -> String {
        match self {
            Query::Field { field, .. } => format!("search {field}"),
            Query::Owner(o) => format!("search owner {o}"),
            Query::Tag(t) => format!("search tag {t}"),
            Query::Status(s) => format!("search status {}", s.as_str()),
        }
    }
}

impl Engine {
    /// Creates a customer and returns its id. Fields are validated against
    /// the schema; personal ones are sealed under a fresh data key.
    pub fn create_customer(&self, ctx: &Context, new: NewCustomer) -> Result<CustomerId> {
        let rows = std::iter::once((1, Ok(new)));
        let report = self.import(ctx, rows, &ImportOptions::default(), |_| {})?;
        match (report.first_id, report.errors.into_iter().next()) {
            (Some(id), _) => Ok(id),
            (None, Some(row)) => Err(row.error),
            (None, None) => Err(Error::NotFound("created customer".into())),
        }
    }

    /// Reads one customer, as the acting principal may see it.
    pub fn customer(&self, ctx: &Context, id: CustomerId) -> Result<Customer> {
        let op = Op::new(Entry::new("customer.read").customer(id));
        self.core.read(ctx, op, |read| {
            read.customer(id, Action::Read, |read, record, decision| {
                read.view(record, &decision)
            })
        })
    }

    /// Finds customers, at most `limit`, each as the acting principal may see it.
    pub fn find_customers(
        &self,
        ctx: &Context,
        query: &Query,
        limit: usize,
    ) -> Result<Vec<Customer>> {
        let records = &self.core.records;
        // A match on a field is shown only where the principal may see that
        // field (in full, for a sensitive one): a hit elsewhere would tell
        // who holds the value.
        let mut searched = None;
        let index = match query {
            Query::Field { field, value } => {
                let def = records.schema.require(field)?;
                if !def.is_blind_indexed() {
                    return Err(ModelError::Attribute {
                        what: "search".into(),
                        reason: format!(
                            "field `{field}` is not searchable; search by a phone, email or id_number field, owner, tag or status"
                        ),
                    }
                    .into());
                }
                let normalized = records.schema.normalize(field, value)?;
                searched = Some((field.clone(), def.sensitivity));
                IndexKey::Blind(records.ring.blind_index(field, &normalized))
            }
            Query::Owner(o) => IndexKey::Owner(o.clone()),
            Query::Tag(t) => IndexKey::Tag(format!("tags:{}", t.to_lowercase())),
            Query::Status(s) => IndexKey::Status(s.as_str().to_string()),
        };
        let access = match searched {
            Some(_) => Access::Lookup,
            None => Access::Search,
        };
        let op = Op::new(Entry::new("customer.search").target(query.audit_target())).access(access);
        self.core.read(ctx, op, |read| {
            let snapshot = read.snapshot();
            // A principal the policy shows the field on no customer is
            // refused the search outright, hit or miss alike.
            if let Some((field, sensitivity)) = &searched {
                let general = read.decider().decide_general(Action::Search);
                if general.allowed() && !shows(&general, field, *sensitivity) {
                    let reason = format!(
                        "the policy does not show `{field}` to this principal, so it may not search by it: a match would tell who holds the value"
                    );
                    return Err(Denied::Policy { reason }.into());
                }
            }
            // Someone trying values one after another is stopped once
            // their lookups that found nothing reach a budget.
            if searched.is_some() {
                read.check_lookup(limit)?;
            }
            // Decide on every hit, in id order, until `limit` are shown
            // (nothing is decrypted); then reveal those to the guard, as
            // one request.
            let mut shown = Vec::with_capacity(limit.min(1024));
            let scanned = match limit {
                0 => Ok(()),
                _ => snapshot.scan_filed(index.as_index(), &mut |record| {
                    // An erased customer's record (in a data file older
                    // than its key store) is a miss.
                    if !records.has_key(record.id)? {
                        return Ok(true);
                    }
                    let decision = read.decider().decide(snapshot, Action::Search, &record)?;
                    // A hit on a field the principal may not see would
                    // confirm the searched value.
                    let confirms = (searched.as_ref())
                        .is_some_and(|(f, sensitivity)| !shows(&decision, f, *sensitivity));
                    if decision.allowed() && !confirms {
                        shown.push(read.prepare(&record, &decision)?);
                    }
                    Ok::<_, Error>(shown.len() < limit)
                }),
            };
            scanned?;
            // The guard sees every customer the search shows, as one
            // request, before anything is decrypted (a lookup that shows
            // none stays a miss).
            let ids: Vec<u64> = shown.iter().map(Prepared::id).collect();
            read.reveal(&ids)?;
            shown.into_iter().map(|p| read.open(p)).collect()
        })
    }

    /// How many customers the database holds.
    pub fn count_customers(&self, ctx: &Context) -> Result<u64> {
        self.core
            .read(ctx, Op::new(Entry::new("customer.count")), |read| {
                crate::op::allowed(read.decider().decide_general(Action::Count))?;
                Ok(read.snapshot().customer_count()?)
            })
    }

    /// Changes a customer's fields or owner, as the policy allows.
    pub fn update_customer(
        &self,
        ctx: &Context,
        id: CustomerId,
        update: CustomerUpdate,
    ) -> Result<()> {
        let mut change = self
            .core
            .records
            .normalize_change(&update.set, &update.clear)?;
        change.owner = update.owner;
        let mut touched: Vec<String> = (change.set.keys()).chain(&change.clear).cloned().collect();
        if change.owner.is_some() {
            touched.push("owner".into());
        }
        let op = Op::new(Entry::new("customer.update").customer(id).fields(touched));
        self.core.write(ctx, op, |tx| {
            let mut record = tx.customer(id, Action::Update)?;
            if let Some(owner) = &change.owner {
                owner_rule(owner, tx.txn().principal(owner)?.as_ref())?;
                // Handing over needs the policy's consent for the new owner too.
                let handed = StoredCustomer {
                    owner: owner.clone(),
                    ..record.clone()
                };
                tx.require(Action::Update, &handed)?;
            }
            let retired = tx.txn().retired_purposes()?.into_iter().collect();
            tx.records()
                .update(tx.txn(), &mut record, &change, &retired)?;
            tx.emit(Emitted::Updated(id));
            Ok(())
        })
    }

    /// Deletes a customer with everything filed under it (interactions,
    /// follow-ups, consents, plugin links, queued messages), then destroys
    /// its data key in the key store and every mirror. A deletion record
    /// without personal data is kept; a legal hold refuses the delete.
    pub fn delete_customer(&self, ctx: &Context, id: CustomerId) -> Result<()> {
        self.remove(
            ctx,
            id,
            "customer.delete",
            crate::records::Removal::Delete,
            None,
        )
    }
}

/// Whether `decision` shows `field` enough for a match on it to be shown:
/// at all for a personal field, in full for a sensitive one.
fn shows(decision: &Decision, field: &str, sensitivity: Sensitivity) -> bool {
    !matches!(
        (decision.treatment(field, sensitivity), sensitivity),
        (Treatment::Hidden, _) | (Treatment::Masked, Sensitivity::Sensitive)
    )
}
