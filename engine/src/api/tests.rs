//! Attacks on stored ciphertext that only code inside the crate can stage:
//! moving sealed values between fields, customers and data keys.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;

use super::*;
use crate::{Context, CryptoError, NewCustomer};

/// A database in a temporary folder and a function that (re)opens it.
fn reopenable() -> (tempfile::TempDir, impl Fn() -> Engine) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm.redb");
    let key = MasterKey::generate();
    let open = move || {
        Engine::builder()
            .path(&path)
            .master_key(key.clone())
            .create(true)
            .open()
            .unwrap()
    };
    (dir, open)
}

fn engine() -> (tempfile::TempDir, Engine) {
    let (dir, open) = reopenable();
    (dir, open())
}

fn customer(engine: &Engine, name: &str, phone: &str, email: &str) -> u64 {
    let new = NewCustomer::new()
        .field("name", name)
        .field("phone", phone)
        .field("email", email);
    engine.create_customer(&admin(), new).unwrap()
}

fn admin() -> Context {
    Context::new("admin", "test")
}

fn is_unseal(result: Result<crate::Customer>) -> bool {
    matches!(result, Err(Error::Crypto(CryptoError::Unseal { .. })))
}

/// Rewrites customer `target` with `f(target record, source record)`.
fn splice(
    engine: &Engine,
    target: u64,
    source: u64,
    f: impl FnOnce(&mut crate::store::StoredCustomer, &crate::store::StoredCustomer),
) {
    engine
        .core
        .store
        .write(|w| {
            let mut to = w.customer(target)?.unwrap();
            let from = w.customer(source)?.unwrap();
            f(&mut to, &from);
            w.put_customer(&to)?;
            Ok::<_, Error>(())
        })
        .unwrap();
}

#[test]
fn a_ciphertext_moved_to_another_field_fails_to_open() {
    let (_dir, engine) = engine();
    let a = customer(&engine, "Li Na", "13800138000", "li.na@example.com");
    splice(&engine, a, a, |to, from| {
        let phone = from.sealed["phone"].clone();
        to.sealed.insert("email".into(), phone);
    });
    assert!(is_unseal(engine.customer(&admin(), a)));
}

#[test]
fn a_ciphertext_moved_to_another_customer_fails_to_open() {
    let (_dir, engine) = engine();
    let a = customer(&engine, "Li Na", "13800138000", "li.na@example.com");
    let b = customer(&engine, "Zhang Wei", "13912345678", "zhang.wei@example.cn");
    splice(&engine, b, a, |to, from| {
        to.sealed
            .insert("phone".into(), from.sealed["phone"].clone());
    });
    assert!(is_unseal(engine.customer(&admin(), b)));
    // The untouched customer still reads.
    assert_eq!(
        engine.customer(&admin(), a).unwrap().get("phone"),
        Some("+8613800138000")
    );
}

#[test]
fn a_data_key_moved_to_another_customer_fails_to_open() {
    let (_dir, engine) = engine();
    let a = customer(&engine, "Li Na", "13800138000", "li.na@example.com");
    let b = customer(&engine, "Zhang Wei", "13912345678", "zhang.wei@example.cn");
    let wrapped_a = engine.core.records.key_store().get(a).unwrap().unwrap();
    engine
        .core
        .records
        .key_store()
        .put(&[(b, wrapped_a)])
        .unwrap();
    assert!(is_unseal(engine.customer(&admin(), b)));
}

#[test]
fn a_flipped_ciphertext_bit_fails_to_open() {
    let (_dir, engine) = engine();
    let a = customer(&engine, "Li Na", "13800138000", "li.na@example.com");
    splice(&engine, a, a, |to, _| {
        let field = to.sealed.get_mut("name").unwrap();
        field.sealed.ciphertext[0] ^= 1;
    });
    assert!(is_unseal(engine.customer(&admin(), a)));
}

#[test]
fn orphan_keys_are_collected_at_open() {
    let (_dir, open) = reopenable();
    let engine = open();
    customer(&engine, "Li Na", "13800138000", "li.na@example.com");
    // A crash between the key-store write and the data write leaves this.
    let (_, _, wrapped) = engine.core.records.ring.new_data_key(999).unwrap();
    engine
        .core
        .records
        .key_store()
        .put(&[(999, wrapped)])
        .unwrap();
    assert_eq!(engine.core.records.key_store().len().unwrap(), 2);
    drop(engine);
    let engine = open();
    assert_eq!(engine.core.records.key_store().ids().unwrap(), vec![1]);
}

#[test]
fn deleting_a_customer_forgets_its_cached_key() {
    let (_dir, engine) = engine();
    let a = customer(&engine, "Li Na", "13800138000", "li.na@example.com");
    engine.customer(&admin(), a).unwrap();
    assert!(
        engine.core.records.cached_key(a).is_some(),
        "a full read caches the key"
    );
    engine.delete_customer(&admin(), a).unwrap();
    assert!(engine.core.records.cached_key(a).is_none());
}

#[test]
fn a_crash_between_removing_a_record_and_its_key_is_settled_at_open() {
    let (_dir, open) = reopenable();
    let engine = open();
    let a = customer(&engine, "Li Na", "13800138000", "li.na@example.com");
    // What delete_customer does before its key is destroyed; then a crash.
    engine.core.records.key_store().mark_pending(&[a]).unwrap();
    let core = &engine.core;
    core.store
        .write(|w| {
            let record = w.customer(a)?.unwrap();
            let cause = crate::records::RemovalCause {
                how: crate::records::Removal::Delete,
                reason: "test",
                by: "admin",
                rule: None,
                at: 0,
            };
            core.records.remove(w, &record, &cause)?;
            Ok::<_, Error>(())
        })
        .unwrap();
    assert!(engine.core.records.key_store().get(a).unwrap().is_some());
    drop(engine);
    let engine = open();
    assert!(
        engine.core.records.key_store().get(a).unwrap().is_none(),
        "the key is destroyed"
    );
    assert!(
        engine
            .core
            .records
            .key_store()
            .pending()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_pending_key_whose_customer_committed_is_kept_at_open() {
    let (_dir, open) = reopenable();
    let engine = open();
    let a = customer(&engine, "Li Na", "13800138000", "li.na@example.com");
    // The commit landed but its settle was lost (a crash, or a commit that
    // reported an error after reaching the file).
    engine.core.records.key_store().mark_pending(&[a]).unwrap();
    drop(engine);
    let engine = open();
    assert_eq!(
        engine.customer(&admin(), a).unwrap().get("name"),
        Some("Li Na")
    );
    assert!(
        engine
            .core
            .records
            .key_store()
            .pending()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn caller_text_in_audit_entries_is_bounded() {
    let (_dir, engine) = engine();
    let huge = "谁".repeat(100_000);
    let ctx = Context::new(huge.clone(), huge);
    assert!(engine.count_customers(&ctx).is_err());
    let tail = engine.audit_tail(&admin(), 1).unwrap();
    assert!(tail[0].actor.len() <= 131, "{}", tail[0].actor.len());
    assert!(tail[0].purpose.len() <= 259);
}

/// What an import (or a plugin call) does to create customer `id`, cut
/// in two at the point where the key is durable and pending and the data
/// write has not committed yet: between the two halves a delete of `id`
/// is refused (`id` is not in the data file). Its claim's settle once
/// destroyed every claimed key whose customer was absent, the new key
/// among them, and the creation then committed a customer without a key.
#[test]
fn a_refused_delete_between_a_new_key_and_its_data_write_keeps_the_key() {
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
        .settle(|ids| core.store.read(|r| Ok(r.contains_customers(ids)?)))
        .unwrap();
    assert!(
        records.key_store().get(id).unwrap().is_some(),
        "customer {id} was created without a key: the refused delete destroyed it"
    );
    engine.customer(&admin(), id).unwrap();
}

/// The other interleaving of a refused delete and a creation of the same
/// id: the delete lets go of the id last and finds it absent; before it
/// destroys the key, the creation claims the id and stores its key. The
/// settle once let go of the id, read the data file and destroyed the key
/// in three separate steps, so the new key was destroyed. The creation's
/// claim is started here from inside the delete's data read, the one
/// moment it could slip in; it must wait for the settle to be done.
#[test]
fn a_creation_claiming_an_id_waits_for_a_settle_deciding_it() {
    let (_dir, engine) = engine();
    let core = &engine.core;
    let records = &core.records;
    let id = records.reserve_ids(1);
    let fields = BTreeMap::from([("name".to_string(), "Li Na".to_string())]);
    let (record, wrapped) = records
        .seal_new(id, "admin", fields, records.now())
        .unwrap();
    // The refused delete's claim (no such customer yet).
    let doomed = records.claim_doomed(&[id]).unwrap();
    std::thread::scope(|scope| {
        let (claimed, waited) = std::sync::mpsc::channel();
        let mut creation = None;
        doomed
            .settle(|ids| {
                let (wrapped, claimed) = (wrapped.clone(), claimed.clone());
                creation = Some(scope.spawn(move || {
                    let claim = records.claim_new(&[(id, wrapped)]).unwrap();
                    claimed.send(()).unwrap();
                    claim
                }));
                // Long enough for the creation to store its key, were it
                // not held off until this settle is done.
                let _ = waited.recv_timeout(std::time::Duration::from_millis(500));
                core.store.read(|r| Ok(r.contains_customers(ids)?))
            })
            .unwrap();
        let claim = creation.unwrap().join().unwrap();
        core.store
            .write(|w| {
                records.insert(w, &[&record])?;
                Ok::<_, Error>(())
            })
            .unwrap();
        claim
            .settle(|ids| core.store.read(|r| Ok(r.contains_customers(ids)?)))
            .unwrap();
    });
    assert!(
        records.key_store().get(id).unwrap().is_some(),
        "customer {id} was created without a key: a settle destroyed it"
    );
    engine.customer(&admin(), id).unwrap();
}

#[test]
fn a_masked_read_opens_the_masked_rendering_and_never_the_data_key() {
    let (_dir, open) = reopenable();
    let engine = open();
    let zhao = crate::PrincipalKind::User;
    engine
        .add_principal(&admin(), "zhao", zhao, &["support"])
        .unwrap();
    let a = customer(&engine, "Li Na", "13800138000", "li.na@example.com");
    drop(engine);
    let engine = open();
    let support = Context::new("zhao", "support");
    let seen = engine.customer(&support, a).unwrap();
    assert_eq!(seen.get("phone"), Some("138****8000"));
    assert!(seen.masked.contains("phone"));
    assert!(engine.core.records.cached_mask_key(a).is_some());
    assert!(engine.core.records.cached_key(a).is_none());
    // A read in full needs the data key.
    assert!(engine.customer(&admin(), a).is_ok());
    assert!(engine.core.records.cached_key(a).is_some());
}

#[test]
fn renderings_sealed_at_open_leave_no_clear_copy_in_the_file() {
    let (dir, open) = reopenable();
    let engine = open();
    engine
        .add_principal(&admin(), "zhao", crate::PrincipalKind::User, &["support"])
        .unwrap();
    let people: Vec<(u64, String)> = (0..200)
        .map(|i| {
            let phone = format!("1380013{i:04}");
            let id = customer(&engine, &format!("Person {i}"), &phone, "p@example.com");
            (id, format!("138****{i:04}"))
        })
        .collect();
    // The renderings in the clear, as customer envelope 1 kept them.
    engine
        .core
        .store
        .write(|txn| {
            for (id, rendering) in &people {
                let mut record = txn.customer(*id)?.unwrap();
                let phone = record.sealed.get_mut("phone").unwrap();
                phone.masked = crate::store::StoredMask::Clear(rendering.clone());
                txn.put_customer(&record)?;
            }
            Ok::<_, crate::store::StoreError>(())
        })
        .unwrap();
    engine
        .core
        .store
        .forget_setting(crate::records::MASKS_SEALED)
        .unwrap();
    drop(engine);
    let file = dir.path().join("crm.redb");
    let clear = || {
        let raw = std::fs::read(&file).unwrap();
        (people.iter())
            .filter(|(_, r)| raw.windows(r.len()).any(|w| w == r.as_bytes()))
            .count()
    };
    assert_eq!(clear(), people.len());
    let engine = open();
    assert_eq!(clear(), 0, "clear renderings are left in the data file");
    let support = Context::new("zhao", "support");
    let (id, rendering) = &people[7];
    let seen = engine.customer(&support, *id).unwrap();
    assert_eq!(seen.get("phone"), Some(rendering.as_str()));
}

#[test]
fn message_parameters_kept_in_the_clear_are_sealed_at_open() {
    let (dir, open) = reopenable();
    let engine = open();
    let a = customer(&engine, "Li Na", "13800138000", "li.na@example.com");
    // Queued as message envelope 1 kept it: the parameters in the clear.
    let message = crate::store::StoredMessage {
        plugin: "sms-reminder".into(),
        channel: "sms".into(),
        customer: a,
        template: "follow-up-reminder".into(),
        params: crate::store::StoredParams::Clear(vec![("name".into(), "Zhangsanfeng".into())]),
        marketing: false,
        created_at: 1,
    };
    engine
        .core
        .store
        .write(|txn| txn.put_message(900, &message))
        .unwrap();
    engine.core.store.forget_setting(PARAMS_SEALED).unwrap();
    drop(engine);
    let file = dir.path().join("crm.redb");
    let clear = || {
        let raw = std::fs::read(&file).unwrap();
        raw.windows(12).any(|w| w == b"Zhangsanfeng")
    };
    assert!(clear());
    let engine = open();
    assert!(!clear(), "clear parameters are left in the data file");
    let queued = engine.subject_export(&admin(), a).unwrap().queued_messages;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].params, [("name".into(), "Zhangsanfeng".into())]);
}
