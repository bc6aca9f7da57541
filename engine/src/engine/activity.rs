//! Interactions and follow-ups: what happened with a customer and what is
//! to be done next. Summaries, bodies and notes are sealed under the
//! customer's data key.

use chrono::{DateTime, Utc};

use super::access::{Teams, refusal, shows_text, subject};
use super::customers::{read_record, refuse, writer_actor};
use super::plugins::Emitted;
use super::{Context, Engine, Event, Inner, from_micros};
use crate::audit::{self, Outcome};
use crate::model::{
    CustomerId, FollowUp, FollowUpId, Interaction, InteractionId, ModelError, NewFollowUp,
    NewInteraction,
};
use crate::policy::Action;
use crate::store::{StoredFollowUp, StoredInteraction};
use crate::{Error, Result};

pub(crate) const MAX_SUMMARY: usize = 1024;
pub(crate) const MAX_BODY: usize = 1 << 20;

pub(crate) fn check_len(what: &str, text: &str, max: usize) -> Result<()> {
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
        let ctx = &self.inner.authenticate(ctx)?;
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
        let at = new
            .at
            .map_or_else(|| self.inner.now_micros(), |t| t.timestamp_micros());
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
            if let Err(e) =
                inner.allow_write(w, &actor, Action::LogInteraction, ctx.purpose(), &record)?
            {
                return refuse(inner, w, ctx, event(), e);
            }
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
        })??;
        let logged = Emitted::Logged {
            customer,
            interaction: id,
            channel: new.channel,
            at,
        };
        self.inner.emit(vec![logged], None);
        Ok(id)
    }

    /// A customer's interactions, oldest first, as the policy allows:
    /// summaries and bodies are shown where it grants them in full.
    pub fn interactions(&self, ctx: &Context, customer: CustomerId) -> Result<Vec<Interaction>> {
        let ctx = &self.inner.authenticate(ctx)?;
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
        let facts = inner
            .store
            .read(|r| inner.facts_of(r, &mut Teams::default(), &record))?;
        let decision = inner.policy().authorize(
            &subject(&actor),
            Action::ReadInteractions,
            ctx.purpose(),
            Some(&facts),
        );
        if !decision.allowed() {
            return inner.deny(ctx, event(), refusal(&decision));
        }
        let parts = (
            shows_text(&decision, "summary"),
            shows_text(&decision, "body"),
        );
        let shown = inner.show_interactions(customer, parts, stored);
        let fields = |_: &Vec<Interaction>| {
            let mut f = Vec::new();
            if parts.0 {
                f.push("summary".into());
            }
            if parts.1 {
                f.push("body".into());
            }
            f
        };
        inner.audit_read(read_record(event(), ctx, &shown, fields))?;
        shown
    }

    /// Schedules a follow-up. The assignee must be an active principal.
    pub fn add_follow_up(&self, ctx: &Context, new: NewFollowUp) -> Result<FollowUpId> {
        let ctx = &self.inner.authenticate(ctx)?;
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
            let (Some(record), Some(key)) = (w.customer(customer)?, key.as_ref()) else {
                let error = Error::NotFound(format!("customer {customer}"));
                return refuse(inner, w, ctx, event(), error);
            };
            if let Err(e) =
                inner.allow_write(w, &actor, Action::WriteFollowUps, ctx.purpose(), &record)?
            {
                return refuse(inner, w, ctx, event(), e);
            }
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
    /// assignee's: those assigned to the actor, and those on customers the
    /// policy lets it read follow-ups of. Notes are shown to the assignee
    /// and where the policy grants `note` in full.
    pub fn follow_ups_due(
        &self,
        ctx: &Context,
        before: DateTime<Utc>,
        assignee: Option<&str>,
    ) -> Result<Vec<FollowUp>> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let event = || {
            Event::new("followup.list").target(format!(
                "due before {} for {}",
                before.to_rfc3339(),
                assignee.unwrap_or("everyone")
            ))
        };
        let policy = inner.policy();
        let due = inner.store.read(|r| {
            let actor = inner.actor(r, ctx, event)?;
            let subject = subject(&actor);
            let mut teams = Teams::default();
            let due = r.followups_due(before.timestamp_micros(), assignee)?;
            let mut listed = Vec::with_capacity(due.len());
            for f in due {
                let own = f.assignee == actor.name;
                let decision = match r.customer(f.customer)? {
                    Some(c) => {
                        let facts = inner.facts_of(r, &mut teams, &c)?;
                        Some(policy.authorize(
                            &subject,
                            Action::ReadFollowUps,
                            ctx.purpose(),
                            Some(&facts),
                        ))
                    }
                    None => None,
                };
                let allowed = decision.as_ref().is_some_and(|d| d.allowed());
                if own || allowed {
                    let note = own
                        || (allowed && decision.as_ref().is_some_and(|d| shows_text(d, "note")));
                    listed.push((f, note));
                }
            }
            Ok::<_, Error>(listed)
        })?;
        let mut customers = Vec::new();
        let shown: Result<Vec<FollowUp>> = due
            .into_iter()
            .map(|(f, may_read)| {
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
        let ctx = &self.inner.authenticate(ctx)?;
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
            if actor.name != f.assignee {
                let Some(record) = w.customer(f.customer)? else {
                    let error = Error::NotFound(format!("customer {}", f.customer));
                    return refuse(inner, w, ctx, event(), error);
                };
                if let Err(e) =
                    inner.allow_write(w, &actor, Action::WriteFollowUps, ctx.purpose(), &record)?
                {
                    return refuse(inner, w, ctx, event(), e);
                }
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
    /// Interactions as shown: each of summary and body decrypted where the
    /// decision shows it, absent otherwise.
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
            let slot = |part: &str| format!("interaction/{}/{part}", s.id);
            let (summary, body) = match &key {
                Some(k) => (
                    summary_shown
                        .then(|| k.open(&slot("summary"), &s.summary))
                        .transpose()?,
                    s.body
                        .as_ref()
                        .filter(|_| body_shown)
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
