//! Benchmark of the retention sweep.
//!
//! Builds one database of 1,000,000 customers (`--scale` changes the
//! number) created on the engine clock in eight waves, one a year, so that
//! the default `retention.rhai` finds customers to keep, make dormant and
//! notify; one customer in ten is tagged `renovation` (longer periods) and
//! 100 are under legal hold. Then times, on that database:
//!
//! 1. a dry run at `now` (decide every customer, change nothing): the
//!    sweep reads only clear-text status, timestamps, tags, holds and
//!    notices, and decrypts nothing;
//! 2. the real sweep at `now` (dormant and notified customers written, a
//!    notice queued in the outbox per notified customer, an audit entry per
//!    change, 1,000 customers per transaction);
//! 3. the same sweep again (idempotent: it decides everyone, changes
//!    nothing);
//! 4. the sweep 31 days later, which anonymizes every notified customer
//!    (record, indexes and queued notice removed, aggregates and a
//!    deletion record kept, data key destroyed), and rewrites the data
//!    file once at its end;
//! 5. five erasures of one customer each, every one returning once the
//!    data file is rewritten, beside a copy of the same file by the file
//!    system.
//!
//! Run it with `cargo bench -p custodian --bench retention`.
//! `CUSTODIAN_BENCH_SCALE` (or `-- --scale 0.1`) scales the customer
//! count; `CUSTODIAN_BENCH_DIR` chooses where the database is created.
//! Nothing here asserts on timings.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

#[allow(dead_code)]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use custodian::{
    AuditDurability, Clock, Context, Engine, ImportOptions, MasterKey, NewCustomer,
    RetentionReport, SweepOptions,
};

use common::{Config, count, met, print_header};

const CUSTOMERS: usize = 1_000_000;
const WAVES: usize = 8;
const HELD: usize = 100;
const DAY: i64 = 86_400_000_000;

fn main() {
    let config = Config::from_env_and_args();
    let dir = config.tempdir();
    let n = config.scaled(CUSTOMERS);
    print_header(
        "Custodian retention benchmark",
        &config,
        dir.path(),
        true,
        &[("customers", count(n))],
    );
    let now: DateTime<Utc> = "2026-11-29T00:00:00Z".parse().unwrap();
    let clock = Arc::new(AtomicI64::new(now.timestamp_micros()));
    let read = Arc::clone(&clock);
    let engine = Engine::builder()
        .path(dir.path().join("crm.redb"))
        .master_key(MasterKey::generate())
        .create(true)
        .audit_durability(AuditDurability::buffered())
        .clock(Clock::from_fn(move || {
            DateTime::from_timestamp_micros(read.load(Ordering::SeqCst)).unwrap()
        }))
        .open()
        .unwrap();
    let ctx = Context::new("admin", "retention benchmark");

    let start = Instant::now();
    let per_wave = n.div_ceil(WAVES);
    let mut first_ids = Vec::new();
    for wave in 0..WAVES {
        // Wave k was created k years and 20 days ago.
        let created = now.timestamp_micros() - (wave as i64 * 365 + 20) * DAY;
        clock.store(created, Ordering::SeqCst);
        let rows = (0..per_wave.min(n - wave * per_wave)).map(|i| {
            let k = wave * per_wave + i;
            let mut new = NewCustomer::new()
                .field("name", format!("客户{k}"))
                .field("phone", format!("139{:08}", k));
            if k % 10 == 0 {
                new = new.field("tags", "renovation");
            }
            new
        });
        let options = ImportOptions { batch_size: 10_000 };
        let report = engine
            .import_customers(&ctx, rows, &options, |_| {})
            .unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors.first());
        first_ids.push(report.first_id.unwrap());
    }
    clock.store(now.timestamp_micros(), Ordering::SeqCst);
    // Holds on the oldest wave, which the policy would otherwise notify.
    let oldest = first_ids[WAVES - 1];
    for id in oldest..oldest + HELD as u64 {
        engine.set_legal_hold(&ctx, id, Some("litigation")).unwrap();
    }
    engine.flush_audit().unwrap();
    println!(
        "Built in {:.1} s: {} customers in {WAVES} yearly waves, {HELD} under legal hold.\n",
        start.elapsed().as_secs_f64(),
        count(n)
    );

    println!("| run | now | customers | time | customers/s | changes |");
    println!("|---|---|---|---|---|---|");
    let dry = sweep(&engine, &ctx, now, true, "1. dry run");
    let real = sweep(&engine, &ctx, now, false, "2. sweep");
    let again = sweep(&engine, &ctx, now, false, "3. same sweep again");
    let later = now + chrono::Duration::days(31);
    clock.store(later.timestamp_micros(), Ordering::SeqCst);
    let removal = sweep(&engine, &ctx, later, false, "4. sweep 31 days later");
    println!();
    println!("Changes by kind:\n");
    for (label, report) in [
        ("dry run", &dry.1),
        ("sweep", &real.1),
        ("same sweep again", &again.1),
        ("31 days later", &removal.1),
    ] {
        let kinds: Vec<String> = report
            .counts
            .iter()
            .map(|(t, n)| format!("{} {}", t.as_str(), count(*n as usize)))
            .collect();
        println!(
            "- {label}: {}",
            if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds.join(", ")
            }
        );
    }
    assert_eq!(
        dry.1.changes, real.1.changes,
        "the dry run predicts the sweep"
    );
    assert!(again.1.changes.is_empty(), "a second sweep changes nothing");
    println!();
    erasures(&engine, &ctx, &dir.path().join("crm.redb"), first_ids[0]);
    println!();
    println!("| target | aim | measured | |");
    println!("|---|---|---|---|");
    let aim = Duration::from_secs(10);
    println!(
        "| dry run over {} customers | ≤ 10 s | {:.2} s | {} |",
        count(n),
        dry.0.as_secs_f64(),
        met(dry.0 <= aim.mul_f64(n as f64 / CUSTOMERS as f64))
    );
}

/// Step 5: erasures of single customers on the swept database, each
/// returning once the data file is rewritten; beside them, a copy of the
/// same file by the file system, the floor of any rewrite.
fn erasures(engine: &Engine, ctx: &Context, path: &Path, first: u64) {
    const ERASED: u64 = 5;
    let size = std::fs::metadata(path).unwrap().len();
    let mut times: Vec<Duration> = (first..first + ERASED)
        .map(|id| {
            let start = Instant::now();
            engine.subject_erase(ctx, id, "erasure request").unwrap();
            start.elapsed()
        })
        .collect();
    times.sort();
    let copy_path = path.with_extension("copy");
    let start = Instant::now();
    std::fs::copy(path, &copy_path).unwrap();
    std::fs::File::open(&copy_path).unwrap().sync_all().unwrap();
    let copy = start.elapsed();
    std::fs::remove_file(&copy_path).unwrap();
    let mib = size as f64 / f64::from(1 << 20);
    println!("| 5. erasure of one customer, data file of {mib:.0} MiB | time |");
    println!("|---|---|");
    println!(
        "| median of {ERASED} (fastest {:.2} s, slowest {:.2} s) | {:.2} s |",
        times[0].as_secs_f64(),
        times[times.len() - 1].as_secs_f64(),
        times[times.len() / 2].as_secs_f64(),
    );
    println!(
        "| peer: the file copied by the file system, synced | {:.2} s |",
        copy.as_secs_f64()
    );
}

fn sweep(
    engine: &Engine,
    ctx: &Context,
    now: DateTime<Utc>,
    dry_run: bool,
    label: &str,
) -> (Duration, RetentionReport) {
    let options = SweepOptions {
        dry_run,
        ..SweepOptions::default()
    };
    let start = Instant::now();
    let report = engine
        .retention_sweep_with(ctx, now, &options, |_| {})
        .unwrap();
    let elapsed = start.elapsed();
    println!(
        "| {label} | {} | {} | {:.2} s | {} | {} |",
        now.format("%Y-%m-%d"),
        count(report.examined as usize),
        elapsed.as_secs_f64(),
        count((report.examined as f64 / elapsed.as_secs_f64()) as usize),
        count(report.changes.len()),
    );
    (elapsed, report)
}
