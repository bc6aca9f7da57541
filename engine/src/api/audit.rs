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
