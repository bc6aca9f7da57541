//! Consents as customers express them: given or withdrawn, for a purpose,
//! through a channel, after a version of the privacy notice. Whether a
//! consent is acceptable, and what it gives a basis to store, is decided by
//! `privacy`.

use std::collections::BTreeSet;

use super::ModelError;

/// A consent given or withdrawn, as the customer expressed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentChange {
    /// The purpose, e.g. `marketing`.
    pub purpose: String,
    /// Sensitive fields this consent covers separately (PIPL art. 29).
    pub fields: BTreeSet<String>,
    /// Given (`true`) or withdrawn.
    pub granted: bool,
    /// How it was expressed: `web`, `app`, `paper`, `phone`, `import`...
    pub channel: String,
    /// The version of the privacy notice the customer was shown.
    pub notice_version: String,
}

impl ConsentChange {
    /// Consent to `purpose`, given through `channel` after seeing
    /// privacy notice `notice_version`.
    pub fn grant(
        purpose: impl Into<String>,
        channel: impl Into<String>,
        notice_version: impl Into<String>,
    ) -> Self {
        Self {
            purpose: purpose.into(),
            fields: BTreeSet::new(),
            granted: true,
            channel: channel.into(),
            notice_version: notice_version.into(),
        }
    }

    /// Withdrawal of consent to `purpose` (and of every separate consent
    /// under it), expressed through `channel`.
    pub fn withdraw(purpose: impl Into<String>, channel: impl Into<String>) -> Self {
        Self {
            purpose: purpose.into(),
            fields: BTreeSet::new(),
            granted: false,
            channel: channel.into(),
            notice_version: String::new(),
        }
    }

    /// Also covers sensitive field `name` separately.
    pub fn field(mut self, name: impl Into<String>) -> Self {
        self.fields.insert(name.into());
        self
    }

    /// Parses a list such as `marketing; identity_verification(id_number)`
    /// (separated by `;`, sensitive fields in parentheses) into grants.
    pub fn parse_list(
        text: &str,
        channel: &str,
        notice_version: &str,
    ) -> Result<Vec<Self>, ModelError> {
        let mut out = Vec::new();
        for item in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (purpose, fields) = match item.split_once('(') {
                Some((purpose, rest)) => {
                    let inner = rest
                        .strip_suffix(')')
                        .ok_or_else(|| ModelError::Attribute {
                            what: "consent".into(),
                            reason: "a `(` without its `)`".into(),
                        })?;
                    (purpose.trim(), inner)
                }
                None => (item, ""),
            };
            let mut change = Self::grant(purpose, channel, notice_version);
            for field in fields.split([',', ' ']).filter(|f| !f.is_empty()) {
                change = change.field(field);
            }
            out.push(change);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn consent_lists_parse() {
        let list =
            ConsentChange::parse_list("marketing; identity_verification(id_number)", "web", "v3")
                .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].purpose, "identity_verification");
        assert!(list[1].fields.contains("id_number"));
        assert!(ConsentChange::parse_list("x(id_number", "web", "v3").is_err());
        assert!(
            ConsentChange::parse_list("", "web", "v3")
                .unwrap()
                .is_empty()
        );
    }
}
