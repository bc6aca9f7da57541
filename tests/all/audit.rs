//! The audit chain: every operation leaves an entry; every kind of
//! tampering is found and `verify` names where the chain breaks.

use std::path::Path;

use custodian::{AuditError, Checkpoint, Error, Outcome, Query};
use redb::{ReadableTable, TableDefinition};

use crate::{Fixture, admin, as_, li_na};

const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// The settings table holds tagged records; read and written here as bytes.
const SETTINGS: TableDefinition<&str, crate::integrity::Tagged> = TableDefinition::new("settings");

/// A database with a chain of a dozen entries and its checkpoint.
fn chain() -> (Fixture, Checkpoint) {
    let fx = Fixture::new();
    let engine = fx.with_staff();
    let id = engine.create_customer(&as_("wang"), li_na()).unwrap();
    for _ in 0..4 {
        engine.customer(&as_("zhao"), id).unwrap();
    }
    engine
        .find_customers(&as_("zhao"), &Query::field("phone", "13800138000"), 1)
        .unwrap();
    let _ = engine.delete_customer(&as_("zhao"), id);
    let checkpoint = engine.audit_checkpoint().unwrap();
    assert!(checkpoint.seq >= 10, "{checkpoint:?}");
    (fx, checkpoint)
}

/// Edits the raw audit table as an attacker with file access would.
fn tamper(db: &Path, f: impl FnOnce(&mut redb::Table<u64, &[u8]>)) {
    let db = redb::Database::open(db).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut audit = txn.open_table(AUDIT).unwrap();
        f(&mut audit);
    }
    txn.commit().unwrap();
}

fn entry(table: &redb::Table<u64, &[u8]>, seq: u64) -> Vec<u8> {
    table.get(seq).unwrap().unwrap().value().to_vec()
}

fn verify(fx: &Fixture, checkpoint: Option<&Checkpoint>) -> Result<u64, AuditError> {
    match fx.open().verify_audit(checkpoint) {
        Ok(report) => Ok(report.entries),
        Err(Error::Audit(e)) => Err(e),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

fn broken_at(result: Result<u64, AuditError>) -> u64 {
    match result {
        Err(AuditError::Broken { seq, .. }) => seq,
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

#[test]
fn an_untouched_chain_verifies_with_its_checkpoint() {
    let (fx, checkpoint) = chain();
    let entries = verify(&fx, Some(&checkpoint)).unwrap();
    assert!(entries >= checkpoint.seq);
}

#[test]
fn every_operation_is_audited_without_values() {
    let (fx, _) = chain();
    let entries = fx.open().audit_tail(&admin(), 100).unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    for action in [
        "principal.create",
        "customer.create",
        "customer.read",
        "customer.search",
        "customer.delete",
    ] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    let denied = entries
        .iter()
        .find(|e| e.action == "customer.delete")
        .unwrap();
    assert!(matches!(denied.outcome, Outcome::Denied(_)), "{denied:?}");
    assert_eq!(denied.actor, "zhao");
    let read = entries
        .iter()
        .find(|e| e.action == "customer.read")
        .unwrap();
    assert!(read.fields.contains(&"phone".to_string()));
    let text = format!("{entries:?}");
    assert!(!text.contains("13800138000") && !text.contains("Li Na"));
}

#[test]
fn modification_is_detected() {
    let (fx, _) = chain();
    tamper(&fx.db(), |audit| {
        let mut bytes = entry(audit, 5);
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        audit.insert(5, bytes.as_slice()).unwrap();
    });
    assert_eq!(broken_at(verify(&fx, None)), 5);
}

#[test]
fn deletion_is_detected() {
    let (fx, _) = chain();
    tamper(&fx.db(), |audit| {
        audit.remove(6).unwrap();
    });
    assert_eq!(broken_at(verify(&fx, None)), 6);
}

#[test]
fn insertion_is_detected() {
    let (fx, checkpoint) = chain();
    // Shift entries 4.. up by one and put a forged entry (a copy of 3) at 4.
    tamper(&fx.db(), |audit| {
        for seq in (4..=checkpoint.seq).rev() {
            let bytes = entry(audit, seq);
            audit.insert(seq + 1, bytes.as_slice()).unwrap();
        }
        let forged = entry(audit, 3);
        audit.insert(4, forged.as_slice()).unwrap();
    });
    assert_eq!(broken_at(verify(&fx, None)), 4);
}

#[test]
fn an_entry_appended_without_the_key_is_detected() {
    let (fx, checkpoint) = chain();
    let next = checkpoint.seq + 1;
    tamper(&fx.db(), |audit| {
        let mut forged = entry(audit, checkpoint.seq);
        // Link it to the head correctly; the attacker cannot compute the
        // keyed hash (nor move the recorded head, which is tagged).
        let head = forged[32..64].to_vec();
        forged[..32].copy_from_slice(&head);
        audit.insert(next, forged.as_slice()).unwrap();
    });
    assert_eq!(broken_at(verify(&fx, None)), next);
}

#[test]
fn reordering_is_detected() {
    let (fx, _) = chain();
    tamper(&fx.db(), |audit| {
        let four = entry(audit, 4);
        let five = entry(audit, 5);
        audit.insert(4, five.as_slice()).unwrap();
        audit.insert(5, four.as_slice()).unwrap();
    });
    assert_eq!(broken_at(verify(&fx, None)), 4);
}

#[test]
fn truncation_is_detected() {
    let (fx, _) = chain();
    // The recorded head, as it was when the chain was shorter: a record
    // an attacker can keep from an older copy of the file and put back
    // (it is authenticated, and stays valid under its own key).
    let keep = fx.open().audit_checkpoint().unwrap().seq;
    let old_head = head_record(&fx.db());
    let engine = fx.open();
    for _ in 0..3 {
        engine.count_customers(&admin()).unwrap();
    }
    drop(engine);
    let checkpoint = fx.open().audit_checkpoint().unwrap();
    assert!(checkpoint.seq > keep);
    // Cutting the tail without the old head is found by itself.
    tamper(&fx.db(), |audit| {
        for seq in keep + 1..=checkpoint.seq {
            audit.remove(seq).unwrap();
        }
    });
    assert_eq!(broken_at(verify(&fx, None)), keep + 1);
    // An attacker who also puts the old head back leaves index rows of the
    // entries cut, which `verify` finds...
    set_head_record(&fx.db(), &old_head);
    assert!(
        matches!(verify(&fx, None), Err(AuditError::Index(_))),
        "the index still names the entries cut"
    );
    // ...and one who cuts those too is found by the checkpoint only.
    let db = redb::Database::open(fx.db()).unwrap();
    let txn = db.begin_write().unwrap();
    let by_actor: TableDefinition<(&str, i64, u64), ()> = TableDefinition::new("audit_by_actor");
    let by_customer: TableDefinition<(u64, u64), i64> = TableDefinition::new("audit_by_customer");
    (txn.open_table(by_actor).unwrap())
        .retain(|(_, _, seq), _| seq <= keep)
        .unwrap();
    (txn.open_table(by_customer).unwrap())
        .retain(|(_, seq), _| seq <= keep)
        .unwrap();
    txn.commit().unwrap();
    drop(db);
    assert!(
        verify(&fx, None).is_ok(),
        "without a checkpoint a clean cut is invisible"
    );
    match verify(&fx, Some(&checkpoint)) {
        Err(AuditError::Truncated {
            checkpoint_seq,
            found,
        }) => {
            assert_eq!(checkpoint_seq, checkpoint.seq);
            assert_eq!(found, keep);
        }
        other => panic!("expected truncation, got {other:?}"),
    }
}

/// The stored `audit_head` setting, tag included.
fn head_record(db: &Path) -> Vec<u8> {
    let db = redb::Database::open(db).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let settings = txn.open_table(SETTINGS).unwrap();
    settings
        .get("audit_head")
        .unwrap()
        .unwrap()
        .value()
        .to_vec()
}

fn set_head_record(db: &Path, head: &[u8]) {
    let db = redb::Database::open(db).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(SETTINGS)
        .unwrap()
        .insert("audit_head", head)
        .unwrap();
    txn.commit().unwrap();
}

#[test]
fn a_rewritten_history_does_not_match_the_checkpoint() {
    let (fx, checkpoint) = chain();
    let forged = Checkpoint {
        hash: "00".repeat(32),
        ..checkpoint.clone()
    };
    assert_eq!(broken_at(verify(&fx, Some(&forged))), checkpoint.seq);
}

#[test]
fn audit_log_is_for_admins() {
    let (fx, _) = chain();
    let err = fx.open().audit_tail(&as_("wang"), 5).unwrap_err();
    assert!(matches!(err, Error::Denied(_)), "{err}");
}

#[test]
fn concurrent_durable_reads_each_leave_an_entry() {
    let fx = Fixture::new();
    drop(fx.with_staff());
    let engine = fx.open_with(custodian::AuditDurability::Durable);
    let id = engine.create_customer(&admin(), li_na()).unwrap();
    let before = engine.audit_checkpoint().unwrap().seq;
    std::thread::scope(|s| {
        for _ in 0..4 {
            let engine = engine.clone();
            s.spawn(move || {
                for _ in 0..25 {
                    engine.customer(&as_("zhao"), id).unwrap();
                }
            });
        }
    });
    let after = engine.verify_audit(None).unwrap().entries;
    assert_eq!(after - before, 100, "every read has its entry");
}

#[test]
fn dropping_the_last_handle_closes_the_files_and_keeps_buffered_entries() {
    let fx = Fixture::new();
    let id = fx.open().create_customer(&admin(), li_na()).unwrap();
    let mut expected = fx.open().verify_audit(None).unwrap().entries;
    for _ in 0..20 {
        // Buffered mode with a flush thread that is busy nearly all the time:
        // the reopen must never find the file still held, and the queued
        // read entry must have been written.
        let engine = fx.open_with(custodian::AuditDurability::Buffered {
            flush_interval: std::time::Duration::from_micros(50),
            max_pending: 1000,
        });
        let clone = engine.clone();
        clone.customer(&admin(), id).unwrap();
        drop(engine);
        drop(clone);
        expected += 1;
    }
    assert_eq!(fx.open().verify_audit(None).unwrap().entries, expected);
}

/// Regression: with the queue at least half full while another thread was
/// writing it, the flush thread spun holding the lock and every reader hung.
#[test]
fn a_small_buffer_under_concurrent_readers_never_hangs() {
    let fx = Fixture::new();
    let id = fx.open().create_customer(&admin(), li_na()).unwrap();
    let engine = fx.open_with(custodian::AuditDurability::Buffered {
        flush_interval: std::time::Duration::from_millis(1),
        max_pending: 8,
    });
    let (done, finished) = std::sync::mpsc::channel();
    for reader in 0..4 {
        let engine = engine.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            for _ in 0..500 {
                if reader == 3 {
                    engine.flush_audit().unwrap();
                } else {
                    engine.customer(&as_("zhao"), id).unwrap_err();
                    engine.customer(&admin(), id).unwrap();
                }
            }
            // The handle goes before the signal, so the reopen below finds
            // the files closed.
            drop(engine);
            done.send(()).unwrap();
        });
    }
    for _ in 0..4 {
        finished
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("readers hung");
    }
    drop(engine);
    let entries = fx.open().verify_audit(None).unwrap().entries;
    assert!(entries >= 3 * 500 * 2, "{entries}");
}

/// Regression: a create refused for its owner left no audit entry.
#[test]
fn a_create_refused_by_the_access_rule_is_audited() {
    let fx = Fixture::new();
    let engine = fx.with_staff();
    let err = engine
        .create_customer(&as_("wang"), li_na().owner("zhao"))
        .unwrap_err();
    assert!(matches!(err, Error::Denied(_)), "{err}");
    let tail = engine.audit_tail(&admin(), 1).unwrap();
    assert_eq!(tail[0].action, "customer.create");
    assert_eq!(tail[0].actor, "wang");
    assert!(matches!(&tail[0].outcome, Outcome::Denied(r) if r.contains("for themselves")));
}

/// What a full scan of the chain says `pick` selects.
fn scanned(engine: &custodian::Engine, pick: impl Fn(&custodian::AuditEntry) -> bool) -> Vec<u64> {
    (engine.audit_tail(&admin(), 100_000).unwrap().iter())
        .filter(|e| pick(e))
        .map(|e| e.seq)
        .collect()
}

fn seqs(entries: Vec<custodian::AuditEntry>) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

/// A few principals doing a bit of everything.
fn busy(fx: &Fixture) -> (custodian::Engine, Vec<u64>) {
    let engine = fx.with_staff();
    let wang = as_("wang");
    let mut ids = Vec::new();
    for i in 0..6 {
        let new = custodian::NewCustomer::new()
            .field("name", format!("Customer {i}"))
            .field("phone", format!("1390000{i:04}"));
        ids.push(engine.create_customer(&wang, new).unwrap());
    }
    engine.customer(&wang, ids[0]).unwrap();
    engine.customer(&as_("zhao"), ids[1]).unwrap();
    engine
        .find_customers(&as_("zhao"), &custodian::Query::Owner("wang".into()), 4)
        .unwrap();
    let _ = engine.delete_customer(&as_("zhao"), ids[2]);
    engine
        .update_customer(
            &wang,
            ids[3],
            custodian::CustomerUpdate::new().set("company", "Acme"),
        )
        .unwrap();
    (engine, ids)
}

#[test]
fn the_indexes_return_what_a_scan_of_the_chain_would() {
    let fx = Fixture::new();
    let (engine, ids) = busy(&fx);
    // Reading the chain adds entries of its own: compare up to a mark.
    let mark = engine.audit_checkpoint().unwrap().seq;
    let upto = |v: Vec<u64>| v.into_iter().filter(|s| *s <= mark).collect::<Vec<_>>();
    for actor in ["wang", "zhao", "admin", "nobody"] {
        let indexed = seqs(
            engine
                .audit_by_actor(&admin(), actor, None, None, 10_000)
                .unwrap(),
        );
        let expected = scanned(&engine, |e| e.actor == actor);
        assert_eq!(upto(indexed), upto(expected), "{actor}");
    }
    for id in &ids {
        let indexed = seqs(engine.audit_of_customer(&admin(), *id, 10_000).unwrap());
        let expected = scanned(&engine, |e| e.customers.contains(id));
        assert_eq!(upto(indexed), upto(expected), "customer {id}");
    }
    // A window by time.
    let all = engine
        .audit_by_actor(&admin(), "wang", None, None, 10_000)
        .unwrap();
    let (from, to) = (all[2].at, all[4].at);
    let window = seqs(
        engine
            .audit_by_actor(&admin(), "wang", Some(from), Some(to), 10_000)
            .unwrap(),
    );
    let expected: Vec<u64> = all
        .iter()
        .filter(|e| e.at >= from && e.at <= to)
        .map(|e| e.seq)
        .collect();
    assert_eq!(window, expected);
    assert_eq!(
        seqs(
            engine
                .audit_by_actor(&admin(), "wang", None, None, 2)
                .unwrap()
        )
        .len(),
        2
    );
    // Reading them is audited and for admins (a customer's trail: data
    // stewards too).
    assert!(
        engine
            .audit_by_actor(&as_("wang"), "wang", None, None, 10)
            .is_err()
    );
    assert!(engine.audit_of_customer(&as_("zhao"), ids[0], 10).is_err());
}

#[test]
fn a_chain_without_indexes_is_indexed_at_open_and_a_planted_index_entry_vouches_for_nothing() {
    let fx = Fixture::new();
    let ids = {
        let (_engine, ids) = busy(&fx);
        ids
    };
    let (before_actor, before_customer) = {
        let engine = fx.open();
        (
            seqs(
                engine
                    .audit_by_actor(&admin(), "wang", None, None, 10_000)
                    .unwrap(),
            ),
            seqs(engine.audit_of_customer(&admin(), ids[1], 10_000).unwrap()),
        )
    };
    // As a version before the indexes left it: no index tables, no
    // setting saying how far they hold the chain.
    let by_actor: redb::TableDefinition<(&str, i64, u64), ()> =
        redb::TableDefinition::new("audit_by_actor");
    let by_customer: redb::TableDefinition<(u64, u64), i64> =
        redb::TableDefinition::new("audit_by_customer");
    let raw = |f: &dyn Fn(&redb::WriteTransaction)| {
        let db = redb::Database::open(fx.db()).unwrap();
        let txn = db.begin_write().unwrap();
        f(&txn);
        txn.commit().unwrap();
    };
    raw(&|txn| {
        txn.delete_table(by_actor).unwrap();
        txn.delete_table(by_customer).unwrap();
        let removed = (txn.open_table(SETTINGS).unwrap())
            .remove("engine:audit_indexed_through")
            .unwrap()
            .is_some();
        assert!(
            removed,
            "the setting that says how far the chain is indexed"
        );
    });
    let engine = fx.open();
    let after_actor = seqs(
        engine
            .audit_by_actor(&admin(), "wang", None, None, 10_000)
            .unwrap(),
    );
    assert_eq!(after_actor, before_actor);
    // The reading of the trail before is itself in the trail now.
    let trail = seqs(engine.audit_of_customer(&admin(), ids[1], 10_000).unwrap());
    assert_eq!(trail[..before_customer.len()], before_customer);
    assert_eq!(trail.len(), before_customer.len() + 1);
    engine.verify_audit(None).unwrap();
    let admins = engine
        .audit_by_actor(&admin(), "admin", None, None, 10_000)
        .unwrap();
    let wangs = engine
        .audit_by_actor(&admin(), "wang", None, None, 10_000)
        .unwrap();
    drop(engine);
    let index_error = |fx: &Fixture| match fx.open().verify_audit(None) {
        Err(Error::Audit(AuditError::Index(why))) => why,
        other => panic!("expected an index error, got {other:?}"),
    };
    // A row planted in the file, naming an entry of the admin's as wang's,
    // is checked against the entry and left out, and `verify` finds it.
    let planted = (admins[0].at.timestamp_micros(), admins[0].seq);
    raw(&|txn| {
        (txn.open_table(by_actor).unwrap())
            .insert(("wang", planted.0, planted.1), ())
            .unwrap();
    });
    let engine = fx.open();
    let shown = seqs(
        engine
            .audit_by_actor(&admin(), "wang", None, None, 10_000)
            .unwrap(),
    );
    assert!(!shown.contains(&planted.1));
    drop(engine);
    assert!(index_error(&fx).contains("planted"));
    // A row deleted to hide an entry is found missing.
    raw(&|txn| {
        let mut table = txn.open_table(by_actor).unwrap();
        table.remove(("wang", planted.0, planted.1)).unwrap();
        let hidden = &wangs[1];
        table
            .remove(("wang", hidden.at.timestamp_micros(), hidden.seq))
            .unwrap();
    });
    let why = index_error(&fx);
    assert!(
        why.contains(&format!("lacks entry {}", wangs[1].seq)),
        "{why}"
    );
}

#[test]
fn the_command_line_reads_the_chain_by_actor_and_by_customer() {
    let fx = Fixture::new();
    let ids = {
        let (_engine, ids) = busy(&fx);
        ids
    };
    let run = |args: &[&str]| {
        let out = fx
            .custodian()
            .arg("--json")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
    };
    let zhao = run(&["audit", "actor", "zhao"]);
    assert!(!zhao.is_empty());
    assert!(zhao.iter().all(|e| e["actor"] == "zhao"));
    let trail = run(&["audit", "customer", &ids[1].to_string()]);
    assert!(
        trail
            .iter()
            .any(|e| e["actor"] == "zhao" && e["action"] == "customer.read")
    );
    let none = run(&["audit", "actor", "zhao", "--from", "2999-01-01 00:00"]);
    assert!(none.is_empty());
}
