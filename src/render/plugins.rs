//! Plugins: what a manifest asks for, what a grant gives, what a call did,
//! and the outbox and alerts they feed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use chrono::DateTime;
use custodian::{
    Alert, AuditEntry, CallReport, FieldAccess, Grant, OutboxMessage, PluginInfo, PluginLogLine,
    PluginManifest,
};
use serde::Serialize;

use super::{Render, ids, items, kebab, line, outcome_text, row};

fn access(a: FieldAccess) -> &'static str {
    match a {
        FieldAccess::Full => "full",
        FieldAccess::Masked => "masked",
    }
}

/// What a manifest asks for.
pub fn manifest_text(m: &PluginManifest) -> String {
    let mut out = format!(
        "plugin {} {} by {}\n",
        line(&m.name),
        line(&m.version),
        line(&m.publisher)
    );
    if !m.description.is_empty() {
        out.push_str(&format!("  {}\n", line(&m.description)));
    }
    out.push_str(&format!("  acts as principal {}\n", line(&m.principal())));
    out.push_str("asks for\n");
    row(&mut out, "hooks", &items(m.hooks.iter().map(kebab)));
    row(
        &mut out,
        "events",
        &items(m.events.iter().map(|e| e.as_str().to_string())),
    );
    row(
        &mut out,
        "fields",
        &items(
            m.fields
                .iter()
                .map(|(f, a)| format!("{f} ({})", access(*a))),
        ),
    );
    row(
        &mut out,
        "commands",
        &items(m.commands.iter().map(|c| c.as_str().to_string())),
    );
    row(
        &mut out,
        "rates",
        &format!(
            "{} commands and {} messages a minute",
            m.commands_per_minute, m.messages_per_minute
        ),
    );
    row(&mut out, "channels", &items(m.channels.iter().cloned()));
    row(&mut out, "regions", &items(m.regions.iter().cloned()));
    out
}

/// The granted items of a set, marking what was asked for and withheld, and
/// what was not asked for (which the engine refuses).
fn versus<T: Ord>(asked: &BTreeSet<T>, given: &BTreeSet<T>, name: impl Fn(&T) -> String) -> String {
    let mut out = items(given.iter().map(|g| {
        if asked.contains(g) {
            name(g)
        } else {
            format!("{} (not asked for)", name(g))
        }
    }));
    let withheld: Vec<String> = asked.difference(given).map(&name).collect();
    if !withheld.is_empty() {
        out.push_str(&format!("  (withheld: {})", withheld.join(", ")));
    }
    out
}

fn fields_versus(
    asked: &BTreeMap<String, FieldAccess>,
    given: &BTreeMap<String, FieldAccess>,
) -> String {
    let mut out = items(given.iter().map(|(f, a)| match asked.get(f) {
        None => format!("{f} ({}; not asked for)", access(*a)),
        Some(wanted) if wanted != a => {
            format!("{f} ({}; asked {})", access(*a), access(*wanted))
        }
        Some(_) => format!("{f} ({})", access(*a)),
    }));
    let withheld: Vec<&str> = asked
        .keys()
        .filter(|f| !given.contains_key(*f))
        .map(String::as_str)
        .collect();
    if !withheld.is_empty() {
        out.push_str(&format!("  (withheld: {})", withheld.join(", ")));
    }
    out
}

/// What a grant gives, next to what the manifest asked for.
pub fn grant_text(g: &Grant, m: &PluginManifest) -> String {
    let mut out = String::from("grants\n");
    row(&mut out, "hooks", &versus(&m.hooks, &g.hooks, kebab));
    row(
        &mut out,
        "events",
        &versus(&m.events, &g.events, |e| e.as_str().to_string()),
    );
    row(&mut out, "fields", &fields_versus(&m.fields, &g.fields));
    row(
        &mut out,
        "commands",
        &versus(&m.commands, &g.commands, |c| c.as_str().to_string()),
    );
    let mut rates = format!(
        "{} commands and {} messages a minute",
        g.commands_per_minute, g.messages_per_minute
    );
    if (g.commands_per_minute, g.messages_per_minute)
        != (m.commands_per_minute, m.messages_per_minute)
    {
        rates.push_str(&format!(
            "  (asked {} and {})",
            m.commands_per_minute, m.messages_per_minute
        ));
    }
    row(&mut out, "rates", &rates);
    row(
        &mut out,
        "channels",
        &versus(&m.channels, &g.channels, String::clone),
    );
    row(
        &mut out,
        "regions",
        &versus(&m.regions, &g.regions, String::clone),
    );
    row(&mut out, "memory", &format!("{} MiB", g.memory_mib));
    row(
        &mut out,
        "deadline",
        &format!("{} ms a call", g.deadline_ms),
    );
    let owner = match &g.owner {
        Some(o) => o.clone(),
        None => format!("{} (its own principal)", m.principal()),
    };
    row(
        &mut out,
        "owner",
        &format!("{owner}, of the customers it creates"),
    );
    out
}

impl Render for PluginManifest {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        write!(out, "{}", manifest_text(self))
    }

    fn json(&self) -> impl Serialize {
        self
    }
}

impl Render for [PluginInfo] {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            writeln!(out, "no plugins installed")?;
        }
        for p in self {
            let g = &p.grant;
            writeln!(
                out,
                "{:<20} {:<10} hooks {:<16} events {:<2} commands {:<2} fields {:<3} faults {:<2} {}",
                line(&p.manifest.name),
                line(&p.manifest.version),
                items(g.hooks.iter().map(kebab)).replace(", ", ","),
                g.events.len(),
                g.commands.len(),
                g.fields.len(),
                p.consecutive_faults,
                line(&p.status.to_string())
            )?;
        }
        Ok(())
    }

    fn json(&self) -> impl Serialize {
        self
    }
}

impl Render for PluginInfo {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        let p = self;
        let mut text = manifest_text(&p.manifest);
        text.push_str(&grant_text(&p.grant, &p.manifest));
        text.push_str("state\n");
        row(&mut text, "status", &p.status.to_string());
        row(
            &mut text,
            "faults",
            &format!("{} within the fault window", p.consecutive_faults),
        );
        let installed = DateTime::from_timestamp_micros(p.installed_at).map_or_else(
            || p.installed_at.to_string(),
            |t| t.format("%Y-%m-%d %H:%M").to_string(),
        );
        row(
            &mut text,
            "installed",
            &format!("{installed} by {}", line(&p.installed_by)),
        );
        row(&mut text, "code", &format!("blake3 {}", p.code_hash));
        write!(out, "{text}")
    }

    fn json(&self) -> impl Serialize {
        self
    }
}

/// What one plugin call did.
pub fn call_report_text(r: &CallReport) -> String {
    let mut out = format!(
        "{} issued {} command(s)\n",
        line(&r.plugin),
        r.commands.len()
    );
    for (i, c) in r.commands.iter().enumerate() {
        out.push_str(&format!("  {:>3}. {}\n", i + 1, line(&c.to_string())));
    }
    out.push_str("the engine\n");
    row(
        &mut out,
        "created",
        &format!("customers {}", ids(&r.created)),
    );
    row(
        &mut out,
        "updated",
        &format!("customers {}", ids(&r.updated)),
    );
    row(
        &mut out,
        "logged",
        &format!("interactions {}", ids(&r.interactions)),
    );
    row(
        &mut out,
        "scheduled",
        &format!("follow-ups {}", ids(&r.follow_ups)),
    );
    row(
        &mut out,
        "queued",
        &format!("messages {}", ids(&r.messages)),
    );
    for s in &r.skipped_messages {
        row(&mut out, "skipped", s);
    }
    if r.log.is_empty() {
        out.push_str("plugin log: -\n");
    } else {
        out.push_str("plugin log\n");
        for l in &r.log {
            out.push_str(&format!("  {}\n", line(l)));
        }
    }
    out
}

impl Render for CallReport {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        write!(out, "{}", call_report_text(self))
    }

    fn json(&self) -> impl Serialize {
        self
    }
}

impl Render for [PluginLogLine] {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            writeln!(out, "the plugin's log is empty")?;
        }
        for l in self {
            writeln!(
                out,
                "{}  {:<6} {}",
                l.at.format("%Y-%m-%d %H:%M:%S"),
                line(&l.level),
                line(&l.text)
            )?;
        }
        Ok(())
    }

    fn json(&self) -> impl Serialize {
        self
    }
}

/// Audit entries with the customers and fields they touched: what a plugin
/// did, for its author.
pub fn audit_detail(out: &mut dyn Write, list: &[AuditEntry]) -> io::Result<()> {
    if list.is_empty() {
        writeln!(out, "no audit entries")?;
    }
    for e in list {
        let mut text = format!(
            "{:>6}  {:<16} {}",
            e.seq,
            line(&e.action),
            line(e.target.as_deref().unwrap_or("-"))
        );
        if !e.customers.is_empty() {
            text.push_str(&format!("  customers {}", ids(&e.customers)));
        }
        if !e.fields.is_empty() {
            text.push_str(&format!("  fields {}", line(&e.fields.join(","))));
        }
        writeln!(out, "{text}  {}", outcome_text(&e.outcome))?;
    }
    Ok(())
}

impl Render for [OutboxMessage] {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            writeln!(out, "the outbox is empty")?;
        }
        for m in self {
            let params: Vec<String> = m
                .params
                .iter()
                .map(|(k, v)| format!("{}={}", line(k), line(v)))
                .collect();
            writeln!(
                out,
                "#{:<6} {}  {:<5} {:<20} {} {}  customer {}  from {}{}",
                m.id,
                m.created_at.format("%Y-%m-%d %H:%M"),
                line(&m.channel),
                line(&m.address),
                line(&m.template),
                params.join(" "),
                m.customer,
                line(&m.plugin),
                if m.marketing { "  (marketing)" } else { "" }
            )?;
        }
        Ok(())
    }

    fn json(&self) -> impl Serialize {
        self
    }
}

impl Render for [Alert] {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            writeln!(out, "no alerts")?;
        }
        for a in self {
            writeln!(
                out,
                "#{:<6} {}  {:<8} {:<12} {:<22} {:<20} {}",
                a.id,
                a.at.format("%Y-%m-%d %H:%M:%S"),
                a.severity.as_str(),
                a.state.as_str(),
                line(&a.kind),
                line(&a.subject),
                line(&a.message)
            )?;
        }
        Ok(())
    }

    fn json(&self) -> impl Serialize {
        self
    }
}

impl Render for Alert {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "alert #{}: {}", self.id, line(&self.kind))?;
        writeln!(
            out,
            "  raised    {}",
            self.at.format("%Y-%m-%d %H:%M:%S UTC")
        )?;
        writeln!(out, "  severity  {}", self.severity.as_str())?;
        writeln!(out, "  state     {}", self.state.as_str())?;
        writeln!(out, "  about     {}", line(&self.subject))?;
        if let Some(actor) = &self.actor {
            writeln!(out, "  actor     {}", line(actor))?;
        }
        writeln!(out, "  message   {}", line(&self.message))?;
        for (name, value) in &self.evidence {
            writeln!(out, "  evidence  {} = {}", line(name), line(value))?;
        }
        for h in &self.handled {
            writeln!(
                out,
                "  {} {} by {}: {}",
                h.at.format("%Y-%m-%d %H:%M:%S"),
                h.state.as_str(),
                line(&h.by),
                line(&h.note)
            )?;
        }
        Ok(())
    }

    fn json(&self) -> impl Serialize {
        self
    }
}
