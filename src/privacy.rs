//! The privacy lifecycle's commands: `consent`, `hold`, `lifecycle`,
//! `retention`, `subject` (data-subject requests) and `report` (the record
//! of processing and deletion records).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use chrono::Utc;
use clap::{Args, Subcommand};
use custodian::{ConsentChange, CustomerId, CustomerUpdate, Engine, SweepOptions};

use crate::{Global, ctx, open, output, pairs, parse_time};

#[derive(Subcommand)]
pub enum ConsentCmd {
    /// Record a customer's consent to a purpose in the consent ledger.
    Grant {
        /// The customer id.
        customer: CustomerId,
        /// The purpose, as declared in the schema: `marketing`, ...
        purpose: String,
        /// A sensitive field this consent covers separately, e.g.
        /// `id_number` for `identity_verification` (repeatable).
        #[arg(long = "field", value_name = "FIELD")]
        fields: Vec<String>,
        /// How the customer expressed it: web, app, paper, phone, ...
        #[arg(long)]
        channel: String,
        /// The version of the privacy notice the customer was shown.
        #[arg(long, value_name = "VERSION")]
        notice: String,
    },
    /// Record the withdrawal of a customer's consent; fields left with no
    /// basis are erased at once.
    Withdraw {
        /// The customer id.
        customer: CustomerId,
        /// The purpose. Without --field, every separate consent under it is
        /// withdrawn too.
        purpose: String,
        /// Withdraw only the separate consent to this sensitive field
        /// (repeatable).
        #[arg(long = "field", value_name = "FIELD")]
        fields: Vec<String>,
        /// How the customer expressed it: web, app, paper, phone, ...
        #[arg(long)]
        channel: String,
    },
    /// Show a customer's consent by purpose (and `purpose:field` for
    /// separate consents).
    Show {
        /// The customer id.
        customer: CustomerId,
    },
    /// Show a customer's consent ledger, oldest first.
    History {
        /// The customer id.
        customer: CustomerId,
    },
}

#[derive(Subcommand)]
pub enum HoldCmd {
    /// Place a legal hold: nothing removes the customer while it lasts (no
    /// retention notice, anonymization, deletion or erasure).
    Place {
        /// The customer id.
        customer: CustomerId,
        /// Why, e.g. a case number.
        #[arg(long)]
        reason: String,
    },
    /// Release a legal hold.
    Release {
        /// The customer id.
        customer: CustomerId,
    },
}

#[derive(Subcommand)]
pub enum RetentionCmd {
    /// Apply the retention policy to every customer: dormant, notified,
    /// anonymized or deleted as it decides, never past a legal hold. A
    /// sweep cut short resumes where it stopped when run again with the
    /// same --now.
    Sweep {
        /// Report what would change, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The time to sweep as of (`YYYY-MM-DD` for midnight UTC, or RFC
        /// 3339); now by default.
        #[arg(long, value_name = "DATE")]
        now: Option<String>,
        /// Customers per transaction.
        #[arg(long, value_name = "N", default_value_t = custodian::DEFAULT_SWEEP_BATCH)]
        batch_size: usize,
    },
    /// Compile a retention policy (`retention.rhai`, defining `fn
    /// retain(c)`) and install it; it applies from the next sweep.
    Install {
        /// The script.
        file: PathBuf,
    },
    /// Print the retention policy in force (the default one until one is
    /// installed).
    Show,
}

/// Who a data-subject request is about: exactly one way of finding them.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct Finder {
    /// The person's phone number.
    #[arg(long, value_name = "PHONE")]
    phone: Option<String>,
    /// The person's email address.
    #[arg(long, value_name = "EMAIL")]
    email: Option<String>,
    /// The person's ID number.
    #[arg(long, value_name = "NUMBER")]
    id_number: Option<String>,
    /// A customer id.
    #[arg(long, value_name = "ID")]
    customer: Option<CustomerId>,
}

#[derive(Subcommand)]
pub enum SubjectCmd {
    /// Write everything held about the person as JSON (an array with one
    /// copy per matching customer): fields, interactions, follow-ups,
    /// consents, queued messages and every audited access.
    Export {
        #[command(flatten)]
        finder: Finder,
        /// Write to this file (created readable by its owner only) instead
        /// of stdout.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Erase the person: every record is removed and its key destroyed; a
    /// deletion record without personal data is kept. Refused under a
    /// legal hold.
    Erase(Removal),
    /// Anonymize the person: the identity is destroyed as by erasure, and
    /// non-identifying aggregates (orders, totals, coarse region) are kept.
    Anonymize(Removal),
    /// Correct the person's fields.
    Correct {
        #[command(flatten)]
        finder: Finder,
        /// Set a field, `field=value` (repeatable).
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        set: Vec<String>,
        /// Clear a field (repeatable).
        #[arg(long = "clear", value_name = "FIELD")]
        clear: Vec<String>,
    },
}

#[derive(Args)]
pub struct Removal {
    #[command(flatten)]
    finder: Finder,
    /// Why, kept in the deletion record: e.g. the request's reference.
    #[arg(long)]
    reason: String,
    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
}

#[derive(Subcommand)]
pub enum ReportCmd {
    /// The record of processing: every field with its sensitivity,
    /// purposes and basis, how many values are held (and without basis),
    /// who sees it, and the retention policy.
    Inventory,
    /// The records removals left (erasure, anonymization, retention), in
    /// customer id order.
    Deletions {
        /// Only customers with ids above this one.
        #[arg(long, value_name = "ID", default_value_t = 0)]
        after: CustomerId,
        /// At most this many.
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Subcommand)]
pub enum PurposeCmd {
    /// Stop pursuing a purpose: nothing more is stored or consented for
    /// it, and `report inventory` flags the values held only for it.
    Retire {
        /// The purpose, as the schema declares it.
        purpose: String,
    },
    /// Pursue a retired purpose again.
    Restore {
        /// The purpose.
        purpose: String,
    },
    /// The retired purposes.
    List,
}

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
        if !crate::plugins::confirm(&format!("{verb} customer(s) {list}? {what}."))? {
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
