//! Each fuzz target's body on every file of `seeds/<target>/` and
//! `regressions/<target>/`. Being an integration test of this package, it
//! also makes `cargo test` build and link the targets themselves.

#![allow(clippy::unwrap_used)]

use std::path::Path;

fn run(target: &str, body: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut ran = 0;
    for folder in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(folder).join(target)) else {
            continue;
        };
        for entry in entries {
            body(&std::fs::read(entry.unwrap().path()).unwrap());
            ran += 1;
        }
    }
    assert!(ran > 0, "no seed for {target}");
}

#[test]
fn csv_import() {
    run("csv_import", custodian_fuzz::csv_import);
}

#[test]
fn schema() {
    run("schema", custodian_fuzz::schema);
}

#[test]
fn policy_pack() {
    run("policy_pack", custodian_fuzz::policy_pack);
}

#[test]
fn retention() {
    run("retention", custodian_fuzz::retention);
}

#[test]
fn manifest() {
    run("manifest", custodian_fuzz::manifest);
}

#[test]
fn checkpoint() {
    run("checkpoint", custodian_fuzz::checkpoint);
}

#[test]
fn shop_orders() {
    run("shop_orders", custodian_fuzz::shop_orders);
}

#[test]
fn chat_sync() {
    run("chat_sync", custodian_fuzz::chat_sync);
}

#[test]
fn plugin_results() {
    run("plugin_results", custodian_fuzz::plugin_results);
}
