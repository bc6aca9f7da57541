//! Every command, option and argument of `custodian`, as clap reads them.
//! Nothing here acts: `commands` does.

pub mod access;
pub mod plugins;
pub mod privacy;
pub mod records;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Custodian keeps customer records encrypted, audited and guarded.
#[derive(Parser)]
#[command(name = "custodian", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    // Kept apart from `Global`, which handlers read: only `run` sees it,
    // to choose the output once.
    /// Print records as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args)]
pub struct Global {
    /// The database file.
    #[arg(
        long,
        env = "CUSTODIAN_DB",
        default_value = "custodian.redb",
        global = true
    )]
    pub db: PathBuf,
    /// A file holding the master key in hex (or set CUSTODIAN_KEY to the hex key).
    #[arg(long, env = "CUSTODIAN_KEY_FILE", global = true)]
    pub key_file: Option<PathBuf>,
    /// The key store; `<db>.keys` by default.
    #[arg(long, global = true)]
    pub key_store: Option<PathBuf>,
    /// A mirror of the key store (repeatable).
    #[arg(long, global = true)]
    pub key_mirror: Vec<PathBuf>,
    /// The principal acting, vouched for by whoever holds the master key.
    #[arg(
        long = "as",
        env = "CUSTODIAN_AS",
        default_value = "admin",
        global = true
    )]
    pub principal: String,
    /// Act through a session from `custodian login` instead of `--as`.
    #[arg(long, env = "CUSTODIAN_SESSION", global = true, hide_env_values = true)]
    pub session: Option<String>,
    /// The purpose of the access, recorded in the audit chain (policies may
    /// require one: admins read customer data only with a stated purpose).
    #[arg(long, env = "CUSTODIAN_PURPOSE", default_value = "", global = true)]
    pub purpose: String,
    /// A fresh second-factor code, for a read past a budget that the
    /// policy lets go on with a step-up; checked and used up only then.
    #[arg(long, global = true, value_name = "CODE")]
    pub step_up: Option<String>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a new database (and with --new-key, a new key file).
    Init {
        /// Generate a master key and write it (mode 0600) to --key-file, or `<db>.key`.
        #[arg(long)]
        new_key: bool,
        /// A schema file (TOML); the bundled schema otherwise.
        #[arg(long)]
        schema: Option<PathBuf>,
        /// The name of the first administrator.
        #[arg(long, default_value = "admin")]
        admin: String,
    },
    /// Manage principals.
    #[command(subcommand)]
    Principal(access::PrincipalCmd),
    /// Customer records.
    #[command(subcommand)]
    Customer(records::CustomerCmd),
    /// Interactions with customers.
    #[command(subcommand)]
    Interaction(records::InteractionCmd),
    /// Follow-up reminders.
    #[command(subcommand, name = "followup")]
    FollowUp(records::FollowUpCmd),
    /// The audit chain.
    #[command(subcommand)]
    Audit(access::AuditCmd),
    /// Log in with a password (from a prompt, or stdin when it is not a
    /// terminal) and a second factor; prints a session token.
    Login {
        /// The principal.
        name: String,
        /// A TOTP code or a recovery code.
        #[arg(long)]
        totp: Option<String>,
        /// Where the login comes from, for throttling and the audit chain.
        #[arg(long, default_value = "cli")]
        source: String,
    },
    /// Sessions.
    #[command(subcommand)]
    Session(access::SessionCmd),
    /// Access policies (rhai).
    #[command(subcommand)]
    Policy(access::PolicyCmd),
    /// Plugins: sandboxed integrations with what an operator granted them.
    #[command(subcommand)]
    Plugin(plugins::PluginCmd),
    /// Messages plugins queued for delivery.
    #[command(subcommand)]
    Outbox(plugins::OutboxCmd),
    /// Customers' consent to purposes such as `marketing`, kept in a ledger.
    #[command(subcommand)]
    Consent(privacy::ConsentCmd),
    /// Legal holds: a held customer is never notified, anonymized or erased.
    #[command(subcommand)]
    Hold(privacy::HoldCmd),
    /// Where a customer is in its lifecycle (active, dormant, notified) and
    /// any legal hold on it.
    Lifecycle {
        /// The customer id.
        customer: u64,
    },
    /// Retention: the policy (`retention.rhai`) and the sweep that applies it.
    #[command(subcommand)]
    Retention(privacy::RetentionCmd),
    /// Data-subject requests: export, erase, anonymize or correct what is
    /// held about a person (admins and data stewards).
    #[command(subcommand)]
    Subject(privacy::SubjectCmd),
    /// Reports for privacy officers: the record of processing, deletion records.
    #[command(subcommand)]
    Report(privacy::ReportCmd),
    /// Purposes the company stops (or resumes) pursuing: a retired purpose
    /// gives no basis to store data (admins).
    #[command(subcommand)]
    Purpose(privacy::PurposeCmd),
    /// Alerts the engine raised (a request past a budget, a plugin
    /// quarantined, ...), and their handling (admins).
    #[command(subcommand)]
    Alert(plugins::AlertCmd),
    /// The newest alerts (`alert list`).
    #[command(hide = true)]
    Alerts {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// A guided tour in a fresh folder of its own.
    Demo {
        /// Where to create the demo folder (the system temp dir by default).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}
