//! Customer records: create, read, update, delete, search, count.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::access::{Teams, refusal, subject};
use super::plugins::Emitted;
use super::retention::Removal;
use super::{Context, Engine, Event, Inner};
use crate::audit::{self, Outcome};
use crate::crypto::DataKey;
use crate::identity::Actor;
use crate::model::{
    Customer, CustomerId, CustomerUpdate, FieldType, ModelError, NewCustomer, Sensitivity, Status,
    mask_value,
};
use crate::policy::{Action, Treatment};
use crate::store::{Index, SealedField, StoredCustomer, Writer};
use crate::{Error, Result};

/// What to look customers up by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// Exact value of a blind-indexed field (phone, email, ID number),
    /// through its keyed index: no plaintext is compared or stored.
    Field {
        /// The field, e.g. `phone`.
        field: String,
        /// The value as a person would type it; normalized before lookup.
        value: String,
    },
    /// Customers owned by a principal.
    Owner(String),
    /// Customers carrying a tag (in the `tags` field).
    Tag(String),
    /// Customers in a lifecycle status.
    Status(Status),
}

impl Query {
    /// Shorthand for [`Query::Field`].
    pub fn field(field: impl Into<String>, value: impl Into<String>) -> Self {
        Query::Field {
            field: field.into(),
            value: value.into(),
        }
    }

    /// How the query is named in the audit chain: never the searched value.
    fn audit_target(&self) -> String {
        match self {
            Query::Field { field, .. } => format!("search {field}"),
            Query::Owner(o) => format!("search owner {o}"),
            Query::Tag(t) => format!("search tag {t}"),
            Query::Status(s) => format!("search status {}", s.as_str()),
        }
    }
}

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

/// The audit record of a read that produced `result`: the fields it
/// showed, or the failure (a ciphertext that would not open is audited too).
pub(crate) fn read_record<T>(
    event: Event<'_>,
    ctx: &Context,
    result: &Result<T>,
    fields: impl FnOnce(&T) -> Vec<String>,
) -> crate::audit::Record {
    match result {
        Ok(value) => event.fields(fields(value)).record(ctx, Outcome::Ok),
        Err(e) => event.record(ctx, Outcome::Failed(e.to_string())),
    }
}

/// Refuses inside a write transaction: the refusal's audit entry commits,
/// the change does not.
pub(crate) fn refuse<T>(
    inner: &Inner,
    w: &mut Writer<'_>,
    ctx: &Context,
    event: Event<'_>,
    error: Error,
) -> Result<Result<T>> {
    let outcome = match &error {
        Error::Denied(reason) => Outcome::Denied(reason.clone()),
        other => Outcome::Failed(other.to_string()),
    };
    audit::append(w, inner.ring.audit_key(), &event.record(ctx, outcome))?;
    Ok(Err(error))
}

/// Resolves the actor inside a write transaction.
pub(crate) fn writer_actor(w: &Writer<'_>, ctx: &Context) -> Result<Result<Actor, String>> {
    Ok(Actor::resolve(
        ctx.principal(),
        w.principal(ctx.principal())?,
    ))
}

impl Inner {
    /// Validates and normalizes every given field, then checks required ones.
    pub(crate) fn normalize_fields(
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

    /// Builds the sealed record of a new customer and its wrapped data key.
    pub(crate) fn seal_customer(
        &self,
        id: CustomerId,
        owner: &str,
        fields: BTreeMap<String, String>,
        now: i64,
    ) -> Result<(StoredCustomer, Vec<u8>)> {
        let (key, wrapped) = self.ring.new_data_key(id)?;
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
            self.put_field(&mut record, &key, name, value)?;
        }
        Ok((record, wrapped))
    }

    pub(crate) fn put_field(
        &self,
        record: &mut StoredCustomer,
        key: &DataKey,
        name: String,
        value: String,
    ) -> Result<()> {
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
                Sensitivity::Sensitive => String::new(),
                _ => mask_value(def.kind, &value),
            };
            let field = SealedField {
                sealed: key.seal(&name, &value)?,
                masked,
            };
            record.sealed.insert(name, field);
        } else {
            record.public.insert(name, value);
        }
        Ok(())
    }

    pub(crate) fn clear_field(&self, record: &mut StoredCustomer, name: &str) {
        record.public.remove(name);
        record.sealed.remove(name);
        record.blind.remove(name);
    }

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

    pub(crate) fn index(
        &self,
        w: &mut Writer<'_>,
        record: &StoredCustomer,
        add: bool,
    ) -> Result<()> {
        for key in self.index_keys(record) {
            w.index(key.as_index(), record.id, add)?;
        }
        Ok(())
    }

    /// Moves a changed record's index entries: `before` are its keys
    /// before the change. Only the entries that differ are touched (an
    /// owner's entry can hold a million customers).
    pub(crate) fn reindex(
        &self,
        w: &mut Writer<'_>,
        before: Vec<IndexKey>,
        record: &StoredCustomer,
    ) -> Result<()> {
        let after = self.index_keys(record);
        for key in before.iter().filter(|k| !after.contains(k)) {
            w.index(key.as_index(), record.id, false)?;
        }
        for key in after.iter().filter(|k| !before.contains(k)) {
            w.index(key.as_index(), record.id, true)?;
        }
        Ok(())
    }

    /// The unwrapped data key of a customer, from the cache or the key store.
    pub(crate) fn data_key(&self, id: CustomerId) -> Result<Arc<DataKey>> {
        if let Some(key) = self.key_cache.get(id) {
            return Ok(key);
        }
        let generation = self.key_cache.generation();
        let wrapped = self
            .keys
            .get(id)?
            .ok_or_else(|| crate::crypto::CryptoError::Unseal {
                what: format!("customer {id}: its data key was destroyed"),
            })?;
        let key = Arc::new(self.ring.open_data_key(id, &wrapped)?);
        self.key_cache.insert(id, Arc::clone(&key), generation);
        Ok(key)
    }

    /// Checks that `owner` may own customers: an active principal. Whether
    /// the actor may hand a customer to them is the policy's decision.
    pub(crate) fn check_owner(&self, w: &Writer<'_>, owner: &str) -> Result<Result<()>> {
        Ok(owner_rule(owner, w.principal(owner)?).map_err(Error::Denied))
    }

    /// Asks the policy about `actor` doing `action` to a stored customer
    /// inside a write transaction: `Ok(Err(refusal))` when it denies.
    pub(crate) fn allow_write(
        &self,
        w: &Writer<'_>,
        actor: &Actor,
        action: Action,
        purpose: &str,
        record: &StoredCustomer,
    ) -> Result<Result<()>> {
        let facts = self.facts_of(w, &mut Teams::default(), record)?;
        let decision = self
            .policy()
            .authorize(&subject(actor), action, purpose, Some(&facts));
        Ok(match decision.allowed() {
            true => Ok(()),
            false => Err(Error::Denied(refusal(&decision))),
        })
    }
}

/// Customers belong to active principals only. `Err` is the refusal.
pub(crate) fn owner_rule(
    owner: &str,
    stored: Option<crate::store::StoredPrincipal>,
) -> Result<(), String> {
    match stored {
        Some(p) if p.active => Ok(()),
        Some(_) => Err(format!("owner `{owner}` is deactivated")),
        None => Err(format!("owner `{owner}` is not a principal")),
    }
}

impl Engine {
    /// Creates a customer and returns its id. Fields are validated against
    /// the schema; personal ones are sealed under a fresh data key.
    pub fn create_customer(&self, ctx: &Context, new: NewCustomer) -> Result<CustomerId> {
        let rows = std::iter::once((1, Ok(new)));
        let report = self.import(ctx, rows, &super::ImportOptions::default(), |_| {})?;
        match (report.first_id, report.errors.into_iter().next()) {
            (Some(id), _) => Ok(id),
            (None, Some(row)) => Err(row.error),
            (None, None) => Err(Error::NotFound("created customer".into())),
        }
    }

    /// Reads one customer, as the acting principal may see it.
    pub fn customer(&self, ctx: &Context, id: CustomerId) -> Result<Customer> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let event = move || Event::new("customer.read").customer(id);
        let policy = inner.policy();
        let view = inner.store.read(|r| {
            let actor = inner.actor(r, ctx, event)?;
            r.with_customer(id, |record| {
                let Some(record) = record else {
                    return Ok::<_, Error>(None);
                };
                let facts = inner.facts_of_ref(r, &mut Teams::default(), &record)?;
                let decision =
                    policy.authorize(&subject(&actor), Action::Read, ctx.purpose(), Some(&facts));
                Ok(Some(match decision.allowed() {
                    true => Ok(inner.view(&record, &decision)),
                    false => Err(refusal(&decision)),
                }))
            })
        })?;
        let view = match view {
            Some(Ok(view)) => view,
            Some(Err(reason)) => return inner.deny(ctx, event(), reason),
            None => {
                let error = Error::NotFound(format!("customer {id}"));
                inner.audit_read(event().record(ctx, Outcome::Failed(error.to_string())))?;
                return Err(error);
            }
        };
        let fields = |v: &Customer| v.fields.keys().cloned().collect();
        inner.audit_read(read_record(event(), ctx, &view, fields))?;
        view
    }

    /// Finds customers, at most `limit`, each as the acting principal may see it.
    pub fn find_customers(
        &self,
        ctx: &Context,
        query: &Query,
        limit: usize,
    ) -> Result<Vec<Customer>> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        // A match on a sensitive field is shown only where the principal may
        // see that field: a hit elsewhere would confirm the value.
        let mut sensitive = None;
        let index = match query {
            Query::Field { field, value } => {
                let def = inner.schema.require(field)?;
                if !def.is_blind_indexed() {
                    return Err(ModelError::Attribute {
                        what: "search".into(),
                        reason: format!(
                            "field `{field}` is not searchable; search by a phone, email or id_number field, owner, tag or status"
                        ),
                    }
                    .into());
                }
                let normalized = inner.schema.normalize(field, value)?;
                if def.sensitivity == Sensitivity::Sensitive {
                    sensitive = Some(field.clone());
                }
                IndexKey::Blind(inner.ring.blind_index(field, &normalized))
            }
            Query::Owner(o) => IndexKey::Owner(o.clone()),
            Query::Tag(t) => IndexKey::Tag(format!("tags:{}", t.to_lowercase())),
            Query::Status(s) => IndexKey::Status(s.as_str().to_string()),
        };
        let target = query.audit_target();
        let event = || Event::new("customer.search").target(target.clone());
        let policy = inner.policy();
        let (ids, views) = inner.store.read(|r| {
            let actor = inner.actor(r, ctx, || {
                Event::new("customer.search").target(query.audit_target())
            })?;
            let ids = r.lookup(index.as_index(), limit)?;
            let mut views = Vec::with_capacity(ids.len());
            let mut shown = Vec::with_capacity(ids.len());
            let subject = subject(&actor);
            let mut teams = Teams::default();
            for id in &ids {
                r.with_customer(*id, |record| {
                    let Some(record) = record else {
                        return Ok::<_, Error>(());
                    };
                    let facts = inner.facts_of_ref(r, &mut teams, &record)?;
                    let decision =
                        policy.authorize(&subject, Action::Search, ctx.purpose(), Some(&facts));
                    // A hit on a sensitive field the principal may not see
                    // in full would confirm the searched value.
                    let confirms = match &sensitive {
                        Some(field) => {
                            decision.treatment(field, Sensitivity::Sensitive) != Treatment::Full
                        }
                        None => false,
                    };
                    if decision.allowed() && !confirms {
                        shown.push(*id);
                        views.push(inner.view(&record, &decision));
                    }
                    Ok(())
                })?;
            }
            Ok::<_, Error>((shown, views))
        })?;
        let views: Result<Vec<Customer>> = views.into_iter().collect();
        let mut ev = event();
        ev.customers = ids;
        let touched = |views: &Vec<Customer>| {
            let fields: BTreeSet<String> = views
                .iter()
                .flat_map(|c| c.fields.keys().cloned())
                .collect();
            fields.into_iter().collect()
        };
        inner.audit_read(read_record(ev, ctx, &views, touched))?;
        views
    }

    /// How many customers the database holds.
    pub fn count_customers(&self, ctx: &Context) -> Result<u64> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let event = || Event::new("customer.count");
        let (actor, count) = inner.store.read(|r| {
            let actor = inner.actor(r, ctx, event)?;
            Ok::<_, Error>((actor, r.customer_count()?))
        })?;
        let decision =
            inner
                .policy()
                .authorize(&subject(&actor), Action::Count, ctx.purpose(), None);
        if !decision.allowed() {
            return inner.deny(ctx, event(), refusal(&decision));
        }
        inner.audit_read(event().record(ctx, Outcome::Ok))?;
        Ok(count)
    }

    /// Changes a customer's fields or owner. Only its owner or an admin may.
    pub fn update_customer(
        &self,
        ctx: &Context,
        id: CustomerId,
        update: CustomerUpdate,
    ) -> Result<()> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let set = inner.normalize_fields_partial(&update.set)?;
        for name in &update.clear {
            let def = inner.schema.require(name)?;
            if def.required {
                return Err(ModelError::Required {
                    field: name.clone(),
                }
                .into());
            }
        }
        let mut touched: Vec<String> = set.keys().chain(update.clear.iter()).cloned().collect();
        if update.owner.is_some() {
            touched.push("owner".into());
        }
        let event = || {
            Event::new("customer.update")
                .customer(id)
                .fields(touched.clone())
        };
        // Sealing needs the key; a missing one means a missing customer,
        // which the transaction reports.
        let key = inner.data_key(id).ok();
        inner.store.write(|w| {
            let actor = match writer_actor(w, ctx)? {
                Ok(a) => a,
                Err(reason) => return refuse(inner, w, ctx, event(), Error::Denied(reason)),
            };
            let (Some(mut record), Some(key)) = (w.customer(id)?, key.as_ref()) else {
                return refuse(
                    inner,
                    w,
                    ctx,
                    event(),
                    Error::NotFound(format!("customer {id}")),
                );
            };
            if let Err(e) = inner.allow_write(w, &actor, Action::Update, ctx.purpose(), &record)? {
                return refuse(inner, w, ctx, event(), e);
            }
            if let Some(owner) = &update.owner {
                if let Err(e) = inner.check_owner(w, owner)? {
                    return refuse(inner, w, ctx, event(), e);
                }
                // Handing over needs the policy's consent for the new owner too.
                let handed = StoredCustomer {
                    owner: owner.clone(),
                    ..record.clone()
                };
                if let Err(e) =
                    inner.allow_write(w, &actor, Action::Update, ctx.purpose(), &handed)?
                {
                    return refuse(inner, w, ctx, event(), e);
                }
            }
            if let Err(e) = inner.check_stored_basis(w, id, &set)? {
                return refuse(inner, w, ctx, event(), e);
            }
            let before = inner.index_keys(&record);
            for name in &update.clear {
                inner.clear_field(&mut record, name);
            }
            for (name, value) in &set {
                inner.clear_field(&mut record, name);
                inner.put_field(&mut record, key, name.clone(), value.clone())?;
            }
            if let Some(owner) = &update.owner {
                record.owner = owner.clone();
            }
            record.updated_at = inner.now_micros();
            w.put_customer(&record)?;
            inner.reindex(w, before, &record)?;
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(()))
        })??;
        self.inner.emit(vec![Emitted::Updated(id)], None);
        Ok(())
    }

    /// Deletes a customer with everything filed under it (interactions,
    /// follow-ups, consents, plugin links, queued messages), then destroys
    /// its data key in the key store and every mirror. A deletion record
    /// without personal data is kept; a legal hold refuses the delete.
    pub fn delete_customer(&self, ctx: &Context, id: CustomerId) -> Result<()> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        inner.remove_on_request(
            ctx,
            id,
            "customer.delete",
            Removal::Delete,
            None,
            |w, actor, record| inner.allow_write(w, actor, Action::Delete, ctx.purpose(), record),
        )
    }
}

impl Inner {
    /// Normalizes fields being set, without the required-field check.
    pub(crate) fn normalize_fields_partial(
        &self,
        fields: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, ModelError> {
        let mut out = BTreeMap::new();
        for (name, raw) in fields {
            let value = self.schema.normalize(name, raw)?;
            if value.is_empty() {
                if self.schema.require(name)?.required {
                    return Err(ModelError::Required {
                        field: name.clone(),
                    });
                }
                continue;
            }
            out.insert(name.clone(), value);
        }
        Ok(out)
    }
}
