//! The redb tables of the data file, and their creation.

use redb::{
    MultimapTableDefinition, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};

use super::super::StoreError;
use super::super::types::{StoredMessage, decode};

pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(super) const CUSTOMERS: TableDefinition<u64, &[u8]> = TableDefinition::new("customers");
pub(super) const BLIND: MultimapTableDefinition<&[u8], u64> =
    MultimapTableDefinition::new("blind_index");
pub(super) const BY_OWNER: MultimapTableDefinition<&str, u64> =
    MultimapTableDefinition::new("by_owner");
pub(super) const BY_TAG: MultimapTableDefinition<&str, u64> =
    MultimapTableDefinition::new("by_tag");
pub(super) const BY_STATUS: MultimapTableDefinition<&str, u64> =
    MultimapTableDefinition::new("by_status");
/// (customer, interaction id) → interaction.
pub(super) const INTERACTIONS: TableDefinition<(u64, u64), &[u8]> =
    TableDefinition::new("interactions");
pub(super) const FOLLOWUPS: TableDefinition<u64, &[u8]> = TableDefinition::new("followups");
/// Follow-ups of each customer.
pub(super) const FOLLOWUPS_BY_CUSTOMER: MultimapTableDefinition<u64, u64> =
    MultimapTableDefinition::new("followups_by_customer");
/// Open follow-ups by (due time in µs, id) → assignee.
pub(super) const FOLLOWUPS_OPEN: TableDefinition<(i64, u64), &str> =
    TableDefinition::new("followups_open");
/// Follow-ups whose due event was handed out → when.
pub(super) const NOTIFIED: TableDefinition<u64, i64> = TableDefinition::new("followups_notified");
pub(super) const PRINCIPALS: TableDefinition<&str, &[u8]> = TableDefinition::new("principals");
pub(super) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Principal name → credentials.
pub(super) const CREDENTIALS: TableDefinition<&str, &[u8]> = TableDefinition::new("credentials");
/// Keyed hash of a session token → session.
pub(super) const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions");
/// `name:<account>` or `source:<address>` → failed-login counter.
pub(super) const THROTTLE: TableDefinition<&str, &[u8]> = TableDefinition::new("throttle");
/// Policy version → installed pack.
pub(super) const POLICIES: TableDefinition<u64, &[u8]> = TableDefinition::new("policies");
pub(super) const PLUGINS: TableDefinition<&str, &[u8]> = TableDefinition::new("plugins");
pub(super) const PLUGIN_CODE: TableDefinition<&str, &[u8]> = TableDefinition::new("plugin_code");
pub(super) const PLUGIN_STATE: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("plugin_state");
pub(super) const PLUGIN_LOG: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("plugin_log");
/// Keyed hash of (plugin, external id) → customer.
pub(super) const LINKS: TableDefinition<&[u8], u64> = TableDefinition::new("plugin_links");
pub(super) const LINKS_BY_CUSTOMER: MultimapTableDefinition<u64, &[u8]> =
    MultimapTableDefinition::new("plugin_links_by_customer");
pub(super) const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
pub(super) const OUTBOX_BY_CUSTOMER: MultimapTableDefinition<u64, u64> =
    MultimapTableDefinition::new("outbox_by_customer");
/// (customer, `purpose` or `purpose:field`) → consent state.
pub(super) const CONSENTS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("consents");
pub(super) const ALERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("alerts");
/// (customer, seq) → consent ledger entry.
pub(super) const LEDGER: TableDefinition<(u64, u64), &[u8]> =
    TableDefinition::new("consent_ledger");
pub(super) const HOLDS: TableDefinition<u64, &[u8]> = TableDefinition::new("legal_holds");
pub(super) const NOTICES: TableDefinition<u64, &[u8]> = TableDefinition::new("retention_notices");
pub(super) const DELETIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("deletions");
pub(super) const AGGREGATES: TableDefinition<u64, &[u8]> = TableDefinition::new("anonymized");
/// The retention script, the retired purposes and a sweep's progress.
pub(super) const RETENTION: TableDefinition<&str, &[u8]> = TableDefinition::new("retention");

/// The newest table: a database made by an older version lacks it.
pub(super) const NEWEST: TableDefinition<&str, &[u8]> = RETENTION;

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
    txn.open_table(META)?;
    txn.open_table(CUSTOMERS)?;
    for multimap in [BY_OWNER, BY_TAG, BY_STATUS] {
        txn.open_multimap_table(multimap)?;
    }
    txn.open_multimap_table(BLIND)?;
    txn.open_table(INTERACTIONS)?;
    txn.open_table(FOLLOWUPS)?;
    txn.open_table(FOLLOWUPS_OPEN)?;
    txn.open_multimap_table(FOLLOWUPS_BY_CUSTOMER)?;
    txn.open_table(NOTIFIED)?;
    txn.open_table(PRINCIPALS)?;
    txn.open_table(AUDIT)?;
    txn.open_table(CREDENTIALS)?;
    txn.open_table(SESSIONS)?;
    txn.open_table(THROTTLE)?;
    txn.open_table(POLICIES)?;
    txn.open_table(PLUGINS)?;
    txn.open_table(PLUGIN_CODE)?;
    txn.open_table(PLUGIN_STATE)?;
    txn.open_table(PLUGIN_LOG)?;
    txn.open_table(LINKS)?;
    txn.open_multimap_table(LINKS_BY_CUSTOMER)?;
    txn.open_table(CONSENTS)?;
    txn.open_table(ALERTS)?;
    for table in [HOLDS, NOTICES, DELETIONS, AGGREGATES] {
        txn.open_table(table)?;
    }
    txn.open_table(LEDGER)?;
    txn.open_table(RETENTION)?;
    let outbox = txn.open_table(OUTBOX)?;
    let mut by_customer = txn.open_multimap_table(OUTBOX_BY_CUSTOMER)?;
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
