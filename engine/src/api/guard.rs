//! Budgets, for the principal itself and for administrators: what the
//! policy's `limits` gives a principal and how much of it is used.

use serde::Serialize;

use super::Engine;
use crate::guard::{Limits, Measure};
use crate::identity::Actor;
use crate::op::{Entry, Op, Rule};
use crate::{Context, Error, Result};

/// How much a principal was shown in each window, as the guard counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// In the last 60 minutes.
    pub hour: u64,
    /// In the last 24 hours.
    pub day: u64,
    /// In the last 30 days.
    pub month: u64,
}

/// A principal's budgets and what it used of them, now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Budget {
    /// The principal.
    pub principal: String,
    /// What the policy's `limits` gives it (`None`: no budget).
    pub limits: Option<Limits>,
    /// Customer records shown.
    pub rows: Usage,
    /// Distinct customers shown (counted only while a budget of
    /// `customers` applies to the principal).
    pub customers: Usage,
    /// Lookups that found nothing.
    pub misses: Usage,
}

impl Engine {
    /// The budgets of principal `name` and how much of each it used; for
    /// the principal itself or an admin. Audited.
    pub fn budget(&self, ctx: &Context, name: &str) -> Result<Budget> {
        let op = Op::new(Entry::new("guard.read").target(format!("budget of {name}"))).rule(
            Rule::SelfOrAdmin {
                name: name.to_string(),
                what: "read the budget of".to_string(),
            },
        );
        let now = self.core.records.clock.now().timestamp();
        self.core.read(ctx, op, |read| {
            let Some(record) = read.snapshot().principal(name)? else {
                return Err(Error::NotFound(format!("principal {name}")));
            };
            let limits = read
                .decider()
                .limits_of(&Actor::from_record(record), now)
                .map_err(|reason| crate::Denied::LimitsFailed {
                    actor: name.to_string(),
                    reason,
                })?;
            let mut budget = Budget {
                principal: name.to_string(),
                limits,
                rows: Usage::default(),
                customers: Usage::default(),
                misses: Usage::default(),
            };
            for (measure, [hour, day, month]) in self.core.guard.usage(name, now) {
                let usage = Usage { hour, day, month };
                match measure {
                    Measure::Rows => budget.rows = usage,
                    Measure::Customers => budget.customers = usage,
                    Measure::Misses => budget.misses = usage,
                }
            }
            Ok(budget)
        })
    }
}
