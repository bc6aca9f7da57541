//! Storage. `store` is the only module that imports redb. It owns the table
//! layout, the versioned record envelope, transactions and the key store.
//!
//! The rest of the engine sees two narrow interfaces: [`Writer`] (one write
//! transaction, every table open) passed to a closure that
//! [`Store::write`] commits durably, and [`Reader`] (one snapshot). Records
//! arrive here already sealed: `store` never sees a plaintext personal field.

mod backend;
mod keys;
mod plugins;
mod privacy;
mod records;

use std::path::Path;

use redb::{
    Database, MultimapTableDefinition, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, WriteTransaction,
};

pub(crate) use backend::BackendAdapter;
pub use backend::{FileStorage, StorageBackend};
pub(crate) use keys::KeyStore;
pub(crate) use plugins::{StoredAlert, StoredConsent, StoredLogLine, StoredMessage};
pub(crate) use privacy::{
    StoredAggregate, StoredConsentEntry, StoredDeletion, StoredHold, StoredNotice, StoredRun,
};
pub(crate) use records::{
    CustomerRef, SealedField, StoredCredentials, StoredCustomer, StoredFollowUp, StoredInteraction,
    StoredPolicy, StoredPrincipal, StoredSession, StoredThrottle, StoredTotp, decode, encode,
};
use records::{decode_principal, encode_principal};

/// Errors from the storage layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage device or file failed (I/O error, full disk, ...).
    #[error("storage failure: {0}; nothing was acknowledged")]
    Backend(String),
    /// Another process (or another open engine) holds the file.
    #[error("the database is already open in another process or engine; close that one and retry")]
    Locked,
    /// The database file does not exist.
    #[error("no database at `{0}`; create one with `custodian init`")]
    Missing(String),
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
        "key store `{0}` belongs to another database; point --key-store at this database's key store"
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
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<redb::DatabaseError> for StoreError {
    fn from(e: redb::DatabaseError) -> Self {
        match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked,
            other => StoreError::Backend(other.to_string()),
        }
    }
}

/// The storage format this build writes; older formats are migrated on open.
pub(crate) const FORMAT: u32 = 1;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const CUSTOMERS: TableDefinition<u64, &[u8]> = TableDefinition::new("customers");
const BLIND: MultimapTableDefinition<&[u8], u64> = MultimapTableDefinition::new("blind_index");
const BY_OWNER: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("by_owner");
const BY_TAG: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("by_tag");
const BY_STATUS: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("by_status");
const INTERACTIONS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("interactions");
const FOLLOWUPS: TableDefinition<u64, &[u8]> = TableDefinition::new("followups");
/// Follow-ups of each customer.
const FOLLOWUPS_BY_CUSTOMER: MultimapTableDefinition<u64, u64> =
    MultimapTableDefinition::new("followups_by_customer");
/// Open follow-ups by (due time in µs, id) → assignee.
const FOLLOWUPS_OPEN: TableDefinition<(i64, u64), &str> = TableDefinition::new("followups_open");
const PRINCIPALS: TableDefinition<&str, &[u8]> = TableDefinition::new("principals");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Principal name → credentials.
const CREDENTIALS: TableDefinition<&str, &[u8]> = TableDefinition::new("credentials");
/// Keyed hash of a session token → session.
const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions");
/// `name:<account>` or `source:<address>` → failed-login counter.
const THROTTLE: TableDefinition<&str, &[u8]> = TableDefinition::new("throttle");
/// Policy version → installed pack.
const POLICIES: TableDefinition<u64, &[u8]> = TableDefinition::new("policies");

const META_FORMAT: &str = "format";
const META_CHECK: &str = "key_check";
const META_STORE_ID: &str = "store_id";
const META_SCHEMA: &str = "schema";
const META_AUDIT_HEAD: &str = "audit_head";
const META_NEXT_ID: &str = "next_id";

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

/// The data file.
pub(crate) struct Store {
    db: Database,
}

/// The head of the audit chain: last sequence number and its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct AuditHead {
    pub(crate) seq: u64,
    pub(crate) hash: [u8; 32],
}

impl AuditHead {
    fn encode(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        out[..8].copy_from_slice(&self.seq.to_le_bytes());
        out[8..].copy_from_slice(&self.hash);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            seq: u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?),
            hash: bytes.get(8..40)?.try_into().ok()?,
        })
    }
}

impl Store {
    /// Whether a database exists at `path`.
    pub(crate) fn exists(path: &Path) -> bool {
        path.exists()
    }

    /// Reads the key-check value without writing a byte to the file: the
    /// database is opened read-only.
    pub(crate) fn peek_key_check(path: &Path) -> Result<Option<[u8; 32]>, StoreError> {
        let db = redb::ReadOnlyDatabase::open(path)?;
        let txn = db.begin_read()?;
        let meta = match txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let check = meta
            .get(META_CHECK)?
            .and_then(|v| <[u8; 32]>::try_from(v.value()).ok());
        Ok(check)
    }

    /// Opens (or, with `create`, creates) the data file and reads its meta
    /// table without writing anything.
    pub(crate) fn open(location: Location<'_>, create: bool) -> Result<(Self, Meta), StoreError> {
        let builder = Database::builder();
        let db = match location {
            Location::Path(path) if create => builder.create(path)?,
            Location::Path(path) => {
                if !path.exists() {
                    return Err(StoreError::Missing(path.display().to_string()));
                }
                builder.open(path)?
            }
            Location::Backend(backend) => builder.create_with_backend(BackendAdapter(backend))?,
        };
        let store = Self { db };
        let txn = store.db.begin_read()?;
        let meta = match txn.open_table(META) {
            Ok(table) => Meta::read(&table)?,
            Err(redb::TableError::TableDoesNotExist(_)) => Meta::default(),
            Err(e) => return Err(e.into()),
        };
        Ok((store, meta))
    }

    /// Creates any missing table and, for a new database, records its
    /// identity. Writes only when something is missing.
    pub(crate) fn prepare(&self, identity: Option<Identity<'_>>) -> Result<(), StoreError> {
        let complete = {
            let txn = self.db.begin_read()?;
            // The newest table: a database made by an older version lacks it.
            let has_audit = match txn.open_table(privacy::NEWEST) {
                Ok(_) => true,
                Err(redb::TableError::TableDoesNotExist(_)) => false,
                Err(e) => return Err(e.into()),
            };
            has_audit && identity.is_none()
        };
        if complete {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        {
            // Create every table so readers never meet a missing one.
            let mut meta = txn.open_table(META)?;
            txn.open_table(CUSTOMERS)?;
            txn.open_multimap_table(BLIND)?;
            txn.open_multimap_table(BY_OWNER)?;
            txn.open_multimap_table(BY_TAG)?;
            txn.open_multimap_table(BY_STATUS)?;
            txn.open_table(INTERACTIONS)?;
            txn.open_table(FOLLOWUPS)?;
            txn.open_table(FOLLOWUPS_OPEN)?;
            txn.open_multimap_table(FOLLOWUPS_BY_CUSTOMER)?;
            txn.open_table(PRINCIPALS)?;
            txn.open_table(AUDIT)?;
            txn.open_table(CREDENTIALS)?;
            txn.open_table(SESSIONS)?;
            txn.open_table(THROTTLE)?;
            txn.open_table(POLICIES)?;
            plugins::create_tables(&txn)?;
            privacy::create_tables(&txn)?;
            if let Some(identity) = &identity
                && meta.get(META_FORMAT)?.is_none()
            {
                meta.insert(META_FORMAT, FORMAT.to_le_bytes().as_slice())?;
                meta.insert(META_CHECK, identity.key_check.as_slice())?;
                meta.insert(META_STORE_ID, identity.store_id.as_slice())?;
                meta.insert(META_SCHEMA, identity.schema.as_bytes())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Runs `f` in one write transaction and commits it durably. If `f`
    /// fails, nothing it wrote is kept.
    pub(crate) fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut Writer<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let txn = self.db.begin_write().map_err(StoreError::from)?;
        let value = {
            let mut writer = Writer::open(&txn).map_err(E::from)?;
            let value = f(&mut writer)?;
            writer.finish().map_err(E::from)?;
            value
        };
        txn.commit().map_err(StoreError::from)?;
        Ok(value)
    }

    /// Runs `f` on a consistent snapshot.
    pub(crate) fn read<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Reader) -> Result<T, E>,
    ) -> Result<T, E> {
        let txn = self.db.begin_read().map_err(StoreError::from)?;
        f(&Reader { txn })
    }
}

/// Values fixed when the database was created.
pub(crate) struct Meta {
    pub(crate) key_check: Option<[u8; 32]>,
    pub(crate) store_id: Option<[u8; 16]>,
    pub(crate) schema: Option<String>,
    /// The smallest id never handed out.
    pub(crate) next_id: u64,
}

impl Default for Meta {
    fn default() -> Self {
        Self {
            key_check: None,
            store_id: None,
            schema: None,
            next_id: 1,
        }
    }
}

fn read_u64(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<u64>, StoreError> {
    match meta.get(key)? {
        Some(v) => <[u8; 8]>::try_from(v.value())
            .map(|b| Some(u64::from_le_bytes(b)))
            .map_err(|_| corrupt(format!("meta {key}"))),
        None => Ok(None),
    }
}

impl Meta {
    fn read(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Self, StoreError> {
        if let Some(format) = meta.get(META_FORMAT)? {
            let found = <[u8; 4]>::try_from(format.value())
                .map(u32::from_le_bytes)
                .map_err(|_| StoreError::Corrupt("meta format".into()))?;
            if found > FORMAT {
                return Err(StoreError::Version {
                    found,
                    supported: FORMAT,
                });
            }
        }
        Ok(Self {
            key_check: meta
                .get(META_CHECK)?
                .and_then(|v| <[u8; 32]>::try_from(v.value()).ok()),
            store_id: meta
                .get(META_STORE_ID)?
                .and_then(|v| <[u8; 16]>::try_from(v.value()).ok()),
            schema: meta
                .get(META_SCHEMA)?
                .map(|v| String::from_utf8_lossy(v.value()).into_owned()),
            next_id: read_u64(meta, META_NEXT_ID)?.unwrap_or(1),
        })
    }
}

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

/// One write transaction with every table open.
pub(crate) struct Writer<'t> {
    txn: &'t WriteTransaction,
    meta: redb::Table<'t, &'static str, &'static [u8]>,
    customers: redb::Table<'t, u64, &'static [u8]>,
    blind: redb::MultimapTable<'t, &'static [u8], u64>,
    by_owner: redb::MultimapTable<'t, &'static str, u64>,
    by_tag: redb::MultimapTable<'t, &'static str, u64>,
    by_status: redb::MultimapTable<'t, &'static str, u64>,
    interactions: redb::Table<'t, (u64, u64), &'static [u8]>,
    followups: redb::Table<'t, u64, &'static [u8]>,
    followups_open: redb::Table<'t, (i64, u64), &'static str>,
    followups_by_customer: redb::MultimapTable<'t, u64, u64>,
    principals: redb::Table<'t, &'static str, &'static [u8]>,
    audit: redb::Table<'t, u64, &'static [u8]>,
    credentials: redb::Table<'t, &'static str, &'static [u8]>,
    sessions: redb::Table<'t, &'static [u8], &'static [u8]>,
    throttle: redb::Table<'t, &'static str, &'static [u8]>,
    policies: redb::Table<'t, u64, &'static [u8]>,
    head: Option<AuditHead>,
    head_dirty: bool,
    next_id: Option<u64>,
}

impl<'t> Writer<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            txn,
            meta: txn.open_table(META)?,
            customers: txn.open_table(CUSTOMERS)?,
            blind: txn.open_multimap_table(BLIND)?,
            by_owner: txn.open_multimap_table(BY_OWNER)?,
            by_tag: txn.open_multimap_table(BY_TAG)?,
            by_status: txn.open_multimap_table(BY_STATUS)?,
            interactions: txn.open_table(INTERACTIONS)?,
            followups: txn.open_table(FOLLOWUPS)?,
            followups_open: txn.open_table(FOLLOWUPS_OPEN)?,
            followups_by_customer: txn.open_multimap_table(FOLLOWUPS_BY_CUSTOMER)?,
            principals: txn.open_table(PRINCIPALS)?,
            audit: txn.open_table(AUDIT)?,
            credentials: txn.open_table(CREDENTIALS)?,
            sessions: txn.open_table(SESSIONS)?,
            throttle: txn.open_table(THROTTLE)?,
            policies: txn.open_table(POLICIES)?,
            head: None,
            head_dirty: false,
            next_id: None,
        })
    }

    fn finish(mut self) -> Result<(), StoreError> {
        if self.head_dirty
            && let Some(head) = self.head
        {
            self.meta
                .insert(META_AUDIT_HEAD, head.encode().as_slice())?;
        }
        if let Some(next) = self.next_id {
            let stored = read_u64(&self.meta, META_NEXT_ID)?.unwrap_or(1);
            if next > stored {
                self.meta
                    .insert(META_NEXT_ID, next.to_le_bytes().as_slice())?;
            }
        }
        Ok(())
    }

    /// Records that `id` is in use, so ids handed out after a reopen are
    /// greater. Ids are reserved in memory (see `Meta::next_id`) so that
    /// sealing can happen before the write transaction starts.
    pub(crate) fn record_id(&mut self, id: u64) {
        let next = id.saturating_add(1);
        if self.next_id.is_none_or(|n| n < next) {
            self.next_id = Some(next);
        }
    }

    /// The audit head as of this transaction.
    pub(crate) fn audit_head(&mut self) -> Result<AuditHead, StoreError> {
        if let Some(head) = self.head {
            return Ok(head);
        }
        let head = match self.meta.get(META_AUDIT_HEAD)? {
            Some(v) => AuditHead::decode(v.value()).ok_or_else(|| corrupt("audit head"))?,
            None => AuditHead::default(),
        };
        self.head = Some(head);
        Ok(head)
    }

    /// Appends an encoded audit entry and moves the head to it.
    pub(crate) fn push_audit(&mut self, head: AuditHead, bytes: &[u8]) -> Result<(), StoreError> {
        self.audit.insert(head.seq, bytes)?;
        self.head = Some(head);
        self.head_dirty = true;
        Ok(())
    }

    /// The stored customer `id`.
    pub(crate) fn customer(&self, id: u64) -> Result<Option<StoredCustomer>, StoreError> {
        self.customers
            .get(id)?
            .map(|v| decode(v.value(), "customer"))
            .transpose()
    }

    /// Inserts or replaces a customer.
    pub(crate) fn put_customer(&mut self, customer: &StoredCustomer) -> Result<(), StoreError> {
        self.customers
            .insert(customer.id, encode(customer)?.as_slice())?;
        Ok(())
    }

    /// Removes a customer record (indexes are removed separately).
    pub(crate) fn remove_customer(&mut self, id: u64) -> Result<(), StoreError> {
        self.customers.remove(id)?;
        Ok(())
    }

    /// Adds or removes index entries for a customer.
    pub(crate) fn index(&mut self, index: Index<'_>, id: u64, add: bool) -> Result<(), StoreError> {
        match (index, add) {
            (Index::Blind(key), true) => self.blind.insert(key.as_slice(), id).map(drop),
            (Index::Blind(key), false) => self.blind.remove(key.as_slice(), id).map(drop),
            (Index::Owner(o), true) => self.by_owner.insert(o, id).map(drop),
            (Index::Owner(o), false) => self.by_owner.remove(o, id).map(drop),
            (Index::Tag(t), true) => self.by_tag.insert(t, id).map(drop),
            (Index::Tag(t), false) => self.by_tag.remove(t, id).map(drop),
            (Index::Status(s), true) => self.by_status.insert(s, id).map(drop),
            (Index::Status(s), false) => self.by_status.remove(s, id).map(drop),
        }?;
        Ok(())
    }

    /// Stores an interaction.
    pub(crate) fn put_interaction(&mut self, record: &StoredInteraction) -> Result<(), StoreError> {
        self.interactions
            .insert((record.customer, record.id), encode(record)?.as_slice())?;
        Ok(())
    }

    /// Removes every interaction of a customer; returns how many.
    pub(crate) fn remove_interactions(&mut self, customer: u64) -> Result<usize, StoreError> {
        let keys: Vec<(u64, u64)> = self
            .interactions
            .range((customer, 0)..=(customer, u64::MAX))?
            .map(|r| r.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()?;
        for key in &keys {
            self.interactions.remove(key)?;
        }
        Ok(keys.len())
    }

    /// A customer's interactions, oldest id first.
    pub(crate) fn interactions_of(
        &self,
        customer: u64,
    ) -> Result<Vec<StoredInteraction>, StoreError> {
        self.interactions
            .range((customer, 0)..=(customer, u64::MAX))?
            .map(|r| decode(r?.1.value(), "interaction"))
            .collect()
    }

    /// A follow-up.
    pub(crate) fn followup(&self, id: u64) -> Result<Option<StoredFollowUp>, StoreError> {
        self.followups
            .get(id)?
            .map(|v| decode(v.value(), "follow-up"))
            .transpose()
    }

    /// Stores a follow-up and keeps the open-follow-up index in step.
    pub(crate) fn put_followup(&mut self, record: &StoredFollowUp) -> Result<(), StoreError> {
        self.followups
            .insert(record.id, encode(record)?.as_slice())?;
        self.followups_by_customer
            .insert(record.customer, record.id)?;
        if record.done {
            self.followups_open.remove((record.due, record.id))?;
        } else {
            self.followups_open
                .insert((record.due, record.id), record.assignee.as_str())?;
        }
        Ok(())
    }

    /// Removes every follow-up of a customer.
    pub(crate) fn remove_followups(&mut self, customer: u64) -> Result<(), StoreError> {
        let ids: Vec<u64> = self
            .followups_by_customer
            .remove_all(customer)?
            .map(|v| Ok::<_, StoreError>(v?.value()))
            .collect::<Result<_, _>>()?;
        for id in &ids {
            if let Some(record) = self.followups.remove(id)? {
                let f: StoredFollowUp = decode(record.value(), "follow-up")?;
                self.followups_open.remove((f.due, f.id))?;
            }
        }
        self.forget_notified(&ids)?;
        Ok(())
    }

    /// A principal.
    pub(crate) fn principal(&self, name: &str) -> Result<Option<StoredPrincipal>, StoreError> {
        self.principals
            .get(name)?
            .map(|v| decode_principal(v.value()))
            .transpose()
    }

    /// Inserts or replaces a principal.
    pub(crate) fn put_principal(&mut self, p: &StoredPrincipal) -> Result<(), StoreError> {
        self.principals
            .insert(p.name.as_str(), encode_principal(p)?.as_slice())?;
        Ok(())
    }

    /// Every principal.
    pub(crate) fn principals(&self) -> Result<Vec<StoredPrincipal>, StoreError> {
        self.principals
            .iter()?
            .map(|r| decode_principal(r?.1.value()))
            .collect()
    }

    /// A principal's credentials (empty if none were ever set).
    pub(crate) fn credentials(&self, name: &str) -> Result<StoredCredentials, StoreError> {
        Ok(self
            .credentials
            .get(name)?
            .map(|v| decode(v.value(), "credentials"))
            .transpose()?
            .unwrap_or_default())
    }

    /// Replaces a principal's credentials.
    pub(crate) fn put_credentials(
        &mut self,
        name: &str,
        c: &StoredCredentials,
    ) -> Result<(), StoreError> {
        self.credentials.insert(name, encode(c)?.as_slice())?;
        Ok(())
    }

    /// A session by its token hash.
    pub(crate) fn session(&self, hash: &[u8; 32]) -> Result<Option<StoredSession>, StoreError> {
        self.sessions
            .get(hash.as_slice())?
            .map(|v| decode(v.value(), "session"))
            .transpose()
    }

    /// Inserts or replaces a session.
    pub(crate) fn put_session(
        &mut self,
        hash: &[u8; 32],
        s: &StoredSession,
    ) -> Result<(), StoreError> {
        self.sessions
            .insert(hash.as_slice(), encode(s)?.as_slice())?;
        Ok(())
    }

    /// Removes the sessions `remove` picks (given each token hash and
    /// session); returns how many went.
    pub(crate) fn remove_sessions(
        &mut self,
        mut remove: impl FnMut(&[u8], &StoredSession) -> bool,
    ) -> Result<usize, StoreError> {
        let mut doomed = Vec::new();
        for row in self.sessions.iter()? {
            let (k, v) = row?;
            let session: StoredSession = decode(v.value(), "session")?;
            if remove(k.value(), &session) {
                doomed.push(k.value().to_vec());
            }
        }
        for k in &doomed {
            self.sessions.remove(k.as_slice())?;
        }
        Ok(doomed.len())
    }

    /// A failed-login counter.
    pub(crate) fn throttle(&self, key: &str) -> Result<StoredThrottle, StoreError> {
        Ok(self
            .throttle
            .get(key)?
            .map(|v| decode(v.value(), "throttle"))
            .transpose()?
            .unwrap_or_default())
    }

    /// Sets a failed-login counter; a zero counter is removed.
    pub(crate) fn put_throttle(&mut self, key: &str, t: StoredThrottle) -> Result<(), StoreError> {
        if t.failures == 0 {
            self.throttle.remove(key)?;
        } else {
            self.throttle.insert(key, encode(&t)?.as_slice())?;
        }
        Ok(())
    }

    /// The newest policy version, if any.
    pub(crate) fn latest_policy(&self) -> Result<Option<(u64, StoredPolicy)>, StoreError> {
        latest_policy(&self.policies)
    }

    /// Stores a new policy version.
    pub(crate) fn put_policy(&mut self, version: u64, p: &StoredPolicy) -> Result<(), StoreError> {
        self.policies.insert(version, encode(p)?.as_slice())?;
        Ok(())
    }

    /// Number of principals.
    pub(crate) fn principal_count(&self) -> Result<u64, StoreError> {
        Ok(self.principals.len()?)
    }
}

/// A secondary index key.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Index<'a> {
    /// Keyed blind index of phone, email or ID number.
    Blind(&'a [u8; 16]),
    /// Owner name.
    Owner(&'a str),
    /// A tag.
    Tag(&'a str),
    /// A status name.
    Status(&'a str),
}

/// One read snapshot. Tables open on demand.
pub(crate) struct Reader {
    txn: ReadTransaction,
}

impl Reader {
    /// The stored customer `id`.
    pub(crate) fn customer(&self, id: u64) -> Result<Option<StoredCustomer>, StoreError> {
        self.txn
            .open_table(CUSTOMERS)?
            .get(id)?
            .map(|v| decode(v.value(), "customer"))
            .transpose()
    }

    /// Calls `f` with a borrowed view of customer `id` (`None` if absent):
    /// the read path decodes without copying.
    pub(crate) fn with_customer<T, E: From<StoreError>>(
        &self,
        id: u64,
        f: impl FnOnce(Option<CustomerRef<'_>>) -> Result<T, E>,
    ) -> Result<T, E> {
        let table = self.txn.open_table(CUSTOMERS).map_err(StoreError::from)?;
        match table.get(id).map_err(StoreError::from)? {
            Some(guard) => f(Some(records::decode_ref(guard.value(), "customer")?)),
            None => f(None),
        }
    }

    /// Calls `f` with each customer whose id is above `after`, in id order,
    /// until it returns `false` or `limit` customers were seen; returns the
    /// last id seen.
    pub(crate) fn scan_customers<E: From<StoreError>>(
        &self,
        after: u64,
        limit: usize,
        f: impl FnMut(CustomerRef<'_>) -> Result<bool, E>,
    ) -> Result<Option<u64>, E> {
        let table = self.txn.open_table(CUSTOMERS).map_err(StoreError::from)?;
        scan(&table, after, limit, f)
    }

    /// Number of customers.
    pub(crate) fn customer_count(&self) -> Result<u64, StoreError> {
        Ok(self.txn.open_table(CUSTOMERS)?.len()?)
    }

    /// The first `limit` customers indexed under `index`.
    pub(crate) fn lookup(&self, index: Index<'_>, limit: usize) -> Result<Vec<u64>, StoreError> {
        let values = match index {
            Index::Blind(key) => self.txn.open_multimap_table(BLIND)?.get(key.as_slice())?,
            Index::Owner(o) => self.txn.open_multimap_table(BY_OWNER)?.get(o)?,
            Index::Tag(t) => self.txn.open_multimap_table(BY_TAG)?.get(t)?,
            Index::Status(s) => self.txn.open_multimap_table(BY_STATUS)?.get(s)?,
        };
        values.take(limit).map(|v| Ok(v?.value())).collect()
    }

    /// A customer's interactions, oldest id first.
    pub(crate) fn interactions(&self, customer: u64) -> Result<Vec<StoredInteraction>, StoreError> {
        self.txn
            .open_table(INTERACTIONS)?
            .range((customer, 0)..=(customer, u64::MAX))?
            .map(|r| decode(r?.1.value(), "interaction"))
            .collect()
    }

    /// A customer's follow-ups, by id.
    pub(crate) fn followups_of(&self, customer: u64) -> Result<Vec<StoredFollowUp>, StoreError> {
        let ids = self.txn.open_multimap_table(FOLLOWUPS_BY_CUSTOMER)?;
        let all = self.txn.open_table(FOLLOWUPS)?;
        let mut out = Vec::new();
        for id in ids.get(customer)? {
            if let Some(v) = all.get(id?.value())? {
                out.push(decode(v.value(), "follow-up")?);
            }
        }
        Ok(out)
    }

    /// Open follow-ups due at or before `before_micros`, optionally for one assignee.
    pub(crate) fn followups_due(
        &self,
        before_micros: i64,
        assignee: Option<&str>,
    ) -> Result<Vec<StoredFollowUp>, StoreError> {
        let open = self.txn.open_table(FOLLOWUPS_OPEN)?;
        let all = self.txn.open_table(FOLLOWUPS)?;
        let mut out = Vec::new();
        for entry in open.range((i64::MIN, 0)..=(before_micros, u64::MAX))? {
            let (key, who) = entry?;
            if assignee.is_some_and(|a| a != who.value()) {
                continue;
            }
            let (_, id) = key.value();
            if let Some(v) = all.get(id)? {
                out.push(decode(v.value(), "follow-up")?);
            }
        }
        Ok(out)
    }

    /// A principal.
    pub(crate) fn principal(&self, name: &str) -> Result<Option<StoredPrincipal>, StoreError> {
        self.txn
            .open_table(PRINCIPALS)?
            .get(name)?
            .map(|v| decode_principal(v.value()))
            .transpose()
    }

    /// A session by its token hash.
    pub(crate) fn session(&self, hash: &[u8; 32]) -> Result<Option<StoredSession>, StoreError> {
        self.txn
            .open_table(SESSIONS)?
            .get(hash.as_slice())?
            .map(|v| decode(v.value(), "session"))
            .transpose()
    }

    /// Every session with its token hash.
    pub(crate) fn sessions(&self) -> Result<Vec<([u8; 32], StoredSession)>, StoreError> {
        let mut out = Vec::new();
        for row in self.txn.open_table(SESSIONS)?.iter()? {
            let (k, v) = row?;
            let hash = <[u8; 32]>::try_from(k.value()).map_err(|_| corrupt("session key"))?;
            out.push((hash, decode(v.value(), "session")?));
        }
        Ok(out)
    }

    /// A failed-login counter.
    pub(crate) fn throttle(&self, key: &str) -> Result<StoredThrottle, StoreError> {
        Ok(self
            .txn
            .open_table(THROTTLE)?
            .get(key)?
            .map(|v| decode(v.value(), "throttle"))
            .transpose()?
            .unwrap_or_default())
    }

    /// A principal's credentials (empty if none were ever set).
    pub(crate) fn credentials(&self, name: &str) -> Result<StoredCredentials, StoreError> {
        Ok(self
            .txn
            .open_table(CREDENTIALS)?
            .get(name)?
            .map(|v| decode(v.value(), "credentials"))
            .transpose()?
            .unwrap_or_default())
    }

    /// The newest policy version, if any.
    pub(crate) fn latest_policy(&self) -> Result<Option<(u64, StoredPolicy)>, StoreError> {
        latest_policy(&self.txn.open_table(POLICIES)?)
    }

    /// Number of principals.
    pub(crate) fn principal_count(&self) -> Result<u64, StoreError> {
        Ok(self.txn.open_table(PRINCIPALS)?.len()?)
    }

    /// Every principal, by name.
    pub(crate) fn principals(&self) -> Result<Vec<StoredPrincipal>, StoreError> {
        self.txn
            .open_table(PRINCIPALS)?
            .iter()?
            .map(|r| decode_principal(r?.1.value()))
            .collect()
    }

    /// The recorded audit head.
    pub(crate) fn audit_head(&self) -> Result<AuditHead, StoreError> {
        match self.txn.open_table(META)?.get(META_AUDIT_HEAD)? {
            Some(v) => AuditHead::decode(v.value()).ok_or_else(|| corrupt("audit head")),
            None => Ok(AuditHead::default()),
        }
    }

    /// Calls `f` with each audit entry from `first` on, in sequence order,
    /// until it returns `false`.
    pub(crate) fn scan_audit<E: From<StoreError>>(
        &self,
        first: u64,
        mut f: impl FnMut(u64, &[u8]) -> Result<bool, E>,
    ) -> Result<(), E> {
        let table = self.txn.open_table(AUDIT).map_err(StoreError::from)?;
        for entry in table.range(first..).map_err(StoreError::from)? {
            let (seq, bytes) = entry.map_err(StoreError::from)?;
            if !f(seq.value(), bytes.value())? {
                break;
            }
        }
        Ok(())
    }

    /// The last `n` audit entries, oldest first.
    pub(crate) fn audit_tail(&self, n: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let table = self.txn.open_table(AUDIT)?;
        let mut out: Vec<(u64, Vec<u8>)> = table
            .iter()?
            .rev()
            .take(n)
            .map(|r| r.map(|(k, v)| (k.value(), v.value().to_vec())))
            .collect::<Result<_, _>>()?;
        out.reverse();
        Ok(out)
    }
}

fn latest_policy(
    table: &impl ReadableTable<u64, &'static [u8]>,
) -> Result<Option<(u64, StoredPolicy)>, StoreError> {
    match table.last()? {
        Some((k, v)) => Ok(Some((k.value(), decode(v.value(), "policy")?))),
        None => Ok(None),
    }
}

fn scan<E: From<StoreError>>(
    table: &impl ReadableTable<u64, &'static [u8]>,
    after: u64,
    limit: usize,
    mut f: impl FnMut(CustomerRef<'_>) -> Result<bool, E>,
) -> Result<Option<u64>, E> {
    let mut last = None;
    let start = after.saturating_add(1);
    for entry in table.range(start..).map_err(StoreError::from)?.take(limit) {
        let (id, bytes) = entry.map_err(StoreError::from)?;
        last = Some(id.value());
        if !f(records::decode_ref(bytes.value(), "customer")?)? {
            break;
        }
    }
    Ok(last)
}
