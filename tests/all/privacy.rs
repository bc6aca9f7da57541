//! The privacy lifecycle on real databases: consent and minimum necessary
//! data, the retention timeline on a simulated clock, erasure that reaches
//! older copies of the data file (crypto-shredding), anonymization, and
//! subject access exports checked against what was written.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, TimeZone, Utc};
use custodian::{
    Channel, Clock, ConsentChange, Context, CustomerUpdate, Direction, Engine, Error,
    LifecycleState, NewCustomer, NewFollowUp, NewInteraction, OrderItem, PrincipalKind,
    PrivacyError, Query, Transition,
};

use crate::{Fixture, admin, as_, file_contains, li_na};

fn grant(purpose: &str) -> ConsentChange {
    ConsentChange::grant(purpose, "web", "2026-01")
}

fn privacy_error(result: custodian::Result<impl std::fmt::Debug>) -> PrivacyError {
    match result {
        Err(Error::Privacy(e)) => e,
        other => panic!("expected a privacy refusal, got {other:?}"),
    }
}

#[test]
fn fields_need_a_basis_and_sensitive_ones_a_separate_consent() {
    let fx = Fixture::new();
    let engine = fx.with_staff();
    let ctx = admin();
    let base = || {
        NewCustomer::new()
            .field("name", "Sun Li")
            .field("phone", "13800001111")
    };

    // A sensitive field with no consent, or with consent to its purpose
    // but not the separate one naming it, is refused and nothing is stored.
    let none = base().field("id_number", "110105198803120217");
    let err = privacy_error(engine.create_customer(&ctx, none));
    assert!(
        matches!(err, PrivacyError::NoSeparateConsent { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("`id_number`"), "{err}");
    let purpose_only = base()
        .field("id_number", "110105198803120217")
        .consent(grant("identity_verification"));
    let err = privacy_error(engine.create_customer(&ctx, purpose_only));
    assert!(err.to_string().contains("separate consent"), "{err}");
    assert_eq!(engine.count_customers(&ctx).unwrap(), 0);

    // A field whose only purpose needs consent names that purpose.
    let birthday = base().field("birthday", "1990-05-01");
    let err = privacy_error(engine.create_customer(&ctx, birthday));
    assert!(matches!(err, PrivacyError::NoBasis { .. }), "{err}");
    assert!(err.to_string().contains("`birthday`"), "{err}");
    assert!(err.to_string().contains("marketing"), "{err}");
    assert_eq!(engine.count_customers(&ctx).unwrap(), 0);

    // Fields needed for the contract (name, phone, address) need no consent.
    let id = engine
        .create_customer(&ctx, base().field("address", "Chaoyang District, Beijing"))
        .unwrap();
    // Adding a field later is checked against the stored consents.
    let update = CustomerUpdate::new().set("birthday", "1990-05-01");
    privacy_error(engine.update_customer(&ctx, id, update.clone()));
    engine
        .record_consent(&ctx, id, &grant("marketing"))
        .unwrap();
    engine.update_customer(&ctx, id, update).unwrap();
    let with_id = CustomerUpdate::new().set("id_number", "110105198803120217");
    privacy_error(engine.update_customer(&ctx, id, with_id.clone()));
    engine
        .record_consent(&ctx, id, &grant("identity_verification").field("id_number"))
        .unwrap();
    engine.update_customer(&ctx, id, with_id).unwrap();
    let view = engine.customer(&ctx, id).unwrap();
    assert_eq!(view.get("birthday"), Some("1990-05-01"));
    assert_eq!(view.get("id_number"), Some("110105198803120217"));

    // A child's data needs a guardian's consent (PIPL art. 31).
    let child = || {
        NewCustomer::new()
            .field("name", "Xiao Ming")
            .field(
                "birthday",
                (Utc::now() - Duration::days(10 * 365))
                    .format("%Y-%m-%d")
                    .to_string(),
            )
            .consent(grant("marketing"))
    };
    let err = privacy_error(engine.create_customer(&ctx, child()));
    assert!(
        matches!(err, PrivacyError::NoGuardianConsent { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("guardian_consent"), "{err}");
    engine
        .create_customer(&ctx, child().consent(grant("guardian_consent")))
        .unwrap();

    // A consent must name a declared purpose and the notice shown.
    let err = privacy_error(engine.record_consent(&ctx, id, &grant("telepathy")));
    assert!(err.to_string().contains("`telepathy`"), "{err}");
    let no_notice = ConsentChange::grant("marketing", "web", "");
    privacy_error(engine.record_consent(&ctx, id, &no_notice));
    // A separate consent covers sensitive fields only.
    privacy_error(engine.record_consent(&ctx, id, &grant("marketing").field("birthday")));
}

#[test]
fn withdrawal_erases_what_lost_its_basis_and_stops_marketing() {
    let fx = Fixture::new();
    let engine = fx.open();
    let ctx = admin();
    let bytes = std::fs::read(custodian_test_artifacts::MISBEHAVE).unwrap();
    let manifest = engine.inspect_plugin(&bytes).unwrap();
    engine
        .install_plugin(&ctx, &bytes, custodian::Grant::all(&manifest))
        .unwrap();
    let id = engine
        .create_customer(
            &ctx,
            li_na()
                .field("birthday", "1988-03-12")
                .consent(grant("marketing")),
        )
        .unwrap();
    let marketing = format!("command marketing {id}");
    let report = engine.ingest("misbehave", marketing.as_bytes()).unwrap();
    assert_eq!(report.messages.len(), 1, "{report:?}");

    let erased = engine
        .record_consent(&ctx, id, &ConsentChange::withdraw("marketing", "app"))
        .unwrap();
    assert_eq!(erased, vec!["birthday".to_string()]);
    // The audit chain has the cause, then its consequence.
    // (The plugin's reads of the update event come after both.)
    let tail = engine.audit_tail(&ctx, 10).unwrap();
    let ours: Vec<_> = tail.iter().filter(|e| e.actor == "admin").collect();
    let actions: Vec<&str> = ours.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions[actions.len() - 2..],
        ["consent.record", "customer.update"],
        "{tail:?}"
    );
    assert_eq!(ours[ours.len() - 1].fields, ["birthday"], "{tail:?}");
    // Not shown to anyone any more, nor to plugins: it is gone.
    let view = engine.customer(&ctx, id).unwrap();
    assert_eq!(view.get("birthday"), None);
    assert_eq!(
        view.get("phone"),
        Some("+8613800138000"),
        "kept: it serves the contract"
    );
    // The queued marketing message is dropped, and no new one is queued.
    assert!(engine.outbox(&ctx, 10).unwrap().is_empty());
    let report = engine.ingest("misbehave", marketing.as_bytes()).unwrap();
    assert!(report.messages.is_empty(), "{report:?}");
    assert!(engine.outbox(&ctx, 10).unwrap().is_empty());

    // Withdrawing the purpose of a sensitive field erases it too.
    let erased = engine
        .record_consent(
            &ctx,
            id,
            &ConsentChange::withdraw("identity_verification", "paper"),
        )
        .unwrap();
    assert_eq!(erased, vec!["id_number".to_string()]);
    let found = engine
        .find_customers(&ctx, &Query::field("id_number", "110105198803120217"), 10)
        .unwrap();
    assert!(found.is_empty(), "its blind index entry is gone");

    // The ledger keeps the whole history with channel and notice version.
    let history = engine.consent_history(&ctx, id).unwrap();
    let lines: Vec<(String, Option<String>, bool, String)> = history
        .iter()
        .map(|c| {
            (
                c.purpose.clone(),
                c.field.clone(),
                c.granted,
                c.channel.clone(),
            )
        })
        .collect();
    let expect = |p: &str, f: Option<&str>, g: bool, c: &str| {
        (p.to_string(), f.map(str::to_string), g, c.to_string())
    };
    assert_eq!(
        lines,
        vec![
            expect("identity_verification", None, true, "paper"),
            expect("identity_verification", Some("id_number"), true, "paper"),
            expect("marketing", None, true, "web"),
            expect("marketing", None, false, "app"),
            expect("identity_verification", None, false, "paper"),
            expect("identity_verification", Some("id_number"), false, "paper"),
        ]
    );
    assert!(
        history
            .iter()
            .take(3)
            .all(|c| c.notice_version == "2026-01")
    );
}

/// A clock the test moves by hand.
#[derive(Clone)]
struct TestClock(Arc<AtomicI64>);

impl TestClock {
    fn at(start: DateTime<Utc>) -> Self {
        Self(Arc::new(AtomicI64::new(start.timestamp_micros())))
    }

    fn set(&self, t: DateTime<Utc>) {
        self.0.store(t.timestamp_micros(), Ordering::SeqCst);
    }

    fn clock(&self) -> Clock {
        let now = Arc::clone(&self.0);
        Clock::from_fn(move || {
            DateTime::from_timestamp_micros(now.load(Ordering::SeqCst)).unwrap_or_default()
        })
    }
}

/// The lifecycle state as the data steward `lin` sees it (dormant
/// customers are for stewards only).
fn state(engine: &Engine, id: u64) -> &'static str {
    match engine.lifecycle(&as_("lin"), id) {
        Ok(l) => match l.state {
            LifecycleState::Active => "active",
            LifecycleState::Dormant => "dormant",
            LifecycleState::Notified { .. } => "notified",
            _ => "other",
        },
        Err(Error::NotFound(_)) => "removed",
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn customers_move_through_retention_on_schedule() {
    let fx = Fixture::new();
    let t0 = Utc.with_ymd_and_hms(2019, 1, 1, 9, 0, 0).unwrap();
    let clock = TestClock::at(t0);
    let engine = Engine::builder()
        .path(fx.db())
        .master_key(fx.key())
        .create(true)
        .clock(clock.clock())
        .open()
        .unwrap();
    let ctx = admin();
    engine
        .add_principal(&ctx, "wang", PrincipalKind::User, &["sales"])
        .unwrap();
    engine
        .add_principal(&ctx, "lin", PrincipalKind::User, &["steward"])
        .unwrap();
    let customer = |name: &str, phone: &str, tags: &str| {
        let mut new = NewCustomer::new()
            .field("name", name)
            .field("phone", phone)
            .field("email", format!("{phone}@example.com"))
            .field("address", "Tianhe District, Guangzhou")
            .owner("wang");
        if !tags.is_empty() {
            new = new.field("tags", tags);
        }
        engine.create_customer(&ctx, new).unwrap()
    };
    let plain = customer("Plain", "13800000001", "");
    let renovating = customer("Renovating", "13800000002", "renovation");
    let held = customer("Held", "13800000003", "");
    let returning = customer("Returning", "13800000004", "");
    let answering = customer("Answering", "13800000005", "");
    // An order a year in: the anonymized customer leaves its statistics.
    clock.set(t0 + Duration::days(365));
    let order = NewInteraction {
        amount_minor: Some(129_900),
        items: vec![OrderItem {
            name: "sofa".into(),
            quantity: 1,
            unit_price_minor: Some(129_900),
        }],
        ..NewInteraction::new(Channel::Order, Direction::Inbound, "order 1")
    };
    engine.log_interaction(&ctx, plain, order).unwrap();
    let touch = |id: u64| {
        let call = NewInteraction::new(Channel::Call, Direction::Inbound, "called");
        engine.log_interaction(&ctx, id, call).unwrap();
    };
    for id in [renovating, held, answering] {
        touch(id);
    }
    clock.set(t0 + Duration::days(2 * 365));
    touch(returning);
    engine
        .set_legal_hold(&ctx, held, Some("litigation 2021-17"))
        .unwrap();

    let sweep = |days: i64| {
        let now = t0 + Duration::days(days);
        clock.set(now);
        engine.retention_sweep(&ctx, now, false).unwrap()
    };
    let states = || {
        [plain, renovating, held, returning, answering]
            .map(|id| state(&engine, id))
            .to_vec()
    };

    // Before three years without interaction, nothing moves.
    let report = sweep(365 + 3 * 365 - 1);
    assert!(report.changes.is_empty(), "{report:?}");
    // Three years after the last interaction: dormant, except the
    // renovation customer (longer periods).
    let report = sweep(365 + 3 * 365);
    assert_eq!(report.examined, 5);
    assert_eq!(
        states(),
        ["dormant", "active", "dormant", "active", "dormant"],
        "{report:#?}"
    );
    // Dormant customers are for data stewards only.
    let denied = engine.customer(&as_("wang"), plain);
    assert!(matches!(denied, Err(Error::Denied(_))), "{denied:?}");
    assert!(engine.customer(&as_("lin"), plain).is_ok());

    // Five years: notified (a message in the outbox), the held customer
    // is kept from it, the renovation customer only turns dormant.
    let report = sweep(365 + 5 * 365);
    assert_eq!(
        states(),
        ["notified", "dormant", "dormant", "dormant", "notified"],
        "{report:#?}"
    );
    assert_eq!(
        report.counts.get(&Transition::Notified),
        Some(&2),
        "{report:#?}"
    );
    let notices: Vec<(u64, String)> = engine
        .outbox(&ctx, 100)
        .unwrap()
        .into_iter()
        .map(|m| (m.customer, m.template))
        .collect();
    assert_eq!(
        notices,
        vec![
            (plain, "retention-notice".to_string()),
            (answering, "retention-notice".to_string())
        ]
    );
    // Running the same sweep again changes nothing and sends nothing more.
    let again = sweep(365 + 5 * 365);
    assert!(again.changes.is_empty(), "{again:#?}");
    assert_eq!(engine.outbox(&ctx, 100).unwrap().len(), 2);

    // The answering customer gets in touch during the notice period.
    // It is dormant, so the data steward logs the call.
    clock.set(t0 + Duration::days(365 + 5 * 365 + 10));
    let call = NewInteraction::new(Channel::Call, Direction::Inbound, "keep my account");
    engine
        .log_interaction(&as_("lin"), answering, call)
        .unwrap();
    // 29 days into the notice period: waiting; answering is active again,
    // and its undelivered notice is withdrawn with it.
    let report = sweep(365 + 5 * 365 + 29);
    assert_eq!(
        states(),
        ["notified", "dormant", "dormant", "dormant", "active"],
        "{report:#?}"
    );
    let queued: Vec<u64> = engine
        .outbox(&ctx, 100)
        .unwrap()
        .into_iter()
        .map(|m| m.customer)
        .collect();
    assert_eq!(queued, vec![plain]);
    // After 30 days without response: anonymized.
    let report = sweep(365 + 5 * 365 + 30);
    assert_eq!(
        states(),
        ["removed", "dormant", "dormant", "dormant", "active"],
        "{report:#?}"
    );
    assert_eq!(report.counts.get(&Transition::Anonymized), Some(&1));
    let record = engine.deletion_record(&ctx, plain).unwrap().unwrap();
    assert_eq!(record.kind, "anonymized");
    assert!(
        record.rule.as_deref().unwrap_or("").contains("notice"),
        "{record:?}"
    );
    let aggregate = record.aggregate.unwrap();
    assert_eq!(aggregate.orders, 1);
    assert_eq!(aggregate.order_total_minor, 129_900);
    assert_eq!(aggregate.first_purchase_year, Some(2020));
    assert_eq!(aggregate.customer_since_year, 2019);
    assert_eq!(aggregate.region.as_deref(), Some("Guangzhou"));
    // Its identity is gone: no lookup finds it.
    let by_phone = engine.find_subject(&ctx, "phone", "13800000001").unwrap();
    assert!(by_phone.is_empty());

    // A steward may not sweep ahead of the engine clock (that would remove
    // customers before their time); a dry run may look ahead.
    let ahead = t0 + Duration::days(365 + 20 * 365);
    let steward = engine.retention_sweep(&as_("lin"), ahead, false);
    assert!(matches!(steward, Err(Error::Denied(_))), "{steward:?}");
    engine.retention_sweep(&as_("lin"), ahead, true).unwrap();
    // A broken policy changes nothing: dormant customers stay dormant.
    engine
        .install_retention_policy(&ctx, "fn retain(c) { 1 / 0 }")
        .unwrap();
    let broken = engine
        .retention_sweep(&ctx, t0 + Duration::days(365 + 5 * 365 + 31), false)
        .unwrap();
    assert_eq!(broken.faults, 4, "{broken:#?}");
    assert!(broken.changes.is_empty(), "{broken:#?}");
    assert_eq!(
        states(),
        ["removed", "dormant", "dormant", "dormant", "active"]
    );
    engine
        .install_retention_policy(&ctx, custodian::DEFAULT_RETENTION)
        .unwrap();

    // Long after: the held customer is still there, never notified.
    sweep(365 + 12 * 365);
    assert_eq!(state(&engine, held), "dormant");
    assert_eq!(state(&engine, renovating), "notified");
    // Releasing the hold lets the policy proceed.
    engine.set_legal_hold(&ctx, held, None).unwrap();
    sweep(365 + 12 * 365 + 1);
    assert_eq!(state(&engine, held), "notified");
    engine.verify_audit(None).unwrap();
}

#[test]
fn a_legal_hold_stops_a_policy_that_ignores_it() {
    let fx = Fixture::new();
    let engine = fx.open();
    let ctx = admin();
    let held = engine.create_customer(&ctx, li_na()).unwrap();
    let free = engine
        .create_customer(&ctx, NewCustomer::new().field("name", "Free"))
        .unwrap();
    engine
        .set_legal_hold(&ctx, held, Some("regulator inquiry"))
        .unwrap();
    engine
        .install_retention_policy(&ctx, "fn retain(c) { delete(\"everyone goes\") }")
        .unwrap();
    let dry = engine.retention_sweep(&ctx, Utc::now(), true).unwrap();
    assert_eq!(dry.counts.get(&Transition::Deleted), Some(&1), "{dry:#?}");
    assert_eq!(dry.counts.get(&Transition::Held), Some(&1), "{dry:#?}");
    assert!(
        engine.customer(&ctx, free).is_ok(),
        "a dry run changes nothing"
    );
    let report = engine.retention_sweep(&ctx, Utc::now(), false).unwrap();
    assert_eq!(
        report.changes, dry.changes,
        "the dry run said what would happen"
    );
    assert!(engine.customer(&ctx, held).is_ok());
    assert!(matches!(
        engine.customer(&ctx, free),
        Err(Error::NotFound(_))
    ));
    let record = engine.deletion_record(&ctx, free).unwrap().unwrap();
    assert_eq!(record.kind, "deleted");
    assert_eq!(record.rule.as_deref(), Some("everyone goes"));
    // A broken policy removes no one: every customer is kept, as a fault.
    engine
        .install_retention_policy(&ctx, "fn retain(c) { loop {} }")
        .unwrap();
    let report = engine.retention_sweep(&ctx, Utc::now(), false).unwrap();
    assert_eq!(report.faults, 1);
    assert!(report.changes.is_empty());
    assert!(engine.customer(&ctx, held).is_ok());
    // A script that does not compile is refused and changes nothing.
    let err = engine
        .install_retention_policy(&ctx, "fn keep_all(c) {}")
        .unwrap_err();
    assert!(err.to_string().contains("retain"), "{err}");
}

#[test]
fn only_privacy_officers_sweep_hold_and_erase() {
    let fx = Fixture::new();
    let engine = fx.with_staff();
    let id = engine.create_customer(&admin(), li_na()).unwrap();
    let wang = as_("wang");
    let now = Utc::now();
    assert!(matches!(
        engine.retention_sweep(&wang, now, true),
        Err(Error::Denied(_))
    ));
    assert!(matches!(
        engine.set_legal_hold(&wang, id, Some("x")),
        Err(Error::Denied(_))
    ));
    assert!(matches!(
        engine.subject_erase(&wang, id, "asked"),
        Err(Error::Denied(_))
    ));
    assert!(matches!(
        engine.subject_export(&wang, id),
        Err(Error::Denied(_))
    ));
    // A hold blocks erasure and deletion, even by an admin.
    engine
        .set_legal_hold(&admin(), id, Some("tax audit"))
        .unwrap();
    let err = engine.subject_erase(&admin(), id, "asked").unwrap_err();
    assert!(err.to_string().contains("legal hold"), "{err}");
    let err = engine.delete_customer(&admin(), id).unwrap_err();
    assert!(err.to_string().contains("legal hold"), "{err}");
    assert!(
        !err.to_string().contains("tax audit"),
        "the reason stays with officers: {err}"
    );
    assert!(engine.customer(&admin(), id).is_ok());
    // A withdrawal under hold records the withdrawal and keeps the data.
    let erased = engine
        .record_consent(
            &admin(),
            id,
            &ConsentChange::withdraw("identity_verification", "paper"),
        )
        .unwrap();
    assert!(erased.is_empty());
    let view = engine.customer(&admin(), id).unwrap();
    assert_eq!(view.get("id_number"), Some("110105198803120217"));
    let inventory = engine.inventory(&admin()).unwrap();
    let id_number = inventory
        .fields
        .iter()
        .find(|f| f.name == "id_number")
        .unwrap();
    assert_eq!(id_number.without_basis, 1, "flagged for after the hold");
    // Others see that a hold exists, not why.
    let seen = engine.lifecycle(&as_("zhao"), id).unwrap();
    assert_eq!(seen.legal_hold.as_deref(), Some("under legal hold"));
    let officer = engine.lifecycle(&admin(), id).unwrap();
    assert_eq!(officer.legal_hold.as_deref(), Some("tax audit"));
}

#[test]
fn erasure_reaches_older_copies_of_the_data_file() {
    let fx = Fixture::new();
    let ctx = admin();
    let values = [
        "Li Na",
        "13800138000",
        "li.na@example.com",
        "110105198803120217",
        "Chaoyang District",
        "1988-03-12",
        "asked about the 2026 catalogue",
    ];
    let (li, zhang) = {
        let engine = fx.with_staff();
        let li = engine
            .create_customer(
                &ctx,
                li_na()
                    .field("birthday", "1988-03-12")
                    .consent(grant("marketing")),
            )
            .unwrap();
        let call = NewInteraction::new(Channel::Call, Direction::Inbound, values[6]);
        engine.log_interaction(&ctx, li, call).unwrap();
        let zhang = engine
            .create_customer(
                &ctx,
                NewCustomer::new()
                    .field("name", "Zhang Wei")
                    .field("phone", "13912345678"),
            )
            .unwrap();
        (li, zhang)
    };
    // The copy an attacker, a stale backup or a replica keeps.
    let before = fx.dir.path().join("before-erasure.redb");
    std::fs::copy(fx.db(), &before).unwrap();

    {
        let engine = fx.open();
        let found = engine
            .find_subject(&ctx, "email", "Li.Na@example.com")
            .unwrap();
        assert_eq!(found, vec![li]);
        let record = engine
            .subject_erase(&ctx, li, "erasure request 2026-11")
            .unwrap();
        assert_eq!(record.kind, "deleted");
        assert_eq!(record.by, "admin");
        assert!(record.aggregate.is_none(), "a deletion keeps no statistics");
        // No lookup finds the person any more.
        for (field, value) in [
            ("phone", "13800138000"),
            ("email", "li.na@example.com"),
            ("id_number", "110105198803120217"),
        ] {
            assert!(
                engine.find_subject(&ctx, field, value).unwrap().is_empty(),
                "{field}"
            );
            let found = engine
                .find_customers(&ctx, &Query::field(field, value), 10)
                .unwrap();
            assert!(found.is_empty(), "{field}");
        }
        assert!(matches!(engine.customer(&ctx, li), Err(Error::NotFound(_))));
        // The deletion record is kept and holds no personal value.
        let kept = engine.deletion_record(&ctx, li).unwrap().unwrap();
        assert_eq!(kept.reason, "erasure request 2026-11");
        let text = serde_json::to_string(&kept).unwrap();
        for value in values {
            assert!(!text.contains(value), "{value} in {text}");
        }
    }
    for value in values {
        assert!(!file_contains(&fx.db(), value), "{value} in the data file");
        assert!(
            !file_contains(&fx.keys(), value),
            "{value} in the key store"
        );
    }

    // Put the old copy back and open it with the live key store: the
    // erased customer is not there for anyone (no lookup confirms it, not
    // even by refusing), everyone else reads.
    std::fs::rename(fx.db(), fx.dir.path().join("after-erasure.redb")).unwrap();
    std::fs::copy(&before, fx.db()).unwrap();
    let engine = fx.open();
    let err = engine.customer(&ctx, li).unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    for who in [ctx.clone(), crate::as_("zhao"), crate::as_("wang")] {
        for (field, value) in [("phone", "13800138000"), ("email", "li.na@example.com")] {
            let found = engine.find_customers(&who, &Query::field(field, value), 10);
            assert!(found.unwrap().is_empty(), "{who:?} {field}");
        }
    }
    assert!(
        engine
            .find_subject(&ctx, "phone", "13800138000")
            .unwrap()
            .is_empty()
    );
    assert!(engine.interactions(&ctx, li).is_err());
    assert!(engine.subject_export(&ctx, li).is_err());
    let other = engine.customer(&ctx, zhang).unwrap();
    assert_eq!(other.get("name"), Some("Zhang Wei"));
    assert_eq!(other.get("phone"), Some("+8613912345678"));
}

#[test]
fn a_subject_export_holds_everything_written_and_every_access() {
    let fx = Fixture::new();
    let engine = fx.with_staff();
    let ctx = admin();
    let fields: BTreeMap<&str, &str> = [
        ("name", "Li Na"),
        ("phone", "+8613800138000"),
        ("email", "li.na@example.com"),
        ("address", "Chaoyang District, Beijing"),
        ("company", "Blue Harbor Trading"),
        ("id_number", "110105198803120217"),
        ("birthday", "1988-03-12"),
        ("tags", "vip,renovation"),
        ("notes", "prefers WeChat after 6 pm"),
    ]
    .into();
    let mut new = NewCustomer::new()
        .owner("wang")
        .consent(grant("marketing"))
        .consent(grant("identity_verification").field("id_number"));
    for (name, value) in &fields {
        new = new.field(*name, *value);
    }
    let id = engine.create_customer(&ctx, new).unwrap();
    let other = engine
        .create_customer(&ctx, NewCustomer::new().field("name", "Someone Else"))
        .unwrap();
    let order = NewInteraction {
        body: Some("two chairs, delivered to the office".into()),
        amount_minor: Some(45_000),
        items: vec![OrderItem {
            name: "chair".into(),
            quantity: 2,
            unit_price_minor: Some(22_500),
        }],
        ..NewInteraction::new(Channel::Order, Direction::Inbound, "order 88")
    };
    engine.log_interaction(&ctx, id, order).unwrap();
    engine
        .add_follow_up(
            &ctx,
            NewFollowUp {
                customer: id,
                due: Utc::now() + Duration::days(3),
                assignee: Some("wang".into()),
                note: "call about the sofa warranty".into(),
            },
        )
        .unwrap();
    engine
        .record_consent(&ctx, id, &grant("analytics"))
        .unwrap();
    // Others look at the person: every one of these must be in the export.
    engine.customer(&as_("wang"), id).unwrap();
    engine
        .find_customers(&as_("zhao"), &Query::field("phone", "13800138000"), 5)
        .unwrap();
    engine.interactions(&as_("zhao"), id).unwrap();
    let refused = engine.customer(&Context::new("nobody", "curious"), id);
    assert!(refused.is_err());
    engine.customer(&ctx, other).unwrap();

    let export = engine.subject_export(&ctx, id).unwrap();
    let written: BTreeMap<&str, &str> = export
        .fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(written, fields, "every field, in full");
    assert_eq!(export.interactions.len(), 1);
    let interaction = &export.interactions[0];
    assert_eq!(interaction.summary.as_deref(), Some("order 88"));
    assert_eq!(
        interaction.body.as_deref(),
        Some("two chairs, delivered to the office")
    );
    assert_eq!(interaction.amount_minor, Some(45_000));
    assert_eq!(export.follow_ups.len(), 1);
    assert_eq!(
        export.follow_ups[0].note.as_deref(),
        Some("call about the sofa warranty")
    );
    let purposes: Vec<&str> = export.consents.iter().map(|c| c.purpose.as_str()).collect();
    assert_eq!(
        purposes,
        [
            "marketing",
            "identity_verification",
            "identity_verification",
            "analytics"
        ]
    );

    // Every audit entry about the person, and none about anyone else.
    let all = engine.audit_tail(&ctx, 10_000).unwrap();
    let about: Vec<u64> = all
        .iter()
        .filter(|e| e.customers.contains(&id))
        .map(|e| e.seq)
        .collect();
    let exported: Vec<u64> = export.accesses.iter().map(|e| e.seq).collect();
    // The export's own entry is written after the copy is made.
    assert_eq!(
        exported,
        about[..about.len() - 1],
        "every access to the person"
    );
    assert!(export.accesses.iter().all(|e| e.customers.contains(&id)));
    let seen = |actor: &str, action: &str| {
        export
            .accesses
            .iter()
            .any(|e| e.actor == actor && e.action == action)
    };
    assert!(seen("admin", "customer.create"));
    assert!(seen("wang", "customer.read"));
    assert!(seen("zhao", "customer.search"));
    assert!(seen("zhao", "interaction.list"));
    assert!(
        seen("nobody", "customer.read"),
        "refused attempts count too"
    );
    assert!(seen("admin", "consent.record"));

    // Machine-readable: the JSON carries every value written.
    let json = serde_json::to_string(&export).unwrap();
    for value in fields.values() {
        assert!(json.contains(value), "{value}");
    }
    assert!(json.contains("two chairs, delivered to the office"));
    assert!(json.contains("call about the sofa warranty"));
    // The export is audited as a read of every field.
    let tail = engine.audit_tail(&ctx, 5).unwrap();
    let entry = tail.iter().rfind(|e| e.action == "subject.export").unwrap();
    assert_eq!(entry.customers, vec![id]);
    assert_eq!(entry.fields.len(), fields.len());
}

/// Runs `custodian retention sweep --now NOW --batch-size 50` on the
/// fixture's database; with `kill_after`, sends SIGKILL once that many
/// batches were reported committed (plus `delay_ms`). Returns the
/// committed-through ids it reported.
#[cfg(unix)]
fn cli_sweep(fx: &Fixture, now: &str, kill_after: Option<(u64, u64)>) -> Vec<u64> {
    const ACK: &str = "retention: committed through customer ";
    let mut command = fx.custodian();
    command.args(["retention", "sweep", "--now", now, "--batch-size", "50"]);
    let (status, lines) = crate::run_and_kill(command, |l| l.starts_with(ACK), kill_after);
    if kill_after.is_none() {
        assert!(status.success(), "the sweep failed: {lines:#?}");
    }
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(ACK)?.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Everything a sweep decides, in a form two databases can be compared by:
/// per customer its state or its deletion record, and the queued notices.
fn lifecycle_snapshot(engine: &Engine, ids: std::ops::RangeInclusive<u64>) -> Vec<String> {
    let ctx = admin();
    let mut out = Vec::new();
    for id in ids {
        let line = match engine.lifecycle(&ctx, id) {
            Ok(l) => format!("{id} {:?} hold={:?}", l.state, l.legal_hold),
            Err(Error::NotFound(_)) => {
                let d = engine
                    .deletion_record(&ctx, id)
                    .unwrap()
                    .expect("a deletion record");
                format!(
                    "{id} {} at={} by={} rule={:?} aggregate={:?}",
                    d.kind, d.at, d.by, d.rule, d.aggregate
                )
            }
            Err(e) => panic!("customer {id}: {e}"),
        };
        out.push(line);
    }
    let mut notices: Vec<String> = engine
        .outbox(&ctx, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|m| format!("notice {} {} {:?}", m.customer, m.template, m.params))
        .collect();
    notices.sort();
    out.extend(notices);
    out
}

#[cfg(unix)]
#[test]
fn a_sweep_killed_midway_and_rerun_ends_like_one_clean_run() {
    const N: u64 = 1_500;
    let fx = Fixture::new();
    let (first, last) = {
        let engine = fx.open();
        let rows = (0..N).map(|i| {
            let mut new = NewCustomer::new()
                .field("name", format!("Customer {i}"))
                .field("email", format!("c{i}@example.com"));
            if i % 7 == 0 {
                new = new.field("tags", "renovation");
            }
            new
        });
        let options = custodian::ImportOptions { batch_size: 500 };
        let report = engine
            .import_customers(&admin(), rows, &options, |_| {})
            .unwrap();
        let (first, last) = (report.first_id.unwrap(), report.last_id.unwrap());
        engine
            .set_legal_hold(&admin(), first + 3, Some("litigation"))
            .unwrap();
        (first, last)
    };
    // The twin gets the same database and only clean runs.
    let twin = Fixture {
        dir: tempfile::tempdir().unwrap(),
        key_hex: fx.key_hex.clone(),
    };
    std::fs::copy(fx.db(), twin.db()).unwrap();
    std::fs::copy(fx.keys(), twin.keys()).unwrap();

    let today = Utc::now();
    let notice = (today + Duration::days(5 * 365 + 1)).to_rfc3339();
    let removal = (today + Duration::days(5 * 365 + 40)).to_rfc3339();
    for now in [&notice, &removal] {
        // Killed after a few commits, then run again to the end.
        let before = cli_sweep(&fx, now, Some((3, 5)));
        assert!(
            before.len() >= 3,
            "the kill came after three commits: {before:?}"
        );
        let after = cli_sweep(&fx, now, None);
        assert!(!after.is_empty(), "the kill interrupted the sweep");
        assert!(
            after
                .first()
                .is_none_or(|first| Some(first) > before.last()),
            "the rerun resumed after what was committed: {before:?} then {after:?}"
        );
        cli_sweep(&twin, now, None);
        let a = lifecycle_snapshot(&fx.open(), first..=last);
        let b = lifecycle_snapshot(&twin.open(), first..=last);
        assert_eq!(a, b, "after the sweep at {now}");
    }
    let crashed = fx.open();
    let clean = twin.open();
    let a = lifecycle_snapshot(&crashed, first..=last);
    // Everyone but the held and the renovation customers was anonymized.
    let anonymized = a.iter().filter(|l| l.contains(" anonymized ")).count();
    let renovation = (0..N).filter(|i| i % 7 == 0).count();
    assert_eq!(anonymized, N as usize - renovation - 1, "{:?}", &a[..5]);
    crashed.verify_audit(None).unwrap();
    clean.verify_audit(None).unwrap();
}

#[test]
fn a_retired_purpose_leaves_its_fields_flagged_and_stores_nothing_more() {
    let fx = Fixture::new();
    let engine = fx.with_staff();
    let ctx = admin();
    for name in ["Li Na", "Zhang Wei"] {
        let new = NewCustomer::new()
            .field("name", name)
            .field("birthday", "1988-03-12")
            .field("email", format!("{}@example.com", name.replace(' ', ".")))
            .consent(grant("marketing"));
        engine.create_customer(&ctx, new).unwrap();
    }
    let field = |inventory: &custodian::Inventory, name: &str| {
        inventory
            .fields
            .iter()
            .find(|f| f.name == name)
            .cloned()
            .unwrap()
    };
    let before = engine.inventory(&ctx).unwrap();
    assert!(before.purposes_enforced);
    let birthday = field(&before, "birthday");
    assert_eq!((birthday.stored, birthday.without_basis), (2, 0));
    assert!(birthday.flags.is_empty(), "{:?}", birthday.flags);
    assert_eq!(
        birthday.roles.get("analyst").map(String::as_str),
        Some("hidden")
    );
    let id_number = field(&before, "id_number");
    assert!(id_number.separate_consent);

    // Only admins retire purposes, and never the last purpose a required
    // field has without consent (`name` serves the contract purposes).
    assert!(
        engine
            .retire_purpose(&as_("wang"), "marketing", true)
            .is_err()
    );
    engine.retire_purpose(&ctx, "service", true).unwrap();
    let err = engine
        .retire_purpose(&ctx, "order_fulfilment", true)
        .unwrap_err();
    assert!(err.to_string().contains("`name`"), "{err}");
    engine.retire_purpose(&ctx, "service", false).unwrap();
    // Only admins install retention policies.
    let denied = engine.install_retention_policy(&as_("wang"), custodian::DEFAULT_RETENTION);
    assert!(matches!(denied, Err(Error::Denied(_))), "{denied:?}");
    engine.retire_purpose(&ctx, "marketing", true).unwrap();
    let after = engine.inventory(&ctx).unwrap();
    let birthday = field(&after, "birthday");
    assert_eq!((birthday.stored, birthday.without_basis), (2, 2));
    assert!(
        birthday
            .flags
            .iter()
            .any(|f| f.contains("no purpose needs it")),
        "{:?}",
        birthday.flags
    );
    // Email still serves other purposes: not flagged.
    assert_eq!(field(&after, "email").without_basis, 0);
    assert!(
        after
            .purposes
            .iter()
            .any(|p| p.name == "marketing" && p.retired)
    );
    // Nothing more is stored or consented for a retired purpose.
    let new = NewCustomer::new()
        .field("name", "Sun Mei")
        .field("birthday", "1990-01-01")
        .consent(grant("marketing"));
    let err = privacy_error(engine.create_customer(&ctx, new));
    assert!(err.to_string().contains("retired"), "{err}");
    // Survives a reopen, and restoring it gives the basis back.
    drop(engine);
    let engine = fx.open();
    assert_eq!(engine.retired_purposes(), vec!["marketing".to_string()]);
    engine.retire_purpose(&ctx, "marketing", false).unwrap();
    let again = engine.inventory(&ctx).unwrap();
    assert_eq!(field(&again, "birthday").without_basis, 0);
}

#[test]
fn a_sweep_leaves_nothing_it_anonymized_in_the_data_file() {
    use crate::encryption::{contains, traces_of};
    let fx = Fixture::new();
    let t0 = Utc.with_ymd_and_hms(2019, 1, 1, 9, 0, 0).unwrap();
    let clock = TestClock::at(t0);
    let open = || {
        Engine::builder()
            .path(fx.db())
            .master_key(fx.key())
            .create(true)
            .clock(clock.clock())
            .open()
            .unwrap()
    };
    let engine = open();
    let ctx = admin();
    let ids: Vec<u64> = (0..30)
        .map(|i| {
            let new = NewCustomer::new()
                .field("name", format!("Swept {i}"))
                .field("phone", format!("1390000{i:04}"))
                .field("email", format!("swept.{i}@example.com"));
            engine.create_customer(&ctx, new).unwrap()
        })
        .collect();
    // Batches of 7: the sweep removes in five transactions.
    let options = custodian::SweepOptions {
        batch_size: 7,
        ..Default::default()
    };
    let sweep = |engine: &Engine, days: i64| {
        let now = t0 + Duration::days(days);
        clock.set(now);
        engine
            .retention_sweep_with(&ctx, now, &options, |_| {})
            .unwrap()
    };
    let notified = sweep(&engine, 5 * 365 + 1);
    assert_eq!(notified.counts.get(&Transition::Notified), Some(&30));
    drop(engine);
    let (keys, records) = traces_of(&fx.db(), &ids);
    assert!(keys.len() >= 60 && records.len() >= 30);
    let engine = open();
    let removed = sweep(&engine, 5 * 365 + 32);
    assert_eq!(removed.counts.get(&Transition::Anonymized), Some(&30));
    for key in &keys {
        assert!(!contains(&fx.db(), key), "a usable index entry is left");
    }
    for record in &records {
        assert!(!contains(&fx.db(), record), "an anonymized record is left");
    }
}
