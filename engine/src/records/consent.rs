//! Consents: the minimum-necessary checks every write passes, the ledger
//! of what each customer agreed to, and the erasure of what a withdrawal
//! leaves without a basis.

use std::collections::{BTreeMap, BTreeSet};

use super::{Records, Slot};
use crate::Result;
use crate::model::{ConsentChange, CustomerId};
use crate::privacy::{self, PrivacyError, consent_key};
use crate::store::{Snapshot, StoredConsent, StoredConsentEntry, StoredCustomer, Txn};

impl Records {
    /// Refuses a grant to a purpose in `retired`, and a malformed consent.
    pub(crate) fn check_consent(
        &self,
        change: &ConsentChange,
        retired: &BTreeSet<String>,
    ) -> Result<()> {
        privacy::check_consent(change, &self.schema)?;
        if change.granted && retired.contains(&change.purpose) {
            return Err(PrivacyError::Consent(format!(
                "purpose `{}` is retired: the company no longer collects data for it",
                change.purpose
            ))
            .into());
        }
        Ok(())
    }

    /// Checks the consents a new customer comes with, and that they give
    /// every field (field → normalized value) a basis; purposes in
    /// `retired` give none.
    pub(crate) fn check_new_basis(
        &self,
        fields: &BTreeMap<String, String>,
        consents: &[ConsentChange],
        retired: &BTreeSet<String>,
    ) -> Result<()> {
        let mut granted = BTreeSet::new();
        for consent in consents {
            if !consent.granted {
                return Err(PrivacyError::Consent(format!(
                    "a new customer cannot withdraw consent to `{}`: it has given none",
                    consent.purpose
                ))
                .into());
            }
            self.check_consent(consent, retired)?;
            granted.insert(consent.purpose.clone());
            for field in &consent.fields {
                granted.insert(consent_key(&consent.purpose, Some(field)));
            }
        }
        self.check_basis(fields, &granted, retired)
    }

    /// Checks that a stored customer's consents give the fields being set
    /// (field → normalized value) a basis; purposes in `retired` give none.
    pub(crate) fn check_stored_basis(
        &self,
        snapshot: &dyn Snapshot,
        customer: CustomerId,
        set: &BTreeMap<String, String>,
        retired: &BTreeSet<String>,
    ) -> Result<()> {
        if !self.schema.enforces_purposes() || set.is_empty() {
            return Ok(());
        }
        let granted = granted_keys(snapshot.consents(customer)?);
        self.check_basis(set, &granted, retired)
    }

    fn check_basis(
        &self,
        fields: &BTreeMap<String, String>,
        granted: &BTreeSet<String>,
        retired: &BTreeSet<String>,
    ) -> Result<()> {
        let granted = |key: &str| granted.contains(key);
        privacy::check_basis(
            &self.schema,
            retired,
            fields.keys().map(String::as_str),
            &granted,
        )?;
        privacy::check_minor(
            &self.schema,
            fields.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &granted,
            self.clock.now().date_naive(),
        )?;
        Ok(())
    }

    /// Records one consent change by principal `by`: the ledger entries and
    /// the state. A
    /// withdrawal of a purpose withdraws the separate consents under it.
    pub(crate) fn record_consent(
        &self,
        txn: &mut dyn Txn,
        customer: CustomerId,
        change: &ConsentChange,
        by: &str,
    ) -> Result<()> {
        let at = self.now();
        let mut keys: Vec<Option<String>> = Vec::new();
        if change.granted || change.fields.is_empty() {
            keys.push(None);
        }
        keys.extend(change.fields.iter().cloned().map(Some));
        if !change.granted && change.fields.is_empty() {
            // Withdrawing a purpose ends every separate consent under it.
            let prefix = format!("{}:", change.purpose);
            for (key, state) in txn.consents(customer)? {
                if state.granted
                    && let Some(field) = key.strip_prefix(&prefix)
                {
                    keys.push(Some(field.to_string()));
                }
            }
        }
        for field in keys {
            txn.append_consent(
                customer,
                &StoredConsentEntry {
                    purpose: change.purpose.clone(),
                    field: field.clone(),
                    granted: change.granted,
                    at,
                    channel: change.channel.clone(),
                    notice_version: change.notice_version.clone(),
                    by: by.to_string(),
                },
            )?;
            txn.put_consent(
                customer,
                &consent_key(&change.purpose, field.as_deref()),
                &StoredConsent {
                    granted: change.granted,
                    at,
                    by: by.to_string(),
                },
            )?;
        }
        Ok(())
    }

    /// Erases the fields of `record` left with no basis; returns their names.
    pub(crate) fn erase_unfounded(
        &self,
        txn: &mut dyn Txn,
        record: &mut StoredCustomer,
    ) -> Result<Vec<String>> {
        if !self.schema.enforces_purposes() {
            return Ok(Vec::new());
        }
        let granted = granted_keys(txn.consents(record.id)?);
        let retired: BTreeSet<String> = txn.retired_purposes()?.into_iter().collect();
        let granted = |k: &str| granted.contains(k);
        // A child without a guardian's consent keeps only what the record
        // cannot exist without.
        let birth_dates = self.open_birth_dates(record);
        let child = privacy::check_minor(
            &self.schema,
            (record.public.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .chain(birth_dates.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            &granted,
            self.clock.now().date_naive(),
        )
        .is_err();
        let unfounded: Vec<String> = (record.public.keys())
            .chain(record.sealed.keys())
            .filter(|f| {
                let required = self.schema.field(f).is_some_and(|d| d.required);
                (child && !required)
                    || privacy::missing_basis(&self.schema, &retired, f, &granted).is_some()
            })
            .cloned()
            .collect();
        if !unfounded.is_empty() {
            self.erase_fields(txn, record, &unfounded)?;
        }
        Ok(unfounded)
    }

    /// The customer's sealed birth-date fields, opened (for the age check).
    fn open_birth_dates(&self, record: &StoredCustomer) -> Vec<(String, String)> {
        (record.sealed.iter())
            .filter(|(name, _)| self.schema.field(name).is_some_and(|d| d.birth_date))
            .filter_map(|(name, f)| {
                let value = self.open(record.id, Slot::Field(name), &f.sealed).ok()?;
                Some((name.clone(), value))
            })
            .collect()
    }
}

impl Records {
    /// Checks new customers again inside the write that stores them, with
    /// the purposes retired as the transaction holds them (a purpose may
    /// have been retired since their rows were checked): their consents
    /// and the basis of every field they hold.
    pub(crate) fn recheck_new(
        &self,
        txn: &dyn Snapshot,
        new: &[(&StoredCustomer, &[ConsentChange])],
    ) -> Result<()> {
        let retired: BTreeSet<String> = txn.retired_purposes()?.into_iter().collect();
        if retired.is_empty() || !self.schema.enforces_purposes() {
            return Ok(());
        }
        for (record, consents) in new {
            let mut granted = BTreeSet::new();
            for consent in *consents {
                self.check_consent(consent, &retired)?;
                granted.insert(consent.purpose.clone());
                granted.extend(
                    consent
                        .fields
                        .iter()
                        .map(|f| consent_key(&consent.purpose, Some(f))),
                );
            }
            let names = (record.public.keys())
                .chain(record.sealed.keys())
                .map(String::as_str);
            privacy::check_basis(&self.schema, &retired, names, &|k| granted.contains(k))?;
        }
        Ok(())
    }
}

/// The consent keys a customer has granted.
pub(crate) fn granted_keys(state: Vec<(String, StoredConsent)>) -> BTreeSet<String> {
    state
        .into_iter()
        .filter(|(_, c)| c.granted)
        .map(|(k, _)| k)
        .collect()
}
