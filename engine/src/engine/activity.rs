//! Interactions and follow-ups: what happened with a customer and what is
//! to be done next. Summaries, bodies and notes are sealed under the
//! customer's data key.

use chrono::{DateTime, Utc};

use super::customers::{read_record, refuse, writer_actor};
use super::{Context, Engine, Event, Inner, from_micros, now_micros};
use crate::audit::{self, Outcome};
use crate::model::{
    CustomerId, FollowUp, FollowUpId, Interaction, InteractionId, ModelError, NewFollowUp,
    NewInteraction,
};
use crate::store::{StoredFollowUp, StoredInteraction};
use crate::{Error, Result};

const MAX_SUMMARY: usize = 1024;
const MAX_BODY: usize = 1 << 20;

fn check_len(what: &str, text: &str, max: usize) -> Result<()> {
    if text.len() > max {
        return Err(ModelError::Attribute {
            what: what.into(),
            reason: format!("{} bytes long; the most accepted is {max}", text.len()),
        }
        .into());
    }
    Ok(())
}

impl Engine {
    /// Logs an interaction with a customer and moves the customer's
    /// last-interaction time forward. Any active principal may log one.
    pub fn log_interaction(
        &self,
        ctx: &Context,
        customer: CustomerId,
        new: NewInteraction,
    ) -> Result<InteractionId> {
        check_len("summary", &new.summary, MAX_SUMMARY)?;
        if let Some(body) = &new.body {
            check_len("body", body, MAX_BODY)?;
        }
        if new.items.iter().any(|i| i.name.len() > 200) || new.items.len() > 1000 {
            return Err(ModelError::Attribute {
                what: "items".into(),
                reason: "at most 1000 items of at most 200 bytes each".into(),
            }
            .into());
        }
        let inner = &self.inner;
        let id = inner.reserve_ids(1);
        let at = new.at.map_or_else(now_micros, |t| t.timestamp_micros());
        let key = inner.data_key(customer).ok();
        let event = || {
            Event::new("interaction.log")
                .customer(customer)
                .fields(vec!["summary".into(), "body".into()])
        };
        inner.store.write(|w| {
            let actor = match writer_actor(w, ctx)? {
                Ok(a) => a,
                Err(reason) => return refuse(inner, w, ctx, event(), Error::Denied(reason)),
            };
            let (Some(mut record), Some(key)) = (w.customer(customer)?, key.as_ref()) else {
                let error = Error::NotFound(format!("customer {customer}"));
                return refuse(inner, w, ctx, event(), error);
            };
            let slot = |part: &str| format!("interaction/{id}/{part}");
            let stored = StoredInteraction {
                id,
                customer,
                channel: new.channel,
                direction: new.direction,
                at,
                logged_by: actor.name.clone(),
                summary: key.seal(&slot("summary"), &new.summary)?,
                body: new
                    .body
                    .as_deref()
                    .map(|b| key.seal(&slot("body"), b))
                    .transpose()?,
                amount_minor: new.amount_minor,
                items: new.items.clone(),
            };
            w.put_interaction(&stored)?;
            w.record_id(id);
            if record.last_interaction_at.is_none_or(|t| t < at) {
                record.last_interaction_at = Some(at);
                w.put_customer(&record)?;
            }
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(id))
        })?
    }

    /// A customer's interactions, oldest first. Summaries and bodies are
    /// shown to the customer's owner and admins only.
    pub fn interactions(&self, ctx: &Context, customer: CustomerId) -> Result<Vec<Interaction>> {
        let inner = &self.inner;
        let event = move || Event::new("interaction.list").customer(customer);
        let (actor, record, stored) = inner.store.read(|r| {
            let actor = inner.actor(r, ctx, event)?;
            Ok::<_, Error>((actor, r.customer(customer)?, r.interactions(customer)?))
        })?;
        let Some(record) = record else {
            let error = Error::NotFound(format!("customer {customer}"));
            inner.audit_read(event().record(ctx, Outcome::Failed(error.to_string())))?;
            return Err(error);
        };
        let entitled = actor.entitled(&record.owner);
        let shown = inner.show_interactions(customer, entitled, stored);
        let fields = |_: &Vec<Interaction>| match entitled {
            true => vec!["summary".into(), "body".into()],
            false => Vec::new(),
        };
        inner.audit_read(read_record(event(), ctx, &shown, fields))?;
        shown
    }

    /// Schedules a follow-up. The assignee must be an active principal.
    pub fn add_follow_up(&self, ctx: &Context, new: NewFollowUp) -> Result<FollowUpId> {
        check_len("note", &new.note, MAX_SUMMARY * 4)?;
        let inner = &self.inner;
        let id = inner.reserve_ids(1);
        let customer = new.customer;
        let key = inner.data_key(customer).ok();
        let event = || {
            Event::new("followup.create")
                .customer(customer)
                .fields(vec!["note".into()])
        };
        inner.store.write(|w| {
            let actor = match writer_actor(w, ctx)? {
                Ok(a) => a,
                Err(reason) => return refuse(inner, w, ctx, event(), Error::Denied(reason)),
            };
            let assignee = new.assignee.clone().unwrap_or_else(|| actor.name.clone());
            match w.principal(&assignee)? {
                Some(p) if p.active => {}
                _ => {
                    let error = Error::NotFound(format!("active principal `{assignee}`"));
                    return refuse(inner, w, ctx, event(), error);
                }
            }
            let (Some(_), Some(key)) = (w.customer(customer)?, key.as_ref()) else {
                let error = Error::NotFound(format!("customer {customer}"));
                return refuse(inner, w, ctx, event(), error);
            };
            w.put_followup(&StoredFollowUp {
                id,
                customer,
                due: new.due.timestamp_micros(),
                assignee,
                note: key.seal(&format!("followup/{id}/note"), &new.note)?,
                done: false,
                created_by: actor.name,
            })?;
            w.record_id(id);
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(id))
        })?
    }

    /// Open follow-ups due at or before `before`, optionally only one
    /// assignee's. Notes are shown to the assignee, the customer's owner and
    /// admins.
    pub fn follow_ups_due(
        &self,
        ctx: &Context,
        before: DateTime<Utc>,
        assignee: Option<&str>,
    ) -> Result<Vec<FollowUp>> {
        let inner = &self.inner;
        let event = || {
            Event::new("followup.list").target(format!(
                "due before {} for {}",
                before.to_rfc3339(),
                assignee.unwrap_or("everyone")
            ))
        };
        let (actor, due) = inner.store.read(|r| {
            let actor = inner.actor(r, ctx, event)?;
            let due = r.followups_due(before.timestamp_micros(), assignee)?;
            let mut with_owner = Vec::with_capacity(due.len());
            for f in due {
                let owner = r.customer(f.customer)?.map(|c| c.owner);
                with_owner.push((f, owner));
            }
            Ok::<_, Error>((actor, with_owner))
        })?;
        let mut customers = Vec::new();
        let shown: Result<Vec<FollowUp>> = due
            .into_iter()
            .map(|(f, owner)| {
                let may_read = actor.admin
                    || actor.name == f.assignee
                    || owner.as_deref() == Some(actor.name.as_str());
                let note = if may_read {
                    customers.push(f.customer);
                    let key = inner.data_key(f.customer)?;
                    Some(key.open(&format!("followup/{}/note", f.id), &f.note)?)
                } else {
                    None
                };
                Ok(FollowUp {
                    id: f.id,
                    customer: f.customer,
                    due: from_micros(f.due),
                    assignee: f.assignee,
                    note,
                    done: f.done,
                })
            })
            .collect();
        let mut ev = event();
        ev.customers = customers;
        inner.audit_read(read_record(ev, ctx, &shown, |_| vec!["note".into()]))?;
        shown
    }

    /// Marks a follow-up done. The assignee, the customer's owner or an admin may.
    pub fn complete_follow_up(&self, ctx: &Context, id: FollowUpId) -> Result<()> {
        let inner = &self.inner;
        let event = || Event::new("followup.done").target(format!("follow-up {id}"));
        inner.store.write(|w| {
            let actor = match writer_actor(w, ctx)? {
                Ok(a) => a,
                Err(reason) => return refuse(inner, w, ctx, event(), Error::Denied(reason)),
            };
            let Some(mut f) = w.followup(id)? else {
                return refuse(
                    inner,
                    w,
                    ctx,
                    event(),
                    Error::NotFound(format!("follow-up {id}")),
                );
            };
            let owner = w.customer(f.customer)?.map(|c| c.owner);
            if !(actor.admin || actor.name == f.assignee || owner.as_deref() == Some(&actor.name)) {
                let reason = format!(
                    "principal `{}` may not complete follow-up {id}: it is assigned to `{}`",
                    actor.name, f.assignee
                );
                return refuse(inner, w, ctx, event(), Error::Denied(reason));
            }
            f.done = true;
            w.put_followup(&f)?;
            let mut ev = event();
            ev.customers = vec![f.customer];
            audit::append(w, inner.ring.audit_key(), &ev.record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(()))
        })?
    }
}

impl Inner {
    /// Interactions as shown: decrypted for an entitled principal, without
    /// summary and body otherwise.
    fn show_interactions(
        &self,
        customer: CustomerId,
        entitled: bool,
        stored: Vec<StoredInteraction>,
    ) -> Result<Vec<Interaction>> {
        let key = match entitled && !stored.is_empty() {
            true => Some(self.data_key(customer)?),
            false => None,
        };
        let mut out = Vec::with_capacity(stored.len());
        for s in stored {
            let slot = |part: &str| format!("interaction/{}/{part}", s.id);
            let (summary, body) = match &key {
                Some(k) => (
                    Some(k.open(&slot("summary"), &s.summary)?),
                    s.body
                        .as_ref()
                        .map(|b| k.open(&slot("body"), b))
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
}
