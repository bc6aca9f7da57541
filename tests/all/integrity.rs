//! The data file is untrusted storage: whoever can write it but lacks the
//! key can destroy data, never plant a record the engine acts on. Each test
//! edits the redb file as such an attacker would, through redb itself.

use std::path::Path;

use custodian::{
    AuditDurability, AuditError, Channel, ConsentChange, Context, Direction, Engine, Error, Grant,
    MasterKey, NewCustomer, NewFollowUp, NewInteraction, PrincipalKind, Query,
};
use custodian_test_artifacts as wasm;
use redb::{
    Key, MultimapTableHandle, ReadableDatabase, ReadableMultimapTable, ReadableTable,
    TableDefinition, TableHandle, Value,
};

use crate::{Fixture, admin, as_, li_na};

/// What an attacker who knows the format writes: a record's bytes, tag
/// included, without the key to compute a tag.
#[derive(Debug)]
pub struct Tagged;

impl Value for Tagged {
    type SelfType<'a>
        = &'a [u8]
    where
        Self: 'a;
    type AsBytes<'a>
        = &'a [u8]
    where
        Self: 'a;

    fn fixed_width() -> Option<usize> {
        None
    }

    fn from_bytes<'a>(data: &'a [u8]) -> &'a [u8]
    where
        Self: 'a,
    {
        data
    }

    fn as_bytes<'a, 'b: 'a>(value: &'a &'b [u8]) -> &'a [u8]
    where
        Self: 'b,
    {
        value
    }

    fn type_name() -> redb::TypeName {
        redb::TypeName::new("custodian::Tagged")
    }
}

/// Runs `f` in one write transaction on the raw data file.
fn tamper(db: &Path, f: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::open(db).unwrap();
    let txn = db.begin_write().unwrap();
    f(&txn);
    txn.commit().unwrap();
}

fn table<K: Key + 'static>(name: &str) -> TableDefinition<'_, K, Tagged> {
    TableDefinition::new(name)
}

/// The stored bytes of `key` in `name`.
fn raw<K: Key + 'static>(
    txn: &redb::WriteTransaction,
    name: &str,
    key: K::SelfType<'_>,
) -> Vec<u8> {
    let t = txn.open_table(table::<K>(name)).unwrap();
    t.get(key).unwrap().unwrap().value().to_vec()
}

/// Flips one bit of the first record of `name`; returns whether it held one.
fn flip_first<K: Key + 'static>(txn: &redb::WriteTransaction, name: &str) -> bool {
    let mut t = txn.open_table(table::<K>(name)).unwrap();
    let first = t.first().unwrap().map(|(k, v)| {
        let key = K::as_bytes(&k.value()).as_ref().to_vec();
        (key, v.value().to_vec())
    });
    let Some((key, mut value)) = first else {
        return false;
    };
    value[0] ^= 0x01;
    t.insert(K::from_bytes(&key), value.as_slice()).unwrap();
    true
}

/// The failures `verify` reports, as (table, key).
fn verify_failures(fx: &Fixture) -> Vec<(String, String)> {
    match Engine::builder()
        .path(fx.db())
        .master_key(fx.key())
        .verify(None)
    {
        Ok(report) => {
            assert!(report.records > 0, "{report:?}");
            Vec::new()
        }
        Err(Error::Audit(AuditError::Tampered(failures))) => {
            (failures.into_iter()).map(|f| (f.table, f.key)).collect()
        }
        Err(other) => panic!("unexpected error: {other}"),
    }
}

fn assert_integrity<T: std::fmt::Debug>(result: Result<T, Error>, table: &str, key: &str) {
    let text = match result {
        Err(e) => e.to_string(),
        Ok(value) => panic!("expected an integrity error, got {value:?}"),
    };
    assert!(text.contains("integrity check failed"), "{text}");
    let named = format!("table `{table}` under key {key}");
    assert!(text.contains(&named), "{text}");
}

#[test]
fn an_admin_record_copied_over_a_reps_is_refused_and_reported() {
    let fx = Fixture::new();
    let engine = fx.with_staff();
    let hers = engine.create_customer(&admin(), li_na()).unwrap();
    drop(engine);
    // The rep becomes an admin, as far as the bytes go.
    tamper(&fx.db(), |txn| {
        let admin = raw::<&str>(txn, "principals", "admin");
        let mut t = txn.open_table(table::<&str>("principals")).unwrap();
        t.insert("zhao", admin.as_slice()).unwrap();
    });
    let engine = fx.open();
    // Zhao reads nobody and creates no one: the engine never acts on it.
    let read = engine.customer(&as_("zhao"), hers);
    assert_integrity(read, "principals", "\"zhao\"");
    let created = engine.add_principal(&as_("zhao"), "mallory", PrincipalKind::User, &["admin"]);
    assert!(created.is_err(), "{created:?}");
    // Everyone else works as before.
    assert!(engine.customer(&admin(), hers).is_ok());
    drop(engine);
    assert_eq!(
        verify_failures(&fx),
        [("principals".to_string(), "\"zhao\"".to_string())]
    );
    // The command line says the same, and fails.
    let out = fx.custodian().args(["audit", "verify"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("table `principals`, key \"zhao\""),
        "{stderr}"
    );
}

#[test]
fn a_record_moved_to_another_key_or_table_or_planted_is_refused() {
    let fx = Fixture::new();
    let engine = fx.with_staff();
    let a = engine.create_customer(&as_("wang"), li_na()).unwrap();
    let b = engine
        .create_customer(&as_("wang"), NewCustomer::new().field("name", "Zhang Wei"))
        .unwrap();
    engine
        .set_legal_hold(&admin(), a, Some("litigation"))
        .unwrap();
    drop(engine);
    tamper(&fx.db(), |txn| {
        // Customer a's record replayed as customer b.
        let record = raw::<u64>(txn, "customers", a);
        let mut customers = txn.open_table(table::<u64>("customers")).unwrap();
        customers.insert(b, record.as_slice()).unwrap();
        // A legal hold moved into the notices table, under the same key.
        let hold = raw::<u64>(txn, "legal_holds", a);
        let mut notices = txn.open_table(table::<u64>("retention_notices")).unwrap();
        notices.insert(a, hold.as_slice()).unwrap();
        // A principal planted under a new name.
        let admin = raw::<&str>(txn, "principals", "admin");
        let mut principals = txn.open_table(table::<&str>("principals")).unwrap();
        principals.insert("mallory", admin.as_slice()).unwrap();
    });
    let engine = fx.open();
    let b_id = b.to_string();
    assert_integrity(engine.customer(&admin(), b), "customers", &b_id);
    assert!(engine.customer(&admin(), a).is_ok());
    let planted = engine.customer(&as_("mallory"), a);
    assert_integrity(planted, "principals", "\"mallory\"");
    drop(engine);
    let mut found = verify_failures(&fx);
    found.sort();
    let a_id = a.to_string();
    let mut expected = vec![
        ("customers".to_string(), b_id),
        ("principals".to_string(), "\"mallory\"".to_string()),
        ("retention_notices".to_string(), a_id),
    ];
    expected.sort();
    assert_eq!(found, expected);
}

#[test]
fn an_index_entry_does_not_vouch_for_a_customer() {
    let fx = Fixture::new();
    let engine = fx.with_staff();
    let hers = engine.create_customer(&as_("wang"), li_na()).unwrap();
    let other = engine
        .create_customer(
            &admin(),
            NewCustomer::new()
                .field("name", "Zhang Wei")
                .field("phone", "13900139000")
                .owner("admin"),
        )
        .unwrap();
    drop(engine);
    // File the other customer under wang, under li na's phone, and under
    // a tag and a status it does not have.
    tamper(&fx.db(), |txn| {
        let owner: redb::MultimapTableDefinition<&str, u64> =
            redb::MultimapTableDefinition::new("by_owner");
        txn.open_multimap_table(owner)
            .unwrap()
            .insert("wang", other)
            .unwrap();
        let blind: redb::MultimapTableDefinition<&[u8], u64> =
            redb::MultimapTableDefinition::new("blind_index");
        let mut blind = txn.open_multimap_table(blind).unwrap();
        let keys: Vec<Vec<u8>> = (blind.iter().unwrap())
            .filter_map(|entry| {
                let (key, ids) = entry.unwrap();
                let ids: Vec<u64> = ids.map(|id| id.unwrap().value()).collect();
                ids.contains(&hers).then(|| key.value().to_vec())
            })
            .collect();
        assert!(!keys.is_empty());
        for key in &keys {
            blind.insert(key.as_slice(), other).unwrap();
        }
        let tags: redb::MultimapTableDefinition<&str, u64> =
            redb::MultimapTableDefinition::new("by_tag");
        txn.open_multimap_table(tags)
            .unwrap()
            .insert("tags:vip", other)
            .unwrap();
    });
    let engine = fx.open();
    let wang = as_("wang");
    let mine = engine
        .find_customers(&wang, &Query::Owner("wang".into()), 10)
        .unwrap();
    assert_eq!(mine.iter().map(|c| c.id).collect::<Vec<_>>(), [hers]);
    let by_phone =
        (engine.find_customers(&admin(), &Query::field("phone", "13800138000"), 10)).unwrap();
    assert_eq!(by_phone.iter().map(|c| c.id).collect::<Vec<_>>(), [hers]);
    let tagged = engine
        .find_customers(&admin(), &Query::Tag("vip".into()), 10)
        .unwrap();
    assert!(tagged.is_empty(), "{tagged:?}");
    let found = engine
        .find_subject(&admin(), "phone", "13800138000")
        .unwrap();
    assert_eq!(found, [hers]);
}

/// The master key of the format-1 database in `tests/data/format1`.
const FORMAT_1_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// A database with a record in most tables, through the public API only
/// (the format-1 fixture was written by this function, run by the last
/// version that wrote format 1).
pub fn populated(dir: &Path, key: MasterKey) -> Engine {
    let engine = Engine::builder()
        .path(dir.join("crm.redb"))
        .master_key(key)
        .create(true)
        .audit_durability(AuditDurability::Durable)
        .open()
        .unwrap();
    let admin = Context::new("admin", "setup");
    for (name, role) in [("wang", "sales"), ("zhao", "support")] {
        (engine.add_principal(&admin, name, PrincipalKind::User, &[role])).unwrap();
    }
    let password = "correct horse battery staple 42";
    engine.set_password(&admin, "wang", None, password).unwrap();
    engine.login("wang", password, None, "10.0.0.1").unwrap();
    let _ = engine.login("wang", "wrong password entirely", None, "10.0.0.2");
    let wang = Context::new("wang", "sales_contact");
    let li = engine
        .create_customer(
            &wang,
            NewCustomer::new()
                .field("name", "Li Na")
                .field("phone", "13800138000")
                .field("email", "li.na@example.com")
                .field("id_number", "110105198803120217")
                .field("tags", "vip,renovation")
                .consent(
                    ConsentChange::grant("identity_verification", "paper", "2026-01")
                        .field("id_number"),
                ),
        )
        .unwrap();
    let mut others = ["Zhang Wei", "Chen Jie", "Zhou Min"]
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let phone = format!("1390013900{i}");
            let new = NewCustomer::new().field("name", name).field("phone", phone);
            engine.create_customer(&wang, new).unwrap()
        });
    let (zhang, gone, anon) = (
        others.next().unwrap(),
        others.next().unwrap(),
        others.next().unwrap(),
    );
    let service = ConsentChange::grant("service", "web", "v1");
    engine.record_consent(&admin, zhang, &service).unwrap();
    let mut call = NewInteraction::new(Channel::Call, Direction::Outbound, "Asked about the quote");
    call.body = Some("Wants the oak table".into());
    engine.log_interaction(&wang, li, call).unwrap();
    for customer in [li, zhang] {
        let due = chrono::Utc::now() - chrono::Duration::hours(1);
        let note = "call back about the sofa".into();
        let new = NewFollowUp {
            customer,
            due,
            assignee: Some("wang".into()),
            note,
        };
        engine.add_follow_up(&wang, new).unwrap();
    }
    for path in [wasm::SHOP_ORDERS, wasm::SMS_REMINDER] {
        let code = std::fs::read(path).unwrap();
        let mut grant = Grant::all(&engine.inspect_plugin(&code).unwrap());
        grant.owner = Some("wang".into());
        engine.install_plugin(&admin, &code, grant).unwrap();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let orders = std::fs::read(root.join("plugins/shop-orders/samples/orders.json")).unwrap();
    engine.ingest("shop-orders", &orders).unwrap();
    engine.dispatch_due_follow_ups(chrono::Utc::now()).unwrap();
    // The reminder's message is queued by sms-reminder's reaction.
    assert_eq!(engine.drain_events().unwrap(), 0);
    engine
        .set_legal_hold(&admin, li, Some("litigation 2026-17"))
        .unwrap();
    let script = std::fs::read_to_string(root.join("examples/policies/retention.rhai")).unwrap();
    engine.install_retention_policy(&admin, &script).unwrap();
    engine.retire_purpose(&admin, "analytics", true).unwrap();
    engine.delete_customer(&admin, gone).unwrap();
    engine
        .anonymize_customer(&admin, anon, "asked to be forgotten")
        .unwrap();
    engine
        .customer(&Context::new("zhao", "support"), li)
        .unwrap();
    // A plugin that logs, keeps state, then faults until quarantined.
    let code = std::fs::read(wasm::MISBEHAVE).unwrap();
    let grant = Grant::all(&engine.inspect_plugin(&code).unwrap());
    engine.install_plugin(&admin, &code, grant).unwrap();
    engine.ingest("misbehave", b"print hello").unwrap();
    engine
        .ingest("misbehave", b"state-set k remembered")
        .unwrap();
    let about_li = format!("cstate-set {li} k remembered");
    engine.ingest("misbehave", about_li.as_bytes()).unwrap();
    for _ in 0..3 {
        assert!(engine.ingest("misbehave", b"trap").is_err());
    }
    assert_eq!(engine.drain_events().unwrap(), 0);
    engine
}

/// Every table of the data file, by what protects it.
const RECORD_TABLES: [&str; 29] = [
    "settings",
    "customers",
    "interactions",
    "followups",
    "followups_notified",
    "principals",
    "credentials",
    "sessions",
    "throttle",
    "policies",
    "plugins",
    "plugin_code",
    "plugin_state",
    "plugin_log",
    "plugin_customer_state",
    "plugin_counters",
    "plugin_links",
    "outbox",
    "consents",
    "alerts",
    "consent_ledger",
    "legal_holds",
    "retention_notices",
    "deletions",
    "anonymized",
    "retention",
    "event_queue",
    "guard_counts",
    "guard_seen",
];
/// Authenticated otherwise: the key check and format (checked against the
/// key and the key store), the audit chain (keyed hashes), and an index of
/// open follow-ups checked against each follow-up.
const OTHER_TABLES: [&str; 3] = ["meta", "audit", "followups_open"];
/// Indexes, whose hits are checked against the records they name.
const INDEXES: [&str; 9] = [
    "audit_by_actor",
    "audit_by_customer",
    "blind_index",
    "by_owner",
    "by_tag",
    "by_status",
    "followups_by_customer",
    "plugin_links_by_customer",
    "outbox_by_customer",
];
/// Record tables `populated` leaves empty: a notice needs a clock years
/// ahead; the event queue is delivered before it returns.
const LEFT_EMPTY: [&str; 2] = ["retention_notices", "event_queue"];

#[test]
fn every_record_of_every_table_is_authenticated() {
    let fx = Fixture::new();
    drop(populated(fx.dir.path(), fx.key()));
    assert!(verify_failures(&fx).is_empty());
    let db = redb::Database::open(fx.db()).unwrap();
    let read = db.begin_read().unwrap();
    let names: Vec<String> = (read.list_tables().unwrap())
        .map(|t| t.name().to_string())
        .chain(
            read.list_multimap_tables()
                .unwrap()
                .map(|t| t.name().to_string()),
        )
        .collect();
    drop(read);
    for name in &names {
        assert!(
            RECORD_TABLES.contains(&name.as_str())
                || OTHER_TABLES.contains(&name.as_str())
                || INDEXES.contains(&name.as_str()),
            "table `{name}` is new: say what protects it"
        );
    }
    // One flipped bit in the first record of each table.
    let mut flipped = Vec::new();
    let txn = db.begin_write().unwrap();
    for name in RECORD_TABLES {
        let held = match name {
            "settings" | "principals" | "credentials" | "throttle" | "plugins" | "plugin_code"
            | "plugin_counters" | "retention" => flip_first::<&str>(&txn, name),
            "interactions" | "consent_ledger" => flip_first::<(u64, u64)>(&txn, name),
            "sessions" | "plugin_links" => flip_first::<&[u8]>(&txn, name),
            "plugin_state" => flip_first::<(&str, &str)>(&txn, name),
            "plugin_log" | "guard_seen" => flip_first::<(&str, u64)>(&txn, name),
            "guard_counts" => flip_first::<(&str, i64)>(&txn, name),
            "consents" | "plugin_customer_state" => flip_first::<(u64, &str)>(&txn, name),
            _ => flip_first::<u64>(&txn, name),
        };
        assert_eq!(held, !LEFT_EMPTY.contains(&name), "{name}");
        if held {
            flipped.push(name.to_string());
        }
    }
    txn.commit().unwrap();
    drop(db);
    let mut reported: Vec<String> = verify_failures(&fx).into_iter().map(|(t, _)| t).collect();
    reported.sort();
    flipped.sort();
    assert_eq!(reported, flipped);
    // The engine does not open on records it would act on (the policy,
    // the plugins, the settings), and says which.
    let refused = fx.try_open(fx.key()).err().unwrap().to_string();
    assert!(refused.contains("integrity check failed"), "{refused}");
    assert!(
        flipped
            .iter()
            .any(|t| refused.contains(&format!("table `{t}`"))),
        "{refused}"
    );
}

/// Copies the format-1 fixture into `dir`.
fn format_1_copy(dir: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/format1");
    for name in ["crm.redb", "crm.redb.keys"] {
        std::fs::copy(from.join(name), dir.join(name)).unwrap();
    }
}

#[test]
fn a_format_1_database_is_migrated_on_open_and_never_again() {
    let dir = tempfile::tempdir().unwrap();
    format_1_copy(dir.path());
    let key = || MasterKey::from_hex(FORMAT_1_KEY).unwrap();
    let open = || {
        Engine::builder()
            .path(dir.path().join("crm.redb"))
            .master_key(key())
            .open()
    };
    let engine = open().unwrap();
    // Everything reads as before, through the tags the migration added.
    let wang = Context::new("wang", "sales_contact");
    let li = engine
        .find_customers(&wang, &Query::field("phone", "13800138000"), 1)
        .unwrap();
    assert_eq!(li[0].get("id_number"), Some("1101****0217"));
    assert_eq!(engine.interactions(&wang, li[0].id).unwrap().len(), 1);
    let full = engine
        .customer(&Context::new("admin", "test"), li[0].id)
        .unwrap();
    assert_eq!(full.get("id_number"), Some("110105198803120217"));
    // The masked renderings format 1 kept in the clear are sealed: a
    // masked read opens them under the customer's mask key.
    let support = engine.customer(&Context::new("zhao", "support"), li[0].id);
    assert_eq!(support.unwrap().get("phone"), Some("138****8000"));
    let sealing = |engine: &Engine| {
        let tail = engine.audit_tail(&Context::new("admin", "test"), 1_000);
        (tail.unwrap().iter())
            .filter(|e| e.action == "customer.seal_masks")
            .count()
    };
    assert_eq!(sealing(&engine), 1);
    let report = engine.verify_audit(None).unwrap();
    // The fixture holds 67 records.
    assert!(report.records >= 60, "{report:?}");
    drop(engine);
    // A second open finds nothing to do, and the file verifies.
    let engine = open().unwrap();
    assert_eq!(engine.verify_audit(None).unwrap().records, report.records);
    assert_eq!(sealing(&engine), 1);
    drop(engine);
    // The format-1 file put back beside the migrated key store (a
    // rollback, or a forgery that strips the tags) is refused.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/format1/crm.redb"),
        dir.path().join("crm.redb"),
    )
    .unwrap();
    let refused = open().err().unwrap();
    assert!(
        refused.to_string().contains("claims storage format 1"),
        "{refused}"
    );
}
