//! Data keys: the cache of unwrapped keys, and the two-store key protocol
//! ([`KeyClaim`]) that keeps the key store and the data file in step.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::Records;
use crate::Result;
use crate::crypto::DataKey;

/// Unwrapped data keys kept for reuse. Unwrapping costs a key-store read and
/// a decryption on every access otherwise. Evicted keys zeroize on drop;
/// deleting a customer forgets its key at once.
pub(crate) const KEY_CACHE_CAPACITY: usize = 4096;

pub(crate) struct KeyCache<K = DataKey> {
    cached: Mutex<Cached<K>>,
    capacity: usize,
}

struct Cached<K> {
    keys: HashMap<u64, Arc<K>>,
    /// Bumped by every `forget`: a key read from the key store before a
    /// delete is not cached after it.
    generation: u64,
}

impl<K> KeyCache<K> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            cached: Mutex::new(Cached {
                keys: HashMap::with_capacity(capacity),
                generation: 0,
            }),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cached<K>> {
        self.cached.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, id: u64) -> Option<Arc<K>> {
        self.lock().keys.get(&id).cloned()
    }

    /// The generation to pass to [`KeyCache::insert`] for a key about to be
    /// read from the key store.
    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Caches `key` unless a key was forgotten since `generation`.
    pub(crate) fn insert(&self, id: u64, key: Arc<K>, generation: u64) {
        let mut cached = self.lock();
        if cached.generation != generation {
            return;
        }
        if cached.keys.len() >= self.capacity
            && let Some(victim) = cached.keys.keys().next().copied()
        {
            cached.keys.remove(&victim);
        }
        cached.keys.insert(id, key);
    }

    pub(crate) fn forget(&self, id: u64) {
        let mut cached = self.lock();
        cached.keys.remove(&id);
        cached.generation += 1;
    }
}

/// Operations in flight holding a key-store pending mark, per id: a mark
/// is cleared only when the last of them is done with it (an import
/// committing an id and a delete of it may overlap).
#[derive(Default)]
pub(super) struct Pending(Mutex<HashMap<u64, u32>>);

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u32>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn hold(&self, ids: &[u64]) {
        let mut held = self.lock();
        for id in ids {
            *held.entry(*id).or_insert(0) += 1;
        }
    }
}

/// Releases what [`Pending::hold`] held; returns the ids no operation holds
/// any more, whose mark may be cleared.
fn release(held: &mut HashMap<u64, u32>, ids: &[u64]) -> Vec<u64> {
    let mut free = Vec::new();
    for id in ids {
        if let Some(count) = held.get_mut(id) {
            *count -= 1;
            if *count == 0 {
                held.remove(id);
                free.push(*id);
            }
        }
    }
    free
}

/// The key-store side of one data write: the one owner of the two-store
/// protocol.
///
/// INVARIANT: a key is durable in the key store (and every mirror) before
/// the data write that needs it, and destroyed only after the data write
/// that removed its customer; both times its id is marked *pending* first.
/// After the write, [`KeyClaim::settle`] destroys the keys whose customer
/// is not in the data file (a refused creation, a committed removal) and
/// clears the marks of the others; an id two operations claim at once is
/// settled by the last of them. If the write's outcome is unknown (a
/// failed commit), the claim is dropped unsettled: the marks stay, and the
/// next open settles them by the same rule.
#[must_use = "a claim is settled after its data write"]
pub(crate) struct KeyClaim<'r> {
    records: &'r Records,
    ids: Vec<u64>,
    released: bool,
}

impl Records {
    /// Stores the wrapped keys of customers about to be created, marked
    /// pending, before the data write that creates them.
    pub(crate) fn claim_new(&self, keys: &[(u64, Vec<u8>)]) -> Result<KeyClaim<'_>> {
        let ids: Vec<u64> = keys.iter().map(|(id, _)| *id).collect();
        self.pending.hold(&ids);
        let claim = KeyClaim {
            records: self,
            ids,
            released: false,
        };
        // On failure the claim is dropped: marks written stay pending.
        self.keys.put(keys)?;
        Ok(claim)
    }

    /// Marks the keys of customers a data write may remove, before it.
    pub(crate) fn claim_doomed(&self, ids: &[u64]) -> Result<KeyClaim<'_>> {
        self.pending.hold(ids);
        let claim = KeyClaim {
            records: self,
            ids: ids.to_vec(),
            released: false,
        };
        self.keys.mark_pending(ids)?;
        Ok(claim)
    }
}

impl KeyClaim<'_> {
    /// After a data write whose outcome is known (committed, or rolled
    /// back). The last operation holding an id decides for it, by what the
    /// data file holds now (`exists` reads it): the key of a customer not
    /// there is destroyed, in the key store and every mirror; the mark of
    /// one that is there is cleared. An id another operation still holds is
    /// left to it (a delete refused while the id's creation is in flight
    /// must not destroy the new key).
    ///
    /// The whole decision runs under the lock of the holders' counts: the
    /// data file is read after this claim let go, so the commit of a holder
    /// that let go before it is seen; and no new claim of a freed id (a
    /// creation storing its key) starts before the decision is written.
    pub(crate) fn settle(mut self, exists: impl FnOnce(&[u64]) -> Result<Vec<bool>>) -> Result<()> {
        self.released = true;
        let mut held = self.records.pending.lock();
        let last = release(&mut held, &self.ids);
        if last.is_empty() {
            return Ok(());
        }
        let exists = exists(&last)?;
        let mut gone = Vec::new();
        let mut kept = Vec::new();
        for (id, exists) in last.into_iter().zip(exists) {
            match exists {
                true => kept.push(id),
                false => gone.push(id),
            }
        }
        for id in &gone {
            self.records.cache.forget(*id);
            self.records.mask_cache.forget(*id);
        }
        self.records.keys.remove(&gone)?;
        self.records.keys.settle(&kept)?;
        drop(held);
        Ok(())
    }
}

impl Drop for KeyClaim<'_> {
    fn drop(&mut self) {
        // Unsettled: the outcome of the write is unknown, so the marks stay
        // in the key store for the next open; only the count is released.
        if !self.released {
            release(&mut self.records.pending.lock(), &self.ids);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::crypto::{Keyring, MasterKey};

    #[test]
    fn a_key_read_before_a_delete_is_not_cached_after_it() {
        let ring = Keyring::new(&MasterKey::generate());
        let (key, _, _) = ring.new_data_key(7).unwrap();
        let cache = KeyCache::<DataKey>::new(4);
        let generation = cache.generation();
        cache.forget(7); // the delete lands in between
        cache.insert(7, Arc::new(key), generation);
        assert!(cache.get(7).is_none());
    }

    #[test]
    fn a_pending_mark_is_released_by_its_last_holder_only() {
        let pending = Pending::default();
        pending.hold(&[7, 8]);
        pending.hold(&[7]);
        assert_eq!(release(&mut pending.lock(), &[7, 8]), vec![8]);
        assert_eq!(release(&mut pending.lock(), &[7]), vec![7]);
        assert!(release(&mut pending.lock(), &[7]).is_empty());
    }
}
