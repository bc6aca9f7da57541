//! `custodian followup`: reminders to get back to a customer, and their
//! delivery to plugins when due.

use std::io::{self, Write};

use anyhow::Result;
use custodian::NewFollowUp;
use serde::Serialize;

use crate::args::Global;
use crate::args::records::FollowUpCmd;
use crate::parse::{parse_time, time_or_now};
use crate::render::{Json, NewId, Output, Render, tell};

pub fn run(g: &Global, out: Output, cmd: FollowUpCmd) -> Result<()> {
    let engine = g.open()?;
    let ctx = g.ctx();
    match cmd {
        FollowUpCmd::Add {
            customer,
            due,
            note,
            assignee,
        } => {
            let id = engine.add_follow_up(
                &ctx,
                NewFollowUp {
                    customer,
                    due: parse_time(&due)?,
                    assignee,
                    note,
                },
            )?;
            out.emit(&NewId(id))?;
        }
        FollowUpCmd::Due { before, assignee } => {
            let before = time_or_now(before.as_deref())?;
            out.emit(&engine.follow_ups_due(&ctx, before, assignee.as_deref())?)?;
        }
        FollowUpCmd::Done { id } => {
            engine.complete_follow_up(&ctx, id)?;
            tell!("follow-up {id} done");
        }
        FollowUpCmd::Dispatch { until } => {
            let until = time_or_now(until.as_deref())?;
            out.emit(&Dispatched(engine.dispatch_due_follow_ups(until)?))?;
        }
    }
    Ok(())
}

/// How many due follow-ups went to plugins.
struct Dispatched(usize);

impl Render for Dispatched {
    const JSON: Json = Json::Line;

    fn human(&self, _out: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }

    fn note(&self, err: &mut dyn Write) -> io::Result<()> {
        writeln!(
            err,
            "dispatched {} due follow-up(s) to subscribed plugins",
            self.0
        )
    }

    fn json(&self) -> impl Serialize {
        serde_json::json!({ "dispatched": self.0 })
    }
}
