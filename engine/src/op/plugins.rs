//! Plugin calls on the path: a call is an operation of the plugin's
//! principal (`plugin:<name>`): identity, status and hook, the sandboxed
//! call (its lookups read through the path), then its commands in one
//! write. Faults are counted and quarantine the plugin with an alert.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::alerts::Raise;
use super::commands::{CallDone, StateWrite};
use super::{Caller, Context, Core, Entry, Op, Read};
use crate::audit::Outcome;
use crate::crypto::Sealed;
use crate::guard::Access;
use crate::model::Sensitivity;
use crate::model::{Channel, CustomerId, FieldType, FollowUpId, InteractionId, mask_value};
use crate::plugin::runtime::{
    CallError, CallLimitsSpec, Entry as Call, HostServices, Loaded, LogLine, Runtime, command_kind,
    wit,
};
use crate::plugin::{
    EventKind, Fault, FieldAccess, Grant, Hook, PLUGIN_PRINCIPAL_PREFIX, PluginError, PluginInfo,
    PluginSettings, PluginStatus,
};
use crate::policy::{Action, Decision, Treatment};
use crate::records::Slot;
use crate::store::{CustomerRef, LogText, Severity, StoredLogLine, Txn};
use crate::{Denied, Error, Result};

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
pub(crate) struct Host {
    settings: PluginSettings,
    /// Made on first use: an engine without plugins pays nothing.
    runtime: OnceLock<std::result::Result<Runtime, String>>,
    /// Compiled plugins by name, with the hash of their code.
    loaded: Mutex<HashMap<String, (String, Arc<Loaded>)>>,
    /// Event kinds some enabled plugin subscribes to (bits of `EventKind`).
    subscribed: AtomicU8,
    /// Rate budgets by plugin: (commands, messages).
    rates: Mutex<HashMap<String, (Bucket, Bucket)>>,
    /// Call budgets by plugin.
    calls: Mutex<HashMap<String, Bucket>>,
}

impl Host {
    pub(crate) fn new(settings: PluginSettings) -> Self {
        Self {
            settings,
            runtime: OnceLock::new(),
            loaded: Mutex::new(HashMap::new()),
            subscribed: AtomicU8::new(0),
            rates: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn runtime(&self) -> Result<&Runtime> {
        self.runtime
            .get_or_init(|| Runtime::new(self.settings.clone()).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| PluginError::Runtime(e.clone()).into())
    }

    /// Remembers a compiled plugin with the hash of its code (and a fresh
    /// rate budget), or forgets it.
    pub(crate) fn cache(&self, name: &str, entry: Option<(String, Arc<Loaded>)>) {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        match entry {
            Some(entry) => loaded.insert(name.to_string(), entry),
            None => loaded.remove(name),
        };
        let mut rates = self.rates.lock().unwrap_or_else(PoisonError::into_inner);
        rates.remove(name);
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        calls.remove(name);
    }

    /// Takes one call from the plugin's budget of calls, or says why not.
    fn take_call(&self, name: &str) -> Result<(), String> {
        let per_minute = self.settings.calls_per_minute;
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = (calls.entry(name.to_string())).or_insert_with(|| Bucket::full(per_minute));
        bucket.refill(per_minute);
        if bucket.tokens < 1.0 {
            return Err(format!(
                "it may be called {per_minute} times per minute, whatever its calls return; \
                 none is left"
            ));
        }
        bucket.tokens -= 1.0;
        Ok(())
    }

    /// The limits of the sandbox.
    pub(crate) fn settings(&self) -> &PluginSettings {
        &self.settings
    }

    /// Whether some enabled plugin subscribes to `kind`.
    pub(crate) fn wants(&self, kind: EventKind) -> bool {
        self.subscribed.load(Ordering::Acquire) & kind.bit() != 0
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

/// What a plugin call may use of the engine: lookups go through the read
/// path as the plugin's principal.
struct Services {
    core: Arc<Core>,
    plugin: String,
    principal: String,
    grant: Grant,
}

impl HostServices for Services {
    fn now_ms(&self) -> i64 {
        self.core.records.clock.now().timestamp_millis()
    }

    fn lookup(&self, by: &wit::CustomerRef) -> Option<wit::Customer> {
        let ctx = Context::new(self.principal.clone(), "plugin lookup");
        // By a phone or an email, a lookup by value: its misses count.
        let by_value = matches!(by, wit::CustomerRef::Phone(_) | wit::CustomerRef::Email(_));
        let access = if by_value {
            Access::Lookup
        } else {
            Access::Read
        };
        let op = Op::new(Entry::new("customer.read").target("plugin lookup")).access(access);
        // Every answer is audited, a refused reference and a miss included.
        self.core
            .read(&ctx, op, |read| {
                let key = (self.core.ref_key(&self.plugin, &self.grant, by))
                    .map_err(|reason| Error::Denied(Denied::Rule(reason)))?;
                if by_value {
                    read.check_lookup(1)?;
                }
                let Some(id) = self.core.resolve(read.snapshot(), key)? else {
                    return Err(Error::NotFound("customer by that reference".into()));
                };
                read.customer(id, Action::Read, |read, record, decision| {
                    // A hit by phone or email confirms the value: only for
                    // a principal the policy shows that field in full.
                    let field = match by {
                        wit::CustomerRef::Phone(_) => Some("phone"),
                        wit::CustomerRef::Email(_) => Some("email"),
                        _ => None,
                    };
                    if let Some(field) = field {
                        let schema = &read.records().schema;
                        let sensitivity = schema
                            .field(field)
                            .map_or(Sensitivity::Personal, |d| d.sensitivity);
                        if decision.treatment(field, sensitivity) != Treatment::Full {
                            let why = format!("the policy does not show `{field}` in full");
                            return Err(Denied::Policy { reason: why }.into());
                        }
                    }
                    read.plugin_view(&self.grant, record, &decision)
                })
            })
            .ok()
    }

    fn state_get(&self, key: &str) -> Option<Vec<u8>> {
        let ring = &self.core.records.ring;
        let name = ring.plugin_state_name(&self.plugin, key);
        let found = self.core.store.read(|r| {
            Ok::<_, Error>(match r.plugin_state(&self.plugin, &name)? {
                Some(sealed) => Some((true, sealed)),
                // Written in the clear, under its own key, by a version
                // before sealing; sealed when next written.
                None => r.plugin_state(&self.plugin, key)?.map(|v| (false, v)),
            })
        });
        match found.ok().flatten()? {
            (true, bytes) => {
                let sealed = Sealed::from_bytes(&bytes)?;
                ring.open_plugin_state(&self.plugin, &name, &sealed).ok()
            }
            (false, clear) => Some(clear),
        }
    }

    fn customer_state_get(&self, customer: u64, key: &str) -> Option<Vec<u8>> {
        let name = self.core.records.ring.plugin_state_name(&self.plugin, key);
        let found = self
            .core
            .store
            .read(|r| r.customer_state(customer, &self.plugin, &name));
        let sealed = Sealed::from_bytes(&found.ok().flatten()?)?;
        let slot = Slot::PluginState {
            plugin: &self.plugin,
            name: &name,
        };
        // A customer whose key is destroyed: nothing opens.
        self.core.records.open_bytes(customer, slot, &sealed).ok()
    }
}

/// Services for calls made before a plugin is installed (its manifest).
pub(crate) struct NoServices;

impl HostServices for NoServices {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
    fn lookup(&self, _: &wit::CustomerRef) -> Option<wit::Customer> {
        None
    }
    fn state_get(&self, _: &str) -> Option<Vec<u8>> {
        None
    }
    fn customer_state_get(&self, _: u64, _: &str) -> Option<Vec<u8>> {
        None
    }
}

fn render(c: &wit::Command) -> String {
    let text = format!("{c:?}");
    if text.len() <= 2000 {
        return text;
    }
    let mut end = 2000;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… ({} bytes)",
        text.get(..end).unwrap_or_default(),
        text.len()
    )
}

/// The hash a plugin's code is known by.
pub(crate) fn code_hash(wasm: &[u8]) -> String {
    blake3::hash(wasm).to_hex().to_string()
}

pub(crate) fn wit_channel(c: Channel) -> wit::Channel {
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

impl Read<'_> {
    /// A customer as a plugin's grant shows it: the policy's view for the
    /// plugin principal, narrowed to the granted fields, masked as granted.
    pub(crate) fn plugin_view(
        &mut self,
        grant: &Grant,
        record: &CustomerRef<'_>,
        decision: &Decision,
    ) -> Result<wit::Customer> {
        let view = self.prepare(record, decision)?.open(self.records())?;
        let mut fields = Vec::new();
        let mut masked = Vec::new();
        for (name, value) in view.fields {
            let Some(access) = grant.fields.get(&name) else {
                continue;
            };
            let value = if *access == FieldAccess::Masked && !view.masked.contains(&name) {
                let schema = &self.records().schema;
                let kind = schema.field(&name).map_or(FieldType::Text, |d| d.kind);
                masked.push(name.clone());
                mask_value(kind, &value)
            } else {
                if view.masked.contains(&name) {
                    masked.push(name.clone());
                }
                value
            };
            fields.push(wit::Field { name, value });
        }
        self.touched([view.id], fields.iter().map(|f| f.name.clone()));
        Ok(wit::Customer {
            id: view.id,
            status: view.status.as_str().to_string(),
            fields,
            masked,
        })
    }
}

impl Core {
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
        let code = (self.store.read(|r| r.plugin_code(name))?)
            .ok_or_else(|| PluginError::Unknown(name.clone()))?;
        let loaded = Arc::new(self.plugins.runtime()?.load(&code)?);
        let mut cache = self
            .plugins
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        cache.insert(name.clone(), (info.code_hash.clone(), Arc::clone(&loaded)));
        Ok(loaded)
    }

    /// The identity step of a call, as the plugin's principal, then its
    /// status and hook: the plugin, its caller and the call's entry.
    fn admit_call(
        &self,
        name: &str,
        hook: Hook,
        what: &str,
    ) -> Result<(PluginInfo, Caller, Entry)> {
        let info = (self.store.read(|r| r.plugin(name))?)
            .ok_or_else(|| PluginError::Unknown(name.to_string()))?;
        let purpose = match hook {
            Hook::Ingest => "plugin ingest",
            Hook::OnEvent => "plugin event",
        };
        let ctx = Context::new(info.manifest.principal(), purpose);
        let entry = Entry::new("plugin.call").target(format!("plugin {name} {what}"));
        let caller = self
            .admit_early(&ctx, &Op::new(entry.clone()))?
            .caller()
            .clone();
        let refused = match () {
            () if info.status != PluginStatus::Enabled => Some(Denied::PluginNotEnabled {
                name: name.to_string(),
                status: info.status.to_string(),
            }),
            () if !info.grant.hooks.contains(&hook) => Some(Denied::HookNotGranted {
                name: name.to_string(),
                hook: format!("{hook:?}"),
            }),
            () => None,
        };
        match refused {
            Some(denied) => self.refuse(&caller, &entry, denied.into()),
            None => Ok((info, caller, entry)),
        }
    }

    /// Calls a plugin's hook as its principal and executes what it returns.
    pub(crate) fn call_plugin(
        self: &Arc<Self>,
        name: &str,
        hook: Hook,
        call: Call<'_>,
        what: &str,
    ) -> Result<CallReport> {
        let (info, caller, entry) = self.admit_call(name, hook, what)?;
        // Every call counts, whatever it returns.
        if let Err(reason) = self.plugins.take_call(name) {
            self.record_failure(&caller, &info, None, &reason, &[], &entry)?;
            let name = name.to_string();
            return Err(PluginError::RateLimited { name, reason }.into());
        }
        let loaded = self.loaded(&info)?;
        let runtime = self.plugins.runtime()?;
        let services = Arc::new(Services {
            core: Arc::clone(self),
            plugin: name.to_string(),
            principal: info.manifest.principal(),
            grant: info.grant.clone(),
        });
        let limits = CallLimitsSpec {
            memory: (info.grant.memory_mib as usize) << 20,
            deadline: Duration::from_millis(u64::from(info.grant.deadline_ms)),
        };
        let failed = |fault: Option<&Fault>, reason: &str, log: &[LogLine]| {
            self.record_failure(&caller, &info, fault, reason, log, &entry)
        };
        let output = match runtime.call(&loaded, services, limits, call) {
            Ok(output) => output,
            Err(CallError::Host(reason)) => {
                failed(None, &reason, &[])?;
                return Err(PluginError::Runtime(reason).into());
            }
            Err(CallError::Fault(fault, log)) => {
                failed(Some(&fault), &fault.to_string(), &log)?;
                let name = name.to_string();
                return Err(PluginError::Fault { name, fault }.into());
            }
        };
        let commands = match output.result {
            Ok(commands) => commands,
            Err(message) => {
                failed(None, &format!("rejected: {message}"), &output.log)?;
                let name = name.to_string();
                return Err(PluginError::Rejected { name, message }.into());
            }
        };
        let kinds: BTreeSet<String> = (commands.iter())
            .map(|c| command_kind(c).as_str().to_string())
            .collect();
        let sealed = self.seal_state(name, &output.state_writes, &output.customer_writes);
        let state_writes = match sealed {
            Ok(writes) => writes,
            Err(e) => {
                failed(None, &e.to_string(), &output.log)?;
                return Err(e);
            }
        };
        let done = CallDone {
            info: &info,
            state_writes: &state_writes,
            log: &output.log,
            entry: entry.clone().fields(kinds.into_iter().collect()),
        };
        // The grant first (outside it is a fault), then the rate (a refusal,
        // not a fault), then the plan: refused, they are the call's failure.
        let owner = (info.grant.owner.clone()).unwrap_or_else(|| info.manifest.principal());
        let planned = self
            .check_grant(name, &info.grant, &commands)
            .and_then(|()| self.take_rate(name, &info.grant, &commands))
            .and_then(|()| self.plan(name, &info.grant, &owner, &commands));
        let plan = match planned {
            Ok(plan) => plan,
            Err(e) => {
                let fault = match &e {
                    Error::Plugin(PluginError::Fault { fault, .. }) => Some(fault.clone()),
                    _ => None,
                };
                failed(fault.as_ref(), &e.to_string(), &output.log)?;
                return Err(e);
            }
        };
        // On the path: a refusal there is audited by it, the log kept.
        let applied = self.execute(&caller, name, plan, done)?;
        Ok(CallReport {
            plugin: name.to_string(),
            commands: commands.iter().map(render).collect(),
            created: applied.created,
            updated: applied.updated,
            interactions: applied.interactions,
            follow_ups: applied.follow_ups,
            messages: applied.messages,
            skipped_messages: applied.skipped_messages,
            log: (output.log.iter())
                .map(|l| format!("{}: {}", l.level, l.text))
                .collect(),
        })
    }

    /// The checks a call's returned commands go through before anything
    /// is written, without a call: the grant, then the plan (references
    /// resolved, values validated, new customers normalized and sealed),
    /// then their renderings for the call's report. Nothing is written and
    /// no rate is taken; for the fuzz targets (`crate::fuzzing`).
    pub(crate) fn check_returned(
        &self,
        name: &str,
        grant: &Grant,
        commands: &[wit::Command],
    ) -> Result<Vec<String>> {
        let owner =
            (grant.owner.clone()).unwrap_or_else(|| format!("{PLUGIN_PRINCIPAL_PREFIX}{name}"));
        self.check_grant(name, grant, commands)?;
        self.plan(name, grant, &owner, commands)?;
        Ok(commands.iter().map(render).collect())
    }

    /// A call's state writes, sealed: unscoped ones under the key of
    /// plugin state, the others under their customer's key.
    fn seal_state(
        &self,
        plugin: &str,
        unscoped: &BTreeMap<String, Vec<u8>>,
        about: &BTreeMap<(u64, String), Vec<u8>>,
    ) -> Result<Vec<StateWrite>> {
        let ring = &self.records.ring;
        let mut writes = Vec::new();
        for (key, value) in unscoped {
            let name = ring.plugin_state_name(plugin, key);
            let sealed = ring.seal_plugin_state(plugin, &name, value)?;
            writes.push(StateWrite {
                customer: None,
                key: key.clone(),
                name,
                sealed: sealed.to_bytes(),
            });
        }
        for ((customer, key), value) in about {
            let name = ring.plugin_state_name(plugin, key);
            let slot = Slot::PluginState {
                plugin,
                name: &name,
            };
            let sealed = self.records.seal_bytes(*customer, slot, value)?;
            writes.push(StateWrite {
                customer: Some(*customer),
                key: key.clone(),
                name,
                sealed: sealed.to_bytes(),
            });
        }
        Ok(writes)
    }

    fn take_rate(&self, name: &str, grant: &Grant, commands: &[wit::Command]) -> Result<()> {
        let total = u32::try_from(commands.len()).unwrap_or(u32::MAX);
        let messages = (commands.iter())
            .filter(|c| matches!(c, wit::Command::SendMessage(_)))
            .count();
        let messages = u32::try_from(messages).unwrap_or(u32::MAX);
        self.plugins
            .take(name, grant, total, messages)
            .map_err(|reason| {
                let name = name.to_string();
                PluginError::RateLimited { name, reason }.into()
            })
    }

    /// Audits a failed call and keeps its log; a fault counts toward
    /// quarantine, which raises an alert: faults within the fault window
    /// count, however many calls succeeded between them.
    fn record_failure(
        self: &Arc<Self>,
        caller: &Caller,
        info: &PluginInfo,
        fault: Option<&Fault>,
        reason: &str,
        log: &[LogLine],
        entry: &Entry,
    ) -> Result<()> {
        let name = info.manifest.name.as_str();
        let quarantine_after = self.plugins.settings.quarantine_after;
        let window = self.plugins.settings.fault_window;
        let key = self.records.ring.audit_key();
        let (alerted, queued) = self.store.write(|w| {
            let record = entry.record(caller, Outcome::Failed(reason.to_string()));
            crate::audit::append(w, key, &record)?;
            self.write_log(w, name, log)?;
            let Some(mut stored) = w.plugin(name)?.filter(|_| fault.is_some()) else {
                return Ok::<_, Error>((false, false));
            };
            let faults = self.count_fault(w, name, window)?;
            stored.consecutive_faults = faults;
            let mut alert = None;
            if faults >= quarantine_after && stored.status == PluginStatus::Enabled {
                stored.status = PluginStatus::Quarantined {
                    reason: reason.to_string(),
                };
                let message = format!(
                    "plugin `{name}` quarantined after {faults} faults within {}; last: {reason}",
                    humantime(window)
                );
                let raise = Raise::new("plugin.quarantined", name, message, Severity::Warning)
                    .actor(format!("plugin:{name}"))
                    .evidence("faults", faults)
                    .evidence("window", humantime(window));
                alert = Some(self.put_alert(w, caller, raise)?);
            }
            w.put_plugin(&stored, None)?;
            let queued = match &alert {
                Some(alert) => self.enqueue(w, std::slice::from_ref(alert), Some(name))?,
                None => false,
            };
            Ok((alert.is_some(), queued))
        })?;
        if alerted {
            self.refresh_subscriptions()?;
        }
        if queued {
            self.events.wake();
        }
        Ok(())
    }

    /// Records a fault of `plugin` now; returns its faults within `window`.
    fn count_fault(&self, w: &mut dyn Txn, plugin: &str, window: Duration) -> Result<u32> {
        let now = self.records.now();
        let window = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
        let mut counters = w.plugin_counters(plugin)?;
        counters
            .faults
            .retain(|at| now.saturating_sub(*at) < window);
        counters.faults.push(now);
        // Only the newest that can quarantine it are needed.
        let keep = self.plugins.settings.quarantine_after.max(1) as usize;
        let extra = counters.faults.len().saturating_sub(keep);
        counters.faults.drain(..extra);
        w.put_plugin_counters(plugin, &counters)?;
        Ok(u32::try_from(counters.faults.len()).unwrap_or(u32::MAX))
    }

    /// Appends a call's log lines to the plugin's log.
    pub(crate) fn write_log(&self, w: &mut dyn Txn, plugin: &str, log: &[LogLine]) -> Result<()> {
        let at = self.records.now();
        let ring = &self.records.ring;
        let mut lines = Vec::with_capacity(log.len());
        for l in log {
            lines.push(StoredLogLine {
                at,
                level: l.level.to_string(),
                text: LogText::Sealed(ring.seal_plugin_log(plugin, &l.text)?),
            });
        }
        w.append_plugin_log(plugin, &lines)?;
        Ok(())
    }

    /// The text of a stored log line.
    pub(crate) fn open_log_line(&self, plugin: &str, text: LogText) -> Result<String> {
        Ok(match text {
            LogText::Sealed(sealed) => self.records.ring.open_plugin_log(plugin, &sealed)?,
            LogText::Clear(text) => text,
        })
    }
}

/// A window for people: `1 h`, `15 min`, `30 s`.
fn humantime(window: Duration) -> String {
    let secs = window.as_secs();
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}
