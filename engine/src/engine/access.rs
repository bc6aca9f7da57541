//! Access decisions: the policy in force, asked about one actor and one
//! customer, and the view its answer allows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, PoisonError};

use super::{Inner, from_micros};
use crate::Result;
use crate::crypto::DataKey;
use crate::identity::Actor;
use crate::model::{Customer, FieldType, Sensitivity, Status, mask_value};
use crate::policy::{CustomerFacts, Decision, Policy, Subject, Treatment};
use crate::store::{CustomerRef, Reader, StoreError, StoredCustomer, StoredPrincipal, Writer};

/// Where principals are looked up: a read snapshot or a write transaction.
pub(crate) trait Principals {
    fn principal(&self, name: &str) -> Result<Option<StoredPrincipal>, StoreError>;
}

impl Principals for Reader {
    fn principal(&self, name: &str) -> Result<Option<StoredPrincipal>, StoreError> {
        Reader::principal(self, name)
    }
}

impl Principals for Writer<'_> {
    fn principal(&self, name: &str) -> Result<Option<StoredPrincipal>, StoreError> {
        Writer::principal(self, name)
    }
}

/// Owners' teams, looked up once per operation: a search over one
/// owner's customers reads the owner once.
#[derive(Default)]
pub(crate) struct Teams(HashMap<String, Option<String>>);

impl Teams {
    fn team(&mut self, source: &impl Principals, owner: &str) -> Result<Option<String>> {
        if let Some(team) = self.0.get(owner) {
            return Ok(team.clone());
        }
        let team = source
            .principal(owner)?
            .and_then(|p| p.attributes.get("team").cloned());
        self.0.insert(owner.to_string(), team.clone());
        Ok(team)
    }
}

/// The policy's view of an actor.
pub(crate) fn subject(actor: &Actor) -> Subject {
    Subject::new(
        &actor.name,
        actor.kind.as_str(),
        &actor.roles,
        &actor.attributes,
    )
}

fn tags(list: Option<&str>) -> Vec<String> {
    list.map(|l| {
        l.split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

impl Inner {
    /// The policy in force.
    pub(crate) fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.policy.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the policy in force.
    pub(crate) fn set_policy(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(policy);
    }

    /// The non-personal facts of a stored customer a policy decides on.
    pub(crate) fn facts_of_ref(
        &self,
        source: &impl Principals,
        teams: &mut Teams,
        record: &CustomerRef<'_>,
    ) -> Result<CustomerFacts> {
        let list = record
            .public
            .iter()
            .find(|(name, _)| *name == "tags")
            .map(|(_, v)| *v);
        Ok(CustomerFacts {
            id: record.id,
            owner: record.owner.to_string(),
            team: teams.team(source, record.owner)?,
            status: record.status.to_string(),
            tags: tags(list),
        })
    }

    /// [`Inner::facts_of_ref`] for an owned record.
    pub(crate) fn facts_of(
        &self,
        source: &impl Principals,
        teams: &mut Teams,
        record: &StoredCustomer,
    ) -> Result<CustomerFacts> {
        Ok(CustomerFacts {
            id: record.id,
            owner: record.owner.clone(),
            team: teams.team(source, &record.owner)?,
            status: record.status.clone(),
            tags: tags(record.public.get("tags").map(String::as_str)),
        })
    }

    /// The customer as `decision` allows: hidden fields absent, masked ones
    /// masked. Decrypts only what is shown in full, or masked without a
    /// stored masked rendering (sensitive fields keep none).
    pub(crate) fn view(&self, record: &CustomerRef<'_>, decision: &Decision) -> Result<Customer> {
        let mut fields = BTreeMap::new();
        let mut masked = BTreeSet::new();
        for (name, value) in &record.public {
            let def = self.schema.field(name);
            let sensitivity = def.map_or(Sensitivity::Public, |d| d.sensitivity);
            match decision.treatment(name, sensitivity) {
                Treatment::Full => {
                    fields.insert(name.to_string(), value.to_string());
                }
                Treatment::Masked => {
                    let kind = def.map_or(FieldType::Text, |d| d.kind);
                    fields.insert(name.to_string(), mask_value(kind, value));
                    masked.insert(name.to_string());
                }
                Treatment::Hidden => {}
            }
        }
        let mut key: Option<Arc<DataKey>> = None;
        for (name, sealed) in &record.sealed {
            let def = self.schema.field(name);
            // A field no longer in the schema is treated as sensitive.
            let sensitivity = def.map_or(Sensitivity::Sensitive, |d| d.sensitivity);
            let treatment = decision.treatment(name, sensitivity);
            if treatment == Treatment::Hidden {
                continue;
            }
            if treatment == Treatment::Masked && !sealed.masked.is_empty() {
                fields.insert(name.to_string(), sealed.masked.to_string());
                masked.insert(name.to_string());
                continue;
            }
            let key = match &mut key {
                Some(k) => k,
                empty => empty.insert(self.data_key(record.id)?),
            };
            let value = key.open_parts(name, &sealed.nonce, sealed.ciphertext)?;
            if treatment == Treatment::Masked {
                let kind = def.map_or(FieldType::Text, |d| d.kind);
                fields.insert(name.to_string(), mask_value(kind, &value));
                masked.insert(name.to_string());
            } else {
                fields.insert(name.to_string(), value);
            }
        }
        Ok(Customer {
            id: record.id,
            owner: record.owner.to_string(),
            status: Status::parse(record.status)?,
            created_at: from_micros(record.created_at),
            updated_at: from_micros(record.updated_at),
            last_interaction_at: record.last_interaction_at.map(from_micros),
            fields,
            masked,
        })
    }
}

/// How a free-text part of an interaction or follow-up (`summary`, `body`,
/// `note`) is shown: in full or not at all (free text has no mask).
pub(crate) fn shows_text(decision: &Decision, part: &str) -> bool {
    decision.treatment(part, Sensitivity::Personal) == Treatment::Full
}

/// The refusal a caller sees (and the audit chain keeps) for a denying
/// decision: the policy's reason, and for a failed script what failed.
pub(crate) fn refusal(decision: &Decision) -> String {
    match decision.fault() {
        Some(fault) => format!("{} ({fault})", decision.reason()),
        None => decision.reason().to_string(),
    }
}
