//! The privacy lifecycle: consents, lifecycles, retention sweeps, deletion
//! records and the record of processing.

use std::collections::BTreeMap;
use std::io::{self, Write};

use custodian::{
    ConsentRecord, CustomerId, DeletionRecord, Inventory, Lifecycle, LifecycleState,
    RetentionReport, format_amount,
};
use serde::Serialize;

use super::{Render, items, kebab, line};

/// A customer's consent by purpose: granted, or withdrawn.
pub struct Consents(pub BTreeMap<String, bool>);

impl Render for Consents {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.0.is_empty() {
            writeln!(
                out,
                "no consent recorded: record one with `custodian consent grant ID PURPOSE --channel C --notice VERSION`"
            )?;
        }
        for (purpose, granted) in &self.0 {
            writeln!(
                out,
                "{:<36} {}",
                line(purpose),
                if *granted { "granted" } else { "withdrawn" }
            )?;
        }
        Ok(())
    }

    fn json(&self) -> impl Serialize {
        &self.0
    }
}

/// A consent's purpose, with the sensitive field of a separate consent:
/// `identity_verification(id_number)`.
fn consent_name(purpose: &str, field: Option<&str>) -> String {
    match field {
        Some(f) => format!("{purpose}({f})"),
        None => purpose.to_string(),
    }
}

impl Render for [ConsentRecord] {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            writeln!(out, "the consent ledger is empty")?;
        }
        for c in self {
            let notice = if c.notice_version.is_empty() {
                String::new()
            } else {
                format!("  notice {}", line(&c.notice_version))
            };
            writeln!(
                out,
                "{}  {:<8} {:<36} by {:<10} via {}{notice}",
                c.at.format("%Y-%m-%d %H:%M:%S"),
                if c.granted { "grant" } else { "withdraw" },
                line(&consent_name(&c.purpose, c.field.as_deref())),
                line(&c.by),
                line(&c.channel),
            )?;
        }
        Ok(())
    }

    fn json(&self) -> impl Serialize {
        self
    }
}

/// Where a customer is in its lifecycle.
pub struct LifecycleOf {
    pub customer: CustomerId,
    pub lifecycle: Lifecycle,
}

impl Render for LifecycleOf {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        let state = match self.lifecycle.state {
            LifecycleState::Active => "active".to_string(),
            LifecycleState::Dormant => "dormant: only data stewards may see it".to_string(),
            LifecycleState::Notified { at } => format!(
                "notified {} that its data will be removed; removed after the notice period unless back in touch",
                at.format("%Y-%m-%d %H:%M")
            ),
            other => kebab(&other),
        };
        writeln!(out, "customer {}: {state}", self.customer)?;
        match &self.lifecycle.legal_hold {
            Some(reason) => writeln!(out, "legal hold: {}", line(reason)),
            None => writeln!(out, "legal hold: none"),
        }
    }

    fn json(&self) -> impl Serialize {
        &self.lifecycle
    }
}

impl Render for RetentionReport {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        let r = self;
        writeln!(
            out,
            "retention sweep as of {}{}",
            r.now.format("%Y-%m-%d %H:%M:%S UTC"),
            if r.dry_run {
                " (dry run: nothing was changed)"
            } else {
                ""
            }
        )?;
        if let Some(after) = r.resumed_after {
            writeln!(
                out,
                "resumed after customer {after}: an earlier sweep as of the same time was cut short there"
            )?;
        }
        let counts = items(r.counts.iter().map(|(t, n)| format!("{} {n}", t.as_str())));
        writeln!(
            out,
            "{} customer(s) examined; {}",
            r.examined,
            if r.counts.is_empty() {
                "no change".to_string()
            } else {
                counts
            }
        )?;
        if r.faults > 0 {
            writeln!(
                out,
                "{} policy fault(s): those customers were kept; fix retention.rhai",
                r.faults
            )?;
            for (customer, reason) in &r.fault_examples {
                writeln!(out, "  customer {customer}: {}", line(reason))?;
            }
        }
        if !r.changes.is_empty() {
            writeln!(out, "\n{:>10}  {:<12} reason", "customer", "transition")?;
        }
        for c in &r.changes {
            writeln!(
                out,
                "{:>10}  {:<12} {}",
                c.customer,
                c.transition.as_str(),
                line(&c.reason)
            )?;
        }
        Ok(())
    }

    fn json(&self) -> impl Serialize {
        self
    }
}

impl Render for [DeletionRecord] {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            return writeln!(out, "no deletion records");
        }
        writeln!(
            out,
            "{:>10}  {:<16} {:<10} {:<10} reason",
            "customer", "at", "kind", "by"
        )?;
        for d in self {
            let rule = d
                .rule
                .as_deref()
                .map(|r| format!(" (rule: {})", line(r)))
                .unwrap_or_default();
            writeln!(
                out,
                "{:>10}  {:<16} {:<10} {:<10} {}{rule}",
                d.customer,
                d.at.format("%Y-%m-%d %H:%M"),
                line(&d.kind),
                line(&d.by),
                line(&d.reason)
            )?;
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
                    kept.push(format!("region {}", line(region)));
                }
                writeln!(out, "{:>10}  kept: {}", "", kept.join(", "))?;
            }
        }
        Ok(())
    }

    fn json(&self) -> impl Serialize {
        self
    }
}

impl Render for Inventory {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        let inv = self;
        writeln!(
            out,
            "record of processing: {} customer(s) held",
            inv.customers
        )?;
        if inv.purposes_enforced {
            writeln!(
                out,
                "purposes: enforced (a field is stored only for a purpose with a basis; sensitive fields need separate consent)"
            )?;
        } else {
            writeln!(
                out,
                "purposes: NOT enforced (the schema declares none: minimum necessary data cannot be shown)"
            )?;
        }
        let width = inv.purposes.iter().map(|p| p.name.len()).max().unwrap_or(0);
        for p in &inv.purposes {
            let retired = if p.retired { "RETIRED " } else { "" };
            writeln!(
                out,
                "  {:<width$}  {:<16} {retired}{}",
                line(&p.name),
                p.basis.as_str(),
                line(&p.description)
            )?;
        }
        writeln!(out, "retention: {}", line(&inv.retention))?;
        fields(out, inv)
    }

    fn json(&self) -> impl Serialize {
        self
    }
}

/// The inventory's table of fields: what is held, why, and who sees it.
fn fields(out: &mut dyn Write, inv: &Inventory) -> io::Result<()> {
    let width = inv
        .fields
        .iter()
        .map(|f| f.name.len())
        .max()
        .unwrap_or(0)
        .max("field".len());
    writeln!(
        out,
        "\n{:<width$}  {:<11}  {:<16}  {:>7}  {:>8}  purposes (basis)",
        "field", "sensitivity", "separate consent", "stored", "no basis"
    )?;
    for f in &inv.fields {
        let purposes = items(
            f.purposes
                .iter()
                .map(|(p, basis)| format!("{p} ({})", basis.as_str())),
        );
        writeln!(
            out,
            "{:<width$}  {:<11}  {:<16}  {:>7}  {:>8}  {purposes}",
            line(&f.name),
            kebab(&f.sensitivity),
            if f.separate_consent { "yes" } else { "no" },
            f.stored,
            f.without_basis,
        )?;
        let pad = "";
        writeln!(
            out,
            "{pad:<width$}  roles: {}",
            items(f.roles.iter().map(|(role, how)| format!("{role} {how}")))
        )?;
        if !f.plugins.is_empty() {
            writeln!(
                out,
                "{pad:<width$}  plugins: {}",
                items(f.plugins.iter().map(|(name, how)| format!("{name} {how}")))
            )?;
        }
        for flag in &f.flags {
            writeln!(out, "{pad:<width$}  ! {}", line(flag))?;
        }
    }
    Ok(())
}
