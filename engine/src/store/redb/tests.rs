//! The tables a transaction keeps open: its own writes are read back, a
//! scan's callback may read the table it scans, and a table lent to a
//! write is refused to anything else with an error, not a panic.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use super::super::{Integrity, Location, StoreError, StoredCustomer};
use super::tables::{CUSTOMERS, HOLDS};
use super::{Open, Store};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.redb");
    let (store, _) = Store::open(
        Location::Path(&path),
        true,
        Integrity::new(&[3; 32]),
        [4; 32],
    )
    .unwrap();
    store.prepare(None).unwrap();
    (dir, store)
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
    let txn = store.db.begin_write().unwrap();
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
