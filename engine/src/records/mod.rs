//! Records: every write to customer data, implemented once and shared by
//! every caller (the public API, plugin commands, imports, retention
//! sweeps and subject requests): sealing, indexing, putting, updating and
//! removing customers, logging interactions, follow-ups, consents and the
//! outbox.
//!
//! `records` works inside a transaction it is handed ([`Txn`]); it never
//! decides who may do something (that is `op`'s job, with `policy`) and
//! never writes an audit entry. It owns the keys a write needs: the
//! per-customer data keys (cached unwrapped), the two-store key protocol
//! ([`KeyClaim`]), the AAD slot of every sealed value ([`Slot`]), the ids
//! and the clock records are stamped with.
//!
//! Invariants:
//! - No plaintext personal value is handed to `store`: fields, summaries,
//!   bodies and notes are sealed here, under the customer's data key, with
//!   their slot bound in.
//! - Every field stored has a basis (`privacy`): the checks run here, on
//!   every write path.
//! - Record time comes from the engine's [`Clock`]; audit entries keep the
//!   wall-clock time.

mod activity;
mod consent;
mod customers;
mod keys;
mod masks;
mod outbox;
mod removal;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

pub(crate) use activity::{
    FollowUpWrite, InteractionWrite, MAX_BODY, MAX_NOTE, MAX_SUMMARY, check_items, check_len,
};
pub(crate) use consent::granted_keys;
pub(crate) use customers::{FieldChange, IndexKey, owner_rule};
pub(crate) use keys::KeyClaim;
pub(crate) use masks::MASKS_SEALED;
pub(crate) use outbox::{MessageWrite, address_field, message_purpose};
pub(crate) use removal::{Removal, RemovalCause};

use crate::Result;
use crate::crypto::{CryptoError, DataKey, Keyring, MaskKey};
use crate::model::{Clock, CustomerId, Schema};
use crate::store::{KeyStore, StoreError};
use keys::{KeyCache, Pending};

/// Where a sealed value belongs. Its name is bound into the value's AAD
/// (with the customer id and key version), so a ciphertext moved to
/// another slot, record or customer does not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot<'a> {
    /// A customer field, by name.
    Field(&'a str),
    /// An interaction's summary.
    Summary(u64),
    /// An interaction's body.
    Body(u64),
    /// A follow-up's note.
    Note(u64),
    /// The template parameters of a message queued for the customer (the
    /// message record's own tag binds them to it).
    MessageParams,
    /// A plugin's state about the customer, by the name it is filed under.
    PluginState {
        /// The plugin.
        plugin: &'a str,
        /// The keyed name of the plugin's key.
        name: &'a str,
    },
}

impl<'a> Slot<'a> {
    /// The AAD name: the field's name, or `interaction/{id}/summary`,
    /// `interaction/{id}/body`, `followup/{id}/note`,
    /// `plugin/{plugin}/state/{name}`.
    pub(crate) fn name(self) -> std::borrow::Cow<'a, str> {
        match self {
            Slot::Field(name) => std::borrow::Cow::Borrowed(name),
            Slot::Summary(id) => format!("interaction/{id}/summary").into(),
            Slot::Body(id) => format!("interaction/{id}/body").into(),
            Slot::Note(id) => format!("followup/{id}/note").into(),
            Slot::MessageParams => std::borrow::Cow::Borrowed("message/params"),
            Slot::PluginState { plugin, name } => format!("plugin/{plugin}/state/{name}").into(),
        }
    }
}

/// What every write of customer data needs besides the transaction.
pub(crate) struct Records {
    pub(crate) schema: Schema,
    pub(crate) ring: Keyring,
    pub(crate) clock: Clock,
    keys: KeyStore,
    cache: KeyCache,
    /// Unwrapped mask keys, apart: a masked read holds no data key.
    mask_cache: KeyCache<MaskKey>,
    pending: Pending,
    /// The smallest id not reserved yet.
    next_id: AtomicU64,
    /// Purposes the company no longer pursues: they give no basis.
    retired: RwLock<Arc<BTreeSet<String>>>,
}

impl Records {
    pub(crate) fn new(
        schema: Schema,
        ring: Keyring,
        clock: Clock,
        keys: KeyStore,
        next_id: u64,
    ) -> Self {
        Self {
            schema,
            ring,
            clock,
            keys,
            cache: KeyCache::new(keys::KEY_CACHE_CAPACITY),
            mask_cache: KeyCache::new(keys::KEY_CACHE_CAPACITY),
            pending: Pending::default(),
            next_id: AtomicU64::new(next_id),
            retired: RwLock::new(Arc::default()),
        }
    }

    /// The engine clock in µs: every record timestamp comes from it.
    pub(crate) fn now(&self) -> i64 {
        self.clock.now().timestamp_micros()
    }

    /// Reserves `n` consecutive ids and returns the first. INVARIANT: ids
    /// are reserved in memory, which needs a single writing process (redb
    /// locks its file); every transaction that uses an id records it
    /// ([`Txn::record_id`]), so a reopened engine starts above them.
    pub(crate) fn reserve_ids(&self, n: u64) -> u64 {
        self.next_id.fetch_add(n, Ordering::Relaxed)
    }

    /// Whether customer `id` still has its keys. A record without them
    /// was erased (a data file older than its key store shows one): it is
    /// treated as absent, so no lookup confirms it.
    pub(crate) fn has_key(&self, id: CustomerId) -> Result<bool> {
        let cached = self.cache.get(id).is_some() || self.mask_cache.get(id).is_some();
        Ok(cached || self.keys.get(id)?.is_some())
    }

    /// The unwrapped mask key of a customer, from the cache or the key
    /// store: it opens masked renderings only.
    pub(crate) fn mask_key(&self, id: CustomerId) -> Result<Arc<MaskKey>> {
        if let Some(key) = self.mask_cache.get(id) {
            return Ok(key);
        }
        let generation = self.mask_cache.generation();
        let stored = self.keys.get(id)?.ok_or_else(|| CryptoError::Unseal {
            what: format!("customer {id}: its keys were destroyed"),
        })?;
        let key = (self.ring.open_mask_key(id, &stored)?).ok_or_else(|| CryptoError::Unseal {
            what: format!("customer {id}: no mask key"),
        })?;
        let key = Arc::new(key);
        self.mask_cache.insert(id, Arc::clone(&key), generation);
        Ok(key)
    }

    /// The unwrapped data key of a customer, from the cache or the key store.
    pub(crate) fn data_key(&self, id: CustomerId) -> Result<Arc<DataKey>> {
        if let Some(key) = self.cache.get(id) {
            return Ok(key);
        }
        let generation = self.cache.generation();
        let wrapped = self
            .keys
            .get(id)?
            .ok_or_else(|| crate::crypto::CryptoError::Unseal {
                what: format!("customer {id}: its data key was destroyed"),
            })?;
        let key = Arc::new(self.ring.open_data_key(id, &wrapped)?);
        self.cache.insert(id, Arc::clone(&key), generation);
        Ok(key)
    }

    /// Opens a sealed value of customer `id`.
    pub(crate) fn open(
        &self,
        id: CustomerId,
        slot: Slot<'_>,
        sealed: &crate::crypto::Sealed,
    ) -> Result<String> {
        Ok(self.data_key(id)?.open(&slot.name(), sealed)?)
    }

    /// Seals bytes of customer `id` (a plugin's state about it).
    pub(crate) fn seal_bytes(
        &self,
        id: CustomerId,
        slot: Slot<'_>,
        plain: &[u8],
    ) -> Result<crate::crypto::Sealed> {
        Ok(self.data_key(id)?.seal_bytes(&slot.name(), plain)?)
    }

    /// Opens what [`Records::seal_bytes`] sealed.
    pub(crate) fn open_bytes(
        &self,
        id: CustomerId,
        slot: Slot<'_>,
        sealed: &crate::crypto::Sealed,
    ) -> Result<Vec<u8>> {
        Ok(self.data_key(id)?.open_bytes(&slot.name(), sealed)?)
    }

    /// The purposes no longer pursued.
    pub(crate) fn retired(&self) -> Arc<BTreeSet<String>> {
        Arc::clone(&self.retired.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the retired purposes with what `read` returns, read under
    /// the lock: of two concurrent changes, the one that sets memory last
    /// has read a list that holds both.
    pub(crate) fn reload_retired(
        &self,
        read: impl FnOnce() -> Result<Vec<String>, StoreError>,
    ) -> Result<()> {
        let mut memory = self.retired.write().unwrap_or_else(PoisonError::into_inner);
        *memory = Arc::new(read()?.into_iter().collect());
        Ok(())
    }

    /// Settles the key store after a crash: keys marked pending whose
    /// customer `exists` denies are destroyed, the others kept.
    pub(crate) fn settle_pending(&self, exists: impl Fn(u64) -> Result<bool>) -> Result<()> {
        let pending = self.keys.pending()?;
        if pending.is_empty() {
            return Ok(());
        }
        let mut orphans = Vec::new();
        for id in &pending {
            if !exists(*id)? {
                orphans.push(*id);
            }
        }
        self.keys.remove(&orphans)?;
        self.keys.settle(&pending)?;
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn key_store(&self) -> &KeyStore {
        &self.keys
    }

    #[cfg(test)]
    pub(crate) fn cached_key(&self, id: CustomerId) -> Option<Arc<DataKey>> {
        self.cache.get(id)
    }

    #[cfg(test)]
    pub(crate) fn cached_mask_key(&self, id: CustomerId) -> Option<Arc<MaskKey>> {
        self.mask_cache.get(id)
    }
}
