//! `custodian customer`: adding, reading, finding, changing, deleting and
//! importing customer records.

use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context as _, Result, anyhow};
use custodian::{
    ConsentChange, Context, CustomerUpdate, Engine, ImportOptions, ImportProgress, ImportReport,
    NewCustomer, Query, Status,
};
use serde::Serialize;

use crate::args::Global;
use crate::args::records::CustomerCmd;
use crate::parse::pairs;
use crate::render::{Count, Json, NewId, Output, Render, line, redraw, stderr_is_terminal, tell};

pub fn run(g: &Global, out: Output, cmd: CustomerCmd) -> Result<()> {
    let engine = g.open()?;
    let ctx = g.ctx();
    match cmd {
        CustomerCmd::Add {
            fields,
            owner,
            consents,
            channel,
            notice,
        } => {
            let mut new = NewCustomer::new();
            for (k, v) in pairs(&fields)? {
                new = new.field(k, v);
            }
            new.owner = owner;
            if let Some(list) = consents {
                let notice = notice.unwrap_or_default();
                new.consents = ConsentChange::parse_list(&list, &channel, &notice)?;
            }
            out.emit(&NewId(engine.create_customer(&ctx, new)?))?;
        }
        CustomerCmd::Get { id } => out.emit(&vec![engine.customer(&ctx, id)?])?,
        CustomerCmd::Find { query, limit } => {
            let query = parse_query(&query)?;
            out.emit(&engine.find_customers(&ctx, &query, limit)?)?;
        }
        CustomerCmd::Update { id, fields, owner } => {
            let mut update = CustomerUpdate::new();
            for (k, v) in pairs(&fields)? {
                update = if v.trim().is_empty() {
                    update.clear(k)
                } else {
                    update.set(k, v)
                };
            }
            update.owner = owner;
            engine.update_customer(&ctx, id, update)?;
            tell!("updated customer {id}");
        }
        CustomerCmd::Delete { id } => {
            engine.delete_customer(&ctx, id)?;
            tell!("deleted customer {id} and destroyed its key");
        }
        CustomerCmd::Count => out.emit(&Count(engine.count_customers(&ctx)?))?,
        CustomerCmd::Import { file, batch } => {
            out.emit(&Imported(import(&engine, &ctx, &file, batch)?))?
        }
    }
    Ok(())
}

/// Reads `key=value`: an owner, a tag, a status, or a field's value.
fn parse_query(text: &str) -> Result<Query> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| anyhow!("`{text}` is not of the form key=value"))?;
    Ok(match key {
        "owner" => Query::Owner(value.to_string()),
        "tag" | "tags" => Query::Tag(value.to_string()),
        "status" => Query::Status(Status::parse(value)?),
        field => Query::field(field, value),
    })
}

/// Imports a CSV file, showing progress on stderr; skipped rows are listed
/// there too.
fn import(engine: &Engine, ctx: &Context, file: &Path, batch: usize) -> Result<ImportReport> {
    let input =
        std::fs::File::open(file).with_context(|| format!("cannot open `{}`", file.display()))?;
    let total = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let terminal = stderr_is_terminal();
    let options = ImportOptions { batch_size: batch };
    let report = engine.import_csv(ctx, io::BufReader::new(input), &options, |p| {
        progress(p, terminal, total)
    })?;
    if terminal {
        tell!();
    }
    for row in &report.errors {
        tell!("skipped {}", line(&row.to_string()));
    }
    Ok(report)
}

fn progress(p: &ImportProgress, terminal: bool, total: u64) {
    if terminal {
        // A rough bar from the line count; the file size gives the scale.
        let width = 30;
        let done = (p.last_line as f64 * 64.0 / total.max(1) as f64).min(1.0);
        let filled = (done * width as f64) as usize;
        redraw(&format!(
            "[{}{}] {} imported, {} skipped",
            "#".repeat(filled),
            " ".repeat(width - filled.min(width)),
            p.imported,
            p.skipped
        ));
    } else {
        // One line per durable commit: a supervisor can tell what is safe.
        tell!(
            "committed {} customers through line {} (ids {}..={})",
            p.imported,
            p.last_line,
            p.ids.start(),
            p.ids.end()
        );
    }
}

/// What an import did.
struct Imported(ImportReport);

impl Render for Imported {
    const JSON: Json = Json::Line;

    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "imported {} customers, skipped {} rows",
            self.0.imported,
            self.0.errors.len()
        )
    }

    fn json(&self) -> impl Serialize {
        serde_json::json!({
            "imported": self.0.imported,
            "skipped": self.0.errors.len(),
            "first_id": self.0.first_id,
            "last_id": self.0.last_id,
        })
    }
}
