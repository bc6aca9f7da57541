//! Importing customers from a CSV file: the header names schema fields
//! (and the reserved columns below); every row becomes a [`NewCustomer`]
//! for [`Engine::import`].

use std::collections::VecDeque;
use std::io::Read;

use super::{Engine, ImportOptions, ImportProgress, ImportReport};
use crate::model::{ConsentChange, ModelError, NewCustomer};
use crate::{Context, Result};

/// CSV columns that are not fields: the owner, and the consents the
/// customer gave (`marketing; identity_verification(id_number)`), through
/// which channel, after seeing which privacy notice.
const CSV_RESERVED: &[&str] = &["owner", "consents", "consent_channel", "notice_version"];

/// The channel of consents in a CSV file that does not say.
const CSV_CONSENT_CHANNEL: &str = "import";

impl Engine {
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
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(LineCounter::new(input));
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
                self.core.records.schema.require(&name)?;
            }
            if columns.contains(&name) {
                return Err(header_error(format!("column `{name}` appears twice")).into());
            }
            columns.push(name);
        }
        let mut io_error = None;
        let failed = &mut io_error;
        let columns = &columns;
        let mut record = csv::ByteRecord::new();
        // A row is named by the line it starts on, as an editor counts
        // lines: csv's own count lags behind a CRLF or a blank line.
        let rows = std::iter::from_fn(move || match reader.read_byte_record(&mut record) {
            Ok(false) => None,
            Ok(true) => {
                let start = record.position().map_or(0, csv::Position::byte);
                let line = reader.get_mut().line_of(start);
                Some((line, csv_row(columns, &record)))
            }
            Err(e) => {
                if let csv::ErrorKind::Io(_) = e.kind() {
                    *failed = Some(e.to_string());
                    return None;
                }
                let start = e.position().map_or(0, csv::Position::byte);
                let line = reader.get_mut().line_of(start);
                let error = ModelError::Attribute {
                    what: "CSV row".into(),
                    reason: e.to_string(),
                };
                Some((line, Err(error.into())))
            }
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
}

/// Counts the lines of what the CSV reader reads as a text editor does:
/// `\n`, `\r\n` and a lone `\r` each end one, and a line break inside a
/// quoted field ends a line too. It keeps the runs of line breaks the
/// reader has read past but not yet asked about, so that the row starting
/// at a byte (csv's position: just after the previous row, before any
/// line break or blank line that precedes it) can be given the line its
/// first character is on.
struct LineCounter<R> {
    inner: R,
    /// Bytes read so far.
    read: u64,
    /// The line of the next byte read.
    line: u64,
    /// Whether the last byte read was `\r` (a `\n` after it ends no line).
    after_cr: bool,
    /// Runs of line breaks not yet behind the rows asked about: their first
    /// byte, the byte after them, and the line that byte is on.
    runs: VecDeque<(u64, u64, u64)>,
    /// The line after the last run dropped from `runs`.
    behind: u64,
}

impl<R> LineCounter<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            read: 0,
            line: 1,
            after_cr: false,
            runs: VecDeque::new(),
            behind: 1,
        }
    }

    /// The line of the first character at or after `start` that is not a
    /// line break. Rows are asked about in order: runs before `start` are
    /// dropped.
    fn line_of(&mut self, start: u64) -> u64 {
        while let Some(&(first, after, line)) = self.runs.front() {
            if after <= start {
                self.behind = line;
                self.runs.pop_front();
            } else if first <= start {
                return line;
            } else {
                break;
            }
        }
        self.behind
    }
}

impl<R: Read> Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for (at, &byte) in (self.read..).zip(buf.iter().take(n)) {
            if byte != b'\n' && byte != b'\r' {
                self.after_cr = false;
                continue;
            }
            if !(byte == b'\n' && self.after_cr) {
                self.line += 1;
            }
            self.after_cr = byte == b'\r';
            match self.runs.back_mut() {
                Some(run) if run.1 == at => {
                    run.1 = at + 1;
                    run.2 = self.line;
                }
                _ => self.runs.push_back((at, at + 1, self.line)),
            }
        }
        self.read += n as u64;
        Ok(n)
    }
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
