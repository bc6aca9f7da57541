//! `custodian alert`: list, show, acknowledge and resolve alerts.

use anyhow::Result;

use crate::args::Global;
use crate::args::plugins::AlertCmd;
use crate::render::{Output, tell};

pub fn run(g: &Global, out: Output, cmd: AlertCmd) -> Result<()> {
    let engine = g.open()?;
    let ctx = g.ctx();
    match cmd {
        AlertCmd::List { state, limit } => {
            out.emit(&engine.alerts_where(&ctx, state.map(Into::into), limit)?)
        }
        AlertCmd::Show { id } => out.emit(&engine.alert(&ctx, id)?),
        AlertCmd::Ack { id, note } => {
            engine.acknowledge_alert(&ctx, id, &note)?;
            tell!("acknowledged alert {id}");
            Ok(())
        }
        AlertCmd::Resolve { id, note } => {
            engine.resolve_alert(&ctx, id, &note)?;
            tell!("resolved alert {id}");
            Ok(())
        }
    }
}
