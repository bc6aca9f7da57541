//! `custodian demo`: a tour of the engine in a fresh folder of its own.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use chrono::{Duration, Utc};
use custodian::{
    Channel, Context, Direction, Engine, ImportOptions, MasterKey, NewFollowUp, NewInteraction,
    OrderItem, PrincipalKind, Query,
};

const SAMPLE: &str = include_str!("../examples/data/customers.csv");

fn step(title: &str) {
    println!("\n== {title}");
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

    println!("Custodian demo: a customer database that keeps personal data safe by default.");
    println!("Everything is in {}", folder.display());

    step("1. Create an encrypted database");
    let engine = Engine::builder()
        .path(&db)
        .master_key(key)
        .create(true)
        .open()?;
    println!("data file   {}", db.display());
    println!(
        "key store   {}  (per-customer keys, wrapped by the master key)",
        engine.key_store_path().display()
    );
    println!(
        "master key  {}  (0600; never stored in the database)",
        folder.join("master.key").display()
    );

    let admin = Context::new("admin", "onboarding");
    engine.add_principal(&admin, "wang", PrincipalKind::User, &["sales"])?;
    engine.add_principal(&admin, "zhao", PrincipalKind::User, &["sales"])?;
    println!("principals  admin (admin), wang (sales), zhao (sales)");

    step("2. Import sample customers from CSV (validated, encrypted, indexed, audited)");
    let report = engine.import_csv(&admin, SAMPLE.as_bytes(), &ImportOptions::default(), |_| {})?;
    println!(
        "imported {} customers, skipped {} rows",
        report.imported,
        report.errors.len()
    );
    let first = report.first_id.context("the sample imported nothing")?;

    step("3. The same customer, seen by its owner and by another sales rep");
    let wang = Context::new("wang", "sales_contact");
    let zhao = Context::new("zhao", "sales_contact");
    let owner_view = engine.customer(&wang, first)?;
    let other_view = engine.customer(&zhao, first)?;
    println!(
        "{:<12} {:<32} {:<32}",
        "field", "wang (owner)", "zhao (not the owner)"
    );
    for (name, value) in &owner_view.fields {
        let other = match other_view.get(name) {
            Some(v) if other_view.masked.contains(name) => format!("{v}  (masked)"),
            Some(v) => v.to_string(),
            None => "(hidden)".into(),
        };
        println!("{name:<12} {value:<32} {other:<32}");
    }

    step("4. Look a customer up by phone (through a keyed blind index)");
    let found = engine.find_customers(&zhao, &Query::field("phone", "138-0013-8000"), 5)?;
    for c in &found {
        println!(
            "zhao finds customer {} ({}, phone {})",
            c.id,
            c.get("name").unwrap_or("?"),
            c.get("phone").unwrap_or("?")
        );
    }

    step("5. Log interactions");
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
    for (who, ctx) in [("wang", &wang), ("zhao", &zhao)] {
        println!("as {who}:");
        for i in engine.interactions(ctx, first)? {
            println!(
                "  {:?} {:?}: {}",
                i.channel,
                i.direction,
                i.summary
                    .as_deref()
                    .unwrap_or("(summary hidden: not the owner)")
            );
        }
    }

    step("6. Follow-ups due");
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
        println!(
            "  due {}  customer {}  {}",
            f.due.format("%Y-%m-%d %H:%M"),
            f.customer,
            f.note.as_deref().unwrap_or("")
        );
    }
    println!("  (the follow-up due next week is not listed yet)");

    step("7. Refusals are audited too");
    match engine.delete_customer(&zhao, first) {
        Err(e) => println!("zhao tries to delete wang's customer: {e}"),
        Ok(()) => println!("unexpected: the delete went through"),
    }

    step("8. Verify the tamper-evident audit chain");
    let verified = engine.verify_audit(None)?;
    println!(
        "{} entries verified; head {}",
        verified.entries,
        verified.head_hash.get(..16).unwrap_or("")
    );
    for e in engine.audit_tail(&admin, 6)? {
        println!(
            "  #{:<4} {:<6} {:<16} {:<18} {:?}",
            e.seq,
            e.actor,
            e.action,
            e.target.unwrap_or_default(),
            e.outcome
        );
    }

    step("9. The raw file holds no plaintext personal data");
    drop(engine);
    let raw = std::fs::read(&db)?;
    for needle in [
        "13800138000",
        "Li Na",
        "li.na@example.com",
        "110105198803120217",
    ] {
        let present = raw.windows(needle.len()).any(|w| w == needle.as_bytes());
        println!(
            "  {:<22} {}",
            needle,
            if present {
                "FOUND in the file"
            } else {
                "not in the file"
            }
        );
    }
    println!("  ({} bytes searched in {})", raw.len(), db.display());
    println!("\nTry the CLI on it:");
    println!(
        "  cargo run --release -- --db {} --key-file {} --as zhao customer get {first}",
        db.display(),
        folder.join("master.key").display()
    );
    Ok(())
}
