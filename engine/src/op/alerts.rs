//! Alerts: raised by the engine's rules (the guard, plugin faults, a
//! failed rewrite) with their evidence, each with its audit entry and an
//! `alert-raised` event for subscribed plugins; then acknowledged and
//! resolved by staff, each step audited.

use std::cell::RefCell;

use super::{Caller, Core, Emitted, Entry, Write};
use crate::audit::Outcome;
use crate::store::{AlertState, Rewrite, Severity, StoredAlert, StoredHandling, Txn};
use crate::{Denied, Error, Result};

/// Longest note kept with an acknowledgement or a resolution, in
/// characters.
pub(crate) const MAX_NOTE: usize = 2_000;

/// An alert to raise: what rule raised it, about what, for whom, and the
/// counts behind it (never a value).
pub(crate) struct Raise {
    kind: String,
    subject: String,
    message: String,
    severity: Severity,
    actor: Option<String>,
    evidence: Vec<(String, String)>,
}

impl Raise {
    pub(crate) fn new(
        kind: impl Into<String>,
        subject: impl Into<String>,
        message: impl Into<String>,
        severity: Severity,
    ) -> Self {
        Self {
            kind: kind.into(),
            subject: subject.into(),
            message: message.into(),
            severity,
            actor: None,
            evidence: Vec::new(),
        }
    }

    /// The principal whose actions raised it.
    pub(crate) fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// A count or a window behind it.
    pub(crate) fn evidence(mut self, name: &str, value: impl ToString) -> Self {
        self.evidence.push((name.to_string(), value.to_string()));
        self
    }
}

impl Core {
    /// Records an alert (and its audit entry) inside a write transaction;
    /// the caller queues the event it returns.
    pub(crate) fn put_alert(
        &self,
        w: &mut dyn Txn,
        caller: &Caller,
        raise: Raise,
    ) -> Result<Emitted> {
        let id = self.records.reserve_ids(1);
        let entry = Entry::new("alert.raise")
            .target(format!("alert {id}: {} {}", raise.kind, raise.subject));
        w.put_alert(
            id,
            &StoredAlert {
                at: self.records.now(),
                kind: raise.kind,
                subject: raise.subject,
                message: raise.message,
                severity: raise.severity,
                actor: raise.actor,
                evidence: raise.evidence,
                state: AlertState::Open,
                handled: Vec::new(),
            },
        )?;
        w.record_id(id);
        crate::audit::append(
            w,
            self.records.ring.audit_key(),
            &entry.record(caller, Outcome::Ok),
        )?;
        Ok(Emitted::Alert(id))
    }

    /// Raises an alert the engine finds on its own, in a transaction of
    /// its own (a refusal beside it, a rewrite that failed at open), and
    /// wakes the delivery of its event.
    pub(crate) fn raise_alert(&self, raise: Raise) -> Result<()> {
        let caller = Caller::internal("engine", "alert");
        let queued = self.store.write_then(Rewrite::Later, |w| {
            let raised = self.put_alert(w, &caller, raise)?;
            Ok::<_, Error>(self.enqueue(w, &[raised], None)?)
        })?;
        if queued {
            self.events.wake();
        }
        Ok(())
    }

    /// [`Core::raise_alert`] for an alert beside a refusal: if it cannot be
    /// written the refusal stands all the same (and its own audit entry
    /// fails the same way, so the failure is not silent). Raised while
    /// this thread holds a write transaction, it waits for that
    /// transaction to end ([`Core::deferring_alerts`]): a write of its own
    /// would wait for the lock this thread holds.
    pub(crate) fn raise_alert_beside(&self, raise: Raise) {
        let deferred = DEFERRED.with(|d| match d.borrow_mut().as_mut() {
            Some(pending) => {
                pending.push(raise);
                None
            }
            None => Some(raise),
        });
        if let Some(raise) = deferred {
            let _ = self.raise_alert(raise);
        }
    }

    /// Runs `f` (which holds a write transaction) with the alerts raised
    /// beside refusals on this thread held back, then raises them.
    pub(crate) fn deferring_alerts<T>(&self, f: impl FnOnce() -> T) -> T {
        let outer = DEFERRED.with(|d| d.borrow_mut().replace(Vec::new()));
        let value = f();
        let pending = DEFERRED.with(|d| std::mem::replace(&mut *d.borrow_mut(), outer));
        for raise in pending.into_iter().flatten() {
            self.raise_alert_beside(raise);
        }
        value
    }
}

thread_local! {
    /// Alerts raised on this thread while it holds a write transaction.
    static DEFERRED: RefCell<Option<Vec<Raise>>> = const { RefCell::new(None) };
}

impl Write<'_> {
    /// Moves alert `id` to `to` (acknowledged or resolved) with `note`, as
    /// the acting principal. An alert about one's own actions is handled
    /// by someone else; a resolved alert stays resolved; a resolution
    /// says what was found or done.
    pub(crate) fn handle_alert(&mut self, id: u64, to: AlertState, note: &str) -> Result<()> {
        let by = self.actor().name.clone();
        let Some(mut alert) = self.txn().alert(id)? else {
            return Err(Error::NotFound(format!("alert {id}")));
        };
        if alert.actor.as_deref() == Some(by.as_str()) {
            return Err(Denied::Rule(format!(
                "alert {id} is about `{by}`'s own actions: someone else must handle it"
            ))
            .into());
        }
        let refusal = match (alert.state, to) {
            (AlertState::Resolved, _) => Some(format!("alert {id} is already resolved")),
            (AlertState::Acknowledged, AlertState::Acknowledged) => {
                Some(format!("alert {id} is already acknowledged"))
            }
            (_, AlertState::Open) => Some(format!("alert {id} cannot be reopened")),
            _ => None,
        };
        if let Some(reason) = refusal {
            return Err(Denied::Rule(reason).into());
        }
        let note = note.trim();
        if to == AlertState::Resolved && note.is_empty() {
            return Err(Denied::Rule(format!(
                "resolving alert {id} needs a note saying what was found or done"
            ))
            .into());
        }
        if note.chars().count() > MAX_NOTE {
            return Err(
                Denied::Rule(format!("the note is longer than {MAX_NOTE} characters")).into(),
            );
        }
        if note.chars().any(|c| c.is_control() && c != '\n') {
            return Err(Denied::Rule(
                "the note holds control characters; write it as plain text".into(),
            )
            .into());
        }
        alert.state = to;
        alert.handled.push(StoredHandling {
            at: self.records().now(),
            by,
            to,
            note: note.to_string(),
        });
        self.txn().put_alert(id, &alert)?;
        Ok(())
    }
}
