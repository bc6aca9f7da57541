//! Logins: passwords, the second factor, lockout and throttling, sessions
//! and the password policy. Engine tests run on a clock the test moves by
//! hand, so nothing sleeps; the command-line tests drive the real binary
//! (and kill it with SIGKILL) on the system clock.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::DateTime;
use custodian::{
    AuditEntry, AuthSettings, Clock, Context, Denied, Engine, Error, IdentityError, Outcome,
    PrincipalKind, PrincipalUpdate, Session,
};
use totp_rs::TOTP;

use crate::{Fixture, admin, as_, file_contains};

const WANG_PW: &str = "plum-orchard-lantern-42";
const ZHAO_PW: &str = "seventeen-copper-kites";
const WRONG_PW: &str = "not-the-right-password-9";

// ---------------------------------------------------------------------------
// Second factor
// ---------------------------------------------------------------------------

#[test]
fn totp_codes_work_once_and_only_up_to_one_step_off() {
    let fx = Fixture::new();
    let clock = ManualClock::new();
    let engine = open(&fx, &clock, lenient());
    add_user(&engine, "wang", &["sales"], WANG_PW);
    let enrolled = engine.enroll_totp(&admin(), "wang").unwrap();
    assert!(
        enrolled.uri.starts_with("otpauth://totp/"),
        "{:?}",
        *enrolled.uri
    );
    let app = authenticator(&enrolled.uri);
    let login = |code: &str| engine.login("wang", WANG_PW, Some(code), "test");

    let a = clock.step();
    engine.confirm_totp(&admin(), "wang", &app.code(a)).unwrap();
    // The code that confirmed the enrolment is spent, in its own step.
    login_failed(login(&app.code(a)));
    // From now on every login needs a code.
    let why = denied(engine.login("wang", WANG_PW, None, "test"));
    assert!(why.contains("second factor is required"), "{why}");

    clock.advance(Duration::from_secs(10 * 30));
    let b = clock.step();
    // Two steps off either way: refused (neither was ever used, so the
    // window refuses them, not the replay check).
    login_failed(login(&app.code(b - 2)));
    login_failed(login(&app.code(b + 2)));
    // A good code with a wrong password: refused, and the code not spent.
    login_failed(engine.login("wang", WRONG_PW, Some(&app.code(b - 1)), "test"));
    // One step behind (a slow phone): accepted, once.
    login(&app.code(b - 1)).unwrap();
    login_failed(login(&app.code(b - 1)));
    // The current step: accepted, once.
    login(&app.code(b)).unwrap();
    login_failed(login(&app.code(b)));
    // One step ahead (a fast phone): accepted; it retires the steps before.
    login(&app.code(b + 1)).unwrap();
    login_failed(login(&app.code(b)));
    // When time reaches that step its code stays spent; the next is fresh.
    clock.advance(Duration::from_secs(30));
    login_failed(login(&app.code(b + 1)));
    login(&app.code(b + 2)).unwrap();

    let sessions = sessions_of(&engine, "wang");
    assert_eq!(sessions.len(), 4);
    assert!(sessions.iter().all(|s| s.second_factor), "{sessions:?}");
}

#[test]
fn one_totp_code_raced_by_two_logins_opens_one_session() {
    const ROUNDS: usize = 8;
    let fx = Fixture::new();
    let clock = ManualClock::new();
    let engine = open(&fx, &clock, lenient());
    add_user(&engine, "wang", &["sales"], WANG_PW);
    let app = authenticator(&engine.enroll_totp(&admin(), "wang").unwrap().uri);
    engine
        .confirm_totp(&admin(), "wang", &app.code(clock.step()))
        .unwrap();

    for round in 0..ROUNDS {
        clock.advance(Duration::from_secs(30));
        let code = app.code(clock.step());
        let barrier = Barrier::new(2);
        let results: Vec<custodian::Result<Session>> = std::thread::scope(|s| {
            let racers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        engine.login("wang", WANG_PW, Some(&code), "race")
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {results:?}");
        for lost in results.into_iter().filter(Result::is_err) {
            login_failed(lost);
        }
    }
    assert_eq!(sessions_of(&engine, "wang").len(), ROUNDS);
}

#[test]
fn recovery_codes_are_ten_and_each_works_once() {
    let fx = Fixture::new();
    let clock = ManualClock::new();
    let mut engine = open(&fx, &clock, lenient());
    add_user(&engine, "wang", &["sales"], WANG_PW);
    let enrolled = engine.enroll_totp(&admin(), "wang").unwrap();
    let app = authenticator(&enrolled.uri);
    engine
        .confirm_totp(&admin(), "wang", &app.code(clock.step()))
        .unwrap();
    let codes: Vec<String> = enrolled
        .recovery_codes
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    let mut unique = codes.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 10, "{codes:?}");

    // Nine used here; the tenth shows below that re-enrolment voids it.
    for (i, code) in codes.iter().take(9).enumerate() {
        if i == 5 {
            // Spent codes stay spent across a restart.
            drop(engine);
            engine = open(&fx, &clock, lenient());
            for spent in codes.iter().take(5) {
                login_failed(engine.login("wang", WANG_PW, Some(spent), "test"));
            }
        }
        let session = engine.login("wang", WANG_PW, Some(code), "test").unwrap();
        assert_eq!(session.principal, "wang");
        login_failed(engine.login("wang", WANG_PW, Some(code), "test"));
        // Typed another way it is still the same, spent code.
        let retyped = code.to_uppercase().replace('-', " ");
        login_failed(engine.login("wang", WANG_PW, Some(&retyped), "test"));
    }
    // The authenticator still works once recovery codes are used up.
    clock.advance(Duration::from_secs(30));
    engine
        .login("wang", WANG_PW, Some(&app.code(clock.step())), "test")
        .unwrap();

    // A new enrolment voids the old codes, used or not.
    engine.disable_totp(&admin(), "wang").unwrap();
    let again = engine.enroll_totp(&admin(), "wang").unwrap();
    let app = authenticator(&again.uri);
    clock.advance(Duration::from_secs(30));
    engine
        .confirm_totp(&admin(), "wang", &app.code(clock.step()))
        .unwrap();
    login_failed(engine.login("wang", WANG_PW, Some(&codes[9]), "test"));
    engine
        .login(
            "wang",
            WANG_PW,
            Some(again.recovery_codes[0].as_str()),
            "test",
        )
        .unwrap();
}

// ---------------------------------------------------------------------------
// Guessing: lockout and throttling
// ---------------------------------------------------------------------------

#[test]
fn wrong_passwords_lock_the_account_until_an_admin_unlocks_it() {
    let fx = Fixture::new();
    let clock = ManualClock::new();
    let settings = AuthSettings::default();
    let max = settings.max_failures;
    // Longer than any backoff, shorter than the throttle window: the
    // throttle never refuses, and never forgets.
    let pause = settings.backoff_max + Duration::from_secs(60);
    assert!(pause < settings.throttle_window);
    let engine = open(&fx, &clock, settings);
    add_user(&engine, "wang", &["sales"], WANG_PW);
    add_user(&engine, "zhao", &["support"], ZHAO_PW);
    let attempt = |password: &str| {
        clock.advance(pause);
        engine.login("wang", password, None, "test")
    };

    // One short of the limit, then the right password: the count restarts.
    for _ in 1..max {
        login_failed(attempt(WRONG_PW));
    }
    attempt(WANG_PW).unwrap();
    for _ in 1..max {
        login_failed(attempt(WRONG_PW));
    }
    attempt(WANG_PW).unwrap();

    // `max` in a row lock it.
    for _ in 0..max {
        login_failed(attempt(WRONG_PW));
    }
    let why = last_login_reason(&engine);
    assert_eq!(why, "wrong password; account locked");
    // The right password gets the same answer as a wrong one, and time
    // does not unlock.
    login_failed(attempt(WANG_PW));
    clock.advance(Duration::from_secs(30 * 24 * 3600));
    login_failed(attempt(WANG_PW));
    assert_eq!(last_login_reason(&engine), "account locked");

    // Only an admin unlocks.
    let why = denied(engine.unlock_principal(&as_("zhao"), "wang"));
    assert!(why.contains("only admins may"), "{why}");
    login_failed(attempt(WANG_PW));
    engine.unlock_principal(&admin(), "wang").unwrap();
    attempt(WANG_PW).unwrap();
}

fn throttling() -> AuthSettings {
    AuthSettings {
        max_failures: 1000,
        free_failures: 3,
        backoff_base: Duration::from_secs(10),
        backoff_max: Duration::from_secs(15 * 60),
        throttle_window: Duration::from_secs(3600),
        ..AuthSettings::default()
    }
}

fn retry_in(secs: u64) -> String {
    format!("login refused: too many failed attempts; retry in {secs} s")
}

#[test]
fn throttling_refuses_attempts_inside_the_backoff_without_checking_the_password() {
    let fx = Fixture::new();
    let clock = ManualClock::new();
    let engine = open(&fx, &clock, throttling());
    add_user(&engine, "wang", &["sales"], WANG_PW);
    let audited = login_entries(&engine).len();

    // Three free failures for a known name and for an unknown one, each
    // from a source of its own.
    for _ in 0..3 {
        login_failed(engine.login("wang", WRONG_PW, None, "known"));
        login_failed(engine.login("ghost", WRONG_PW, None, "unknown"));
    }
    // The fourth is refused before the password is looked at: even the
    // right one. Known and unknown names get the same answer.
    assert_eq!(
        denied(engine.login("wang", WANG_PW, None, "known")),
        retry_in(10)
    );
    assert_eq!(
        denied(engine.login("ghost", WRONG_PW, None, "unknown")),
        retry_in(10)
    );
    clock.advance(Duration::from_secs(9));
    assert_eq!(
        denied(engine.login("wang", WANG_PW, None, "known")),
        retry_in(1)
    );
    assert_eq!(
        denied(engine.login("ghost", WRONG_PW, None, "unknown")),
        retry_in(1)
    );

    // The wait is over: attempts are checked again.
    clock.advance(Duration::from_secs(1));
    login_failed(engine.login("ghost", WRONG_PW, None, "unknown"));
    login_failed(engine.login("wang", WRONG_PW, None, "known"));
    // That was the fourth counted failure, so the wait doubles: the four
    // throttled attempts were not counted (else it would be 80 s).
    assert_eq!(
        denied(engine.login("wang", WANG_PW, None, "known")),
        retry_in(20)
    );
    clock.advance(Duration::from_secs(20));
    engine.login("wang", WANG_PW, None, "known").unwrap();

    // Every attempt is audited, throttled ones with their wait.
    let entries = login_entries(&engine);
    let new = &entries[audited..];
    assert_eq!(new.len(), 6 + 4 + 2 + 1 + 1);
    let throttled: Vec<&str> = new
        .iter()
        .filter_map(|e| denial(e).filter(|r| r.starts_with("throttled")))
        .collect();
    assert_eq!(
        throttled,
        [
            "throttled for 10 s",
            "throttled for 10 s",
            "throttled for 1 s",
            "throttled for 1 s",
            "throttled for 20 s"
        ]
    );
}

#[test]
fn throttling_counts_per_source_and_forgets_after_its_window() {
    let fx = Fixture::new();
    let clock = ManualClock::new();
    let settings = throttling();
    let window = settings.throttle_window;
    let engine = open(&fx, &clock, settings);
    add_user(&engine, "wang", &["sales"], WANG_PW);

    // One source guessing three names holds back a fourth name from it...
    for name in ["ghost1", "ghost2", "ghost3"] {
        login_failed(engine.login(name, WRONG_PW, None, "10.0.0.9"));
    }
    assert_eq!(
        denied(engine.login("wang", WANG_PW, None, "10.0.0.9")),
        retry_in(10)
    );
    // ...but not that name from elsewhere.
    engine.login("wang", WANG_PW, None, "10.0.0.10").unwrap();

    // Failures older than the window are forgotten by the throttle.
    for _ in 0..3 {
        login_failed(engine.login("wang", WRONG_PW, None, "laptop"));
    }
    assert_eq!(
        denied(engine.login("wang", WANG_PW, None, "laptop")),
        retry_in(10)
    );
    clock.advance(window + Duration::from_secs(1));
    for _ in 0..3 {
        login_failed(engine.login("wang", WRONG_PW, None, "laptop"));
    }
    assert_eq!(
        denied(engine.login("wang", WANG_PW, None, "laptop")),
        retry_in(10)
    );
}

#[test]
fn parallel_attempts_from_one_source_do_not_bypass_its_throttle() {
    const RACERS: usize = 8;
    let fx = Fixture::new();
    let clock = ManualClock::new();
    // Every failure makes the next attempt wait an hour.
    let settings = AuthSettings {
        free_failures: 0,
        backoff_base: Duration::from_secs(3600),
        ..throttling()
    };
    let engine = open(&fx, &clock, settings);
    let barrier = Barrier::new(RACERS);
    let results: Vec<custodian::Result<Session>> = std::thread::scope(|s| {
        let racers: Vec<_> = (0..RACERS)
            .map(|i| {
                let (barrier, engine) = (&barrier, &engine);
                s.spawn(move || {
                    barrier.wait();
                    engine.login(&format!("ghost{i}"), WRONG_PW, None, "10.0.0.9")
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let checked = results
        .iter()
        .filter(|r| matches!(r, Err(Error::Denied(Denied::LoginFailed))))
        .count();
    assert_eq!(
        checked, 1,
        "{checked} of {RACERS} simultaneous attempts were checked: {results:?}"
    );
}

// ---------------------------------------------------------------------------
// Every failure looks the same
// ---------------------------------------------------------------------------

#[test]
fn every_failed_login_gives_the_same_answer_and_is_audited() {
    let fx = Fixture::new();
    let clock = ManualClock::new();
    let engine = open(
        &fx,
        &clock,
        AuthSettings {
            max_failures: 3,
            ..lenient()
        },
    );
    add_user(&engine, "wang", &["sales"], WANG_PW);
    add_user(&engine, "zhao", &["support"], ZHAO_PW);
    engine.deactivate_principal(&admin(), "zhao").unwrap();
    add_user(&engine, "lee", &["sales"], "saffron-meadow-tiles-8");
    for _ in 0..3 {
        login_failed(engine.login("lee", WRONG_PW, None, "test"));
    }
    engine
        .add_principal(&admin(), "nopw", PrincipalKind::User, &["sales"])
        .unwrap();
    add_user(&engine, "chen", &["sales"], "granite-willow-echo-55");
    let app = authenticator(&engine.enroll_totp(&admin(), "chen").unwrap().uri);
    engine
        .confirm_totp(&admin(), "chen", &app.code(clock.step()))
        .unwrap();
    clock.advance(Duration::from_secs(300));

    // (name, password, second factor, the reason only the audit sees)
    let attempts: [(&str, &str, Option<&str>, &str); 8] = [
        ("nobody", WANG_PW, None, "unknown principal"),
        ("Not A Valid Name!", WANG_PW, None, "unknown principal"),
        ("wang", WRONG_PW, None, "wrong password"),
        ("wang", "", None, "wrong password"),
        ("lee", "saffron-meadow-tiles-8", None, "account locked"),
        ("zhao", ZHAO_PW, None, "deactivated"),
        ("nopw", WANG_PW, None, "wrong password"),
        (
            "chen",
            "granite-willow-echo-55",
            Some("12345x"),
            "wrong second factor",
        ),
    ];
    let before = login_entries(&engine).len();
    let mut answers = Vec::new();
    for (name, password, code, reason) in attempts {
        let error = engine.login(name, password, code, "test").unwrap_err();
        assert!(
            matches!(&error, Error::Denied(Denied::LoginFailed)),
            "{name}: {error:?}"
        );
        answers.push((name, error.to_string(), format!("{error:?}")));
        let entry = login_entries(&engine).pop().unwrap();
        if reason == "unknown principal" {
            // A name that is no account is kept only as a keyed hash: a
            // password typed into the name field is stored nowhere.
            assert!(entry.actor.starts_with("unknown #"), "{entry:?}");
            assert!(!format!("{entry:?}").contains(name), "{entry:?}");
        } else {
            assert_eq!(entry.actor, name);
        }
        assert_eq!(denial(&entry), Some(reason), "{name}: {entry:?}");
    }
    let (_, display, debug) = &answers[0];
    assert_eq!(
        display,
        &format!("access denied: {LOGIN_FAILED}"),
        "the message a caller shows"
    );
    for (name, d, g) in &answers {
        assert_eq!(d.as_bytes(), display.as_bytes(), "{name}");
        assert_eq!(g.as_bytes(), debug.as_bytes(), "{name}");
    }
    assert_eq!(login_entries(&engine).len(), before + attempts.len());
}

// ---------------------------------------------------------------------------
// Failure counters survive kill -9 (the real binary)
// ---------------------------------------------------------------------------

#[test]
fn failed_login_counts_survive_kill_9() {
    // Each committed failure doubles the next wait past the third; killed
    // processes that committed are capped so the test stays short.
    const MAX_KILL_TRIES: usize = 8;
    const MAX_KILLED_COMMITTED: usize = 1;
    // `AuthSettings::default().max_failures`, which the binary uses.
    let max = usize::try_from(AuthSettings::default().max_failures).unwrap();
    let fx = Fixture::new();
    let cli = Cli::init(&fx);
    cli.ok(&["principal", "add", "wang", "--role", "sales"], "");
    cli.ok(&["principal", "passwd", "wang"], &line(WANG_PW));
    let started = Instant::now();
    cli.ok(&["login", "wang", "--source", "warm-up"], &line(WANG_PW));
    let span = started.elapsed();
    let mut rng = Rng::new();

    // A source per attempt: only the account's own throttle applies.
    let mut attempt = 0;
    let mut acknowledged = 0;
    let (mut kill_tries, mut killed, mut killed_committed) = (0, 0, 0);
    while acknowledged < max {
        attempt += 1;
        let source = format!("attempt-{attempt}");
        let mut child = cli.spawn(&["login", "wang", "--source", &source], &line(WRONG_PW));
        if kill_tries < MAX_KILL_TRIES
            && killed_committed < MAX_KILLED_COMMITTED
            && rng.below(3) != 0
        {
            kill_tries += 1;
            // Biased late: the commit comes at the end of a login.
            std::thread::sleep(span.mul_f64(rng.unit().sqrt() * 1.1));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                child.wait().unwrap();
                killed += 1;
                let recorded = recorded_failures(&cli).len();
                assert!(
                    recorded >= acknowledged,
                    "{acknowledged} failures acknowledged, {recorded} recorded"
                );
                killed_committed = recorded - acknowledged;
                continue;
            }
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a wrong password logged in");
        if stderr.contains(LOGIN_FAILED) {
            acknowledged += 1;
        } else if let Some(secs) = retry_after(&stderr) {
            std::thread::sleep(Duration::from_secs(secs) + Duration::from_millis(50));
        } else {
            panic!("unexpected answer: {stderr}");
        }
    }
    eprintln!(
        "{attempt} attempts, {killed} killed, {killed_committed} of them committed, {:?} a login",
        span
    );

    // Locked: the right password gets the refusal of a wrong one.
    let out = cli.login_answered(WANG_PW, "after-lock");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(LOGIN_FAILED), "{stderr}");

    // Every acknowledged failure was recorded, and the account locked at
    // exactly the limit: killed processes either committed their failure
    // with its audit entry, or neither.
    let failures = recorded_failures(&cli);
    assert_eq!(
        failures.len(),
        acknowledged + killed_committed + 1,
        "{failures:?}"
    );
    for (i, reason) in failures.iter().enumerate() {
        let expected = match (i + 1).cmp(&max) {
            std::cmp::Ordering::Less => "wrong password",
            std::cmp::Ordering::Equal => "wrong password; account locked",
            // A locked account is refused before its password is checked.
            std::cmp::Ordering::Greater => "account locked",
        };
        assert_eq!(reason, expected, "failure {}: {failures:?}", i + 1);
    }

    cli.ok(&["principal", "unlock", "wang"], "");
    let out = cli.login_answered(WANG_PW, "after-unlock");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verified = cli.ok(&["audit", "verify"], "");
    assert!(verified.contains("audit chain verified"), "{verified}");
}

// ---------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------

#[test]
fn a_session_token_acts_as_its_principal_until_logout() {
    let fx = Fixture::new();
    let clock = ManualClock::new();
    let engine = open(&fx, &clock, lenient());
    add_user(&engine, "wang", &["sales"], WANG_PW);
    let session = engine.login("wang", WANG_PW, None, "laptop").unwrap();
    assert!(session.token().starts_with("cst_"));
    assert!(!format!("{session:?}").contains(session.token()));
    assert_eq!(
        session.expires_at,
        clock.now() + chrono::Duration::hours(12)
    );
    let ctx = Context::session(session.token(), "sales_contact");

    assert_eq!(engine.count_customers(&ctx).unwrap(), 0);
    let own = engine.sessions(&ctx).unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!(
        (own[0].principal.as_str(), own[0].source.as_str()),
        ("wang", "laptop")
    );
    assert!(!own[0].second_factor);
    // The audit names the principal behind the token.
    let entry = last_entry(&engine, "session.list");
    assert_eq!(
        (entry.actor.as_str(), entry.purpose.as_str()),
        ("wang", "sales_contact")
    );

    let forged = Context::session(format!("cst_{}", "0".repeat(64)), "");
    let why = denied(engine.count_customers(&forged));
    assert!(why.contains("invalid or revoked session token"), "{why}");

    engine.logout(session.token()).unwrap();
    let why = denied(engine.count_customers(&ctx));
    assert!(why.contains("invalid or revoked session token"), "{why}");
}

#[test]
fn deactivating_a_principal_ends_its_sessions_at_once() {
    let fx = Fixture::new();
    let clock = ManualClock::new();
    let engine = open(&fx, &clock, lenient());
    add_user(&engine, "wang", &["sales"], WANG_PW);
    add_user(&engine, "zhao", &["support"], ZHAO_PW);
    let wang = Context::session(
        engine.login("wang", WANG_PW, None, "t").unwrap().token(),
        "",
    );
    let zhao = Context::session(
        engine.login("zhao", ZHAO_PW, None, "t").unwrap().token(),
        "",
    );
    engine.count_customers(&wang).unwrap();

    engine.deactivate_principal(&admin(), "wang").unwrap();
    denied(engine.count_customers(&wang));
    denied(engine.sessions(&wang));
    assert!(sessions_of(&engine, "wang").is_empty());
    login_failed(engine.login("wang", WANG_PW, None, "t"));
    engine.count_customers(&zhao).unwrap();
}

#[test]
fn sessions_are_revoked_by_token_by_listed_id_or_all_at_once() {
    let fx = Fixture::new();
    let clock = ManualClock::new();
    let engine = open(&fx, &clock, lenient());
    add_user(&engine, "wang", &["sales"], WANG_PW);
    add_user(&engine, "zhao", &["support"], ZHAO_PW);
    let laptop = engine.login("wang", WANG_PW, None, "laptop").unwrap();
    let phone = engine.login("wang", WANG_PW, None, "phone").unwrap();
    let desk = engine.login("wang", WANG_PW, None, "desk").unwrap();
    let zhao = engine.login("zhao", ZHAO_PW, None, "desk").unwrap();
    let works = |s: &Session| {
        engine
            .count_customers(&Context::session(s.token(), ""))
            .is_ok()
    };

    engine.revoke_session(&admin(), laptop.token()).unwrap();
    assert!(!works(&laptop) && works(&phone) && works(&desk));

    let listed = sessions_of(&engine, "wang");
    let id = |source: &str| {
        listed
            .iter()
            .find(|s| s.source == source)
            .map(|s| s.id.clone())
            .unwrap()
    };
    assert!(listed.iter().all(|s| !s.id.starts_with("cst_")));
    engine.revoke_session(&admin(), &id("phone")).unwrap();
    assert!(!works(&phone) && works(&desk));
    // A prefix shorter than eight characters could name many sessions.
    let short = &id("desk")[..7];
    assert!(matches!(
        engine.revoke_session(&admin(), short),
        Err(Error::NotFound(_))
    ));
    assert!(works(&desk));

    // A principal revokes its own sessions, never another's.
    let as_wang = Context::session(desk.token(), "");
    let result = engine.revoke_session(&as_wang, zhao.token());
    assert!(
        matches!(&result, Err(Error::Denied(Denied::NotPermitted { what, .. }))
            if what == "revoke the sessions of others"),
        "{result:?}"
    );
    assert!(works(&zhao));
    assert_eq!(engine.revoke_sessions(&admin(), "zhao").unwrap(), 1);
    assert!(!works(&zhao));
    engine.revoke_session(&as_wang, desk.token()).unwrap();
    assert!(!works(&desk));
    assert!(sessions_of(&engine, "wang").is_empty());
}

#[test]
fn sessions_end_when_idle_and_after_their_lifetime() {
    let fx = Fixture::new();
    let clock = ManualClock::new();
    let idle = Duration::from_secs(10 * 60);
    let absolute = Duration::from_secs(60 * 60);
    let engine = open(
        &fx,
        &clock,
        AuthSettings {
            session_idle: idle,
            session_absolute: absolute,
            ..lenient()
        },
    );
    add_user(&engine, "wang", &["sales"], WANG_PW);
    let count = |s: &Session| engine.count_customers(&Context::session(s.token(), ""));

    // Used every nine minutes it lives its full hour, to the microsecond.
    let busy = engine.login("wang", WANG_PW, None, "t").unwrap();
    for _ in 0..6 {
        clock.advance(Duration::from_secs(9 * 60));
        count(&busy).unwrap();
    }
    clock.advance(Duration::from_secs(6 * 60));
    count(&busy).unwrap();
    clock.advance(Duration::from_micros(1));
    let why = denied(count(&busy));
    assert_eq!(why, "the session has expired; log in again");
    // And it is gone.
    let why = denied(count(&busy));
    assert!(why.contains("invalid or revoked"), "{why}");

    // Unused for longer than the idle time, it ends.
    let idler = engine.login("wang", WANG_PW, None, "t").unwrap();
    clock.advance(idle - Duration::from_secs(1));
    count(&idler).unwrap();
    clock.advance(idle + Duration::from_secs(1));
    let why = denied(count(&idler));
    assert_eq!(why, "the session has expired; log in again");
}

/// Regression: `sessions` listed sessions past their idle or absolute
/// lifetime until their token was used again.
#[test]
fn listed_sessions_are_only_live_ones() {
    let fx = Fixture::new();
    let clock = ManualClock::new();
    let idle = AuthSettings::default().session_idle;
    let engine = open(&fx, &clock, lenient());
    add_user(&engine, "wang", &["sales"], WANG_PW);
    let session = engine.login("wang", WANG_PW, None, "t").unwrap();
    clock.advance(idle + Duration::from_secs(1));
    let listed = sessions_of(&engine, "wang");
    let used = engine.count_customers(&Context::session(session.token(), ""));
    assert_eq!(
        denied(used),
        "the session has expired; log in again",
        "the session is over"
    );
    assert!(
        listed.is_empty(),
        "an expired session is listed: {listed:?}"
    );
}

#[test]
fn a_role_that_requires_2fa_refuses_sessions_opened_without_one() {
    let fx = Fixture::new();
    let clock = ManualClock::new();
    let engine = open(&fx, &clock, lenient());
    add_user(&engine, "wang", &["sales"], WANG_PW);
    let password_only = engine.login("wang", WANG_PW, None, "t").unwrap();
    let ctx = Context::session(password_only.token(), "");
    engine.count_customers(&ctx).unwrap();

    set_roles(&engine, "wang", &["sales", "admin"]);
    let why = denied(engine.count_customers(&ctx));
    assert_eq!(
        why,
        "role `admin` requires a second factor: log in again with a code"
    );
    // A new login says what is missing, but only after the right password.
    let result = engine.login("wang", WANG_PW, None, "t");
    assert!(
        matches!(&result, Err(Error::Denied(Denied::SecondFactorNotEnrolled { principal, roles }))
            if principal == "wang" && roles == &["admin"]),
        "{result:?}"
    );
    login_failed(engine.login("wang", WRONG_PW, None, "t"));

    let app = authenticator(&engine.enroll_totp(&admin(), "wang").unwrap().uri);
    engine
        .confirm_totp(&admin(), "wang", &app.code(clock.step()))
        .unwrap();
    let why = denied(engine.login("wang", WANG_PW, None, "t"));
    assert!(why.contains("second factor is required"), "{why}");
    clock.advance(Duration::from_secs(30));
    let with_code = engine
        .login("wang", WANG_PW, Some(&app.code(clock.step())), "t")
        .unwrap();
    engine
        .count_customers(&Context::session(with_code.token(), ""))
        .unwrap();
    denied(engine.count_customers(&ctx));

    // The password-only session was refused, not ended: once the role
    // goes, it works again (what the engine does today).
    set_roles(&engine, "wang", &["sales"]);
    engine.count_customers(&ctx).unwrap();
}

// ---------------------------------------------------------------------------
// Passwords
// ---------------------------------------------------------------------------

#[test]
fn weak_passwords_are_refused_with_a_reason_to_act_on() {
    let fx = Fixture::new();
    let clock = ManualClock::new();
    let engine = open(&fx, &clock, lenient());
    add_user(&engine, "wang", &["sales"], WANG_PW);
    let email = PrincipalUpdate {
        set_attributes: [("email".to_owned(), "jasper.holt@example.com".to_owned())].into(),
        ..PrincipalUpdate::default()
    };
    engine.update_principal(&admin(), "wang", &email).unwrap();

    let name_or_email = "password contains your name or email address: leave personal details out";
    let too_long = "x1".repeat(513);
    let cases: [(&str, &str); 9] = [
        (
            "Tr0ub4dor&3",
            "password is too short: use at least 12 characters",
        ),
        (
            "qwerty123456",
            "password is too common: it is among the 10,000 most used passwords; choose another",
        ),
        (
            "1qaz2wsx3edc",
            "password is too common: it is among the 10,000 most used passwords; choose another",
        ),
        (
            "Sunshine2024!!",
            "password is a common password with digits or symbols added: choose another",
        ),
        (
            "zzzzzzzzzzzzzzzz",
            "password is one character repeated: use a mix of characters",
        ),
        ("ilovewang-forever-42", name_or_email),
        ("Holt-family-garden-77", name_or_email),
        ("Jasper.Holt@example.com!", name_or_email),
        (&too_long, "password is too long: use at most 1024 bytes"),
    ];
    for (password, expected) in cases {
        // Both paths apply the policy: an admin reset and one's own change.
        for (ctx, current) in [(admin(), None), (as_("wang"), Some(WANG_PW))] {
            match engine.set_password(&ctx, "wang", current, password) {
                Err(Error::Identity(IdentityError::WeakPassword(reason))) => {
                    assert_eq!(reason, expected, "{password:?}")
                }
                other => panic!("{password:?} was not refused: {other:?}"),
            }
        }
    }
    // Nothing changed.
    engine.login("wang", WANG_PW, None, "t").unwrap();
    engine
        .set_password(&admin(), "wang", None, "quiet-harbour-morning-7")
        .unwrap();
    engine
        .login("wang", "quiet-harbour-morning-7", None, "t")
        .unwrap();
}

#[test]
fn changing_ones_own_password_needs_the_current_one() {
    let fx = Fixture::new();
    let clock = ManualClock::new();
    let engine = open(&fx, &clock, lenient());
    add_user(&engine, "wang", &["sales"], WANG_PW);
    add_user(&engine, "zhao", &["support"], ZHAO_PW);
    let new = "quiet-harbour-morning-7";
    let newer = "amber-viaduct-falcon-31";
    let me = as_("wang");

    for current in [None, Some(WRONG_PW)] {
        let why = denied(engine.set_password(&me, "wang", current, new));
        assert_eq!(
            why,
            "the current password is wrong: changing your own password needs it"
        );
    }
    engine.login("wang", WANG_PW, None, "t").unwrap();
    login_failed(engine.login("wang", new, None, "t"));
    engine
        .set_password(&me, "wang", Some(WANG_PW), new)
        .unwrap();
    login_failed(engine.login("wang", WANG_PW, None, "t"));
    let session = engine.login("wang", new, None, "t").unwrap();

    // Through a session, too; the change ends that session as well.
    let ctx = Context::session(session.token(), "");
    denied(engine.set_password(&ctx, "wang", None, newer));
    engine.set_password(&ctx, "wang", Some(new), newer).unwrap();
    let why = denied(engine.count_customers(&ctx));
    assert!(why.contains("invalid or revoked"), "{why}");

    // Another principal may not, even knowing the password.
    for current in [None, Some(newer)] {
        let result = engine.set_password(&as_("zhao"), "wang", current, new);
        assert!(
            matches!(&result, Err(Error::Denied(Denied::NotPermitted { principal, who, .. }))
                if principal == "zhao" && who == "itself or an admin"),
            "{result:?}"
        );
    }
    // An admin resets it without knowing it.
    engine.set_password(&admin(), "wang", None, new).unwrap();
    engine.login("wang", new, None, "t").unwrap();
    login_failed(engine.login("wang", newer, None, "t"));
}

/// Regression: `set_password` checked the current password with neither
/// throttle nor lockout, so a stolen session could guess it without limit.
#[test]
fn guessing_the_current_password_through_a_session_is_throttled_and_locks() {
    let fx = Fixture::new();
    let clock = ManualClock::new();
    let settings = AuthSettings::default();
    let (max, free) = (settings.max_failures, settings.free_failures);
    let pause = settings.backoff_max + Duration::from_secs(60);
    let engine = open(&fx, &clock, settings);
    add_user(&engine, "wang", &["sales"], WANG_PW);
    let stolen = engine.login("wang", WANG_PW, None, "t").unwrap();
    let ctx = Context::session(stolen.token(), "");
    let new = "quiet-harbour-morning-7";
    let guess = |i: u32| {
        let guess = format!("guess-number-{i}-abcdef");
        denied(engine.set_password(&ctx, "wang", Some(&guess), new))
    };

    for i in 0..free {
        assert_eq!(
            guess(i),
            "the current password is wrong: changing your own password needs it"
        );
    }
    // The next must wait, even with the right password.
    let result = engine.set_password(&ctx, "wang", Some(WANG_PW), new);
    assert!(
        matches!(&result, Err(Error::Denied(Denied::Throttled { what, retry_after: 1 }))
            if what == "password change"),
        "{result:?}"
    );
    // Spaced out, the guesses count towards the lockout like logins.
    for i in free..max {
        clock.advance(pause);
        guess(i);
    }
    clock.advance(pause);
    login_failed(engine.login("wang", WANG_PW, None, "t"));
    assert_eq!(last_login_reason(&engine), "account locked");
}

#[test]
fn a_locked_account_cannot_change_its_password_through_an_old_session() {
    let fx = Fixture::new();
    let clock = ManualClock::new();
    // Sessions that outlast the guessing, so only the lock can stop it.
    let settings = AuthSettings {
        session_idle: Duration::from_secs(24 * 3600),
        session_absolute: Duration::from_secs(30 * 24 * 3600),
        ..AuthSettings::default()
    };
    let max = settings.max_failures;
    let pause = settings.backoff_max + Duration::from_secs(60);
    let engine = open(&fx, &clock, settings);
    add_user(&engine, "wang", &["sales"], WANG_PW);
    let stolen = engine.login("wang", WANG_PW, None, "t").unwrap();
    let ctx = Context::session(stolen.token(), "");
    let new = "quiet-harbour-morning-7";
    for i in 0..max * 3 {
        clock.advance(pause);
        let guess = format!("guess-number-{i}-abcdef");
        denied(engine.set_password(&ctx, "wang", Some(&guess), new));
    }
    clock.advance(pause);
    login_failed(engine.login("wang", WANG_PW, None, "t"));
    assert_eq!(last_login_reason(&engine), "account locked");
    clock.advance(pause);
    let changed = engine.set_password(&ctx, "wang", Some(WANG_PW), new);
    assert!(
        changed.is_err(),
        "{} wrong guesses locked the account, then the right one changed its password",
        max * 3
    );
}

#[test]
fn a_non_admin_setting_anothers_password_learns_nothing_about_it() {
    let fx = Fixture::new();
    let clock = ManualClock::new();
    let engine = open(&fx, &clock, lenient());
    add_user(&engine, "wang", &["sales"], WANG_PW);
    add_user(&engine, "zhao", &["support"], ZHAO_PW);
    let before = engine.audit_tail(&admin(), 100_000).unwrap().len();
    let zhao = as_("zhao");
    let existing = engine.set_password(&zhao, "wang", None, "quiet-harbour-morning-7");
    let missing = engine.set_password(&zhao, "nobody", None, "quiet-harbour-morning-7");
    let weak = engine.set_password(&zhao, "wang", None, "short");
    for result in [&existing, &missing, &weak] {
        assert!(
            matches!(result, Err(Error::Denied(Denied::NotPermitted { principal, who, .. }))
                if principal == "zhao" && who == "itself or an admin"),
            "{result:?}"
        );
    }
    // Each refusal is audited (and so was the first audit read).
    let after = engine.audit_tail(&admin(), 100_000).unwrap().len();
    assert_eq!(after, before + 1 + 3);
}

#[test]
fn a_password_change_ends_the_principals_sessions_only() {
    let fx = Fixture::new();
    let clock = ManualClock::new();
    let engine = open(&fx, &clock, lenient());
    add_user(&engine, "wang", &["sales"], WANG_PW);
    add_user(&engine, "zhao", &["support"], ZHAO_PW);
    let wang: Vec<Session> = (0..2)
        .map(|_| engine.login("wang", WANG_PW, None, "t").unwrap())
        .collect();
    let zhao = engine.login("zhao", ZHAO_PW, None, "t").unwrap();
    engine
        .set_password(&admin(), "wang", None, "quiet-harbour-morning-7")
        .unwrap();
    for s in &wang {
        denied(engine.count_customers(&Context::session(s.token(), "")));
    }
    assert!(sessions_of(&engine, "wang").is_empty());
    engine
        .count_customers(&Context::session(zhao.token(), ""))
        .unwrap();
}

#[test]
fn password_hashes_and_tokens_never_leave_the_engine() {
    let fx = Fixture::new();
    let clock = ManualClock::new();
    let engine = open(&fx, &clock, lenient());
    add_user(&engine, "wang", &["sales"], WANG_PW);
    add_user(&engine, "zhao", &["support"], ZHAO_PW);
    let enrolled = engine.enroll_totp(&admin(), "zhao").unwrap();
    assert_eq!(format!("{enrolled:?}"), "TotpEnrollment { .. }");
    let session = engine.login("wang", WANG_PW, None, "t").unwrap();
    login_failed(engine.login("wang", WRONG_PW, None, "t"));

    let principals = engine.principals(&admin()).unwrap();
    let sessions = engine.sessions(&admin()).unwrap();
    let audit = engine.audit_tail(&admin(), 1000).unwrap();
    let shown = [
        serde_json::to_string(&principals).unwrap(),
        format!("{principals:?}"),
        serde_json::to_string(&sessions).unwrap(),
        format!("{sessions:?}"),
        serde_json::to_string(&audit).unwrap(),
        format!("{session:?}"),
    ];
    for text in &shown {
        for secret in ["$argon2id$", WANG_PW, ZHAO_PW, WRONG_PW, session.token()] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    // Nor is any of it on disk in the clear: passwords are hashed, the
    // token kept only as a keyed hash.
    drop(engine);
    for secret in [WANG_PW, ZHAO_PW, WRONG_PW, session.token()] {
        assert!(
            !file_contains(&fx.db(), secret),
            "{secret} in the data file"
        );
        assert!(
            !file_contains(&fx.keys(), secret),
            "{secret} in the key store"
        );
    }
}

/// Regression: a failed login stored the whole name as a throttle key, so
/// anyone could grow the data file by any size.
#[test]
fn a_login_name_of_any_size_stores_a_bounded_throttle_key() {
    const ATTEMPTS: usize = 16;
    const NAME_BYTES: usize = 256 * 1024;
    let fx = Fixture::new();
    let clock = ManualClock::new();
    let engine = open(&fx, &clock, lenient());
    let size = || std::fs::metadata(fx.db()).unwrap().len();
    let before = size();
    for i in 0..ATTEMPTS {
        let name = format!("{i}{}", "x".repeat(NAME_BYTES));
        login_failed(engine.login(&name, WRONG_PW, None, "t"));
    }
    drop(engine);
    let grown = size().saturating_sub(before);
    assert!(
        grown < 1024 * 1024,
        "{ATTEMPTS} failed logins with {NAME_BYTES}-byte names grew the data file by {grown} bytes"
    );
}

// ---------------------------------------------------------------------------
// The command line, end to end
// ---------------------------------------------------------------------------

#[test]
fn cli_login_sessions_and_second_factor_end_to_end() {
    let fx = Fixture::new();
    let cli = Cli::init(&fx);
    cli.ok(&["principal", "add", "wang", "--role", "sales"], "");
    let why = cli.fails(&["principal", "passwd", "wang"], &line("short-pw"));
    assert!(why.contains("password is too short"), "{why}");
    cli.ok(&["principal", "passwd", "wang"], &line(WANG_PW));

    let why = cli.fails(&["login", "wang"], &line(WRONG_PW));
    assert!(why.contains(LOGIN_FAILED), "{why}");
    let token = cli.ok(&["login", "wang"], &line(WANG_PW));
    let token = token.trim();
    assert!(
        token.starts_with("cst_") && !token.contains('\n'),
        "{token:?}"
    );
    assert_eq!(
        cli.ok(&["--session", token, "customer", "count"], "")
            .trim(),
        "0"
    );

    let listed = cli.ok(&["session", "list"], "");
    assert!(
        listed.contains("wang") && listed.contains("from cli"),
        "{listed}"
    );
    let own = cli.ok(&["--session", token, "session", "list", "--json"], "");
    let own: serde_json::Value = serde_json::from_str(&own).unwrap();
    assert_eq!(own.as_array().unwrap().len(), 1);
    assert_eq!(own[0]["principal"], "wang");
    assert!(!own.to_string().contains(token));

    let out = cli.run(&["session", "revoke", "--all", "wang"], "");
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("revoked 1 session(s) of wang"), "{said}");
    let why = cli.fails(&["--session", token, "customer", "count"], "");
    assert!(why.contains("invalid or revoked session token"), "{why}");

    // Second factor: enrol, confirm with the app's code, log in with one.
    let enrolled = cli.ok(&["principal", "2fa", "enroll", "wang"], "");
    let lines: Vec<&str> = enrolled.lines().collect();
    assert_eq!(lines.len(), 11, "{enrolled}");
    assert!(lines[0].starts_with("otpauth://totp/"), "{enrolled}");
    let recovery = &lines[1..];
    assert!(
        recovery
            .iter()
            .all(|c| c.len() == 11 && c.as_bytes()[5] == b'-'),
        "{recovery:?}"
    );
    let app = TOTP::from_url(lines[0]).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    cli.ok(
        &["principal", "2fa", "verify", "wang", &app.generate(now)],
        "",
    );

    let why = cli.fails(&["login", "wang"], &line(WANG_PW));
    assert!(why.contains("second factor is required"), "{why}");
    // The confirming code is spent; the next step's is accepted early.
    let next = app.generate(now + 30);
    let token = cli.ok(&["login", "wang", "--totp", &next], &line(WANG_PW));
    let token = token.trim();
    assert_eq!(
        cli.ok(&["--session", token, "customer", "count"], "")
            .trim(),
        "0"
    );
    let listed = cli.ok(&["session", "list"], "");
    assert!(listed.contains("(2fa)"), "{listed}");

    // A recovery code, once.
    cli.ok(&["login", "wang", "--totp", recovery[0]], &line(WANG_PW));
    let why = cli.fails(&["login", "wang", "--totp", recovery[0]], &line(WANG_PW));
    assert!(why.contains(LOGIN_FAILED), "{why}");

    let verified = cli.ok(&["audit", "verify"], "");
    assert!(verified.contains("audit chain verified"), "{verified}");
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Where the tests' clock starts: a 30-second TOTP step boundary.
const T0_SECS: i64 = 1_800_000_000;

/// A clock the test moves by hand: unix microseconds in an atomic.
#[derive(Clone)]
struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    fn new() -> Self {
        Self(Arc::new(AtomicI64::new(T0_SECS * 1_000_000)))
    }

    fn clock(&self) -> Clock {
        let micros = Arc::clone(&self.0);
        Clock::from_fn(move || {
            DateTime::from_timestamp_micros(micros.load(Ordering::SeqCst)).unwrap()
        })
    }

    fn now(&self) -> DateTime<chrono::Utc> {
        self.clock().now()
    }

    fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_micros()).unwrap();
        self.0.fetch_add(by, Ordering::SeqCst);
    }

    /// The current 30-second TOTP step.
    fn step(&self) -> u64 {
        u64::try_from(self.0.load(Ordering::SeqCst) / 1_000_000).unwrap() / 30
    }
}

fn open(fx: &Fixture, clock: &ManualClock, settings: AuthSettings) -> Engine {
    Engine::builder()
        .path(fx.db())
        .master_key(fx.key())
        .create(true)
        .clock(clock.clock())
        .auth_settings(settings)
        .open()
        .unwrap()
}

/// No throttle and no lockout, for tests about something else.
fn lenient() -> AuthSettings {
    AuthSettings {
        max_failures: u32::MAX,
        free_failures: u32::MAX,
        ..AuthSettings::default()
    }
}

fn add_user(engine: &Engine, name: &str, roles: &[&str], password: &str) {
    engine
        .add_principal(&admin(), name, PrincipalKind::User, roles)
        .unwrap();
    engine.set_password(&admin(), name, None, password).unwrap();
}

fn set_roles(engine: &Engine, name: &str, roles: &[&str]) {
    let update = PrincipalUpdate {
        roles: Some(roles.iter().map(|r| r.to_string()).collect()),
        ..PrincipalUpdate::default()
    };
    engine.update_principal(&admin(), name, &update).unwrap();
}

/// The message of an `Error::Denied`; fails on anything else.
#[track_caller]
fn denied<T: std::fmt::Debug>(result: custodian::Result<T>) -> String {
    match result {
        Err(Error::Denied(reason)) => reason.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The one answer every failed login gets: it never says which part was
/// wrong, nor whether the account exists.
const LOGIN_FAILED: &str =
    "login failed: wrong name, password or code, or the account is locked or deactivated";

/// Fails unless `result` is the one answer every failed login gets.
#[track_caller]
fn login_failed<T: std::fmt::Debug>(result: custodian::Result<T>) {
    match result {
        Err(Error::Denied(Denied::LoginFailed)) => {}
        other => panic!("expected the failed-login answer, got {other:?}"),
    }
}

fn sessions_of(engine: &Engine, name: &str) -> Vec<custodian::SessionInfo> {
    let mut all = engine.sessions(&admin()).unwrap();
    all.retain(|s| s.principal == name);
    all
}

fn login_entries(engine: &Engine) -> Vec<AuditEntry> {
    let mut all = engine.audit_tail(&admin(), 100_000).unwrap();
    all.retain(|e| e.action == "login");
    all
}

fn last_entry(engine: &Engine, action: &str) -> AuditEntry {
    let all = engine.audit_tail(&admin(), 100_000).unwrap();
    all.into_iter().rev().find(|e| e.action == action).unwrap()
}

fn denial(entry: &AuditEntry) -> Option<&str> {
    match &entry.outcome {
        Outcome::Denied(reason) => Some(reason),
        _ => None,
    }
}

/// The audited reason of the last login, which must have been refused.
fn last_login_reason(engine: &Engine) -> String {
    let entry = login_entries(engine).pop().unwrap();
    denial(&entry).unwrap().to_owned()
}

/// An authenticator app holding an enrolment's secret.
struct App(TOTP);

fn authenticator(uri: &str) -> App {
    App(TOTP::from_url(uri).unwrap())
}

impl App {
    /// The code for a 30-second step.
    fn code(&self, step: u64) -> String {
        self.0.generate(step * 30)
    }
}

fn line(text: &str) -> String {
    format!("{text}\n")
}

/// The `custodian` binary on the fixture's database, acting as `admin`
/// unless a `--session` is given.
struct Cli {
    db: PathBuf,
    key_file: PathBuf,
}

impl Cli {
    fn init(fx: &Fixture) -> Self {
        let cli = Self {
            db: fx.db(),
            key_file: fx.dir.path().join("master.key"),
        };
        cli.ok(&["init", "--new-key"], "");
        cli
    }

    /// Starts a command with `input` on its stdin (not a terminal, so
    /// secrets are read from it a line each).
    fn spawn(&self, args: &[&str], input: &str) -> Child {
        let mut child = Command::new(env!("CARGO_BIN_EXE_custodian"))
            .arg("--db")
            .arg(&self.db)
            .arg("--key-file")
            .arg(&self.key_file)
            .args(args)
            .env_remove("CUSTODIAN_KEY")
            .env_remove("CUSTODIAN_AS")
            .env_remove("CUSTODIAN_SESSION")
            .env_remove("CUSTODIAN_PURPOSE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // A child killed early may have closed its end: that is fine.
        let _ = stdin.write_all(input.as_bytes());
        child
    }

    fn run(&self, args: &[&str], input: &str) -> Output {
        self.spawn(args, input).wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], input: &str) -> String {
        let out = self.run(args, input);
        assert!(
            out.status.success(),
            "custodian {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str], input: &str) -> String {
        let out = self.run(args, input);
        assert!(!out.status.success(), "custodian {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }

    /// `login wang` with `password`, waiting out the throttle if it
    /// refuses.
    fn login_answered(&self, password: &str, source: &str) -> Output {
        loop {
            let out = self.run(&["login", "wang", "--source", source], &line(password));
            match retry_after(&String::from_utf8_lossy(&out.stderr)) {
                Some(secs) => {
                    std::thread::sleep(Duration::from_secs(secs) + Duration::from_millis(50))
                }
                None => return out,
            }
        }
    }
}

/// The audited reasons of the failed logins the engine counted (not the
/// throttled ones), oldest first.
fn recorded_failures(cli: &Cli) -> Vec<String> {
    let tail = cli.ok(&["audit", "tail", "-n", "100000", "--json"], "");
    let entries: Vec<serde_json::Value> = serde_json::from_str(&tail).unwrap();
    entries
        .iter()
        .filter(|e| e["action"] == "login")
        .filter_map(|e| e["outcome"]["denied"].as_str())
        .filter(|r| !r.starts_with("throttled"))
        .map(str::to_owned)
        .collect()
}

/// The wait a throttled login asks for.
fn retry_after(stderr: &str) -> Option<u64> {
    let rest = stderr.split("retry in ").nth(1)?;
    rest.split(' ').next()?.parse().ok()
}

/// A small xorshift generator; the seed is printed, and taken from
/// `CUSTODIAN_TEST_SEED` when set, to replay a run.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = std::env::var("CUSTODIAN_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            })
            | 1;
        eprintln!("CUSTODIAN_TEST_SEED={seed}");
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
