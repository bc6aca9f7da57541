//! The sandbox alone, for the plugin benchmark: calls without the
//! engine around them.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::Store;

use super::{
    CallError, CallLimitsSpec, CallState, Entry, HostServices, Loaded, Plugin, Runtime, TICK, wit,
};
use crate::plugin::{Fault, PluginError, PluginSettings};

/// The sandbox alone, for benchmarks: a component's `on-event` called with
/// an event of a chosen size, on a fresh instance per call (what the
/// engine does) or on one reused instance.
#[doc(hidden)]
pub struct SandboxProbe {
    runtime: Runtime,
    loaded: Loaded,
    event: wit::Event,
    limits: CallLimitsSpec,
}

/// One instance kept across calls.
#[doc(hidden)]
pub struct WarmInstance<'a> {
    probe: &'a SandboxProbe,
    store: Store<CallState>,
    plugin: Plugin,
}

struct Silent;

impl HostServices for Silent {
    fn now_ms(&self) -> i64 {
        0
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

impl SandboxProbe {
    /// Loads `wasm` with default settings and builds a `customer-updated`
    /// event whose field values total `payload` bytes.
    pub fn new(wasm: &[u8], payload: usize) -> Result<Self, PluginError> {
        let runtime = Runtime::new(PluginSettings::default())?;
        let loaded = runtime.load(wasm)?;
        let event = wit::Event::CustomerUpdated(wit::Customer {
            id: 42,
            status: "active".into(),
            fields: vec![
                wit::Field {
                    name: "name".into(),
                    value: "Li Na".into(),
                },
                wit::Field {
                    name: "notes".into(),
                    value: "x".repeat(payload.saturating_sub(5)),
                },
            ],
            masked: Vec::new(),
        });
        let limits = CallLimitsSpec {
            memory: (crate::plugin::DEFAULT_MEMORY_MIB as usize) << 20,
            deadline: Duration::from_millis(u64::from(crate::plugin::DEFAULT_DEADLINE_MS)),
        };
        Ok(Self {
            runtime,
            loaded,
            event,
            limits,
        })
    }

    /// One call on a fresh instance, as the engine makes it.
    pub fn fresh_call(&self) -> Result<usize, PluginError> {
        match self.runtime.call(
            &self.loaded,
            Arc::new(Silent),
            self.limits,
            Entry::OnEvent(&self.event),
        ) {
            Ok(out) => Ok(out.result.map_or(0, |c| c.len())),
            Err(CallError::Fault(f, _)) => Err(PluginError::Runtime(f.to_string())),
            Err(CallError::Host(h)) => Err(PluginError::Runtime(h)),
        }
    }

    /// An instance to call repeatedly.
    pub fn warm(&self) -> Result<WarmInstance<'_>, PluginError> {
        let (mut store, _, _) = self.runtime.store(Arc::new(Silent), self.limits);
        let plugin = super::within(
            self.limits.deadline,
            self.loaded.pre.instantiate_async(&mut store),
        )
        .ok_or_else(|| PluginError::Runtime("instantiation ran past its deadline".into()))?
        .map_err(|e| PluginError::Runtime(format!("{e:#}")))?;
        Ok(WarmInstance {
            probe: self,
            store,
            plugin,
        })
    }
}

impl WarmInstance<'_> {
    /// One call on the kept instance.
    pub fn call(&mut self) -> Result<usize, PluginError> {
        let ticks = self
            .probe
            .limits
            .deadline
            .as_micros()
            .div_ceil(TICK.as_micros())
            .max(1);
        self.store
            .set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        let handler = self.plugin.custodian_plugin_handler();
        let call = handler.call_on_event(&mut self.store, &self.probe.event);
        let result = super::within(self.probe.limits.deadline, call)
            .ok_or_else(|| {
                PluginError::Runtime(Fault::Deadline(self.probe.limits.deadline).to_string())
            })?
            .map_err(|e| PluginError::Runtime(format!("{e:#}")))?;
        Ok(result.map_or(0, |c| c.len()))
    }
}
