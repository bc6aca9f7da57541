//! `custodian outbox` and `custodian alerts`: what plugins queued for
//! delivery, and what the engine raised.

use std::io::{self, Write};

use anyhow::Result;
use serde::Serialize;

use crate::args::Global;
use crate::args::plugins::OutboxCmd;
use crate::render::{Json, Output, Render};

pub fn run(g: &Global, out: Output, cmd: OutboxCmd) -> Result<()> {
    let engine = g.open()?;
    let ctx = g.ctx();
    match cmd {
        OutboxCmd::List { limit } => out.emit(&engine.outbox(&ctx, limit)?),
        OutboxCmd::Ack { ids } => out.emit(&Acknowledged {
            removed: engine.ack_outbox(&ctx, &ids)?,
            asked: ids.len(),
        }),
    }
}

/// How many of the messages acknowledged left the outbox.
struct Acknowledged {
    removed: usize,
    asked: usize,
}

impl Render for Acknowledged {
    const JSON: Json = Json::Line;

    fn human(&self, _out: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }

    fn note(&self, err: &mut dyn Write) -> io::Result<()> {
        writeln!(
            err,
            "acknowledged {} message(s){}",
            self.removed,
            if self.removed < self.asked {
                format!("; {} not in the outbox", self.asked - self.removed)
            } else {
                String::new()
            }
        )
    }

    fn json(&self) -> impl Serialize {
        serde_json::json!({ "acknowledged": self.removed })
    }
}
