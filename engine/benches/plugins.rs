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
//!    time on two engines whose adds alternate, one with no subscriber and
//!    one with `misbehave` subscribed (its `customer-created` event queued
//!    in the add's transaction), the median of the paired differences, and
//!    the delivery latency from the add's return (its commit) to the end
//!    of the plugin's `on-event` call, observed by `Engine::drain_events`.
//!    On a RAM-backed directory (`CUSTODIAN_BENCH_DIR=/dev/shm`) an fsync
//!    costs next to nothing, which leaves the queue's own work.
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

/// Customers added one at a time, per engine.
const ADDS: usize = 1_000;
/// Untimed adds per engine before the timed ones.
const WARM_ADDS: usize = 50;

/// An engine on a fresh database, durable audit (the default).
fn fresh_engine(path: std::path::PathBuf) -> Engine {
    Engine::builder()
        .path(path)
        .master_key(MasterKey::generate())
        .create(true)
        .open()
        .unwrap()
}

/// Adds one customer and drains the event queue (so the next add meets an
/// idle worker); returns the add's latency and the time from its return
/// to the end of the drain (its delivery, if a plugin is subscribed).
fn add_one(engine: &Engine, admin: &Context, name: String) -> (u64, u64) {
    let new = NewCustomer::new().field("name", name);
    let start = Instant::now();
    engine.create_customer(admin, new).unwrap();
    let added = Instant::now();
    assert_eq!(engine.drain_events().unwrap(), 0);
    let drained = added.elapsed();
    (
        added.duration_since(start).as_nanos() as u64,
        drained.as_nanos() as u64,
    )
}

/// Two engines side by side, one with `misbehave` subscribed to
/// `customer-created`; their adds alternate, so whatever the disk does
/// during the run falls on both alike.
fn events(config: &Config, dir: &std::path::Path) {
    let n = config.scaled(ADDS);
    let admin = Context::new("admin", "benchmark");
    let alone = fresh_engine(dir.join("events-alone.redb"));
    let subscribed = fresh_engine(dir.join("events-subscribed.redb"));
    let wasm = std::fs::read(custodian_test_artifacts::MISBEHAVE).unwrap();
    let manifest = subscribed.inspect_plugin(&wasm).unwrap();
    let mut grant = Grant::all(&manifest);
    grant.events = [custodian::EventKind::CustomerCreated].into();
    subscribed.install_plugin(&admin, &wasm, grant).unwrap();

    let mut without = Vec::with_capacity(n);
    let mut with = Vec::with_capacity(n);
    let mut delivery = Vec::with_capacity(n);
    for i in 0..n + WARM_ADDS {
        // Alternate which engine goes first, so neither always follows
        // the other's fsync.
        let order: [bool; 2] = if i % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for with_plugin in order {
            let engine = if with_plugin { &subscribed } else { &alone };
            let (add, drained) = add_one(engine, &admin, format!("Customer {i}"));
            if i < WARM_ADDS {
                continue;
            }
            if with_plugin {
                with.push(add);
                delivery.push(drained);
            } else {
                without.push(add);
            }
        }
    }
    let paired: Vec<i64> = with
        .iter()
        .zip(&without)
        .map(|(w, a)| *w as i64 - *a as i64)
        .collect();
    let mut paired_sorted = paired.clone();
    paired_sorted.sort_unstable();
    let paired_median = paired_sorted[paired_sorted.len() / 2];
    without.sort_unstable();
    with.sort_unstable();
    delivery.sort_unstable();
    println!(
        "## event queue (one customer per add, durable commits; two engines, adds alternating; `misbehave` subscribed to `customer-created` on one)\n"
    );
    println!("| measure | adds | median | p99 | mean |");
    println!("|---|---:|---:|---:|---:|");
    for (what, sorted) in [
        ("`create_customer`, no subscriber", &without),
        ("`create_customer`, one subscriber (event queued)", &with),
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
    println!(
        "\nmedian of paired differences (add with subscriber minus the add beside it without): {:.1} µs\n",
        paired_median as f64 / 1e3
    );
}
