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

wasmtime::component::bindgen!({
    path: "../sdk/wit",
    world: "plugin",
    // Exports are called as futures, so that a timer can end a call that
    // waits in the host; the engine's own imports answer at once.
    exports: { default: async },
});

pub(crate) use self::custodian::plugin::host::Level;
pub(crate) use self::custodian::plugin::types as wit;

mod convert;
mod probe;

use convert::{check_version, command_size, from_wit_manifest};
pub(crate) use convert::{command_kind, event_kind_of};
pub use probe::{SandboxProbe, WarmInstance};

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
}

/// The most a plugin may keep in one state key.
pub(crate) const MAX_STATE_VALUE: usize = 64 << 10;
/// The longest state key.
pub(crate) const MAX_STATE_KEY: usize = 256;
/// State keys one call may write.
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
    log: Vec<LogLine>,
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

impl self::custodian::plugin::types::Host for CallState {}

impl self::custodian::plugin::host::Host for CallState {
    fn log(&mut self, level: Level, message: String) {
        if self.log.len() < MAX_LOG_LINES {
            self.log.push(LogLine {
                level: level_name(level),
                text: clip(message, MAX_LOG_LINE),
            });
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
        if key.is_empty() || key.len() > MAX_STATE_KEY {
            return Err(format!("state keys are 1 to {MAX_STATE_KEY} bytes"));
        }
        if value.len() > MAX_STATE_VALUE {
            return Err(format!("state values are at most {MAX_STATE_VALUE} bytes"));
        }
        if self.state_writes.len() >= MAX_STATE_WRITES && !self.state_writes.contains_key(&key) {
            return Err(format!("at most {MAX_STATE_WRITES} state keys per call"));
        }
        self.state_writes.insert(key, value);
        Ok(())
    }

    fn lookup(&mut self, customer: wit::CustomerRef) -> Option<wit::Customer> {
        self.services.lookup(&customer)
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
    /// Host log lines, then stdout and stderr.
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
            log: Vec::new(),
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
            let plugin = (loaded.pre.instantiate_async(&mut store).await)
                .map_err(|e| PluginError::Invalid(format!("cannot instantiate: {e:#}")))?;
            (plugin
                .custodian_plugin_handler()
                .call_describe(&mut store)
                .await)
                .map_err(|e| PluginError::Invalid(format!("its manifest export failed: {e:#}")))
        });
        let manifest = match described {
            Some(manifest) => manifest?,
            None => {
                let fault = Fault::Deadline(limits.deadline);
                return Err(PluginError::Invalid(format!(
                    "its manifest export failed: {fault}"
                )));
            }
        };
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
                Entry::OnEvent(event) => handler.call_on_event(&mut store, event).await,
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
        let state = store.into_data();
        let mut log = state.log;
        append_output(&mut log, &stdout, &stderr);
        Ok(CallOutput {
            result,
            state_writes: state.state_writes,
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
        let fault = match error {
            _ if store.data().limits.memory_refused => Fault::Memory { cap: limits.memory },
            None => Fault::Deadline(limits.deadline),
            Some(error) => match error.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => Fault::Deadline(limits.deadline),
                Some(Trap::StackOverflow) => Fault::StackOverflow,
                Some(trap) => Fault::Trap(trap.to_string()),
                None => Fault::Trap(clip(format!("{error:#}"), 500)),
            },
        };
        let mut log = std::mem::take(&mut store.data_mut().log);
        append_output(&mut log, stdout, stderr);
        CallError::Fault(fault, log)
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

fn append_output(log: &mut Vec<LogLine>, stdout: &MemoryOutputPipe, stderr: &MemoryOutputPipe) {
    for (level, pipe) in [("stdout", stdout), ("stderr", stderr)] {
        let bytes = pipe.contents();
        for line in String::from_utf8_lossy(&bytes).lines() {
            if log.len() >= MAX_LOG_LINES * 2 {
                return;
            }
            log.push(LogLine {
                level,
                text: clip(line.to_string(), MAX_LOG_LINE),
            });
        }
    }
}
