//! The handles a body of the path works through: [`Read`] (one snapshot)
//! and [`Write`] (one transaction), each with the actor, the policy's
//! decisions and the operation's audit entry.

use super::access::{Decider, Filed, Prepared, prepare};
use super::{Caller, Core, Emitted, Entry, Keep};
use crate::audit::{self, Outcome, Record};
use crate::guard::{Access, Charge};
use crate::identity::Actor;
use crate::model::{Customer, CustomerId};
use crate::policy::{Action, Decision};
use crate::records::Records;
use crate::store::{CustomerRef, Snapshot, SnapshotExt, StoredCustomer, Txn};
use crate::{Error, Result};

/// A read's view of the engine: one snapshot, the actor, the policy.
pub(crate) struct Read<'a> {
    pub(super) core: &'a Core,
    pub(super) snapshot: &'a dyn Snapshot,
    pub(super) decider: Decider<'a>,
    pub(super) entry: &'a mut Entry,
    /// What the guard counts what this read shows as.
    pub(super) access: Access,
    /// What the guard counted, written with the read's audit entry.
    pub(super) charge: &'a mut Charge,
    /// The caller, for a step-up past a budget.
    pub(super) caller: &'a Caller,
    /// The minute a lookup's provisional miss was counted in, until it
    /// shows a customer.
    pub(super) pending_miss: Option<i64>,
}

impl<'a> Read<'a> {
    pub(crate) fn snapshot(&self) -> &'a dyn Snapshot {
        self.snapshot
    }

    pub(crate) fn actor(&self) -> &Actor {
        self.decider.actor()
    }

    pub(crate) fn records(&self) -> &'a Records {
        &self.core.records
    }

    /// The decisions of this operation.
    pub(crate) fn decider(&mut self) -> &mut Decider<'a> {
        &mut self.decider
    }

    /// Names in the audit entry the customers and fields this read
    /// touched (added to those the operation named).
    pub(crate) fn touched(
        &mut self,
        customers: impl IntoIterator<Item = u64>,
        fields: impl IntoIterator<Item = String>,
    ) {
        for c in customers {
            if !self.entry.customers.contains(&c) {
                self.entry.customers.push(c);
            }
        }
        if self.entry.fields.is_empty() {
            self.entry.fields.extend(fields);
            return;
        }
        for f in fields {
            if !self.entry.fields.contains(&f) {
                self.entry.fields.push(f);
            }
        }
    }
}

/// A write's view of the engine: one transaction, the actor, the policy.
pub(crate) struct Write<'a> {
    pub(super) core: &'a Core,
    pub(super) txn: &'a mut dyn Txn,
    pub(super) decider: Decider<'a>,
    pub(super) caller: &'a Caller,
    pub(super) entry: &'a mut Entry,
    pub(super) emitted: &'a mut Vec<Emitted>,
    pub(super) keep: &'a mut Vec<Keep>,
    pub(super) refused_as: &'a mut Option<Entry>,
    /// Entries of consequences, appended after the operation's own entry
    /// (the cause comes first in the chain); `None` in an itemized
    /// operation, whose items are appended as they end.
    pub(super) consequences: Option<&'a mut Vec<Record>>,
}

impl<'a> Write<'a> {
    pub(crate) fn txn(&mut self) -> &mut dyn Txn {
        self.txn
    }

    pub(crate) fn actor(&self) -> &Actor {
        self.decider.actor()
    }

    pub(crate) fn records(&self) -> &'a Records {
        &self.core.records
    }

    pub(crate) fn core(&self) -> &'a Core {
        self.core
    }

    /// Says in the operation's audit entry what it acted on, once the
    /// body knows.
    pub(crate) fn retarget(&mut self, target: impl Into<String>) {
        self.entry.target = Some(target.into());
    }

    /// Names more customers in the operation's audit entry.
    pub(crate) fn touched(&mut self, customers: impl IntoIterator<Item = u64>) {
        for c in customers {
            if !self.entry.customers.contains(&c) {
                self.entry.customers.push(c);
            }
        }
    }

    /// Appends an audit entry of this transaction: an item of an itemized
    /// operation now, or a consequence (fields erased by a withdrawal, a
    /// message dropped) after the operation's own entry.
    pub(crate) fn audit(&mut self, entry: Entry, outcome: Outcome) -> Result<()> {
        let record = entry.into_record(self.caller, outcome);
        match &mut self.consequences {
            Some(after) => after.push(record),
            None => {
                audit::append(self.txn, self.core.records.ring.audit_key(), &record)?;
            }
        }
        Ok(())
    }

    /// Queues an event for plugins, delivered after the commit.
    pub(crate) fn emit(&mut self, event: Emitted) {
        self.emitted.push(event);
    }

    /// What to keep of the attempt if this write is refused.
    pub(crate) fn keep_on_refusal(&mut self, kept: Keep) {
        self.keep.push(kept);
    }

    /// Starts an item of an itemized operation: a refusal from here on is
    /// recorded with the item's `entry`.
    pub(crate) fn begin_item(&mut self, entry: Entry) {
        *self.refused_as = Some(entry);
    }

    /// Ends the item begun last: its entry is audited with `outcome`, and a
    /// refusal is recorded with the operation's own entry again.
    pub(crate) fn end_item(&mut self, outcome: Outcome) -> Result<()> {
        match self.refused_as.take() {
            Some(entry) => self.audit(entry, outcome),
            None => Ok(()),
        }
    }
}

impl<'a> Read<'a> {
    /// Calls `f` with customer `id` and the policy's decision on `action`,
    /// if it exists and the policy allows: [`Error::NotFound`] or the
    /// policy's refusal otherwise.
    pub(crate) fn customer<T>(
        &mut self,
        id: CustomerId,
        action: Action,
        f: impl FnOnce(&mut Self, &CustomerRef<'_>, Decision) -> Result<T>,
    ) -> Result<T> {
        let snapshot = self.snapshot;
        snapshot.with_customer(id, |record| {
            // An erased customer's record (in a data file older than its
            // key store) is a miss.
            let Some(record) = record else {
                return Err(Error::NotFound(format!("customer {id}")));
            };
            if !self.core.records.has_key(id)? {
                return Err(Error::NotFound(format!("customer {id}")));
            }
            let decision = self.decider.require(snapshot, action, &record)?;
            self.reveal(&[id])?;
            f(self, &record, decision)
        })
    }

    /// The customer as `decision` allows: hidden fields absent, masked ones
    /// masked; names the customer and the fields shown in the audit entry.
    /// For a customer the guard was shown ([`Read::reveal`]).
    pub(crate) fn view(
        &mut self,
        record: &CustomerRef<'_>,
        decision: &Decision,
    ) -> Result<Customer> {
        let prepared = prepare(&self.core.records.schema, record, decision)?;
        self.open(prepared)
    }

    /// The customer as `decision` allows, nothing decrypted yet: what a
    /// read collects before the guard sees what it reveals.
    pub(crate) fn prepare(
        &self,
        record: &CustomerRef<'_>,
        decision: &Decision,
    ) -> Result<Prepared> {
        prepare(&self.core.records.schema, record, decision)
    }

    /// Opens a prepared view (after [`Read::reveal`]), naming the customer
    /// and the fields shown in the audit entry.
    pub(crate) fn open(&mut self, prepared: Prepared) -> Result<Customer> {
        let view = prepared.open(&self.core.records)?;
        self.touched([view.id], view.fields.keys().cloned());
        Ok(view)
    }
}

impl Write<'_> {
    /// The stored customer `id` if the policy lets the actor do `action` to
    /// it: [`Error::NotFound`] or the policy's refusal otherwise.
    pub(crate) fn customer(&mut self, id: CustomerId, action: Action) -> Result<StoredCustomer> {
        let Some(record) = self.txn.customer(id)? else {
            return Err(Error::NotFound(format!("customer {id}")));
        };
        if !self.core.records.has_key(id)? {
            return Err(Error::NotFound(format!("customer {id}")));
        }
        self.require(action, &record)?;
        Ok(record)
    }

    /// The policy's decision on `record`, or its refusal.
    pub(crate) fn require(&mut self, action: Action, record: &dyn Filed) -> Result<Decision> {
        self.decider.require(&*self.txn, action, record)
    }
}
