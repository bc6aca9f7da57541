//! Creating customers in batches, from the API or a CSV file (`csv.rs`).
//! Each batch is one key claim and one write on the path, with one audit
//! entry per customer created; creating one customer is an import of one.

use std::collections::HashMap;
use std::sync::mpsc;

use super::Engine;
use crate::model::{ConsentChange, CustomerId, NewCustomer, Status};
use crate::op::{Admitted, Caller, Emitted, Entry, Op, split_tags};
use crate::policy::{Action, CustomerFacts};
use crate::records::owner_rule;
use crate::store::StoredCustomer;
use crate::{Context, Denied, Error, Result};

/// How an import runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportOptions {
    /// Customers committed per transaction (default 5,000, at most
    /// [`MAX_BATCH`]). Each commit is acknowledged through the progress
    /// callback.
    pub batch_size: usize,
}

/// The largest batch an import commits at once, whatever it is asked for.
pub const MAX_BATCH: usize = 100_000;

impl Default for ImportOptions {
    fn default() -> Self {
        Self { batch_size: 5_000 }
    }
}

/// Reported after every committed batch: everything counted here is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportProgress {
    /// Customers committed so far.
    pub imported: u64,
    /// Rows skipped so far.
    pub skipped: u64,
    /// The last input line whose customer is committed.
    pub last_line: u64,
    /// The ids committed in this batch.
    pub ids: std::ops::RangeInclusive<CustomerId>,
}

/// A row that was not imported, and why.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {error}")]
pub struct RowError {
    /// The input line (1 is the CSV header).
    pub line: u64,
    /// Why it was refused; the message names the field.
    pub error: Error,
}

/// The outcome of an import.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Customers created.
    pub imported: u64,
    /// The first id created, if any.
    pub first_id: Option<CustomerId>,
    /// The last id created, if any.
    pub last_id: Option<CustomerId>,
    /// Rows skipped, with their reasons.
    pub errors: Vec<RowError>,
}

/// A row checked and decided, ready to seal.
struct Row {
    line: u64,
    owner: String,
    fields: std::collections::BTreeMap<String, String>,
    consents: Vec<ConsentChange>,
}

/// A batch sealed and ready to write.
struct SealedBatch {
    records: Vec<(StoredCustomer, Vec<u8>)>,
    /// The consents each record was made with, in the same order.
    consents: Vec<Vec<ConsentChange>>,
    last_line: u64,
}

/// A batch committed.
struct Written {
    count: u64,
    last_line: u64,
    ids: std::ops::RangeInclusive<CustomerId>,
}

impl Engine {
    /// Creates many customers in few transactions. Rows that fail validation
    /// are reported and skipped; the others are imported.
    pub fn import_customers(
        &self,
        ctx: &Context,
        customers: impl IntoIterator<Item = NewCustomer>,
        options: &ImportOptions,
        progress: impl FnMut(&ImportProgress),
    ) -> Result<ImportReport> {
        let rows = customers.into_iter().enumerate();
        let rows = rows.map(|(i, c)| (i as u64 + 1, Ok(c)));
        self.import(ctx, rows, options, progress)
    }

    /// Imports `rows` (input line, customer or why it could not be read).
    ///
    /// Two stages: the caller's thread checks, decides and seals batch n+1
    /// (on every core) while a writer thread commits batch n.
    /// Acknowledgements (the progress callback) stay on the caller's thread
    /// and in commit order.
    pub(crate) fn import(
        &self,
        ctx: &Context,
        rows: impl Iterator<Item = (u64, Result<NewCustomer>)>,
        options: &ImportOptions,
        mut progress: impl FnMut(&ImportProgress),
    ) -> Result<ImportReport> {
        let entry = Entry::new("customer.create");
        let admitted = self.core.admit_early(ctx, &Op::new(entry.clone()))?;
        // Bounded: a batch is held in memory twice (sealing, writing).
        let batch_size = options.batch_size.clamp(1, MAX_BATCH);
        let mut checker = Checker::new(self, &admitted);
        let mut report = ImportReport::default();
        let outcome = std::thread::scope(|scope| {
            let (to_writer, batches) = mpsc::sync_channel::<SealedBatch>(1);
            let (to_main, written) = mpsc::channel::<Result<Written>>();
            let caller = admitted.caller();
            scope.spawn(move || {
                for batch in batches {
                    let result = self.write_batch(caller, batch);
                    let failed = result.is_err();
                    if to_main.send(result).is_err() || failed {
                        break;
                    }
                }
            });
            let mut acknowledge = |report: &mut ImportReport, result: Result<Written>| {
                let done = result?;
                report.imported += done.count;
                report.first_id.get_or_insert(*done.ids.start());
                report.last_id = Some(*done.ids.end());
                progress(&ImportProgress {
                    imported: report.imported,
                    skipped: report.errors.len() as u64,
                    last_line: done.last_line,
                    ids: done.ids,
                });
                Ok::<_, Error>(())
            };
            let mut batch: Vec<Row> = Vec::with_capacity(batch_size);
            let mut rows = rows.peekable();
            let mut failure = None;
            while let Some((line, row)) = rows.next() {
                match row.and_then(|new| checker.check(line, new)) {
                    Ok(row) => batch.push(row),
                    Err(error) => {
                        checker.refused(line, &error);
                        report.errors.push(RowError { line, error });
                    }
                }
                if batch.len() >= batch_size || (rows.peek().is_none() && !batch.is_empty()) {
                    let sealed = match self.seal_batch(std::mem::take(&mut batch)) {
                        Ok(sealed) => sealed,
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    };
                    if to_writer.send(sealed).is_err() {
                        break; // the writer stopped on an error, received below
                    }
                }
                // Acknowledge commits as soon as they land, not only between
                // batches: a commit is reported while the next batch is sealed.
                while let Ok(result) = written.try_recv() {
                    if let Err(e) = acknowledge(&mut report, result) {
                        failure.get_or_insert(e);
                    }
                }
                if failure.is_some() {
                    break;
                }
            }
            drop(to_writer);
            // Everything committed is acknowledged, even after a failure.
            for result in written {
                if let Err(e) = acknowledge(&mut report, result) {
                    failure.get_or_insert(e);
                }
            }
            match failure {
                Some(e) => Err(e),
                None => Ok(report),
            }
        });
        checker.audit_refusals(&entry)?;
        outcome
    }

    /// Gives a batch its ids and seals it.
    fn seal_batch(&self, rows: Vec<Row>) -> Result<SealedBatch> {
        let records = &self.core.records;
        let first = records.reserve_ids(rows.len() as u64);
        let last_line = rows.last().map_or(0, |r| r.line);
        let mut rows = rows;
        let consents = (rows.iter_mut())
            .map(|r| std::mem::take(&mut r.consents))
            .collect();
        let records = self.seal_all(first, rows, records.now())?;
        Ok(SealedBatch {
            records,
            consents,
            last_line,
        })
    }

    /// Writes a sealed batch: its keys claimed first, then records, index
    /// entries, consents and one audit entry per customer, in one write.
    fn write_batch(&self, caller: &Caller, batch: SealedBatch) -> Result<Written> {
        let keys: Vec<(u64, Vec<u8>)> = (batch.records.iter())
            .map(|(record, wrapped)| (record.id, wrapped.clone()))
            .collect();
        let (Some(first), Some(last)) = (keys.first(), keys.last()) else {
            return Err(Error::Config("an empty batch was written".into()));
        };
        let ids = first.0..=last.0;
        let claim = self.core.records.claim_new(&keys)?;
        let op = Op::new(Entry::new("customer.create"))
            .itemized()
            .claim(claim);
        self.core.write_as(caller, op, |tx| {
            let records = tx.records();
            let stored: Vec<&StoredCustomer> = batch.records.iter().map(|(r, _)| r).collect();
            // Decided again on this transaction: the principal, its owner
            // or the policy may have changed since the rows were checked.
            let mut owners = std::collections::HashSet::new();
            for record in &stored {
                if owners.insert(record.owner.as_str()) {
                    owner_rule(&record.owner, tx.txn().principal(&record.owner)?.as_ref())?;
                }
                tx.require(Action::Create, *record)?;
            }
            let new: Vec<_> = (stored.iter().copied())
                .zip(batch.consents.iter().map(Vec::as_slice))
                .collect();
            records.recheck_new(tx.txn(), &new)?;
            records.insert(tx.txn(), &stored)?;
            for (record, consents) in stored.iter().zip(&batch.consents) {
                let by = tx.actor().name.clone();
                for consent in consents {
                    // The creation's own audit entry covers these.
                    records.record_consent(tx.txn(), record.id, consent, &by)?;
                }
                let fields = record.public.keys().chain(record.sealed.keys()).cloned();
                let entry = Entry::new("customer.create")
                    .customer(record.id)
                    .fields(fields.collect());
                tx.audit(entry, crate::audit::Outcome::Ok)?;
                // Queued with the batch, delivered after its commit.
                tx.emit(Emitted::Created(record.id));
            }
            Ok(())
        })?;
        Ok(Written {
            count: keys.len() as u64,
            last_line: batch.last_line,
            ids,
        })
    }

    /// Seals a batch, on every core when it is large enough to pay off.
    fn seal_all(
        &self,
        first: u64,
        rows: Vec<Row>,
        now: i64,
    ) -> Result<Vec<(StoredCustomer, Vec<u8>)>> {
        let records = &self.core.records;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let seal = |(offset, row): (usize, Row)| {
            records.seal_new(first + offset as u64, &row.owner, row.fields, now)
        };
        if threads < 2 || rows.len() < 256 {
            return rows.into_iter().enumerate().map(seal).collect();
        }
        let chunk = rows.len().div_ceil(threads);
        let mut numbered: Vec<(usize, Row)> = rows.into_iter().enumerate().collect();
        let mut parts = Vec::new();
        while !numbered.is_empty() {
            let rest = numbered.split_off(chunk.min(numbered.len()));
            parts.push(std::mem::replace(&mut numbered, rest));
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = (parts.into_iter())
                .map(|part| {
                    scope.spawn(move || part.into_iter().map(seal).collect::<Result<Vec<_>>>())
                })
                .collect();
            let mut out = Vec::new();
            for handle in handles {
                match handle.join() {
                    Ok(part) => out.extend(part?),
                    Err(_) => return Err(Error::Config("a sealing thread panicked".into())),
                }
            }
            Ok(out)
        })
    }
}

/// The checks and the policy's decision on each row, outside the write:
/// the owner, the fields, the consents and their basis, `create`.
struct Checker<'a> {
    engine: &'a Engine,
    admitted: &'a Admitted,
    /// Owner → its team, or why it may not own customers. Decisions are
    /// remembered per owner; a storage error is not a decision and is tried
    /// again on the next row.
    owners: HashMap<String, Result<Option<String>, Denied>>,
    /// Rows refused by a rule or the policy (not those with invalid
    /// values), audited in one transaction after the import.
    refusals: Vec<(u64, Error)>,
}

impl<'a> Checker<'a> {
    fn new(engine: &'a Engine, admitted: &'a Admitted) -> Self {
        Self {
            engine,
            admitted,
            owners: HashMap::new(),
            refusals: Vec::new(),
        }
    }

    fn check(&mut self, line: u64, new: NewCustomer) -> Result<Row> {
        let records = &self.engine.core.records;
        let owner = new
            .owner
            .unwrap_or_else(|| self.admitted.actor().name.clone());
        let team = match self.owners.get(&owner) {
            Some(decided) => decided.clone(),
            None => {
                let stored = self.engine.core.store.read(|r| r.principal(&owner))?;
                let team = stored
                    .as_ref()
                    .and_then(|p| p.attributes.get("team").cloned());
                let decided = owner_rule(&owner, stored.as_ref()).map(|()| team);
                self.owners.insert(owner.clone(), decided.clone());
                decided
            }
        }?;
        let fields = records.normalize(&new.fields)?;
        records.check_new_basis(&fields, &new.consents, &records.retired())?;
        let facts = CustomerFacts {
            id: 0,
            owner: owner.clone(),
            team,
            status: Status::Active.as_str().to_string(),
            tags: split_tags(fields.get("tags").map(String::as_str)),
        };
        crate::op::allowed(self.admitted.decide_new(Action::Create, &facts))?;
        Ok(Row {
            line,
            owner,
            fields,
            consents: new.consents,
        })
    }

    fn refused(&mut self, line: u64, error: &Error) {
        if let Error::Denied(denied) = error {
            self.refusals.push((line, Error::Denied(denied.clone())));
        }
    }

    fn audit_refusals(&self, entry: &Entry) -> Result<()> {
        if self.refusals.is_empty() {
            return Ok(());
        }
        let caller = self.admitted.caller();
        let records: Vec<_> = (self.refusals.iter())
            .map(|(line, error)| {
                let entry = entry.clone().target(format!("line {line}"));
                entry.record(caller, crate::op::outcome_of(error)).into()
            })
            .collect();
        self.engine
            .core
            .write_records(&records)
            .map_err(crate::audit::AuditError::Unwritable)?;
        Ok(())
    }
}
