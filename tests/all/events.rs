//! Deadlines that hold while a plugin waits in the host, and the durable
//! event queue: a plugin that sleeps (`std::thread::sleep`, a WASI clocks
//! poll) ends at its deadline on every hook, and no operation waits for
//! the plugins its events go to. Real components built from source
//! (`misbehave`, `slow-describe`), real databases.
//!
//! No timing thresholds: the sleeps are an hour long and the deadlines
//! far shorter, so a test that finishes has seen the deadline hold (where
//! it does not, the test runs for the hour); that an operation did not
//! wait for a subscriber is read from the order of the audit chain.

use custodian::{
    AuditDurability, AuditEntry, Engine, Error, Fault, NewCustomer, Outcome, PluginError,
};
use custodian_test_artifacts as wasm;

use super::{Fixture, admin};

/// How long a sleeping plugin sleeps: far past every deadline.
const HOUR_MS: u64 = 3_600_000;

/// Installs `misbehave` with everything it asks for and `deadline_ms`.
fn install_misbehave(engine: &Engine, deadline_ms: u32) {
    let bytes = std::fs::read(wasm::MISBEHAVE).unwrap();
    let manifest = engine.inspect_plugin(&bytes).unwrap();
    let mut grant = custodian::Grant::all(&manifest);
    grant.deadline_ms = deadline_ms;
    engine.install_plugin(&admin(), &bytes, grant).unwrap();
}

/// Makes `misbehave` sleep `ms` in `on-event` after printing its line.
fn sleep_on_events(engine: &Engine, ms: u64) {
    let asked = format!("state-set on-event sleep {ms}");
    engine.ingest("misbehave", asked.as_bytes()).unwrap();
}

fn customer(name: &str) -> NewCustomer {
    NewCustomer::new().field("name", name)
}

fn audit(engine: &Engine) -> Vec<AuditEntry> {
    engine.flush_audit().unwrap();
    engine.audit_tail(&admin(), 10_000).unwrap()
}

/// The `on-event` calls of `misbehave` in the audit chain, in order.
fn event_calls(entries: &[AuditEntry]) -> Vec<&AuditEntry> {
    (entries.iter())
        .filter(|e| {
            e.action == "plugin.call"
                && e.target
                    .as_deref()
                    .is_some_and(|t| t.starts_with("plugin misbehave on-event"))
        })
        .collect()
}

/// The customers `misbehave` was handed events about, in the order it
/// read them (each event is read through the path, and audited).
fn delivered(entries: &[AuditEntry]) -> Vec<u64> {
    (entries.iter())
        .filter(|e| {
            e.actor == "plugin:misbehave"
                && e.action == "customer.read"
                && e.purpose == "plugin event"
                && e.outcome == Outcome::Ok
        })
        .flat_map(|e| e.customers.iter().copied())
        .collect()
}

/// What `misbehave` prints for an event about a customer: values shown
/// to a call are redacted from its log.
const CREATED: &str = "event: customer-created name=[redacted]";

fn log_lines(engine: &Engine) -> Vec<custodian::PluginLogLine> {
    engine.plugin_log(&admin(), "misbehave", 1000).unwrap()
}

fn is_deadline(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Failed(reason) if reason.contains("deadline"))
}

#[test]
fn a_plugin_sleeping_in_ingest_ends_at_its_deadline() {
    let fixture = Fixture::new();
    let engine = fixture.open();
    install_misbehave(&engine, 100);
    // An hour-long sleep in the host, under a 100 ms deadline.
    match engine.ingest("misbehave", format!("sleep {HOUR_MS}").as_bytes()) {
        Err(Error::Plugin(PluginError::Fault {
            fault: Fault::Deadline(d),
            ..
        })) => assert_eq!(d.as_millis(), 100),
        other => panic!("expected a deadline fault, got {other:?}"),
    }
    // The sandbox serves the next call.
    engine.ingest("misbehave", b"ok").unwrap();
}

#[test]
fn a_subscriber_sleeping_in_on_event_ends_at_its_deadline() {
    let fixture = Fixture::new();
    let engine = fixture.open();
    install_misbehave(&engine, 100);
    sleep_on_events(&engine, HOUR_MS);
    let id = engine
        .create_customer(&admin(), customer("Sleepy Event"))
        .unwrap();
    assert_eq!(engine.drain_events().unwrap(), 0);
    let entries = audit(&engine);
    let calls = event_calls(&entries);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(is_deadline(&calls[0].outcome), "{calls:?}");
    // The plugin was handed the event: what it printed before it slept is
    // kept with the fault.
    let printed = CREATED;
    assert!(
        log_lines(&engine).iter().any(|l| l.text == printed),
        "{:?}",
        log_lines(&engine)
    );
    // The customer stands.
    assert_eq!(
        engine.customer(&admin(), id).unwrap().get("name"),
        Some("Sleepy Event")
    );
}

#[test]
fn a_plugin_sleeping_in_describe_ends_at_the_deadline_of_inspect_and_install() {
    let fixture = Fixture::new();
    let engine = fixture.open();
    let bytes = std::fs::read(wasm::SLOW_DESCRIBE).unwrap();
    let inspected = engine.inspect_plugin(&bytes);
    assert!(
        matches!(&inspected, Err(Error::Plugin(PluginError::Invalid(m))) if m.contains("deadline")),
        "{inspected:?}"
    );
    let grant = custodian::Grant::none();
    let installed = engine.install_plugin(&admin(), &bytes, grant);
    assert!(
        matches!(&installed, Err(Error::Plugin(PluginError::Invalid(m))) if m.contains("deadline")),
        "{installed:?}"
    );
    assert!(engine.plugins(&admin()).unwrap().is_empty());
}

#[test]
fn customer_add_returns_while_a_subscriber_is_still_blocked() {
    let fixture = Fixture::new();
    // Read entries are committed as they happen, so their order in the
    // chain is the order of events.
    let engine = fixture.open_with(AuditDurability::Durable);
    install_misbehave(&engine, 10_000);
    sleep_on_events(&engine, HOUR_MS);
    let first = engine.create_customer(&admin(), customer("First")).unwrap();
    // The worker has taken the first event: it read the customer as the
    // plugin to hand it over, and the plugin now sleeps.
    let handed = |entries: &[AuditEntry]| {
        (entries.iter())
            .find(|e| {
                e.actor == "plugin:misbehave"
                    && e.action == "customer.read"
                    && e.customers == [first]
            })
            .map(|e| e.seq)
    };
    let mut taken = None;
    for _ in 0..6000 {
        taken = handed(&audit(&engine));
        if taken.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let taken = taken.expect("the worker never took the first event");
    let second = engine
        .create_customer(&admin(), customer("Second"))
        .unwrap();
    // Its own reaction to the second event need not wait for a deadline.
    engine
        .ingest("misbehave", b"state-set on-event none")
        .unwrap();
    assert_eq!(engine.drain_events().unwrap(), 0);

    let entries = audit(&engine);
    let created = |id: u64| {
        (entries.iter())
            .find(|e| e.action == "customer.create" && e.customers == [id])
            .map(|e| e.seq)
            .unwrap()
    };
    let calls = event_calls(&entries);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(is_deadline(&calls[0].outcome), "{calls:?}");
    assert!(created(first) < taken);
    // The second add committed (and returned) after the plugin took the
    // first event and before its call ended: the add did not wait for
    // the blocked subscriber.
    assert!(taken < created(second), "{taken} {}", created(second));
    assert!(created(second) < calls[0].seq, "{calls:?}");
    // Both events reached the plugin, in order.
    let printed: Vec<String> = (log_lines(&engine).into_iter())
        .map(|l| l.text)
        .filter(|t| t.starts_with("event: customer-created"))
        .collect();
    assert_eq!(printed, [CREATED, CREATED]);
    assert_eq!(delivered(&entries), [first, second]);
}

#[test]
fn events_reach_each_plugin_in_commit_order() {
    let fixture = Fixture::new();
    let engine = fixture.open();
    install_misbehave(&engine, 1000);
    let names: Vec<String> = (0..20).map(|i| format!("Ordered {i}")).collect();
    let mut expected = Vec::new();
    let mut ids = Vec::new();
    for name in &names {
        let id = engine.create_customer(&admin(), customer(name)).unwrap();
        engine
            .update_customer(
                &admin(),
                id,
                custodian::CustomerUpdate::new().set("name", format!("{name} again")),
            )
            .unwrap();
        expected.push(CREATED.to_string());
        expected.push("event: customer-updated name=[redacted]".to_string());
        ids.extend([id, id]);
    }
    assert_eq!(engine.drain_events().unwrap(), 0);
    // The kinds in the order printed, the customers in the order read.
    let printed: Vec<String> = (log_lines(&engine).into_iter())
        .map(|l| l.text)
        .filter(|t| t.starts_with("event: customer-"))
        .collect();
    assert_eq!(printed, expected);
    assert_eq!(delivered(&audit(&engine)), ids);
}

#[test]
fn events_left_queued_at_close_are_delivered_after_the_next_open() {
    let fixture = Fixture::new();
    let engine = fixture.open();
    install_misbehave(&engine, 10_000);
    sleep_on_events(&engine, HOUR_MS);
    // The worker takes the first event and sleeps; the second stays queued
    // when the engine closes (after the delivery in progress).
    let first = engine
        .create_customer(&admin(), customer("Before Close 1"))
        .unwrap();
    let second = engine
        .create_customer(&admin(), customer("Before Close 2"))
        .unwrap();
    engine
        .ingest("misbehave", b"state-set on-event none")
        .unwrap();
    drop(engine);
    let engine = fixture.open();
    assert_eq!(engine.drain_events().unwrap(), 0);
    // At least once, in order: the first may have been delivered before
    // the close or again after it.
    let read = delivered(&audit(&engine));
    assert!(read.ends_with(&[second]), "{read:?}");
    assert!(read.contains(&first), "{read:?}");
}

/// `custodian customer add` is killed after the add committed and while
/// the event's delivery is under way (the subscriber sleeps): the event
/// is in the queue, and the next open delivers it.
#[cfg(unix)]
#[test]
fn an_event_whose_delivery_a_crash_cut_short_is_delivered_after_reopen() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let fixture = Fixture::new();
    let engine = fixture.open();
    install_misbehave(&engine, 10_000);
    sleep_on_events(&engine, HOUR_MS);
    drop(engine);

    let mut child = fixture
        .custodian()
        .args(["customer", "add", "name=Crash Subject"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The id is printed once the add committed; the command then waits
    // for the delivery, which the subscriber's sleep holds up.
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let id: u64 = line.trim().parse().unwrap_or_else(|_| panic!("{line:?}"));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "{status:?}");

    let reopened = chrono::Utc::now();
    let engine = fixture.open();
    // Redelivered: the subscriber still sleeps, so this waits for its
    // deadline once.
    assert_eq!(engine.drain_events().unwrap(), 0);
    let printed: Vec<custodian::PluginLogLine> = (log_lines(&engine).into_iter())
        .filter(|l| l.text == CREATED)
        .collect();
    assert_eq!(printed.len(), 1, "{printed:?}");
    // Written by a call that ended after the reopen.
    assert!(printed[0].at >= reopened, "{printed:?}");
    assert_eq!(
        engine.customer(&admin(), id).unwrap().get("name"),
        Some("Crash Subject")
    );
}
