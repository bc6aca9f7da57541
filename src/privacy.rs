//! The privacy lifecycle's commands: `consent`, `hold`, `lifecycle`,
//! `retention`, `subject` (data-subject requests) and `report` (the record
//! of processing and deletion records).

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use chrono::Utc;
use custodian::{ConsentChange, CustomerId, CustomerUpdate, Engine, SweepOptions};

use crate::args::Global;
use crate::args::privacy::{
    ConsentCmd, Finder, HoldCmd, PurposeCmd, Removal, ReportCmd, RetentionCmd, SubjectCmd,
};
use crate::input::confirm;
use crate::parse::{pairs, parse_time};
use crate::{ctx, open, output};

pub fn purpose(g: &Global, cmd: PurposeCmd) -> Result<()> {
    let engine = open(g)?;
    let ctx = ctx(g);
    match cmd {
        PurposeCmd::Retire { purpose } => {
            engine.retire_purpose(&ctx, &purpose, true)?;
            eprintln!(
                "purpose `{purpose}` retired: see `custodian report inventory` for what it leaves without basis"
            );
        }
        PurposeCmd::Restore { purpose } => {
            engine.retire_purpose(&ctx, &purpose, false)?;
            eprintln!("purpose `{purpose}` restored");
        }
        PurposeCmd::List => {
            let retired = engine.retired_purposes();
            if g.json {
                println!("{}", serde_json::to_string_pretty(&retired)?);
            } else if retired.is_empty() {
                println!("no purpose is retired");
            } else {
                for p in retired {
                    println!("{p}");
                }
            }
        }
    }
    Ok(())
}

pub fn consent(g: &Global, cmd: ConsentCmd) -> Result<()> {
    let engine = open(g)?;
    let ctx = ctx(g);
    match cmd {
        ConsentCmd::Grant {
            customer,
            purpose,
            fields,
            channel,
            notice,
        } => {
            let mut change = ConsentChange::grant(purpose.as_str(), channel, notice);
            for f in &fields {
                change = change.field(f.as_str());
            }
            engine.record_consent(&ctx, customer, &change)?;
            eprintln!(
                "customer {customer}: consent to `{purpose}`{} granted",
                covering(&fields)
            );
        }
        ConsentCmd::Withdraw {
            customer,
            purpose,
            fields,
            channel,
        } => {
            let mut change = ConsentChange::withdraw(purpose.as_str(), channel);
            for f in &fields {
                change = change.field(f.as_str());
            }
            let erased = engine.record_consent(&ctx, customer, &change)?;
            let note = if erased.is_empty() {
                String::new()
            } else {
                format!("; erased {} (no basis left)", erased.join(", "))
            };
            eprintln!(
                "customer {customer}: consent to `{purpose}`{} withdrawn{note}",
                covering(&fields)
            );
            if g.json {
                output::json(&serde_json::json!({ "customer": customer, "erased": erased }))?;
            }
        }
        ConsentCmd::Show { customer } => {
            output::consents(&engine.consents(&ctx, customer)?, g.json)?
        }
        ConsentCmd::History { customer } => {
            output::consent_history(&engine.consent_history(&ctx, customer)?, g.json)?
        }
    }
    Ok(())
}

/// ` for id_number, ...` when a consent names sensitive fields.
fn covering(fields: &[String]) -> String {
    if fields.is_empty() {
        String::new()
    } else {
        format!(" for {}", fields.join(", "))
    }
}

pub fn hold(g: &Global, cmd: HoldCmd) -> Result<()> {
    let engine = open(g)?;
    let ctx = ctx(g);
    match cmd {
        HoldCmd::Place { customer, reason } => {
            engine.set_legal_hold(&ctx, customer, Some(&reason))?;
            eprintln!(
                "customer {customer}: legal hold placed ({reason}); it is not notified, anonymized or erased until released"
            );
        }
        HoldCmd::Release { customer } => {
            engine.set_legal_hold(&ctx, customer, None)?;
            eprintln!("customer {customer}: legal hold released");
        }
    }
    Ok(())
}

pub fn lifecycle(g: &Global, customer: CustomerId) -> Result<()> {
    let engine = open(g)?;
    output::lifecycle(customer, &engine.lifecycle(&ctx(g), customer)?, g.json)
}

pub fn retention(g: &Global, cmd: RetentionCmd) -> Result<()> {
    let engine = open(g)?;
    match cmd {
        RetentionCmd::Sweep {
            dry_run,
            now,
            batch_size,
        } => {
            let now = now
                .as_deref()
                .map(parse_time)
                .transpose()?
                .unwrap_or_else(Utc::now);
            let options = SweepOptions {
                dry_run,
                batch_size,
            };
            let report = engine.retention_sweep_with(&ctx(g), now, &options, |p| {
                // One line per durable commit, in this exact form: a
                // supervisor (and the crash test) reads how far it got.
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "retention: committed through customer {} ({} examined, {} changed)",
                    p.done_through,
                    p.examined,
                    p.changed
                );
            })?;
            output::retention_report(&report, g.json)?;
        }
        RetentionCmd::Install { file } => {
            let source = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read `{}`", file.display()))?;
            engine.install_retention_policy(&ctx(g), &source)?;
            eprintln!(
                "installed the retention policy from {}; it applies from the next sweep",
                file.display()
            );
        }
        RetentionCmd::Show => {
            let source = engine.retention_policy();
            if g.json {
                output::json(&serde_json::json!({ "source": source }))?;
            } else {
                print!("{source}");
                if !source.ends_with('\n') {
                    println!();
                }
            }
        }
    }
    Ok(())
}

impl Finder {
    /// The customers the request is about; an error when there are none.
    fn resolve(&self, engine: &Engine, g: &Global) -> Result<Vec<CustomerId>> {
        let (field, value) = match (&self.phone, &self.email, &self.id_number, self.customer) {
            (_, _, _, Some(id)) => return Ok(vec![id]),
            (Some(v), _, _, _) => ("phone", v),
            (_, Some(v), _, _) => ("email", v),
            (_, _, Some(v), _) => ("id_number", v),
            // clap's group makes one of them required.
            (None, None, None, None) => {
                bail!("say whom: --phone, --email, --id-number or --customer")
            }
        };
        let found = engine.find_subject(&ctx(g), field, value)?;
        if found.is_empty() {
            bail!("no customer found by {}", field.replace('_', " "));
        }
        Ok(found)
    }
}

pub fn subject(g: &Global, cmd: SubjectCmd) -> Result<()> {
    let engine = open(g)?;
    let ctx = ctx(g);
    match cmd {
        SubjectCmd::Export { finder, output } => {
            let exports = finder
                .resolve(&engine, g)?
                .into_iter()
                .map(|id| engine.subject_export(&ctx, id))
                .collect::<custodian::Result<Vec<_>>>()?;
            let text = serde_json::to_string_pretty(&exports)?;
            match output {
                Some(path) => {
                    write_private(&path, &text)?;
                    eprintln!(
                        "wrote everything held about {} customer(s) to {}",
                        exports.len(),
                        path.display()
                    );
                }
                None => println!("{text}"),
            }
        }
        SubjectCmd::Erase(args) => remove(g, &engine, &args, false)?,
        SubjectCmd::Anonymize(args) => remove(g, &engine, &args, true)?,
        SubjectCmd::Correct { finder, set, clear } => {
            if set.is_empty() && clear.is_empty() {
                bail!("say what to correct: --set field=value or --clear field");
            }
            let sets = pairs(&set)?;
            for id in finder.resolve(&engine, g)? {
                let mut update = CustomerUpdate::new();
                for (k, v) in &sets {
                    update = update.set(k.as_str(), v.as_str());
                }
                for f in &clear {
                    update = update.clear(f.as_str());
                }
                engine.update_customer(&ctx, id, update)?;
                eprintln!("corrected customer {id}");
            }
        }
    }
    Ok(())
}

/// Erases or anonymizes every customer the finder matches, once confirmed.
fn remove(g: &Global, engine: &Engine, args: &Removal, anonymize: bool) -> Result<()> {
    let verb = if anonymize { "anonymize" } else { "erase" };
    let ids = args.finder.resolve(engine, g)?;
    let list = ids
        .iter()
        .map(CustomerId::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "not confirmed: stdin is not a terminal; pass --yes to {verb} customer(s) {list}"
            );
        }
        let what = if anonymize {
            "their identity is destroyed for good; non-identifying statistics are kept"
        } else {
            "everything is removed and their keys destroyed for good"
        };
        if !confirm(&format!("{verb} customer(s) {list}? {what}."))? {
            bail!("nothing done: the {verb} was not confirmed");
        }
    }
    let ctx = ctx(g);
    let mut records = Vec::new();
    for id in ids {
        let removed = if anonymize {
            engine.anonymize_customer(&ctx, id, &args.reason)
        } else {
            engine.subject_erase(&ctx, id, &args.reason)
        };
        match removed {
            Ok(record) => records.push(record),
            Err(e) => {
                // Those already removed are gone: say so before failing.
                if !records.is_empty() {
                    output::deletions(&records, g.json)?;
                }
                return Err(e).with_context(|| format!("cannot {verb} customer {id}"));
            }
        }
    }
    output::deletions(&records, g.json)
}

/// Writes personal data to a file only its owner may read.
fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    writeln!(file, "{text}").with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}

pub fn report(g: &Global, cmd: ReportCmd) -> Result<()> {
    let engine = open(g)?;
    let ctx = ctx(g);
    match cmd {
        ReportCmd::Inventory => output::inventory(&engine.inventory(&ctx)?, g.json),
        ReportCmd::Deletions { after, limit } => {
            output::deletions(&engine.deletion_records(&ctx, after, limit)?, g.json)
        }
    }
}
