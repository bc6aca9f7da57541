//! Plugins: real wasm components built from source for wasm32-wasip2 (by
//! `tests/artifacts`), run in the engine's sandbox against a real database.
//! The hostile plugin `misbehave` does what the sandbox must stop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use custodian::{
    Clock, ConsentChange, Context, Denied, Engine, Error, Fault, FieldAccess, Grant, NewCustomer,
    NewFollowUp, Outcome, PluginError, PluginSettings, PluginStatus, Query,
};
use custodian_test_artifacts as wasm;

use super::{Fixture, admin, file_contains, li_na};

fn code(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

fn sample(plugin: &str, file: &str) -> Vec<u8> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read(root.join("plugins").join(plugin).join("samples").join(file)).unwrap()
}

/// Installs `path` with everything it asks for, adjusted by `adjust`.
pub(crate) fn install(engine: &Engine, path: &str, adjust: impl FnOnce(&mut Grant)) -> Grant {
    let bytes = code(path);
    let manifest = engine.inspect_plugin(&bytes).unwrap();
    let mut grant = Grant::all(&manifest);
    adjust(&mut grant);
    engine
        .install_plugin(&admin(), &bytes, grant.clone())
        .unwrap();
    grant
}

fn fault_of(result: custodian::Result<custodian::CallReport>) -> Fault {
    match result {
        Err(Error::Plugin(PluginError::Fault { fault, .. })) => fault,
        other => panic!("expected a fault, got {other:?}"),
    }
}

fn log_text(engine: &Engine, plugin: &str) -> Vec<String> {
    engine
        .plugin_log(&admin(), plugin, 1000)
        .unwrap()
        .into_iter()
        .map(|l| l.text)
        .collect()
}

/// After a fault the engine and the plugin serve the next request.
fn still_serves(engine: &Engine, plugin: &str) {
    engine.ingest(plugin, b"ok").unwrap();
    let id = engine
        .create_customer(&admin(), NewCustomer::new().field("name", "Next Request"))
        .unwrap();
    assert_eq!(
        engine.customer(&admin(), id).unwrap().get("name"),
        Some("Next Request")
    );
}

/// A hostile plugin with a high fault tolerance, so single faults do not
/// quarantine it between checks.
pub(crate) fn hostile(fixture: &Fixture, adjust: impl FnOnce(&mut Grant)) -> Engine {
    let engine = fixture.open();
    install(&engine, wasm::MISBEHAVE, adjust);
    engine
}

#[test]
fn an_endless_loop_ends_at_the_deadline() {
    let fixture = Fixture::new();
    let engine = hostile(&fixture, |_| {});
    let fault = fault_of(engine.ingest("misbehave", b"loop"));
    assert!(matches!(fault, Fault::Deadline(_)), "{fault:?}");
    still_serves(&engine, "misbehave");
}

#[test]
fn growing_memory_stops_at_the_cap() {
    let fixture = Fixture::new();
    let engine = hostile(&fixture, |g| g.memory_mib = 16);
    let fault = fault_of(engine.ingest("misbehave", b"grow"));
    assert_eq!(fault, Fault::Memory { cap: 16 << 20 });
    still_serves(&engine, "misbehave");
}

#[test]
fn unbounded_recursion_traps() {
    let fixture = Fixture::new();
    let engine = hostile(&fixture, |_| {});
    let fault = fault_of(engine.ingest("misbehave", b"recurse"));
    assert_eq!(fault, Fault::StackOverflow);
    still_serves(&engine, "misbehave");
}

#[test]
fn a_100_mb_return_value_is_refused() {
    let fixture = Fixture::new();
    // Under the default 64 MiB cap the plugin cannot even build it.
    let engine = hostile(&fixture, |_| {});
    let fault = fault_of(engine.ingest("misbehave", b"huge 100"));
    assert!(matches!(fault, Fault::Memory { .. }), "{fault:?}");
    still_serves(&engine, "misbehave");
    // With room to build it, the engine refuses to take it.
    let engine2_fixture = Fixture::new();
    let engine2 = hostile(&engine2_fixture, |g| {
        g.memory_mib = 256;
        g.deadline_ms = 10_000; // writing 100 MB takes longer than 100 ms
    });
    let fault = fault_of(engine2.ingest("misbehave", b"huge 100"));
    assert!(
        matches!(fault, Fault::OutputTooLarge { unit: "bytes", size, .. } if size >= 100 << 20),
        "{fault:?}"
    );
    still_serves(&engine2, "misbehave");
}

#[test]
fn a_plugin_sees_only_granted_fields_masked_as_granted() {
    let fixture = Fixture::new();
    // It asks for name, phone and id_number in full; it gets the phone
    // masked and nothing else.
    let engine = hostile(&fixture, |g| {
        g.fields = BTreeMap::from([("phone".to_string(), FieldAccess::Masked)]);
    });
    let id = engine.create_customer(&admin(), li_na()).unwrap();
    let report = engine
        .ingest("misbehave", format!("lookup {id}").as_bytes())
        .unwrap();
    let seen: Vec<&String> = report.log.iter().filter(|l| l.contains("seen:")).collect();
    assert_eq!(seen.len(), 1, "{:?}", report.log);
    assert!(seen[0].ends_with("seen: phone=138****8000"), "{seen:?}");
    for secret in ["Li Na", "13800138000", "110105198803120217", "li.na@"] {
        assert!(
            report.log.iter().all(|l| !l.contains(secret)),
            "{secret} reached the plugin"
        );
    }
    // The event it subscribed to shows the same narrowed view.
    engine.drain_events().unwrap();
    let events: Vec<String> = log_text(&engine, "misbehave")
        .into_iter()
        .filter(|l| l.starts_with("event: customer-created"))
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].contains("phone=138****8000"), "{events:?}");
    assert!(!events[0].contains("Li Na") && !events[0].contains("110105"));
}

#[test]
fn a_command_outside_the_grant_is_refused_and_audited() {
    let fixture = Fixture::new();
    let engine = hostile(&fixture, |g| {
        g.commands = [custodian::CommandKind::LogInteraction].into();
    });
    let id = engine.create_customer(&admin(), li_na()).unwrap();
    // The creation's event is delivered first, so the call below is the
    // plugin's last.
    assert_eq!(engine.drain_events().unwrap(), 0);
    let result = engine.ingest("misbehave", format!("command follow-up {id}").as_bytes());
    let fault = fault_of(result);
    assert!(
        matches!(fault, Fault::Ungranted(ref w) if w.contains("create-follow-up")),
        "{fault:?}"
    );
    // Nothing was written, and the refusal is in the audit chain.
    assert!(
        engine
            .follow_ups_due(
                &admin(),
                chrono::Utc::now() + chrono::Duration::days(3650),
                None
            )
            .unwrap()
            .is_empty()
    );
    let tail = engine.audit_tail(&admin(), 50).unwrap();
    let refused = tail
        .iter()
        .rev()
        .find(|e| e.actor == "plugin:misbehave" && e.action == "plugin.call")
        .unwrap();
    assert!(
        matches!(&refused.outcome, Outcome::Failed(r) if r.contains("create-follow-up")),
        "{refused:?}"
    );
    // The granted command works.
    let report = engine
        .ingest("misbehave", format!("command log {id}").as_bytes())
        .unwrap();
    assert_eq!(report.interactions.len(), 1);
    assert_eq!(engine.interactions(&admin(), id).unwrap().len(), 1);
    // Granted, a follow-up is created, assigned to the customer's owner.
    let engine2_fixture = Fixture::new();
    let engine2 = hostile(&engine2_fixture, |_| {});
    let id2 = engine2.create_customer(&admin(), li_na()).unwrap();
    let report = engine2
        .ingest("misbehave", format!("command follow-up {id2}").as_bytes())
        .unwrap();
    assert_eq!(report.follow_ups.len(), 1);
    let due = engine2
        .follow_ups_due(
            &admin(),
            chrono::Utc::now() + chrono::Duration::days(2),
            None,
        )
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].customer, id2);
    still_serves(&engine, "misbehave");
}

#[test]
fn an_upsert_by_an_unknown_id_creates_nothing() {
    let fixture = Fixture::new();
    let engine = hostile(&fixture, |_| {});
    let result = engine.ingest("misbehave", b"command upsert 999 name=Ghost");
    assert!(
        matches!(&result, Err(Error::Plugin(PluginError::Command { index: 1, reason, .. })) if reason.contains("no customer has that id")),
        "{result:?}"
    );
    assert_eq!(engine.count_customers(&admin()).unwrap(), 0);
}

#[test]
fn a_flood_of_commands_hits_the_rate_limit() {
    let fixture = Fixture::new();
    let engine = hostile(&fixture, |_| {}); // 100 commands per minute
    let id = engine.create_customer(&admin(), li_na()).unwrap();
    assert_eq!(id, 1, "the flood targets customer 1");
    let result = engine.ingest("misbehave", b"flood 1000");
    assert!(
        matches!(result, Err(Error::Plugin(PluginError::RateLimited { .. }))),
        "{result:?}"
    );
    assert!(engine.interactions(&admin(), id).unwrap().is_empty());
    // Within the budget it works; the next call past it does not.
    engine.ingest("misbehave", b"flood 60").unwrap();
    let result = engine.ingest("misbehave", b"flood 60");
    assert!(matches!(
        result,
        Err(Error::Plugin(PluginError::RateLimited { .. }))
    ));
    assert_eq!(engine.interactions(&admin(), id).unwrap().len(), 60);
    // Rate refusals are not faults: the plugin is not quarantined.
    assert_eq!(
        engine.plugins(&admin()).unwrap()[0].status,
        PluginStatus::Enabled
    );
}

#[test]
fn repeated_faults_quarantine_a_plugin_until_re_enabled() {
    let fixture = Fixture::new();
    let engine = hostile(&fixture, |_| {});
    for _ in 0..3 {
        fault_of(engine.ingest("misbehave", b"trap"));
    }
    let info = &engine.plugins(&admin()).unwrap()[0];
    assert!(
        matches!(&info.status, PluginStatus::Quarantined { reason } if reason.contains("deliberate trap") || reason.contains("trapped")),
        "{:?}",
        info.status
    );
    let alerts = engine.alerts(&admin(), 10).unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].kind, "plugin.quarantined");
    // Not called again: the call is refused before instantiation, so the
    // plugin's log does not grow.
    let before = log_text(&engine, "misbehave").len();
    let result = engine.ingest("misbehave", b"print still here");
    assert!(
        matches!(result, Err(Error::Denied(Denied::PluginNotEnabled { ref status, .. })) if status.contains("quarantined")),
        "{result:?}"
    );
    assert_eq!(log_text(&engine, "misbehave").len(), before);
    // Nor for events.
    engine.create_customer(&admin(), li_na()).unwrap();
    engine.drain_events().unwrap();
    assert_eq!(log_text(&engine, "misbehave").len(), before);
    // Quarantine survives a reopen; enabling clears it.
    drop(engine);
    let engine = fixture.open();
    assert!(matches!(
        engine.plugins(&admin()).unwrap()[0].status,
        PluginStatus::Quarantined { .. }
    ));
    engine
        .set_plugin_enabled(&admin(), "misbehave", true)
        .unwrap();
    let report = engine.ingest("misbehave", b"print back").unwrap();
    assert!(
        report.log.iter().any(|l| l == "stdout: back"),
        "{:?}",
        report.log
    );
}

/// Regression: one success reset the fault count, so a plugin faulting
/// two calls out of three was never quarantined.
#[test]
fn faulting_two_calls_of_three_quarantines_a_plugin() {
    let fixture = Fixture::new();
    let engine = hostile(&fixture, |_| {});
    fault_of(engine.ingest("misbehave", b"trap"));
    fault_of(engine.ingest("misbehave", b"trap"));
    engine.ingest("misbehave", b"ok").unwrap();
    fault_of(engine.ingest("misbehave", b"trap"));
    let info = &engine.plugins(&admin()).unwrap()[0];
    assert!(
        matches!(info.status, PluginStatus::Quarantined { .. }),
        "{:?}",
        info.status
    );
    assert_eq!(info.consecutive_faults, 3);
    let alerts = engine.alerts(&admin(), 10).unwrap();
    assert!(
        alerts[0].message.contains("after 3 faults within 1 h"),
        "{}",
        alerts[0].message
    );
}

#[test]
fn faults_older_than_the_window_do_not_count() {
    let fixture = Fixture::new();
    let now = Arc::new(AtomicI64::new(Utc::now().timestamp_micros()));
    let read = Arc::clone(&now);
    let clock = Clock::from_fn(move || {
        DateTime::from_timestamp_micros(read.load(Ordering::SeqCst)).unwrap_or_default()
    });
    let engine = fixture.open_on(clock);
    install(&engine, wasm::MISBEHAVE, |_| {});
    let status = || engine.plugins(&admin()).unwrap()[0].status.clone();
    fault_of(engine.ingest("misbehave", b"trap"));
    fault_of(engine.ingest("misbehave", b"trap"));
    // Two hours on, those two are out of the one-hour window.
    now.fetch_add(2 * 3600 * 1_000_000, Ordering::SeqCst);
    fault_of(engine.ingest("misbehave", b"trap"));
    assert_eq!(status(), PluginStatus::Enabled);
    assert_eq!(engine.plugins(&admin()).unwrap()[0].consecutive_faults, 1);
    fault_of(engine.ingest("misbehave", b"trap"));
    fault_of(engine.ingest("misbehave", b"trap"));
    assert!(matches!(status(), PluginStatus::Quarantined { .. }));
}

/// Regression: a call that returned no commands was not rate-limited.
#[test]
fn calls_are_rate_limited_whatever_they_return() {
    let fixture = Fixture::new();
    let settings = PluginSettings {
        calls_per_minute: 5,
        ..PluginSettings::default()
    };
    let engine = Engine::builder()
        .path(fixture.db())
        .master_key(fixture.key())
        .create(true)
        .plugin_settings(settings)
        .open()
        .unwrap();
    install(&engine, wasm::MISBEHAVE, |_| {});
    for _ in 0..5 {
        assert!(
            engine
                .ingest("misbehave", b"ok")
                .unwrap()
                .commands
                .is_empty()
        );
    }
    let before = log_text(&engine, "misbehave").len();
    match engine.ingest("misbehave", b"print not called") {
        Err(Error::Plugin(PluginError::RateLimited { reason, .. })) => {
            assert!(reason.contains("5 times per minute"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Not called at all, and not a fault.
    assert_eq!(log_text(&engine, "misbehave").len(), before);
    assert_eq!(
        engine.plugins(&admin()).unwrap()[0].status,
        PluginStatus::Enabled
    );
}

/// Regression: a `describe()` returning a million fields failed with a
/// dump of wasm frames. Which limit it meets first (its deadline, its
/// memory, or the fields a manifest may ask for) depends on the machine;
/// the refusal is one sentence naming it either way.
#[test]
fn a_manifest_of_a_million_fields_is_refused_in_words() {
    let fixture = Fixture::new();
    let engine = fixture.open();
    let error = engine
        .install_plugin(&admin(), &code(wasm::HUGE_MANIFEST), Grant::none())
        .unwrap_err();
    let text = error.to_string();
    let sentences = [
        "not a Custodian plugin: its describe() export failed: it ran past its deadline of 100 ms",
        "not a Custodian plugin: its describe() export failed: it tried to grow its memory past \
         its cap of 64 MiB",
        "plugin manifest: it asks for 1000000 fields; a manifest may ask for at most 256",
    ];
    assert!(sentences.contains(&text.as_str()), "{text}");
    assert!(engine.plugins(&admin()).unwrap().is_empty());
}

#[test]
fn output_goes_to_the_plugin_log_and_state_is_kept_between_calls() {
    let fixture = Fixture::new();
    let engine = hostile(&fixture, |_| {});
    let report = engine.ingest("misbehave", b"print hello").unwrap();
    assert!(
        report.log.contains(&"stdout: hello".to_string()),
        "{:?}",
        report.log
    );
    assert!(report.log.contains(&"stderr: hello".to_string()));
    let log = log_text(&engine, "misbehave");
    assert!(log.iter().filter(|l| *l == "hello").count() == 2, "{log:?}");
    engine
        .ingest("misbehave", b"state-set k remembered")
        .unwrap();
    // A fresh instance per call: only the engine-held state carries over.
    let report = engine.ingest("misbehave", b"state-get k").unwrap();
    assert!(
        report.log.iter().any(|l| l.ends_with("state: remembered")),
        "{:?}",
        report.log
    );
    drop(engine);
    let engine = fixture.open();
    let report = engine.ingest("misbehave", b"state-get k").unwrap();
    assert!(report.log.iter().any(|l| l.ends_with("state: remembered")));
}

#[test]
fn every_call_gets_a_fresh_instance() {
    let fixture = Fixture::new();
    let engine = hostile(&fixture, |_| {});
    engine
        .ingest("misbehave", b"remember Li Na 13800138000")
        .unwrap();
    let report = engine.ingest("misbehave", b"recall").unwrap();
    assert_eq!(report.log, vec!["stdout: recalled: none".to_string()]);
}

#[test]
fn wasi_gives_no_files_environment_network_or_stdin() {
    let fixture = Fixture::new();
    let engine = hostile(&fixture, |_| {});
    let report = engine.ingest("misbehave", b"ambient").unwrap();
    let log = report.log.join("\n");
    assert!(log.contains("stdout: env: 0"), "{log}");
    assert!(log.contains("stdout: args: 0"), "{log}");
    for path in ["/", ".", "/etc/passwd", "/tmp"] {
        assert!(
            log.contains(&format!("stdout: path {path}: refused")),
            "{log}"
        );
    }
    assert!(log.contains("stdout: write: refused"), "{log}");
    assert!(log.contains("stdout: tcp: refused"), "{log}");
    assert!(log.contains("stdout: stdin: empty"), "{log}");
    assert!(!log.contains("readable") && !log.contains("allowed") && !log.contains("connected"));
}

#[test]
fn a_plugin_of_another_major_interface_version_is_refused_at_install() {
    let fixture = Fixture::new();
    let engine = fixture.open();
    let error = engine
        .install_plugin(&admin(), &code(wasm::NEXT_MAJOR), Grant::none())
        .unwrap_err();
    match &error {
        Error::Plugin(PluginError::Version { found, supported }) => {
            assert_eq!(found, "1.0.0");
            assert_eq!(supported, custodian::INTERFACE_VERSION);
        }
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("rebuild it"), "{error}");
    // Not a component at all.
    let error = engine
        .install_plugin(&admin(), b"\0asm\x01\0\0\0", Grant::none())
        .unwrap_err();
    assert!(
        matches!(error, Error::Plugin(PluginError::Invalid(_))),
        "{error:?}"
    );
    assert!(engine.plugins(&admin()).unwrap().is_empty());
}

#[test]
fn grants_beyond_the_manifest_and_installs_by_non_admins_are_refused() {
    let fixture = Fixture::new();
    let engine = fixture.with_staff();
    let bytes = code(wasm::CHAT_SYNC);
    let manifest = engine.inspect_plugin(&bytes).unwrap();
    let mut grant = Grant::all(&manifest);
    grant.fields.insert("phone".to_string(), FieldAccess::Full);
    let error = engine.install_plugin(&admin(), &bytes, grant).unwrap_err();
    assert!(
        error.to_string().contains("`phone` was not asked for"),
        "{error}"
    );
    let error = engine
        .install_plugin(&Context::new("wang", "test"), &bytes, Grant::all(&manifest))
        .unwrap_err();
    assert!(
        matches!(error, Error::Denied(Denied::NotPermitted { ref who, .. }) if who == "admins"),
        "{error:?}"
    );
    assert!(engine.plugins(&admin()).unwrap().is_empty());
}

#[test]
fn shop_orders_turns_orders_into_customers_and_order_interactions() {
    let fixture = Fixture::new();
    let engine = fixture.with_staff();
    install(&engine, wasm::SHOP_ORDERS, |g| {
        g.owner = Some("wang".into())
    });
    let report = engine
        .ingest("shop-orders", &sample("shop-orders", "orders.json"))
        .unwrap();
    assert!(!report.created.is_empty());
    assert!(
        report.interactions.len() > report.created.len(),
        "{report:?}"
    );
    // Owned by the grant's owner, who sees them in full; found by phone.
    let wang = Context::new("wang", "sales_contact");
    let mine = engine
        .find_customers(&wang, &Query::Owner("wang".into()), 100)
        .unwrap();
    assert_eq!(mine.len(), report.created.len());
    let order = engine.interactions(&wang, mine[0].id).unwrap();
    assert!(order.iter().all(|i| i.channel == custodian::Channel::Order));
    assert!(order.iter().all(|i| i.amount_minor.is_some_and(|a| a > 0)));
    assert!(order.iter().all(|i| !i.items.is_empty()));
    // The same orders again: matched by the shop's customer id, no new
    // customers.
    let again = engine
        .ingest("shop-orders", &sample("shop-orders", "orders.json"))
        .unwrap();
    assert!(again.created.is_empty(), "{again:?}");
    assert_eq!(again.interactions.len(), report.interactions.len());
    // Audited as the plugin, and no plaintext reached the file.
    let tail = engine.audit_tail(&admin(), 500).unwrap();
    assert!(
        tail.iter()
            .any(|e| e.actor == "plugin:shop-orders" && e.action == "customer.create")
    );
    engine.flush_audit().unwrap();
    let phone = mine
        .iter()
        .find_map(|c| c.get("phone").map(str::to_string))
        .unwrap();
    assert!(!file_contains(&fixture.db(), &phone));
    assert!(engine.verify_audit(None).unwrap().entries > 0);
}

#[test]
fn a_bad_order_executes_nothing() {
    let fixture = Fixture::new();
    let engine = fixture.open();
    install(&engine, wasm::SHOP_ORDERS, |_| {});
    let result = engine.ingest("shop-orders", b"[{\"order_id\": 1}");
    assert!(
        matches!(result, Err(Error::Plugin(PluginError::Rejected { .. }))),
        "{result:?}"
    );
    assert_eq!(engine.count_customers(&admin()).unwrap(), 0);
}

#[test]
fn chat_sync_logs_chats_without_phone_or_id_number() {
    let fixture = Fixture::new();
    let engine = fixture.open();
    let grant = install(&engine, wasm::CHAT_SYNC, |_| {});
    assert!(!grant.fields.contains_key("phone"));
    assert!(!grant.fields.contains_key("id_number"));
    let report = engine
        .ingest("chat-sync", &sample("chat-sync", "conversations.json"))
        .unwrap();
    assert!(!report.interactions.is_empty(), "{report:?}");
    let id = report.created[0];
    let chats = engine.interactions(&admin(), id).unwrap();
    assert!(chats.iter().all(|i| i.channel == custodian::Channel::Chat));
    assert!(
        chats
            .iter()
            .all(|i| i.body.as_ref().is_some_and(|b| !b.is_empty()))
    );
    let customer = engine.customer(&admin(), id).unwrap();
    assert!(customer.get("phone").is_none());
}

#[test]
fn sms_reminder_queues_a_reminder_only_with_consent_and_never_sees_the_phone() {
    let fixture = Fixture::new();
    let engine = fixture.open();
    install(&engine, wasm::SMS_REMINDER, |_| {});
    let with = engine.create_customer(&admin(), li_na()).unwrap();
    let without = engine
        .create_customer(
            &admin(),
            NewCustomer::new()
                .field("name", "Wang Wei")
                .field("phone", "13900139000"),
        )
        .unwrap();
    engine
        .record_consent(
            &admin(),
            with,
            &ConsentChange::grant("service", "web", "v1"),
        )
        .unwrap();
    let due = chrono::Utc::now() - chrono::Duration::minutes(1);
    for customer in [with, without] {
        engine
            .add_follow_up(
                &admin(),
                NewFollowUp {
                    customer,
                    due,
                    assignee: None,
                    note: "call back about the sofa".into(),
                },
            )
            .unwrap();
    }
    assert_eq!(
        engine.dispatch_due_follow_ups(chrono::Utc::now()).unwrap(),
        2
    );
    engine.drain_events().unwrap();
    // Delivered once only.
    assert_eq!(
        engine.dispatch_due_follow_ups(chrono::Utc::now()).unwrap(),
        0
    );
    let outbox = engine.outbox(&admin(), 10).unwrap();
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert_eq!(outbox[0].customer, with);
    assert_eq!(outbox[0].channel, "sms");
    assert_eq!(outbox[0].address, "+8613800138000");
    assert_eq!(outbox[0].template, "follow-up-reminder");
    assert!(
        outbox[0]
            .params
            .iter()
            .all(|(_, v)| !v.contains("13800138000"))
    );
    // The refusal for the other customer is audited.
    let tail = engine.audit_tail(&admin(), 100).unwrap();
    assert!(tail.iter().any(|e| e.action == "outbox.queue"
        && e.customers == vec![without]
        && matches!(&e.outcome, Outcome::Denied(r) if r.contains("consented"))));
    // Withdrawal takes effect at once: the queued message is dropped.
    engine
        .record_consent(&admin(), with, &ConsentChange::withdraw("service", "web"))
        .unwrap();
    assert!(engine.outbox(&admin(), 10).unwrap().is_empty());
    // Acknowledged messages leave the outbox.
    engine
        .record_consent(
            &admin(),
            with,
            &ConsentChange::grant("service", "web", "v1"),
        )
        .unwrap();
    engine
        .add_follow_up(
            &admin(),
            NewFollowUp {
                customer: with,
                due,
                assignee: None,
                note: "again".into(),
            },
        )
        .unwrap();
    engine.dispatch_due_follow_ups(chrono::Utc::now()).unwrap();
    engine.drain_events().unwrap();
    let outbox = engine.outbox(&admin(), 10).unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(engine.ack_outbox(&admin(), &[outbox[0].id]).unwrap(), 1);
    assert!(engine.outbox(&admin(), 10).unwrap().is_empty());
}

#[test]
fn a_marketing_message_needs_marketing_consent() {
    let fixture = Fixture::new();
    let engine = hostile(&fixture, |_| {});
    let id = engine.create_customer(&admin(), li_na()).unwrap();
    engine
        .record_consent(&admin(), id, &ConsentChange::grant("service", "web", "v1"))
        .unwrap();
    let report = engine
        .ingest("misbehave", format!("command marketing {id}").as_bytes())
        .unwrap();
    assert!(report.messages.is_empty());
    assert_eq!(report.skipped_messages.len(), 1, "{report:?}");
    engine
        .record_consent(
            &admin(),
            id,
            &ConsentChange::grant("marketing", "web", "v1"),
        )
        .unwrap();
    let report = engine
        .ingest("misbehave", format!("command marketing {id}").as_bytes())
        .unwrap();
    assert_eq!(report.messages.len(), 1);
    engine
        .record_consent(&admin(), id, &ConsentChange::withdraw("marketing", "web"))
        .unwrap();
    assert!(engine.outbox(&admin(), 10).unwrap().is_empty());
}

#[test]
fn deleting_a_customer_removes_its_links_consents_and_messages() {
    let fixture = Fixture::new();
    let engine = fixture.open();
    install(&engine, wasm::SHOP_ORDERS, |_| {});
    let report = engine
        .ingest("shop-orders", &sample("shop-orders", "order.json"))
        .unwrap();
    let id = report.created[0];
    engine
        .record_consent(
            &admin(),
            id,
            &ConsentChange::grant("marketing", "web", "v1"),
        )
        .unwrap();
    engine.delete_customer(&admin(), id).unwrap();
    // The same order creates a new customer: the old link is gone.
    let again = engine
        .ingest("shop-orders", &sample("shop-orders", "order.json"))
        .unwrap();
    assert_eq!(again.created.len(), 1);
    assert_ne!(again.created[0], id);
    assert!(
        engine
            .consents(&admin(), again.created[0])
            .unwrap()
            .is_empty()
    );
}

#[test]
fn ungranted_hooks_disabled_and_removed_plugins_are_not_called() {
    let fixture = Fixture::new();
    // Granted events only: its ingest hook is refused before any call.
    let engine = hostile(&fixture, |g| g.hooks = [custodian::Hook::OnEvent].into());
    let result = engine.ingest("misbehave", b"print called");
    assert!(
        matches!(&result, Err(Error::Denied(Denied::HookNotGranted { hook, .. })) if hook == "Ingest"),
        "{result:?}"
    );
    assert!(log_text(&engine, "misbehave").is_empty());
    // Disabled: neither ingest nor events reach it.
    install(&engine, wasm::MISBEHAVE, |_| {});
    engine
        .set_plugin_enabled(&admin(), "misbehave", false)
        .unwrap();
    let result = engine.ingest("misbehave", b"print called");
    assert!(
        matches!(&result, Err(Error::Denied(Denied::PluginNotEnabled { status, .. })) if status == "disabled"),
        "{result:?}"
    );
    engine.create_customer(&admin(), li_na()).unwrap();
    engine.drain_events().unwrap();
    assert!(log_text(&engine, "misbehave").is_empty());
    // Removed: unknown, and its principal can no longer act.
    engine.remove_plugin(&admin(), "misbehave").unwrap();
    let result = engine.ingest("misbehave", b"ok");
    assert!(
        matches!(result, Err(Error::Plugin(PluginError::Unknown(_)))),
        "{result:?}"
    );
    let as_plugin = Context::new("plugin:misbehave", "test");
    assert!(matches!(
        engine.count_customers(&as_plugin),
        Err(Error::Denied(Denied::Deactivated(_)))
    ));
    assert!(engine.plugins(&admin()).unwrap().is_empty());
}
