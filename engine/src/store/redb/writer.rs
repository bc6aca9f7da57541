//! One write transaction: the tables it keeps open, the audit entries it
//! appends, and what it writes when it ends.

use std::borrow::Borrow;
use std::cell::{Ref, RefCell, RefMut};
use std::ops::Deref;

use redb::{
    MultimapTableHandle, ReadableMultimapTable, ReadableTable, TableHandle, Value, WriteTransaction,
};

use super::super::StoreError;
use super::super::integrity::Integrity;
use super::super::interface::AuditHead;
use super::tables::{
    self, MultimapOf, Named, NamedMultimap, Opened, SETTING_AUDIT_HEAD, SETTING_NEXT_ID,
    SETTING_SCRUB, SETTINGS, TableOf,
};
use super::tagged::{self, Tagged};
use super::{Open, read_u64};

/// One write transaction.
pub(crate) struct Writer<'t> {
    pub(super) txn: &'t WriteTransaction,
    pub(super) integrity: &'t Integrity,
    /// The tables opened so far, each once.
    pub(super) opened: Opened<'t>,
    /// The audit head as this transaction moved it.
    pub(super) head: Option<AuditHead>,
    /// Audit entries appended, written to their table once, at the end.
    pub(super) audit: Vec<(u64, Vec<u8>)>,
    /// The smallest id this transaction knows to be unused.
    pub(super) next_id: Option<u64>,
    /// Whether it freed what must not outlive it in the file's free pages.
    pub(super) owes_scrub: bool,
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
    pub(super) fn new(txn: &'t WriteTransaction, integrity: &'t Integrity) -> Self {
        Self {
            txn,
            integrity,
            opened: Opened::default(),
            head: None,
            audit: Vec::new(),
            next_id: None,
            owes_scrub: false,
        }
    }

    /// `table`, open for writing.
    pub(super) fn table_mut<T: Named>(
        &self,
        table: T,
    ) -> Result<RefMut<'_, TableOf<'t, T>>, StoreError> {
        let def = table.def();
        opened(def.name(), table.opened(&self.opened), || {
            self.txn.open_table(def)
        })
    }

    /// `table`, open for writing.
    pub(super) fn multimap_mut<T: NamedMultimap>(
        &self,
        table: T,
    ) -> Result<RefMut<'_, MultimapOf<'t, T>>, StoreError> {
        let def = table.def();
        opened(def.name(), table.opened(&self.opened), || {
            self.txn.open_multimap_table(def)
        })
    }

    /// Stores `body` under `key` in `table`, tagged.
    pub(super) fn put<'k, T: Named<V = Tagged>>(
        &self,
        table: T,
        key: impl Borrow<<T::K as Value>::SelfType<'k>>,
        body: &[u8],
    ) -> Result<(), StoreError> {
        let key = key.borrow();
        let sealed = tagged::seal::<T::K>(self.integrity, table.name(), key, body);
        self.table_mut(table)?.insert(key, sealed.as_ref())?;
        Ok(())
    }
}

impl Open for Writer<'_> {
    fn integrity(&self) -> &Integrity {
        self.integrity
    }

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
    /// Writes what the transaction kept in memory: the audit head, the
    /// highest id used and whether it owes a rewrite. Returns the latter.
    pub(super) fn finish(self) -> Result<bool, StoreError> {
        if self.owes_scrub {
            self.put(SETTINGS, SETTING_SCRUB, &[])?;
        }
        if !self.audit.is_empty() {
            let mut audit = self.table_mut(tables::AUDIT)?;
            for (seq, bytes) in &self.audit {
                audit.insert(*seq, bytes.as_slice())?;
            }
        }
        if let Some(head) = self.head {
            self.put(SETTINGS, SETTING_AUDIT_HEAD, &head.encode())?;
        }
        if let Some(next) = self.next_id {
            let stored = self.record(SETTINGS, SETTING_NEXT_ID, read_u64)?;
            if next > stored.unwrap_or(1) {
                self.put(SETTINGS, SETTING_NEXT_ID, &next.to_le_bytes())?;
            }
        }
        Ok(self.owes_scrub)
    }
}
