use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;
use crate::model::Schema;

const ROLES: &str = "[roles.sales]\ndescription = \"sales\"\n";

fn pack(script: &str) -> PolicyPack {
    PolicyPack::from_sources(
        vec![("test.rhai".into(), script.into())],
        ROLES.into(),
        None,
    )
    .unwrap()
}

fn policy(script: &str) -> Policy {
    Policy::compile(&pack(script)).unwrap()
}

fn subject(id: &str, roles: &[&str], attributes: &[(&str, &str)]) -> Subject {
    let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    let attributes: BTreeMap<String, String> = attributes
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Subject::new(id, "user", &roles, &attributes)
}

fn customer(id: u64, owner: &str, team: Option<&str>, status: &str) -> CustomerFacts {
    CustomerFacts {
        id,
        owner: owner.into(),
        team: team.map(Into::into),
        status: status.into(),
        tags: vec!["vip".into(), "north".into()],
    }
}

#[test]
fn default_pack_compiles_and_its_cases_pass() {
    let pack = PolicyPack::default_pack();
    let policy = Policy::compile(&pack).unwrap();
    let report = policy
        .run_cases(pack.cases().unwrap(), &Schema::default())
        .unwrap();
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert!(report.passed >= 20, "only {} cases", report.passed);
}

#[test]
fn default_roles() {
    let policy = Policy::compile(&PolicyPack::default_pack()).unwrap();
    let roles: Vec<(&str, bool)> = policy
        .roles()
        .iter()
        .map(|(name, def)| (name.as_str(), def.require_2fa))
        .collect();
    assert_eq!(
        roles,
        [
            ("admin", true),
            ("analyst", false),
            ("integration", false),
            ("manager", false),
            ("sales", false),
            ("steward", true),
            ("support", false),
        ]
    );
    assert!(policy.roles().values().all(|r| !r.description.is_empty()));
}

#[test]
fn wrong_expectations_are_reported_naming_case_and_field() {
    let policy = Policy::compile(&PolicyPack::default_pack()).unwrap();
    let cases = r#"
[[case]]
name = "sales reads own customer"
principal = { id = "wang", roles = ["sales"] }
action = "read"
customer = { id = 1, owner = "wang" }
expect = "allow"
fields = { name = "full", id_number = "full" }

[[case]]
name = "support may not update"
principal = { id = "zhou", roles = ["support"] }
action = "update"
customer = { id = 1, owner = "wang" }
expect = "allow"
reason_contains = "nonsense"

[[case]]
name = "analyst counts"
principal = { id = "an", roles = ["analyst"] }
action = "count"
expect = "allow"
"#;
    let report = policy.run_cases(cases, &Schema::default()).unwrap();
    assert_eq!(report.passed, 1);
    let failures: Vec<String> = report.failures.iter().map(|f| f.to_string()).collect();
    assert_eq!(
        failures,
        [
            "case `sales reads own customer`: field `id_number`: expected full, got masked",
            "case `support may not update`: expected allow, got deny (reason: principal `zhou` with role(s) `support` may not `update` customers)",
            "case `support may not update`: reason `principal `zhou` with role(s) `support` may not `update` customers` does not contain `nonsense`",
        ]
    );
}

#[test]
fn malformed_cases_are_errors() {
    let policy = Policy::compile(&PolicyPack::default_pack()).unwrap();
    let schema = Schema::default();
    let base = "[[case]]\nname = \"c\"\nprincipal = { id = \"a\" }\nexpect = \"deny\"\n";
    for (extra, needle) in [
        ("action = \"fly\"\n", "unknown action `fly`"),
        (
            "action = \"read\"\nfields = { shoe_size = \"full\" }\n",
            "field `shoe_size` is not in the schema",
        ),
        (
            "action = \"read\"\nfields = { name = \"blurred\" }\n",
            "blurred",
        ),
        (
            "action = \"read\"\ncustomer = { id = 1, owner = \"a\", status = \"asleep\" }\n",
            "status `asleep`",
        ),
        ("action = \"read\"\ncolour = 3\n", "colour"),
    ] {
        let err = policy
            .run_cases(&format!("{base}{extra}"), &schema)
            .unwrap_err();
        assert!(matches!(err, PolicyError::Cases(_)), "{err:?}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    let twice = format!("{base}action = \"read\"\n{base}action = \"read\"\n");
    let err = policy.run_cases(&twice, &schema).unwrap_err();
    assert!(err.to_string().contains("used twice"), "{err}");
}

#[test]
fn compile_errors_name_file_and_line() {
    let two = PolicyPack::from_sources(
        vec![
            (
                "a.rhai".into(),
                "fn authorize(req) { allow(\"ok\") }".into(),
            ),
            ("b.rhai".into(), "fn helper() {\n  let x = ;\n}\n".into()),
        ],
        ROLES.into(),
        None,
    )
    .unwrap();
    match Policy::compile(&two).unwrap_err() {
        PolicyError::Compile {
            file,
            line,
            position,
            message,
        } => {
            assert_eq!(file, "b.rhai");
            assert_eq!(line, 2);
            assert!(position > 0);
            assert!(!message.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // Strict variables: an undefined name is caught when compiling.
    let err = Policy::compile(&pack("fn authorize(req) {\n  allow(nobody)\n}")).unwrap_err();
    assert!(
        matches!(&err, PolicyError::Compile { line: 2, message, .. } if message.contains("nobody")),
        "{err:?}"
    );
    // `eval` is not part of the language here.
    let err = Policy::compile(&pack("fn authorize(req) { eval(\"allow(1)\") }")).unwrap_err();
    assert!(
        matches!(&err, PolicyError::Compile { message, .. } if message.contains("eval")),
        "{err:?}"
    );
}

#[test]
fn a_pack_without_authorize_is_refused() {
    for script in [
        "fn helper(req) { allow(\"ok\") }",
        "fn authorize(req, extra) { allow(\"ok\") }",
        "allow(\"top level code is not a policy\")",
    ] {
        let err = Policy::compile(&pack(script)).unwrap_err();
        assert!(
            matches!(err, PolicyError::MissingAuthorize),
            "{script}: {err:?}"
        );
    }
    let two = PolicyPack::from_sources(
        vec![
            ("a.rhai".into(), "fn authorize(req) { allow(\"a\") }".into()),
            ("b.rhai".into(), "fn authorize(req) { allow(\"b\") }".into()),
        ],
        ROLES.into(),
        None,
    )
    .unwrap();
    let err = Policy::compile(&two).unwrap_err();
    assert!(
        err.to_string().contains("also defined in `a.rhai`"),
        "{err}"
    );
}

#[test]
fn roles_file_is_checked() {
    let script = "fn authorize(req) { allow(\"ok\") }".to_string();
    for (roles, needle) in [
        ("", "no role is declared"),
        ("[roles.sales]\nrequire_2fa = true\n", "description"),
        ("[roles.Sales]\ndescription = \"x\"\n", "`Sales`"),
        ("[roles.sales]\ndescription = \"x\"\nlevel = 3\n", "level"),
        ("[roles.sales\n", "line 1"),
    ] {
        let pack =
            PolicyPack::from_sources(vec![("a.rhai".into(), script.clone())], roles.into(), None)
                .unwrap();
        let err = Policy::compile(&pack).unwrap_err();
        assert!(matches!(err, PolicyError::Roles(_)), "{err:?}");
        assert!(err.to_string().contains(needle), "{roles}: {err}");
    }
}

/// Each hostile script runs only for the request with purpose `attack`, so
/// the same policy must then decide a normal request as usual.
#[test]
fn failures_deny_with_a_fault_and_quickly() {
    let attacks = [
        ("endless loop", "loop {}", "more than 100000 operations"),
        ("recursion", "down(0)", "deeper than 32 levels"),
        (
            "huge string",
            "let s = \"x\"; loop { s += s; }",
            "size limits",
        ),
        ("huge array", "let a = [1]; loop { a += a; }", "size limits"),
        (
            "padded array",
            "let a = []; a.pad(100000000, 0);",
            "size limits",
        ),
        (
            "huge map",
            "let m = #{}; let i = 0; loop { m[`k${i}`] = i; i += 1; }",
            // rhai 1.27 does not check a map's size when `m[k] = v` adds
            // an entry: the operation or the time limit ends the call.
            "more than 100000 operations|time limit",
        ),
        ("missing property", "req.nope.x", "nope"),
        ("division by zero", "let z = 0; 1 / z", "division by zero"),
        ("thrown", "throw \"boom\"", "boom"),
        (
            "not a decision",
            "return 42;",
            "authorize must return allow(..) or deny(..)",
        ),
        (
            "eval through a pointer",
            "call(Fn(\"eval\"), \"1\")",
            "eval",
        ),
        ("import", "import \"x\" as y; y::run()", "may not import"),
        ("sleep", "sleep(10)", "sleep"),
        (
            "slow operations",
            "let s = \"x\"; s.pad(60000, \"y\"); loop { let t = s.to_upper(); }",
            "time limit of 20 ms",
        ),
        ("bad mask argument", "allow(\"x\").mask(42)", "field name"),
    ];
    for (name, body, needle) in attacks {
        let script = format!(
            "fn down(n) {{ down(n + 1) }}\n\
             fn authorize(req) {{\n  if req.purpose == \"attack\" {{\n    {body}\n  }}\n  allow(\"fine\").mask_personal()\n}}\n"
        );
        let policy = policy(&script);
        let who = subject("wang", &["sales"], &[]);
        let started = Instant::now();
        let decision = policy.authorize(&who, Action::Read, "attack", None);
        let elapsed = started.elapsed();
        assert!(!decision.allowed(), "{name}: allowed");
        let fault = decision
            .fault()
            .unwrap_or_else(|| panic!("{name}: no fault"));
        assert!(
            needle.split('|').any(|n| fault.contains(n)),
            "{name}: fault `{fault}`"
        );
        assert!(
            elapsed < Duration::from_millis(100),
            "{name}: took {elapsed:?}"
        );
        assert_eq!(
            decision.treatment("name", Sensitivity::Public),
            Treatment::Hidden
        );

        let after = policy.authorize(&who, Action::Read, "sales_contact", None);
        assert!(after.allowed(), "{name}: {after:?}");
        assert_eq!(after.fault(), None);
        assert_eq!(after.reason(), "fine");
        assert_eq!(
            after.treatment("name", Sensitivity::Personal),
            Treatment::Masked
        );
    }
}

#[test]
fn treatment_precedence() {
    let policy = policy(
        r#"fn authorize(req) {
            switch req.purpose {
                "class" => allow("c").mask_personal().hide_sensitive(),
                "field" => allow("f").hide_personal().mask_sensitive()
                    .show("phone").mask(["company", "id_number"]).hide("notes"),
                "later" => allow("l").mask("phone").show("phone"),
                "deny" => deny("no").show("phone"),
                _ => allow("plain"),
            }
        }"#,
    );
    let who = subject("wang", &["sales"], &[]);
    let check = |purpose: &str, want: &[(&str, Sensitivity, Treatment)]| {
        let decision = policy.authorize(&who, Action::Read, purpose, None);
        assert_eq!(decision.fault(), None);
        for (field, sensitivity, treatment) in want {
            assert_eq!(
                decision.treatment(field, *sensitivity),
                *treatment,
                "{purpose}: {field}"
            );
        }
    };
    use Sensitivity::{Personal, Public, Sensitive};
    use Treatment::{Full, Hidden, Masked};
    check(
        "plain",
        &[
            ("company", Public, Full),
            ("name", Personal, Full),
            ("id_number", Sensitive, Full),
        ],
    );
    check(
        "class",
        &[
            ("company", Public, Full),
            ("name", Personal, Masked),
            ("id_number", Sensitive, Hidden),
        ],
    );
    check(
        "field",
        &[
            ("phone", Personal, Full),
            ("name", Personal, Hidden),
            ("notes", Personal, Hidden),
            ("company", Public, Masked),
            ("tags", Public, Full),
            ("id_number", Sensitive, Masked),
            ("passport", Sensitive, Masked),
        ],
    );
    check("later", &[("phone", Personal, Full)]);
    check(
        "deny",
        &[("phone", Personal, Hidden), ("company", Public, Hidden)],
    );
}

#[test]
fn scripts_read_the_request() {
    let policy = policy(
        r#"fn authorize(req) {
            let p = req.principal;
            let c = req.customer;
            let seen = [p.id, p.kind, p.roles, p.attributes.team, p.attributes.region,
                        p.has_role("sales"), p.has_role("admin"), req.action, req.purpose];
            if c == () {
                seen.push("no customer");
            } else {
                seen += [c.id, c.owner, c.team, c.status, c.tags, c.has_tag("vip"), c.has_tag("x")];
            }
            seen += [mask_phone("+8613800138000"), mask_email("zhang@example.com"),
                     mask_name("Li Na"), mask_id("E12345678"), mask_address("1 Long Street, Beijing")];
            deny(`${seen}`)
        }"#,
    );
    let roles = vec!["sales".to_string(), "support".to_string()];
    let attributes = BTreeMap::from([("team".to_string(), "east".to_string())]);
    let who = Subject::new("wang", "service", &roles, &attributes);
    let decision = policy.authorize(
        &who,
        Action::ReadInteractions,
        "service",
        Some(&customer(7, "li", None, "dormant")),
    );
    assert_eq!(decision.fault(), None);
    assert_eq!(
        decision.reason(),
        "[\"wang\", \"service\", [\"sales\", \"support\"], \"east\", (), true, false, \
         \"interactions.read\", \"service\", 7, \"li\", (), \"dormant\", [\"vip\", \"north\"], \
         true, false, \"138****8000\", \"z***@example.com\", \"L****\", \"E1****78\", \"1 Long****\"]"
    );
    let decision = policy.authorize(&who, Action::Count, "", None);
    assert!(
        decision
            .reason()
            .contains("\"count\", \"\", \"no customer\""),
        "{}",
        decision.reason()
    );
}

#[test]
fn the_request_is_read_only() {
    let policy = policy(
        r#"fn authorize(req) {
            if req.purpose == "" { req.principal.id = "admin"; }
            let m = req.principal.attributes;
            m.team = "west";
            allow(req.principal.attributes.team)
        }"#,
    );
    let who = subject("wang", &["sales"], &[("team", "east")]);
    let decision = policy.authorize(&who, Action::Read, "", None);
    assert!(decision.fault().is_some(), "{decision:?}");
    let decision = policy.authorize(&who, Action::Read, "x", None);
    assert_eq!(decision.reason(), "east");
}

#[test]
fn default_policy_decides() {
    let policy = Policy::compile(&PolicyPack::default_pack()).unwrap();
    let wang = subject("wang", &["sales"], &[("team", "east")]);
    let own = customer(1, "wang", Some("east"), "active");
    let other = customer(42, "li", Some("east"), "active");
    let decision = policy.authorize(&wang, Action::Read, "sales_contact", Some(&own));
    assert!(decision.allowed());
    assert_eq!(
        decision.treatment("id_number", Sensitivity::Sensitive),
        Treatment::Masked
    );
    assert_eq!(
        decision.treatment("phone", Sensitivity::Personal),
        Treatment::Full
    );
    let decision = policy.authorize(&wang, Action::Read, "sales_contact", Some(&other));
    assert!(!decision.allowed());
    assert_eq!(decision.fault(), None);
    assert_eq!(
        decision.reason(),
        "customer 42 belongs to `li`: sales see only their own customers"
    );
}

#[test]
fn policy_is_shared_between_threads() {
    const fn assert_send_sync<T: Send + Sync>() {}
    const _: () = assert_send_sync::<Policy>();
    const _: () = assert_send_sync::<Subject>();
    const _: () = assert_send_sync::<Decision>();

    let policy = Policy::compile(&PolicyPack::default_pack()).unwrap();
    let wang = subject("wang", &["sales"], &[]);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let (policy, wang) = (&policy, &wang);
                s.spawn(move || {
                    for i in 0..500 {
                        let owner = if i % 2 == 0 { "wang" } else { "li" };
                        let c = customer(t * 1000 + i, owner, None, "active");
                        // Both from memory and by running rhai, concurrently.
                        for d in [
                            policy.authorize(wang, Action::Read, "sales_contact", Some(&c)),
                            policy.authorize_uncached(
                                wang,
                                Action::Read,
                                "sales_contact",
                                Some(&c),
                            ),
                        ] {
                            assert_eq!(d.allowed(), i % 2 == 0, "{d:?}");
                            assert_eq!(d.fault(), None);
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    });
}

#[test]
fn actions_round_trip() {
    for action in Action::ALL {
        assert_eq!(Action::parse(action.as_str()), Some(action));
        assert_eq!(action.to_string(), action.as_str());
    }
    assert_eq!(Action::parse("Read"), None);
    assert_eq!(Action::ReadFollowUps.as_str(), "followups.read");
}

#[test]
fn packs_from_directories() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("roles.toml", ROLES);
    let err = PolicyPack::from_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("no .rhai script"), "{err}");

    write("b.rhai", "fn authorize(req) { helper() }");
    write("a.rhai", "fn helper() { allow(\"from a\") }");
    write("README.md", "ignored");
    let pack = PolicyPack::from_dir(dir.path()).unwrap();
    let names: Vec<&str> = pack.files().map(|(name, _)| name).collect();
    assert_eq!(names, ["a.rhai", "b.rhai", "roles.toml"]);
    assert_eq!(pack.cases(), None);
    let policy = Policy::compile(&pack).unwrap();
    let d = policy.authorize(&subject("x", &[], &[]), Action::Count, "", None);
    assert_eq!(d.reason(), "from a");

    write("cases.toml", "");
    let pack = PolicyPack::from_dir(dir.path()).unwrap();
    assert_eq!(pack.cases(), Some(""));
    assert_eq!(PolicyPack::from_bytes(&pack.to_bytes()).unwrap(), pack);

    write("c.rhai", &"x".repeat(1024 * 1024 + 1));
    let err = PolicyPack::from_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("c.rhai"), "{err}");
    assert!(err.to_string().contains("at most 1048576 bytes"), "{err}");
    std::fs::remove_file(dir.path().join("c.rhai")).unwrap();

    std::fs::remove_file(dir.path().join("roles.toml")).unwrap();
    let err = PolicyPack::from_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("no roles.toml"), "{err}");
    let err = PolicyPack::from_dir(&dir.path().join("missing")).unwrap_err();
    assert!(matches!(err, PolicyError::Io { .. }), "{err:?}");
}

#[test]
fn stored_packs_round_trip_and_damage_is_refused() {
    let pack = PolicyPack::default_pack();
    let bytes = pack.to_bytes();
    assert_eq!(PolicyPack::from_bytes(&bytes).unwrap(), pack);
    let names: Vec<&str> = pack.files().map(|(name, _)| name).collect();
    assert_eq!(names, ["access.rhai", "roles.toml", "cases.toml"]);
    for damaged in [&[][..], &[9, 1, 2][..], &bytes[..bytes.len() / 2]] {
        let err = PolicyPack::from_bytes(damaged).unwrap_err();
        assert!(matches!(err, PolicyError::Pack(_)), "{err:?}");
    }
    let err = PolicyPack::from_sources(vec![("a.txt".into(), String::new())], ROLES.into(), None)
        .unwrap_err();
    assert!(err.to_string().contains("`a.txt`"), "{err}");
}

mod memo;
