//! The interface above the store: [`Snapshot`] (every read, defined once)
//! and [`Txn`] (a write transaction, which reads too). The engine sees only
//! these two traits, as `&dyn Snapshot` and `&mut dyn Txn`; a backend
//! implements them (redb today).

use std::collections::HashMap;

use super::StoreError;
use super::types::{
    CustomerRef, StoredAggregate, StoredAlert, StoredConsent, StoredConsentEntry,
    StoredCredentials, StoredCustomer, StoredDeletion, StoredEvent, StoredFollowUp, StoredHold,
    StoredInteraction, StoredLogLine, StoredMessage, StoredNotice, StoredPluginCounters,
    StoredPolicy, StoredPrincipal, StoredRun, StoredSession, StoredThrottle,
};
use crate::guard::{Charge, Tally};
use crate::plugin::PluginInfo;

/// A secondary index key.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Index<'a> {
    /// Keyed blind index of phone, email or ID number.
    Blind(&'a [u8; 16]),
    /// Owner name.
    Owner(&'a str),
    /// A tag.
    Tag(&'a str),
    /// A status name.
    Status(&'a str),
}

impl Index<'_> {
    /// Whether `record` is filed under this entry. Index tables are not
    /// authenticated (an entry holds only an id), so every hit is
    /// confirmed by the record it names, which is.
    pub(crate) fn matches(&self, record: &CustomerRef<'_>) -> bool {
        match *self {
            Index::Blind(key) => record.blind.iter().any(|(_, b)| b == key),
            Index::Owner(owner) => record.owner == owner,
            Index::Status(status) => record.status == status,
            Index::Tag(tag) => tag.split_once(':').is_some_and(|(field, item)| {
                (record.public.iter())
                    .any(|(name, list)| *name == field && list.split(',').any(|i| i == item))
            }),
        }
    }
}

/// The head of the audit chain: last sequence number and its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct AuditHead {
    pub(crate) seq: u64,
    pub(crate) hash: [u8; 32],
}

impl AuditHead {
    pub(crate) fn encode(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        let (seq, hash) = out.split_at_mut(8);
        seq.copy_from_slice(&self.seq.to_le_bytes());
        hash.copy_from_slice(&self.hash);
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            seq: u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?),
            hash: bytes.get(8..40)?.try_into().ok()?,
        })
    }
}

type Res<T> = Result<T, StoreError>;

/// Every read, on one consistent view of the database: a read snapshot,
/// or a write transaction as it stands (its own writes included).
pub(crate) trait Snapshot {
    // Customers.
    /// The stored customer `id`.
    fn customer(&self, id: u64) -> Res<Option<StoredCustomer>>;
    /// Whether customer `id` exists.
    fn contains_customer(&self, id: u64) -> Res<bool>;
    /// Whether each of `ids` exists, in order.
    fn contains_customers(&self, ids: &[u64]) -> Res<Vec<bool>>;
    /// Calls `f` with a borrowed view of customer `id` if it exists (the
    /// read path decodes without copying); returns whether it did.
    fn visit_customer(&self, id: u64, f: &mut dyn FnMut(CustomerRef<'_>)) -> Res<bool>;
    /// Calls `f` with each customer whose id is above `after`, in id order,
    /// until it returns `false` or `limit` customers were seen; returns the
    /// last id seen. `f` may read through the same snapshot or
    /// transaction; it cannot write.
    fn scan_customers(
        &self,
        after: u64,
        limit: usize,
        f: &mut dyn FnMut(CustomerRef<'_>) -> Res<bool>,
    ) -> Res<Option<u64>>;
    /// Number of customers.
    fn customer_count(&self) -> Res<u64>;
    /// Calls `f` with each id the index table files under `index`, in id
    /// order, until it returns `false`: candidates only, since an index
    /// entry is not authenticated; [`SnapshotExt::scan_filed`] confirms
    /// each against its record. INVARIANT: `f` does not write the index
    /// through the same transaction.
    fn scan_index(&self, index: Index<'_>, f: &mut dyn FnMut(u64) -> Res<bool>) -> Res<()>;

    // Interactions and follow-ups.
    /// A customer's interactions, oldest id first.
    fn interactions(&self, customer: u64) -> Res<Vec<StoredInteraction>>;
    /// A follow-up.
    fn followup(&self, id: u64) -> Res<Option<StoredFollowUp>>;
    /// A customer's follow-ups, by id.
    fn followups_of(&self, customer: u64) -> Res<Vec<StoredFollowUp>>;
    /// Open follow-ups due at or before `before` (µs), optionally for one
    /// assignee, by due time.
    fn followups_due(&self, before: i64, assignee: Option<&str>) -> Res<Vec<StoredFollowUp>>;
    /// Whether the follow-up-due event of a follow-up was handed out.
    fn notified(&self, followup: u64) -> Res<bool>;

    // Principals, credentials and sessions.
    /// A principal.
    fn principal(&self, name: &str) -> Res<Option<StoredPrincipal>>;
    /// Every principal, by name.
    fn principals(&self) -> Res<Vec<StoredPrincipal>>;
    /// Number of principals.
    fn principal_count(&self) -> Res<u64>;
    /// A principal's credentials (empty if none were ever set).
    fn credentials(&self, name: &str) -> Res<StoredCredentials>;
    /// A session by its token hash.
    fn session(&self, hash: &[u8; 32]) -> Res<Option<StoredSession>>;
    /// Every session with its token hash.
    fn sessions(&self) -> Res<Vec<([u8; 32], StoredSession)>>;
    /// A failed-login counter.
    fn throttle(&self, key: &str) -> Res<StoredThrottle>;
    /// The newest policy version, if any.
    fn latest_policy(&self) -> Res<Option<(u64, StoredPolicy)>>;

    // The audit chain.
    /// The head of the chain.
    fn audit_head(&self) -> Res<AuditHead>;
    /// Calls `f` with each stored entry from `first` on, in sequence order,
    /// until it returns `false`.
    fn scan_audit(&self, first: u64, f: &mut dyn FnMut(u64, &[u8]) -> Res<bool>) -> Res<()>;
    /// The last `n` stored entries, oldest first.
    fn audit_tail(&self, n: usize) -> Res<Vec<(u64, Vec<u8>)>>;
    /// The stored bytes of audit entry `seq`.
    fn audit_entry(&self, seq: u64) -> Res<Option<Vec<u8>>>;
    /// (time in µs, seq) of `actor`'s audit entries from `from` (a time
    /// and the first seq at that time) to `to` (µs, inclusive), in time
    /// order, at most `limit`, as the index says (to be checked against
    /// the entries).
    fn audit_seqs_by_actor(
        &self,
        actor: &str,
        from: (i64, u64),
        to: i64,
        limit: usize,
    ) -> Res<Vec<(i64, u64)>>;
    /// Sequence numbers of the audit entries about `customer` after seq
    /// `after`, oldest first, at most `limit`, as the index says.
    fn audit_seqs_of_customer(&self, customer: u64, after: u64, limit: usize) -> Res<Vec<u64>>;
    /// Whether the indexes file entry `seq` under its actor (at its time)
    /// and under each customer it names.
    fn audit_indexed(&self, seq: u64, actor: &str, at: i64, customers: &[u64]) -> Res<bool>;
    /// How many rows the indexes by actor and by customer hold.
    fn audit_index_rows(&self) -> Res<(u64, u64)>;

    // Plugins and what they produce.
    /// An installed plugin.
    fn plugin(&self, name: &str) -> Res<Option<PluginInfo>>;
    /// Every installed plugin, by name.
    fn plugins(&self) -> Res<Vec<PluginInfo>>;
    /// A plugin's code.
    fn plugin_code(&self, name: &str) -> Res<Option<Vec<u8>>>;
    /// One value of a plugin's private state.
    fn plugin_state(&self, plugin: &str, key: &str) -> Res<Option<Vec<u8>>>;
    /// One value of a plugin's state filed under a customer.
    fn customer_state(&self, customer: u64, plugin: &str, key: &str) -> Res<Option<Vec<u8>>>;
    /// A plugin's counters (zero when it has none yet).
    fn plugin_counters(&self, plugin: &str) -> Res<StoredPluginCounters>;
    /// The newest `limit` lines of a plugin's log, oldest first.
    fn plugin_log(&self, plugin: &str, limit: usize) -> Res<Vec<StoredLogLine>>;
    /// The customer a plugin's external id is linked to.
    fn link(&self, hash: &[u8; 16]) -> Res<Option<u64>>;
    /// The oldest `limit` messages of the outbox.
    fn messages(&self, limit: usize) -> Res<Vec<(u64, StoredMessage)>>;
    /// The messages queued for a customer.
    fn messages_of(&self, customer: u64) -> Res<Vec<StoredMessage>>;
    /// The newest `limit` alerts that `wanted` keeps, newest first.
    fn alerts_where(
        &self,
        limit: usize,
        wanted: &dyn Fn(&StoredAlert) -> bool,
    ) -> Res<Vec<(u64, StoredAlert)>>;
    /// One alert.
    fn alert(&self, id: u64) -> Res<Option<StoredAlert>>;
    /// Everything the guard counted from minute `since` on: per actor,
    /// its counts by minute and the customers it was shown by the minute
    /// it last was; and whether older entries are left to prune.
    fn guard_tallies(&self, since: i64) -> Res<(HashMap<String, Tally>, bool)>;
    /// The oldest `limit` events of the queue after id `after`, in order.
    fn queued_events(&self, after: u64, limit: usize) -> Res<Vec<(u64, StoredEvent)>>;
    /// How many events the queue holds.
    fn queued_event_count(&self) -> Res<u64>;

    // The privacy lifecycle.
    /// A customer's consent state for one key (`purpose` or `purpose:field`).
    fn consent(&self, customer: u64, key: &str) -> Res<Option<StoredConsent>>;
    /// A customer's consent states, by key.
    fn consents(&self, customer: u64) -> Res<Vec<(String, StoredConsent)>>;
    /// A customer's consent ledger, oldest first.
    fn consent_ledger(&self, customer: u64) -> Res<Vec<StoredConsentEntry>>;
    /// The legal hold on a customer.
    fn hold(&self, customer: u64) -> Res<Option<StoredHold>>;
    /// The retention notice a customer was sent.
    fn notice(&self, customer: u64) -> Res<Option<StoredNotice>>;
    /// How many holds and notices there are (a sweep skips the lookups of
    /// a kind there is none of).
    fn holds_and_notices(&self) -> Res<(u64, u64)>;
    /// The deletion record of a removed customer.
    fn deletion(&self, customer: u64) -> Res<Option<StoredDeletion>>;
    /// The aggregate an anonymized customer left.
    fn aggregate(&self, customer: u64) -> Res<Option<StoredAggregate>>;
    /// Deletion records of customers above `after`, at most `limit`.
    fn deletions(
        &self,
        after: u64,
        limit: usize,
    ) -> Res<Vec<(u64, StoredDeletion, Option<StoredAggregate>)>>;
    /// The purposes the company no longer pursues.
    fn retired_purposes(&self) -> Res<Vec<String>>;
    /// The installed retention script.
    fn retention_script(&self) -> Res<Option<String>>;
    /// Where an unfinished retention sweep got to.
    fn retention_run(&self) -> Res<Option<StoredRun>>;
    /// A flag or value the engine keeps about the database itself (e.g.
    /// that a migration above the store is done).
    fn setting(&self, name: &str) -> Res<Option<Vec<u8>>>;
}

/// What every snapshot offers beyond the trait's object-safe reads.
pub(crate) trait SnapshotExt: Snapshot {
    /// The first `limit` customers filed under `index`.
    fn lookup(&self, index: Index<'_>, limit: usize) -> Res<Vec<u64>> {
        let mut ids = Vec::new();
        if limit > 0 {
            self.scan_filed(index, &mut |record| {
                ids.push(record.id);
                Ok::<_, StoreError>(ids.len() < limit)
            })?;
        }
        Ok(ids)
    }

    /// Calls `f` with each customer filed under `index` whose record
    /// confirms it, in id order, while `f` returns `true`.
    fn scan_filed<E: From<StoreError>>(
        &self,
        index: Index<'_>,
        f: &mut dyn FnMut(CustomerRef<'_>) -> Result<bool, E>,
    ) -> Result<(), E> {
        let mut failed = None;
        self.scan_index(index, &mut |id| {
            let mut more = true;
            self.visit_customer(id, &mut |record| {
                if !index.matches(&record) {
                    return;
                }
                match f(record) {
                    Ok(go_on) => more = go_on,
                    Err(e) => {
                        failed = Some(e);
                        more = false;
                    }
                }
            })?;
            Ok(more)
        })?;
        failed.map_or(Ok(()), Err)
    }

    /// Calls `f` with a borrowed view of customer `id` (`None` if absent).
    fn with_customer<T, E: From<StoreError>>(
        &self,
        id: u64,
        f: impl FnOnce(Option<CustomerRef<'_>>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut f = Some(f);
        let mut out = None;
        self.visit_customer(id, &mut |record| {
            if let Some(f) = f.take() {
                out = Some(f(Some(record)));
            }
        })?;
        match (out, f) {
            (Some(done), _) => done,
            (None, Some(f)) => f(None),
            (None, None) => {
                Err(StoreError::Corrupt(format!("customer {id}: visited twice")).into())
            }
        }
    }
}

impl<S: Snapshot + ?Sized> SnapshotExt for S {}

/// A write transaction: nothing it writes is seen by others until the
/// backend commits it, and nothing is kept if it is dropped uncommitted.
pub(crate) trait Txn: Snapshot {
    /// Records that `id` is in use, so ids handed out after a reopen are
    /// greater.
    fn record_id(&mut self, id: u64);
    /// Appends an encoded audit entry and moves the head to it.
    fn push_audit(&mut self, head: AuditHead, bytes: &[u8]) -> Res<()>;

    // Customers.
    /// Inserts or replaces a customer.
    fn put_customer(&mut self, customer: &StoredCustomer) -> Res<()>;
    /// Inserts or replaces customers.
    fn put_customers(&mut self, customers: &[&StoredCustomer]) -> Res<()>;
    /// Removes a customer record (its index entries are removed apart).
    /// The data file is then rewritten, so that no freed page keeps it.
    fn remove_customer(&mut self, id: u64) -> Res<()>;
    /// Has the data file rewritten after this transaction, for one that
    /// erases personal values without removing their customer (the
    /// pages it frees keep them otherwise).
    fn owe_rewrite(&mut self);
    /// Adds (`add`) or removes index entries, best given in key order.
    fn index(&mut self, entries: &[(Index<'_>, u64)], add: bool) -> Res<()>;

    // Interactions and follow-ups.
    /// Stores an interaction.
    fn put_interaction(&mut self, record: &StoredInteraction) -> Res<()>;
    /// Removes every interaction of a customer; returns how many.
    fn remove_interactions(&mut self, customer: u64) -> Res<usize>;
    /// Stores a follow-up and keeps the open-follow-up index in step.
    fn put_followup(&mut self, record: &StoredFollowUp) -> Res<()>;
    /// Removes every follow-up of a customer with its delivered-event marks.
    fn remove_followups(&mut self, customer: u64) -> Res<()>;
    /// Marks a follow-up's due event handed out.
    fn mark_notified(&mut self, followup: u64, at: i64) -> Res<()>;

    // Principals, credentials and sessions.
    /// Inserts or replaces a principal.
    fn put_principal(&mut self, p: &StoredPrincipal) -> Res<()>;
    /// Replaces a principal's credentials.
    fn put_credentials(&mut self, name: &str, c: &StoredCredentials) -> Res<()>;
    /// Inserts or replaces a session.
    fn put_session(&mut self, hash: &[u8; 32], s: &StoredSession) -> Res<()>;
    /// Removes the sessions `remove` picks (given each token hash and
    /// session); returns how many went.
    fn remove_sessions(
        &mut self,
        remove: &mut dyn FnMut(&[u8], &StoredSession) -> bool,
    ) -> Res<usize>;
    /// Sets a failed-login counter; a zero counter is removed.
    fn put_throttle(&mut self, key: &str, t: StoredThrottle) -> Res<()>;
    /// Stores a new policy version.
    fn put_policy(&mut self, version: u64, p: &StoredPolicy) -> Res<()>;

    // Plugins and what they produce.
    /// Stores a plugin's record and, when given, its code.
    fn put_plugin(&mut self, info: &PluginInfo, code: Option<&[u8]>) -> Res<()>;
    /// Removes a plugin with its code, state (unscoped and filed under
    /// customers), counters and log.
    fn remove_plugin(&mut self, name: &str) -> Res<()>;
    /// Sets one value of a plugin's private state; returns the bytes of
    /// all its state, as its counters now hold them.
    fn put_plugin_state(&mut self, plugin: &str, key: &str, value: &[u8]) -> Res<u64>;
    /// Removes one value of a plugin's private state, uncounted (as a
    /// version before the counters wrote it).
    fn remove_uncounted_state(&mut self, plugin: &str, key: &str) -> Res<()>;
    /// Sets one value of a plugin's state filed under a customer; returns
    /// the bytes of all its state.
    fn put_customer_state(
        &mut self,
        customer: u64,
        plugin: &str,
        key: &str,
        value: &[u8],
    ) -> Res<u64>;
    /// Sets a plugin's counters.
    fn put_plugin_counters(&mut self, plugin: &str, counters: &StoredPluginCounters) -> Res<()>;
    /// Appends lines to a plugin's log, keeping the newest.
    fn append_plugin_log(&mut self, plugin: &str, lines: &[StoredLogLine]) -> Res<()>;
    /// Links a plugin's external id (its keyed hash) to a customer.
    fn put_link(&mut self, hash: &[u8; 16], customer: u64) -> Res<()>;
    /// Removes a customer's external-id links, consent states, queued
    /// messages and the plugin state filed under it.
    fn remove_plugin_traces(&mut self, customer: u64) -> Res<()>;
    /// Queues a message in the outbox.
    fn put_message(&mut self, id: u64, m: &StoredMessage) -> Res<()>;
    /// Removes a message from the outbox; returns whether it was there.
    fn remove_message(&mut self, id: u64) -> Res<bool>;
    /// Sets a customer's consent state for one key.
    fn put_consent(&mut self, customer: u64, key: &str, c: &StoredConsent) -> Res<()>;
    /// Records an alert.
    fn put_alert(&mut self, id: u64, a: &StoredAlert) -> Res<()>;
    /// Files audit entry `seq` (by `actor`, at `at` µs, about
    /// `customers`) in the indexes by actor and by customer.
    fn index_audit(&mut self, seq: u64, actor: &str, at: i64, customers: &[u64]) -> Res<()>;
    /// Adds what the guard counted for one request to the actor's minute,
    /// and records when the customers it names were last shown.
    fn add_guard_charge(&mut self, charge: &Charge) -> Res<()>;
    /// Removes what the guard counted before minute `before`.
    fn prune_guard(&mut self, before: i64) -> Res<()>;
    /// Queues an event under `id` (ids grow in commit order).
    fn queue_event(&mut self, id: u64, e: &StoredEvent) -> Res<()>;
    /// Removes a delivered event from the queue.
    fn remove_event(&mut self, id: u64) -> Res<()>;

    // The privacy lifecycle.
    /// Appends an entry to a customer's consent ledger.
    fn append_consent(&mut self, customer: u64, entry: &StoredConsentEntry) -> Res<()>;
    /// Removes a customer's consent ledger, hold and notice.
    fn remove_privacy_traces(&mut self, customer: u64) -> Res<()>;
    /// Places (`Some`) or releases a legal hold.
    fn set_hold(&mut self, customer: u64, hold: Option<&StoredHold>) -> Res<()>;
    /// Records (`Some`) or withdraws a retention notice.
    fn set_notice(&mut self, customer: u64, notice: Option<&StoredNotice>) -> Res<()>;
    /// Keeps the deletion record (and aggregate) of a removed customer.
    fn put_deletion(
        &mut self,
        customer: u64,
        record: &StoredDeletion,
        aggregate: Option<&StoredAggregate>,
    ) -> Res<()>;
    /// Replaces the list of retired purposes.
    fn put_retired_purposes(&mut self, retired: &[String]) -> Res<()>;
    /// Installs a retention script.
    fn put_retention_script(&mut self, source: &str) -> Res<()>;
    /// Records (`Some`) or clears where a retention sweep got to.
    fn set_retention_run(&mut self, run: Option<&StoredRun>) -> Res<()>;
    /// Sets what [`Snapshot::setting`] reads.
    fn put_setting(&mut self, name: &str, value: &[u8]) -> Res<()>;
}
