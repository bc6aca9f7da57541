//! The cache of unwrapped data keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::crypto::DataKey;

/// Unwrapped data keys kept for reuse. Unwrapping costs a key-store read and
/// a decryption on every access otherwise. Evicted keys zeroize on drop;
/// deleting a customer forgets its key at once.
pub(crate) const KEY_CACHE_CAPACITY: usize = 4096;

pub(crate) struct KeyCache {
    cached: Mutex<Cached>,
    capacity: usize,
}

struct Cached {
    keys: HashMap<u64, Arc<DataKey>>,
    /// Bumped by every `forget`: a key read from the key store before a
    /// delete is not cached after it.
    generation: u64,
}

impl KeyCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            cached: Mutex::new(Cached {
                keys: HashMap::with_capacity(capacity),
                generation: 0,
            }),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.cached.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, id: u64) -> Option<Arc<DataKey>> {
        self.lock().keys.get(&id).cloned()
    }

    /// The generation to pass to [`KeyCache::insert`] for a key about to be
    /// read from the key store.
    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Caches `key` unless a key was forgotten since `generation`.
    pub(crate) fn insert(&self, id: u64, key: Arc<DataKey>, generation: u64) {
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
