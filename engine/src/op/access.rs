//! The policy step: asking the policy in force about the actor and one
//! customer, and building the view its answer allows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::guard::Limits;
use crate::identity::Actor;
use crate::model::{
    Customer, CustomerId, FieldType, Schema, Sensitivity, Status, from_micros, mask_value,
};
use crate::policy::{Action, CustomerFacts, Decision, Policy, Subject, Treatment};
use crate::records::{Records, Slot};
use crate::store::{CustomerRef, MaskRef, Snapshot, StoredCustomer};
use crate::{Denied, Result};

/// What the policy decides on about a stored customer: nothing personal.
pub(crate) trait Filed {
    fn id(&self) -> CustomerId;
    fn owner(&self) -> &str;
    fn status(&self) -> &str;
    /// The `tags` field, comma-separated.
    fn tags(&self) -> Option<&str>;
}

impl Filed for CustomerRef<'_> {
    fn id(&self) -> CustomerId {
        self.id
    }
    fn owner(&self) -> &str {
        self.owner
    }
    fn status(&self) -> &str {
        self.status
    }
    fn tags(&self) -> Option<&str> {
        (self.public.iter().find(|(name, _)| *name == "tags")).map(|(_, v)| *v)
    }
}

impl Filed for StoredCustomer {
    fn id(&self) -> CustomerId {
        self.id
    }
    fn owner(&self) -> &str {
        &self.owner
    }
    fn status(&self) -> &str {
        &self.status
    }
    fn tags(&self) -> Option<&str> {
        self.public.get("tags").map(String::as_str)
    }
}

/// The decisions of one operation: the actor, its purpose, the policy in
/// force, and the owners' teams looked up so far (a search over one
/// owner's customers reads the owner once).
pub(crate) struct Decider<'a> {
    policy: &'a Policy,
    actor: Actor,
    subject: Subject,
    purpose: &'a str,
    teams: HashMap<String, Option<String>>,
}

impl<'a> Decider<'a> {
    pub(super) fn new(policy: &'a Arc<Policy>, actor: Actor, purpose: &'a str) -> Self {
        let subject = subject(&actor);
        Self {
            policy,
            actor,
            subject,
            purpose,
            teams: HashMap::new(),
        }
    }

    pub(crate) fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The policy's decision on the actor doing `action` to `record`.
    pub(crate) fn decide(
        &mut self,
        snapshot: &dyn Snapshot,
        action: Action,
        record: &dyn Filed,
    ) -> Result<Decision> {
        let facts = self.facts(snapshot, record)?;
        Ok(self
            .policy
            .authorize(&self.subject, action, self.purpose, Some(&facts)))
    }

    /// The policy's decision on an action about no customer in particular.
    pub(crate) fn decide_general(&self, action: Action) -> Decision {
        self.policy
            .authorize(&self.subject, action, self.purpose, None)
    }

    /// The actor's budgets, as the policy's `limits` gives them at `now`
    /// (Unix seconds), or why that failed.
    pub(crate) fn limits(&self, now: i64) -> Result<Option<Limits>, String> {
        self.policy.limits(&self.subject, now)
    }

    /// The budgets the policy gives another principal at `now`.
    pub(crate) fn limits_of(&self, actor: &Actor, now: i64) -> Result<Option<Limits>, String> {
        self.policy.limits(&subject(actor), now)
    }

    /// The decision, or the policy's refusal.
    pub(crate) fn require(
        &mut self,
        snapshot: &dyn Snapshot,
        action: Action,
        record: &dyn Filed,
    ) -> Result<Decision> {
        let decision = self.decide(snapshot, action, record)?;
        allowed(decision)
    }

    fn facts(&mut self, snapshot: &dyn Snapshot, record: &dyn Filed) -> Result<CustomerFacts> {
        let owner = record.owner();
        let team = match self.teams.get(owner) {
            Some(team) => team.clone(),
            None => {
                let team =
                    (snapshot.principal(owner)?).and_then(|p| p.attributes.get("team").cloned());
                self.teams.insert(owner.to_string(), team.clone());
                team
            }
        };
        Ok(CustomerFacts {
            id: record.id(),
            owner: owner.to_string(),
            team,
            status: record.status().to_string(),
            tags: split_tags(record.tags()),
        })
    }
}

/// A caller admitted ahead of a costly preparation ([`super::Core::admit_early`]):
/// it can ask the policy about customers not created yet.
pub(crate) struct Admitted {
    caller: super::Caller,
    actor: Actor,
    subject: Subject,
    policy: Arc<Policy>,
}

impl Admitted {
    pub(super) fn new(caller: super::Caller, actor: Actor, policy: Arc<Policy>) -> Self {
        let subject = subject(&actor);
        Self {
            caller,
            actor,
            subject,
            policy,
        }
    }

    pub(crate) fn caller(&self) -> &super::Caller {
        &self.caller
    }

    pub(crate) fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The decision on a customer about to be created with `facts`.
    pub(crate) fn decide_new(&self, action: Action, facts: &CustomerFacts) -> Decision {
        let purpose = self.caller.purpose();
        self.policy
            .authorize(&self.subject, action, purpose, Some(facts))
    }
}

/// The policy's view of an actor.
fn subject(actor: &Actor) -> Subject {
    Subject::new(
        &actor.name,
        actor.kind.as_str(),
        &actor.roles,
        &actor.attributes,
    )
}

/// `decision` if it allows, else the policy's refusal (for a failed
/// script, with what failed).
pub(crate) fn allowed(decision: Decision) -> Result<Decision> {
    if decision.allowed() {
        return Ok(decision);
    }
    let reason = match decision.fault() {
        Some(fault) => format!("{} ({fault})", decision.reason()),
        None => decision.reason().to_string(),
    };
    Err(Denied::Policy { reason }.into())
}

/// The tags of a comma-separated list.
pub(crate) fn split_tags(list: Option<&str>) -> Vec<String> {
    list.map(|l| {
        l.split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

/// How a free-text part of an interaction or follow-up (`summary`, `body`,
/// `note`) is shown: in full or not at all (free text has no mask).
pub(crate) fn shows_text(decision: &Decision, part: &str) -> bool {
    decision.treatment(part, Sensitivity::Personal) == Treatment::Full
}

/// A customer as a decision shows it, before anything is decrypted: the
/// fields shown in the clear or from their stored masked renderings, and
/// the sealed values still to open. Opening comes after the guard has
/// seen what the read reveals.
pub(crate) struct Prepared {
    customer: Customer,
    sealed: Vec<ToOpen>,
}

/// A sealed value a view shows.
struct ToOpen {
    field: String,
    nonce: [u8; 24],
    ciphertext: Vec<u8>,
    how: Opening,
}

/// How a sealed value is shown.
enum Opening {
    /// The value, in full, under the data key.
    Full,
    /// The value, under the data key, then masked (a field that keeps no
    /// masked rendering).
    MaskValue(FieldType),
    /// The stored masked rendering, under the mask key: the value is
    /// never opened.
    Rendering,
}

impl Prepared {
    /// The customer's id.
    pub(crate) fn id(&self) -> CustomerId {
        self.customer.id
    }

    /// The customer, with every value it shows opened (and masked where
    /// the decision masks a field without a stored rendering).
    pub(crate) fn open(self, records: &Records) -> Result<Customer> {
        let Prepared {
            mut customer,
            sealed,
        } = self;
        // Each key only if needed: a masked view unwraps no data key.
        let mut key = None;
        let mut mask = None;
        for v in sealed {
            let value = match v.how {
                Opening::Rendering => {
                    let mask = match &mask {
                        Some(mask) => mask,
                        None => mask.insert(records.mask_key(customer.id)?),
                    };
                    mask.open_parts(&v.field, &v.nonce, &v.ciphertext)?
                }
                Opening::Full | Opening::MaskValue(_) => {
                    let key = match &key {
                        Some(key) => key,
                        None => key.insert(records.data_key(customer.id)?),
                    };
                    let slot = Slot::Field(&v.field).name();
                    let value = key.open_parts(&slot, &v.nonce, &v.ciphertext)?;
                    match v.how {
                        Opening::MaskValue(kind) => mask_value(kind, &value),
                        _ => value,
                    }
                }
            };
            customer.fields.insert(v.field, value);
        }
        Ok(customer)
    }
}

/// The customer as `decision` allows: hidden fields absent, masked ones
/// masked. Only values shown in full, or masked without a stored masked
/// rendering (sensitive fields keep none), are left to open.
pub(crate) fn prepare(
    schema: &Schema,
    record: &CustomerRef<'_>,
    decision: &Decision,
) -> Result<Prepared> {
    let mut fields = BTreeMap::new();
    let mut masked = BTreeSet::new();
    for (name, value) in &record.public {
        let def = schema.field(name);
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
    let mut sealed = Vec::new();
    for (name, value) in &record.sealed {
        let def = schema.field(name);
        // A field no longer in the schema is treated as sensitive.
        let sensitivity = def.map_or(Sensitivity::Sensitive, |d| d.sensitivity);
        let (how, nonce, ciphertext) = match (decision.treatment(name, sensitivity), &value.masked)
        {
            (Treatment::Hidden, _) => continue,
            (Treatment::Masked, MaskRef::Sealed(m)) => {
                masked.insert(name.to_string());
                (Opening::Rendering, m.nonce, m.ciphertext)
            }
            (Treatment::Masked, MaskRef::Clear(m)) => {
                fields.insert(name.to_string(), m.to_string());
                masked.insert(name.to_string());
                continue;
            }
            (Treatment::Masked, MaskRef::None) => {
                masked.insert(name.to_string());
                let kind = def.map_or(FieldType::Text, |d| d.kind);
                (Opening::MaskValue(kind), value.nonce, value.ciphertext)
            }
            (Treatment::Full, _) => (Opening::Full, value.nonce, value.ciphertext),
        };
        sealed.push(ToOpen {
            field: name.to_string(),
            nonce,
            ciphertext: ciphertext.to_vec(),
            how,
        });
    }
    let customer = Customer {
        id: record.id,
        owner: record.owner.to_string(),
        status: Status::parse(record.status)?,
        created_at: from_micros(record.created_at),
        updated_at: from_micros(record.updated_at),
        last_interaction_at: record.last_interaction_at.map(from_micros),
        fields,
        masked,
    };
    Ok(Prepared { customer, sealed })
}
