//! Records of processing (PIPL art. 54–55, GDPR art. 30): which fields are
//! held, how sensitive they are, for which purposes on which basis, how
//! long, and who may receive them.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::Engine;
use crate::model::{Basis, FieldType, Schema, Sensitivity};
use crate::op::{Entry, Op};
use crate::plugin::{FieldAccess, PluginInfo};
use crate::policy::{Action, CustomerFacts, Decision, Subject};
use crate::privacy;
use crate::records::granted_keys;
use crate::store::Snapshot;
use crate::{Context, Result};

/// The record of processing: every field, its purposes, retention and
/// recipients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Inventory {
    /// Whether the schema declares purposes, so that minimum necessary
    /// data and consent are enforced.
    pub purposes_enforced: bool,
    /// The declared purposes.
    pub purposes: Vec<PurposeReport>,
    /// How long data is kept: the retention policy in force.
    pub retention: String,
    /// Customers held.
    pub customers: u64,
    /// One entry per field.
    pub fields: Vec<FieldInventory>,
}

/// One purpose in the [`Inventory`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PurposeReport {
    /// Its name.
    pub name: String,
    /// Its legal basis.
    pub basis: Basis,
    /// What it is.
    pub description: String,
    /// The company no longer pursues it: it gives no basis.
    pub retired: bool,
}

/// One field in the [`Inventory`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldInventory {
    /// Its name.
    pub name: String,
    /// Its type.
    pub kind: FieldType,
    /// How sensitive it is.
    pub sensitivity: Sensitivity,
    /// Its purposes and their basis.
    pub purposes: Vec<(String, Basis)>,
    /// Whether it needs a separate consent (sensitive fields).
    pub separate_consent: bool,
    /// How many customers hold a value.
    pub stored: u64,
    /// How many of those values no purpose has a basis for any more.
    pub without_basis: u64,
    /// Role → how a holder of only that role sees the field of a customer
    /// it owns: `full`, `masked`, `hidden` or `no access`.
    pub roles: BTreeMap<String, String>,
    /// Plugin → `full` or `masked`, for plugins granted the field.
    pub plugins: BTreeMap<String, String>,
    /// What needs attention.
    pub flags: Vec<String>,
}

/// The principal the inventory asks the policy about.
const PROBE: &str = "(inventory)";

/// What the scan of every stored customer counts, per field.
#[derive(Default)]
struct Held {
    stored: BTreeMap<String, u64>,
    without_basis: BTreeMap<String, u64>,
}

/// Counts, without decrypting, the values each field holds and those no
/// purpose has a basis for any more.
fn count_held(r: &dyn Snapshot, schema: &Schema, retired: &BTreeSet<String>) -> Result<Held> {
    let mut held = Held::default();
    let mut after = 0;
    loop {
        let mut batch = Vec::new();
        let last = r.scan_customers(after, 10_000, &mut |c| {
            let names = (c.public.iter().map(|(n, _)| n.to_string()))
                .chain(c.sealed.iter().map(|(n, _)| n.to_string()));
            batch.push((c.id, names.collect::<Vec<_>>()));
            Ok(true)
        })?;
        for (id, names) in batch {
            let granted = granted_keys(r.consents(id)?);
            let granted = |k: &str| granted.contains(k);
            for name in names {
                *held.stored.entry(name.clone()).or_insert(0) += 1;
                if schema.enforces_purposes()
                    && privacy::missing_basis(schema, retired, &name, &granted).is_some()
                {
                    *held.without_basis.entry(name).or_insert(0) += 1;
                }
            }
        }
        match last {
            Some(last) => after = last,
            None => return Ok(held),
        }
    }
}

impl Engine {
    /// The record of processing. Admins and data stewards; audited. Scans
    /// every customer's stored field names and consents (no decryption)
    /// to count values held without a basis.
    pub fn inventory(&self, ctx: &Context) -> Result<Inventory> {
        let schema = &self.core.records.schema;
        let retired = self.core.records.retired();
        let op = Op::new(Entry::new("report.inventory")).officers("read the record of processing");
        let (held, customers, plugins, script) = self.core.read(ctx, op, |read| {
            let r = read.snapshot();
            let held = count_held(r, schema, &retired)?;
            Ok((
                held,
                r.customer_count()?,
                r.plugins()?,
                r.retention_script()?,
            ))
        })?;
        let decisions = self.role_decisions();
        let retention = match script {
            Some(_) => "the installed retention.rhai decides per customer".to_string(),
            None => "the default retention.rhai: dormant after 3 years without interaction, notice at 5 years, anonymized 30 days after notice; longer for renovation, education and automotive customers; legal holds block removal".to_string(),
        };
        let fields = (schema.fields().iter())
            .map(|def| field_inventory(schema, &retired, def, &held, &decisions, &plugins))
            .collect();
        Ok(Inventory {
            purposes_enforced: schema.enforces_purposes(),
            purposes: (schema.purposes().iter())
                .map(|p| PurposeReport {
                    name: p.name.clone(),
                    basis: p.basis,
                    description: p.description.clone(),
                    retired: retired.contains(&p.name),
                })
                .collect(),
            retention,
            customers,
            fields,
        })
    }

    /// How a holder of only each role sees a customer it owns: the policy's
    /// decision on reading an active customer of the probe principal.
    fn role_decisions(&self) -> BTreeMap<String, Decision> {
        let policy = self.core.policy();
        let facts = CustomerFacts {
            id: 0,
            owner: PROBE.into(),
            team: None,
            status: "active".into(),
            tags: Vec::new(),
        };
        (policy.roles().keys())
            .map(|role| {
                let subject =
                    Subject::new(PROBE, "user", std::slice::from_ref(role), &BTreeMap::new());
                let decision =
                    policy.authorize_uncached(&subject, Action::Read, "inventory", Some(&facts));
                (role.clone(), decision)
            })
            .collect()
    }
}

/// One field of the inventory.
fn field_inventory(
    schema: &Schema,
    retired: &BTreeSet<String>,
    def: &crate::model::FieldDef,
    held: &Held,
    decisions: &BTreeMap<String, Decision>,
    plugins: &[PluginInfo],
) -> FieldInventory {
    let roles = (decisions.iter())
        .map(|(role, d)| {
            let shown = match d.allowed() {
                true => d.treatment(&def.name, def.sensitivity).as_str().to_string(),
                false => "no access".to_string(),
            };
            (role.clone(), shown)
        })
        .collect();
    let plugins = (plugins.iter())
        .filter_map(|p| {
            p.grant.fields.get(&def.name).map(|a| {
                let how = match a {
                    FieldAccess::Full => "full",
                    FieldAccess::Masked => "masked",
                };
                (p.manifest.name.clone(), how.to_string())
            })
        })
        .collect();
    let stored = held.stored.get(&def.name).copied().unwrap_or(0);
    let without_basis = held.without_basis.get(&def.name).copied().unwrap_or(0);
    let mut flags = Vec::new();
    if def.purposes.is_empty() {
        flags.push("no purpose declared: minimum necessary cannot be shown".to_string());
    } else if def.purposes.iter().all(|p| retired.contains(p)) {
        flags.push(
            "every purpose of this field is retired: no purpose needs it any more".to_string(),
        );
    }
    if without_basis > 0 {
        flags.push(format!(
            "{without_basis} stored value(s) have no basis any more: no purpose needs them; erase them or record consent"
        ));
    }
    FieldInventory {
        name: def.name.clone(),
        kind: def.kind,
        sensitivity: def.sensitivity,
        purposes: (def.purposes.iter())
            .map(|p| {
                (
                    p.clone(),
                    schema.purpose(p).map_or(Basis::Consent, |d| d.basis),
                )
            })
            .collect(),
        separate_consent: def.sensitivity == Sensitivity::Sensitive,
        stored,
        without_basis,
        roles,
        plugins,
        flags,
    }
}
