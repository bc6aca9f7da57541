//! Alerts, for administrators: what the engine's rules raised (a request
//! past a budget, a plugin quarantined, a rewrite that failed), and their
//! handling: acknowledged, then resolved with a note, each step audited.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Engine;
use crate::model::from_micros;
use crate::op::{Entry, Op};
use crate::store::{AlertState, Severity, StoredAlert};
use crate::{Context, Error, Result};

/// An alert the engine raised, and what staff did about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// Its id.
    pub id: u64,
    /// When it was raised.
    pub at: DateTime<Utc>,
    /// The rule that raised it (`guard.budget`, `plugin.quarantined`, ...).
    pub kind: String,
    /// What it is about (a principal, a plugin, the data file).
    pub subject: String,
    /// What happened, for a person.
    pub message: String,
    /// How urgent it is.
    pub severity: Severity,
    /// The principal whose actions raised it, if one did: it may not handle
    /// the alert itself.
    pub actor: Option<String>,
    /// The counts and windows behind it, by name (never a value).
    pub evidence: Vec<(String, String)>,
    /// Where it stands.
    pub state: AlertState,
    /// Each acknowledgement and resolution, oldest first.
    pub handled: Vec<Handling>,
}

/// One step staff took on an alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Handling {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub by: String,
    /// The state it moved the alert to.
    pub state: AlertState,
    /// What they wrote.
    pub note: String,
}

fn shown(id: u64, a: StoredAlert) -> Alert {
    Alert {
        id,
        at: from_micros(a.at),
        kind: a.kind,
        subject: a.subject,
        message: a.message,
        severity: a.severity,
        actor: a.actor,
        evidence: a.evidence,
        state: a.state,
        handled: (a.handled.into_iter())
            .map(|h| Handling {
                at: from_micros(h.at),
                by: h.by,
                state: h.to,
                note: h.note,
            })
            .collect(),
    }
}

impl Engine {
    /// The newest `limit` alerts, newest first. Admins only.
    pub fn alerts(&self, ctx: &Context, limit: usize) -> Result<Vec<Alert>> {
        self.alerts_where(ctx, None, limit)
    }

    /// The newest `limit` alerts in `state` (all with `None`), newest
    /// first. Admins only.
    pub fn alerts_where(
        &self,
        ctx: &Context,
        state: Option<AlertState>,
        limit: usize,
    ) -> Result<Vec<Alert>> {
        let op = Op::new(Entry::new("admin.read").target("read alerts")).admins("read alerts");
        let stored = self.core.read(ctx, op, |read| {
            let wanted = |a: &StoredAlert| state.is_none_or(|s| a.state == s);
            Ok(read.snapshot().alerts_where(limit, &wanted)?)
        })?;
        Ok(stored.into_iter().map(|(id, a)| shown(id, a)).collect())
    }

    /// Alert `id`. Admins only.
    pub fn alert(&self, ctx: &Context, id: u64) -> Result<Alert> {
        let entry = Entry::new("admin.read").target(format!("alert {id}"));
        let op = Op::new(entry).admins("read alerts");
        let stored = self
            .core
            .read(ctx, op, |read| Ok(read.snapshot().alert(id)?))?;
        stored
            .map(|a| shown(id, a))
            .ok_or_else(|| Error::NotFound(format!("alert {id}")))
    }

    /// Acknowledges alert `id`: someone is looking into it. Admins only,
    /// other than the principal whose actions raised it; audited.
    pub fn acknowledge_alert(&self, ctx: &Context, id: u64, note: &str) -> Result<()> {
        self.handle_alert(ctx, id, AlertState::Acknowledged, note)
    }

    /// Resolves alert `id` with `note`, which says what was found or done
    /// (required). Admins only, other than the principal whose actions
    /// raised it; audited. A resolved alert stays resolved.
    pub fn resolve_alert(&self, ctx: &Context, id: u64, note: &str) -> Result<()> {
        self.handle_alert(ctx, id, AlertState::Resolved, note)
    }

    fn handle_alert(&self, ctx: &Context, id: u64, to: AlertState, note: &str) -> Result<()> {
        let action = match to {
            AlertState::Resolved => "alert.resolve",
            _ => "alert.acknowledge",
        };
        let entry = Entry::new(action).target(format!("alert {id}"));
        let op = Op::new(entry).admins("handle alerts");
        self.core.write(ctx, op, |w| w.handle_alert(id, to, note))
    }
}
