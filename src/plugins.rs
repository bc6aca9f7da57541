//! The plugin subsystem's commands: `plugin` (inspect, install, manage,
//! ingest, and `plugin run`, the harness for plugin authors), `outbox` and
//! `alerts`.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use custodian::{
    Channel, ConsentChange, Context, CustomerUpdate, Direction, Engine, EventKind, FieldAccess,
    Grant, Hook, MasterKey, NewCustomer, NewFollowUp, NewInteraction, Outcome, PluginError,
    PluginInfo, PluginManifest, Query, Status,
};
use serde::Deserialize;
use serde_json::Value;

use crate::args::Global;
use crate::args::plugins::{InstallArgs, OutboxCmd, PluginCmd, RunArgs};
use crate::input::{confirm, read_input};
use crate::parse::parse_time;
use crate::{ctx, open, output};

/// A database in a temporary folder, removed when dropped: for looking at
/// plugins without a real database or its key.
struct Scratch {
    // INVARIANT: declared before the folder, so the engine closes its
    // files before the folder is removed.
    engine: Engine,
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Result<Self> {
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

pub fn plugin(g: &Global, cmd: PluginCmd) -> Result<()> {
    match cmd {
        PluginCmd::Inspect { file } => {
            let wasm = read_input(&file)?;
            let manifest = Scratch::new()?.engine.inspect_plugin(&wasm)?;
            output::manifest(&manifest, g.json)
        }
        PluginCmd::Install(args) => install(g, &args),
        PluginCmd::List => output::plugins(&open(g)?.plugins(&ctx(g))?, g.json),
        PluginCmd::Show { name } => output::plugin(&installed(&open(g)?, g, &name)?, g.json),
        PluginCmd::Enable { name } => {
            open(g)?.set_plugin_enabled(&ctx(g), &name, true)?;
            eprintln!("enabled plugin {name}");
            Ok(())
        }
        PluginCmd::Disable { name } => {
            open(g)?.set_plugin_enabled(&ctx(g), &name, false)?;
            eprintln!("disabled plugin {name}");
            Ok(())
        }
        PluginCmd::Remove { name } => {
            open(g)?.remove_plugin(&ctx(g), &name)?;
            eprintln!("removed plugin {name}; its principal plugin:{name} is deactivated");
            Ok(())
        }
        PluginCmd::Ingest { name, file } => {
            let payload = read_input(&file)?;
            output::call_report(&open(g)?.ingest(&name, &payload)?, g.json)
        }
        PluginCmd::Log { name, limit } => {
            let engine = open(g)?;
            // The log of a plugin never installed is empty: say so instead.
            installed(&engine, g, &name)?;
            output::plugin_log(&engine.plugin_log(&ctx(g), &name, limit)?, g.json)
        }
        PluginCmd::Run(args) => run(g, &args),
    }
}

/// An installed plugin by name.
fn installed(engine: &Engine, g: &Global, name: &str) -> Result<PluginInfo> {
    engine
        .plugins(&ctx(g))?
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

fn install(g: &Global, args: &InstallArgs) -> Result<()> {
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
    let engine = open(g)?;
    let manifest = engine.inspect_plugin(&wasm)?;
    let grant = grant_of(&manifest, args);
    // The dialog goes to stderr: stdout carries only the result.
    eprint!("{}", output::manifest_text(&manifest));
    eprint!("{}", output::grant_text(&grant, &manifest));
    if !args.yes && !confirm("grant this?")? {
        bail!(
            "plugin {} not installed: the grant was not confirmed",
            manifest.name
        );
    }
    let info = engine.install_plugin(&ctx(g), &wasm, grant)?;
    if g.json {
        output::json(&info)?;
    } else {
        eprintln!(
            "installed plugin {} {}: {}, acting as {}",
            info.manifest.name,
            info.manifest.version,
            info.status,
            info.manifest.principal()
        );
    }
    Ok(())
}

pub fn outbox(g: &Global, cmd: OutboxCmd) -> Result<()> {
    let engine = open(g)?;
    let ctx = ctx(g);
    match cmd {
        OutboxCmd::List { limit } => output::outbox(&engine.outbox(&ctx, limit)?, g.json),
        OutboxCmd::Ack { ids } => {
            let removed = engine.ack_outbox(&ctx, &ids)?;
            if g.json {
                println!("{}", serde_json::json!({ "acknowledged": removed }));
            } else {
                eprintln!(
                    "acknowledged {removed} message(s){}",
                    if removed < ids.len() {
                        format!("; {} not in the outbox", ids.len() - removed)
                    } else {
                        String::new()
                    }
                );
            }
            Ok(())
        }
    }
}

pub fn alerts(g: &Global, limit: usize) -> Result<()> {
    output::alerts(&open(g)?.alerts(&ctx(g), limit)?, g.json)
}

/// An event for `plugin run --event`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestEvent {
    kind: EventKind,
    customer: BTreeMap<String, Value>,
    #[serde(default)]
    marketing_consent: bool,
    #[serde(default)]
    service_consent: bool,
    update: Option<BTreeMap<String, Value>>,
    summary: Option<String>,
    channel: Option<String>,
    direction: Option<String>,
    note: Option<String>,
    due: Option<String>,
}

impl TestEvent {
    fn parse(arg: &str) -> Result<Self> {
        let text = match arg.strip_prefix('@') {
            Some(path) => {
                std::fs::read_to_string(path).with_context(|| format!("cannot read `{path}`"))?
            }
            None => arg.to_string(),
        };
        let event: Self = serde_json::from_str(&text)
            .context("--event is not an event (see `custodian plugin run --help`)")?;
        if event.kind == EventKind::AlertRaised {
            bail!("`alert-raised` cannot be caused here: the engine raises alerts itself");
        }
        Ok(event)
    }
}

/// Field values from JSON: strings, or numbers and booleans as written.
fn field_values(map: &BTreeMap<String, Value>) -> Result<Vec<(String, String)>> {
    map.iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => bail!("field `{name}`: {other} is not a string or a number"),
            };
            Ok((name.clone(), text))
        })
        .collect()
}

/// Causes `event` through the engine's normal path, as `admin`; returns
/// what was done, for people.
fn cause(engine: &Engine, admin: &Context, event: &TestEvent) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let fields = field_values(&event.customer)?;
    let mut new = NewCustomer::new();
    for (name, value) in &fields {
        new = new.field(name.clone(), value.clone());
    }
    // Consents come with the customer, as an import gives them: fields
    // that need one (a birthday needs `marketing`) can then be stored, and
    // the customer-created call sees them.
    let consented: Vec<&str> = [
        ("service", event.service_consent),
        ("marketing", event.marketing_consent),
    ]
    .into_iter()
    .filter_map(|(purpose, wanted)| wanted.then_some(purpose))
    .collect();
    for purpose in &consented {
        new = new.consent(ConsentChange::grant(
            *purpose,
            "plugin run harness",
            "harness",
        ));
    }
    let id = engine.create_customer(admin, new)?;
    done.push(format!("created customer {id} as admin"));
    for purpose in consented {
        done.push(format!(
            "recorded customer {id}'s consent to `{purpose}` with it"
        ));
    }
    match event.kind {
        // `TestEvent::parse` refuses alerts.
        EventKind::CustomerCreated | EventKind::AlertRaised => {}
        EventKind::CustomerUpdated => {
            let set = match &event.update {
                Some(update) => field_values(update)?,
                None => fields,
            };
            let mut update = CustomerUpdate::new();
            for (name, value) in set {
                update = update.set(name, value);
            }
            engine.update_customer(admin, id, update)?;
            done.push(format!("updated customer {id}"));
        }
        EventKind::CustomerErased => {
            engine.delete_customer(admin, id)?;
            done.push(format!("deleted customer {id}"));
        }
        EventKind::InteractionLogged => {
            let new = NewInteraction::new(
                Channel::parse(event.channel.as_deref().unwrap_or("call"))?,
                Direction::parse(event.direction.as_deref().unwrap_or("inbound"))?,
                event.summary.as_deref().unwrap_or("test interaction"),
            );
            let interaction = engine.log_interaction(admin, id, new)?;
            done.push(format!("logged interaction {interaction} on customer {id}"));
        }
        EventKind::FollowUpDue => {
            let due = event
                .due
                .as_deref()
                .map(parse_time)
                .transpose()?
                .unwrap_or_else(Utc::now);
            let note = event
                .note
                .clone()
                .unwrap_or_else(|| "test follow-up".into());
            let follow_up = engine.add_follow_up(
                admin,
                NewFollowUp {
                    customer: id,
                    due,
                    assignee: None,
                    note,
                },
            )?;
            let n = engine.dispatch_due_follow_ups(due)?;
            done.push(format!(
                "scheduled follow-up {follow_up} due {}, then dispatched {n} due follow-up(s)",
                due.format("%Y-%m-%d %H:%M UTC")
            ));
        }
    }
    Ok(done)
}

/// A heading in the text output of `plugin run`.
fn section(title: &str) {
    println!("\n== {title}");
}

fn run(g: &Global, args: &RunArgs) -> Result<()> {
    let wasm = read_input(&args.file)?;
    let event = args.event.as_deref().map(TestEvent::parse).transpose()?;
    let scratch = Scratch::new()?;
    let engine = &scratch.engine;
    let admin = Context::new("admin", "plugin test");
    let manifest = engine.inspect_plugin(&wasm)?;
    let name = manifest.name.clone();
    let principal = manifest.principal();
    engine.install_plugin(&admin, &wasm, Grant::all(&manifest))?;
    let mut warnings = Vec::new();
    if let Some(e) = &event {
        if !manifest.hooks.contains(&Hook::OnEvent) {
            warnings.push(format!(
                "{name} has no `on-event` hook: it receives no events"
            ));
        } else if !manifest.events.contains(&e.kind) {
            warnings.push(format!(
                "{name} does not subscribe to `{}`: it will not receive it",
                e.kind.as_str()
            ));
        }
    }
    if !g.json {
        print!("{}", output::manifest_text(&manifest));
        println!(
            "installed with all it asks for in a throw-away database ({})",
            scratch.dir.path().display()
        );
        for w in &warnings {
            println!("warning: {w}");
        }
    }

    let mut steps = Vec::new();
    let mut report = None;
    let mut failure = None;
    match (&args.ingest, &event) {
        (Some(file), _) => {
            let payload = read_input(file)?;
            steps.push(format!(
                "ingest {} ({} bytes)",
                file.display(),
                payload.len()
            ));
            match engine.ingest(&name, &payload) {
                Ok(r) => report = Some(r),
                Err(e) => failure = Some(e),
            }
        }
        (None, Some(e)) => steps.extend(cause(engine, &admin, e)?),
        (None, None) => bail!("give --ingest FILE or --event JSON"),
    }

    // What exists afterwards, as the admin sees it.
    let log = engine.plugin_log(&admin, &name, 1_000)?;
    let outbox = engine.outbox(&admin, 1_000)?;
    let mut customers = engine.find_customers(&admin, &Query::Status(Status::Active), 1_000)?;
    customers.extend(engine.find_customers(&admin, &Query::Status(Status::Dormant), 1_000)?);
    customers.sort_by_key(|c| c.id);
    let mut interactions = BTreeMap::new();
    for c in &customers {
        let list = engine.interactions(&admin, c.id)?;
        if !list.is_empty() {
            interactions.insert(c.id, list);
        }
    }
    let far = DateTime::<Utc>::from_timestamp(253_402_300_799, 0).unwrap_or_else(Utc::now);
    let follow_ups = engine.follow_ups_due(&admin, far, None)?;
    let audit: Vec<_> = engine
        .audit_tail(&admin, usize::MAX)?
        .into_iter()
        .filter(|e| e.actor == principal)
        .collect();

    if g.json {
        output::json(&serde_json::json!({
            "plugin": manifest,
            "warnings": warnings,
            "steps": steps,
            "report": report,
            "error": failure.as_ref().map(ToString::to_string),
            "log": log,
            "audit": audit,
            "outbox": outbox,
            "customers": customers,
            "interactions": interactions,
            "follow_ups": follow_ups,
        }))?;
    } else {
        section("what the harness did");
        for s in &steps {
            println!("{s}");
        }
        match &report {
            Some(r) => {
                section("the call");
                print!("{}", output::call_report_text(r));
            }
            None => {
                section(&format!("{name}'s log"));
                output::plugin_log(&log, false)?;
            }
        }
        section(&format!("audit entries of {principal}"));
        output::audit_detail(&audit);
        section("outbox");
        output::outbox(&outbox, false)?;
        let refused_message = audit
            .iter()
            .any(|e| e.action == "outbox.queue" && matches!(e.outcome, Outcome::Denied(_)));
        if refused_message
            && event
                .as_ref()
                .is_some_and(|e| !e.service_consent && !e.marketing_consent)
        {
            println!(
                "(messages are queued only with the customer's consent: add \"service_consent\": true, or \"marketing_consent\": true for marketing)"
            );
        }
        section("customers afterwards");
        output::customers(&customers, false)?;
        for (id, list) in &interactions {
            println!("interactions of customer {id}");
            output::interactions(list, false)?;
        }
        section("open follow-ups");
        output::follow_ups(&follow_ups, false)?;
    }
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
