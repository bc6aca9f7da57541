//! What an operation is before it runs: its audit entry, the engine's rule
//! on who may attempt it, and the data keys its write settles.

use crate::Error;
use crate::audit::Outcome;
use crate::guard::Access;
use crate::records::KeyClaim;

/// Who may run an operation, by a rule of the engine that no policy
/// changes. Customer data is decided, on top, by the policy per customer.
#[derive(Clone, Debug)]
pub(crate) enum Rule {
    /// Any active principal.
    Active,
    /// Admins only; says what is refused (`install plugins`).
    Admins(String),
    /// Admins and data stewards (privacy officers).
    Officers(String),
    /// The principal `name` itself, or an admin; `what` is refused, e.g.
    /// `revoke the sessions of`.
    SelfOrAdmin { name: String, what: String },
}

/// What an audit entry says: never a value, only names and ids.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) action: String,
    pub(crate) target: Option<String>,
    pub(crate) customers: Vec<u64>,
    pub(crate) fields: Vec<String>,
}

impl Entry {
    pub(crate) fn new(action: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            target: None,
            customers: Vec::new(),
            fields: Vec::new(),
        }
    }

    /// About one customer.
    pub(crate) fn customer(mut self, id: u64) -> Self {
        self.target = Some(format!("customer {id}"));
        self.customers = vec![id];
        self
    }

    pub(crate) fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub(crate) fn fields(mut self, fields: Vec<String>) -> Self {
        self.fields = fields;
        self
    }
}

/// An operation: its audit entry, its rule, and the data keys its write
/// creates or may destroy.
pub(crate) struct Op<'r> {
    pub(super) entry: Entry,
    pub(super) rule: Rule,
    pub(super) claim: Option<KeyClaim<'r>>,
    /// On success, the body writes the entries itself (one per item).
    pub(super) itemized: bool,
    /// A removal's rewrite of the data file is left to the caller.
    pub(super) rewrite_later: bool,
    /// What the guard counts what a read shows as.
    pub(super) access: Access,
}

impl<'r> Op<'r> {
    /// An operation any active principal may attempt.
    pub(crate) fn new(entry: Entry) -> Self {
        Self {
            entry,
            rule: Rule::Active,
            claim: None,
            itemized: false,
            rewrite_later: false,
            access: Access::Read,
        }
    }

    /// Counts what the read shows as `access` (a read by id unless said).
    pub(crate) fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    pub(crate) fn rule(mut self, rule: Rule) -> Self {
        self.rule = rule;
        self
    }

    /// Admins only.
    pub(crate) fn admins(self, what: impl Into<String>) -> Self {
        self.rule(Rule::Admins(what.into()))
    }

    /// Admins and data stewards only.
    pub(crate) fn officers(self, what: impl Into<String>) -> Self {
        self.rule(Rule::Officers(what.into()))
    }

    /// The keys this write creates or may destroy, settled after it.
    pub(crate) fn claim(mut self, claim: KeyClaim<'r>) -> Self {
        self.claim = Some(claim);
        self
    }

    /// A write that removes customers returns without rewriting the data
    /// file ([`Store::scrub_if_owed`](crate::store::Store::scrub_if_owed)): for one batch of
    /// many, whose caller rewrites it once at the end. Until then, and if
    /// the caller never gets there, the file is marked for a rewrite at the
    /// next removal or open.
    pub(crate) fn rewrite_later(mut self) -> Self {
        self.rewrite_later = true;
        self
    }

    /// On success the body writes one entry per item ([`Write::audit`])
    /// instead of the operation's own; a refusal is still recorded with it.
    pub(crate) fn itemized(mut self) -> Self {
        self.itemized = true;
        self
    }
}

/// How a failed operation is audited: a refusal as denied with its reason,
/// anything else as failed.
pub(crate) fn outcome_of(error: &Error) -> Outcome {
    match error {
        Error::Denied(denied) => Outcome::Denied(denied.to_string()),
        other => Outcome::Failed(other.to_string()),
    }
}
