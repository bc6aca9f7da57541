//! Events: what a committed write tells the plugins subscribed to it.
//! Delivered after the commit, on the caller's thread, each as the
//! receiving plugin may see it (through the read path, as its principal);
//! a plugin's failure is its own and never reaches the operation that
//! caused the event.

use std::cell::Cell;

use super::plugins::wit_channel;
use super::{Context, Core, Emitted, Entry, Op};
use crate::Result;
use crate::model::CustomerId;
use crate::plugin::runtime::{Entry as Call, event_kind_of, wit};
use crate::plugin::{FieldAccess, Hook, PluginInfo, PluginStatus};
use crate::policy::Action;
use crate::records::Slot;

thread_local! {
    /// How deep in event delivery this thread is: events caused by a
    /// plugin's reaction to an event are delivered, but no deeper.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

const MAX_EVENT_DEPTH: u32 = 2;

impl Core {
    /// Delivers events to the enabled plugins granted them (never to
    /// `source`, the plugin whose commands caused them). A plugin's
    /// failure is audited and counted against it, never returned.
    pub(crate) fn deliver(self: &std::sync::Arc<Self>, events: Vec<Emitted>, source: Option<&str>) {
        if events.is_empty() || !events.iter().any(|e| self.plugins.wants(e.kind())) {
            return;
        }
        let depth = DEPTH.with(Cell::get);
        if depth >= MAX_EVENT_DEPTH {
            return;
        }
        let Ok(plugins) = self.store.read(|r| r.plugins()) else {
            return;
        };
        DEPTH.with(|d| d.set(depth + 1));
        for event in &events {
            let kind = event.kind();
            for p in &plugins {
                let name = p.manifest.name.as_str();
                if Some(name) == source
                    || p.status != PluginStatus::Enabled
                    || !p.grant.hooks.contains(&Hook::OnEvent)
                    || !p.grant.events.contains(&kind)
                {
                    continue;
                }
                let Ok(Some(wit_event)) = self.wit_event(p, event) else {
                    continue;
                };
                let what = format!("on-event {}", event_kind_of(&wit_event).as_str());
                // Failures are audited inside; the event's cause stands.
                let _ = self.call_plugin(name, Hook::OnEvent, Call::OnEvent(&wit_event), &what);
            }
        }
        DEPTH.with(|d| d.set(depth));
    }

    /// The event as plugin `p` may see it, read through the path as its
    /// principal; `None` when the plugin may not see the customer (the
    /// policy denies it, or it is gone).
    fn wit_event(&self, p: &PluginInfo, event: &Emitted) -> Result<Option<wit::Event>> {
        let ctx = Context::new(p.manifest.principal(), "plugin event");
        let Some(id) = event.customer() else {
            return Ok(Some(match event {
                Emitted::Erased(id) => wit::Event::CustomerErased(*id),
                Emitted::Alert { kind, message } => wit::Event::AlertRaised(wit::Alert {
                    kind: kind.clone(),
                    message: message.clone(),
                }),
                _ => return Ok(None),
            }));
        };
        let op = Op::new(Entry::new("customer.read").customer(id));
        let seen = self.read(&ctx, op, |read| {
            read.customer(id, Action::Read, |read, record, decision| {
                let customer = read.plugin_view(&p.grant, record, &decision)?;
                let note = match event {
                    Emitted::FollowUpDue { follow_up, .. }
                        if p.grant.fields.get("note") == Some(&FieldAccess::Full) =>
                    {
                        // A note is shown as `follow_ups_due` shows it: where
                        // the policy lets the principal read follow-ups and
                        // shows `note` in full.
                        let snapshot = read.snapshot();
                        let decision =
                            read.decider()
                                .decide(snapshot, Action::ReadFollowUps, record)?;
                        match decision.allowed() && super::access::shows_text(&decision, "note") {
                            true => read.follow_up_note(id, *follow_up)?,
                            false => None,
                        }
                    }
                    _ => None,
                };
                Ok((customer, note))
            })
        });
        // A customer the plugin may not see is not its event; the refusal
        // is in the audit chain.
        let Ok((customer, note)) = seen else {
            return Ok(None);
        };
        Ok(Some(match event {
            Emitted::Created(_) => wit::Event::CustomerCreated(customer),
            Emitted::Updated(_) => wit::Event::CustomerUpdated(customer),
            Emitted::Logged {
                interaction,
                channel,
                at,
                ..
            } => wit::Event::InteractionLogged(wit::InteractionLogged {
                customer,
                interaction: *interaction,
                channel: wit_channel(*channel),
                at: at / 1000,
            }),
            Emitted::FollowUpDue { follow_up, due, .. } => {
                wit::Event::FollowUpDue(wit::FollowUpDue {
                    customer,
                    follow_up: *follow_up,
                    due: due / 1000,
                    note,
                })
            }
            Emitted::Erased(_) | Emitted::Alert { .. } => return Ok(None),
        }))
    }
}

impl super::Read<'_> {
    /// A follow-up's note, opened, if the follow-up is the customer's.
    fn follow_up_note(&mut self, customer: CustomerId, id: u64) -> Result<Option<String>> {
        let Some(f) = self.snapshot().followup(id)? else {
            return Ok(None);
        };
        if f.customer != customer {
            return Ok(None);
        }
        self.touched([], ["note".to_string()]);
        Ok(Some(self.records().open(
            customer,
            Slot::Note(id),
            &f.note,
        )?))
    }
}
