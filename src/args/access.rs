//! Who may act and how it is checked: `principal`, `session`, `policy`
//! and `audit`.

use std::path::PathBuf;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum PrincipalCmd {
    /// Add a principal.
    Add {
        /// Its name.
        name: String,
        /// A role (repeatable).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// A service account rather than a person.
        #[arg(long)]
        service: bool,
        /// An attribute as `key=value` (team, region, manager, display_name, email; repeatable).
        #[arg(long = "attr")]
        attributes: Vec<String>,
    },
    /// Change a principal's roles or attributes.
    Set {
        /// Its name.
        name: String,
        /// Its roles from now on (repeatable; replaces the old ones).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Set an attribute, `key=value` (repeatable).
        #[arg(long = "attr")]
        attributes: Vec<String>,
        /// Remove an attribute (repeatable).
        #[arg(long = "unset")]
        unset: Vec<String>,
    },
    /// Set a password (from a prompt, or stdin when it is not a terminal:
    /// for one's own, the current password on the first line).
    Passwd {
        /// Whose.
        name: String,
    },
    /// Two-factor authentication (TOTP).
    #[command(subcommand, name = "2fa")]
    TwoFactor(TwoFactorCmd),
    /// Unlock an account locked by failed logins.
    Unlock {
        /// Its name.
        name: String,
    },
    /// List principals.
    List,
    /// A principal's budgets (from the policy's `limits`) and how much of
    /// each it used in the last hour, day and 30 days.
    Budget {
        /// Whose.
        name: String,
    },
    /// Deactivate a principal: it can do nothing from now on.
    Deactivate {
        /// Its name.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum TwoFactorCmd {
    /// Start enrolment: prints the otpauth:// URI and ten recovery codes.
    Enroll {
        /// Whose.
        name: String,
    },
    /// Confirm enrolment with a code from the app; from then on it is required.
    Verify {
        /// Whose.
        name: String,
        /// The current code.
        code: String,
    },
    /// Remove the second factor (admins only).
    Disable {
        /// Whose.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum SessionCmd {
    /// List live sessions (all for an admin, one's own otherwise).
    List,
    /// Revoke a session by token or listed id, or every session of a principal.
    Revoke {
        /// The token or the id from `session list`.
        #[arg(required_unless_present = "all")]
        token: Option<String>,
        /// Revoke every session of this principal.
        #[arg(long, conflicts_with = "token")]
        all: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Compile a policy directory and run its own cases.toml.
    Check {
        /// The directory (`*.rhai`, roles.toml, optional cases.toml).
        dir: PathBuf,
    },
    /// Run a cases file against a policy directory; reports each failure.
    Test {
        /// The directory.
        dir: PathBuf,
        /// The cases (TOML).
        cases: PathBuf,
    },
    /// Check a policy directory, then install it as a new audited version.
    Install {
        /// The directory.
        dir: PathBuf,
    },
    /// Show the installed policy.
    Show,
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Verify the whole chain, optionally against an exported checkpoint.
    Verify {
        /// A checkpoint written by `audit checkpoint`.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Export the chain's head; keep it somewhere else.
    Checkpoint {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Show the last entries.
    Tail {
        /// How many.
        #[arg(short = 'n', default_value_t = 20)]
        n: usize,
    },
    /// What one principal did, through the index by actor (admins).
    Actor {
        /// The principal.
        name: String,
        /// From this time (`2026-03-02 20:00`, UTC).
        #[arg(long)]
        from: Option<String>,
        /// Up to this time.
        #[arg(long)]
        to: Option<String>,
        /// At most this many, oldest first.
        #[arg(short = 'n', default_value_t = 100)]
        n: usize,
    },
    /// Everything done to one customer's data, through the index by
    /// customer (admins and data stewards).
    Customer {
        /// The customer id.
        id: u64,
        /// At most this many, oldest first.
        #[arg(short = 'n', default_value_t = 100)]
        n: usize,
    },
}
