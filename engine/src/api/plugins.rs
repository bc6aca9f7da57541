//! Plugins, for administrators: install with a grant, enable, remove, call
//! (`ingest`, due follow-ups), and what they leave (logs).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Engine;
use crate::identity::{PrincipalKind, PrincipalRecord};
use crate::model::from_micros;
use crate::op::{CallReport, Emitted, Entry, NoServices, Op, code_hash};
use crate::plugin::runtime::Entry as Call;
use crate::plugin::{
    Grant, Hook, PLUGIN_ROLE, PluginError, PluginInfo, PluginManifest, PluginStatus,
};
use crate::records::owner_rule;
use crate::{Context, Error, Result};

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

impl Engine {
    /// Compiles a plugin in the sandbox and returns what it asks for,
    /// without installing it. Refuses files that are not components of a
    /// compatible interface version.
    pub fn inspect_plugin(&self, wasm: &[u8]) -> Result<PluginManifest> {
        let runtime = self.core.plugins.runtime()?;
        let loaded = runtime.load(wasm)?;
        Ok(runtime.manifest(&loaded, Arc::new(NoServices))?)
    }

    /// Installs (or upgrades) a plugin with the operator's `grant`, which
    /// must not exceed its manifest. The plugin acts as principal
    /// `plugin:<name>` with the role `integration`. Admins only.
    pub fn install_plugin(&self, ctx: &Context, wasm: &[u8], grant: Grant) -> Result<PluginInfo> {
        let hash = code_hash(wasm);
        let entry = Entry::new("plugin.install").fields(grant.fields.keys().cloned().collect());
        let op = Op::new(entry).admins("install plugins");
        // Admins only, before the code is even compiled.
        let admitted = self.core.admit_early(ctx, &op)?;
        let runtime = self.core.plugins.runtime()?;
        let loaded = Arc::new(runtime.load(wasm)?);
        let manifest = runtime.manifest(&loaded, Arc::new(NoServices))?;
        grant.check(&manifest, runtime.settings())?;
        self.check_roles([PLUGIN_ROLE].into_iter())?;
        let name = manifest.name.clone();
        let info = self.core.write_as(admitted.caller(), op, |tx| {
            tx.retarget(format!("plugin {name} {} {hash}", manifest.version));
            if let Some(owner) = &grant.owner {
                owner_rule(owner, tx.txn().principal(owner)?.as_ref())?;
            }
            let now = tx.records().now();
            let principal = manifest.principal();
            let existing = tx.txn().principal(&principal)?;
            tx.txn().put_principal(&PrincipalRecord {
                name: principal,
                kind: PrincipalKind::Plugin,
                roles: vec![PLUGIN_ROLE.to_string()],
                active: true,
                created_at: existing.as_ref().map_or(now, |p| p.created_at),
                attributes: existing.map(|p| p.attributes).unwrap_or_default(),
            })?;
            let info = PluginInfo {
                manifest: manifest.clone(),
                grant: grant.clone(),
                status: PluginStatus::Enabled,
                consecutive_faults: 0,
                code_hash: hash.clone(),
                installed_at: now,
                installed_by: tx.actor().name.clone(),
            };
            tx.txn().put_plugin(&info, Some(wasm))?;
            Ok(info)
        })?;
        self.core.plugins.cache(&name, Some((hash, loaded)));
        self.core.refresh_subscriptions()?;
        Ok(info)
    }

    /// Every installed plugin. Admins only.
    pub fn plugins(&self, ctx: &Context) -> Result<Vec<PluginInfo>> {
        let op = Op::new(Entry::new("admin.read").target("list plugins")).admins("list plugins");
        self.core
            .read(ctx, op, |read| Ok(read.snapshot().plugins()?))
    }

    /// Enables a plugin (clearing a quarantine and its faults) or
    /// disables it. Admins only.
    pub fn set_plugin_enabled(&self, ctx: &Context, name: &str, enabled: bool) -> Result<()> {
        let verb = if enabled { "enable" } else { "disable" };
        let entry = Entry::new("plugin.status").target(format!("plugin {name} {verb}"));
        let op = Op::new(entry).admins("change plugins");
        self.core.write(ctx, op, |tx| {
            let Some(mut info) = tx.txn().plugin(name)? else {
                return Err(PluginError::Unknown(name.into()).into());
            };
            info.status = match enabled {
                true => PluginStatus::Enabled,
                false => PluginStatus::Disabled,
            };
            info.consecutive_faults = 0;
            tx.txn().put_plugin(&info, None)?;
            let mut counters = tx.txn().plugin_counters(name)?;
            if !counters.faults.is_empty() {
                counters.faults.clear();
                tx.txn().put_plugin_counters(name, &counters)?;
            }
            Ok(())
        })?;
        self.core.refresh_subscriptions()
    }

    /// Removes a plugin with its code, state and log, and deactivates its
    /// principal (kept for the audit chain). Admins only.
    pub fn remove_plugin(&self, ctx: &Context, name: &str) -> Result<()> {
        let entry = Entry::new("plugin.remove").target(format!("plugin {name}"));
        let op = Op::new(entry).admins("remove plugins");
        self.core.write(ctx, op, |tx| {
            let Some(info) = tx.txn().plugin(name)? else {
                return Err(PluginError::Unknown(name.into()).into());
            };
            tx.txn().remove_plugin(name)?;
            if let Some(mut p) = tx.txn().principal(&info.manifest.principal())? {
                p.active = false;
                tx.txn().put_principal(&p)?;
            }
            Ok(())
        })?;
        self.core.plugins.cache(name, None);
        self.core.refresh_subscriptions()
    }

    /// Hands an external payload (a webhook body, an export file) to a
    /// plugin's `ingest`; the commands it returns are checked against its
    /// grant and executed in one transaction as `plugin:<name>`. The host
    /// calling this vouches for the payload's origin.
    pub fn ingest(&self, plugin: &str, payload: &[u8]) -> Result<CallReport> {
        self.core
            .call_plugin(plugin, Hook::Ingest, Call::Ingest(payload), "ingest")
    }

    /// Queues `follow-up-due` events for open follow-ups due at or before
    /// `until` that were not handed out yet; returns how many. Each is
    /// marked handed out in the transaction that queues its event, so it
    /// is delivered at least once, after the commit (see
    /// [`Engine::drain_events`]). A host operation: each plugin receives
    /// the event as its own principal may see it.
    pub fn dispatch_due_follow_ups(&self, until: DateTime<Utc>) -> Result<usize> {
        let core = &self.core;
        let due = core.store.read(|r| {
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
        let now = core.records.now();
        let events: Vec<Emitted> = (due.iter())
            .map(|f| Emitted::FollowUpDue {
                customer: f.customer,
                follow_up: f.id,
                due: f.due,
            })
            .collect();
        let queued = core.store.write(|w| {
            for f in &due {
                w.mark_notified(f.id, now)?;
            }
            Ok::<_, Error>(core.enqueue(w, &events, None)?)
        })?;
        if queued {
            core.events.wake();
        }
        Ok(due.len())
    }

    /// The newest `limit` lines of a plugin's log, oldest first. Admins only.
    pub fn plugin_log(
        &self,
        ctx: &Context,
        name: &str,
        limit: usize,
    ) -> Result<Vec<PluginLogLine>> {
        let entry = Entry::new("admin.read").target("read plugin logs");
        let op = Op::new(entry).admins("read plugin logs");
        let lines = self.core.read(ctx, op, |read| {
            Ok(read.snapshot().plugin_log(name, limit)?)
        })?;
        (lines.into_iter())
            .map(|l| {
                Ok(PluginLogLine {
                    at: from_micros(l.at),
                    level: l.level,
                    text: self.core.open_log_line(name, l.text)?,
                })
            })
            .collect()
    }
}

/// What a plugin named `plugin` with `grant` may return, checked as a call
/// checks it before anything is written (the grant, then the plan), and
/// rendered as the call's report renders it; nothing is written. The fuzz
/// targets' way to what a hostile plugin returns without compiling a
/// component; not part of the API (see `crate::fuzzing`).
pub fn check_plugin_commands(
    engine: &Engine,
    plugin: &str,
    grant: &Grant,
    commands: &[crate::plugin::runtime::wit::Command],
) -> Result<Vec<String>> {
    engine.core.check_returned(plugin, grant, commands)
}
