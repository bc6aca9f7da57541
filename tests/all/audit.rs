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
    // An attacker who also puts the old head back is found by the
    // checkpoint only.
    set_head_record(&fx.db(), &old_head);
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
