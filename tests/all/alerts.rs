//! Alerts: raised by the engine's rules with their evidence (counts, never
//! a value), handled by staff (acknowledged, then resolved with a note),
//! each step audited; never by the principal whose actions raised them.

use custodian::{
    AlertState, Denied, Error, Outcome, PrincipalKind, PrincipalUpdate, Query, Severity,
};

use crate::{Fixture, admin, as_, for_role, pack_with_limits};

/// A database where `wang` (sales) went past his hourly budget once; the
/// alert's id.
fn over_budget(fixture: &Fixture) -> (custodian::Engine, u64) {
    let engine = fixture.with_staff();
    engine
        .install_policy(
            &admin(),
            &pack_with_limits(&for_role("sales", r#"#{ rows: #{ hour: 1 } }"#)),
        )
        .unwrap();
    let wang = as_("wang");
    for i in 0..2 {
        let new = custodian::NewCustomer::new().field("name", format!("Customer {i}"));
        engine.create_customer(&wang, new).unwrap();
    }
    let owned = Query::Owner("wang".into());
    assert!(engine.find_customers(&wang, &owned, 2).is_err());
    let alerts = engine.alerts(&admin(), 10).unwrap();
    let alert = alerts.iter().find(|a| a.kind == "guard.budget").unwrap();
    (engine, alert.id)
}

#[test]
fn an_alert_carries_its_rule_its_actor_and_counts_but_no_value() {
    let fixture = Fixture::new();
    let (engine, id) = over_budget(&fixture);
    let alert = engine.alert(&admin(), id).unwrap();
    assert_eq!(alert.severity, Severity::Warning);
    assert_eq!(alert.state, AlertState::Open);
    assert_eq!(alert.actor.as_deref(), Some("wang"));
    assert_eq!(alert.subject, "wang");
    let evidence: std::collections::BTreeMap<_, _> = alert.evidence.iter().cloned().collect();
    assert_eq!(evidence["access"], "search");
    assert_eq!(evidence["measure"], "rows");
    assert_eq!(evidence["window"], "hour");
    assert_eq!(evidence["limit"], "1");
    assert_eq!(evidence["used"], "0");
    assert_eq!(evidence["asked"], "2");
    assert!(!alert.message.contains("Customer"), "{}", alert.message);
    let open = engine
        .alerts_where(&admin(), Some(AlertState::Open), 10)
        .unwrap();
    assert!(open.iter().any(|a| a.id == id));
}

#[test]
fn staff_acknowledge_then_resolve_with_a_note_each_step_audited() {
    let fixture = Fixture::new();
    let (engine, id) = over_budget(&fixture);
    engine
        .add_principal(&admin(), "sun", PrincipalKind::User, &["admin"])
        .unwrap();
    let sun = as_("sun");
    // A resolution says what was found.
    let refused = engine.resolve_alert(&sun, id, "  ").unwrap_err();
    assert!(refused.to_string().contains("needs a note"), "{refused}");
    engine.acknowledge_alert(&sun, id, "calling wang").unwrap();
    assert!(engine.acknowledge_alert(&sun, id, "again").is_err());
    engine
        .resolve_alert(&sun, id, "quarterly review, agreed with his manager")
        .unwrap();
    let alert = engine.alert(&admin(), id).unwrap();
    assert_eq!(alert.state, AlertState::Resolved);
    let steps: Vec<_> = alert
        .handled
        .iter()
        .map(|h| (h.by.as_str(), h.state, h.note.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("sun", AlertState::Acknowledged, "calling wang"),
            (
                "sun",
                AlertState::Resolved,
                "quarterly review, agreed with his manager"
            ),
        ]
    );
    // Resolved stays resolved.
    let refused = engine
        .acknowledge_alert(&admin(), id, "reopen")
        .unwrap_err();
    assert!(
        refused.to_string().contains("already resolved"),
        "{refused}"
    );
    assert!(
        engine
            .alerts_where(&admin(), Some(AlertState::Open), 10)
            .unwrap()
            .iter()
            .all(|a| a.id != id)
    );
    // Every step is in the chain, the refused ones with their reason.
    let tail = engine.audit_tail(&admin(), 50).unwrap();
    let target = format!("alert {id}");
    let steps: Vec<_> = tail
        .iter()
        .filter(|e| e.target.as_deref() == Some(target.as_str()) && e.action.starts_with("alert."))
        .map(|e| (e.action.as_str(), matches!(e.outcome, Outcome::Ok)))
        .collect();
    assert_eq!(
        steps,
        [
            ("alert.resolve", false),
            ("alert.acknowledge", true),
            ("alert.acknowledge", false),
            ("alert.resolve", true),
            ("alert.acknowledge", false),
        ]
    );
}

#[test]
fn no_one_handles_an_alert_about_their_own_actions_and_only_admins_handle_any() {
    let fixture = Fixture::new();
    let (engine, id) = over_budget(&fixture);
    // wang, made an admin, still may not close the alert his reads raised.
    let update = PrincipalUpdate {
        roles: Some(vec!["sales".into(), "admin".into()]),
        ..PrincipalUpdate::default()
    };
    engine.update_principal(&admin(), "wang", &update).unwrap();
    let refused = engine
        .resolve_alert(&as_("wang"), id, "nothing to see")
        .unwrap_err();
    assert!(
        matches!(&refused, Error::Denied(Denied::Rule(r)) if r.contains("own actions")),
        "{refused}"
    );
    let refused = engine.acknowledge_alert(&as_("zhao"), id, "").unwrap_err();
    assert!(refused.to_string().contains("only admins may"), "{refused}");
    assert!(engine.alerts(&as_("zhao"), 10).is_err());
    assert_eq!(engine.alert(&admin(), id).unwrap().state, AlertState::Open);
}

#[test]
fn the_command_line_lists_shows_acknowledges_and_resolves() {
    let fixture = Fixture::new();
    let id = {
        let (_engine, id) = over_budget(&fixture);
        id.to_string()
    };
    let run = |args: &[&str]| fixture.run(args);
    let (ok, listed, _) = run(&["alert", "list", "--state", "open"]);
    assert!(ok);
    assert!(
        listed.contains("guard.budget") && listed.contains("warning"),
        "{listed}"
    );
    let (ok, shown, _) = run(&["alert", "show", &id]);
    assert!(ok);
    assert!(shown.contains("evidence  asked = 2"), "{shown}");
    assert!(run(&["alert", "ack", &id, "--note", "on it"]).0);
    let (ok, _, said) = run(&["alert", "resolve", &id]);
    assert!(!ok, "{said}");
    assert!(run(&["alert", "resolve", &id, "--note", "explained"]).0);
    let (ok, shown, _) = run(&["--json", "alert", "show", &id]);
    assert!(ok);
    let json: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(json["state"], "resolved");
    assert_eq!(json["handled"][1]["note"], "explained");
    let (ok, listed, _) = run(&["alert", "list", "--state", "open"]);
    assert!(ok);
    assert!(!listed.contains("guard.budget"), "{listed}");
}
