//! `custodian hold` and `custodian lifecycle`: legal holds, and where a
//! customer is in its lifecycle.

use anyhow::Result;
use custodian::CustomerId;

use crate::args::Global;
use crate::args::privacy::HoldCmd;
use crate::render::{LifecycleOf, Output, tell};

pub fn run(g: &Global, cmd: HoldCmd) -> Result<()> {
    let engine = g.open()?;
    let ctx = g.ctx();
    match cmd {
        HoldCmd::Place { customer, reason } => {
            engine.set_legal_hold(&ctx, customer, Some(&reason))?;
            tell!(
                "customer {customer}: legal hold placed ({reason}); it is not notified, anonymized or erased until released"
            );
        }
        HoldCmd::Release { customer } => {
            engine.set_legal_hold(&ctx, customer, None)?;
            tell!("customer {customer}: legal hold released");
        }
    }
    Ok(())
}

pub fn lifecycle(g: &Global, out: Output, customer: CustomerId) -> Result<()> {
    let engine = g.open()?;
    let lifecycle = engine.lifecycle(&g.ctx(), customer)?;
    out.emit(&LifecycleOf {
        customer,
        lifecycle,
    })
}
