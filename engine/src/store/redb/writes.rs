//! Every write of a redb transaction.

use redb::{ReadableTable, ReadableTableMetadata};

use super::super::StoreError;
use super::super::interface::{AuditHead, Index, Txn};
use super::super::types::{
    StoredAggregate, StoredAlert, StoredConsent, StoredConsentEntry, StoredCredentials,
    StoredCustomer, StoredDeletion, StoredFollowUp, StoredHold, StoredInteraction, StoredLogLine,
    StoredMessage, StoredNotice, StoredPolicy, StoredPrincipal, StoredRun, StoredSession,
    StoredThrottle, decode, encode, encode_principal,
};
use super::Writer;
use super::tables::*;
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
        let mut table = self.table_mut(CUSTOMERS)?;
        for customer in customers {
            table.insert(customer.id, encode(customer)?.as_slice())?;
        }
        Ok(())
    }

    fn remove_customer(&mut self, id: u64) -> Res<()> {
        self.table_mut(CUSTOMERS)?.remove(id)?;
        Ok(())
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
        self.table_mut(INTERACTIONS)?
            .insert((record.customer, record.id), encode(record)?.as_slice())?;
        Ok(())
    }

    fn remove_interactions(&mut self, customer: u64) -> Res<usize> {
        let mut table = self.table_mut(INTERACTIONS)?;
        let before = table.len()?;
        table.retain_in((customer, 0)..=(customer, u64::MAX), |_, _| false)?;
        Ok(usize::try_from(before - table.len()?).unwrap_or(usize::MAX))
    }

    fn put_followup(&mut self, record: &StoredFollowUp) -> Res<()> {
        self.table_mut(FOLLOWUPS)?
            .insert(record.id, encode(record)?.as_slice())?;
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
            if let Some(record) = all.remove(id)? {
                let f: StoredFollowUp = decode(record.value(), "follow-up")?;
                open.remove((f.due, f.id))?;
            }
            notified.remove(id)?;
        }
        Ok(())
    }

    fn mark_notified(&mut self, followup: u64, at: i64) -> Res<()> {
        self.table_mut(NOTIFIED)?.insert(followup, at)?;
        Ok(())
    }

    fn put_principal(&mut self, p: &StoredPrincipal) -> Res<()> {
        self.table_mut(PRINCIPALS)?
            .insert(p.name.as_str(), encode_principal(p)?.as_slice())?;
        Ok(())
    }

    fn put_credentials(&mut self, name: &str, c: &StoredCredentials) -> Res<()> {
        self.table_mut(CREDENTIALS)?
            .insert(name, encode(c)?.as_slice())?;
        Ok(())
    }

    fn put_session(&mut self, hash: &[u8; 32], s: &StoredSession) -> Res<()> {
        self.table_mut(SESSIONS)?
            .insert(hash.as_slice(), encode(s)?.as_slice())?;
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
            let session: StoredSession = decode(v.value(), "session")?;
            if remove(k.value(), &session) {
                doomed.push(k.value().to_vec());
            }
        }
        for k in &doomed {
            table.remove(k.as_slice())?;
        }
        Ok(doomed.len())
    }

    fn put_throttle(&mut self, key: &str, t: StoredThrottle) -> Res<()> {
        let mut table = self.table_mut(THROTTLE)?;
        if t.failures == 0 {
            table.remove(key)?;
        } else {
            table.insert(key, encode(&t)?.as_slice())?;
        }
        Ok(())
    }

    fn put_policy(&mut self, version: u64, p: &StoredPolicy) -> Res<()> {
        self.table_mut(POLICIES)?
            .insert(version, encode(p)?.as_slice())?;
        Ok(())
    }

    fn put_plugin(&mut self, info: &PluginInfo, code: Option<&[u8]>) -> Res<()> {
        let name = info.manifest.name.as_str();
        self.table_mut(PLUGINS)?
            .insert(name, encode(info)?.as_slice())?;
        if let Some(code) = code {
            self.table_mut(PLUGIN_CODE)?.insert(name, code)?;
        }
        Ok(())
    }

    fn remove_plugin(&mut self, name: &str) -> Res<()> {
        self.table_mut(PLUGINS)?.remove(name)?;
        self.table_mut(PLUGIN_CODE)?.remove(name)?;
        let mut state = self.table_mut(PLUGIN_STATE)?;
        state.retain_in((name, "")..(name, "\u{10FFFF}"), |_, _| false)?;
        let mut log = self.table_mut(PLUGIN_LOG)?;
        log.retain_in((name, 0)..=(name, u64::MAX), |_, _| false)?;
        Ok(())
    }

    fn put_plugin_state(&mut self, plugin: &str, key: &str, value: &[u8]) -> Res<()> {
        self.table_mut(PLUGIN_STATE)?.insert((plugin, key), value)?;
        Ok(())
    }

    fn append_plugin_log(&mut self, plugin: &str, lines: &[StoredLogLine]) -> Res<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut table = self.table_mut(PLUGIN_LOG)?;
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

    fn put_link(&mut self, hash: &[u8; 16], customer: u64) -> Res<()> {
        let old = self
            .table_mut(LINKS)?
            .insert(hash.as_slice(), customer)?
            .map(|v| v.value());
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
        let mut links = self.table_mut(LINKS)?;
        for hash in &hashes {
            links.remove(hash.as_slice())?;
        }
        let mut consents = self.table_mut(CONSENTS)?;
        consents.retain_in((customer, "")..(customer, "\u{10FFFF}"), |_, _| false)?;
        let ids: Vec<u64> = self
            .multimap_mut(OUTBOX_BY_CUSTOMER)?
            .remove_all(customer)?
            .map(|id| id.map(|id| id.value()))
            .collect::<Result<_, _>>()?;
        let mut outbox = self.table_mut(OUTBOX)?;
        for id in ids {
            outbox.remove(id)?;
        }
        Ok(())
    }

    fn put_message(&mut self, id: u64, m: &StoredMessage) -> Res<()> {
        self.table_mut(OUTBOX)?.insert(id, encode(m)?.as_slice())?;
        self.multimap_mut(OUTBOX_BY_CUSTOMER)?
            .insert(m.customer, id)?;
        Ok(())
    }

    fn remove_message(&mut self, id: u64) -> Res<bool> {
        let m: StoredMessage = {
            let mut outbox = self.table_mut(OUTBOX)?;
            let Some(bytes) = outbox.remove(id)? else {
                return Ok(false);
            };
            decode(bytes.value(), "message")?
        };
        self.multimap_mut(OUTBOX_BY_CUSTOMER)?
            .remove(m.customer, id)?;
        Ok(true)
    }

    fn put_consent(&mut self, customer: u64, key: &str, c: &StoredConsent) -> Res<()> {
        self.table_mut(CONSENTS)?
            .insert((customer, key), encode(c)?.as_slice())?;
        Ok(())
    }

    fn put_alert(&mut self, id: u64, a: &StoredAlert) -> Res<()> {
        self.table_mut(ALERTS)?.insert(id, encode(a)?.as_slice())?;
        Ok(())
    }

    fn append_consent(&mut self, customer: u64, entry: &StoredConsentEntry) -> Res<()> {
        let mut table = self.table_mut(LEDGER)?;
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

    fn remove_privacy_traces(&mut self, customer: u64) -> Res<()> {
        let mut ledger = self.table_mut(LEDGER)?;
        ledger.retain_in((customer, 0)..=(customer, u64::MAX), |_, _| false)?;
        self.table_mut(HOLDS)?.remove(customer)?;
        self.table_mut(NOTICES)?.remove(customer)?;
        Ok(())
    }

    fn set_hold(&mut self, customer: u64, hold: Option<&StoredHold>) -> Res<()> {
        let mut table = self.table_mut(HOLDS)?;
        match hold {
            Some(h) => table.insert(customer, encode(h)?.as_slice())?,
            None => table.remove(customer)?,
        };
        Ok(())
    }

    fn set_notice(&mut self, customer: u64, notice: Option<&StoredNotice>) -> Res<()> {
        let mut table = self.table_mut(NOTICES)?;
        match notice {
            Some(n) => table.insert(customer, encode(n)?.as_slice())?,
            None => table.remove(customer)?,
        };
        Ok(())
    }

    fn put_deletion(
        &mut self,
        customer: u64,
        record: &StoredDeletion,
        aggregate: Option<&StoredAggregate>,
    ) -> Res<()> {
        self.table_mut(DELETIONS)?
            .insert(customer, encode(record)?.as_slice())?;
        if let Some(a) = aggregate {
            self.table_mut(AGGREGATES)?
                .insert(customer, encode(a)?.as_slice())?;
        }
        Ok(())
    }

    fn put_retired_purposes(&mut self, retired: &[String]) -> Res<()> {
        self.table_mut(RETENTION)?
            .insert(RETIRED, encode(&retired)?.as_slice())?;
        Ok(())
    }

    fn put_retention_script(&mut self, source: &str) -> Res<()> {
        self.table_mut(RETENTION)?
            .insert(RETENTION_SCRIPT, source.as_bytes())?;
        Ok(())
    }

    fn set_retention_run(&mut self, run: Option<&StoredRun>) -> Res<()> {
        let mut table = self.table_mut(RETENTION)?;
        match run {
            Some(r) => table.insert(RUN, encode(r)?.as_slice())?,
            None => table.remove(RUN)?,
        };
        Ok(())
    }
}
