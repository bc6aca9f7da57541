//! Identity. `identity` owns principals (users and service accounts),
//! their roles and attributes, passwords (argon2id and the strength
//! policy) and the TOTP second factor. Who may do what is the policy's
//! decision (`policy`); identity only says who is acting.

pub(crate) mod password;
pub(crate) mod totp;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The role that manages principals and sees every field.
pub const ADMIN_ROLE: &str = "admin";

/// The role that handles dormant customers and privacy requests.
pub const STEWARD_ROLE: &str = "steward";

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
    /// An attribute name or value that is not allowed.
    #[error(
        "invalid attribute `{0}`: names use 1 to 32 lowercase letters, digits or `_`, values at most 256 bytes"
    )]
    InvalidAttribute(String),
    /// A password the strength policy refuses.
    #[error("{0}")]
    WeakPassword(String),
    /// A role the installed policy does not define.
    #[error(
        "role `{0}` is not defined by the installed policy; define it in roles.toml or pick another"
    )]
    UndefinedRole(String),
    /// A second-factor operation that does not fit the principal's state.
    #[error("{0}")]
    SecondFactor(String),
}

/// What kind of actor a principal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A person.
    User,
    /// A program acting on its own behalf.
    Service,
    /// A sandboxed plugin (`plugin:<name>`), made by plugin install.
    Plugin,
}

impl PrincipalKind {
    /// The lowercase name policies see.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::Service => "service",
            PrincipalKind::Plugin => "plugin",
        }
    }
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
    /// Team, region, manager and the like, as policies see them.
    pub attributes: BTreeMap<String, String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl From<PrincipalRecord> for Principal {
    fn from(p: PrincipalRecord) -> Self {
        Self {
            name: p.name,
            kind: p.kind,
            roles: p.roles,
            active: p.active,
            attributes: p.attributes,
            created_at: DateTime::from_timestamp_micros(p.created_at).unwrap_or_default(),
        }
    }
}

/// A change to a principal: new roles (replacing the old ones), attributes
/// to set and attributes to remove.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrincipalUpdate {
    /// The new roles, if they change.
    pub roles: Option<Vec<String>>,
    /// Attributes to set (team, region, manager, display_name, email, ...).
    pub set_attributes: BTreeMap<String, String>,
    /// Attributes to remove.
    pub remove_attributes: Vec<String>,
}

/// A principal as the engine keeps it (`store` files it under envelope 2:
/// with attributes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PrincipalRecord {
    pub(crate) name: String,
    pub(crate) kind: PrincipalKind,
    pub(crate) roles: Vec<String>,
    pub(crate) active: bool,
    pub(crate) created_at: i64,
    /// Team, region, manager, display name, email: what policies decide on.
    pub(crate) attributes: BTreeMap<String, String>,
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
/// Checks a reference to an existing principal: a principal name, or a
/// plugin's principal `plugin:<name>`.
pub(crate) fn check_reference(name: &str) -> Result<(), IdentityError> {
    match name.strip_prefix("plugin:") {
        Some(plugin) => {
            check_name(plugin).map_err(|_| IdentityError::InvalidName(name.to_string()))
        }
        None => check_name(name),
    }
}

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

/// Checks an attribute name and value.
pub(crate) fn check_attribute(name: &str, value: &str) -> Result<(), IdentityError> {
    let ok = check_role(name).is_ok() && value.len() <= 256 && !value.contains('\0');
    if ok {
        Ok(())
    } else {
        Err(IdentityError::InvalidAttribute(name.to_string()))
    }
}

/// An active principal, resolved for one operation.
#[derive(Clone, Debug)]
pub(crate) struct Actor {
    pub(crate) name: String,
    pub(crate) admin: bool,
    pub(crate) kind: PrincipalKind,
    pub(crate) roles: Vec<String>,
    pub(crate) attributes: BTreeMap<String, String>,
}

impl Actor {
    /// The actor a stored principal makes; whether it may act at all
    /// (exists, is active) is the identity step's decision.
    pub(crate) fn from_record(p: PrincipalRecord) -> Self {
        Self {
            admin: p.roles.iter().any(|r| r == ADMIN_ROLE),
            name: p.name,
            kind: p.kind,
            roles: p.roles,
            attributes: p.attributes,
        }
    }

    /// Whether it handles privacy requests: an admin or a data steward.
    pub(crate) fn is_privacy_officer(&self) -> bool {
        self.admin || self.roles.iter().any(|r| r == STEWARD_ROLE)
    }

    /// The plugin it is the principal of, if it is one.
    pub(crate) fn plugin_name(&self) -> Option<&str> {
        match self.kind {
            PrincipalKind::Plugin => self.name.strip_prefix("plugin:"),
            _ => None,
        }
    }
}
