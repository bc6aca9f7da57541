//! `custodian plugin`: inspecting, installing, managing and feeding
//! plugins (`plugin run`, the harness for their authors, is in
//! `plugin_run`).

use std::io::{self, Write};

use anyhow::{Context as _, Result, bail};
use custodian::{Engine, FieldAccess, Grant, MasterKey, PluginError, PluginInfo, PluginManifest};
use serde::Serialize;

use super::plugin_run;
use crate::args::Global;
use crate::args::plugins::{InstallArgs, PluginCmd};
use crate::input::{confirm, read_input};
use crate::render::{Output, Render, grant_text, manifest_text, stderr, tell};

/// A database in a temporary folder, removed when dropped: for looking at
/// plugins without a real database or its key.
pub struct Scratch {
    // INVARIANT: declared before the folder, so the engine closes its
    // files before the folder is removed.
    pub engine: Engine,
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("custodian-plugin-")
            .tempdir()
            .context("cannot create a temporary folder")?;
        let engine = Engine::builder()
            .path(dir.path().join("scratch.redb"))
            .master_key(MasterKey::generate())
            .create(true)
            .open()?;
        Ok(Self { engine, dir })
    }
}

pub fn run(g: &Global, out: Output, cmd: PluginCmd) -> Result<()> {
    match cmd {
        PluginCmd::Inspect { file } => {
            let wasm = read_input(&file)?;
            out.emit(&Scratch::new()?.engine.inspect_plugin(&wasm)?)
        }
        PluginCmd::Install(args) => install(g, out, &args),
        PluginCmd::List => out.emit(&g.open()?.plugins(&g.ctx())?),
        PluginCmd::Show { name } => {
            let engine = g.open()?;
            out.emit(&installed(&engine, g, &name)?)
        }
        PluginCmd::Enable { name } => {
            g.open()?.set_plugin_enabled(&g.ctx(), &name, true)?;
            tell!("enabled plugin {name}");
            Ok(())
        }
        PluginCmd::Disable { name } => {
            g.open()?.set_plugin_enabled(&g.ctx(), &name, false)?;
            tell!("disabled plugin {name}");
            Ok(())
        }
        PluginCmd::Remove { name } => {
            g.open()?.remove_plugin(&g.ctx(), &name)?;
            tell!("removed plugin {name}; its principal plugin:{name} is deactivated");
            Ok(())
        }
        PluginCmd::Ingest { name, file } => {
            let payload = read_input(&file)?;
            out.emit(&g.open()?.ingest(&name, &payload)?)
        }
        PluginCmd::Log { name, limit } => {
            let engine = g.open()?;
            // The log of a plugin never installed is empty: say so instead.
            installed(&engine, g, &name)?;
            out.emit(&engine.plugin_log(&g.ctx(), &name, limit)?)
        }
        PluginCmd::Run(args) => plugin_run::run(out, &args),
    }
}

/// An installed plugin by name.
fn installed(engine: &Engine, g: &Global, name: &str) -> Result<PluginInfo> {
    engine
        .plugins(&g.ctx())?
        .into_iter()
        .find(|p| p.manifest.name == name)
        .ok_or_else(|| custodian::Error::from(PluginError::Unknown(name.to_string())).into())
}

/// The grant the install arguments describe. It is not checked here: the
/// engine refuses a grant beyond the manifest and says why.
fn grant_of(manifest: &PluginManifest, a: &InstallArgs) -> Grant {
    let mut grant = if a.grant_all {
        Grant::all(manifest)
    } else {
        let mut grant = Grant::none();
        grant.hooks = if a.hooks.is_empty() {
            manifest.hooks.clone()
        } else {
            a.hooks.iter().copied().collect()
        };
        grant.events = a.events.iter().copied().collect();
        grant.fields = a
            .fields
            .iter()
            .map(|(name, access)| {
                let asked = manifest.fields.get(name).copied();
                // A field not asked for goes in as asked-in-full, for the
                // engine to refuse by name.
                let access = access.or(asked).unwrap_or(FieldAccess::Full);
                (name.clone(), access)
            })
            .collect();
        grant.commands = a.commands.iter().copied().collect();
        grant.channels = a.channels.iter().cloned().collect();
        grant.regions = a.regions.iter().cloned().collect();
        grant
    };
    grant.commands_per_minute = a
        .commands_per_minute
        .unwrap_or(manifest.commands_per_minute);
    grant.messages_per_minute = a
        .messages_per_minute
        .unwrap_or(manifest.messages_per_minute);
    if let Some(mib) = a.memory_mib {
        grant.memory_mib = mib;
    }
    if let Some(ms) = a.deadline_ms {
        grant.deadline_ms = ms;
    }
    grant.owner = a.owner.clone();
    grant
}

fn install(g: &Global, out: Output, args: &InstallArgs) -> Result<()> {
    let nothing_listed = args.fields.is_empty()
        && args.commands.is_empty()
        && args.events.is_empty()
        && args.hooks.is_empty()
        && args.channels.is_empty()
        && args.regions.is_empty();
    if !args.grant_all && nothing_listed {
        bail!(
            "say what to grant: --grant-all, or items (--fields, --commands, --events, --hooks, --channels, --regions); `custodian plugin inspect FILE` shows what it asks for"
        );
    }
    let wasm = read_input(&args.file)?;
    let engine = g.open()?;
    let manifest = engine.inspect_plugin(&wasm)?;
    let grant = grant_of(&manifest, args);
    // The dialog goes to stderr: stdout carries only the result.
    write!(stderr(), "{}", manifest_text(&manifest))?;
    write!(stderr(), "{}", grant_text(&grant, &manifest))?;
    if !args.yes && !confirm("grant this?")? {
        bail!(
            "plugin {} not installed: the grant was not confirmed",
            manifest.name
        );
    }
    out.emit(&Installed(engine.install_plugin(&g.ctx(), &wasm, grant)?))
}

/// A plugin just installed: people were shown it in the dialog already.
struct Installed(PluginInfo);

impl Render for Installed {
    fn human(&self, _out: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }

    fn note(&self, err: &mut dyn Write) -> io::Result<()> {
        let info = &self.0;
        writeln!(
            err,
            "installed plugin {} {}: {}, acting as {}",
            info.manifest.name,
            info.manifest.version,
            info.status,
            info.manifest.principal()
        )
    }

    fn json(&self) -> impl Serialize {
        &self.0
    }
}
