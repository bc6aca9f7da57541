//! One batch of a retention sweep: the facts it decides on, what a
//! verdict means for a customer, and the commit that re-decides each
//! customer on its own transaction and applies the transition.

use std::collections::HashSet;
use std::sync::Arc;

use super::Engine;
use super::retention::{NOTICE_SENDER, NOTICE_TEMPLATE, RetentionReport, Transition};
use crate::Result;
use crate::audit::Outcome;
use crate::model::{Status, from_micros};
use crate::op::{Caller, Entry, Op, Write};
use crate::privacy::{RetentionAction, RetentionFacts, RetentionPolicy, Verdict};
use crate::records::{MessageWrite, Removal, RemovalCause};
use crate::store::{CustomerRef, StoredCustomer, StoredNotice, StoredRun};

const DAY_MICROS: i64 = 86_400_000_000;

/// What the sweep knows of a customer besides its record.
struct Known {
    hold: bool,
    notice: Option<i64>,
}

/// What a customer's verdict means given its state.
fn plan(facts: &RetentionFacts, verdict: &Verdict) -> Option<Transition> {
    // A failed script changes nothing: no removal, and no reactivation of
    // a dormant or notified customer either.
    if verdict.fault {
        return None;
    }
    let removal = matches!(
        verdict.action,
        RetentionAction::Notify | RetentionAction::Anonymize | RetentionAction::Delete
    );
    if removal && facts.legal_hold {
        return Some(Transition::Held);
    }
    match verdict.action {
        RetentionAction::Keep => {
            (facts.status != Status::Active || facts.notified).then_some(Transition::Reactivated)
        }
        RetentionAction::Dormant => {
            (facts.status != Status::Dormant || facts.notified).then_some(Transition::Dormant)
        }
        RetentionAction::Notify => (!facts.notified).then_some(Transition::Notified),
        RetentionAction::Anonymize => Some(Transition::Anonymized),
        RetentionAction::Delete => Some(Transition::Deleted),
    }
}

/// The clear-text parts of a record the sweep decides on.
struct Stored<'a> {
    status: &'a str,
    created_at: i64,
    last_interaction_at: Option<i64>,
    tags: Option<&'a str>,
}

impl<'a> Stored<'a> {
    fn of_ref(record: &CustomerRef<'a>) -> Self {
        Self {
            status: record.status,
            created_at: record.created_at,
            last_interaction_at: record.last_interaction_at,
            tags: record
                .public
                .iter()
                .find(|(name, _)| *name == "tags")
                .map(|(_, v)| *v),
        }
    }

    fn of(record: &'a StoredCustomer) -> Self {
        Self {
            status: &record.status,
            created_at: record.created_at,
            last_interaction_at: record.last_interaction_at,
            tags: record.public.get("tags").map(String::as_str),
        }
    }
}

fn facts_of(record: &Stored<'_>, known: &Known, now: i64) -> RetentionFacts {
    let last = record
        .last_interaction_at
        .map_or(record.created_at, |t| t.max(record.created_at));
    let tags = record
        .tags
        .map(|v| {
            v.split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    RetentionFacts {
        // A status this build does not know is decided as dormant: never
        // more open than it was.
        status: Status::parse(record.status).unwrap_or(Status::Dormant),
        notified: known.notice.is_some(),
        days_inactive: now.saturating_sub(last).max(0) / DAY_MICROS,
        days_since_notice: known
            .notice
            .map_or(0, |at| now.saturating_sub(at).max(0) / DAY_MICROS),
        tags,
        legal_hold: known.hold,
    }
}

impl Engine {
    /// Decides the customers after `after` (at most `batch`) on a snapshot,
    /// outside any write: returns the last id seen and the transitions to
    /// make (holds are reported, not made); `None` when none is left.
    #[expect(
        clippy::type_complexity,
        reason = "a list of (customer, transition, reason)"
    )]
    pub(super) fn decide_batch(
        &self,
        policy: &RetentionPolicy,
        report: &mut RetentionReport,
        after: u64,
        batch: usize,
        now: i64,
    ) -> Result<Option<(u64, Vec<(u64, Transition, std::sync::Arc<str>)>)>> {
        let mut decided: Vec<(u64, RetentionFacts, Verdict)> = Vec::with_capacity(batch);
        let last = self.core.store.read(|r| {
            let (holds, notices) = r.holds_and_notices()?;
            r.scan_customers(after, batch, &mut |record| {
                let known = Known {
                    hold: holds > 0 && r.hold(record.id)?.is_some(),
                    notice: match notices {
                        0 => None,
                        _ => r.notice(record.id)?.map(|n| n.at),
                    },
                };
                let facts = facts_of(&Stored::of_ref(&record), &known, now);
                let verdict = policy.decide(&facts);
                decided.push((record.id, facts, verdict));
                Ok(true)
            })
        })?;
        let Some(last) = last else {
            return Ok(None);
        };
        report.examined += decided.len() as u64;
        let mut planned = Vec::new();
        for (id, facts, verdict) in decided {
            if verdict.fault {
                report.faults += 1;
                if report.fault_examples.len() < 10 {
                    report.fault_examples.push((id, verdict.reason.to_string()));
                }
            }
            match plan(&facts, &verdict) {
                // A held customer is reported, not changed: nothing to commit.
                Some(Transition::Held) => report.note(id, Transition::Held, &verdict.reason),
                Some(t) => planned.push((id, t, verdict.reason)),
                None => {}
            }
        }
        Ok(Some((last, planned)))
    }

    /// Commits one batch of planned transitions, re-deciding each customer
    /// on the transaction's own state.
    pub(super) fn commit_batch(
        &self,
        caller: &Caller,
        policy: &RetentionPolicy,
        report: &mut RetentionReport,
        planned: Vec<(u64, Transition, Arc<str>)>,
        last: u64,
        now: i64,
    ) -> Result<()> {
        // INVARIANT: keys of customers that may be removed are claimed
        // before the transaction; only those are destroyed after it.
        let removable: Vec<u64> = (planned.iter())
            .filter(|(_, t, _)| matches!(t, Transition::Anonymized | Transition::Deleted))
            .map(|(id, _, _)| *id)
            .collect();
        let marked: HashSet<u64> = removable.iter().copied().collect();
        // The sweep rewrites the data file once, after its last batch.
        let mut op = Op::new(Entry::new("retention.sweep"))
            .officers("run retention sweeps")
            .itemized()
            .rewrite_later();
        if !removable.is_empty() {
            op = op.claim(self.core.records.claim_doomed(&removable)?);
        }
        let done = self.core.write_as(caller, op, |tx| {
            let mut done = Vec::new();
            for (id, _, _) in &planned {
                let Some(mut record) = tx.txn().customer(*id)? else {
                    continue;
                };
                // Decide again on this transaction's state: the customer
                // may have changed since the snapshot.
                let known = Known {
                    hold: tx.txn().hold(*id)?.is_some(),
                    notice: tx.txn().notice(*id)?.map(|n| n.at),
                };
                let facts = facts_of(&Stored::of(&record), &known, now);
                let verdict = policy.decide(&facts);
                let Some(transition) = plan(&facts, &verdict) else {
                    continue;
                };
                let removes = matches!(transition, Transition::Anonymized | Transition::Deleted);
                // INVARIANT: only claimed keys are destroyed; a customer that
                // became removable since the snapshot waits for the next
                // sweep. A hold is reported, never changed.
                if (removes && !marked.contains(id)) || transition == Transition::Held {
                    continue;
                }
                apply(tx, &mut record, transition, &verdict.reason, now)?;
                let action = format!("retention.{}", transition.as_str());
                let entry = Entry::new(action)
                    .customer(*id)
                    .target(format!("customer {id}: {}", verdict.reason));
                tx.audit(entry, Outcome::Ok)?;
                if removes {
                    tx.emit(crate::op::Emitted::Erased(*id));
                }
                done.push((*id, transition, verdict.reason));
            }
            tx.txn().set_retention_run(Some(&StoredRun {
                now,
                done_through: last,
            }))?;
            Ok(done)
        })?;
        for (id, t, reason) in done {
            report.note(id, t, &reason);
        }
        Ok(())
    }
}

/// Applies one transition inside the batch's transaction.
fn apply(
    tx: &mut Write<'_>,
    record: &mut StoredCustomer,
    transition: Transition,
    reason: &str,
    now: i64,
) -> Result<()> {
    let id = record.id;
    let records = tx.records();
    match transition {
        Transition::Reactivated | Transition::Dormant => {
            // A withdrawn notice takes its undelivered message with it.
            if let Some(notice) = tx.txn().notice(id)? {
                if let Some(message) = notice.message {
                    tx.txn().remove_message(message)?;
                }
                tx.txn().set_notice(id, None)?;
            }
            let status = match transition {
                Transition::Reactivated => Status::Active,
                _ => Status::Dormant,
            };
            records.set_status(tx.txn(), record, status)?;
        }
        Transition::Notified => {
            records.set_status(tx.txn(), record, Status::Dormant)?;
            let channel = ["email", "phone"]
                .into_iter()
                .find(|f| record.sealed.contains_key(*f) || record.public.contains_key(*f));
            let mut queued = None;
            if let Some(field) = channel {
                let message = MessageWrite {
                    sender: NOTICE_SENDER.to_string(),
                    channel: if field == "email" { "email" } else { "sms" }.to_string(),
                    customer: id,
                    template: NOTICE_TEMPLATE.to_string(),
                    params: vec![
                        ("reason".into(), reason.to_string()),
                        ("notified_at".into(), from_micros(now).to_rfc3339()),
                    ],
                    marketing: false,
                    at: now,
                };
                queued = Some(records.queue_message(tx.txn(), message)?);
            }
            let notice = StoredNotice {
                at: now,
                reason: reason.to_string(),
                message: queued,
            };
            tx.txn().set_notice(id, Some(&notice))?;
        }
        Transition::Anonymized | Transition::Deleted => {
            let how = match transition {
                Transition::Anonymized => Removal::Anonymize,
                _ => Removal::Delete,
            };
            let by = tx.actor().name.clone();
            let cause = RemovalCause {
                how,
                reason: "retention policy",
                by: &by,
                rule: Some(reason),
                at: now,
            };
            records.remove(tx.txn(), record, &cause)?;
        }
        Transition::Held => {}
    }
    Ok(())
}
