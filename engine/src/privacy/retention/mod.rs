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
pub const DEFAULT_RETENTION: &str = include_str!("../../../../examples/policies/retention.rhai");

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
mod tests;
