//! Customers, interactions, follow-ups and principals through the engine API.

use chrono::{Duration, Utc};
use custodian::{
    Channel, CustomerUpdate, Direction, Error, IdentityError, NewCustomer, NewFollowUp,
    NewInteraction, OrderItem, PrincipalKind, Query, Status,
};

use crate::{Fixture, admin, as_, li_na};

fn ids(found: Vec<custodian::Customer>) -> Vec<u64> {
    found.into_iter().map(|c| c.id).collect()
}

#[test]
fn search_by_every_index_follows_updates() {
    let fx = Fixture::new();
    let engine = fx.with_staff();
    let wang = as_("wang");
    let li = engine
        .create_customer(&wang, li_na().field("tags", "VIP, renovation"))
        .unwrap();
    let other = engine
        .create_customer(
            &admin(),
            NewCustomer::new()
                .field("name", "Zhang Wei")
                .field("tags", "vip")
                .owner("zhao"),
        )
        .unwrap();
    let find = |q: Query| ids(engine.find_customers(&admin(), &q, 10).unwrap());

    assert_eq!(find(Query::field("phone", "+86 138-0013-8000")), vec![li]);
    assert_eq!(find(Query::field("email", "LI.NA@example.com")), vec![li]);
    assert_eq!(
        find(Query::field("id_number", "110105198803120217")),
        vec![li]
    );
    assert_eq!(find(Query::Owner("wang".into())), vec![li]);
    assert_eq!(find(Query::Tag("vip".into())), vec![li, other]);
    assert_eq!(find(Query::Tag("renovation".into())), vec![li]);
    assert_eq!(find(Query::Status(Status::Active)), vec![li, other]);

    let update = CustomerUpdate::new()
        .set("phone", "13900001111")
        .set("tags", "wholesale")
        .clear("email")
        .owner("zhao");
    engine.update_customer(&admin(), li, update).unwrap();
    assert!(find(Query::field("phone", "13800138000")).is_empty());
    assert_eq!(find(Query::field("phone", "13900001111")), vec![li]);
    assert!(find(Query::field("email", "li.na@example.com")).is_empty());
    assert_eq!(find(Query::Tag("vip".into())), vec![other]);
    assert_eq!(find(Query::Owner("zhao".into())), vec![li, other]);
    assert!(find(Query::Owner("wang".into())).is_empty());
    let view = engine.customer(&admin(), li).unwrap();
    assert_eq!(view.get("email"), None);
    assert_eq!(view.get("tags"), Some("wholesale"));
    assert!(view.updated_at >= view.created_at);

    // Non-indexed fields are refused with the reason.
    let err = engine
        .find_customers(&admin(), &Query::field("company", "x"), 10)
        .unwrap_err();
    assert!(
        err.to_string().contains("`company` is not searchable"),
        "{err}"
    );
    let err = engine
        .find_customers(&admin(), &Query::field("phone", "12"), 10)
        .unwrap_err();
    assert!(err.to_string().contains("`phone`"), "{err}");

    engine.delete_customer(&admin(), li).unwrap();
    assert!(find(Query::field("phone", "13900001111")).is_empty());
    assert!(matches!(
        engine.customer(&admin(), li),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn only_owners_and_admins_change_a_customer() {
    let fx = Fixture::new();
    let engine = fx.with_staff();
    let li = engine.create_customer(&as_("wang"), li_na()).unwrap();
    let change = || CustomerUpdate::new().set("name", "Someone Else");
    let err = engine
        .update_customer(&as_("zhao"), li, change())
        .unwrap_err();
    assert!(matches!(err, Error::Denied(_)), "{err}");
    assert!(matches!(
        engine.delete_customer(&as_("zhao"), li),
        Err(Error::Denied(_))
    ));
    // Sales create customers for themselves only.
    let err = engine
        .create_customer(&as_("wang"), li_na().owner("zhao"))
        .unwrap_err();
    assert!(err.to_string().contains("for themselves"), "{err}");
    engine.update_customer(&as_("wang"), li, change()).unwrap();
    engine.update_customer(&admin(), li, change()).unwrap();
    let err = engine
        .update_customer(&admin(), li, CustomerUpdate::new().clear("name"))
        .unwrap_err();
    assert!(err.to_string().contains("`name` is required"), "{err}");
    assert_eq!(
        engine.customer(&as_("wang"), li).unwrap().get("name"),
        Some("Someone Else")
    );
}

#[test]
fn interactions_move_the_last_interaction_time_and_hide_from_others() {
    let fx = Fixture::new();
    let engine = fx.with_staff();
    let wang = as_("wang");
    let li = engine.create_customer(&wang, li_na()).unwrap();
    assert!(
        engine
            .customer(&wang, li)
            .unwrap()
            .last_interaction_at
            .is_none()
    );

    let then = Utc::now() - Duration::days(3);
    let mut call = NewInteraction::new(Channel::Call, Direction::Outbound, "Asked about the quote");
    call.at = Some(then);
    call.body = Some("She wants it by Friday; call her mobile after 6pm".into());
    engine.log_interaction(&wang, li, call).unwrap();
    let mut order = NewInteraction::new(Channel::Order, Direction::Inbound, "Order #A1");
    order.amount_minor = Some(129_900);
    order.items = vec![OrderItem {
        name: "Hob".into(),
        quantity: 1,
        unit_price_minor: Some(129_900),
    }];
    let earlier = Utc::now() - Duration::days(10);
    order.at = Some(earlier);
    engine.log_interaction(&as_("zhao"), li, order).unwrap();

    let seen = engine
        .customer(&wang, li)
        .unwrap()
        .last_interaction_at
        .unwrap();
    assert_eq!(
        seen.timestamp_micros(),
        then.timestamp_micros(),
        "an older order does not move it back"
    );

    let mine = engine.interactions(&wang, li).unwrap();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[0].summary.as_deref(), Some("Asked about the quote"));
    assert_eq!(
        mine[0].body.as_deref(),
        Some("She wants it by Friday; call her mobile after 6pm")
    );
    assert_eq!(mine[1].amount_minor, Some(129_900));
    assert_eq!(mine[1].logged_by, "zhao");
    // Support sees the history (default policy); analysts do not.
    let theirs = engine.interactions(&as_("zhao"), li).unwrap();
    assert_eq!(theirs[0].summary.as_deref(), Some("Asked about the quote"));
    assert_eq!(theirs[1].items.len(), 1);
    engine
        .add_principal(&admin(), "qian", PrincipalKind::User, &["analyst"])
        .unwrap();
    assert!(matches!(
        engine.interactions(&as_("qian"), li),
        Err(Error::Denied(_))
    ));

    let err = engine
        .log_interaction(
            &wang,
            9999,
            NewInteraction::new(Channel::Sms, Direction::Outbound, "x"),
        )
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    let err = engine
        .log_interaction(
            &wang,
            li,
            NewInteraction::new(Channel::Sms, Direction::Outbound, "x".repeat(5000)),
        )
        .unwrap_err();
    assert!(err.to_string().contains("summary"), "{err}");
    drop(engine);
    assert!(!crate::file_contains(&fx.db(), "Asked about the quote"));
    assert!(!crate::file_contains(&fx.db(), "after 6pm"));
}

#[test]
fn follow_ups_are_listed_when_due_and_go_with_their_customer() {
    let fx = Fixture::new();
    let engine = fx.with_staff();
    let wang = as_("wang");
    let li = engine.create_customer(&wang, li_na()).unwrap();
    let now = Utc::now();
    let add = |due, assignee: Option<&str>, note: &str| {
        engine
            .add_follow_up(
                &wang,
                NewFollowUp {
                    customer: li,
                    due,
                    assignee: assignee.map(String::from),
                    note: note.into(),
                },
            )
            .unwrap()
    };
    let overdue = add(now - Duration::hours(2), None, "Send the quote");
    let for_zhao = add(now - Duration::hours(1), Some("zhao"), "Check the delivery");
    add(now + Duration::days(3), None, "Next week");

    let due = engine.follow_ups_due(&wang, now, None).unwrap();
    let listed: Vec<u64> = due.iter().map(|f| f.id).collect();
    assert_eq!(
        listed,
        vec![overdue, for_zhao],
        "due order, future ones excluded"
    );
    assert_eq!(due[0].note.as_deref(), Some("Send the quote"));
    let zhaos = engine
        .follow_ups_due(&as_("zhao"), now, Some("zhao"))
        .unwrap();
    assert_eq!(zhaos.len(), 1);
    assert_eq!(zhaos[0].note.as_deref(), Some("Check the delivery"));
    // Support reads follow-up notes of any active customer (default policy).
    let all = engine.follow_ups_due(&as_("zhao"), now, None).unwrap();
    assert_eq!(all[0].note.as_deref(), Some("Send the quote"));

    engine
        .add_principal(&admin(), "qian", PrincipalKind::User, &["analyst"])
        .unwrap();
    assert!(matches!(
        engine.complete_follow_up(&as_("qian"), overdue),
        Err(Error::Denied(_))
    ));
    engine.complete_follow_up(&as_("zhao"), for_zhao).unwrap();
    engine.complete_follow_up(&wang, overdue).unwrap();
    assert!(engine.follow_ups_due(&wang, now, None).unwrap().is_empty());
    assert_eq!(
        engine
            .follow_ups_due(&wang, now + Duration::days(4), None)
            .unwrap()
            .len(),
        1
    );

    engine.delete_customer(&wang, li).unwrap();
    assert!(
        engine
            .follow_ups_due(&wang, now + Duration::days(4), None)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn principals_are_managed_by_admins() {
    let fx = Fixture::new();
    let engine = fx.with_staff();
    let err = engine
        .add_principal(&as_("wang"), "mallory", PrincipalKind::User, &["admin"])
        .unwrap_err();
    assert!(matches!(err, Error::Denied(_)), "{err}");
    let err = engine
        .add_principal(&admin(), "wang", PrincipalKind::User, &["sales"])
        .unwrap_err();
    assert!(
        matches!(err, Error::Identity(IdentityError::Exists(_))),
        "{err}"
    );
    let err = engine
        .add_principal(&admin(), "Bad Name", PrincipalKind::User, &["sales"])
        .unwrap_err();
    assert!(
        matches!(err, Error::Identity(IdentityError::InvalidName(_))),
        "{err}"
    );
    // Roles are data: the installed policy defines them.
    let err = engine
        .add_principal(
            &admin(),
            "shop-sync",
            PrincipalKind::Service,
            &["integrator"],
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::Identity(IdentityError::UndefinedRole(_))),
        "{err}"
    );
    engine
        .add_principal(&admin(), "shop-sync", PrincipalKind::Service, &["support"])
        .unwrap();
    let listed = engine.principals(&admin()).unwrap();
    let names: Vec<&str> = listed.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["admin", "shop-sync", "wang", "zhao"]);
    assert!(engine.principals(&as_("wang")).is_err());

    let err = engine.deactivate_principal(&admin(), "admin").unwrap_err();
    assert!(err.to_string().contains("last active admin"), "{err}");
    engine.deactivate_principal(&admin(), "wang").unwrap();
    let err = engine.create_customer(&as_("wang"), li_na()).unwrap_err();
    assert!(err.to_string().contains("deactivated"), "{err}");
    assert!(engine.count_customers(&as_("wang")).is_err());
}

#[test]
fn ids_are_unique_and_survive_reopen() {
    let fx = Fixture::new();
    let engine = fx.open();
    let a = engine.create_customer(&admin(), li_na()).unwrap();
    assert_eq!(a, 1);
    drop(engine);
    let engine = fx.open();
    let b = engine.create_customer(&admin(), li_na()).unwrap();
    assert!(b > a);
    assert_eq!(engine.count_customers(&admin()).unwrap(), 2);
}

/// Regression: a principal who may not see `id_number` could confirm one by
/// searching for it.
#[test]
fn a_sensitive_search_finds_only_what_the_principal_may_see() {
    let fx = Fixture::new();
    let engine = fx.with_staff();
    let li = engine.create_customer(&as_("wang"), li_na()).unwrap();
    let by_id = Query::field("id_number", "110105198803120217");
    // Support is shown no ID number: refused the search outright.
    assert!(matches!(
        engine.find_customers(&as_("zhao"), &by_id, 10),
        Err(custodian::Error::Denied(_))
    ));
    // Even the owner sees the ID number only masked, so a hit would reveal
    // the whole value: no hit.
    assert!(
        engine
            .find_customers(&as_("wang"), &by_id, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(engine.find_customers(&admin(), &by_id, 10).unwrap()),
        vec![li]
    );
    // Personal fields stay searchable by anyone; the result is masked.
    let by_phone = Query::field("phone", "13800138000");
    let found = engine.find_customers(&as_("zhao"), &by_phone, 10).unwrap();
    assert_eq!(found[0].get("phone"), Some("138****8000"));
}

/// A principal the policy shows no personal field (an analyst) learned
/// which customer holds a phone number by searching for it: the answer was
/// the customer, with the phone hidden. A search by a field needs that
/// field shown; refused alike whether or not the value is held.
#[test]
fn a_search_by_a_field_the_principal_may_not_see_is_refused() {
    let fx = Fixture::new();
    let engine = fx.with_staff();
    engine
        .add_principal(
            &admin(),
            "qian",
            custodian::PrincipalKind::User,
            &["analyst"],
        )
        .unwrap();
    let li = engine.create_customer(&as_("wang"), li_na()).unwrap();
    for (field, value) in [
        ("phone", "13800138000"),
        ("phone", "13900139000"),
        ("email", "li.na@example.com"),
        ("email", "nobody@example.com"),
    ] {
        let err = engine
            .find_customers(&as_("qian"), &Query::field(field, value), 10)
            .unwrap_err();
        assert!(
            matches!(&err, custodian::Error::Denied(custodian::Denied::Policy { reason }) if reason.contains(&format!("`{field}`"))),
            "{field} {value}: {err}"
        );
    }
    // The refusal is audited.
    let tail = engine.audit_tail(&admin(), 5).unwrap();
    let last = tail.iter().rev().find(|e| e.actor == "qian").unwrap();
    assert!(
        matches!(last.outcome, custodian::Outcome::Denied(_)),
        "{last:?}"
    );
    // Searches by what an analyst may see still work.
    let by_tag = engine
        .find_customers(&as_("qian"), &Query::Owner("wang".into()), 10)
        .unwrap();
    assert_eq!(ids(by_tag), vec![li]);
}
