//! Customers: normalizing and sealing fields, the index entries a record
//! is filed under, and creating, changing and re-filing records.

use std::collections::BTreeMap;

use super::{Records, Slot};
use crate::crypto::{DataKey, MaskKey};
use crate::model::{CustomerId, FieldType, ModelError, Sensitivity, Status, mask_value};
use crate::store::{Index, SealedField, StoredCustomer, StoredMask, StoredPrincipal, Txn};
use crate::{Denied, Error, Result};

/// An index entry in owned form.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum IndexKey {
    Blind([u8; 16]),
    Owner(String),
    Tag(String),
    Status(String),
}

impl IndexKey {
    pub(crate) fn as_index(&self) -> Index<'_> {
        match self {
            IndexKey::Blind(b) => Index::Blind(b),
            IndexKey::Owner(o) => Index::Owner(o),
            IndexKey::Tag(t) => Index::Tag(t),
            IndexKey::Status(s) => Index::Status(s),
        }
    }
}

/// Customers belong to active principals only.
pub(crate) fn owner_rule(owner: &str, stored: Option<&StoredPrincipal>) -> Result<(), Denied> {
    match stored {
        Some(p) if p.active => Ok(()),
        Some(_) => Err(Denied::Rule(format!("owner `{owner}` is deactivated"))),
        None => Err(Denied::Rule(format!("owner `{owner}` is not a principal"))),
    }
}

/// A change to a stored customer's fields or owner, its values normalized.
#[derive(Debug, Default)]
pub(crate) struct FieldChange {
    /// Fields to set (normalized values).
    pub(crate) set: BTreeMap<String, String>,
    /// Fields to remove.
    pub(crate) clear: Vec<String>,
    /// A new owner.
    pub(crate) owner: Option<String>,
}

impl Records {
    /// Validates and normalizes every given field, then checks that every
    /// required field is there.
    pub(crate) fn normalize(
        &self,
        fields: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, ModelError> {
        let mut out = BTreeMap::new();
        for (name, raw) in fields {
            let value = self.schema.normalize(name, raw)?;
            if !value.is_empty() {
                out.insert(name.clone(), value);
            }
        }
        for def in self.schema.fields() {
            if def.required && !out.contains_key(&def.name) {
                return Err(ModelError::Required {
                    field: def.name.clone(),
                });
            }
        }
        Ok(out)
    }

    /// Normalizes fields being set on a stored customer; an empty value
    /// leaves an optional field as it is and is refused for a required one.
    pub(crate) fn normalize_change(
        &self,
        set: &BTreeMap<String, String>,
        clear: &std::collections::BTreeSet<String>,
    ) -> Result<FieldChange, ModelError> {
        let mut change = FieldChange::default();
        for (name, raw) in set {
            let value = self.schema.normalize(name, raw)?;
            if value.is_empty() {
                if self.schema.require(name)?.required {
                    return Err(ModelError::Required {
                        field: name.clone(),
                    });
                }
                continue;
            }
            change.set.insert(name.clone(), value);
        }
        for name in clear {
            if self.schema.require(name)?.required {
                return Err(ModelError::Required {
                    field: name.clone(),
                });
            }
            change.clear.push(name.clone());
        }
        Ok(change)
    }

    /// The sealed record of a new customer and its data key, wrapped.
    pub(crate) fn seal_new(
        &self,
        id: CustomerId,
        owner: &str,
        fields: BTreeMap<String, String>,
        now: i64,
    ) -> Result<(StoredCustomer, Vec<u8>)> {
        let (key, mask, wrapped) = self.ring.new_data_key(id)?;
        let mut record = StoredCustomer {
            id,
            owner: owner.to_string(),
            status: Status::Active.as_str().to_string(),
            created_at: now,
            updated_at: now,
            last_interaction_at: None,
            key_version: key.version(),
            public: BTreeMap::new(),
            sealed: BTreeMap::new(),
            blind: BTreeMap::new(),
        };
        for (name, value) in fields {
            self.put_field(&mut record, (&key, &mask), name, value)?;
        }
        Ok((record, wrapped))
    }

    /// Sets one normalized field: blind-indexed if it is looked up by,
    /// sealed (with its masked rendering, under the mask key) if personal,
    /// in the clear if public.
    fn put_field(
        &self,
        record: &mut StoredCustomer,
        (key, mask): (&DataKey, &MaskKey),
        name: String,
        value: String,
    ) -> Result<()> {
        clear_field(record, &name);
        let def = self.schema.require(&name)?;
        if def.is_blind_indexed() {
            record
                .blind
                .insert(name.clone(), self.ring.blind_index(&name, &value));
        }
        if def.is_sealed() {
            // Sensitive fields are never shown masked by stored rendering:
            // keeping one would put part of the value on disk for nothing.
            let masked = match def.sensitivity {
                Sensitivity::Sensitive => StoredMask::None,
                _ => StoredMask::Sealed(mask.seal(&name, &mask_value(def.kind, &value))?),
            };
            let field = SealedField {
                sealed: key.seal(&Slot::Field(&name).name(), &value)?,
                masked,
            };
            record.sealed.insert(name, field);
        } else {
            record.public.insert(name, value);
        }
        Ok(())
    }

    /// The index entries a record is filed under.
    pub(crate) fn index_keys(&self, record: &StoredCustomer) -> Vec<IndexKey> {
        let mut keys = vec![
            IndexKey::Owner(record.owner.clone()),
            IndexKey::Status(record.status.clone()),
        ];
        keys.extend(record.blind.values().map(|b| IndexKey::Blind(*b)));
        for (name, value) in &record.public {
            if self
                .schema
                .field(name)
                .is_some_and(|d| d.kind == FieldType::List)
            {
                keys.extend(
                    value
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(|item| IndexKey::Tag(format!("{name}:{item}"))),
                );
            }
        }
        keys
    }

    /// Files new customers (sealed with [`Records::seal_new`], their keys
    /// claimed): records, index entries in key order (consecutive inserts
    /// land in the same B-tree pages), ids.
    pub(crate) fn insert(&self, txn: &mut dyn Txn, records: &[&StoredCustomer]) -> Result<()> {
        let mut entries: Vec<(IndexKey, u64)> = records
            .iter()
            .flat_map(|r| self.index_keys(r).into_iter().map(move |k| (k, r.id)))
            .collect();
        entries.sort_unstable();
        let entries: Vec<_> = entries.iter().map(|(k, id)| (k.as_index(), *id)).collect();
        txn.index(&entries, true)?;
        txn.put_customers(records)?;
        for record in records {
            txn.record_id(record.id);
        }
        Ok(())
    }

    /// Applies `change` to a stored customer and files it again. The
    /// fields set must have a basis in the customer's consents, with the
    /// purposes `retired` as the transaction holds them (checked here, on
    /// every write path).
    pub(crate) fn update(
        &self,
        txn: &mut dyn Txn,
        record: &mut StoredCustomer,
        change: &FieldChange,
        retired: &std::collections::BTreeSet<String>,
    ) -> Result<()> {
        self.check_stored_basis(&*txn, record.id, &change.set, retired)?;
        let before = self.index_keys(record);
        for name in &change.clear {
            clear_field(record, name);
        }
        if !change.set.is_empty() {
            let key = self.data_key(record.id)?;
            let mask = self.mask_key(record.id)?;
            for (name, value) in &change.set {
                self.put_field(record, (&key, &mask), name.clone(), value.clone())?;
            }
        }
        if let Some(owner) = &change.owner {
            record.owner = owner.clone();
        }
        self.save(txn, record, before)
    }

    /// Removes fields (no basis needed to remove) and files the record again.
    pub(crate) fn erase_fields(
        &self,
        txn: &mut dyn Txn,
        record: &mut StoredCustomer,
        names: &[String],
    ) -> Result<()> {
        let before = self.index_keys(record);
        for name in names {
            clear_field(record, name);
        }
        // Erased, not replaced: the pages the old version frees must not
        // keep the values.
        txn.owe_rewrite();
        self.save(txn, record, before)
    }

    /// Moves a customer to `status`, re-filing only its status entry.
    pub(crate) fn set_status(
        &self,
        txn: &mut dyn Txn,
        record: &mut StoredCustomer,
        status: Status,
    ) -> Result<()> {
        if record.status == status.as_str() {
            return Ok(());
        }
        txn.index(&[(Index::Status(&record.status), record.id)], false)?;
        record.status = status.as_str().to_string();
        txn.index(&[(Index::Status(&record.status), record.id)], true)?;
        txn.put_customer(record)?;
        Ok(())
    }

    /// Stamps and stores a changed record, moving only the index entries
    /// that differ from `before` (an owner's entry can hold a million
    /// customers).
    fn save(
        &self,
        txn: &mut dyn Txn,
        record: &mut StoredCustomer,
        before: Vec<IndexKey>,
    ) -> Result<()> {
        record.updated_at = self.now();
        txn.put_customer(record)?;
        let after = self.index_keys(record);
        let gone: Vec<_> = (before.iter().filter(|k| !after.contains(k)))
            .map(|k| (k.as_index(), record.id))
            .collect();
        let new: Vec<_> = (after.iter().filter(|k| !before.contains(k)))
            .map(|k| (k.as_index(), record.id))
            .collect();
        txn.index(&gone, false)?;
        txn.index(&new, true)?;
        Ok(())
    }

    /// The stored customer `id`, or [`Error::NotFound`].
    pub(crate) fn customer(&self, txn: &dyn Txn, id: CustomerId) -> Result<StoredCustomer> {
        txn.customer(id)?
            .ok_or_else(|| Error::NotFound(format!("customer {id}")))
    }
}

/// Removes a field from a record, wherever it is kept.
fn clear_field(record: &mut StoredCustomer, name: &str) {
    record.public.remove(name);
    record.sealed.remove(name);
    record.blind.remove(name);
}
