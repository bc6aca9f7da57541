//! Storage format 1 to 2. Format 1 stored records untagged and kept the
//! settings (store id, schema, audit head, next id) in the meta table;
//! format 2 tags every record and keeps the settings as tagged records.
//! The migration runs in one write transaction on open: it completes, or
//! the file stays as it was.
//!
//! Tagging blesses what the file holds when it runs, so it runs once: the
//! key store records the format its data file reached, and a data file
//! that claims an older format than that is refused (`store::open`).

use redb::{ReadableTable, WriteTransaction};

use super::super::integrity::Integrity;
use super::super::{FORMAT, Meta, StoreError};
use super::tables::{
    self, META, META_FORMAT, SETTING_AUDIT_HEAD, SETTING_NEXT_ID, SETTING_SCHEMA, SETTING_STORE_ID,
    SETTINGS,
};
use super::{Named, Writer};

/// The settings format 1 kept in the meta table, under the same names.
const MOVED: [&str; 4] = [
    SETTING_STORE_ID,
    SETTING_SCHEMA,
    SETTING_AUDIT_HEAD,
    SETTING_NEXT_ID,
];

/// Tags every record and moves the settings out of the meta table.
pub(super) fn from_format_1(
    txn: &WriteTransaction,
    integrity: &Integrity,
) -> Result<(), StoreError> {
    tables::tag_records(txn, integrity)?;
    let mut moved = Vec::new();
    {
        let mut meta = txn.open_table(META.def())?;
        for name in MOVED {
            if let Some(value) = meta.remove(name)? {
                moved.push((name, value.value().to_vec()));
            }
        }
        meta.insert(META_FORMAT, FORMAT.to_le_bytes().as_slice())?;
    }
    let writer = Writer::new(txn, integrity);
    for (name, value) in &moved {
        writer.put(SETTINGS, *name, value)?;
    }
    Ok(())
}

/// The settings of a format-1 file, read from its meta table.
pub(super) fn format_1_meta(
    meta: &(impl ReadableTable<&'static str, &'static [u8]> + ?Sized),
    format: Option<u32>,
    key_check: Option<[u8; 32]>,
) -> Result<Meta, StoreError> {
    let next_id = match meta.get(SETTING_NEXT_ID)? {
        Some(v) => <[u8; 8]>::try_from(v.value())
            .map(u64::from_le_bytes)
            .map_err(|_| StoreError::Corrupt("meta next_id".into()))?,
        None => 1,
    };
    Ok(Meta {
        format,
        key_check,
        store_id: meta
            .get(SETTING_STORE_ID)?
            .and_then(|v| <[u8; 16]>::try_from(v.value()).ok()),
        schema: meta
            .get(SETTING_SCHEMA)?
            .map(|v| String::from_utf8_lossy(v.value()).into_owned()),
        next_id,
        tampered: None,
    })
}
