//! The `custodian` command line, driven as an operator would.

use std::path::Path;
use std::process::{Command, Output};

use crate::Fixture;

struct Cli<'a> {
    fx: &'a Fixture,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> Output {
        self.run_as("admin", args)
    }

    fn run_as(&self, who: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_custodian"))
            .arg("--db")
            .arg(self.fx.db())
            .arg("--key-file")
            .arg(self.key_file())
            .args(["--as", who])
            .args(args)
            .env_remove("CUSTODIAN_KEY")
            .output()
            .unwrap()
    }

    fn key_file(&self) -> std::path::PathBuf {
        self.fx.dir.path().join("master.key")
    }

    fn ok(&self, who: &str, args: &[&str]) -> String {
        let out = self.run_as(who, args);
        assert!(
            out.status.success(),
            "custodian {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn refused(&self, who: &str, args: &[&str]) -> String {
        let out = self.run_as(who, args);
        assert!(!out.status.success(), "custodian {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }
}

fn init(fx: &Fixture) -> Cli<'_> {
    let cli = Cli { fx };
    let out = cli.run(&["init", "--new-key"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cli
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn an_operator_session_end_to_end() {
    let fx = Fixture::new();
    let cli = init(&fx);
    #[cfg(unix)]
    assert_eq!(mode(&cli.key_file()), 0o600);
    cli.ok("admin", &["principal", "add", "wang", "--role", "sales"]);
    cli.ok("admin", &["principal", "add", "zhao", "--role", "support"]);
    let listed = cli.ok("admin", &["principal", "list", "--json"]);
    let principals: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(principals.as_array().unwrap().len(), 3);

    // `customer add` prints the id alone.
    let id = cli.ok(
        "wang",
        &[
            "customer",
            "add",
            "name=Li Na",
            "phone=138 0013 8000",
            "email=Li.Na@Example.com",
        ],
    );
    let id = id.trim();
    assert!(id.parse::<u64>().is_ok(), "not an id: {id:?}");

    let own: serde_json::Value =
        serde_json::from_str(&cli.ok("wang", &["customer", "get", id, "--json"])).unwrap();
    assert_eq!(own[0]["fields"]["phone"], "+8613800138000");
    assert_eq!(own[0]["fields"]["email"], "li.na@example.com");
    let other: serde_json::Value =
        serde_json::from_str(&cli.ok("zhao", &["customer", "get", id, "--json"])).unwrap();
    assert_eq!(other[0]["fields"]["phone"], "138****8000");

    let found = cli.ok("zhao", &["customer", "find", "phone=13800138000"]);
    assert!(found.contains(&format!("customer {id}")), "{found}");
    assert!(found.contains("138****8000"), "{found}");

    // Refusals: non-zero exit, the reason on stderr.
    let why = cli.refused("zhao", &["customer", "update", id, "name=Someone Else"]);
    assert!(
        why.contains("access denied") && why.contains("may not `update`"),
        "{why}"
    );
    let why = cli.refused("wang", &["customer", "add", "name=X", "phone=12"]);
    assert!(why.contains("`phone`"), "{why}");
    let why = cli.refused("wang", &["customer", "add", "name=X", "shoe=44"]);
    assert!(why.contains("`shoe`"), "{why}");

    cli.ok(
        "wang",
        &["customer", "update", id, "company=Blue Harbor", "email="],
    );
    let after: serde_json::Value =
        serde_json::from_str(&cli.ok("wang", &["customer", "get", id, "--json"])).unwrap();
    assert_eq!(after[0]["fields"]["company"], "Blue Harbor");
    assert!(after[0]["fields"].get("email").is_none());

    let interaction = cli.ok(
        "wang",
        &[
            "interaction",
            "add",
            id,
            "--channel",
            "order",
            "--direction",
            "inbound",
            "--summary",
            "Order #1",
            "--amount",
            "99.50",
            "--item",
            "Kettle:2:49.75",
        ],
    );
    assert!(interaction.trim().parse::<u64>().is_ok());
    let listed = cli.ok("wang", &["interaction", "list", id, "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["amount_minor"], 9950);
    assert_eq!(listed[0]["items"][0]["quantity"], 2);
    assert_eq!(listed[0]["summary"], "Order #1");
    // Support sees the interaction history (default policy).
    let support: serde_json::Value =
        serde_json::from_str(&cli.ok("zhao", &["interaction", "list", id, "--json"])).unwrap();
    assert_eq!(support[0]["summary"], "Order #1");
    let with_time: serde_json::Value =
        serde_json::from_str(&cli.ok("wang", &["customer", "get", id, "--json"])).unwrap();
    assert!(!with_time[0]["last_interaction_at"].is_null());

    let fu = cli.ok(
        "wang",
        &[
            "followup",
            "add",
            id,
            "--due",
            "2020-01-01 09:00",
            "--note",
            "Call back",
        ],
    );
    let fu = fu.trim().to_string();
    let due = cli.ok("wang", &["followup", "due", "--assignee", "wang"]);
    assert!(due.contains("Call back"), "{due}");
    cli.ok("wang", &["followup", "done", &fu]);
    let due = cli.ok("wang", &["followup", "due"]);
    assert!(due.contains("no follow-ups due"), "{due}");

    assert_eq!(cli.ok("admin", &["customer", "count"]).trim(), "1");

    // Deactivation takes effect on the next command.
    cli.ok("admin", &["principal", "deactivate", "zhao"]);
    let why = cli.refused("zhao", &["customer", "get", id]);
    assert!(why.contains("deactivated"), "{why}");

    // Audit: checkpoint, verify, tail.
    let checkpoint = fx.dir.path().join("head.json");
    cli.ok(
        "admin",
        &["audit", "checkpoint", "--out", checkpoint.to_str().unwrap()],
    );
    let verified = cli.ok(
        "admin",
        &[
            "audit",
            "verify",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
        ],
    );
    assert!(verified.contains("checkpoint matches"), "{verified}");
    let tail = cli.ok("admin", &["audit", "tail", "-n", "50"]);
    assert!(tail.contains("DENIED"), "{tail}");
    // Admins read customer data only with a stated purpose (default policy).
    let why = cli.refused("admin", &["customer", "get", id]);
    assert!(why.contains("stated purpose"), "{why}");
    let purposeful = cli.ok(
        "admin",
        &["--purpose", "complaint_handling", "customer", "get", id],
    );
    assert!(purposeful.contains("Li Na"));
    let tail = cli.ok("admin", &["audit", "tail", "-n", "2"]);
    assert!(tail.contains("purpose=complaint_handling"), "{tail}");

    cli.ok("wang", &["customer", "delete", id]);
    assert_eq!(cli.ok("admin", &["customer", "count"]).trim(), "0");
}

#[test]
fn import_reports_skipped_rows_and_commits() {
    let fx = Fixture::new();
    let cli = init(&fx);
    let csv = fx.dir.path().join("in.csv");
    std::fs::write(
        &csv,
        "name,phone,email\nA One,13800000001,a@example.com\nB Two,999,b@example.com\nC Three,13800000003,c@example.com\n",
    )
    .unwrap();
    let out = cli.run(&["customer", "import", csv.to_str().unwrap(), "--json"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipped line 3") && stderr.contains("`phone`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("committed 2 customers through line 4"),
        "{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["imported"], 2);
    assert_eq!(summary["skipped"], 1);
    // Regression: a huge batch size aborted the process allocating for it.
    let huge = cli.run(&[
        "customer",
        "import",
        csv.to_str().unwrap(),
        "--batch",
        &u64::MAX.to_string(),
    ]);
    assert!(
        huge.status.success(),
        "{}",
        String::from_utf8_lossy(&huge.stderr)
    );
}

#[test]
fn a_wrong_key_file_is_a_clear_error() {
    let fx = Fixture::new();
    init(&fx);
    let wrong = fx.dir.path().join("wrong.key");
    custodian::MasterKey::generate()
        .write_new_file(&wrong)
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args([
            "--db",
            fx.db().to_str().unwrap(),
            "--key-file",
            wrong.to_str().unwrap(),
        ])
        .args(["customer", "count"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong master key"));
    let none = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(["--db", fx.db().to_str().unwrap(), "customer", "count"])
        .env_remove("CUSTODIAN_KEY")
        .env_remove("CUSTODIAN_KEY_FILE")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&none.stderr).contains("no master key"));
}

#[test]
fn the_demo_runs_and_shows_no_plaintext_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(["demo", "--dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("138****8000  (masked)"), "{stdout}");
    assert!(stdout.contains("entries verified"), "{stdout}");
    assert!(
        stdout.contains("13800138000            not in the file"),
        "{stdout}"
    );
    assert!(!stdout.contains("FOUND in the file"), "{stdout}");
    assert!(!stdout.contains("skipped 1"), "{stdout}");
}

#[test]
fn plugins_from_install_to_outbox() {
    let fx = Fixture::new();
    let cli = init(&fx);
    let shop = custodian_test_artifacts::SHOP_ORDERS;
    let sms = custodian_test_artifacts::SMS_REMINDER;
    // Install shows what the plugin asks for; a grant beyond it is refused.
    let refused = cli.refused(
        "admin",
        &["plugin", "install", sms, "--fields", "name:full", "--yes"],
    );
    assert!(refused.contains("cannot be granted in full"), "{refused}");
    cli.ok(
        "admin",
        &["plugin", "install", shop, "--grant-all", "--yes"],
    );
    cli.ok("admin", &["plugin", "install", sms, "--grant-all", "--yes"]);
    let orders = custodian_test_artifacts::sample("shop-orders", "orders.json");
    let out = cli.ok(
        "admin",
        &["plugin", "ingest", "shop-orders", orders.to_str().unwrap()],
    );
    assert!(out.contains("UpsertCustomer"), "{out}");
    // A follow-up due for a consenting customer ends in the outbox with the
    // phone resolved by the engine.
    cli.ok(
        "admin",
        &[
            "consent",
            "grant",
            "1",
            "service",
            "--channel",
            "phone",
            "--notice",
            "v1",
        ],
    );
    cli.ok(
        "admin",
        &[
            "followup",
            "add",
            "1",
            "--due",
            "2026-01-01 09:00",
            "--note",
            "call",
        ],
    );
    let out = cli.run(&["followup", "dispatch"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dispatched 1"),
        "{out:?}"
    );
    let out = cli.ok("admin", &["--json", "outbox", "list"]);
    let messages: serde_json::Value = serde_json::from_str(&out).unwrap();
    let first = &messages.as_array().unwrap()[0];
    // Order A1003 gave customer C77 a new phone.
    assert_eq!(first["address"], "+8613900001111");
    assert_eq!(first["template"], "follow-up-reminder");
    let id = first["id"].to_string();
    cli.ok("admin", &["outbox", "ack", &id]);
    let out = cli.ok("admin", &["--json", "outbox", "list"]);
    assert_eq!(out.trim(), "[]");
    // Non-admins may not install or read the outbox.
    cli.ok("admin", &["principal", "add", "wang", "--role", "sales"]);
    cli.refused("wang", &["plugin", "install", shop, "--grant-all", "--yes"]);
    cli.refused("wang", &["outbox", "list"]);
    let out = cli.ok("admin", &["plugin", "list"]);
    assert!(
        out.contains("shop-orders") && out.contains("sms-reminder"),
        "{out}"
    );
    // The harness for plugin authors needs no database of theirs.
    let out = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(["plugin", "run", shop, "--ingest", orders.to_str().unwrap()])
        .env_remove("CUSTODIAN_KEY")
        .env_remove("CUSTODIAN_KEY_FILE")
        .env_remove("CUSTODIAN_DB")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("UpsertCustomer") && stdout.contains("LogInteraction"),
        "{stdout}"
    );
}

impl Cli<'_> {
    /// Runs as admin with a stated purpose (the default policy wants one to
    /// read customer data); returns stdout and stderr.
    fn officer(&self, args: &[&str]) -> (String, String) {
        let mut all = vec!["--purpose", "privacy_request"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(out.status.success(), "custodian {args:?} failed: {stderr}");
        (String::from_utf8(out.stdout).unwrap(), stderr)
    }

    fn officer_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let (stdout, _) = self.officer(&all);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
    }
}

#[test]
fn consent_holds_retention_and_subject_requests() {
    let fx = Fixture::new();
    let cli = init(&fx);
    // Consents come in with the import; a birthday without consent to
    // `marketing`, or consents without the notice shown, skip their row.
    let csv = fx.dir.path().join("consents.csv");
    std::fs::write(
        &csv,
        "name,phone,email,birthday,id_number,consents,consent_channel,notice_version\n\
         Li Na,13800138000,li.na@example.com,1988-03-12,110105198803120217,marketing; identity_verification(id_number),web,v3\n\
         Wang Wu,13800000002,wang@example.com,,,,,\n\
         Zhao Liu,13800000003,,1990-01-01,,,,\n\
         Sun Qi,13800000004,,,,marketing,,\n",
    )
    .unwrap();
    let out = cli.run(&["customer", "import", csv.to_str().unwrap(), "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("skipped line 4") && stderr.contains("`birthday`"),
        "{stderr}"
    );
    assert!(stderr.contains("skipped line 5"), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["imported"].as_u64(), summary["skipped"].as_u64()),
        (Some(2), Some(2))
    );
    let consents = cli.officer_json(&["consent", "show", "1"]);
    assert_eq!(consents["marketing"], true);
    assert_eq!(consents["identity_verification:id_number"], true);

    // Withdrawing `marketing` erases the birthday at once, and says so.
    let (_, said) = cli.officer(&[
        "consent",
        "withdraw",
        "1",
        "marketing",
        "--channel",
        "phone",
    ]);
    assert!(
        said.contains("consent to `marketing` withdrawn; erased birthday (no basis left)"),
        "{said}"
    );
    let li = cli.officer_json(&["customer", "get", "1"]);
    assert!(li[0]["fields"].get("birthday").is_none(), "{li}");
    assert_eq!(li[0]["fields"]["id_number"], "110105198803120217");
    let history = cli.officer_json(&["consent", "history", "1"]);
    let last = history.as_array().unwrap().last().unwrap();
    assert_eq!(last["purpose"], "marketing");
    assert_eq!(last["granted"], false);
    assert_eq!(last["channel"], "phone");
    let (shown, _) = cli.officer(&["consent", "history", "1"]);
    assert!(
        shown.contains("identity_verification(id_number)"),
        "{shown}"
    );

    // A legal hold keeps customer 2 from notice and removal.
    cli.officer(&["hold", "place", "2", "--reason", "case 2026-17"]);
    let state = cli.officer_json(&["lifecycle", "2"]);
    assert_eq!(state["legal_hold"], "case 2026-17");
    assert_eq!(state["state"]["state"], "active");

    // Six years on, a dry run would notify customer 1 and only make the
    // held customer 2 dormant; it changes nothing.
    let later = (chrono::Utc::now() + chrono::Duration::days(6 * 365 + 2))
        .format("%Y-%m-%d")
        .to_string();
    let out = cli.run(&["--json", "retention", "sweep", "--dry-run", "--now", &later]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("committed"));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["examined"], 2);
    assert_eq!(
        report["counts"],
        serde_json::json!({ "dormant": 1, "notified": 1 })
    );
    assert_eq!(report["changes"][1]["customer"], 2);
    assert_eq!(
        cli.officer_json(&["lifecycle", "1"])["state"]["state"],
        "active"
    );

    // Subject access: everything held, with every audited access.
    let export = cli.officer_json(&["subject", "export", "--phone", "138 0013 8000"]);
    assert_eq!(export.as_array().unwrap().len(), 1);
    assert_eq!(export[0]["customer"], 1);
    assert_eq!(export[0]["fields"]["name"], "Li Na");
    assert_eq!(export[0]["fields"]["id_number"], "110105198803120217");
    assert_eq!(export[0]["consents"].as_array().unwrap().len(), 4);
    let actions: Vec<&str> = export[0]["accesses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"consent.record") && actions.contains(&"customer.update"),
        "{actions:?}"
    );
    let file = fx.dir.path().join("li-na.json");
    cli.officer(&[
        "subject",
        "export",
        "--email",
        "li.na@example.com",
        "-o",
        file.to_str().unwrap(),
    ]);
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(written[0]["fields"]["name"], "Li Na");
    #[cfg(unix)]
    assert_eq!(mode(&file), 0o600);
    // Only admins and data stewards handle subject requests.
    cli.ok("admin", &["principal", "add", "wang", "--role", "sales"]);
    let why = cli.refused("wang", &["subject", "export", "--phone", "13800138000"]);
    assert!(why.contains("data stewards"), "{why}");

    // Correction, then erasure: refused unconfirmed without a terminal.
    cli.officer(&[
        "subject",
        "correct",
        "--customer",
        "1",
        "--set",
        "company=Blue Harbor",
        "--clear",
        "email",
    ]);
    let li = cli.officer_json(&["customer", "get", "1"]);
    assert_eq!(li[0]["fields"]["company"], "Blue Harbor");
    assert!(li[0]["fields"].get("email").is_none(), "{li}");
    let why = cli.refused(
        "admin",
        &[
            "subject",
            "erase",
            "--phone",
            "13800138000",
            "--reason",
            "request 12",
        ],
    );
    assert!(why.contains("--yes"), "{why}");
    let why = cli.refused(
        "admin",
        &[
            "subject",
            "erase",
            "--customer",
            "2",
            "--reason",
            "request 13",
            "--yes",
        ],
    );
    assert!(why.contains("legal hold"), "{why}");
    let erased = cli.officer_json(&[
        "subject",
        "erase",
        "--phone",
        "13800138000",
        "--reason",
        "request 12",
        "--yes",
    ]);
    assert_eq!(erased[0]["customer"], 1);
    assert_eq!(erased[0]["kind"], "deleted");
    let why = cli.refused(
        "admin",
        &[
            "--purpose",
            "privacy_request",
            "subject",
            "export",
            "--phone",
            "13800138000",
        ],
    );
    assert!(why.contains("no customer found by phone"), "{why}");

    // The record of processing and the deletion records.
    let inventory = cli.officer_json(&["report", "inventory"]);
    assert_eq!(inventory["purposes_enforced"], true);
    let id_number = inventory["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "id_number")
        .unwrap();
    assert_eq!(id_number["sensitivity"], "sensitive");
    assert_eq!(id_number["separate_consent"], true);
    let (table, _) = cli.officer(&["report", "inventory"]);
    assert!(table.contains("identity_verification (consent)"), "{table}");
    let (deletions, _) = cli.officer(&["report", "deletions"]);
    assert!(
        deletions.contains("deleted") && deletions.contains("request 12"),
        "{deletions}"
    );

    // A real sweep reports each committed batch on stderr, in this form.
    let (_, progress) = cli.officer(&["retention", "sweep", "--now", &later, "--batch-size", "1"]);
    assert!(
        progress.contains("retention: committed through customer 2 (1 examined, 1 changed)"),
        "{progress}"
    );
    // Dormant now: only a data steward may look at it.
    cli.ok("admin", &["principal", "add", "chen", "--role", "steward"]);
    let state = cli.ok("chen", &["--purpose", "privacy_request", "lifecycle", "2"]);
    assert!(
        state.contains("customer 2: dormant") && state.contains("legal hold: case 2026-17"),
        "{state}"
    );
}

#[test]
fn retention_policies_install_and_show() {
    let fx = Fixture::new();
    let cli = init(&fx);
    let (shown, _) = cli.officer(&["retention", "show"]);
    assert!(shown.contains("fn retain(c)"), "{shown}");
    let script = fx.dir.path().join("retention.rhai");
    std::fs::write(&script, "fn retain(c) { keep(\"kept forever\") }\n").unwrap();
    let (_, said) = cli.officer(&["retention", "install", script.to_str().unwrap()]);
    assert!(said.contains("installed the retention policy"), "{said}");
    let (shown, _) = cli.officer(&["retention", "show"]);
    assert_eq!(shown, "fn retain(c) { keep(\"kept forever\") }\n");
    std::fs::write(&script, "fn retain(c) {").unwrap();
    let why = cli.refused("admin", &["retention", "install", script.to_str().unwrap()]);
    assert!(why.contains("retention policy"), "{why}");
}

#[test]
fn customer_add_takes_the_consents_the_customer_gave() {
    let fx = Fixture::new();
    let cli = init(&fx);
    let out = cli.run(&["customer", "add", "name=Li Na", "birthday=1988-03-12"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`birthday`") && stderr.contains("marketing"),
        "{stderr}"
    );
    // A consent needs the notice the customer was shown.
    let out = cli.run(&[
        "customer",
        "add",
        "name=Li Na",
        "birthday=1988-03-12",
        "--consents",
        "marketing",
    ]);
    assert!(!out.status.success());
    let id = cli.ok(
        "admin",
        &[
            "customer",
            "add",
            "name=Li Na",
            "birthday=1988-03-12",
            "id_number=110105198803120217",
            "--consents",
            "marketing; identity_verification(id_number)",
            "--channel",
            "paper",
            "--notice",
            "2026-01",
        ],
    );
    let history = cli.ok(
        "admin",
        &[
            "--purpose",
            "check",
            "--json",
            "consent",
            "history",
            id.trim(),
        ],
    );
    assert!(history.contains("\"channel\": \"paper\""), "{history}");
    assert!(history.contains("\"field\": \"id_number\""), "{history}");
}

#[test]
fn the_command_line_adds_hints_that_name_its_own_commands() {
    let fx = Fixture::new();
    let cli = init(&fx);
    // The engine says what is wrong; the command line says what to run.
    let out = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .arg("--db")
        .arg(fx.dir.path().join("missing.redb"))
        .arg("--key-file")
        .arg(cli.key_file())
        .args(["customer", "count"])
        .env_remove("CUSTODIAN_KEY")
        .output()
        .unwrap();
    let why = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success());
    assert!(
        why.contains("no database at") && why.contains("create one first"),
        "{why}"
    );
    assert!(
        why.contains("hint: create one with `custodian init`"),
        "{why}"
    );
    let why = cli.refused("admin", &["plugin", "ingest", "nosuch", "-"]);
    assert!(why.contains("no plugin `nosuch` is installed"), "{why}");
    assert!(why.contains("hint: see `custodian plugin list`"), "{why}");
    let why = cli.refused("admin", &["--session", "cst_bogus", "customer", "count"]);
    assert!(why.contains("invalid or revoked session token"), "{why}");
    assert!(
        why.contains("hint: log in again with `custodian login NAME`"),
        "{why}"
    );
}
