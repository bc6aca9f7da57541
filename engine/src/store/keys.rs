//! The key store: wrapped data keys, in a redb file of its own beside the
//! data file, mirrored to any number of further paths. Data files and their
//! backups never hold a key, so destroying a key here (and in the mirrors)
//! makes every copy of that customer's ciphertext unreadable.
//!
//! INVARIANT: every customer in the data file has a key here. A key is
//! written before the data write that needs it and destroyed after the data
//! write that removes its customer; both times its id is first recorded as
//! *pending*. A crash or a failed data write therefore leaves at most
//! pending ids whose customer may or may not exist; the engine settles them
//! at the next open, destroying the keys of customers that are not there.

use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::StoreError;

const KEYS: TableDefinition<u64, &[u8]> = TableDefinition::new("data_keys");
const KMETA: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Ids whose key was written or is about to be destroyed, while the data
/// write that decides whether the key should exist is not known to be done.
const PENDING: TableDefinition<u64, ()> = TableDefinition::new("pending");
const GENERATION: &str = "generation";
const CHECK: &str = "key_check";
const STORE_ID: &str = "store_id";
/// The newest storage format the data file was brought to.
const DATA_FORMAT: &str = "data_format";

/// What [`KeyStore::peek`] read.
pub(crate) struct KeyStorePeek {
    pub(crate) check: Option<[u8; 32]>,
    pub(crate) holds_keys: bool,
}

/// The primary key store and its mirrors.
pub(crate) struct KeyStore {
    /// Replaced whole when a destruction rewrites the files.
    files: RwLock<Files>,
}

struct Files {
    primary: Database,
    primary_path: PathBuf,
    mirrors: Vec<(PathBuf, Database)>,
}

impl KeyStore {
    /// Reads an existing key store without writing to it: its key-check
    /// value, and whether it holds any key or pending mark.
    pub(crate) fn peek(path: &Path) -> Result<KeyStorePeek, StoreError> {
        use redb::ReadableTableMetadata;
        let db = redb::ReadOnlyDatabase::open(path)?;
        let txn = db.begin_read()?;
        let check = match txn.open_table(KMETA) {
            Ok(meta) => meta
                .get(CHECK)?
                .and_then(|v| <[u8; 32]>::try_from(v.value()).ok()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let keys = match txn.open_table(KEYS) {
            Ok(t) => !t.is_empty()?,
            Err(redb::TableError::TableDoesNotExist(_)) => false,
            Err(e) => return Err(e.into()),
        };
        let pending = match txn.open_table(PENDING) {
            Ok(t) => !t.is_empty()?,
            Err(redb::TableError::TableDoesNotExist(_)) => false,
            Err(e) => return Err(e.into()),
        };
        Ok(KeyStorePeek {
            check,
            holds_keys: keys || pending,
        })
    }

    /// Opens the key store at `path` (creating it with `identity` if given)
    /// and brings every mirror up to date.
    pub(crate) fn open(
        path: &Path,
        mirrors: &[PathBuf],
        key_check: [u8; 32],
        identity: Option<[u8; 16]>,
    ) -> Result<Self, StoreError> {
        let primary = open_one(path, identity.is_some())?;
        init(&primary, identity.map(|id| (key_check, id)))?;
        // Checked again after a repairing open (the read-only check cannot
        // open a file that needs repair), before any mirror is touched.
        if read_meta(&primary, CHECK)?.as_deref() != Some(key_check.as_slice()) {
            return Err(StoreError::KeyCheckMismatch);
        }
        let store_id = read_meta(&primary, STORE_ID)?;
        let generation = read_meta(&primary, GENERATION)?;
        let mut opened = Vec::new();
        for mirror in mirrors {
            let db = open_one(mirror, true)?;
            let mirror_id = read_meta(&db, STORE_ID)?;
            if mirror_id.is_some() && mirror_id != store_id {
                return Err(StoreError::KeyStoreMismatch(mirror.display().to_string()));
            }
            if read_meta(&db, GENERATION)? != generation {
                copy_all(&primary, &db)?;
            }
            opened.push((super::files::resolved(mirror)?, db));
        }
        Ok(Self {
            files: RwLock::new(Files {
                primary,
                primary_path: super::files::resolved(path)?,
                mirrors: opened,
            }),
        })
    }

    fn files(&self) -> RwLockReadGuard<'_, Files> {
        self.files
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The store id recorded at creation.
    pub(crate) fn store_id(&self) -> Result<Option<[u8; 16]>, StoreError> {
        Ok(read_meta(&self.files().primary, STORE_ID)?.and_then(|v| v.try_into().ok()))
    }

    /// The newest storage format the data file was brought to, if
    /// recorded.
    pub(crate) fn data_format(&self) -> Result<Option<u32>, StoreError> {
        let stored = read_meta(&self.files().primary, DATA_FORMAT)?;
        Ok(stored
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .map(u32::from_le_bytes))
    }

    /// Durably records that the data file reached `format`, in the
    /// primary and every mirror.
    pub(crate) fn set_data_format(&self, format: u32) -> Result<(), StoreError> {
        self.each(1, |db| {
            apply(db, Durability::Immediate, |_, _, meta| {
                meta.insert(DATA_FORMAT, format.to_le_bytes().as_slice())?;
                Ok(())
            })
        })
    }

    /// Durably stores wrapped keys, marked pending, in the primary and
    /// every mirror.
    pub(crate) fn put(&self, keys: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        self.each(keys.len(), |db| {
            apply(db, Durability::Immediate, |table, pending, _| {
                for (id, wrapped) in keys {
                    table.insert(*id, wrapped.as_slice())?;
                    pending.insert(*id, ())?;
                }
                Ok(())
            })
        })
    }

    /// Durably replaces the stored keys of customers that keep theirs
    /// (a key added beside a data key): no pending mark, nothing destroyed.
    pub(crate) fn replace(&self, keys: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        self.each(keys.len(), |db| {
            apply(db, Durability::Immediate, |table, _, _| {
                for (id, stored) in keys {
                    table.insert(*id, stored.as_slice())?;
                }
                Ok(())
            })
        })
    }

    /// Durably marks keys as about to be destroyed.
    pub(crate) fn mark_pending(&self, ids: &[u64]) -> Result<(), StoreError> {
        self.each(ids.len(), |db| {
            apply(db, Durability::Immediate, |_, pending, _| {
                for id in ids {
                    pending.insert(*id, ())?;
                }
                Ok(())
            })
        })
    }

    /// Clears the pending mark once the data write is known to be done. Not
    /// synced: a lost mark is settled again, harmlessly, at the next open.
    pub(crate) fn settle(&self, ids: &[u64]) -> Result<(), StoreError> {
        self.each(ids.len(), |db| {
            apply(db, Durability::None, |_, pending, _| {
                for id in ids {
                    pending.remove(*id)?;
                }
                Ok(())
            })
        })
    }

    /// Durably destroys keys in the primary and every mirror, then
    /// rewrites each file ([`KeyStore::scrub`]): redb frees the pages that
    /// held a key without overwriting them.
    pub(crate) fn remove(&self, ids: &[u64]) -> Result<(), StoreError> {
        self.each(ids.len(), |db| {
            apply(db, Durability::Immediate, |table, pending, _| {
                for id in ids {
                    table.remove(*id)?;
                    pending.remove(*id)?;
                }
                Ok(())
            })
        })?;
        if ids.is_empty() {
            return Ok(());
        }
        self.scrub()
    }

    /// Rewrites the primary and every mirror into fresh files holding only
    /// the live keys, each put in place by an atomic rename, so that no
    /// byte of a destroyed key remains in any of them. A crash leaves
    /// either the old file or the new one.
    fn scrub(&self) -> Result<(), StoreError> {
        let mut files = self
            .files
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Files {
            primary,
            primary_path,
            mirrors,
        } = &mut *files;
        rewrite(primary, primary_path)?;
        for (path, mirror) in mirrors {
            rewrite(mirror, path)?;
        }
        Ok(())
    }

    /// Whether any key, or any pending mark, is held.
    pub(crate) fn holds_keys(&self) -> Result<bool, StoreError> {
        use redb::ReadableTableMetadata;
        let txn = self.files().primary.begin_read()?;
        if !txn.open_table(KEYS)?.is_empty()? {
            return Ok(true);
        }
        Ok(!self.pending()?.is_empty())
    }

    /// The ids marked pending.
    pub(crate) fn pending(&self) -> Result<Vec<u64>, StoreError> {
        let txn = self.files().primary.begin_read()?;
        let table = match txn.open_table(PENDING) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        table.iter()?.map(|r| Ok(r?.0.value())).collect()
    }

    /// The wrapped key of `id`, if it exists.
    pub(crate) fn get(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.files().primary.begin_read()?;
        let table = txn.open_table(KEYS)?;
        Ok(table.get(id)?.map(|v| v.value().to_vec()))
    }

    /// Number of keys held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        let txn = self.files().primary.begin_read()?;
        Ok(txn.open_table(KEYS)?.len()?)
    }

    /// Every id with a key.
    #[cfg(test)]
    pub(crate) fn ids(&self) -> Result<Vec<u64>, StoreError> {
        let txn = self.files().primary.begin_read()?;
        let table = txn.open_table(KEYS)?;
        table.iter()?.map(|r| Ok(r?.0.value())).collect()
    }

    /// Applies a write of `changes` ids to the primary and every mirror. A
    /// write of none writes nothing: no commit, so no sync.
    fn each(
        &self,
        changes: usize,
        f: impl Fn(&Database) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if changes == 0 {
            return Ok(());
        }
        let files = self.files();
        f(&files.primary)?;
        for (_, mirror) in &files.mirrors {
            f(mirror)?;
        }
        Ok(())
    }
}

/// Replaces the file of `db` at `path` by a fresh copy of its content.
fn rewrite(db: &mut Database, path: &Path) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Backend(format!("{}: {e}", path.display()));
    let fresh = super::files::scratch_beside(path).map_err(io)?;
    drop(copy_into_new(db, &fresh)?);
    std::fs::rename(&fresh, path).map_err(io)?;
    super::files::sync_parent(path).map_err(io)?;
    *db = open_one(path, false)?;
    Ok(())
}

/// A new key store at `path` holding what `from` holds.
fn copy_into_new(from: &Database, path: &Path) -> Result<Database, StoreError> {
    let db = open_one(path, true)?;
    copy_all(from, &db)?;
    Ok(db)
}

fn open_one(path: &Path, create: bool) -> Result<Database, StoreError> {
    let mut builder = Database::builder();
    builder.set_cache_size(64 * 1024 * 1024);
    if create {
        super::files::create_private(path)
            .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
        Ok(builder.create(path)?)
    } else if path.exists() {
        Ok(builder.open(path)?)
    } else {
        Err(StoreError::Missing(path.display().to_string()))
    }
}

fn init(db: &Database, identity: Option<([u8; 32], [u8; 16])>) -> Result<(), StoreError> {
    if read_meta(db, CHECK)?.is_some() {
        return Ok(());
    }
    let txn = db.begin_write()?;
    {
        txn.open_table(KEYS)?;
        let mut meta = txn.open_table(KMETA)?;
        if meta.get(CHECK)?.is_none()
            && let Some((check, store_id)) = identity
        {
            meta.insert(CHECK, check.as_slice())?;
            meta.insert(STORE_ID, store_id.as_slice())?;
            meta.insert(GENERATION, 0u64.to_le_bytes().as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}

fn read_meta(db: &Database, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let txn = db.begin_read()?;
    let meta = match txn.open_table(KMETA) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(meta.get(key)?.map(|v| v.value().to_vec()))
}

type KeyTable<'t> = redb::Table<'t, u64, &'static [u8]>;
type PendingTable<'t> = redb::Table<'t, u64, ()>;
type MetaTable<'t> = redb::Table<'t, &'static str, &'static [u8]>;

/// One write transaction that also bumps the generation counter, so a
/// mirror that missed a write is recognised and re-copied at next open.
fn apply(
    db: &Database,
    durability: Durability,
    f: impl FnOnce(
        &mut KeyTable<'_>,
        &mut PendingTable<'_>,
        &mut MetaTable<'_>,
    ) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(durability)
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    {
        let mut table = txn.open_table(KEYS)?;
        let mut pending = txn.open_table(PENDING)?;
        let mut meta = txn.open_table(KMETA)?;
        f(&mut table, &mut pending, &mut meta)?;
        let generation = meta
            .get(GENERATION)?
            .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0);
        meta.insert(GENERATION, (generation + 1).to_le_bytes().as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

/// Makes `to` an exact copy of `from`.
fn copy_all(from: &Database, to: &Database) -> Result<(), StoreError> {
    let read = from.begin_read()?;
    let keys = read.open_table(KEYS)?;
    let meta = read.open_table(KMETA)?;
    let txn = to.begin_write()?;
    txn.delete_table(KEYS)?;
    txn.delete_table(KMETA)?;
    txn.delete_table(PENDING)?;
    {
        let mut out = txn.open_table(KEYS)?;
        for entry in keys.iter()? {
            let (k, v) = entry?;
            out.insert(k.value(), v.value())?;
        }
        let mut out_pending = txn.open_table(PENDING)?;
        let pending = match read.open_table(PENDING) {
            Ok(t) => Some(t),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(pending) = pending {
            for entry in pending.iter()? {
                out_pending.insert(entry?.0.value(), ())?;
            }
        }
        let mut out_meta = txn.open_table(KMETA)?;
        for entry in meta.iter()? {
            let (k, v) = entry?;
            out_meta.insert(k.value(), v.value())?;
        }
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn generation(store: &KeyStore) -> Option<Vec<u8>> {
        read_meta(&store.files().primary, GENERATION).unwrap()
    }

    /// Every write with a key claim settles it; most settle no removal, and
    /// a durable commit of nothing cost a sync of the key store and of
    /// every mirror.
    #[test]
    fn a_write_of_no_ids_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mirror = dir.path().join("mirror.redb");
        let store = KeyStore::open(
            &dir.path().join("keys.redb"),
            std::slice::from_ref(&mirror),
            [1; 32],
            Some([2; 16]),
        )
        .unwrap();
        let before = generation(&store);
        store.put(&[]).unwrap();
        store.mark_pending(&[]).unwrap();
        store.settle(&[]).unwrap();
        store.remove(&[]).unwrap();
        assert_eq!(generation(&store), before);
        store.put(&[(7, vec![0; 8])]).unwrap();
        store.remove(&[7]).unwrap();
        assert_ne!(generation(&store), before);
        assert_eq!(
            read_meta(&store.files().mirrors[0].1, GENERATION).unwrap(),
            generation(&store)
        );
    }
}
