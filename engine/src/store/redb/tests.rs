//! The tables a transaction keeps open: its own writes are read back, a
//! scan's callback may read the table it scans, and a table lent to a
//! write is refused to anything else with an error, not a panic. The
//! rewrite that follows a removal: nothing freed is left, a crash before it
//! is finished by the next open, and snapshots and writes go on across it.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use redb::{ReadableDatabase, ReadableTable};

use super::super::{Index, Integrity, Location, Snapshot, StoreError, StoredCustomer, Txn};
use super::tables::{CUSTOMERS, HOLDS, SETTING_SCRUB, SETTINGS};
use super::{Open, Store, Writer};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    (dir, store)
}

fn path(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("data.redb")
}

fn open(dir: &tempfile::TempDir) -> Store {
    let path = path(dir);
    let (store, _) = Store::open(
        Location::Path(&path),
        true,
        Integrity::new(&[3; 32]),
        [4; 32],
    )
    .unwrap();
    store.prepare(None).unwrap();
    store
}

/// Whether the file at `path` holds `needle` anywhere, free pages too.
fn holds(path: &std::path::Path, needle: &[u8]) -> bool {
    let raw = std::fs::read(path).unwrap();
    raw.windows(needle.len()).any(|w| w == needle)
}

/// A blind-index key no other byte of the file is likely to match.
fn marker(id: u64) -> [u8; 16] {
    let mut key = *b"blindkey\0\0\0\0\0\0\0\0";
    key[8..].copy_from_slice(&id.to_le_bytes());
    key
}

/// Customers 1..=`n`, each found under its [`marker`].
fn filled(store: &Store, n: u64) {
    store
        .write(|txn| {
            for id in 1..=n {
                txn.put_customer(&customer(id))?;
                txn.index(&[(Index::Blind(&marker(id)), id)], true)?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

/// Removes customer `id` and its index entry as an erasure does.
fn erase(txn: &mut dyn Txn, id: u64) -> Result<(), StoreError> {
    txn.remove_customer(id)?;
    txn.index(&[(Index::Blind(&marker(id)), id)], false)
}

#[test]
fn a_removal_leaves_nothing_it_freed_in_the_file() {
    let (dir, store) = store();
    filled(&store, 50);
    assert!(holds(&path(&dir), &marker(7)));
    store.write(|txn| erase(txn, 7)).unwrap();
    assert!(!holds(&path(&dir), &marker(7)));
    assert!(holds(&path(&dir), &marker(8)));
    // The rewrite's own mark is not carried into the new file.
    assert!(!owes(&store));
}

/// Whether the file holds the mark of a rewrite owed.
fn owes(store: &Store) -> bool {
    let reader = store.reader().unwrap();
    let settings = reader.table(SETTINGS).unwrap().unwrap();
    settings.get(SETTING_SCRUB).unwrap().is_some()
}

#[cfg(unix)]
fn inode(path: &std::path::Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
}

#[cfg(unix)]
#[test]
fn a_rewrite_a_crash_interrupted_is_owed_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        filled(&store, 50);
        store.scrub_if_owed().unwrap();
        // The removal commits; the process ends before the rewrite.
        let db = store.db();
        let txn = db.begin_write().unwrap();
        let mut writer = Writer::new(&txn, &store.integrity);
        erase(&mut writer, 7).unwrap();
        assert!(writer.finish().unwrap(), "a removal owes a rewrite");
        txn.commit().unwrap();
        assert!(owes(&store));
    }
    // Closing may reuse the freed page or not: what shows the rewrite is
    // the file itself replaced, and its mark gone.
    let crashed = inode(&path(&dir));
    let store = open(&dir);
    assert!(store.owes_rewrite().unwrap());
    store.scrub_if_owed().unwrap();
    assert_ne!(inode(&path(&dir)), crashed, "the file was not rewritten");
    assert!(!owes(&store) && !store.owes_rewrite().unwrap());
    assert!(!holds(&path(&dir), &marker(7)));
    let found = store.read(|r| r.contains_customers(&[6, 7, 8])).unwrap();
    assert_eq!(found, [true, false, true]);
}

#[cfg(unix)]
#[test]
fn a_file_never_rewritten_is_rewritten_once() {
    let (dir, store) = store();
    filled(&store, 10);
    // Made without an identity, as by a version that did not rewrite.
    assert!(store.owes_rewrite().unwrap());
    let before = inode(&path(&dir));
    store.scrub_if_owed().unwrap();
    let after = inode(&path(&dir));
    assert_ne!(before, after);
    store.scrub_if_owed().unwrap();
    assert_eq!(inode(&path(&dir)), after, "rewritten twice");
}

#[test]
fn a_table_the_build_does_not_know_stops_the_rewrite_and_loses_nothing() {
    let (dir, store) = store();
    filled(&store, 10);
    let planted: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("planted");
    let txn = store.db().begin_write().unwrap();
    txn.open_table(planted).unwrap().insert(1, 2).unwrap();
    txn.commit().unwrap();
    let refused = store.write(|txn| erase(txn, 3)).unwrap_err();
    assert!(matches!(refused, StoreError::Rewrite(_)), "{refused}");
    assert!(refused.to_string().contains("`planted`"), "{refused}");
    // The removal stands, the table is there, the mark stays for a retry,
    // and no partial copy is left beside the file.
    let found = store.read(|r| r.contains_customers(&[3, 4])).unwrap();
    assert_eq!(found, [false, true]);
    let kept = store
        .db()
        .begin_read()
        .unwrap()
        .open_table(planted)
        .unwrap();
    assert_eq!(kept.get(1).unwrap().unwrap().value(), 2);
    assert!(owes(&store));
    assert!(!dir.path().join("data.redb.scrub").exists());
}

#[cfg(unix)]
#[test]
fn a_rewrite_replaces_the_file_a_link_names_and_keeps_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.redb");
    let link = dir.path().join("link.redb");
    drop(std::fs::File::create(&real).unwrap());
    std::fs::remove_file(&real).unwrap();
    let store = {
        let (store, _) = Store::open(
            Location::Path(&real),
            true,
            Integrity::new(&[3; 32]),
            [4; 32],
        )
        .unwrap();
        store.prepare(None).unwrap();
        filled(&store, 20);
        drop(store);
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let (store, _) = Store::open(
            Location::Path(&link),
            false,
            Integrity::new(&[3; 32]),
            [4; 32],
        )
        .unwrap();
        store
    };
    store.write(|txn| erase(txn, 5)).unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(!holds(&real, &marker(5)));
    assert!(holds(&real, &marker(6)));
}

#[test]
fn snapshots_and_writes_go_on_across_a_rewrite() {
    let (dir, store) = store();
    filled(&store, 20);
    let before = store.reader().unwrap();
    store.write(|txn| erase(txn, 3)).unwrap();
    // The snapshot taken before still reads the file it began on.
    assert_eq!(before.contains_customers(&[3, 4]).unwrap(), [true, true]);
    store.write(|txn| txn.put_customer(&customer(99))).unwrap();
    drop(before);
    drop(store);
    // The write after the rewrite reached the file now in place.
    let store = open(&dir);
    let found = store.read(|r| r.contains_customers(&[3, 4, 99])).unwrap();
    assert_eq!(found, [false, true, true]);
}

fn customer(id: u64) -> StoredCustomer {
    StoredCustomer {
        id,
        owner: "wang".into(),
        status: "active".into(),
        created_at: 1,
        updated_at: 1,
        last_interaction_at: None,
        key_version: 1,
        public: BTreeMap::new(),
        sealed: BTreeMap::new(),
        blind: BTreeMap::new(),
    }
}

#[test]
fn a_write_transaction_reads_its_own_writes_through_tables_it_keeps_open() {
    let (_dir, store) = store();
    store
        .write(|txn| {
            assert!(txn.customer(1)?.is_none());
            txn.put_customers(&[&customer(1), &customer(2), &customer(3)])?;
            let mut seen = Vec::new();
            txn.scan_customers(0, 10, &mut |record| {
                // The scanned table, read again inside its scan.
                let again = txn.customer(record.id)?.map(|c| c.id);
                seen.push((record.id, again, txn.hold(record.id)?.is_some()));
                Ok(true)
            })?;
            assert_eq!(
                seen,
                [
                    (1, Some(1), false),
                    (2, Some(2), false),
                    (3, Some(3), false)
                ]
            );
            txn.remove_customer(2)?;
            assert_eq!(txn.contains_customers(&[1, 2, 3])?, [true, false, true]);
            Ok::<_, StoreError>(())
        })
        .unwrap();
    let stored = store.read(|r| r.contains_customers(&[1, 2, 3])).unwrap();
    assert_eq!(stored, [true, false, true]);
}

#[test]
fn a_table_lent_to_a_write_is_refused_to_anything_else_with_an_error() {
    let (_dir, store) = store();
    let txn = store.db().begin_write().unwrap();
    let writer = super::Writer::new(&txn, &store.integrity);
    let reading = writer.table(CUSTOMERS).unwrap();
    let refused = writer.table_mut(CUSTOMERS).err().unwrap();
    assert!(refused.to_string().contains("customers"), "{refused}");
    drop(reading);
    let writing = writer.table_mut(CUSTOMERS).unwrap();
    assert!(writer.table(CUSTOMERS).is_err());
    // Another table is not affected.
    assert!(writer.table(HOLDS).unwrap().is_some());
    drop(writing);
    assert!(writer.table(CUSTOMERS).unwrap().is_some());
}
