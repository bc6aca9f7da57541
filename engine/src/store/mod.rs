//! Storage. `store` is the only module that imports a database crate. It
//! owns the records at rest (`types`) and their versioned envelope, the
//! interface the engine reads and writes through ([`Snapshot`], [`Txn`]),
//! its redb implementation, the key store, and how an engine's files are
//! opened (`open`).
//!
//! Records arrive here already sealed: `store` never sees a plaintext
//! personal field, and never decides anything about access.

mod backend;
mod files;
mod integrity;
mod interface;
mod keys;
pub(crate) mod open;
mod redb;
mod types;

use std::path::Path;

pub(crate) use self::redb::{Rewrite, Store};
pub use backend::{FileStorage, StorageBackend};
pub(crate) use integrity::Integrity;
pub use integrity::IntegrityFailure;
pub(crate) use interface::{AuditHead, Index, Snapshot, SnapshotExt, Txn};
pub(crate) use keys::KeyStore;
pub(crate) use types::LogText;
pub use types::{AlertState, Severity};
pub(crate) use types::{
    CustomerRef, Emitted, MaskRef, SealedField, StoredAggregate, StoredAlert, StoredConsent,
    StoredConsentEntry, StoredCredentials, StoredCustomer, StoredDeletion, StoredEvent,
    StoredFollowUp, StoredHandling, StoredHold, StoredInteraction, StoredLogLine, StoredMask,
    StoredMessage, StoredNotice, StoredParams, StoredPolicy, StoredPrincipal, StoredRun,
    StoredSession, StoredThrottle, StoredTotp,
};

/// Errors from the storage layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage device or file failed (I/O error, full disk, ...).
    #[error("storage failure: {0}; nothing was acknowledged")]
    Backend(String),
    /// A change was committed, but the data file it freed pages of could
    /// not be rewritten (`Store::scrub_if_owed`).
    #[error(
        "the data file could not be rewritten to clear the space a saved change freed ({0}); it stays marked, and the next removal or open tries again"
    )]
    Rewrite(String),
    /// Another process (or another open engine) holds the file.
    #[error("the database is already open in another process or engine; close that one and retry")]
    Locked,
    /// The database file does not exist.
    #[error("no database at `{0}`; create one first")]
    Missing(String),
    /// The key store of an existing database is missing.
    #[error(
        "the key store `{0}` of this database is missing: its keys are never made anew; restore the key store or one of its mirrors"
    )]
    KeyStoreMissing(String),
    /// A stored record failed its integrity check: it was edited, or
    /// copied from another key or table, by someone without the key.
    #[error(
        "integrity check failed for the record in table `{table}` under key {key}: it was altered or moved outside the engine, and is not used"
    )]
    Integrity {
        /// The table it was found in.
        table: String,
        /// Its key.
        key: String,
    },
    /// The data file claims an older storage format than its key store
    /// has seen: it was rolled back or tampered with.
    #[error(
        "the data file claims storage format {found}, but its key store has seen format {seen}: the file was rolled back or altered outside the engine, and is not opened"
    )]
    Downgraded {
        /// The format the data file claims.
        found: u32,
        /// The format the key store recorded.
        seen: u32,
    },
    /// A stored record cannot be decoded.
    #[error("stored record {0} is corrupt")]
    Corrupt(String),
    /// The files were written by a newer format.
    #[error(
        "the database uses storage format {found}; this version reads up to {supported}: upgrade Custodian"
    )]
    Version {
        /// The format found.
        found: u32,
        /// The newest format this build reads.
        supported: u32,
    },
    /// The key store was made for another database.
    #[error(
        "key store `{0}` belongs to another database; open this database with its own key store"
    )]
    KeyStoreMismatch(String),
    /// The key store was made under another master key.
    #[error("the key store was made under another master key")]
    KeyCheckMismatch,
    /// A new database was pointed at a key store that holds another's keys.
    #[error(
        "key store `{0}` already holds the keys of another database; give the new database a key store of its own"
    )]
    KeyStoreInUse(String),
}

macro_rules! from_redb {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(e: $ty) -> Self {
                StoreError::Backend(e.to_string())
            }
        }
    )*};
}
from_redb!(
    ::redb::Error,
    ::redb::TransactionError,
    ::redb::TableError,
    ::redb::StorageError,
    ::redb::CommitError
);

impl From<::redb::DatabaseError> for StoreError {
    fn from(e: ::redb::DatabaseError) -> Self {
        match e {
            ::redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked,
            other => StoreError::Backend(other.to_string()),
        }
    }
}

/// The storage format this build writes; older formats are migrated on
/// open. 1: records untagged. 2: every record tagged (`integrity`).
pub(crate) const FORMAT: u32 = 2;

/// How the data file is reached.
pub(crate) enum Location<'a> {
    /// A file path.
    Path(&'a Path),
    /// A caller-supplied backend (for fault injection or special media).
    Backend(Box<dyn StorageBackend>),
}

/// What a freshly created database records in its meta table.
pub(crate) struct Identity<'a> {
    pub(crate) key_check: [u8; 32],
    pub(crate) store_id: [u8; 16],
    pub(crate) schema: &'a str,
}

/// Values fixed when the database was created.
pub(crate) struct Meta {
    /// The storage format the file records (`None`: a new file).
    pub(crate) format: Option<u32>,
    pub(crate) key_check: Option<[u8; 32]>,
    pub(crate) store_id: Option<[u8; 16]>,
    pub(crate) schema: Option<String>,
    /// The smallest id never handed out.
    pub(crate) next_id: u64,
    /// A setting that failed its integrity check (and reads as unset).
    pub(crate) tampered: Option<StoreError>,
}

impl Default for Meta {
    fn default() -> Self {
        Self {
            format: None,
            key_check: None,
            store_id: None,
            schema: None,
            next_id: 1,
            tampered: None,
        }
    }
}
