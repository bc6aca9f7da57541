//! The bodies of the fuzz targets in `fuzz_targets/`: one function per
//! parser of outside input, each fed arbitrary bytes. A target fails by
//! panicking: the engine must answer any input with a value or an error
//! that says what is wrong, never a panic. Run with cargo-fuzz (see
//! README.md); `tests/seeds.rs` runs each body on the seeds in `seeds/` and
//! on every input a run has found and turned into a regression (and, being
//! an integration test, makes `cargo test` build and link the targets).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use custodian::{
    Action, AuditDurability, Checkpoint, CompiledPolicy, Context, CustomerAttributes, Engine,
    ImportOptions, MasterKey, NewCustomer, PluginManifest, PolicyPack, PreparedSubject,
    RetentionFacts, RetentionPolicy, Schema, Status,
};
use custodian_sdk::{Command as PluginCommand, CustomerRef as PluginRef};

pub mod plugin_commands;

/// The shipped plugins' payload parsers, compiled natively from their own
/// source files (the plugins' workspace builds them for wasm).
#[path = "../../plugins/shop-orders/src/payload.rs"]
mod shop_orders_payload;
#[path = "../../plugins/chat-sync/src/payload.rs"]
mod chat_sync_payload;

/// One database per process, opened once: opening costs far more than an
/// import of a few rows.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<(tempfile::TempDir, Engine)> = OnceLock::new();
    let (_, engine) = ENGINE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary folder: {e}"));
        let engine = Engine::builder()
            .path(dir.path().join("fuzz.redb"))
            .master_key(MasterKey::generate())
            .create(true)
            .audit_durability(AuditDurability::buffered())
            .open()
            .unwrap_or_else(|e| panic!("cannot open the fuzz database: {e}"));
        (dir, engine)
    });
    engine
}

/// Text of `data` where it is UTF-8, else `None` (the parsers below take
/// `&str`; a file that is not UTF-8 is refused before them).
fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A CSV file imported as `custodian import` does: every row is imported
/// or refused with its line, and the count of customers grows by exactly
/// the rows imported.
pub fn csv_import(data: &[u8]) {
    let engine = engine();
    let admin = Context::new("admin", "fuzz");
    let before = engine.count_customers(&admin).unwrap_or(0);
    let options = ImportOptions { batch_size: 7 };
    if let Ok(report) = engine.import_csv(&admin, data, &options, |_| {}) {
        for row in &report.errors {
            assert!(row.line >= 1, "line {} of a refused row", row.line);
            assert!(!row.error.to_string().is_empty());
        }
        let after = engine.count_customers(&admin).unwrap_or(0);
        assert_eq!(after, before + report.imported, "{report:?}");
    }
}

/// A schema file: one that parses normalizes its own fields' values to
/// values that normalize to themselves.
pub fn schema(data: &[u8]) {
    let Some(source) = text(data) else { return };
    let Ok(schema) = Schema::from_toml(source) else {
        return;
    };
    for field in schema.fields() {
        for raw in ["", "x", "13800138000", "a@example.com", "2024-02-29", "1.5"] {
            if let Ok(once) = schema.normalize(&field.name, raw) {
                let twice = schema.normalize(&field.name, &once);
                assert_eq!(twice.as_deref(), Ok(once.as_str()), "{}", field.name);
            }
        }
    }
}

/// A policy pack of one script and a roles file, split at the first NUL:
/// one that compiles decides any request without panicking, in bounded
/// time (the engine's operation limit).
pub fn policy_pack(data: &[u8]) {
    let Some(source) = text(data) else { return };
    let (script, roles) = source.split_once('\0').unwrap_or((source, ""));
    let scripts = vec![("access.rhai".to_string(), script.to_string())];
    let Ok(pack) = PolicyPack::from_sources(scripts, roles.to_string(), None) else {
        return;
    };
    let Ok(policy) = CompiledPolicy::compile(&pack) else {
        return;
    };
    let subject = PreparedSubject::new("wang", "user", &["sales".into()], &BTreeMap::new());
    let customer = CustomerAttributes::new(7, "wang", "active");
    for action in [Action::Read, Action::Search, Action::Delete] {
        let _ = policy.decide_uncached(&subject, action, "fuzz", Some(&customer));
    }
    let _ = policy.decide_uncached(&subject, Action::Count, "", None);
}

/// A retention script: one that compiles decides any customer without
/// panicking, its reason bounded.
pub fn retention(data: &[u8]) {
    let Some(source) = text(data) else { return };
    let Ok(policy) = RetentionPolicy::compile(source) else {
        return;
    };
    let facts = RetentionFacts {
        status: Status::Active,
        notified: false,
        days_inactive: 400,
        days_since_notice: 0,
        tags: vec!["vip".into()],
        legal_hold: false,
    };
    let verdict = policy.decide(&facts);
    assert!(verdict.reason.len() <= 1024, "{}", verdict.reason.len());
}

/// A plugin's manifest as it arrives from its `describe` export (here in
/// its JSON form): checked, it says what is wrong, and one that passes
/// can be granted in full.
pub fn manifest(data: &[u8]) {
    let Ok(manifest) = serde_json::from_slice::<PluginManifest>(data) else {
        return;
    };
    match manifest.check() {
        Ok(()) => {
            let grant = custodian::Grant::all(&manifest);
            assert_eq!(grant.fields, manifest.fields);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// An audit checkpoint file (`custodian audit verify --checkpoint`).
pub fn checkpoint(data: &[u8]) {
    let Some(source) = text(data) else { return };
    if let Ok(checkpoint) = Checkpoint::from_json(source) {
        let again = Checkpoint::from_json(&checkpoint.to_json());
        assert!(again.is_ok_and(|c| c == checkpoint));
    }
}

/// Customers the plugin-result target's references can find: by id (1
/// and 2), phone and email; made once, on the shared database.
fn plugin_customers() -> &'static Engine {
    static MADE: OnceLock<()> = OnceLock::new();
    let engine = engine();
    MADE.get_or_init(|| {
        let admin = Context::new("admin", "fuzz");
        for (name, phone, email) in [
            ("Li Na", "13800138000", "li.na@example.com"),
            ("Zhang Wei", "+86 139 1234 5678", "zhang.wei@example.cn"),
        ] {
            let new = NewCustomer::new()
                .field("name", name)
                .field("phone", phone)
                .field("email", email);
            engine
                .create_customer(&admin, new)
                .unwrap_or_else(|e| panic!("cannot create a customer: {e}"));
        }
    });
    engine
}

/// What a plugin returns from a call (its commands; see
/// `plugin_commands` for how bytes become a grant and commands), checked
/// as the engine checks a call's result before writing: outside the grant
/// or invalid, it is refused with the command's position; the report
/// renders every command it accepted, each within its bound.
pub fn plugin_results(data: &[u8]) {
    let engine = plugin_customers();
    let (grant, commands) = plugin_commands::decode(data);
    match custodian::fuzzing::check_plugin_commands(engine, "fuzz", &grant, &commands) {
        Ok(rendered) => {
            assert_eq!(rendered.len(), commands.len());
            for line in &rendered {
                assert!(line.len() <= 2000 + 32, "{} bytes", line.len());
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// The customer a plugin command names, for the invariants below.
fn named(command: &PluginCommand) -> Option<&PluginRef> {
    match command {
        PluginCommand::UpsertCustomer(u) => Some(&u.match_),
        PluginCommand::LogInteraction(l) => Some(&l.customer),
        _ => None,
    }
}

/// Checks what a payload parser returned: an error says something; the
/// commands are upserts and logs, each log for a customer an earlier
/// upsert of the same result named, each customer upserted once.
fn payload_commands(result: &Result<Vec<PluginCommand>, String>) -> usize {
    let commands = match result {
        Ok(commands) => commands,
        Err(e) => {
            assert!(!e.is_empty());
            return 0;
        }
    };
    let mut upserted = BTreeSet::new();
    let mut logs = 0;
    for command in commands {
        let key = named(command).map(|r| format!("{r:?}"));
        match (command, key) {
            (PluginCommand::UpsertCustomer(_), Some(key)) => {
                assert!(upserted.insert(key), "a customer upserted twice");
            }
            (PluginCommand::LogInteraction(_), Some(key)) => {
                assert!(upserted.contains(&key), "a log before its upsert");
                logs += 1;
            }
            _ => panic!("an unexpected command: {command:?}"),
        }
    }
    logs
}

/// `shop-orders`' payload: one order object or an array of them, JSON;
/// one that parses gives one interaction per order.
pub fn shop_orders(data: &[u8]) {
    let result = shop_orders_payload::ingest(data);
    let logs = payload_commands(&result);
    if result.is_ok() {
        let orders = match serde_json::from_slice::<serde_json::Value>(data) {
            Ok(serde_json::Value::Array(orders)) => orders.len(),
            _ => 1,
        };
        assert_eq!(logs, orders);
    }
}

/// `chat-sync`'s payload: one conversation or an array of them, JSON;
/// one that parses gives one interaction per conversation, its transcript
/// one line per message and its summary within 200 characters unless it
/// names the conversation.
pub fn chat_sync(data: &[u8]) {
    let result = chat_sync_payload::ingest(data);
    payload_commands(&result);
    for command in result.iter().flatten() {
        if let PluginCommand::LogInteraction(log) = command {
            assert!(
                log.summary.chars().count() <= 200 || log.summary.starts_with("Conversation "),
                "{}",
                log.summary
            );
            assert!(log.body.is_some());
        }
    }
}
