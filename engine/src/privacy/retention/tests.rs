use std::time::{Duration, Instant};

use super::*;

/// An active customer, not notified, untagged, without hold.
fn inactive(days: i64) -> RetentionFacts {
    RetentionFacts {
        status: Status::Active,
        notified: false,
        days_inactive: days,
        days_since_notice: 0,
        tags: Vec::new(),
        legal_hold: false,
    }
}

fn notified(days: i64, since_notice: i64) -> RetentionFacts {
    RetentionFacts {
        status: Status::Dormant,
        notified: true,
        days_since_notice: since_notice,
        ..inactive(days)
    }
}

fn tagged(tag: &str, facts: RetentionFacts) -> RetentionFacts {
    RetentionFacts {
        tags: vec![tag.to_string()],
        ..facts
    }
}

fn held(facts: RetentionFacts) -> RetentionFacts {
    RetentionFacts {
        legal_hold: true,
        ..facts
    }
}

fn dormant_status(facts: RetentionFacts) -> RetentionFacts {
    RetentionFacts {
        status: Status::Dormant,
        ..facts
    }
}

fn compile(source: &str) -> RetentionPolicy {
    RetentionPolicy::compile(source).unwrap_or_else(|e| panic!("{e}\n{source}"))
}

fn compile_error(source: &str) -> String {
    match RetentionPolicy::compile(source) {
        Ok(_) => panic!("compiled: {source}"),
        Err(e) => e.to_string(),
    }
}

/// Checks each case's verdict under `policy`: `action: reason`.
fn check(policy: &RetentionPolicy, cases: &[(&str, RetentionFacts, &str)]) {
    let mut failures = Vec::new();
    for (name, facts, expected) in cases {
        let verdict = policy.decide(facts);
        let got = format!("{}: {}", verdict.action.as_str(), verdict.reason);
        if verdict.fault || got != *expected {
            failures.push(format!(
                "{name}:\n  expected {expected}\n  got      {got} (fault: {})",
                verdict.fault
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The verdict of `retain` for one untagged active customer, which
/// must be a fault; returns its reason.
fn fault(source: &str) -> String {
    let verdict = compile(source).decide(&inactive(10));
    assert!(verdict.fault, "no fault: {verdict:?}");
    assert_eq!(verdict.action, RetentionAction::Keep);
    verdict.reason.to_string()
}

#[test]
fn default_script_decides_the_documented_periods() {
    check(
        &RetentionPolicy::default(),
        &[
            (
                "just created",
                inactive(0),
                "keep: last interaction 0 days ago",
            ),
            ("one day", inactive(1), "keep: last interaction 1 day ago"),
            (
                "a day before 3 years",
                inactive(1094),
                "keep: last interaction 1,094 days ago",
            ),
            (
                "3 years",
                inactive(1095),
                "dormant: no interaction for 1,095 days (3 years); access restricted to data stewards",
            ),
            (
                "a day before 5 years",
                inactive(1824),
                "dormant: no interaction for 1,824 days (4 years); access restricted to data stewards",
            ),
            (
                "5 years",
                inactive(1825),
                "notify: no interaction for 1,825 days (5 years); notice sent",
            ),
            (
                "5 years and a day",
                inactive(1826),
                "notify: no interaction for 1,826 days (5 years); notice sent",
            ),
            (
                "notice period running",
                notified(1855, 29),
                "notify: notice sent 29 days ago; anonymized after 30 days without response",
            ),
            (
                "notice period over",
                notified(1855, 30),
                "anonymize: no response 30 days after the notice (period: 30 days); no interaction for 1,855 days (5 years)",
            ),
            (
                "notified, then back in touch",
                notified(3, 40),
                "keep: back in touch after the notice (last interaction 3 days ago); notice withdrawn",
            ),
            (
                "dormant, then back in touch",
                dormant_status(inactive(12)),
                "keep: active again: last interaction 12 days ago",
            ),
            (
                "renovation at 3 years",
                tagged("renovation", inactive(1095)),
                "keep: last interaction 1,095 days ago",
            ),
            (
                "renovation a day before 5 years",
                tagged("renovation", inactive(1824)),
                "keep: last interaction 1,824 days ago",
            ),
            (
                "renovation at 5 years",
                tagged("renovation", inactive(1825)),
                "dormant: no interaction for 1,825 days (5 years, long repurchase cycle); access restricted to data stewards",
            ),
            (
                "education a day before 8 years",
                tagged("education", inactive(2919)),
                "dormant: no interaction for 2,919 days (7 years, long repurchase cycle); access restricted to data stewards",
            ),
            (
                "automotive at 8 years",
                tagged("automotive", inactive(2920)),
                "notify: no interaction for 2,920 days (8 years, long repurchase cycle); notice sent",
            ),
            (
                "other tags change nothing",
                tagged("vip", inactive(1825)),
                "notify: no interaction for 1,825 days (5 years); notice sent",
            ),
            (
                "legal hold, recent",
                held(inactive(10)),
                "keep: last interaction 10 days ago",
            ),
            (
                "legal hold at 5 years",
                held(inactive(1826)),
                "dormant: under legal hold: no interaction for 1,826 days (5 years), but no notice or removal while the hold lasts",
            ),
            (
                "legal hold after the notice period",
                held(notified(12_000, 400)),
                "dormant: under legal hold: no interaction for 12,000 days (32 years), but no notice or removal while the hold lasts",
            ),
        ],
    );
}

#[test]
fn default_is_the_bundled_script_and_compiles() {
    assert!(RetentionPolicy::compile(DEFAULT_RETENTION).is_ok());
    let policy = RetentionPolicy::default();
    assert_eq!(policy.source(), DEFAULT_RETENTION);
    assert!(!policy.decide(&inactive(5)).fault);
    let debug = format!("{policy:?}");
    assert!(debug.starts_with("RetentionPolicy { source: "), "{debug}");
    assert!(!debug.contains("memo"), "{debug}");
}

#[test]
fn the_script_reads_every_fact() {
    let policy = compile(
        r#"fn retain(c) {
            keep(`${c.status} ${c.notified} ${c.days_inactive} ${c.days_since_notice} ${c.tags} ${c.legal_hold} ${c.has_tag("vip")} ${c.has_tag("VIP")} ${c.has_tag("x")}`)
        }"#,
    );
    let facts = RetentionFacts {
        tags: vec!["vip".into(), "renovation".into()],
        legal_hold: true,
        ..notified(1900, 12)
    };
    check(
        &policy,
        &[
            (
                "notified",
                facts,
                r#"keep: dormant true 1900 12 ["vip", "renovation"] true true true false"#,
            ),
            (
                // A notice age without a notice is not shown.
                "not notified",
                RetentionFacts {
                    days_since_notice: 7,
                    ..inactive(3)
                },
                "keep: active false 3 0 [] false false false false",
            ),
        ],
    );
}

#[test]
fn every_verdict_is_available() {
    let policy = compile(
        r#"fn retain(c) {
            switch c.days_inactive {
                0 => keep("k"), 1 => dormant("d"), 2 => notify("n"),
                3 => anonymize("a"), _ => delete("x"),
            }
        }"#,
    );
    check(
        &policy,
        &[
            ("keep", inactive(0), "keep: k"),
            ("dormant", inactive(1), "dormant: d"),
            ("notify", inactive(2), "notify: n"),
            ("anonymize", inactive(3), "anonymize: a"),
            ("delete", inactive(4), "delete: x"),
        ],
    );
}

#[test]
fn long_reasons_are_cut_at_a_character_boundary() {
    let policy = compile(r#"fn retain(c) { let r = "a"; for i in 0..150 { r += "é"; } keep(r) }"#);
    let verdict = policy.decide(&inactive(1));
    assert!(!verdict.fault);
    assert!(
        verdict.reason.len() <= MAX_REASON_LEN,
        "{}",
        verdict.reason.len()
    );
    assert!(verdict.reason.starts_with("aéé"));
    assert!(verdict.reason.ends_with('…'));
}

#[test]
fn faults_keep_the_customer_quickly() {
    let cases = [
        (
            "endless loop",
            "fn retain(c) { loop {} }",
            "more than 100000 operations",
        ),
        (
            "recursion",
            "fn down(n) { down(n + 1) } fn retain(c) { down(0) }",
            "deeper than 32 levels",
        ),
        ("a number", "fn retain(c) { 42 }", "must return keep(..)"),
        ("nothing", "fn retain(c) { }", "must return keep(..)"),
        (
            "a reason that is no string",
            "fn retain(c) { delete(42) }",
            "delete",
        ),
        ("thrown", r#"fn retain(c) { throw "boom" }"#, "boom"),
        (
            "unknown fact",
            "fn retain(c) { if c.age > 3 { keep(\"x\") } }",
            "age",
        ),
        (
            "writing a fact",
            "fn retain(c) { c.legal_hold = false; delete(\"x\") }",
            "legal_hold",
        ),
        (
            "import",
            r#"fn retain(c) { import "fs" as fs; keep("x") }"#,
            "may not import",
        ),
        ("sleep", r#"fn retain(c) { sleep(10); keep("x") }"#, "sleep"),
        (
            "eval through a pointer",
            r#"fn retain(c) { call(Fn("eval"), "keep(\"x\")") }"#,
            "eval",
        ),
    ];
    for (name, source, needle) in cases {
        let started = Instant::now();
        let reason = fault(source);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{name}: {:?}",
            started.elapsed()
        );
        assert!(
            reason.starts_with("the retention policy failed, so the customer is kept: "),
            "{name}: {reason}"
        );
        assert!(reason.contains(needle), "{name}: {reason}");
    }
}

#[test]
fn compile_errors_say_what_and_where() {
    let cases = [
        (
            "no retain",
            r#"fn keep_all(c) { keep("x") }"#,
            "must define `fn retain(c)`",
        ),
        (
            "retain without parameter",
            r#"fn retain() { keep("x") }"#,
            "must define `fn retain(c)`",
        ),
        ("empty", "", "must define `fn retain(c)`"),
        (
            "syntax",
            "fn retain(c) {\n  keep(\"x\"\n}",
            "(line 3, position 1)",
        ),
        ("eval", r#"fn retain(c) { eval("keep(\"x\")") }"#, "eval"),
        ("undefined variable", "fn retain(c) { keep(why) }", "why"),
    ];
    for (name, source, needle) in cases {
        let message = compile_error(source);
        assert!(
            message.starts_with("retention policy: retention.rhai "),
            "{name}: {message}"
        );
        assert!(message.contains(needle), "{name}: {message}");
    }
    let huge = format!("fn retain(c) {{ keep(\"x\") }}\n//{}", "x".repeat(1 << 20));
    assert!(compile_error(&huge).contains("over the limit"));
}

#[test]
fn top_level_statements_never_run() {
    let policy = compile(r#"throw "ran"; loop {} fn retain(c) { keep("fine") }"#);
    check(&policy, &[("plain", inactive(1), "keep: fine")]);
}

#[test]
fn verdicts_are_remembered_by_facts() {
    let policy = RetentionPolicy::default();
    let facts = tagged("renovation", inactive(2000));
    let first = policy.decide(&facts);
    assert_eq!(policy.memo_len(), 1);
    let second = policy.decide(&facts);
    assert_eq!(first, second);
    // Served from the memo: the same reason, not a copy of it.
    assert!(Arc::ptr_eq(&first.reason, &second.reason));
    assert_eq!(policy.memo_len(), 1);
    policy.decide(&inactive(2000));
    assert_eq!(policy.memo_len(), 2);

    // Deterministic faults are remembered too.
    let broken = compile("fn retain(c) { 42 }");
    let fault = broken.decide(&facts);
    assert!(fault.fault);
    assert!(Arc::ptr_eq(&fault.reason, &broken.decide(&facts).reason));
    assert_eq!(broken.memo_len(), 1);
}

#[test]
fn a_time_limit_fault_is_not_remembered() {
    let slow = compile(
        r#"fn retain(c) { let s = "x"; s.pad(60000, "y"); loop { let t = s.to_upper(); } }"#,
    );
    let verdict = slow.decide(&inactive(1));
    assert!(verdict.fault);
    assert!(
        verdict.reason.contains("time limit of 20 ms"),
        "{}",
        verdict.reason
    );
    assert_eq!(slow.memo_len(), 0);
}

#[test]
fn a_policy_is_shared_between_threads() {
    let policy = RetentionPolicy::default();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let policy = &policy;
            scope.spawn(move || {
                for days in 0..200 {
                    let verdict = policy.decide(&inactive(1000 + days + t));
                    assert!(!verdict.fault, "{verdict:?}");
                }
            });
        }
    });
    assert_eq!(policy.memo_len(), 203);
}
