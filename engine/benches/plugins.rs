//! Benchmark of the plugin sandbox and of ingest through a real plugin.
//!
//! Measures, in one run:
//!
//! 1. the per-call overhead of `on-event` on the `sms-reminder` component
//!    (built from `plugins/` for wasm32-wasip2), with a `customer-updated`
//!    event of about 1 KiB that it answers with no command: on a fresh
//!    instance per call (what the engine does: a new store and instance
//!    from the pre-instantiated component, memory from the pool, an epoch
//!    deadline, WASI context) and on one reused instance;
//! 2. ingest throughput of `shop-orders` through `Engine::ingest`: every
//!    purchase of the real CDNOW log (`examples/data/cdnow/`, 69,659
//!    orders of 23,570 customers) as shop orders in batches, each batch one
//!    call and one write transaction (customers matched by the shop's id
//!    through the keyed link index, created or updated, an order
//!    interaction logged per order, every command audited);
//! 3. the durable event queue: `Engine::create_customer` one customer at a
//!    time with no subscriber, then with `misbehave` subscribed (its
//!    `customer-created` event queued in the add's transaction), and the
//!    delivery latency from the add's return (its commit) to the end of
//!    the plugin's `on-event` call, observed by `Engine::drain_events`.
//!
//! Run it with `cargo bench -p custodian --bench plugins`. Sizes scale with
//! `CUSTODIAN_BENCH_SCALE` (or `-- --scale 0.1`); `CUSTODIAN_BENCH_DIR`
//! chooses where the database is created. Nothing here asserts on timings.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

#[allow(dead_code)]
mod common;

use std::time::Instant;

use custodian::__bench::SandboxProbe;
use custodian::{AuditDurability, Context, Engine, Grant, MasterKey, NewCustomer};

use common::{Config, count, mean, median, met, micros, percentile, print_header};

/// Timed calls on fresh instances (after 100 untimed).
const FRESH_CALLS: usize = 5_000;
/// Timed calls on the reused instance.
const WARM_CALLS: usize = 50_000;
/// The event's field bytes.
const PAYLOAD: usize = 1024;
/// Orders per ingest call.
const BATCH: usize = 1_000;

fn main() {
    let config = Config::from_env_and_args();
    let dir = config.tempdir();
    print_header(
        "Custodian plugin benchmark",
        &config,
        dir.path(),
        false,
        &[("wasmtime", "48 (pooling allocator, epoch deadlines)".into())],
    );
    sandbox(&config);
    ingest(&config, dir.path());
    events(&config, dir.path());
}

fn sandbox(config: &Config) {
    let wasm = std::fs::read(custodian_test_artifacts::SMS_REMINDER).unwrap();
    let probe = SandboxProbe::new(&wasm, PAYLOAD).unwrap();
    for _ in 0..100 {
        assert_eq!(probe.fresh_call().unwrap(), 0);
    }
    let n = config.scaled(FRESH_CALLS);
    let mut fresh = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let commands = probe.fresh_call().unwrap();
        fresh.push(start.elapsed().as_nanos() as u64);
        assert_eq!(commands, 0);
    }
    let mut warm_instance = probe.warm().unwrap();
    for _ in 0..100 {
        warm_instance.call().unwrap();
    }
    let n = config.scaled(WARM_CALLS);
    let mut warm = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let commands = warm_instance.call().unwrap();
        warm.push(start.elapsed().as_nanos() as u64);
        assert_eq!(commands, 0);
    }
    let fresh_mean = mean(&fresh);
    let warm_mean = mean(&warm);
    fresh.sort_unstable();
    warm.sort_unstable();
    println!("## on-event call overhead (sms-reminder, {PAYLOAD} B event, no command)\n");
    println!("| instance | calls | median | p99 | mean | aim | |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    println!(
        "| fresh per call (engine default) | {} | {} | {} | {} | ≤ 50 µs | {} |",
        count(fresh.len()),
        micros(median(&fresh), 1),
        micros(percentile(&fresh, 0.99), 1),
        micros(fresh_mean, 1),
        met(median(&fresh).as_micros() <= 50)
    );
    println!(
        "| reused | {} | {} | {} | {} | ≤ 5 µs | {} |",
        count(warm.len()),
        micros(median(&warm), 2),
        micros(percentile(&warm, 0.99), 2),
        micros(warm_mean, 2),
        met(median(&warm).as_nanos() <= 5_000)
    );
    println!();
}

/// The CDNOW purchase log as shop orders, in file order.
fn cdnow_orders(limit: usize) -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("examples/data/cdnow/CDNOW_master.txt")).unwrap();
    let mut orders = Vec::new();
    for (n, line) in text.lines().skip(1).enumerate() {
        if orders.len() >= limit {
            break;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        let [customer, date, cds, dollars] = cols[..] else {
            panic!("bad CDNOW line {line:?}");
        };
        let placed_at = format!("{}-{}-{}T12:00:00Z", &date[..4], &date[4..6], &date[6..8]);
        orders.push(format!(
            concat!(
                r#"{{"order_id":"CD{n}","placed_at":"{placed_at}","currency":"USD","total":"{dollars}","#,
                r#""customer":{{"id":"{customer}","name":"CDNOW customer {customer}"}},"#,
                r#""items":[{{"sku":"cd","name":"Compact discs","quantity":{cds}}}]}}"#
            ),
            n = n,
            placed_at = placed_at,
            dollars = dollars,
            customer = customer,
            cds = cds,
        ));
    }
    orders
}

fn ingest(config: &Config, dir: &std::path::Path) {
    let orders = cdnow_orders(config.scaled(69_659));
    let engine = Engine::builder()
        .path(dir.join("ingest.redb"))
        .master_key(MasterKey::generate())
        .create(true)
        .audit_durability(AuditDurability::buffered())
        .open()
        .unwrap();
    let admin = Context::new("admin", "benchmark");
    let wasm = std::fs::read(custodian_test_artifacts::SHOP_ORDERS).unwrap();
    let manifest = engine.inspect_plugin(&wasm).unwrap();
    engine
        .install_plugin(&admin, &wasm, Grant::all(&manifest))
        .unwrap();
    let payloads: Vec<String> = orders
        .chunks(BATCH)
        .map(|chunk| format!("[{}]", chunk.join(",")))
        .collect();
    let mut created = 0;
    let mut interactions = 0;
    let start = Instant::now();
    for payload in &payloads {
        let report = engine.ingest("shop-orders", payload.as_bytes()).unwrap();
        created += report.created.len();
        interactions += report.interactions.len();
    }
    let elapsed = start.elapsed();
    assert_eq!(interactions, orders.len());
    let rate = orders.len() as f64 / elapsed.as_secs_f64();
    println!("## shop-orders ingest (CDNOW purchase log, {BATCH} orders per call)\n");
    println!("| orders | customers created | calls | time | orders/s | aim | |");
    println!("|---:|---:|---:|---:|---:|---:|---|");
    println!(
        "| {} | {} | {} | {:.2} s | {} | ≥ 10,000 | {} |",
        count(orders.len()),
        count(created),
        count(payloads.len()),
        elapsed.as_secs_f64(),
        count(rate as usize),
        met(rate >= 10_000.0)
    );
    println!();
}

/// Customers added one at a time, per measurement.
const ADDS: usize = 1_000;

/// `create_customer` latencies (sorted, ns), draining the event queue
/// after each add; with `delivery`, the time from each add's return to
/// the end of its delivery.
fn adds(
    engine: &Engine,
    admin: &Context,
    tag: &str,
    n: usize,
    delivery: Option<&mut Vec<u64>>,
) -> Vec<u64> {
    let mut latencies = Vec::with_capacity(n);
    let mut delivered = delivery;
    for i in 0..n + 50 {
        let new = NewCustomer::new().field("name", format!("{tag} {i}"));
        let start = Instant::now();
        engine.create_customer(admin, new).unwrap();
        let added = Instant::now();
        assert_eq!(engine.drain_events().unwrap(), 0);
        let drained = added.elapsed();
        if i >= 50 {
            latencies.push(added.duration_since(start).as_nanos() as u64);
            if let Some(d) = delivered.as_deref_mut() {
                d.push(drained.as_nanos() as u64);
            }
        }
    }
    latencies.sort_unstable();
    latencies
}

fn events(config: &Config, dir: &std::path::Path) {
    let n = config.scaled(ADDS);
    let engine = Engine::builder()
        .path(dir.join("events.redb"))
        .master_key(MasterKey::generate())
        .create(true)
        .open()
        .unwrap();
    let admin = Context::new("admin", "benchmark");
    let alone = adds(&engine, &admin, "Alone", n, None);
    let wasm = std::fs::read(custodian_test_artifacts::MISBEHAVE).unwrap();
    let manifest = engine.inspect_plugin(&wasm).unwrap();
    let mut grant = Grant::all(&manifest);
    grant.events = [custodian::EventKind::CustomerCreated].into();
    engine.install_plugin(&admin, &wasm, grant).unwrap();
    let mut delivery = Vec::with_capacity(n);
    let subscribed = adds(&engine, &admin, "Subscribed", n, Some(&mut delivery));
    delivery.sort_unstable();
    println!(
        "## event queue (one customer per add, durable commits; `misbehave` subscribed to `customer-created`)\n"
    );
    println!("| measure | adds | median | p99 | mean |");
    println!("|---|---:|---:|---:|---:|");
    for (what, sorted) in [
        ("`create_customer`, no subscriber", &alone),
        (
            "`create_customer`, one subscriber (event queued)",
            &subscribed,
        ),
        ("delivery, add's return to end of `on-event`", &delivery),
    ] {
        println!(
            "| {what} | {} | {} | {} | {} |",
            count(sorted.len()),
            micros(median(sorted), 0),
            micros(percentile(sorted, 0.99), 0),
            micros(mean(sorted), 0),
        );
    }
    println!();
}
