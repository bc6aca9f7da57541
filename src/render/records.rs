//! Customers, interactions, follow-ups, principals, sessions and the audit
//! chain.

use std::io::{self, Write};

use custodian::{
    AuditEntry, Budget, Customer, FollowUp, Interaction, Over, Principal, SessionInfo,
    format_amount,
};
use serde::Serialize;

use super::{Json, Render, line, outcome_text};

/// A new record's id: alone, or as `{"id": N}` with `--json`.
pub struct NewId(pub u64);

impl Render for NewId {
    const JSON: Json = Json::Line;

    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", self.0)
    }

    fn json(&self) -> impl Serialize {
        serde_json::json!({ "id": self.0 })
    }
}

/// How many customers there are.
pub struct Count(pub u64);

impl Render for Count {
    const JSON: Json = Json::Line;

    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", self.0)
    }

    fn json(&self) -> impl Serialize {
        serde_json::json!({ "count": self.0 })
    }
}

impl Render for [Customer] {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            writeln!(out, "no customers found")?;
        }
        for c in self {
            write!(out, "{}", customer_text(c))?;
        }
        Ok(())
    }

    fn json(&self) -> impl Serialize {
        self
    }
}

fn customer_text(c: &Customer) -> String {
    let mut out = format!(
        "customer {}  owner {}  status {}\n",
        c.id,
        line(&c.owner),
        c.status.as_str()
    );
    let width = c.fields.keys().map(String::len).max().unwrap_or(0);
    for (name, value) in &c.fields {
        let note = if c.masked.contains(name) {
            "  (masked)"
        } else {
            ""
        };
        out.push_str(&format!(
            "  {:<width$}  {}{note}\n",
            line(name),
            line(value)
        ));
    }
    if let Some(t) = c.last_interaction_at {
        out.push_str(&format!(
            "  last interaction {}\n",
            t.format("%Y-%m-%d %H:%M")
        ));
    }
    out
}

impl Render for [Principal] {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        for p in self {
            let attrs: Vec<String> = p
                .attributes
                .iter()
                .map(|(k, v)| format!("{}={}", line(k), line(v)))
                .collect();
            writeln!(
                out,
                "{:<20} {:<8} {:<24} {:<12} {}",
                line(&p.name),
                p.kind.as_str(),
                line(&p.roles.join(",")),
                if p.active { "active" } else { "deactivated" },
                attrs.join(" ")
            )?;
        }
        Ok(())
    }

    fn json(&self) -> impl Serialize {
        self
    }
}

impl Render for Budget {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        let Some(limits) = &self.limits else {
            writeln!(out, "{}: no budget", line(&self.principal))?;
            return Ok(());
        };
        writeln!(
            out,
            "{}: past a budget: {}",
            line(&self.principal),
            match limits.over {
                Over::Block => "refused",
                Over::StepUp => "a step-up (second factor)",
                _ => "refused",
            }
        )?;
        writeln!(
            out,
            "{:<10} {:>18} {:>18} {:>18}",
            "", "hour", "day", "30 days"
        )?;
        for (name, caps, used) in [
            ("rows", &limits.rows, &self.rows),
            ("customers", &limits.customers, &self.customers),
            ("misses", &limits.misses, &self.misses),
        ] {
            let cell = |cap: Option<u64>, used: u64| match cap {
                Some(cap) => format!("{used} of {cap}"),
                None => format!("{used}"),
            };
            writeln!(
                out,
                "{name:<10} {:>18} {:>18} {:>18}",
                cell(caps.hour, used.hour),
                cell(caps.day, used.day),
                cell(caps.month, used.month)
            )?;
        }
        Ok(())
    }

    fn json(&self) -> impl Serialize {
        self
    }
}

impl Render for [SessionInfo] {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            writeln!(out, "no sessions")?;
        }
        for s in self {
            writeln!(
                out,
                "{}  {:<20} since {}  last seen {}  from {}{}",
                s.id,
                line(&s.principal),
                s.created_at.format("%Y-%m-%d %H:%M"),
                s.last_seen.format("%Y-%m-%d %H:%M"),
                line(&s.source),
                if s.second_factor { "  (2fa)" } else { "" }
            )?;
        }
        Ok(())
    }

    fn json(&self) -> impl Serialize {
        self
    }
}

impl Render for [Interaction] {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            writeln!(out, "no interactions")?;
        }
        for i in self {
            let amount = i
                .amount_minor
                .map(|a| format!("  amount {}", format_amount(a)))
                .unwrap_or_default();
            writeln!(
                out,
                "{}  {:<8} {:<8} by {:<10} {}{amount}",
                i.at.format("%Y-%m-%d %H:%M"),
                format!("{:?}", i.channel).to_lowercase(),
                format!("{:?}", i.direction).to_lowercase(),
                line(&i.logged_by),
                line(i.summary.as_deref().unwrap_or("(summary hidden)"))
            )?;
            for item in &i.items {
                writeln!(out, "      {} x {}", item.quantity, line(&item.name))?;
            }
        }
        Ok(())
    }

    fn json(&self) -> impl Serialize {
        self
    }
}

impl Render for [FollowUp] {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            writeln!(out, "no follow-ups due")?;
        }
        for f in self {
            writeln!(
                out,
                "#{:<6} due {}  customer {:<6} for {:<10} {}",
                f.id,
                f.due.format("%Y-%m-%d %H:%M"),
                f.customer,
                line(&f.assignee),
                line(f.note.as_deref().unwrap_or("(note hidden)"))
            )?;
        }
        Ok(())
    }

    fn json(&self) -> impl Serialize {
        self
    }
}

impl Render for [AuditEntry] {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        for e in self {
            let outcome = outcome_text(&e.outcome);
            writeln!(
                out,
                "{:>6}  {}  {:<10} {:<18} {:<22} purpose={:<14} {}",
                e.seq,
                e.at.format("%Y-%m-%d %H:%M:%S"),
                line(&e.actor),
                line(&e.action),
                line(e.target.as_deref().unwrap_or("-")),
                line(&e.purpose),
                outcome
            )?;
        }
        Ok(())
    }

    fn json(&self) -> impl Serialize {
        self
    }
}
