//! Every write of a redb transaction.

use redb::{ReadableTable, ReadableTableMetadata};

use super::super::StoreError;
use super::super::interface::{AuditHead, Index, Snapshot, Txn};
use super::super::types::{
    LogText, StoredAggregate, StoredAlert, StoredConsent, StoredConsentEntry, StoredCredentials,
    StoredCustomer, StoredDeletion, StoredEvent, StoredFollowUp, StoredGuardCounts, StoredHold,
    StoredInteraction, StoredLogLine, StoredMessage, StoredNotice, StoredPluginCounters,
    StoredPolicy, StoredPrincipal, StoredRun, StoredSession, StoredThrottle, decode,
    decode_message, encode, encode_alert, encode_customer, encode_log_line, encode_message,
    encode_principal,
};
use super::reads::customer_state_key;
use super::tables::*;
use super::{Open, Writer};
use crate::guard::Charge;
use crate::plugin::PluginInfo;

type Res<T> = Result<T, StoreError>;

impl Txn for Writer<'_> {
    fn record_id(&mut self, id: u64) {
        let next = id.saturating_add(1);
        if self.next_id.is_none_or(|n| n < next) {
            self.next_id = Some(next);
        }
    }

    fn push_audit(&mut self, head: AuditHead, bytes: &[u8]) -> Res<()> {
        self.audit.push((head.seq, bytes.to_vec()));
        self.head = Some(head);
        Ok(())
    }

    fn put_customer(&mut self, customer: &StoredCustomer) -> Res<()> {
        self.put_customers(&[customer])
    }

    fn put_customers(&mut self, customers: &[&StoredCustomer]) -> Res<()> {
        for customer in customers {
            self.put(CUSTOMERS, customer.id, &encode_customer(customer)?)?;
        }
        Ok(())
    }

    fn remove_customer(&mut self, id: u64) -> Res<()> {
        self.table_mut(CUSTOMERS)?.remove(id)?;
        self.owes_scrub = true;
        Ok(())
    }

    fn owe_rewrite(&mut self) {
        self.owes_scrub = true;
    }

    fn index(&mut self, entries: &[(Index<'_>, u64)], add: bool) -> Res<()> {
        for (index, id) in entries {
            match index {
                Index::Blind(key) => {
                    let mut t = self.multimap_mut(BLIND)?;
                    match add {
                        true => t.insert(key.as_slice(), id).map(drop),
                        false => t.remove(key.as_slice(), id).map(drop),
                    }?;
                }
                Index::Owner(key) | Index::Tag(key) | Index::Status(key) => {
                    let mut t = match index {
                        Index::Owner(_) => self.multimap_mut(BY_OWNER)?,
                        Index::Tag(_) => self.multimap_mut(BY_TAG)?,
                        _ => self.multimap_mut(BY_STATUS)?,
                    };
                    match add {
                        true => t.insert(*key, id).map(drop),
                        false => t.remove(*key, id).map(drop),
                    }?;
                }
            }
        }
        Ok(())
    }

    fn put_interaction(&mut self, record: &StoredInteraction) -> Res<()> {
        self.put(INTERACTIONS, (record.customer, record.id), &encode(record)?)?;
        Ok(())
    }

    fn remove_interactions(&mut self, customer: u64) -> Res<usize> {
        let mut table = self.table_mut(INTERACTIONS)?;
        let before = table.len()?;
        table.retain_in((customer, 0)..=(customer, u64::MAX), |_, _| false)?;
        Ok(usize::try_from(before - table.len()?).unwrap_or(usize::MAX))
    }

    fn put_followup(&mut self, record: &StoredFollowUp) -> Res<()> {
        self.put(FOLLOWUPS, record.id, &encode(record)?)?;
        self.multimap_mut(FOLLOWUPS_BY_CUSTOMER)?
            .insert(record.customer, record.id)?;
        let mut open = self.table_mut(FOLLOWUPS_OPEN)?;
        if record.done {
            open.remove((record.due, record.id))?;
        } else {
            open.insert((record.due, record.id), record.assignee.as_str())?;
        }
        Ok(())
    }

    fn remove_followups(&mut self, customer: u64) -> Res<()> {
        let ids: Vec<u64> = self
            .multimap_mut(FOLLOWUPS_BY_CUSTOMER)?
            .remove_all(customer)?
            .map(|v| Ok::<_, StoreError>(v?.value()))
            .collect::<Res<_>>()?;
        let mut all = self.table_mut(FOLLOWUPS)?;
        let mut open = self.table_mut(FOLLOWUPS_OPEN)?;
        let mut notified = self.table_mut(NOTIFIED)?;
        for id in &ids {
            // The index is not authenticated: remove only what the record
            // confirms is this customer's.
            let Some(record) = all.get(id)? else {
                continue;
            };
            let f: StoredFollowUp = decode(self.body(FOLLOWUPS, id, record.value())?, "follow-up")?;
            drop(record);
            if f.customer != customer {
                continue;
            }
            all.remove(id)?;
            open.remove((f.due, f.id))?;
            notified.remove(id)?;
        }
        Ok(())
    }

    fn mark_notified(&mut self, followup: u64, at: i64) -> Res<()> {
        self.put(NOTIFIED, followup, &at.to_le_bytes())?;
        Ok(())
    }

    fn put_principal(&mut self, p: &StoredPrincipal) -> Res<()> {
        self.put(PRINCIPALS, p.name.as_str(), &encode_principal(p)?)?;
        Ok(())
    }

    fn put_credentials(&mut self, name: &str, c: &StoredCredentials) -> Res<()> {
        self.put(CREDENTIALS, name, &encode(c)?)?;
        Ok(())
    }

    fn put_session(&mut self, hash: &[u8; 32], s: &StoredSession) -> Res<()> {
        self.put(SESSIONS, hash.as_slice(), &encode(s)?)?;
        Ok(())
    }

    fn remove_sessions(
        &mut self,
        remove: &mut dyn FnMut(&[u8], &StoredSession) -> bool,
    ) -> Res<usize> {
        let mut table = self.table_mut(SESSIONS)?;
        let mut doomed = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let key = k.value();
            let session: StoredSession = decode(self.body(SESSIONS, &key, v.value())?, "session")?;
            if remove(key, &session) {
                doomed.push(key.to_vec());
            }
        }
        for k in &doomed {
            table.remove(k.as_slice())?;
        }
        Ok(doomed.len())
    }

    fn put_throttle(&mut self, key: &str, t: StoredThrottle) -> Res<()> {
        if t.failures == 0 {
            self.table_mut(THROTTLE)?.remove(key)?;
        } else {
            self.put(THROTTLE, key, &encode(&t)?)?;
        }
        Ok(())
    }

    fn put_policy(&mut self, version: u64, p: &StoredPolicy) -> Res<()> {
        self.put(POLICIES, version, &encode(p)?)?;
        Ok(())
    }

    fn put_plugin(&mut self, info: &PluginInfo, code: Option<&[u8]>) -> Res<()> {
        let name = info.manifest.name.as_str();
        self.put(PLUGINS, name, &encode(info)?)?;
        if let Some(code) = code {
            self.put(PLUGIN_CODE, name, code)?;
        }
        Ok(())
    }

    fn remove_plugin(&mut self, name: &str) -> Res<()> {
        self.table_mut(PLUGINS)?.remove(name)?;
        self.table_mut(PLUGIN_CODE)?.remove(name)?;
        self.table_mut(PLUGIN_COUNTERS)?.remove(name)?;
        let mut state = self.table_mut(PLUGIN_STATE)?;
        state.retain_in((name, "")..(name, "\u{10FFFF}"), |_, _| false)?;
        drop(state);
        let prefix = customer_state_key(name, "");
        let mut filed = self.table_mut(PLUGIN_CUSTOMER_STATE)?;
        filed.retain(|(_, key), _| !key.starts_with(&prefix))?;
        drop(filed);
        let mut log = self.table_mut(PLUGIN_LOG)?;
        log.retain_in((name, 0)..=(name, u64::MAX), |_, _| false)?;
        Ok(())
    }

    fn put_plugin_state(&mut self, plugin: &str, key: &str, value: &[u8]) -> Res<u64> {
        let old = self.record(PLUGIN_STATE, (plugin, key), |v| Ok(v.len()))?;
        self.put(PLUGIN_STATE, (plugin, key), value)?;
        self.count_state(plugin, old.map(|n| n + key.len()), key.len() + value.len())
    }

    fn remove_uncounted_state(&mut self, plugin: &str, key: &str) -> Res<()> {
        self.table_mut(PLUGIN_STATE)?.remove((plugin, key))?;
        Ok(())
    }

    fn put_customer_state(
        &mut self,
        customer: u64,
        plugin: &str,
        key: &str,
        value: &[u8],
    ) -> Res<u64> {
        let filed = customer_state_key(plugin, key);
        let at = (customer, filed.as_str());
        let old = self.record(PLUGIN_CUSTOMER_STATE, at, |v| Ok(v.len()))?;
        self.put(PLUGIN_CUSTOMER_STATE, at, value)?;
        self.count_state(plugin, old.map(|n| n + key.len()), key.len() + value.len())
    }

    fn put_plugin_counters(&mut self, plugin: &str, counters: &StoredPluginCounters) -> Res<()> {
        self.put(PLUGIN_COUNTERS, plugin, &encode(counters)?)?;
        Ok(())
    }

    fn append_plugin_log(&mut self, plugin: &str, lines: &[StoredLogLine]) -> Res<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let last = match self.table(PLUGIN_LOG)?.as_deref() {
            Some(table) => match table.range((plugin, 0)..=(plugin, u64::MAX))?.next_back() {
                Some(entry) => entry?.0.value().1,
                None => 0,
            },
            None => 0,
        };
        let mut next = last + 1;
        for line in lines {
            let LogText::Sealed(text) = &line.text else {
                return Err(StoreError::Corrupt("log lines are written sealed".into()));
            };
            let body = encode_log_line(line.at, &line.level, text.clone())?;
            self.put(PLUGIN_LOG, (plugin, next), &body)?;
            next += 1;
        }
        if next > LOG_KEPT + 1 {
            let oldest_kept = next - LOG_KEPT;
            let mut table = self.table_mut(PLUGIN_LOG)?;
            table.retain_in((plugin, 0)..(plugin, oldest_kept), |_, _| false)?;
        }
        Ok(())
    }

    fn put_link(&mut self, hash: &[u8; 16], customer: u64) -> Res<()> {
        let old = self.link(hash)?;
        self.put(LINKS, hash.as_slice(), &customer.to_le_bytes())?;
        let mut by_customer = self.multimap_mut(LINKS_BY_CUSTOMER)?;
        if let Some(old) = old {
            by_customer.remove(old, hash.as_slice())?;
        }
        by_customer.insert(customer, hash.as_slice())?;
        Ok(())
    }

    fn remove_plugin_traces(&mut self, customer: u64) -> Res<()> {
        let hashes: Vec<Vec<u8>> = self
            .multimap_mut(LINKS_BY_CUSTOMER)?
            .remove_all(customer)?
            .map(|h| h.map(|h| h.value().to_vec()))
            .collect::<Result<_, _>>()?;
        for hash in &hashes {
            // The index is not authenticated: remove only the links the
            // record says are this customer's.
            let Ok(hash) = <[u8; 16]>::try_from(hash.as_slice()) else {
                continue;
            };
            if self.link(&hash)? == Some(customer) {
                self.table_mut(LINKS)?.remove(hash.as_slice())?;
            }
        }
        let mut consents = self.table_mut(CONSENTS)?;
        consents.retain_in((customer, "")..(customer, "\u{10FFFF}"), |_, _| false)?;
        drop(consents);
        self.remove_customer_state(customer)?;
        let ids: Vec<u64> = self
            .multimap_mut(OUTBOX_BY_CUSTOMER)?
            .remove_all(customer)?
            .map(|id| id.map(|id| id.value()))
            .collect::<Result<_, _>>()?;
        for id in ids {
            let mine = self.record(OUTBOX, id, |body| {
                let m = decode_message(body)?;
                Ok(m.customer == customer)
            })?;
            if mine == Some(true) {
                self.table_mut(OUTBOX)?.remove(id)?;
            }
        }
        Ok(())
    }

    fn put_message(&mut self, id: u64, m: &StoredMessage) -> Res<()> {
        self.put(OUTBOX, id, &encode_message(m)?)?;
        self.multimap_mut(OUTBOX_BY_CUSTOMER)?
            .insert(m.customer, id)?;
        Ok(())
    }

    fn remove_message(&mut self, id: u64) -> Res<bool> {
        let Some(m) = self.record(OUTBOX, id, decode_message)? else {
            return Ok(false);
        };
        self.table_mut(OUTBOX)?.remove(id)?;
        self.multimap_mut(OUTBOX_BY_CUSTOMER)?
            .remove(m.customer, id)?;
        Ok(true)
    }

    fn put_consent(&mut self, customer: u64, key: &str, c: &StoredConsent) -> Res<()> {
        self.put(CONSENTS, (customer, key), &encode(c)?)?;
        Ok(())
    }

    fn put_alert(&mut self, id: u64, a: &StoredAlert) -> Res<()> {
        self.put(ALERTS, id, &encode_alert(a)?)?;
        Ok(())
    }

    fn index_audit(&mut self, seq: u64, actor: &str, at: i64, customers: &[u64]) -> Res<()> {
        self.table_mut(AUDIT_BY_ACTOR)?
            .insert((actor, at, seq), ())?;
        let mut by_customer = self.table_mut(AUDIT_BY_CUSTOMER)?;
        for customer in customers {
            by_customer.insert((*customer, seq), at)?;
        }
        Ok(())
    }

    fn add_guard_charge(&mut self, charge: &Charge) -> Res<()> {
        let actor = charge.actor.as_str();
        if charge.rows.iter().any(|n| *n > 0) || charge.misses > 0 {
            let key = (actor, charge.minute);
            let mut counts: StoredGuardCounts = self
                .record(GUARD_COUNTS, key, |b| decode(b, "guard counts"))?
                .unwrap_or_default();
            for (sum, n) in counts.rows.iter_mut().zip(charge.rows) {
                *sum = sum.saturating_add(n);
            }
            counts.misses = counts.misses.saturating_add(charge.misses);
            self.put(GUARD_COUNTS, key, &encode(&counts)?)?;
        }
        let minute = encode(&charge.minute)?;
        for &customer in &charge.customers {
            self.put(GUARD_SEEN, (actor, customer), &minute)?;
        }
        Ok(())
    }

    fn prune_guard(&mut self, before: i64) -> Res<()> {
        self.table_mut(GUARD_COUNTS)?
            .retain(|(_, minute), _| minute >= before)?;
        let mut seen = self.table_mut(GUARD_SEEN)?;
        let mut stale = Vec::new();
        for entry in seen.iter()? {
            let (k, v) = entry?;
            let key = k.value();
            let minute: i64 = decode(self.body(GUARD_SEEN, &key, v.value())?, "guard seen")?;
            if minute < before {
                stale.push((key.0.to_string(), key.1));
            }
        }
        for (actor, customer) in stale {
            seen.remove((actor.as_str(), customer))?;
        }
        Ok(())
    }

    fn queue_event(&mut self, id: u64, e: &StoredEvent) -> Res<()> {
        self.put(EVENTS, id, &encode(e)?)?;
        Ok(())
    }

    fn remove_event(&mut self, id: u64) -> Res<()> {
        self.table_mut(EVENTS)?.remove(id)?;
        Ok(())
    }

    fn append_consent(&mut self, customer: u64, entry: &StoredConsentEntry) -> Res<()> {
        let next = match self.table(LEDGER)?.as_deref() {
            Some(table) => match table
                .range((customer, 0)..=(customer, u64::MAX))?
                .next_back()
            {
                Some(last) => last?.0.value().1 + 1,
                None => 0,
            },
            None => 0,
        };
        self.put(LEDGER, (customer, next), &encode(entry)?)?;
        Ok(())
    }

    fn remove_privacy_traces(&mut self, customer: u64) -> Res<()> {
        let mut ledger = self.table_mut(LEDGER)?;
        ledger.retain_in((customer, 0)..=(customer, u64::MAX), |_, _| false)?;
        self.table_mut(HOLDS)?.remove(customer)?;
        self.table_mut(NOTICES)?.remove(customer)?;
        Ok(())
    }

    fn set_hold(&mut self, customer: u64, hold: Option<&StoredHold>) -> Res<()> {
        match hold {
            Some(h) => self.put(HOLDS, customer, &encode(h)?)?,
            None => drop(self.table_mut(HOLDS)?.remove(customer)?),
        };
        Ok(())
    }

    fn set_notice(&mut self, customer: u64, notice: Option<&StoredNotice>) -> Res<()> {
        match notice {
            Some(n) => self.put(NOTICES, customer, &encode(n)?)?,
            None => drop(self.table_mut(NOTICES)?.remove(customer)?),
        };
        Ok(())
    }

    fn put_deletion(
        &mut self,
        customer: u64,
        record: &StoredDeletion,
        aggregate: Option<&StoredAggregate>,
    ) -> Res<()> {
        self.put(DELETIONS, customer, &encode(record)?)?;
        if let Some(a) = aggregate {
            self.put(AGGREGATES, customer, &encode(a)?)?;
        }
        Ok(())
    }

    fn put_retired_purposes(&mut self, retired: &[String]) -> Res<()> {
        self.put(RETENTION, RETIRED, &encode(&retired)?)?;
        Ok(())
    }

    fn put_retention_script(&mut self, source: &str) -> Res<()> {
        self.put(RETENTION, RETENTION_SCRIPT, source.as_bytes())?;
        Ok(())
    }

    fn put_setting(&mut self, name: &str, value: &[u8]) -> Res<()> {
        self.put(SETTINGS, engine_setting(name).as_str(), value)
    }

    fn set_retention_run(&mut self, run: Option<&StoredRun>) -> Res<()> {
        match run {
            Some(r) => self.put(RETENTION, RUN, &encode(r)?)?,
            None => drop(self.table_mut(RETENTION)?.remove(RUN)?),
        };
        Ok(())
    }
}

impl Writer<'_> {
    /// Counts a state write of `new` bytes over `old` ones in the plugin's
    /// counters; returns the bytes of all its state.
    fn count_state(&mut self, plugin: &str, old: Option<usize>, new: usize) -> Res<u64> {
        let mut counters = self.plugin_counters(plugin)?;
        let old = u64::try_from(old.unwrap_or(0)).unwrap_or(u64::MAX);
        let new = u64::try_from(new).unwrap_or(u64::MAX);
        counters.state_bytes = counters.state_bytes.saturating_sub(old).saturating_add(new);
        self.put_plugin_counters(plugin, &counters)?;
        Ok(counters.state_bytes)
    }

    /// Removes the plugin state filed under `customer`, and counts it out
    /// of each plugin's counters.
    fn remove_customer_state(&mut self, customer: u64) -> Res<()> {
        let range = (customer, "")..(customer, "\u{10FFFF}");
        let mut gone: Vec<(String, usize)> = Vec::new();
        if let Some(table) = self.table(PLUGIN_CUSTOMER_STATE)?.as_deref() {
            for entry in table.range(range.clone())? {
                let (k, v) = entry?;
                let size = self
                    .body(PLUGIN_CUSTOMER_STATE, &k.value(), v.value())?
                    .len();
                let filed = k.value().1.to_string();
                gone.push((filed, size));
            }
        }
        if gone.is_empty() {
            return Ok(());
        }
        let mut table = self.table_mut(PLUGIN_CUSTOMER_STATE)?;
        table.retain_in(range, |_, _| false)?;
        drop(table);
        for (filed, size) in gone {
            if let Some((plugin, key)) = filed.split_once('/') {
                self.count_state(plugin, Some(size + key.len()), 0)?;
            }
        }
        Ok(())
    }
}
