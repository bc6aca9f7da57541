//! The redb backend: one data file, [`Reader`] snapshots and [`Writer`]
//! transactions implementing [`Snapshot`] and [`Txn`].
//!
//! Every table is opened on first use and kept open for the rest of the
//! transaction, by readers and writers alike, so each read is written
//! once (`reads.rs`) for both. What this backend relies on
//! from redb, and a multi-writer backend must provide otherwise, is in
//! ARCHITECTURE.md: one writer at a time (the file is locked by one
//! process, and write transactions are serialized), snapshots isolated
//! from later writes, and a commit that is durable when it returns. A
//! write that removes a customer has the file rewritten (`scrub.rs`), so
//! no page it freed keeps what it removed.

mod reads;
#[cfg(test)]
mod tests;
mod migrate;
mod scrub;
mod tables;
mod tagged;
mod writer;
mod writes;

use std::borrow::Borrow;
use std::cell::OnceCell;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableMultimapTable, ReadableTable, Value,
};

use super::backend::BackendAdapter;
use super::integrity::{Integrity, IntegrityFailure};
use super::interface::{AuditHead, Snapshot, Txn};
use super::{FORMAT, Identity, Location, Meta, StoreError};
use tables::{
    META, META_CHECK, META_FORMAT, NEWEST, Named, NamedMultimap, SETTING_NEXT_ID,
    SETTING_REWRITTEN, SETTING_SCHEMA, SETTING_STORE_ID, SETTINGS, Seen,
};
use tagged::{Tagged, TaggedRef};
pub(crate) use writer::Writer;

/// When a write that removed a customer has the data file rewritten.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rewrite {
    /// Before the write returns.
    Now,
    /// At [`Store::scrub_if_owed`], for the last of a series of writes.
    Later,
}

/// The data file, and the key its records are authenticated under.
pub(crate) struct Store {
    /// The open file. A rewrite ([`Store::scrub_if_owed`]) puts a new one in its
    /// place; a snapshot keeps the one it began on until it ends.
    db: RwLock<Arc<Database>>,
    /// Held by each write transaction, and by a rewrite throughout.
    writing: Mutex<()>,
    /// Whether the file may owe a rewrite: set by a write that marked it
    /// (and at open, until the file is read), cleared under `writing` once
    /// the file is found clean. Spares every write a read of the mark.
    maybe_owed: AtomicBool,
    /// Where the file is; `None` for a caller-supplied medium.
    path: Option<PathBuf>,
    integrity: Integrity,
}

/// How a read reaches a table: a snapshot opens it read-only, a write
/// transaction opens it inside the transaction (so it sees its own
/// writes); either keeps it open for the rest of the transaction. `None`
/// is a table the file does not have yet.
pub(super) trait Open {
    fn table<T: Named>(
        &self,
        table: T,
    ) -> Result<Option<impl Deref<Target: ReadableTable<T::K, T::V>> + '_>, StoreError>;

    fn multimap<T: NamedMultimap>(
        &self,
        table: T,
    ) -> Result<Option<impl Deref<Target: ReadableMultimapTable<T::K, T::V>> + '_>, StoreError>;

    /// The audit head this transaction moved, not yet in the meta table.
    fn pending_head(&self) -> Option<AuditHead> {
        None
    }

    /// Audit entries this transaction appended, not yet in their table.
    fn pending_audit(&self) -> &[(u64, Vec<u8>)] {
        &[]
    }

    /// The key records are authenticated under.
    fn integrity(&self) -> &Integrity;

    /// The body of `value`, found under `key` in `table`, if its tag holds.
    fn body<'a, T: Named<V = Tagged>>(
        &self,
        table: T,
        key: &<T::K as Value>::SelfType<'_>,
        value: TaggedRef<'a>,
    ) -> Result<&'a [u8], StoreError> {
        tagged::open::<T::K>(self.integrity(), table.name(), key, value)
    }

    /// `f` of the checked body of the record under `key` in `table`.
    fn record<'k, T: Named<V = Tagged>, R>(
        &self,
        table: T,
        key: impl Borrow<<T::K as Value>::SelfType<'k>>,
        f: impl FnOnce(&[u8]) -> Result<R, StoreError>,
    ) -> Result<Option<R>, StoreError> {
        let Some(open) = self.table(table)? else {
            return Ok(None);
        };
        let key = key.borrow();
        let Some(value) = open.get(key)? else {
            return Ok(None);
        };
        f(self.body(table, key, value.value())?).map(Some)
    }
}

/// One read snapshot.
pub(crate) struct Reader<'s> {
    txn: ReadTransaction,
    seen: Seen,
    integrity: &'s Integrity,
    /// The file the snapshot reads, kept open until it ends (dropped
    /// after `txn`).
    _db: Arc<Database>,
}

/// What a snapshot's slot holds once opened: the table, or `None` if the
/// file lacks it.
fn seen<T>(
    slot: &OnceCell<Option<T>>,
    open: impl FnOnce() -> Result<T, redb::TableError>,
) -> Result<Option<&T>, StoreError> {
    if slot.get().is_none() {
        let table = match open() {
            Ok(table) => Some(table),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        };
        // Set here only (a snapshot is used by one thread).
        let _ = slot.set(table);
    }
    Ok(slot.get().and_then(Option::as_ref))
}

impl Open for Reader<'_> {
    fn integrity(&self) -> &Integrity {
        self.integrity
    }

    fn table<T: Named>(
        &self,
        table: T,
    ) -> Result<Option<impl Deref<Target: ReadableTable<T::K, T::V>> + '_>, StoreError> {
        seen(table.seen(&self.seen), || self.txn.open_table(table.def()))
    }

    fn multimap<T: NamedMultimap>(
        &self,
        table: T,
    ) -> Result<Option<impl Deref<Target: ReadableMultimapTable<T::K, T::V>> + '_>, StoreError>
    {
        seen(table.seen(&self.seen), || {
            self.txn.open_multimap_table(table.def())
        })
    }
}

impl Store {
    /// Reads the key-check value without writing a byte to the file: the
    /// database is opened read-only. `None`: the file has no identity yet.
    pub(crate) fn peek_key_check(path: &Path) -> Result<Option<[u8; 32]>, StoreError> {
        let db = redb::ReadOnlyDatabase::open(path)?;
        let txn = db.begin_read()?;
        let meta = match txn.open_table(META.def()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let check = meta
            .get(META_CHECK)?
            .and_then(|v| <[u8; 32]>::try_from(v.value()).ok());
        Ok(check)
    }

    /// Opens (or, with `create`, creates) the data file and reads its
    /// settings without writing anything. Records are authenticated under
    /// `integrity`.
    /// A file made under another key is [`StoreError::KeyCheckMismatch`]
    /// before any record is read.
    pub(crate) fn open(
        location: Location<'_>,
        create: bool,
        integrity: Integrity,
        key_check: [u8; 32],
    ) -> Result<(Self, Meta), StoreError> {
        let builder = Database::builder();
        let (db, path) = match location {
            Location::Path(path) if create => {
                super::files::create_private(path)
                    .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
                (builder.create(path)?, Some(super::files::resolved(path)?))
            }
            Location::Path(path) => {
                if !path.exists() {
                    return Err(StoreError::Missing(path.display().to_string()));
                }
                (builder.open(path)?, Some(super::files::resolved(path)?))
            }
            Location::Backend(backend) => {
                let db = builder.create_with_backend(BackendAdapter(backend))?;
                (db, None)
            }
        };
        let store = Self {
            db: RwLock::new(Arc::new(db)),
            writing: Mutex::new(()),
            maybe_owed: AtomicBool::new(true),
            path,
            integrity,
        };
        let meta = store.reader()?.meta(key_check)?;
        Ok((store, meta))
    }

    /// The file open now.
    fn db(&self) -> Arc<Database> {
        Arc::clone(&self.db.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Brings the file to this build's format (creating any missing table
    /// and tagging the records of a format-1 file) and, for a new
    /// database, records its identity. Writes only when something is
    /// missing. A rewrite the file owes is left to the caller
    /// ([`Store::scrub_if_owed`]), once the keys are settled.
    pub(crate) fn prepare(&self, identity: Option<Identity<'_>>) -> Result<(), StoreError> {
        let writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let db = self.db();
        let complete = {
            let txn = db.begin_read()?;
            let newest = match txn.open_table(NEWEST.def()) {
                Ok(_) => true,
                Err(redb::TableError::TableDoesNotExist(_)) => false,
                Err(e) => return Err(e.into()),
            };
            let format = match txn.open_table(META.def()) {
                Ok(meta) => read_format(&meta)?,
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(e.into()),
            };
            newest && format == Some(FORMAT) && identity.is_none()
        };
        if complete {
            return Ok(());
        }
        let txn = db.begin_write()?;
        let format = read_format(&txn.open_table(META.def())?)?;
        if format.is_some_and(|f| f < FORMAT) {
            migrate::from_format_1(&txn, &self.integrity)?;
        }
        tables::create_all(&txn, &self.integrity)?;
        if let Some(identity) = &identity {
            let unset = txn.open_table(META.def())?.get(META_FORMAT)?.is_none();
            if unset {
                let writer = Writer::new(&txn, &self.integrity);
                writer.put(SETTINGS, SETTING_STORE_ID, identity.store_id.as_slice())?;
                writer.put(SETTINGS, SETTING_SCHEMA, identity.schema.as_bytes())?;
                // A new file has freed nothing yet.
                writer.put(SETTINGS, SETTING_REWRITTEN, &[])?;
                drop(writer);
                let mut meta = txn.open_table(META.def())?;
                meta.insert(META_FORMAT, FORMAT.to_le_bytes().as_slice())?;
                meta.insert(META_CHECK, identity.key_check.as_slice())?;
            }
        }
        txn.commit()?;
        drop(writing);
        Ok(())
    }

    /// Runs `f` in one write transaction and commits it durably. If `f`
    /// fails, nothing it wrote is kept. A transaction that removed a
    /// customer returns once the file holds no freed page of it
    /// ([`Store::scrub_if_owed`]).
    pub(crate) fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut dyn Txn) -> Result<T, E>,
    ) -> Result<T, E> {
        self.write_then(Rewrite::Now, f)
    }

    /// [`Store::write`], with the rewrite a removal owes done now or left
    /// to [`Store::scrub_if_owed`] (the file stays marked until then).
    pub(crate) fn write_then<T, E: From<StoreError>>(
        &self,
        rewrite: Rewrite,
        f: impl FnOnce(&mut dyn Txn) -> Result<T, E>,
    ) -> Result<T, E> {
        let writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let txn = self.db().begin_write().map_err(StoreError::from)?;
        let (value, owes_scrub) = {
            let mut writer = Writer::new(&txn, &self.integrity);
            let value = f(&mut writer)?;
            (value, writer.finish().map_err(E::from)?)
        };
        txn.commit().map_err(StoreError::from)?;
        if owes_scrub {
            self.maybe_owed.store(true, Ordering::Release);
        }
        drop(writing);
        if owes_scrub && rewrite == Rewrite::Now {
            self.scrub_if_owed()?;
        }
        Ok(value)
    }

    /// Runs `f` on a consistent snapshot.
    pub(crate) fn read<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&dyn Snapshot) -> Result<T, E>,
    ) -> Result<T, E> {
        f(&self.reader()?)
    }

    fn reader(&self) -> Result<Reader<'_>, StoreError> {
        let db = self.db();
        Ok(Reader {
            txn: db.begin_read()?,
            seen: Seen::default(),
            integrity: &self.integrity,
            _db: db,
        })
    }

    /// Removes an engine setting, as a file written before it was set
    /// lacks it.
    #[cfg(test)]
    pub(crate) fn forget_setting(&self, name: &str) -> Result<(), StoreError> {
        let txn = self.db().begin_write()?;
        let key = tables::engine_setting(name);
        txn.open_table(SETTINGS.def())?.remove(key.as_str())?;
        txn.commit()?;
        Ok(())
    }

    /// Checks every authenticated record; each that fails is reported.
    /// Returns how many were checked.
    pub(crate) fn verify_records(
        &self,
        report: &mut dyn FnMut(IntegrityFailure),
    ) -> Result<u64, StoreError> {
        tables::verify_records(&self.reader()?, report)
    }
}

impl Reader<'_> {
    /// The settings of the file: format-1 files kept them untagged in the
    /// meta table, where they are read until the file is migrated.
    fn meta(&self, expected: [u8; 32]) -> Result<Meta, StoreError> {
        let Some(meta) = self.table(META)? else {
            return Ok(Meta::default());
        };
        let format = read_format(&*meta)?;
        let key_check = (meta.get(META_CHECK)?).and_then(|v| <[u8; 32]>::try_from(v.value()).ok());
        if key_check.is_some_and(|check| check != expected) {
            return Err(StoreError::KeyCheckMismatch);
        }
        if format.is_some_and(|f| f < FORMAT) {
            return migrate::format_1_meta(&*meta, format, key_check);
        }
        // A tampered setting is kept for the caller to refuse, so that a
        // verification can still open the file and report it.
        let mut tampered = None;
        let store_id = setting(
            &mut tampered,
            self.record(SETTINGS, SETTING_STORE_ID, |v| {
                Ok(<[u8; 16]>::try_from(v).ok())
            }),
        )?;
        let schema = setting(
            &mut tampered,
            self.record(SETTINGS, SETTING_SCHEMA, |v| {
                Ok(Some(String::from_utf8_lossy(v).into_owned()))
            }),
        )?;
        let next_id = setting(
            &mut tampered,
            self.record(SETTINGS, SETTING_NEXT_ID, |v| read_u64(v).map(Some)),
        )?;
        Ok(Meta {
            format,
            key_check,
            store_id,
            schema,
            next_id: next_id.unwrap_or(1),
            tampered,
        })
    }
}

/// A setting as read: one that failed its integrity check reads as unset
/// and is kept in `tampered`.
fn setting<T>(
    tampered: &mut Option<StoreError>,
    read: Result<Option<Option<T>>, StoreError>,
) -> Result<Option<T>, StoreError> {
    match read {
        Ok(value) => Ok(value.flatten()),
        Err(e @ StoreError::Integrity { .. }) => {
            tampered.get_or_insert(e);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A u64 stored as a record's body.
fn read_u64(body: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(body)
        .map(u64::from_le_bytes)
        .map_err(|_| StoreError::Corrupt("a stored counter".into()))
}

/// The storage format a file records, refusing a newer one.
fn read_format(
    meta: &(impl ReadableTable<&'static str, &'static [u8]> + ?Sized),
) -> Result<Option<u32>, StoreError> {
    let Some(format) = meta.get(META_FORMAT)? else {
        return Ok(None);
    };
    let found = <[u8; 4]>::try_from(format.value())
        .map(u32::from_le_bytes)
        .map_err(|_| StoreError::Corrupt("meta format".into()))?;
    if found > FORMAT {
        return Err(StoreError::Version {
            found,
            supported: FORMAT,
        });
    }
    Ok(Some(found))
}
