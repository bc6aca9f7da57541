//! Plugin commands: checked against the plugin's grant, planned outside
//! the write transaction (references resolved, new customers sealed), then
//! executed in ONE write transaction as the plugin's principal, each with
//! its policy decision and audit entry. Any refusal executes nothing.

use std::collections::{BTreeMap, HashMap};

use chrono::DateTime;

use super::activity::{MAX_BODY, MAX_SUMMARY, check_len};
use super::customers::{refuse, writer_actor};
use super::{Context, Event, Inner, now_micros};
use crate::audit::{self, Outcome};
use crate::model::{Channel, Direction, OrderItem};
use crate::plugin::runtime::{LogLine, command_kind, wit};
use crate::plugin::{CommandKind, Fault, FieldAccess, Grant, PluginError};
use crate::policy::Action;
use crate::store::{
    Index, StoredCustomer, StoredFollowUp, StoredInteraction, StoredLogLine, StoredMessage, Writer,
};
use crate::{Error, Result};

/// How a command names a customer, resolved to something indexable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RefKey {
    Id(u64),
    /// Blind index of a phone or email.
    Blind([u8; 16]),
    /// Keyed hash of (plugin, external id).
    Link([u8; 16]),
}

/// One planned step.
enum Step {
    Create(u64),
    Update {
        id: u64,
        set: BTreeMap<String, String>,
        tags: Vec<String>,
    },
    Log {
        id: u64,
        channel: Channel,
        direction: Direction,
        at: i64,
        summary: String,
        body: Option<String>,
        amount_minor: Option<i64>,
        items: Vec<OrderItem>,
    },
    FollowUp {
        id: u64,
        due: i64,
        note: String,
    },
    Message {
        id: u64,
        channel: String,
        template: String,
        params: Vec<(String, String)>,
        marketing: bool,
    },
}

/// A customer a call creates: the command that first named it, and the
/// raw fields and tags of every upsert that names it.
struct NewCustomer {
    index: usize,
    fields: BTreeMap<String, String>,
    tags: Vec<String>,
}

/// What executing a call's commands changed.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub(crate) created: Vec<u64>,
    pub(crate) updated: Vec<u64>,
    pub(crate) interactions: Vec<(u64, u64, Channel, i64)>,
    pub(crate) follow_ups: Vec<u64>,
    pub(crate) messages: Vec<u64>,
    /// Messages not queued, and why (no consent, no address).
    pub(crate) skipped_messages: Vec<String>,
}

/// Everything a successful call leaves behind besides its commands.
pub(crate) struct Leftovers<'a> {
    pub(crate) state_writes: &'a BTreeMap<String, Vec<u8>>,
    pub(crate) log: &'a [LogLine],
    pub(crate) reset_faults: bool,
    pub(crate) call_event: Event<'a>,
}

/// The address field of a message channel.
pub(crate) fn address_field(channel: &str) -> Option<&'static str> {
    match channel {
        "sms" => Some("phone"),
        "email" => Some("email"),
        _ => None,
    }
}

fn refused(plugin: &str, index: usize, reason: impl Into<String>) -> Error {
    PluginError::Command {
        name: plugin.to_string(),
        index,
        reason: reason.into(),
    }
    .into()
}

fn ungranted(plugin: &str, what: String) -> Error {
    PluginError::Fault {
        name: plugin.to_string(),
        fault: Fault::Ungranted(what),
    }
    .into()
}

fn channel(c: wit::Channel) -> Channel {
    match c {
        wit::Channel::Call => Channel::Call,
        wit::Channel::Email => Channel::Email,
        wit::Channel::Chat => Channel::Chat,
        wit::Channel::Sms => Channel::Sms,
        wit::Channel::Meeting => Channel::Meeting,
        wit::Channel::Visit => Channel::Visit,
        wit::Channel::Order => Channel::Order,
    }
}

fn micros(ms: i64) -> Option<i64> {
    ms.checked_mul(1000)
        .filter(|_| DateTime::from_timestamp_millis(ms).is_some())
}

impl Inner {
    /// Checks every command against the grant: a command kind or field
    /// outside it is a fault of the plugin (`Fault::Ungranted`).
    pub(crate) fn check_grant(
        &self,
        plugin: &str,
        grant: &Grant,
        commands: &[wit::Command],
    ) -> Result<()> {
        for c in commands {
            let kind = command_kind(c);
            if !grant.commands.contains(&kind) {
                return Err(ungranted(
                    plugin,
                    format!("`{}` was not granted", kind.as_str()),
                ));
            }
            match c {
                wit::Command::UpsertCustomer(u) => {
                    for f in &u.fields {
                        if !grant.fields.contains_key(&f.name) {
                            return Err(ungranted(
                                plugin,
                                format!("writing field `{}`, which was not granted", f.name),
                            ));
                        }
                    }
                    if !u.tags.is_empty() && !grant.fields.contains_key("tags") {
                        return Err(ungranted(
                            plugin,
                            "adding tags: field `tags` was not granted".into(),
                        ));
                    }
                }
                wit::Command::SendMessage(m) if !grant.channels.contains(&m.channel) => {
                    return Err(ungranted(
                        plugin,
                        format!("channel `{}` was not granted", m.channel),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The indexable key of a reference; phone and email references need
    /// the field granted in full (a hit would confirm the value).
    pub(crate) fn ref_key(
        &self,
        plugin: &str,
        grant: &Grant,
        r: &wit::CustomerRef,
    ) -> Result<RefKey, String> {
        let blind = |field: &str, value: &str| -> Result<RefKey, String> {
            if grant.fields.get(field) != Some(&FieldAccess::Full) {
                return Err(format!(
                    "a reference by `{field}` needs the field granted in full"
                ));
            }
            let normalized = self
                .schema
                .normalize(field, value)
                .map_err(|e| e.to_string())?;
            Ok(RefKey::Blind(self.ring.blind_index(field, &normalized)))
        };
        match r {
            wit::CustomerRef::Id(id) => Ok(RefKey::Id(*id)),
            wit::CustomerRef::Phone(p) => blind("phone", p),
            wit::CustomerRef::Email(e) => blind("email", e),
            wit::CustomerRef::ExternalId(x) => {
                if x.is_empty() || x.len() > 256 {
                    return Err("external ids are 1 to 256 bytes".into());
                }
                Ok(RefKey::Link(self.link_hash(plugin, x)))
            }
        }
    }

    /// The keyed hash under which a plugin's external id is linked.
    pub(crate) fn link_hash(&self, plugin: &str, external: &str) -> [u8; 16] {
        self.ring
            .blind_index(&format!("plugin:{plugin}/external-id"), external)
    }

    /// The customer a key names in a read snapshot.
    pub(crate) fn resolve(&self, r: &crate::store::Reader, key: RefKey) -> Result<Option<u64>> {
        Ok(match key {
            RefKey::Id(id) => r.customer(id)?.map(|_| id),
            RefKey::Blind(b) => r.lookup(Index::Blind(&b), 1)?.first().copied(),
            RefKey::Link(h) => match r.link(&h)? {
                // A link may outlive its customer's record by a race; it
                // names nobody then.
                Some(id) => r.customer(id)?.map(|_| id),
                None => None,
            },
        })
    }

    /// Plans, then executes `commands` in one write transaction as
    /// `ctx`'s principal (a plugin).
    pub(crate) fn apply_commands(
        &self,
        ctx: &Context,
        plugin: &str,
        grant: &Grant,
        commands: &[wit::Command],
        leftovers: Leftovers<'_>,
    ) -> Result<Applied> {
        let mut steps = Vec::with_capacity(commands.len());
        // Customers this call creates: raw fields and tags, merged over
        // every upsert that names them.
        let mut new: BTreeMap<u64, NewCustomer> = BTreeMap::new();
        let mut known: HashMap<RefKey, u64> = HashMap::new();
        let mut links: Vec<([u8; 16], u64)> = Vec::new();
        self.store.read(|r| {
            for (i, c) in commands.iter().enumerate() {
                let index = i + 1;
                let mut find = |reference: &wit::CustomerRef| -> Result<Option<u64>> {
                    let key = self
                        .ref_key(plugin, grant, reference)
                        .map_err(|e| refused(plugin, index, e))?;
                    if let Some(id) = known.get(&key) {
                        return Ok(Some(*id));
                    }
                    let found = self.resolve(r, key)?;
                    if let Some(id) = found {
                        known.insert(key, id);
                    }
                    Ok(found)
                };
                let existing = |found: Option<u64>| {
                    found.ok_or_else(|| {
                        refused(plugin, index, "no customer matches its reference")
                    })
                };
                match c {
                    wit::Command::UpsertCustomer(u) => {
                        let mut fields = BTreeMap::new();
                        for f in &u.fields {
                            fields.insert(f.name.clone(), f.value.clone());
                        }
                        let id = match find(&u.match_)? {
                            Some(id) => id,
                            // An id names an existing customer; it never
                            // creates one.
                            None if matches!(u.match_, wit::CustomerRef::Id(_)) => {
                                return Err(refused(plugin, index, "no customer has that id"));
                            }
                            None => {
                                let id = self.reserve_ids(1);
                                new.insert(
                                    id,
                                    NewCustomer {
                                        index,
                                        fields: BTreeMap::new(),
                                        tags: Vec::new(),
                                    },
                                );
                                steps.push(Step::Create(id));
                                if let Ok(key) = self.ref_key(plugin, grant, &u.match_) {
                                    known.insert(key, id);
                                }
                                id
                            }
                        };
                        // New customers are also found by the phone and
                        // email they were given.
                        for field in ["phone", "email"] {
                            if let Some(value) = fields.get(field)
                                && let Ok(n) = self.schema.normalize(field, value)
                            {
                                known
                                    .entry(RefKey::Blind(self.ring.blind_index(field, &n)))
                                    .or_insert(id);
                            }
                        }
                        if let Some(x) = &u.external_id {
                            if x.is_empty() || x.len() > 256 {
                                return Err(refused(
                                    plugin,
                                    index,
                                    "external ids are 1 to 256 bytes",
                                ));
                            }
                            let hash = self.link_hash(plugin, x);
                            known.insert(RefKey::Link(hash), id);
                            links.push((hash, id));
                        }
                        match new.get_mut(&id) {
                            Some(created) => {
                                created.fields.extend(fields);
                                created.tags.extend(u.tags.iter().cloned());
                            }
                            None => {
                                let set = self
                                    .normalize_fields_partial(&fields)
                                    .map_err(|e| refused(plugin, index, e.to_string()))?;
                                steps.push(Step::Update {
                                    id,
                                    set,
                                    tags: u.tags.clone(),
                                });
                            }
                        }
                    }
                    wit::Command::LogInteraction(l) => {
                        let id = existing(find(&l.customer)?)?;
                        let check = |what: &str, text: &str, max: usize| {
                            check_len(what, text, max).map_err(|e| refused(plugin, index, e.to_string()))
                        };
                        check("summary", &l.summary, MAX_SUMMARY)?;
                        if let Some(body) = &l.body {
                            check("body", body, MAX_BODY)?;
                        }
                        if l.items.len() > 1000 || l.items.iter().any(|i| i.name.len() > 200) {
                            return Err(refused(
                                plugin,
                                index,
                                "at most 1000 items of at most 200 bytes each",
                            ));
                        }
                        let at = match l.at {
                            Some(ms) => micros(ms)
                                .ok_or_else(|| refused(plugin, index, "`at` is out of range"))?,
                            None => self.now_micros(),
                        };
                        steps.push(Step::Log {
                            id,
                            channel: channel(l.channel),
                            direction: match l.direction {
                                wit::Direction::Inbound => Direction::Inbound,
                                wit::Direction::Outbound => Direction::Outbound,
                            },
                            at,
                            summary: l.summary.clone(),
                            body: l.body.clone(),
                            amount_minor: l.amount_minor,
                            items: l
                                .items
                                .iter()
                                .map(|i| OrderItem {
                                    name: i.name.clone(),
                                    quantity: i.quantity,
                                    unit_price_minor: i.unit_price_minor,
                                })
                                .collect(),
                        });
                    }
                    wit::Command::CreateFollowUp(f) => {
                        let id = existing(find(&f.customer)?)?;
                        check_len("note", &f.note, MAX_SUMMARY * 4)
                            .map_err(|e| refused(plugin, index, e.to_string()))?;
                        let due = micros(f.due)
                            .ok_or_else(|| refused(plugin, index, "`due` is out of range"))?;
                        steps.push(Step::FollowUp {
                            id,
                            due,
                            note: f.note.clone(),
                        });
                    }
                    wit::Command::SendMessage(m) => {
                        let id = existing(find(&m.customer)?)?;
                        if address_field(&m.channel).is_none() {
                            return Err(refused(
                                plugin,
                                index,
                                format!(
                                    "channel `{}` has no address the engine can resolve (sms, email)",
                                    m.channel
                                ),
                            ));
                        }
                        let params_size: usize =
                            m.params.iter().map(|(k, v)| k.len() + v.len()).sum();
                        if m.template.is_empty()
                            || m.template.len() > 128
                            || m.params.len() > 32
                            || params_size > 8192
                        {
                            return Err(refused(
                                plugin,
                                index,
                                "a template name of 1 to 128 bytes and at most 32 parameters of 8 KiB in all",
                            ));
                        }
                        steps.push(Step::Message {
                            id,
                            channel: m.channel.clone(),
                            template: m.template.clone(),
                            params: m.params.clone(),
                            marketing: m.purpose == wit::MessagePurpose::Marketing,
                        });
                    }
                }
            }
            Ok::<_, Error>(())
        })?;
        let owner = grant
            .owner
            .clone()
            .unwrap_or_else(|| ctx.principal().to_string());
        let now = self.now_micros();
        let mut sealed: HashMap<u64, (StoredCustomer, Vec<u8>)> = HashMap::new();
        for (id, created) in new {
            let NewCustomer {
                index,
                fields: mut raw,
                tags,
            } = created;
            if !tags.is_empty() {
                raw.insert("tags".into(), tags.join(","));
            }
            let fields = self
                .normalize_fields(&raw)
                .map_err(|e| refused(plugin, index, format!("the new customer it creates: {e}")))?;
            // A plugin records no consent: what it stores needs another basis.
            self.check_new_consents(&fields, &[])
                .map_err(|e| refused(plugin, index, format!("the new customer it creates: {e}")))?;
            sealed.insert(id, self.seal_customer(id, &owner, fields, now)?);
        }
        self.execute(ctx, plugin, steps, sealed, links, leftovers)
    }

    fn execute(
        &self,
        ctx: &Context,
        plugin: &str,
        steps: Vec<Step>,
        mut sealed: HashMap<u64, (StoredCustomer, Vec<u8>)>,
        links: Vec<([u8; 16], u64)>,
        leftovers: Leftovers<'_>,
    ) -> Result<Applied> {
        let keys: Vec<(u64, Vec<u8>)> = sealed
            .iter()
            .map(|(id, (_, wrapped))| (*id, wrapped.clone()))
            .collect();
        let ids: Vec<u64> = keys.iter().map(|(id, _)| *id).collect();
        // Data keys of customers this call updates or writes text for.
        let mut data_keys = HashMap::new();
        for step in &steps {
            let id = match step {
                Step::Update { id, .. } | Step::Log { id, .. } | Step::FollowUp { id, .. } => *id,
                _ => continue,
            };
            if !sealed.contains_key(&id) && !data_keys.contains_key(&id) {
                data_keys.insert(id, self.data_key(id).ok());
            }
        }
        // INVARIANT: keys are durable before the records that need them.
        if !ids.is_empty() {
            self.hold_pending(&ids);
            if let Err(e) = self.keys.put(&keys) {
                self.release_pending(&ids);
                return Err(e.into());
            }
        }
        let written = self.store.write(|w| {
            let mut applied = Applied::default();
            let actor = match writer_actor(w, ctx)? {
                Ok(a) => a,
                Err(reason) => {
                    return refuse(self, w, ctx, leftovers.call_event, Error::Denied(reason));
                }
            };
            let purpose = ctx.purpose();
            for step in steps {
                match step {
                    Step::Create(id) => {
                        let Some((record, _)) = sealed.remove(&id) else {
                            continue;
                        };
                        let event = Event::new("customer.create").customer(id).fields(
                            record
                                .public
                                .keys()
                                .chain(record.sealed.keys())
                                .cloned()
                                .collect(),
                        );
                        if let Err(e) = self.check_owner(w, &record.owner)? {
                            return refuse(self, w, ctx, event, e);
                        }
                        if let Err(e) = self.allow_write(w, &actor, Action::Create, purpose, &record)? {
                            return refuse(self, w, ctx, event, e);
                        }
                        self.index(w, &record, true)?;
                        w.put_customer(&record)?;
                        w.record_id(id);
                        audit::append(w, self.ring.audit_key(), &event.record(ctx, Outcome::Ok))?;
                        applied.created.push(id);
                    }
                    Step::Update { id, set, tags } => {
                        let mut touched: Vec<String> = set.keys().cloned().collect();
                        if !tags.is_empty() {
                            touched.push("tags".into());
                        }
                        let event = Event::new("customer.update").customer(id).fields(touched);
                        let key = data_keys.get(&id).cloned().flatten();
                        let (Some(mut record), Some(key)) = (w.customer(id)?, key) else {
                            return refuse(self, w, ctx, event, Error::NotFound(format!("customer {id}")));
                        };
                        if set.is_empty() && tags.is_empty() {
                            continue;
                        }
                        if let Err(e) = self.allow_write(w, &actor, Action::Update, purpose, &record)? {
                            return refuse(self, w, ctx, event, e);
                        }
                        let mut set = set;
                        if !tags.is_empty() {
                            let mut all: Vec<String> = record
                                .public
                                .get("tags")
                                .map(|t| t.split(',').map(str::to_string).collect())
                                .unwrap_or_default();
                            all.extend(tags);
                            let joined = self
                                .schema
                                .normalize("tags", &all.join(","))
                                .map_err(Error::from);
                            match joined {
                                Ok(t) => {
                                    set.insert("tags".into(), t);
                                }
                                Err(e) => return refuse(self, w, ctx, event, e),
                            }
                        }
                        if let Err(e) =
                            self.check_stored_basis(w, id, &set)?
                        {
                            return refuse(self, w, ctx, event, e);
                        }
                        let before = self.index_keys(&record);
                        for (name, value) in set {
                            self.clear_field(&mut record, &name);
                            self.put_field(&mut record, &key, name, value)?;
                        }
                        record.updated_at = self.now_micros();
                        w.put_customer(&record)?;
                        self.reindex(w, before, &record)?;
                        audit::append(w, self.ring.audit_key(), &event.record(ctx, Outcome::Ok))?;
                        if !applied.created.contains(&id) && !applied.updated.contains(&id) {
                            applied.updated.push(id);
                        }
                    }
                    Step::Log {
                        id: customer,
                        channel,
                        direction,
                        at,
                        summary,
                        body,
                        amount_minor,
                        items,
                    } => {
                        let event = Event::new("interaction.log")
                            .customer(customer)
                            .fields(vec!["summary".into(), "body".into()]);
                        let Some(mut record) = w.customer(customer)? else {
                            return refuse(self, w, ctx, event, Error::NotFound(format!("customer {customer}")));
                        };
                        let key = match data_keys.get(&customer).cloned().flatten() {
                            Some(k) => k,
                            None => self.data_key(customer)?,
                        };
                        if let Err(e) =
                            self.allow_write(w, &actor, Action::LogInteraction, purpose, &record)?
                        {
                            return refuse(self, w, ctx, event, e);
                        }
                        let id = self.reserve_ids(1);
                        let slot = |part: &str| format!("interaction/{id}/{part}");
                        w.put_interaction(&StoredInteraction {
                            id,
                            customer,
                            channel,
                            direction,
                            at,
                            logged_by: actor.name.clone(),
                            summary: key.seal(&slot("summary"), &summary)?,
                            body: body
                                .as_deref()
                                .map(|b| key.seal(&slot("body"), b))
                                .transpose()?,
                            amount_minor,
                            items,
                        })?;
                        w.record_id(id);
                        if record.last_interaction_at.is_none_or(|t| t < at) {
                            record.last_interaction_at = Some(at);
                            w.put_customer(&record)?;
                        }
                        audit::append(w, self.ring.audit_key(), &event.record(ctx, Outcome::Ok))?;
                        applied.interactions.push((customer, id, channel, at));
                    }
                    Step::FollowUp { id: customer, due, note } => {
                        let event = Event::new("followup.create")
                            .customer(customer)
                            .fields(vec!["note".into()]);
                        let Some(record) = w.customer(customer)? else {
                            return refuse(self, w, ctx, event, Error::NotFound(format!("customer {customer}")));
                        };
                        let key = match data_keys.get(&customer).cloned().flatten() {
                            Some(k) => k,
                            None => self.data_key(customer)?,
                        };
                        if let Err(e) =
                            self.allow_write(w, &actor, Action::WriteFollowUps, purpose, &record)?
                        {
                            return refuse(self, w, ctx, event, e);
                        }
                        let id = self.reserve_ids(1);
                        w.put_followup(&StoredFollowUp {
                            id,
                            customer,
                            due,
                            assignee: record.owner.clone(),
                            note: key.seal(&format!("followup/{id}/note"), &note)?,
                            done: false,
                            created_by: actor.name.clone(),
                        })?;
                        w.record_id(id);
                        audit::append(w, self.ring.audit_key(), &event.record(ctx, Outcome::Ok))?;
                        applied.follow_ups.push(id);
                    }
                    Step::Message {
                        id: customer,
                        channel,
                        template,
                        params,
                        marketing,
                    } => {
                        let event = Event::new("outbox.queue")
                            .customer(customer)
                            .target(format!("{channel} {template}"));
                        let Some(record) = w.customer(customer)? else {
                            return refuse(self, w, ctx, event, Error::NotFound(format!("customer {customer}")));
                        };
                        if let Err(e) = self.allow_write(w, &actor, Action::Read, purpose, &record)? {
                            return refuse(self, w, ctx, event, e);
                        }
                        let consent = message_purpose(marketing);
                        let skip = if !consented(w, customer, consent)? {
                            Some(format!(
                                "customer {customer} has not consented to `{consent}` messages: message `{template}` not queued"
                            ))
                        } else {
                            let field = address_field(&channel).unwrap_or("phone");
                            (!record.sealed.contains_key(field) && !record.public.contains_key(field))
                                .then(|| format!("customer {customer} has no {field}: message `{template}` not queued"))
                        };
                        if let Some(reason) = skip {
                            audit::append(
                                w,
                                self.ring.audit_key(),
                                &event.record(ctx, Outcome::Denied(reason.clone())),
                            )?;
                            applied.skipped_messages.push(reason);
                            continue;
                        }
                        let id = self.reserve_ids(1);
                        w.put_message(
                            id,
                            &StoredMessage {
                                plugin: plugin.to_string(),
                                channel,
                                customer,
                                template,
                                params,
                                marketing,
                                created_at: now_micros(),
                            },
                        )?;
                        w.record_id(id);
                        audit::append(w, self.ring.audit_key(), &event.record(ctx, Outcome::Ok))?;
                        applied.messages.push(id);
                    }
                }
            }
            for (hash, id) in &links {
                w.put_link(hash, *id)?;
            }
            for (key, value) in leftovers.state_writes {
                w.put_plugin_state(plugin, key, value)?;
            }
            write_log(w, plugin, leftovers.log)?;
            if leftovers.reset_faults
                && let Some(mut info) = w.plugin(plugin)?
            {
                info.consecutive_faults = 0;
                w.put_plugin(&info, None)?;
            }
            audit::append(
                w,
                self.ring.audit_key(),
                &leftovers.call_event.record(ctx, Outcome::Ok),
            )?;
            Ok::<_, Error>(Ok(applied))
        });
        if ids.is_empty() {
            return written?;
        }
        let settle = self.release_pending(&ids);
        match written {
            Ok(Ok(applied)) => {
                self.keys.settle(&settle)?;
                Ok(applied)
            }
            Ok(Err(refusal)) => {
                self.keys.remove(&ids)?;
                Err(refusal)
            }
            Err(e) => Err(e),
        }
    }
}

/// The consent purpose a message needs: `marketing`, or `service` for
/// reminders and order updates.
pub(crate) fn message_purpose(marketing: bool) -> &'static str {
    if marketing { "marketing" } else { "service" }
}

/// Whether the customer consented to `purpose`.
pub(crate) fn consented(w: &Writer<'_>, customer: u64, purpose: &str) -> Result<bool> {
    Ok(w.consent(customer, purpose)?.is_some_and(|c| c.granted))
}

/// Appends a call's log lines to the plugin's log.
pub(crate) fn write_log(w: &mut Writer<'_>, plugin: &str, log: &[LogLine]) -> Result<()> {
    let at = now_micros();
    let lines: Vec<StoredLogLine> = log
        .iter()
        .map(|l| StoredLogLine {
            at,
            level: l.level.to_string(),
            text: l.text.clone(),
        })
        .collect();
    w.append_plugin_log(plugin, &lines)?;
    Ok(())
}

/// Which commands need which rate budget.
pub(crate) fn budget(commands: &[wit::Command]) -> (u32, u32) {
    let total = u32::try_from(commands.len()).unwrap_or(u32::MAX);
    let messages = commands
        .iter()
        .filter(|c| command_kind(c) == CommandKind::SendMessage)
        .count();
    (total, u32::try_from(messages).unwrap_or(u32::MAX))
}
