//! `custodian report`: the record of processing and deletion records, for
//! privacy officers.

use anyhow::Result;

use crate::args::Global;
use crate::args::privacy::ReportCmd;
use crate::render::Output;

pub fn run(g: &Global, out: Output, cmd: ReportCmd) -> Result<()> {
    let engine = g.open()?;
    let ctx = g.ctx();
    match cmd {
        ReportCmd::Inventory => out.emit(&engine.inventory(&ctx)?),
        ReportCmd::Deletions { after, limit } => {
            out.emit(&engine.deletion_records(&ctx, after, limit)?)
        }
    }
}
