//! The privacy lifecycle: consent, minimum necessary data and retention.
//!
//! `lifecycle` owns what a consent is, which fields a customer's consents
//! give a basis to store (PIPL art. 13, 29; GDPR art. 6, 9), and the
//! sandboxed `retention.rhai` that decides what happens to a customer as
//! time passes. It never touches storage or keys: the engine hands it
//! field names, consent keys and [`RetentionFacts`] and applies the answer.
//!
//! Invariants:
//! - A field is stored only if one of its purposes has a basis for that
//!   customer: a contract or legal obligation, or a granted consent. A
//!   sensitive field also needs a separate consent naming it, unless a
//!   legal obligation covers it.
//! - A retention script fault never removes anything: it keeps the customer
//!   and is reported.

mod retention;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use retention::{DEFAULT_RETENTION, RetentionAction, RetentionFacts, RetentionPolicy, Verdict};

use crate::model::{Basis, ConsentChange, Schema, Sensitivity};

/// Refusals of the privacy rules: each names the field or purpose at fault
/// and what would make it acceptable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrivacyError {
    /// A field none of whose purposes has a basis for this customer.
    #[error(
        "field `{field}` cannot be stored: it serves only {purposes}, and the customer has not consented to any of them; record the customer's consent to one first"
    )]
    NoBasis {
        /// The field.
        field: String,
        /// Its purposes, listed for the message.
        purposes: String,
    },
    /// A sensitive field without the separate consent it needs.
    #[error(
        "field `{field}` is sensitive and needs the customer's separate consent (PIPL art. 29): record consent to {purposes} naming field `{field}`, e.g. `{example}({field})`"
    )]
    NoSeparateConsent {
        /// The field.
        field: String,
        /// Purposes that could cover it.
        purposes: String,
        /// One of them, for the example.
        example: String,
    },
    /// A consent that names an undeclared purpose or a field it cannot cover.
    #[error("invalid consent: {0}")]
    Consent(String),
    /// The retention policy does not compile or is malformed.
    #[error("retention policy: {0}")]
    Retention(String),
    /// A child's data without a guardian's consent.
    #[error(
        "customer is under 14 by field `{field}`: a child's data is stored only with a parent's or guardian's consent (PIPL art. 31); record consent to `{purpose}` first"
    )]
    NoGuardianConsent {
        /// The birth-date field.
        field: String,
        /// The guardian purpose.
        purpose: String,
    },
}

/// Checks a consent change's purpose and fields against `schema`.
pub(crate) fn check_consent(change: &ConsentChange, schema: &Schema) -> Result<(), PrivacyError> {
    let bad = |why: String| Err(PrivacyError::Consent(why));
    let Some(purpose) = schema.purpose(&change.purpose) else {
        let declared: Vec<&str> = schema.purposes().iter().map(|p| p.name.as_str()).collect();
        return bad(format!(
            "purpose `{}` is not declared in the schema; declared: {}",
            change.purpose.escape_debug(),
            if declared.is_empty() {
                "none".to_string()
            } else {
                declared.join(", ")
            }
        ));
    };
    for field in &change.fields {
        let Some(def) = schema.field(field) else {
            return bad(format!(
                "field `{}` is not in the schema",
                field.escape_debug()
            ));
        };
        if def.sensitivity != Sensitivity::Sensitive {
            return bad(format!(
                "field `{field}` is not sensitive: consent to its purposes covers it"
            ));
        }
        if !def.purposes.contains(&purpose.name) {
            return bad(format!(
                "field `{field}` is not collected for `{}`; its purposes are {}",
                purpose.name,
                def.purposes.join(", ")
            ));
        }
    }
    if change.granted && change.notice_version.trim().is_empty() {
        return bad(format!(
            "consent to `{}` without the version of the privacy notice the customer was shown",
            change.purpose
        ));
    }
    if change.channel.trim().is_empty() || change.channel.len() > 64 {
        return bad("the channel must be 1 to 64 bytes (web, app, paper, phone...)".into());
    }
    if change.notice_version.len() > 64 {
        return bad("the notice version must be at most 64 bytes".into());
    }
    Ok(())
}

/// The key under which a consent is kept: the purpose, or
/// `purpose:field` for a separate consent to a sensitive field.
pub(crate) fn consent_key(purpose: &str, field: Option<&str>) -> String {
    match field {
        Some(field) => format!("{purpose}:{field}"),
        None => purpose.to_string(),
    }
}

/// One entry of a customer's consent ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConsentRecord {
    /// The purpose.
    pub purpose: String,
    /// The sensitive field a separate consent covers, if it is one.
    pub field: Option<String>,
    /// Given or withdrawn.
    pub granted: bool,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// How it was expressed.
    pub channel: String,
    /// The privacy notice shown (empty for a withdrawal).
    pub notice_version: String,
    /// Who recorded it.
    pub by: String,
}

/// Checks that every field in `fields` has a basis for a customer whose
/// granted consents are answered by `granted` (keys from [`consent_key`]).
/// Purposes in `retired` give no basis any more.
pub(crate) fn check_basis<'a>(
    schema: &Schema,
    retired: &BTreeSet<String>,
    fields: impl IntoIterator<Item = &'a str>,
    granted: &dyn Fn(&str) -> bool,
) -> Result<(), PrivacyError> {
    if !schema.enforces_purposes() {
        return Ok(());
    }
    for field in fields {
        if let Some(error) = missing_basis(schema, retired, field, granted) {
            return Err(error);
        }
    }
    Ok(())
}

/// Why `field` may not be held for this customer, if it may not.
pub(crate) fn missing_basis(
    schema: &Schema,
    retired: &BTreeSet<String>,
    field: &str,
    granted: &dyn Fn(&str) -> bool,
) -> Option<PrivacyError> {
    let def = schema.field(field)?;
    let basis = |p: &str| {
        schema
            .purpose(p)
            .filter(|_| !retired.contains(p))
            .map(|d| d.basis)
    };
    let list = || {
        let named: Vec<String> = def
            .purposes
            .iter()
            .map(|p| match retired.contains(p) {
                true => format!("{p} (retired)"),
                false => p.clone(),
            })
            .collect();
        named.join(", ")
    };
    if def.sensitivity == Sensitivity::Sensitive {
        let covered = def.purposes.iter().any(|p| match basis(p) {
            Some(Basis::LegalObligation) => true,
            Some(_) => granted(p) && granted(&consent_key(p, Some(field))),
            // Undeclared or retired: no basis.
            None => false,
        });
        return (!covered).then(|| PrivacyError::NoSeparateConsent {
            field: field.to_string(),
            purposes: list(),
            example: def.purposes.first().cloned().unwrap_or_default(),
        });
    }
    let covered = def.purposes.iter().any(|p| match basis(p) {
        Some(Basis::Contract | Basis::LegalObligation) => true,
        Some(Basis::Consent) => granted(p),
        None => false,
    });
    (!covered).then(|| PrivacyError::NoBasis {
        field: field.to_string(),
        purposes: list(),
    })
}

/// Age below which a person's data needs a guardian's consent (PIPL art. 31).
pub const CHILD_AGE: u32 = 14;

/// Checks that a birth date among `values` (field → normalized value) does
/// not make the customer a child without a guardian's consent, on `today`.
pub(crate) fn check_minor<'a>(
    schema: &Schema,
    values: impl IntoIterator<Item = (&'a str, &'a str)>,
    granted: &dyn Fn(&str) -> bool,
    today: chrono::NaiveDate,
) -> Result<(), PrivacyError> {
    let Some(guardian) = schema.guardian_purpose() else {
        return Ok(());
    };
    for (field, value) in values {
        if !schema.field(field).is_some_and(|d| d.birth_date) {
            continue;
        }
        let Ok(born) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") else {
            continue;
        };
        let child = today.years_since(born).is_none_or(|age| age < CHILD_AGE);
        if child && !granted(&guardian.name) {
            return Err(PrivacyError::NoGuardianConsent {
                field: field.to_string(),
                purpose: guardian.name.clone(),
            });
        }
    }
    Ok(())
}

/// Where a customer is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
#[non_exhaustive]
pub enum LifecycleState {
    /// In normal use.
    Active,
    /// No recent interaction; only data stewards may access it.
    Dormant,
    /// Told that its data will be removed; waiting out the notice period.
    Notified {
        /// When the notice was sent.
        at: DateTime<Utc>,
    },
}

/// The coarse region of an address, kept when a customer is anonymized: the
/// province or city, never the street. `Chaoyang District, Beijing` →
/// `Beijing`; `北京市朝阳区人民路1号` → `北京市`. `None` when no region
/// can be told apart from the rest.
pub(crate) fn coarse_region(address: &str) -> Option<String> {
    let address = address.trim();
    if address.contains(',') {
        let last = address.rsplit(',').next()?.trim();
        // A trailing country or postcode is not enough on its own.
        return (!last.is_empty() && !last.chars().any(|c| c.is_ascii_digit()))
            .then(|| last.to_string());
    }
    // Only a leading administrative name: a few characters and a marker,
    // with nothing of a street, a number or a shop (超市, 市场) in it.
    const STREET: &[char] = &['路', '街', '号', '道', '巷', '村', '楼', '室', '超', '场'];
    for marker in ["自治区", "省", "市"] {
        if let Some(end) = address.find(marker) {
            let region = address.get(..end + marker.len())?;
            let name = address.get(..end)?;
            let plausible = (2..=8).contains(&name.chars().count())
                && !region
                    .chars()
                    .any(|c| c.is_ascii_digit() || STREET.contains(&c))
                && !address.get(end + marker.len()..)?.starts_with('场');
            if plausible {
                return Some(region.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_region_keeps_only_the_region() {
        assert_eq!(
            coarse_region("Chaoyang District, Beijing").as_deref(),
            Some("Beijing")
        );
        assert_eq!(
            coarse_region("北京市朝阳区人民路1号").as_deref(),
            Some("北京市")
        );
        assert_eq!(
            coarse_region("广东省深圳市南山区").as_deref(),
            Some("广东省")
        );
        assert_eq!(coarse_region("12 Main Street"), None);
        assert_eq!(coarse_region("文三路1号超市"), None);
        assert_eq!(coarse_region("农贸市场东门"), None);
        assert_eq!(coarse_region("1 Road, 100020"), None);
    }

    #[test]
    fn sensitive_fields_need_separate_consent() {
        let schema = Schema::default();
        let retired = BTreeSet::new();
        let none = |_: &str| false;
        assert!(
            missing_basis(&schema, &retired, "name", &none).is_none(),
            "contract basis"
        );
        let err = missing_basis(&schema, &retired, "birthday", &none).unwrap();
        assert!(err.to_string().contains("`birthday`"), "{err}");
        assert!(err.to_string().contains("marketing"), "{err}");
        let purpose_only = |k: &str| k == "identity_verification";
        let err = missing_basis(&schema, &retired, "id_number", &purpose_only).unwrap();
        assert!(
            matches!(err, PrivacyError::NoSeparateConsent { .. }),
            "{err}"
        );
        let both = |k: &str| k == "identity_verification" || k == "identity_verification:id_number";
        assert!(missing_basis(&schema, &retired, "id_number", &both).is_none());
    }
}

#[cfg(test)]
mod retired_tests {
    use super::*;

    #[test]
    fn a_retired_purpose_gives_no_basis() {
        let schema = Schema::default();
        let marketing = |k: &str| k == "marketing";
        let none = BTreeSet::new();
        assert!(missing_basis(&schema, &none, "birthday", &marketing).is_none());
        let retired: BTreeSet<String> = ["marketing".to_string()].into();
        let err = missing_basis(&schema, &retired, "birthday", &marketing).unwrap();
        assert!(err.to_string().contains("marketing (retired)"), "{err}");
        // A field with another live purpose keeps its basis.
        assert!(missing_basis(&schema, &retired, "email", &marketing).is_none());
        // A sensitive field's separate consent does not outlive its purpose.
        let both = |k: &str| k == "identity_verification" || k == "identity_verification:id_number";
        assert!(missing_basis(&schema, &none, "id_number", &both).is_none());
        let retired: BTreeSet<String> = ["identity_verification".to_string()].into();
        assert!(missing_basis(&schema, &retired, "id_number", &both).is_some());
    }
}
