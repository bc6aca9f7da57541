//! The customer records: `customer`, `interaction` and `followup`.

use std::path::PathBuf;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum CustomerCmd {
    /// Add a customer from `field=value` pairs; prints its id.
    Add {
        /// Fields as `name=value`.
        #[arg(required = true)]
        fields: Vec<String>,
        /// The owner (the acting principal by default).
        #[arg(long)]
        owner: Option<String>,
        /// Consents the customer gave, as in the CSV column:
        /// `marketing; identity_verification(id_number)`.
        #[arg(long, value_name = "LIST", requires = "notice")]
        consents: Option<String>,
        /// How the consents were given: web, app, paper, phone, ...
        #[arg(long, value_name = "CHANNEL", default_value = "operator")]
        channel: String,
        /// The version of the privacy notice the customer was shown.
        #[arg(long, value_name = "VERSION")]
        notice: Option<String>,
    },
    /// Show one customer.
    Get {
        /// The customer id.
        id: u64,
    },
    /// Find customers by `phone=`, `email=`, `id_number=`, `owner=`, `tag=` or `status=`.
    Find {
        /// The criterion as `key=value`.
        query: String,
        /// At most this many results.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Change fields (`name=value`; `name=` clears).
    Update {
        /// The customer id.
        id: u64,
        /// Fields as `name=value`.
        fields: Vec<String>,
        /// Hand the customer to another owner.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Delete a customer and destroy its key.
    Delete {
        /// The customer id.
        id: u64,
    },
    /// Count customers.
    Count,
    /// Import a CSV file whose header names the fields (and optionally
    /// `owner` and the customers' consents).
    ///
    /// Besides fields, the header may name reserved columns: `owner`;
    /// `consents`, the purposes each customer consented to, separated by
    /// `;`, with sensitive fields given separate consent in parentheses
    /// (`marketing; identity_verification(id_number)`); `consent_channel`,
    /// how the consent was given (`import` when empty or absent); and
    /// `notice_version`, the privacy notice the customer was shown
    /// (required when consents are given). A field whose purposes have no
    /// basis for a customer (a birthday without consent to `marketing`)
    /// skips its row.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// Customers per transaction.
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
    },
}

#[derive(Subcommand)]
pub enum InteractionCmd {
    /// Log an interaction.
    Add {
        /// The customer id.
        customer: u64,
        /// call, email, chat, sms, meeting, visit or order.
        #[arg(long)]
        channel: String,
        /// inbound or outbound.
        #[arg(long, default_value = "outbound")]
        direction: String,
        /// A one-line summary.
        #[arg(long)]
        summary: String,
        /// The full text.
        #[arg(long)]
        body: Option<String>,
        /// When it happened (RFC 3339, `YYYY-MM-DD` or `YYYY-MM-DD HH:MM`, UTC); now by default.
        #[arg(long)]
        at: Option<String>,
        /// For orders: the amount, e.g. 199.00.
        #[arg(long)]
        amount: Option<String>,
        /// For orders: `name:quantity[:unit price]` (repeatable).
        #[arg(long = "item")]
        items: Vec<String>,
    },
    /// List a customer's interactions.
    List {
        /// The customer id.
        customer: u64,
    },
}

#[derive(Subcommand)]
pub enum FollowUpCmd {
    /// Schedule a follow-up.
    Add {
        /// The customer id.
        customer: u64,
        /// When it is due.
        #[arg(long)]
        due: String,
        /// What to do.
        #[arg(long)]
        note: String,
        /// Who should do it (the acting principal by default).
        #[arg(long)]
        assignee: Option<String>,
    },
    /// List open follow-ups due by a time (now by default).
    Due {
        /// Due at or before this time.
        #[arg(long)]
        before: Option<String>,
        /// Only this assignee's.
        #[arg(long)]
        assignee: Option<String>,
    },
    /// Mark a follow-up done.
    Done {
        /// The follow-up id.
        id: u64,
    },
    /// Deliver `follow-up-due` events to subscribed plugins for open
    /// follow-ups due by a time, each at most once.
    Dispatch {
        /// Due at or before this time (RFC 3339, `YYYY-MM-DD` or
        /// `YYYY-MM-DD HH:MM`, UTC); now by default.
        #[arg(long)]
        until: Option<String>,
    },
}
