//! `custodian retention`: the retention policy, and the sweep that applies
//! it.

use std::io::{self, Write};

use anyhow::{Context as _, Result};
use custodian::SweepOptions;
use serde::Serialize;

use crate::args::Global;
use crate::args::privacy::RetentionCmd;
use crate::parse::time_or_now;
use crate::render::{Output, Render, tell};

pub fn run(g: &Global, out: Output, cmd: RetentionCmd) -> Result<()> {
    let engine = g.open()?;
    match cmd {
        RetentionCmd::Sweep {
            dry_run,
            now,
            batch_size,
        } => {
            let now = time_or_now(now.as_deref())?;
            let options = SweepOptions {
                dry_run,
                batch_size,
            };
            let report = engine.retention_sweep_with(&g.ctx(), now, &options, |p| {
                // One line per durable commit, in this exact form: a
                // supervisor (and the crash test) reads how far it got.
                tell!(
                    "retention: committed through customer {} ({} examined, {} changed)",
                    p.done_through,
                    p.examined,
                    p.changed
                );
            })?;
            out.emit(&report)
        }
        RetentionCmd::Install { file } => {
            let source = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read `{}`", file.display()))?;
            engine.install_retention_policy(&g.ctx(), &source)?;
            tell!(
                "installed the retention policy from {}; it applies from the next sweep",
                file.display()
            );
            Ok(())
        }
        RetentionCmd::Show => out.emit(&PolicySource(engine.retention_policy())),
    }
}

/// The retention policy's script.
struct PolicySource(String);

impl Render for PolicySource {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        write!(out, "{}", self.0)?;
        if !self.0.ends_with('\n') {
            writeln!(out)?;
        }
        Ok(())
    }

    fn json(&self) -> impl Serialize {
        serde_json::json!({ "source": self.0 })
    }
}
