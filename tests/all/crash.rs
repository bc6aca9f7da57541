//! Crash consistency: `custodian customer import` of a large CSV file is
//! killed with SIGKILL at pseudo-random moments, twenty times over the same
//! database. After every kill the database opens, its audit chain verifies,
//! every row the command acknowledged on stderr is there (and readable), and
//! batches are all or nothing.
//!
//! The kill moments come from a seed printed at the start; set
//! `CUSTODIAN_CRASH_SEED` to replay a failing sequence.

#![cfg(unix)]

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use custodian::{AuditDurability, Engine, Query};

use crate::{Fixture, admin, run_and_kill};

/// Import runs, each killed once.
const RUNS: u64 = 20;
/// Rows per CSV file: far more than a run gets through before its kill.
const ROWS: u64 = 20_000;
/// Customers per commit.
const BATCH: u64 = 1_000;

/// Read entries of the checks are committed in bulk, on drop at the latest.
/// No background flush: it could hold the database open past `drop` and
/// make the next import find it locked.
const BUFFERED: AuditDurability = AuditDurability::Buffered {
    flush_interval: Duration::from_secs(24 * 3600),
    max_pending: 10_000,
};

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `low..high`.
    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }
}

fn seed() -> u64 {
    if let Ok(text) = std::env::var("CUSTODIAN_CRASH_SEED") {
        return text
            .trim()
            .parse()
            .expect("CUSTODIAN_CRASH_SEED is a number");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    (now.as_nanos() as u64 ^ u64::from(std::process::id())) | 1
}

/// Row `row` (from 0) of run `run`'s file; it is on line `row + 2`.
fn phone(run: u64, row: u64) -> String {
    format!("139{run:02}{row:06}")
}

fn name(run: u64, row: u64) -> String {
    format!("Customer {run}-{row}")
}

fn email(run: u64, row: u64) -> String {
    format!("r{run}.c{row}@example.com")
}

fn write_csv(path: &Path, run: u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(out, "name,phone,email").unwrap();
    for row in 0..ROWS {
        writeln!(
            out,
            "{},{},{}",
            name(run, row),
            phone(run, row),
            email(run, row)
        )
        .unwrap();
    }
    out.flush().unwrap();
}

/// One `committed N customers through line L (ids a..=b)` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Commit {
    imported: u64,
    line: u64,
    first: u64,
    last: u64,
}

/// Parses a complete acknowledgement line; a line cut short by the kill
/// does not parse.
fn parse_commit(text: &str) -> Option<Commit> {
    let rest = text.strip_prefix("committed ")?;
    let (imported, rest) = rest.split_once(" customers through line ")?;
    let (line, rest) = rest.split_once(" (ids ")?;
    let (first, last) = rest.strip_suffix(')')?.split_once("..=")?;
    Some(Commit {
        imported: imported.parse().ok()?,
        line: line.parse().ok()?,
        first: first.parse().ok()?,
        last: last.parse().ok()?,
    })
}

/// When to kill the import.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// This many milliseconds after the start.
    After(u64),
    /// This many milliseconds after the k-th acknowledged commit.
    AfterCommit(u64, u64),
}

/// Runs the import of `csv` and kills it as `kill` says. Returns the
/// acknowledged commits and every stderr line.
fn import_and_kill(fixture: &Fixture, csv: &Path, kill: Kill) -> (Vec<Commit>, Vec<String>) {
    let mut command = fixture.custodian();
    command
        .args(["customer", "import"])
        .arg(csv)
        .args(["--batch", &BATCH.to_string()]);
    let kill = match kill {
        Kill::After(ms) => (0, ms),
        Kill::AfterCommit(k, ms) => (k, ms),
    };
    let (status, lines) = run_and_kill(command, |l| parse_commit(l).is_some(), Some(kill));
    assert!(
        status.success() || status.signal() == Some(9),
        "the import failed by itself ({status}): {lines:#?}"
    );
    let commits: Vec<Commit> = lines.iter().filter_map(|l| parse_commit(l)).collect();
    (commits, lines)
}

#[test]
fn sigkill_during_import_loses_nothing_acknowledged() {
    let seed = seed();
    eprintln!("crash seed {seed}: rerun with CUSTODIAN_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let fixture = Fixture::new();
    drop(
        Engine::builder()
            .path(fixture.db())
            .master_key(fixture.key())
            .create(true)
            .open()
            .unwrap(),
    );
    let admin = admin();
    let mut stored = 0u64;

    for run in 0..RUNS {
        let csv = fixture.dir.path().join(format!("run{run}.csv"));
        write_csv(&csv, run);
        // Every third run waits for commits, so some always land.
        let kill = if run % 3 == 2 {
            Kill::AfterCommit(rng.range(1, 3), rng.range(0, 300))
        } else {
            Kill::After(rng.range(20, 600))
        };
        let (commits, lines) = import_and_kill(&fixture, &csv, kill);
        std::fs::remove_file(&csv).unwrap();

        // The acknowledgements are consecutive whole batches, no row skipped.
        for (i, c) in commits.iter().enumerate() {
            let n = i as u64 + 1;
            assert_eq!(c.imported, n * BATCH, "run {run}: {lines:#?}");
            assert_eq!(c.line, n * BATCH + 1, "run {run}: {lines:#?}");
            assert_eq!(c.last + 1 - c.first, BATCH, "run {run}: {lines:#?}");
        }
        let acked = commits.last().map_or(0, |c| c.imported);

        let engine = Engine::builder()
            .path(fixture.db())
            .master_key(fixture.key())
            .audit_durability(BUFFERED)
            .open()
            .unwrap_or_else(|e| panic!("run {run} ({kill:?}): no open after the kill: {e}"));
        let report = engine
            .verify_audit(None)
            .unwrap_or_else(|e| panic!("run {run} ({kill:?}): the audit chain: {e}"));
        crate::lift_budgets(&engine);

        // Every acknowledged batch, and at most two more, each whole: the
        // pipeline holds one batch queued and one being written, and both
        // may commit while the caller's thread is busy sealing the next.
        let count = engine.count_customers(&admin).unwrap();
        let added = count
            .checked_sub(stored)
            .unwrap_or_else(|| panic!("run {run} ({kill:?}): {count} customers, {stored} before"));
        assert!(
            added >= acked && added <= acked + 2 * BATCH && added % BATCH == 0,
            "run {run} ({kill:?}): {added} rows stored, {acked} acknowledged"
        );
        eprintln!("run {run}: {kill:?}: {acked} rows acknowledged, {added} stored");
        // One entry per customer created, besides the first admin's.
        assert!(report.entries > count, "run {run}");
        for row in 0..added {
            let found = engine
                .find_customers(&admin, &Query::field("phone", phone(run, row)), 2)
                .unwrap_or_else(|e| panic!("run {run} ({kill:?}): row {row}: {e}"));
            assert_eq!(found.len(), 1, "run {run} ({kill:?}): row {row}");
            let c = &found[0];
            assert_eq!(c.get("name"), Some(name(run, row).as_str()));
            assert_eq!(c.get("email"), Some(email(run, row).as_str()));
            if let Some(commit) = commits.get((row / BATCH) as usize) {
                assert_eq!(c.id, commit.first + row % BATCH, "run {run}: row {row}");
            }
        }
        // The batch cut short left nothing.
        for row in [added, added + BATCH - 1] {
            if row < ROWS {
                let found = engine
                    .find_customers(&admin, &Query::field("phone", phone(run, row)), 2)
                    .unwrap();
                assert!(found.is_empty(), "run {run} ({kill:?}): row {row} stored");
            }
        }
        stored = count;
        drop(engine);
    }
    assert!(stored > 0, "no run committed anything");
}
