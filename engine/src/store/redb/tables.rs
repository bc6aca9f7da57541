//! The redb tables of the data file, and where a transaction keeps them
//! open: a table is opened once per transaction, on first use (opening
//! one looks it up in the file's table of tables, which costs more than
//! most of the reads and writes made through it).

use std::cell::{OnceCell, RefCell};

use redb::{
    Key, MultimapTable, MultimapTableDefinition, ReadOnlyMultimapTable, ReadOnlyTable,
    ReadTransaction, ReadableMultimapTable, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, Value, WriteTransaction,
};

use super::super::StoreError;
use super::super::integrity::{Integrity, IntegrityFailure};
use super::super::types::decode_message;
use super::Open;
use super::tagged::{self, ShownKey, Tagged};

/// A table of the data file: its definition, and its place among the
/// tables a read ([`Seen`]) or a write ([`Opened`]) transaction has open.
pub(in crate::store) trait Named: Copy {
    type K: ShownKey;
    type V: Value + 'static;
    fn def(self) -> TableDefinition<'static, Self::K, Self::V>;
    fn name(self) -> &'static str;
    fn seen(self, tables: &Seen) -> &OnceCell<Option<ReadOnlyTable<Self::K, Self::V>>>;
    fn opened<'a, 't>(
        self,
        tables: &'a Opened<'t>,
    ) -> &'a RefCell<Option<Table<'t, Self::K, Self::V>>>;
}

/// [`Named`] for a multimap table.
pub(in crate::store) trait NamedMultimap: Copy {
    type K: Key + 'static;
    type V: Key + 'static;
    fn def(self) -> MultimapTableDefinition<'static, Self::K, Self::V>;
    fn seen(self, tables: &Seen) -> &OnceCell<Option<ReadOnlyMultimapTable<Self::K, Self::V>>>;
    fn opened<'a, 't>(
        self,
        tables: &'a Opened<'t>,
    ) -> &'a RefCell<Option<MultimapTable<'t, Self::K, Self::V>>>;
}

/// The open table `T` of a write transaction.
pub(in crate::store) type TableOf<'t, T> = Table<'t, <T as Named>::K, <T as Named>::V>;

/// The open multimap table `T` of a write transaction.
pub(in crate::store) type MultimapOf<'t, T> =
    MultimapTable<'t, <T as NamedMultimap>::K, <T as NamedMultimap>::V>;

/// A value type of storage format 1, which stored records without tags.
pub(super) trait Untagged: Value + 'static {
    /// The record's bytes, as format 2 tags them.
    fn body(value: &Self::SelfType<'_>) -> Vec<u8>;
}

impl Untagged for &'static [u8] {
    fn body(value: &&[u8]) -> Vec<u8> {
        value.to_vec()
    }
}

impl Untagged for u64 {
    fn body(value: &u64) -> Vec<u8> {
        value.to_le_bytes().to_vec()
    }
}

impl Untagged for i64 {
    fn body(value: &i64) -> Vec<u8> {
        value.to_le_bytes().to_vec()
    }
}

/// Declares each table once: a constant of its own marker type (what the
/// reads and writes name), its definition, and its slots. `records` are
/// authenticated ([`Tagged`]; `was` is their format-1 value type);
/// `tables` hold what authenticates itself (the audit chain, the key
/// check) or an index checked against the records it points to.
macro_rules! tables {
    (
        records { $( $(#[$rdoc:meta])* $rkonst:ident: $rty:ident, $rfield:ident, $rk:ty, was $old:ty = $rname:literal; )* }
        tables { $( $(#[$doc:meta])* $konst:ident: $ty:ident, $field:ident, $k:ty => $v:ty = $name:literal; )* }
        multimaps { $( $(#[$mdoc:meta])* $mkonst:ident: $mty:ident, $mfield:ident, $mk:ty => $mv:ty = $mname:literal; )* }
    ) => {
        tables!(@named $( $(#[$rdoc])* $rkonst: $rty, $rfield, $rk => Tagged = $rname; )*);
        tables!(@named $( $(#[$doc])* $konst: $ty, $field, $k => $v = $name; )*);
        $(
            $(#[$mdoc])*
            #[derive(Clone, Copy)]
            pub(super) struct $mty;
            $(#[$mdoc])*
            pub(super) const $mkonst: $mty = $mty;
            impl NamedMultimap for $mty {
                type K = $mk;
                type V = $mv;
                fn def(self) -> MultimapTableDefinition<'static, $mk, $mv> {
                    MultimapTableDefinition::new($mname)
                }
                fn seen(self, tables: &Seen) -> &OnceCell<Option<ReadOnlyMultimapTable<$mk, $mv>>> {
                    &tables.$mfield
                }
                fn opened<'a, 't>(
                    self,
                    tables: &'a Opened<'t>,
                ) -> &'a RefCell<Option<MultimapTable<'t, $mk, $mv>>> {
                    &tables.$mfield
                }
            }
        )*

        /// The tables a read snapshot has opened (`None`: the file lacks it).
        #[derive(Default)]
        pub(in crate::store) struct Seen {
            $( $rfield: OnceCell<Option<ReadOnlyTable<$rk, Tagged>>>, )*
            $( $field: OnceCell<Option<ReadOnlyTable<$k, $v>>>, )*
            $( $mfield: OnceCell<Option<ReadOnlyMultimapTable<$mk, $mv>>>, )*
        }

        /// The tables a write transaction has opened. They close (and the
        /// transaction can commit) when this is dropped.
        #[derive(Default)]
        pub(in crate::store) struct Opened<'t> {
            $( $rfield: RefCell<Option<Table<'t, $rk, Tagged>>>, )*
            $( $field: RefCell<Option<Table<'t, $k, $v>>>, )*
            $( $mfield: RefCell<Option<MultimapTable<'t, $mk, $mv>>>, )*
        }

        /// Opens every table, creating the missing ones.
        fn open_all(txn: &WriteTransaction) -> Result<(), StoreError> {
            $( txn.open_table($rkonst.def())?; )*
            $( txn.open_table($konst.def())?; )*
            $( txn.open_multimap_table($mkonst.def())?; )*
            Ok(())
        }

        /// Checks every record of every table, reporting each that fails.
        pub(super) fn verify_records(
            source: &impl Open,
            report: &mut dyn FnMut(IntegrityFailure),
        ) -> Result<u64, StoreError> {
            let mut checked = 0;
            $( checked += verify_table(source, $rkonst, report)?; )*
            Ok(checked)
        }

        /// The name of every table this build knows.
        pub(super) const KNOWN: &[&str] = &[$($rname,)* $($name,)* $($mname,)*];

        /// Copies every table `from` holds into `to`, record by record.
        pub(super) fn copy_all(
            from: &ReadTransaction,
            to: &WriteTransaction,
        ) -> Result<(), StoreError> {
            $( copy_table(from, to, $rkonst.def())?; )*
            $( copy_table(from, to, $konst.def())?; )*
            $( copy_multimap(from, to, $mkonst.def())?; )*
            Ok(())
        }

        /// Storage format 1 to 2: tags every record where it lies.
        pub(super) fn tag_records(
            txn: &WriteTransaction,
            integrity: &Integrity,
        ) -> Result<(), StoreError> {
            $( tag_table::<$rty, $old>(txn, integrity, $rkonst)?; )*
            Ok(())
        }
    };
    (@named $( $(#[$doc:meta])* $konst:ident: $ty:ident, $field:ident, $k:ty => $v:ty = $name:literal; )*) => {
        $(
            $(#[$doc])*
            #[derive(Clone, Copy)]
            pub(super) struct $ty;
            $(#[$doc])*
            pub(super) const $konst: $ty = $ty;
            impl Named for $ty {
                type K = $k;
                type V = $v;
                fn def(self) -> TableDefinition<'static, $k, $v> {
                    TableDefinition::new($name)
                }
                fn name(self) -> &'static str {
                    $name
                }
                fn seen(self, tables: &Seen) -> &OnceCell<Option<ReadOnlyTable<$k, $v>>> {
                    &tables.$field
                }
                fn opened<'a, 't>(self, tables: &'a Opened<'t>) -> &'a RefCell<Option<Table<'t, $k, $v>>> {
                    &tables.$field
                }
            }
        )*
    };
}

tables! {
    records {
    /// The database's settings: its store id, schema, audit head and
    /// next id.
    SETTINGS: Settings, settings, &'static str, was &'static [u8] = "settings";
    CUSTOMERS: Customers, customers, u64, was &'static [u8] = "customers";
    /// (customer, interaction id) → interaction.
    INTERACTIONS: Interactions, interactions, (u64, u64), was &'static [u8] = "interactions";
    FOLLOWUPS: Followups, followups, u64, was &'static [u8] = "followups";
    /// Follow-ups whose due event was handed out → when.
    NOTIFIED: Notified, notified, u64, was i64 = "followups_notified";
    PRINCIPALS: Principals, principals, &'static str, was &'static [u8] = "principals";
    /// Principal name → credentials.
    CREDENTIALS: Credentials, credentials, &'static str, was &'static [u8] = "credentials";
    /// Keyed hash of a session token → session.
    SESSIONS: Sessions, sessions, &'static [u8], was &'static [u8] = "sessions";
    /// `name:<account>` or `source:<address>` → failed-login counter.
    THROTTLE: Throttle, throttle, &'static str, was &'static [u8] = "throttle";
    /// Policy version → installed pack.
    POLICIES: Policies, policies, u64, was &'static [u8] = "policies";
    PLUGINS: Plugins, plugins, &'static str, was &'static [u8] = "plugins";
    PLUGIN_CODE: PluginCode, plugin_code, &'static str, was &'static [u8] = "plugin_code";
    PLUGIN_STATE: PluginState, plugin_state, (&'static str, &'static str), was &'static [u8] = "plugin_state";
    PLUGIN_LOG: PluginLog, plugin_log, (&'static str, u64), was &'static [u8] = "plugin_log";
    /// (customer, `<plugin>/<keyed name>`) → state sealed under the
    /// customer's key.
    PLUGIN_CUSTOMER_STATE: PluginCustomerState, plugin_customer_state, (u64, &'static str), was &'static [u8] = "plugin_customer_state";
    /// Plugin → its state's size and its recent faults.
    PLUGIN_COUNTERS: PluginCounters, plugin_counters, &'static str, was &'static [u8] = "plugin_counters";
    /// Keyed hash of (plugin, external id) → customer.
    LINKS: Links, links, &'static [u8], was u64 = "plugin_links";
    OUTBOX: Outbox, outbox, u64, was &'static [u8] = "outbox";
    /// (customer, `purpose` or `purpose:field`) → consent state.
    CONSENTS: Consents, consents, (u64, &'static str), was &'static [u8] = "consents";
    ALERTS: Alerts, alerts, u64, was &'static [u8] = "alerts";
    /// (customer, seq) → consent ledger entry.
    LEDGER: Ledger, ledger, (u64, u64), was &'static [u8] = "consent_ledger";
    HOLDS: Holds, holds, u64, was &'static [u8] = "legal_holds";
    NOTICES: Notices, notices, u64, was &'static [u8] = "retention_notices";
    DELETIONS: Deletions, deletions, u64, was &'static [u8] = "deletions";
    AGGREGATES: Aggregates, aggregates, u64, was &'static [u8] = "anonymized";
    /// The retention script, the retired purposes and a sweep's progress.
    RETENTION: Retention, retention, &'static str, was &'static [u8] = "retention";
    /// Events waiting for delivery, by queue id (in commit order): one
    /// entry per subscribed plugin, naming the event by kind and ids.
    EVENTS: Events, events, u64, was &'static [u8] = "event_queue";
    /// (actor, minute) → what the guard counted in that minute.
    GUARD_COUNTS: GuardCounts, guard_counts, (&'static str, i64), was &'static [u8] = "guard_counts";
    /// (actor, customer) → the minute the actor was last shown it, for
    /// actors whose distinct customers are counted.
    GUARD_SEEN: GuardSeen, guard_seen, (&'static str, u64), was i64 = "guard_seen";
    }
    tables {
    /// The storage format and the key-check value: read before the key is
    /// known, and checked against the key store and the key.
    META: Meta, meta, &'static str => &'static [u8] = "meta";
    /// The audit chain, whose keyed hashes authenticate it.
    AUDIT: Audit, audit, u64 => &'static [u8] = "audit";
    /// Open follow-ups by (due time in µs, id) → assignee; checked against
    /// the follow-up it names.
    FOLLOWUPS_OPEN: FollowupsOpen, followups_open, (i64, u64) => &'static str = "followups_open";
    /// The audit chain by actor: (actor, the entry's time in µs, seq);
    /// checked against the (keyed) entry it names.
    AUDIT_BY_ACTOR: AuditByActor, audit_by_actor, (&'static str, i64, u64) => () = "audit_by_actor";
    /// The audit chain by customer: (customer, seq) → the entry's time in
    /// µs; checked against the entry it names.
    AUDIT_BY_CUSTOMER: AuditByCustomer, audit_by_customer, (u64, u64) => i64 = "audit_by_customer";
    }
    // Indexes: each hit is checked against the record it names.
    multimaps {
    BLIND: Blind, blind, &'static [u8] => u64 = "blind_index";
    BY_OWNER: ByOwner, by_owner, &'static str => u64 = "by_owner";
    BY_TAG: ByTag, by_tag, &'static str => u64 = "by_tag";
    BY_STATUS: ByStatus, by_status, &'static str => u64 = "by_status";
    /// Follow-ups of each customer.
    FOLLOWUPS_BY_CUSTOMER: FollowupsByCustomer, followups_by_customer, u64 => u64 = "followups_by_customer";
    LINKS_BY_CUSTOMER: LinksByCustomer, links_by_customer, u64 => &'static [u8] = "plugin_links_by_customer";
    OUTBOX_BY_CUSTOMER: OutboxByCustomer, outbox_by_customer, u64 => u64 = "outbox_by_customer";
    }
}

/// Checks every record of `table`.
fn verify_table<T: Named<V = Tagged>>(
    source: &impl Open,
    table: T,
    report: &mut dyn FnMut(IntegrityFailure),
) -> Result<u64, StoreError> {
    let Some(open) = source.table(table)? else {
        return Ok(0);
    };
    let mut checked = 0;
    for entry in open.iter()? {
        let (key, value) = entry?;
        checked += 1;
        match source.body(table, &key.value(), value.value()) {
            Ok(_) => {}
            Err(StoreError::Integrity { table, key }) => report(IntegrityFailure { table, key }),
            Err(e) => return Err(e),
        }
    }
    Ok(checked)
}

/// Copies the table `def` names, if `from` has it, into `to`.
fn copy_table<K: Key + 'static, V: Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    def: TableDefinition<'static, K, V>,
) -> Result<(), StoreError> {
    let source = match from.open_table(def) {
        Ok(source) => source,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut copy = to.open_table(def)?;
    for entry in source.iter()? {
        let (key, value) = entry?;
        copy.insert(key.value(), value.value())?;
    }
    Ok(())
}

/// [`copy_table`], for a multimap table.
fn copy_multimap<K: Key + 'static, V: Key + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    def: MultimapTableDefinition<'static, K, V>,
) -> Result<(), StoreError> {
    let source = match from.open_multimap_table(def) {
        Ok(source) => source,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut copy = to.open_multimap_table(def)?;
    for entry in source.iter()? {
        let (key, values) = entry?;
        for value in values {
            copy.insert(key.value(), value?.value())?;
        }
    }
    Ok(())
}

/// Tags each record of a format-1 table in place: the table is read as
/// it was typed, and written anew under the same name.
fn tag_table<T: Named<V = Tagged>, Old: Untagged>(
    txn: &WriteTransaction,
    integrity: &Integrity,
    table: T,
) -> Result<(), StoreError> {
    let old_def: TableDefinition<'static, T::K, Old> = TableDefinition::new(table.name());
    let staging_name = format!("{}.tagging", table.name());
    let staging_def: TableDefinition<'_, T::K, Tagged> = TableDefinition::new(&staging_name);
    {
        let old = match txn.open_table(old_def) {
            Ok(old) => old,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut staging = txn.open_table(staging_def)?;
        for entry in old.iter()? {
            let (key, value) = entry?;
            let key = key.value();
            let body = Old::body(&value.value());
            let sealed = tagged::seal::<T::K>(integrity, table.name(), &key, &body);
            staging.insert(key, sealed.as_ref())?;
        }
    }
    txn.delete_table(old_def)?;
    txn.rename_table(staging_def, table.def())?;
    Ok(())
}

/// The newest table: a database made by an older version lacks it.
pub(super) const NEWEST: Settings = SETTINGS;

pub(super) const META_FORMAT: &str = "format";
pub(super) const META_CHECK: &str = "key_check";
pub(super) const SETTING_STORE_ID: &str = "store_id";
pub(super) const SETTING_SCHEMA: &str = "schema";
pub(super) const SETTING_AUDIT_HEAD: &str = "audit_head";
pub(super) const SETTING_NEXT_ID: &str = "next_id";
/// Set by a transaction that removed personal data, in that transaction;
/// removed by the rewrite that leaves no freed page behind (`scrub.rs`).
/// One found at open is a rewrite that a crash or a failure cut short.
pub(super) const SETTING_SCRUB: &str = "scrub_owed";
/// Set by a rewrite, and at creation: a file without it was written by a
/// version that left freed pages as they were.
pub(super) const SETTING_REWRITTEN: &str = "rewritten";

/// The settings key of a setting the engine keeps (apart from the
/// store's own).
pub(super) fn engine_setting(name: &str) -> String {
    format!("engine:{name}")
}

pub(super) const RETENTION_SCRIPT: &str = "script";
pub(super) const RETIRED: &str = "retired_purposes";
pub(super) const RUN: &str = "run";

/// Most lines kept of each plugin's log.
pub(super) const LOG_KEPT: u64 = 10_000;

/// Creates every table, so readers never meet a missing one, and files
/// what an older version left unindexed.
pub(super) fn create_all(txn: &WriteTransaction, integrity: &Integrity) -> Result<(), StoreError> {
    open_all(txn)?;
    let outbox = txn.open_table(OUTBOX.def())?;
    let mut by_customer = txn.open_multimap_table(OUTBOX_BY_CUSTOMER.def())?;
    // A database made before the index: file its queued messages.
    if by_customer.is_empty()? {
        for entry in outbox.iter()? {
            let (id, v) = entry?;
            let id = id.value();
            let body = tagged::open::<u64>(integrity, OUTBOX.name(), &id, v.value())?;
            let m = decode_message(body)?;
            by_customer.insert(m.customer, id)?;
        }
    }
    Ok(())
}
