//! One path for every operation: identity (a valid session, an active
//! principal, a second factor where its role requires one) → the access
//! policy → one transaction with its audit entry → the view the caller may
//! see. These tests hold every entry point to it, from tables:
//!
//! - [`ENTRIES`]: every `Engine` method that takes a [`Context`], with the
//!   rule that decides who may call it and, for reads of customer data,
//!   what a caller with hidden fields must still get back.
//!   [`every_entry_point_and_plugin_way_in_has_a_row`] reads the engine's
//!   source and fails when a method taking a `Context` has no row, so a
//!   new entry point cannot skip these tests.
//! - [`PLUGIN_CALLS`]: what the `misbehave` plugin does through `ingest`:
//!   one payload per command kind, and a lookup.
//! - [`EVENTS`]: every event kind a plugin receives, and how to cause one.
//!
//! One test per property and table; each runs every row, collects the rows
//! that break the property and names them all in one failure.
//!
//! 1. A deactivated principal is refused: the call fails, nothing changes,
//!    the refusal is audited. So is a revoked session, and the session of
//!    a principal whose role now requires a second factor it did not give.
//!    A deactivated plugin principal issues nothing and is told nothing
//!    about customers.
//! 2. A denial is audited with its reason: the policy's (a pack that bars
//!    one principal, and plugins from customers with a tag) or the
//!    engine's fixed rule's (admins only; admins and data stewards;
//!    oneself or an admin). Lists leave out what is denied.
//! 3. A hidden field never reaches the caller: a principal from whom the
//!    policy hides the email, the ID number, interaction bodies and
//!    follow-up notes finds none of the seeded values in any answer, nor
//!    does a plugin granted them in full in anything it prints.

use std::collections::BTreeSet;
use std::fmt::Debug;

use chrono::{Duration, Utc};
use custodian::{
    AuditEntry, Channel, CommandKind, ConsentChange, Context, CustomerId, CustomerUpdate,
    Direction, Engine, Error, EventKind, FollowUpId, Grant, ImportOptions, ImportReport,
    NewCustomer, NewFollowUp, NewInteraction, Outcome, PolicyPack, PrincipalKind, PrincipalUpdate,
    Query, SweepOptions,
};
use custodian_test_artifacts as wasm;

use crate::{Fixture, admin};

// --- Refusals: the one place that knows how the engine spells them --------

/// The reason of a refusal (a policy denial, a deactivated or locked
/// principal, a missing second factor, an expired session), or `None` when
/// `e` is another error.
fn refusal(e: &Error) -> Option<String> {
    match e {
        Error::Denied(reason) => Some(reason.to_string()),
        _ => None,
    }
}

// --- Who acts ----------------------------------------------------------------

/// Owns every seeded customer (role sales).
const OWNER: &str = "wang";
/// The target of principal and session management (role support; has a
/// password and a live session).
const TARGET: &str = "zhou";
/// An admin, deactivated when the world is made: property 1's caller.
const GONE: &str = "gone";
/// Logged in as support, then made an admin: its session has no second
/// factor, which the admin role requires. Property 1's caller too.
const PROMOTED: &str = "promoted";
/// Role sales, refused everything by the path pack: property 2's caller
/// for what the policy decides.
const BARRED: &str = "barred";
/// Neither admin nor data steward: property 2's caller for what the
/// engine's fixed rules decide.
const UNPRIVILEGED: &str = OWNER;
/// Role support, and the path pack lets it only read, with email, ID
/// numbers, interaction bodies and follow-up notes hidden (summaries
/// shown): property 3's caller.
const PEEKER: &str = "peeker";
/// The test plugin and its principal.
const PLUGIN: &str = "misbehave";
const PLUGIN_PRINCIPAL: &str = "plugin:misbehave";

fn as_(name: &str) -> Context {
    Context::new(name, "path test")
}

// --- The policy the tables run under ----------------------------------------

/// In every reason the path pack gives `barred`.
const BARRED_REASON: &str = "PATH-DENIED-7731";
/// In every reason the path pack gives a plugin about a tagged customer.
const PLUGIN_REASON: &str = "PATH-PLUGIN-7732";
/// The tag of customers the path pack keeps from plugins.
const PLUGIN_BARRED_TAG: &str = "pathbar";

/// Rules put in front of the default pack's (after `let p = ..;`):
/// `barred` is refused everything; `peeker` only reads, with email,
/// sensitive fields, bodies and notes hidden (summaries shown); plugins may
/// not touch customers tagged `pathbar`.
const PATH_RULES: &str = r#"
    if p.id == "barred" {
        return deny("PATH-DENIED-7731: `{principal.id}` may not `{action}`");
    }
    if p.id == "peeker" {
        let reads = switch req.action {
            "read" | "search" | "count" | "interactions.read" | "followups.read" => true,
            _ => false,
        };
        return if reads {
            allow("peeker reads")
                .mask_personal()
                .hide_sensitive()
                .show("summary")
                .hide(["email", "body", "note"])
        } else {
            deny("peeker only reads")
        };
    }
    if p.has_role("integration") && c != () && c.has_tag("pathbar") {
        return deny("PATH-PLUGIN-7732: integrations may not touch customer {customer.id}");
    }
"#;

/// The default pack with [`PATH_RULES`] in front, and plugins (role
/// `integration`) never shown follow-up notes.
fn path_pack() -> PolicyPack {
    for name in [
        BARRED,
        PEEKER,
        BARRED_REASON,
        PLUGIN_REASON,
        PLUGIN_BARRED_TAG,
    ] {
        assert!(PATH_RULES.contains(name), "`{name}` not in the path rules");
    }
    crate::default_pack_edited(true, |script| {
        // No budgets: the fingerprints read the whole world over and over
        // (budgets are `guard`'s subject).
        let at = script
            .find("\n// Budgets:")
            .expect("access.rhai declares limits");
        script.truncate(at);
        let rules = format!("let p = req.principal;{PATH_RULES}");
        for (from, to) in [
            ("let p = req.principal;\n", rules.as_str()),
            (
                "allow(\"integration, as granted at install\").hide_sensitive()",
                "allow(\"integration, as granted at install\").hide_sensitive().hide(\"note\")",
            ),
        ] {
            assert!(script.contains(from), "`{from}` not in access.rhai");
            *script = script.replacen(from, to, 1);
        }
    })
}

// --- The seeded world ----------------------------------------------------------

const PHONE: &str = "13800138000";
const COMPANY: &str = "Path Trading";
const SUMMARY: &str = "path-summary-shown";
/// Values some caller may not see: found in an answer or in what a plugin
/// printed, they leaked.
const SECRETS: &[(&str, &str)] = &[
    ("id_number", "110105198803120217"),
    ("email", "path.secret.mail@example.com"),
    ("interaction body", "body-secret-6621"),
    ("follow-up note", "note-secret-5519"),
    ("legal hold reason", "hold-secret-8830"),
];

fn secret(what: &str) -> &'static str {
    SECRETS.iter().find(|(w, _)| *w == what).unwrap().1
}

/// A customer holding the ID number and the email, with the consent the
/// ID number needs.
fn secret_customer(name: &str) -> NewCustomer {
    NewCustomer::new()
        .field("name", name)
        .field("phone", PHONE)
        .field("email", secret("email"))
        .field("id_number", secret("id_number"))
        .field("company", COMPANY)
        .consent(
            ConsentChange::grant("identity_verification", "paper", "2026-01").field("id_number"),
        )
}

/// What the rows act on.
struct Seed {
    /// Every secret: ID number, email, an interaction with a body, an
    /// open follow-up with a note (due, assigned to the owner), consents,
    /// a message in the outbox.
    main: CustomerId,
    /// Under a legal hold whose reason is secret.
    held: CustomerId,
    /// Tagged [`PLUGIN_BARRED_TAG`].
    tagged: CustomerId,
    follow_up: FollowUpId,
    /// The id of the target's session, as listed.
    session: String,
    /// A token of the target's, logged out.
    revoked_token: String,
    /// The token of [`PROMOTED`]'s session, opened without a second factor.
    unverified_token: String,
    /// The queued message.
    message: u64,
    /// The test plugin's code and everything it asks for.
    wasm: Vec<u8>,
    grant: Grant,
}

/// A database under the path pack with the principals above, the seeded
/// customers and the test plugin granted everything it asks for.
struct World {
    _fx: Fixture,
    engine: Engine,
    seed: Seed,
}

impl World {
    fn new() -> World {
        let fx = Fixture::new();
        let engine = fx.open();
        let a = admin();
        let principals: [(&str, &[&str]); 6] = [
            (OWNER, &["sales"]),
            (TARGET, &["support"]),
            (GONE, &["admin"]),
            (PROMOTED, &["support"]),
            (BARRED, &["sales"]),
            (PEEKER, &["support"]),
        ];
        for (name, roles) in principals {
            engine
                .add_principal(&a, name, PrincipalKind::User, roles)
                .unwrap();
        }
        engine.deactivate_principal(&a, GONE).unwrap();
        engine.install_policy(&a, &path_pack()).unwrap();

        let main = engine
            .create_customer(&a, secret_customer("Path Subject").owner(OWNER))
            .unwrap();
        engine
            .record_consent(&a, main, &ConsentChange::grant("service", "web", "v1"))
            .unwrap();
        let held = engine
            .create_customer(
                &a,
                NewCustomer::new().field("name", "Path Held").owner(OWNER),
            )
            .unwrap();
        engine
            .set_legal_hold(&a, held, Some(secret("legal hold reason")))
            .unwrap();
        let tagged = NewCustomer::new()
            .field("name", "Path Tagged")
            .field("tags", PLUGIN_BARRED_TAG)
            .owner(OWNER);
        let tagged = engine.create_customer(&a, tagged).unwrap();
        let mut call = NewInteraction::new(Channel::Call, Direction::Inbound, SUMMARY);
        call.body = Some(secret("interaction body").into());
        engine.log_interaction(&a, main, call).unwrap();
        let follow_up = engine
            .add_follow_up(
                &a,
                NewFollowUp {
                    customer: main,
                    due: Utc::now() - Duration::hours(1),
                    assignee: Some(OWNER.into()),
                    note: secret("follow-up note").into(),
                },
            )
            .unwrap();

        let wasm = std::fs::read(wasm::MISBEHAVE).unwrap();
        let grant = Grant::all(&engine.inspect_plugin(&wasm).unwrap());
        engine.install_plugin(&a, &wasm, grant.clone()).unwrap();
        let queued = engine
            .ingest(PLUGIN, format!("command message {main}").as_bytes())
            .unwrap();
        let message = queued.messages[0];

        let password = "Path-Test-Passphrase-4821";
        for name in [TARGET, PROMOTED] {
            engine.set_password(&a, name, None, password).unwrap();
        }
        let token = |name| {
            let session = engine.login(name, password, None, "path test").unwrap();
            session.token().to_string()
        };
        let (revoked_token, unverified_token) = (token(TARGET), token(PROMOTED));
        engine.logout(&revoked_token).unwrap();
        token(TARGET);
        let promote = PrincipalUpdate {
            roles: Some(vec!["admin".into()]),
            set_attributes: Default::default(),
            remove_attributes: vec![],
        };
        engine.update_principal(&a, PROMOTED, &promote).unwrap();
        let session = engine
            .sessions(&a)
            .unwrap()
            .into_iter()
            .find(|s| s.principal == TARGET)
            .unwrap()
            .id;
        World {
            _fx: fx,
            engine,
            seed: Seed {
                main,
                held,
                tagged,
                follow_up,
                session,
                revoked_token,
                unverified_token,
                message,
                wasm,
                grant,
            },
        }
    }

    /// Everything an admin can read that a call could change, but the
    /// audit chain and plugin logs: equal before and after a call that
    /// changed nothing. (Passwords and second factors cannot be read back;
    /// a call that changed one shows as a success in the audit chain.)
    fn fingerprint(&self) -> String {
        let (e, a, s) = (&self.engine, admin(), &self.seed);
        let far = far_future();
        [
            format!("{:?}", e.count_customers(&a)),
            format!(
                "{:?}",
                e.find_customers(&a, &Query::Owner(OWNER.into()), 100)
            ),
            format!("{:?}", e.interactions(&a, s.main)),
            format!("{:?}", e.follow_ups_due(&a, far, None)),
            format!("{:?}", e.consent_history(&a, s.main)),
            format!("{:?}", e.lifecycle(&a, s.main)),
            format!("{:?}", e.lifecycle(&a, s.held)),
            format!("{:?}", e.principals(&a)),
            format!("{:?}", e.sessions(&a)),
            format!("{:?}", e.plugins(&a)),
            format!("{:?}", e.installed_policy(&a).map(|p| p.version)),
            format!("{:?}", (e.retention_policy(), e.retired_purposes())),
            format!("{:?}", e.outbox(&a, 100)),
            format!("{:?}", e.alerts(&a, 100)),
            format!("{:?}", e.deletion_records(&a, 0, 100)),
        ]
        .join("\n")
    }

    /// The sequence number of the last audit entry.
    fn audit_mark(&self) -> u64 {
        self.engine.audit_checkpoint().unwrap().seq
    }

    /// The audit entries after `mark` by `actor`.
    fn audited_since(&self, mark: u64, actor: &str) -> Vec<AuditEntry> {
        self.engine
            .audit_tail(&admin(), 1000)
            .unwrap()
            .into_iter()
            .filter(|e| e.seq > mark && e.actor == actor)
            .collect()
    }

    /// The lines of the test plugin's log.
    fn plugin_log(&self) -> Vec<String> {
        self.engine
            .plugin_log(&admin(), PLUGIN, 100_000)
            .unwrap()
            .into_iter()
            .map(|l| l.text)
            .collect()
    }
}

/// `Err(why)` unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

/// The lines of a fingerprint that differ.
fn changes(before: &str, after: &str) -> String {
    let (was, now): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    was.iter()
        .zip(&now)
        .filter(|(b, a)| b != a)
        .map(|(b, a)| format!("\n  was {b}\n  now {a}"))
        .collect()
}

/// The seeded secrets found in `text`.
fn leaked(text: &str) -> Vec<&'static str> {
    SECRETS
        .iter()
        .filter(|(_, value)| text.contains(value))
        .map(|(what, _)| *what)
        .collect()
}

/// Fails with every row that broke the property, by name.
fn report(property: &str, rows: usize, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{property}: {} of {rows} rows fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// --- The table of entry points ----------------------------------------------

/// What decides who may call an entry point.
#[derive(Clone, Copy, Debug)]
enum Rule {
    /// The access policy, about the customer(s) it touches.
    Policy,
    /// The access policy, for a list: the caller gets nothing of what it is
    /// denied (or is refused outright).
    PolicyFilters,
    /// A rule of the engine; a refused caller's reason contains this.
    Fixed(&'static str),
    /// A list of the caller's own things only: another principal's are
    /// left out.
    OwnOnly,
    /// Any active principal.
    Open,
}

const ADMINS: Rule = Rule::Fixed("only admins may");
const OFFICERS: Rule = Rule::Fixed("only admins and data stewards may");
const ONESELF: Rule = Rule::Fixed("only itself or an admin may");

/// Calls the entry point; `Ok` is the answer's `Debug`.
type Call = fn(&Engine, &Context, &Seed) -> Result<String, Error>;

/// One entry point.
struct Entry {
    /// The `Engine` method.
    name: &'static str,
    call: Call,
    rule: Rule,
    /// For reads of customer data: text the answer to [`PEEKER`] must
    /// contain (the read succeeded and returned data), all hidden fields
    /// left out.
    shows: Option<&'static str>,
}

fn answer<T: Debug>(result: custodian::Result<T>) -> Result<String, Error> {
    result.map(|value| format!("{value:?}"))
}

/// An import's answer: refused rows are the call's refusal.
fn imported(result: custodian::Result<ImportReport>) -> Result<String, Error> {
    let report = result?;
    if report.errors.is_empty() {
        Ok(format!("{report:?}"))
    } else {
        Err(report.errors.into_iter().next().unwrap().error)
    }
}

const fn entry(name: &'static str, rule: Rule, shows: Option<&'static str>, call: Call) -> Entry {
    Entry {
        name,
        call,
        rule,
        shows,
    }
}

fn far_future() -> chrono::DateTime<Utc> {
    Utc::now() + Duration::days(3650)
}

const ENTRIES: &[Entry] = &[
    // Customers.
    entry("create_customer", Rule::Policy, None, |e, ctx, _| {
        answer(e.create_customer(ctx, NewCustomer::new().field("name", "Path New")))
    }),
    entry("customer", Rule::Policy, Some(COMPANY), |e, ctx, s| {
        answer(e.customer(ctx, s.main))
    }),
    entry(
        "find_customers",
        Rule::PolicyFilters,
        Some(COMPANY),
        |e, ctx, _| answer(e.find_customers(ctx, &Query::Owner(OWNER.into()), 100)),
    ),
    entry("count_customers", Rule::Policy, None, |e, ctx, _| {
        answer(e.count_customers(ctx))
    }),
    entry("update_customer", Rule::Policy, None, |e, ctx, s| {
        answer(e.update_customer(ctx, s.main, CustomerUpdate::new().set("company", "Changed")))
    }),
    entry("delete_customer", Rule::Policy, None, |e, ctx, s| {
        answer(e.delete_customer(ctx, s.main))
    }),
    entry("import_customers", Rule::Policy, None, |e, ctx, _| {
        let rows = [NewCustomer::new().field("name", "Path Imported")];
        imported(e.import_customers(ctx, rows, &ImportOptions::default(), |_| {}))
    }),
    entry("import_csv", Rule::Policy, None, |e, ctx, _| {
        let csv = "name,phone\nPath Csv,13900001234\n".as_bytes();
        imported(e.import_csv(ctx, csv, &ImportOptions::default(), |_| {}))
    }),
    // Interactions and follow-ups.
    entry("log_interaction", Rule::Policy, None, |e, ctx, s| {
        let new = NewInteraction::new(Channel::Call, Direction::Outbound, "path call");
        answer(e.log_interaction(ctx, s.main, new))
    }),
    entry("interactions", Rule::Policy, Some(SUMMARY), |e, ctx, s| {
        answer(e.interactions(ctx, s.main))
    }),
    entry("add_follow_up", Rule::Policy, None, |e, ctx, s| {
        let new = NewFollowUp {
            customer: s.main,
            due: Utc::now() + Duration::days(1),
            assignee: None,
            note: "path follow-up".into(),
        };
        answer(e.add_follow_up(ctx, new))
    }),
    entry(
        "follow_ups_due",
        Rule::PolicyFilters,
        Some(OWNER),
        |e, ctx, _| answer(e.follow_ups_due(ctx, far_future(), None)),
    ),
    entry("complete_follow_up", Rule::Policy, None, |e, ctx, s| {
        answer(e.complete_follow_up(ctx, s.follow_up))
    }),
    // Consents and privacy.
    entry("record_consent", Rule::Policy, None, |e, ctx, s| {
        let change = ConsentChange::grant("marketing", "web", "v1");
        answer(e.record_consent(ctx, s.main, &change))
    }),
    entry(
        "consents",
        Rule::Policy,
        Some("identity_verification"),
        |e, ctx, s| answer(e.consents(ctx, s.main)),
    ),
    entry(
        "consent_history",
        Rule::Policy,
        Some("identity_verification"),
        |e, ctx, s| answer(e.consent_history(ctx, s.main)),
    ),
    entry(
        "lifecycle",
        Rule::Policy,
        Some("under legal hold"),
        |e, ctx, s| answer(e.lifecycle(ctx, s.held)),
    ),
    entry("set_legal_hold", OFFICERS, None, |e, ctx, s| {
        answer(e.set_legal_hold(ctx, s.main, Some("path hold")))
    }),
    entry("retire_purpose", ADMINS, None, |e, ctx, _| {
        answer(e.retire_purpose(ctx, "marketing", true))
    }),
    entry("retention_sweep", OFFICERS, None, |e, ctx, _| {
        answer(e.retention_sweep(ctx, Utc::now(), false))
    }),
    entry("retention_sweep_with", OFFICERS, None, |e, ctx, _| {
        answer(e.retention_sweep_with(ctx, Utc::now(), &SweepOptions::default(), |_| {}))
    }),
    entry("install_retention_policy", ADMINS, None, |e, ctx, _| {
        answer(e.install_retention_policy(ctx, &e.retention_policy()))
    }),
    entry("inventory", OFFICERS, None, |e, ctx, _| {
        answer(e.inventory(ctx))
    }),
    entry("find_subject", OFFICERS, None, |e, ctx, _| {
        answer(e.find_subject(ctx, "phone", PHONE))
    }),
    entry("subject_export", OFFICERS, None, |e, ctx, s| {
        answer(e.subject_export(ctx, s.main))
    }),
    entry("subject_erase", OFFICERS, None, |e, ctx, s| {
        answer(e.subject_erase(ctx, s.main, "path request"))
    }),
    entry("anonymize_customer", OFFICERS, None, |e, ctx, s| {
        answer(e.anonymize_customer(ctx, s.main, "path request"))
    }),
    entry("deletion_record", OFFICERS, None, |e, ctx, s| {
        answer(e.deletion_record(ctx, s.main))
    }),
    entry("deletion_records", OFFICERS, None, |e, ctx, _| {
        answer(e.deletion_records(ctx, 0, 100))
    }),
    // Principals, policies, the audit chain.
    entry("add_principal", ADMINS, None, |e, ctx, _| {
        answer(e.add_principal(ctx, "newbie", PrincipalKind::User, &["sales"]))
    }),
    entry("deactivate_principal", ADMINS, None, |e, ctx, _| {
        answer(e.deactivate_principal(ctx, TARGET))
    }),
    entry("update_principal", ADMINS, None, |e, ctx, _| {
        let update = PrincipalUpdate {
            roles: Some(vec!["admin".into()]),
            set_attributes: [("team".into(), "west".into())].into(),
            remove_attributes: vec![],
        };
        answer(e.update_principal(ctx, TARGET, &update))
    }),
    entry("principals", ADMINS, None, |e, ctx, _| {
        answer(e.principals(ctx))
    }),
    entry("audit_tail", ADMINS, None, |e, ctx, _| {
        answer(e.audit_tail(ctx, 10))
    }),
    entry("install_policy", ADMINS, None, |e, ctx, _| {
        answer(e.install_policy(ctx, &PolicyPack::default_pack()))
    }),
    entry("installed_policy", Rule::Open, None, |e, ctx, _| {
        answer(e.installed_policy(ctx).map(|p| p.version))
    }),
    // Logins: passwords, second factors, sessions.
    entry("set_password", ONESELF, None, |e, ctx, _| {
        answer(e.set_password(ctx, TARGET, None, "Another-Strong-Passphrase-93"))
    }),
    entry("enroll_totp", ONESELF, None, |e, ctx, _| {
        answer(e.enroll_totp(ctx, TARGET))
    }),
    entry("confirm_totp", ONESELF, None, |e, ctx, _| {
        answer(e.confirm_totp(ctx, TARGET, "123456"))
    }),
    entry("disable_totp", ADMINS, None, |e, ctx, _| {
        answer(e.disable_totp(ctx, TARGET))
    }),
    entry("unlock_principal", ADMINS, None, |e, ctx, _| {
        answer(e.unlock_principal(ctx, TARGET))
    }),
    entry("sessions", Rule::OwnOnly, None, |e, ctx, _| {
        answer(e.sessions(ctx))
    }),
    entry(
        "revoke_session",
        Rule::Fixed("may not revoke the sessions of others"),
        None,
        |e, ctx, s| answer(e.revoke_session(ctx, &s.session)),
    ),
    entry("revoke_sessions", ONESELF, None, |e, ctx, _| {
        answer(e.revoke_sessions(ctx, TARGET))
    }),
    entry("audit_by_actor", ADMINS, None, |e, ctx, _| {
        answer(e.audit_by_actor(ctx, OWNER, None, None, 100))
    }),
    entry("audit_of_customer", OFFICERS, None, |e, ctx, s| {
        answer(e.audit_of_customer(ctx, s.main, 100))
    }),
    entry("budget", ONESELF, None, |e, ctx, _| {
        answer(e.budget(ctx, TARGET))
    }),
    // Plugins, the outbox, alerts.
    entry("install_plugin", ADMINS, None, |e, ctx, s| {
        answer(e.install_plugin(ctx, &s.wasm, s.grant.clone()))
    }),
    entry("plugins", ADMINS, None, |e, ctx, _| answer(e.plugins(ctx))),
    entry("set_plugin_enabled", ADMINS, None, |e, ctx, _| {
        answer(e.set_plugin_enabled(ctx, PLUGIN, false))
    }),
    entry("remove_plugin", ADMINS, None, |e, ctx, _| {
        answer(e.remove_plugin(ctx, PLUGIN))
    }),
    entry("outbox", ADMINS, None, |e, ctx, _| {
        answer(e.outbox(ctx, 100))
    }),
    entry("ack_outbox", ADMINS, None, |e, ctx, s| {
        answer(e.ack_outbox(ctx, &[s.message]))
    }),
    entry("alerts", ADMINS, None, |e, ctx, _| {
        answer(e.alerts(ctx, 100))
    }),
    entry("alerts_where", ADMINS, None, |e, ctx, _| {
        answer(e.alerts_where(ctx, Some(custodian::AlertState::Open), 100))
    }),
    entry("alert", ADMINS, None, |e, ctx, _| answer(e.alert(ctx, 1))),
    entry("acknowledge_alert", ADMINS, None, |e, ctx, _| {
        answer(e.acknowledge_alert(ctx, 1, "looking"))
    }),
    entry("resolve_alert", ADMINS, None, |e, ctx, _| {
        answer(e.resolve_alert(ctx, 1, "done"))
    }),
    entry("plugin_log", ADMINS, None, |e, ctx, _| {
        answer(e.plugin_log(ctx, PLUGIN, 100))
    }),
];

// --- The plugin tables ---------------------------------------------------------

/// Something the test plugin does through `ingest`: a command of `kind`
/// about a customer, or (no kind) a lookup of it.
struct PluginCall {
    name: &'static str,
    kind: Option<CommandKind>,
    payload: fn(CustomerId) -> String,
}

const PLUGIN_CALLS: &[PluginCall] = &[
    PluginCall {
        name: "upsert-customer",
        kind: Some(CommandKind::UpsertCustomer),
        payload: |id| format!("command upsert {id} name=Plugin-Renamed"),
    },
    PluginCall {
        name: "log-interaction",
        kind: Some(CommandKind::LogInteraction),
        payload: |id| format!("command log {id}"),
    },
    PluginCall {
        name: "create-follow-up",
        kind: Some(CommandKind::CreateFollowUp),
        payload: |id| format!("command follow-up {id}"),
    },
    PluginCall {
        name: "send-message",
        kind: Some(CommandKind::SendMessage),
        payload: |id| format!("command message {id}"),
    },
    PluginCall {
        name: "lookup",
        kind: None,
        payload: |id| format!("lookup {id}"),
    },
];

/// An event kind a plugin receives, and how an admin causes one.
struct EventRow {
    kind: EventKind,
    /// Whether it tells about a customer (all but alerts).
    about_customers: bool,
    cause: fn(&World),
}

const EVENTS: &[EventRow] = &[
    EventRow {
        kind: EventKind::CustomerCreated,
        about_customers: true,
        cause: |w| {
            w.engine
                .create_customer(&admin(), secret_customer("Path Created"))
                .unwrap();
        },
    },
    EventRow {
        kind: EventKind::CustomerUpdated,
        about_customers: true,
        cause: |w| {
            let update = CustomerUpdate::new().set("company", "Path Updated");
            w.engine
                .update_customer(&admin(), w.seed.main, update)
                .unwrap();
        },
    },
    EventRow {
        kind: EventKind::CustomerErased,
        about_customers: true,
        cause: |w| {
            let a = admin();
            let id = w
                .engine
                .create_customer(&a, secret_customer("Path Erased"))
                .unwrap();
            w.engine.delete_customer(&a, id).unwrap();
        },
    },
    EventRow {
        kind: EventKind::InteractionLogged,
        about_customers: true,
        cause: |w| {
            let mut call = NewInteraction::new(Channel::Call, Direction::Inbound, SUMMARY);
            call.body = Some(secret("interaction body").into());
            w.engine
                .log_interaction(&admin(), w.seed.main, call)
                .unwrap();
        },
    },
    EventRow {
        kind: EventKind::FollowUpDue,
        about_customers: true,
        cause: |w| {
            let new = NewFollowUp {
                customer: w.seed.main,
                due: Utc::now() - Duration::minutes(1),
                assignee: None,
                note: secret("follow-up note").into(),
            };
            w.engine.add_follow_up(&admin(), new).unwrap();
            w.engine.dispatch_due_follow_ups(Utc::now()).unwrap();
        },
    },
    EventRow {
        kind: EventKind::AlertRaised,
        about_customers: false,
        cause: quarantine_another_plugin,
    },
];

/// Raises an alert: `shop-orders`, granted no command, faults on every
/// order until it is quarantined.
fn quarantine_another_plugin(w: &World) {
    let a = admin();
    let code = std::fs::read(wasm::SHOP_ORDERS).unwrap();
    let mut grant = Grant::all(&w.engine.inspect_plugin(&code).unwrap());
    grant.commands.clear();
    grant.events.clear();
    w.engine.install_plugin(&a, &code, grant).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let order = std::fs::read(root.join("plugins/shop-orders/samples/order.json")).unwrap();
    for _ in 0..3 {
        w.engine.ingest("shop-orders", &order).unwrap_err();
    }
    let alerts = w.engine.alerts(&a, 10).unwrap();
    assert!(
        alerts.iter().any(|x| x.kind == "plugin.quarantined"),
        "{alerts:?}"
    );
}

/// The lines the test plugin printed for events of `kind` after line
/// `from` of its log.
fn event_lines(w: &World, from: usize, kind: EventKind) -> Vec<String> {
    // Events are delivered after their commit, by the queue's worker.
    assert_eq!(w.engine.drain_events().unwrap(), 0);
    let prefix = format!("event: {}", kind.as_str());
    w.plugin_log()
        .into_iter()
        .skip(from)
        .filter(|l| l.starts_with(&prefix))
        .collect()
}

// --- Every entry point has a row ------------------------------------------------

/// The names of the public methods under `engine/src` that take a
/// [`Context`].
fn entry_points_in_source() -> BTreeSet<String> {
    fn scan(dir: &std::path::Path, found: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                scan(&path, found);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (at, _) in text.match_indices("pub fn ") {
                let rest = &text[at + "pub fn ".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let end = rest.find(['{', ';']).unwrap_or(rest.len());
                if rest[..end].contains("&Context") {
                    found.insert(name);
                }
            }
        }
    }
    let mut found = BTreeSet::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    scan(&root.join("engine/src"), &mut found);
    found
}

/// Every command kind; a new kind fails to compile here until it is added.
fn every_command_kind() -> Vec<CommandKind> {
    let all = [
        CommandKind::UpsertCustomer,
        CommandKind::LogInteraction,
        CommandKind::CreateFollowUp,
        CommandKind::SendMessage,
    ];
    for kind in all {
        match kind {
            CommandKind::UpsertCustomer
            | CommandKind::LogInteraction
            | CommandKind::CreateFollowUp
            | CommandKind::SendMessage => {}
        }
    }
    all.to_vec()
}

#[test]
fn every_entry_point_and_plugin_way_in_has_a_row() {
    let rows: Vec<&str> = ENTRIES.iter().map(|e| e.name).collect();
    let unique: BTreeSet<String> = rows.iter().map(|n| n.to_string()).collect();
    assert_eq!(unique.len(), rows.len(), "a row is named twice: {rows:?}");
    let source = entry_points_in_source();
    let missing: Vec<&String> = source.difference(&unique).collect();
    let stale: Vec<&String> = unique.difference(&source).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "entry points taking a Context without a row in ENTRIES: {missing:?}; rows naming no such entry point: {stale:?}"
    );
    for kind in every_command_kind() {
        assert!(
            PLUGIN_CALLS.iter().any(|c| c.kind == Some(kind)),
            "no row for command `{}`",
            kind.as_str()
        );
    }
    for kind in EventKind::ALL {
        assert!(
            EVENTS.iter().any(|e| e.kind == kind),
            "no row for event `{}`",
            kind.as_str()
        );
    }
}

// --- Property 1: identity first: deactivated principals, bad sessions ---------

/// Runs `row` as `ctx`, expecting a refusal whose reason contains `why`:
/// the call fails, nothing changes, and the entries audited as `who` hold
/// the refusal and no success.
fn refused(w: &World, row: &Entry, ctx: &Context, who: &str, why: &str) -> Result<(), String> {
    let before = w.fingerprint();
    let mark = w.audit_mark();
    let result = (row.call)(&w.engine, ctx, &w.seed);
    let entries = w.audited_since(mark, who);
    let after = w.fingerprint();
    match &result {
        Ok(answer) => return Err(format!("not refused: answered {answer}")),
        Err(e) => {
            let reason = refusal(e).ok_or_else(|| format!("failed, but not refused: {e:?}"))?;
            ensure!(reason.contains(why), "refused for `{reason}`, not `{why}`");
        }
    }
    ensure!(
        before == after,
        "refused, but it changed: {}",
        changes(&before, &after)
    );
    audited_refusal(&entries, why)
}

/// Whether `entries` hold a refusal whose reason contains `why`.
fn denied(entries: &[AuditEntry], why: &str) -> bool {
    entries
        .iter()
        .any(|e| matches!(&e.outcome, Outcome::Denied(r) if r.contains(why)))
}

/// `entries` hold a refusal whose reason contains `why`, and no success.
fn audited_refusal(entries: &[AuditEntry], why: &str) -> Result<(), String> {
    ensure!(
        denied(entries, why),
        "no audit entry `Denied(..{why}..)`; the caller's entries: {entries:#?}"
    );
    let done: Vec<&AuditEntry> = entries
        .iter()
        .filter(|e| e.outcome == Outcome::Ok)
        .collect();
    ensure!(done.is_empty(), "refused, yet audited as done: {done:#?}");
    Ok(())
}

/// Callers the identity step refuses, whatever they call: the context,
/// the name their refusal is audited under, and the reason.
fn unidentified(seed: &Seed) -> Vec<(Context, &'static str, &'static str)> {
    let session = |token: &str| Context::session(token, "path test");
    vec![
        (as_(GONE), GONE, "deactivated"),
        (session(&seed.revoked_token), "(session)", "revoked"),
        (session(&seed.unverified_token), PROMOTED, "second factor"),
    ]
}

#[test]
fn a_deactivated_or_unverified_caller_is_refused_by_every_entry_point() {
    let mut w = World::new();
    let mut failures = Vec::new();
    let callers = unidentified(&w.seed).len();
    for row in ENTRIES {
        for caller in 0..callers {
            let (ctx, who, why) = unidentified(&w.seed).swap_remove(caller);
            if let Err(broke) = refused(&w, row, &ctx, who, why) {
                failures.push(format!("{} as {who}: {broke}", row.name));
                // What a broken row did must not break the rows after it.
                w = World::new();
            }
        }
    }
    report("identity", callers * ENTRIES.len(), &failures);
}

#[test]
fn a_deactivated_plugin_principal_acts_on_nothing_and_hears_nothing() {
    let w = World::new();
    w.engine
        .deactivate_principal(&admin(), PLUGIN_PRINCIPAL)
        .unwrap_or_else(|e| panic!("deactivating `{PLUGIN_PRINCIPAL}`: {e:?}"));
    let mut failures = Vec::new();
    for row in PLUGIN_CALLS {
        let check = || -> Result<(), String> {
            let before = w.fingerprint();
            let mark = w.audit_mark();
            let result = w
                .engine
                .ingest(PLUGIN, (row.payload)(w.seed.main).as_bytes());
            let entries = w.audited_since(mark, PLUGIN_PRINCIPAL);
            let after = w.fingerprint();
            ensure!(before == after, "it changed: {}", changes(&before, &after));
            match (&result, row.kind) {
                (Err(e), _) => {
                    let reason = refusal(e).ok_or_else(|| format!("failed, not refused: {e:?}"))?;
                    ensure!(reason.contains("deactivated"), "refused for `{reason}`");
                }
                (Ok(report), Some(_)) => return Err(format!("not refused: {report:?}")),
                // A lookup may run, but finds nothing.
                (Ok(report), None) => {
                    let seen: Vec<&String> = report
                        .log
                        .iter()
                        .filter(|l| l.contains("seen:") && !l.ends_with("seen: none"))
                        .collect();
                    ensure!(seen.is_empty(), "it was shown a customer: {seen:?}");
                }
            }
            audited_refusal(&entries, "deactivated")
        };
        if let Err(why) = check() {
            failures.push(format!("{}: {why}", row.name));
        }
    }
    for row in EVENTS {
        let from = w.plugin_log().len();
        (row.cause)(&w);
        let lines = event_lines(&w, from, row.kind);
        let told = match row.about_customers {
            true => lines,
            // An alert may still reach it, if it tells nothing about customers.
            false => lines
                .into_iter()
                .filter(|l| !leaked(l).is_empty())
                .collect(),
        };
        if !told.is_empty() {
            failures.push(format!("{}: delivered: {told:?}", row.kind.as_str()));
        }
    }
    report(
        "deactivated plugin principal",
        PLUGIN_CALLS.len() + EVENTS.len(),
        &failures,
    );
}

// --- Property 2: a denial is audited with its reason -----------------------------

/// Runs a list as `who`, who is denied everything in it: it answers an
/// empty list (while an admin's is not) and names no customer in the
/// audit chain, or it is refused, audited.
fn filtered(w: &World, row: &Entry, who: &str) -> Result<(), String> {
    let full = (row.call)(&w.engine, &as_("admin"), &w.seed);
    ensure!(
        full.as_ref().is_ok_and(|a| a != "[]"),
        "an admin's list is empty or refused, so this row proves nothing: {full:?}"
    );
    let before = w.fingerprint();
    let mark = w.audit_mark();
    let result = (row.call)(&w.engine, &as_(who), &w.seed);
    let entries = w.audited_since(mark, who);
    let after = w.fingerprint();
    ensure!(before == after, "it changed: {}", changes(&before, &after));
    match result {
        Ok(answer) => {
            ensure!(answer == "[]", "it listed what `{who}` is denied: {answer}");
            ensure!(!entries.is_empty(), "not audited");
            let named: Vec<&AuditEntry> =
                entries.iter().filter(|e| !e.customers.is_empty()).collect();
            ensure!(
                named.is_empty(),
                "audited as touching customers: {named:#?}"
            );
            Ok(())
        }
        Err(e) => {
            let reason = refusal(&e).ok_or_else(|| format!("failed, not refused: {e:?}"))?;
            audited_refusal(&entries, &reason)
        }
    }
}

#[test]
fn every_denial_is_audited_with_its_reason() {
    let mut w = World::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    for row in ENTRIES {
        let outcome = match row.rule {
            Rule::Policy => refused(&w, row, &as_(BARRED), BARRED, BARRED_REASON),
            Rule::PolicyFilters => filtered(&w, row, BARRED),
            Rule::Fixed(why) => refused(&w, row, &as_(UNPRIVILEGED), UNPRIVILEGED, why),
            Rule::OwnOnly => filtered(&w, row, UNPRIVILEGED),
            Rule::Open => continue,
        };
        checked += 1;
        if let Err(why) = outcome {
            failures.push(format!("{} ({:?}): {why}", row.name, row.rule));
            w = World::new();
        }
    }
    report("denial", checked, &failures);
}

#[test]
fn a_plugin_command_the_policy_denies_is_refused_and_audited() {
    let w = World::new();
    let mut failures = Vec::new();
    for row in PLUGIN_CALLS {
        let check = || -> Result<(), String> {
            let before = w.fingerprint();
            let mark = w.audit_mark();
            let result = w
                .engine
                .ingest(PLUGIN, (row.payload)(w.seed.tagged).as_bytes());
            let entries = w.audited_since(mark, PLUGIN_PRINCIPAL);
            let after = w.fingerprint();
            ensure!(before == after, "it changed: {}", changes(&before, &after));
            match (&result, row.kind) {
                (Err(e), _) => {
                    let reason = refusal(e).ok_or_else(|| format!("failed, not refused: {e:?}"))?;
                    ensure!(reason.contains(PLUGIN_REASON), "refused for `{reason}`");
                }
                (Ok(report), Some(_)) => return Err(format!("not refused: {report:?}")),
                (Ok(report), None) => ensure!(
                    report.log.iter().any(|l| l.ends_with("seen: none")),
                    "the lookup found the customer: {:?}",
                    report.log
                ),
            }
            match row.kind {
                Some(_) => audited_refusal(&entries, PLUGIN_REASON),
                // The call itself succeeds; the read it asked for is denied.
                None => {
                    ensure!(
                        denied(&entries, PLUGIN_REASON),
                        "no audit entry `Denied(..{PLUGIN_REASON}..)`; the plugin's: {entries:#?}"
                    );
                    Ok(())
                }
            }
        };
        if let Err(why) = check() {
            failures.push(format!("{}: {why}", row.name));
        }
    }
    report("plugin denial", PLUGIN_CALLS.len(), &failures);
}

// --- Property 3: a hidden field never reaches the caller ---------------------------

#[test]
fn hidden_fields_never_reach_the_caller() {
    let w = World::new();
    let peeker = as_(PEEKER);
    let mut failures = Vec::new();
    for row in ENTRIES {
        let result = (row.call)(&w.engine, &peeker, &w.seed);
        let text = format!("{result:?}");
        let leaks = leaked(&text);
        if !leaks.is_empty() {
            failures.push(format!("{}: {leaks:?} in {text}", row.name));
        } else if let Some(shown) = row.shows
            && !result.as_ref().is_ok_and(|a| a.contains(shown))
        {
            failures.push(format!(
                "{}: should read, showing `{shown}`: {text}",
                row.name
            ));
        }
    }
    report("hidden fields", ENTRIES.len(), &failures);
}

#[test]
fn hidden_fields_never_reach_a_plugin() {
    let w = World::new();
    // Granted in full what the policy hides from plugins.
    for field in ["id_number", "note"] {
        assert!(
            w.seed.grant.fields.contains_key(field),
            "{:?}",
            w.seed.grant
        );
    }
    let mut failures = Vec::new();
    let rows = 1 + EVENTS.len();
    let from = w.plugin_log().len();
    let lookup = format!("lookup {}", w.seed.main);
    let report_text = format!("{:?}", w.engine.ingest(PLUGIN, lookup.as_bytes()));
    let log = w.plugin_log()[from..].join("\n");
    let leaks = leaked(&format!("{report_text}\n{log}"));
    if !leaks.is_empty() {
        failures.push(format!("lookup: {leaks:?} in {report_text}\n{log}"));
    } else if !report_text.contains("seen: name=[redacted]") {
        // The name in full, kept out of its log as a value shown to the
        // call.
        failures.push(format!("lookup: should see the customer: {report_text}"));
    }
    for row in EVENTS {
        let from = w.plugin_log().len();
        (row.cause)(&w);
        let lines = event_lines(&w, from, row.kind);
        let leaks = leaked(&lines.join("\n"));
        if lines.is_empty() {
            failures.push(format!("{}: not delivered", row.kind.as_str()));
        } else if !leaks.is_empty() {
            failures.push(format!("{}: {leaks:?} in {lines:?}", row.kind.as_str()));
        }
    }
    report("hidden fields, plugins", rows, &failures);
}
