//! Tables of plugins and what they produce: installed plugins and their
//! code, private state, logs, external-id links, the outbox, consent flags,
//! alerts and follow-up notifications. Opened on demand, so operations that
//! do not touch them pay nothing.

use redb::{
    MultimapTableDefinition, ReadableTable, ReadableTableMetadata, TableDefinition, TableError,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};

use super::records::{decode, encode};
use super::{Reader, StoreError, Writer};
use crate::plugin::PluginInfo;

/// Plugin name → its record (manifest, grant, status).
const PLUGINS: TableDefinition<&str, &[u8]> = TableDefinition::new("plugins");
/// Plugin name → its component bytes.
const PLUGIN_CODE: TableDefinition<&str, &[u8]> = TableDefinition::new("plugin_code");
/// (plugin, key) → value.
const PLUGIN_STATE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("plugin_state");
/// (plugin, sequence) → log line.
const PLUGIN_LOG: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("plugin_log");
/// Keyed hash of (plugin, external id) → customer.
const LINKS: TableDefinition<&[u8], u64> = TableDefinition::new("plugin_links");
/// Customer → its link hashes (so erasure removes them).
const LINKS_BY_CUSTOMER: MultimapTableDefinition<u64, &[u8]> =
    MultimapTableDefinition::new("plugin_links_by_customer");
/// Message id → queued message.
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// Customer → ids of its queued messages, so removing a customer does not
/// scan the outbox.
const OUTBOX_BY_CUSTOMER: MultimapTableDefinition<u64, u64> =
    MultimapTableDefinition::new("outbox_by_customer");
/// (customer, purpose) → consent flag.
const CONSENTS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("consents");
/// Alert id → alert.
const ALERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("alerts");
/// Follow-up id → when its due event was delivered (µs).
const NOTIFIED: TableDefinition<u64, i64> = TableDefinition::new("followups_notified");

/// Log lines kept per plugin; older ones are dropped.
const LOG_KEPT: u64 = 10_000;

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(PLUGINS)?;
    txn.open_table(PLUGIN_CODE)?;
    txn.open_table(PLUGIN_STATE)?;
    txn.open_table(PLUGIN_LOG)?;
    txn.open_table(LINKS)?;
    txn.open_multimap_table(LINKS_BY_CUSTOMER)?;
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
    txn.open_table(CONSENTS)?;
    txn.open_table(ALERTS)?;
    txn.open_table(NOTIFIED)?;
    Ok(())
}

/// A message waiting for the host to deliver it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredMessage {
    pub(crate) plugin: String,
    pub(crate) channel: String,
    pub(crate) customer: u64,
    pub(crate) template: String,
    pub(crate) params: Vec<(String, String)>,
    pub(crate) marketing: bool,
    pub(crate) created_at: i64,
}

/// A consent flag for one purpose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredConsent {
    pub(crate) granted: bool,
    pub(crate) at: i64,
    pub(crate) by: String,
}

/// An alert raised by the engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredAlert {
    pub(crate) at: i64,
    pub(crate) kind: String,
    pub(crate) subject: String,
    pub(crate) message: String,
}

/// A line of a plugin's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredLogLine {
    pub(crate) at: i64,
    pub(crate) level: String,
    pub(crate) text: String,
}

impl Writer<'_> {
    /// An installed plugin.
    pub(crate) fn plugin(&self, name: &str) -> Result<Option<PluginInfo>, StoreError> {
        let table = self.txn.open_table(PLUGINS)?;
        let value = table.get(name)?;
        value.map(|v| decode(v.value(), "plugin")).transpose()
    }

    /// Records a plugin (and its code, when given).
    pub(crate) fn put_plugin(
        &mut self,
        info: &PluginInfo,
        code: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let name = info.manifest.name.as_str();
        self.txn
            .open_table(PLUGINS)?
            .insert(name, encode(info)?.as_slice())?;
        if let Some(code) = code {
            self.txn.open_table(PLUGIN_CODE)?.insert(name, code)?;
        }
        Ok(())
    }

    /// Removes a plugin with its code, state and log.
    pub(crate) fn remove_plugin(&mut self, name: &str) -> Result<(), StoreError> {
        self.txn.open_table(PLUGINS)?.remove(name)?;
        self.txn.open_table(PLUGIN_CODE)?.remove(name)?;
        let mut state = self.txn.open_table(PLUGIN_STATE)?;
        state.retain_in((name, "")..(name, "\u{10FFFF}"), |_, _| false)?;
        let mut log = self.txn.open_table(PLUGIN_LOG)?;
        log.retain_in((name, 0)..=(name, u64::MAX), |_, _| false)?;
        Ok(())
    }

    /// Writes the plugin's private state.
    pub(crate) fn put_plugin_state(
        &mut self,
        plugin: &str,
        key: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        self.txn
            .open_table(PLUGIN_STATE)?
            .insert((plugin, key), value)?;
        Ok(())
    }

    /// Appends to a plugin's log, dropping lines beyond the newest 10,000.
    pub(crate) fn append_plugin_log(
        &mut self,
        plugin: &str,
        lines: &[StoredLogLine],
    ) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut table = self.txn.open_table(PLUGIN_LOG)?;
        let mut next = match table.range((plugin, 0)..=(plugin, u64::MAX))?.next_back() {
            Some(entry) => entry?.0.value().1 + 1,
            None => 1,
        };
        for line in lines {
            table.insert((plugin, next), encode(line)?.as_slice())?;
            next += 1;
        }
        if next > LOG_KEPT + 1 {
            let oldest_kept = next - LOG_KEPT;
            table.retain_in((plugin, 0)..(plugin, oldest_kept), |_, _| false)?;
        }
        Ok(())
    }

    /// Links an external-id hash to a customer.
    pub(crate) fn put_link(&mut self, hash: &[u8; 16], customer: u64) -> Result<(), StoreError> {
        let old = self
            .txn
            .open_table(LINKS)?
            .insert(hash.as_slice(), customer)?
            .map(|v| v.value());
        let mut by_customer = self.txn.open_multimap_table(LINKS_BY_CUSTOMER)?;
        if let Some(old) = old {
            by_customer.remove(old, hash.as_slice())?;
        }
        by_customer.insert(customer, hash.as_slice())?;
        Ok(())
    }

    /// Removes everything a customer leaves in these tables: links,
    /// consents and queued messages.
    pub(crate) fn remove_plugin_traces(&mut self, customer: u64) -> Result<(), StoreError> {
        let hashes: Vec<Vec<u8>> = {
            let mut by_customer = self.txn.open_multimap_table(LINKS_BY_CUSTOMER)?;
            let removed = by_customer.remove_all(customer)?;
            removed
                .map(|h| h.map(|h| h.value().to_vec()))
                .collect::<Result<_, _>>()?
        };
        let mut links = self.txn.open_table(LINKS)?;
        for hash in &hashes {
            links.remove(hash.as_slice())?;
        }
        let mut consents = self.txn.open_table(CONSENTS)?;
        consents.retain_in((customer, "")..(customer, "\u{10FFFF}"), |_, _| false)?;
        let ids: Vec<u64> = {
            let mut by_customer = self.txn.open_multimap_table(OUTBOX_BY_CUSTOMER)?;
            let removed = by_customer.remove_all(customer)?;
            removed
                .map(|id| id.map(|id| id.value()))
                .collect::<Result<_, _>>()?
        };
        let mut outbox = self.txn.open_table(OUTBOX)?;
        for id in ids {
            outbox.remove(id)?;
        }
        Ok(())
    }

    /// Forgets that the due events of these follow-ups were delivered.
    pub(crate) fn forget_notified(&mut self, followups: &[u64]) -> Result<(), StoreError> {
        let mut table = self.txn.open_table(NOTIFIED)?;
        for id in followups {
            table.remove(id)?;
        }
        Ok(())
    }

    /// Queues a message.
    pub(crate) fn put_message(&mut self, id: u64, m: &StoredMessage) -> Result<(), StoreError> {
        self.txn
            .open_table(OUTBOX)?
            .insert(id, encode(m)?.as_slice())?;
        self.txn
            .open_multimap_table(OUTBOX_BY_CUSTOMER)?
            .insert(m.customer, id)?;
        Ok(())
    }

    /// Removes a message; whether it was there.
    pub(crate) fn remove_message(&mut self, id: u64) -> Result<bool, StoreError> {
        let m: StoredMessage = {
            let mut outbox = self.txn.open_table(OUTBOX)?;
            let Some(bytes) = outbox.remove(id)? else {
                return Ok(false);
            };
            decode(bytes.value(), "message")?
        };
        self.txn
            .open_multimap_table(OUTBOX_BY_CUSTOMER)?
            .remove(m.customer, id)?;
        Ok(true)
    }

    /// A consent flag.
    pub(crate) fn consent(
        &self,
        customer: u64,
        purpose: &str,
    ) -> Result<Option<StoredConsent>, StoreError> {
        let table = self.txn.open_table(CONSENTS)?;
        let value = table.get((customer, purpose))?;
        value.map(|v| decode(v.value(), "consent")).transpose()
    }

    /// A customer's consent flags, by key.
    pub(crate) fn consents_of(
        &self,
        customer: u64,
    ) -> Result<Vec<(String, StoredConsent)>, StoreError> {
        let table = self.txn.open_table(CONSENTS)?;
        consents_in(&table, customer)
    }

    /// Sets a consent flag.
    pub(crate) fn put_consent(
        &mut self,
        customer: u64,
        purpose: &str,
        c: &StoredConsent,
    ) -> Result<(), StoreError> {
        self.txn
            .open_table(CONSENTS)?
            .insert((customer, purpose), encode(c)?.as_slice())?;
        Ok(())
    }

    /// Records an alert.
    pub(crate) fn put_alert(&mut self, id: u64, a: &StoredAlert) -> Result<(), StoreError> {
        self.txn
            .open_table(ALERTS)?
            .insert(id, encode(a)?.as_slice())?;
        Ok(())
    }

    /// Marks a follow-up's due event delivered.
    pub(crate) fn mark_notified(&mut self, followup: u64, at: i64) -> Result<(), StoreError> {
        self.txn.open_table(NOTIFIED)?.insert(followup, at)?;
        Ok(())
    }
}

/// Opens a table that a database of an older version may lack (only
/// possible on a read-only path before `prepare` ran).
pub(super) fn missing_ok<T>(r: Result<T, TableError>) -> Result<Option<T>, StoreError> {
    match r {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl Reader {
    /// An installed plugin.
    pub(crate) fn plugin(&self, name: &str) -> Result<Option<PluginInfo>, StoreError> {
        let Some(table) = missing_ok(self.txn.open_table(PLUGINS))? else {
            return Ok(None);
        };
        let value = table.get(name)?;
        value.map(|v| decode(v.value(), "plugin")).transpose()
    }

    /// Every installed plugin, by name.
    pub(crate) fn plugins(&self) -> Result<Vec<PluginInfo>, StoreError> {
        let Some(table) = missing_ok(self.txn.open_table(PLUGINS))? else {
            return Ok(Vec::new());
        };
        table
            .iter()?
            .map(|e| decode(e?.1.value(), "plugin"))
            .collect()
    }

    /// A plugin's code.
    pub(crate) fn plugin_code(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(table) = missing_ok(self.txn.open_table(PLUGIN_CODE))? else {
            return Ok(None);
        };
        Ok(table.get(name)?.map(|v| v.value().to_vec()))
    }

    /// A plugin's private state under `key`.
    pub(crate) fn plugin_state(
        &self,
        plugin: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(table) = missing_ok(self.txn.open_table(PLUGIN_STATE))? else {
            return Ok(None);
        };
        Ok(table.get((plugin, key))?.map(|v| v.value().to_vec()))
    }

    /// The newest `limit` lines of a plugin's log, oldest first.
    pub(crate) fn plugin_log(
        &self,
        plugin: &str,
        limit: usize,
    ) -> Result<Vec<StoredLogLine>, StoreError> {
        let Some(table) = missing_ok(self.txn.open_table(PLUGIN_LOG))? else {
            return Ok(Vec::new());
        };
        let mut lines = table
            .range((plugin, 0)..=(plugin, u64::MAX))?
            .rev()
            .take(limit)
            .map(|e| decode(e?.1.value(), "log line"))
            .collect::<Result<Vec<StoredLogLine>, StoreError>>()?;
        lines.reverse();
        Ok(lines)
    }

    /// The customer an external-id hash names.
    pub(crate) fn link(&self, hash: &[u8; 16]) -> Result<Option<u64>, StoreError> {
        let Some(table) = missing_ok(self.txn.open_table(LINKS))? else {
            return Ok(None);
        };
        Ok(table.get(hash.as_slice())?.map(|v| v.value()))
    }

    /// Queued messages, oldest first, at most `limit`.
    pub(crate) fn messages(&self, limit: usize) -> Result<Vec<(u64, StoredMessage)>, StoreError> {
        let Some(table) = missing_ok(self.txn.open_table(OUTBOX))? else {
            return Ok(Vec::new());
        };
        table
            .iter()?
            .take(limit)
            .map(|e| {
                let (k, v) = e?;
                Ok((k.value(), decode(v.value(), "message")?))
            })
            .collect()
    }

    /// The messages queued for one customer, oldest first.
    pub(crate) fn messages_of(&self, customer: u64) -> Result<Vec<StoredMessage>, StoreError> {
        let (Some(ids), Some(table)) = (
            missing_ok(self.txn.open_multimap_table(OUTBOX_BY_CUSTOMER))?,
            missing_ok(self.txn.open_table(OUTBOX))?,
        ) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for id in ids.get(customer)? {
            if let Some(v) = table.get(id?.value())? {
                out.push(decode(v.value(), "message")?);
            }
        }
        Ok(out)
    }

    /// Every consent flag of a customer, by purpose.
    pub(crate) fn consents(
        &self,
        customer: u64,
    ) -> Result<Vec<(String, StoredConsent)>, StoreError> {
        let Some(table) = missing_ok(self.txn.open_table(CONSENTS))? else {
            return Ok(Vec::new());
        };
        consents_in(&table, customer)
    }

    /// The newest `limit` alerts, newest first.
    pub(crate) fn alerts(&self, limit: usize) -> Result<Vec<(u64, StoredAlert)>, StoreError> {
        let Some(table) = missing_ok(self.txn.open_table(ALERTS))? else {
            return Ok(Vec::new());
        };
        table
            .iter()?
            .rev()
            .take(limit)
            .map(|e| {
                let (k, v) = e?;
                Ok((k.value(), decode(v.value(), "alert")?))
            })
            .collect()
    }

    /// A follow-up.
    pub(crate) fn followup(&self, id: u64) -> Result<Option<super::StoredFollowUp>, StoreError> {
        let table = self.txn.open_table(super::FOLLOWUPS)?;
        let value = table.get(id)?;
        value.map(|v| decode(v.value(), "follow-up")).transpose()
    }

    /// Whether a follow-up's due event was delivered.
    pub(crate) fn notified(&self, followup: u64) -> Result<bool, StoreError> {
        let Some(table) = missing_ok(self.txn.open_table(NOTIFIED))? else {
            return Ok(false);
        };
        Ok(table.get(followup)?.is_some())
    }
}

/// A customer's consent flags in `table`, by key.
fn consents_in(
    table: &impl ReadableTable<(u64, &'static str), &'static [u8]>,
    customer: u64,
) -> Result<Vec<(String, StoredConsent)>, StoreError> {
    table
        .range((customer, "")..(customer, "\u{10FFFF}"))?
        .map(|e| {
            let (k, v) = e?;
            Ok((k.value().1.to_string(), decode(v.value(), "consent")?))
        })
        .collect()
}
