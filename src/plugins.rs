//! The plugin subsystem's commands: `plugin` (inspect, install, manage,
//! ingest, and `plugin run`, the harness for plugin authors), `outbox` and
//! `alerts`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use clap::{ArgGroup, Args, Subcommand};
use custodian::{
    Channel, CommandKind, ConsentChange, Context, CustomerUpdate, Direction, Engine, EventKind,
    FieldAccess, Grant, Hook, MasterKey, NewCustomer, NewFollowUp, NewInteraction, Outcome,
    PluginError, PluginInfo, PluginManifest, Query, Status,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Global, ctx, open, output, parse_time};

#[derive(Subcommand)]
pub enum PluginCmd {
    /// Show what a plugin file asks for, without installing it (needs no
    /// database).
    Inspect {
        /// The plugin (a wasm component).
        file: PathBuf,
    },
    /// Show what a plugin asks for and the grant given here, then install it
    /// (or upgrade it) once confirmed.
    Install(InstallArgs),
    /// List installed plugins with their status and what they were granted.
    List,
    /// Show an installed plugin: what it asks for next to what it was granted.
    Show {
        /// The plugin's name.
        name: String,
    },
    /// Enable a plugin, clearing a quarantine and its fault count.
    Enable {
        /// The plugin's name.
        name: String,
    },
    /// Disable a plugin: it is called no more until enabled.
    Disable {
        /// The plugin's name.
        name: String,
    },
    /// Remove a plugin with its code, state and log; its principal is
    /// deactivated (and kept for the audit chain).
    Remove {
        /// The plugin's name.
        name: String,
    },
    /// Hand a payload (a webhook body, an export file) to a plugin's
    /// `ingest` hook and show what it did.
    Ingest {
        /// The plugin's name.
        name: String,
        /// The payload file, or `-` for stdin.
        file: PathBuf,
    },
    /// The newest lines of a plugin's log, oldest first.
    Log {
        /// The plugin's name.
        name: String,
        /// How many lines.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Try a plugin in a throw-away database with everything it asks for
    /// granted: feed it a payload or cause an event, and see what it did.
    Run(RunArgs),
}

#[derive(Args)]
pub struct InstallArgs {
    /// The plugin (a wasm component).
    file: PathBuf,
    /// Grant everything the manifest asks for.
    #[arg(long, conflicts_with_all = ["fields", "commands", "events", "hooks", "channels", "regions"])]
    grant_all: bool,
    /// Fields to grant, comma-separated: `name` with the access the manifest
    /// asks for, `name:masked` to show it masked only.
    #[arg(long, value_delimiter = ',', value_name = "FIELD[:masked],...", value_parser = field_spec)]
    fields: Vec<(String, Option<FieldAccess>)>,
    /// Commands to grant: upsert-customer, log-interaction,
    /// create-follow-up, send-message.
    #[arg(long, value_delimiter = ',', value_name = "COMMAND,...", value_parser = kebab::<CommandKind>)]
    commands: Vec<CommandKind>,
    /// Events to deliver: customer-created, customer-updated,
    /// customer-erased, interaction-logged, follow-up-due, alert-raised.
    #[arg(long, value_delimiter = ',', value_name = "EVENT,...", value_parser = kebab::<EventKind>)]
    events: Vec<EventKind>,
    /// Hooks it may be called on: ingest, on-event (those the manifest asks
    /// for when not given).
    #[arg(long, value_delimiter = ',', value_name = "HOOK,...", value_parser = kebab::<Hook>)]
    hooks: Vec<Hook>,
    /// Message channels it may send on (sms, email).
    #[arg(long, value_delimiter = ',', value_name = "CHANNEL,...")]
    channels: Vec<String>,
    /// Regions whose customers it handles.
    #[arg(long, value_delimiter = ',', value_name = "REGION,...")]
    regions: Vec<String>,
    /// Commands a minute (the manifest's rate when not given).
    #[arg(long, value_name = "N")]
    commands_per_minute: Option<u32>,
    /// Messages a minute (the manifest's rate when not given).
    #[arg(long, value_name = "N")]
    messages_per_minute: Option<u32>,
    /// Its memory cap in MiB (64 when not given).
    #[arg(long, value_name = "N")]
    memory_mib: Option<u32>,
    /// The deadline of one call in milliseconds (100 when not given).
    #[arg(long, value_name = "N")]
    deadline_ms: Option<u32>,
    /// Who owns the customers it creates (its own principal when not given).
    #[arg(long, value_name = "PRINCIPAL")]
    owner: Option<String>,
    /// Install without asking for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
}

#[derive(Args)]
#[command(group(ArgGroup::new("input").required(true).args(["ingest", "event"])))]
pub struct RunArgs {
    /// The plugin (a wasm component).
    file: PathBuf,
    /// A payload for its `ingest` hook (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    ingest: Option<PathBuf>,
    /// An event to cause, as JSON (or `@FILE` to read it from a file).
    ///
    /// `kind` is customer-created, customer-updated, customer-erased,
    /// interaction-logged or follow-up-due; `customer` holds the fields of
    /// the customer it is about, created first by `admin`. Optional keys:
    /// `marketing_consent` and `service_consent` (true records that consent:
    /// messages need it), `update` (fields to set for customer-updated; the
    /// customer's own fields again by default), `summary`, `channel` and
    /// `direction` (interaction-logged), `note` and `due` (follow-up-due;
    /// due now by default). The event goes through the engine's normal
    /// path: creating, updating, deleting the customer, logging the
    /// interaction, or scheduling the follow-up and dispatching it. Example:
    /// {"kind":"follow-up-due","customer":{"name":"Li Na","phone":"13800138000"},"service_consent":true,"note":"call back","due":"2026-12-01T09:00:00Z"}
    #[arg(long, value_name = "JSON")]
    event: Option<String>,
}

#[derive(Subcommand)]
pub enum OutboxCmd {
    /// List messages waiting for delivery, oldest first, with the addresses
    /// resolved.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Acknowledge delivered messages: they leave the outbox.
    Ack {
        /// Message ids, from `outbox list`.
        #[arg(required = true)]
        ids: Vec<u64>,
    },
}

/// Parses a kebab-case name the engine's types deserialize from
/// (`on-event`, `send-message`); the error lists the valid names.
fn kebab<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_value(Value::String(text.trim().to_string())).map_err(|e| e.to_string())
}

/// Parses `name` or `name:masked` (`name:full` too).
fn field_spec(text: &str) -> Result<(String, Option<FieldAccess>), String> {
    let (name, access) = match text.trim().split_once(':') {
        None => (text.trim(), None),
        Some((name, access)) => (name, Some(kebab::<FieldAccess>(access)?)),
    };
    if name.is_empty() {
        return Err(format!("`{text}` names no field"));
    }
    Ok((name.to_string(), access))
}

/// Reads a file, or stdin for `-`.
fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read stdin")?;
        return Ok(bytes);
    }
    std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))
}

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

/// Asks a yes/no question on stderr; only `y` or `yes` on stdin is yes.
pub(crate) fn confirm(question: &str) -> Result<bool> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    if !std::io::stdin().is_terminal() {
        // Nothing echoed the answer: end the prompt's line.
        eprintln!();
    }
    let answer = line.trim().to_ascii_lowercase();
    Ok(answer == "y" || answer == "yes")
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
