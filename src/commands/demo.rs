//! `custodian demo`: a tour of the engine in a fresh folder of its own.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use chrono::{Duration, Utc};
use custodian::{
    Channel, ConsentChange, Context, Customer, CustomerId, Direction, Engine, ImportOptions,
    InstalledPolicy, MasterKey, NewCustomer, NewFollowUp, NewInteraction, OrderItem, PolicyPack,
    PrincipalKind, PrincipalUpdate, Query,
};

use crate::render::{line, say};

const SAMPLE: &str = include_str!("../../examples/data/customers.csv");

fn step(title: &str) {
    say!("\n== {title}");
}

/// The administrator the tour acts as.
fn admin() -> Context {
    Context::new("admin", "onboarding")
}

pub fn run(dir: Option<PathBuf>) -> Result<()> {
    let base = dir.unwrap_or_else(std::env::temp_dir);
    let folder = base.join(format!(
        "custodian-demo-{}",
        Utc::now().format("%Y%m%d-%H%M%S-%f")
    ));
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create `{}`", folder.display()))?;
    let db = folder.join("crm.redb");
    let key = MasterKey::generate();
    key.write_new_file(folder.join("master.key"))?;

    say!("Custodian demo: a customer database that keeps personal data safe by default.");
    say!("Everything is in {}", folder.display());

    let (engine, installed) = create(&folder, &db, key)?;
    staff(&engine)?;
    let first = import(&engine)?;
    views(&engine, first)?;
    lookup(&engine)?;
    interactions(&engine, first)?;
    follow_ups(&engine, first)?;
    refusals(&engine, first, &installed)?;
    privacy(&engine, first)?;
    audit(&engine)?;
    drop(engine);
    raw_file(&folder, &db, first)
}

/// Step 1: the database, its key store and the default policy.
fn create(folder: &Path, db: &Path, key: MasterKey) -> Result<(Engine, InstalledPolicy)> {
    step("1. Create an encrypted database");
    let engine = Engine::builder()
        .path(db)
        .master_key(key)
        .create(true)
        .open()?;
    say!("data file   {}", db.display());
    say!(
        "key store   {}  (per-customer keys, wrapped by the master key)",
        engine.key_store_path().display()
    );
    say!(
        "master key  {}  (0600; never stored in the database)",
        folder.join("master.key").display()
    );

    let installed = engine.installed_policy(&admin())?;
    let cases = installed.pack.check_cases(engine.schema())?;
    let files: Vec<&str> = installed.pack.files().map(|(name, _)| name).collect();
    say!(
        "policy      version {} ({}): the default pack of examples/policies, {} of its cases pass",
        installed.version,
        files.join(", "),
        cases.passed
    );
    Ok((engine, installed))
}

/// Still step 1: the people the tour acts as.
fn staff(engine: &Engine) -> Result<()> {
    let admin = admin();
    let staff: [(&str, &str, Option<&str>); 6] = [
        ("wang", "sales", Some("east")),
        ("zhao", "sales", Some("east")),
        ("chen", "manager", Some("east")),
        ("sun", "support", None),
        ("qian", "analyst", None),
        ("he", "steward", None),
    ];
    for (name, role, team) in staff {
        engine.add_principal(&admin, name, PrincipalKind::User, &[role])?;
        if let Some(team) = team {
            let update = PrincipalUpdate {
                set_attributes: [("team".to_string(), team.to_string())].into(),
                ..PrincipalUpdate::default()
            };
            engine.update_principal(&admin, name, &update)?;
        }
    }
    say!(
        "principals  admin, wang and zhao (sales, team east), chen (manager, east), sun (support), qian (analyst), he (steward)"
    );
    Ok(())
}

/// Step 2; returns the first customer's id.
fn import(engine: &Engine) -> Result<CustomerId> {
    step("2. Import sample customers from CSV (validated, encrypted, indexed, audited)");
    let report = engine.import_csv(
        &admin(),
        SAMPLE.as_bytes(),
        &ImportOptions::default(),
        |_| {},
    )?;
    say!(
        "imported {} customers, skipped {} rows",
        report.imported,
        report.errors.len()
    );
    report.first_id.context("the sample imported nothing")
}

/// Step 3: one customer as each role sees it, and two refusals.
fn views(engine: &Engine, first: CustomerId) -> Result<()> {
    step("3. One customer of wang's, as each role sees it (decided by access.rhai)");
    let viewers = [
        ("wang (owner)", Context::new("wang", "sales_contact")),
        ("chen (manager)", Context::new("chen", "sales_review")),
        ("sun (support)", Context::new("sun", "service")),
        ("qian (analyst)", Context::new("qian", "analytics")),
    ];
    let views: Vec<Customer> = viewers
        .iter()
        .map(|(_, ctx)| engine.customer(ctx, first))
        .collect::<Result<_, _>>()?;
    let mut header = format!("{:<12}", "field");
    for (title, _) in &viewers {
        header.push_str(&format!(" {title:<26}"));
    }
    say!("{header}");
    let owner_view = views.first().context("no owner view")?;
    for name in owner_view.fields.keys() {
        let mut row = format!("{name:<12}");
        for view in &views {
            let cell = match view.get(name) {
                Some(v) if view.masked.contains(name) => format!("{v}  (masked)"),
                Some(v) => v.to_string(),
                None => "(hidden)".into(),
            };
            row.push_str(&format!(" {:<26}", line(&cell)));
        }
        say!("{row}");
    }
    let zhao = Context::new("zhao", "sales_contact");
    if let Err(e) = engine.customer(&zhao, first) {
        say!("zhao (another sales rep): {e}");
    }
    let admin_read = engine.customer(&Context::new("admin", ""), first);
    if let Err(e) = admin_read {
        say!("admin without a stated purpose: {e}");
    }
    Ok(())
}

/// Step 4.
fn lookup(engine: &Engine) -> Result<()> {
    step("4. Look a customer up by phone (through a keyed blind index)");
    let sun = Context::new("sun", "service");
    let found = engine.find_customers(&sun, &Query::field("phone", "138-0013-8000"), 5)?;
    for c in &found {
        say!(
            "sun finds customer {} ({}, phone {})",
            c.id,
            c.get("name").unwrap_or("?"),
            c.get("phone").unwrap_or("?")
        );
    }
    Ok(())
}

/// Step 5: a call and an order, as three roles see them.
fn interactions(engine: &Engine, first: CustomerId) -> Result<()> {
    step("5. Log interactions");
    let wang = Context::new("wang", "sales_contact");
    let mut call = NewInteraction::new(
        Channel::Call,
        Direction::Outbound,
        "Discussed kitchen renovation; wants a quote",
    );
    call.at = Some(Utc::now() - Duration::days(2));
    engine.log_interaction(&wang, first, call)?;
    let mut order = NewInteraction::new(Channel::Order, Direction::Inbound, "Online order #A1027");
    order.amount_minor = Some(129_900);
    order.items = vec![OrderItem {
        name: "Induction hob".into(),
        quantity: 1,
        unit_price_minor: Some(129_900),
    }];
    engine.log_interaction(&wang, first, order)?;
    let sun = Context::new("sun", "service");
    let qian = Context::new("qian", "analytics");
    for (who, ctx) in [("wang", &wang), ("sun", &sun), ("qian", &qian)] {
        match engine.interactions(ctx, first) {
            Ok(list) => {
                say!("as {who}:");
                for i in list {
                    say!(
                        "  {:?} {:?}: {}",
                        i.channel,
                        i.direction,
                        i.summary.as_deref().unwrap_or("(summary hidden)")
                    );
                }
            }
            Err(e) => say!("as {who}: {e}"),
        }
    }
    Ok(())
}

/// Step 6.
fn follow_ups(engine: &Engine, first: CustomerId) -> Result<()> {
    step("6. Follow-ups due");
    let wang = Context::new("wang", "sales_contact");
    engine.add_follow_up(
        &wang,
        NewFollowUp {
            customer: first,
            due: Utc::now() - Duration::hours(1),
            assignee: None,
            note: "Send the renovation quote".into(),
        },
    )?;
    engine.add_follow_up(
        &wang,
        NewFollowUp {
            customer: first + 1,
            due: Utc::now() + Duration::days(7),
            assignee: Some("wang".into()),
            note: "Check wholesale reorder".into(),
        },
    )?;
    for f in engine.follow_ups_due(&wang, Utc::now(), Some("wang"))? {
        say!(
            "  due {}  customer {}  {}",
            f.due.format("%Y-%m-%d %H:%M"),
            f.customer,
            f.note.as_deref().unwrap_or("")
        );
    }
    say!("  (the follow-up due next week is not listed yet)");
    Ok(())
}

/// Step 7: logins and sessions, then what the engine refuses.
fn refusals(engine: &Engine, first: CustomerId, installed: &InstalledPolicy) -> Result<()> {
    step("7. Logins, sessions and refusals");
    let admin = admin();
    engine.set_password(&admin, "wang", None, "correct horse battery staple")?;
    let session = engine.login("wang", "correct horse battery staple", None, "demo")?;
    let via_session = Context::session(session.token(), "sales_contact");
    say!(
        "wang logs in (argon2id, 19 MiB, t=2); through the session he counts {} customers",
        engine.count_customers(&via_session)?
    );
    match engine.login("wang", "wrong password", None, "demo") {
        Err(e) => say!("a wrong password: {e}"),
        Ok(_) => say!("unexpected: a wrong password logged in"),
    }
    match engine.login("nobody", "wrong password", None, "demo") {
        Err(e) => say!("an unknown name: {e}  (the same answer)"),
        Ok(_) => say!("unexpected: an unknown name logged in"),
    }
    engine.revoke_sessions(&admin, "wang")?;
    if let Err(e) = engine.count_customers(&via_session) {
        say!("after `session revoke --all wang`: {e}");
    }
    let zhao = Context::new("zhao", "sales_contact");
    match engine.delete_customer(&zhao, first) {
        Err(e) => say!("zhao tries to delete wang's customer: {e}"),
        Ok(()) => say!("unexpected: the delete went through"),
    }
    let looping = PolicyPack::from_sources(
        vec![(
            "access.rhai".into(),
            "fn authorize(req) { loop { } }".into(),
        )],
        installed
            .pack
            .files()
            .find(|(name, _)| *name == "roles.toml")
            .map(|(_, text)| text.to_string())
            .unwrap_or_default(),
        installed.pack.cases().map(str::to_string),
    )?;
    match engine.install_policy(&admin, &looping) {
        Err(e) => say!(
            "installing a policy that loops forever: refused, the running policy stays\n  {}",
            e.to_string().chars().take(160).collect::<String>()
        ),
        Ok(_) => say!("unexpected: a looping policy was installed"),
    }
    Ok(())
}

/// Step 8: consent, retention and a person's requests.
fn privacy(engine: &Engine, first: CustomerId) -> Result<()> {
    step("8. Privacy: consent, retention and a person's requests (PIPL, GDPR)");
    let admin = admin();
    let zhang = first + 1;
    let withdrawal = ConsentChange::withdraw("marketing", "app");
    let erased = engine.record_consent(&admin, zhang, &withdrawal)?;
    say!(
        "customer {zhang} withdraws consent to marketing: erased at once {} (no other purpose)",
        erased.join(", ")
    );
    let no_consent = NewCustomer::new()
        .field("name", "Sun Mei")
        .field("birthday", "1990-01-01");
    if let Err(e) = engine.create_customer(&admin, no_consent) {
        say!("a birthday without consent: {e}");
    }
    let later = Utc::now() + Duration::days(6 * 365);
    let dry = engine.retention_sweep(&admin, later, true)?;
    let counts: Vec<String> = dry
        .counts
        .iter()
        .map(|(t, n)| format!("{} {n}", t.as_str()))
        .collect();
    say!(
        "retention dry run six years ahead ({}): {} customers, would be {}",
        later.format("%Y-%m-%d"),
        dry.examined,
        counts.join(", ")
    );
    let export = engine.subject_export(&admin, first)?;
    say!(
        "subject export of customer {first}: {} fields, {} interactions, {} consent entries, {} audited accesses",
        export.fields.len(),
        export.interactions.len(),
        export.consents.len(),
        export.accesses.len()
    );
    let record = engine.subject_erase(&admin, zhang, "erasure request 2026-11")?;
    say!(
        "customer {zhang} erased: its key destroyed; the deletion record keeps `{}`, `{}`, by {}",
        record.kind,
        record.reason,
        record.by
    );
    Ok(())
}

/// Step 9.
fn audit(engine: &Engine) -> Result<()> {
    step("9. Verify the tamper-evident audit chain");
    let verified = engine.verify_audit(None)?;
    say!(
        "{} entries verified; head {}",
        verified.entries,
        verified.head_hash.get(..16).unwrap_or("")
    );
    for e in engine.audit_tail(&admin(), 6)? {
        say!(
            "  #{:<4} {:<6} {:<16} {:<18} {:?}",
            e.seq,
            e.actor,
            e.action,
            e.target.unwrap_or_default(),
            e.outcome
        );
    }
    Ok(())
}

/// Step 10, once the engine is closed: the data file holds no plaintext.
fn raw_file(folder: &Path, db: &Path, first: CustomerId) -> Result<()> {
    step("10. The raw file holds no plaintext personal data");
    let raw = std::fs::read(db)?;
    for needle in [
        "13800138000",
        "Li Na",
        "li.na@example.com",
        "110105198803120217",
    ] {
        let present = raw.windows(needle.len()).any(|w| w == needle.as_bytes());
        say!(
            "  {:<22} {}",
            needle,
            if present {
                "FOUND in the file"
            } else {
                "not in the file"
            }
        );
    }
    say!("  ({} bytes searched in {})", raw.len(), db.display());
    say!("\nTry the CLI on it:");
    say!(
        "  cargo run --release -- --db {} --key-file {} --as sun customer get {first}",
        db.display(),
        folder.join("master.key").display()
    );
    Ok(())
}
