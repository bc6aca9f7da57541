//! `custodian plugin run`: the harness for plugin authors. It installs a
//! plugin with all it asks for in a throw-away database, feeds it a
//! payload or causes an event, and shows what it did.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use custodian::{
    AuditEntry, CallReport, Channel, ConsentChange, Context, Customer, CustomerId, CustomerUpdate,
    Direction, Engine, EventKind, FollowUp, Grant, Hook, Interaction, NewCustomer, NewFollowUp,
    NewInteraction, OutboxMessage, Outcome, PluginLogLine, PluginManifest, Query, Status,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::plugin::Scratch;
use crate::args::plugins::RunArgs;
use crate::input::read_input;
use crate::parse::time_or_now;
use crate::render::{Json, Output, Render, audit_detail, call_report_text, manifest_text};

pub fn run(out: Output, args: &RunArgs) -> Result<()> {
    let wasm = read_input(&args.file)?;
    let event = args.event.as_deref().map(TestEvent::parse).transpose()?;
    let scratch = Scratch::new()?;
    let engine = &scratch.engine;
    let admin = Context::new("admin", "plugin test");
    let manifest = engine.inspect_plugin(&wasm)?;
    engine.install_plugin(&admin, &wasm, Grant::all(&manifest))?;
    let warnings = warnings(&manifest, event.as_ref());
    out.emit(&Trial {
        manifest: &manifest,
        dir: scratch.dir.path(),
        warnings: &warnings,
    })?;

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
            match engine.ingest(&manifest.name, &payload) {
                Ok(r) => report = Some(r),
                Err(e) => failure = Some(e),
            }
        }
        (None, Some(e)) => steps.extend(cause(engine, &admin, e)?),
        (None, None) => bail!("give --ingest FILE or --event JSON"),
    }
    // Events are delivered after their commit: wait for the reactions.
    engine.drain_events()?;

    let after = Afterwards::gather(engine, &admin, &manifest)?;
    let refused_message = after
        .audit
        .iter()
        .any(|e| e.action == "outbox.queue" && matches!(e.outcome, Outcome::Denied(_)));
    let consent_hint = refused_message
        && event
            .as_ref()
            .is_some_and(|e| !e.service_consent && !e.marketing_consent);
    out.emit(&Tried {
        manifest: &manifest,
        warnings,
        steps,
        report,
        error: failure.as_ref().map(ToString::to_string),
        after,
        consent_hint,
    })?;
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Why the event given may not reach the plugin.
fn warnings(manifest: &PluginManifest, event: Option<&TestEvent>) -> Vec<String> {
    let name = &manifest.name;
    let mut warnings = Vec::new();
    if let Some(e) = event {
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
    warnings
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
    let fields = field_values(&event.customer)?;
    let (id, mut done) = create(engine, admin, event, &fields)?;
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
        EventKind::FollowUpDue => done.push(follow_up_due(engine, admin, event, id)?),
    }
    Ok(done)
}

/// Creates the event's customer with the consents it gives; returns its id
/// and what was done.
fn create(
    engine: &Engine,
    admin: &Context,
    event: &TestEvent,
    fields: &[(String, String)],
) -> Result<(CustomerId, Vec<String>)> {
    let mut new = NewCustomer::new();
    for (name, value) in fields {
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
    let mut done = vec![format!("created customer {id} as admin")];
    for purpose in consented {
        done.push(format!(
            "recorded customer {id}'s consent to `{purpose}` with it"
        ));
    }
    Ok((id, done))
}

/// Schedules the event's follow-up on customer `id` and dispatches it.
fn follow_up_due(
    engine: &Engine,
    admin: &Context,
    event: &TestEvent,
    id: CustomerId,
) -> Result<String> {
    let due = time_or_now(event.due.as_deref())?;
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
    Ok(format!(
        "scheduled follow-up {follow_up} due {}, then dispatched {n} due follow-up(s)",
        due.format("%Y-%m-%d %H:%M UTC")
    ))
}

/// What exists in the throw-away database afterwards, as the admin sees it.
struct Afterwards {
    log: Vec<PluginLogLine>,
    outbox: Vec<OutboxMessage>,
    customers: Vec<Customer>,
    interactions: BTreeMap<CustomerId, Vec<Interaction>>,
    follow_ups: Vec<FollowUp>,
    /// What the plugin's principal did.
    audit: Vec<AuditEntry>,
}

impl Afterwards {
    fn gather(engine: &Engine, admin: &Context, manifest: &PluginManifest) -> Result<Self> {
        let log = engine.plugin_log(admin, &manifest.name, 1_000)?;
        let outbox = engine.outbox(admin, 1_000)?;
        let mut customers = engine.find_customers(admin, &Query::Status(Status::Active), 1_000)?;
        customers.extend(engine.find_customers(admin, &Query::Status(Status::Dormant), 1_000)?);
        customers.sort_by_key(|c| c.id);
        let mut interactions = BTreeMap::new();
        for c in &customers {
            let list = engine.interactions(admin, c.id)?;
            if !list.is_empty() {
                interactions.insert(c.id, list);
            }
        }
        let far = DateTime::<Utc>::from_timestamp(253_402_300_799, 0).unwrap_or_else(Utc::now);
        let follow_ups = engine.follow_ups_due(admin, far, None)?;
        let principal = manifest.principal();
        let audit = engine
            .audit_tail(admin, usize::MAX)?
            .into_iter()
            .filter(|e| e.actor == principal)
            .collect();
        Ok(Self {
            log,
            outbox,
            customers,
            interactions,
            follow_ups,
            audit,
        })
    }
}

/// A heading in the text output of `plugin run`.
fn section(out: &mut dyn Write, title: &str) -> io::Result<()> {
    writeln!(out, "\n== {title}")
}

/// The plugin about to be tried: shown to people before anything runs;
/// programs get it with the rest.
struct Trial<'a> {
    manifest: &'a PluginManifest,
    dir: &'a Path,
    warnings: &'a [String],
}

impl Render for Trial<'_> {
    const JSON: Json = Json::Omitted;

    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        write!(out, "{}", manifest_text(self.manifest))?;
        writeln!(
            out,
            "installed with all it asks for in a throw-away database ({})",
            self.dir.display()
        )?;
        for w in self.warnings {
            writeln!(out, "warning: {w}")?;
        }
        Ok(())
    }

    fn json(&self) -> impl Serialize {}
}

/// What the plugin did when tried.
struct Tried<'a> {
    manifest: &'a PluginManifest,
    warnings: Vec<String>,
    /// What the harness did, for people.
    steps: Vec<String>,
    report: Option<CallReport>,
    error: Option<String>,
    after: Afterwards,
    /// Whether to say that a refused message needed the customer's consent.
    consent_hint: bool,
}

impl Render for Tried<'_> {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        let after = &self.after;
        section(out, "what the harness did")?;
        for s in &self.steps {
            writeln!(out, "{s}")?;
        }
        match &self.report {
            Some(r) => {
                section(out, "the call")?;
                write!(out, "{}", call_report_text(r))?;
            }
            None => {
                section(out, &format!("{}'s log", self.manifest.name))?;
                after.log.human(out)?;
            }
        }
        section(
            out,
            &format!("audit entries of {}", self.manifest.principal()),
        )?;
        audit_detail(out, &after.audit)?;
        section(out, "outbox")?;
        after.outbox.human(out)?;
        if self.consent_hint {
            writeln!(
                out,
                "(messages are queued only with the customer's consent: add \"service_consent\": true, or \"marketing_consent\": true for marketing)"
            )?;
        }
        section(out, "customers afterwards")?;
        after.customers.human(out)?;
        for (id, list) in &after.interactions {
            writeln!(out, "interactions of customer {id}")?;
            list.human(out)?;
        }
        section(out, "open follow-ups")?;
        after.follow_ups.human(out)
    }

    fn json(&self) -> impl Serialize {
        let after = &self.after;
        serde_json::json!({
            "plugin": self.manifest,
            "warnings": self.warnings,
            "steps": self.steps,
            "report": self.report,
            "error": self.error,
            "log": after.log,
            "audit": after.audit,
            "outbox": after.outbox,
            "customers": after.customers,
            "interactions": after.interactions,
            "follow_ups": after.follow_ups,
        })
    }
}
