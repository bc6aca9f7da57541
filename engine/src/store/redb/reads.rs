//! Every read, once, for snapshots and write transactions alike: both
//! reach their tables through [`Open`].

use std::collections::HashMap;

use redb::{ReadableMultimapTable, ReadableTable, ReadableTableMetadata, Value};
use serde::de::DeserializeOwned;

use super::super::StoreError;
use super::super::interface::{AuditHead, Index, Snapshot};
use super::super::types::{
    CustomerRef, StoredAggregate, StoredAlert, StoredConsent, StoredConsentEntry,
    StoredCredentials, StoredCustomer, StoredDeletion, StoredEvent, StoredFollowUp,
    StoredGuardCounts, StoredHold, StoredInteraction, StoredLogLine, StoredMessage, StoredNotice,
    StoredPluginCounters, StoredPolicy, StoredPrincipal, StoredRun, StoredSession, StoredThrottle,
    decode, decode_alert, decode_customer, decode_customer_ref, decode_log_line, decode_message,
    decode_principal,
};
use super::Open;
use super::tables::*;
use super::tagged::Tagged;
use crate::guard::Tally;
use crate::plugin::PluginInfo;

type Res<T> = Result<T, StoreError>;

/// The record under `key` in `table`, checked and decoded.
fn get<'k, T: Named<V = Tagged>, D: DeserializeOwned>(
    source: &impl Open,
    table: T,
    key: impl std::borrow::Borrow<<T::K as Value>::SelfType<'k>>,
    what: &str,
) -> Res<Option<D>> {
    source.record(table, key, |body| decode(body, what))
}

/// Up to `limit` records of a table keyed by id, with their ids: oldest
/// first, or newest first.
fn listed<T: Named<K = u64, V = Tagged>, D>(
    source: &impl Open,
    table: T,
    limit: usize,
    newest_first: bool,
    decode: impl Fn(&[u8]) -> Res<D>,
) -> Res<Vec<(u64, D)>> {
    let Some(open) = source.table(table)? else {
        return Ok(Vec::new());
    };
    let rows = open.iter()?;
    let rows: Box<dyn Iterator<Item = _>> = match newest_first {
        true => Box::new(rows.rev()),
        false => Box::new(rows),
    };
    rows.take(limit)
        .map(|e| {
            let (k, v) = e?;
            let id = k.value();
            Ok((id, decode(source.body(table, &id, v.value())?)?))
        })
        .collect()
}

/// How many entries a table holds.
fn len(source: &impl Open, table: impl Named) -> Res<u64> {
    Ok(match source.table(table)? {
        Some(table) => table.len()?,
        None => 0,
    })
}

/// The follow-ups of `ids`, in that order.
fn followups_by_id(source: &impl Open, ids: impl Iterator<Item = u64>) -> Res<Vec<StoredFollowUp>> {
    let Some(all) = source.table(FOLLOWUPS)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for id in ids {
        if let Some(v) = all.get(id)? {
            out.push(decode(
                source.body(FOLLOWUPS, &id, v.value())?,
                "follow-up",
            )?);
        }
    }
    Ok(out)
}

impl<S: Open> Snapshot for S {
    fn customer(&self, id: u64) -> Res<Option<StoredCustomer>> {
        self.record(CUSTOMERS, id, decode_customer)
    }

    fn contains_customer(&self, id: u64) -> Res<bool> {
        Ok(match self.table(CUSTOMERS)? {
            Some(table) => table.get(id)?.is_some(),
            None => false,
        })
    }

    fn visit_customer(&self, id: u64, f: &mut dyn FnMut(CustomerRef<'_>)) -> Res<bool> {
        let Some(table) = self.table(CUSTOMERS)? else {
            return Ok(false);
        };
        match table.get(id)? {
            Some(guard) => {
                f(decode_customer_ref(self.body(
                    CUSTOMERS,
                    &id,
                    guard.value(),
                )?)?);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn scan_customers(
        &self,
        after: u64,
        limit: usize,
        f: &mut dyn FnMut(CustomerRef<'_>) -> Res<bool>,
    ) -> Res<Option<u64>> {
        let Some(table) = self.table(CUSTOMERS)? else {
            return Ok(None);
        };
        let mut last = None;
        for entry in table.range(after.saturating_add(1)..)?.take(limit) {
            let (id, bytes) = entry?;
            let id = id.value();
            last = Some(id);
            if !f(decode_customer_ref(self.body(
                CUSTOMERS,
                &id,
                bytes.value(),
            )?)?)? {
                break;
            }
        }
        Ok(last)
    }

    fn customer_count(&self) -> Res<u64> {
        len(self, CUSTOMERS)
    }

    fn scan_index(&self, index: Index<'_>, f: &mut dyn FnMut(u64) -> Res<bool>) -> Res<()> {
        let mut each = |values: redb::MultimapValue<'_, u64>| -> Res<()> {
            for value in values {
                if !f(value?.value())? {
                    break;
                }
            }
            Ok(())
        };
        match index {
            Index::Blind(key) => match self.multimap(BLIND)? {
                Some(t) => each(t.get(key.as_slice())?),
                None => Ok(()),
            },
            Index::Owner(o) => match self.multimap(BY_OWNER)? {
                Some(t) => each(t.get(o)?),
                None => Ok(()),
            },
            Index::Tag(tag) => match self.multimap(BY_TAG)? {
                Some(t) => each(t.get(tag)?),
                None => Ok(()),
            },
            Index::Status(s) => match self.multimap(BY_STATUS)? {
                Some(t) => each(t.get(s)?),
                None => Ok(()),
            },
        }
    }

    fn interactions(&self, customer: u64) -> Res<Vec<StoredInteraction>> {
        let Some(table) = self.table(INTERACTIONS)? else {
            return Ok(Vec::new());
        };
        table
            .range((customer, 0)..=(customer, u64::MAX))?
            .map(|r| {
                let (k, v) = r?;
                decode(
                    self.body(INTERACTIONS, &k.value(), v.value())?,
                    "interaction",
                )
            })
            .collect()
    }

    fn followup(&self, id: u64) -> Res<Option<StoredFollowUp>> {
        get(self, FOLLOWUPS, id, "follow-up")
    }

    fn followups_of(&self, customer: u64) -> Res<Vec<StoredFollowUp>> {
        let Some(index) = self.multimap(FOLLOWUPS_BY_CUSTOMER)? else {
            return Ok(Vec::new());
        };
        let ids: Vec<u64> = index
            .get(customer)?
            .map(|id| Ok::<_, StoreError>(id?.value()))
            .collect::<Res<_>>()?;
        // The index is not authenticated: keep what the records confirm.
        let mut found = followups_by_id(self, ids.into_iter())?;
        found.retain(|f| f.customer == customer);
        Ok(found)
    }

    fn followups_due(&self, before: i64, assignee: Option<&str>) -> Res<Vec<StoredFollowUp>> {
        let Some(open) = self.table(FOLLOWUPS_OPEN)? else {
            return Ok(Vec::new());
        };
        let mut ids = Vec::new();
        for entry in open.range((i64::MIN, 0)..=(before, u64::MAX))? {
            let (key, who) = entry?;
            if assignee.is_none_or(|a| a == who.value()) {
                ids.push(key.value().1);
            }
        }
        // The index is not authenticated: keep what the records confirm.
        let mut found = followups_by_id(self, ids.into_iter())?;
        found.retain(|f| !f.done && f.due <= before && assignee.is_none_or(|a| a == f.assignee));
        Ok(found)
    }

    fn notified(&self, followup: u64) -> Res<bool> {
        Ok(self.record(NOTIFIED, followup, |_| Ok(()))?.is_some())
    }

    fn principal(&self, name: &str) -> Res<Option<StoredPrincipal>> {
        self.record(PRINCIPALS, name, decode_principal)
    }

    fn principals(&self) -> Res<Vec<StoredPrincipal>> {
        let Some(table) = self.table(PRINCIPALS)? else {
            return Ok(Vec::new());
        };
        table
            .iter()?
            .map(|r| {
                let (k, v) = r?;
                decode_principal(self.body(PRINCIPALS, &k.value(), v.value())?)
            })
            .collect()
    }

    fn principal_count(&self) -> Res<u64> {
        len(self, PRINCIPALS)
    }

    fn credentials(&self, name: &str) -> Res<StoredCredentials> {
        Ok(get(self, CREDENTIALS, name, "credentials")?.unwrap_or_default())
    }

    fn session(&self, hash: &[u8; 32]) -> Res<Option<StoredSession>> {
        get(self, SESSIONS, hash.as_slice(), "session")
    }

    fn sessions(&self) -> Res<Vec<([u8; 32], StoredSession)>> {
        let Some(table) = self.table(SESSIONS)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let key = k.value();
            let session = decode(self.body(SESSIONS, &key, v.value())?, "session")?;
            let hash =
                <[u8; 32]>::try_from(key).map_err(|_| StoreError::Corrupt("session key".into()))?;
            out.push((hash, session));
        }
        Ok(out)
    }

    fn throttle(&self, key: &str) -> Res<StoredThrottle> {
        Ok(get(self, THROTTLE, key, "throttle")?.unwrap_or_default())
    }

    fn latest_policy(&self) -> Res<Option<(u64, StoredPolicy)>> {
        let Some(table) = self.table(POLICIES)? else {
            return Ok(None);
        };
        match table.last()? {
            Some((k, v)) => {
                let version = k.value();
                let body = self.body(POLICIES, &version, v.value())?;
                Ok(Some((version, decode(body, "policy")?)))
            }
            None => Ok(None),
        }
    }

    fn audit_head(&self) -> Res<AuditHead> {
        if let Some(head) = self.pending_head() {
            return Ok(head);
        }
        let head = self.record(SETTINGS, SETTING_AUDIT_HEAD, |body| {
            AuditHead::decode(body).ok_or_else(|| StoreError::Corrupt("audit head".into()))
        })?;
        Ok(head.unwrap_or_default())
    }

    fn scan_audit(&self, first: u64, f: &mut dyn FnMut(u64, &[u8]) -> Res<bool>) -> Res<()> {
        if let Some(table) = self.table(AUDIT)? {
            for entry in table.range(first..)? {
                let (seq, bytes) = entry?;
                if !f(seq.value(), bytes.value())? {
                    return Ok(());
                }
            }
        }
        for (seq, bytes) in self.pending_audit().iter().filter(|(s, _)| *s >= first) {
            if !f(*seq, bytes)? {
                break;
            }
        }
        Ok(())
    }

    fn audit_tail(&self, n: usize) -> Res<Vec<(u64, Vec<u8>)>> {
        let pending = self.pending_audit();
        let mut out: Vec<(u64, Vec<u8>)> = pending.iter().rev().take(n).cloned().collect();
        if let Some(table) = self.table(AUDIT)? {
            let stored = table.iter()?.rev().take(n - out.len());
            for row in stored {
                let (k, v) = row?;
                out.push((k.value(), v.value().to_vec()));
            }
        }
        out.reverse();
        Ok(out)
    }

    fn audit_entry(&self, seq: u64) -> Res<Option<Vec<u8>>> {
        if let Some((_, bytes)) = self.pending_audit().iter().find(|(s, _)| *s == seq) {
            return Ok(Some(bytes.clone()));
        }
        Ok(match self.table(AUDIT)? {
            Some(table) => table.get(seq)?.map(|v| v.value().to_vec()),
            None => None,
        })
    }

    fn audit_seqs_by_actor(
        &self,
        actor: &str,
        from: (i64, u64),
        to: i64,
        limit: usize,
    ) -> Res<Vec<(i64, u64)>> {
        let Some(table) = self.table(AUDIT_BY_ACTOR)? else {
            return Ok(Vec::new());
        };
        if from.0 > to {
            return Ok(Vec::new());
        }
        table
            .range((actor, from.0, from.1)..=(actor, to, u64::MAX))?
            .take(limit)
            .map(|row| {
                let (_, at, seq) = row?.0.value();
                Ok((at, seq))
            })
            .collect()
    }

    fn audit_indexed(&self, seq: u64, actor: &str, at: i64, customers: &[u64]) -> Res<bool> {
        let by_actor = match self.table(AUDIT_BY_ACTOR)? {
            Some(table) => table.get((actor, at, seq))?.is_some(),
            None => false,
        };
        if !by_actor {
            return Ok(false);
        }
        let Some(table) = self.table(AUDIT_BY_CUSTOMER)? else {
            return Ok(customers.is_empty());
        };
        for customer in customers {
            if table.get((*customer, seq))?.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn audit_index_rows(&self) -> Res<(u64, u64)> {
        Ok((len(self, AUDIT_BY_ACTOR)?, len(self, AUDIT_BY_CUSTOMER)?))
    }

    fn audit_seqs_of_customer(&self, customer: u64, after: u64, limit: usize) -> Res<Vec<u64>> {
        let Some(table) = self.table(AUDIT_BY_CUSTOMER)? else {
            return Ok(Vec::new());
        };
        let Some(from) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        table
            .range((customer, from)..=(customer, u64::MAX))?
            .take(limit)
            .map(|row| Ok(row?.0.value().1))
            .collect()
    }

    fn contains_customers(&self, ids: &[u64]) -> Res<Vec<bool>> {
        let Some(table) = self.table(CUSTOMERS)? else {
            return Ok(vec![false; ids.len()]);
        };
        ids.iter().map(|id| Ok(table.get(*id)?.is_some())).collect()
    }

    fn plugin(&self, name: &str) -> Res<Option<PluginInfo>> {
        get(self, PLUGINS, name, "plugin")
    }

    fn plugins(&self) -> Res<Vec<PluginInfo>> {
        let Some(table) = self.table(PLUGINS)? else {
            return Ok(Vec::new());
        };
        table
            .iter()?
            .map(|e| {
                let (k, v) = e?;
                decode(self.body(PLUGINS, &k.value(), v.value())?, "plugin")
            })
            .collect()
    }

    fn plugin_code(&self, name: &str) -> Res<Option<Vec<u8>>> {
        self.record(PLUGIN_CODE, name, |code| Ok(code.to_vec()))
    }

    fn plugin_state(&self, plugin: &str, key: &str) -> Res<Option<Vec<u8>>> {
        self.record(PLUGIN_STATE, (plugin, key), |value| Ok(value.to_vec()))
    }

    fn customer_state(&self, customer: u64, plugin: &str, key: &str) -> Res<Option<Vec<u8>>> {
        let filed = customer_state_key(plugin, key);
        self.record(PLUGIN_CUSTOMER_STATE, (customer, filed.as_str()), |value| {
            Ok(value.to_vec())
        })
    }

    fn plugin_counters(&self, plugin: &str) -> Res<StoredPluginCounters> {
        let counters = self.record(PLUGIN_COUNTERS, plugin, |body| decode(body, "counters"))?;
        Ok(counters.unwrap_or_default())
    }

    fn plugin_log(&self, plugin: &str, limit: usize) -> Res<Vec<StoredLogLine>> {
        let Some(table) = self.table(PLUGIN_LOG)? else {
            return Ok(Vec::new());
        };
        let mut lines = table
            .range((plugin, 0)..=(plugin, u64::MAX))?
            .rev()
            .take(limit)
            .map(|e| {
                let (k, v) = e?;
                decode_log_line(self.body(PLUGIN_LOG, &k.value(), v.value())?)
            })
            .collect::<Res<Vec<StoredLogLine>>>()?;
        lines.reverse();
        Ok(lines)
    }

    fn link(&self, hash: &[u8; 16]) -> Res<Option<u64>> {
        self.record(LINKS, hash.as_slice(), read_id)
    }

    fn messages(&self, limit: usize) -> Res<Vec<(u64, StoredMessage)>> {
        listed(self, OUTBOX, limit, false, decode_message)
    }

    fn messages_of(&self, customer: u64) -> Res<Vec<StoredMessage>> {
        let (Some(ids), Some(table)) = (self.multimap(OUTBOX_BY_CUSTOMER)?, self.table(OUTBOX)?)
        else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for id in ids.get(customer)? {
            let id = id?.value();
            if let Some(v) = table.get(id)? {
                let m = decode_message(self.body(OUTBOX, &id, v.value())?)?;
                // The index is not authenticated: keep what the record confirms.
                if m.customer == customer {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    fn alerts_where(
        &self,
        limit: usize,
        wanted: &dyn Fn(&StoredAlert) -> bool,
    ) -> Res<Vec<(u64, StoredAlert)>> {
        let Some(table) = self.table(ALERTS)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in table.iter()?.rev() {
            if out.len() >= limit {
                break;
            }
            let (k, v) = entry?;
            let id = k.value();
            let alert = decode_alert(self.body(ALERTS, &id, v.value())?)?;
            if wanted(&alert) {
                out.push((id, alert));
            }
        }
        Ok(out)
    }

    fn alert(&self, id: u64) -> Res<Option<StoredAlert>> {
        self.record(ALERTS, id, decode_alert)
    }

    fn guard_tallies(&self, since: i64) -> Res<(HashMap<String, Tally>, bool)> {
        let mut tallies: HashMap<String, Tally> = HashMap::new();
        let mut stale = false;
        if let Some(table) = self.table(GUARD_COUNTS)? {
            for entry in table.iter()? {
                let (k, v) = entry?;
                let key = k.value();
                let (actor, minute) = key;
                if minute < since {
                    stale = true;
                    continue;
                }
                let counts: StoredGuardCounts =
                    decode(self.body(GUARD_COUNTS, &key, v.value())?, "guard counts")?;
                let rows = counts.rows.iter().fold(0u64, |a, n| a.saturating_add(*n));
                tallies
                    .entry(actor.to_string())
                    .or_default()
                    .restore_counts(minute, rows, counts.misses);
            }
        }
        if let Some(table) = self.table(GUARD_SEEN)? {
            for entry in table.iter()? {
                let (k, v) = entry?;
                let key = k.value();
                let minute: i64 = decode(self.body(GUARD_SEEN, &key, v.value())?, "guard seen")?;
                if minute < since {
                    stale = true;
                    continue;
                }
                let (actor, customer) = key;
                tallies
                    .entry(actor.to_string())
                    .or_default()
                    .restore_seen(customer, minute);
            }
        }
        Ok((tallies, stale))
    }

    fn queued_events(&self, after: u64, limit: usize) -> Res<Vec<(u64, StoredEvent)>> {
        let Some(table) = self.table(EVENTS)? else {
            return Ok(Vec::new());
        };
        let Some(from) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        table
            .range(from..)?
            .take(limit)
            .map(|e| {
                let (k, v) = e?;
                let id = k.value();
                Ok((
                    id,
                    decode(self.body(EVENTS, &id, v.value())?, "queued event")?,
                ))
            })
            .collect()
    }

    fn queued_event_count(&self) -> Res<u64> {
        len(self, EVENTS)
    }

    fn consent(&self, customer: u64, key: &str) -> Res<Option<StoredConsent>> {
        get(self, CONSENTS, (customer, key), "consent")
    }

    fn consents(&self, customer: u64) -> Res<Vec<(String, StoredConsent)>> {
        let Some(table) = self.table(CONSENTS)? else {
            return Ok(Vec::new());
        };
        table
            .range((customer, "")..(customer, "\u{10FFFF}"))?
            .map(|e| {
                let (k, v) = e?;
                let key = k.value();
                let consent = decode(self.body(CONSENTS, &key, v.value())?, "consent")?;
                Ok((key.1.to_string(), consent))
            })
            .collect()
    }

    fn consent_ledger(&self, customer: u64) -> Res<Vec<StoredConsentEntry>> {
        let Some(table) = self.table(LEDGER)? else {
            return Ok(Vec::new());
        };
        table
            .range((customer, 0)..=(customer, u64::MAX))?
            .map(|e| {
                let (k, v) = e?;
                decode(self.body(LEDGER, &k.value(), v.value())?, "consent entry")
            })
            .collect()
    }

    fn hold(&self, customer: u64) -> Res<Option<StoredHold>> {
        get(self, HOLDS, customer, "legal hold")
    }

    fn notice(&self, customer: u64) -> Res<Option<StoredNotice>> {
        get(self, NOTICES, customer, "notice")
    }

    fn holds_and_notices(&self) -> Res<(u64, u64)> {
        Ok((len(self, HOLDS)?, len(self, NOTICES)?))
    }

    fn deletion(&self, customer: u64) -> Res<Option<StoredDeletion>> {
        get(self, DELETIONS, customer, "deletion")
    }

    fn aggregate(&self, customer: u64) -> Res<Option<StoredAggregate>> {
        get(self, AGGREGATES, customer, "aggregate")
    }

    fn deletions(
        &self,
        after: u64,
        limit: usize,
    ) -> Res<Vec<(u64, StoredDeletion, Option<StoredAggregate>)>> {
        let Some(table) = self.table(DELETIONS)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in table.range(after.saturating_add(1)..)?.take(limit) {
            let (id, v) = entry?;
            let id = id.value();
            out.push((
                id,
                decode(self.body(DELETIONS, &id, v.value())?, "deletion")?,
            ));
        }
        drop(table);
        out.into_iter()
            .map(|(id, d)| Ok((id, d, self.aggregate(id)?)))
            .collect()
    }

    fn retired_purposes(&self) -> Res<Vec<String>> {
        Ok(get(self, RETENTION, RETIRED, "retired purposes")?.unwrap_or_default())
    }

    fn retention_script(&self) -> Res<Option<String>> {
        self.record(RETENTION, RETENTION_SCRIPT, |source| {
            Ok(String::from_utf8_lossy(source).into_owned())
        })
    }

    fn setting(&self, name: &str) -> Res<Option<Vec<u8>>> {
        self.record(SETTINGS, engine_setting(name).as_str(), |v| Ok(v.to_vec()))
    }

    fn retention_run(&self) -> Res<Option<StoredRun>> {
        get(self, RETENTION, RUN, "retention run")
    }
}

/// A customer id stored as a record's body.
/// Where a plugin's state about a customer is filed under the customer.
pub(super) fn customer_state_key(plugin: &str, key: &str) -> String {
    format!("{plugin}/{key}")
}

fn read_id(body: &[u8]) -> Res<u64> {
    <[u8; 8]>::try_from(body)
        .map(u64::from_le_bytes)
        .map_err(|_| StoreError::Corrupt("plugin link".into()))
}
