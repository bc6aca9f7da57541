//! Tables of the privacy lifecycle: the consent ledger, legal holds,
//! retention notices, deletion records, the aggregates anonymized customers
//! leave, and the retention policy with the state of a sweep in progress.

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::plugins::missing_ok;
use super::records::{decode, encode};
use super::{Reader, StoreError, Writer};

/// (customer, sequence) → consent ledger entry, oldest first.
const LEDGER: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("consent_ledger");
/// Customer → legal hold.
const HOLDS: TableDefinition<u64, &[u8]> = TableDefinition::new("legal_holds");
/// Customer → the retention notice it was sent.
const NOTICES: TableDefinition<u64, &[u8]> = TableDefinition::new("retention_notices");
/// Customer id → the record of its removal; kept for good.
const DELETIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("deletions");
/// Former customer id → what statistics keep of an anonymized customer.
const AGGREGATES: TableDefinition<u64, &[u8]> = TableDefinition::new("anonymized");
/// `script` → the retention policy; `run` → the sweep in progress.
const RETENTION: TableDefinition<&str, &[u8]> = TableDefinition::new("retention");

/// The newest table: a database made by an older version lacks it.
pub(super) const NEWEST: TableDefinition<&str, &[u8]> = RETENTION;

const SCRIPT: &str = "script";
const RETIRED: &str = "retired_purposes";
const RUN: &str = "run";

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(LEDGER)?;
    txn.open_table(HOLDS)?;
    txn.open_table(NOTICES)?;
    txn.open_table(DELETIONS)?;
    txn.open_table(AGGREGATES)?;
    txn.open_table(RETENTION)?;
    Ok(())
}

/// One consent ledger entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredConsentEntry {
    pub(crate) purpose: String,
    pub(crate) field: Option<String>,
    pub(crate) granted: bool,
    pub(crate) at: i64,
    pub(crate) channel: String,
    pub(crate) notice_version: String,
    pub(crate) by: String,
}

/// A legal hold: nothing removes the customer while it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredHold {
    pub(crate) reason: String,
    pub(crate) by: String,
    pub(crate) at: i64,
}

/// A retention notice sent to a customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredNotice {
    pub(crate) at: i64,
    pub(crate) reason: String,
    /// The notice queued in the outbox, if the customer had an address.
    pub(crate) message: Option<u64>,
}

/// The record a removal leaves: no personal data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredDeletion {
    pub(crate) at: i64,
    /// `anonymized` or `deleted`.
    pub(crate) kind: String,
    pub(crate) reason: String,
    pub(crate) by: String,
    /// The retention rule's reason, when a sweep removed it.
    pub(crate) rule: Option<String>,
}

/// What an anonymized customer leaves for statistics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredAggregate {
    pub(crate) first_purchase_year: Option<i32>,
    pub(crate) orders: u64,
    pub(crate) order_total_minor: i64,
    pub(crate) interactions: u64,
    pub(crate) region: Option<String>,
    pub(crate) customer_since_year: i32,
}

/// A retention sweep in progress: where to resume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredRun {
    /// The `now` the sweep runs at (µs).
    pub(crate) now: i64,
    /// Every customer up to this id is done.
    pub(crate) done_through: u64,
}

impl Writer<'_> {
    /// Appends to a customer's consent ledger.
    pub(crate) fn append_consent(
        &mut self,
        customer: u64,
        entry: &StoredConsentEntry,
    ) -> Result<(), StoreError> {
        let mut table = self.txn.open_table(LEDGER)?;
        let next = match table
            .range((customer, 0)..=(customer, u64::MAX))?
            .next_back()
        {
            Some(last) => last?.0.value().1 + 1,
            None => 0,
        };
        table.insert((customer, next), encode(entry)?.as_slice())?;
        Ok(())
    }

    /// Removes a customer's ledger, hold and notice.
    pub(crate) fn remove_privacy_traces(&mut self, customer: u64) -> Result<(), StoreError> {
        let mut ledger = self.txn.open_table(LEDGER)?;
        ledger.retain_in((customer, 0)..=(customer, u64::MAX), |_, _| false)?;
        self.txn.open_table(HOLDS)?.remove(customer)?;
        self.txn.open_table(NOTICES)?.remove(customer)?;
        Ok(())
    }

    /// The legal hold on a customer.
    pub(crate) fn hold(&self, customer: u64) -> Result<Option<StoredHold>, StoreError> {
        let table = self.txn.open_table(HOLDS)?;
        let value = table.get(customer)?;
        value.map(|v| decode(v.value(), "legal hold")).transpose()
    }

    /// Places (`Some`) or releases a legal hold.
    pub(crate) fn set_hold(
        &mut self,
        customer: u64,
        hold: Option<&StoredHold>,
    ) -> Result<(), StoreError> {
        let mut table = self.txn.open_table(HOLDS)?;
        match hold {
            Some(h) => table.insert(customer, encode(h)?.as_slice())?,
            None => table.remove(customer)?,
        };
        Ok(())
    }

    /// The notice sent to a customer.
    pub(crate) fn notice(&self, customer: u64) -> Result<Option<StoredNotice>, StoreError> {
        let table = self.txn.open_table(NOTICES)?;
        let value = table.get(customer)?;
        value.map(|v| decode(v.value(), "notice")).transpose()
    }

    /// Records (`Some`) or clears a notice.
    pub(crate) fn set_notice(
        &mut self,
        customer: u64,
        notice: Option<&StoredNotice>,
    ) -> Result<(), StoreError> {
        let mut table = self.txn.open_table(NOTICES)?;
        match notice {
            Some(n) => table.insert(customer, encode(n)?.as_slice())?,
            None => table.remove(customer)?,
        };
        Ok(())
    }

    /// Keeps the record of a removal.
    pub(crate) fn put_deletion(
        &mut self,
        customer: u64,
        record: &StoredDeletion,
        aggregate: Option<&StoredAggregate>,
    ) -> Result<(), StoreError> {
        self.txn
            .open_table(DELETIONS)?
            .insert(customer, encode(record)?.as_slice())?;
        if let Some(a) = aggregate {
            self.txn
                .open_table(AGGREGATES)?
                .insert(customer, encode(a)?.as_slice())?;
        }
        Ok(())
    }

    /// Records the purposes the company no longer pursues.
    pub(crate) fn put_retired_purposes(&mut self, retired: &[String]) -> Result<(), StoreError> {
        self.txn
            .open_table(RETENTION)?
            .insert(RETIRED, encode(&retired)?.as_slice())?;
        Ok(())
    }

    /// The purposes the company no longer pursues.
    pub(crate) fn retired_purposes(&self) -> Result<Vec<String>, StoreError> {
        let table = self.txn.open_table(RETENTION)?;
        let value = table.get(RETIRED)?;
        Ok(value
            .map(|v| decode(v.value(), "retired purposes"))
            .transpose()?
            .unwrap_or_default())
    }

    /// Installs a retention policy.
    pub(crate) fn put_retention_script(&mut self, source: &str) -> Result<(), StoreError> {
        self.txn
            .open_table(RETENTION)?
            .insert(SCRIPT, source.as_bytes())?;
        Ok(())
    }

    /// Records (`Some`) or ends the sweep in progress.
    pub(crate) fn set_retention_run(&mut self, run: Option<&StoredRun>) -> Result<(), StoreError> {
        let mut table = self.txn.open_table(RETENTION)?;
        match run {
            Some(r) => table.insert(RUN, encode(r)?.as_slice())?,
            None => table.remove(RUN)?,
        };
        Ok(())
    }
}

impl Reader {
    /// A customer's consent ledger, oldest first.
    pub(crate) fn consent_ledger(
        &self,
        customer: u64,
    ) -> Result<Vec<StoredConsentEntry>, StoreError> {
        let Some(table) = missing_ok(self.txn.open_table(LEDGER))? else {
            return Ok(Vec::new());
        };
        table
            .range((customer, 0)..=(customer, u64::MAX))?
            .map(|e| decode(e?.1.value(), "consent entry"))
            .collect()
    }

    /// The legal hold on a customer.
    pub(crate) fn hold(&self, customer: u64) -> Result<Option<StoredHold>, StoreError> {
        let Some(table) = missing_ok(self.txn.open_table(HOLDS))? else {
            return Ok(None);
        };
        let value = table.get(customer)?;
        value.map(|v| decode(v.value(), "legal hold")).transpose()
    }

    /// The notice sent to a customer.
    pub(crate) fn notice(&self, customer: u64) -> Result<Option<StoredNotice>, StoreError> {
        let Some(table) = missing_ok(self.txn.open_table(NOTICES))? else {
            return Ok(None);
        };
        let value = table.get(customer)?;
        value.map(|v| decode(v.value(), "notice")).transpose()
    }

    /// Whether any legal hold or notice exists (a sweep then looks them up).
    pub(crate) fn holds_and_notices(&self) -> Result<(u64, u64), StoreError> {
        let holds = match missing_ok(self.txn.open_table(HOLDS))? {
            Some(t) => t.len()?,
            None => 0,
        };
        let notices = match missing_ok(self.txn.open_table(NOTICES))? {
            Some(t) => t.len()?,
            None => 0,
        };
        Ok((holds, notices))
    }

    /// The record of a removed customer.
    pub(crate) fn deletion(&self, customer: u64) -> Result<Option<StoredDeletion>, StoreError> {
        let Some(table) = missing_ok(self.txn.open_table(DELETIONS))? else {
            return Ok(None);
        };
        let value = table.get(customer)?;
        value.map(|v| decode(v.value(), "deletion")).transpose()
    }

    /// The aggregates an anonymized customer left.
    pub(crate) fn aggregate(&self, customer: u64) -> Result<Option<StoredAggregate>, StoreError> {
        let Some(table) = missing_ok(self.txn.open_table(AGGREGATES))? else {
            return Ok(None);
        };
        let value = table.get(customer)?;
        value.map(|v| decode(v.value(), "aggregate")).transpose()
    }

    /// Removal records with ids above `after`, at most `limit`.
    pub(crate) fn deletions(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, StoredDeletion, Option<StoredAggregate>)>, StoreError> {
        let Some(table) = missing_ok(self.txn.open_table(DELETIONS))? else {
            return Ok(Vec::new());
        };
        let aggregates = missing_ok(self.txn.open_table(AGGREGATES))?;
        let mut out = Vec::new();
        for entry in table.range(after.saturating_add(1)..)?.take(limit) {
            let (id, v) = entry?;
            let id = id.value();
            let aggregate = match &aggregates {
                Some(t) => t
                    .get(id)?
                    .map(|v| decode(v.value(), "aggregate"))
                    .transpose()?,
                None => None,
            };
            out.push((id, decode(v.value(), "deletion")?, aggregate));
        }
        Ok(out)
    }

    /// The purposes the company no longer pursues.
    pub(crate) fn retired_purposes(&self) -> Result<Vec<String>, StoreError> {
        let Some(table) = missing_ok(self.txn.open_table(RETENTION))? else {
            return Ok(Vec::new());
        };
        let value = table.get(RETIRED)?;
        Ok(value
            .map(|v| decode(v.value(), "retired purposes"))
            .transpose()?
            .unwrap_or_default())
    }

    /// The installed retention policy, if one was installed.
    pub(crate) fn retention_script(&self) -> Result<Option<String>, StoreError> {
        let Some(table) = missing_ok(self.txn.open_table(RETENTION))? else {
            return Ok(None);
        };
        let value = table.get(SCRIPT)?;
        Ok(value.map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    }

    /// The sweep in progress.
    pub(crate) fn retention_run(&self) -> Result<Option<StoredRun>, StoreError> {
        let Some(table) = missing_ok(self.txn.open_table(RETENTION))? else {
            return Ok(None);
        };
        let value = table.get(RUN)?;
        value
            .map(|v| decode(v.value(), "retention run"))
            .transpose()
    }
}
