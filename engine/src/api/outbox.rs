//! The outbox, for the host that delivers messages: each handed out with
//! the address the engine resolved, never shown to the plugin that queued
//! it.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Engine;
use super::retention::NOTICE_SENDER;
use crate::audit::Outcome;
use crate::guard::Access;
use crate::model::{CustomerId, from_micros};
use crate::op::{Entry, Op};
use crate::records::{Slot, address_field, message_purpose};
use crate::{Context, Result};

/// A message waiting in the outbox, with the address the engine resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutboxMessage {
    /// Its id (for [`Engine::ack_outbox`]).
    pub id: u64,
    /// The plugin that queued it.
    pub plugin: String,
    /// `sms` or `email`.
    pub channel: String,
    /// The customer.
    pub customer: CustomerId,
    /// The phone number or email address, resolved by the engine.
    pub address: String,
    /// The template to render.
    pub template: String,
    /// Template parameters.
    pub params: Vec<(String, String)>,
    /// Whether it is marketing (queued only with consent to `marketing`;
    /// other messages need consent to `service`).
    pub marketing: bool,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
}

impl Engine {
    /// Messages waiting for delivery, oldest first, with their addresses
    /// resolved. A message whose customer withdrew consent to its purpose
    /// since it was queued (or whose purpose the company retired), or that
    /// has no address any more, is dropped here (audited), never shown.
    /// Admins only.
    pub fn outbox(&self, ctx: &Context, limit: usize) -> Result<Vec<OutboxMessage>> {
        let entry = Entry::new("outbox.read").fields(vec!["phone".into(), "email".into()]);
        let op = Op::new(entry).admins("read the outbox");
        self.core.write(ctx, op, |tx| {
            let records = tx.records();
            let retired = tx.txn().retired_purposes()?;
            // What can go, decided with nothing decrypted; the guard then
            // sees every customer whose address is handed out, as one
            // request.
            let mut going = Vec::new();
            for (id, m) in tx.txn().messages(limit)? {
                let field = address_field(&m.channel).unwrap_or("phone");
                // The engine's own legal notices go whatever the consents.
                let purpose = message_purpose(m.marketing);
                let own = m.plugin == NOTICE_SENDER;
                let retired = !own && retired.iter().any(|p| p == purpose);
                let withdrawn = !own && !records.consented(tx.txn(), m.customer, purpose)?;
                let held = match tx.txn().customer(m.customer)? {
                    Some(record) => {
                        record.sealed.contains_key(field) || record.public.contains_key(field)
                    }
                    None => false,
                };
                let dropped = match () {
                    () if retired => Some("purpose retired"),
                    () if withdrawn => Some("consent withdrawn"),
                    () if !held => Some("no address"),
                    () => None,
                };
                if let Some(reason) = dropped {
                    tx.txn().remove_message(id)?;
                    let drop = Entry::new("outbox.drop")
                        .customer(m.customer)
                        .target(format!("message {id}"));
                    tx.audit(drop, Outcome::Denied(reason.into()))?;
                    continue;
                }
                going.push((id, m, field));
            }
            let customers: Vec<u64> = going.iter().map(|(_, m, _)| m.customer).collect();
            tx.reveal(Access::Export, &customers)?;
            let mut out = Vec::new();
            for (id, m, field) in going {
                let address = match tx.txn().customer(m.customer)? {
                    Some(record) => match record.sealed.get(field) {
                        Some(s) => Some(records.open(m.customer, Slot::Field(field), &s.sealed)?),
                        None => record.public.get(field).cloned(),
                    },
                    None => None,
                };
                tx.touched([m.customer]);
                let params = records.message_params(&m)?;
                out.push(OutboxMessage {
                    id,
                    plugin: m.plugin,
                    channel: m.channel,
                    customer: m.customer,
                    address: address.unwrap_or_default(),
                    template: m.template,
                    params,
                    marketing: m.marketing,
                    created_at: from_micros(m.created_at),
                });
            }
            Ok(out)
        })
    }

    /// Removes delivered messages from the outbox; returns how many were
    /// there. Admins only.
    pub fn ack_outbox(&self, ctx: &Context, ids: &[u64]) -> Result<usize> {
        let entry = Entry::new("outbox.ack").target(format!("{} messages", ids.len()));
        let op = Op::new(entry).admins("acknowledge outbox messages");
        self.core.write(ctx, op, |tx| {
            let mut removed = 0;
            for id in ids {
                if tx.txn().remove_message(*id)? {
                    removed += 1;
                }
            }
            Ok(removed)
        })
    }
}
