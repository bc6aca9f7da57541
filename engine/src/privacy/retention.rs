//! `retention.rhai`: what happens to a customer as time passes.
//!
//! The script defines `fn retain(c)`: it reads a customer's
//! [`RetentionFacts`] through `c` and returns `keep(reason)`,
//! `dormant(reason)`, `notify(reason)`, `anonymize(reason)` or
//! `delete(reason)`. It runs in the sandbox of access policies
//! ([`crate::script::bare_engine`]): the same packages and limits, no
//! `eval`, modules, clock or `sleep`, and the same time limit. Code outside
//! functions is never run.
//!
//! INVARIANT: `retain` is a pure function of the facts. Its only input is
//! `c`, the sandbox offers nothing else that could differ between two calls
//! (no clock, random number, file, module or global state), and rhai
//! evaluates deterministically. So a verdict is remembered by the facts it
//! was decided for: a sweep over a million customers runs the script once
//! per distinct facts (a few thousand) and answers the rest from the memo.
//! The one fault that depends on the machine, the time limit, is not
//! remembered.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use rhai::{AST, Array, CallFnOptions, Dynamic, Engine, ImmutableString, ParseError, Scope};
use serde::Serialize;

use super::PrivacyError;
use crate::model::Status;
use crate::script::{self, MAX_FILE_SIZE};

/// The retention policy every new database starts with.
pub const DEFAULT_RETENTION: &str = include_str!("../../../examples/policies/retention.rhai");

/// What the retention policy decides for one customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionAction {
    /// Leave (or make) the customer active.
    Keep,
    /// Restrict access to data stewards.
    Dormant,
    /// Tell the customer its data will be removed.
    Notify,
    /// Destroy its identity, keep non-identifying aggregates.
    Anonymize,
    /// Remove everything.
    Delete,
}

impl RetentionAction {
    /// The lowercase name used in scripts, reports and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionAction::Keep => "keep",
            RetentionAction::Dormant => "dormant",
            RetentionAction::Notify => "notify",
            RetentionAction::Anonymize => "anonymize",
            RetentionAction::Delete => "delete",
        }
    }
}

/// What `retain(c)` sees of a customer: no personal field, nothing decrypted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RetentionFacts {
    /// Its status.
    pub status: Status,
    /// Whether it was notified and is waiting out the notice period.
    pub notified: bool,
    /// Whole days since its last interaction (or its creation, if none).
    pub days_inactive: i64,
    /// Whole days since the notice; 0 when not notified.
    pub days_since_notice: i64,
    /// Its tags, lowercase.
    pub tags: Vec<String>,
    /// Whether a legal hold is on it.
    pub legal_hold: bool,
}

/// The policy's answer for one customer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// What to do.
    pub action: RetentionAction,
    /// Why, in the script's words (or the fault).
    pub reason: Arc<str>,
    /// The script failed; the customer is kept.
    pub fault: bool,
}

/// A compiled retention policy. Shared between threads.
pub struct RetentionPolicy {
    source: String,
    engine: Engine,
    /// The script's functions; its top-level statements are dropped.
    ast: AST,
    /// Verdicts by the facts they were decided for; see the module docs.
    /// At most [`MAX_MEMO_ENTRIES`].
    memo: RwLock<HashMap<RetentionFacts, Verdict>>,
}

impl RetentionPolicy {
    /// Compiles a retention script.
    pub fn compile(source: &str) -> Result<Self, PrivacyError> {
        if source.len() as u64 > MAX_FILE_SIZE {
            return Err(PrivacyError::Retention(format!(
                "retention.rhai is {} bytes, over the limit of {MAX_FILE_SIZE}: keep the script short",
                source.len()
            )));
        }
        let engine = retention_engine();
        let mut ast = engine.compile(source).map_err(|e| compile_error(&e))?;
        if !ast
            .iter_functions()
            .any(|f| f.name == RETAIN && f.params.len() == 1)
        {
            return Err(PrivacyError::Retention(
                "retention.rhai must define `fn retain(c)`, returning keep(..), dormant(..), notify(..), anonymize(..) or delete(..)".into(),
            ));
        }
        ast.clear_statements();
        Ok(Self {
            source: source.to_string(),
            engine,
            ast,
            memo: RwLock::new(HashMap::new()),
        })
    }

    /// The script's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Decides for one customer. Never fails: a fault keeps the customer.
    pub fn decide(&self, facts: &RetentionFacts) -> Verdict {
        let remembered = self
            .memo
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(facts)
            .cloned();
        if let Some(verdict) = remembered {
            return verdict;
        }
        let (verdict, deterministic) = self.run(facts);
        if deterministic {
            let mut memo = self.memo.write().unwrap_or_else(PoisonError::into_inner);
            if memo.len() >= MAX_MEMO_ENTRIES {
                memo.clear();
            }
            memo.insert(facts.clone(), verdict.clone());
        }
        verdict
    }

    /// Runs `retain(c)`; every failure keeps the customer with a fault.
    /// Also says whether the verdict may be remembered: false after the
    /// time limit, which depends on the machine's load.
    fn run(&self, facts: &RetentionFacts) -> (Verdict, bool) {
        let options = CallFnOptions::new().eval_ast(false);
        let result = script::timed(|| {
            self.engine.call_fn_with_options::<Dynamic>(
                options,
                &mut Scope::new(),
                &self.ast,
                RETAIN,
                (facts.clone(),),
            )
        });
        match result {
            Ok(value) => match value.try_cast_result::<Choice>() {
                Ok(choice) => {
                    let verdict = Verdict {
                        action: choice.action,
                        reason: Arc::from(choice.reason.as_str()),
                        fault: false,
                    };
                    (verdict, true)
                }
                Err(other) => {
                    let fault = format!(
                        "retain(c) must return keep(..), dormant(..), notify(..), anonymize(..) or delete(..), not a value of type `{}`",
                        self.engine.map_type_name(other.type_name())
                    );
                    (fault_keep(&fault), true)
                }
            },
            Err(error) => (
                fault_keep(&script::describe_fault(&error)),
                !script::timed_out(&error),
            ),
        }
    }

    /// How many verdicts are remembered.
    #[cfg(test)]
    fn memo_len(&self) -> usize {
        self.memo
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Default for RetentionPolicy {
    /// The bundled [`DEFAULT_RETENTION`].
    fn default() -> Self {
        match Self::compile(DEFAULT_RETENTION) {
            Ok(policy) => policy,
            // INVARIANT: the bundled script compiles; a unit test pins it.
            // Were it not to, every customer would be kept with a fault.
            Err(_) => Self {
                source: DEFAULT_RETENTION.to_string(),
                engine: retention_engine(),
                ast: AST::empty(),
                memo: RwLock::new(HashMap::new()),
            },
        }
    }
}

impl fmt::Debug for RetentionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetentionPolicy")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

// A policy is shared by the threads of a sweep.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<RetentionPolicy>();
};

/// The function every retention script defines.
const RETAIN: &str = "retain";

/// Longest reason a verdict keeps, in bytes; a longer one is cut at a
/// character boundary and ends with `…`.
pub(crate) const MAX_REASON_LEN: usize = 200;

/// Most verdicts remembered; the memo is emptied when a new one would not
/// fit. Far above the distinct facts of a real customer base (days
/// inactive times a few tag sets), and bounds the memory whatever the facts.
pub(crate) const MAX_MEMO_ENTRIES: usize = 100_000;

/// A verdict as a script builds it.
#[derive(Clone)]
struct Choice {
    action: RetentionAction,
    reason: ImmutableString,
}

impl Choice {
    fn new(action: RetentionAction, reason: ImmutableString) -> Choice {
        Choice {
            action,
            reason: clip(reason),
        }
    }
}

/// `reason` cut to [`MAX_REASON_LEN`] bytes.
fn clip(reason: ImmutableString) -> ImmutableString {
    if reason.len() <= MAX_REASON_LEN {
        return reason;
    }
    let ellipsis = "…";
    let end = (0..=MAX_REASON_LEN - ellipsis.len())
        .rev()
        .find(|&i| reason.is_char_boundary(i))
        .unwrap_or(0);
    let kept = reason.get(..end).unwrap_or_default();
    format!("{kept}{ellipsis}").into()
}

/// The verdict when the script failed: keep, and say why.
fn fault_keep(fault: &str) -> Verdict {
    Verdict {
        action: RetentionAction::Keep,
        reason: Arc::from(format!(
            "the retention policy failed, so the customer is kept: {fault}"
        )),
        fault: true,
    }
}

fn compile_error(error: &ParseError) -> PrivacyError {
    let position = error.position();
    PrivacyError::Retention(format!(
        "retention.rhai does not compile: {} (line {}, position {})",
        script::lowercase_first(&error.err_type().to_string()),
        position.line().unwrap_or(0),
        position.position().unwrap_or(0),
    ))
}

/// The sandbox with the retention API: `c` (a read-only `Customer`) and
/// the five verdicts.
fn retention_engine() -> Engine {
    let mut engine = script::bare_engine();
    engine
        .register_type_with_name::<RetentionFacts>("Customer")
        .register_get("status", |c: &mut RetentionFacts| {
            ImmutableString::from(c.status.as_str())
        })
        .register_get("notified", |c: &mut RetentionFacts| c.notified)
        .register_get("days_inactive", |c: &mut RetentionFacts| c.days_inactive)
        .register_get("days_since_notice", |c: &mut RetentionFacts| {
            if c.notified { c.days_since_notice } else { 0 }
        })
        .register_get("tags", |c: &mut RetentionFacts| {
            c.tags
                .iter()
                .map(|t| Dynamic::from(ImmutableString::from(t.as_str())))
                .collect::<Array>()
        })
        .register_get("legal_hold", |c: &mut RetentionFacts| c.legal_hold)
        .register_fn("has_tag", |c: &mut RetentionFacts, tag: &str| {
            // Tags are stored lowercase; `has_tag("Renovation")` finds one.
            c.tags.contains(&tag.to_lowercase())
        });
    engine.register_type_with_name::<Choice>("Verdict");
    for action in [
        RetentionAction::Keep,
        RetentionAction::Dormant,
        RetentionAction::Notify,
        RetentionAction::Anonymize,
        RetentionAction::Delete,
    ] {
        engine.register_fn(action.as_str(), move |reason: ImmutableString| {
            Choice::new(action, reason)
        });
    }
    engine
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// An active customer, not notified, untagged, without hold.
    fn inactive(days: i64) -> RetentionFacts {
        RetentionFacts {
            status: Status::Active,
            notified: false,
            days_inactive: days,
            days_since_notice: 0,
            tags: Vec::new(),
            legal_hold: false,
        }
    }

    fn notified(days: i64, since_notice: i64) -> RetentionFacts {
        RetentionFacts {
            status: Status::Dormant,
            notified: true,
            days_since_notice: since_notice,
            ..inactive(days)
        }
    }

    fn tagged(tag: &str, facts: RetentionFacts) -> RetentionFacts {
        RetentionFacts {
            tags: vec![tag.to_string()],
            ..facts
        }
    }

    fn held(facts: RetentionFacts) -> RetentionFacts {
        RetentionFacts {
            legal_hold: true,
            ..facts
        }
    }

    fn dormant_status(facts: RetentionFacts) -> RetentionFacts {
        RetentionFacts {
            status: Status::Dormant,
            ..facts
        }
    }

    fn compile(source: &str) -> RetentionPolicy {
        RetentionPolicy::compile(source).unwrap_or_else(|e| panic!("{e}\n{source}"))
    }

    fn compile_error(source: &str) -> String {
        match RetentionPolicy::compile(source) {
            Ok(_) => panic!("compiled: {source}"),
            Err(e) => e.to_string(),
        }
    }

    /// Checks each case's verdict under `policy`: `action: reason`.
    fn check(policy: &RetentionPolicy, cases: &[(&str, RetentionFacts, &str)]) {
        let mut failures = Vec::new();
        for (name, facts, expected) in cases {
            let verdict = policy.decide(facts);
            let got = format!("{}: {}", verdict.action.as_str(), verdict.reason);
            if verdict.fault || got != *expected {
                failures.push(format!(
                    "{name}:\n  expected {expected}\n  got      {got} (fault: {})",
                    verdict.fault
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// The verdict of `retain` for one untagged active customer, which
    /// must be a fault; returns its reason.
    fn fault(source: &str) -> String {
        let verdict = compile(source).decide(&inactive(10));
        assert!(verdict.fault, "no fault: {verdict:?}");
        assert_eq!(verdict.action, RetentionAction::Keep);
        verdict.reason.to_string()
    }

    #[test]
    fn default_script_decides_the_documented_periods() {
        check(
            &RetentionPolicy::default(),
            &[
                (
                    "just created",
                    inactive(0),
                    "keep: last interaction 0 days ago",
                ),
                ("one day", inactive(1), "keep: last interaction 1 day ago"),
                (
                    "a day before 3 years",
                    inactive(1094),
                    "keep: last interaction 1,094 days ago",
                ),
                (
                    "3 years",
                    inactive(1095),
                    "dormant: no interaction for 1,095 days (3 years); access restricted to data stewards",
                ),
                (
                    "a day before 5 years",
                    inactive(1824),
                    "dormant: no interaction for 1,824 days (4 years); access restricted to data stewards",
                ),
                (
                    "5 years",
                    inactive(1825),
                    "notify: no interaction for 1,825 days (5 years); notice sent",
                ),
                (
                    "5 years and a day",
                    inactive(1826),
                    "notify: no interaction for 1,826 days (5 years); notice sent",
                ),
                (
                    "notice period running",
                    notified(1855, 29),
                    "notify: notice sent 29 days ago; anonymized after 30 days without response",
                ),
                (
                    "notice period over",
                    notified(1855, 30),
                    "anonymize: no response 30 days after the notice (period: 30 days); no interaction for 1,855 days (5 years)",
                ),
                (
                    "notified, then back in touch",
                    notified(3, 40),
                    "keep: back in touch after the notice (last interaction 3 days ago); notice withdrawn",
                ),
                (
                    "dormant, then back in touch",
                    dormant_status(inactive(12)),
                    "keep: active again: last interaction 12 days ago",
                ),
                (
                    "renovation at 3 years",
                    tagged("renovation", inactive(1095)),
                    "keep: last interaction 1,095 days ago",
                ),
                (
                    "renovation a day before 5 years",
                    tagged("renovation", inactive(1824)),
                    "keep: last interaction 1,824 days ago",
                ),
                (
                    "renovation at 5 years",
                    tagged("renovation", inactive(1825)),
                    "dormant: no interaction for 1,825 days (5 years, long repurchase cycle); access restricted to data stewards",
                ),
                (
                    "education a day before 8 years",
                    tagged("education", inactive(2919)),
                    "dormant: no interaction for 2,919 days (7 years, long repurchase cycle); access restricted to data stewards",
                ),
                (
                    "automotive at 8 years",
                    tagged("automotive", inactive(2920)),
                    "notify: no interaction for 2,920 days (8 years, long repurchase cycle); notice sent",
                ),
                (
                    "other tags change nothing",
                    tagged("vip", inactive(1825)),
                    "notify: no interaction for 1,825 days (5 years); notice sent",
                ),
                (
                    "legal hold, recent",
                    held(inactive(10)),
                    "keep: last interaction 10 days ago",
                ),
                (
                    "legal hold at 5 years",
                    held(inactive(1826)),
                    "dormant: under legal hold: no interaction for 1,826 days (5 years), but no notice or removal while the hold lasts",
                ),
                (
                    "legal hold after the notice period",
                    held(notified(12_000, 400)),
                    "dormant: under legal hold: no interaction for 12,000 days (32 years), but no notice or removal while the hold lasts",
                ),
            ],
        );
    }

    #[test]
    fn default_is_the_bundled_script_and_compiles() {
        assert!(RetentionPolicy::compile(DEFAULT_RETENTION).is_ok());
        let policy = RetentionPolicy::default();
        assert_eq!(policy.source(), DEFAULT_RETENTION);
        assert!(!policy.decide(&inactive(5)).fault);
        let debug = format!("{policy:?}");
        assert!(debug.starts_with("RetentionPolicy { source: "), "{debug}");
        assert!(!debug.contains("memo"), "{debug}");
    }

    #[test]
    fn the_script_reads_every_fact() {
        let policy = compile(
            r#"fn retain(c) {
                keep(`${c.status} ${c.notified} ${c.days_inactive} ${c.days_since_notice} ${c.tags} ${c.legal_hold} ${c.has_tag("vip")} ${c.has_tag("VIP")} ${c.has_tag("x")}`)
            }"#,
        );
        let facts = RetentionFacts {
            tags: vec!["vip".into(), "renovation".into()],
            legal_hold: true,
            ..notified(1900, 12)
        };
        check(
            &policy,
            &[
                (
                    "notified",
                    facts,
                    r#"keep: dormant true 1900 12 ["vip", "renovation"] true true true false"#,
                ),
                (
                    // A notice age without a notice is not shown.
                    "not notified",
                    RetentionFacts {
                        days_since_notice: 7,
                        ..inactive(3)
                    },
                    "keep: active false 3 0 [] false false false false",
                ),
            ],
        );
    }

    #[test]
    fn every_verdict_is_available() {
        let policy = compile(
            r#"fn retain(c) {
                switch c.days_inactive {
                    0 => keep("k"), 1 => dormant("d"), 2 => notify("n"),
                    3 => anonymize("a"), _ => delete("x"),
                }
            }"#,
        );
        check(
            &policy,
            &[
                ("keep", inactive(0), "keep: k"),
                ("dormant", inactive(1), "dormant: d"),
                ("notify", inactive(2), "notify: n"),
                ("anonymize", inactive(3), "anonymize: a"),
                ("delete", inactive(4), "delete: x"),
            ],
        );
    }

    #[test]
    fn long_reasons_are_cut_at_a_character_boundary() {
        let policy =
            compile(r#"fn retain(c) { let r = "a"; for i in 0..150 { r += "é"; } keep(r) }"#);
        let verdict = policy.decide(&inactive(1));
        assert!(!verdict.fault);
        assert!(
            verdict.reason.len() <= MAX_REASON_LEN,
            "{}",
            verdict.reason.len()
        );
        assert!(verdict.reason.starts_with("aéé"));
        assert!(verdict.reason.ends_with('…'));
    }

    #[test]
    fn faults_keep_the_customer_quickly() {
        let cases = [
            (
                "endless loop",
                "fn retain(c) { loop {} }",
                "more than 100000 operations",
            ),
            (
                "recursion",
                "fn down(n) { down(n + 1) } fn retain(c) { down(0) }",
                "deeper than 32 levels",
            ),
            ("a number", "fn retain(c) { 42 }", "must return keep(..)"),
            ("nothing", "fn retain(c) { }", "must return keep(..)"),
            (
                "a reason that is no string",
                "fn retain(c) { delete(42) }",
                "delete",
            ),
            ("thrown", r#"fn retain(c) { throw "boom" }"#, "boom"),
            (
                "unknown fact",
                "fn retain(c) { if c.age > 3 { keep(\"x\") } }",
                "age",
            ),
            (
                "writing a fact",
                "fn retain(c) { c.legal_hold = false; delete(\"x\") }",
                "legal_hold",
            ),
            (
                "import",
                r#"fn retain(c) { import "fs" as fs; keep("x") }"#,
                "may not import",
            ),
            ("sleep", r#"fn retain(c) { sleep(10); keep("x") }"#, "sleep"),
            (
                "eval through a pointer",
                r#"fn retain(c) { call(Fn("eval"), "keep(\"x\")") }"#,
                "eval",
            ),
        ];
        for (name, source, needle) in cases {
            let started = Instant::now();
            let reason = fault(source);
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "{name}: {:?}",
                started.elapsed()
            );
            assert!(
                reason.starts_with("the retention policy failed, so the customer is kept: "),
                "{name}: {reason}"
            );
            assert!(reason.contains(needle), "{name}: {reason}");
        }
    }

    #[test]
    fn compile_errors_say_what_and_where() {
        let cases = [
            (
                "no retain",
                r#"fn keep_all(c) { keep("x") }"#,
                "must define `fn retain(c)`",
            ),
            (
                "retain without parameter",
                r#"fn retain() { keep("x") }"#,
                "must define `fn retain(c)`",
            ),
            ("empty", "", "must define `fn retain(c)`"),
            (
                "syntax",
                "fn retain(c) {\n  keep(\"x\"\n}",
                "(line 3, position 1)",
            ),
            ("eval", r#"fn retain(c) { eval("keep(\"x\")") }"#, "eval"),
            ("undefined variable", "fn retain(c) { keep(why) }", "why"),
        ];
        for (name, source, needle) in cases {
            let message = compile_error(source);
            assert!(
                message.starts_with("retention policy: retention.rhai "),
                "{name}: {message}"
            );
            assert!(message.contains(needle), "{name}: {message}");
        }
        let huge = format!("fn retain(c) {{ keep(\"x\") }}\n//{}", "x".repeat(1 << 20));
        assert!(compile_error(&huge).contains("over the limit"));
    }

    #[test]
    fn top_level_statements_never_run() {
        let policy = compile(r#"throw "ran"; loop {} fn retain(c) { keep("fine") }"#);
        check(&policy, &[("plain", inactive(1), "keep: fine")]);
    }

    #[test]
    fn verdicts_are_remembered_by_facts() {
        let policy = RetentionPolicy::default();
        let facts = tagged("renovation", inactive(2000));
        let first = policy.decide(&facts);
        assert_eq!(policy.memo_len(), 1);
        let second = policy.decide(&facts);
        assert_eq!(first, second);
        // Served from the memo: the same reason, not a copy of it.
        assert!(Arc::ptr_eq(&first.reason, &second.reason));
        assert_eq!(policy.memo_len(), 1);
        policy.decide(&inactive(2000));
        assert_eq!(policy.memo_len(), 2);

        // Deterministic faults are remembered too.
        let broken = compile("fn retain(c) { 42 }");
        let fault = broken.decide(&facts);
        assert!(fault.fault);
        assert!(Arc::ptr_eq(&fault.reason, &broken.decide(&facts).reason));
        assert_eq!(broken.memo_len(), 1);
    }

    #[test]
    fn a_time_limit_fault_is_not_remembered() {
        let slow = compile(
            r#"fn retain(c) { let s = "x"; s.pad(60000, "y"); loop { let t = s.to_upper(); } }"#,
        );
        let verdict = slow.decide(&inactive(1));
        assert!(verdict.fault);
        assert!(
            verdict.reason.contains("time limit of 20 ms"),
            "{}",
            verdict.reason
        );
        assert_eq!(slow.memo_len(), 0);
    }

    #[test]
    fn a_policy_is_shared_between_threads() {
        let policy = RetentionPolicy::default();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let policy = &policy;
                scope.spawn(move || {
                    for days in 0..200 {
                        let verdict = policy.decide(&inactive(1000 + days + t));
                        assert!(!verdict.fault, "{verdict:?}");
                    }
                });
            }
        });
        assert_eq!(policy.memo_len(), 203);
    }
}
