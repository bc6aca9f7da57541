//! Creating customers in batches: from the API or from a CSV file. Each
//! batch is one key-store write and one data transaction, with one audit
//! entry per customer created.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::mpsc;

use super::access::{refusal, subject};
use super::customers::{IndexKey, owner_rule, refuse, writer_actor};
use super::plugins::Emitted;
use super::{Context, Engine, Event, Inner};
use crate::audit::{self, Outcome};
use crate::model::ConsentChange;
use crate::model::{CustomerId, ModelError, NewCustomer, Status};
use crate::plugin::EventKind;
use crate::policy::{Action, CustomerFacts};
use crate::store::StoredCustomer;
use crate::{Error, Result};

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

/// CSV columns that are not fields: the owner, and the consents the
/// customer gave (`marketing; identity_verification(id_number)`), through
/// which channel, after seeing which privacy notice.
const CSV_RESERVED: &[&str] = &["owner", "consents", "consent_channel", "notice_version"];

/// The channel of consents in a CSV file that does not say.
const CSV_CONSENT_CHANNEL: &str = "import";

struct Row {
    line: u64,
    owner: String,
    fields: BTreeMap<String, String>,
    consents: Vec<ConsentChange>,
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
        self.import(
            ctx,
            rows.map(|(i, c)| (i as u64 + 1, Ok(c))),
            options,
            progress,
        )
    }

    /// Imports a CSV file whose header row names schema fields (and
    /// optionally `owner`). Malformed rows, non-UTF-8 values and invalid
    /// fields are reported by line and field and skipped; an unknown column
    /// refuses the whole file before anything is written.
    pub fn import_csv(
        &self,
        ctx: &Context,
        input: impl Read,
        options: &ImportOptions,
        progress: impl FnMut(&ImportProgress),
    ) -> Result<ImportReport> {
        let ctx = &self.inner.authenticate(ctx)?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(input);
        let header_error = |reason: String| ModelError::Attribute {
            what: "CSV header (line 1)".into(),
            reason,
        };
        let headers = reader
            .byte_headers()
            .map_err(|e| header_error(e.to_string()))?
            .clone();
        let mut columns = Vec::new();
        for (index, raw) in headers.iter().enumerate() {
            let name = std::str::from_utf8(raw)
                .map_err(|_| header_error(format!("column {} is not UTF-8", index + 1)))?
                .trim()
                .trim_start_matches('\u{feff}')
                .to_string();
            if !CSV_RESERVED.contains(&name.as_str()) {
                self.inner.schema.require(&name)?;
            }
            if columns.contains(&name) {
                return Err(header_error(format!("column `{name}` appears twice")).into());
            }
            columns.push(name);
        }
        let mut io_error = None;
        let rows = reader.into_byte_records().map_while(|result| {
            let record = match result {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    if let csv::ErrorKind::Io(_) = e.kind() {
                        io_error = Some(e.to_string());
                        return None;
                    }
                    let error = ModelError::Attribute {
                        what: "CSV row".into(),
                        reason: e.to_string(),
                    };
                    return Some((line, Err(error.into())));
                }
            };
            let line = record.position().map_or(0, |p| p.line());
            Some((line, csv_row(&columns, &record)))
        });
        let report = self.import(ctx, rows, options, progress)?;
        match io_error {
            Some(e) => Err(ModelError::Attribute {
                what: "CSV file".into(),
                reason: format!(
                    "read failed after {} customers were imported: {e}",
                    report.imported
                ),
            }
            .into()),
            None => Ok(report),
        }
    }

    pub(crate) fn import(
        &self,
        ctx: &Context,
        rows: impl Iterator<Item = (u64, Result<NewCustomer>)>,
        options: &ImportOptions,
        mut progress: impl FnMut(&ImportProgress),
    ) -> Result<ImportReport> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let event = || Event::new("customer.create");
        let actor = inner.store.read(|r| inner.actor(r, ctx, event))?;
        // Bounded: a batch is held in memory twice (sealing, writing).
        let batch_size = options.batch_size.clamp(1, MAX_BATCH);
        let mut report = ImportReport::default();
        // Owner → its team, or why it may not own customers.
        let mut owners: HashMap<String, Result<Option<String>, String>> = HashMap::new();
        let policy = inner.policy();
        let subject = subject(&actor);
        // Rows refused by the access rule (not those with invalid values)
        // are audited, in one transaction after the import.
        let mut refusals = Vec::new();
        // Two stages: this thread validates and seals batch n+1 while a
        // writer thread commits batch n. Acknowledgements (the progress
        // callback) stay on this thread and in commit order.
        // Id ranges of committed batches, for the creation events.
        let mut written_ids: Vec<std::ops::RangeInclusive<u64>> = Vec::new();
        let outcome = std::thread::scope(|scope| {
            let (to_writer, batches) = mpsc::sync_channel::<SealedBatch>(1);
            let (to_main, written) = mpsc::channel::<Result<Written>>();
            scope.spawn(move || {
                for batch in batches {
                    let result = inner.write_batch(ctx, batch);
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
                written_ids.push(done.ids.clone());
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
                let row = row.and_then(|new| {
                    let owner = new.owner.unwrap_or_else(|| actor.name.clone());
                    // Decisions are remembered per owner; a storage error is
                    // not a decision and is tried again on the next row.
                    let team = match owners.get(&owner) {
                        Some(decided) => decided.clone(),
                        None => {
                            let decided = inner.owner_team(&owner)?;
                            owners.insert(owner.clone(), decided.clone());
                            decided
                        }
                    };
                    let team = team.map_err(Error::Denied)?;
                    let fields = inner.normalize_fields(&new.fields)?;
                    inner.check_new_consents(&fields, &new.consents)?;
                    let facts = CustomerFacts {
                        id: 0,
                        owner: owner.clone(),
                        team,
                        status: Status::Active.as_str().to_string(),
                        tags: fields
                            .get("tags")
                            .map(|l| l.split(',').map(str::to_string).collect())
                            .unwrap_or_default(),
                    };
                    let decision =
                        policy.authorize(&subject, Action::Create, ctx.purpose(), Some(&facts));
                    if !decision.allowed() {
                        return Err(Error::Denied(refusal(&decision)));
                    }
                    Ok(Row {
                        line,
                        owner,
                        fields,
                        consents: new.consents,
                    })
                });
                match row {
                    Ok(row) => batch.push(row),
                    Err(error) => {
                        if let Error::Denied(reason) = &error {
                            let event =
                                Event::new("customer.create").target(format!("line {line}"));
                            refusals.push(event.record(ctx, Outcome::Denied(reason.clone())));
                        }
                        report.errors.push(RowError { line, error });
                    }
                }
                if batch.len() >= batch_size || (rows.peek().is_none() && !batch.is_empty()) {
                    let sealed = match inner.seal_batch(std::mem::take(&mut batch)) {
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
        if outcome.is_ok() && inner.wants(EventKind::CustomerCreated) {
            let ids: Vec<u64> = written_ids.into_iter().flatten().collect();
            self.inner
                .emit(ids.into_iter().map(Emitted::Created).collect(), None);
        }
        if !refusals.is_empty() {
            inner
                .write_records(&refusals)
                .map_err(crate::audit::AuditError::Unwritable)?;
        }
        outcome
    }
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

fn csv_row(columns: &[String], record: &csv::ByteRecord) -> Result<NewCustomer> {
    if record.len() != columns.len() {
        return Err(ModelError::Attribute {
            what: "CSV row".into(),
            reason: format!(
                "it has {} fields but the header has {}",
                record.len(),
                columns.len()
            ),
        }
        .into());
    }
    let mut new = NewCustomer::new();
    let (mut consents, mut channel, mut notice) = ("", CSV_CONSENT_CHANNEL, "");
    for (name, raw) in columns.iter().zip(record.iter()) {
        let value = std::str::from_utf8(raw).map_err(|_| ModelError::Invalid {
            field: name.clone(),
            reason: "the value is not UTF-8 text".into(),
        })?;
        match name.as_str() {
            "owner" => {
                if !value.trim().is_empty() {
                    new.owner = Some(value.trim().to_string());
                }
            }
            "consents" => consents = value,
            "consent_channel" if !value.trim().is_empty() => channel = value.trim(),
            "consent_channel" => {}
            "notice_version" => notice = value.trim(),
            _ => {
                new.fields.insert(name.clone(), value.to_string());
            }
        }
    }
    new.consents = ConsentChange::parse_list(consents, channel, notice)?;
    Ok(new)
}

impl Inner {
    /// The team of `owner`, or why it may not own customers.
    fn owner_team(&self, owner: &str) -> Result<Result<Option<String>, String>> {
        let stored = self.store.read(|r| r.principal(owner))?;
        let team = stored
            .as_ref()
            .and_then(|p| p.attributes.get("team").cloned());
        Ok(owner_rule(owner, stored).map(|()| team))
    }

    /// Gives a batch its ids and seals it.
    fn seal_batch(&self, rows: Vec<Row>) -> Result<SealedBatch> {
        let count = rows.len() as u64;
        let first = self.reserve_ids(count);
        let last_line = rows.last().map_or(0, |r| r.line);
        let mut rows = rows;
        let consents = rows
            .iter_mut()
            .map(|r| std::mem::take(&mut r.consents))
            .collect();
        let records = self.seal_all(first, rows, self.now_micros())?;
        Ok(SealedBatch {
            records,
            consents,
            last_line,
        })
    }

    /// Writes a sealed batch: keys first, then records, indexes and audit
    /// entries in one transaction.
    fn write_batch(&self, ctx: &Context, batch: SealedBatch) -> Result<Written> {
        let sealed = batch.records;
        let keys: Vec<(u64, Vec<u8>)> = sealed
            .iter()
            .map(|(record, wrapped)| (record.id, wrapped.clone()))
            .collect();
        let ids: Vec<u64> = keys.iter().map(|(id, _)| *id).collect();
        // INVARIANT: keys are durable before the records that need them.
        self.hold_pending(&ids);
        if let Err(e) = self.keys.put(&keys) {
            self.release_pending(&ids);
            return Err(e.into());
        }
        let written = self.store.write(|w| {
            let event = || Event::new("customer.create");
            if let Err(reason) = writer_actor(w, ctx)? {
                return refuse(self, w, ctx, event(), Error::Denied(reason));
            }
            // Index entries in key order: consecutive inserts land in the
            // same B-tree pages instead of all over the index.
            let mut entries: Vec<(IndexKey, u64)> = sealed
                .iter()
                .flat_map(|(record, _)| {
                    let id = record.id;
                    self.index_keys(record).into_iter().map(move |k| (k, id))
                })
                .collect();
            entries.sort_unstable();
            for (key, id) in &entries {
                w.index(key.as_index(), *id, true)?;
            }
            for ((record, _), consents) in sealed.iter().zip(&batch.consents) {
                w.put_customer(record)?;
                w.record_id(record.id);
                self.write_consents(w, ctx, record.id, consents)?;
                let fields = record
                    .public
                    .keys()
                    .chain(record.sealed.keys())
                    .cloned()
                    .collect();
                let entry = event().customer(record.id).fields(fields);
                audit::append(w, self.ring.audit_key(), &entry.record(ctx, Outcome::Ok))?;
            }
            Ok::<_, Error>(Ok(()))
        });
        let settle = self.release_pending(&ids);
        match written {
            Ok(Ok(())) => self.keys.settle(&settle)?,
            Ok(Err(refusal)) => {
                // Refused inside the transaction: nothing but its audit
                // entry committed, so the keys are orphans.
                self.keys.remove(&ids)?;
                return Err(refusal);
            }
            // The commit may or may not have reached the disk (a failed
            // final sync): the keys stay pending and the next open keeps
            // exactly those whose customer is there.
            Err(e) => return Err(e),
        }
        let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
            return Err(Error::Config("an empty batch was written".into()));
        };
        Ok(Written {
            count: ids.len() as u64,
            last_line: batch.last_line,
            ids: *first..=*last,
        })
    }

    /// Seals a batch, on every core when it is large enough to pay off.
    fn seal_all(
        &self,
        first: u64,
        rows: Vec<Row>,
        now: i64,
    ) -> Result<Vec<(StoredCustomer, Vec<u8>)>> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let seal = |(offset, row): (usize, Row)| {
            self.seal_customer(first + offset as u64, &row.owner, row.fields, now)
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
            let handles: Vec<_> = parts
                .into_iter()
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
