//! Plugin state and logs: sealed at rest, state about a customer filed
//! under it and gone with it, a customer value shown to a call kept out of
//! unscoped state and log lines, and quotas on state and logs. Real
//! components (`misbehave`), a real data file, key store and mirror.

use custodian::{
    AuditDurability, Engine, EngineBuilder, Error, Grant, PluginError, PluginSettings, PluginStatus,
};
use custodian_test_artifacts as wasm;
use redb::{ReadableDatabase, TableDefinition};

use super::integrity::Tagged;
use super::{Fixture, admin, file_contains, li_na};

fn builder(fx: &Fixture) -> EngineBuilder {
    Engine::builder()
        .path(fx.db())
        .master_key(fx.key())
        .create(true)
        .audit_durability(AuditDurability::buffered())
}

fn install_misbehave(engine: &Engine) {
    let code = std::fs::read(wasm::MISBEHAVE).unwrap();
    let grant = Grant::all(&engine.inspect_plugin(&code).unwrap());
    engine.install_plugin(&admin(), &code, grant).unwrap();
}

fn ingest(engine: &Engine, payload: &str) -> Vec<String> {
    engine.ingest("misbehave", payload.as_bytes()).unwrap().log
}

fn stored_log(engine: &Engine) -> Vec<String> {
    (engine.plugin_log(&admin(), "misbehave", 10_000).unwrap())
        .into_iter()
        .map(|l| l.text)
        .collect()
}

fn rejected(result: custodian::Result<custodian::CallReport>) -> String {
    match result {
        Err(Error::Plugin(PluginError::Rejected { message, .. })) => message,
        other => panic!("expected the plugin's refusal, got {other:?}"),
    }
}

/// Entries of the data file's table of plugin state filed under `customer`.
fn filed_under(fx: &Fixture, customer: u64) -> usize {
    let db = redb::Database::open(fx.db()).unwrap();
    let read = db.begin_read().unwrap();
    let def: TableDefinition<(u64, &str), Tagged> = TableDefinition::new("plugin_customer_state");
    let table = read.open_table(def).unwrap();
    table
        .range((customer, "")..(customer, "\u{10FFFF}"))
        .unwrap()
        .count()
}

#[test]
fn no_value_a_plugin_held_is_in_the_bytes_of_the_data_file_key_store_or_mirror() {
    let fx = Fixture::new();
    let mirror = fx.dir.path().join("mirror.keys");
    let engine = builder(&fx).key_mirror(&mirror).open().unwrap();
    let id = engine.create_customer(&admin(), li_na()).unwrap();
    install_misbehave(&engine);
    // Unscoped state under a key and a value of its own, state about the
    // customer, log lines, and a value it was shown that it tries to keep.
    ingest(&engine, "state-set Kestrel-Key-4417 Zebra-Quartz-7731");
    ingest(&engine, "print Xylo-Marker-5521");
    ingest(&engine, &format!("cstate-set {id} visits Kiwi-Secret-9090"));
    ingest(&engine, &format!("park {id} name"));
    ingest(&engine, &format!("park {id} phone"));
    // All of it reads back.
    let log = ingest(&engine, "state-get Kestrel-Key-4417");
    assert!(
        log.contains(&"stdout: state: Zebra-Quartz-7731".to_string()),
        "{log:?}"
    );
    let log = ingest(&engine, &format!("cstate-get {id} visits"));
    assert!(
        log.contains(&"stdout: cstate: Kiwi-Secret-9090".to_string()),
        "{log:?}"
    );
    let stored = stored_log(&engine);
    assert!(stored.iter().any(|l| l == "Xylo-Marker-5521"), "{stored:?}");
    assert!(
        stored.iter().any(|l| l == "cstate: Kiwi-Secret-9090"),
        "{stored:?}"
    );
    engine.flush_audit().unwrap();
    drop(engine);
    for file in [fx.db(), fx.keys(), mirror] {
        for held in [
            "Kestrel-Key-4417",
            "Zebra-Quartz-7731",
            "Xylo-Marker-5521",
            "Kiwi-Secret-9090",
            "Li Na",
            "13800138000",
            "138 0013 8000",
        ] {
            assert!(
                !file_contains(&file, held),
                "`{held}` is in {}",
                file.display()
            );
        }
    }
}

#[test]
fn state_about_a_customer_is_filed_under_it_and_erased_with_it() {
    let fx = Fixture::new();
    let engine = builder(&fx).open().unwrap();
    let id = engine.create_customer(&admin(), li_na()).unwrap();
    let other = (engine.create_customer(
        &admin(),
        custodian::NewCustomer::new().field("name", "Zhang Wei"),
    ))
    .unwrap();
    install_misbehave(&engine);
    ingest(&engine, &format!("cstate-set {id} visits 3 visits"));
    let log = ingest(&engine, &format!("cstate-get {id} visits"));
    assert!(
        log.contains(&"stdout: cstate: 3 visits".to_string()),
        "{log:?}"
    );
    // Only about a customer shown to the call.
    let why = rejected(engine.ingest(
        "misbehave",
        format!("cstate-set-unseen {other} k v").as_bytes(),
    ));
    assert!(
        why.contains(&format!("customer {other} was not shown to this call")),
        "{why}"
    );
    drop(engine);
    assert_eq!(filed_under(&fx, other), 0);
    assert_eq!(filed_under(&fx, id), 1);
    // A copy of the data file from before the erasure.
    let before = std::fs::read(fx.db()).unwrap();
    let engine = builder(&fx).open().unwrap();
    engine
        .subject_erase(&admin(), id, "asked to be forgotten")
        .unwrap();
    let why = rejected(engine.ingest("misbehave", format!("cstate-get {id} visits").as_bytes()));
    assert!(why.contains("was not shown to this call"), "{why}");
    drop(engine);
    assert_eq!(filed_under(&fx, id), 0, "erasure removes it");
    // The old data file still holds the sealed record; the customer's key
    // is destroyed, so nothing opens it.
    std::fs::write(fx.db(), before).unwrap();
    assert_eq!(filed_under(&fx, id), 1);
    assert!(!file_contains(&fx.db(), "3 visits"));
    let engine = builder(&fx).open().unwrap();
    let why = rejected(engine.ingest("misbehave", format!("cstate-get {id} visits").as_bytes()));
    assert!(why.contains("was not shown to this call"), "{why}");
}

#[test]
fn a_value_shown_to_the_call_is_refused_in_unscoped_state_and_redacted_from_logs() {
    let fx = Fixture::new();
    let engine = builder(&fx).open().unwrap();
    install_misbehave(&engine);
    let id = engine.create_customer(&admin(), li_na()).unwrap();
    let phone = engine
        .customer(&admin(), id)
        .unwrap()
        .get("phone")
        .unwrap()
        .to_string();
    for (field, value) in [("name", "Li Na"), ("phone", phone.as_str())] {
        let log = ingest(&engine, &format!("park {id} {field}"));
        for printed in ["stdout: parked: ", "info: parked: "] {
            assert!(
                log.iter()
                    .any(|l| l.starts_with(printed) && l.ends_with("[redacted]")),
                "{log:?}"
            );
        }
        let refusal = log.iter().find(|l| l.starts_with("stdout: park: refused:"));
        assert!(
            refusal.is_some_and(|l| l.contains("holds a customer value shown to this call")),
            "{log:?}"
        );
        assert!(log.iter().all(|l| !l.contains(value)), "{log:?}");
        let log = ingest(&engine, "state-get parked");
        assert_eq!(log, vec!["stdout: state: none".to_string()]);
    }
    // The event the plugin printed is kept, its values redacted.
    assert_eq!(engine.drain_events().unwrap(), 0);
    let stored = stored_log(&engine);
    let event = stored
        .iter()
        .find(|l| l.starts_with("event: customer-created"));
    assert!(
        event.is_some_and(|l| l.contains("name=[redacted]") && !l.contains("Li Na")),
        "{stored:?}"
    );
    assert!(
        stored
            .iter()
            .all(|l| !l.contains("Li Na") && !l.contains(&phone))
    );
    // What it was not shown this call it may keep.
    ingest(&engine, "state-set parked Li Na");
    let log = ingest(&engine, "state-get parked");
    assert_eq!(log, vec!["stdout: state: Li Na".to_string()]);
}

fn limited(fx: &Fixture) -> Engine {
    let settings = PluginSettings {
        max_state_bytes_per_call: 10_000,
        max_state_bytes: 25_000,
        max_log_bytes: 4096,
        ..PluginSettings::default()
    };
    let engine = builder(fx).plugin_settings(settings).open().unwrap();
    install_misbehave(&engine);
    engine
}

/// Regression: 1,024 values of 64 KiB were accepted in one call.
#[test]
fn state_one_call_writes_has_a_quota() {
    let fx = Fixture::new();
    let engine = limited(&fx);
    // 9 values of 1,003 bytes with their keys; the 10th would pass 10,000.
    let log = ingest(&engine, "state-fill 100 1000 a");
    assert_eq!(
        log,
        vec![
            "stdout: state-fill: 9 accepted; refused: state quota of 10000 bytes per call \
             reached: 9027 bytes written, 1003 more refused"
                .to_string()
        ]
    );
    assert_eq!(ingest(&engine, "state-get a-8").len(), 1);
    assert_eq!(
        ingest(&engine, "state-get a-9"),
        vec!["stdout: state: none".to_string()]
    );
}

/// Regression: state had no quota in total (the data file grew to 712 MiB
/// in 5 calls).
#[test]
fn all_of_a_plugins_state_has_a_quota() {
    let fx = Fixture::new();
    let engine = limited(&fx);
    ingest(&engine, "state-fill 9 1000 a");
    ingest(&engine, "state-fill 9 1000 b");
    // The third call would pass 25,000 bytes: it keeps nothing.
    let result = engine.ingest("misbehave", b"state-fill 9 1000 c");
    match &result {
        Err(Error::Plugin(PluginError::Quota { reason, .. })) => {
            assert!(
                reason.contains("the quota of all its state is 25000 bytes"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        result
            .unwrap_err()
            .to_string()
            .contains("nothing was executed")
    );
    assert_eq!(
        ingest(&engine, "state-get c-0"),
        vec!["stdout: state: none".to_string()]
    );
    // Rewriting what it has takes no more room.
    ingest(&engine, "state-fill 9 1000 b");
    // A refusal, not a fault.
    assert_eq!(
        engine.plugins(&admin()).unwrap()[0].status,
        PluginStatus::Enabled
    );
}

#[test]
fn one_calls_log_has_a_quota() {
    let fx = Fixture::new();
    let engine = limited(&fx);
    // 40 lines of 100 bytes fit in 4,096; the other 60 are dropped, and a
    // line says so.
    let log = ingest(&engine, "log-flood 100 100");
    assert_eq!(log.len(), 41, "{log:?}");
    assert_eq!(
        log.last().unwrap(),
        "quota: log quota of 4096 bytes per call reached: 60 lines (6000 bytes) dropped"
    );
    let stored = stored_log(&engine);
    assert_eq!(stored.iter().filter(|l| l.starts_with("xxxx")).count(), 40);
}

#[test]
fn message_parameters_are_sealed_in_every_file() {
    let fx = Fixture::new();
    let engine = fx.open();
    crate::plugins::install(&engine, wasm::SMS_REMINDER, |_| {});
    let id = engine
        .create_customer(
            &admin(),
            custodian::NewCustomer::new()
                .field("name", "Zhangsanfeng Li")
                .field("phone", "13800138000")
                .consent(custodian::ConsentChange::grant("service", "web", "v1")),
        )
        .unwrap();
    let due = chrono::Utc::now() - chrono::Duration::minutes(1);
    let follow_up = custodian::NewFollowUp {
        customer: id,
        due,
        assignee: None,
        note: "call back".into(),
    };
    engine.add_follow_up(&admin(), follow_up).unwrap();
    engine.dispatch_due_follow_ups(chrono::Utc::now()).unwrap();
    engine.drain_events().unwrap();
    let queued = engine.subject_export(&admin(), id).unwrap().queued_messages;
    assert_eq!(queued.len(), 1, "{queued:?}");
    let name = (queued[0].params.iter())
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.clone())
        .unwrap();
    // The greeting as the plugin was shown it (masked), kept for the host
    // to send: a rendering is sealed wherever it is kept.
    assert_eq!(name, "Z****");
    engine.flush_audit().unwrap();
    drop(engine);
    for entry in std::fs::read_dir(fx.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        assert!(!file_contains(&path, &name), "{name} in {}", path.display());
    }
    let engine = fx.open();
    let outbox = engine.outbox(&admin(), 10).unwrap();
    assert!(outbox[0].params.contains(&("name".into(), name)));
}
