//! Plugins: third-party integrations as sandboxed wasm components.
//!
//! `plugin` owns the wasmtime host ([`runtime`]), the types of the plugin
//! interface as the engine sees them (generated from `sdk/wit/`, the only
//! definition of the interface) and the rules of a grant. It never touches
//! the store: a call gets its host services (customer lookup, private state)
//! through [`runtime::HostServices`], implemented by the engine, and returns
//! commands that the engine checks and executes on the normal operation path.
//!
//! INVARIANT: a plugin sees only what its grant gives it. Fields outside the
//! grant are absent, masked fields arrive masked, and commands outside it
//! are refused before anything is written.

pub(crate) mod runtime;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The version of the plugin interface this engine implements
/// (`sdk/wit/plugin.wit`).
pub const INTERFACE_VERSION: &str = "0.2.0";

/// The prefix of plugin principals: a plugin named `shop-orders` acts as
/// `plugin:shop-orders`.
pub const PLUGIN_PRINCIPAL_PREFIX: &str = "plugin:";

/// The role the engine gives plugin principals; the installed policy must
/// define it (the default policy does).
pub const PLUGIN_ROLE: &str = "integration";

/// Errors of plugins: bad modules, refused grants and failed calls.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The file is not a component implementing the plugin interface.
    #[error("not a Custodian plugin: {0}")]
    Invalid(String),
    /// The plugin was built against an incompatible interface version.
    #[error(
        "plugin built against interface `custodian:plugin@{found}`; this engine implements `custodian:plugin@{supported}`: rebuild it with a matching custodian-sdk"
    )]
    Version {
        /// The version the plugin was built against.
        found: String,
        /// The version this engine implements.
        supported: String,
    },
    /// The manifest is malformed.
    #[error("plugin manifest: {0}")]
    Manifest(String),
    /// The operator's grant asks for more than the manifest or is malformed.
    #[error("grant refused: {0}")]
    Grant(String),
    /// No plugin by that name is installed.
    #[error("no plugin `{0}` is installed")]
    Unknown(String),
    /// The call trapped, ran out of time or memory, or returned too much.
    #[error("plugin `{name}` failed: {fault}")]
    Fault {
        /// The plugin.
        name: String,
        /// What went wrong.
        fault: Fault,
    },
    /// The plugin returned an error of its own.
    #[error("plugin `{name}` refused the input: {message}")]
    Rejected {
        /// The plugin.
        name: String,
        /// Its message.
        message: String,
    },
    /// A command was outside the grant or invalid; nothing was executed.
    #[error("plugin `{name}`: command {index} refused: {reason}; nothing was executed")]
    Command {
        /// The plugin.
        name: String,
        /// The command's position, from 1.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The plugin exceeded its rate.
    #[error("plugin `{name}` exceeded its rate: {reason}; nothing was executed")]
    RateLimited {
        /// The plugin.
        name: String,
        /// Which limit.
        reason: String,
    },
    /// The plugin's state would grow past its quota.
    #[error("plugin `{name}` exceeded its quota: {reason}; nothing was executed")]
    Quota {
        /// The plugin.
        name: String,
        /// Which quota, and by how much.
        reason: String,
    },
    /// The sandbox could not be set up (pool exhausted, engine failure).
    #[error("plugin runtime: {0}")]
    Runtime(String),
}

/// How a call failed inside the sandbox. Each counts toward quarantine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Fault {
    /// The call ran past its deadline.
    Deadline(Duration),
    /// The plugin tried to grow its memory past its cap.
    Memory {
        /// The cap in bytes.
        cap: usize,
    },
    /// The call overflowed its stack (unbounded recursion).
    StackOverflow,
    /// Any other trap (a panic, unreachable code, a bad memory access).
    Trap(String),
    /// The result was larger than the engine accepts.
    OutputTooLarge {
        /// What was returned, in bytes (or commands).
        size: usize,
        /// The limit.
        limit: usize,
        /// `bytes` or `commands`.
        unit: &'static str,
    },
    /// A command outside the grant.
    Ungranted(String),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Deadline(d) => write!(f, "ran past its deadline of {} ms", d.as_millis()),
            Fault::Memory { cap } => write!(
                f,
                "tried to grow its memory past its cap of {} MiB",
                cap >> 20
            ),
            Fault::StackOverflow => write!(f, "overflowed its stack (unbounded recursion)"),
            Fault::Trap(t) => write!(f, "trapped: {t}"),
            Fault::OutputTooLarge { size, limit, unit } => {
                write!(f, "returned {size} {unit}; the most accepted is {limit}")
            }
            Fault::Ungranted(what) => write!(f, "issued a command outside its grant: {what}"),
        }
    }
}

/// The entry points a plugin may implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    /// Turns external payloads into commands.
    Ingest,
    /// Reacts to events.
    OnEvent,
}

/// Events plugins may subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A customer was created.
    CustomerCreated,
    /// A customer's fields or owner changed.
    CustomerUpdated,
    /// A customer was deleted.
    CustomerErased,
    /// An interaction was logged.
    InteractionLogged,
    /// A follow-up fell due.
    FollowUpDue,
    /// The engine raised an alert.
    AlertRaised,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 6] = [
        EventKind::CustomerCreated,
        EventKind::CustomerUpdated,
        EventKind::CustomerErased,
        EventKind::InteractionLogged,
        EventKind::FollowUpDue,
        EventKind::AlertRaised,
    ];

    /// The name used in manifests, grants and the audit chain.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::CustomerCreated => "customer-created",
            EventKind::CustomerUpdated => "customer-updated",
            EventKind::CustomerErased => "customer-erased",
            EventKind::InteractionLogged => "interaction-logged",
            EventKind::FollowUpDue => "follow-up-due",
            EventKind::AlertRaised => "alert-raised",
        }
    }

    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The commands plugins may issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommandKind {
    /// Create or update a customer.
    UpsertCustomer,
    /// Log an interaction.
    LogInteraction,
    /// Create a follow-up.
    CreateFollowUp,
    /// Queue a message in the outbox.
    SendMessage,
}

impl CommandKind {
    /// The name used in manifests and grants.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::UpsertCustomer => "upsert-customer",
            CommandKind::LogInteraction => "log-interaction",
            CommandKind::CreateFollowUp => "create-follow-up",
            CommandKind::SendMessage => "send-message",
        }
    }
}

/// How much of a field a plugin sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FieldAccess {
    /// The value itself.
    Full,
    /// The masked rendering only.
    Masked,
}

/// The most fields a manifest may ask for.
pub(crate) const MAX_MANIFEST_FIELDS: usize = 256;
/// The most channels a manifest may ask for.
pub(crate) const MAX_MANIFEST_CHANNELS: usize = 32;
/// The most regions a manifest may ask for.
pub(crate) const MAX_MANIFEST_REGIONS: usize = 256;

/// What a plugin asks for, as its `manifest` export returned it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginManifest {
    /// Lowercase letters, digits and `-`.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// Who ships it.
    pub publisher: String,
    /// What it does.
    pub description: String,
    /// Entry points it implements.
    pub hooks: BTreeSet<Hook>,
    /// Events it wants.
    pub events: BTreeSet<EventKind>,
    /// Fields it wants to see (and write).
    pub fields: BTreeMap<String, FieldAccess>,
    /// Commands it issues.
    pub commands: BTreeSet<CommandKind>,
    /// Commands per minute.
    pub commands_per_minute: u32,
    /// Messages per minute.
    pub messages_per_minute: u32,
    /// Message channels.
    pub channels: BTreeSet<String>,
    /// Regions whose customers it handles.
    pub regions: BTreeSet<String>,
}

impl PluginManifest {
    /// Checks the manifest's own shape.
    pub fn check(&self) -> Result<(), PluginError> {
        let bad = |what: String| Err(PluginError::Manifest(what));
        let name_ok = (1..=48).contains(&self.name.len())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !self.name.starts_with('-');
        if !name_ok {
            return bad(format!(
                "name `{}` must be 1 to 48 lowercase letters, digits or `-`",
                self.name.escape_debug()
            ));
        }
        for (what, text, max) in [
            ("version", &self.version, 64),
            ("publisher", &self.publisher, 200),
            ("description", &self.description, 2000),
        ] {
            if text.len() > max {
                return bad(format!("{what} is longer than {max} bytes"));
            }
        }
        for (what, count, max) in [
            ("fields", self.fields.len(), MAX_MANIFEST_FIELDS),
            ("channels", self.channels.len(), MAX_MANIFEST_CHANNELS),
            ("regions", self.regions.len(), MAX_MANIFEST_REGIONS),
        ] {
            if count > max {
                return bad(format!(
                    "it asks for {count} {what}; a manifest may ask for at most {max}"
                ));
            }
        }
        if (self
            .fields
            .keys()
            .chain(&self.channels)
            .chain(&self.regions))
        .any(|c| c.len() > 64)
        {
            return bad("a field, channel or region name is longer than 64 bytes".into());
        }
        Ok(())
    }

    /// The plugin's principal name.
    pub fn principal(&self) -> String {
        format!("{PLUGIN_PRINCIPAL_PREFIX}{}", self.name)
    }
}

/// What the operator grants a plugin: all of its manifest or a subset,
/// plus its resource limits. Enforced on every call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Entry points it may be called on.
    pub hooks: BTreeSet<Hook>,
    /// Events it receives.
    pub events: BTreeSet<EventKind>,
    /// Fields it sees (and may write), in full or masked.
    pub fields: BTreeMap<String, FieldAccess>,
    /// Commands it may issue.
    pub commands: BTreeSet<CommandKind>,
    /// Commands per minute.
    pub commands_per_minute: u32,
    /// Messages per minute.
    pub messages_per_minute: u32,
    /// Channels it may send on.
    pub channels: BTreeSet<String>,
    /// Regions (recorded for the inventory; customers carry no region yet).
    pub regions: BTreeSet<String>,
    /// Linear memory cap, in MiB.
    pub memory_mib: u32,
    /// Deadline of one call, in milliseconds.
    pub deadline_ms: u32,
    /// Owner of the customers it creates; the plugin's own principal when
    /// `None`.
    pub owner: Option<String>,
}

/// The default linear-memory cap of a plugin.
pub const DEFAULT_MEMORY_MIB: u32 = 64;
/// The default deadline of one call.
pub const DEFAULT_DEADLINE_MS: u32 = 100;

impl Grant {
    /// Everything the manifest asks for, with the default limits.
    pub fn all(manifest: &PluginManifest) -> Self {
        Self {
            hooks: manifest.hooks.clone(),
            events: manifest.events.clone(),
            fields: manifest.fields.clone(),
            commands: manifest.commands.clone(),
            commands_per_minute: manifest.commands_per_minute,
            messages_per_minute: manifest.messages_per_minute,
            channels: manifest.channels.clone(),
            regions: manifest.regions.clone(),
            memory_mib: DEFAULT_MEMORY_MIB,
            deadline_ms: DEFAULT_DEADLINE_MS,
            owner: None,
        }
    }

    /// Nothing at all: a starting point for granting item by item.
    pub fn none() -> Self {
        Self {
            hooks: BTreeSet::new(),
            events: BTreeSet::new(),
            fields: BTreeMap::new(),
            commands: BTreeSet::new(),
            commands_per_minute: 0,
            messages_per_minute: 0,
            channels: BTreeSet::new(),
            regions: BTreeSet::new(),
            memory_mib: DEFAULT_MEMORY_MIB,
            deadline_ms: DEFAULT_DEADLINE_MS,
            owner: None,
        }
    }

    /// Checks that the grant gives no more than the manifest asks and stays
    /// inside the engine's limits.
    pub(crate) fn check(
        &self,
        manifest: &PluginManifest,
        settings: &PluginSettings,
    ) -> Result<(), PluginError> {
        let refuse = |what: String| Err(PluginError::Grant(what));
        if let Some(h) = self.hooks.difference(&manifest.hooks).next() {
            return refuse(format!("hook `{h:?}` was not asked for"));
        }
        if let Some(e) = self.events.difference(&manifest.events).next() {
            return refuse(format!("event `{}` was not asked for", e.as_str()));
        }
        for (name, access) in &self.fields {
            match manifest.fields.get(name) {
                None => return refuse(format!("field `{name}` was not asked for")),
                // Masked may be granted where full was asked; not the reverse.
                Some(FieldAccess::Masked) if *access == FieldAccess::Full => {
                    return refuse(format!(
                        "field `{name}` was asked for masked; it cannot be granted in full"
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(c) = self.commands.difference(&manifest.commands).next() {
            return refuse(format!("command `{}` was not asked for", c.as_str()));
        }
        if let Some(c) = self.channels.difference(&manifest.channels).next() {
            return refuse(format!("channel `{c}` was not asked for"));
        }
        if let Some(r) = self.regions.difference(&manifest.regions).next() {
            return refuse(format!("region `{r}` was not asked for"));
        }
        if self.commands_per_minute > manifest.commands_per_minute
            || self.messages_per_minute > manifest.messages_per_minute
        {
            return refuse("a rate higher than the manifest asks for".into());
        }
        if self.memory_mib == 0 || self.memory_mib > settings.max_memory_mib {
            return refuse(format!(
                "memory cap {} MiB is outside 1..={} MiB",
                self.memory_mib, settings.max_memory_mib
            ));
        }
        if self.deadline_ms == 0 || self.deadline_ms > settings.max_deadline_ms {
            return refuse(format!(
                "deadline {} ms is outside 1..={} ms",
                self.deadline_ms, settings.max_deadline_ms
            ));
        }
        Ok(())
    }
}

/// Where a plugin stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginStatus {
    /// Called on its hooks.
    Enabled,
    /// Switched off by an administrator.
    Disabled,
    /// Switched off by the engine after repeated faults.
    Quarantined {
        /// The last fault.
        reason: String,
    },
}

impl std::fmt::Display for PluginStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginStatus::Enabled => f.write_str("enabled"),
            PluginStatus::Disabled => f.write_str("disabled"),
            PluginStatus::Quarantined { reason } => write!(f, "quarantined ({reason})"),
        }
    }
}

/// An installed plugin, as listed to administrators.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// What it asks for.
    pub manifest: PluginManifest,
    /// What it was given.
    pub grant: Grant,
    /// Enabled, disabled or quarantined.
    pub status: PluginStatus,
    /// Faults within the fault window ([`PluginSettings::fault_window`]),
    /// as of the last fault or status change; successes do not reset it.
    pub consecutive_faults: u32,
    /// BLAKE3 of its code, hex.
    pub code_hash: String,
    /// When it was installed (microseconds since the epoch).
    pub installed_at: i64,
    /// Who installed it.
    pub installed_by: String,
}

/// Limits of the plugin sandbox, set when the engine opens.
#[derive(Clone, Debug)]
pub struct PluginSettings {
    /// The largest memory cap a grant may give, in MiB (default 256).
    pub max_memory_mib: u32,
    /// The longest deadline a grant may give, in ms (default 10,000).
    pub max_deadline_ms: u32,
    /// Faults within [`PluginSettings::fault_window`] after which a plugin
    /// is quarantined (default 3), however many calls succeeded between.
    pub quarantine_after: u32,
    /// How far back faults count toward quarantine (default one hour).
    pub fault_window: Duration,
    /// Calls of one plugin per minute, whatever they return (default
    /// 6,000); refused calls are not made.
    pub calls_per_minute: u32,
    /// The most a call may return, in bytes of commands (default 16 MiB).
    pub max_output_bytes: usize,
    /// The most commands one call may return (default 100,000).
    pub max_commands: usize,
    /// Log one call may write: host log lines, stdout and stderr together
    /// (default 64 KiB); lines past it are dropped, and a line says how
    /// many.
    pub max_log_bytes: usize,
    /// State one call may write, keys and values (default 1 MiB).
    pub max_state_bytes_per_call: usize,
    /// State one plugin may keep, unscoped and filed under customers,
    /// counted as stored (default 16 MiB).
    pub max_state_bytes: u64,
    /// Plugin instances alive at once (default 64).
    pub max_instances: u32,
}

impl Default for PluginSettings {
    fn default() -> Self {
        Self {
            max_memory_mib: 256,
            max_deadline_ms: 10_000,
            quarantine_after: 3,
            fault_window: Duration::from_secs(60 * 60),
            calls_per_minute: 6_000,
            max_output_bytes: 16 << 20,
            max_commands: 100_000,
            max_log_bytes: 64 << 10,
            max_state_bytes_per_call: 1 << 20,
            max_state_bytes: 16 << 20,
            max_instances: 64,
        }
    }
}
