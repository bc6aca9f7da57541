//! Personal data at rest: only ciphertext on disk, keys apart from data,
//! a wrong key refused without a write, views cut to what a principal may see.

use custodian::{
    AuditDurability, ConsentChange, CryptoError, CustomerUpdate, Engine, Error, ImportOptions,
    MasterKey, NewCustomer, Query, Shown,
};

use crate::{Fixture, admin, as_, file_contains, li_na};

const SECRETS: &[&str] = &[
    "Li Na",
    "13800138000",
    "li.na@example.com",
    "110105198803120217",
    "Chaoyang District",
    "Zhang Wei",
    "13912345678",
    "zhang.wei@example.cn",
    "Wang Fang",
    "15011112222",
    "wangfang@mail.example",
    "440106199209040182",
    "Deleted Person",
    "13055556666",
    "gone@example.com",
    "Renamed Person",
    "18677778888",
];

#[test]
fn raw_files_hold_no_personal_value_after_every_kind_of_write() {
    let fx = Fixture::new();
    let engine = fx.with_staff();
    let ctx = admin();
    let li = engine.create_customer(&ctx, li_na()).unwrap();
    let csv = "name,phone,email,id_number,consents,notice_version\n\
               Zhang Wei,13912345678,zhang.wei@example.cn,,,\n\
               Wang Fang,15011112222,wangfang@mail.example,440106199209040182,identity_verification(id_number),v1\n";
    let report = engine
        .import_csv(&ctx, csv.as_bytes(), &ImportOptions::default(), |_| {})
        .unwrap();
    assert_eq!(report.imported, 2, "{:?}", report.errors);
    let gone = engine
        .create_customer(
            &ctx,
            NewCustomer::new()
                .field("name", "Deleted Person")
                .field("phone", "13055556666")
                .field("email", "gone@example.com"),
        )
        .unwrap();
    engine.delete_customer(&ctx, gone).unwrap();
    let update = CustomerUpdate::new()
        .set("name", "Renamed Person")
        .set("phone", "18677778888");
    engine.update_customer(&ctx, li, update).unwrap();
    // Reads and searches are audited; their entries must not leak values either.
    engine.customer(&ctx, li).unwrap();
    engine
        .find_customers(&ctx, &Query::field("phone", "18677778888"), 5)
        .unwrap();
    drop(engine);

    for file in [fx.db(), fx.keys()] {
        for secret in SECRETS {
            assert!(
                !file_contains(&file, secret),
                "`{secret}` found in {}",
                file.display()
            );
        }
        assert!(!file_contains(&file, "+8613800138000"));
    }
    // Masked renderings are sealed too (under the customer's mask key); a
    // sensitive field, never shown masked from a rendering, keeps none.
    assert!(!file_contains(&fx.db(), "186****8888"));
    assert!(!file_contains(&fx.db(), "****0217"));
    assert!(!file_contains(&fx.db(), "****0182"));
}

#[test]
fn views_follow_the_default_policy() {
    let fx = Fixture::new();
    let engine = fx.with_staff();
    let id = engine.create_customer(&as_("wang"), li_na()).unwrap();

    let owner = engine.customer(&as_("wang"), id).unwrap();
    assert_eq!(owner.get("phone"), Some("+8613800138000"));
    assert_eq!(owner.shown("phone"), Some(Shown::Full));
    // Sales see their customers' sensitive fields masked, computed at read
    // time: no masked rendering of a sensitive field is stored.
    assert_eq!(owner.shown("id_number"), Some(Shown::Masked));
    let masked = owner.get("id_number").unwrap();
    assert!(
        masked.contains('*') && !masked.contains("19880312"),
        "{masked}"
    );

    let other = engine.customer(&as_("zhao"), id).unwrap();
    assert_eq!(other.get("phone"), Some("138****8000"));
    assert_eq!(other.get("email"), Some("l***@example.com"));
    assert_eq!(other.shown("name"), Some(Shown::Masked));
    assert_eq!(other.get("id_number"), None, "sensitive fields are absent");
    assert!(!other.fields.contains_key("id_number"));

    let admin_view = engine.customer(&admin(), id).unwrap();
    assert_eq!(admin_view.get("id_number"), Some("110105198803120217"));

    engine.deactivate_principal(&admin(), "wang").unwrap();
    let err = engine.customer(&as_("wang"), id).unwrap_err();
    assert!(matches!(err, Error::Denied(_)), "{err}");
    assert!(err.to_string().contains("deactivated"), "{err}");
    let err = engine.customer(&as_("nobody"), id).unwrap_err();
    assert!(err.to_string().contains("unknown principal"), "{err}");
}

#[test]
fn wrong_key_is_refused_and_writes_nothing() {
    let fx = Fixture::new();
    let engine = fx.with_staff();
    engine.create_customer(&admin(), li_na()).unwrap();
    drop(engine);
    let data_before = std::fs::read(fx.db()).unwrap();
    let keys_before = std::fs::read(fx.keys()).unwrap();

    let err = fx.try_open(MasterKey::generate()).unwrap_err();
    assert!(
        matches!(err, Error::Crypto(CryptoError::WrongKey)),
        "unexpected error: {err}"
    );
    assert!(err.to_string().contains("wrong master key"), "{err}");
    assert_eq!(std::fs::read(fx.db()).unwrap(), data_before);
    assert_eq!(std::fs::read(fx.keys()).unwrap(), keys_before);

    // The right key still opens it.
    let engine = fx.open();
    assert_eq!(engine.count_customers(&admin()).unwrap(), 1);
}

#[test]
fn data_file_without_its_key_store_is_refused() {
    let fx = Fixture::new();
    drop(fx.with_staff());
    std::fs::remove_file(fx.keys()).unwrap();
    let err = Engine::builder()
        .path(fx.db())
        .master_key(fx.key())
        .open()
        .unwrap_err();
    assert!(err.to_string().contains("crm.redb.keys"), "{err}");
}

#[test]
fn deleting_a_customer_destroys_its_key_in_every_mirror() {
    let fx = Fixture::new();
    let mirror = fx.dir.path().join("mirror.keys");
    let open = |keys: &std::path::Path| {
        Engine::builder()
            .path(fx.db())
            .master_key(fx.key())
            .key_store(keys)
            .key_mirror(&mirror)
            .create(true)
            .audit_durability(AuditDurability::buffered())
            .open()
            .unwrap()
    };
    let engine = open(&fx.keys());
    let keep = engine.create_customer(&admin(), li_na()).unwrap();
    let gone = engine
        .create_customer(&admin(), NewCustomer::new().field("name", "Deleted Person"))
        .unwrap();
    // A copy of the data file taken before the delete.
    engine.flush_audit().unwrap();
    let before = std::fs::read(fx.db()).unwrap();
    engine.delete_customer(&admin(), gone).unwrap();
    drop(engine);

    // The mirror alone serves as the key store: it has every live key.
    std::fs::remove_file(fx.keys()).unwrap();
    std::fs::copy(&mirror, fx.keys()).unwrap();
    std::fs::write(fx.db(), before).unwrap();
    let engine = open(&fx.keys());
    assert_eq!(
        engine.customer(&admin(), keep).unwrap().get("name"),
        Some("Li Na")
    );
    // The old data file still holds the deleted customer's record, but its
    // key is gone everywhere: only ciphertext remains, and the customer is
    // not there.
    let err = engine.customer(&admin(), gone).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    // A principal entitled to masked values only still sees masked values.
    drop(engine);
}

#[test]
fn engine_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Engine>();
}

#[test]
fn an_interrupted_creation_is_finished_by_the_next_open() {
    // Creates a customer and reads it back after a reopen.
    let works = |fx: &Fixture| {
        let id = fx.open().create_customer(&admin(), li_na()).unwrap();
        let name = fx
            .open()
            .customer(&admin(), id)
            .unwrap()
            .get("name")
            .map(String::from);
        assert_eq!(name.as_deref(), Some("Li Na"));
    };
    // Killed after the key store was made, before the data file was.
    let fx = Fixture::new();
    drop(fx.open());
    std::fs::remove_file(fx.db()).unwrap();
    works(&fx);

    // Killed after the data file was made, before its identity was written.
    let fx = Fixture::new();
    drop(redb::Database::create(fx.db()).unwrap());
    works(&fx);
    let err = fx.try_open(MasterKey::generate()).unwrap_err();
    assert!(matches!(err, Error::Crypto(CryptoError::WrongKey)), "{err}");
}

/// Regression: a new database pointed at another's key store took it over
/// and overwrote that database's keys.
#[test]
fn a_new_database_never_adopts_a_key_store_in_use() {
    let fx = Fixture::new();
    let engine = fx.open();
    let id = engine.create_customer(&admin(), li_na()).unwrap();
    drop(engine);
    let other = fx.dir.path().join("other.redb");
    let err = Engine::builder()
        .path(&other)
        .key_store(fx.keys())
        .master_key(fx.key())
        .create(true)
        .open()
        .unwrap_err();
    assert!(err.to_string().contains("already holds the keys"), "{err}");
    assert!(!other.exists(), "a refused open leaves no file behind");
    assert_eq!(
        fx.open().customer(&admin(), id).unwrap().get("name"),
        Some("Li Na")
    );
}

#[test]
fn refusals_at_open_say_what_is_wrong() {
    let fx = Fixture::new();
    drop(fx.open());

    // No key at all.
    let err = Engine::builder().path(fx.db()).open().unwrap_err();
    assert!(err.to_string().contains("no master key"), "{err}");

    // A mirror that belongs to another database.
    let other = Fixture::new();
    drop(other.open());
    let err = Engine::builder()
        .path(fx.db())
        .master_key(fx.key())
        .key_mirror(other.keys())
        .open()
        .unwrap_err();
    assert!(
        err.to_string().contains("belongs to another database"),
        "{err}"
    );

    // A file written by a newer storage format.
    {
        let db = redb::Database::open(fx.db()).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
            let mut meta = txn.open_table(meta).unwrap();
            meta.insert("format", 99u32.to_le_bytes().as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let err = fx.try_open(fx.key()).unwrap_err();
    assert!(err.to_string().contains("storage format 99"), "{err}");
}

/// The wrapped key of customer `id`, as the key store at `path` holds it.
fn wrapped_key(path: &std::path::Path, id: u64) -> Vec<u8> {
    let db = redb::ReadOnlyDatabase::open(path).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let keys: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("data_keys");
    let table = txn.open_table(keys).unwrap();
    redb::ReadableTable::get(&table, id)
        .unwrap()
        .unwrap()
        .value()
        .to_vec()
}

pub(crate) fn contains(path: &std::path::Path, needle: &[u8]) -> bool {
    let raw = std::fs::read(path).unwrap();
    raw.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_byte_of_a_destroyed_key_is_left_in_the_key_store_or_its_mirrors() {
    let fx = Fixture::new();
    let mirror = fx.dir.path().join("mirror.keys");
    let open = || {
        Engine::builder()
            .path(fx.db())
            .master_key(fx.key())
            .key_mirror(&mirror)
            .create(true)
            .open()
            .unwrap()
    };
    let engine = open();
    let keep = engine.create_customer(&admin(), li_na()).unwrap();
    let gone: Vec<u64> = (0..3)
        .map(|i| {
            let name = format!("Erased Person {i}");
            (engine.create_customer(&admin(), NewCustomer::new().field("name", name))).unwrap()
        })
        .collect();
    drop(engine);
    let wrapped: Vec<Vec<u8>> = gone.iter().map(|id| wrapped_key(&fx.keys(), *id)).collect();
    let kept = wrapped_key(&fx.keys(), keep);
    for key in &wrapped {
        assert!(contains(&fx.keys(), key) && contains(&mirror, key));
    }
    let engine = open();
    engine.delete_customer(&admin(), gone[0]).unwrap();
    engine
        .subject_erase(&admin(), gone[1], "erasure request")
        .unwrap();
    engine
        .anonymize_customer(&admin(), gone[2], "erasure request")
        .unwrap();
    for (id, key) in gone.iter().zip(&wrapped) {
        for file in [fx.keys(), mirror.clone()] {
            assert!(
                !contains(&file, key),
                "customer {id}'s key in {}",
                file.display()
            );
        }
    }
    // The live key is still there, and still opens its customer.
    assert!(contains(&fx.keys(), &kept) && contains(&mirror, &kept));
    assert_eq!(
        engine.customer(&admin(), keep).unwrap().get("name"),
        Some("Li Na")
    );
    drop(engine);
    let engine = open();
    assert!(engine.customer(&admin(), keep).is_ok());
}

/// What the data file holds of `ids`: every blind-index key that finds
/// one of them, and the stored bytes of their records.
pub(crate) fn traces_of(db: &std::path::Path, ids: &[u64]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    use redb::{ReadableDatabase, ReadableMultimapTable};
    let db = redb::ReadOnlyDatabase::open(db).unwrap();
    let txn = db.begin_read().unwrap();
    let blind: redb::MultimapTableDefinition<&[u8], u64> =
        redb::MultimapTableDefinition::new("blind_index");
    let mut keys = Vec::new();
    for entry in txn.open_multimap_table(blind).unwrap().iter().unwrap() {
        let (key, found) = entry.unwrap();
        for id in found {
            if ids.contains(&id.unwrap().value()) {
                keys.push(key.value().to_vec());
            }
        }
    }
    let mut records = Vec::new();
    let customers: redb::TableDefinition<u64, crate::integrity::Tagged> =
        redb::TableDefinition::new("customers");
    let customers = txn.open_table(customers).unwrap();
    let interactions: redb::TableDefinition<(u64, u64), crate::integrity::Tagged> =
        redb::TableDefinition::new("interactions");
    let interactions = txn.open_table(interactions).unwrap();
    for id in ids {
        records.push(customers.get(id).unwrap().unwrap().value().to_vec());
        for entry in interactions.range((*id, 0)..=(*id, u64::MAX)).unwrap() {
            records.push(entry.unwrap().1.value().to_vec());
        }
    }
    (keys, records)
}

#[test]
fn nothing_an_erasure_frees_is_left_in_the_data_file() {
    let fx = Fixture::new();
    let engine = fx.open();
    let ctx = admin();
    let people: Vec<u64> = (0..40)
        .map(|i| {
            let person = NewCustomer::new()
                .field("name", format!("Person {i}"))
                .field("phone", format!("1380013{i:04}"))
                .field("email", format!("person.{i}@example.com"));
            let id = engine.create_customer(&ctx, person).unwrap();
            let call = custodian::NewInteraction::new(
                custodian::Channel::Call,
                custodian::Direction::Inbound,
                format!("Call {i} about the quote"),
            );
            engine.log_interaction(&ctx, id, call).unwrap();
            id
        })
        .collect();
    let (gone, kept) = people.split_at(3);
    engine.flush_audit().unwrap();
    drop(engine);
    let (gone_keys, gone_records) = traces_of(&fx.db(), gone);
    let (kept_keys, _) = traces_of(&fx.db(), kept);
    assert!(gone_keys.len() >= 6 && gone_records.len() >= 6);
    for key in gone_keys.iter().chain(&kept_keys) {
        assert!(contains(&fx.db(), key));
    }
    let engine = fx.open();
    engine.delete_customer(&ctx, gone[0]).unwrap();
    engine
        .subject_erase(&ctx, gone[1], "erasure request")
        .unwrap();
    engine
        .anonymize_customer(&ctx, gone[2], "erasure request")
        .unwrap();
    // Checked while the engine is open: the erasure returned, so no copy
    // is left for a later close or compaction to remove.
    for key in &gone_keys {
        assert!(!contains(&fx.db(), key), "a usable index entry is left");
    }
    for record in &gone_records {
        assert!(!contains(&fx.db(), record), "an erased record is left");
    }
    // What was not erased is all there, and still found.
    for key in &kept_keys {
        assert!(contains(&fx.db(), key));
    }
    let found = engine
        .find_customers(&ctx, &Query::field("phone", "13800130007"), 5)
        .unwrap();
    assert_eq!(found.len(), 1);
    drop(engine);
    assert!(fx.open().customer(&ctx, kept[0]).is_ok());
}

#[test]
fn masked_renderings_are_sealed_in_every_file() {
    let fx = Fixture::new();
    let engine = fx.with_staff();
    let id = engine
        .create_customer(&crate::as_("wang"), li_na())
        .unwrap();
    let masked = engine.customer(&crate::as_("zhao"), id).unwrap();
    assert!(masked.masked.contains("phone") && masked.masked.contains("email"));
    engine.flush_audit().unwrap();
    drop(engine);
    let renderings: Vec<&str> = masked.masked.iter().filter_map(|f| masked.get(f)).collect();
    assert!(renderings.contains(&"138****8000"), "{renderings:?}");
    for entry in std::fs::read_dir(fx.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        for rendering in &renderings {
            // The starless part too: a rendering is never split to hide it.
            assert!(
                !crate::file_contains(&path, rendering),
                "{rendering} in {}",
                path.display()
            );
        }
    }
}

#[test]
fn a_rewrite_that_fails_loses_nothing_and_is_done_later() {
    let fx = Fixture::new();
    let engine = fx.open();
    let ctx = admin();
    let ids: Vec<u64> = (0..20)
        .map(|i| {
            let person = NewCustomer::new()
                .field("name", format!("Person {i}"))
                .field("phone", format!("1370013{i:04}"));
            engine.create_customer(&ctx, person).unwrap()
        })
        .collect();
    engine.flush_audit().unwrap();
    drop(engine);
    let (keys, _) = traces_of(&fx.db(), &ids[..1]);
    let wrapped = wrapped_key(&fx.keys(), ids[0]);
    // Something in the way of the rewrite's new file.
    let blocker = fx.dir.path().join("crm.redb.scrub");
    std::fs::create_dir(&blocker).unwrap();
    let engine = fx.open();
    let refused = engine.delete_customer(&ctx, ids[0]).unwrap_err();
    assert!(
        refused.to_string().contains("could not be rewritten"),
        "{refused}"
    );
    // The erasure stands all the same: the customer is gone for good, its
    // key destroyed.
    assert!(engine.customer(&ctx, ids[0]).is_err());
    assert!(!contains(&fx.keys(), &wrapped));
    drop(engine);
    // The database still opens, and says what is owed.
    let engine = fx.open();
    let alerts = engine.alerts(&ctx, 10).unwrap();
    assert!(
        alerts.iter().any(|a| a.kind == "storage.rewrite_failed"),
        "{alerts:?}"
    );
    drop(engine);
    std::fs::remove_dir(&blocker).unwrap();
    let engine = fx.open();
    for key in &keys {
        assert!(!contains(&fx.db(), key), "the owed rewrite was not done");
    }
    assert!(engine.customer(&ctx, ids[1]).is_ok());
}

#[test]
fn fields_erased_on_a_withdrawal_leave_no_old_version_in_the_file() {
    let fx = Fixture::new();
    let engine = fx.open();
    let ctx = admin();
    let ids: Vec<u64> = (0..40)
        .map(|i| {
            let person = NewCustomer::new()
                .field("name", format!("Person {i}"))
                .field("birthday", format!("1988-03-{:02}", i % 28 + 1))
                .consent(ConsentChange::grant("marketing", "web", "2026-01"));
            engine.create_customer(&ctx, person).unwrap()
        })
        .collect();
    engine.flush_audit().unwrap();
    drop(engine);
    let (_, before) = traces_of(&fx.db(), &ids);
    let engine = fx.open();
    for id in &ids {
        let withdrawal = ConsentChange::withdraw("marketing", "app");
        let erased = engine.record_consent(&ctx, *id, &withdrawal).unwrap();
        assert_eq!(erased, ["birthday"]);
    }
    for record in before.iter().filter(|r| r.len() > 64) {
        assert!(
            !contains(&fx.db(), record),
            "a version with the field is left"
        );
    }
}

#[cfg(unix)]
#[test]
fn a_file_from_a_version_that_left_freed_pages_is_rewritten_once() {
    use std::os::unix::fs::MetadataExt;
    let fx = Fixture::new();
    let engine = fx.open();
    engine.create_customer(&admin(), li_na()).unwrap();
    drop(engine);
    // As an older version left it: no record of a rewrite.
    {
        let db = redb::Database::open(fx.db()).unwrap();
        let txn = db.begin_write().unwrap();
        let settings: redb::TableDefinition<&str, crate::integrity::Tagged> =
            redb::TableDefinition::new("settings");
        txn.open_table(settings)
            .unwrap()
            .remove("rewritten")
            .unwrap()
            .unwrap();
        txn.commit().unwrap();
    }
    let inode = || std::fs::metadata(fx.db()).unwrap().ino();
    let old = inode();
    drop(fx.open());
    let rewritten = inode();
    assert_ne!(rewritten, old);
    drop(fx.open());
    assert_eq!(inode(), rewritten, "rewritten at every open");
}
