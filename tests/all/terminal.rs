//! What reaches an operator's terminal through the real command line:
//! stored text and plugin-supplied text carry no character a terminal
//! would act on (escape sequences, CR, BEL, backspace, NUL, C1 controls,
//! bidirectional overrides), nor a line break out of a one-line field;
//! what was neutralized shows, and `--json` keeps the value whole.

use std::io::Write as _;
use std::process::{Output, Stdio};

use chrono::{Duration, Utc};
use custodian::{Channel, Direction, NewCustomer, NewFollowUp, NewInteraction};
use custodian_test_artifacts as wasm;

use crate::{Fixture, admin, as_};

/// Stored text at its most hostile: clear the screen, retitle the window,
/// ring the bell, return to the line's start, back up, NUL, the one-byte
/// CSI, reverse the text, DEL, and a line of its own that looks like a
/// refusal.
const HOSTILE: &str =
    "summary\u{1b}[2J\u{1b}]0;title\u{7}\rB\u{8}\u{0}\u{9b}31m\u{202e}dlrow\u{7f}\nDENIED: forged";

/// What a terminal acts on rather than shows (a line end aside).
fn acts(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

fn assert_clean(what: &str, bytes: &[u8]) -> String {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let found: Vec<(usize, char)> = text.char_indices().filter(|(_, c)| acts(*c)).collect();
    assert!(found.is_empty(), "{what}: {found:?} in {text:?}");
    text
}

fn run(fx: &Fixture, args: &[&str]) -> Output {
    fx.custodian()
        .args(args)
        .stdout(Stdio::piped())
        .output()
        .unwrap()
}

/// Runs a command that succeeds; returns its stdout and stderr, both
/// checked clean.
fn clean(fx: &Fixture, args: &[&str]) -> (String, String) {
    let out = run(fx, args);
    let stderr = assert_clean(&format!("{args:?} stderr"), &out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    (
        assert_clean(&format!("{args:?} stdout"), &out.stdout),
        stderr,
    )
}

/// `args` acted on by the administrator.
fn as_admin<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--as", "admin"];
    all.extend_from_slice(args);
    all
}

/// No line of `text` begins with what a value hid after a line break.
fn no_forged_line(text: &str, forged: &str) {
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with(forged)),
        "a value started a line of its own: {text}"
    );
}

#[test]
fn stored_text_reaches_the_terminal_neutralized() {
    let fx = Fixture::new();
    let engine = fx.with_staff();
    let wang = as_("wang");
    let id = engine
        .create_customer(
            &wang,
            NewCustomer::new()
                .field("name", "Li\u{202e}aN\nDENIED: forged")
                .field("phone", "13800138000"),
        )
        .unwrap();
    let mut call = NewInteraction::new(Channel::Call, Direction::Inbound, HOSTILE);
    call.body = Some(HOSTILE.into());
    engine.log_interaction(&wang, id, call).unwrap();
    let due = Utc::now() - Duration::hours(1);
    let note = NewFollowUp {
        customer: id,
        due,
        assignee: Some("wang".into()),
        note: HOSTILE.into(),
    };
    engine.add_follow_up(&wang, note).unwrap();
    engine.set_legal_hold(&admin(), id, Some(HOSTILE)).unwrap();
    drop(engine);
    let id = id.to_string();
    let wang = |args: &[&str]| {
        let mut all = vec!["--as", "wang", "--purpose", "sales_contact"];
        all.extend_from_slice(args);
        clean(&fx, &all)
    };

    let (shown, _) = wang(&["customer", "get", &id]);
    assert!(shown.contains("Li\\u{202e}aN\\nDENIED: forged"), "{shown}");
    let (shown, _) = wang(&["interaction", "list", &id]);
    assert!(
        shown.contains("summary\\u{1b}[2J\\u{1b}]0;title\\u{7}\\rB\\u{8}\\u{0}\\u{9b}31m\\u{202e}dlrow\\u{7f}\\nDENIED: forged"),
        "{shown}"
    );
    no_forged_line(&shown, "DENIED: forged");
    let (shown, _) = wang(&["followup", "due"]);
    assert!(shown.contains("summary\\u{1b}[2J"), "{shown}");
    no_forged_line(&shown, "DENIED: forged");
    let (shown, _) = clean(
        &fx,
        &["--as", "admin", "--purpose", "legal", "lifecycle", &id],
    );
    assert!(shown.contains("summary\\u{1b}[2J"), "{shown}");
    no_forged_line(&shown, "DENIED: forged");
    let (shown, _) = clean(&fx, &["--as", "admin", "audit", "tail", "-n", "20"]);
    no_forged_line(&shown, "DENIED: forged");

    // JSON escapes them all and keeps the value whole.
    let (json, _) = wang(&["--json", "interaction", "list", &id]);
    let listed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(listed[0]["summary"], HOSTILE);
    assert_eq!(listed[0]["body"], HOSTILE);
    let (json, _) = wang(&["--json", "followup", "due"]);
    let due: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(due[0]["note"], HOSTILE);
    let (json, _) = wang(&["--json", "customer", "get", &id]);
    let got: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(got[0]["fields"]["name"], "Li\u{202e}aN\nDENIED: forged");
}

#[test]
fn plugin_text_reaches_the_terminal_neutralized() {
    let fx = Fixture::new();
    drop(fx.open());

    // The consent screen: the manifest as inspected, and as shown before
    // a grant is confirmed.
    let (inspected, _) = clean(&fx, &as_admin(&["plugin", "inspect", wasm::MISBEHAVE]));
    assert!(
        inspected.contains("only\\u{1b}[2K\\r\\u{1b}[1A\\u{1b}]0;title\\u{7}\\u{8}\\u{0}\\u{9b}0m\\u{202e}\\u{7f}\\ngrants    nothing"),
        "{inspected}"
    );
    no_forged_line(&inspected, "grants    nothing");
    let (_, dialog) = clean(
        &fx,
        &as_admin(&["plugin", "install", wasm::MISBEHAVE, "--grant-all", "--yes"]),
    );
    assert!(dialog.contains("only\\u{1b}[2K"), "{dialog}");
    no_forged_line(&dialog, "grants    nothing");
    let (listed, _) = clean(&fx, &as_admin(&["plugin", "list"]));
    assert!(listed.contains("misbehave"), "{listed}");
    let (shown, _) = clean(&fx, &as_admin(&["plugin", "show", "misbehave"]));
    assert!(shown.contains("only\\u{1b}[2K"), "{shown}");
    no_forged_line(&shown, "grants    nothing");
    let (json, _) = clean(&fx, &as_admin(&["--json", "plugin", "show", "misbehave"]));
    let shown: serde_json::Value = serde_json::from_str(&json).unwrap();
    let description = shown["manifest"]["description"].as_str().unwrap();
    assert!(
        description.contains("\u{1b}[2K\r") && description.contains("\u{9b}0m\u{202e}"),
        "{description:?}"
    );

    // The plugin's log, written by the plugin.
    let payload = fx.dir.path().join("payload");
    let mut file = std::fs::File::create(&payload).unwrap();
    write!(file, "print {HOSTILE}").unwrap();
    drop(file);
    let (report, _) = clean(
        &fx,
        &as_admin(&["plugin", "ingest", "misbehave", payload.to_str().unwrap()]),
    );
    assert!(report.contains("summary\\u{1b}[2J"), "{report}");
    let (log, _) = clean(&fx, &as_admin(&["plugin", "log", "misbehave"]));
    assert!(log.contains("summary\\u{1b}[2J"), "{log}");

    // A refusal whose reason quotes the plugin.
    std::fs::write(&payload, "\u{1b}[2Jboom\u{7}\u{0}\u{9b}1m\u{202e}").unwrap();
    let out = run(
        &fx,
        &as_admin(&["plugin", "ingest", "misbehave", payload.to_str().unwrap()]),
    );
    assert!(!out.status.success());
    let why = assert_clean("refusal", &out.stderr);
    assert_clean("refusal stdout", &out.stdout);
    assert!(why.contains("boom"), "{why}");
}
