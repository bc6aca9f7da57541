//! The audit chain, for operators: verification, checkpoints, the log.

use super::Engine;
use crate::audit::{self, AuditEntry, AuditError, Checkpoint, VerifyReport};
use crate::crypto::Keyring;
use crate::op::{Entry, Op};
use crate::store::Store;
use crate::{Context, Result};

/// Verifies the audit chain, then every authenticated record.
pub(super) fn verify_store(
    store: &Store,
    ring: &Keyring,
    checkpoint: Option<&Checkpoint>,
) -> Result<VerifyReport> {
    let mut failures = Vec::new();
    let records = store.verify_records(&mut |f| failures.push(f))?;
    // A tampered record comes first: the recorded head of the chain may
    // be one of them.
    if !failures.is_empty() {
        return Err(AuditError::Tampered(failures).into());
    }
    let mut report = store.read(|r| audit::verify(r, ring.audit_key(), checkpoint))?;
    report.records = records;
    Ok(report)
}

impl Engine {
    /// Verifies the whole audit chain (and, given one, against an exported
    /// checkpoint). Queued read entries are flushed first. A host
    /// operation: it reads no customer data and needs no principal.
    pub fn verify_audit(&self, checkpoint: Option<&Checkpoint>) -> Result<VerifyReport> {
        self.flush_audit()?;
        verify_store(&self.core.store, &self.core.records.ring, checkpoint)
    }

    /// The chain's head, to export and keep elsewhere: a later
    /// [`Engine::verify_audit`] with it detects truncation.
    pub fn audit_checkpoint(&self) -> Result<Checkpoint> {
        self.flush_audit()?;
        Ok(self.core.store.read(audit::checkpoint)?)
    }

    /// The last `n` audit entries. Only admins may read the audit log.
    pub fn audit_tail(&self, ctx: &Context, n: usize) -> Result<Vec<AuditEntry>> {
        self.flush_audit()?;
        let op = Op::new(Entry::new("audit.read")).admins("read the audit log");
        let key = self.core.records.ring.audit_key();
        self.core.read(ctx, op, |read| {
            let raw = read.snapshot().audit_tail(n)?;
            (raw.iter())
                .map(|(seq, bytes)| Ok(audit::decode_entry(key, *seq, bytes)?))
                .collect()
        })
    }
}

/// Entries indexed per transaction when the chain is indexed at open.
const INDEX_BATCH: usize = 10_000;

/// Index rows read at a time by an indexed query.
const INDEX_PAGE: usize = 1_000;

/// Indexes the entries after the last one known to be indexed (every
/// entry is indexed as it is appended; the mark is moved once an hour and
/// here): a chain written before the indexes, or entries appended by a
/// version without them. Indexing an entry twice changes nothing.
pub(super) fn index_chain(core: &crate::op::Core) -> Result<()> {
    let key = core.records.ring.audit_key();
    let mut next = core.store.read(|r| audit::indexed_through(r))? + 1;
    loop {
        let mut entries = Vec::new();
        let mut scanned = 0;
        core.store.read(|r| {
            r.scan_audit(next, &mut |seq, bytes| {
                // An entry that fails its check is not indexed (nothing
                // vouches for its actor); `verify` reports it, and the
                // database still opens.
                if let Ok(entry) = audit::decode_entry(key, seq, bytes) {
                    entries.push(entry);
                }
                scanned = seq;
                Ok(entries.len() < INDEX_BATCH)
            })
        })?;
        if scanned < next {
            return Ok(());
        }
        core.store.write(|w| {
            for e in &entries {
                w.index_audit(e.seq, &e.actor, e.at.timestamp_micros(), &e.customers)?;
            }
            audit::mark_indexed(w, scanned)?;
            Ok::<_, crate::Error>(())
        })?;
        if entries.len() < INDEX_BATCH {
            return Ok(());
        }
        next = scanned + 1;
    }
}

impl Engine {
    /// What `actor` did from `from` to `to` (inclusive; either end open),
    /// the first `limit` entries by time, in chain order, through the
    /// index by actor:
    /// it costs what it returns, not the chain. Each entry is checked
    /// against its keyed hash and its actor. Admins only.
    pub fn audit_by_actor(
        &self,
        ctx: &Context,
        actor: &str,
        from: Option<chrono::DateTime<chrono::Utc>>,
        to: Option<chrono::DateTime<chrono::Utc>>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        self.flush_audit()?;
        let entry = Entry::new("audit.read").target(format!("entries by {actor}"));
        let op = Op::new(entry).admins("read the audit log");
        let key = self.core.records.ring.audit_key();
        let from = from.map_or(i64::MIN, |t| t.timestamp_micros());
        let to = to.map_or(i64::MAX, |t| t.timestamp_micros());
        self.core.read(ctx, op, |read| {
            let r = read.snapshot();
            let mut out = Vec::new();
            let mut cursor = (from, 0);
            // The limit counts entries that passed their check: rows that
            // vouch for nothing do not crowd out real ones.
            while out.len() < limit {
                let rows = r.audit_seqs_by_actor(actor, cursor, to, INDEX_PAGE)?;
                let Some(&(at, seq)) = rows.last() else {
                    break;
                };
                for (_, seq) in &rows {
                    let Some(bytes) = r.audit_entry(*seq)? else {
                        continue;
                    };
                    // An index row vouches for nothing: the entry must say
                    // so, its actor and its time.
                    let e = audit::decode_entry(key, *seq, &bytes)?;
                    let t = e.at.timestamp_micros();
                    if e.actor == actor && (from..=to).contains(&t) && out.len() < limit {
                        out.push(e);
                    }
                }
                if rows.len() < INDEX_PAGE {
                    break;
                }
                cursor = match seq.checked_add(1) {
                    Some(next) => (at, next),
                    None => break,
                };
            }
            // In chain order (a buffered read's entry can come after a
            // later write's).
            out.sort_by_key(|e| e.seq);
            Ok(out)
        })
    }

    /// Every audited operation on customer `id`'s data, oldest first, at
    /// most `limit`, through the index by customer. Each entry is checked
    /// against its keyed hash and names the customer. Admins and data
    /// stewards.
    pub fn audit_of_customer(
        &self,
        ctx: &Context,
        id: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        self.flush_audit()?;
        let entry = Entry::new("audit.read").customer(id);
        let op = Op::new(entry).officers("read a customer's audit trail");
        let key = self.core.records.ring.audit_key();
        self.core
            .read(ctx, op, |read| entries_of(read.snapshot(), key, id, limit))
    }
}

/// The audit entries about customer `id`, through the index, checked.
pub(super) fn entries_of(
    r: &dyn crate::store::Snapshot,
    key: &[u8; 32],
    id: u64,
    limit: usize,
) -> Result<Vec<AuditEntry>> {
    let mut out = Vec::new();
    let mut after = 0;
    while out.len() < limit {
        let seqs = r.audit_seqs_of_customer(id, after, INDEX_PAGE)?;
        let Some(&last) = seqs.last() else {
            break;
        };
        for seq in &seqs {
            let Some(bytes) = r.audit_entry(*seq)? else {
                continue;
            };
            let e = audit::decode_entry(key, *seq, &bytes)?;
            if e.customers.contains(&id) && out.len() < limit {
                out.push(e);
            }
        }
        if seqs.len() < INDEX_PAGE {
            break;
        }
        after = last;
    }
    Ok(out)
}
