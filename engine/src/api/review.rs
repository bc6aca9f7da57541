//! A defect found reviewing the key claim, staged with the engine's
//! internals so that the interleaving is exact (`tests/all/review.rs`
//! reproduces it with threads): fails until the defect is fixed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;

use super::*;
use crate::Context;

fn engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder()
        .path(dir.path().join("crm.redb"))
        .master_key(MasterKey::generate())
        .create(true)
        .open()
        .unwrap();
    (dir, engine)
}

fn admin() -> Context {
    Context::new("admin", "test")
}

/// What an import (or a plugin call) does to create customer `id`, cut
/// in two at the point where the key is durable and pending and the data
/// write has not committed yet: between the two halves a delete of `id`
/// is refused (`id` is not in the data file), and its claim's settle
/// destroys every claimed key whose customer is absent — the new key. The
/// creation then commits a customer whose key is gone.
#[test]
fn a_refused_delete_between_a_new_key_and_its_data_write_destroys_the_key() {
    let (_dir, engine) = engine();
    let core = &engine.core;
    let records = &core.records;
    // The creation, first half: sealed, its key stored and marked pending.
    let id = records.reserve_ids(1);
    let fields = BTreeMap::from([("name".to_string(), "Li Na".to_string())]);
    let (record, wrapped) = records
        .seal_new(id, "admin", fields, records.now())
        .unwrap();
    let claim = records.claim_new(&[(id, wrapped)]).unwrap();
    // Meanwhile: a delete of the id, refused (no such customer yet).
    let refused = engine.delete_customer(&admin(), id);
    assert!(matches!(refused, Err(Error::NotFound(_))), "{refused:?}");
    // The creation, second half: its data write commits, its claim settles.
    core.store
        .write(|w| {
            records.insert(w, &[&record])?;
            Ok::<_, Error>(())
        })
        .unwrap();
    claim
        .settle(|id| Ok(core.store.read(|r| r.contains_customer(id))?))
        .unwrap();
    assert!(
        records.key_store().get(id).unwrap().is_some(),
        "customer {id} was created without a key: the refused delete destroyed it"
    );
    engine.customer(&admin(), id).unwrap();
}
