//! Masked renderings that customer envelope 1 kept in the clear, sealed
//! under per-customer mask keys: once, in batches, when a database is
//! opened. Each batch first adds the mask keys to the key store durably
//! (a customer keeps a mask key it already has, so a batch a crash cut
//! short is done again with the same keys), then rewrites its records.

use std::sync::Arc;

use super::Records;
use crate::Result;
use crate::crypto::MaskKey;
use crate::model::CustomerId;
use crate::store::{MaskRef, Snapshot, StoredMask, Txn};

/// The setting that says every masked rendering is sealed.
pub(crate) const MASKS_SEALED: &str = "masks_sealed";

impl Records {
    /// Customers after `after` that keep a masked rendering in the clear,
    /// among the next `limit`; and the last id scanned (`None`: the end).
    pub(crate) fn clear_masks(
        &self,
        r: &dyn Snapshot,
        after: CustomerId,
        limit: usize,
    ) -> Result<(Vec<CustomerId>, Option<CustomerId>)> {
        let mut found = Vec::new();
        let last = r.scan_customers(after, limit, &mut |c| {
            if (c.sealed.iter()).any(|(_, f)| matches!(f.masked, MaskRef::Clear(_))) {
                found.push(c.id);
            }
            Ok(true)
        })?;
        Ok((found, last))
    }

    /// Gives each of `ids` a mask key, durably, in the key store and its
    /// mirrors. A customer without keys (erased, in a data file older
    /// than its key store) gets none and is left out.
    pub(crate) fn add_mask_keys(
        &self,
        ids: &[CustomerId],
    ) -> Result<Vec<(CustomerId, Arc<MaskKey>)>> {
        let mut keys = Vec::with_capacity(ids.len());
        let mut changed = Vec::new();
        for &id in ids {
            let Some(stored) = self.keys.get(id)? else {
                continue;
            };
            let (mask, updated) = self.ring.add_mask_key(id, &stored)?;
            if updated != stored {
                changed.push((id, updated));
            }
            keys.push((id, Arc::new(mask)));
        }
        self.keys.replace(&changed)?;
        Ok(keys)
    }

    /// Seals the masked renderings customer `id` keeps in the clear.
    pub(crate) fn seal_clear_masks(
        &self,
        txn: &mut dyn Txn,
        id: CustomerId,
        mask: &MaskKey,
    ) -> Result<()> {
        let Some(mut record) = txn.customer(id)? else {
            return Ok(());
        };
        for (name, field) in &mut record.sealed {
            if let StoredMask::Clear(clear) = &field.masked {
                field.masked = StoredMask::Sealed(mask.seal(name, clear)?);
            }
        }
        txn.put_customer(&record)?;
        Ok(())
    }
}
