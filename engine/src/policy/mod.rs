//! Access policies written in rhai: compiled once, run sandboxed, and
//! failing closed.
//!
//! `policy` owns the policy pack (the `.rhai` scripts, `roles.toml` and
//! `cases.toml`), the sandboxed rhai host that runs `authorize(req)`, and
//! the case runner that checks a pack before it is installed. It never
//! touches storage: the engine hands it a [`Subject`] and the
//! [`CustomerFacts`] it needs and gets a [`Decision`] back.
//!
//! Code map: `pack` reads and stores packs and `roles.toml`; `host` is the
//! sandboxed rhai engine and the `authorize` call; `request` is what a
//! script can read (`req`), every read going through one probe; `memo`
//! remembers decisions by the probes their calls made; `cases` runs
//! `cases.toml`.
//!
//! Invariants:
//! - [`Policy::authorize`] never errs and never panics. A script error, a
//!   sandbox limit or the time limit DENIES with [`Decision::fault`] set.
//! - A script sees only the read-only request; it has no file, network,
//!   module, `eval` or clock access, and cannot block (`sleep` is absent).
//!   So a decision is a pure function of what the script read, which is
//!   what makes remembering it sound (see `memo`).
//! - The sandbox (`script`) sets every limit explicitly: rhai leaves them
//!   unlimited by default.

mod cases;
mod clock;
mod eval;
mod host;
mod memo;
mod pack;
mod request;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use rhai::{AST, ImmutableString};
use serde::{Deserialize, Serialize};

use crate::guard::Limits;
use crate::model::{Schema, Sensitivity};

pub use eval::*;
pub use pack::{PolicyPack, RoleDef};

/// Most per-field rules (`mask`, `hide`, `show`) one decision may carry.
pub(crate) const MAX_FIELD_RULES: usize = 1_000;
/// What a principal asks to do; the `req.action` a policy script sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Read one customer (`read`).
    Read,
    /// Find customers (`search`); decided once per customer found.
    Search,
    /// Count customers (`count`); no customer is involved.
    Count,
    /// Create a customer (`create`); the facts are those of the new record.
    Create,
    /// Change a customer (`update`).
    Update,
    /// Delete a customer (`delete`).
    Delete,
    /// Export customers (`export`).
    Export,
    /// Read a customer's interactions (`interactions.read`).
    ReadInteractions,
    /// Log an interaction with a customer (`interactions.log`).
    LogInteraction,
    /// Read a customer's follow-ups (`followups.read`).
    ReadFollowUps,
    /// Create or change a customer's follow-ups (`followups.write`).
    WriteFollowUps,
}

impl Action {
    /// Every action, in declaration order.
    pub const ALL: [Action; 11] = [
        Action::Read,
        Action::Search,
        Action::Count,
        Action::Create,
        Action::Update,
        Action::Delete,
        Action::Export,
        Action::ReadInteractions,
        Action::LogInteraction,
        Action::ReadFollowUps,
        Action::WriteFollowUps,
    ];

    /// The name a policy script sees, e.g. `interactions.read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Search => "search",
            Action::Count => "count",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Export => "export",
            Action::ReadInteractions => "interactions.read",
            Action::LogInteraction => "interactions.log",
            Action::ReadFollowUps => "followups.read",
            Action::WriteFollowUps => "followups.write",
        }
    }

    /// The action named `name` (as [`Action::as_str`] writes it).
    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one field of a customer is shown under a [`Decision`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Treatment {
    /// The whole value.
    Full,
    /// A masked rendering such as `138****8000`.
    Masked,
    /// Not shown at all.
    Hidden,
}

impl Treatment {
    /// `full`, `masked` or `hidden`.
    pub fn as_str(self) -> &'static str {
        match self {
            Treatment::Full => "full",
            Treatment::Masked => "masked",
            Treatment::Hidden => "hidden",
        }
    }
}

impl fmt::Display for Treatment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the policy decided for one request: allowed or not, why, and how
/// each field is shown.
///
/// A script builds it with `allow(reason)` / `deny(reason)` and the field
/// methods (`mask`, `hide`, `show`, `mask_personal`, ...); see
/// `examples/policies/README.md`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    allowed: bool,
    reason: ImmutableString,
    fault: Option<String>,
    /// The rule for personal fields not named in `fields`.
    personal: Option<Treatment>,
    /// The rule for sensitive fields not named in `fields`.
    sensitive: Option<Treatment>,
    /// Per-field rules; a later rule for the same field replaces the
    /// earlier one. At most [`MAX_FIELD_RULES`].
    fields: Vec<(ImmutableString, Treatment)>,
}

impl Decision {
    /// Whether the request is allowed.
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// Why, in words for the person who asked, with the request values the
    /// script named in braces (`{customer.id}`) filled in.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// What went wrong in the policy, if it failed: the request was then
    /// denied to fail closed, and the failure should be audited and alerted.
    pub fn fault(&self) -> Option<&str> {
        self.fault.as_deref()
    }

    /// How `field`, of the given sensitivity, is shown. A rule naming the
    /// field wins, then the rule for its sensitivity class (personal or
    /// sensitive), else [`Treatment::Full`]; public fields are full unless
    /// named. Under a denial every field is [`Treatment::Hidden`].
    pub fn treatment(&self, field: &str, sensitivity: Sensitivity) -> Treatment {
        if !self.allowed {
            return Treatment::Hidden;
        }
        if let Some((_, treatment)) = self.fields.iter().find(|(name, _)| name.as_str() == field) {
            return *treatment;
        }
        let class = match sensitivity {
            Sensitivity::Public => None,
            Sensitivity::Personal => self.personal,
            Sensitivity::Sensitive => self.sensitive,
        };
        class.unwrap_or(Treatment::Full)
    }

    /// An allowing decision with every field full.
    pub(crate) fn allow(reason: impl Into<ImmutableString>) -> Decision {
        Decision {
            allowed: true,
            reason: reason.into(),
            fault: None,
            personal: None,
            sensitive: None,
            fields: Vec::new(),
        }
    }

    /// A denial.
    pub(crate) fn deny(reason: impl Into<ImmutableString>) -> Decision {
        Decision {
            allowed: false,
            ..Decision::allow(reason)
        }
    }

    /// A denial because the policy failed.
    pub(crate) fn fault_deny(fault: String) -> Decision {
        Decision {
            fault: Some(fault),
            ..Decision::deny("the access policy failed, so access is denied until it is fixed")
        }
    }

    /// Sets the rule for one field, replacing an earlier one.
    fn set_field(&mut self, field: ImmutableString, treatment: Treatment) -> Result<(), String> {
        if let Some(rule) = self.fields.iter_mut().find(|(name, _)| *name == field) {
            rule.1 = treatment;
            return Ok(());
        }
        if self.fields.len() >= MAX_FIELD_RULES {
            return Err(format!(
                "a decision may name at most {MAX_FIELD_RULES} fields: use mask_personal() and the like for whole classes"
            ));
        }
        self.fields.push((field, treatment));
        Ok(())
    }
}

/// Errors in policy packs. Each names the file and says what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A policy file could not be read.
    #[error("cannot read policy file `{}`: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A script does not compile.
    #[error(
        "policy script `{file}` does not compile: {message} (line {line}, position {position})"
    )]
    Compile {
        /// The script's file name.
        file: String,
        /// The line of the error, from 1 (0 if unknown).
        line: usize,
        /// The position in the line, from 1 (0 if unknown).
        position: usize,
        /// What is wrong.
        message: String,
    },
    /// No script defines `fn authorize(req)`.
    #[error(
        "the policy defines no `fn authorize(req)` with one parameter: add it to one of the .rhai files, returning allow(..) or deny(..)"
    )]
    MissingAuthorize,
    /// `roles.toml` is invalid.
    #[error("invalid roles.toml: {0}")]
    Roles(String),
    /// `cases.toml` is invalid.
    #[error("invalid cases.toml: {0}")]
    Cases(String),
    /// A pack being installed fails its own cases.
    #[error("the policy pack was refused: {0}")]
    CasesFailed(String),
    /// The pack as a whole is invalid: no script, a file too large, a
    /// stored pack that cannot be read.
    #[error("invalid policy pack: {0}")]
    Pack(String),
    /// `limits` fails (or returns what is not budgets) for a role: every
    /// read of such a principal would be refused.
    #[error("the policy pack was refused: {0}")]
    Limits(String),
}

/// The principal a request is decided for, in the form scripts read it.
/// Built once per operation and reused for every customer of a search.
#[derive(Clone, Debug)]
pub(crate) struct Subject {
    principal: Arc<request::PrincipalData>,
}

impl Subject {
    /// A principal: its id, kind (`user`, `service` or `plugin`), roles and
    /// attributes (team, region, manager...).
    pub(crate) fn new(
        id: &str,
        kind: &str,
        roles: &[String],
        attributes: &BTreeMap<String, String>,
    ) -> Subject {
        Subject {
            principal: Arc::new(request::PrincipalData::new(id, kind, roles, attributes)),
        }
    }
}

/// What a policy may know of the customer a request is about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CustomerFacts {
    /// The customer's id.
    pub(crate) id: u64,
    /// The owning principal.
    pub(crate) owner: String,
    /// The owner's team, if any.
    pub(crate) team: Option<String>,
    /// `active` or `dormant`.
    pub(crate) status: String,
    /// The customer's tags.
    pub(crate) tags: Vec<String>,
}

/// The result of running a pack's test cases.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaseReport {
    /// How many cases passed.
    pub passed: usize,
    /// One entry per unmet expectation; empty when every case passed.
    pub failures: Vec<CaseFailure>,
}

/// One unmet expectation of a test case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseFailure {
    /// The case's name.
    pub case: String,
    /// Expected versus got, e.g. ``field `id_number`: expected masked, got full``.
    pub problem: String,
}

impl fmt::Display for CaseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "case `{}`: {}", self.case, self.problem)
    }
}

/// A compiled policy: the scripts' functions in one AST, run by a
/// sandboxed engine, and the declared roles. Shared between threads.
pub(crate) struct Policy {
    engine: rhai::Engine,
    ast: AST,
    roles: BTreeMap<String, RoleDef>,
    /// Decisions remembered by the values their calls read.
    memo: memo::Memo,
    /// The parameters of the script's `limits`: none, `(p)` or `(p, now)`.
    limits_arity: Option<usize>,
    /// The budgets `limits` returned, per principal (as scripts see it),
    /// with the quarter-hour they were asked for (0 for a `limits(p)`,
    /// which reads no clock).
    limits: RwLock<RememberedLimits>,
}

/// Per principal: the quarter-hour its budgets were asked for, and them.
type RememberedLimits = HashMap<Arc<request::PrincipalData>, (i64, Option<Limits>)>;

/// Most principals whose budgets a policy remembers; past that, it forgets
/// them all and starts again.
const MAX_REMEMBERED_LIMITS: usize = 10_000;

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// Compiles a pack: every script, then `roles.toml`. Errors name the
    /// file, line and position; a pack without `fn authorize(req)` is
    /// refused.
    pub(crate) fn compile(pack: &PolicyPack) -> Result<Policy, PolicyError> {
        let roles = pack::parse_roles(pack.roles_source())?;
        let engine = host::sandboxed_engine();
        let ast = host::compile_scripts(&engine, pack.scripts())?;
        let arities: Vec<usize> = (ast.iter_functions())
            .filter(|f| f.name == host::LIMITS)
            .map(|f| f.params.len())
            .collect();
        let limits_arity = match arities.as_slice() {
            [] => None,
            [n @ (1 | 2)] => Some(*n),
            _ => {
                return Err(PolicyError::Pack(
                    "define one `fn limits(p)` or `fn limits(p, now)`, not several".into(),
                ));
            }
        };
        Ok(Policy {
            engine,
            ast,
            roles,
            memo: memo::Memo::new(),
            limits_arity,
            limits: RwLock::new(HashMap::new()),
        })
    }

    /// The budgets the policy's `limits` gives `subject` at `now` (Unix
    /// seconds; `None`: none, or the policy defines no `limits`), or why
    /// the call failed: the caller fails closed. Remembered per principal
    /// (the call reads only the principal) and, for `limits(p, now)`, for
    /// the quarter-hour `now` falls in (all the clock a script can read);
    /// a failure is not remembered (a time limit depends on the machine).
    pub(crate) fn limits(&self, subject: &Subject, now: i64) -> Result<Option<Limits>, String> {
        let Some(arity) = self.limits_arity else {
            return Ok(None);
        };
        let slot = match arity {
            2 => now.div_euclid(clock::QUARTER_HOUR),
            _ => 0,
        };
        let remembered = self.limits.read().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, limits)) = remembered.get(&subject.principal)
            && *at == slot
        {
            return Ok(*limits);
        }
        drop(remembered);
        let clock = (arity == 2).then(|| clock::ScriptNow::at(now));
        let limits = host::call_limits(&self.engine, &self.ast, &subject.principal, clock)?;
        let mut remembered = self.limits.write().unwrap_or_else(PoisonError::into_inner);
        if remembered.len() >= MAX_REMEMBERED_LIMITS {
            remembered.clear();
        }
        remembered.insert(Arc::clone(&subject.principal), (slot, limits));
        Ok(limits)
    }

    /// Calls `limits` for a principal of each declared role and kind, at
    /// every hour of a Monday and of a Sunday: a `limits` that fails or
    /// returns what is not budgets for any of them is refused before it is
    /// installed (it would refuse every read of such a principal).
    pub(crate) fn check_limits(&self) -> Result<(), PolicyError> {
        if self.limits_arity.is_none() {
            return Ok(());
        }
        // Monday 5 January 2026, 00:00 UTC, and the Sunday after.
        const MONDAY: i64 = 1_767_571_200;
        const SUNDAY: i64 = MONDAY + 6 * 86_400;
        for role in self.roles.keys() {
            for kind in ["user", "service", "plugin"] {
                let subject = Subject::new(
                    "limits-check",
                    kind,
                    std::slice::from_ref(role),
                    &BTreeMap::new(),
                );
                for day in [MONDAY, SUNDAY] {
                    for hour in 0..24 {
                        let at = day + hour * 3600;
                        let clock =
                            (self.limits_arity == Some(2)).then(|| clock::ScriptNow::at(at));
                        if let Err(reason) =
                            host::call_limits(&self.engine, &self.ast, &subject.principal, clock)
                        {
                            let when = chrono::DateTime::from_timestamp(at, 0)
                                .map(|t| t.format("%A %H:%M UTC").to_string())
                                .unwrap_or_default();
                            return Err(PolicyError::Limits(format!(
                                "`limits` fails for a {kind} with role `{role}` at {when}: {reason}"
                            )));
                        }
                        if clock.is_none() {
                            break;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The roles `roles.toml` declares.
    pub(crate) fn roles(&self) -> &BTreeMap<String, RoleDef> {
        &self.roles
    }

    /// Decides whether `subject` may do `action` for `purpose` (empty when
    /// none was stated) to `customer` (`None` when the action concerns no
    /// single customer, e.g. count). Never errs and never panics: a policy
    /// failure denies with [`Decision::fault`] set.
    pub(crate) fn authorize(
        &self,
        subject: &Subject,
        action: Action,
        purpose: &str,
        customer: Option<&CustomerFacts>,
    ) -> Decision {
        self.decide(subject, action, purpose, customer, true)
    }

    /// [`Policy::authorize`] running the script every time (what a
    /// decision costs the first time; used by tests and benchmarks).
    pub(crate) fn authorize_uncached(
        &self,
        subject: &Subject,
        action: Action,
        purpose: &str,
        customer: Option<&CustomerFacts>,
    ) -> Decision {
        self.decide(subject, action, purpose, customer, false)
    }

    /// Decides from a remembered path when `remember` and one matches, else
    /// by running the script (and remembering its path).
    fn decide(
        &self,
        subject: &Subject,
        action: Action,
        purpose: &str,
        customer: Option<&CustomerFacts>,
        remember: bool,
    ) -> Decision {
        let live = request::Live {
            principal: &subject.principal,
            action,
            purpose,
            customer,
        };
        let remembered = if remember { self.memo.get(&live) } else { None };
        let mut decision = match remembered {
            Some(decision) => decision,
            None => {
                let request = request::Request::new(&live, &subject.principal);
                let decision = host::call_authorize(&self.engine, &self.ast, request);
                request::finish_trace(|trace| {
                    if let (true, None, Some(trace)) = (remember, decision.fault(), trace) {
                        self.memo.insert(trace, &decision);
                    }
                });
                decision
            }
        };
        if let Some(reason) = request::fill_reason(&decision.reason, &live) {
            decision.reason = reason.into();
        }
        decision
    }

    /// Runs the test cases of a `cases.toml` against this policy; field
    /// expectations are checked with the sensitivities `schema` declares.
    /// A malformed case file is an error; unmet expectations are failures
    /// in the report.
    pub(crate) fn run_cases(
        &self,
        cases_toml: &str,
        schema: &Schema,
    ) -> Result<CaseReport, PolicyError> {
        cases::run(self, cases_toml, schema)
    }
}
