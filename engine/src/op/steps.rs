//! The guard and approval steps of the path. The guard counts what each
//! read shows against the actor's budgets before anything is decrypted
//! ([`Read::reveal`]); the approval step lets everything through until
//! approvals (a second approver for protected operations) land.

use super::{Core, Decider, Entry, Raise, Read, Write};
use crate::guard::{
    Access, BASELINE_DAYS, Breach, Charge, KEEP_MINUTES, Limits, Over, Span, minute_of,
};
use crate::identity::Actor;
use crate::model::CustomerId;
use crate::store::{Severity, Snapshot};
use crate::{Denied, Error, Result};

/// The approval step: a protected operation runs only with a matching
/// approved request, looked up on the operation's own snapshot or
/// transaction.
pub(super) fn approval(
    _snapshot: &dyn Snapshot,
    _actor: &Actor,
    _op: &Entry,
) -> Result<(), Denied> {
    Ok(())
}

impl Read<'_> {
    /// The guard on what a read is about to show: every customer whose
    /// data it returns, counted against the actor's budgets before
    /// anything is decrypted. A request larger than what is left is
    /// refused whole, and an alert raised; one that fits is counted, and
    /// written with the read's audit entry. A lookup that shows a customer
    /// is no longer a miss.
    pub(crate) fn reveal(&mut self, customers: &[CustomerId]) -> Result<()> {
        // Nothing shown, nothing to count; no budget, nothing to count.
        if customers.is_empty() {
            return Ok(());
        }
        let Some(limits) = self.limits()? else {
            return Ok(());
        };
        let now = self.core.records.clock.now().timestamp();
        let access = self.access;
        let guard = &self.core.guard;
        let actor = self.decider.actor().name.clone();
        let charge = self.counted(access, now, |over| {
            (guard.charge(&actor, Some(&limits), access, customers, now, over)).map(|(c, _)| c)
        })?;
        self.charge.absorb(charge);
        // Only once the lookup is served: a refused one stays a miss.
        if let Some(minute) = self.pending_miss.take() {
            guard.refund_miss(&actor, minute);
            self.charge.misses = self.charge.misses.saturating_sub(1);
        }
        self.core.check_usual(&actor, &limits, now);
        Ok(())
    }

    /// Counts what a lookup admitted by [`Read::check_lookup`] answered
    /// (the customers found), never refusing it once answered: a refusal
    /// after the scan would tell that the value is held, and by how many.
    pub(crate) fn count_answered(&mut self, customers: &[CustomerId]) -> Result<()> {
        if customers.is_empty() {
            return Ok(());
        }
        if self.limits()?.is_none() {
            return Ok(());
        }
        let now = self.core.records.clock.now().timestamp();
        let actor = self.decider.actor().name.clone();
        let guard = &self.core.guard;
        // Counted past the budget if need be, never refused here.
        let counted = guard.charge(&actor, None, self.access, customers, now, false);
        let (charge, _) =
            counted.map_err(|b| self.core.over_budget(&actor, self.access, b, now))?;
        self.charge.absorb(charge);
        if let Some(minute) = self.pending_miss.take() {
            guard.refund_miss(&actor, minute);
            self.charge.misses = self.charge.misses.saturating_sub(1);
        }
        Ok(())
    }

    /// The guard before a lookup by an exact value that may show up to
    /// `rows` customers: refused once the actor's lookups that found
    /// nothing reach a budget (someone trying phone numbers one after
    /// another), or when its budgets could not hold `rows` more customers,
    /// hit or miss alike (so the refusal tells nothing of the value). The
    /// lookup counts as a miss until it shows a customer ([`Read::reveal`]).
    pub(crate) fn check_lookup(&mut self, rows: usize) -> Result<()> {
        let Some(limits) = self.limits()? else {
            return Ok(());
        };
        let now = self.core.records.clock.now().timestamp();
        let actor = self.decider.actor().name.clone();
        let rows = u64::try_from(rows).unwrap_or(u64::MAX);
        let guard = &self.core.guard;
        let charge = self.counted(Access::Lookup, now, |over| {
            guard.begin_lookup(&actor, &limits, rows, now, over)
        })?;
        self.pending_miss = Some(charge.minute);
        self.charge.absorb(charge);
        self.core.check_usual(&actor, &limits, now);
        Ok(())
    }

    /// The charge `count` makes within the budgets (`count(false)`), or,
    /// past one: a budget that asks for a step-up lets the request go on
    /// with a fresh second-factor code of the actor, checked and used up
    /// here, at most one budget further (`count(true)`), alerted;
    /// otherwise, or without a code, the refusal.
    fn counted(
        &self,
        access: Access,
        now: i64,
        count: impl Fn(bool) -> Result<Charge, Breach>,
    ) -> Result<Charge> {
        let breach = match count(false) {
            Ok(charge) => return Ok(charge),
            Err(breach) => breach,
        };
        let actor = self.decider.actor().name.as_str();
        let code = self.caller.step_up_code();
        let (Over::StepUp, Some(code)) = (breach.over, code) else {
            return Err(self.core.over_budget(actor, access, breach, now));
        };
        self.core.step_up(actor, code, &breach)?;
        let charge = count(true).map_err(|b| self.core.over_budget(actor, access, b, now))?;
        self.core.stepped_up(actor, access, &breach);
        Ok(charge)
    }

    /// The actor's budgets; a `limits` that fails refuses the read (fail
    /// closed) and raises an alert.
    fn limits(&self) -> Result<Option<Limits>> {
        self.core.limits_of(&self.decider)
    }
}

impl Write<'_> {
    /// The guard on what a write hands its caller (the outbox's
    /// addresses): as [`Read::reveal`], before anything is decrypted, and
    /// counted in this transaction. No step-up.
    pub(crate) fn reveal(&mut self, access: Access, customers: &[CustomerId]) -> Result<()> {
        if customers.is_empty() {
            return Ok(());
        }
        let Some(limits) = self.core.limits_of(&self.decider)? else {
            return Ok(());
        };
        let now = self.core.records.clock.now().timestamp();
        let actor = self.decider.actor().name.clone();
        let counted =
            (self.core.guard).charge(&actor, Some(&limits), access, customers, now, false);
        let (charge, _) = counted.map_err(|b| self.core.over_budget(&actor, access, b, now))?;
        self.txn.add_guard_charge(&charge)?;
        self.core.check_usual(&actor, &limits, now);
        Ok(())
    }
}

impl Core {
    /// The budgets `decider`'s policy gives its actor now; a `limits` that
    /// fails refuses (fail closed) and raises an alert, once an hour.
    fn limits_of(&self, decider: &Decider<'_>) -> Result<Option<Limits>> {
        let now = self.records.clock.now().timestamp();
        decider.limits(now).map_err(|reason| {
            let actor = decider.actor().name.clone();
            if self
                .guard
                .first_alert(&actor, "policy.limits_failed", 60, now)
            {
                let message = format!("the policy's limits failed for `{actor}`: {reason}");
                let raise = Raise::new("policy.limits_failed", &actor, message, Severity::Critical);
                self.raise_alert_beside(raise.actor(&actor));
            }
            Denied::LimitsFailed { actor, reason }.into()
        })
    }

    /// Restores what the guard counted in the last month, as committed
    /// (at open), and prunes what is older.
    pub(crate) fn restore_guard(&self) -> Result<()> {
        let now = minute_of(self.records.clock.now().timestamp());
        let since = now - KEEP_MINUTES;
        let (tallies, stale) = self.store.read(|r| r.guard_tallies(since))?;
        self.guard.restore(tallies);
        if stale {
            self.store.write(|w| w.prune_guard(since))?;
        }
        Ok(())
    }

    /// Raises an alert, once a day per feature, when `actor`'s day so far
    /// is unusual for it (its own baseline, or its role's usual day).
    fn check_usual(&self, actor: &str, limits: &Limits, now: i64) {
        for unusual in self.guard.unusual(actor, limits, now) {
            let rule = format!("guard.unusual.{}", unusual.feature);
            if !self.guard.first_alert(actor, &rule, 24 * 60, now) {
                continue;
            }
            let what = match unusual.feature {
                "misses" => "lookups that found nothing",
                _ => "customer records shown",
            };
            let against = match (unusual.median, unusual.deviation) {
                (Some(median), Some(deviation)) => format!(
                    "its usual day holds {median} (median of {} active days, deviation {deviation}); more than {} is unusual",
                    unusual.days, unusual.threshold
                ),
                _ => format!(
                    "more than {} in a day is unusual for its role (it has {} active days of its own, {BASELINE_DAYS} are needed for a baseline)",
                    unusual.threshold, unusual.days
                ),
            };
            let message = format!(
                "`{actor}`'s day is unusual: {} {what} today; {against}",
                unusual.today
            );
            let mut raise = Raise::new("guard.unusual", actor, message, Severity::Warning)
                .actor(actor)
                .evidence("feature", format!("{} per day", unusual.feature))
                .evidence("today", unusual.today)
                .evidence("threshold", unusual.threshold)
                .evidence("active days", unusual.days);
            if let (Some(median), Some(deviation)) = (unusual.median, unusual.deviation) {
                raise = raise
                    .evidence("median", median)
                    .evidence("deviation", deviation);
            }
            self.raise_alert_beside(raise);
        }
    }

    /// A request that went past a budget with a step-up: an alert each
    /// time, with the counts.
    fn stepped_up(&self, actor: &str, access: Access, breach: &Breach) {
        let message = format!(
            "{} by `{actor}` went past a budget with a second factor: {breach}",
            access.as_str()
        );
        let raise = Raise::new("guard.step_up", actor, message, Severity::Info);
        self.raise_alert_beside(evidence(raise, access, breach).actor(actor));
    }

    /// A request the guard refused: an alert (one per actor and budget per
    /// window) and the refusal, which says what is left to do.
    fn over_budget(&self, actor: &str, access: Access, breach: Breach, now: i64) -> Error {
        let rule = format!("guard.{}", rule_of(&breach));
        if self
            .guard
            .first_alert(actor, &rule, window_of(&breach), now)
        {
            let message = format!("{} by `{actor}` refused: {breach}", access.as_str());
            let raise = Raise::new("guard.budget", actor, message, Severity::Warning);
            self.raise_alert_beside(evidence(raise, access, &breach).actor(actor));
        }
        let next = match breach.over {
            Over::Block => {
                "wait for the window to free room, or ask an administrator to change the budget in the policy's `limits`"
            }
            Over::StepUp => {
                "to go on, give a fresh second-factor code with the request (a step-up)"
            }
        };
        Denied::Budget {
            actor: actor.to_string(),
            breach,
            next: next.to_string(),
        }
        .into()
    }
}

/// The rule a breach is alerted under: its measure and window.
fn rule_of(breach: &Breach) -> String {
    let measure = breach.measure.as_str().replace(' ', "_");
    format!("{measure}.{}", breach.span.as_str())
}

/// A breach's window, in minutes: one alert per window.
fn window_of(breach: &Breach) -> i64 {
    match breach.span {
        Span::Hour => 60,
        Span::Day => 24 * 60,
        Span::Month => 30 * 24 * 60,
    }
}

/// The counts behind a budget's alert.
fn evidence(raise: Raise, access: Access, breach: &Breach) -> Raise {
    raise
        .evidence("access", access.as_str())
        .evidence("measure", breach.measure.as_str())
        .evidence("window", breach.span.as_str())
        .evidence("limit", breach.limit)
        .evidence("used", breach.used)
        .evidence("asked", breach.asked)
}
