//! The guard and approval steps of the path. The guard counts what each
//! read shows against the actor's budgets before anything is decrypted
//! ([`Read::reveal`]); the approval step lets everything through until
//! approvals (a second approver for protected operations) land.

use super::{Core, Entry, Raise, Read};
use crate::guard::{Access, BASELINE_DAYS, Breach, KEEP_MINUTES, Limits, Over, Span, minute_of};
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
    /// written with the read's audit entry.
    pub(crate) fn reveal(&mut self, customers: &[CustomerId]) -> Result<()> {
        // No budget, nothing to count.
        let Some(limits) = self.limits()? else {
            return Ok(());
        };
        let limits = Some(limits);
        let now = self.core.records.clock.now().timestamp();
        let actor = self.decider.actor().name.as_str();
        let access = self.access;
        let guard = &self.core.guard;
        let breach = match guard.charge(actor, limits.as_ref(), access, customers, now, false) {
            Ok((charge, _)) => {
                self.charge.absorb(charge);
                if let Some(limits) = &limits {
                    self.core.check_usual(actor, limits, now);
                }
                return Ok(());
            }
            Err(breach) => breach,
        };
        // A budget that asks for a step-up lets the request go on with a
        // fresh second-factor code, checked and used up here; the request
        // is counted past the budget, and staff are told.
        let code = self.caller.step_up_code();
        let (Over::StepUp, Some(code)) = (breach.over, code) else {
            return Err(self.core.over_budget(actor, access, breach, now));
        };
        self.core.step_up(actor, code, &breach)?;
        let counted = guard.charge(actor, limits.as_ref(), access, customers, now, true);
        let (charge, _) = counted.map_err(|b| self.core.over_budget(actor, access, b, now))?;
        self.charge.absorb(charge);
        let rule = format!("guard.step_up.{}", rule_of(&breach));
        if guard.first_alert(actor, &rule, window_of(&breach), now) {
            let message = format!(
                "{} by `{actor}` went past a budget with a second factor: {breach}",
                access.as_str()
            );
            let raise = Raise::new("guard.step_up", actor, message, Severity::Info);
            self.core
                .raise_alert_beside(evidence(raise, access, &breach).actor(actor));
        }
        Ok(())
    }

    /// The guard before a lookup by an exact value: refused once the
    /// actor's lookups that found nothing reach a budget (someone trying
    /// phone numbers one after another).
    pub(crate) fn check_lookup(&mut self) -> Result<()> {
        let limits = self.limits()?;
        let now = self.core.records.clock.now().timestamp();
        let actor = self.decider.actor().name.as_str();
        match self.core.guard.check_misses(actor, limits.as_ref(), now) {
            Ok(()) => Ok(()),
            Err(breach) => Err(self.core.over_budget(actor, Access::Lookup, breach, now)),
        }
    }

    /// Counts a lookup that showed nothing (for an actor with a budget).
    pub(crate) fn lookup_missed(&mut self) -> Result<()> {
        let Some(limits) = self.limits()? else {
            return Ok(());
        };
        let now = self.core.records.clock.now().timestamp();
        let actor = self.decider.actor().name.as_str();
        let charge = self.core.guard.miss(actor, now);
        self.charge.absorb(charge);
        self.core.check_usual(actor, &limits, now);
        Ok(())
    }

    /// The actor's budgets; a `limits` that fails refuses the read (fail
    /// closed) and raises an alert.
    fn limits(&self) -> Result<Option<Limits>> {
        let now = self.core.records.clock.now().timestamp();
        self.decider.limits(now).map_err(|reason| {
            let actor = self.decider.actor().name.clone();
            if self
                .core
                .guard
                .first_alert(&actor, "policy.limits_failed", 60, now)
            {
                let message = format!("the policy's limits failed for `{actor}`: {reason}");
                let raise = Raise::new("policy.limits_failed", &actor, message, Severity::Critical);
                self.core.raise_alert_beside(raise.actor(&actor));
            }
            Denied::LimitsFailed { actor, reason }.into()
        })
    }
}

impl Core {
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
