//! The redb backend: one data file, [`Reader`] snapshots and [`Writer`]
//! transactions implementing [`Snapshot`] and [`Txn`].
//!
//! Every table is opened on first use and kept open for the rest of the
//! transaction, by readers and writers alike, so each read is written
//! once (`reads.rs`) for both. What this backend relies on
//! from redb, and a multi-writer backend must provide otherwise, is in
//! ARCHITECTURE.md: one writer at a time (the file is locked by one
//! process, and write transactions are serialized), snapshots isolated
//! from later writes, and a commit that is durable when it returns.

mod reads;
#[cfg(test)]
mod tests;
mod tables;
mod writes;

use std::path::Path;

use std::cell::{OnceCell, Ref, RefCell, RefMut};
use std::ops::Deref;

use redb::{
    Database, MultimapTableHandle, ReadTransaction, ReadableDatabase, ReadableMultimapTable,
    ReadableTable, TableHandle, WriteTransaction,
};

use super::backend::BackendAdapter;
use super::interface::{AuditHead, Snapshot, Txn};
use super::{FORMAT, Identity, Location, Meta, StoreError};
use tables::{
    META, META_AUDIT_HEAD, META_CHECK, META_FORMAT, META_NEXT_ID, META_SCHEMA, META_STORE_ID,
    MultimapOf, NEWEST, Named, NamedMultimap, Opened, Seen, TableOf,
};

/// The data file.
pub(crate) struct Store {
    db: Database,
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
}

/// One read snapshot.
pub(crate) struct Reader {
    txn: ReadTransaction,
    seen: Seen,
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

impl Open for Reader {
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

/// One write transaction.
pub(crate) struct Writer<'t> {
    txn: &'t WriteTransaction,
    /// The tables opened so far, each once.
    opened: Opened<'t>,
    /// The audit head as this transaction moved it.
    head: Option<AuditHead>,
    /// Audit entries appended, written to their table once, at the end.
    audit: Vec<(u64, Vec<u8>)>,
    /// The smallest id this transaction knows to be unused.
    next_id: Option<u64>,
}

/// A write transaction's slot, opened on first use, for a write. A table
/// is borrowed by one write, or by any number of reads, at a time: the
/// reads and writes of this backend never hold one across another use of
/// it, and if one did, it gets an error rather than a second handle.
fn opened<'a, T>(
    name: &str,
    slot: &'a RefCell<Option<T>>,
    open: impl FnOnce() -> Result<T, redb::TableError>,
) -> Result<RefMut<'a, T>, StoreError> {
    let mut held = slot.try_borrow_mut().map_err(|_| busy(name))?;
    if held.is_none() {
        *held = Some(open()?);
    }
    RefMut::filter_map(held, Option::as_mut).map_err(|_| busy(name))
}

/// [`opened`], for a read.
fn opened_ref<'a, T>(
    name: &str,
    slot: &'a RefCell<Option<T>>,
    open: impl FnOnce() -> Result<T, redb::TableError>,
) -> Result<Ref<'a, T>, StoreError> {
    let missing = slot.try_borrow().map_err(|_| busy(name))?.is_none();
    if missing {
        drop(opened(name, slot, open)?);
    }
    let held = slot.try_borrow().map_err(|_| busy(name))?;
    Ref::filter_map(held, Option::as_ref).map_err(|_| busy(name))
}

fn busy(name: &str) -> StoreError {
    StoreError::Backend(format!("table `{name}` is already in use"))
}

impl<'t> Writer<'t> {
    fn new(txn: &'t WriteTransaction) -> Self {
        Self {
            txn,
            opened: Opened::default(),
            head: None,
            audit: Vec::new(),
            next_id: None,
        }
    }

    /// `table`, open for writing.
    fn table_mut<T: Named>(&self, table: T) -> Result<RefMut<'_, TableOf<'t, T>>, StoreError> {
        let def = table.def();
        opened(def.name(), table.opened(&self.opened), || {
            self.txn.open_table(def)
        })
    }

    /// `table`, open for writing.
    fn multimap_mut<T: NamedMultimap>(
        &self,
        table: T,
    ) -> Result<RefMut<'_, MultimapOf<'t, T>>, StoreError> {
        let def = table.def();
        opened(def.name(), table.opened(&self.opened), || {
            self.txn.open_multimap_table(def)
        })
    }
}

impl Open for Writer<'_> {
    fn table<T: Named>(
        &self,
        table: T,
    ) -> Result<Option<impl Deref<Target: ReadableTable<T::K, T::V>> + '_>, StoreError> {
        let def = table.def();
        opened_ref(def.name(), table.opened(&self.opened), || {
            self.txn.open_table(def)
        })
        .map(Some)
    }

    fn multimap<T: NamedMultimap>(
        &self,
        table: T,
    ) -> Result<Option<impl Deref<Target: ReadableMultimapTable<T::K, T::V>> + '_>, StoreError>
    {
        let def = table.def();
        opened_ref(def.name(), table.opened(&self.opened), || {
            self.txn.open_multimap_table(def)
        })
        .map(Some)
    }

    fn pending_head(&self) -> Option<AuditHead> {
        self.head
    }

    fn pending_audit(&self) -> &[(u64, Vec<u8>)] {
        &self.audit
    }
}

impl Writer<'_> {
    /// Writes what the transaction kept in memory: the audit head and the
    /// highest id used.
    fn finish(self) -> Result<(), StoreError> {
        if !self.audit.is_empty() {
            let mut audit = self.table_mut(tables::AUDIT)?;
            for (seq, bytes) in &self.audit {
                audit.insert(*seq, bytes.as_slice())?;
            }
        }
        let mut meta = self.table_mut(META)?;
        if let Some(head) = self.head {
            meta.insert(META_AUDIT_HEAD, head.encode().as_slice())?;
        }
        if let Some(next) = self.next_id {
            let stored = read_u64(&*meta, META_NEXT_ID)?.unwrap_or(1);
            if next > stored {
                meta.insert(META_NEXT_ID, next.to_le_bytes().as_slice())?;
            }
        }
        Ok(())
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
        let meta = match txn.open_table(META.def()) {
            Ok(table) => read_meta(&table)?,
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
            let newest = match txn.open_table(NEWEST.def()) {
                Ok(_) => true,
                Err(redb::TableError::TableDoesNotExist(_)) => false,
                Err(e) => return Err(e.into()),
            };
            newest && identity.is_none()
        };
        if complete {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        tables::create_all(&txn)?;
        if let Some(identity) = &identity {
            let mut meta = txn.open_table(META.def())?;
            if meta.get(META_FORMAT)?.is_none() {
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
        f: impl FnOnce(&mut dyn Txn) -> Result<T, E>,
    ) -> Result<T, E> {
        let txn = self.db.begin_write().map_err(StoreError::from)?;
        let value = {
            let mut writer = Writer::new(&txn);
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
        f: impl FnOnce(&dyn Snapshot) -> Result<T, E>,
    ) -> Result<T, E> {
        let txn = self.db.begin_read().map_err(StoreError::from)?;
        f(&Reader {
            txn,
            seen: Seen::default(),
        })
    }
}

fn read_u64(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<u64>, StoreError> {
    match meta.get(key)? {
        Some(v) => <[u8; 8]>::try_from(v.value())
            .map(|b| Some(u64::from_le_bytes(b)))
            .map_err(|_| StoreError::Corrupt(format!("meta {key}"))),
        None => Ok(None),
    }
}

fn read_meta(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Meta, StoreError> {
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
    Ok(Meta {
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
