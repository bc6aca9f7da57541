//! Authenticated records in redb: a table of records stores [`Tagged`]
//! values, and reading one gives a [`TaggedRef`] whose bytes are reached
//! only through the check of its tag (see `store::integrity`).

use redb::{Key, TypeName, Value};

use super::super::StoreError;
use super::super::integrity::Integrity;

/// The redb value type of a record with its tag.
#[derive(Debug)]
pub(in crate::store) struct Tagged;

/// A stored record, unchecked: its bytes are reached through
/// [`open`] only.
#[derive(Clone, Copy, Debug)]
pub(in crate::store) struct TaggedRef<'a>(&'a [u8]);

impl Value for Tagged {
    type SelfType<'a>
        = TaggedRef<'a>
    where
        Self: 'a;
    type AsBytes<'a>
        = &'a [u8]
    where
        Self: 'a;

    fn fixed_width() -> Option<usize> {
        None
    }

    fn from_bytes<'a>(data: &'a [u8]) -> TaggedRef<'a>
    where
        Self: 'a,
    {
        TaggedRef(data)
    }

    fn as_bytes<'a, 'b: 'a>(value: &'a TaggedRef<'b>) -> &'a [u8]
    where
        Self: 'b,
    {
        value.0
    }

    fn type_name() -> TypeName {
        TypeName::new("custodian::Tagged")
    }
}

/// The key of a record as the tag binds it (redb's own encoding of the
/// key type, fixed per table) and as a refusal shows it.
pub(in crate::store) trait ShownKey: Key + 'static {
    fn show(key: &Self::SelfType<'_>) -> String;
}

impl ShownKey for u64 {
    fn show(key: &u64) -> String {
        key.to_string()
    }
}

impl ShownKey for &'static str {
    fn show(key: &&str) -> String {
        format!("{:?}", clip(key))
    }
}

impl ShownKey for &'static [u8] {
    fn show(key: &&[u8]) -> String {
        crate::crypto::hex(key)
    }
}

impl ShownKey for (u64, u64) {
    fn show(key: &(u64, u64)) -> String {
        format!("({}, {})", key.0, key.1)
    }
}

impl ShownKey for (i64, u64) {
    fn show(key: &(i64, u64)) -> String {
        format!("({}, {})", key.0, key.1)
    }
}

impl ShownKey for (u64, &'static str) {
    fn show(key: &(u64, &str)) -> String {
        format!("({}, {:?})", key.0, clip(key.1))
    }
}

impl ShownKey for (&'static str, u64) {
    fn show(key: &(&str, u64)) -> String {
        format!("({:?}, {})", clip(key.0), key.1)
    }
}

/// Plugin state: the plugin's name, not the key it chose (which may
/// spell a value it was shown).
impl ShownKey for (&'static str, i64, u64) {
    fn show(key: &(&str, i64, u64)) -> String {
        format!("({:?}, {}, {})", clip(key.0), key.1, key.2)
    }
}

impl ShownKey for (&'static str, i64) {
    fn show(key: &(&str, i64)) -> String {
        format!("({:?}, {})", clip(key.0), key.1)
    }
}

impl ShownKey for (&'static str, &'static str) {
    fn show(key: &(&str, &str)) -> String {
        format!("({:?}, …)", clip(key.0))
    }
}

fn clip(text: &str) -> &str {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// The body of the record `value` found under `key` in `table`, if its tag
/// holds; otherwise [`StoreError::Integrity`] naming both.
pub(in crate::store) fn open<'a, K: ShownKey>(
    integrity: &Integrity,
    table: &str,
    key: &K::SelfType<'_>,
    value: TaggedRef<'a>,
) -> Result<&'a [u8], StoreError> {
    let bytes = K::as_bytes(key);
    integrity.open(table, bytes.as_ref(), value.0, || K::show(key))
}

/// `body`, tagged for `key` in `table`, as it is stored.
pub(in crate::store) fn seal<K: Key>(
    integrity: &Integrity,
    table: &str,
    key: &K::SelfType<'_>,
    body: &[u8],
) -> Sealed {
    let bytes = K::as_bytes(key);
    Sealed(integrity.seal(table, bytes.as_ref(), body))
}

/// A record and its tag, ready to insert.
pub(in crate::store) struct Sealed(Vec<u8>);

impl Sealed {
    pub(in crate::store) fn as_ref(&self) -> TaggedRef<'_> {
        TaggedRef(&self.0)
    }
}
