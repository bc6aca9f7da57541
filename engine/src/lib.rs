//! Custodian: an embeddable engine for customer-relationship data that
//! keeps personal data safe by default.
//!
//! Customer records, interactions and follow-ups live in one redb file.
//! Personal fields are sealed with XChaCha20-Poly1305 under a per-customer
//! key that exists only wrapped, in a separate key store. Every operation,
//! reads included, appends to a keyed hash chain written in the same
//! transaction. Each call names who acts and why (a [`Context`]), and gets
//! back only what that principal may see.
//!
//! ```
//! use custodian::{Context, Engine, MasterKey, NewCustomer, PrincipalKind, Query};
//!
//! # fn main() -> Result<(), custodian::Error> {
//! let dir = tempfile::tempdir().expect("temp dir");
//! let engine = Engine::builder()
//!     .path(dir.path().join("crm.redb"))
//!     .master_key(MasterKey::generate())
//!     .create(true)
//!     .open()?;
//! // Admins manage principals; roles come from the installed policy.
//! let admin = Context::new("admin", "onboarding");
//! engine.add_principal(&admin, "wang", PrincipalKind::User, &["sales"])?;
//! engine.add_principal(&admin, "zhao", PrincipalKind::User, &["support"])?;
//!
//! let wang = Context::new("wang", "sales_contact");
//! let id = engine.create_customer(
//!     &wang,
//!     NewCustomer::new().field("name", "Li Na").field("phone", "138 0013 8000"),
//! )?;
//! // The default policy: a sales rep sees their own customers in full,
//! // support sees personal fields masked.
//! assert_eq!(engine.customer(&wang, id)?.get("phone"), Some("+8613800138000"));
//! let zhao = Context::new("zhao", "service");
//! assert_eq!(engine.customer(&zhao, id)?.get("phone"), Some("138****8000"));
//! // Exact lookup goes through a keyed blind index.
//! let found = engine.find_customers(&zhao, &Query::field("phone", "13800138000"), 10)?;
//! assert_eq!(found[0].id, id);
//! // Every one of those calls is in the tamper-evident audit chain.
//! assert!(engine.verify_audit(None)?.entries >= 5);
//! # Ok(())
//! # }
//! ```

/// The README's code examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

// In dependency order: each module imports only modules above it in
// this list (checked by `module_order`; see ARCHITECTURE.md).
mod crypto;
mod model;
mod identity;
mod script;
mod guard;
mod policy;
mod privacy;
mod plugin;
mod store;
mod audit;
mod error;
mod records;
mod op;
mod api;

#[cfg(test)]
mod module_order;

/// Internals exposed for the benchmarks only; not part of the API.
#[doc(hidden)]
pub mod __bench {
    pub use crate::plugin::runtime::{SandboxProbe, WarmInstance};
}

/// Internals exposed for the fuzz targets (`fuzz/`) only; not part of the
/// API: what a plugin returns, checked without a component.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::api::check_plugin_commands;
    pub use crate::plugin::runtime::wit::{
        Channel, Command, CreateFollowUp, CustomerRef, Direction, Field, LogInteraction,
        MessagePurpose, OrderItem, SendMessage, UpsertCustomer,
    };
}

pub use api::{
    Aggregate, Alert, Budget, DEFAULT_SWEEP_BATCH, DeletionRecord, Engine, EngineBuilder,
    FieldInventory, Handling, ImportOptions, ImportProgress, ImportReport, InstalledPolicy,
    Inventory, Lifecycle, NOTICE_SENDER, NOTICE_TEMPLATE, OutboxMessage, PluginLogLine,
    PurposeReport, Query, QueuedMessage, RetentionChange, RetentionReport, RowError, SubjectExport,
    SweepOptions, SweepProgress, Transition, Usage,
};
pub use audit::{AuditDurability, AuditEntry, AuditError, Checkpoint, Outcome, VerifyReport};
pub use crypto::{CryptoError, MasterKey};
pub use error::{Denied, Error, Result};
pub use guard::{Access, Breach, Caps, Limits, Measure, Over, Span, Usual};
pub use identity::{
    ADMIN_ROLE, IdentityError, Principal, PrincipalKind, PrincipalUpdate, STEWARD_ROLE,
};
pub use model::{
    Basis, Channel, Clock, ConsentChange, Customer, CustomerId, CustomerUpdate, DEFAULT_SCHEMA,
    Direction, FieldDef, FieldType, FollowUp, FollowUpId, Interaction, InteractionId, ModelError,
    NewCustomer, NewFollowUp, NewInteraction, OrderItem, PurposeDef, Schema, Sensitivity, Shown,
    Status, format_amount, mask_value, parse_amount,
};
pub use op::{AuthSettings, CallReport, Context, Session, SessionInfo, TotpEnrollment};
pub use plugin::{
    CommandKind, EventKind, Fault, FieldAccess, Grant, Hook, INTERFACE_VERSION, PLUGIN_ROLE,
    PluginError, PluginInfo, PluginManifest, PluginSettings, PluginStatus,
};
pub use policy::{
    Action, CaseFailure, CaseReport, CompiledPolicy, CustomerAttributes, Decision, PolicyError,
    PolicyPack, PreparedSubject, RoleDef, Treatment,
};
pub use privacy::{
    ConsentRecord, DEFAULT_RETENTION, LifecycleState, PrivacyError, RetentionAction,
    RetentionFacts, RetentionPolicy, Verdict,
};
pub use store::{AlertState, FileStorage, Severity, StorageBackend, StoreError};
