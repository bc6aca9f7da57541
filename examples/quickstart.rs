//! Embedding Custodian in a host application: open an engine, add a sales
//! rep, import customers, and read one as its owner and as a colleague.
//!
//! Run with `cargo run --example quickstart`.

use custodian::{Context, Engine, ImportOptions, MasterKey, PrincipalKind, Query};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    // A real host reads the key from a file or a KMS: `MasterKey::from_file`.
    let engine = Engine::builder()
        .path(dir.path().join("crm.redb"))
        .master_key(MasterKey::generate())
        .create(true)
        .open()?;

    let admin = Context::new("admin", "onboarding");
    for rep in ["wang", "zhao"] {
        engine.add_principal(&admin, rep, PrincipalKind::User, &["sales"])?;
    }
    let csv = include_str!("data/customers.csv");
    let report = engine.import_csv(&admin, csv.as_bytes(), &ImportOptions::default(), |_| {})?;
    println!("imported {} customers", report.imported);

    let wang = Context::new("wang", "sales_contact");
    let zhao = Context::new("zhao", "sales_contact");
    let hit = engine.find_customers(&wang, &Query::field("phone", "13800138000"), 1)?;
    if let Some(customer) = hit.first() {
        println!(
            "wang sees: {:?}",
            engine.customer(&wang, customer.id)?.fields
        );
        println!(
            "zhao sees: {:?}",
            engine.customer(&zhao, customer.id)?.fields
        );
    }
    let verified = engine.verify_audit(None)?;
    println!("audit chain: {} entries verified", verified.entries);
    Ok(())
}
