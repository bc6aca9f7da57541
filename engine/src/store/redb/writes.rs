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
        let mut table = self.txn.open_table(CUSTOMERS)?;
        for customer in customers {
            table.insert(customer.id, encode(customer)?.as_slice())?;
        }
        Ok(())
    }

    fn remove_customer(&mut self, id: u64) -> Res<()> {
        self.txn.open_table(CUSTOMERS)?.remove(id)?;
        Ok(())
    }

    fn index(&mut self, entries: &[(Index<'_>, u64)], add: bool) -> Res<()> {
        // Each index table is opened once for the whole list.
        let mut blind = None;
        let mut owner = None;
        let mut tag = None;
        let mut status = None;
        for (index, id) in entries {
            match index {
                Index::Blind(key) => {
                    let t = match &mut blind {
                        Some(t) => t,
                        empty => empty.insert(self.txn.open_multimap_table(BLIND)?),
                    };
                    match add {
                        true => t.insert(key.as_slice(), id).map(drop),
                        false => t.remove(key.as_slice(), id).map(drop),
                    }?;
                }
                Index::Owner(key) | Index::Tag(key) | Index::Status(key) => {
                    let (slot, def) = match index {
                        Index::Owner(_) => (&mut owner, BY_OWNER),
                        Index::Tag(_) => (&mut tag, BY_TAG),
                        _ => (&mut status, BY_STATUS),
                    };
                    let t = match slot {
                        Some(t) => t,
                        empty => empty.insert(self.txn.open_multimap_table(def)?),
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
        self.txn
            .open_table(INTERACTIONS)?
            .insert((record.customer, record.id), encode(record)?.as_slice())?;
        Ok(())
    }

    fn remove_interactions(&mut self, customer: u64) -> Res<usize> {
        let mut table = self.txn.open_table(INTERACTIONS)?;
        let before = table.len()?;
        table.retain_in((customer, 0)..=(customer, u64::MAX), |_, _| false)?;
        Ok(usize::try_from(before - table.len()?).unwrap_or(usize::MAX))
    }

    fn put_followup(&mut self, record: &StoredFollowUp) -> Res<()> {
        self.txn
            .open_table(FOLLOWUPS)?
            .insert(record.id, encode(record)?.as_slice())?;
        self.txn
            .open_multimap_table(FOLLOWUPS_BY_CUSTOMER)?
            .insert(record.customer, record.id)?;
        let mut open = self.txn.open_table(FOLLOWUPS_OPEN)?;
        if record.done {
            open.remove((record.due, record.id))?;
        } else {
            open.insert((record.due, record.id), record.assignee.as_str())?;
        }
        Ok(())
    }

    fn remove_followups(&mut self, customer: u64) -> Res<()> {
        let ids: Vec<u64> = self
            .txn
            .open_multimap_table(FOLLOWUPS_BY_CUSTOMER)?
            .remove_all(customer)?
            .map(|v| Ok::<_, StoreError>(v?.value()))
            .collect::<Res<_>>()?;
        let mut all = self.txn.open_table(FOLLOWUPS)?;
        let mut open = self.txn.open_table(FOLLOWUPS_OPEN)?;
        let mut notified = self.txn.open_table(NOTIFIED)?;
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
        self.txn.open_table(NOTIFIED)?.insert(followup, at)?;
        Ok(())
    }

    fn put_principal(&mut self, p: &StoredPrincipal) -> Res<()> {
        self.txn
            .open_table(PRINCIPALS)?
            .insert(p.name.as_str(), encode_principal(p)?.as_slice())?;
        Ok(())
    }

    fn put_credentials(&mut self, name: &str, c: &StoredCredentials) -> Res<()> {
        self.txn
            .open_table(CREDENTIALS)?
            .insert(name, encode(c)?.as_slice())?;
        Ok(())
    }

    fn put_session(&mut self, hash: &[u8; 32], s: &StoredSession) -> Res<()> {
        self.txn
            .open_table(SESSIONS)?
            .insert(hash.as_slice(), encode(s)?.as_slice())?;
        Ok(())
    }

    fn remove_sessions(
        &mut self,
        remove: &mut dyn FnMut(&[u8], &StoredSession) -> bool,
    ) -> Res<usize> {
        let mut table = self.txn.open_table(SESSIONS)?;
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
        let mut table = self.txn.open_table(THROTTLE)?;
        if t.failures == 0 {
            table.remove(key)?;
        } else {
            table.insert(key, encode(&t)?.as_slice())?;
        }
        Ok(())
    }

    fn put_policy(&mut self, version: u64, p: &StoredPolicy) -> Res<()> {
        self.txn
            .open_table(POLICIES)?
            .insert(version, encode(p)?.as_slice())?;
        Ok(())
    }

    fn put_plugin(&mut self, info: &PluginInfo, code: Option<&[u8]>) -> Res<()> {
        let name = info.manifest.name.as_str();
        self.txn
            .open_table(PLUGINS)?
            .insert(name, encode(info)?.as_slice())?;
        if let Some(code) = code {
            self.txn.open_table(PLUGIN_CODE)?.insert(name, code)?;
        }
        Ok(())
    }

    fn remove_plugin(&mut self, name: &str) -> Res<()> {
        self.txn.open_table(PLUGINS)?.remove(name)?;
        self.txn.open_table(PLUGIN_CODE)?.remove(name)?;
        let mut state = self.txn.open_table(PLUGIN_STATE)?;
        state.retain_in((name, "")..(name, "\u{10FFFF}"), |_, _| false)?;
        let mut log = self.txn.open_table(PLUGIN_LOG)?;
        log.retain_in((name, 0)..=(name, u64::MAX), |_, _| false)?;
        Ok(())
    }

    fn put_plugin_state(&mut self, plugin: &str, key: &str, value: &[u8]) -> Res<()> {
        self.txn
            .open_table(PLUGIN_STATE)?
            .insert((plugin, key), value)?;
        Ok(())
    }

    fn append_plugin_log(&mut self, plugin: &str, lines: &[StoredLogLine]) -> Res<()> {
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

    fn put_link(&mut self, hash: &[u8; 16], customer: u64) -> Res<()> {
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

    fn remove_plugin_traces(&mut self, customer: u64) -> Res<()> {
        let hashes: Vec<Vec<u8>> = self
            .txn
            .open_multimap_table(LINKS_BY_CUSTOMER)?
            .remove_all(customer)?
            .map(|h| h.map(|h| h.value().to_vec()))
            .collect::<Result<_, _>>()?;
        let mut links = self.txn.open_table(LINKS)?;
        for hash in &hashes {
            links.remove(hash.as_slice())?;
        }
        let mut consents = self.txn.open_table(CONSENTS)?;
        consents.retain_in((customer, "")..(customer, "\u{10FFFF}"), |_, _| false)?;
        let ids: Vec<u64> = self
            .txn
            .open_multimap_table(OUTBOX_BY_CUSTOMER)?
            .remove_all(customer)?
            .map(|id| id.map(|id| id.value()))
            .collect::<Result<_, _>>()?;
        let mut outbox = self.txn.open_table(OUTBOX)?;
        for id in ids {
            outbox.remove(id)?;
        }
        Ok(())
    }

    fn put_message(&mut self, id: u64, m: &StoredMessage) -> Res<()> {
        self.txn
            .open_table(OUTBOX)?
            .insert(id, encode(m)?.as_slice())?;
        self.txn
            .open_multimap_table(OUTBOX_BY_CUSTOMER)?
            .insert(m.customer, id)?;
        Ok(())
    }

    fn remove_message(&mut self, id: u64) -> Res<bool> {
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

    fn put_consent(&mut self, customer: u64, key: &str, c: &StoredConsent) -> Res<()> {
        self.txn
            .open_table(CONSENTS)?
            .insert((customer, key), encode(c)?.as_slice())?;
        Ok(())
    }

    fn put_alert(&mut self, id: u64, a: &StoredAlert) -> Res<()> {
        self.txn
            .open_table(ALERTS)?
            .insert(id, encode(a)?.as_slice())?;
        Ok(())
    }

    fn append_consent(&mut self, customer: u64, entry: &StoredConsentEntry) -> Res<()> {
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

    fn remove_privacy_traces(&mut self, customer: u64) -> Res<()> {
        let mut ledger = self.txn.open_table(LEDGER)?;
        ledger.retain_in((customer, 0)..=(customer, u64::MAX), |_, _| false)?;
        self.txn.open_table(HOLDS)?.remove(customer)?;
        self.txn.open_table(NOTICES)?.remove(customer)?;
        Ok(())
    }

    fn set_hold(&mut self, customer: u64, hold: Option<&StoredHold>) -> Res<()> {
        let mut table = self.txn.open_table(HOLDS)?;
        match hold {
            Some(h) => table.insert(customer, encode(h)?.as_slice())?,
            None => table.remove(customer)?,
        };
        Ok(())
    }

    fn set_notice(&mut self, customer: u64, notice: Option<&StoredNotice>) -> Res<()> {
        let mut table = self.txn.open_table(NOTICES)?;
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

    fn put_retired_purposes(&mut self, retired: &[String]) -> Res<()> {
        self.txn
            .open_table(RETENTION)?
            .insert(RETIRED, encode(&retired)?.as_slice())?;
        Ok(())
    }

    fn put_retention_script(&mut self, source: &str) -> Res<()> {
        self.txn
            .open_table(RETENTION)?
            .insert(RETENTION_SCRIPT, source.as_bytes())?;
        Ok(())
    }

    fn set_retention_run(&mut self, run: Option<&StoredRun>) -> Res<()> {
        let mut table = self.txn.open_table(RETENTION)?;
        match run {
            Some(r) => table.insert(RUN, encode(r)?.as_slice())?,
            None => table.remove(RUN)?,
        };
        Ok(())
    }
}
