//! Deadlines that hold while a plugin waits in the host: a plugin that
//! sleeps (`std::thread::sleep`, a WASI clocks poll) ends at its deadline
//! on every hook. Real components built from source (`misbehave`,
//! `slow-describe`), real databases.
//!
//! No timing thresholds: the sleeps are an hour long and the deadlines
//! far shorter, so a test that finishes has seen the deadline hold (where
//! it does not, the test runs for the hour).

use custodian::{Engine, Error, Fault, PluginError};
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
