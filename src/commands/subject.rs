//! `custodian subject`: data-subject requests, to export, erase, anonymize
//! or correct what is held about a person.

use std::io::IsTerminal;

use anyhow::{Context as _, Result, bail};
use custodian::{Context, CustomerId, CustomerUpdate, Engine};

use crate::args::Global;
use crate::args::privacy::{Finder, Removal, SubjectCmd};
use crate::files::write_private;
use crate::input::confirm;
use crate::parse::pairs;
use crate::render::{Output, json_safe, say, tell};

pub fn run(g: &Global, out: Output, cmd: SubjectCmd) -> Result<()> {
    let engine = g.open()?;
    let ctx = g.ctx();
    match cmd {
        SubjectCmd::Export { finder, output } => {
            let exports = resolve(&finder, &engine, &ctx)?
                .into_iter()
                .map(|id| engine.subject_export(&ctx, id))
                .collect::<custodian::Result<Vec<_>>>()?;
            // The export is JSON whatever --json says: it is the data.
            let text = json_safe(&serde_json::to_string_pretty(&exports)?);
            match output {
                Some(path) => {
                    write_private(&path, &text)?;
                    tell!(
                        "wrote everything held about {} customer(s) to {}",
                        exports.len(),
                        path.display()
                    );
                }
                None => say!("{text}"),
            }
        }
        SubjectCmd::Erase(args) => remove(&engine, &ctx, out, &args, false)?,
        SubjectCmd::Anonymize(args) => remove(&engine, &ctx, out, &args, true)?,
        SubjectCmd::Correct { finder, set, clear } => {
            if set.is_empty() && clear.is_empty() {
                bail!("say what to correct: --set field=value or --clear field");
            }
            let sets = pairs(&set)?;
            for id in resolve(&finder, &engine, &ctx)? {
                let mut update = CustomerUpdate::new();
                for (k, v) in &sets {
                    update = update.set(k.as_str(), v.as_str());
                }
                for f in &clear {
                    update = update.clear(f.as_str());
                }
                engine.update_customer(&ctx, id, update)?;
                tell!("corrected customer {id}");
            }
        }
    }
    Ok(())
}

/// The customers the request is about; an error when there are none.
fn resolve(finder: &Finder, engine: &Engine, ctx: &Context) -> Result<Vec<CustomerId>> {
    let (field, value) = match (
        &finder.phone,
        &finder.email,
        &finder.id_number,
        finder.customer,
    ) {
        (_, _, _, Some(id)) => return Ok(vec![id]),
        (Some(v), _, _, _) => ("phone", v),
        (_, Some(v), _, _) => ("email", v),
        (_, _, Some(v), _) => ("id_number", v),
        // clap's group makes one of them required.
        (None, None, None, None) => {
            bail!("say whom: --phone, --email, --id-number or --customer")
        }
    };
    let found = engine.find_subject(ctx, field, value)?;
    if found.is_empty() {
        bail!("no customer found by {}", field.replace('_', " "));
    }
    Ok(found)
}

/// Erases or anonymizes every customer the finder matches, once confirmed.
fn remove(
    engine: &Engine,
    ctx: &Context,
    out: Output,
    args: &Removal,
    anonymize: bool,
) -> Result<()> {
    let verb = if anonymize { "anonymize" } else { "erase" };
    let ids = resolve(&args.finder, engine, ctx)?;
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
    let mut records = Vec::new();
    for id in ids {
        let removed = if anonymize {
            engine.anonymize_customer(ctx, id, &args.reason)
        } else {
            engine.subject_erase(ctx, id, &args.reason)
        };
        match removed {
            Ok(record) => records.push(record),
            Err(e) => {
                // Those already removed are gone: say so before failing.
                if !records.is_empty() {
                    out.emit(&records)?;
                }
                return Err(e).with_context(|| format!("cannot {verb} customer {id}"));
            }
        }
    }
    out.emit(&records)
}
