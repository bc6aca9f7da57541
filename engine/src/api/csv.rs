//! Importing customers from a CSV file: the header names schema fields
//! (and the reserved columns below); every row becomes a [`NewCustomer`]
//! for [`Engine::import`].

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
                self.core.records.schema.require(&name)?;
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
