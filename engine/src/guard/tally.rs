//! What each actor has been shown, in buckets, and the all-or-nothing
//! check of a request against its budgets.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use super::{Access, Breach, Limits, Measure, Span};

const MINUTES_PER_HOUR: i64 = 60;
const MINUTES_PER_DAY: i64 = 24 * 60;
/// How long a count can matter: the month window and one bucket more.
pub(crate) const KEEP_MINUTES: i64 = 31 * MINUTES_PER_DAY;
/// (actor, rule) pairs whose last alert is remembered before old ones are
/// forgotten.
const MAX_ALERTED: usize = 100_000;

/// The bucket `minute` falls in, for the window `span`.
fn bucket(span: Span, minute: i64) -> i64 {
    match span {
        Span::Hour => minute,
        Span::Day => minute.div_euclid(MINUTES_PER_HOUR),
        Span::Month => minute.div_euclid(MINUTES_PER_DAY),
    }
}

/// The first bucket the window `span` ending at `now` (a minute) counts:
/// the current bucket and every one that began within the window.
fn first(span: Span, now: i64) -> i64 {
    match span {
        Span::Hour => now - 60,
        Span::Day => bucket(span, now) - 24,
        Span::Month => bucket(span, now) - 30,
    }
}

/// Counts at three granularities, one per window.
#[derive(Clone, Debug, Default)]
struct Buckets {
    minutes: BTreeMap<i64, u64>,
    hours: BTreeMap<i64, u64>,
    days: BTreeMap<i64, u64>,
}

impl Buckets {
    fn map(&mut self, span: Span) -> &mut BTreeMap<i64, u64> {
        match span {
            Span::Hour => &mut self.minutes,
            Span::Day => &mut self.hours,
            Span::Month => &mut self.days,
        }
    }

    fn add(&mut self, minute: i64, n: u64) {
        if n == 0 {
            return;
        }
        for span in Span::ALL {
            let count = self.map(span).entry(bucket(span, minute)).or_default();
            *count = count.saturating_add(n);
        }
    }

    fn remove(&mut self, minute: i64, n: u64) {
        for span in Span::ALL {
            let map = self.map(span);
            let key = bucket(span, minute);
            if let Some(count) = map.get_mut(&key) {
                *count = count.saturating_sub(n);
                if *count == 0 {
                    map.remove(&key);
                }
            }
        }
    }

    fn within(&self, span: Span, now: i64) -> u64 {
        let map = match span {
            Span::Hour => &self.minutes,
            Span::Day => &self.hours,
            Span::Month => &self.days,
        };
        map.range(first(span, now)..)
            .fold(0u64, |sum, (_, n)| sum.saturating_add(*n))
    }

    fn prune(&mut self, now: i64) {
        for span in Span::ALL {
            let map = self.map(span);
            *map = map.split_off(&first(span, now));
        }
    }
}

/// Active days of its own an actor needs before its baseline replaces
/// its role's `usual` day.
pub(crate) const BASELINE_DAYS: usize = 14;
/// How far above its own median (in robust standard deviations, 1.4826 ×
/// the median absolute deviation) a day must be to be unusual; it must
/// also be at least twice the median.
const UNUSUAL_DEVIATIONS: u64 = 5;

/// A feature of an actor's day that is unusual for it: what the day holds
/// so far, and what the actor's own history (or its role) says is usual.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unusual {
    /// `rows` or `misses` per day.
    pub(crate) feature: &'static str,
    pub(crate) today: u64,
    /// Above this, a day is unusual.
    pub(crate) threshold: u64,
    /// The median of the actor's active days, and their median absolute
    /// deviation; `None` while it has too few (the role's `usual` holds).
    pub(crate) median: Option<u64>,
    pub(crate) deviation: Option<u64>,
    /// The active days the baseline rests on.
    pub(crate) days: usize,
}

/// Above what a day of one feature is unusual, and why.
#[derive(Clone, Copy, Debug)]
struct Threshold {
    limit: u64,
    /// The median and median absolute deviation of the actor's active
    /// days; `None` while the role's usual day holds.
    median: Option<u64>,
    deviation: Option<u64>,
    days: usize,
}

/// The thresholds of one day, computed once per day per actor.
#[derive(Clone, Debug, Default)]
struct Baseline {
    day: i64,
    /// For rows and misses.
    features: [Option<Threshold>; 2],
}

/// What one actor has been shown.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tally {
    rows: Buckets,
    misses: Buckets,
    /// Distinct customers, each in the bucket it was last shown in.
    customers: Buckets,
    /// Customer → the minute it was last shown. Kept for an actor whose
    /// budgets count distinct customers.
    seen: HashMap<u64, i64>,
    /// The minute the buckets were last pruned.
    pruned: i64,
    /// Today's thresholds of unusual, once computed.
    baseline: Option<Baseline>,
}

/// The median of `sorted`, rounded down; 0 when empty.
fn median_of(sorted: &[u64]) -> u64 {
    let n = sorted.len();
    let at = |i: usize| sorted.get(i).copied().unwrap_or(0);
    if n % 2 == 1 {
        at(n / 2)
    } else if n == 0 {
        0
    } else {
        let (a, b) = (at(n / 2 - 1), at(n / 2));
        a / 2 + b / 2 + (a % 2 + b % 2) / 2
    }
}

/// The threshold of unusual for one feature: from the actor's own active
/// days before `today` (at least [`BASELINE_DAYS`]), else the role's
/// `usual`, else none.
fn threshold(days: &BTreeMap<i64, u64>, today: i64, usual: Option<u64>) -> Option<Threshold> {
    let mut history: Vec<u64> = days
        .range(today - 30..today)
        .map(|(_, n)| *n)
        .filter(|n| *n > 0)
        .collect();
    if history.len() < BASELINE_DAYS {
        return usual.map(|limit| Threshold {
            limit,
            median: None,
            deviation: None,
            days: history.len(),
        });
    }
    history.sort_unstable();
    let median = median_of(&history);
    let mut deviations: Vec<u64> = history.iter().map(|n| n.abs_diff(median)).collect();
    deviations.sort_unstable();
    let mad = median_of(&deviations);
    // 1.4826 × MAD estimates a standard deviation for normal data.
    let spread = mad.saturating_mul(14_826) / 10_000;
    let above = spread.saturating_mul(UNUSUAL_DEVIATIONS).max(median);
    Some(Threshold {
        limit: median.saturating_add(above),
        median: Some(median),
        deviation: Some(mad),
        days: history.len(),
    })
}

impl Tally {
    fn prune(&mut self, now: i64) {
        if now <= self.pruned {
            return;
        }
        self.rows.prune(now);
        self.misses.prune(now);
        self.customers.prune(now);
        // The customers map once an hour: its entries outlive the buckets.
        if now.div_euclid(MINUTES_PER_HOUR) != self.pruned.div_euclid(MINUTES_PER_HOUR) {
            self.seen.retain(|_, last| *last >= now - KEEP_MINUTES);
        }
        self.pruned = now;
    }

    fn used(&self, measure: Measure, span: Span, now: i64) -> u64 {
        match measure {
            Measure::Rows => self.rows.within(span, now),
            Measure::Customers => self.customers.within(span, now),
            Measure::Misses => self.misses.within(span, now),
        }
    }

    /// How many of `customers` the window `span` has not counted yet.
    fn new_in(&self, span: Span, now: i64, customers: &[u64]) -> u64 {
        let first = first(span, now);
        customers
            .iter()
            .filter(|c| {
                self.seen
                    .get(c)
                    .is_none_or(|last| bucket(span, *last) < first)
            })
            .count() as u64
    }

    /// The first budget that `rows` more rows, showing `customers`
    /// (distinct), would exceed.
    fn breach(&self, limits: &Limits, now: i64, rows: u64, customers: &[u64]) -> Option<Breach> {
        for span in Span::ALL {
            if let Some(limit) = limits.rows.get(span) {
                let used = self.used(Measure::Rows, span, now);
                if used.saturating_add(rows) > limit {
                    return Some(breach(limits, Measure::Rows, span, limit, used, rows));
                }
            }
        }
        for span in Span::ALL {
            if let Some(limit) = limits.customers.get(span) {
                let used = self.used(Measure::Customers, span, now);
                let asked = self.new_in(span, now, customers);
                if used.saturating_add(asked) > limit {
                    return Some(breach(limits, Measure::Customers, span, limit, used, asked));
                }
            }
        }
        None
    }

    fn count(&mut self, now: i64, rows: u64, customers: &[u64], track: bool) {
        self.rows.add(now, rows);
        if !track {
            return;
        }
        for &c in customers {
            match self.seen.get(&c) {
                Some(&last) if last >= now => continue,
                Some(&last) => self.customers.remove(last, 1),
                None => {}
            }
            self.customers.add(now, 1);
            self.seen.insert(c, now);
        }
    }

    /// The features of today (`now`, a minute) above their threshold.
    fn unusual(&mut self, limits: &Limits, now: i64) -> Vec<Unusual> {
        let today = bucket(Span::Month, now);
        if self.baseline.as_ref().is_none_or(|b| b.day != today) {
            let usual = [limits.usual.rows, limits.usual.misses];
            let features = [
                threshold(&self.rows.days, today, usual[0]),
                threshold(&self.misses.days, today, usual[1]),
            ];
            self.baseline = Some(Baseline {
                day: today,
                features,
            });
        }
        let Some(baseline) = &self.baseline else {
            return Vec::new();
        };
        let counted = [
            ("rows", self.rows.days.get(&today).copied().unwrap_or(0)),
            ("misses", self.misses.days.get(&today).copied().unwrap_or(0)),
        ];
        let mut found = Vec::new();
        for ((feature, today), threshold) in counted.into_iter().zip(&baseline.features) {
            if let Some(t) = threshold
                && today > t.limit
            {
                found.push(Unusual {
                    feature,
                    today,
                    threshold: t.limit,
                    median: t.median,
                    deviation: t.deviation,
                    days: t.days,
                });
            }
        }
        found
    }

    /// Counts restored from the store: `rows` shown and `misses` in the
    /// minute `minute`.
    pub(crate) fn restore_counts(&mut self, minute: i64, rows: u64, misses: u64) {
        self.rows.add(minute, rows);
        self.misses.add(minute, misses);
    }

    /// A customer restored from the store, last shown in `minute`.
    pub(crate) fn restore_seen(&mut self, customer: u64, minute: i64) {
        if let Some(&last) = self.seen.get(&customer) {
            if last >= minute {
                return;
            }
            self.customers.remove(last, 1);
        }
        self.customers.add(minute, 1);
        self.seen.insert(customer, minute);
    }
}

fn breach(
    limits: &Limits,
    measure: Measure,
    span: Span,
    limit: u64,
    used: u64,
    asked: u64,
) -> Breach {
    Breach {
        measure,
        span,
        limit,
        used,
        asked,
        over: limits.over,
    }
}

/// `limits` with every budget doubled when `over` (how far a step-up may
/// go), else as they are.
fn stretch(limits: &Limits, over: bool) -> Limits {
    if !over {
        return *limits;
    }
    let double = |c: &super::Caps| super::Caps {
        hour: c.hour.map(|n| n.saturating_mul(2)),
        day: c.day.map(|n| n.saturating_mul(2)),
        month: c.month.map(|n| n.saturating_mul(2)),
    };
    Limits {
        rows: double(&limits.rows),
        customers: double(&limits.customers),
        misses: double(&limits.misses),
        ..*limits
    }
}

/// What a request counted, to be written with its audit entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Charge {
    pub(crate) actor: String,
    /// The minute it was counted in.
    pub(crate) minute: i64,
    /// Rows shown, by [`Access`] (in [`Access::ALL`] order).
    pub(crate) rows: [u64; 4],
    pub(crate) misses: u64,
    /// Customers shown, when the actor's distinct customers are counted.
    pub(crate) customers: Vec<u64>,
}

impl Charge {
    /// Adds `other` (by the same actor) into this one.
    pub(crate) fn absorb(&mut self, other: Charge) {
        if self.actor.is_empty() {
            *self = other;
            return;
        }
        for (mine, theirs) in self.rows.iter_mut().zip(other.rows) {
            *mine = mine.saturating_add(theirs);
        }
        self.misses = self.misses.saturating_add(other.misses);
        self.minute = self.minute.max(other.minute);
        self.customers.extend(other.customers);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.iter().all(|n| *n == 0) && self.misses == 0 && self.customers.is_empty()
    }
}

/// Every actor's tally, shared by the engine's threads.
#[derive(Debug, Default)]
pub(crate) struct Guard {
    /// The hour the stored counts were last pruned in.
    pruned: std::sync::atomic::AtomicI64,
    actors: Mutex<HashMap<String, Tally>>,
    /// (actor, rule) → the minute an alert was last raised for it.
    alerted: Mutex<HashMap<(String, String), i64>>,
}

/// The minute a time in Unix seconds falls in.
pub(crate) fn minute_of(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(60)
}

impl Guard {
    /// Checks that showing `customers` to `actor` by `access` at `now`
    /// (Unix seconds) fits every budget of `limits` and, if it does,
    /// counts it and returns what to write with the audit entry. The
    /// check and the count are one step: of two concurrent requests that
    /// together exceed a budget, one is refused. With `over`, the request
    /// is counted even past a budget (a stepped-up or approved request)
    /// and the breach it made is returned beside the charge.
    pub(crate) fn charge(
        &self,
        actor: &str,
        limits: Option<&Limits>,
        access: Access,
        customers: &[u64],
        now: i64,
        over: bool,
    ) -> Result<(Charge, Option<Breach>), Breach> {
        let now = minute_of(now);
        let distinct: Vec<u64> = {
            let mut seen = HashSet::with_capacity(customers.len());
            customers
                .iter()
                .copied()
                .filter(|c| seen.insert(*c))
                .collect()
        };
        let rows = customers.len() as u64;
        let track = limits.is_some_and(|l| !l.customers.is_empty());
        let mut actors = self.actors.lock().unwrap_or_else(PoisonError::into_inner);
        let tally = actors.entry(actor.to_string()).or_default();
        tally.prune(now);
        // A stepped-up request may go at most one budget further.
        let stretched = limits.map(|l| stretch(l, over));
        if let Some(breach) = stretched.and_then(|l| tally.breach(&l, now, rows, &distinct)) {
            return Err(breach);
        }
        let breach = match over {
            true => limits.and_then(|l| tally.breach(l, now, rows, &distinct)),
            false => None,
        };
        tally.count(now, rows, &distinct, track);
        let mut charge = Charge {
            actor: actor.to_string(),
            minute: now,
            misses: 0,
            rows: [0; 4],
            customers: if track { distinct } else { Vec::new() },
        };
        if let Some(slot) = charge.rows.get_mut(access.index()) {
            *slot = rows;
        }
        Ok((charge, breach))
    }

    /// Admits a lookup by `actor` at `now` that may show up to `rows`
    /// customers, and counts it as a miss until it shows one
    /// ([`Guard::refund_miss`]): refused once its misses reach a budget, or
    /// when the rows or distinct customers left could not hold `rows`
    /// (so that whether the value is held never decides the answer). The
    /// check and the count are one step: of concurrent lookups with one
    /// miss left, one goes on. With `over`, the budgets are doubled (a
    /// step-up goes at most one budget further). Returns the charge of
    /// the miss.
    pub(crate) fn begin_lookup(
        &self,
        actor: &str,
        limits: &Limits,
        rows: u64,
        now: i64,
        over: bool,
    ) -> Result<Charge, Breach> {
        let now = minute_of(now);
        let stretched = stretch(limits, over);
        let mut actors = self.actors.lock().unwrap_or_else(PoisonError::into_inner);
        let tally = actors.entry(actor.to_string()).or_default();
        tally.prune(now);
        for span in Span::ALL {
            if let Some(limit) = stretched.misses.get(span) {
                let used = tally.used(Measure::Misses, span, now);
                if used >= limit {
                    return Err(breach(limits, Measure::Misses, span, limit, used, 1));
                }
            }
        }
        for measure in [Measure::Rows, Measure::Customers] {
            for span in Span::ALL {
                if let Some(limit) = stretched.caps(measure).get(span) {
                    let used = tally.used(measure, span, now);
                    if used.saturating_add(rows) > limit {
                        return Err(breach(limits, measure, span, limit, used, rows));
                    }
                }
            }
        }
        tally.misses.add(now, 1);
        Ok(Charge {
            actor: actor.to_string(),
            minute: now,
            misses: 1,
            ..Charge::default()
        })
    }

    /// Takes back the miss [`Guard::begin_lookup`] counted in `minute`:
    /// the lookup showed a customer.
    pub(crate) fn refund_miss(&self, actor: &str, minute: i64) {
        let mut actors = self.actors.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tally) = actors.get_mut(actor) {
            tally.misses.remove(minute, 1);
        }
    }

    /// How much of each budget `actor` has used at `now`: per measure and
    /// window, in [`Span::ALL`] order.
    pub(crate) fn usage(&self, actor: &str, now: i64) -> [(Measure, [u64; 3]); 3] {
        let now = minute_of(now);
        let actors = self.actors.lock().unwrap_or_else(PoisonError::into_inner);
        let tally = actors.get(actor);
        [Measure::Rows, Measure::Customers, Measure::Misses].map(|measure| {
            let per_span = Span::ALL.map(|span| tally.map_or(0, |t| t.used(measure, span, now)));
            (measure, per_span)
        })
    }

    /// The features of `actor`'s day so far (at `now`, Unix seconds) that
    /// are unusual for it: above its own baseline once it has
    /// [`BASELINE_DAYS`] active days in the last 30, above its role's
    /// `usual` day before that.
    pub(crate) fn unusual(&self, actor: &str, limits: &Limits, now: i64) -> Vec<Unusual> {
        let now = minute_of(now);
        let mut actors = self.actors.lock().unwrap_or_else(PoisonError::into_inner);
        match actors.get_mut(actor) {
            Some(tally) => tally.unusual(limits, now),
            None => Vec::new(),
        }
    }

    /// Whether to raise an alert of `rule` about `actor` at `now`: the
    /// first time, and again once `window` minutes have passed since the
    /// last one (a refused burst raises one alert, not one per request).
    pub(crate) fn first_alert(&self, actor: &str, rule: &str, window: i64, now: i64) -> bool {
        let now = minute_of(now);
        let mut alerted = self.alerted.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (actor.to_string(), rule.to_string());
        match alerted.get(&key) {
            Some(&last) if now >= last && now - last < window => false,
            _ => {
                if alerted.len() >= MAX_ALERTED {
                    alerted.retain(|_, last| now - *last < KEEP_MINUTES);
                }
                alerted.insert(key, now);
                true
            }
        }
    }

    /// The minute before which stored counts no longer matter, once an
    /// hour (the first call in each hour gets it, the rest `None`).
    pub(crate) fn prune_due(&self, now: i64) -> Option<i64> {
        let minute = minute_of(now);
        let hour = minute.div_euclid(MINUTES_PER_HOUR);
        let last = self.pruned.swap(hour, std::sync::atomic::Ordering::SeqCst);
        (last != hour).then_some(minute - KEEP_MINUTES)
    }

    /// Replaces every tally with what `restore` builds (at open, from the
    /// store).
    pub(crate) fn restore(&self, tallies: HashMap<String, Tally>) {
        *self.actors.lock().unwrap_or_else(PoisonError::into_inner) = tallies;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Caps, Over};
    use super::*;

    const T0: i64 = 1_800_000_000;

    fn rows(hour: Option<u64>, day: Option<u64>) -> Limits {
        Limits {
            rows: Caps {
                hour,
                day,
                month: None,
            },
            ..Limits::default()
        }
    }

    fn ids(range: std::ops::Range<u64>) -> Vec<u64> {
        range.collect()
    }

    #[test]
    fn many_small_requests_use_the_budget_one_large_one_would() {
        let limits = rows(None, Some(100_000));
        let guard = Guard::default();
        for i in 0..1_000 {
            let batch = ids(i * 100..(i + 1) * 100);
            guard
                .charge(
                    "a",
                    Some(&limits),
                    Access::Search,
                    &batch,
                    T0 + i as i64,
                    false,
                )
                .unwrap();
        }
        let refused = guard
            .charge("a", Some(&limits), Access::Read, &[1], T0 + 1_000, false)
            .unwrap_err();
        assert_eq!((refused.used, refused.limit), (100_000, 100_000));
        let other = Guard::default();
        other
            .charge(
                "a",
                Some(&limits),
                Access::Export,
                &ids(0..100_000),
                T0,
                false,
            )
            .unwrap();
        let refused_too = other
            .charge("a", Some(&limits), Access::Read, &[1], T0, false)
            .unwrap_err();
        assert_eq!(refused_too.used, refused.used);
    }

    #[test]
    fn a_request_larger_than_what_is_left_is_refused_whole_and_counts_nothing() {
        let limits = rows(Some(10), None);
        let guard = Guard::default();
        guard
            .charge("a", Some(&limits), Access::Search, &ids(0..7), T0, false)
            .unwrap();
        let refused = guard
            .charge("a", Some(&limits), Access::Search, &ids(7..11), T0, false)
            .unwrap_err();
        assert_eq!((refused.used, refused.asked), (7, 4));
        // The refused request counted nothing: three rows are still left.
        guard
            .charge("a", Some(&limits), Access::Search, &ids(7..10), T0, false)
            .unwrap();
    }

    #[test]
    fn counts_leave_the_window_a_bucket_late_never_early() {
        let limits = rows(Some(5), None);
        let guard = Guard::default();
        guard
            .charge("a", Some(&limits), Access::Read, &ids(0..5), T0, false)
            .unwrap();
        // 60 minutes later the minute of the first request is still counted.
        let at = T0 - T0.rem_euclid(60);
        assert!(
            guard
                .charge("a", Some(&limits), Access::Read, &[9], at + 60 * 60, false)
                .is_err()
        );
        guard
            .charge("a", Some(&limits), Access::Read, &[9], at + 61 * 60, false)
            .unwrap();
    }

    #[test]
    fn distinct_customers_count_once_per_window() {
        let limits = Limits {
            customers: Caps {
                hour: None,
                day: Some(3),
                month: None,
            },
            ..Limits::default()
        };
        let guard = Guard::default();
        for _ in 0..10 {
            guard
                .charge("a", Some(&limits), Access::Read, &[1, 2, 3], T0, false)
                .unwrap();
        }
        let refused = guard
            .charge("a", Some(&limits), Access::Read, &[3, 4], T0, false)
            .unwrap_err();
        assert_eq!(
            (refused.measure, refused.used, refused.asked),
            (Measure::Customers, 3, 1)
        );
        // A day and an hour later the three have left the window.
        guard
            .charge(
                "a",
                Some(&limits),
                Access::Read,
                &[4, 5, 6],
                T0 + 25 * 3600,
                false,
            )
            .unwrap();
    }

    #[test]
    fn actors_have_their_own_budgets_and_over_counts_past_them() {
        let limits = Limits {
            over: Over::StepUp,
            ..rows(Some(1), None)
        };
        let guard = Guard::default();
        guard
            .charge("a", Some(&limits), Access::Read, &[1], T0, false)
            .unwrap();
        guard
            .charge("b", Some(&limits), Access::Read, &[1], T0, false)
            .unwrap();
        let (charge, breach) = guard
            .charge("a", Some(&limits), Access::Read, &[2], T0, true)
            .unwrap();
        assert_eq!(charge.rows, [1, 0, 0, 0]);
        assert_eq!(breach.unwrap().over, Over::StepUp);
        assert_eq!(guard.usage("a", T0)[0].1, [2, 2, 2]);
    }

    #[test]
    fn misses_refuse_lookups_once_their_budget_is_reached_and_hits_are_refunded() {
        let limits = Limits {
            misses: Caps {
                hour: Some(3),
                day: None,
                month: None,
            },
            ..Limits::default()
        };
        let guard = Guard::default();
        // A hit between the misses costs nothing.
        let hit = guard.begin_lookup("a", &limits, 1, T0, false).unwrap();
        guard.refund_miss("a", hit.minute);
        for _ in 0..3 {
            guard.begin_lookup("a", &limits, 1, T0, false).unwrap();
        }
        let refused = guard.begin_lookup("a", &limits, 1, T0, false).unwrap_err();
        assert_eq!((refused.measure, refused.used), (Measure::Misses, 3));
        // A step-up goes one budget further, no more.
        for _ in 0..3 {
            guard.begin_lookup("a", &limits, 1, T0, true).unwrap();
        }
        assert!(guard.begin_lookup("a", &limits, 1, T0, true).is_err());
    }

    #[test]
    fn a_lookup_needs_room_for_all_it_may_show_hit_or_miss() {
        let limits = rows(Some(10), None);
        let guard = Guard::default();
        guard
            .charge("a", Some(&limits), Access::Read, &ids(0..8), T0, false)
            .unwrap();
        guard.begin_lookup("a", &limits, 2, T0, false).unwrap();
        let refused = guard.begin_lookup("a", &limits, 3, T0, false).unwrap_err();
        assert_eq!(
            (refused.measure, refused.used, refused.asked),
            (Measure::Rows, 8, 3)
        );
    }

    #[test]
    fn concurrent_lookups_with_one_miss_left_let_one_through() {
        let limits = Limits {
            misses: Caps {
                hour: Some(1),
                day: None,
                month: None,
            },
            ..Limits::default()
        };
        let guard = Guard::default();
        let passed = std::sync::atomic::AtomicUsize::new(0);
        let start = std::sync::Barrier::new(16);
        std::thread::scope(|scope| {
            for _ in 0..16 {
                scope.spawn(|| {
                    start.wait();
                    if guard.begin_lookup("a", &limits, 1, T0, false).is_ok() {
                        passed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(passed.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn concurrent_requests_never_take_more_than_the_budget() {
        let limits = rows(Some(100), None);
        let guard = Guard::default();
        let shown = std::sync::atomic::AtomicU64::new(0);
        let start = std::sync::Barrier::new(8);
        std::thread::scope(|scope| {
            for t in 0..8u64 {
                let (guard, shown, start) = (&guard, &shown, &start);
                scope.spawn(move || {
                    start.wait();
                    for i in 0..20 {
                        let batch = ids(t * 1000 + i * 3..t * 1000 + i * 3 + 3);
                        if guard
                            .charge("a", Some(&limits), Access::Search, &batch, T0, false)
                            .is_ok()
                        {
                            shown.fetch_add(3, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(shown.load(std::sync::atomic::Ordering::SeqCst), 99);
    }

    #[test]
    fn a_customer_read_again_moves_to_its_newer_bucket() {
        let limits = Limits {
            customers: Caps {
                hour: None,
                day: Some(1),
                month: None,
            },
            ..Limits::default()
        };
        let guard = Guard::default();
        guard
            .charge("a", Some(&limits), Access::Read, &[1], T0, false)
            .unwrap();
        guard
            .charge(
                "a",
                Some(&limits),
                Access::Read,
                &[1],
                T0 + 23 * 3600,
                false,
            )
            .unwrap();
        // A day after the first read the second still holds the budget.
        let refused = guard
            .charge(
                "a",
                Some(&limits),
                Access::Read,
                &[2],
                T0 + 25 * 3600,
                false,
            )
            .unwrap_err();
        assert_eq!((refused.measure, refused.used), (Measure::Customers, 1));
    }

    #[test]
    fn a_day_far_above_the_actors_own_days_is_unusual_and_the_role_decides_before() {
        let limits = Limits {
            usual: super::super::Usual {
                rows: Some(300),
                misses: None,
            },
            ..Limits::default()
        };
        let day = 86_400;
        let guard = Guard::default();
        // Before 14 active days, the role's usual day: 300 rows.
        guard
            .charge("a", Some(&limits), Access::Read, &ids(0..300), T0, false)
            .unwrap();
        assert!(guard.unusual("a", &limits, T0).is_empty());
        guard
            .charge("a", Some(&limits), Access::Read, &[1], T0, false)
            .unwrap();
        let found = guard.unusual("a", &limits, T0);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (
                found[0].feature,
                found[0].today,
                found[0].threshold,
                found[0].median
            ),
            ("rows", 301, 300, None)
        );
        // Twenty days of 90 to 110 rows: the actor's own baseline.
        let other = Guard::default();
        for d in 1..=20 {
            let n = 90 + (d * 7) % 21;
            other
                .charge(
                    "a",
                    Some(&limits),
                    Access::Read,
                    &ids(0..n),
                    T0 + d as i64 * day,
                    false,
                )
                .unwrap();
        }
        let today = T0 + 21 * day;
        other
            .charge("a", Some(&limits), Access::Read, &ids(0..250), today, false)
            .unwrap();
        // 250 is within the role's 300 but far above the actor's own ~100.
        let found = other.unusual("a", &limits, today);
        assert_eq!(found.len(), 1, "{found:?}");
        let unusual = &found[0];
        assert_eq!(unusual.days, 20);
        let median = unusual.median.unwrap();
        assert!((90..=110).contains(&median), "{unusual:?}");
        assert!(
            unusual.threshold >= 2 * median && unusual.threshold < 250,
            "{unusual:?}"
        );
        // A day like the others is not.
        let calm = Guard::default();
        for d in 1..=20 {
            calm.charge(
                "a",
                Some(&limits),
                Access::Read,
                &ids(0..100),
                T0 + d as i64 * day,
                false,
            )
            .unwrap();
        }
        calm.charge("a", Some(&limits), Access::Read, &ids(0..150), today, false)
            .unwrap();
        assert!(calm.unusual("a", &limits, today).is_empty());
    }

    #[test]
    fn restored_counts_are_counted() {
        let limits = Limits {
            customers: Caps {
                hour: Some(2),
                day: None,
                month: None,
            },
            ..rows(Some(10), None)
        };
        let mut tally = Tally::default();
        tally.restore_counts(minute_of(T0), 9, 0);
        tally.restore_seen(1, minute_of(T0));
        tally.restore_seen(2, minute_of(T0) - 1);
        tally.restore_seen(2, minute_of(T0) - 5);
        let guard = Guard::default();
        guard.restore(HashMap::from([("a".to_string(), tally)]));
        assert_eq!(guard.usage("a", T0)[1].1, [2, 2, 2]);
        let refused = guard
            .charge("a", Some(&limits), Access::Read, &[1, 2], T0, false)
            .unwrap_err();
        assert_eq!((refused.measure, refused.used), (Measure::Rows, 9));
        guard
            .charge("a", Some(&limits), Access::Read, &[1], T0, false)
            .unwrap();
    }
}
