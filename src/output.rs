//! Printing records for people (aligned text) or programs (`--json`).

use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use chrono::DateTime;
use custodian::{
    Alert, AuditEntry, CallReport, ConsentRecord, Customer, CustomerId, DeletionRecord,
    FieldAccess, FollowUp, Grant, Interaction, Inventory, Lifecycle, LifecycleState, OutboxMessage,
    Outcome, PluginInfo, PluginLogLine, PluginManifest, Principal, RetentionReport, SessionInfo,
    format_amount,
};
use serde::Serialize;

pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn customers(list: &[Customer], as_json: bool) -> Result<()> {
    if as_json {
        return json(list);
    }
    if list.is_empty() {
        println!("no customers found");
    }
    for c in list {
        print!("{}", customer_text(c));
    }
    Ok(())
}

pub fn customer_text(c: &Customer) -> String {
    let mut out = format!(
        "customer {}  owner {}  status {}\n",
        c.id,
        c.owner,
        c.status.as_str()
    );
    let width = c.fields.keys().map(String::len).max().unwrap_or(0);
    for (name, value) in &c.fields {
        let note = if c.masked.contains(name) {
            "  (masked)"
        } else {
            ""
        };
        out.push_str(&format!("  {name:<width$}  {value}{note}\n"));
    }
    if let Some(t) = c.last_interaction_at {
        out.push_str(&format!(
            "  last interaction {}\n",
            t.format("%Y-%m-%d %H:%M")
        ));
    }
    out
}

pub fn principals(list: &[Principal], as_json: bool) -> Result<()> {
    if as_json {
        return json(list);
    }
    for p in list {
        let attrs: Vec<String> = p
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "{:<20} {:<8} {:<24} {:<12} {}",
            p.name,
            p.kind.as_str(),
            p.roles.join(","),
            if p.active { "active" } else { "deactivated" },
            attrs.join(" ")
        );
    }
    Ok(())
}

pub fn sessions(list: &[SessionInfo], as_json: bool) -> Result<()> {
    if as_json {
        return json(list);
    }
    if list.is_empty() {
        println!("no sessions");
    }
    for s in list {
        println!(
            "{}  {:<20} since {}  last seen {}  from {}{}",
            s.id,
            s.principal,
            s.created_at.format("%Y-%m-%d %H:%M"),
            s.last_seen.format("%Y-%m-%d %H:%M"),
            s.source,
            if s.second_factor { "  (2fa)" } else { "" }
        );
    }
    Ok(())
}

pub fn interactions(list: &[Interaction], as_json: bool) -> Result<()> {
    if as_json {
        return json(list);
    }
    if list.is_empty() {
        println!("no interactions");
    }
    for i in list {
        let amount = i
            .amount_minor
            .map(|a| format!("  amount {}", format_amount(a)))
            .unwrap_or_default();
        println!(
            "{}  {:<8} {:<8} by {:<10} {}{amount}",
            i.at.format("%Y-%m-%d %H:%M"),
            format!("{:?}", i.channel).to_lowercase(),
            format!("{:?}", i.direction).to_lowercase(),
            i.logged_by,
            i.summary.as_deref().unwrap_or("(summary hidden)")
        );
        for item in &i.items {
            println!("      {} x {}", item.quantity, item.name);
        }
    }
    Ok(())
}

pub fn follow_ups(list: &[FollowUp], as_json: bool) -> Result<()> {
    if as_json {
        return json(list);
    }
    if list.is_empty() {
        println!("no follow-ups due");
    }
    for f in list {
        println!(
            "#{:<6} due {}  customer {:<6} for {:<10} {}",
            f.id,
            f.due.format("%Y-%m-%d %H:%M"),
            f.customer,
            f.assignee,
            f.note.as_deref().unwrap_or("(note hidden)")
        );
    }
    Ok(())
}

pub fn audit(list: &[AuditEntry], as_json: bool) -> Result<()> {
    if as_json {
        return json(list);
    }
    for e in list {
        let outcome = outcome_text(&e.outcome);
        println!(
            "{:>6}  {}  {:<10} {:<18} {:<22} purpose={:<14} {}",
            e.seq,
            e.at.format("%Y-%m-%d %H:%M:%S"),
            e.actor,
            e.action,
            e.target.as_deref().unwrap_or("-"),
            e.purpose,
            outcome
        );
    }
    Ok(())
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Ok => "ok".to_string(),
        Outcome::Denied(r) => format!("DENIED: {r}"),
        Outcome::Failed(r) => format!("failed: {r}"),
    }
}

/// Audit entries with the customers and fields they touched: what a plugin
/// did, for its author.
pub fn audit_detail(list: &[AuditEntry]) {
    if list.is_empty() {
        println!("no audit entries");
    }
    for e in list {
        let mut line = format!(
            "{:>6}  {:<16} {}",
            e.seq,
            e.action,
            e.target.as_deref().unwrap_or("-")
        );
        if !e.customers.is_empty() {
            line.push_str(&format!("  customers {}", ids(&e.customers)));
        }
        if !e.fields.is_empty() {
            line.push_str(&format!("  fields {}", e.fields.join(",")));
        }
        println!("{line}  {}", outcome_text(&e.outcome));
    }
}

/// The name serde gives a value (`on-event`): hooks have no `as_str`.
fn kebab<T: Serialize + Debug>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{value:?}"),
    }
}

/// Items for people: comma-separated, or `-` when there are none.
fn items(list: impl IntoIterator<Item = String>) -> String {
    let list: Vec<String> = list.into_iter().collect();
    if list.is_empty() {
        "-".to_string()
    } else {
        list.join(", ")
    }
}

fn ids(list: &[u64]) -> String {
    items(list.iter().map(u64::to_string))
}

fn row(out: &mut String, label: &str, value: &str) {
    out.push_str(&format!("  {label:<10} {value}\n"));
}

fn access(a: FieldAccess) -> &'static str {
    match a {
        FieldAccess::Full => "full",
        FieldAccess::Masked => "masked",
    }
}

/// What a manifest asks for.
pub fn manifest_text(m: &PluginManifest) -> String {
    let mut out = format!("plugin {} {} by {}\n", m.name, m.version, m.publisher);
    if !m.description.is_empty() {
        out.push_str(&format!("  {}\n", m.description));
    }
    out.push_str(&format!("  acts as principal {}\n", m.principal()));
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

pub fn manifest(m: &PluginManifest, as_json: bool) -> Result<()> {
    if as_json {
        return json(m);
    }
    print!("{}", manifest_text(m));
    Ok(())
}

pub fn plugins(list: &[PluginInfo], as_json: bool) -> Result<()> {
    if as_json {
        return json(list);
    }
    if list.is_empty() {
        println!("no plugins installed");
    }
    for p in list {
        let g = &p.grant;
        println!(
            "{:<20} {:<10} hooks {:<16} events {:<2} commands {:<2} fields {:<3} faults {:<2} {}",
            p.manifest.name,
            p.manifest.version,
            items(g.hooks.iter().map(kebab)).replace(", ", ","),
            g.events.len(),
            g.commands.len(),
            g.fields.len(),
            p.consecutive_faults,
            p.status
        );
    }
    Ok(())
}

pub fn plugin(p: &PluginInfo, as_json: bool) -> Result<()> {
    if as_json {
        return json(p);
    }
    let mut out = manifest_text(&p.manifest);
    out.push_str(&grant_text(&p.grant, &p.manifest));
    out.push_str("state\n");
    row(&mut out, "status", &p.status.to_string());
    row(
        &mut out,
        "faults",
        &format!("{} since its last good call", p.consecutive_faults),
    );
    let installed = DateTime::from_timestamp_micros(p.installed_at).map_or_else(
        || p.installed_at.to_string(),
        |t| t.format("%Y-%m-%d %H:%M").to_string(),
    );
    row(
        &mut out,
        "installed",
        &format!("{installed} by {}", p.installed_by),
    );
    row(&mut out, "code", &format!("blake3 {}", p.code_hash));
    print!("{out}");
    Ok(())
}

/// What one plugin call did.
pub fn call_report_text(r: &CallReport) -> String {
    let mut out = format!("{} issued {} command(s)\n", r.plugin, r.commands.len());
    for (i, c) in r.commands.iter().enumerate() {
        out.push_str(&format!("  {:>3}. {c}\n", i + 1));
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
        for line in &r.log {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

pub fn call_report(r: &CallReport, as_json: bool) -> Result<()> {
    if as_json {
        return json(r);
    }
    print!("{}", call_report_text(r));
    Ok(())
}

pub fn plugin_log(list: &[PluginLogLine], as_json: bool) -> Result<()> {
    if as_json {
        return json(list);
    }
    if list.is_empty() {
        println!("the plugin's log is empty");
    }
    for l in list {
        println!(
            "{}  {:<6} {}",
            l.at.format("%Y-%m-%d %H:%M:%S"),
            l.level,
            l.text
        );
    }
    Ok(())
}

pub fn outbox(list: &[OutboxMessage], as_json: bool) -> Result<()> {
    if as_json {
        return json(list);
    }
    if list.is_empty() {
        println!("the outbox is empty");
    }
    for m in list {
        let params: Vec<String> = m.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "#{:<6} {}  {:<5} {:<20} {} {}  customer {}  from {}{}",
            m.id,
            m.created_at.format("%Y-%m-%d %H:%M"),
            m.channel,
            m.address,
            m.template,
            params.join(" "),
            m.customer,
            m.plugin,
            if m.marketing { "  (marketing)" } else { "" }
        );
    }
    Ok(())
}

pub fn alerts(list: &[Alert], as_json: bool) -> Result<()> {
    if as_json {
        return json(list);
    }
    if list.is_empty() {
        println!("no alerts");
    }
    for a in list {
        println!(
            "#{:<6} {}  {:<20} {:<20} {}",
            a.id,
            a.at.format("%Y-%m-%d %H:%M:%S"),
            a.kind,
            a.subject,
            a.message
        );
    }
    Ok(())
}

pub fn consents(map: &BTreeMap<String, bool>, as_json: bool) -> Result<()> {
    if as_json {
        return json(map);
    }
    if map.is_empty() {
        println!(
            "no consent recorded: record one with `custodian consent grant ID PURPOSE --channel C --notice VERSION`"
        );
    }
    for (purpose, granted) in map {
        println!(
            "{purpose:<36} {}",
            if *granted { "granted" } else { "withdrawn" }
        );
    }
    Ok(())
}

/// A consent's purpose, with the sensitive field of a separate consent:
/// `identity_verification(id_number)`.
fn consent_name(purpose: &str, field: Option<&str>) -> String {
    match field {
        Some(f) => format!("{purpose}({f})"),
        None => purpose.to_string(),
    }
}

pub fn consent_history(list: &[ConsentRecord], as_json: bool) -> Result<()> {
    if as_json {
        return json(list);
    }
    if list.is_empty() {
        println!("the consent ledger is empty");
    }
    for c in list {
        let notice = if c.notice_version.is_empty() {
            String::new()
        } else {
            format!("  notice {}", c.notice_version)
        };
        println!(
            "{}  {:<8} {:<36} by {:<10} via {}{notice}",
            c.at.format("%Y-%m-%d %H:%M:%S"),
            if c.granted { "grant" } else { "withdraw" },
            consent_name(&c.purpose, c.field.as_deref()),
            c.by,
            c.channel,
        );
    }
    Ok(())
}

pub fn lifecycle(customer: CustomerId, l: &Lifecycle, as_json: bool) -> Result<()> {
    if as_json {
        return json(l);
    }
    let state = match l.state {
        LifecycleState::Active => "active".to_string(),
        LifecycleState::Dormant => "dormant: only data stewards may see it".to_string(),
        LifecycleState::Notified { at } => format!(
            "notified {} that its data will be removed; removed after the notice period unless back in touch",
            at.format("%Y-%m-%d %H:%M")
        ),
        other => kebab(&other),
    };
    println!("customer {customer}: {state}");
    match &l.legal_hold {
        Some(reason) => println!("legal hold: {reason}"),
        None => println!("legal hold: none"),
    }
    Ok(())
}

pub fn retention_report(r: &RetentionReport, as_json: bool) -> Result<()> {
    if as_json {
        return json(r);
    }
    println!(
        "retention sweep as of {}{}",
        r.now.format("%Y-%m-%d %H:%M:%S UTC"),
        if r.dry_run {
            " (dry run: nothing was changed)"
        } else {
            ""
        }
    );
    if let Some(after) = r.resumed_after {
        println!(
            "resumed after customer {after}: an earlier sweep as of the same time was cut short there"
        );
    }
    let counts = items(r.counts.iter().map(|(t, n)| format!("{} {n}", t.as_str())));
    println!(
        "{} customer(s) examined; {}",
        r.examined,
        if r.counts.is_empty() {
            "no change".to_string()
        } else {
            counts
        }
    );
    if r.faults > 0 {
        println!(
            "{} policy fault(s): those customers were kept; fix retention.rhai",
            r.faults
        );
        for (customer, reason) in &r.fault_examples {
            println!("  customer {customer}: {reason}");
        }
    }
    if !r.changes.is_empty() {
        println!("\n{:>10}  {:<12} reason", "customer", "transition");
    }
    for c in &r.changes {
        println!(
            "{:>10}  {:<12} {}",
            c.customer,
            c.transition.as_str(),
            c.reason
        );
    }
    Ok(())
}

pub fn deletions(list: &[DeletionRecord], as_json: bool) -> Result<()> {
    if as_json {
        return json(list);
    }
    if list.is_empty() {
        println!("no deletion records");
        return Ok(());
    }
    println!(
        "{:>10}  {:<16} {:<10} {:<10} reason",
        "customer", "at", "kind", "by"
    );
    for d in list {
        let rule = d
            .rule
            .as_deref()
            .map(|r| format!(" (rule: {r})"))
            .unwrap_or_default();
        println!(
            "{:>10}  {:<16} {:<10} {:<10} {}{rule}",
            d.customer,
            d.at.format("%Y-%m-%d %H:%M"),
            d.kind,
            d.by,
            d.reason
        );
        if let Some(a) = &d.aggregate {
            let mut kept = vec![format!("customer since {}", a.customer_since_year)];
            if let Some(year) = a.first_purchase_year {
                kept.push(format!("first purchase {year}"));
            }
            kept.push(format!(
                "{} order(s) totalling {}",
                a.orders,
                format_amount(a.order_total_minor)
            ));
            kept.push(format!("{} interaction(s)", a.interactions));
            if let Some(region) = &a.region {
                kept.push(format!("region {region}"));
            }
            println!("{:>10}  kept: {}", "", kept.join(", "));
        }
    }
    Ok(())
}

pub fn inventory(inv: &Inventory, as_json: bool) -> Result<()> {
    if as_json {
        return json(inv);
    }
    println!("record of processing: {} customer(s) held", inv.customers);
    if inv.purposes_enforced {
        println!(
            "purposes: enforced (a field is stored only for a purpose with a basis; sensitive fields need separate consent)"
        );
    } else {
        println!(
            "purposes: NOT enforced (the schema declares none: minimum necessary data cannot be shown)"
        );
    }
    let width = inv.purposes.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for p in &inv.purposes {
        let retired = if p.retired { "RETIRED " } else { "" };
        println!(
            "  {:<width$}  {:<16} {retired}{}",
            p.name,
            p.basis.as_str(),
            p.description
        );
    }
    println!("retention: {}", inv.retention);
    let width = inv
        .fields
        .iter()
        .map(|f| f.name.len())
        .max()
        .unwrap_or(0)
        .max("field".len());
    println!(
        "\n{:<width$}  {:<11}  {:<16}  {:>7}  {:>8}  purposes (basis)",
        "field", "sensitivity", "separate consent", "stored", "no basis"
    );
    for f in &inv.fields {
        let purposes = items(
            f.purposes
                .iter()
                .map(|(p, basis)| format!("{p} ({})", basis.as_str())),
        );
        println!(
            "{:<width$}  {:<11}  {:<16}  {:>7}  {:>8}  {purposes}",
            f.name,
            kebab(&f.sensitivity),
            if f.separate_consent { "yes" } else { "no" },
            f.stored,
            f.without_basis,
        );
        let pad = "";
        println!(
            "{pad:<width$}  roles: {}",
            items(f.roles.iter().map(|(role, how)| format!("{role} {how}")))
        );
        if !f.plugins.is_empty() {
            println!(
                "{pad:<width$}  plugins: {}",
                items(f.plugins.iter().map(|(name, how)| format!("{name} {how}")))
            );
        }
        for flag in &f.flags {
            println!("{pad:<width$}  ! {flag}");
        }
    }
    Ok(())
}
