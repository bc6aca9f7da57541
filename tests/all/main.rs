//! End-to-end tests of the engine and the `custodian` command line, on real
//! redb files in temporary folders. One binary, one module per topic.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod alerts;
mod audit;
mod cedar;
mod cli;
mod crash;
mod encryption;
mod events;
mod faults;
mod files;
mod fuzz;
mod guard;
mod input;
mod integrity;
mod login;
mod model;
mod path;
mod plugin_state;
mod plugins;
mod policy;
mod privacy;
mod records;
mod regression;
mod terminal;

use std::path::{Path, PathBuf};

use custodian::{
    AuditDurability, ConsentChange, Context, Engine, MasterKey, NewCustomer, PrincipalKind,
};

/// A database in its own temporary folder.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub key_hex: String,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    pub fn new() -> Self {
        let key = MasterKey::generate();
        Self {
            dir: tempfile::tempdir().unwrap(),
            key_hex: key.to_hex().to_string(),
        }
    }

    pub fn key(&self) -> MasterKey {
        MasterKey::from_hex(&self.key_hex).unwrap()
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("crm.redb")
    }

    pub fn keys(&self) -> PathBuf {
        self.dir.path().join("crm.redb.keys")
    }

    /// Opens (creating on first use) with buffered read auditing.
    pub fn open(&self) -> Engine {
        self.try_open(self.key()).unwrap()
    }

    pub fn try_open(&self, key: MasterKey) -> custodian::Result<Engine> {
        self.builder(key).open()
    }

    /// Opens (creating on first use) on `clock`, with durable auditing.
    pub fn open_on(&self, clock: custodian::Clock) -> Engine {
        Engine::builder()
            .path(self.db())
            .master_key(self.key())
            .create(true)
            .clock(clock)
            .open()
            .unwrap()
    }

    /// Opens with a chosen read-audit durability.
    pub fn open_with(&self, durability: AuditDurability) -> Engine {
        self.builder(self.key())
            .audit_durability(durability)
            .open()
            .unwrap()
    }

    fn builder(&self, key: MasterKey) -> custodian::EngineBuilder {
        Engine::builder()
            .path(self.db())
            .master_key(key)
            .create(true)
            .audit_durability(AuditDurability::buffered())
    }

    /// A new database under the default policy with principals `wang`
    /// (role sales: full access to the customers he owns) and `zhao` (role
    /// support: personal fields masked, sensitive ones hidden).
    pub fn with_staff(&self) -> Engine {
        let engine = self.open();
        let admin = admin();
        engine
            .add_principal(&admin, "wang", PrincipalKind::User, &["sales"])
            .unwrap();
        engine
            .add_principal(&admin, "zhao", PrincipalKind::User, &["support"])
            .unwrap();
        engine
    }
}

impl Fixture {
    /// The `custodian` command on this database, keyed through
    /// `CUSTODIAN_KEY`, with no stdin or stdout and stderr piped.
    pub fn custodian(&self) -> std::process::Command {
        use std::process::Stdio;
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_custodian"));
        command
            .arg("--db")
            .arg(self.db())
            .env("CUSTODIAN_KEY", &self.key_hex)
            .env_remove("CUSTODIAN_KEY_FILE")
            .env_remove("CUSTODIAN_DB")
            .env_remove("CUSTODIAN_AS")
            .env_remove("CUSTODIAN_PURPOSE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }
}

impl Fixture {
    /// Runs `custodian` on this database with `args`: whether it
    /// succeeded, its stdout and its stderr.
    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self
            .custodian()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    }
}

/// Runs `command` and, with `kill = Some((k, ms))`, sends it SIGKILL `ms`
/// milliseconds after its `k`-th stderr line for which `acknowledged` holds
/// (at once if it ends first). Returns its exit status and stderr lines.
pub fn run_and_kill(
    mut command: std::process::Command,
    acknowledged: fn(&str) -> bool,
    kill: Option<(u64, u64)>,
) -> (std::process::ExitStatus, Vec<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if acknowledged(&line) {
                let _ = tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    if let Some((k, ms)) = kill {
        for _ in 0..k {
            if rx.recv().is_err() {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(ms));
        // A command that already finished is reaped below all the same.
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    (status, reader.join().unwrap())
}

/// The default pack with its `access.rhai` changed by `edit`; its test
/// cases kept with `cases` (they describe the default pack).
pub fn default_pack_edited(cases: bool, edit: impl FnOnce(&mut String)) -> custodian::PolicyPack {
    let mut scripts = Vec::new();
    let (mut roles, mut kept) = (String::new(), None);
    for (name, text) in custodian::PolicyPack::default_pack().files() {
        match name {
            "roles.toml" => roles = text.to_string(),
            "cases.toml" => kept = cases.then(|| text.to_string()),
            _ => scripts.push((name.to_string(), text.to_string())),
        }
    }
    let script = &mut scripts
        .iter_mut()
        .find(|(name, _)| name == "access.rhai")
        .unwrap()
        .1;
    edit(script);
    custodian::PolicyPack::from_sources(scripts, roles, kept).unwrap()
}

/// The default pack with its `limits` replaced by `limits` (nothing: no
/// budgets).
pub fn pack_with_limits(limits: &str) -> custodian::PolicyPack {
    default_pack_edited(true, |script| {
        let at = script
            .find("\n// Budgets:")
            .expect("access.rhai declares limits");
        script.truncate(at);
        script.push('\n');
        script.push_str(limits);
    })
}

/// A `limits` giving principals with `role` the budgets `budgets` (a rhai
/// map) and everyone else none.
pub fn for_role(role: &str, budgets: &str) -> String {
    format!(r#"fn limits(p) {{ if p.has_role("{role}") {{ {budgets} }} else {{ () }} }}"#)
}

/// Installs the default pack without budgets: for a test that reads back
/// more than a day's budget to check what was stored (budgets are the
/// subject of `guard`).
pub fn lift_budgets(engine: &Engine) {
    engine
        .install_policy(&admin(), &pack_with_limits(""))
        .unwrap();
}

pub fn admin() -> Context {
    Context::new("admin", "test")
}

pub fn as_(name: &str) -> Context {
    Context::new(name, "test")
}

/// The sample customer used across tests.
pub fn li_na() -> NewCustomer {
    NewCustomer::new()
        .field("name", "Li Na")
        .field("phone", "13800138000")
        .field("email", "li.na@example.com")
        .field("id_number", "110105198803120217")
        .field("address", "Chaoyang District, Beijing")
        .consent(
            ConsentChange::grant("identity_verification", "paper", "2026-01").field("id_number"),
        )
}

/// Whether `needle` occurs anywhere in the file's raw bytes.
pub fn file_contains(path: &Path, needle: &str) -> bool {
    let raw = std::fs::read(path).unwrap();
    raw.windows(needle.len()).any(|w| w == needle.as_bytes())
}
