//! Printing records for people (aligned text) or programs (`--json`).

use anyhow::Result;
use custodian::{
    AuditEntry, Customer, FollowUp, Interaction, Outcome, Principal, SessionInfo, format_amount,
};
use serde::Serialize;

fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
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
        let outcome = match &e.outcome {
            Outcome::Ok => "ok".to_string(),
            Outcome::Denied(r) => format!("DENIED: {r}"),
            Outcome::Failed(r) => format!("failed: {r}"),
        };
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
