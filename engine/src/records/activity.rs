//! Interactions and follow-ups: what happened with a customer and what is
//! to be done next. Summaries, bodies and notes are sealed under the
//! customer's data key, each in its own slot.

use super::{Records, Slot};
use crate::Result;
use crate::model::{
    Channel, CustomerId, Direction, FollowUp, Interaction, ModelError, OrderItem, from_micros,
};
use crate::store::{StoredCustomer, StoredFollowUp, StoredInteraction, Txn};

/// The longest summary, in bytes.
pub(crate) const MAX_SUMMARY: usize = 1024;
/// The longest interaction body, in bytes.
pub(crate) const MAX_BODY: usize = 1 << 20;
/// The longest follow-up note, in bytes.
pub(crate) const MAX_NOTE: usize = 4 * MAX_SUMMARY;

/// Refuses `text` longer than `max` bytes; the message never holds the text.
pub(crate) fn check_len(what: &str, text: &str, max: usize) -> Result<(), ModelError> {
    if text.len() > max {
        return Err(ModelError::Attribute {
            what: what.into(),
            reason: format!("{} bytes long; the most accepted is {max}", text.len()),
        });
    }
    Ok(())
}

/// Refuses more order items, or longer item names, than are kept.
pub(crate) fn check_items(items: &[OrderItem]) -> Result<(), ModelError> {
    if items.len() > 1000 || items.iter().any(|i| i.name.len() > 200) {
        return Err(ModelError::Attribute {
            what: "items".into(),
            reason: "at most 1000 items of at most 200 bytes each".into(),
        });
    }
    Ok(())
}

/// An interaction to log, checked and normalized by the caller's path.
pub(crate) struct InteractionWrite<'a> {
    pub(crate) channel: Channel,
    pub(crate) direction: Direction,
    /// When it happened (µs).
    pub(crate) at: i64,
    pub(crate) summary: &'a str,
    pub(crate) body: Option<&'a str>,
    pub(crate) amount_minor: Option<i64>,
    pub(crate) items: Vec<OrderItem>,
    /// The principal that logs it.
    pub(crate) logged_by: &'a str,
}

impl InteractionWrite<'_> {
    /// Checks the lengths of what is sealed and kept.
    pub(crate) fn check(&self) -> Result<(), ModelError> {
        check_len("summary", self.summary, MAX_SUMMARY)?;
        if let Some(body) = self.body {
            check_len("body", body, MAX_BODY)?;
        }
        check_items(&self.items)
    }
}

/// A follow-up to schedule.
pub(crate) struct FollowUpWrite<'a> {
    /// When it is due (µs).
    pub(crate) due: i64,
    pub(crate) note: &'a str,
    pub(crate) assignee: &'a str,
    pub(crate) created_by: &'a str,
}

impl Records {
    /// Logs an interaction with `record`'s customer and moves its
    /// last-interaction time forward; returns the interaction's id.
    pub(crate) fn log_interaction(
        &self,
        txn: &mut dyn Txn,
        record: &mut StoredCustomer,
        new: InteractionWrite<'_>,
    ) -> Result<u64> {
        new.check()?;
        let key = self.data_key(record.id)?;
        let id = self.reserve_ids(1);
        txn.put_interaction(&StoredInteraction {
            id,
            customer: record.id,
            channel: new.channel,
            direction: new.direction,
            at: new.at,
            logged_by: new.logged_by.to_string(),
            summary: key.seal(&Slot::Summary(id).name(), new.summary)?,
            body: (new.body)
                .map(|b| key.seal(&Slot::Body(id).name(), b))
                .transpose()?,
            amount_minor: new.amount_minor,
            items: new.items,
        })?;
        txn.record_id(id);
        if record.last_interaction_at.is_none_or(|t| t < new.at) {
            record.last_interaction_at = Some(new.at);
            txn.put_customer(record)?;
        }
        Ok(id)
    }

    /// Schedules a follow-up on `customer`; returns its id.
    pub(crate) fn add_follow_up(
        &self,
        txn: &mut dyn Txn,
        customer: CustomerId,
        new: FollowUpWrite<'_>,
    ) -> Result<u64> {
        check_len("note", new.note, MAX_NOTE)?;
        let key = self.data_key(customer)?;
        let id = self.reserve_ids(1);
        txn.put_followup(&StoredFollowUp {
            id,
            customer,
            due: new.due,
            assignee: new.assignee.to_string(),
            note: key.seal(&Slot::Note(id).name(), new.note)?,
            done: false,
            created_by: new.created_by.to_string(),
        })?;
        txn.record_id(id);
        Ok(id)
    }

    /// Interactions as shown: each of summary and body opened where
    /// `shown` says so, absent otherwise.
    pub(crate) fn show_interactions(
        &self,
        customer: CustomerId,
        (summary_shown, body_shown): (bool, bool),
        stored: Vec<StoredInteraction>,
    ) -> Result<Vec<Interaction>> {
        let key = match (summary_shown || body_shown) && !stored.is_empty() {
            true => Some(self.data_key(customer)?),
            false => None,
        };
        let mut out = Vec::with_capacity(stored.len());
        for s in stored {
            let (summary, body) = match &key {
                Some(k) => (
                    summary_shown
                        .then(|| k.open(&Slot::Summary(s.id).name(), &s.summary))
                        .transpose()?,
                    (s.body.as_ref())
                        .filter(|_| body_shown)
                        .map(|b| k.open(&Slot::Body(s.id).name(), b))
                        .transpose()?,
                ),
                None => (None, None),
            };
            out.push(Interaction {
                id: s.id,
                customer,
                channel: s.channel,
                direction: s.direction,
                at: from_micros(s.at),
                logged_by: s.logged_by,
                summary,
                body,
                amount_minor: s.amount_minor,
                items: s.items,
            });
        }
        Ok(out)
    }

    /// A follow-up as shown: its note opened if `note_shown`.
    pub(crate) fn show_follow_up(&self, f: StoredFollowUp, note_shown: bool) -> Result<FollowUp> {
        let note = match note_shown {
            true => Some(self.open(f.customer, Slot::Note(f.id), &f.note)?),
            false => None,
        };
        Ok(FollowUp {
            id: f.id,
            customer: f.customer,
            due: from_micros(f.due),
            assignee: f.assignee,
            note,
            done: f.done,
        })
    }
}
