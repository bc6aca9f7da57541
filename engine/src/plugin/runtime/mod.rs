//! The wasmtime host: one compiler and instance pool per engine, a fresh
//! instance per call from a pre-instantiated component, a memory cap, a
//! deadline, and WASI without ambient authority.
//!
//! The deadline holds in wasm and in host calls alike. Wasm code is
//! stopped by the epoch (a trap when its ticks run out); a call that
//! waits in the host (a sleep or a poll through WASI clocks) is an
//! `async` call whose future is dropped when the deadline's timer fires,
//! which ends the wait and the instance with it. Every entry point
//! (instantiation, `describe`, `ingest`, `on-event`) runs under both.
//!
//! INVARIANT: nothing of a call outlives it. Each call gets its own
//! `Store` (so its own linear memory, from the pool, zeroed on reuse), and
//! the store is dropped when the call returns: no customer data stays
//! inside a plugin between calls.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    Trap,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::{Fault, PluginError, PluginManifest, PluginSettings};

/// The interface's bindings. Their types are documented in
/// `sdk/wit/plugin.wit` (not every field there has a comment), and are
/// reachable from outside only through the hidden `crate::fuzzing`.
#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "plugin",
        // Exports are called as futures, so that a timer can end a call that
        // waits in the host; the engine's own imports answer at once.
        exports: { default: async },
    });
}

pub(crate) use bindings::custodian::plugin::host::Level;
pub(crate) use bindings::custodian::plugin::types as wit;
use bindings::{Plugin, PluginPre};

mod convert;
mod probe;
mod shown;

use convert::{check_manifest_size, check_version, command_size, from_wit_manifest};
pub(crate) use convert::{command_kind, event_kind_of};
pub use probe::{SandboxProbe, WarmInstance};
use shown::Shown;

/// How often the epoch advances: the granularity of deadlines.
const TICK: Duration = Duration::from_millis(2);

/// What the engine offers a plugin during one call.
pub(crate) trait HostServices: Send + Sync {
    /// The engine's clock, in milliseconds since the epoch.
    fn now_ms(&self) -> i64;
    /// A customer as the plugin's grant shows it.
    fn lookup(&self, by: &wit::CustomerRef) -> Option<wit::Customer>;
    /// The plugin's stored private state under `key`.
    fn state_get(&self, key: &str) -> Option<Vec<u8>>;
    /// The plugin's stored state about `customer` under `key`.
    fn customer_state_get(&self, customer: u64, key: &str) -> Option<Vec<u8>>;
}

/// The most a plugin may keep in one state key.
pub(crate) const MAX_STATE_VALUE: usize = 64 << 10;
/// The longest state key.
pub(crate) const MAX_STATE_KEY: usize = 256;
/// State keys one call may write, unscoped and filed under customers.
const MAX_STATE_WRITES: usize = 1024;
/// Host log lines one call may write.
const MAX_LOG_LINES: usize = 1000;
/// The longest host log line kept.
const MAX_LOG_LINE: usize = 4096;

/// Per-call store data.
struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: CallLimits,
    services: Arc<dyn HostServices>,
    state_writes: BTreeMap<String, Vec<u8>>,
    customer_writes: BTreeMap<(u64, String), Vec<u8>>,
    /// Bytes of keys and values written this call.
    state_bytes: usize,
    log: CallLog,
    /// What the call was shown.
    shown: Shown,
    quota: Quota,
}

/// A call's quotas, from the engine's settings.
#[derive(Clone, Copy)]
struct Quota {
    state_bytes: usize,
    log_bytes: usize,
}

/// A call's log, counted against its quota.
#[derive(Default)]
struct CallLog {
    lines: Vec<LogLine>,
    bytes: usize,
    dropped_lines: usize,
    dropped_bytes: usize,
}

impl CallLog {
    fn push(&mut self, quota: usize, level: &'static str, text: String) {
        let text = clip(text, MAX_LOG_LINE);
        if self.lines.len() >= MAX_LOG_LINES * 2 || self.bytes + text.len() > quota {
            self.dropped_lines += 1;
            self.dropped_bytes += text.len();
            return;
        }
        self.bytes += text.len();
        self.lines.push(LogLine { level, text });
    }

    /// The lines kept, each redacted if it held a value shown to the
    /// call, then a line naming the quota if any were dropped.
    fn finish(self, quota: usize, shown: &Shown) -> Vec<LogLine> {
        let mut lines: Vec<LogLine> = (self.lines.into_iter())
            .map(|l| LogLine {
                level: l.level,
                text: shown.redact(l.text),
            })
            .collect();
        if self.dropped_lines > 0 {
            lines.push(LogLine {
                level: "quota",
                text: format!(
                    "log quota of {quota} bytes per call reached: {} lines ({} bytes) dropped",
                    self.dropped_lines, self.dropped_bytes
                ),
            });
        }
        lines
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The memory cap, remembering whether it was hit (a clearer fault than
/// the trap's message).
struct CallLimits {
    memory_cap: usize,
    memory_refused: bool,
}

impl ResourceLimiter for CallLimits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_refused = true;
            wasmtime::bail!("memory cap of {} bytes reached", self.memory_cap);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        16
    }

    fn tables(&self) -> usize {
        16
    }

    fn memories(&self) -> usize {
        4
    }
}

/// A line of a plugin's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogLine {
    pub(crate) level: &'static str,
    pub(crate) text: String,
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

impl CallState {
    /// Counts a state write (replacing `old` bytes) against the call's
    /// limits, or says which it would pass.
    fn take_state(&mut self, key: &str, value: &[u8], old: Option<usize>) -> Result<(), String> {
        if key.is_empty() || key.len() > MAX_STATE_KEY {
            return Err(format!("state keys are 1 to {MAX_STATE_KEY} bytes"));
        }
        if value.len() > MAX_STATE_VALUE {
            return Err(format!("state values are at most {MAX_STATE_VALUE} bytes"));
        }
        let writes = self.state_writes.len() + self.customer_writes.len();
        if old.is_none() && writes >= MAX_STATE_WRITES {
            return Err(format!("at most {MAX_STATE_WRITES} state keys per call"));
        }
        let bytes = (self.state_bytes.saturating_sub(old.unwrap_or(0))) + key.len() + value.len();
        if bytes > self.quota.state_bytes {
            return Err(format!(
                "state quota of {} bytes per call reached: {} bytes written, {} more refused",
                self.quota.state_bytes,
                self.state_bytes,
                key.len() + value.len()
            ));
        }
        self.state_bytes = bytes;
        Ok(())
    }

    /// State about a customer is for customers shown to this call.
    fn check_shown(&self, customer: u64) -> Result<(), String> {
        if self.shown.has_customer(customer) {
            return Ok(());
        }
        Err(format!(
            "customer {customer} was not shown to this call: look it up (or take it from the event) first"
        ))
    }
}

impl bindings::custodian::plugin::types::Host for CallState {}

impl bindings::custodian::plugin::host::Host for CallState {
    fn log(&mut self, level: Level, message: String) {
        if self.log.lines.len() < MAX_LOG_LINES {
            self.log
                .push(self.quota.log_bytes, level_name(level), message);
        } else {
            self.log.dropped_lines += 1;
            self.log.dropped_bytes += message.len();
        }
    }

    fn now(&mut self) -> i64 {
        self.services.now_ms()
    }

    fn state_get(&mut self, key: String) -> Option<Vec<u8>> {
        match self.state_writes.get(&key) {
            Some(v) => Some(v.clone()),
            None => self.services.state_get(&key),
        }
    }

    fn state_set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        if self.shown.holds(&key) || self.shown.holds_bytes(&value) {
            return Err(
                "the key or value holds a customer value shown to this call: \
                 file it under that customer with customer-state-set"
                    .into(),
            );
        }
        let old = self.state_writes.get(&key).map(|v| key.len() + v.len());
        self.take_state(&key, &value, old)?;
        self.state_writes.insert(key, value);
        Ok(())
    }

    fn customer_state_get(
        &mut self,
        customer: u64,
        key: String,
    ) -> Result<Option<Vec<u8>>, String> {
        self.check_shown(customer)?;
        let slot = (customer, key);
        if let Some(value) = self.customer_writes.get(&slot) {
            return Ok(Some(value.clone()));
        }
        Ok(self.services.customer_state_get(customer, &slot.1))
    }

    fn customer_state_set(
        &mut self,
        customer: u64,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), String> {
        self.check_shown(customer)?;
        let slot = (customer, key);
        let old = (self.customer_writes.get(&slot)).map(|v| slot.1.len() + v.len());
        self.take_state(&slot.1, &value, old)?;
        self.customer_writes.insert(slot, value);
        Ok(())
    }

    fn lookup(&mut self, customer: wit::CustomerRef) -> Option<wit::Customer> {
        let found = self.services.lookup(&customer);
        if let Some(found) = &found {
            self.shown.customer(found);
        }
        found
    }
}

fn clip(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The compiler, the instance pool and the epoch ticker.
pub(crate) struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    settings: PluginSettings,
    /// Dropped with the runtime, which stops the ticker thread.
    _ticking: Arc<()>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

/// A compiled plugin ready to instantiate.
pub(crate) struct Loaded {
    pre: PluginPre<CallState>,
}

/// What a call produced.
pub(crate) struct CallOutput {
    /// The plugin's answer: its commands, or its own refusal.
    pub(crate) result: Result<Vec<wit::Command>, String>,
    /// State keys written (kept only if the commands are executed).
    pub(crate) state_writes: BTreeMap<String, Vec<u8>>,
    /// State written about customers shown to the call, by (customer, key).
    pub(crate) customer_writes: BTreeMap<(u64, String), Vec<u8>>,
    /// Host log lines, then stdout and stderr, within the log quota; a line
    /// that held a value shown to the call is redacted.
    pub(crate) log: Vec<LogLine>,
}

/// A call's limits, from the plugin's grant.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallLimitsSpec {
    pub(crate) memory: usize,
    pub(crate) deadline: Duration,
}

/// Which export to call.
pub(crate) enum Entry<'a> {
    Ingest(&'a [u8]),
    OnEvent(&'a wit::Event),
}

/// A failed call: a fault of the plugin, or the host's own failure (which
/// does not count against the plugin).
pub(crate) enum CallError {
    Fault(Fault, Vec<LogLine>),
    Host(String),
}

impl Runtime {
    pub(crate) fn new(settings: PluginSettings) -> Result<Self, PluginError> {
        let host = |e: wasmtime::Error| PluginError::Runtime(e.to_string());
        let max_memory = (settings.max_memory_mib as usize) << 20;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(settings.max_instances)
            .total_core_instances(settings.max_instances * 4)
            .total_memories(settings.max_instances * 2)
            .total_tables(settings.max_instances * 4)
            .max_memories_per_component(2)
            .max_tables_per_component(4)
            .max_core_instances_per_component(16)
            .max_memory_size(max_memory);
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .max_wasm_stack(512 << 10);
        let engine = Engine::new(&config).map_err(host)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(host)?;
        Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(host)?;
        let ticking = Arc::new(());
        let weak: Weak<()> = Arc::downgrade(&ticking);
        let ticker = engine.clone();
        std::thread::Builder::new()
            .name("custodian-plugin-epoch".into())
            .spawn(move || {
                while weak.strong_count() > 0 {
                    std::thread::sleep(TICK);
                    ticker.increment_epoch();
                }
            })
            .map_err(|e| PluginError::Runtime(format!("cannot start the epoch thread: {e}")))?;
        Ok(Self {
            engine,
            linker,
            settings,
            _ticking: ticking,
        })
    }

    pub(crate) fn settings(&self) -> &PluginSettings {
        &self.settings
    }

    /// Compiles `wasm`, checks the interface version and pre-instantiates it.
    pub(crate) fn load(&self, wasm: &[u8]) -> Result<Loaded, PluginError> {
        let component = Component::new(&self.engine, wasm).map_err(|e| {
            // The first line says what is wrong; the rest dumps bytes.
            let full = format!("{e:#}");
            let first = full.lines().next().unwrap_or_default();
            PluginError::Invalid(format!("the file is not a valid wasm component: {first}"))
        })?;
        check_version(&self.engine, &component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PluginError::Invalid(format!("{e:#}")))?;
        let pre = PluginPre::new(pre).map_err(|e| PluginError::Invalid(format!("{e:#}")))?;
        Ok(Loaded { pre })
    }

    fn store(
        &self,
        services: Arc<dyn HostServices>,
        limits: CallLimitsSpec,
    ) -> (Store<CallState>, MemoryOutputPipe, MemoryOutputPipe) {
        let stdout = MemoryOutputPipe::new(self.settings.max_log_bytes);
        let stderr = MemoryOutputPipe::new(self.settings.max_log_bytes);
        // No preopened directories, no environment, no arguments, no
        // sockets, no stdin; output goes to the plugin's log.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = CallState {
            wasi,
            table: ResourceTable::new(),
            limits: CallLimits {
                memory_cap: limits.memory,
                memory_refused: false,
            },
            services,
            state_writes: BTreeMap::new(),
            customer_writes: BTreeMap::new(),
            state_bytes: 0,
            log: CallLog::default(),
            shown: Shown::default(),
            quota: Quota {
                state_bytes: self.settings.max_state_bytes_per_call,
                log_bytes: self.settings.max_log_bytes,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let ticks = limits
            .deadline
            .as_micros()
            .div_ceil(TICK.as_micros())
            .max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();
        (store, stdout, stderr)
    }

    /// Asks a loaded plugin for its manifest, under the default limits.
    pub(crate) fn manifest(
        &self,
        loaded: &Loaded,
        services: Arc<dyn HostServices>,
    ) -> Result<PluginManifest, PluginError> {
        let limits = CallLimitsSpec {
            memory: (super::DEFAULT_MEMORY_MIB as usize) << 20,
            deadline: Duration::from_millis(u64::from(super::DEFAULT_DEADLINE_MS)),
        };
        let (mut store, _, _) = self.store(services, limits);
        let described = within(limits.deadline, async {
            let plugin =
                (loaded.pre.instantiate_async(&mut store).await).map_err(|e| ("starting it", e))?;
            (plugin
                .custodian_plugin_handler()
                .call_describe(&mut store)
                .await)
                .map_err(|e| ("its describe() export", e))
        });
        let manifest = match described {
            Some(Ok(manifest)) => manifest,
            Some(Err((what, e))) => {
                let fault = classify(&store, Some(&e), limits);
                return Err(PluginError::Invalid(format!("{what} failed: it {fault}")));
            }
            None => {
                let fault = classify(&store, None, limits);
                return Err(PluginError::Invalid(format!(
                    "its describe() export failed: it {fault}"
                )));
            }
        };
        check_manifest_size(&manifest)?;
        let manifest = from_wit_manifest(manifest);
        manifest.check()?;
        Ok(manifest)
    }

    /// Calls `entry` on a fresh instance.
    pub(crate) fn call(
        &self,
        loaded: &Loaded,
        services: Arc<dyn HostServices>,
        limits: CallLimitsSpec,
        entry: Entry<'_>,
    ) -> Result<CallOutput, CallError> {
        let (mut store, stdout, stderr) = self.store(services, limits);
        let ran = within(limits.deadline, async {
            let plugin = (loaded.pre.instantiate_async(&mut store).await).map_err(Failed::Start)?;
            let handler = plugin.custodian_plugin_handler();
            match entry {
                Entry::Ingest(payload) => handler.call_ingest(&mut store, payload).await,
                Entry::OnEvent(event) => {
                    store.data_mut().shown.event(event);
                    handler.call_on_event(&mut store, event).await
                }
            }
            .map_err(Failed::Call)
        });
        let result = match ran {
            Some(Ok(r)) => r,
            // A trap in a start function is the plugin's; an exhausted
            // pool is the host's.
            Some(Err(Failed::Start(e))) if e.downcast_ref::<Trap>().is_none() => {
                return Err(CallError::Host(format!("cannot instantiate: {e:#}")));
            }
            Some(Err(Failed::Start(e) | Failed::Call(e))) => {
                return Err(self.fault(&mut store, Some(&e), limits, &stdout, &stderr));
            }
            // The timer fired while the call waited in the host.
            None => return Err(self.fault(&mut store, None, limits, &stdout, &stderr)),
        };
        if let Ok(commands) = &result {
            self.check_output(commands)
                .map_err(|f| CallError::Fault(f, Vec::new()))?;
        }
        let mut state = store.into_data();
        append_output(&mut state.log, state.quota.log_bytes, &stdout, &stderr);
        let log = state.log.finish(state.quota.log_bytes, &state.shown);
        // The plugin's own refusal is kept in the audit chain: a value
        // shown to the call does not go there.
        let result = result.map_err(|message| state.shown.redact(message));
        Ok(CallOutput {
            result,
            state_writes: state.state_writes,
            customer_writes: state.customer_writes,
            log,
        })
    }

    /// The fault of a failed call: `error`, or `None` when its deadline
    /// passed while it waited in the host.
    fn fault(
        &self,
        store: &mut Store<CallState>,
        error: Option<&wasmtime::Error>,
        limits: CallLimitsSpec,
        stdout: &MemoryOutputPipe,
        stderr: &MemoryOutputPipe,
    ) -> CallError {
        let fault = classify(store, error, limits);
        let state = store.data_mut();
        let mut log = std::mem::take(&mut state.log);
        append_output(&mut log, state.quota.log_bytes, stdout, stderr);
        CallError::Fault(fault, log.finish(state.quota.log_bytes, &state.shown))
    }

    /// Refuses a result above the size limits (the memory cap already
    /// bounds what could be lifted).
    fn check_output(&self, commands: &[wit::Command]) -> Result<(), Fault> {
        let limit = self.settings.max_commands;
        if commands.len() > limit {
            return Err(Fault::OutputTooLarge {
                size: commands.len(),
                limit,
                unit: "commands",
            });
        }
        let size: usize = commands.iter().map(command_size).sum();
        let limit = self.settings.max_output_bytes;
        if size > limit {
            return Err(Fault::OutputTooLarge {
                size,
                limit,
                unit: "bytes",
            });
        }
        Ok(())
    }
}

/// What went wrong in words: the limit hit, or the trap; never the wasm
/// frames of a backtrace. `None`: the deadline passed while the call
/// waited in the host.
fn classify(
    store: &Store<CallState>,
    error: Option<&wasmtime::Error>,
    limits: CallLimitsSpec,
) -> Fault {
    if store.data().limits.memory_refused {
        return Fault::Memory { cap: limits.memory };
    }
    let Some(error) = error else {
        return Fault::Deadline(limits.deadline);
    };
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Fault::Deadline(limits.deadline),
        Some(Trap::StackOverflow) => Fault::StackOverflow,
        Some(trap) => Fault::Trap(trap.to_string()),
        None => {
            // The root cause says what; the outer contexts carry frames.
            let cause = error.root_cause().to_string();
            let first = cause.lines().next().unwrap_or_default();
            Fault::Trap(clip(first.to_string(), 500))
        }
    }
}

/// Where a call failed: starting its instance, or in the export.
enum Failed {
    Start(wasmtime::Error),
    Call(wasmtime::Error),
}

/// Runs a call to its end, or to its deadline: `None` when the deadline
/// passed first. The call is polled on this thread; the timer is driven
/// by wasmtime-wasi's runtime, which also serves the plugin's own waits,
/// and dropping the call's future cancels whatever it waited on.
fn within<T: Send>(deadline: Duration, call: impl Future<Output = T> + Send) -> Option<T> {
    let run = move || {
        wasmtime_wasi::runtime::in_tokio(async { tokio::time::timeout(deadline, call).await.ok() })
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return run();
    }
    // Called from inside the host's own tokio runtime, where blocking on
    // a future is refused: the call runs on a thread of its own.
    std::thread::scope(|scope| scope.spawn(run).join().ok().flatten())
}

fn append_output(
    log: &mut CallLog,
    quota: usize,
    stdout: &MemoryOutputPipe,
    stderr: &MemoryOutputPipe,
) {
    for (level, pipe) in [("stdout", stdout), ("stderr", stderr)] {
        let bytes = pipe.contents();
        for line in String::from_utf8_lossy(&bytes).lines() {
            log.push(quota, level, line.to_string());
        }
    }
}
