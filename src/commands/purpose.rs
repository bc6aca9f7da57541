//! `custodian purpose`: purposes the company stops, or resumes, pursuing.

use std::io::{self, Write};

use anyhow::Result;
use serde::Serialize;

use crate::args::Global;
use crate::args::privacy::PurposeCmd;
use crate::render::{Output, Render, tell};

pub fn run(g: &Global, out: Output, cmd: PurposeCmd) -> Result<()> {
    let engine = g.open()?;
    let ctx = g.ctx();
    match cmd {
        PurposeCmd::Retire { purpose } => {
            engine.retire_purpose(&ctx, &purpose, true)?;
            tell!(
                "purpose `{purpose}` retired: see `custodian report inventory` for what it leaves without basis"
            );
        }
        PurposeCmd::Restore { purpose } => {
            engine.retire_purpose(&ctx, &purpose, false)?;
            tell!("purpose `{purpose}` restored");
        }
        PurposeCmd::List => out.emit(&Retired(engine.retired_purposes()))?,
    }
    Ok(())
}

/// The purposes retired.
struct Retired(Vec<String>);

impl Render for Retired {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.0.is_empty() {
            writeln!(out, "no purpose is retired")?;
        }
        for p in &self.0 {
            writeln!(out, "{p}")?;
        }
        Ok(())
    }

    fn json(&self) -> impl Serialize {
        &self.0
    }
}
