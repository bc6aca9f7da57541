//! Records at rest are untrusted: whoever can write the data file but has
//! no key must not be able to plant a record the engine acts on. Every
//! record carries a keyed tag over its table, its key and its bytes, so an
//! edited record, a record replayed under another key, or one moved to
//! another table fails when read, and is refused with the table and key it
//! was found under.
//!
//! The tag is keyed BLAKE3 under a key derived from the master key's
//! root, which key rotation does not change. What is tagged is each part
//! with its length, so no two (table, key, bytes) triples hash alike.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use zeroize::Zeroizing;

use super::StoreError;

/// Bytes a tag adds to each record.
pub(crate) const TAG_LEN: usize = 32;

/// Tables whose records are read by nearly every operation (the acting
/// principal, the settings): their checked records are remembered.
const REMEMBERED: &[&str] = &["principals", "settings"];
/// The most records remembered, and the largest.
const REMEMBER_RECORDS: usize = 4096;
const REMEMBER_BYTES: usize = 4096;

/// The key records are tagged under.
pub(crate) struct Integrity {
    key: Zeroizing<[u8; 32]>,
    /// Stored bytes (tag included) that passed the check, by table and
    /// key. The check is a function of table, key and bytes, so the same
    /// bytes found again under the same table and key pass it: comparing
    /// them costs far less than hashing them again. Bytes that differ are
    /// checked as usual.
    checked: RwLock<HashMap<Vec<u8>, Box<[u8]>>>,
}

impl Integrity {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Self {
            key: Zeroizing::new(*key),
            checked: RwLock::default(),
        }
    }

    /// Where `key` of `table` is remembered, if the table's records are.
    fn memo_key(table: &str, key: &[u8], stored: &[u8]) -> Option<Vec<u8>> {
        if stored.len() > REMEMBER_BYTES || !REMEMBERED.contains(&table) {
            return None;
        }
        let mut memo = Vec::with_capacity(table.len() + 1 + key.len());
        memo.extend_from_slice(table.as_bytes());
        // Table names hold no 0 byte: the pair is read back unambiguously.
        memo.push(0);
        memo.extend_from_slice(key);
        Some(memo)
    }

    /// The tag of `body` stored in `table` under `key` (the key as the
    /// backend encodes it).
    pub(crate) fn tag(&self, table: &str, key: &[u8], body: &[u8]) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        for part in [table.as_bytes(), key, body] {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        hasher.finalize()
    }

    /// `body` with its tag appended, as stored.
    pub(crate) fn seal(&self, table: &str, key: &[u8], body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + TAG_LEN);
        out.extend_from_slice(body);
        out.extend_from_slice(self.tag(table, key, body).as_bytes());
        out
    }

    /// The body of a stored record, if its tag holds for `table` and
    /// `key`; `shown` renders the key for the refusal.
    pub(crate) fn open<'a>(
        &self,
        table: &str,
        key: &[u8],
        stored: &'a [u8],
        shown: impl FnOnce() -> String,
    ) -> Result<&'a [u8], StoreError> {
        let memo = Self::memo_key(table, key, stored);
        if let Some(memo) = &memo {
            let checked = self.checked.read().unwrap_or_else(PoisonError::into_inner);
            if checked.get(memo).is_some_and(|known| **known == *stored)
                && let Some((body, _)) = stored.split_last_chunk::<TAG_LEN>()
            {
                return Ok(body);
            }
        }
        let checked = stored
            .split_last_chunk::<TAG_LEN>()
            // `blake3::Hash` compares in constant time.
            .filter(|(body, tag)| self.tag(table, key, body) == blake3::Hash::from(**tag));
        if let (Some(memo), Some(_)) = (memo, checked) {
            let mut remembered = self.checked.write().unwrap_or_else(PoisonError::into_inner);
            if remembered.len() >= REMEMBER_RECORDS {
                remembered.clear();
            }
            remembered.insert(memo, stored.into());
        }
        match checked {
            Some((body, _)) => Ok(body),
            None => Err(StoreError::Integrity {
                table: table.to_string(),
                key: shown(),
            }),
        }
    }
}

/// A record that failed its check, as `audit verify` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntegrityFailure {
    /// The table it was found in.
    pub table: String,
    /// Its key, as the engine shows keys.
    pub key: String,
}

impl std::fmt::Display for IntegrityFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "table `{}`, key {}", self.table, self.key)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn shown() -> String {
        "k".into()
    }

    #[test]
    fn a_record_opens_only_where_it_was_sealed() {
        let integrity = Integrity::new(&[7; 32]);
        let stored = integrity.seal("principals", b"rep", b"body");
        assert_eq!(
            integrity
                .open("principals", b"rep", &stored, shown)
                .unwrap(),
            b"body"
        );
        // Another key, another table, another integrity key, an edit.
        assert!(
            integrity
                .open("principals", b"admin", &stored, shown)
                .is_err()
        );
        assert!(integrity.open("customers", b"rep", &stored, shown).is_err());
        let other = Integrity::new(&[8; 32]);
        assert!(other.open("principals", b"rep", &stored, shown).is_err());
        for i in 0..stored.len() {
            let mut flipped = stored.clone();
            flipped[i] ^= 1;
            assert!(
                integrity
                    .open("principals", b"rep", &flipped, shown)
                    .is_err()
            );
        }
        assert!(
            integrity
                .open("principals", b"rep", &stored[..10], shown)
                .is_err()
        );
    }

    /// A remembered record passes again only with the very same bytes.
    #[test]
    fn a_remembered_record_passes_only_unchanged() {
        let integrity = Integrity::new(&[7; 32]);
        let stored = integrity.seal("principals", b"rep", b"body");
        let admin = integrity.seal("principals", b"admin", b"admin body");
        for _ in 0..2 {
            assert!(integrity.open("principals", b"rep", &stored, shown).is_ok());
            assert!(
                integrity
                    .open("principals", b"admin", &admin, shown)
                    .is_ok()
            );
        }
        // The admin's record replayed under the rep's key, and edits, fail
        // although both keys' records are remembered.
        assert!(integrity.open("principals", b"rep", &admin, shown).is_err());
        for i in 0..stored.len() {
            let mut flipped = stored.clone();
            flipped[i] ^= 1;
            assert!(
                integrity
                    .open("principals", b"rep", &flipped, shown)
                    .is_err()
            );
        }
        assert!(integrity.open("settings", b"rep", &stored, shown).is_err());
    }

    #[test]
    fn parts_are_delimited() {
        let integrity = Integrity::new(&[7; 32]);
        assert_ne!(
            integrity.tag("ab", b"c", b""),
            integrity.tag("a", b"bc", b"")
        );
        assert_ne!(
            integrity.tag("a", b"b", b"c"),
            integrity.tag("a", b"", b"bc")
        );
    }
}
