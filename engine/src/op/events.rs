//! Events: what a committed write tells the plugins subscribed to it.
//!
//! A write queues its events in its own transaction ([`Core::enqueue`]):
//! one entry per subscribed plugin, in commit order, naming the event by
//! kind and ids, never by a personal value. After the commit a worker
//! thread delivers the queue in order ([`Core::deliver_queued`]), each
//! event read through the path as the receiving plugin may see it at
//! delivery time. An entry leaves the queue once its delivery has ended
//! (a plugin's failure is audited and counted against it, never returned
//! to anyone); a crash before that delivers it again on the next open. A
//! plugin over a budget of its policy keeps its events queued, in order,
//! until the budget has room (tried again a minute later). So
//! events arrive at least once and in order per plugin, no plugin runs on
//! the thread of the operation that caused its event, and a crash loses
//! none.

use std::cell::Cell;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::plugins::wit_channel;
use super::{Context, Core, Emitted, Entry, Op};
use crate::model::CustomerId;
use crate::plugin::runtime::{Entry as Call, event_kind_of, wit};
use crate::plugin::{EventKind, FieldAccess, Hook, PluginError, PluginInfo, PluginStatus};
use crate::policy::Action;
use crate::records::Slot;
use crate::store::{StoreError, StoredEvent, Txn};
use crate::{Denied, Error, Result};

thread_local! {
    /// How deep in event delivery this thread is: events caused by a
    /// plugin's reaction to an event are queued, but no deeper.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

const MAX_EVENT_DEPTH: u32 = 2;

/// Queued events read at a time by the worker.
const BATCH: usize = 64;

/// How soon the worker tries again events it deferred, at first.
const RETRY_DEFERRED: std::time::Duration = std::time::Duration::from_secs(60);
/// The longest it waits between tries.
const RETRY_LONGEST: std::time::Duration = std::time::Duration::from_secs(3600);

/// What came of handing one queued event to its plugin.
enum Delivery {
    /// Delivered, or not its event any more: it leaves the queue.
    Done,
    /// Not yet: the plugin is over a budget. It stays queued.
    Deferred,
}

/// A queued event as its plugin may see it now.
enum Handed {
    Event(wit::Event),
    /// The plugin may not see it (gone, denied): not its event.
    Nothing,
    /// The plugin may see it once its budget has room.
    Later,
}

/// What the engine and its delivery worker tell each other about the
/// queue (the queue itself is in the data file).
#[derive(Default)]
pub(crate) struct Queue {
    signals: Mutex<Signals>,
    /// The worker waits here for work.
    work: Condvar,
    /// Callers of [`Queue::wait_drained`] wait here for passes.
    passes: Condvar,
}

#[derive(Default)]
struct Signals {
    /// Passes over the queue asked for.
    asked: u64,
    /// Passes finished: a pass delivers what was queued before it began.
    done: u64,
    /// The worker is asked to stop after the delivery in progress.
    stop: bool,
    /// The worker has stopped: nobody delivers until the next open.
    ended: bool,
}

impl Queue {
    fn signals(&self) -> MutexGuard<'_, Signals> {
        self.signals.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the worker for a pass: something was queued.
    pub(crate) fn wake(&self) {
        self.signals().asked += 1;
        self.work.notify_one();
    }

    /// Asks the worker to stop after the delivery in progress.
    pub(crate) fn stop(&self) {
        self.signals().stop = true;
        self.work.notify_all();
    }

    fn stopping(&self) -> bool {
        self.signals().stop
    }

    /// Waits until a pass that began after this call has ended; `false`
    /// when the worker stopped first.
    pub(crate) fn wait_drained(&self) -> bool {
        let mut signals = self.signals();
        signals.asked += 1;
        let target = signals.asked;
        self.work.notify_one();
        while signals.done < target && !signals.ended {
            signals = (self.passes.wait(signals)).unwrap_or_else(PoisonError::into_inner);
        }
        signals.done >= target
    }

    /// The worker's side: waits until a pass is asked for (or, with
    /// `retry`, until that much time has passed: events were deferred),
    /// and returns the passes it covers; `None` when asked to stop.
    fn next_pass(&self, retry: Option<std::time::Duration>) -> Option<u64> {
        let mut signals = self.signals();
        while !signals.stop && signals.done == signals.asked {
            match retry {
                Some(after) => {
                    let (next, waited) = (self.work.wait_timeout(signals, after))
                        .unwrap_or_else(PoisonError::into_inner);
                    signals = next;
                    if waited.timed_out() {
                        break;
                    }
                }
                None => {
                    signals = (self.work.wait(signals)).unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
        (!signals.stop).then_some(signals.asked)
    }

    fn pass_done(&self, covered: u64) {
        self.signals().done = covered;
        self.passes.notify_all();
    }

    fn ended(&self) {
        self.signals().ended = true;
        self.passes.notify_all();
    }
}

/// Whether `p` is called on events of `kind`.
fn subscribed(p: &PluginInfo, kind: EventKind) -> bool {
    p.status == PluginStatus::Enabled
        && p.grant.hooks.contains(&Hook::OnEvent)
        && p.grant.events.contains(&kind)
}

impl Core {
    /// Queues `events` in the write transaction `txn` for each enabled
    /// plugin granted them (never for `source`, the plugin whose commands
    /// caused them); returns whether anything was queued.
    pub(crate) fn enqueue(
        &self,
        txn: &mut dyn Txn,
        events: &[Emitted],
        source: Option<&str>,
    ) -> Result<bool, StoreError> {
        if !events.iter().any(|e| self.plugins.wants(e.kind())) {
            return Ok(false);
        }
        let depth = DEPTH.with(Cell::get);
        if depth >= MAX_EVENT_DEPTH {
            return Ok(false);
        }
        let plugins = txn.plugins()?;
        let mut queued = false;
        for event in events {
            let kind = event.kind();
            for p in &plugins {
                let name = p.manifest.name.as_str();
                if Some(name) == source || !subscribed(p, kind) {
                    continue;
                }
                // Reserved inside the transaction: ids grow in commit order.
                let id = self.records.reserve_ids(1);
                let stored = StoredEvent {
                    plugin: name.to_string(),
                    depth,
                    event: event.clone(),
                };
                txn.queue_event(id, &stored)?;
                txn.record_id(id);
                queued = true;
            }
        }
        Ok(queued)
    }

    /// The delivery worker: a pass over the queue each time it is woken,
    /// until it is asked to stop.
    pub(crate) fn run_delivery(self: &Arc<Self>) {
        let mut retry: Option<std::time::Duration> = None;
        while let Some(covered) = self.events.next_pass(retry) {
            // A failure of the host (the storage, the plugin runtime)
            // leaves its event queued, and so does a plugin over its
            // budget: both are tried again a minute later, then less and
            // less often (at most every hour) while they stay.
            let waiting = self.deliver_queued().unwrap_or(true);
            retry = waiting.then(|| match retry {
                Some(last) => (last * 2).min(RETRY_LONGEST),
                None => RETRY_DEFERRED,
            });
            self.events.pass_done(covered);
        }
        self.events.ended();
    }

    /// Delivers the queue, oldest first, until it is empty, the worker is
    /// asked to stop, or the host fails (the event stays queued). An event
    /// its plugin may not be shown yet (over its budget) stays queued, and
    /// so do the plugin's later events (each plugin gets its events in
    /// order); returns whether any did.
    fn deliver_queued(self: &Arc<Self>) -> Result<bool> {
        let mut held: Vec<String> = Vec::new();
        let mut after = 0;
        loop {
            let batch = self.store.read(|r| r.queued_events(after, BATCH))?;
            if batch.is_empty() {
                return Ok(!held.is_empty());
            }
            for (id, queued) in batch {
                after = id;
                if self.events.stopping() {
                    return Ok(!held.is_empty());
                }
                // An erasure is told at once, even past events its
                // plugin waits for: it carries no data, and the plugin
                // must forget the customer.
                let erased = matches!(queued.event, Emitted::Erased(_));
                if held.contains(&queued.plugin) && !erased {
                    continue;
                }
                match self.deliver_one(&queued)? {
                    Delivery::Done => self.store.write(|w| w.remove_event(id))?,
                    Delivery::Deferred => held.push(queued.plugin.clone()),
                }
            }
        }
    }

    /// Hands one queued event to its plugin, if it is still enabled and
    /// granted it and may see it. `Err` only for a failure of the host,
    /// which keeps the event queued; the plugin's own failure is audited
    /// and counted against it inside [`Core::call_plugin`].
    fn deliver_one(self: &Arc<Self>, queued: &StoredEvent) -> Result<Delivery> {
        let Some(p) = self.store.read(|r| r.plugin(&queued.plugin))? else {
            return Ok(Delivery::Done);
        };
        if !subscribed(&p, queued.event.kind()) {
            return Ok(Delivery::Done);
        }
        let wit_event = match self.wit_event(&p, &queued.event)? {
            Handed::Event(event) => event,
            Handed::Nothing => return Ok(Delivery::Done),
            Handed::Later => return Ok(Delivery::Deferred),
        };
        let what = format!("on-event {}", event_kind_of(&wit_event).as_str());
        let outer = DEPTH.with(|d| d.replace(queued.depth.saturating_add(1)));
        let called = self.call_plugin(
            &queued.plugin,
            Hook::OnEvent,
            Call::OnEvent(&wit_event),
            &what,
        );
        DEPTH.with(|d| d.set(outer));
        match called {
            Err(e @ (Error::Store(_) | Error::Plugin(PluginError::Runtime(_)))) => Err(e),
            _ => Ok(Delivery::Done),
        }
    }

    /// The event as plugin `p` may see it, read through the path as its
    /// principal; `None` when the plugin may not see the customer (the
    /// policy denies it, or it is gone).
    fn wit_event(&self, p: &PluginInfo, event: &Emitted) -> Result<Handed> {
        let ctx = Context::new(p.manifest.principal(), "plugin event");
        let Some(id) = event.customer() else {
            return Ok(match event {
                Emitted::Erased(id) => Handed::Event(wit::Event::CustomerErased(*id)),
                Emitted::Alert(id) => match self.store.read(|r| r.alert(*id))? {
                    Some(a) => Handed::Event(wit::Event::AlertRaised(wit::Alert {
                        kind: a.kind,
                        message: a.message,
                    })),
                    None => Handed::Nothing,
                },
                _ => Handed::Nothing,
            });
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
        // is in the audit chain. Over its budget, it may see it later.
        let (customer, note) = match seen {
            Ok(seen) => seen,
            // Over its budget, or its budgets cannot be told: later.
            Err(Error::Denied(Denied::Budget { .. } | Denied::LimitsFailed { .. })) => {
                return Ok(Handed::Later);
            }
            // The host failed: the event stays queued.
            Err(e @ Error::Store(_)) => return Err(e),
            Err(_) => return Ok(Handed::Nothing),
        };
        Ok(Handed::Event(match event {
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
            Emitted::Erased(_) | Emitted::Alert(_) => return Ok(Handed::Nothing),
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
