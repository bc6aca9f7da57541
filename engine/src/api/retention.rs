//! Retention: the sweep that applies `retention.rhai` to every customer
//! (`sweep.rs` decides and commits each batch), and installing the script.
//!
//! A sweep reads only what is stored in the clear (status, timestamps,
//! tags, holds, notices): deciding never decrypts. It commits in batches;
//! each batch records how far it got, so a sweep cut short resumes where
//! it stopped, and since every transition is a function of the customer's
//! state and the sweep's `now`, running it again changes nothing more.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Engine;
use crate::model::CustomerId;
use crate::op::{Core, Entry, Op};
use crate::privacy::RetentionPolicy;
use crate::{Context, Denied, Result};

/// The sender of the engine's own notices in the outbox. Not a valid
/// plugin name, so no plugin can pose as it.
pub const NOTICE_SENDER: &str = "(custodian)";

/// The outbox template of a retention notice.
pub const NOTICE_TEMPLATE: &str = "retention-notice";

/// Customers decided and changed per transaction unless told otherwise.
pub const DEFAULT_SWEEP_BATCH: usize = 1_000;

/// How a sweep runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepOptions {
    /// Decide and report, change nothing.
    pub dry_run: bool,
    /// Customers per transaction (default [`DEFAULT_SWEEP_BATCH`]).
    pub batch_size: usize,
}

impl Default for SweepOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            batch_size: DEFAULT_SWEEP_BATCH,
        }
    }
}

/// What a sweep did (or, in a dry run, would do) to one customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// Dormant or notified, active again.
    Reactivated,
    /// Made dormant.
    Dormant,
    /// Sent a notice of removal.
    Notified,
    /// Identity destroyed, aggregates kept.
    Anonymized,
    /// Removed entirely.
    Deleted,
    /// The policy asked for removal or a notice; a legal hold kept it.
    Held,
}

impl Transition {
    /// The lowercase name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Reactivated => "reactivated",
            Transition::Dormant => "dormant",
            Transition::Notified => "notified",
            Transition::Anonymized => "anonymized",
            Transition::Deleted => "deleted",
            Transition::Held => "held",
        }
    }
}

/// One change of a sweep, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RetentionChange {
    /// The customer.
    pub customer: CustomerId,
    /// What happened to it.
    pub transition: Transition,
    /// The retention policy's reason.
    pub reason: String,
}

/// The report of a sweep.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// The time the sweep ran at.
    pub now: DateTime<Utc>,
    /// Nothing was changed.
    pub dry_run: bool,
    /// A sweep at the same `now` was cut short; this one went on after
    /// this customer id.
    pub resumed_after: Option<CustomerId>,
    /// Customers decided.
    pub examined: u64,
    /// Changes by kind.
    pub counts: BTreeMap<Transition, u64>,
    /// Customers the policy failed on (kept; see `faults`).
    pub faults: u64,
    /// The first policy faults, with the customer.
    pub fault_examples: Vec<(CustomerId, String)>,
    /// Every change, in id order.
    pub changes: Vec<RetentionChange>,
}

/// Progress after each committed batch of a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepProgress {
    /// Customers decided so far.
    pub examined: u64,
    /// Changes committed so far.
    pub changed: u64,
    /// Every customer up to this id is done.
    pub done_through: CustomerId,
}

impl RetentionReport {
    pub(super) fn note(&mut self, customer: CustomerId, transition: Transition, reason: &str) {
        *self.counts.entry(transition).or_insert(0) += 1;
        self.changes.push(RetentionChange {
            customer,
            transition,
            reason: reason.to_string(),
        });
    }
}

/// Loads the installed retention policy, if one was installed.
pub(super) fn load(core: &Core) -> Result<()> {
    core.reload_retention(|| match core.store.read(|r| r.retention_script())? {
        Some(source) => Ok(Some(RetentionPolicy::compile(&source)?)),
        None => Ok(None),
    })
}

impl Engine {
    /// Applies the retention policy to every customer as of `now`:
    /// dormant, notified, anonymized or deleted as `retention.rhai`
    /// decides, never past a legal hold. With `dry_run`, reports what it
    /// would do and changes nothing. Admins and data stewards.
    pub fn retention_sweep(
        &self,
        ctx: &Context,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<RetentionReport> {
        let options = SweepOptions {
            dry_run,
            ..SweepOptions::default()
        };
        self.retention_sweep_with(ctx, now, &options, |_| {})
    }

    /// [`Engine::retention_sweep`] with options and a progress callback
    /// called after each committed batch.
    pub fn retention_sweep_with(
        &self,
        ctx: &Context,
        now: DateTime<Utc>,
        options: &SweepOptions,
        mut progress: impl FnMut(&SweepProgress),
    ) -> Result<RetentionReport> {
        let now_us = now.timestamp_micros();
        let mode = if options.dry_run { "dry run" } else { "sweep" };
        let entry = Entry::new("retention.sweep").target(format!("{mode} at {}", now.to_rfc3339()));
        let op = Op::new(entry.clone()).officers("run retention sweeps");
        let admitted = self.core.admit_early(ctx, &op)?;
        let caller = admitted.caller();
        // A sweep dated ahead of the engine clock removes customers before
        // their time: only an administrator may run one, and it is audited
        // with its date. A dry run may look ahead freely.
        let ahead = now - self.core.records.clock.now() > chrono::Duration::days(1);
        if ahead && !options.dry_run && !admitted.actor().admin {
            let refused = Denied::NotPermitted {
                principal: admitted.actor().name.clone(),
                what: format!(
                    "sweep at {}, ahead of the engine clock (a dry run may look ahead)",
                    now.to_rfc3339()
                ),
                who: "admins".into(),
            };
            return self.core.refuse(caller, &entry, refused.into());
        }
        let policy = self.core.retention();
        let mut report = RetentionReport {
            now,
            dry_run: options.dry_run,
            ..RetentionReport::default()
        };
        let mut after = 0;
        let run = self.core.store.read(|r| r.retention_run())?;
        if let Some(run) = run.filter(|run| !options.dry_run && run.now == now_us) {
            after = run.done_through;
            report.resumed_after = Some(after);
        }
        let swept = self.sweep_batches(
            caller,
            &policy,
            &mut report,
            options,
            after,
            now_us,
            &mut progress,
        );
        // What the batches removed is left in no freed page, whether the
        // sweep ended or stopped.
        let rewritten = match options.dry_run {
            true => Ok(()),
            false => self.core.store.scrub_if_owed(),
        };
        swept?;
        rewritten?;
        self.finish_sweep(caller, &report, mode)?;
        Ok(report)
    }

    /// The batches of a sweep, from after `after`.
    #[allow(clippy::too_many_arguments)]
    fn sweep_batches(
        &self,
        caller: &crate::op::Caller,
        policy: &RetentionPolicy,
        report: &mut RetentionReport,
        options: &SweepOptions,
        mut after: u64,
        now_us: i64,
        progress: &mut impl FnMut(&SweepProgress),
    ) -> Result<()> {
        let batch = options.batch_size.clamp(1, 100_000);
        while let Some((last, planned)) = self.decide_batch(policy, report, after, batch, now_us)? {
            if options.dry_run {
                for (id, t, reason) in &planned {
                    report.note(*id, *t, reason);
                }
            } else if !planned.is_empty() {
                // A batch with nothing to change writes nothing, not even
                // the cursor: a rerun decides it again and changes nothing.
                self.commit_batch(caller, policy, report, planned, last, now_us)?;
                progress(&SweepProgress {
                    examined: report.examined,
                    changed: report.changes.len() as u64,
                    done_through: last,
                });
            }
            after = last;
        }
        Ok(())
    }

    /// The sweep is complete: forget where it was, and say what it did.
    fn finish_sweep(
        &self,
        caller: &crate::op::Caller,
        report: &RetentionReport,
        mode: &str,
    ) -> Result<()> {
        let summary = (report.counts.iter())
            .map(|(t, n)| format!("{} {n}", t.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let entry = Entry::new("retention.sweep").target(format!(
            "{mode} at {}: {} examined; {}",
            report.now.to_rfc3339(),
            report.examined,
            if summary.is_empty() {
                "no change"
            } else {
                &summary
            }
        ));
        let op = Op::new(entry.clone()).officers("run retention sweeps");
        match report.dry_run {
            true => self
                .core
                .audit_read(entry.record(caller, crate::audit::Outcome::Ok)),
            false => self.core.write_as(caller, op, |tx| {
                tx.txn().set_retention_run(None)?;
                Ok(())
            }),
        }
    }

    /// Installs a retention policy (`retention.rhai`, defining `fn
    /// retain(c)`) after compiling it; it applies from the next sweep.
    /// Admins only.
    pub fn install_retention_policy(&self, ctx: &Context, source: &str) -> Result<()> {
        let compiled = RetentionPolicy::compile(source)?;
        let op = Op::new(Entry::new("retention.install")).admins("install retention policies");
        self.core.write(ctx, op, |tx| {
            tx.txn().put_retention_script(source)?;
            Ok(())
        })?;
        // Read back under the lock: of two concurrent installs, the one
        // that sets memory last has read the script that was stored last.
        let core = &self.core;
        core.reload_retention(|| match core.store.read(|r| r.retention_script())? {
            Some(text) if text != source => Ok(Some(RetentionPolicy::compile(&text)?)),
            _ => Ok(Some(compiled)),
        })
    }

    /// The retention policy in force (the default one until one is installed).
    pub fn retention_policy(&self) -> String {
        self.core.retention().source().to_string()
    }
}
