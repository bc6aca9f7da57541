//! Custodian's performance benchmark.
//!
//! Measures, on one database that grows from section to section:
//!
//! 1. importing customers from a generated CSV file (encrypted, indexed,
//!    audited), next to the same CSV loaded into one SQLite table;
//! 2. point reads by id and by phone, as the owner (fields decrypted) and as
//!    another principal (fields masked, nothing decrypted), on 1 and 2
//!    threads, with durable and with buffered read auditing;
//! 3. verifying an audit chain of a million entries;
//! 4. the guard's cost on a buffered masked read: blocks of reads by id
//!    alternating between a policy with no `limits` (the guard counts
//!    nothing) and one whose budgets are far above what is read (the
//!    guard's whole path: budgets looked up, rows and distinct customers
//!    checked and counted, written with the audit entries);
//! 5. reading the audit chain through its indexes (what one principal
//!    did, 1,000 entries; who touched one customer; a subject export) on
//!    the chain of section 3 and again once it has grown to ten million
//!    entries: each should cost what it returns, not the chain.
//!
//! Sections 2 and 3 run under the default policy with its budgets raised
//! far above what they read, so every read pays the guard and none is
//! refused.
//!
//! Run it with `cargo bench -p custodian --bench engine`. Every size scales
//! with `CUSTODIAN_BENCH_SCALE` (or `-- --scale 0.01`) for a quick smoke run;
//! `CUSTODIAN_BENCH_DIR` chooses the directory the databases are created in
//! (a temporary directory under the system's default otherwise). Results are
//! printed as Markdown tables. Nothing here asserts on timings.

#![allow(clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::hint::black_box;
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use custodian::{AuditDurability, Context, CustomerId, Engine, MasterKey, PrincipalKind, Query};

use common::{
    CSV_HEADER, Config, GENEROUS_LIMITS, Rng, count, import_all, median, met, pack_with_limits,
    percentile, print_header,
};

/// Customers imported (section 1).
const IMPORT_CUSTOMERS: usize = 100_000;
/// Rows per transaction, for the engine and for SQLite alike.
const BATCH_SIZE: usize = 5_000;
/// Reads per scenario with buffered auditing (all threads together).
const BUFFERED_READS: usize = 100_000;
/// Reads per scenario with durable auditing: each one waits for an fsync.
const DURABLE_READS: usize = 2_000;
/// Length of the audit chain verified in section 3.
const AUDIT_ENTRIES: usize = 1_000_000;
/// Times the verification is repeated; the median is reported.
const VERIFY_RUNS: usize = 3;

const TARGET_IMPORT_PER_S: f64 = 50_000.0;
const TARGET_BUFFERED_MEDIAN: Duration = Duration::from_micros(10);
const TARGET_VERIFY_PER_S: f64 = 2_000_000.0;
/// Reads per arm of section 4, in this many alternating blocks per arm.
const GUARD_READS: usize = 50_000;
const GUARD_BLOCKS: usize = 10;
const TARGET_GUARD_ADDED: Duration = Duration::from_micros(1);
/// The chain section 5 grows to.
const INDEXED_CHAIN: usize = 10_000_000;
/// Runs of each indexed query; the median is reported.
const INDEX_RUNS: usize = 5;
const TARGET_INDEXED_1000: Duration = Duration::from_millis(100);

fn main() {
    let config = Config::from_env_and_args();
    let dir = config.tempdir();
    print_header("Custodian benchmark", &config, dir.path(), true, &[]);

    let key = MasterKey::generate();
    let path = dir.path().join("bench.redb");
    let people = People::generate(config.scaled(IMPORT_CUSTOMERS));
    let csv_text = people.to_csv();

    // 1. Import.
    let engine = open(&path, &key, AuditDurability::Durable);
    let import = bench_import(&engine, &csv_text, people.len());
    let sqlite = bench_sqlite(dir.path(), &csv_text, people.len());
    print_import(&import, &sqlite);

    // 2. Point reads, first with durable then with buffered auditing.
    let owner = Context::new("admin", "service");
    engine
        .install_policy(&owner, &pack_with_limits(GENEROUS_LIMITS))
        .expect("install the policy with generous budgets");
    // Under the default policy support sees personal fields masked (from
    // the stored renderings: nothing is decrypted) and the admin, with a
    // stated purpose, sees every field.
    engine
        .add_principal(&owner, "wang", PrincipalKind::User, &["support"])
        .expect("add the non-owner principal");
    let other = Context::new("wang", "service");
    let data = ReadData {
        first_id: import.first_id,
        phones: people.phones,
    };
    print_reads_header();
    let durable = bench_reads(&engine, &data, &owner, &other, config.scaled(DURABLE_READS));
    drop(engine);
    let engine = open(&path, &key, AuditDurability::buffered());
    let buffered = bench_reads(
        &engine,
        &data,
        &owner,
        &other,
        config.scaled(BUFFERED_READS),
    );

    // 3. Audit verification.
    let verify = bench_verify(&engine, &data, &other, config.scaled(AUDIT_ENTRIES));

    // 4. The guard's cost.
    let guard = bench_guard(&engine, &data, &owner, &other, config.scaled(GUARD_READS));

    // 5. The audit indexes.
    let indexed = bench_indexes(&engine, &data, &owner, &other, config.scaled(INDEXED_CHAIN));
    drop(engine);

    print_summary(
        &import, &sqlite, &durable, &buffered, &verify, &guard, &indexed,
    );
}

fn open(path: &Path, key: &MasterKey, durability: AuditDurability) -> Engine {
    Engine::builder()
        .path(path)
        .master_key(key.clone())
        .create(true)
        .audit_durability(durability)
        .open()
        .expect("open the engine")
}

// ---------------------------------------------------------------------------
// Test data: plausible, unique Chinese customers

const SURNAMES: &[(&str, &str)] = &[
    ("王", "wang"),
    ("李", "li"),
    ("张", "zhang"),
    ("刘", "liu"),
    ("陈", "chen"),
    ("杨", "yang"),
    ("黄", "huang"),
    ("赵", "zhao"),
    ("吴", "wu"),
    ("周", "zhou"),
    ("徐", "xu"),
    ("孙", "sun"),
    ("马", "ma"),
    ("朱", "zhu"),
    ("胡", "hu"),
    ("郭", "guo"),
];
const GIVEN_NAMES: &[(&str, &str)] = &[
    ("伟", "wei"),
    ("芳", "fang"),
    ("娜", "na"),
    ("秀英", "xiuying"),
    ("敏", "min"),
    ("静", "jing"),
    ("丽", "li"),
    ("强", "qiang"),
    ("磊", "lei"),
    ("军", "jun"),
    ("洋", "yang"),
    ("艳", "yan"),
    ("建华", "jianhua"),
    ("晓明", "xiaoming"),
];
const MOBILE_PREFIXES: &[&str] = &[
    "139", "138", "137", "136", "135", "150", "151", "152", "158", "159", "182", "187", "188",
    "130", "131", "132", "155", "156", "185", "186", "133", "153", "180", "189", "177", "199",
];
const EMAIL_DOMAINS: &[&str] = &[
    "qq.com",
    "163.com",
    "126.com",
    "sina.com",
    "foxmail.com",
    "outlook.com",
];
const CITIES: &[(&str, &str)] = &[
    ("北京市", "朝阳区"),
    ("上海市", "浦东新区"),
    ("广东省广州市", "天河区"),
    ("广东省深圳市", "南山区"),
    ("浙江省杭州市", "西湖区"),
    ("江苏省南京市", "鼓楼区"),
    ("四川省成都市", "武侯区"),
];
const ROADS: &[&str] = &["人民路", "中山路", "解放路", "建设路", "长江路", "科技园路"];
const COMPANY_NAMES: &[&str] = &["华信", "恒达", "中科", "天成", "鑫源", "博远", "瑞丰"];
const COMPANY_KINDS: &[&str] = &["科技有限公司", "贸易有限公司", "电子商务有限公司"];
const TAGS: &[&str] = &["vip", "retail", "wholesale", "online", "offline", "repeat"];
const REGION_CODES: &[&str] = &["110105", "310115", "440106", "440305", "330106", "510107"];

/// The generated customers, as CSV rows, and the phone number of each.
struct People {
    rows: Vec<String>,
    /// Row `i`'s phone as a person would type it in a search box.
    phones: Vec<String>,
}

impl People {
    fn generate(n: usize) -> Self {
        let mut rows = Vec::with_capacity(n);
        let mut phones = Vec::with_capacity(n);
        for i in 0..n {
            let mut rng = Rng::new(i as u64);
            let (surname, surname_py) = *rng.pick(SURNAMES);
            let (given, given_py) = *rng.pick(GIVEN_NAMES);
            let phone = mobile_number(i);
            // A quarter of the file writes numbers the way people do.
            let phone_cell = if i % 4 == 0 {
                format!("+86 {} {} {}", &phone[..3], &phone[3..7], &phone[7..])
            } else {
                phone.clone()
            };
            let email = format!("{surname_py}.{given_py}{i}@{}", rng.pick(EMAIL_DOMAINS));
            let company = format!("{}{}", rng.pick(COMPANY_NAMES), rng.pick(COMPANY_KINDS));
            let tags = format!("{},{}", rng.pick(TAGS), rng.pick(TAGS));
            let (city, district) = *rng.pick(CITIES);
            let address = format!(
                "{city}{district}{}{}号{}室",
                rng.pick(ROADS),
                1 + rng.below(300),
                101 + rng.below(2_000)
            );
            // One customer in three has given an identity card number.
            let id_number = if i % 3 == 0 {
                let region = *rng.pick(REGION_CODES);
                common::resident_id(&mut rng, region)
            } else {
                String::new()
            };
            rows.push(format!(
                "{surname}{given},{phone_cell},{email},{company},\"{tags}\",{address},{id_number},{}",
                common::consent_columns(&id_number)
            ));
            phones.push(phone);
        }
        Self { rows, phones }
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn to_csv(&self) -> String {
        let mut out = String::from(CSV_HEADER);
        for row in &self.rows {
            out.push_str(row);
            out.push('\n');
        }
        out
    }
}

/// A unique 11-digit mobile number for row `i`: a real carrier prefix and a
/// scrambled subscriber number (`n ↦ a·n + b mod 10⁸` is a bijection for
/// `a` coprime with 10).
fn mobile_number(i: usize) -> String {
    let prefix = MOBILE_PREFIXES[i % MOBILE_PREFIXES.len()];
    let n = (i / MOBILE_PREFIXES.len()) as u64;
    let subscriber = (n * 48_271 + 12_345_679) % 100_000_000;
    format!("{prefix}{subscriber:08}")
}

// ---------------------------------------------------------------------------
// 1. Import

struct Import {
    customers: usize,
    elapsed: Duration,
    first_id: CustomerId,
}

struct Sqlite {
    plain: Duration,
    indexed: Duration,
    rows: usize,
}

fn bench_import(engine: &Engine, csv_text: &str, expected: usize) -> Import {
    let admin = Context::new("admin", "onboarding");
    let (elapsed, first_id) = import_all(engine, &admin, csv_text, BATCH_SIZE, expected);
    Import {
        customers: expected,
        elapsed,
        first_id,
    }
}

/// The same CSV into one SQLite table: same parser, same batches, prepared
/// insert, SQLite's default (durable) journal and sync settings. Once plain,
/// once with indexes on the three fields the engine blind-indexes.
fn bench_sqlite(dir: &Path, csv_text: &str, expected: usize) -> Sqlite {
    let plain = sqlite_import(&dir.join("plain.sqlite"), csv_text, false);
    let indexed = sqlite_import(&dir.join("indexed.sqlite"), csv_text, true);
    assert_eq!(plain.0, expected, "SQLite took every row");
    Sqlite {
        plain: plain.1,
        indexed: indexed.1,
        rows: plain.0,
    }
}

fn sqlite_import(path: &Path, csv_text: &str, indexed: bool) -> (usize, Duration) {
    let mut db = rusqlite::Connection::open(path).expect("open SQLite");
    db.execute_batch(
        "CREATE TABLE customers (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL, phone TEXT, email TEXT, company TEXT,
            tags TEXT, address TEXT, id_number TEXT)",
    )
    .expect("create the table");
    if indexed {
        db.execute_batch(
            "CREATE INDEX by_phone ON customers (phone);
             CREATE INDEX by_email ON customers (email);
             CREATE INDEX by_id_number ON customers (id_number);",
        )
        .expect("create the indexes");
    }
    let start = Instant::now();
    let mut records = csv::Reader::from_reader(csv_text.as_bytes()).into_records();
    let mut rows = 0;
    loop {
        let tx = db.transaction().expect("begin");
        let mut in_batch = 0;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO customers (name, phone, email, company, tags, address, id_number)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .expect("prepare the insert");
            for record in records.by_ref().take(BATCH_SIZE) {
                let record = record.expect("a CSV row");
                // The fields only: SQLite has no consent ledger.
                let values = record.iter().take(7).map(|v| (!v.is_empty()).then_some(v));
                insert
                    .execute(rusqlite::params_from_iter(values))
                    .expect("insert");
                in_batch += 1;
            }
        }
        tx.commit().expect("commit");
        rows += in_batch;
        if in_batch < BATCH_SIZE {
            break;
        }
    }
    (rows, start.elapsed())
}

fn print_import(import: &Import, sqlite: &Sqlite) {
    let custodian = per_second(import.customers, import.elapsed);
    let plain = per_second(sqlite.rows, sqlite.plain);
    let indexed = per_second(sqlite.rows, sqlite.indexed);
    println!(
        "## 1. Import of {} customers from CSV\n",
        count(import.customers)
    );
    println!("| what | rows | time | rows/s | SQLite ÷ Custodian |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| Custodian `import_csv` (sealed, blind-indexed, audited; batches of {}) | {} | {} | {} | |",
        count(BATCH_SIZE),
        count(import.customers),
        seconds(import.elapsed),
        count(custodian as usize),
    );
    println!(
        "| SQLite, one plain table (prepared insert, batches of {}) | {} | {} | {} | {:.1}× |",
        count(BATCH_SIZE),
        count(sqlite.rows),
        seconds(sqlite.plain),
        count(plain as usize),
        plain / custodian,
    );
    println!(
        "| SQLite, same + indexes on phone, email, id_number | {} | {} | {} | {:.1}× |",
        count(sqlite.rows),
        seconds(sqlite.indexed),
        count(indexed as usize),
        indexed / custodian,
    );
    println!();
}

// ---------------------------------------------------------------------------
// 2. Point reads

/// What the readers need to know about the imported customers: row `i` has
/// id `first_id + i` and phone `phones[i]`.
struct ReadData {
    first_id: CustomerId,
    phones: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lookup {
    Id,
    Phone,
}

/// Per-operation latencies and the wall time of one scenario.
struct Measured {
    label: String,
    threads: usize,
    ops: usize,
    wall: Duration,
    /// Sorted, in nanoseconds.
    latencies: Vec<u64>,
}

impl Measured {
    fn median(&self) -> Duration {
        common::median(&self.latencies)
    }

    fn p99(&self) -> Duration {
        common::percentile(&self.latencies, 0.99)
    }

    fn max(&self) -> Duration {
        common::percentile(&self.latencies, 1.0)
    }

    fn mean(&self) -> Duration {
        common::mean(&self.latencies)
    }

    fn ops_per_second(&self) -> f64 {
        per_second(self.ops, self.wall)
    }
}

fn print_reads_header() {
    println!("## 2. Point reads\n");
    println!("Owner = `admin`, who owns every customer: personal fields are decrypted.");
    println!("Other = `wang` (role `support`): personal fields come back masked, nothing is");
    println!("decrypted, the ID number is hidden. Every read appends an audit entry.\n");
    println!("| audit | reader | lookup | threads | ops | median | mean | p99 | max | ops/s |");
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
}

fn bench_reads(
    engine: &Engine,
    data: &ReadData,
    owner: &Context,
    other: &Context,
    ops: usize,
) -> Vec<Measured> {
    let mode = match engine.audit_durability() {
        AuditDurability::Durable => "durable",
        AuditDurability::Buffered { .. } => "buffered",
    };
    let warmup = (ops / 10).clamp(1, 1_000);
    let mut results = Vec::new();
    for (reader, ctx) in [("owner", owner), ("other", other)] {
        check_view(engine, data, ctx, reader == "owner");
        for lookup in [Lookup::Id, Lookup::Phone] {
            for threads in [1, 2] {
                let read =
                    |engine: &Engine, rng: &mut Rng| point_read(engine, data, ctx, lookup, rng);
                measure(engine, threads, warmup, &read);
                let mut m = measure(engine, threads, ops, &read);
                let lookup_name = match lookup {
                    Lookup::Id => "by id",
                    Lookup::Phone => "by phone",
                };
                m.label = format!("{mode} | {reader} | {lookup_name}");
                print_measured(&m);
                results.push(m);
            }
        }
    }
    results
}

/// One random point read, checked to have found the right customer.
fn point_read(engine: &Engine, data: &ReadData, ctx: &Context, lookup: Lookup, rng: &mut Rng) {
    let row = rng.below(data.phones.len());
    let id = data.first_id + row as u64;
    match lookup {
        Lookup::Id => {
            let customer = engine.customer(ctx, id).expect("read by id");
            assert_eq!(customer.id, id);
            black_box(customer);
        }
        Lookup::Phone => {
            let query = Query::field("phone", data.phones[row].as_str());
            let found = engine
                .find_customers(ctx, &query, 1)
                .expect("find by phone");
            assert!(found.len() == 1 && found[0].id == id, "phone lookup hit");
            black_box(found);
        }
    }
}

/// Makes sure the owner really decrypts and the other principal really
/// sees masks, so the two rows measure what they say.
fn check_view(engine: &Engine, data: &ReadData, ctx: &Context, owner: bool) {
    let customer = engine.customer(ctx, data.first_id).expect("read");
    let phone = customer.get("phone").expect("a phone");
    assert_eq!(phone.starts_with("+86"), owner, "decrypted: {phone}");
    assert_eq!(phone.contains("****"), !owner, "masked: {phone}");
}

/// Runs `ops` calls of `op` spread over `threads` clones of the engine,
/// timing each call and the whole.
fn measure(
    engine: &Engine,
    threads: usize,
    ops: usize,
    op: &(dyn Fn(&Engine, &mut Rng) + Sync),
) -> Measured {
    let start_line = Barrier::new(threads + 1);
    let (wall, mut latencies) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let engine = engine.clone();
                let start_line = &start_line;
                let share = ops / threads + usize::from(t < ops % threads);
                scope.spawn(move || {
                    let mut rng = Rng::new(0xC0FFEE + t as u64 + ops as u64);
                    let mut latencies = Vec::with_capacity(share);
                    start_line.wait();
                    for _ in 0..share {
                        let start = Instant::now();
                        op(&engine, &mut rng);
                        latencies.push(start.elapsed().as_nanos() as u64);
                    }
                    latencies
                })
            })
            .collect();
        start_line.wait();
        let start = Instant::now();
        let latencies: Vec<u64> = workers
            .into_iter()
            .flat_map(|w| w.join().expect("reader thread"))
            .collect();
        (start.elapsed(), latencies)
    });
    latencies.sort_unstable();
    Measured {
        label: String::new(),
        threads,
        ops,
        wall,
        latencies,
    }
}

fn print_measured(m: &Measured) {
    println!(
        "| {} | {} | {} | {} | {} | {} | {} | {} |",
        m.label,
        m.threads,
        count(m.ops),
        micros(m.median()),
        micros(m.mean()),
        micros(m.p99()),
        micros(m.max()),
        count(m.ops_per_second() as usize),
    );
}

// ---------------------------------------------------------------------------
// 3. Audit verification

struct Verify {
    /// The buffered reads that grew the chain to its length.
    fill: Option<Measured>,
    entries: u64,
    /// Sorted.
    runs: Vec<Duration>,
}

impl Verify {
    fn median(&self) -> Duration {
        self.runs[self.runs.len() / 2]
    }
}

fn bench_verify(engine: &Engine, data: &ReadData, other: &Context, target: usize) -> Verify {
    // Import and reads wrote one entry each; masked buffered reads on two
    // threads add the rest cheaply.
    let have = engine.audit_checkpoint().expect("checkpoint").seq as usize;
    let fill = (have < target).then(|| {
        let read =
            |engine: &Engine, rng: &mut Rng| point_read(engine, data, other, Lookup::Id, rng);
        let mut m = measure(engine, 2, target - have, &read);
        m.label = "buffered | other | by id (growing the chain)".into();
        m
    });
    engine.flush_audit().expect("flush the audit queue");
    let mut entries = 0;
    let mut runs: Vec<Duration> = (0..VERIFY_RUNS)
        .map(|_| {
            let start = Instant::now();
            let report = engine.verify_audit(None).expect("the chain verifies");
            let elapsed = start.elapsed();
            entries = report.entries;
            elapsed
        })
        .collect();
    runs.sort_unstable();
    let verify = Verify {
        fill,
        entries,
        runs,
    };
    if let Some(m) = &verify.fill {
        print_measured(m);
    }
    println!();
    println!("## 3. Audit verification\n");
    println!("| entries | runs | median | best | entries/s (median) |");
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {} | {} |",
        count(verify.entries as usize),
        verify.runs.len(),
        seconds(verify.median()),
        seconds(verify.runs[0]),
        count(per_second(verify.entries as usize, verify.median()) as usize),
    );
    println!();
    verify
}

// ---------------------------------------------------------------------------
// 4. The guard's cost

struct GuardCost {
    /// Sorted latencies (ns) without and with budgets.
    without: Vec<u64>,
    with: Vec<u64>,
}

impl GuardCost {
    fn added(&self) -> Duration {
        median(&self.with).saturating_sub(median(&self.without))
    }
}

fn bench_guard(
    engine: &Engine,
    data: &ReadData,
    admin: &Context,
    other: &Context,
    reads: usize,
) -> GuardCost {
    let block = (reads / GUARD_BLOCKS).max(1);
    let packs = [
        (false, pack_with_limits("")),
        (true, pack_with_limits(GENEROUS_LIMITS)),
    ];
    let mut cost = GuardCost {
        without: Vec::with_capacity(reads),
        with: Vec::with_capacity(reads),
    };
    let read = |engine: &Engine, rng: &mut Rng| point_read(engine, data, other, Lookup::Id, rng);
    for round in 0..GUARD_BLOCKS {
        // Which arm goes first alternates, so neither always follows the
        // other's audit flushes.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for arm in order {
            let (budgets, pack) = &packs[arm];
            engine
                .install_policy(admin, pack)
                .expect("install the policy");
            measure(engine, 1, (block / 10).max(1), &read);
            let m = measure(engine, 1, block, &read);
            let into = if *budgets {
                &mut cost.with
            } else {
                &mut cost.without
            };
            into.extend(m.latencies);
        }
    }
    cost.without.sort_unstable();
    cost.with.sort_unstable();
    println!("## 4. The guard's cost (buffered masked reads by id, 1 thread)\n");
    println!(
        "Blocks of {} reads alternating between a policy without `limits` and one with budgets far above what is read; {} blocks per arm.\n",
        count(block),
        GUARD_BLOCKS
    );
    println!("| policy | reads | median | p99 |");
    println!("|---|---:|---:|---:|");
    for (name, sorted) in [
        ("no budgets", &cost.without),
        ("budgets (rows, customers, misses)", &cost.with),
    ] {
        println!(
            "| {name} | {} | {} | {} |",
            count(sorted.len()),
            micros(median(sorted)),
            micros(percentile(sorted, 0.99))
        );
    }
    println!(
        "\nadded by the guard (difference of medians): {}\n",
        micros(cost.added())
    );
    cost
}

// ---------------------------------------------------------------------------
// 5. The audit indexes

/// Median time of each indexed query, per chain length.
struct Indexed {
    /// (chain length, query, entries returned, median).
    rows: Vec<(u64, &'static str, usize, Duration)>,
}

fn bench_indexes(
    engine: &Engine,
    data: &ReadData,
    admin: &Context,
    other: &Context,
    target: usize,
) -> Indexed {
    let mut indexed = Indexed { rows: Vec::new() };
    let customer = data.first_id;
    let have = engine.audit_checkpoint().expect("checkpoint").seq as usize;
    for grow_to in [have, target.max(have)] {
        let now = engine.audit_checkpoint().expect("checkpoint").seq as usize;
        if now < grow_to {
            let read =
                |engine: &Engine, rng: &mut Rng| point_read(engine, data, other, Lookup::Id, rng);
            measure(engine, 2, grow_to - now, &read);
        }
        engine.flush_audit().expect("flush the audit queue");
        let chain = engine.audit_checkpoint().expect("checkpoint").seq;
        let queries: [(&'static str, &dyn Fn() -> usize); 3] = [
            ("`audit_by_actor`, 1,000 of `wang`'s entries", &|| {
                (engine.audit_by_actor(admin, "wang", None, None, 1_000))
                    .expect("by actor")
                    .len()
            }),
            (
                "`audit_of_customer`, every entry about one customer",
                &|| {
                    (engine.audit_of_customer(admin, customer, usize::MAX))
                        .expect("by customer")
                        .len()
                },
            ),
            ("`subject_export` of that customer", &|| {
                (engine.subject_export(admin, customer))
                    .expect("subject export")
                    .accesses
                    .len()
            }),
        ];
        for (name, query) in queries {
            let mut runs = Vec::with_capacity(INDEX_RUNS);
            let mut hits = 0;
            for _ in 0..INDEX_RUNS {
                let start = Instant::now();
                hits = black_box(query());
                runs.push(start.elapsed());
            }
            runs.sort_unstable();
            indexed.rows.push((chain, name, hits, runs[runs.len() / 2]));
        }
        if grow_to == target.max(have) {
            break;
        }
    }
    println!("## 5. The audit chain through its indexes\n");
    println!("| chain | query | entries returned | median of {INDEX_RUNS} |");
    println!("|---:|---|---:|---:|");
    for (chain, name, hits, median) in &indexed.rows {
        println!(
            "| {} | {name} | {} | {} |",
            count(*chain as usize),
            count(*hits),
            micros(*median)
        );
    }
    println!();
    indexed
}

// ---------------------------------------------------------------------------
// Summary against the targets

fn print_summary(
    import: &Import,
    sqlite: &Sqlite,
    durable: &[Measured],
    buffered: &[Measured],
    verify: &Verify,
    guard: &GuardCost,
    indexed: &Indexed,
) {
    let import_rate = per_second(import.customers, import.elapsed);
    println!("## Targets\n");
    println!("| metric | target | measured | |");
    println!("|---|---:|---:|---|");
    println!(
        "| import, customers/s | ≥ {} | {} | {} |",
        count(TARGET_IMPORT_PER_S as usize),
        count(import_rate as usize),
        met(import_rate >= TARGET_IMPORT_PER_S),
    );
    for m in buffered.iter().filter(|m| m.threads == 1) {
        println!(
            "| buffered read median ({}, 1 thread) | ≤ {} | {} | {} |",
            m.label.replace(" | ", ", "),
            micros(TARGET_BUFFERED_MEDIAN),
            micros(m.median()),
            met(m.median() <= TARGET_BUFFERED_MEDIAN),
        );
    }
    let verify_rate = per_second(verify.entries as usize, verify.median());
    println!(
        "| audit verification, entries/s | ≥ {} | {} | {} |",
        count(TARGET_VERIFY_PER_S as usize),
        count(verify_rate as usize),
        met(verify_rate >= TARGET_VERIFY_PER_S),
    );
    println!(
        "| guard, added to a buffered masked read (median) | ≤ {} | {} | {} |",
        micros(TARGET_GUARD_ADDED),
        micros(guard.added()),
        met(guard.added() <= TARGET_GUARD_ADDED),
    );
    if let Some((chain, _, hits, median)) = indexed
        .rows
        .iter()
        .rev()
        .find(|r| r.1.contains("audit_by_actor"))
    {
        println!(
            "| `audit_by_actor`, {} hits on a chain of {} | ≤ {} | {} | {} |",
            count(*hits),
            count(*chain as usize),
            micros(TARGET_INDEXED_1000),
            micros(*median),
            met(*median <= TARGET_INDEXED_1000),
        );
    }
    println!();
    println!(
        "For reference: SQLite plain import {}/s; durable read median {} to {}.",
        count(per_second(sqlite.rows, sqlite.plain) as usize),
        micros(
            durable
                .iter()
                .map(Measured::median)
                .min()
                .unwrap_or_default()
        ),
        micros(
            durable
                .iter()
                .map(Measured::median)
                .max()
                .unwrap_or_default()
        ),
    );
}

// ---------------------------------------------------------------------------
// Formatting

fn per_second(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn seconds(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn micros(d: Duration) -> String {
    common::micros(d, 1)
}
