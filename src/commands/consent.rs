//! `custodian consent`: the ledger of customers' consents to purposes.

use std::io::{self, Write};

use anyhow::Result;
use custodian::{ConsentChange, CustomerId};
use serde::Serialize;

use crate::args::Global;
use crate::args::privacy::ConsentCmd;
use crate::render::{Consents, Output, Render, tell};

pub fn run(g: &Global, out: Output, cmd: ConsentCmd) -> Result<()> {
    let engine = g.open()?;
    let ctx = g.ctx();
    match cmd {
        ConsentCmd::Grant {
            customer,
            purpose,
            fields,
            channel,
            notice,
        } => {
            let mut change = ConsentChange::grant(purpose.as_str(), channel, notice);
            for f in &fields {
                change = change.field(f.as_str());
            }
            engine.record_consent(&ctx, customer, &change)?;
            tell!(
                "customer {customer}: consent to `{purpose}`{} granted",
                covering(&fields)
            );
        }
        ConsentCmd::Withdraw {
            customer,
            purpose,
            fields,
            channel,
        } => {
            let mut change = ConsentChange::withdraw(purpose.as_str(), channel);
            for f in &fields {
                change = change.field(f.as_str());
            }
            let erased = engine.record_consent(&ctx, customer, &change)?;
            let note = if erased.is_empty() {
                String::new()
            } else {
                format!("; erased {} (no basis left)", erased.join(", "))
            };
            tell!(
                "customer {customer}: consent to `{purpose}`{} withdrawn{note}",
                covering(&fields)
            );
            out.emit(&Withdrawn { customer, erased })?;
        }
        ConsentCmd::Show { customer } => out.emit(&Consents(engine.consents(&ctx, customer)?))?,
        ConsentCmd::History { customer } => out.emit(&engine.consent_history(&ctx, customer)?)?,
    }
    Ok(())
}

/// ` for id_number, ...` when a consent names sensitive fields.
fn covering(fields: &[String]) -> String {
    if fields.is_empty() {
        String::new()
    } else {
        format!(" for {}", fields.join(", "))
    }
}

/// The fields a withdrawal erased: people were told on stderr already.
struct Withdrawn {
    customer: CustomerId,
    erased: Vec<String>,
}

impl Render for Withdrawn {
    fn human(&self, _out: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }

    fn json(&self) -> impl Serialize {
        serde_json::json!({ "customer": self.customer, "erased": self.erased })
    }
}
