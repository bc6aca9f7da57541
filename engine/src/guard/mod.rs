//! The guard: budgets per actor over rolling windows. What a policy's
//! `limits(actor)` declares ([`Limits`]), what each actor has been shown
//! ([`Tally`]), and the check of one request against both, all or nothing
//! ([`Guard::charge`]). The store keeps what was counted; `op` calls the
//! check before anything is decrypted.
//!
//! Counts are kept in buckets (a minute for the hour window, an hour for
//! the day, a day for the month) and a window counts its current bucket
//! and every bucket that began within it: a count leaves a window at most
//! one bucket late, never early, so no rolling window ever holds more than
//! its budget.

mod limits;
mod tally;

pub use limits::{Caps, Limits, Over, Usual};
pub(crate) use tally::{BASELINE_DAYS, Charge, Guard, KEEP_MINUTES, Tally, minute_of};

use serde::{Deserialize, Serialize};

/// The kinds of access a budget counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// A customer read by id.
    Read,
    /// A search by owner, tag or status.
    Search,
    /// A lookup by an exact value of a searchable field (phone, email).
    Lookup,
    /// An export.
    Export,
}

impl Access {
    /// Every kind, in the order counts are kept.
    pub const ALL: [Access; 4] = [Access::Read, Access::Search, Access::Lookup, Access::Export];

    /// Its name: `read`, `search`, `lookup` or `export`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Search => "search",
            Access::Lookup => "lookup",
            Access::Export => "export",
        }
    }

    fn index(self) -> usize {
        match self {
            Access::Read => 0,
            Access::Search => 1,
            Access::Lookup => 2,
            Access::Export => 3,
        }
    }
}

/// A rolling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Span {
    /// The last 60 minutes.
    Hour,
    /// The last 24 hours.
    Day,
    /// The last 30 days.
    Month,
}

impl Span {
    /// Every window, shortest first.
    pub const ALL: [Span; 3] = [Span::Hour, Span::Day, Span::Month];

    /// Its name: `hour`, `day` or `month`.
    pub fn as_str(self) -> &'static str {
        match self {
            Span::Hour => "hour",
            Span::Day => "day",
            Span::Month => "month",
        }
    }
}

/// What a budget counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Customer records shown, by reads, searches, lookups and exports
    /// together (a customer shown twice counts twice).
    Rows,
    /// Distinct customers shown.
    Customers,
    /// Lookups that found no customer.
    Misses,
}

impl Measure {
    /// Its name: `rows`, `customers` or `lookup misses`.
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Rows => "rows",
            Measure::Customers => "customers",
            Measure::Misses => "lookup misses",
        }
    }
}

/// A request a budget does not leave room for: which budget, what it
/// allows, what was used and what the request asked. Counts only, never a
/// value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breach {
    /// What the budget counts.
    pub measure: Measure,
    /// Its window.
    pub span: Span,
    /// What it allows in the window.
    pub limit: u64,
    /// What was used in the window before this request.
    pub used: u64,
    /// What this request would add.
    pub asked: u64,
    /// What the policy says happens past this budget.
    pub over: Over,
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.measure {
            Measure::Misses => write!(
                f,
                "{} of {} lookups that found nothing in the last {} are used",
                self.used,
                self.limit,
                self.span.as_str()
            ),
            measure => write!(
                f,
                "this request shows {} {}, and {} of the {} allowed in the last {} are used",
                self.asked,
                measure.as_str(),
                self.used,
                self.limit,
                self.span.as_str()
            ),
        }
    }
}
