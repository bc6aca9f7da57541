//! The privacy lifecycle: `consent`, `hold`, `retention`, `subject`
//! (data-subject requests), `report` (the record of processing and
//! deletion records) and `purpose`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use custodian::CustomerId;

#[derive(Subcommand)]
pub enum ConsentCmd {
    /// Record a customer's consent to a purpose in the consent ledger.
    Grant {
        /// The customer id.
        customer: CustomerId,
        /// The purpose, as declared in the schema: `marketing`, ...
        purpose: String,
        /// A sensitive field this consent covers separately, e.g.
        /// `id_number` for `identity_verification` (repeatable).
        #[arg(long = "field", value_name = "FIELD")]
        fields: Vec<String>,
        /// How the customer expressed it: web, app, paper, phone, ...
        #[arg(long)]
        channel: String,
        /// The version of the privacy notice the customer was shown.
        #[arg(long, value_name = "VERSION")]
        notice: String,
    },
    /// Record the withdrawal of a customer's consent; fields left with no
    /// basis are erased at once.
    Withdraw {
        /// The customer id.
        customer: CustomerId,
        /// The purpose. Without --field, every separate consent under it is
        /// withdrawn too.
        purpose: String,
        /// Withdraw only the separate consent to this sensitive field
        /// (repeatable).
        #[arg(long = "field", value_name = "FIELD")]
        fields: Vec<String>,
        /// How the customer expressed it: web, app, paper, phone, ...
        #[arg(long)]
        channel: String,
    },
    /// Show a customer's consent by purpose (and `purpose:field` for
    /// separate consents).
    Show {
        /// The customer id.
        customer: CustomerId,
    },
    /// Show a customer's consent ledger, oldest first.
    History {
        /// The customer id.
        customer: CustomerId,
    },
}

#[derive(Subcommand)]
pub enum HoldCmd {
    /// Place a legal hold: nothing removes the customer while it lasts (no
    /// retention notice, anonymization, deletion or erasure).
    Place {
        /// The customer id.
        customer: CustomerId,
        /// Why, e.g. a case number.
        #[arg(long)]
        reason: String,
    },
    /// Release a legal hold.
    Release {
        /// The customer id.
        customer: CustomerId,
    },
}

#[derive(Subcommand)]
pub enum RetentionCmd {
    /// Apply the retention policy to every customer: dormant, notified,
    /// anonymized or deleted as it decides, never past a legal hold. A
    /// sweep cut short resumes where it stopped when run again with the
    /// same --now.
    Sweep {
        /// Report what would change, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The time to sweep as of (`YYYY-MM-DD` for midnight UTC, or RFC
        /// 3339); now by default.
        #[arg(long, value_name = "DATE")]
        now: Option<String>,
        /// Customers per transaction.
        #[arg(long, value_name = "N", default_value_t = custodian::DEFAULT_SWEEP_BATCH)]
        batch_size: usize,
    },
    /// Compile a retention policy (`retention.rhai`, defining `fn
    /// retain(c)`) and install it; it applies from the next sweep.
    Install {
        /// The script.
        file: PathBuf,
    },
    /// Print the retention policy in force (the default one until one is
    /// installed).
    Show,
}

/// Who a data-subject request is about: exactly one way of finding them.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct Finder {
    /// The person's phone number.
    #[arg(long, value_name = "PHONE")]
    pub phone: Option<String>,
    /// The person's email address.
    #[arg(long, value_name = "EMAIL")]
    pub email: Option<String>,
    /// The person's ID number.
    #[arg(long, value_name = "NUMBER")]
    pub id_number: Option<String>,
    /// A customer id.
    #[arg(long, value_name = "ID")]
    pub customer: Option<CustomerId>,
}

#[derive(Subcommand)]
pub enum SubjectCmd {
    /// Write everything held about the person as JSON (an array with one
    /// copy per matching customer): fields, interactions, follow-ups,
    /// consents, queued messages and every audited access.
    Export {
        #[command(flatten)]
        finder: Finder,
        /// Write to this file (created readable by its owner only) instead
        /// of stdout.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Erase the person: every record is removed and its key destroyed; a
    /// deletion record without personal data is kept. Refused under a
    /// legal hold.
    Erase(Removal),
    /// Anonymize the person: the identity is destroyed as by erasure, and
    /// non-identifying aggregates (orders, totals, coarse region) are kept.
    Anonymize(Removal),
    /// Correct the person's fields.
    Correct {
        #[command(flatten)]
        finder: Finder,
        /// Set a field, `field=value` (repeatable).
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        set: Vec<String>,
        /// Clear a field (repeatable).
        #[arg(long = "clear", value_name = "FIELD")]
        clear: Vec<String>,
    },
}

#[derive(Args)]
pub struct Removal {
    #[command(flatten)]
    pub finder: Finder,
    /// Why, kept in the deletion record: e.g. the request's reference.
    #[arg(long)]
    pub reason: String,
    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Subcommand)]
pub enum ReportCmd {
    /// The record of processing: every field with its sensitivity,
    /// purposes and basis, how many values are held (and without basis),
    /// who sees it, and the retention policy.
    Inventory,
    /// The records removals left (erasure, anonymization, retention), in
    /// customer id order.
    Deletions {
        /// Only customers with ids above this one.
        #[arg(long, value_name = "ID", default_value_t = 0)]
        after: CustomerId,
        /// At most this many.
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Subcommand)]
pub enum PurposeCmd {
    /// Stop pursuing a purpose: nothing more is stored or consented for
    /// it, and `report inventory` flags the values held only for it.
    Retire {
        /// The purpose, as the schema declares it.
        purpose: String,
    },
    /// Pursue a retired purpose again.
    Restore {
        /// The purpose.
        purpose: String,
    },
    /// The retired purposes.
    List,
}
