//! Plugin commands, planned: checked against the plugin's grant, their
//! references resolved (through the blind index or the keyed external-id
//! links, on a snapshot: ids only, nothing is handed to the plugin), their
//! inputs validated and new customers sealed, outside the write
//! transaction. `execute` then runs the plan on the path.

use std::collections::{BTreeMap, HashMap};

use chrono::DateTime;

use super::Core;
use crate::model::{Channel, Direction, OrderItem};
use crate::plugin::runtime::{LogLine, command_kind, wit};
use crate::plugin::{Fault, FieldAccess, Grant, PluginError};
use crate::records::{MAX_NOTE, address_field, check_items, check_len};
use crate::store::{Index, Snapshot, SnapshotExt, StoredCustomer};
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

/// One planned step, with the command's position (from 1).
pub(super) enum Step {
    Create(u64),
    Update {
        id: u64,
        set: BTreeMap<String, String>,
        tags: Vec<String>,
    },
    Log(LogStep),
    FollowUp {
        id: u64,
        due: i64,
        note: String,
    },
    Message(MessageStep),
}

/// An interaction to log.
pub(super) struct LogStep {
    pub(super) id: u64,
    pub(super) channel: Channel,
    pub(super) direction: Direction,
    pub(super) at: i64,
    pub(super) summary: String,
    pub(super) body: Option<String>,
    pub(super) amount_minor: Option<i64>,
    pub(super) items: Vec<OrderItem>,
}

/// A message to queue.
pub(super) struct MessageStep {
    pub(super) id: u64,
    pub(super) channel: String,
    pub(super) template: String,
    pub(super) params: Vec<(String, String)>,
    pub(super) marketing: bool,
}

/// A call's commands, planned.
pub(super) struct Plan {
    pub(super) steps: Vec<Step>,
    /// New customers, sealed, with their wrapped keys.
    pub(super) sealed: HashMap<u64, (StoredCustomer, Vec<u8>)>,
    /// External ids to link: (keyed hash, customer).
    pub(super) links: Vec<([u8; 16], u64)>,
}

/// A customer a call creates: the command that first named it, and the
/// raw fields and tags of every upsert that names it.
struct NewCustomer {
    index: usize,
    fields: BTreeMap<String, String>,
    tags: Vec<String>,
}

/// Everything a successful call leaves behind besides its commands.
pub(crate) struct CallDone<'a> {
    /// The plugin as the call was admitted: its commands execute only if
    /// it is still so (enabled, with the same grant and code) when they do.
    pub(crate) info: &'a crate::plugin::PluginInfo,
    pub(crate) state_writes: &'a [StateWrite],
    pub(crate) log: &'a [LogLine],
    /// The call's own audit entry.
    pub(crate) entry: super::Entry,
}

/// A state write of a call, sealed: unscoped (under the key of plugin
/// state) or filed under a customer (under its key).
pub(crate) struct StateWrite {
    /// The customer it is filed under, if any.
    pub(crate) customer: Option<u64>,
    /// The plugin's own key: only to remove a value a version before
    /// sealing stored under it.
    pub(crate) key: String,
    /// The keyed name it is filed under.
    pub(crate) name: String,
    /// The sealed value, as stored.
    pub(crate) sealed: Vec<u8>,
}

pub(super) fn refused(plugin: &str, index: usize, reason: impl Into<String>) -> Error {
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

impl Core {
    /// Checks every command against the grant: a command kind or field
    /// outside it is a fault of the plugin (`Fault::Ungranted`).
    pub(super) fn check_grant(
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
                    if let Some(f) = u
                        .fields
                        .iter()
                        .find(|f| !grant.fields.contains_key(&f.name))
                    {
                        let what = format!("writing field `{}`, which was not granted", f.name);
                        return Err(ungranted(plugin, what));
                    }
                    if !u.tags.is_empty() && !grant.fields.contains_key("tags") {
                        let what = "adding tags: field `tags` was not granted".to_string();
                        return Err(ungranted(plugin, what));
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
            let schema = &self.records.schema;
            let normalized = schema.normalize(field, value).map_err(|e| e.to_string())?;
            Ok(RefKey::Blind(
                self.records.ring.blind_index(field, &normalized),
            ))
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
    fn link_hash(&self, plugin: &str, external: &str) -> [u8; 16] {
        let slot = format!("plugin:{plugin}/external-id");
        self.records.ring.blind_index(&slot, external)
    }

    /// The customer a key names, if it exists.
    pub(crate) fn resolve(&self, r: &dyn Snapshot, key: RefKey) -> Result<Option<u64>> {
        let found = match key {
            RefKey::Id(id) => Some(id),
            RefKey::Blind(b) => r.lookup(Index::Blind(&b), 1)?.first().copied(),
            // A link may outlive its customer's record by a race; it names
            // nobody then.
            RefKey::Link(h) => r.link(&h)?,
        };
        match found {
            Some(id) if r.contains_customer(id)? && self.records.has_key(id)? => Ok(Some(id)),
            _ => Ok(None),
        }
    }

    /// Plans a call's commands; `owner` owns the customers they create.
    pub(super) fn plan(
        &self,
        plugin: &str,
        grant: &Grant,
        owner: &str,
        commands: &[wit::Command],
    ) -> Result<Plan> {
        let mut planner = Planner {
            core: self,
            plugin,
            grant,
            steps: Vec::with_capacity(commands.len()),
            new: BTreeMap::new(),
            known: HashMap::new(),
            links: Vec::new(),
        };
        self.store.read(|r| {
            for (i, c) in commands.iter().enumerate() {
                planner.command(r, i + 1, c)?;
            }
            Ok::<_, Error>(())
        })?;
        let now = self.records.now();
        let mut sealed = HashMap::new();
        for (id, created) in planner.new {
            let mut raw = created.fields;
            if !created.tags.is_empty() {
                raw.insert("tags".into(), created.tags.join(","));
            }
            let creates = |e: Error| {
                refused(
                    plugin,
                    created.index,
                    format!("the new customer it creates: {e}"),
                )
            };
            let fields = self
                .records
                .normalize(&raw)
                .map_err(|e| creates(e.into()))?;
            // A plugin records no consent: what it stores needs another basis.
            self.records
                .check_new_basis(&fields, &[], &self.records.retired())
                .map_err(creates)?;
            sealed.insert(id, self.records.seal_new(id, owner, fields, now)?);
        }
        Ok(Plan {
            steps: planner.steps,
            sealed,
            links: planner.links,
        })
    }
}

/// The state of planning one call.
struct Planner<'a> {
    core: &'a Core,
    plugin: &'a str,
    grant: &'a Grant,
    steps: Vec<Step>,
    new: BTreeMap<u64, NewCustomer>,
    /// References resolved so far, new customers included.
    known: HashMap<RefKey, u64>,
    links: Vec<([u8; 16], u64)>,
}

impl Planner<'_> {
    fn find(
        &mut self,
        r: &dyn Snapshot,
        index: usize,
        reference: &wit::CustomerRef,
    ) -> Result<Option<u64>> {
        let key = (self.core.ref_key(self.plugin, self.grant, reference))
            .map_err(|e| refused(self.plugin, index, e))?;
        if let Some(id) = self.known.get(&key) {
            return Ok(Some(*id));
        }
        let found = self.core.resolve(r, key)?;
        if let Some(id) = found {
            self.known.insert(key, id);
        }
        Ok(found)
    }

    fn existing(
        &mut self,
        r: &dyn Snapshot,
        index: usize,
        reference: &wit::CustomerRef,
    ) -> Result<u64> {
        (self.find(r, index, reference)?)
            .ok_or_else(|| refused(self.plugin, index, "no customer matches its reference"))
    }

    fn command(&mut self, r: &dyn Snapshot, index: usize, c: &wit::Command) -> Result<()> {
        let refuse = |reason: &str| refused(self.plugin, index, reason);
        let step = match c {
            wit::Command::UpsertCustomer(u) => return self.upsert(r, index, u),
            wit::Command::LogInteraction(l) => {
                let id = self.existing(r, index, &l.customer)?;
                let check = |what: &str, text: &str, max: usize| {
                    check_len(what, text, max)
                        .map_err(|e| refused(self.plugin, index, e.to_string()))
                };
                check("summary", &l.summary, crate::records::MAX_SUMMARY)?;
                if let Some(body) = &l.body {
                    check("body", body, crate::records::MAX_BODY)?;
                }
                let items: Vec<OrderItem> = (l.items.iter())
                    .map(|i| OrderItem {
                        name: i.name.clone(),
                        quantity: i.quantity,
                        unit_price_minor: i.unit_price_minor,
                    })
                    .collect();
                check_items(&items).map_err(|e| refused(self.plugin, index, e.to_string()))?;
                let at = match l.at {
                    Some(ms) => micros(ms).ok_or_else(|| refuse("`at` is out of range"))?,
                    None => self.core.records.now(),
                };
                Step::Log(LogStep {
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
                    items,
                })
            }
            wit::Command::CreateFollowUp(f) => {
                let id = self.existing(r, index, &f.customer)?;
                check_len("note", &f.note, MAX_NOTE).map_err(|e| refuse(&e.to_string()))?;
                let due = micros(f.due).ok_or_else(|| refuse("`due` is out of range"))?;
                Step::FollowUp {
                    id,
                    due,
                    note: f.note.clone(),
                }
            }
            wit::Command::SendMessage(m) => {
                let id = self.existing(r, index, &m.customer)?;
                if address_field(&m.channel).is_none() {
                    let why = format!(
                        "channel `{}` has no address the engine can resolve (sms, email)",
                        m.channel
                    );
                    return Err(refuse(&why));
                }
                let params_size: usize = m.params.iter().map(|(k, v)| k.len() + v.len()).sum();
                if m.template.is_empty()
                    || m.template.len() > 128
                    || m.params.len() > 32
                    || params_size > 8192
                {
                    return Err(refuse(
                        "a template name of 1 to 128 bytes and at most 32 parameters of 8 KiB in all",
                    ));
                }
                Step::Message(MessageStep {
                    id,
                    channel: m.channel.clone(),
                    template: m.template.clone(),
                    params: m.params.clone(),
                    marketing: m.purpose == wit::MessagePurpose::Marketing,
                })
            }
        };
        self.steps.push(step);
        Ok(())
    }

    fn upsert(&mut self, r: &dyn Snapshot, index: usize, u: &wit::UpsertCustomer) -> Result<()> {
        let fields: BTreeMap<String, String> = (u.fields.iter())
            .map(|f| (f.name.clone(), f.value.clone()))
            .collect();
        let id = match self.find(r, index, &u.match_)? {
            Some(id) => id,
            // An id names an existing customer; it never creates one.
            None if matches!(u.match_, wit::CustomerRef::Id(_)) => {
                return Err(refused(self.plugin, index, "no customer has that id"));
            }
            None => {
                let id = self.core.records.reserve_ids(1);
                let new = NewCustomer {
                    index,
                    fields: BTreeMap::new(),
                    tags: Vec::new(),
                };
                self.new.insert(id, new);
                self.steps.push(Step::Create(id));
                if let Ok(key) = self.core.ref_key(self.plugin, self.grant, &u.match_) {
                    self.known.insert(key, id);
                }
                id
            }
        };
        // New customers are also found by the phone and email they were given.
        for field in ["phone", "email"] {
            if let Some(value) = fields.get(field)
                && let Ok(n) = self.core.records.schema.normalize(field, value)
            {
                let key = RefKey::Blind(self.core.records.ring.blind_index(field, &n));
                self.known.entry(key).or_insert(id);
            }
        }
        if let Some(x) = &u.external_id {
            if x.is_empty() || x.len() > 256 {
                return Err(refused(
                    self.plugin,
                    index,
                    "external ids are 1 to 256 bytes",
                ));
            }
            let hash = self.core.link_hash(self.plugin, x);
            // A link the snapshot already holds for this customer is not
            // written (nor decided) again.
            let linked = r.link(&hash)? == Some(id);
            self.known.insert(RefKey::Link(hash), id);
            if !linked {
                self.links.push((hash, id));
            }
        }
        match self.new.get_mut(&id) {
            Some(created) => {
                created.fields.extend(fields);
                created.tags.extend(u.tags.iter().cloned());
            }
            None => {
                let change = (self
                    .core
                    .records
                    .normalize_change(&fields, &Default::default()))
                .map_err(|e| refused(self.plugin, index, e.to_string()))?;
                self.steps.push(Step::Update {
                    id,
                    set: change.set,
                    tags: u.tags.clone(),
                });
            }
        }
        Ok(())
    }
}
