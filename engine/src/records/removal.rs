//! Removing a customer: the one path that deletes, erasure requests,
//! anonymization and retention sweeps share. The record and everything
//! filed under it go; a deletion record without personal data stays (with
//! non-identifying aggregates for an anonymization). The customer's key
//! is destroyed after the commit by its [`super::KeyClaim`].

use chrono::Datelike;

use super::{Records, Slot};
use crate::Result;
use crate::model::{Channel, from_micros};
use crate::privacy;
use crate::store::{StoredAggregate, StoredCustomer, StoredDeletion, Txn};

/// How a customer is removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Removal {
    /// Identity destroyed; non-identifying aggregates kept.
    Anonymize,
    /// Everything removed.
    Delete,
}

impl Removal {
    pub(crate) fn as_str(self) -> &'static str {
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
    /// The retention rule, when a sweep removes it.
    pub(crate) rule: Option<&'a str>,
    pub(crate) at: i64,
}

impl Records {
    /// Removes a customer and everything filed under it, leaving its
    /// deletion record. The caller holds the customer's [`super::KeyClaim`].
    pub(crate) fn remove(
        &self,
        txn: &mut dyn Txn,
        record: &StoredCustomer,
        cause: &RemovalCause<'_>,
    ) -> Result<()> {
        let id = record.id;
        let aggregate = match cause.how {
            Removal::Anonymize => Some(self.aggregate(&*txn, record)?),
            Removal::Delete => None,
        };
        let keys = self.index_keys(record);
        let entries: Vec<_> = keys.iter().map(|k| (k.as_index(), id)).collect();
        txn.index(&entries, false)?;
        txn.remove_customer(id)?;
        txn.remove_interactions(id)?;
        txn.remove_followups(id)?;
        txn.remove_plugin_traces(id)?;
        txn.remove_privacy_traces(id)?;
        txn.put_deletion(
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

    /// What statistics keep of a customer: no value that identifies it.
    fn aggregate(&self, txn: &dyn Txn, record: &StoredCustomer) -> Result<StoredAggregate> {
        let interactions = txn.interactions(record.id)?;
        let orders: Vec<_> = (interactions.iter())
            .filter(|i| i.channel == Channel::Order)
            .collect();
        // An address that cannot be opened gives no region; it must not
        // stop the removal.
        let region = record.sealed.get("address").and_then(|sealed| {
            let address = self
                .open(record.id, Slot::Field("address"), &sealed.sealed)
                .ok()?;
            privacy::coarse_region(&address)
        });
        Ok(StoredAggregate {
            first_purchase_year: (orders.iter().map(|o| o.at).min())
                .map(|at| from_micros(at).year()),
            orders: orders.len() as u64,
            order_total_minor: (orders.iter())
                .filter_map(|o| o.amount_minor)
                .fold(0i64, i64::saturating_add),
            interactions: interactions.len() as u64,
            region,
            customer_since_year: from_micros(record.created_at).year(),
        })
    }
}
