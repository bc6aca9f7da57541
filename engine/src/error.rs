//! The engine's error type, gathering each module's own.

/// Every error the engine returns. Each says what was refused and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
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
    /// The acting principal may not do this.

    #[error("access denied: {0}")]
    Denied(String),
    /// The thing asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The engine was configured wrongly.
    #[error("invalid configuration: {0}")]
    Config(String),
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
