//! Opening an engine's two files: the data file and the key store. What
//! each state of the pair leads to (open it, create it, finish a creation
//! a crash interrupted, or refuse) is one table, [`PLANS`]; the key is
//! checked against both files read-only before either is opened for
//! writing, so a wrong key writes nothing.

use std::path::{Path, PathBuf};

use super::{FORMAT, Identity, Integrity, KeyStore, Location, Meta, Store, StoreError};

/// The data file, as found before anything is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Data {
    /// No file, or an empty storage backend.
    Absent,
    /// A file whose creation stopped before its identity was written.
    Unfinished,
    /// A database (or a file that needs crash repair: it is checked again
    /// once the repairing open has run).
    Ready,
}

/// The key store, as found before anything is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keys {
    Absent,
    /// A key store with no key and no pending mark: a new database's, or
    /// one a crash left before its data file was made.
    Empty,
    /// A key store holding keys (or one that needs crash repair).
    Holding,
}

/// What opening does with a state of the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// Create the data file (and the key store, unless an interrupted
    /// creation left an empty one, whose id the data file then takes).
    Create,
    /// Write the identity a crash kept an unfinished data file from.
    Finish,
    /// Open both as they are.
    Open,
    /// Refuse; nothing is written.
    Refuse(Why),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Why {
    NoData,
    NoKeyStore,
    KeyStoreInUse,
    NeverInitialized,
}

/// Every state of the pair, and the plan without and with `create`.
const PLANS: [(Data, Keys, Plan, Plan); 9] = {
    use Data as D;
    use Keys as K;
    use Plan::*;
    use Why::*;
    [
        (D::Absent, K::Absent, Refuse(NoData), Create),
        (D::Absent, K::Empty, Refuse(NoData), Create),
        // Never adopt a key store that holds another database's keys.
        (D::Absent, K::Holding, Refuse(NoData), Refuse(KeyStoreInUse)),
        (D::Unfinished, K::Absent, Refuse(NeverInitialized), Finish),
        (D::Unfinished, K::Empty, Refuse(NeverInitialized), Finish),
        (
            D::Unfinished,
            K::Holding,
            Refuse(KeyStoreInUse),
            Refuse(KeyStoreInUse),
        ),
        // The keys of a database are never made up anew.
        (D::Ready, K::Absent, Refuse(NoKeyStore), Refuse(NoKeyStore)),
        (D::Ready, K::Empty, Open, Open),
        (D::Ready, K::Holding, Open, Open),
    ]
};

fn plan(data: Data, keys: Keys, create: bool) -> Plan {
    PLANS
        .iter()
        .find(|(d, k, _, _)| *d == data && *k == keys)
        .map_or(
            Plan::Refuse(Why::NeverInitialized),
            |(_, _, without, with)| {
                if create { *with } else { *without }
            },
        )
}

/// What an engine asks to open.
pub(crate) struct Request<'a> {
    pub(crate) data: Location<'a>,
    pub(crate) key_store: &'a Path,
    pub(crate) mirrors: &'a [PathBuf],
    /// The key-check value of the master key given.
    pub(crate) key_check: [u8; 32],
    /// The key records are authenticated under.
    pub(crate) integrity: Integrity,
    pub(crate) create: bool,
    /// Open a file whose settings failed their integrity check, to verify
    /// it (the failure is reported by the verification).
    pub(crate) to_verify: bool,
    /// The schema a new database records.
    pub(crate) schema: &'a str,
}

/// The opened pair.
pub(crate) struct Opened {
    pub(crate) store: Store,
    pub(crate) keys: KeyStore,
    pub(crate) meta: Meta,
}

/// Opens (or creates, or finishes creating) the data file and the key
/// store. A wrong key is [`StoreError::KeyCheckMismatch`].
pub(crate) fn open(request: Request<'_>) -> Result<Opened, StoreError> {
    let shown = match &request.data {
        Location::Path(p) => p.display().to_string(),
        Location::Backend(_) => "the storage backend".to_string(),
    };
    let keys_state = classify_keys(request.key_store, request.key_check)?;
    let data_state = classify_data(&request.data, request.key_check)?;
    let plan = plan(data_state, keys_state, request.create);
    if let Plan::Refuse(why) = plan {
        return Err(refusal(why, &shown, request.key_store));
    }
    let creating = data_state == Data::Absent;
    let new_id = (creating || keys_state == Keys::Absent).then(crate::crypto::random_bytes::<16>);
    let keys = KeyStore::open(
        request.key_store,
        request.mirrors,
        request.key_check,
        new_id,
    )?;
    // A key store that needed repair is classified only now.
    if data_state != Data::Ready && keys.holds_keys()? {
        return Err(refusal(Why::KeyStoreInUse, &shown, request.key_store));
    }
    let store_id = keys
        .store_id()?
        .ok_or_else(|| StoreError::Corrupt("key store without an id".into()))?;
    let (store, mut meta) =
        Store::open(request.data, creating, request.integrity, request.key_check)?;
    if let Some(tampered) = meta.tampered.take()
        && !request.to_verify
    {
        return Err(tampered);
    }
    // Checked again after a repairing open, before any write.
    let initialized = meta.key_check.is_some();
    if initialized && meta.key_check != Some(request.key_check) {
        return Err(StoreError::KeyCheckMismatch);
    }
    if !initialized && plan == Plan::Open {
        return Err(refusal(Why::NeverInitialized, &shown, request.key_store));
    }
    if meta.store_id.is_some() && meta.store_id != Some(store_id) {
        let path = request.key_store.display().to_string();
        return Err(StoreError::KeyStoreMismatch(path));
    }
    let identity = (!initialized).then_some(Identity {
        key_check: request.key_check,
        store_id,
        schema: request.schema,
    });
    // Migrating tags what the file holds, so it happens once: a data file
    // older than its key store has seen is a rollback, or a forgery.
    let seen = keys.data_format()?;
    if let Some((found, seen)) = meta.format.zip(seen).filter(|(f, s)| f < s) {
        return Err(StoreError::Downgraded { found, seen });
    }
    store.prepare(identity)?;
    if seen.is_none_or(|seen| seen < FORMAT) {
        keys.set_data_format(FORMAT)?;
    }
    Ok(Opened { store, keys, meta })
}

fn classify_keys(path: &Path, key_check: [u8; 32]) -> Result<Keys, StoreError> {
    if !path.exists() {
        return Ok(Keys::Absent);
    }
    match KeyStore::peek(path) {
        Ok(peek) if peek.check.is_some_and(|c| c != key_check) => Err(StoreError::KeyCheckMismatch),
        Ok(peek) if peek.holds_keys => Ok(Keys::Holding),
        Ok(_) => Ok(Keys::Empty),
        // A file that needs crash repair cannot be opened read-only.
        Err(_) => Ok(Keys::Holding),
    }
}

fn classify_data(data: &Location<'_>, key_check: [u8; 32]) -> Result<Data, StoreError> {
    match data {
        Location::Backend(backend) => {
            let empty = backend
                .is_empty()
                .map_err(|e| StoreError::Backend(e.to_string()))?;
            Ok(if empty { Data::Absent } else { Data::Ready })
        }
        Location::Path(path) if !path.exists() => Ok(Data::Absent),
        Location::Path(path) => match Store::peek_key_check(path) {
            Ok(Some(check)) if check != key_check => Err(StoreError::KeyCheckMismatch),
            Ok(Some(_)) => Ok(Data::Ready),
            Ok(None) => Ok(Data::Unfinished),
            // A file that needs crash repair cannot be opened read-only.
            Err(_) => Ok(Data::Ready),
        },
    }
}

fn refusal(why: Why, data: &str, key_store: &Path) -> StoreError {
    match why {
        Why::NoData => StoreError::Missing(data.to_string()),
        Why::NoKeyStore => StoreError::KeyStoreMissing(key_store.display().to_string()),
        Why::KeyStoreInUse => StoreError::KeyStoreInUse(key_store.display().to_string()),
        Why::NeverInitialized => StoreError::Corrupt(
            "the database was never initialized; open it with create enabled".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_of_the_pair_has_one_plan() {
        let datas = [Data::Absent, Data::Unfinished, Data::Ready];
        let keys = [Keys::Absent, Keys::Empty, Keys::Holding];
        for d in datas {
            for k in keys {
                let rows = PLANS.iter().filter(|(pd, pk, _, _)| *pd == d && *pk == k);
                assert_eq!(rows.count(), 1, "{d:?} {k:?}");
            }
        }
    }

    #[test]
    fn nothing_is_made_without_create() {
        for (data, keys, without, _) in PLANS {
            assert!(
                matches!(without, Plan::Open | Plan::Refuse(_)),
                "{data:?} {keys:?} {without:?}"
            );
        }
    }

    #[test]
    fn a_key_store_holding_keys_is_never_given_a_new_database() {
        for create in [false, true] {
            for data in [Data::Absent, Data::Unfinished] {
                assert_eq!(
                    plan(data, Keys::Holding, create),
                    Plan::Refuse(if data == Data::Absent && !create {
                        Why::NoData
                    } else {
                        Why::KeyStoreInUse
                    })
                );
            }
        }
    }
}
