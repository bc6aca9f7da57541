//! The engine's error type, gathering each module's own, and the kinds of
//! refusal a host can match.

/// Every error the engine returns. Each says what was refused and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operation was refused; [`Denied`] says which rule refused it.
    #[error("access denied: {0}")]
    Denied(Denied),
    /// The thing asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// Keys and ciphertexts.
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    /// Storage.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Records and schema.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// The audit chain.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// Principals.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// Access policies.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// Plugins.
    #[error(transparent)]
    Plugin(#[from] crate::plugin::PluginError),
    /// Consent, minimum necessary data and retention.
    #[error(transparent)]
    Privacy(#[from] crate::privacy::PrivacyError),
    /// The engine was configured wrongly.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Why an operation was refused: one kind per rule, so a host can match
/// the reason (and show the message, which says what to do). Every
/// refusal is audited with its message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// The access policy refused, for the reason its rule gave (for a
    /// script that failed, what failed).
    #[error("{reason}")]
    Policy {
        /// The policy's reason.
        reason: String,
    },
    /// A rule of the engine that no policy changes reserves this for some
    /// principals (admins; admins and data stewards; oneself or an admin).
    #[error("principal `{principal}` may not {what}: only {who} may")]
    NotPermitted {
        /// The acting principal.
        principal: String,
        /// What it tried, e.g. `install plugins`.
        what: String,
        /// Who may, e.g. `admins`.
        who: String,
    },
    /// No such principal exists.
    #[error("unknown principal `{0}`")]
    UnknownPrincipal(String),
    /// The principal was deactivated: it can do nothing.
    #[error("principal `{0}` is deactivated")]
    Deactivated(String),
    /// The account is locked after failed logins until an admin unlocks it.
    #[error("`{0}` is locked after failed logins; an admin must unlock it first")]
    Locked(String),
    /// The session lacks the second factor a role of its principal requires.
    #[error("role `{}` requires a second factor: log in again with a code", roles.join("`, `"))]
    NeedsSecondFactor {
        /// The roles that require it.
        roles: Vec<String>,
    },
    /// A login needs a second-factor code and none was given.
    #[error("a second factor is required: give a TOTP or recovery code")]
    SecondFactorMissing,
    /// A role requires a second factor and the principal has none enrolled.
    #[error(
        "role `{}` requires a second factor and `{principal}` has none: an admin must enroll one",
        roles.join("`, `")
    )]
    SecondFactorNotEnrolled {
        /// The principal.
        principal: String,
        /// The roles that require it.
        roles: Vec<String>,
    },
    /// The session token is unknown or was revoked.
    #[error("invalid or revoked session token; log in again")]
    InvalidSession,
    /// The session outlived its idle or absolute lifetime.
    #[error("the session has expired; log in again")]
    SessionExpired,
    /// A login failed. Deliberately vague: it never says which part was
    /// wrong, nor whether the account exists.
    #[error("login failed: wrong name, password or code, or the account is locked or deactivated")]
    LoginFailed,
    /// Too many failed attempts: wait before trying again.
    #[error("{what} refused: too many failed attempts; retry in {retry_after} s")]
    Throttled {
        /// What was refused (`login`, `password change`).
        what: String,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// A legal hold keeps the customer from being removed or notified.
    #[error("customer {0} is under legal hold: release the hold first")]
    LegalHold(u64),
    /// The plugin is quarantined or disabled and is not called.
    #[error("plugin `{name}` is {status}: an administrator must enable it")]
    PluginNotEnabled {
        /// The plugin.
        name: String,
        /// `disabled` or `quarantined (...)`.
        status: String,
    },
    /// The plugin was not granted the hook it was called through.
    #[error("plugin `{name}` was not granted the `{hook}` hook")]
    HookNotGranted {
        /// The plugin.
        name: String,
        /// The hook.
        hook: String,
    },
    /// The guard refused: the request would exceed a budget of the actor
    /// (what its policy's `limits` declares). Refused whole, before
    /// anything was decrypted; an alert was raised.
    #[error("`{actor}` is over a budget: {breach}; {next}")]
    Budget {
        /// The acting principal.
        actor: String,
        /// Which budget, what it allows, what was used and asked.
        breach: crate::guard::Breach,
        /// What the actor can do.
        next: String,
    },
    /// A step-up past a budget was refused: the second-factor code was
    /// wrong or already used. Counts as a failed login.
    #[error("the second-factor code for the step-up was wrong or already used; nothing was shown")]
    StepUpFailed,
    /// The policy's `limits` failed, so the guard cannot tell what the
    /// actor may be shown: refused (fail closed).
    #[error("the policy's limits for `{actor}` failed ({reason}); nothing was shown")]
    LimitsFailed {
        /// The acting principal.
        actor: String,
        /// What failed.
        reason: String,
    },
    /// Another rule of the engine about the thing acted on (the last
    /// active admin, a deactivated owner, a wrong current password...).
    #[error("{0}")]
    Rule(String),
}

impl From<Denied> for Error {
    fn from(denied: Denied) -> Self {
        Error::Denied(denied)
    }
}

impl From<crate::audit::VerifyError> for Error {
    fn from(e: crate::audit::VerifyError) -> Self {
        match e {
            crate::audit::VerifyError::Chain(e) => e.into(),
            crate::audit::VerifyError::Store(e) => e.into(),
        }
    }
}

/// Shorthand for results with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
