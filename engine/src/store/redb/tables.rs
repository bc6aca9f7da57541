//! The redb tables of the data file, and where a transaction keeps them
//! open: a table is opened once per transaction, on first use (opening
//! one looks it up in the file's table of tables, which costs more than
//! most of the reads and writes made through it).

use std::cell::{OnceCell, RefCell};

use redb::{
    Key, MultimapTable, MultimapTableDefinition, ReadOnlyMultimapTable, ReadOnlyTable,
    ReadableTable, ReadableTableMetadata, Table, TableDefinition, Value, WriteTransaction,
};

use super::super::StoreError;
use super::super::types::{StoredMessage, decode};

/// A table of the data file: its definition, and its place among the
/// tables a read ([`Seen`]) or a write ([`Opened`]) transaction has open.
pub(in crate::store) trait Named: Copy {
    type K: Key + 'static;
    type V: Value + 'static;
    fn def(self) -> TableDefinition<'static, Self::K, Self::V>;
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

/// Declares each table once: a constant of its own marker type (what the
/// reads and writes name), its definition, and its slots.
macro_rules! tables {
    (
        tables { $( $(#[$doc:meta])* $konst:ident: $ty:ident, $field:ident, $k:ty => $v:ty = $name:literal; )* }
        multimaps { $( $(#[$mdoc:meta])* $mkonst:ident: $mty:ident, $mfield:ident, $mk:ty => $mv:ty = $mname:literal; )* }
    ) => {
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
                fn seen(self, tables: &Seen) -> &OnceCell<Option<ReadOnlyTable<$k, $v>>> {
                    &tables.$field
                }
                fn opened<'a, 't>(self, tables: &'a Opened<'t>) -> &'a RefCell<Option<Table<'t, $k, $v>>> {
                    &tables.$field
                }
            }
        )*
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
            $( $field: OnceCell<Option<ReadOnlyTable<$k, $v>>>, )*
            $( $mfield: OnceCell<Option<ReadOnlyMultimapTable<$mk, $mv>>>, )*
        }

        /// The tables a write transaction has opened. They close (and the
        /// transaction can commit) when this is dropped.
        #[derive(Default)]
        pub(in crate::store) struct Opened<'t> {
            $( $field: RefCell<Option<Table<'t, $k, $v>>>, )*
            $( $mfield: RefCell<Option<MultimapTable<'t, $mk, $mv>>>, )*
        }

        /// Opens every table, creating the missing ones.
        fn open_all(txn: &WriteTransaction) -> Result<(), StoreError> {
            $( txn.open_table($konst.def())?; )*
            $( txn.open_multimap_table($mkonst.def())?; )*
            Ok(())
        }
    };
}

tables! {
    tables {
    META: Meta, meta, &'static str => &'static [u8] = "meta";
    CUSTOMERS: Customers, customers, u64 => &'static [u8] = "customers";
    /// (customer, interaction id) → interaction.
    INTERACTIONS: Interactions, interactions, (u64, u64) => &'static [u8] = "interactions";
    FOLLOWUPS: Followups, followups, u64 => &'static [u8] = "followups";
    /// Open follow-ups by (due time in µs, id) → assignee.
    FOLLOWUPS_OPEN: FollowupsOpen, followups_open, (i64, u64) => &'static str = "followups_open";
    /// Follow-ups whose due event was handed out → when.
    NOTIFIED: Notified, notified, u64 => i64 = "followups_notified";
    PRINCIPALS: Principals, principals, &'static str => &'static [u8] = "principals";
    AUDIT: Audit, audit, u64 => &'static [u8] = "audit";
    /// Principal name → credentials.
    CREDENTIALS: Credentials, credentials, &'static str => &'static [u8] = "credentials";
    /// Keyed hash of a session token → session.
    SESSIONS: Sessions, sessions, &'static [u8] => &'static [u8] = "sessions";
    /// `name:<account>` or `source:<address>` → failed-login counter.
    THROTTLE: Throttle, throttle, &'static str => &'static [u8] = "throttle";
    /// Policy version → installed pack.
    POLICIES: Policies, policies, u64 => &'static [u8] = "policies";
    PLUGINS: Plugins, plugins, &'static str => &'static [u8] = "plugins";
    PLUGIN_CODE: PluginCode, plugin_code, &'static str => &'static [u8] = "plugin_code";
    PLUGIN_STATE: PluginState, plugin_state, (&'static str, &'static str) => &'static [u8] = "plugin_state";
    PLUGIN_LOG: PluginLog, plugin_log, (&'static str, u64) => &'static [u8] = "plugin_log";
    /// Keyed hash of (plugin, external id) → customer.
    LINKS: Links, links, &'static [u8] => u64 = "plugin_links";
    OUTBOX: Outbox, outbox, u64 => &'static [u8] = "outbox";
    /// (customer, `purpose` or `purpose:field`) → consent state.
    CONSENTS: Consents, consents, (u64, &'static str) => &'static [u8] = "consents";
    ALERTS: Alerts, alerts, u64 => &'static [u8] = "alerts";
    /// (customer, seq) → consent ledger entry.
    LEDGER: Ledger, ledger, (u64, u64) => &'static [u8] = "consent_ledger";
    HOLDS: Holds, holds, u64 => &'static [u8] = "legal_holds";
    NOTICES: Notices, notices, u64 => &'static [u8] = "retention_notices";
    DELETIONS: Deletions, deletions, u64 => &'static [u8] = "deletions";
    AGGREGATES: Aggregates, aggregates, u64 => &'static [u8] = "anonymized";
    /// The retention script, the retired purposes and a sweep's progress.
    RETENTION: Retention, retention, &'static str => &'static [u8] = "retention";
    }
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

/// The newest table: a database made by an older version lacks it.
pub(super) const NEWEST: Retention = RETENTION;

pub(super) const META_FORMAT: &str = "format";
pub(super) const META_CHECK: &str = "key_check";
pub(super) const META_STORE_ID: &str = "store_id";
pub(super) const META_SCHEMA: &str = "schema";
pub(super) const META_AUDIT_HEAD: &str = "audit_head";
pub(super) const META_NEXT_ID: &str = "next_id";

pub(super) const RETENTION_SCRIPT: &str = "script";
pub(super) const RETIRED: &str = "retired_purposes";
pub(super) const RUN: &str = "run";

/// Most lines kept of each plugin's log.
pub(super) const LOG_KEPT: u64 = 10_000;

/// Creates every table, so readers never meet a missing one, and files
/// what an older version left unindexed.
pub(super) fn create_all(txn: &WriteTransaction) -> Result<(), StoreError> {
    open_all(txn)?;
    let outbox = txn.open_table(OUTBOX.def())?;
    let mut by_customer = txn.open_multimap_table(OUTBOX_BY_CUSTOMER.def())?;
    // A database made before the index: file its queued messages.
    if by_customer.is_empty()? {
        for entry in outbox.iter()? {
            let (id, v) = entry?;
            let m: StoredMessage = decode(v.value(), "message")?;
            by_customer.insert(m.customer, id.value())?;
        }
    }
    Ok(())
}
