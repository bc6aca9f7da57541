//! Plugins on the operation path: install with a grant, calls in the
//! sandbox, faults and quarantine, events after commit, the outbox and
//! consent flags, alerts.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::access::{refusal, subject};
use super::auth::admin_only;
use super::commands::{Applied, Leftovers, address_field, budget, write_log};
use super::customers::refuse;
use super::{Context, Engine, Event, Inner, from_micros, now_micros};
use crate::audit::{self, Outcome};
use crate::identity::{Actor, PrincipalKind};
use crate::model::{Channel, CustomerId, FieldType, FollowUpId, InteractionId, mask_value};
use crate::plugin::runtime::{
    CallError, CallLimitsSpec, Entry, HostServices, Loaded, LogLine, Runtime, event_kind_of, wit,
};
use crate::plugin::{
    EventKind, Fault, FieldAccess, Grant, Hook, PLUGIN_ROLE, PluginError, PluginInfo,
    PluginManifest, PluginSettings, PluginStatus,
};
use crate::policy::Action;
use crate::store::{Reader, StoredAlert, StoredPrincipal};
use crate::{Error, Result};

/// What one plugin call did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CallReport {
    /// The plugin.
    pub plugin: String,
    /// The commands it issued, rendered for people.
    pub commands: Vec<String>,
    /// Customers created.
    pub created: Vec<CustomerId>,
    /// Customers updated.
    pub updated: Vec<CustomerId>,
    /// Interactions logged.
    pub interactions: Vec<InteractionId>,
    /// Follow-ups created.
    pub follow_ups: Vec<FollowUpId>,
    /// Messages queued in the outbox.
    pub messages: Vec<u64>,
    /// Messages not queued, and why (no consent, no address).
    pub skipped_messages: Vec<String>,
    /// What the plugin wrote to its log during the call.
    pub log: Vec<String>,
}

/// A message waiting in the outbox, with the address the engine resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutboxMessage {
    /// Its id (for [`Engine::ack_outbox`]).
    pub id: u64,
    /// The plugin that queued it.
    pub plugin: String,
    /// `sms` or `email`.
    pub channel: String,
    /// The customer.
    pub customer: CustomerId,
    /// The phone number or email address, resolved by the engine.
    pub address: String,
    /// The template to render.
    pub template: String,
    /// Template parameters.
    pub params: Vec<(String, String)>,
    /// Whether it is marketing (queued only with consent to `marketing`;
    /// other messages need consent to `service`).
    pub marketing: bool,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
}

/// An alert the engine raised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// Its id.
    pub id: u64,
    /// When.
    pub at: DateTime<Utc>,
    /// What kind (`plugin.quarantined`, ...).
    pub kind: String,
    /// What it is about (a plugin, a principal).
    pub subject: String,
    /// What happened, for a person.
    pub message: String,
}

/// A line of a plugin's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PluginLogLine {
    /// When the call that wrote it ended.
    pub at: DateTime<Utc>,
    /// `debug`, `info`, `warn`, `error` (host log), `stdout` or `stderr`.
    pub level: String,
    /// The line.
    pub text: String,
}

/// Something that happened, for subscribed plugins.
#[derive(Clone, Debug)]
pub(crate) enum Emitted {
    Created(u64),
    Updated(u64),
    Erased(u64),
    Logged {
        customer: u64,
        interaction: u64,
        channel: Channel,
        at: i64,
    },
    FollowUpDue {
        customer: u64,
        follow_up: u64,
        due: i64,
    },
    Alert {
        kind: String,
        message: String,
    },
}

impl Emitted {
    fn kind(&self) -> EventKind {
        match self {
            Emitted::Created(_) => EventKind::CustomerCreated,
            Emitted::Updated(_) => EventKind::CustomerUpdated,
            Emitted::Erased(_) => EventKind::CustomerErased,
            Emitted::Logged { .. } => EventKind::InteractionLogged,
            Emitted::FollowUpDue { .. } => EventKind::FollowUpDue,
            Emitted::Alert { .. } => EventKind::AlertRaised,
        }
    }
}

/// A rate budget refilled continuously.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(per_minute: u32) -> Self {
        Self {
            tokens: f64::from(per_minute),
            at: Instant::now(),
        }
    }

    fn refill(&mut self, per_minute: u32) {
        let now = Instant::now();
        let rate = f64::from(per_minute) / 60.0;
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(per_minute));
        self.at = now;
    }
}

/// The plugin host's state inside an engine.
pub(crate) struct Plugins {
    settings: PluginSettings,
    /// Made on first use: an engine without plugins pays nothing.
    runtime: OnceLock<std::result::Result<Runtime, String>>,
    /// Compiled plugins by name, with the hash of their code.
    loaded: Mutex<HashMap<String, (String, Arc<Loaded>)>>,
    /// Event kinds some enabled plugin subscribes to (bits of `EventKind`).
    subscribed: AtomicU8,
    /// Rate budgets by plugin: (commands, messages).
    rates: Mutex<HashMap<String, (Bucket, Bucket)>>,
}

impl Plugins {
    pub(crate) fn new(settings: PluginSettings) -> Self {
        Self {
            settings,
            runtime: OnceLock::new(),
            loaded: Mutex::new(HashMap::new()),
            subscribed: AtomicU8::new(0),
            rates: Mutex::new(HashMap::new()),
        }
    }

    fn runtime(&self) -> Result<&Runtime> {
        self.runtime
            .get_or_init(|| Runtime::new(self.settings.clone()).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| PluginError::Runtime(e.clone()).into())
    }

    /// Remembers a compiled plugin with the hash of its code, or forgets it.
    fn cache(&self, name: &str, entry: Option<(String, Arc<Loaded>)>) {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        match entry {
            Some(entry) => loaded.insert(name.to_string(), entry),
            None => loaded.remove(name),
        };
    }

    /// Takes `commands` and `messages` from the plugin's budget, or none.
    fn take(&self, name: &str, grant: &Grant, commands: u32, messages: u32) -> Result<(), String> {
        let mut rates = self.rates.lock().unwrap_or_else(PoisonError::into_inner);
        let (c, m) = rates.entry(name.to_string()).or_insert_with(|| {
            (
                Bucket::full(grant.commands_per_minute),
                Bucket::full(grant.messages_per_minute),
            )
        });
        c.refill(grant.commands_per_minute);
        m.refill(grant.messages_per_minute);
        if f64::from(commands) > c.tokens {
            return Err(format!(
                "{commands} commands with {:.0} left of {} per minute",
                c.tokens.floor(),
                grant.commands_per_minute
            ));
        }
        if f64::from(messages) > m.tokens {
            return Err(format!(
                "{messages} messages with {:.0} left of {} per minute",
                m.tokens.floor(),
                grant.messages_per_minute
            ));
        }
        c.tokens -= f64::from(commands);
        m.tokens -= f64::from(messages);
        Ok(())
    }
}

thread_local! {
    /// How deep in event delivery this thread is: events caused by a
    /// plugin's reaction to an event are delivered, but no deeper.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

const MAX_EVENT_DEPTH: u32 = 2;

/// What a plugin call may use of the engine.
struct Services {
    inner: Arc<Inner>,
    plugin: String,
    principal: String,
    grant: Grant,
}

impl HostServices for Services {
    fn now_ms(&self) -> i64 {
        self.inner.clock.now().timestamp_millis()
    }

    fn lookup(&self, by: &wit::CustomerRef) -> Option<wit::Customer> {
        let ctx = Context::new(self.principal.clone(), "plugin lookup");
        let key = self.inner.ref_key(&self.plugin, &self.grant, by).ok()?;
        let found = self.inner.store.read(|r| {
            let Some(id) = self.inner.resolve(r, key)? else {
                return Ok::<_, Error>(None);
            };
            let actor = self.inner.actor(r, &ctx, || Event::new("customer.read"))?;
            self.inner
                .plugin_view(r, &actor, &self.grant, ctx.purpose(), id)
        });
        let view = found.ok().flatten()?;
        let event = Event::new("customer.read")
            .customer(view.id)
            .fields(view.fields.iter().map(|f| f.name.clone()).collect());
        self.inner
            .audit_read(event.record(&ctx, Outcome::Ok))
            .ok()?;
        Some(view)
    }

    fn state_get(&self, key: &str) -> Option<Vec<u8>> {
        self.inner
            .store
            .read(|r| r.plugin_state(&self.plugin, key))
            .ok()
            .flatten()
    }
}

/// Services for calls made before a plugin is installed (its manifest).
struct NoServices;

impl HostServices for NoServices {
    fn now_ms(&self) -> i64 {
        Utc::now().timestamp_millis()
    }
    fn lookup(&self, _: &wit::CustomerRef) -> Option<wit::Customer> {
        None
    }
    fn state_get(&self, _: &str) -> Option<Vec<u8>> {
        None
    }
}

fn render(c: &wit::Command) -> String {
    let text = format!("{c:?}");
    if text.len() > 2000 {
        let mut end = 2000;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes)", &text[..end], text.len())
    } else {
        text
    }
}

impl Inner {
    /// Recomputes which event kinds have an enabled subscriber.
    pub(crate) fn refresh_subscriptions(&self) -> Result<()> {
        let plugins = self.store.read(|r| r.plugins())?;
        let mut mask = 0u8;
        for p in &plugins {
            if p.status == PluginStatus::Enabled && p.grant.hooks.contains(&Hook::OnEvent) {
                for e in &p.grant.events {
                    mask |= e.bit();
                }
            }
        }
        self.plugins.subscribed.store(mask, Ordering::Release);
        Ok(())
    }

    /// The compiled plugin, compiling it if its code changed.
    fn loaded(&self, info: &PluginInfo) -> Result<Arc<Loaded>> {
        let name = &info.manifest.name;
        {
            let cache = self
                .plugins
                .loaded
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((hash, loaded)) = cache.get(name)
                && *hash == info.code_hash
            {
                return Ok(Arc::clone(loaded));
            }
        }
        let code = self
            .store
            .read(|r| r.plugin_code(name))?
            .ok_or_else(|| PluginError::Unknown(name.clone()))?;
        let loaded = Arc::new(self.plugins.runtime()?.load(&code)?);
        self.plugins
            .cache(name, Some((info.code_hash.clone(), Arc::clone(&loaded))));
        Ok(loaded)
    }

    /// A customer as a plugin's grant shows it: the policy's view for the
    /// plugin principal, narrowed to the granted fields, masked as granted.
    pub(crate) fn plugin_view(
        &self,
        r: &Reader,
        actor: &Actor,
        grant: &Grant,
        purpose: &str,
        id: u64,
    ) -> Result<Option<wit::Customer>> {
        let policy = self.policy();
        r.with_customer(id, |record| {
            let Some(record) = record else {
                return Ok::<_, Error>(None);
            };
            let facts = self.facts_of_ref(r, &mut Default::default(), &record)?;
            let decision = policy.authorize(&subject(actor), Action::Read, purpose, Some(&facts));
            if !decision.allowed() {
                return Ok(None);
            }
            let view = self.view(&record, &decision)?;
            let mut fields = Vec::new();
            for (name, value) in view.fields {
                let Some(access) = grant.fields.get(&name) else {
                    continue;
                };
                let value = if *access == FieldAccess::Masked && !view.masked.contains(&name) {
                    let kind = self.schema.field(&name).map_or(FieldType::Text, |d| d.kind);
                    mask_value(kind, &value)
                } else {
                    value
                };
                fields.push(wit::Field { name, value });
            }
            Ok(Some(wit::Customer {
                id,
                status: view.status.as_str().to_string(),
                fields,
            }))
        })
    }

    /// Calls a plugin's hook and executes what it returns.
    pub(crate) fn call_plugin(
        self: &Arc<Self>,
        name: &str,
        hook: Hook,
        entry: Entry<'_>,
        what: &str,
    ) -> Result<CallReport> {
        let info = self
            .store
            .read(|r| r.plugin(name))?
            .ok_or_else(|| PluginError::Unknown(name.to_string()))?;
        let principal = info.manifest.principal();
        let purpose = match hook {
            Hook::Ingest => "plugin ingest",
            Hook::OnEvent => "plugin event",
        };
        let ctx = Context::new(principal.clone(), purpose);
        let target = format!("plugin {name} {what}");
        let call_event = || Event::new("plugin.call").target(target.clone());
        if info.status != PluginStatus::Enabled {
            let error = PluginError::NotEnabled {
                name: name.to_string(),
                status: info.status.to_string(),
            };
            return self.deny(&ctx, call_event(), error.to_string());
        }
        if !info.grant.hooks.contains(&hook) {
            let error = PluginError::Hook {
                name: name.to_string(),
                hook: format!("{hook:?}"),
            };
            return self.deny(&ctx, call_event(), error.to_string());
        }
        let loaded = self.loaded(&info)?;
        let runtime = self.plugins.runtime()?;
        let services = Arc::new(Services {
            inner: Arc::clone(self),
            plugin: name.to_string(),
            principal: principal.clone(),
            grant: info.grant.clone(),
        });
        let limits = CallLimitsSpec {
            memory: (info.grant.memory_mib as usize) << 20,
            deadline: Duration::from_millis(u64::from(info.grant.deadline_ms)),
        };
        let output = match runtime.call(&loaded, services, limits, entry) {
            Ok(output) => output,
            Err(CallError::Host(reason)) => {
                self.record_failure(&ctx, &info, None, &reason, &[], call_event())?;
                return Err(PluginError::Runtime(reason).into());
            }
            Err(CallError::Fault(fault, log)) => {
                self.record_failure(
                    &ctx,
                    &info,
                    Some(&fault),
                    &fault.to_string(),
                    &log,
                    call_event(),
                )?;
                return Err(PluginError::Fault {
                    name: name.to_string(),
                    fault,
                }
                .into());
            }
        };
        let log_text = output
            .log
            .iter()
            .map(|l| format!("{}: {}", l.level, l.text))
            .collect();
        let commands = match output.result {
            Ok(commands) => commands,
            Err(message) => {
                let reason = format!("rejected: {message}");
                self.record_failure(&ctx, &info, None, &reason, &output.log, call_event())?;
                return Err(PluginError::Rejected {
                    name: name.to_string(),
                    message,
                }
                .into());
            }
        };
        let rendered: Vec<String> = commands.iter().map(render).collect();
        let leftovers = Leftovers {
            state_writes: &output.state_writes,
            log: &output.log,
            reset_faults: info.consecutive_faults > 0,
            call_event: call_event().fields(
                commands
                    .iter()
                    .map(|c| crate::plugin::runtime::command_kind(c).as_str().to_string())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            ),
        };
        // The grant first (outside it is a fault), then the rate (a refusal,
        // not a fault), then one transaction.
        let executed = self
            .check_grant(name, &info.grant, &commands)
            .and_then(|()| {
                let (total, messages) = budget(&commands);
                self.plugins
                    .take(name, &info.grant, total, messages)
                    .map_err(|reason| {
                        PluginError::RateLimited {
                            name: name.to_string(),
                            reason,
                        }
                        .into()
                    })
            })
            .and_then(|()| self.apply_commands(&ctx, name, &info.grant, &commands, leftovers));
        let applied = match executed {
            Ok(applied) => applied,
            Err(e) => {
                let fault = match &e {
                    Error::Plugin(PluginError::Fault { fault, .. }) => Some(fault.clone()),
                    _ => None,
                };
                self.record_failure(
                    &ctx,
                    &info,
                    fault.as_ref(),
                    &e.to_string(),
                    &output.log,
                    call_event(),
                )?;
                return Err(e);
            }
        };
        let report = CallReport {
            plugin: name.to_string(),
            commands: rendered,
            created: applied.created.clone(),
            updated: applied.updated.clone(),
            interactions: applied.interactions.iter().map(|i| i.1).collect(),
            follow_ups: applied.follow_ups.clone(),
            messages: applied.messages.clone(),
            skipped_messages: applied.skipped_messages.clone(),
            log: log_text,
        };
        self.emit(events_of(&applied), Some(name));
        Ok(report)
    }

    /// Audits a failed call and keeps its log; a fault counts toward
    /// quarantine, which raises an alert.
    fn record_failure(
        self: &Arc<Self>,
        ctx: &Context,
        info: &PluginInfo,
        fault: Option<&Fault>,
        reason: &str,
        log: &[LogLine],
        call_event: Event<'_>,
    ) -> Result<()> {
        let name = info.manifest.name.as_str();
        let quarantine_after = self.plugins.settings.quarantine_after;
        let alert = self.store.write(|w| {
            audit::append(
                w,
                self.ring.audit_key(),
                &call_event.record(ctx, Outcome::Failed(reason.to_string())),
            )?;
            write_log(w, name, log)?;
            let mut alert = None;
            if fault.is_some()
                && let Some(mut stored) = w.plugin(name)?
            {
                stored.consecutive_faults = stored.consecutive_faults.saturating_add(1);
                if stored.consecutive_faults >= quarantine_after
                    && stored.status == PluginStatus::Enabled
                {
                    stored.status = PluginStatus::Quarantined {
                        reason: reason.to_string(),
                    };
                    let message = format!(
                        "plugin `{name}` quarantined after {} consecutive faults; last: {reason}",
                        stored.consecutive_faults
                    );
                    alert = Some(self.put_alert(w, ctx, "plugin.quarantined", name, &message)?);
                }
                w.put_plugin(&stored, None)?;
            }
            Ok::<_, Error>(alert)
        })?;
        if let Some(alert) = alert {
            self.refresh_subscriptions()?;
            self.emit(vec![alert], Some(name));
        }
        Ok(())
    }

    /// Records an alert (and its audit entry) inside a write transaction.
    fn put_alert(
        &self,
        w: &mut crate::store::Writer<'_>,
        ctx: &Context,
        kind: &str,
        subject: &str,
        message: &str,
    ) -> Result<Emitted> {
        let id = self.reserve_ids(1);
        w.put_alert(
            id,
            &StoredAlert {
                at: now_micros(),
                kind: kind.to_string(),
                subject: subject.to_string(),
                message: message.to_string(),
            },
        )?;
        w.record_id(id);
        let event = Event::new("alert.raise").target(format!("{kind} {subject}"));
        audit::append(w, self.ring.audit_key(), &event.record(ctx, Outcome::Ok))?;
        Ok(Emitted::Alert {
            kind: kind.to_string(),
            message: message.to_string(),
        })
    }

    /// Whether some enabled plugin subscribes to `kind`.
    pub(crate) fn wants(&self, kind: EventKind) -> bool {
        self.plugins.subscribed.load(Ordering::Acquire) & kind.bit() != 0
    }

    /// Delivers events to subscribed plugins (not to `source`), after the
    /// change that caused them committed. A plugin's failure is its own:
    /// it is audited and counted, and never reaches the caller.
    pub(crate) fn emit(self: &Arc<Self>, events: Vec<Emitted>, source: Option<&str>) {
        let mask = self.plugins.subscribed.load(Ordering::Acquire);
        if mask == 0 || events.iter().all(|e| mask & e.kind().bit() == 0) {
            return;
        }
        let depth = DEPTH.with(Cell::get);
        if depth >= MAX_EVENT_DEPTH {
            return;
        }
        let Ok(plugins) = self.store.read(|r| r.plugins()) else {
            return;
        };
        DEPTH.with(|d| d.set(depth + 1));
        for event in &events {
            let kind = event.kind();
            if mask & kind.bit() == 0 {
                continue;
            }
            for p in &plugins {
                let name = p.manifest.name.as_str();
                if Some(name) == source
                    || p.status != PluginStatus::Enabled
                    || !p.grant.hooks.contains(&Hook::OnEvent)
                    || !p.grant.events.contains(&kind)
                {
                    continue;
                }
                let Ok(Some(wit_event)) = self.wit_event(p, event) else {
                    continue;
                };
                let what = format!("on-event {}", event_kind_of(&wit_event).as_str());
                // Failures are audited inside; the event's cause stands.
                let _ = self.call_plugin(name, Hook::OnEvent, Entry::OnEvent(&wit_event), &what);
            }
        }
        DEPTH.with(|d| d.set(depth));
    }

    /// The event as plugin `p` may see it; `None` when the policy hides the
    /// customer from it.
    fn wit_event(&self, p: &PluginInfo, event: &Emitted) -> Result<Option<wit::Event>> {
        let ctx = Context::new(p.manifest.principal(), "plugin event");
        let view = |id: u64| -> Result<Option<wit::Customer>> {
            self.store.read(|r| {
                let actor = match Actor::resolve(ctx.principal(), r.principal(ctx.principal())?) {
                    Ok(a) => a,
                    Err(_) => return Ok(None),
                };
                self.plugin_view(r, &actor, &p.grant, ctx.purpose(), id)
            })
        };
        let audited = |c: wit::Customer| -> Result<wit::Customer> {
            let e = Event::new("customer.read")
                .customer(c.id)
                .fields(c.fields.iter().map(|f| f.name.clone()).collect());
            self.audit_read(e.record(&ctx, Outcome::Ok))?;
            Ok(c)
        };
        Ok(Some(match event {
            Emitted::Created(id) => match view(*id)? {
                Some(c) => wit::Event::CustomerCreated(audited(c)?),
                None => return Ok(None),
            },
            Emitted::Updated(id) => match view(*id)? {
                Some(c) => wit::Event::CustomerUpdated(audited(c)?),
                None => return Ok(None),
            },
            Emitted::Erased(id) => wit::Event::CustomerErased(*id),
            Emitted::Logged {
                customer,
                interaction,
                channel,
                at,
            } => match view(*customer)? {
                Some(c) => wit::Event::InteractionLogged(wit::InteractionLogged {
                    customer: audited(c)?,
                    interaction: *interaction,
                    channel: wit_channel(*channel),
                    at: at / 1000,
                }),
                None => return Ok(None),
            },
            Emitted::FollowUpDue {
                customer,
                follow_up,
                due,
            } => match view(*customer)? {
                Some(c) => {
                    let note = match p.grant.fields.get("note") {
                        Some(FieldAccess::Full) => self.follow_up_note(*follow_up)?,
                        _ => None,
                    };
                    wit::Event::FollowUpDue(wit::FollowUpDue {
                        customer: audited(c)?,
                        follow_up: *follow_up,
                        due: due / 1000,
                        note,
                    })
                }
                None => return Ok(None),
            },
            Emitted::Alert { kind, message } => wit::Event::AlertRaised(wit::Alert {
                kind: kind.clone(),
                message: message.clone(),
            }),
        }))
    }

    fn follow_up_note(&self, id: u64) -> Result<Option<String>> {
        let Some(f) = self.store.read(|r| r.followup(id))? else {
            return Ok(None);
        };
        let key = self.data_key(f.customer)?;
        Ok(Some(key.open(&format!("followup/{id}/note"), &f.note)?))
    }
}

fn wit_channel(c: Channel) -> wit::Channel {
    match c {
        Channel::Call => wit::Channel::Call,
        Channel::Email => wit::Channel::Email,
        Channel::Chat => wit::Channel::Chat,
        Channel::Sms => wit::Channel::Sms,
        Channel::Meeting => wit::Channel::Meeting,
        Channel::Visit => wit::Channel::Visit,
        Channel::Order => wit::Channel::Order,
    }
}

fn events_of(applied: &Applied) -> Vec<Emitted> {
    let mut events: Vec<Emitted> = applied
        .created
        .iter()
        .map(|id| Emitted::Created(*id))
        .collect();
    events.extend(applied.updated.iter().map(|id| Emitted::Updated(*id)));
    events.extend(
        applied
            .interactions
            .iter()
            .map(|&(customer, interaction, channel, at)| Emitted::Logged {
                customer,
                interaction,
                channel,
                at,
            }),
    );
    events
}

fn code_hash(wasm: &[u8]) -> String {
    blake3::hash(wasm).to_hex().to_string()
}

impl Engine {
    /// Compiles a plugin in the sandbox and returns what it asks for,
    /// without installing it. Refuses files that are not components of a
    /// compatible interface version.
    pub fn inspect_plugin(&self, wasm: &[u8]) -> Result<PluginManifest> {
        let runtime = self.inner.plugins.runtime()?;
        let loaded = runtime.load(wasm)?;
        Ok(runtime.manifest(&loaded, Arc::new(NoServices))?)
    }

    /// Installs (or upgrades) a plugin with the operator's `grant`, which
    /// must not exceed its manifest. The plugin acts as principal
    /// `plugin:<name>` with the role `integration`. Admins only.
    pub fn install_plugin(&self, ctx: &Context, wasm: &[u8], grant: Grant) -> Result<PluginInfo> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let runtime = inner.plugins.runtime()?;
        let loaded = Arc::new(runtime.load(wasm)?);
        let manifest = runtime.manifest(&loaded, Arc::new(NoServices))?;
        grant.check(&manifest, runtime.settings())?;
        inner.check_roles([PLUGIN_ROLE].into_iter())?;
        let name = manifest.name.clone();
        let hash = code_hash(wasm);
        let event = || {
            Event::new("plugin.install")
                .target(format!("plugin {name} {} {hash}", manifest.version))
                .fields(grant.fields.keys().cloned().collect())
        };
        let info = inner.store.write(|w| {
            if let Err(e) = admin_only(w, ctx, "install plugins")? {
                return refuse(inner, w, ctx, event(), e);
            }
            if let Some(owner) = &grant.owner
                && let Err(e) = inner.check_owner(w, owner)?
            {
                return refuse(inner, w, ctx, event(), e);
            }
            let principal = manifest.principal();
            let existing = w.principal(&principal)?;
            w.put_principal(&StoredPrincipal {
                name: principal,
                kind: PrincipalKind::Plugin,
                roles: vec![PLUGIN_ROLE.to_string()],
                active: true,
                created_at: existing.as_ref().map_or_else(now_micros, |p| p.created_at),
                attributes: existing.map(|p| p.attributes).unwrap_or_default(),
            })?;
            let actor = super::customers::writer_actor(w, ctx)?
                .map_or_else(|_| ctx.principal().to_string(), |a| a.name);
            let info = PluginInfo {
                manifest: manifest.clone(),
                grant: grant.clone(),
                status: PluginStatus::Enabled,
                consecutive_faults: 0,
                code_hash: hash.clone(),
                installed_at: now_micros(),
                installed_by: actor,
            };
            w.put_plugin(&info, Some(wasm))?;
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(info))
        })??;
        inner.plugins.cache(&name, Some((hash, loaded)));
        inner
            .plugins
            .rates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&name);
        inner.refresh_subscriptions()?;
        Ok(info)
    }

    /// Every installed plugin. Admins only.
    pub fn plugins(&self, ctx: &Context) -> Result<Vec<PluginInfo>> {
        let ctx = &self.inner.authenticate(ctx)?;
        self.admin_read(ctx, "list plugins", |r| Ok(r.plugins()?))
    }

    /// Enables a plugin (clearing a quarantine and its fault count) or
    /// disables it. Admins only.
    pub fn set_plugin_enabled(&self, ctx: &Context, name: &str, enabled: bool) -> Result<()> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let verb = if enabled { "enable" } else { "disable" };
        let event = || Event::new("plugin.status").target(format!("plugin {name} {verb}"));
        inner.store.write(|w| {
            if let Err(e) = admin_only(w, ctx, "change plugins")? {
                return refuse(inner, w, ctx, event(), e);
            }
            let Some(mut info) = w.plugin(name)? else {
                return refuse(
                    inner,
                    w,
                    ctx,
                    event(),
                    PluginError::Unknown(name.into()).into(),
                );
            };
            info.status = if enabled {
                PluginStatus::Enabled
            } else {
                PluginStatus::Disabled
            };
            info.consecutive_faults = 0;
            w.put_plugin(&info, None)?;
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(()))
        })??;
        inner.refresh_subscriptions()
    }

    /// Removes a plugin with its code, state and log, and deactivates its
    /// principal (kept for the audit chain). Admins only.
    pub fn remove_plugin(&self, ctx: &Context, name: &str) -> Result<()> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let event = || Event::new("plugin.remove").target(format!("plugin {name}"));
        inner.store.write(|w| {
            if let Err(e) = admin_only(w, ctx, "remove plugins")? {
                return refuse(inner, w, ctx, event(), e);
            }
            let Some(info) = w.plugin(name)? else {
                return refuse(
                    inner,
                    w,
                    ctx,
                    event(),
                    PluginError::Unknown(name.into()).into(),
                );
            };
            w.remove_plugin(name)?;
            if let Some(mut p) = w.principal(&info.manifest.principal())? {
                p.active = false;
                w.put_principal(&p)?;
            }
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(()))
        })??;
        inner.plugins.cache(name, None);
        inner.refresh_subscriptions()
    }

    /// Hands an external payload (a webhook body, an export file) to a
    /// plugin's `ingest`; the commands it returns are checked against its
    /// grant and executed in one transaction as `plugin:<name>`. The host
    /// calling this vouches for the payload's origin.
    pub fn ingest(&self, plugin: &str, payload: &[u8]) -> Result<CallReport> {
        self.inner
            .call_plugin(plugin, Hook::Ingest, Entry::Ingest(payload), "ingest")
    }

    /// Delivers `follow-up-due` events for open follow-ups due at or before
    /// `until` that were not delivered yet; returns how many. Each is
    /// marked delivered before delivery (at most once).
    pub fn dispatch_due_follow_ups(&self, until: DateTime<Utc>) -> Result<usize> {
        let inner = &self.inner;
        let due = inner.store.read(|r| {
            let mut out = Vec::new();
            for f in r.followups_due(until.timestamp_micros(), None)? {
                if !f.done && !r.notified(f.id)? {
                    out.push(f);
                }
            }
            Ok::<_, Error>(out)
        })?;
        if due.is_empty() {
            return Ok(0);
        }
        inner.store.write(|w| {
            let now = now_micros();
            for f in &due {
                w.mark_notified(f.id, now)?;
            }
            Ok::<_, Error>(())
        })?;
        let events = due
            .iter()
            .map(|f| Emitted::FollowUpDue {
                customer: f.customer,
                follow_up: f.id,
                due: f.due,
            })
            .collect();
        inner.emit(events, None);
        Ok(due.len())
    }

    /// Messages waiting for delivery, oldest first, with their addresses
    /// resolved. A message whose customer withdrew consent to its purpose
    /// since it was queued is dropped here (audited), never shown. Admins
    /// only.
    pub fn outbox(&self, ctx: &Context, limit: usize) -> Result<Vec<OutboxMessage>> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let event = || Event::new("outbox.read");
        let queued = inner.store.read(|r| r.messages(limit))?;
        let mut keys = HashMap::new();
        for (_, m) in &queued {
            keys.entry(m.customer)
                .or_insert_with(|| inner.data_key(m.customer).ok());
        }
        inner.store.write(|w| {
            if let Err(e) = admin_only(w, ctx, "read the outbox")? {
                return refuse(inner, w, ctx, event(), e);
            }
            let mut out = Vec::new();
            let mut customers = Vec::new();
            for (id, m) in queued {
                let field = address_field(&m.channel).unwrap_or("phone");
                let purpose = super::commands::message_purpose(m.marketing);
                // The engine's own legal notices go whatever the consents.
                let withdrawn = m.plugin != super::retention::NOTICE_SENDER
                    && !super::commands::consented(w, m.customer, purpose)?;
                let record = w.customer(m.customer)?;
                let address = match (&record, keys.get(&m.customer).cloned().flatten()) {
                    (Some(record), Some(key)) => match record.sealed.get(field) {
                        Some(s) => Some(key.open(field, &s.sealed)?),
                        None => record.public.get(field).cloned(),
                    },
                    _ => None,
                };
                let drop_reason = if withdrawn {
                    Some("consent withdrawn")
                } else if address.is_none() {
                    Some("no address")
                } else {
                    None
                };
                if let Some(reason) = drop_reason {
                    w.remove_message(id)?;
                    let e = Event::new("outbox.drop")
                        .customer(m.customer)
                        .target(format!("message {id}"));
                    audit::append(
                        w,
                        inner.ring.audit_key(),
                        &e.record(ctx, Outcome::Denied(reason.into())),
                    )?;
                    continue;
                }
                customers.push(m.customer);
                out.push(OutboxMessage {
                    id,
                    plugin: m.plugin,
                    channel: m.channel,
                    customer: m.customer,
                    address: address.unwrap_or_default(),
                    template: m.template,
                    params: m.params,
                    marketing: m.marketing,
                    created_at: from_micros(m.created_at),
                });
            }
            let mut e = event().fields(vec!["phone".into(), "email".into()]);
            e.customers = customers;
            audit::append(w, inner.ring.audit_key(), &e.record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(out))
        })?
    }

    /// Removes delivered messages from the outbox; returns how many were
    /// there. Admins only.
    pub fn ack_outbox(&self, ctx: &Context, ids: &[u64]) -> Result<usize> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let event = || Event::new("outbox.ack").target(format!("{} messages", ids.len()));
        inner.store.write(|w| {
            if let Err(e) = admin_only(w, ctx, "acknowledge outbox messages")? {
                return refuse(inner, w, ctx, event(), e);
            }
            let mut removed = 0;
            for id in ids {
                if w.remove_message(*id)? {
                    removed += 1;
                }
            }
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(removed))
        })?
    }

    /// A customer's consents in force: purpose (or `purpose:field` for a
    /// separate consent to a sensitive field) → granted. Needs the
    /// policy's `read`.
    pub fn consents(&self, ctx: &Context, customer: CustomerId) -> Result<BTreeMap<String, bool>> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let event = move || Event::new("consent.read").customer(customer);
        let policy = inner.policy();
        let result = inner.store.read(|r| {
            let actor = inner.actor(r, ctx, event)?;
            let Some(record) = r.customer(customer)? else {
                return Ok::<_, Error>(Err(Error::NotFound(format!("customer {customer}"))));
            };
            let facts = inner.facts_of(r, &mut Default::default(), &record)?;
            let decision =
                policy.authorize(&subject(&actor), Action::Read, ctx.purpose(), Some(&facts));
            if !decision.allowed() {
                return Ok(Err(Error::Denied(refusal(&decision))));
            }
            Ok(Ok(r
                .consents(customer)?
                .into_iter()
                .map(|(p, c)| (p, c.granted))
                .collect()))
        })?;
        match result {
            Ok(map) => {
                inner.audit_read(event().record(ctx, Outcome::Ok))?;
                Ok(map)
            }
            Err(Error::Denied(reason)) => inner.deny(ctx, event(), reason),
            Err(e) => Err(e),
        }
    }

    /// The newest `limit` alerts, newest first. Admins only.
    pub fn alerts(&self, ctx: &Context, limit: usize) -> Result<Vec<Alert>> {
        let ctx = &self.inner.authenticate(ctx)?;
        let stored = self.admin_read(ctx, "read alerts", |r| Ok(r.alerts(limit)?))?;
        Ok(stored
            .into_iter()
            .map(|(id, a)| Alert {
                id,
                at: from_micros(a.at),
                kind: a.kind,
                subject: a.subject,
                message: a.message,
            })
            .collect())
    }

    /// The newest `limit` lines of a plugin's log, oldest first. Admins only.
    pub fn plugin_log(
        &self,
        ctx: &Context,
        name: &str,
        limit: usize,
    ) -> Result<Vec<PluginLogLine>> {
        let ctx = &self.inner.authenticate(ctx)?;
        let lines = self.admin_read(ctx, "read plugin logs", |r| Ok(r.plugin_log(name, limit)?))?;
        Ok(lines
            .into_iter()
            .map(|l| PluginLogLine {
                at: from_micros(l.at),
                level: l.level,
                text: l.text,
            })
            .collect())
    }

    /// Runs `f` on a snapshot if the actor is an admin; audited.
    fn admin_read<T>(
        &self,
        ctx: &Context,
        what: &str,
        f: impl FnOnce(&Reader) -> Result<T>,
    ) -> Result<T> {
        let inner = &self.inner;
        let event = || Event::new("admin.read").target(what.to_string());
        let (actor, value) = inner.store.read(|r| {
            let actor = inner.actor(r, ctx, || Event::new("admin.read"))?;
            if !actor.admin {
                return Ok::<_, Error>((actor, None));
            }
            Ok((actor, Some(f(r)?)))
        })?;
        match value {
            Some(v) => {
                inner.audit_read(event().record(ctx, Outcome::Ok))?;
                Ok(v)
            }
            None => inner.deny(
                ctx,
                event(),
                format!("principal `{}` may not {what}: only admins may", actor.name),
            ),
        }
    }
}
