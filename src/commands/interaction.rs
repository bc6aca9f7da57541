//! `custodian interaction`: logging calls, emails, orders and the like,
//! and listing a customer's.

use anyhow::Result;
use custodian::{Channel, Direction, NewInteraction, parse_amount};

use crate::args::Global;
use crate::args::records::InteractionCmd;
use crate::parse::{parse_item, parse_time};
use crate::render::{NewId, Output};

pub fn run(g: &Global, out: Output, cmd: InteractionCmd) -> Result<()> {
    let engine = g.open()?;
    let ctx = g.ctx();
    match cmd {
        InteractionCmd::Add {
            customer,
            channel,
            direction,
            summary,
            body,
            at,
            amount,
            items,
        } => {
            let mut new = NewInteraction::new(
                Channel::parse(&channel)?,
                Direction::parse(&direction)?,
                summary,
            );
            new.body = body;
            new.at = at.as_deref().map(parse_time).transpose()?;
            new.amount_minor = amount.as_deref().map(parse_amount).transpose()?;
            new.items = items.iter().map(|i| parse_item(i)).collect::<Result<_>>()?;
            out.emit(&NewId(engine.log_interaction(&ctx, customer, new)?))
        }
        InteractionCmd::List { customer } => out.emit(&engine.interactions(&ctx, customer)?),
    }
}
