//! What is stored, whatever the backend: the records at rest and the
//! versioned envelope around each.
//!
//! Every value is `[envelope version][postcard bytes]`. postcard is compact
//! but not self-describing, so a change to any stored struct bumps
//! `ENVELOPE` and keeps a decoder for the old layout here: a record written
//! by version N still opens in version N+1.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::crypto::Sealed;
use crate::identity::PrincipalKind;
pub(crate) use crate::identity::PrincipalRecord as StoredPrincipal;

const ENVELOPE: u8 = 1;

/// Serializes a record into its envelope.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![ENVELOPE];
    let body = postcard::to_stdvec(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Opens an envelope.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    decode_ref(bytes, what)
}

/// A personal or sensitive field: its ciphertext and, for fields shown
/// masked, the masked rendering (so masked reads need no decryption of the
/// value), sealed under the customer's mask key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SealedField {
    pub(crate) sealed: Sealed,
    pub(crate) masked: StoredMask,
}

/// A field's stored masked rendering.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum StoredMask {
    /// None kept (sensitive fields are masked from the value when shown).
    None,
    /// In the clear, as customer envelope 1 kept it: sealed on open.
    Clear(String),
    /// Sealed under the customer's mask key.
    Sealed(Sealed),
}

/// Customer records' own envelope. 1: masked renderings in the clear.
/// 2: masked renderings sealed ([`StoredMask`]).
const CUSTOMER_ENVELOPE: u8 = 2;

/// Serializes a customer into its envelope.
pub(crate) fn encode_customer(customer: &StoredCustomer) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![CUSTOMER_ENVELOPE];
    let body = postcard::to_stdvec(customer).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Opens a customer's envelope, of either version.
pub(crate) fn decode_customer(bytes: &[u8]) -> Result<StoredCustomer, StoreError> {
    let corrupt = |e: postcard::Error| StoreError::Corrupt(format!("customer: {e}"));
    match bytes.split_first() {
        Some((&CUSTOMER_ENVELOPE, body)) => postcard::from_bytes(body).map_err(corrupt),
        Some((&1, body)) => {
            let old: CustomerV1 = postcard::from_bytes(body).map_err(corrupt)?;
            let sealed = (old.sealed.into_iter())
                .map(|(name, f)| {
                    let masked = match f.masked.is_empty() {
                        true => StoredMask::None,
                        false => StoredMask::Clear(f.masked),
                    };
                    let field = SealedField {
                        sealed: f.sealed,
                        masked,
                    };
                    (name, field)
                })
                .collect();
            Ok(StoredCustomer {
                id: old.id,
                owner: old.owner,
                status: old.status,
                created_at: old.created_at,
                updated_at: old.updated_at,
                last_interaction_at: old.last_interaction_at,
                key_version: old.key_version,
                public: old.public,
                sealed,
                blind: old.blind,
            })
        }
        Some((&v, _)) => Err(StoreError::Version {
            found: u32::from(v),
            supported: u32::from(CUSTOMER_ENVELOPE),
        }),
        None => Err(StoreError::Corrupt("customer: empty".into())),
    }
}

/// Borrows a customer's envelope, of either version.
pub(crate) fn decode_customer_ref(bytes: &[u8]) -> Result<CustomerRef<'_>, StoreError> {
    let corrupt = |e: postcard::Error| StoreError::Corrupt(format!("customer: {e}"));
    match bytes.split_first() {
        Some((&CUSTOMER_ENVELOPE, body)) => postcard::from_bytes(body).map_err(corrupt),
        Some((&1, body)) => {
            let old: CustomerRefV1<'_> = postcard::from_bytes(body).map_err(corrupt)?;
            let sealed = (old.sealed.into_iter())
                .map(|(name, f)| {
                    let masked = match f.masked.is_empty() {
                        true => MaskRef::None,
                        false => MaskRef::Clear(f.masked),
                    };
                    let field = SealedFieldRef {
                        nonce: f.nonce,
                        ciphertext: f.ciphertext,
                        masked,
                    };
                    (name, field)
                })
                .collect();
            Ok(CustomerRef {
                id: old.id,
                owner: old.owner,
                status: old.status,
                created_at: old.created_at,
                updated_at: old.updated_at,
                last_interaction_at: old.last_interaction_at,
                key_version: old.key_version,
                public: old.public,
                sealed,
                blind: old.blind,
            })
        }
        Some((&v, _)) => Err(StoreError::Version {
            found: u32::from(v),
            supported: u32::from(CUSTOMER_ENVELOPE),
        }),
        None => Err(StoreError::Corrupt("customer: empty".into())),
    }
}

/// A customer as envelope 1 stored it.
#[derive(Deserialize)]
struct CustomerV1 {
    id: u64,
    owner: String,
    status: String,
    created_at: i64,
    updated_at: i64,
    last_interaction_at: Option<i64>,
    key_version: u32,
    public: BTreeMap<String, String>,
    sealed: BTreeMap<String, SealedFieldV1>,
    blind: BTreeMap<String, [u8; 16]>,
}

#[derive(Deserialize)]
struct SealedFieldV1 {
    sealed: Sealed,
    masked: String,
}

/// [`CustomerRef`] as envelope 1 stored it.
#[derive(Deserialize)]
struct CustomerRefV1<'a> {
    id: u64,
    owner: &'a str,
    status: &'a str,
    created_at: i64,
    updated_at: i64,
    last_interaction_at: Option<i64>,
    key_version: u32,
    #[serde(borrow)]
    public: Vec<(&'a str, &'a str)>,
    #[serde(borrow)]
    sealed: Vec<(&'a str, SealedFieldRefV1<'a>)>,
    #[serde(borrow)]
    blind: Vec<(&'a str, [u8; 16])>,
}

#[derive(Deserialize)]
struct SealedFieldRefV1<'a> {
    nonce: [u8; 24],
    ciphertext: &'a [u8],
    masked: &'a str,
}

/// A customer at rest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredCustomer {
    pub(crate) id: u64,
    pub(crate) owner: String,
    pub(crate) status: String,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) last_interaction_at: Option<i64>,
    pub(crate) key_version: u32,
    /// Public fields in the clear.
    pub(crate) public: BTreeMap<String, String>,
    /// Personal and sensitive fields, sealed.
    pub(crate) sealed: BTreeMap<String, SealedField>,
    /// Field → blind index this record is filed under, so an index entry can
    /// be removed without decrypting.
    pub(crate) blind: BTreeMap<String, [u8; 16]>,
}

/// A borrowed view of a stored [`StoredCustomer`] for the read path: it
/// decodes the same bytes without copying a string. INVARIANT: its fields
/// mirror `StoredCustomer` field for field, in order (postcard encodes a map
/// and a sequence of pairs alike).
#[derive(Debug, Deserialize)]
pub(crate) struct CustomerRef<'a> {
    pub(crate) id: u64,
    pub(crate) owner: &'a str,
    pub(crate) status: &'a str,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) last_interaction_at: Option<i64>,
    #[expect(
        dead_code,
        reason = "decoded to keep the layout; key rotation will read it"
    )]
    pub(crate) key_version: u32,
    #[serde(borrow)]
    pub(crate) public: Vec<(&'a str, &'a str)>,
    #[serde(borrow)]
    pub(crate) sealed: Vec<(&'a str, SealedFieldRef<'a>)>,
    /// Field → blind index entry, to confirm an index hit.
    #[serde(borrow)]
    pub(crate) blind: Vec<(&'a str, [u8; 16])>,
}

/// Borrowed [`SealedField`].
#[derive(Debug, Deserialize)]
pub(crate) struct SealedFieldRef<'a> {
    pub(crate) nonce: [u8; 24],
    pub(crate) ciphertext: &'a [u8],
    #[serde(borrow)]
    pub(crate) masked: MaskRef<'a>,
}

/// Borrowed [`StoredMask`].
#[derive(Debug, Deserialize)]
pub(crate) enum MaskRef<'a> {
    None,
    Clear(&'a str),
    Sealed(SealedRef<'a>),
}

/// Borrowed [`Sealed`].
#[derive(Debug, Deserialize)]
pub(crate) struct SealedRef<'a> {
    pub(crate) nonce: [u8; 24],
    pub(crate) ciphertext: &'a [u8],
}

/// Opens an envelope without copying.
pub(crate) fn decode_ref<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    what: &str,
) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&ENVELOPE, body)) => {
            postcard::from_bytes(body).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
        }
        Some((&v, _)) => Err(StoreError::Version {
            found: u32::from(v),
            supported: u32::from(ENVELOPE),
        }),
        None => Err(StoreError::Corrupt(format!("{what}: empty"))),
    }
}

/// An interaction at rest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredInteraction {
    pub(crate) id: u64,
    pub(crate) customer: u64,
    pub(crate) channel: crate::model::Channel,
    pub(crate) direction: crate::model::Direction,
    pub(crate) at: i64,
    pub(crate) logged_by: String,
    pub(crate) summary: Sealed,
    pub(crate) body: Option<Sealed>,
    pub(crate) amount_minor: Option<i64>,
    pub(crate) items: Vec<crate::model::OrderItem>,
}

/// A follow-up at rest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredFollowUp {
    pub(crate) id: u64,
    pub(crate) customer: u64,
    pub(crate) due: i64,
    pub(crate) assignee: String,
    pub(crate) note: Sealed,
    pub(crate) done: bool,
    pub(crate) created_by: String,
}

/// A principal as envelope 1 stored it, before attributes.
#[derive(Deserialize)]
struct PrincipalV1 {
    name: String,
    kind: PrincipalKind,
    roles: Vec<String>,
    active: bool,
    created_at: i64,
}

const PRINCIPAL_ENVELOPE: u8 = 2;

/// Serializes a principal (envelope 2).
pub(crate) fn encode_principal(p: &StoredPrincipal) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![PRINCIPAL_ENVELOPE];
    let body = postcard::to_stdvec(p).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Opens a principal written by this version or the one before.
pub(crate) fn decode_principal(bytes: &[u8]) -> Result<StoredPrincipal, StoreError> {
    let corrupt = |e: postcard::Error| StoreError::Corrupt(format!("principal: {e}"));
    match bytes.split_first() {
        Some((&PRINCIPAL_ENVELOPE, body)) => postcard::from_bytes(body).map_err(corrupt),
        Some((&1, body)) => {
            let old: PrincipalV1 = postcard::from_bytes(body).map_err(corrupt)?;
            Ok(StoredPrincipal {
                name: old.name,
                kind: old.kind,
                roles: old.roles,
                active: old.active,
                created_at: old.created_at,
                attributes: BTreeMap::new(),
            })
        }
        Some((&v, _)) => Err(StoreError::Version {
            found: u32::from(v),
            supported: u32::from(PRINCIPAL_ENVELOPE),
        }),
        None => Err(StoreError::Corrupt("principal: empty".into())),
    }
}

/// How a principal proves who it is. Kept apart from [`StoredPrincipal`]
/// so the hot path (resolving an actor) never decodes a hash.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredCredentials {
    /// Argon2id PHC string.
    pub(crate) password: Option<String>,
    pub(crate) password_set_at: Option<i64>,
    pub(crate) totp: Option<StoredTotp>,
    /// Keyed hashes of the unused recovery codes.
    pub(crate) recovery: Vec<[u8; 32]>,
    /// Consecutive failed logins.
    pub(crate) failures: u32,
    pub(crate) last_failure_at: Option<i64>,
    /// Locked after too many failures, until an admin unlocks it.
    pub(crate) locked: bool,
}

/// A TOTP enrolment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredTotp {
    /// The shared secret, sealed under the keyring's secrets key.
    pub(crate) secret: Sealed,
    /// Whether a code has proven the enrolment (only then is it required).
    pub(crate) confirmed: bool,
    /// The last time step accepted: a code is good once only.
    pub(crate) last_step: Option<u64>,
}

/// A login session, keyed by the keyed hash of its token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredSession {
    pub(crate) principal: String,
    pub(crate) created_at: i64,
    pub(crate) last_seen: i64,
    pub(crate) source: String,
    /// Whether the login passed a second factor.
    pub(crate) second_factor: bool,
}

/// Failed-login counter of an account name or a source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredThrottle {
    pub(crate) failures: u32,
    pub(crate) last_failure_at: i64,
}

/// What the guard counted for one actor in one minute: rows shown by
/// kind of access (in `guard::Access::ALL` order) and lookups that found
/// nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredGuardCounts {
    pub(crate) rows: [u64; 4],
    pub(crate) misses: u64,
}

/// An installed policy version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredPolicy {
    pub(crate) pack: Vec<u8>,
    pub(crate) installed_at: i64,
    pub(crate) installed_by: String,
}

/// A message in the outbox, queued by a plugin or by the engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredMessage {
    pub(crate) plugin: String,
    pub(crate) channel: String,
    pub(crate) customer: u64,
    pub(crate) template: String,
    pub(crate) params: StoredParams,
    pub(crate) marketing: bool,
    pub(crate) created_at: i64,
}

/// A message's template parameters: a plugin may put there what it was
/// shown (a name), so they are sealed under the customer's data key, and
/// go with it at erasure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum StoredParams {
    /// In the clear, as message envelope 1 kept them.
    Clear(Vec<(String, String)>),
    /// The postcard bytes of the list, sealed.
    Sealed(Sealed),
}

/// The envelope of an outbox message. 1: parameters in the clear. 2:
/// parameters sealed ([`StoredParams`]).
const MESSAGE_ENVELOPE: u8 = 2;

/// A message as envelope 1 stored it.
#[derive(Deserialize)]
struct MessageV1 {
    plugin: String,
    channel: String,
    customer: u64,
    template: String,
    params: Vec<(String, String)>,
    marketing: bool,
    created_at: i64,
}

/// Serializes a message into its envelope.
pub(crate) fn encode_message(m: &StoredMessage) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![MESSAGE_ENVELOPE];
    let body = postcard::to_stdvec(m).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Opens a message's envelope, of either version.
pub(crate) fn decode_message(bytes: &[u8]) -> Result<StoredMessage, StoreError> {
    let corrupt = |e: postcard::Error| StoreError::Corrupt(format!("message: {e}"));
    match bytes.split_first() {
        Some((&MESSAGE_ENVELOPE, body)) => postcard::from_bytes(body).map_err(corrupt),
        Some((&1, body)) => {
            let old: MessageV1 = postcard::from_bytes(body).map_err(corrupt)?;
            Ok(StoredMessage {
                plugin: old.plugin,
                channel: old.channel,
                customer: old.customer,
                template: old.template,
                params: StoredParams::Clear(old.params),
                marketing: old.marketing,
                created_at: old.created_at,
            })
        }
        Some((&v, _)) => Err(StoreError::Version {
            found: u32::from(v),
            supported: u32::from(MESSAGE_ENVELOPE),
        }),
        None => Err(StoreError::Corrupt("message: empty".into())),
    }
}

/// A consent flag for one purpose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredConsent {
    pub(crate) granted: bool,
    pub(crate) at: i64,
    pub(crate) by: String,
}

/// An alert raised by the engine, and what staff did about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredAlert {
    pub(crate) at: i64,
    /// The rule that raised it (`guard.budget`, `plugin.quarantined`...).
    pub(crate) kind: String,
    /// What it is about: a principal, a plugin, the data file.
    pub(crate) subject: String,
    pub(crate) message: String,
    pub(crate) severity: Severity,
    /// The principal whose actions raised it, if one did.
    pub(crate) actor: Option<String>,
    /// Counts and windows behind it, by name; never a value.
    pub(crate) evidence: Vec<(String, String)>,
    pub(crate) state: AlertState,
    /// Each acknowledgement and resolution, oldest first.
    pub(crate) handled: Vec<StoredHandling>,
}

/// One step staff took on an alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredHandling {
    pub(crate) at: i64,
    pub(crate) by: String,
    pub(crate) to: AlertState,
    pub(crate) note: String,
}

/// How urgent an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing (a budget passed with a step-up).
    Info,
    /// Someone should look (a request refused past a budget, a plugin
    /// quarantined).
    Warning,
    /// Something is broken or under attack (a policy's limits failing, the
    /// data file not rewritten after an erasure).
    Critical,
}

impl Severity {
    /// Its name: `info`, `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Where an alert stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Raised, nobody has taken it yet.
    Open,
    /// Someone is looking into it.
    Acknowledged,
    /// Closed, with a note saying what was found or done.
    Resolved,
}

impl AlertState {
    /// Its name: `open`, `acknowledged` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Resolved => "resolved",
        }
    }
}

/// The alerts' envelope: 1 held `at`, `kind`, `subject` and `message`
/// only; 2 adds severity, actor, evidence, state and handling.
const ALERT_ENVELOPE: u8 = 2;

/// An alert as envelope 1 held it.
#[derive(Deserialize)]
struct AlertV1 {
    at: i64,
    kind: String,
    subject: String,
    message: String,
}

/// Serializes an alert into its envelope.
pub(crate) fn encode_alert(a: &StoredAlert) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![ALERT_ENVELOPE];
    let body = postcard::to_stdvec(a).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Opens an alert's envelope, of either version. An alert of envelope 1
/// is open, with the severity its kind had.
pub(crate) fn decode_alert(bytes: &[u8]) -> Result<StoredAlert, StoreError> {
    let corrupt = |e: postcard::Error| StoreError::Corrupt(format!("alert: {e}"));
    match bytes.split_first() {
        Some((&ALERT_ENVELOPE, body)) => postcard::from_bytes(body).map_err(corrupt),
        Some((&1, body)) => {
            let old: AlertV1 = postcard::from_bytes(body).map_err(corrupt)?;
            let severity = match old.kind.as_str() {
                "storage.rewrite_failed" | "policy.limits_failed" => Severity::Critical,
                _ => Severity::Warning,
            };
            // Who the alert is about, so that they cannot close it.
            let actor = match old.kind.as_str() {
                "plugin.quarantined" => Some(format!("plugin:{}", old.subject)),
                kind if kind.starts_with("guard.") || kind == "policy.limits_failed" => {
                    Some(old.subject.clone())
                }
                _ => None,
            };
            Ok(StoredAlert {
                at: old.at,
                kind: old.kind,
                subject: old.subject,
                message: old.message,
                severity,
                actor,
                evidence: Vec::new(),
                state: AlertState::Open,
                handled: Vec::new(),
            })
        }
        Some((&v, _)) => Err(StoreError::Version {
            found: u32::from(v),
            supported: u32::from(ALERT_ENVELOPE),
        }),
        None => Err(StoreError::Corrupt("alert: empty".into())),
    }
}

/// Something that happened, for the plugins subscribed to it: only what
/// names it (its kind and ids), never a personal value. A plugin is
/// handed what it may see of it when it is delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Emitted {
    Created(u64),
    Updated(u64),
    Erased(u64),
    Logged {
        customer: u64,
        interaction: u64,
        channel: crate::model::Channel,
        at: i64,
    },
    FollowUpDue {
        customer: u64,
        follow_up: u64,
        due: i64,
    },
    /// The alert, by its id in the alerts table.
    Alert(u64),
}

impl Emitted {
    pub(crate) fn kind(&self) -> crate::plugin::EventKind {
        use crate::plugin::EventKind;
        match self {
            Emitted::Created(_) => EventKind::CustomerCreated,
            Emitted::Updated(_) => EventKind::CustomerUpdated,
            Emitted::Erased(_) => EventKind::CustomerErased,
            Emitted::Logged { .. } => EventKind::InteractionLogged,
            Emitted::FollowUpDue { .. } => EventKind::FollowUpDue,
            Emitted::Alert(_) => EventKind::AlertRaised,
        }
    }

    /// The customer the event is about, if any.
    pub(crate) fn customer(&self) -> Option<u64> {
        match self {
            Emitted::Created(id) | Emitted::Updated(id) => Some(*id),
            Emitted::Logged { customer, .. } | Emitted::FollowUpDue { customer, .. } => {
                Some(*customer)
            }
            Emitted::Erased(_) | Emitted::Alert(_) => None,
        }
    }
}

/// An event waiting in the queue for one plugin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredEvent {
    /// The plugin it is for.
    pub(crate) plugin: String,
    /// How many deliveries led to it: 0 for an event of an operation, 1
    /// for one caused by a plugin's reaction to an event, ...
    pub(crate) depth: u32,
    pub(crate) event: Emitted,
}

/// A line of a plugin's log: its text sealed (envelope 2), or in the
/// clear as versions before sealing wrote it (envelope 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredLogLine {
    pub(crate) at: i64,
    pub(crate) level: String,
    pub(crate) text: LogText,
}

/// The text of a stored log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LogText {
    /// Sealed under the key of plugin logs.
    Sealed(Sealed),
    /// Written in the clear by a version before sealing.
    Clear(String),
}

const LOG_ENVELOPE: u8 = 2;

#[derive(Serialize, Deserialize)]
struct SealedLogLine<'a> {
    at: i64,
    level: &'a str,
    text: Sealed,
}

#[derive(Deserialize)]
struct ClearLogLine {
    at: i64,
    level: String,
    text: String,
}

/// Serializes a sealed log line.
pub(crate) fn encode_log_line(at: i64, level: &str, text: Sealed) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![LOG_ENVELOPE];
    let line = SealedLogLine { at, level, text };
    let body = postcard::to_stdvec(&line).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Opens a log line's envelope, of either version.
pub(crate) fn decode_log_line(bytes: &[u8]) -> Result<StoredLogLine, StoreError> {
    let corrupt = |e: postcard::Error| StoreError::Corrupt(format!("log line: {e}"));
    match bytes.split_first() {
        Some((&LOG_ENVELOPE, body)) => {
            let line: SealedLogLine<'_> = postcard::from_bytes(body).map_err(corrupt)?;
            Ok(StoredLogLine {
                at: line.at,
                level: line.level.to_string(),
                text: LogText::Sealed(line.text),
            })
        }
        _ => {
            let line: ClearLogLine = decode(bytes, "log line")?;
            Ok(StoredLogLine {
                at: line.at,
                level: line.level,
                text: LogText::Clear(line.text),
            })
        }
    }
}

/// What a plugin uses, kept by the store as it writes: the bytes of its
/// state (unscoped and filed under customers, as stored) and the times of
/// its recent faults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredPluginCounters {
    pub(crate) state_bytes: u64,
    /// Microseconds since the epoch, oldest first.
    pub(crate) faults: Vec<i64>,
}

/// One consent ledger entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredConsentEntry {
    pub(crate) purpose: String,
    pub(crate) field: Option<String>,
    pub(crate) granted: bool,
    pub(crate) at: i64,
    pub(crate) channel: String,
    pub(crate) notice_version: String,
    pub(crate) by: String,
}

/// A legal hold: nothing removes the customer while it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredHold {
    pub(crate) reason: String,
    pub(crate) by: String,
    pub(crate) at: i64,
}

/// A retention notice sent to a customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredNotice {
    pub(crate) at: i64,
    pub(crate) reason: String,
    /// The notice queued in the outbox, if the customer had an address.
    pub(crate) message: Option<u64>,
}

/// The record a removal leaves: no personal data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredDeletion {
    pub(crate) at: i64,
    /// `anonymized` or `deleted`.
    pub(crate) kind: String,
    pub(crate) reason: String,
    pub(crate) by: String,
    /// The retention rule's reason, when a sweep removed it.
    pub(crate) rule: Option<String>,
}

/// What an anonymized customer leaves for statistics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredAggregate {
    pub(crate) first_purchase_year: Option<i32>,
    pub(crate) orders: u64,
    pub(crate) order_total_minor: i64,
    pub(crate) interactions: u64,
    pub(crate) region: Option<String>,
    pub(crate) customer_since_year: i32,
}

/// A retention sweep in progress: where to resume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredRun {
    /// The `now` the sweep runs at (µs).
    pub(crate) now: i64,
    /// Every customer up to this id is done.
    pub(crate) done_through: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_of_the_first_layout_still_opens() {
        let old = (
            "li".to_string(),
            PrincipalKind::User,
            vec!["sales".to_string()],
            true,
            5_i64,
        );
        let mut bytes = vec![1];
        bytes.extend(postcard::to_stdvec(&old).unwrap());
        let p = decode_principal(&bytes).unwrap();
        assert_eq!((p.name.as_str(), p.roles.len(), p.active), ("li", 1, true));
        assert!(p.attributes.is_empty());
        let again = decode_principal(&encode_principal(&p).unwrap()).unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn the_borrowed_view_reads_what_the_owned_record_wrote() {
        let record = StoredCustomer {
            id: 7,
            owner: "wang".into(),
            status: "active".into(),
            created_at: 1,
            updated_at: 2,
            last_interaction_at: Some(3),
            key_version: 1,
            public: BTreeMap::from([("company".into(), "Blue Harbor".into())]),
            sealed: BTreeMap::from([(
                "phone".into(),
                SealedField {
                    sealed: Sealed {
                        nonce: [9; 24],
                        ciphertext: vec![1, 2, 3],
                    },
                    masked: StoredMask::Sealed(Sealed {
                        nonce: [4; 24],
                        ciphertext: vec![7, 8],
                    }),
                },
            )]),
            blind: BTreeMap::from([("phone".into(), [5; 16])]),
        };
        let bytes = encode_customer(&record).unwrap();
        assert_eq!(decode_customer(&bytes).unwrap(), record);
        let view = decode_customer_ref(&bytes).unwrap();
        assert_eq!((view.id, view.owner, view.status), (7, "wang", "active"));
        assert_eq!((view.created_at, view.updated_at), (1, 2));
        assert_eq!(view.last_interaction_at, Some(3));
        assert_eq!(view.public, vec![("company", "Blue Harbor")]);
        let (name, sealed) = &view.sealed[0];
        assert_eq!(*name, "phone");
        assert_eq!(sealed.nonce, [9; 24]);
        assert_eq!(sealed.ciphertext, &[1, 2, 3]);
        assert!(
            matches!(&sealed.masked, MaskRef::Sealed(m) if m.nonce == [4; 24] && m.ciphertext == [7, 8]),
            "{:?}",
            sealed.masked
        );
        assert_eq!(view.blind, vec![("phone", [5; 16])]);
    }

    #[test]
    fn an_alert_of_envelope_1_opens_as_open_with_its_kinds_severity() {
        #[derive(Serialize)]
        struct V1<'a> {
            at: i64,
            kind: &'a str,
            subject: &'a str,
            message: &'a str,
        }
        for (kind, severity, actor) in [
            ("plugin.quarantined", Severity::Warning, Some("plugin:s")),
            ("storage.rewrite_failed", Severity::Critical, None),
            ("guard.budget", Severity::Warning, Some("s")),
        ] {
            let mut bytes = vec![1];
            bytes.extend(
                postcard::to_stdvec(&V1 {
                    at: 7,
                    kind,
                    subject: "s",
                    message: "m",
                })
                .unwrap(),
            );
            let alert = decode_alert(&bytes).unwrap();
            assert_eq!(
                (alert.at, alert.kind.as_str(), alert.severity),
                (7, kind, severity)
            );
            assert_eq!(alert.state, AlertState::Open);
            assert!(alert.evidence.is_empty() && alert.handled.is_empty());
            assert_eq!(alert.actor.as_deref(), actor);
            // Written back, it is envelope 2 and reads the same.
            assert_eq!(decode_alert(&encode_alert(&alert).unwrap()).unwrap(), alert);
        }
        assert!(decode_alert(&[3, 0]).is_err());
        assert!(decode_alert(&[]).is_err());
    }
}
