//! `custodian policy`: checking, testing, installing and showing the
//! access policy.

use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use custodian::{CaseReport, InstalledPolicy, PolicyPack, Schema};
use serde::Serialize;

use crate::args::Global;
use crate::args::access::PolicyCmd;
use crate::render::{Json, Output, Render, line, say, tell};

pub fn run(g: &Global, out: Output, cmd: PolicyCmd) -> Result<()> {
    match cmd {
        PolicyCmd::Check { dir } => {
            let pack = load_pack(&dir)?;
            report_cases(&pack.check_cases(&schema_for_cases(g))?, "policy compiles")
        }
        PolicyCmd::Test { dir, cases } => {
            let pack = load_pack(&dir)?;
            let text = std::fs::read_to_string(&cases)
                .with_context(|| format!("cannot read `{}`", cases.display()))?;
            report_cases(
                &pack.test_cases(&text, &schema_for_cases(g))?,
                "policy test",
            )
        }
        PolicyCmd::Install { dir } => {
            let pack = load_pack(&dir)?;
            let engine = g.open()?;
            let installed = engine.install_policy(&g.ctx(), &pack)?;
            tell!(
                "installed policy version {} from {}; it decides from now on",
                installed.version,
                dir.display()
            );
            Ok(())
        }
        PolicyCmd::Show => out.emit(&g.open()?.installed_policy(&g.ctx())?),
    }
}

fn load_pack(dir: &Path) -> Result<PolicyPack> {
    Ok(PolicyPack::from_dir(dir)?)
}

/// Prints a case report; fails when a case failed.
fn report_cases(report: &CaseReport, what: &str) -> Result<()> {
    // Not through `Output`: the report prints the same with --json.
    for f in &report.failures {
        tell!("FAIL {}: {}", line(&f.case), line(&f.problem));
    }
    say!(
        "{what}: {} case(s) passed, {} failed",
        report.passed,
        report.failures.len()
    );
    if report.failures.is_empty() {
        Ok(())
    } else {
        bail!("{} policy case(s) failed", report.failures.len())
    }
}

/// The schema policy cases are checked against: the database's when one
/// is reachable, the bundled one otherwise.
fn schema_for_cases(g: &Global) -> Schema {
    if g.db.exists()
        && let Ok(engine) = g.open()
    {
        return engine.schema().clone();
    }
    Schema::default()
}

impl Render for InstalledPolicy {
    const JSON: Json = Json::Line;

    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "policy version {} installed {} by {}",
            self.version, self.installed_at, self.installed_by
        )?;
        for (name, text) in self.pack.files() {
            writeln!(out, "\n==> {name} <==\n{text}")?;
        }
        Ok(())
    }

    fn json(&self) -> impl Serialize {
        let files: serde_json::Map<String, serde_json::Value> = self
            .pack
            .files()
            .map(|(name, text)| (name.to_string(), text.into()))
            .collect();
        serde_json::json!({
            "version": self.version,
            "installed_at": self.installed_at,
            "installed_by": self.installed_by,
            "files": files,
        })
    }
}
