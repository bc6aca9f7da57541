//! The customer schema: which fields exist, their type, sensitivity,
//! purposes and limits, and how each value is validated and normalized.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ModelError;

/// The schema that ships with Custodian, used when a database is created
/// without one of its own.
pub const DEFAULT_SCHEMA: &str = include_str!("../default_schema.toml");

/// Longest value any field accepts unless its schema says `max_len`.
pub const DEFAULT_MAX_LEN: usize = 4096;

/// Names that belong to every customer and cannot be declared as fields.
pub const BUILT_IN_FIELDS: &[&str] = &[
    "id",
    "owner",
    "status",
    "created_at",
    "updated_at",
    "last_interaction_at",
];

/// What kind of value a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// Free text.
    Text,
    /// A phone number: a Chinese mobile number or any E.164 number.
    Phone,
    /// An email address.
    Email,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// A decimal number.
    Number,
    /// One of the values the schema lists.
    Enum,
    /// A postal address.
    Address,
    /// An identity document number (a PRC resident ID is checked).
    IdNumber,
    /// A comma-separated list of short labels.
    List,
}

/// How much harm the value does if it leaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    /// Stored in the clear and shown to every principal who may read the customer.
    Public,
    /// Encrypted; shown masked to principals who are not entitled to it.
    Personal,
    /// Encrypted; hidden from principals who are not entitled to it.
    Sensitive,
}

/// One declared field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    /// The field's name: lowercase letters, digits and `_`, starting with a letter.
    pub name: String,
    /// The kind of value.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// How sensitive the value is.
    pub sensitivity: Sensitivity,
    /// The purposes the field is collected for.
    #[serde(default)]
    pub purposes: Vec<String>,
    /// Whether every customer must have it.
    #[serde(default)]
    pub required: bool,
    /// Longest accepted value in bytes; [`DEFAULT_MAX_LEN`] if absent.
    #[serde(default)]
    pub max_len: Option<usize>,
    /// The allowed values of an `enum` field.
    #[serde(default)]
    pub values: Vec<String>,
    /// The field holds the person's date of birth: a customer under 14 is
    /// stored only with a guardian's consent (PIPL art. 31).
    #[serde(default)]
    pub birth_date: bool,
}

impl FieldDef {
    /// Whether values of this field are encrypted at rest.
    pub fn is_sealed(&self) -> bool {
        self.sensitivity != Sensitivity::Public
    }

    /// Whether the field has a keyed blind index for exact lookup.
    pub fn is_blind_indexed(&self) -> bool {
        matches!(
            self.kind,
            FieldType::Phone | FieldType::Email | FieldType::IdNumber
        )
    }

    /// The longest accepted value in bytes.
    pub fn max_len(&self) -> usize {
        self.max_len.unwrap_or(DEFAULT_MAX_LEN)
    }
}

/// Why the engine may hold data for a purpose (PIPL art. 13, GDPR art. 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The person's consent, recorded in the consent ledger.
    Consent,
    /// Necessary to perform a contract with the person (delivering an order).
    Contract,
    /// Necessary to meet a legal obligation (invoices, real-name rules).
    LegalObligation,
}

impl Basis {
    /// The lowercase name used in schemas, reports and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Consent => "consent",
            Basis::Contract => "contract",
            Basis::LegalObligation => "legal_obligation",
        }
    }
}

/// One declared purpose of processing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurposeDef {
    /// The purpose's name, e.g. `marketing`.
    pub name: String,
    /// Why data may be held for it.
    pub basis: Basis,
    /// What the purpose is, in words a customer understands.
    #[serde(default)]
    pub description: String,
    /// Consent to this purpose is a parent's or guardian's consent to
    /// processing a child's data (PIPL art. 31).
    #[serde(default)]
    pub guardian: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    #[serde(rename = "purpose", default)]
    purposes: Vec<PurposeDef>,
    #[serde(rename = "field", default)]
    fields: Vec<FieldDef>,
}

/// A validated set of field declarations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    purposes: Vec<PurposeDef>,
    fields: Vec<FieldDef>,
    by_name: BTreeMap<String, usize>,
    source: String,
}

impl Default for Schema {
    fn default() -> Self {
        match Self::from_toml(DEFAULT_SCHEMA) {
            Ok(schema) => schema,
            // INVARIANT: the bundled schema parses; a unit test pins it.
            Err(_) => Self {
                purposes: Vec::new(),
                fields: Vec::new(),
                by_name: BTreeMap::new(),
                source: String::new(),
            },
        }
    }
}

impl Schema {
    /// Parses and checks a schema written in TOML (`[[field]]` tables).
    pub fn from_toml(source: &str) -> Result<Self, ModelError> {
        let file: SchemaFile =
            toml::from_str(source).map_err(|e| ModelError::Schema(e.message().to_string()))?;
        let mut purposes = BTreeMap::new();
        for purpose in &file.purposes {
            check_name(&purpose.name)?;
            if purposes
                .insert(purpose.name.as_str(), purpose.basis)
                .is_some()
            {
                return Err(ModelError::Schema(format!(
                    "purpose `{}` is declared twice",
                    purpose.name
                )));
            }
        }
        let mut by_name = BTreeMap::new();
        for (index, field) in file.fields.iter().enumerate() {
            check_name(&field.name)?;
            if BUILT_IN_FIELDS.contains(&field.name.as_str()) {
                return Err(ModelError::Schema(format!(
                    "field `{}` is built in and cannot be declared",
                    field.name
                )));
            }
            if by_name.insert(field.name.clone(), index).is_some() {
                return Err(ModelError::Schema(format!(
                    "field `{}` is declared twice",
                    field.name
                )));
            }
            if (field.kind == FieldType::Enum) == field.values.is_empty() {
                return Err(ModelError::Schema(format!(
                    "field `{}`: `values` is required for type enum and allowed for no other",
                    field.name
                )));
            }
            // Purposes are enforced once a schema declares any: older
            // schemas, made before purposes were declared, keep working.
            if !purposes.is_empty() {
                if field.purposes.is_empty() {
                    return Err(ModelError::Schema(format!(
                        "field `{}` serves no purpose: list at least one in `purposes`",
                        field.name
                    )));
                }
                if let Some(unknown) = field
                    .purposes
                    .iter()
                    .find(|p| !purposes.contains_key(p.as_str()))
                {
                    return Err(ModelError::Schema(format!(
                        "field `{}`: purpose `{unknown}` is not declared; add a [[purpose]] named `{unknown}`",
                        field.name
                    )));
                }
                let necessary = field
                    .purposes
                    .iter()
                    .any(|p| purposes.get(p.as_str()) != Some(&Basis::Consent));
                if field.required && !necessary {
                    return Err(ModelError::Schema(format!(
                        "field `{}` is required, so it needs a purpose whose basis is not consent: a withdrawal would leave no basis to keep it",
                        field.name
                    )));
                }
            }
            if field.birth_date && field.kind != FieldType::Date {
                return Err(ModelError::Schema(format!(
                    "field `{}`: only a date field can be a birth date",
                    field.name
                )));
            }
            if field.birth_date && !file.purposes.iter().any(|p| p.guardian) {
                return Err(ModelError::Schema(format!(
                    "field `{}` is a birth date, so the schema needs a [[purpose]] with `guardian = true` for the consent of a child's guardian",
                    field.name
                )));
            }
            if field.kind == FieldType::List && field.sensitivity != Sensitivity::Public {
                return Err(ModelError::Schema(format!(
                    "field `{}`: list fields are indexed in the clear and must be public",
                    field.name
                )));
            }
        }
        Ok(Self {
            purposes: file.purposes,
            fields: file.fields,
            by_name,
            source: source.to_string(),
        })
    }

    /// The TOML this schema was read from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// All declared purposes in declaration order; empty for a schema made
    /// before purposes were declared, which the engine does not enforce.
    pub fn purposes(&self) -> &[PurposeDef] {
        &self.purposes
    }

    /// The declaration of purpose `name`, if any.
    pub fn purpose(&self, name: &str) -> Option<&PurposeDef> {
        self.purposes.iter().find(|p| p.name == name)
    }

    /// The purpose whose consent is a guardian's consent for a child, if
    /// the schema declares one.
    pub fn guardian_purpose(&self) -> Option<&PurposeDef> {
        self.purposes.iter().find(|p| p.guardian)
    }

    /// Whether the schema declares purposes, and so the engine enforces
    /// minimum necessary data and consent.
    pub fn enforces_purposes(&self) -> bool {
        !self.purposes.is_empty()
    }

    /// All declared fields in declaration order.
    pub fn fields(&self) -> &[FieldDef] {
        &self.fields
    }

    /// The declaration of `name`, if any.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.by_name.get(name).and_then(|&i| self.fields.get(i))
    }

    /// The declaration of `name`, or an error naming the unknown field.
    pub fn require(&self, name: &str) -> Result<&FieldDef, ModelError> {
        self.field(name).ok_or_else(|| ModelError::UnknownField {
            field: name.to_string(),
        })
    }

    /// Validates `raw` for field `name` and returns its normalized form.
    pub fn normalize(&self, name: &str, raw: &str) -> Result<String, ModelError> {
        let def = self.require(name)?;
        if raw.len() > def.max_len() {
            return Err(ModelError::TooLong {
                field: name.to_string(),
                len: raw.len(),
                max: def.max_len(),
            });
        }
        let invalid = |reason: String| ModelError::Invalid {
            field: name.to_string(),
            reason,
        };
        let raw = raw.trim();
        if raw.is_empty() {
            // Empty means unset; the caller decides whether that is allowed.
            return Ok(String::new());
        }
        if raw
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(invalid("control characters are not allowed".into()));
        }
        let normalized = match def.kind {
            FieldType::Text | FieldType::Address => Ok(raw.to_string()),
            FieldType::Phone => normalize_phone(raw).map_err(invalid),
            FieldType::Email => normalize_email(raw).map_err(invalid),
            FieldType::Date => chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                .map(|d| d.format("%Y-%m-%d").to_string())
                .map_err(|_| invalid("not a date written YYYY-MM-DD".into())),
            FieldType::Number => normalize_number(raw).map_err(invalid),
            FieldType::Enum => def
                .values
                .iter()
                .find(|v| v.eq_ignore_ascii_case(raw))
                .cloned()
                .ok_or_else(|| invalid(format!("not one of {}", def.values.join(", ")))),
            FieldType::IdNumber => normalize_id_number(raw).map_err(invalid),
            FieldType::List => normalize_list(raw).map_err(invalid),
        }?;
        // Normalizing may lengthen a value (lowercasing): the stored form
        // must pass this check again.
        if normalized.len() > def.max_len() {
            return Err(ModelError::TooLong {
                field: name.to_string(),
                len: normalized.len(),
                max: def.max_len(),
            });
        }
        Ok(normalized)
    }
}

fn check_name(name: &str) -> Result<(), ModelError> {
    let mut chars = name.chars();
    let ok = name.len() <= 48
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ModelError::Schema(format!(
            "field name `{name}` must be lowercase letters, digits and `_`, starting with a letter"
        )))
    }
}

/// Normalizes a phone number to E.164 (`+8613800138000`). Accepts Chinese
/// mobile numbers with or without `+86`/`0086`, and any `+` E.164 number;
/// spaces, dashes, dots and parentheses are ignored.
pub fn normalize_phone(raw: &str) -> Result<String, String> {
    let compact: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let (plus, digits) = match compact.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, compact.as_str()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a phone number".into());
    }
    let national = if plus {
        digits.strip_prefix("86")
    } else if let Some(rest) = digits.strip_prefix("0086") {
        Some(rest)
    } else if digits.len() == 13 {
        digits.strip_prefix("86")
    } else {
        Some(digits)
    };
    if let Some(national) = national
        && (!plus || national.starts_with('1'))
    {
        return if is_cn_mobile(national) {
            Ok(format!("+86{national}"))
        } else {
            Err("not a Chinese mobile number (11 digits starting 13-19); write other numbers in E.164 form, e.g. +447911123456".into())
        };
    }
    // Any other international number: + country code and subscriber number.
    if digits.len() < 8 || digits.len() > 15 || digits.starts_with('0') {
        return Err("not an E.164 number: + then 8 to 15 digits, not starting with 0".into());
    }
    Ok(format!("+{digits}"))
}

fn is_cn_mobile(national: &str) -> bool {
    let b = national.as_bytes();
    b.len() == 11 && b.first() == Some(&b'1') && matches!(b.get(1), Some(b'3'..=b'9'))
}

/// Validates and normalizes an email address (lowercased).
pub fn normalize_email(raw: &str) -> Result<String, String> {
    let bad = |why: &str| format!("not an email address: {why}");
    let lower = raw.to_lowercase();
    let (local, domain) = lower.split_once('@').ok_or_else(|| bad("no `@`"))?;
    if local.is_empty() || local.len() > 64 {
        return Err(bad("the part before `@` must be 1 to 64 characters"));
    }
    let local_ok = local
        .chars()
        .all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    if !local_ok {
        return Err(bad(
            "the part before `@` has characters that are not allowed",
        ));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if !domain_ok {
        return Err(bad("the domain must be like example.com"));
    }
    Ok(lower)
}

fn normalize_number(raw: &str) -> Result<String, String> {
    match raw.parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(raw.to_string()),
        _ => Err("not a number".into()),
    }
}

/// Normalizes an identity document number. An 18-character PRC resident ID
/// (GB 11643) must carry a valid check digit; other documents are 5 to 32
/// letters and digits.
pub fn normalize_id_number(raw: &str) -> Result<String, String> {
    let upper: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_uppercase();
    if !upper.chars().all(|c| c.is_ascii_alphanumeric()) || !(5..=32).contains(&upper.len()) {
        return Err("not an ID number: 5 to 32 letters and digits".into());
    }
    let bytes = upper.as_bytes();
    let looks_prc = bytes.len() == 18
        && bytes.iter().take(17).all(u8::is_ascii_digit)
        && bytes
            .get(17)
            .is_some_and(|b| b.is_ascii_digit() || *b == b'X');
    if looks_prc {
        const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
        const CHECK: &[u8; 11] = b"10X98765432";
        let sum: u32 = bytes
            .iter()
            .zip(WEIGHTS)
            .map(|(b, w)| u32::from(b - b'0') * w)
            .sum();
        let expected = CHECK.get((sum % 11) as usize).copied();
        if expected != bytes.get(17).copied() {
            return Err("not a valid resident ID: its check digit is wrong".into());
        }
    }
    Ok(upper)
}

fn normalize_list(raw: &str) -> Result<String, String> {
    let mut items: Vec<String> = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        // Measured after lowercasing, which can lengthen a string (`Ⱥ`, 2
        // bytes, becomes `ⱥ`, 3): the stored item must pass this check again.
        let item = item.to_lowercase();
        if item.len() > 64 {
            return Err("a list item is longer than 64 bytes".into());
        }
        if !items.contains(&item) {
            items.push(item);
        }
    }
    Ok(items.join(","))
}

#[cfg(test)]
mod tests;
