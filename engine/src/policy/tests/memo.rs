//! Remembered decisions: equal to the scripts', keyed by what was read,
//! bounded; and the time a decision takes.

use std::time::{Duration, Instant};

use super::*;

/// Requests like the ones the engine sees: principals with no role, one or
/// several (one the policy does not declare), with or without a team;
/// every action; a purpose or none; customers owned or not, in a team or
/// not, active or dormant, or none. Deterministic (SplitMix64).
fn mixed_requests(n: usize) -> Vec<(Subject, Action, &'static str, Option<CustomerFacts>)> {
    let mut state = 0x5EED_u64;
    let mut next = move |below: usize| {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % below as u64) as usize
    };
    let names = ["wang", "li", "zhao", "qian", "sun", "root"];
    let roles = [
        "sales", "manager", "support", "analyst", "admin", "steward", "auditor",
    ];
    let teams = [None, None, Some("east"), Some("west")];
    let purposes = ["", "service", "audit", "sales_contact"];
    (0..n)
        .map(|i| {
            let id = names[next(names.len())];
            let count = [0, 1, 1, 1, 1, 1, 2, 2, 2, 3][next(10)];
            let mut held: Vec<&str> = Vec::new();
            while held.len() < count {
                let role = roles[next(roles.len())];
                if !held.contains(&role) {
                    held.push(role);
                }
            }
            let team = teams[next(teams.len())];
            let attributes: Vec<(&str, &str)> = team.map(|t| ("team", t)).into_iter().collect();
            let action = Action::ALL[next(Action::ALL.len())];
            let with_customer = if action == Action::Count {
                next(5) == 0
            } else {
                next(20) != 0
            };
            let customer = with_customer.then(|| {
                let owner = if next(3) == 0 {
                    id
                } else {
                    names[next(names.len())]
                };
                let status = if next(5) == 0 { "dormant" } else { "active" };
                customer(i as u64, owner, teams[next(teams.len())], status)
            });
            (
                subject(id, &held, &attributes),
                action,
                purposes[next(purposes.len())],
                customer,
            )
        })
        .collect()
}

/// A policy reading everything a request offers, in an order that
/// depends on what it reads.
const READS_EVERYTHING: &str = r#"
fn authorize(req) {
    let p = req.principal;
    let c = req.customer;
    if c == () {
        return if p.kind == "service" { deny(`${req.action}`) } else { allow(`${p.roles}`) };
    }
    if c.has_tag("vip") && !p.has_role("admin") {
        return deny(`${c.id} ${c.tags} ${p.attributes}`).mask("phone");
    }
    if c.team == p.attributes.team {
        return allow(`${c.owner} ${c.status} ${req.purpose}`).hide(["notes", "email"]);
    }
    allow(`${p.id}`).mask_personal()
}
"#;

/// Remembered decisions are exactly the script's, over many kinds of
/// request, including ones that read every value a request has.
#[test]
fn remembered_decisions_equal_the_scripts() {
    let requests = mixed_requests(3_000);
    let reads_everything = Policy::compile(
        &PolicyPack::from_sources(
            vec![("a.rhai".into(), READS_EVERYTHING.into())],
            ROLES.into(),
            None,
        )
        .unwrap(),
    )
    .unwrap();
    for policy in [
        &Policy::compile(&PolicyPack::default_pack()).unwrap(),
        &reads_everything,
    ] {
        // Twice: the second pass is answered mostly from memory.
        for _ in 0..2 {
            for (who, action, purpose, c) in &requests {
                let remembered = policy.authorize(who, *action, purpose, c.as_ref());
                let ran = policy.authorize_uncached(who, *action, purpose, c.as_ref());
                assert_eq!(remembered, ran, "{action} {purpose:?} {c:?}");
                assert_eq!(ran.fault(), None);
            }
        }
        assert!(policy.memo.len() > 1);
    }
}

#[test]
fn remembered_paths_depend_on_what_was_read() {
    // Reads the customer's id: every customer is a path of its own.
    let by_id = policy(
        "fn authorize(req) { if req.customer.id == 7 { deny(\"seven\") } else { allow(\"other\") } }",
    );
    let who = subject("wang", &["sales"], &[]);
    for round in 0..2 {
        for id in 1..20 {
            let c = customer(id, "li", None, "active");
            let d = by_id.authorize(&who, Action::Read, "", Some(&c));
            assert_eq!(d.allowed(), id != 7, "round {round}, customer {id}");
        }
    }
    // Reads nothing: one decision for all.
    let constant = policy("fn authorize(req) { allow(\"always\") }");
    for id in 1..20 {
        let c = customer(id, "li", None, "active");
        assert!(
            constant
                .authorize(&who, Action::Read, "", Some(&c))
                .allowed()
        );
    }
    assert_eq!(constant.memo.len(), 1);
}

#[test]
fn faults_are_not_remembered_and_memory_is_bounded() {
    let policy =
        policy("fn authorize(req) { if req.purpose == \"attack\" { loop {} } allow(req.purpose) }");
    let who = subject("wang", &["sales"], &[]);
    for _ in 0..3 {
        let d = policy.authorize(&who, Action::Read, "attack", None);
        assert!(d.fault().is_some(), "{d:?}");
    }
    // Each purpose is a path of its own; the tree never outgrows its bound.
    for i in 0..(crate::policy::memo::MAX_MEMO_NODES + 100) {
        let purpose = format!("p{i}");
        let d = policy.authorize(&who, Action::Read, &purpose, None);
        assert_eq!(d.reason(), purpose);
        assert!(policy.memo.len() <= crate::policy::memo::MAX_MEMO_NODES);
    }
}

#[test]
fn reasons_name_request_values() {
    let policy = policy(
        r#"fn authorize(req) {
            deny("{principal.id} ({principal.kind}, {principal.roles}, team {principal.attributes.team}, \
                  region {principal.attributes.region}) may not {action} for `{purpose}`: \
                  customer {customer.id} of {customer.owner}, {customer.team}, {customer.status}, \
                  [{customer.tags}]; {unknown} {braces")
        }"#,
    );
    let who = subject("wang", &["sales", "support"], &[("team", "east")]);
    let c = customer(42, "li", None, "dormant");
    let d = policy.authorize(&who, Action::Update, "fix", Some(&c));
    assert_eq!(
        d.reason(),
        "wang (user, sales, support, team east, region none) may not update for `fix`: \
         customer 42 of li, none, dormant, [vip, north]; {unknown} {braces"
    );
    // No customer: its names stay as written.
    let d = policy.authorize(&who, Action::Count, "", None);
    assert!(
        d.reason()
            .contains("customer {customer.id} of {customer.owner}"),
        "{}",
        d.reason()
    );
}

/// Timing check, run by hand in release:
/// `cargo test --release -p custodian --lib policy:: -- --ignored --nocapture`
#[test]
#[ignore = "timing; run in release by hand"]
fn authorize_timing() {
    type Requests = [(Subject, Action, &'static str, Option<CustomerFacts>)];
    type Decide<'a> = &'a dyn Fn(&Subject, Action, &str, Option<&CustomerFacts>) -> Decision;
    let policy = Policy::compile(&PolicyPack::default_pack()).unwrap();
    let requests = mixed_requests(5_000);
    let allowed = requests
        .iter()
        .filter(|(who, action, purpose, c)| {
            policy
                .authorize(who, *action, purpose, c.as_ref())
                .allowed()
        })
        .count();
    // Each request timed alone, ten times; the median of its times, then
    // the median (and 90th, 99th percentile) over requests.
    let percentiles = |decide: Decide<'_>, requests: &Requests| {
        let mut per_request: Vec<Duration> = requests
            .iter()
            .map(|(who, action, purpose, c)| {
                let mut times: Vec<Duration> = (0..10)
                    .map(|_| {
                        let started = Instant::now();
                        std::hint::black_box(decide(who, *action, purpose, c.as_ref()));
                        started.elapsed()
                    })
                    .collect();
                times.sort();
                times[times.len() / 2]
            })
            .collect();
        per_request.sort();
        let at = |q: usize| per_request[(per_request.len() - 1) * q / 100];
        format!("median {:?}, p90 {:?}, p99 {:?}", at(50), at(90), at(99))
    };
    println!("{} requests, {allowed} allowed", requests.len());
    println!(
        "authorize: {}",
        percentiles(&|w, a, p, c| policy.authorize(w, a, p, c), &requests)
    );
    println!(
        "script run every time (nothing remembered): {}",
        percentiles(
            &|w, a, p, c| policy.authorize_uncached(w, a, p, c),
            &requests
        )
    );
}
