//! Records and schema. `model` owns what a customer, an interaction and a
//! follow-up are, how field values are validated, normalized and masked, and
//! the views handed to callers. It never touches storage or keys.

mod consent;
mod mask;
mod schema;
mod time;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use consent::ConsentChange;
pub use mask::mask_value;
pub use schema::{Basis, DEFAULT_SCHEMA, FieldDef, FieldType, PurposeDef, Schema, Sensitivity};
pub use time::Clock;
pub(crate) use time::{from_micros, wall_micros};

/// Errors in records and schemas: every one names the field at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelError {
    /// The schema file is invalid.
    #[error("invalid schema: {0}")]
    Schema(String),
    /// A field the schema does not declare. The message names it only
    /// when it is spelled as a field name can be: a name given in the
    /// place of a field may be a value, and messages are audited.
    #[error(
        "unknown field {}: it is not declared in the schema",
        shown_name(field)
    )]
    UnknownField {
        /// The field name given.
        field: String,
    },
    /// A value the field's type refuses.
    #[error("invalid value for field `{field}`: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// Why the value was refused.
        reason: String,
    },
    /// A value longer than the field allows.
    #[error("field `{field}` is {len} bytes long; the most it accepts is {max}")]
    TooLong {
        /// The field.
        field: String,
        /// The length given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A required field is missing or empty.
    #[error("field `{field}` is required")]
    Required {
        /// The field.
        field: String,
    },
    /// Some other record attribute is invalid (channel, amount, time...).
    #[error("invalid {what}: {reason}")]
    Attribute {
        /// The attribute, e.g. `channel`.
        what: String,
        /// Why it was refused.
        reason: String,
    },
}

/// `name` quoted when it is spelled as a schema field name (lowercase
/// letters, digits and `_`, at most 48 bytes), else a description of it.
fn shown_name(name: &str) -> String {
    let plain = name.len() <= 48
        && (name.bytes()).all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    match plain && !name.is_empty() {
        true => format!("`{name}`"),
        false => {
            "(a name that is not spelled as a field name: lowercase letters, digits and `_`)".into()
        }
    }
}

/// A customer's identifier.
pub type CustomerId = u64;
/// An interaction's identifier.
pub type InteractionId = u64;
/// A follow-up's identifier.
pub type FollowUpId = u64;

/// Where a customer is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Status {
    /// A customer in normal use.
    Active,
    /// A customer with no recent interaction; access is restricted.
    Dormant,
}

impl Status {
    /// The lowercase name used in indexes, the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Dormant => "dormant",
        }
    }

    /// Parses a status name.
    pub fn parse(text: &str) -> Result<Self, ModelError> {
        match text {
            "active" => Ok(Status::Active),
            "dormant" => Ok(Status::Dormant),
            _ => Err(ModelError::Attribute {
                what: "status".into(),
                reason: "not one of active, dormant".into(),
            }),
        }
    }
}

/// A customer to create: field values as given by a person or a file,
/// validated and normalized by the engine against the schema.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewCustomer {
    /// The principal who owns the customer; the acting principal if `None`.
    pub owner: Option<String>,
    /// Field name → raw value.
    pub fields: BTreeMap<String, String>,
    /// Consents the customer gave when the record was made; they give the
    /// basis to store fields that need consent.
    pub consents: Vec<ConsentChange>,
}

impl NewCustomer {
    /// An empty customer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a field.
    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.insert(name.into(), value.into());
        self
    }

    /// Sets the owner.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Records a consent the customer gave.
    pub fn consent(mut self, consent: ConsentChange) -> Self {
        self.consents.push(consent);
        self
    }
}

/// Changes to a customer: fields to set, fields to clear, a new owner.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CustomerUpdate {
    /// Field name → new raw value.
    pub set: BTreeMap<String, String>,
    /// Fields to remove.
    pub clear: BTreeSet<String>,
    /// A new owner.
    pub owner: Option<String>,
}

impl CustomerUpdate {
    /// No change.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a field.
    pub fn set(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set.insert(name.into(), value.into());
        self
    }

    /// Clears a field.
    pub fn clear(mut self, name: impl Into<String>) -> Self {
        self.clear.insert(name.into());
        self
    }

    /// Hands the customer to another owner.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }
}

/// How a field is shown to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shown {
    /// The whole value.
    Full,
    /// A masked rendering such as `138****8000`.
    Masked,
}

/// A customer as one principal may see it. Fields the principal may not see
/// are absent, not empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Customer {
    /// The customer's id.
    pub id: CustomerId,
    /// The owning principal.
    pub owner: String,
    /// Lifecycle status.
    pub status: Status,
    /// When the customer was created.
    pub created_at: DateTime<Utc>,
    /// When the customer was last changed.
    pub updated_at: DateTime<Utc>,
    /// When the last interaction with the customer happened.
    pub last_interaction_at: Option<DateTime<Utc>>,
    /// Visible fields: name → value (masked where `masked` says so).
    pub fields: BTreeMap<String, String>,
    /// The names of the fields in `fields` that are shown masked.
    pub masked: BTreeSet<String>,
}

impl Customer {
    /// The value of a visible field.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    /// How a field is shown, or `None` if it is hidden or unset.
    pub fn shown(&self, field: &str) -> Option<Shown> {
        self.fields.get(field).map(|_| {
            if self.masked.contains(field) {
                Shown::Masked
            } else {
                Shown::Full
            }
        })
    }
}

/// The medium of an interaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// A phone call.
    Call,
    /// An email.
    Email,
    /// A chat message or conversation.
    Chat,
    /// A text message.
    Sms,
    /// A meeting.
    Meeting,
    /// A visit in person.
    Visit,
    /// An order placed.
    Order,
}

impl Channel {
    /// Parses a channel name.
    pub fn parse(text: &str) -> Result<Self, ModelError> {
        Ok(match text {
            "call" => Channel::Call,
            "email" => Channel::Email,
            "chat" => Channel::Chat,
            "sms" => Channel::Sms,
            "meeting" => Channel::Meeting,
            "visit" => Channel::Visit,
            "order" => Channel::Order,
            _ => {
                return Err(ModelError::Attribute {
                    what: "channel".into(),
                    reason: "not one of call, email, chat, sms, meeting, visit, order".into(),
                });
            }
        })
    }
}

/// Who started an interaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The customer reached the company.
    Inbound,
    /// The company reached the customer.
    Outbound,
}

impl Direction {
    /// Parses a direction name.
    pub fn parse(text: &str) -> Result<Self, ModelError> {
        match text {
            "inbound" | "in" => Ok(Direction::Inbound),
            "outbound" | "out" => Ok(Direction::Outbound),
            _ => Err(ModelError::Attribute {
                what: "direction".into(),
                reason: "not one of inbound, outbound".into(),
            }),
        }
    }
}

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    /// What was bought.
    pub name: String,
    /// How many.
    pub quantity: u32,
    /// Price of one, in minor units (cents, fen), if known.
    pub unit_price_minor: Option<i64>,
}

/// An interaction to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewInteraction {
    /// The medium.
    pub channel: Channel,
    /// Who started it.
    pub direction: Direction,
    /// When it happened; now if `None`.
    pub at: Option<DateTime<Utc>>,
    /// A one-line summary (encrypted at rest).
    pub summary: String,
    /// The full text (encrypted at rest).
    pub body: Option<String>,
    /// For orders: the amount in minor units.
    pub amount_minor: Option<i64>,
    /// For orders: the items.
    pub items: Vec<OrderItem>,
}

impl NewInteraction {
    /// An interaction on `channel` in `direction` with a summary.
    pub fn new(channel: Channel, direction: Direction, summary: impl Into<String>) -> Self {
        Self {
            channel,
            direction,
            at: None,
            summary: summary.into(),
            body: None,
            amount_minor: None,
            items: Vec::new(),
        }
    }
}

/// An interaction as one principal may see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Interaction {
    /// Its id.
    pub id: InteractionId,
    /// The customer.
    pub customer: CustomerId,
    /// The medium.
    pub channel: Channel,
    /// Who started it.
    pub direction: Direction,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who logged it.
    pub logged_by: String,
    /// The summary, if the principal may see it.
    pub summary: Option<String>,
    /// The body, if there is one and the principal may see it.
    pub body: Option<String>,
    /// For orders: the amount in minor units.
    pub amount_minor: Option<i64>,
    /// For orders: the items.
    pub items: Vec<OrderItem>,
}

/// A follow-up to schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewFollowUp {
    /// The customer.
    pub customer: CustomerId,
    /// When it is due.
    pub due: DateTime<Utc>,
    /// The principal who should do it; the acting principal if `None`.
    pub assignee: Option<String>,
    /// What to do (encrypted at rest).
    pub note: String,
}

/// A follow-up as one principal may see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FollowUp {
    /// Its id.
    pub id: FollowUpId,
    /// The customer.
    pub customer: CustomerId,
    /// When it is due.
    pub due: DateTime<Utc>,
    /// Who should do it.
    pub assignee: String,
    /// What to do, if the principal may see it.
    pub note: Option<String>,
    /// Whether it is done.
    pub done: bool,
}

/// Parses an amount such as `12.30` into minor units (`1230`).
pub fn parse_amount(text: &str) -> Result<i64, ModelError> {
    let bad = || ModelError::Attribute {
        what: "amount".into(),
        reason: "not an amount like 12.30".into(),
    };
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || frac.len() > 2 || !all_digits(whole) || !all_digits(frac) {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let frac: i64 = format!("{frac:0<2}").parse().map_err(|_| bad())?;
    let minor = whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)?;
    Ok(if negative { -minor } else { minor })
}

/// Renders minor units as `12.30`.
pub fn format_amount(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_round_trip() {
        for (text, minor) in [("12.30", 1230), ("12.3", 1230), ("7", 700), ("-0.05", -5)] {
            assert_eq!(parse_amount(text), Ok(minor), "{text}");
        }
        assert_eq!(format_amount(1230), "12.30");
        assert_eq!(format_amount(-5), "-0.05");
        for bad in [
            "",
            "1.234",
            "abc",
            "1.x",
            "99999999999999999999",
            "--5",
            "-+5",
            "+5",
        ] {
            assert!(parse_amount(bad).is_err(), "{bad}");
        }
    }
}
