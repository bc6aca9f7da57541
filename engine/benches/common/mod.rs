//! What the benchmark programs share: the configuration, the machine facts
//! at the top of a report, latency statistics, number formatting and a
//! deterministic pseudo-random generator with the data it makes.
//!
//! Included by each program with `mod common;`; Cargo does not take
//! `benches/common/mod.rs` for a benchmark of its own.

#![allow(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::Path;
use std::time::{Duration, Instant};

use custodian::{Context, CustomerId, Engine, ImportOptions};

// ---------------------------------------------------------------------------
// Configuration and machine facts

pub struct Config {
    pub scale: f64,
    pub dir: Option<String>,
}

impl Config {
    /// `--scale X` / `--scale=X` wins over `CUSTODIAN_BENCH_SCALE`; other
    /// arguments (cargo passes `--bench`) are ignored.
    pub fn from_env_and_args() -> Self {
        let mut from_args = None;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            if let Some(value) = arg.strip_prefix("--scale=") {
                from_args = Some(value.to_string());
            } else if arg == "--scale" {
                from_args = args.next();
            }
        }
        let scale = match from_args.or_else(|| std::env::var("CUSTODIAN_BENCH_SCALE").ok()) {
            None => 1.0,
            Some(text) => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .unwrap_or_else(|| panic!("the scale must be a positive number, not `{text}`")),
        };
        Self {
            scale,
            dir: std::env::var("CUSTODIAN_BENCH_DIR").ok(),
        }
    }

    pub fn scaled(&self, n: usize) -> usize {
        ((n as f64 * self.scale).round() as usize).max(1)
    }

    /// A temporary directory for the databases, under `CUSTODIAN_BENCH_DIR`
    /// or the system's default.
    pub fn tempdir(&self) -> tempfile::TempDir {
        match &self.dir {
            Some(parent) => tempfile::tempdir_in(parent),
            None => tempfile::tempdir(),
        }
        .expect("create the benchmark directory")
    }
}

/// Prints the report's `# title` and the facts of the run: date, cores,
/// CPU, the machine's memory if `memory` is set, scale, data directory,
/// then each of `extra` as `- name: value`, and a blank line.
pub fn print_header(
    title: &str,
    config: &Config,
    dir: &Path,
    memory: bool,
    extra: &[(&str, String)],
) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = proc_field(&cpuinfo, "model name").unwrap_or("unknown");
    println!("# {title}\n");
    println!(
        "- date: {}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    println!("- cores (nproc): {cores}");
    println!("- CPU: {cpu}");
    if memory {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = proc_field(&meminfo, "MemTotal")
            .and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or_else(
                || "unknown".to_string(),
                |kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0),
            );
        println!("- memory: {memory}");
    }
    println!("- scale: {}", config.scale);
    println!("- data directory: {}", dir.display());
    for (name, value) in extra {
        println!("- {name}: {value}");
    }
    println!();
}

/// The value of the first `name : value` line of a /proc file.
fn proc_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then_some(value.trim())
    })
}

// ---------------------------------------------------------------------------
// Latencies, in nanoseconds

/// The latency at quantile `q` (0 to 1) of `sorted`; zero if it is empty.
pub fn percentile(sorted: &[u64], q: f64) -> Duration {
    let last = sorted.len().saturating_sub(1);
    let index = (last as f64 * q).round() as usize;
    Duration::from_nanos(sorted.get(index).copied().unwrap_or(0))
}

pub fn median(sorted: &[u64]) -> Duration {
    percentile(sorted, 0.5)
}

pub fn mean(latencies: &[u64]) -> Duration {
    let total: u64 = latencies.iter().sum();
    Duration::from_nanos(total / latencies.len().max(1) as u64)
}

// ---------------------------------------------------------------------------
// Formatting

/// `1234567` → `1,234,567`.
pub fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds with `places` decimals, or milliseconds from 1 ms on.
pub fn micros(d: Duration, places: usize) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{us:.places$} µs")
    }
}

/// The last column of a targets table.
pub fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

// ---------------------------------------------------------------------------
// Generated data

/// Imports `csv_text` as `ctx` in batches of `batch_size` and checks that
/// all `expected` rows went in: the time the import took and the first
/// customer id it gave out.
pub fn import_all(
    engine: &Engine,
    ctx: &Context,
    csv_text: &str,
    batch_size: usize,
    expected: usize,
) -> (Duration, CustomerId) {
    let options = ImportOptions { batch_size };
    let start = Instant::now();
    let report = engine
        .import_csv(ctx, csv_text.as_bytes(), &options, |_| {})
        .expect("import the CSV");
    let elapsed = start.elapsed();
    if let Some(first) = report.errors.first() {
        panic!(
            "{} rows were refused; the first: {first}",
            report.errors.len()
        );
    }
    assert_eq!(report.imported as usize, expected, "every row is imported");
    (elapsed, report.first_id.expect("a first id"))
}

/// The header of the customer CSV files the programs generate: the fields,
/// then the separate consent an ID number needs and the notice version.
pub const CSV_HEADER: &str =
    "name,phone,email,company,tags,address,id_number,consents,notice_version\n";

/// The consent columns of a row: an ID number comes with its separate consent.
pub fn consent_columns(id_number: &str) -> &'static str {
    if id_number.is_empty() {
        ","
    } else {
        "identity_verification(id_number),2026-01"
    }
}

/// An 18-digit PRC resident ID number with a valid check digit, issued in
/// the six-digit `region`.
pub fn resident_id(rng: &mut Rng, region: &str) -> String {
    let body = format!(
        "{region}{}{:02}{:02}{:03}",
        1960 + rng.below(45),
        1 + rng.below(12),
        1 + rng.below(28),
        rng.below(1_000)
    );
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = body
        .bytes()
        .zip(WEIGHTS)
        .map(|(digit, weight)| u32::from(digit - b'0') * weight)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    format!("{body}{check}")
}

/// SplitMix64: small, fast and deterministic; good enough to spread reads
/// and generate customers.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Budgets far above anything a benchmark reads: every read pays the
/// guard's whole path and none is refused.
pub const GENEROUS_LIMITS: &str = "fn limits(p) {
    let lots = #{ hour: 1000000000, day: 1000000000, month: 1000000000 };
    #{ rows: lots, customers: lots, misses: lots }
}";

/// The default pack with its `limits` replaced by `limits` (empty: none).
pub fn pack_with_limits(limits: &str) -> custodian::PolicyPack {
    let mut scripts = Vec::new();
    let (mut roles, mut cases) = (String::new(), None);
    for (name, text) in custodian::PolicyPack::default_pack().files() {
        match name {
            "roles.toml" => roles = text.to_string(),
            "cases.toml" => cases = Some(text.to_string()),
            _ => scripts.push((name.to_string(), text.to_string())),
        }
    }
    for (name, text) in &mut scripts {
        if name == "access.rhai" {
            let at = text
                .find("\n// Budgets:")
                .expect("access.rhai declares limits");
            text.truncate(at);
            text.push('\n');
            text.push_str(limits);
        }
    }
    custodian::PolicyPack::from_sources(scripts, roles, cases).expect("the pack")
}
