//! Interactions and follow-ups: what happened with a customer and what is
//! to be done next.

use chrono::{DateTime, Utc};

use super::Engine;
use crate::guard::Access;
use crate::model::{
    CustomerId, FollowUp, FollowUpId, Interaction, InteractionId, NewFollowUp, NewInteraction,
};
use crate::op::{Emitted, Entry, Op, shows_text};
use crate::policy::Action;
use crate::records::{FollowUpWrite, InteractionWrite, MAX_NOTE, check_len};
use crate::store::SnapshotExt;
use crate::{Context, Error, Result};

impl Engine {
    /// Logs an interaction with a customer and moves the customer's
    /// last-interaction time forward, as the policy allows.
    pub fn log_interaction(
        &self,
        ctx: &Context,
        customer: CustomerId,
        new: NewInteraction,
    ) -> Result<InteractionId> {
        let at = (new.at).map_or_else(|| self.core.records.now(), |t| t.timestamp_micros());
        let write = InteractionWrite {
            channel: new.channel,
            direction: new.direction,
            at,
            summary: &new.summary,
            body: new.body.as_deref(),
            amount_minor: new.amount_minor,
            items: new.items.clone(),
            logged_by: "",
        };
        write.check()?;
        let fields = vec!["summary".into(), "body".into()];
        let op = Op::new(
            Entry::new("interaction.log")
                .customer(customer)
                .fields(fields),
        );
        self.core.write(ctx, op, |tx| {
            let mut record = tx.customer(customer, Action::LogInteraction)?;
            let logged_by = tx.actor().name.clone();
            let write = InteractionWrite {
                logged_by: &logged_by,
                ..write
            };
            let id = tx.records().log_interaction(tx.txn(), &mut record, write)?;
            tx.emit(Emitted::Logged {
                customer,
                interaction: id,
                channel: new.channel,
                at,
            });
            Ok(id)
        })
    }

    /// A customer's interactions, oldest first, as the policy allows:
    /// summaries and bodies are shown where it grants them in full.
    pub fn interactions(&self, ctx: &Context, customer: CustomerId) -> Result<Vec<Interaction>> {
        let op = Op::new(Entry::new("interaction.list").customer(customer));
        self.core.read(ctx, op, |read| {
            read.customer(customer, Action::ReadInteractions, |read, _, decision| {
                let parts = (
                    shows_text(&decision, "summary"),
                    shows_text(&decision, "body"),
                );
                let shown = ["summary", "body"]
                    .into_iter()
                    .zip([parts.0, parts.1])
                    .filter(|(_, shown)| *shown)
                    .map(|(part, _)| part.to_string());
                read.touched([], shown);
                let stored = read.snapshot().interactions(customer)?;
                read.records().show_interactions(customer, parts, stored)
            })
        })
    }

    /// Schedules a follow-up, as the policy allows. The assignee (the actor
    /// unless given) must be an active principal.
    pub fn add_follow_up(&self, ctx: &Context, new: NewFollowUp) -> Result<FollowUpId> {
        check_len("note", &new.note, MAX_NOTE)?;
        let customer = new.customer;
        let fields = vec!["note".into()];
        let op = Op::new(
            Entry::new("followup.create")
                .customer(customer)
                .fields(fields),
        );
        self.core.write(ctx, op, |tx| {
            let actor = tx.actor().name.clone();
            let assignee = new.assignee.clone().unwrap_or_else(|| actor.clone());
            if !tx.txn().principal(&assignee)?.is_some_and(|p| p.active) {
                return Err(Error::NotFound(format!("active principal `{assignee}`")));
            }
            tx.customer(customer, Action::WriteFollowUps)?;
            let write = FollowUpWrite {
                due: new.due.timestamp_micros(),
                note: &new.note,
                assignee: &assignee,
                created_by: &actor,
            };
            tx.records().add_follow_up(tx.txn(), customer, write)
        })
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
        let target = format!(
            "due before {} for {}",
            before.to_rfc3339(),
            assignee.unwrap_or("everyone")
        );
        let op = Op::new(Entry::new("followup.list").target(target)).access(Access::Search);
        self.core.read(ctx, op, |read| {
            let snapshot = read.snapshot();
            let due = snapshot.followups_due(before.timestamp_micros(), assignee)?;
            let mut listed = Vec::with_capacity(due.len());
            for f in due {
                let own = f.assignee == read.actor().name;
                let decision = snapshot.with_customer(f.customer, |record| match record {
                    Some(record) => {
                        let decision =
                            read.decider()
                                .decide(snapshot, Action::ReadFollowUps, &record)?;
                        Ok::<_, Error>(Some(decision).filter(|d| d.allowed()))
                    }
                    None => Ok(None),
                })?;
                if own || decision.is_some() {
                    let note = own || decision.is_some_and(|d| shows_text(&d, "note"));
                    listed.push((f, note));
                }
            }
            let customers: Vec<u64> = (listed.iter())
                .filter(|(_, note)| *note)
                .map(|(f, _)| f.customer)
                .collect();
            read.reveal(&customers)?;
            read.touched(customers, ["note".to_string()]);
            let records = read.records();
            (listed.into_iter())
                .map(|(f, note)| records.show_follow_up(f, note))
                .collect()
        })
    }

    /// Marks a follow-up done. The assignee, or whoever the policy lets
    /// write the customer's follow-ups, may.
    pub fn complete_follow_up(&self, ctx: &Context, id: FollowUpId) -> Result<()> {
        let op = Op::new(Entry::new("followup.done").target(format!("follow-up {id}")));
        self.core.write(ctx, op, |tx| {
            let Some(mut f) = tx.txn().followup(id)? else {
                return Err(Error::NotFound(format!("follow-up {id}")));
            };
            tx.touched([f.customer]);
            if tx.actor().name != f.assignee {
                tx.customer(f.customer, Action::WriteFollowUps)?;
            }
            f.done = true;
            tx.txn().put_followup(&f)?;
            Ok(())
        })
    }
}
