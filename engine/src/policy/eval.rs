//! Deciding requests against a policy pack from outside the engine: the
//! evaluator the engine runs, without a database.
//!
//! This is what benchmarks and agreement tests use to ask a pack about one
//! request at a time. It does exactly what the engine's read path does per
//! operation: the principal is prepared once ([`PreparedSubject`]) and each
//! customer costs one `authorize` call, answered from the policy's memory
//! of decisions when it can be. (`custodian policy test` runs whole
//! case files through [`PolicyPack::test_cases`], which calls the same
//! evaluator.)

use std::collections::BTreeMap;

use super::{Action, CustomerFacts, Decision, Policy, PolicyError, PolicyPack, Subject};

/// A policy pack compiled for deciding requests: the same sandboxed
/// evaluator the engine runs. Shared between threads.
///
/// ```
/// use std::collections::BTreeMap;
/// use custodian::{
///     Action, CompiledPolicy, CustomerAttributes, PolicyPack, PreparedSubject, Sensitivity,
///     Treatment,
/// };
///
/// # fn main() -> Result<(), custodian::PolicyError> {
/// let policy = CompiledPolicy::compile(&PolicyPack::default_pack())?;
/// let wang = PreparedSubject::new("wang", "user", &["sales".to_string()], &BTreeMap::new());
/// let own = CustomerAttributes::new(7, "wang", "active");
/// let decision = policy.decide(&wang, Action::Read, "sales_contact", Some(&own));
/// assert!(decision.allowed());
/// // The default pack masks ID numbers even for their owner.
/// let shown = decision.treatment("id_number", Sensitivity::Sensitive);
/// assert_eq!(shown, Treatment::Masked);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct CompiledPolicy(Policy);

impl CompiledPolicy {
    /// Compiles every script and `roles.toml` of `pack`; the errors name
    /// the file, line and position. The pack's cases are not run (see
    /// [`PolicyPack::check_cases`]).
    pub fn compile(pack: &PolicyPack) -> Result<CompiledPolicy, PolicyError> {
        Policy::compile(pack).map(CompiledPolicy)
    }

    /// Decides whether `subject` may do `action` for `purpose` (empty when
    /// none was stated) to `customer` (`None` when the action concerns no
    /// single customer, e.g. a count). Never errs and never panics: a
    /// policy failure denies with [`Decision::fault`] set.
    ///
    /// Like the engine, this remembers decisions by the values the script
    /// read, and answers a later request that reads the same values from
    /// memory without running the script.
    pub fn decide(
        &self,
        subject: &PreparedSubject,
        action: Action,
        purpose: &str,
        customer: Option<&CustomerAttributes>,
    ) -> Decision {
        self.0
            .authorize(&subject.0, action, purpose, customer.map(|c| &c.0))
    }

    /// [`CompiledPolicy::decide`] without the memory: runs the script every
    /// time, and remembers nothing. What a decision costs the first time,
    /// and what a benchmark of the script itself measures.
    pub fn decide_uncached(
        &self,
        subject: &PreparedSubject,
        action: Action,
        purpose: &str,
        customer: Option<&CustomerAttributes>,
    ) -> Decision {
        self.0
            .authorize_uncached(&subject.0, action, purpose, customer.map(|c| &c.0))
    }
}

/// A principal in the form policy scripts read it (`req.principal`), built
/// once and reused for any number of decisions, as the engine does for the
/// customers of one operation.
#[derive(Clone, Debug)]
pub struct PreparedSubject(Subject);

impl PreparedSubject {
    /// A principal: its name, kind (`user`, `service` or `plugin`), roles
    /// and attributes (`team`, `region`, `manager`...).
    pub fn new(
        id: &str,
        kind: &str,
        roles: &[String],
        attributes: &BTreeMap<String, String>,
    ) -> PreparedSubject {
        PreparedSubject(Subject::new(id, kind, roles, attributes))
    }
}

/// What a policy may know of a customer (`req.customer`): its id, owner,
/// the owner's team, status and tags. No personal field is ever part of
/// it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CustomerAttributes(CustomerFacts);

impl CustomerAttributes {
    /// Customer `id`, owned by `owner`, with `status` (`active` or
    /// `dormant`), no team and no tags.
    pub fn new(id: u64, owner: impl Into<String>, status: impl Into<String>) -> CustomerAttributes {
        CustomerAttributes(CustomerFacts {
            id,
            owner: owner.into(),
            team: None,
            status: status.into(),
            tags: Vec::new(),
        })
    }

    /// The same with the owner's team `team` (`None`: the owner has none).
    pub fn with_team(mut self, team: Option<String>) -> CustomerAttributes {
        self.0.team = team;
        self
    }

    /// The same with `tags`.
    pub fn with_tags(mut self, tags: Vec<String>) -> CustomerAttributes {
        self.0.tags = tags;
        self
    }

    /// The customer's id.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The owning principal.
    pub fn owner(&self) -> &str {
        &self.0.owner
    }

    /// The owner's team, if any.
    pub fn team(&self) -> Option<&str> {
        self.0.team.as_deref()
    }

    /// `active` or `dormant`.
    pub fn status(&self) -> &str {
        &self.0.status
    }

    /// The customer's tags.
    pub fn tags(&self) -> &[String] {
        &self.0.tags
    }
}
