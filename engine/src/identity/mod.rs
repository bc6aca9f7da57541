//! Identity. `identity` owns principals (users and service accounts), their
//! roles and the built-in access rule that stands until policy scripts
//! decide instead.
//!
//! Built-in rule: a deactivated principal may do nothing; admins and a
//! customer's owner see every field; any other principal sees personal
//! fields masked and sensitive fields not at all; only admins and the owner
//! change or delete a customer; only admins manage principals.

pub(crate) mod password;
pub(crate) mod totp;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::Sensitivity;
use crate::store::StoredPrincipal;

/// The role that manages principals and sees every field.
pub const ADMIN_ROLE: &str = "admin";

/// Errors about principals.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// A name that is not allowed.
    #[error(
        "invalid principal name `{0}`: use 1 to 64 lowercase letters, digits, `.`, `_`, `-` or `@`"
    )]
    InvalidName(String),
    /// A role name that is not allowed.
    #[error("invalid role `{0}`: use 1 to 32 lowercase letters, digits or `_`")]
    InvalidRole(String),
    /// The name is taken.
    #[error("principal `{0}` already exists")]
    Exists(String),
    /// No such principal.
    #[error("no principal named `{0}`")]
    Unknown(String),
}

/// What kind of actor a principal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A person.
    User,
    /// A program acting on its own behalf.
    Service,
}

/// A principal as listed to administrators.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// Its unique name.
    pub name: String,
    /// User or service account.
    pub kind: PrincipalKind,
    /// Its roles.
    pub roles: Vec<String>,
    /// Whether it may act.
    pub active: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl From<StoredPrincipal> for Principal {
    fn from(p: StoredPrincipal) -> Self {
        Self {
            name: p.name,
            kind: p.kind,
            roles: p.roles,
            active: p.active,
            created_at: DateTime::from_timestamp_micros(p.created_at).unwrap_or_default(),
        }
    }
}

/// Checks a principal name.
pub(crate) fn check_name(name: &str) -> Result<(), IdentityError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(IdentityError::InvalidName(name.to_string()))
    }
}

/// Checks a role name.
pub(crate) fn check_role(role: &str) -> Result<(), IdentityError> {
    let ok = (1..=32).contains(&role.len())
        && role
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(IdentityError::InvalidRole(role.to_string()))
    }
}

/// An active principal, resolved for one operation.
#[derive(Clone, Debug)]
pub(crate) struct Actor {
    pub(crate) name: String,
    pub(crate) admin: bool,
}

impl Actor {
    /// Resolves `name`, or says why it may not act.
    pub(crate) fn resolve(name: &str, stored: Option<StoredPrincipal>) -> Result<Self, String> {
        match stored {
            None => Err(format!("unknown principal `{name}`")),
            Some(p) if !p.active => Err(format!("principal `{name}` is deactivated")),
            Some(p) => Ok(Self {
                name: p.name,
                admin: p.roles.iter().any(|r| r == ADMIN_ROLE),
            }),
        }
    }

    /// Whether this actor has full rights over a customer owned by `owner`.
    pub(crate) fn entitled(&self, owner: &str) -> bool {
        self.admin || self.name == owner
    }
}

/// How a field of the given sensitivity is shown to an actor, or `None` if hidden.
pub(crate) fn field_access(
    entitled: bool,
    sensitivity: Sensitivity,
) -> Option<crate::model::Shown> {
    use crate::model::Shown;
    match (entitled, sensitivity) {
        (true, _) | (false, Sensitivity::Public) => Some(Shown::Full),
        (false, Sensitivity::Personal) => Some(Shown::Masked),
        (false, Sensitivity::Sensitive) => None,
    }
}
