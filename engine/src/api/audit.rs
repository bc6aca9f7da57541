//! The audit chain, for operators: verification, checkpoints, the log.

use super::Engine;
use crate::audit::{self, AuditEntry, Checkpoint, VerifyReport};
use crate::op::{Entry, Op};
use crate::{Context, Result};

impl Engine {
    /// Verifies the whole audit chain (and, given one, against an exported
    /// checkpoint). Queued read entries are flushed first. A host
    /// operation: it reads no customer data and needs no principal.
    pub fn verify_audit(&self, checkpoint: Option<&Checkpoint>) -> Result<VerifyReport> {
        self.flush_audit()?;
        let key = self.core.records.ring.audit_key();
        Ok(self
            .core
            .store
            .read(|r| audit::verify(r, key, checkpoint))?)
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
        self.core.read(ctx, op, |read| {
            let raw = read.snapshot().audit_tail(n)?;
            (raw.iter())
                .map(|(seq, bytes)| Ok(audit::decode_entry(*seq, bytes)?))
                .collect()
        })
    }
}
