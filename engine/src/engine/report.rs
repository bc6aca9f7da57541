//! Records of processing (PIPL art. 54–55, GDPR art. 30): which fields are
//! held, how sensitive they are, for which purposes on which basis, how
//! long, and who may receive them; and the installed retention policy.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, PoisonError};

use serde::Serialize;

use super::auth::admin_only;
use super::customers::refuse;
use super::privacy::is_privacy_officer;
use super::{Context, Engine, Event};
use crate::audit::{self, Outcome};
use crate::model::{Basis, FieldType, Sensitivity};
use crate::plugin::FieldAccess;
use crate::policy::{Action, CustomerFacts, Subject};
use crate::privacy::RetentionPolicy;
use crate::{Error, Result};

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

impl Engine {
    /// The record of processing. Admins and data stewards; audited. Scans
    /// every customer's stored field names and consents (no decryption)
    /// to count values held without a basis.
    pub fn inventory(&self, ctx: &Context) -> Result<Inventory> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let event = || Event::new("report.inventory");
        let schema = &inner.schema;
        let retired = inner.retired();
        let scanned = inner.store.read(|r| {
            let actor = inner.actor(r, ctx, event)?;
            if !is_privacy_officer(&actor) {
                return Ok::<_, Error>(Err(format!(
                    "principal `{}` may not read the record of processing: only admins and data stewards may",
                    actor.name
                )));
            }
            let mut stored: BTreeMap<String, u64> = BTreeMap::new();
            let mut unfounded: BTreeMap<String, u64> = BTreeMap::new();
            let mut after = 0;
            loop {
                let mut batch = Vec::new();
                let last = r.scan_customers(after, 10_000, |c| {
                    let names: Vec<String> = c
                        .public
                        .iter()
                        .map(|(n, _)| n.to_string())
                        .chain(c.sealed.iter().map(|(n, _)| n.to_string()))
                        .collect();
                    batch.push((c.id, names));
                    Ok::<_, Error>(true)
                })?;
                for (id, names) in batch {
                    let granted: BTreeSet<String> = r
                        .consents(id)?
                        .into_iter()
                        .filter(|(_, c)| c.granted)
                        .map(|(k, _)| k)
                        .collect();
                    for name in names {
                        *stored.entry(name.clone()).or_insert(0) += 1;
                        if schema.enforces_purposes()
                            && crate::privacy::missing_basis(schema, &retired, &name, &|k| granted.contains(k)).is_some()
                        {
                            *unfounded.entry(name).or_insert(0) += 1;
                        }
                    }
                }
                match last {
                    Some(last) => after = last,
                    None => break,
                }
            }
            Ok(Ok((stored, unfounded, r.customer_count()?, r.plugins()?)))
        })?;
        let (stored, unfounded, customers, plugins) = match scanned {
            Ok(found) => found,
            Err(why) => return inner.deny(ctx, event(), why),
        };
        let policy = inner.policy();
        let facts = CustomerFacts {
            id: 0,
            owner: PROBE.into(),
            team: None,
            status: "active".into(),
            tags: Vec::new(),
        };
        let decisions: BTreeMap<String, _> = policy
            .roles()
            .keys()
            .map(|role| {
                let subject =
                    Subject::new(PROBE, "user", std::slice::from_ref(role), &BTreeMap::new());
                let decision =
                    policy.authorize_uncached(&subject, Action::Read, "inventory", Some(&facts));
                (role.clone(), decision)
            })
            .collect();
        let retention = match inner.store.read(|r| r.retention_script())? {
            Some(_) => "the installed retention.rhai decides per customer (see `custodian retention show`)".to_string(),
            None => "the default retention.rhai: dormant after 3 years without interaction, notice at 5 years, anonymized 30 days after notice; longer for renovation, education and automotive customers; legal holds block removal".to_string(),
        };
        let fields = schema
            .fields()
            .iter()
            .map(|def| {
                let roles = decisions
                    .iter()
                    .map(|(role, d)| {
                        let shown = if d.allowed() {
                            d.treatment(&def.name, def.sensitivity).as_str().to_string()
                        } else {
                            "no access".to_string()
                        };
                        (role.clone(), shown)
                    })
                    .collect();
                let plugins = plugins
                    .iter()
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
                let held = stored.get(&def.name).copied().unwrap_or(0);
                let without_basis = unfounded.get(&def.name).copied().unwrap_or(0);
                let mut flags = Vec::new();
                if def.purposes.is_empty() {
                    flags.push("no purpose declared: minimum necessary cannot be shown".to_string());
                } else if def.purposes.iter().all(|p| retired.contains(p)) {
                    flags.push("every purpose of this field is retired: no purpose needs it any more".to_string());
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
                    purposes: def
                        .purposes
                        .iter()
                        .map(|p| {
                            let basis = schema.purpose(p).map_or(Basis::Consent, |d| d.basis);
                            (p.clone(), basis)
                        })
                        .collect(),
                    separate_consent: def.sensitivity == Sensitivity::Sensitive,
                    stored: held,
                    without_basis,
                    roles,
                    plugins,
                    flags,
                }
            })
            .collect();
        inner.audit_read(event().record(ctx, Outcome::Ok))?;
        Ok(Inventory {
            purposes_enforced: schema.enforces_purposes(),
            purposes: schema
                .purposes()
                .iter()
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

    /// Installs a retention policy (`retention.rhai`, defining `fn
    /// retain(c)`) after compiling it; it applies from the next sweep.
    /// Admins only.
    pub fn install_retention_policy(&self, ctx: &Context, source: &str) -> Result<()> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let compiled = RetentionPolicy::compile(source)?;
        let event = || Event::new("retention.install");
        inner.store.write(|w| {
            if let Err(e) = admin_only(w, ctx, "install retention policies")? {
                return refuse(inner, w, ctx, event(), e);
            }
            w.put_retention_script(source)?;
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(()))
        })??;
        // Read back under the lock: of two concurrent installs, the one
        // that sets memory last has read the script that was stored last.
        let mut memory = inner
            .retention
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let stored = inner.store.read(|r| r.retention_script())?;
        *memory = Arc::new(match stored {
            Some(text) if text != source => RetentionPolicy::compile(&text)?,
            _ => compiled,
        });
        Ok(())
    }

    /// The retention policy in force (the default one until one is installed).
    pub fn retention_policy(&self) -> String {
        self.inner.retention().source().to_string()
    }
}
