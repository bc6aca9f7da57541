//! Access policies end to end: the default pack's decisions for each role
//! (reads, searches, writes) as tables, the audit entry of every decision,
//! installing packs and refusing bad ones, failing closed on a broken
//! policy, and the `custodian policy` commands.
//!
//! Dormant customers: the public API cannot make a customer dormant
//! (`CustomerUpdate` sets fields and the owner only, imports create active
//! customers), so the dormant rule is checked through case files only
//! (`dormant_customers_are_decided_by_cases_only`).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use custodian::{
    AuditEntry, Channel, Context, Customer, CustomerId, CustomerUpdate, Denied, Direction, Engine,
    Error, NewFollowUp, NewInteraction, Outcome, PolicyError, PolicyPack, PrincipalKind,
    PrincipalUpdate, Query, Schema, Shown,
};

use crate::{Fixture, admin, li_na};

// --- Expectations that follow adjustments of the default pack ------------
// The default pack is being changed in two small ways; these constants say
// what the tests expect, so that a change of mind is a one-line edit.

/// Part of the refusal a sales rep gets when creating a customer for
/// another owner.
const SALES_CREATE_FOR_OTHER: &str = "for themselves";
/// Whether support sees interaction summaries and bodies and follow-up
/// notes (`.show(["summary", "body", "note"])` in the support rule).
const SUPPORT_SEES_TEXT: bool = true;

// --- Shared fixtures -------------------------------------------------------

/// One principal per role of the default pack (two sales reps, two
/// managers): name, roles, team attribute. `admin` exists from the start.
const STAFF: &[(&str, &[&str], Option<&str>)] = &[
    ("wang", &["sales"], Some("east")),
    ("zhao", &["sales"], Some("east")),
    ("chen", &["manager"], Some("east")),
    ("zhou", &["manager"], Some("west")),
    ("sun", &["support"], None),
    ("qian", &["analyst"], None),
    ("he", &["steward"], None),
];

fn staffed(fx: &Fixture) -> Engine {
    let engine = fx.open();
    for &(name, roles, team) in STAFF {
        engine
            .add_principal(&admin(), name, PrincipalKind::User, roles)
            .unwrap();
        if let Some(team) = team {
            let update = PrincipalUpdate {
                roles: None,
                set_attributes: [("team".into(), team.into())].into(),
                remove_attributes: vec![],
            };
            engine.update_principal(&admin(), name, &update).unwrap();
        }
    }
    engine
}

/// `li_na()` with public fields too, owned by `wang` (team east); created
/// by an admin.
fn sample(engine: &Engine) -> CustomerId {
    let new = li_na()
        .field("company", "Acme Trading")
        .field("tags", "vip")
        .owner("wang");
    engine.create_customer(&admin(), new).unwrap()
}

/// The sequence number of the last audit entry.
fn audit_mark(engine: &Engine) -> u64 {
    engine.audit_checkpoint().unwrap().seq
}

/// The audit entries after `mark`, but for the reads of the audit itself.
fn audited_since(engine: &Engine, mark: u64) -> Vec<AuditEntry> {
    engine
        .audit_tail(&admin(), 200)
        .unwrap()
        .into_iter()
        .filter(|e| e.seq > mark && e.action != "audit.read")
        .collect()
}

/// What one call should come to.
#[derive(Clone, Copy, Debug)]
enum Act<'a> {
    Allow,
    /// Refused, the reason containing this text.
    Deny(&'a str),
}

/// Runs `op` as `who` and checks its result against `expect`, and that it
/// left exactly one audit entry, `action` by `who`, whose outcome is `Ok`
/// or `Denied` with the very reason the caller got. Returns the value of an
/// allowed call.
fn audited<T: Debug>(
    engine: &Engine,
    label: &str,
    who: &str,
    action: &str,
    expect: Act<'_>,
    op: impl FnOnce() -> custodian::Result<T>,
) -> Option<T> {
    let mark = audit_mark(engine);
    let result = op();
    let entries = audited_since(engine, mark);
    assert_eq!(
        entries.len(),
        1,
        "{label}: one audit entry, got {entries:#?}"
    );
    let entry = &entries[0];
    assert_eq!(entry.action, action, "{label}: {entry:?}");
    assert_eq!(entry.actor, who, "{label}: {entry:?}");
    match (expect, result) {
        (Act::Allow, Ok(value)) => {
            assert_eq!(entry.outcome, Outcome::Ok, "{label}");
            Some(value)
        }
        (Act::Deny(needle), Err(Error::Denied(denied))) => {
            let reason = denied.to_string();
            assert!(
                reason.contains(needle),
                "{label}: reason `{reason}` lacks `{needle}`"
            );
            assert_eq!(entry.outcome, Outcome::Denied(reason), "{label}");
            None
        }
        (expect, got) => panic!("{label}: expected {expect:?}, got {got:?}"),
    }
}

// --- 1. Reads and searches per role ---------------------------------------

/// Each visible field: how it is shown and its value.
type Fields = &'static [(&'static str, Shown, &'static str)];

const EVERYTHING: Fields = &[
    ("address", Shown::Full, "Chaoyang District, Beijing"),
    ("company", Shown::Full, "Acme Trading"),
    ("email", Shown::Full, "li.na@example.com"),
    ("id_number", Shown::Full, "110105198803120217"),
    ("name", Shown::Full, "Li Na"),
    ("phone", Shown::Full, "+8613800138000"),
    ("tags", Shown::Full, "vip"),
];

/// Sales owner and team manager: all but the sensitive field in full.
const ID_MASKED: Fields = &[
    ("address", Shown::Full, "Chaoyang District, Beijing"),
    ("company", Shown::Full, "Acme Trading"),
    ("email", Shown::Full, "li.na@example.com"),
    ("id_number", Shown::Masked, "1101****0217"),
    ("name", Shown::Full, "Li Na"),
    ("phone", Shown::Full, "+8613800138000"),
    ("tags", Shown::Full, "vip"),
];

/// Support: personal fields masked, the sensitive one absent.
const PERSONAL_MASKED: Fields = &[
    ("address", Shown::Masked, "Chaoya****"),
    ("company", Shown::Full, "Acme Trading"),
    ("email", Shown::Masked, "l***@example.com"),
    ("name", Shown::Masked, "L****"),
    ("phone", Shown::Masked, "138****8000"),
    ("tags", Shown::Full, "vip"),
];

/// Analysts: public fields only.
const PUBLIC_ONLY: Fields = &[
    ("company", Shown::Full, "Acme Trading"),
    ("tags", Shown::Full, "vip"),
];

#[derive(Debug)]
enum View {
    Fields(Fields),
    /// Refused, the reason containing this text (`{id}` is the customer's id).
    Denied(&'static str),
}

/// Who reads the sample customer, for which purpose, and what they get.
const READERS: &[(&str, &str, View)] = &[
    ("wang", "sales_contact", View::Fields(ID_MASKED)),
    (
        "zhao",
        "sales_contact",
        View::Denied("customer {id} belongs to `wang`: sales see only their own customers"),
    ),
    ("chen", "review", View::Fields(ID_MASKED)),
    (
        "zhou",
        "review",
        View::Denied("customer {id} is in team `east`, not `west`"),
    ),
    ("sun", "service", View::Fields(PERSONAL_MASKED)),
    ("qian", "analytics", View::Fields(PUBLIC_ONLY)),
    ("admin", "complaint_investigation", View::Fields(EVERYTHING)),
    ("admin", "", View::Denied("stated purpose")),
    (
        "he",
        "retention_review",
        View::Denied("role(s) `steward` may not `read` customers"),
    ),
];

/// A customer as shown: field → (how, value).
fn shown(customer: &Customer) -> BTreeMap<String, (Shown, String)> {
    assert!(
        customer
            .masked
            .iter()
            .all(|f| customer.fields.contains_key(f)),
        "masked names a field not shown: {customer:?}"
    );
    customer
        .fields
        .iter()
        .map(|(name, value)| {
            assert!(!value.is_empty(), "`{name}` is shown empty, not absent");
            (name.clone(), (customer.shown(name).unwrap(), value.clone()))
        })
        .collect()
}

fn expected(fields: Fields) -> BTreeMap<String, (Shown, String)> {
    fields
        .iter()
        .map(|(name, how, value)| (name.to_string(), (*how, value.to_string())))
        .collect()
}

fn check_read(engine: &Engine, id: CustomerId, (who, purpose, view): &(&str, &str, View)) {
    let label = format!("{who} ({purpose:?})");
    let ctx = Context::new(*who, *purpose);
    let read = || engine.customer(&ctx, id);
    match *view {
        View::Fields(fields) => {
            let customer = audited(engine, &label, who, "customer.read", Act::Allow, read).unwrap();
            assert_eq!(shown(&customer), expected(fields), "{label}");
        }
        View::Denied(reason) => {
            let reason = reason.replace("{id}", &id.to_string());
            audited(
                engine,
                &label,
                who,
                "customer.read",
                Act::Deny(&reason),
                read,
            );
        }
    }

    // A search by phone shows what a read shows; a refused customer is
    // left out of the result, not reported as an error. A principal shown
    // no phone may not search by it at all: a hit would say who holds it.
    let by_phone = engine.find_customers(&ctx, &Query::field("phone", "138 0013 8000"), 10);
    let sees_phone =
        matches!(*view, View::Fields(f) if f.iter().any(|(name, ..)| *name == "phone"));
    match *view {
        View::Fields(fields) if sees_phone => {
            let by_phone = by_phone.unwrap();
            assert_eq!(by_phone.len(), 1, "{label}: search by phone");
            assert_eq!(by_phone[0].id, id);
            assert_eq!(shown(&by_phone[0]), expected(fields), "{label}: search");
        }
        View::Fields(_) => assert!(
            matches!(by_phone, Err(Error::Denied(_))),
            "{label}: {by_phone:?}"
        ),
        View::Denied(_) => assert!(
            by_phone.is_ok_and(|found| found.is_empty()),
            "{label}: search by phone"
        ),
    }

    // A hit on a sensitive field would confirm the value searched for:
    // only those who see it in full find the customer by it; the others
    // find nothing, or are refused the search.
    let sees_id_number = matches!(*view, View::Fields(f)
        if f.iter().any(|(name, how, _)| *name == "id_number" && *how == Shown::Full));
    let by_id = engine.find_customers(&ctx, &Query::field("id_number", "110105198803120217"), 10);
    match (sees_id_number, by_id) {
        (true, Ok(found)) => assert_eq!(
            found.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![id],
            "{label}: search by id_number"
        ),
        (false, Ok(found)) => assert!(found.is_empty(), "{label}: search by id_number"),
        (false, Err(Error::Denied(_))) => {}
        (_, other) => panic!("{label}: search by id_number: {other:?}"),
    }
}

#[test]
fn each_role_reads_and_searches_as_the_default_policy_says() {
    let fx = Fixture::new();
    let engine = staffed(&fx);
    let id = sample(&engine);
    for reader in READERS {
        check_read(&engine, id, reader);
    }
    // The table covers a sensitive-field hit, so the rule can fail.
    assert!(
        READERS
            .iter()
            .any(|r| matches!(r.2, View::Fields(f) if f == EVERYTHING))
    );
}

// --- 2. Writes per role -----------------------------------------------------

/// How a principal may read a customer's interactions.
#[derive(Clone, Copy, Debug)]
enum Texts {
    /// Listed; summaries and bodies shown (true) or absent (false).
    Listed(bool),
    Denied(&'static str),
}

struct Writer {
    who: &'static str,
    purpose: &'static str,
    log: Act<'static>,
    read: Texts,
    /// A follow-up of the customer assigned to `wang`: not listed (`None`),
    /// or listed with its note shown (`Some(true)`) or not.
    follow_up: Option<bool>,
    update: Act<'static>,
    delete: Act<'static>,
}

const OWNED_BY_WANG: &str = "belongs to `wang`";
const OTHER_TEAM: &str = "not `west`";

const WRITERS: &[Writer] = &[
    Writer {
        who: "wang",
        purpose: "sales_contact",
        log: Act::Allow,
        read: Texts::Listed(true),
        follow_up: Some(true),
        update: Act::Allow,
        delete: Act::Allow,
    },
    Writer {
        who: "zhao",
        purpose: "sales_contact",
        log: Act::Deny(OWNED_BY_WANG),
        read: Texts::Denied(OWNED_BY_WANG),
        follow_up: None,
        update: Act::Deny(OWNED_BY_WANG),
        delete: Act::Deny(OWNED_BY_WANG),
    },
    Writer {
        who: "chen",
        purpose: "review",
        log: Act::Allow,
        read: Texts::Listed(true),
        follow_up: Some(true),
        update: Act::Allow,
        delete: Act::Deny("managers may not delete customers"),
    },
    Writer {
        who: "zhou",
        purpose: "review",
        log: Act::Deny(OTHER_TEAM),
        read: Texts::Denied(OTHER_TEAM),
        follow_up: None,
        update: Act::Deny(OTHER_TEAM),
        delete: Act::Deny("managers may not delete customers"),
    },
    Writer {
        who: "sun",
        purpose: "service",
        log: Act::Allow,
        read: Texts::Listed(SUPPORT_SEES_TEXT),
        follow_up: Some(SUPPORT_SEES_TEXT),
        update: Act::Deny("role(s) `support` may not `update` customers"),
        delete: Act::Deny("role(s) `support` may not `delete` customers"),
    },
    Writer {
        who: "qian",
        purpose: "analytics",
        log: Act::Deny("role(s) `analyst` may not `interactions.log` customers"),
        read: Texts::Denied("role(s) `analyst` may not `interactions.read` customers"),
        follow_up: None,
        update: Act::Deny("role(s) `analyst` may not `update` customers"),
        delete: Act::Deny("role(s) `analyst` may not `delete` customers"),
    },
    Writer {
        who: "admin",
        purpose: "complaint_investigation",
        log: Act::Allow,
        read: Texts::Listed(true),
        follow_up: Some(true),
        update: Act::Allow,
        delete: Act::Allow,
    },
    // Only reading needs a stated purpose.
    Writer {
        who: "admin",
        purpose: "",
        log: Act::Allow,
        read: Texts::Denied("stated purpose"),
        follow_up: None,
        update: Act::Allow,
        delete: Act::Allow,
    },
    Writer {
        who: "he",
        purpose: "retention_review",
        log: Act::Deny("role(s) `steward` may not `interactions.log` customers"),
        read: Texts::Denied("role(s) `steward` may not `interactions.read` customers"),
        follow_up: None,
        update: Act::Deny("role(s) `steward` may not `update` customers"),
        delete: Act::Deny("role(s) `steward` may not `delete` customers"),
    },
];

const SUMMARY: &str = "asked about volume pricing";
const BODY: &str = "wants a quote for 40 units by Friday";
const NOTE: &str = "send the quote";

/// Runs one row on a customer of its own: log, read interactions, list
/// follow-ups, update, delete; each checked against the row and against
/// the data afterwards, as an admin sees it.
fn check_writes(engine: &Engine, row: &Writer) {
    let label = |what: &str| format!("{} ({:?}) {what}", row.who, row.purpose);
    let id = sample(engine);
    let wang = Context::new("wang", "sales_contact");
    let mut logged = NewInteraction::new(Channel::Call, Direction::Inbound, SUMMARY);
    logged.body = Some(BODY.into());
    engine.log_interaction(&wang, id, logged.clone()).unwrap();
    let due = chrono::Utc::now();
    let follow_up = NewFollowUp {
        customer: id,
        due,
        assignee: Some("wang".into()),
        note: NOTE.into(),
    };
    engine.add_follow_up(&wang, follow_up).unwrap();
    let ctx = Context::new(row.who, row.purpose);
    let inspector = Context::new("admin", "test_inspection");
    let count_interactions = || engine.interactions(&inspector, id).unwrap().len();

    audited(
        engine,
        &label("log"),
        row.who,
        "interaction.log",
        row.log,
        || engine.log_interaction(&ctx, id, logged.clone()),
    );
    let expected_count = if matches!(row.log, Act::Allow) { 2 } else { 1 };
    assert_eq!(count_interactions(), expected_count, "{}", label("log"));

    let read = || engine.interactions(&ctx, id);
    match row.read {
        Texts::Listed(text) => {
            let list = audited(
                engine,
                &label("read"),
                row.who,
                "interaction.list",
                Act::Allow,
                read,
            )
            .unwrap();
            assert_eq!(list.len(), expected_count, "{}", label("read"));
            for i in &list {
                let (summary, body) = (i.summary.as_deref(), i.body.as_deref());
                let want = (text.then_some(SUMMARY), text.then_some(BODY));
                assert_eq!((summary, body), want, "{}", label("read texts"));
            }
        }
        Texts::Denied(needle) => {
            audited(
                engine,
                &label("read"),
                row.who,
                "interaction.list",
                Act::Deny(needle),
                read,
            );
        }
    }

    let listed: Vec<_> = engine
        .follow_ups_due(&ctx, due + chrono::Duration::days(1), None)
        .unwrap()
        .into_iter()
        .filter(|f| f.customer == id)
        .collect();
    let got = match listed.as_slice() {
        [] => None,
        [f] => Some(match f.note.as_deref() {
            Some(note) => {
                assert_eq!(note, NOTE);
                true
            }
            None => false,
        }),
        more => panic!("{}: {more:?}", label("follow-ups")),
    };
    assert_eq!(got, row.follow_up, "{}", label("follow-ups"));

    let update = CustomerUpdate::new().set("company", "Changed Ltd");
    audited(
        engine,
        &label("update"),
        row.who,
        "customer.update",
        row.update,
        || engine.update_customer(&ctx, id, update.clone()),
    );
    let company = engine.customer(&inspector, id).unwrap().fields["company"].clone();
    let want = if matches!(row.update, Act::Allow) {
        "Changed Ltd"
    } else {
        "Acme Trading"
    };
    assert_eq!(company, want, "{}", label("update"));

    audited(
        engine,
        &label("delete"),
        row.who,
        "customer.delete",
        row.delete,
        || engine.delete_customer(&ctx, id),
    );
    let after = engine.customer(&inspector, id);
    match row.delete {
        Act::Allow => assert!(matches!(after, Err(Error::NotFound(_))), "{after:?}"),
        Act::Deny(_) => assert!(after.is_ok(), "{}: {after:?}", label("delete")),
    }
}

#[test]
fn each_role_writes_as_the_default_policy_says() {
    let fx = Fixture::new();
    let engine = staffed(&fx);
    for row in WRITERS {
        check_writes(&engine, row);
    }
}

/// Who may create a customer for which owner.
const CREATORS: &[(&str, &str, Act<'static>)] = &[
    ("wang", "wang", Act::Allow),
    ("wang", "zhao", Act::Deny(SALES_CREATE_FOR_OTHER)),
    // A manager may create for an owner of their team.
    ("chen", "wang", Act::Allow),
    ("zhou", "wang", Act::Deny(OTHER_TEAM)),
    (
        "sun",
        "wang",
        Act::Deny("role(s) `support` may not `create` customers"),
    ),
    (
        "qian",
        "wang",
        Act::Deny("role(s) `analyst` may not `create` customers"),
    ),
    (
        "he",
        "wang",
        Act::Deny("role(s) `steward` may not `create` customers"),
    ),
    ("admin", "wang", Act::Allow),
];

#[test]
fn each_role_creates_customers_as_the_default_policy_says() {
    let fx = Fixture::new();
    let engine = staffed(&fx);
    for &(who, owner, expect) in CREATORS {
        let label = format!("{who} creates for {owner}");
        let new = li_na().owner(owner);
        let ctx = Context::new(who, "onboarding");
        let created = audited(&engine, &label, who, "customer.create", expect, || {
            engine.create_customer(&ctx, new)
        });
        if let Some(id) = created {
            let record = engine
                .customer(&Context::new("admin", "check"), id)
                .unwrap();
            assert_eq!(record.owner, owner, "{label}");
        }
    }
    // Only the allowed rows created a customer.
    let allowed = CREATORS
        .iter()
        .filter(|c| matches!(c.2, Act::Allow))
        .count();
    assert_eq!(engine.count_customers(&admin()).unwrap(), allowed as u64);
}

// --- 3. Every denial is audited --------------------------------------------

type Op = fn(&Engine, CustomerId) -> custodian::Result<()>;

/// Refusals of every kind of call, with the audit action each must leave.
const DENIALS: &[(&str, &str, &str, Op)] = &[
    ("zhao", "customer.read", "belongs to `wang`", |e, id| {
        e.customer(&Context::new("zhao", "x"), id).map(drop)
    }),
    ("nobody", "customer.read", "unknown principal", |e, id| {
        e.customer(&Context::new("nobody", "x"), id).map(drop)
    }),
    ("lonely", "customer.count", "has no role", |e, _| {
        e.count_customers(&Context::new("lonely", "x")).map(drop)
    }),
    ("zhao", "customer.update", "belongs to `wang`", |e, id| {
        let update = CustomerUpdate::new().set("company", "X");
        e.update_customer(&Context::new("zhao", "x"), id, update)
    }),
    // Handing a customer over needs consent for the new owner too.
    ("chen", "customer.update", "not `east`", |e, id| {
        let update = CustomerUpdate::new().owner("zhou");
        e.update_customer(&Context::new("chen", "x"), id, update)
    }),
    (
        "chen",
        "customer.delete",
        "managers may not delete",
        |e, id| e.delete_customer(&Context::new("chen", "x"), id),
    ),
    (
        "qian",
        "interaction.log",
        "may not `interactions.log`",
        |e, id| {
            let new = NewInteraction::new(Channel::Email, Direction::Outbound, "hi");
            e.log_interaction(&Context::new("qian", "x"), id, new)
                .map(drop)
        },
    ),
    ("admin", "interaction.list", "stated purpose", |e, id| {
        e.interactions(&Context::new("admin", ""), id).map(drop)
    }),
    (
        "qian",
        "followup.create",
        "may not `followups.write`",
        |e, id| {
            let new = NewFollowUp {
                customer: id,
                due: chrono::Utc::now(),
                assignee: None,
                note: "n".into(),
            };
            e.add_follow_up(&Context::new("qian", "x"), new).map(drop)
        },
    ),
    ("zhao", "customer.create", "line 1", |e, _| {
        // An owner who is no principal: refused before the policy is asked.
        let new = li_na().owner("nobody-at-all");
        e.create_customer(&Context::new("zhao", "x"), new).map(drop)
    }),
    ("sun", "policy.install", "only admins", |e, _| {
        let pack = PolicyPack::default_pack();
        e.install_policy(&Context::new("sun", "x"), &pack).map(drop)
    }),
    ("sun", "audit.read", "only admins", |e, _| {
        e.audit_tail(&Context::new("sun", "x"), 1).map(drop)
    }),
];

#[test]
fn every_denial_is_audited_with_its_reason() {
    let fx = Fixture::new();
    let engine = staffed(&fx);
    engine
        .add_principal(&admin(), "lonely", PrincipalKind::User, &[])
        .unwrap();
    let id = sample(&engine);
    for &(who, action, needle, op) in DENIALS {
        let label = format!("{who} {action}");
        let mark = audit_mark(&engine);
        let err = op(&engine, id).unwrap_err();
        let Error::Denied(denied) = err else {
            panic!("{label}: not a denial: {err:?}");
        };
        let reason = denied.to_string();
        // By actor and action: the admin's own `audit.read` entries differ.
        let entries: Vec<AuditEntry> = engine
            .audit_tail(&admin(), 200)
            .unwrap()
            .into_iter()
            .filter(|e| e.seq > mark && e.actor == who && e.action == action)
            .collect();
        assert_eq!(entries.len(), 1, "{label}: {entries:#?}");
        let entry = &entries[0];
        assert_eq!(entry.outcome, Outcome::Denied(reason.clone()), "{label}");
        let where_ = format!("{} {reason}", entry.target.clone().unwrap_or_default());
        assert!(
            where_.contains(needle),
            "{label}: `{where_}` lacks `{needle}`"
        );
    }
    assert!(engine.verify_audit(None).unwrap().entries > DENIALS.len() as u64);
}

// --- Dormant customers: through case files only ----------------------------

/// (principal's roles, action, expected) on a dormant customer of `wang`.
const DORMANT: &[(&[&str], &str, &str)] = &[
    (&["sales"], "read", "deny"),
    (&["manager"], "update", "deny"),
    (&["support"], "interactions.read", "deny"),
    (&["analyst"], "search", "deny"),
    (&["admin"], "read", "deny"),
    (&["admin"], "delete", "deny"),
    (&["steward"], "read", "allow"),
    (&["steward"], "delete", "allow"),
];

#[test]
fn dormant_customers_are_decided_by_cases_only() {
    let mut cases = String::new();
    for (i, (roles, action, expect)) in DORMANT.iter().enumerate() {
        let roles: Vec<String> = roles.iter().map(|r| format!("{r:?}")).collect();
        let reason = match *expect {
            "deny" => "reason_contains = \"only a data steward\"\n",
            _ => "fields = { name = \"full\", id_number = \"hidden\" }\n",
        };
        cases += &format!(
            "[[case]]\nname = \"dormant {i}\"\n\
             principal = {{ id = \"wang\", roles = [{}], attributes = {{ team = \"east\" }} }}\n\
             action = \"{action}\"\npurpose = \"audit\"\n\
             customer = {{ id = 9, owner = \"wang\", team = \"east\", status = \"dormant\" }}\n\
             expect = \"{expect}\"\n{reason}\n",
            roles.join(", ")
        );
    }
    let report = PolicyPack::default_pack()
        .test_cases(&cases, &Schema::default())
        .unwrap();
    assert_eq!(report.failures, vec![], "{cases}");
    assert_eq!(report.passed, DORMANT.len());
}

// --- 4. Installing packs -----------------------------------------------------

/// The default pack's files, to edit.
struct Sources {
    scripts: Vec<(String, String)>,
    roles: String,
    cases: Option<String>,
}

impl Sources {
    fn default_pack() -> Sources {
        let mut sources = Sources {
            scripts: Vec::new(),
            roles: String::new(),
            cases: None,
        };
        for (name, text) in PolicyPack::default_pack().files() {
            match name {
                "roles.toml" => sources.roles = text.to_string(),
                "cases.toml" => sources.cases = Some(text.to_string()),
                _ => sources.scripts.push((name.to_string(), text.to_string())),
            }
        }
        sources
    }

    fn pack(self) -> PolicyPack {
        PolicyPack::from_sources(self.scripts, self.roles, self.cases).unwrap()
    }

    /// Edits the script `name`; the edit must change it.
    fn edit_script(mut self, name: &str, from: &str, to: &str) -> Sources {
        let script = self.scripts.iter_mut().find(|(n, _)| n == name).unwrap();
        assert!(script.1.contains(from), "`{from}` not in {name}");
        script.1 = script.1.replacen(from, to, 1);
        self
    }

    fn edit_cases(mut self, from: &str, to: &str) -> Sources {
        let cases = self.cases.as_mut().unwrap();
        assert!(cases.contains(from), "`{from}` not in cases.toml");
        *cases = cases.replacen(from, to, 1);
        self
    }

    fn add_cases(mut self, more: &str) -> Sources {
        self.cases.as_mut().unwrap().push_str(more);
        self
    }

    /// Drops the `[roles.NAME]` table.
    fn without_role(mut self, name: &str) -> Sources {
        let header = format!("[roles.{name}]");
        let start = self.roles.find(&header).unwrap();
        let rest = &self.roles[start + header.len()..];
        let end = rest
            .find("[roles.")
            .map_or(self.roles.len(), |i| start + header.len() + i);
        self.roles.replace_range(start..end, "");
        self
    }
}

/// The default pack, but support sees phone numbers in full.
fn support_sees_phones() -> PolicyPack {
    Sources::default_pack()
        .edit_script(
            "access.rhai",
            "allow(\"support\")",
            "allow(\"support\").show(\"phone\")",
        )
        .edit_cases(
            "name = \"masked\", phone = \"masked\"",
            "name = \"masked\", phone = \"full\"",
        )
        .add_cases(
            "\n[[case]]\nname = \"support sees phone numbers in full\"\n\
             principal = { id = \"sun\", roles = [\"support\"] }\naction = \"search\"\n\
             customer = { id = 1, owner = \"wang\" }\nexpect = \"allow\"\n\
             fields = { phone = \"full\", email = \"masked\", id_number = \"hidden\" }\n",
        )
        .pack()
}

/// How support sees the sample's phone, as the policy in force decides.
fn support_phone(engine: &Engine, id: CustomerId) -> (Option<Shown>, String) {
    let view = engine
        .customer(&Context::new("sun", "service"), id)
        .unwrap();
    assert_eq!(view.shown("name"), Some(Shown::Masked));
    assert_eq!(view.get("id_number"), None);
    (view.shown("phone"), view.fields["phone"].clone())
}

struct Refused {
    what: &'static str,
    who: &'static str,
    pack: fn() -> PolicyPack,
    error: fn(&Error) -> bool,
    /// Texts the error message must contain.
    message: &'static [&'static str],
    /// The audit outcome of a refusal made inside the install transaction.
    audited: Option<fn(&Outcome) -> bool>,
}

const REFUSED: &[Refused] = &[
    Refused {
        what: "a script that does not compile",
        who: "admin",
        pack: || {
            let mut s = Sources::default_pack();
            s.scripts.push((
                "broken.rhai".into(),
                "fn helper(x) {\n  let y = ;\n  y\n}\n".into(),
            ));
            s.pack()
        },
        error: |e| {
            matches!(e, Error::Policy(PolicyError::Compile { file, line: 2, .. })
                if file == "broken.rhai")
        },
        message: &["`broken.rhai`", "line 2"],
        audited: None,
    },
    Refused {
        what: "a pack without authorize",
        who: "admin",
        pack: || {
            Sources::default_pack()
                .edit_script("access.rhai", "fn authorize(req)", "fn authorise(req)")
                .pack()
        },
        error: |e| matches!(e, Error::Policy(PolicyError::MissingAuthorize)),
        message: &["fn authorize(req)"],
        audited: None,
    },
    Refused {
        what: "a pack failing its own cases",
        who: "admin",
        pack: || {
            Sources::default_pack()
                .add_cases(
                    "\n[[case]]\nname = \"deliberately wrong: support sees ID numbers\"\n\
                     principal = { id = \"sun\", roles = [\"support\"] }\naction = \"read\"\n\
                     customer = { id = 1, owner = \"wang\" }\nexpect = \"allow\"\n\
                     fields = { id_number = \"full\" }\n",
                )
                .pack()
        },
        error: |e| matches!(e, Error::Policy(PolicyError::CasesFailed(_))),
        message: &[
            "deliberately wrong: support sees ID numbers",
            "field `id_number`: expected full, got hidden",
        ],
        audited: None,
    },
    Refused {
        what: "a pack dropping a role a principal holds",
        who: "admin",
        pack: || Sources::default_pack().without_role("analyst").pack(),
        error: |e| matches!(e, Error::Policy(PolicyError::Roles(_))),
        message: &["role `analyst` is held by `qian`"],
        audited: Some(|o| matches!(o, Outcome::Failed(m) if m.contains("`analyst`"))),
    },
    Refused {
        what: "a pack without the admin role",
        who: "admin",
        pack: || Sources::default_pack().without_role("admin").pack(),
        error: |e| matches!(e, Error::Policy(PolicyError::Roles(_))),
        message: &["must define the `admin` role"],
        audited: None,
    },
    Refused {
        what: "a good pack installed by a non-admin",
        who: "sun",
        pack: support_sees_phones,
        error: |e| matches!(e, Error::Denied(_)),
        message: &["only admins may"],
        audited: Some(|o| matches!(o, Outcome::Denied(m) if m.contains("only admins"))),
    },
];

#[test]
fn bad_packs_are_refused_and_the_running_policy_stays() {
    let fx = Fixture::new();
    let engine = staffed(&fx);
    let id = sample(&engine);
    let before = support_phone(&engine, id);
    assert_eq!(before, (Some(Shown::Masked), "138****8000".to_string()));
    for refused in REFUSED {
        let label = refused.what;
        let mark = audit_mark(&engine);
        let err = engine
            .install_policy(&Context::new(refused.who, "x"), &(refused.pack)())
            .unwrap_err();
        assert!((refused.error)(&err), "{label}: {err:?}");
        let message = err.to_string();
        for needle in refused.message {
            assert!(
                message.contains(needle),
                "{label}: `{message}` lacks `{needle}`"
            );
        }
        if let Some(outcome) = refused.audited {
            let entries = audited_since(&engine, mark);
            let entry = entries.iter().find(|e| e.action == "policy.install");
            let entry = entry.unwrap_or_else(|| panic!("{label}: not audited: {entries:?}"));
            assert_eq!(entry.actor, refused.who, "{label}");
            assert!(outcome(&entry.outcome), "{label}: {entry:?}");
        }
        // Nothing was installed: same version, same decisions.
        assert_eq!(
            engine.installed_policy(&admin()).unwrap().version,
            1,
            "{label}"
        );
        assert_eq!(support_phone(&engine, id), before, "{label}");
    }
    // No refusal left a successful install entry.
    let installs: Vec<_> = engine
        .audit_tail(&admin(), 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "policy.install" && e.outcome == Outcome::Ok)
        .collect();
    assert_eq!(installs.len(), 1, "only version 1: {installs:?}");
}

#[test]
fn a_good_pack_installs_as_the_next_version_at_once_and_for_good() {
    let fx = Fixture::new();
    let engine = staffed(&fx);
    let id = sample(&engine);
    let first = engine.installed_policy(&admin()).unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(first.pack, PolicyPack::default_pack());

    let pack = support_sees_phones();
    let mark = audit_mark(&engine);
    let installed = engine.install_policy(&admin(), &pack).unwrap();
    assert_eq!(installed.version, 2);
    assert_eq!(installed.installed_by, "admin");
    let entries = audited_since(&engine, mark);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        (
            entries[0].action.as_str(),
            entries[0].actor.as_str(),
            entries[0].target.as_deref(),
            &entries[0].outcome
        ),
        (
            "policy.install",
            "admin",
            Some("policy version 2"),
            &Outcome::Ok
        )
    );
    // In force at once, for reads and searches alike.
    let full = (Some(Shown::Full), "+8613800138000".to_string());
    assert_eq!(support_phone(&engine, id), full);
    let found = engine
        .find_customers(
            &Context::new("sun", "service"),
            &Query::field("phone", "13800138000"),
            5,
        )
        .unwrap();
    assert_eq!(found[0].shown("phone"), Some(Shown::Full));

    drop(engine);
    let engine = fx.open();
    let current = engine.installed_policy(&admin()).unwrap();
    assert_eq!(
        (current.version, current.installed_by.as_str()),
        (2, "admin")
    );
    assert_eq!(current.pack, pack);
    assert_eq!(support_phone(&engine, id), full);
}

/// `Engine::install_policy` compiles the pack and runs its cases before it
/// checks that the caller is an admin (engine/src/engine/policies.rs), so a
/// non-admin's attempt with a bad pack gets the compiler's or the cases'
/// verdict instead of a denial, and leaves no audit entry at all.
#[test]
fn a_non_admin_installing_a_bad_pack_is_denied_and_audited() {
    let fx = Fixture::new();
    let engine = staffed(&fx);
    let bad = PolicyPack::from_sources(
        vec![(
            "broken.rhai".into(),
            "fn authorize(req) {\n  let = ;\n}\n".into(),
        )],
        Sources::default_pack().roles,
        None,
    )
    .unwrap();
    let mark = audit_mark(&engine);
    let err = engine
        .install_policy(&Context::new("sun", "x"), &bad)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Denied(Denied::NotPermitted { who, .. }) if who == "admins"),
        "{err:?}"
    );
    let entries = audited_since(&engine, mark);
    assert!(
        entries
            .iter()
            .any(|e| e.action == "policy.install" && matches!(e.outcome, Outcome::Denied(_))),
        "{entries:?}"
    );
}

// --- 5. Failing closed through the engine -----------------------------------

/// Script bodies run only for `mallory`; everyone else is allowed.
const ATTACKS: &[(&str, &str)] = &[
    ("endless loop", "loop {}"),
    ("unbounded recursion", "down(0)"),
    ("huge string", "let s = \"x\"; loop { s += s; }"),
    ("huge array", "let a = [1]; loop { a += a; }"),
    ("division by zero", "let z = 0; let q = 1 / z;"),
    ("thrown error", "throw \"boom\";"),
    ("missing function (no sleep)", "sleep(10);"),
    ("not a decision", "return 42;"),
    (
        "slow operations",
        "let s = \"x\"; s.pad(60000, \"y\"); loop { let t = s.to_upper(); }",
    ),
];

fn attack_pack(body: &str) -> PolicyPack {
    let script = format!(
        "fn down(n) {{ down(n + 1) }}\n\
         fn authorize(req) {{\n  if req.principal.id == \"mallory\" {{\n    {body}\n  }}\n  \
         allow(\"everyone but mallory\")\n}}\n"
    );
    let roles = Sources::default_pack().roles;
    PolicyPack::from_sources(vec![("attack.rhai".into(), script)], roles, None).unwrap()
}

/// Reads as `wang` on another thread while `op` runs; returns `op`'s result
/// and how long it took. Every read of `wang` must succeed.
fn while_others_read<T>(engine: &Engine, id: CustomerId, op: impl FnOnce() -> T) -> (T, Duration) {
    let stop = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let wang = Context::new("wang", "sales_contact");
            while !stop.load(Ordering::Relaxed) {
                let view = engine.customer(&wang, id).unwrap();
                assert_eq!(view.get("id_number"), Some("110105198803120217"));
                reads.fetch_add(1, Ordering::Relaxed);
            }
        });
        let waiting = Instant::now();
        while reads.load(Ordering::Relaxed) == 0 {
            assert!(
                waiting.elapsed() < Duration::from_secs(10),
                "reader never read"
            );
            std::thread::yield_now();
        }
        let started = Instant::now();
        let out = op();
        let elapsed = started.elapsed();
        // The reader still gets through after the failing call.
        let after = reads.load(Ordering::Relaxed);
        while reads.load(Ordering::Relaxed) == after && !reader.is_finished() {
            assert!(
                waiting.elapsed() < Duration::from_secs(10),
                "reader stalled"
            );
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
        (out, elapsed)
    })
}

#[test]
fn a_failing_policy_denies_quickly_and_only_its_victim() {
    let fx = Fixture::new();
    let engine = fx.open();
    for (name, role) in [("wang", "sales"), ("mallory", "support")] {
        engine
            .add_principal(&admin(), name, PrincipalKind::User, &[role])
            .unwrap();
    }
    let id = sample(&engine);
    for (version, (attack, body)) in (2..).zip(ATTACKS) {
        // No cases.toml: nothing stops the install.
        let installed = engine.install_policy(&admin(), &attack_pack(body)).unwrap();
        assert_eq!(installed.version, version, "{attack}");

        let mallory = Context::new("mallory", "service");
        let mark = audit_mark(&engine);
        let (read, elapsed) = while_others_read(&engine, id, || engine.customer(&mallory, id));
        let Err(Error::Denied(Denied::Policy { reason })) = read else {
            panic!("{attack}: not denied by the policy: {read:?}");
        };
        assert!(reason.contains("policy failed"), "{attack}: {reason}");
        assert!(
            elapsed < Duration::from_millis(100),
            "{attack}: took {elapsed:?}"
        );
        let denied: Vec<_> = audited_since(&engine, mark)
            .into_iter()
            .filter(|e| e.actor == "mallory")
            .collect();
        assert_eq!(denied.len(), 1, "{attack}: {denied:?}");
        assert_eq!(
            (denied[0].action.as_str(), &denied[0].outcome),
            ("customer.read", &Outcome::Denied(reason.clone())),
            "{attack}"
        );

        // Writes fail closed too, and change nothing.
        let update = CustomerUpdate::new().set("company", "Pwned");
        let (write, elapsed) =
            while_others_read(&engine, id, || engine.update_customer(&mallory, id, update));
        assert!(
            matches!(&write, Err(Error::Denied(Denied::Policy { reason })) if reason.contains("policy failed")),
            "{attack}: {write:?}"
        );
        assert!(
            elapsed < Duration::from_millis(100),
            "{attack}: write took {elapsed:?}"
        );
        let view = engine.customer(&Context::new("wang", "x"), id).unwrap();
        assert_eq!(view.get("company"), Some("Acme Trading"), "{attack}");
        // Searches leave the customer out.
        let found = engine
            .find_customers(&mallory, &Query::Owner("wang".into()), 10)
            .unwrap();
        assert!(found.is_empty(), "{attack}: {found:?}");
    }
}

/// `Decision::fault` documents that a policy failure "should be audited and
/// alerted", but the engine audits only the generic reason: the audit chain
/// cannot tell an endless loop from a thrown error or a slow policy.
#[test]
fn policy_failures_are_audited_with_their_cause() {
    let fx = Fixture::new();
    let engine = fx.open();
    for (name, role) in [("wang", "sales"), ("mallory", "support")] {
        engine
            .add_principal(&admin(), name, PrincipalKind::User, &[role])
            .unwrap();
    }
    let id = sample(&engine);
    engine
        .install_policy(&admin(), &attack_pack("loop {}"))
        .unwrap();
    let mark = audit_mark(&engine);
    engine
        .customer(&Context::new("mallory", "service"), id)
        .unwrap_err();
    let entries = audited_since(&engine, mark);
    let text = format!("{entries:?}");
    assert!(text.contains("operations"), "{text}");
}

// --- 6. The command line ------------------------------------------------------

const EXAMPLE_PACK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policies");

fn custodian(fx: &Fixture, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custodian"))
        .arg("--db")
        .arg(fx.db())
        .arg("--key-file")
        .arg(fx.dir.path().join("master.key"))
        .args(args)
        .env_remove("CUSTODIAN_KEY")
        .env_remove("CUSTODIAN_AS")
        .env_remove("CUSTODIAN_PURPOSE")
        .env_remove("CUSTODIAN_SESSION")
        .output()
        .unwrap()
}

/// stdout and stderr of a run that must end as `success` says.
fn outputs(out: &Output, success: bool, args: &[&str]) -> (String, String) {
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(
        out.status.success(),
        success,
        "custodian {args:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    (stdout, stderr)
}

fn cases_in(dir: &Path) -> usize {
    let text = std::fs::read_to_string(dir.join("cases.toml")).unwrap();
    text.lines().filter(|l| l.trim() == "[[case]]").count()
}

#[test]
fn cli_policy_check_runs_the_example_packs_cases() {
    let fx = Fixture::new();
    let args = ["policy", "check", EXAMPLE_PACK];
    let (stdout, _) = outputs(&custodian(&fx, &args), true, &args);
    let count = cases_in(Path::new(EXAMPLE_PACK));
    assert!(count > 30, "{count}");
    assert!(
        stdout.contains(&format!("{count} case(s) passed, 0 failed")),
        "{stdout}"
    );
}

/// A case file for `policy test`: (cases, passed, each failure as printed).
const CASE_FILES: &[(&str, usize, &[&str])] = &[
    (
        r#"
[[case]]
name = "right: support reads"
principal = { id = "sun", roles = ["support"] }
action = "read"
customer = { id = 1, owner = "wang" }
expect = "allow"
fields = { phone = "masked", id_number = "hidden" }
"#,
        1,
        &[],
    ),
    (
        r#"
[[case]]
name = "right: analysts count"
principal = { id = "qian", roles = ["analyst"] }
action = "count"
expect = "allow"

[[case]]
name = "wrong: support updates"
principal = { id = "sun", roles = ["support"] }
action = "update"
customer = { id = 1, owner = "wang" }
expect = "allow"

[[case]]
name = "wrong: owner sees the ID number in full"
principal = { id = "wang", roles = ["sales"] }
action = "read"
customer = { id = 1, owner = "wang" }
expect = "allow"
fields = { id_number = "full" }
"#,
        1,
        &[
            "FAIL wrong: support updates: expected allow, got deny",
            "FAIL wrong: owner sees the ID number in full: field `id_number`: expected full, got masked",
        ],
    ),
];

#[test]
fn cli_policy_test_reports_each_failure() {
    let fx = Fixture::new();
    for (i, (cases, passed, failures)) in CASE_FILES.iter().enumerate() {
        let file = fx.dir.path().join(format!("cases{i}.toml"));
        std::fs::write(&file, cases).unwrap();
        let args = ["policy", "test", EXAMPLE_PACK, file.to_str().unwrap()];
        let (stdout, stderr) = outputs(&custodian(&fx, &args), failures.is_empty(), &args);
        let summary = format!(
            "policy test: {passed} case(s) passed, {} failed",
            failures.len()
        );
        assert!(stdout.contains(&summary), "{stdout}");
        // Each failure on a line of its own, in order, with the reason after.
        let printed: Vec<&str> = stderr.lines().filter(|l| l.starts_with("FAIL ")).collect();
        assert_eq!(printed.len(), failures.len(), "{stderr}");
        for (line, want) in printed.iter().zip(failures.iter()) {
            assert!(
                line.starts_with(want),
                "`{line}` should start with `{want}`"
            );
        }
    }
}

/// A copy of the example pack, changed by `edit`.
fn pack_dir(fx: &Fixture, name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let dir = fx.dir.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    for file in ["access.rhai", "roles.toml", "cases.toml"] {
        std::fs::copy(Path::new(EXAMPLE_PACK).join(file), dir.join(file)).unwrap();
    }
    edit(&dir);
    dir
}

#[test]
fn cli_policy_install_then_show() {
    let fx = Fixture::new();
    let (_, _) = outputs(&custodian(&fx, &["init", "--new-key"]), true, &["init"]);
    let show = |version: u64| {
        let (stdout, _) = outputs(&custodian(&fx, &["policy", "show"]), true, &["show"]);
        let first = stdout.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("policy version {version} installed")),
            "{stdout}"
        );
        assert!(first.ends_with(" by admin") || version == 1, "{first}");
        assert!(stdout.contains("==> access.rhai <=="), "{stdout}");
        let args = ["policy", "show", "--json"];
        let (json, _) = outputs(&custodian(&fx, &args), true, &args);
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(json["version"], version);
    };
    show(1);

    // A broken pack is refused with its file and line; version 1 stays.
    let broken = pack_dir(&fx, "broken", |dir| {
        std::fs::write(dir.join("zz.rhai"), "fn helper() {\n\n  let = 1;\n}\n").unwrap();
    });
    let args = ["policy", "install", broken.to_str().unwrap()];
    let (_, stderr) = outputs(&custodian(&fx, &args), false, &args);
    assert!(
        stderr.contains("`zz.rhai`") && stderr.contains("line 3"),
        "{stderr}"
    );
    show(1);

    let good = pack_dir(&fx, "good", |_| {});
    let args = ["policy", "install", good.to_str().unwrap()];
    let (_, stderr) = outputs(&custodian(&fx, &args), true, &args);
    assert!(stderr.contains("installed policy version 2"), "{stderr}");
    show(2);
}

// --- 7. What a decision may cost in memory -------------------------------------

/// The peak resident memory (VmHWM, in KiB) of `command` as a child
/// process, read from /proc while it runs, with its output. The high-water
/// mark keeps the peak, so a read after it counts it; only what the child
/// allocates after the last read before it exits is missed.
#[cfg(target_os = "linux")]
fn peak_kib(mut command: Command) -> (Output, u64) {
    use std::process::Stdio;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        let kib = std::fs::read_to_string(&status).ok().and_then(|text| {
            let line = text.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
            line.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        });
        peak = peak.max(kib.unwrap_or(0));
        std::thread::sleep(Duration::from_micros(200));
    }
    (child.wait_with_output().unwrap(), peak)
}

/// Scripts that build big values by every route we know, each chosen by
/// the purpose of the read. `render` is the regression: a map of 64 KiB
/// keys doubled into itself, copied, and rendered into a string, which took
/// one `customer get` to 400 MiB in a few dozen operations (map keys and
/// `m[k] = v` escape rhai's own size checks, and too few operations ran for
/// the time limit to be read).
const MEMORY_BOMBS: &[(&str, &str)] = &[
    (
        "render",
        r#"let k = "x"; k.pad(60000, "x"); let m = #{}; m[k] = 0;
           m[k + "a"] = m; m[k + "b"] = m; m[k + "c"] = m; m[k + "d"] = m; m[k + "e"] = m;
           m[k + "f"] = m; m[k + "g"] = m; m[k + "h"] = m; m[k + "i"] = m;
           let c1 = m; let c2 = m; let c3 = m;
           m.to_string().len()"#,
    ),
    (
        "json",
        r#"let k = "x"; k.pad(60000, "x"); let m = #{}; m[k] = 0;
           m[k + "a"] = m; m[k + "b"] = m; m[k + "c"] = m; m[k + "d"] = m; m[k + "e"] = m;
           m[k + "f"] = m; m[k + "g"] = m; m[k + "h"] = m; m[k + "i"] = m;
           m.to_json().len()"#,
    ),
    (
        "insert",
        r#"let k = "x"; k.pad(60000, "x"); let m = #{}; let i = 0;
           loop { m[k + i] = i; i += 1; }"#,
    ),
    (
        "concat",
        r#"let s = "0123456789abcdef"; loop { s = s + s; }"#,
    ),
    (
        "append",
        r#"let s = ""; loop { s += "0123456789abcdef0123456789abcdef"; }"#,
    ),
    (
        "push",
        r#"let s = "x"; s.pad(60000, "y"); let a = []; loop { a.push(s + a.len()); }"#,
    ),
    (
        "pad",
        r#"let s = "x"; s.pad(100000000, "y"); let a = []; a.pad(100000000, s); 0"#,
    ),
    (
        "variables",
        r#"let s = "x"; s.pad(60000, "y");
           let a = [s + 1, s + 2, s + 3]; let b = a; let c = b; let d = c; let e = d;
           let f = #{ a: a, b: b }; let g = f; let h = g; let i = h; let j = i; 0"#,
    ),
    (
        "nested",
        r#"let a = []; a.pad(1000, 0); let b = []; b.pad(999, "0123456789abcdef");
           for i in 0..1000 { a[i] = b; } a.len()"#,
    ),
    (
        "curry",
        r#"let s = "x"; s.pad(60000, "y"); let f = [];
           for i in 0..1000 { f.push(Fn("keep").curry(s + i)); } 0"#,
    ),
    ("recursion", r#"let s = "x"; s.pad(60000, "y"); deep(s, 0)"#),
];

/// A policy decision costs at most 64 MiB above a plain read, whatever the
/// script builds: each memory bomb is denied with a refusal that names the
/// limit, audited, and the command's peak memory stays within the bound.
#[cfg(target_os = "linux")]
#[test]
fn a_policy_decision_has_bounded_memory() {
    const BOUND_KIB: u64 = 64 * 1024;
    let fx = Fixture::new();
    let (_, _) = outputs(&custodian(&fx, &["init", "--new-key"]), true, &["init"]);
    let args = [
        "--as",
        "admin",
        "principal",
        "add",
        "wang",
        "--role",
        "sales",
    ];
    outputs(&custodian(&fx, &args), true, &args);
    let args = [
        "--as",
        "wang",
        "customer",
        "add",
        "name=Li Na",
        "phone=13800138000",
    ];
    let (id, _) = outputs(&custodian(&fx, &args), true, &args);
    let id = id.trim().to_string();
    let get = |purpose: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_custodian"));
        command
            .arg("--db")
            .arg(fx.db())
            .arg("--key-file")
            .arg(fx.dir.path().join("master.key"))
            .args(["--as", "wang", "--purpose", purpose, "customer", "get", &id])
            .env_remove("CUSTODIAN_KEY");
        peak_kib(command)
    };
    let (out, plain) = get("sales_contact");
    outputs(&out, true, &["customer", "get"]);
    assert!(plain > 0, "no peak read");

    let pack = pack_dir(&fx, "bombs", |dir| {
        let access = std::fs::read_to_string(dir.join("access.rhai")).unwrap();
        let mut bombs = String::from(
            "fn keep(x) { x }\nfn deep(s, n) { deep(s + n, n + 1) }\nfn authorize(req) {\n",
        );
        for (purpose, body) in MEMORY_BOMBS {
            bombs.push_str(&format!(
                "    if req.purpose == \"{purpose}\" {{ {body} }}\n"
            ));
        }
        let access = access.replacen("fn authorize(req) {\n", &bombs, 1);
        std::fs::write(dir.join("access.rhai"), access).unwrap();
    });
    let args = ["--as", "admin", "policy", "install", pack.to_str().unwrap()];
    outputs(&custodian(&fx, &args), true, &args);

    for (purpose, _) in MEMORY_BOMBS {
        let (out, peak) = get(purpose);
        let (_, stderr) = outputs(&out, false, &["customer", "get", purpose]);
        assert!(
            stderr.contains("the access policy failed")
                && ["size limits", "time limit", "operations", "deeper than"]
                    .iter()
                    .any(|limit| stderr.contains(limit)),
            "{purpose}: {stderr}"
        );
        assert!(
            peak.saturating_sub(plain) < BOUND_KIB,
            "{purpose}: peak {peak} KiB, a plain read {plain} KiB"
        );
    }
    // The canonical bomb is stopped by the limit on all values together,
    // named in the refusal, and audited.
    let (out, _) = get("render");
    let (_, stderr) = outputs(&out, false, &["customer", "get", "render"]);
    assert!(stderr.contains("all its values together 4 MiB"), "{stderr}");
    let args = ["--as", "admin", "--json", "audit", "tail", "-n", "100"];
    let (tail, _) = outputs(&custodian(&fx, &args), true, &args);
    let tail: serde_json::Value = serde_json::from_str(&tail).unwrap();
    let denied = tail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "wang" && e["purpose"] == "render")
        .filter(|e| e["outcome"].to_string().contains("all its values together"))
        .count();
    assert_eq!(denied, 2, "{tail:#}");
}

/// Closures and `this` are not in the sandbox's language: a closure holds
/// what it captured out of the weighing's sight, and a method changes its
/// caller's variable without naming it. A pack using either is refused.
#[test]
fn closures_and_this_are_refused_at_install() {
    let fx = Fixture::new();
    let (_, _) = outputs(&custodian(&fx, &["init", "--new-key"]), true, &["init"]);
    for (name, helper) in [
        (
            "closure",
            "fn helper() { let t = 1; let f = || t; f.call() }",
        ),
        ("this", "fn helper() { this.len() }"),
    ] {
        let pack = pack_dir(&fx, name, |dir| {
            std::fs::write(dir.join("zz.rhai"), format!("{helper}\n")).unwrap();
        });
        let args = ["--as", "admin", "policy", "install", pack.to_str().unwrap()];
        let (_, stderr) = outputs(&custodian(&fx, &args), false, &args);
        assert!(stderr.contains("`zz.rhai`"), "{name}: {stderr}");
    }
}
