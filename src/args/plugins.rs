//! The plugin subsystem: `plugin` (inspect, install, manage, ingest, and
//! `plugin run`, the harness for plugin authors) and `outbox`.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand};
use custodian::{CommandKind, EventKind, FieldAccess, Hook};

use crate::parse::{field_spec, kebab};

#[derive(Subcommand)]
pub enum PluginCmd {
    /// Show what a plugin file asks for, without installing it (needs no
    /// database).
    Inspect {
        /// The plugin (a wasm component).
        file: PathBuf,
    },
    /// Show what a plugin asks for and the grant given here, then install it
    /// (or upgrade it) once confirmed.
    Install(InstallArgs),
    /// List installed plugins with their status and what they were granted.
    List,
    /// Show an installed plugin: what it asks for next to what it was granted.
    Show {
        /// The plugin's name.
        name: String,
    },
    /// Enable a plugin, clearing a quarantine and its fault count.
    Enable {
        /// The plugin's name.
        name: String,
    },
    /// Disable a plugin: it is called no more until enabled.
    Disable {
        /// The plugin's name.
        name: String,
    },
    /// Remove a plugin with its code, state and log; its principal is
    /// deactivated (and kept for the audit chain).
    Remove {
        /// The plugin's name.
        name: String,
    },
    /// Hand a payload (a webhook body, an export file) to a plugin's
    /// `ingest` hook and show what it did.
    Ingest {
        /// The plugin's name.
        name: String,
        /// The payload file, or `-` for stdin.
        file: PathBuf,
    },
    /// The newest lines of a plugin's log, oldest first.
    Log {
        /// The plugin's name.
        name: String,
        /// How many lines.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Try a plugin in a throw-away database with everything it asks for
    /// granted: feed it a payload or cause an event, and see what it did.
    Run(RunArgs),
}

#[derive(Args)]
pub struct InstallArgs {
    /// The plugin (a wasm component).
    pub file: PathBuf,
    /// Grant everything the manifest asks for.
    #[arg(long, conflicts_with_all = ["fields", "commands", "events", "hooks", "channels", "regions"])]
    pub grant_all: bool,
    /// Fields to grant, comma-separated: `name` with the access the manifest
    /// asks for, `name:masked` to show it masked only.
    #[arg(long, value_delimiter = ',', value_name = "FIELD[:masked],...", value_parser = field_spec)]
    pub fields: Vec<(String, Option<FieldAccess>)>,
    /// Commands to grant: upsert-customer, log-interaction,
    /// create-follow-up, send-message.
    #[arg(long, value_delimiter = ',', value_name = "COMMAND,...", value_parser = kebab::<CommandKind>)]
    pub commands: Vec<CommandKind>,
    /// Events to deliver: customer-created, customer-updated,
    /// customer-erased, interaction-logged, follow-up-due, alert-raised.
    #[arg(long, value_delimiter = ',', value_name = "EVENT,...", value_parser = kebab::<EventKind>)]
    pub events: Vec<EventKind>,
    /// Hooks it may be called on: ingest, on-event (those the manifest asks
    /// for when not given).
    #[arg(long, value_delimiter = ',', value_name = "HOOK,...", value_parser = kebab::<Hook>)]
    pub hooks: Vec<Hook>,
    /// Message channels it may send on (sms, email).
    #[arg(long, value_delimiter = ',', value_name = "CHANNEL,...")]
    pub channels: Vec<String>,
    /// Regions whose customers it handles.
    #[arg(long, value_delimiter = ',', value_name = "REGION,...")]
    pub regions: Vec<String>,
    /// Commands a minute (the manifest's rate when not given).
    #[arg(long, value_name = "N")]
    pub commands_per_minute: Option<u32>,
    /// Messages a minute (the manifest's rate when not given).
    #[arg(long, value_name = "N")]
    pub messages_per_minute: Option<u32>,
    /// Its memory cap in MiB (64 when not given).
    #[arg(long, value_name = "N")]
    pub memory_mib: Option<u32>,
    /// The deadline of one call in milliseconds (100 when not given).
    #[arg(long, value_name = "N")]
    pub deadline_ms: Option<u32>,
    /// Who owns the customers it creates (its own principal when not given).
    #[arg(long, value_name = "PRINCIPAL")]
    pub owner: Option<String>,
    /// Install without asking for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Args)]
#[command(group(ArgGroup::new("input").required(true).args(["ingest", "event"])))]
pub struct RunArgs {
    /// The plugin (a wasm component).
    pub file: PathBuf,
    /// A payload for its `ingest` hook (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub ingest: Option<PathBuf>,
    /// An event to cause, as JSON (or `@FILE` to read it from a file).
    ///
    /// `kind` is customer-created, customer-updated, customer-erased,
    /// interaction-logged or follow-up-due; `customer` holds the fields of
    /// the customer it is about, created first by `admin`. Optional keys:
    /// `marketing_consent` and `service_consent` (true records that consent:
    /// messages need it), `update` (fields to set for customer-updated; the
    /// customer's own fields again by default), `summary`, `channel` and
    /// `direction` (interaction-logged), `note` and `due` (follow-up-due;
    /// due now by default). The event goes through the engine's normal
    /// path: creating, updating, deleting the customer, logging the
    /// interaction, or scheduling the follow-up and dispatching it. Example:
    /// {"kind":"follow-up-due","customer":{"name":"Li Na","phone":"13800138000"},"service_consent":true,"note":"call back","due":"2026-12-01T09:00:00Z"}
    #[arg(long, value_name = "JSON")]
    pub event: Option<String>,
}

#[derive(Subcommand)]
pub enum AlertCmd {
    /// The newest alerts, newest first.
    List {
        /// Only alerts in this state.
        #[arg(long, value_enum)]
        state: Option<AlertStateArg>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One alert: its evidence and who handled it.
    Show {
        /// Its id.
        id: u64,
    },
    /// Say you are looking into an alert.
    Ack {
        /// Its id.
        id: u64,
        /// What you are doing about it.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Close an alert, saying what was found or done.
    Resolve {
        /// Its id.
        id: u64,
        /// What was found or done (required).
        #[arg(long)]
        note: String,
    },
}

/// An alert's state, on the command line.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum AlertStateArg {
    Open,
    Acknowledged,
    Resolved,
}

impl From<AlertStateArg> for custodian::AlertState {
    fn from(s: AlertStateArg) -> Self {
        match s {
            AlertStateArg::Open => custodian::AlertState::Open,
            AlertStateArg::Acknowledged => custodian::AlertState::Acknowledged,
            AlertStateArg::Resolved => custodian::AlertState::Resolved,
        }
    }
}

#[derive(Subcommand)]
pub enum OutboxCmd {
    /// List messages waiting for delivery, oldest first, with the addresses
    /// resolved.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Acknowledge delivered messages: they leave the outbox.
    Ack {
        /// Message ids, from `outbox list`.
        #[arg(required = true)]
        ids: Vec<u64>,
    },
}
