//! The audit chain. `audit` owns the entry format, the keyed hash chain,
//! verification and checkpoints, and the group commit of read entries.
//!
//! Stored entry: `prev_hash[32] ‖ hash[32] ‖ postcard(Record)`, where
//! `hash = BLAKE3-keyed(audit key, seq ‖ prev_hash ‖ payload)`. The key is
//! derived from the master key, so without it nobody can forge or rebuild
//! the chain. INVARIANT: an entry is written in the same transaction as the
//! change it records; if it cannot be written the operation fails.

mod batch;

pub use batch::AuditDurability;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub(crate) use batch::Batcher;

use crate::crypto::{hex, keyed_hash};
use crate::guard::Charge;
use crate::store::{AuditHead, IntegrityFailure, Snapshot, StoreError, Txn};

/// Errors of the audit chain.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditError {
    /// The chain does not verify.
    #[error("audit chain broken at entry {seq}: {reason}")]
    Broken {
        /// The first sequence number where the chain fails.
        seq: u64,
        /// What was found there.
        reason: String,
    },
    /// The chain is shorter than an exported checkpoint says it was.
    #[error(
        "audit chain truncated: the checkpoint records entry {checkpoint_seq} but the chain ends at entry {found}; entries after {found} were removed"
    )]
    Truncated {
        /// The head recorded in the checkpoint.
        checkpoint_seq: u64,
        /// The last entry present.
        found: u64,
    },
    /// An audit entry could not be written, so the operation was refused.
    #[error("the audit log cannot be written ({0}); the operation was refused")]
    Unwritable(String),
    /// A checkpoint file is malformed.
    #[error("invalid checkpoint: {0}")]
    Checkpoint(String),
    /// The chain verifies, but its indexes by actor or by customer do not
    /// hold it exactly (a row deleted, moved or planted).
    #[error("the audit index {0}")]
    Index(String),
    /// The chain verifies, but records failed their integrity check.
    #[error("{} record(s) failed their integrity check (altered or moved outside the engine, and not used): {}", .0.len(), list(.0))]
    Tampered(Vec<IntegrityFailure>),
}

fn list(failures: &[IntegrityFailure]) -> String {
    let shown: Vec<String> = failures.iter().take(20).map(ToString::to_string).collect();
    match failures.len() > shown.len() {
        true => format!(
            "{}; and {} more",
            shown.join("; "),
            failures.len() - shown.len()
        ),
        false => shown.join("; "),
    }
}

/// What an operation came to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It was carried out.
    Ok,
    /// Policy refused it, for the reason given.
    Denied(String),
    /// It failed, for the reason given.
    Failed(String),
}

/// The audited facts of one operation (everything but the chain links).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) at: i64,
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) target: Option<String>,
    pub(crate) customers: Vec<u64>,
    pub(crate) fields: Vec<String>,
    pub(crate) purpose: String,
    pub(crate) outcome: Outcome,
}

/// A read's entry waiting for the group commit, with what the guard
/// counted for it: both are written in one transaction.
#[derive(Clone, Debug)]
pub(crate) struct Queued {
    pub(crate) record: Record,
    pub(crate) charge: Option<Charge>,
}

impl From<Record> for Queued {
    fn from(record: Record) -> Self {
        Queued {
            record,
            charge: None,
        }
    }
}

/// One entry of the audit chain, as shown to operators. It never holds a
/// personal value: only names of fields and ids of customers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When the operation happened.
    pub at: DateTime<Utc>,
    /// The acting principal.
    pub actor: String,
    /// What was done, e.g. `customer.read`.
    pub action: String,
    /// What it was done to, e.g. `customer 7` or `search phone`.
    pub target: Option<String>,
    /// The customers whose data was touched.
    pub customers: Vec<u64>,
    /// The fields touched (names only).
    pub fields: Vec<String>,
    /// The purpose stated by the actor.
    pub purpose: String,
    /// What came of it.
    pub outcome: Outcome,
    /// This entry's hash, hex.
    pub hash: String,
}

/// The head of the chain at one moment, exported so a later `verify` can
/// prove nothing before it was cut off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last sequence number at export.
    pub seq: u64,
    /// Its hash, hex.
    pub hash: String,
    /// When it was taken.
    pub taken_at: DateTime<Utc>,
}

impl Checkpoint {
    /// Reads a checkpoint from its JSON form.
    pub fn from_json(text: &str) -> Result<Self, AuditError> {
        serde_json::from_str(text).map_err(|e| AuditError::Checkpoint(e.to_string()))
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// The result of a successful verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// The head's hash, hex.
    pub head_hash: String,
    /// Whether a checkpoint was checked.
    pub checkpoint_checked: bool,
    /// Authenticated records checked (every record of the data file).
    pub records: u64,
}

const LINK: usize = 64;

/// Appends `record` to the chain inside the writer's transaction.
pub(crate) fn append(w: &mut dyn Txn, key: &[u8; 32], record: &Record) -> Result<u64, StoreError> {
    let head = w.audit_head()?;
    let seq = head.seq + 1;
    let payload = postcard::to_stdvec(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let hash = keyed_hash(key, &[&seq.to_le_bytes(), &head.hash, &payload]);
    let mut bytes = Vec::with_capacity(LINK + payload.len());
    bytes.extend_from_slice(&head.hash);
    bytes.extend_from_slice(&hash);
    bytes.extend_from_slice(&payload);
    w.push_audit(AuditHead { seq, hash }, &bytes)?;
    w.index_audit(seq, &record.actor, record.at, &record.customers)?;
    Ok(seq)
}

/// The setting that says through which entry the indexes by actor and by
/// customer hold the chain.
const INDEXED_THROUGH: &str = "audit_indexed_through";

/// The last entry the indexes are known to hold (0: none).
pub(crate) fn indexed_through(r: &dyn Snapshot) -> Result<u64, StoreError> {
    Ok(match r.setting(INDEXED_THROUGH)? {
        Some(bytes) => bytes
            .as_slice()
            .try_into()
            .map(u64::from_le_bytes)
            .unwrap_or(0),
        None => 0,
    })
}

/// Records that the indexes hold the chain through entry `seq`.
pub(crate) fn mark_indexed(w: &mut dyn Txn, seq: u64) -> Result<(), StoreError> {
    w.put_setting(INDEXED_THROUGH, &seq.to_le_bytes())
}

/// Why a verification did not pass: the chain is broken, or the storage
/// under it failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VerifyError {
    /// The chain does not verify.
    #[error(transparent)]
    Chain(#[from] AuditError),
    /// The entries could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks entry `seq` against the one before it (`prev`, the hash of
/// entry `expected - 1`); returns its hash.
fn check_link(
    key: &[u8; 32],
    seq: u64,
    bytes: &[u8],
    expected: u64,
    prev: &[u8; 32],
) -> Result<[u8; 32], AuditError> {
    if seq != expected {
        return Err(AuditError::Broken {
            seq: expected,
            reason: if seq > expected {
                "the entry is missing: it was deleted".into()
            } else {
                "sequence numbers go backwards".into()
            },
        });
    }
    let broken = |reason: &str| AuditError::Broken {
        seq,
        reason: reason.to_string(),
    };
    let (stored_prev, rest) = bytes
        .split_first_chunk::<32>()
        .ok_or_else(|| broken("the entry is truncated"))?;
    let (stored_hash, payload) = rest
        .split_first_chunk::<32>()
        .ok_or_else(|| broken("the entry is truncated"))?;
    if stored_prev != prev {
        return Err(broken(
            "it does not follow the entry before it: entries were inserted, removed or reordered",
        ));
    }
    let hash = keyed_hash(key, &[&seq.to_le_bytes(), prev, payload]);
    if &hash != stored_hash {
        return Err(broken("its content was modified or forged"));
    }
    Ok(hash)
}

/// Checks every link of the chain, the recorded head, and optionally an
/// exported checkpoint.
pub(crate) fn verify(
    r: &dyn Snapshot,
    key: &[u8; 32],
    checkpoint: Option<&Checkpoint>,
) -> Result<VerifyReport, VerifyError> {
    let mut expected = 1u64;
    let mut prev = [0u8; 32];
    let mut at_checkpoint: Option<[u8; 32]> = None;
    let checkpoint_seq = checkpoint.map(|c| c.seq);
    let mut broken_at = None;
    // The indexes must hold every entry under its actor and customers,
    // and nothing else.
    let mut unindexed = None;
    let (mut actor_rows, mut customer_rows) = (0u64, 0u64);
    r.scan_audit(1, &mut |seq, bytes| {
        let link = check_link(key, seq, bytes, expected, &prev);
        match link {
            Ok(hash) => {
                if checkpoint_seq == Some(seq) {
                    at_checkpoint = Some(hash);
                }
                prev = hash;
                expected += 1;
                let record: Record = postcard::from_bytes(bytes.get(LINK..).unwrap_or_default())
                    .map_err(|_| StoreError::Corrupt(format!("audit entry {seq}")))?;
                let mut customers = record.customers.clone();
                customers.sort_unstable();
                customers.dedup();
                actor_rows += 1;
                customer_rows += customers.len() as u64;
                if unindexed.is_none()
                    && !r.audit_indexed(seq, &record.actor, record.at, &customers)?
                {
                    unindexed = Some(seq);
                }
                Ok(true)
            }
            Err(e) => {
                broken_at = Some(e);
                Ok(false)
            }
        }
    })?;
    if let Some(e) = broken_at {
        return Err(e.into());
    }

    let last = expected - 1;
    let head = r.audit_head()?;
    if head.seq != last || head.hash != prev {
        return Err(AuditError::Broken {
            seq: last.min(head.seq) + 1,
            reason: format!(
                "the recorded head is entry {} but the chain ends at entry {last}: entries were removed from the end",
                head.seq
            ),
        }
        .into());
    }
    if let Some(cp) = checkpoint {
        match at_checkpoint {
            None => {
                return Err(AuditError::Truncated {
                    checkpoint_seq: cp.seq,
                    found: last,
                }
                .into());
            }
            Some(hash) if hex(&hash) != cp.hash.to_lowercase() => {
                return Err(AuditError::Broken {
                    seq: cp.seq,
                    reason: "it differs from the checkpoint: the history was rewritten".into(),
                }
                .into());
            }
            Some(_) => {}
        }
    }
    if let Some(seq) = unindexed {
        return Err(AuditError::Index(format!(
            "lacks entry {seq} under its actor or a customer it names: a row was deleted or moved (opening the database indexes again entries a version without the indexes appended)"
        ))
        .into());
    }
    let (held_actor, held_customer) = r.audit_index_rows()?;
    if (held_actor, held_customer) != (actor_rows, customer_rows) {
        return Err(AuditError::Index(format!(
            "holds {held_actor} rows by actor and {held_customer} by customer where the chain has {actor_rows} and {customer_rows}: rows were planted"
        ))
        .into());
    }
    Ok(VerifyReport {
        entries: last,
        head_hash: hex(&prev),
        checkpoint_checked: checkpoint.is_some(),
        records: 0,
    })
}

/// Decodes a stored entry for display, if its own keyed hash holds (an
/// entry is authenticated by itself too, not only by the chain).
pub(crate) fn decode_entry(
    key: &[u8; 32],
    seq: u64,
    bytes: &[u8],
) -> Result<AuditEntry, StoreError> {
    let forged = || StoreError::Integrity {
        table: "audit".into(),
        key: seq.to_string(),
    };
    let (prev, rest) = bytes.split_first_chunk::<32>().ok_or_else(forged)?;
    let (hash, payload) = rest.split_first_chunk::<32>().ok_or_else(forged)?;
    if keyed_hash(key, &[&seq.to_le_bytes(), prev, payload]) != *hash {
        return Err(forged());
    }
    let corrupt = || StoreError::Corrupt(format!("audit entry {seq}"));
    let record: Record = postcard::from_bytes(payload).map_err(|_| corrupt())?;
    Ok(AuditEntry {
        seq,
        at: DateTime::from_timestamp_micros(record.at).unwrap_or_default(),
        actor: record.actor,
        action: record.action,
        target: record.target,
        customers: record.customers,
        fields: record.fields,
        purpose: record.purpose,
        outcome: record.outcome,
        hash: hex(hash),
    })
}

/// The current head as a checkpoint.
pub(crate) fn checkpoint(r: &dyn Snapshot) -> Result<Checkpoint, StoreError> {
    let head = r.audit_head()?;
    Ok(Checkpoint {
        seq: head.seq,
        hash: hex(&head.hash),
        taken_at: Utc::now(),
    })
}
