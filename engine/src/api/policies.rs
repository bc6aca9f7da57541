//! Installing and reading the access policy: each install is a new,
//! audited version stored in the database, checked before it replaces the
//! running one.

use chrono::{DateTime, Utc};

use super::Engine;
use crate::identity::ADMIN_ROLE;
use crate::model::{Schema, from_micros};
use crate::op::{Core, Entry, Op};
use crate::policy::{CaseReport, Policy, PolicyError, PolicyPack};
use crate::store::StoredPolicy;
use crate::{Context, Error, Result};

/// An installed policy version.
#[derive(Clone, Debug)]
pub struct InstalledPolicy {
    /// Its version number, from 1.
    pub version: u64,
    /// When it was installed.
    pub installed_at: DateTime<Utc>,
    /// Who installed it.
    pub installed_by: String,
    /// Its files.
    pub pack: PolicyPack,
}

impl PolicyPack {
    /// Compiles the pack and runs its own cases (`cases.toml`) against
    /// `schema`: what `custodian policy check` does. A pack that does not
    /// compile is an error; failing cases are in the report.
    pub fn check_cases(&self, schema: &Schema) -> Result<CaseReport, PolicyError> {
        let policy = compile_with_roles(self)?;
        match self.cases() {
            Some(cases) => policy.run_cases(cases, schema),
            None => Ok(CaseReport {
                passed: 0,
                failures: Vec::new(),
            }),
        }
    }

    /// Compiles the pack and runs the cases in `cases_toml` against it.
    pub fn test_cases(&self, cases_toml: &str, schema: &Schema) -> Result<CaseReport, PolicyError> {
        Policy::compile(self)?.run_cases(cases_toml, schema)
    }
}

/// Compiles a pack that is to decide: it must define the built-in admin
/// role, the one that manages principals and policies.
fn compile_with_roles(pack: &PolicyPack) -> Result<Policy, PolicyError> {
    let policy = Policy::compile(pack)?;
    policy.check_limits()?;
    if policy.roles().contains_key(ADMIN_ROLE) {
        Ok(policy)
    } else {
        Err(PolicyError::Roles(format!(
            "roles.toml must define the `{ADMIN_ROLE}` role"
        )))
    }
}

/// Compiles a pack for installation: it must define the admin role and
/// pass its own cases.
fn check_for_install(pack: &PolicyPack, schema: &Schema) -> Result<Policy, PolicyError> {
    let policy = compile_with_roles(pack)?;
    if let Some(cases) = pack.cases() {
        let report = policy.run_cases(cases, schema)?;
        if !report.failures.is_empty() {
            let failed: Vec<String> = report
                .failures
                .iter()
                .map(|f| format!("`{}`: {}", f.case, f.problem))
                .collect();
            return Err(PolicyError::CasesFailed(format!(
                "{} of its own cases fail, so it was not installed: {}",
                failed.len(),
                failed.join("; ")
            )));
        }
    }
    Ok(policy)
}

/// Loads the newest installed policy; a new database gets the default
/// pack as version 1.
pub(super) fn load(core: &Core) -> Result<()> {
    if let Some((version, stored)) = core.store.read(|r| r.latest_policy())? {
        let pack = PolicyPack::from_bytes(&stored.pack)?;
        let policy = Policy::compile(&pack).map_err(|e| {
            Error::Config(format!(
                "installed policy version {version} does not compile: {e}; install a fixed one"
            ))
        })?;
        core.set_policy(policy);
        return Ok(());
    }
    let pack = PolicyPack::default_pack();
    let policy = Policy::compile(&pack)?;
    let installed_at = core.records.now();
    let entry = Entry::new("policy.install").target("policy version 1 (default pack)");
    core.setup("setup", entry, |w| {
        if w.latest_policy()?.is_some() {
            return Ok(false);
        }
        let stored = StoredPolicy {
            pack: pack.to_bytes(),
            installed_at,
            installed_by: "setup".into(),
        };
        w.put_policy(1, &stored)?;
        Ok(true)
    })?;
    core.set_policy(policy);
    Ok(())
}

impl Engine {
    /// Installs `pack` as the new policy version: it must compile, define
    /// every role a principal holds, and pass its own cases; otherwise it
    /// is refused and the running policy stays. Only admins may.
    pub fn install_policy(&self, ctx: &Context, pack: &PolicyPack) -> Result<InstalledPolicy> {
        let entry = Entry::new("policy.install");
        let op = Op::new(entry.clone()).admins("install policies");
        // Refuse a non-admin before looking at the pack, and audit it.
        let admitted = self.core.admit_early(ctx, &op)?;
        let caller = admitted.caller();
        let policy = match check_for_install(pack, &self.core.records.schema) {
            Ok(policy) => policy,
            Err(e) => return self.core.refuse(caller, &entry, e.into()),
        };
        let bytes = pack.to_bytes();
        let installed_at = self.core.records.now();
        let installed_by = caller.principal().to_string();
        let version = self.core.write_as(caller, op, |tx| {
            let next = tx.txn().latest_policy()?.map_or(1, |(v, _)| v + 1);
            tx.retarget(format!("policy version {next}"));
            for p in tx.txn().principals()? {
                if let Some(role) =
                    (p.roles.iter()).find(|r| !policy.roles().contains_key(r.as_str()))
                {
                    return Err(PolicyError::Roles(format!(
                        "role `{role}` is held by `{}` but the new policy does not define it",
                        p.name
                    ))
                    .into());
                }
            }
            let stored = StoredPolicy {
                pack: bytes.clone(),
                installed_at,
                installed_by: installed_by.clone(),
            };
            tx.txn().put_policy(next, &stored)?;
            Ok(next)
        })?;
        let core = &self.core;
        core.reload_policy(|| match core.store.read(|r| r.latest_policy())? {
            Some((_, stored)) if stored.pack != bytes => {
                Ok(Policy::compile(&PolicyPack::from_bytes(&stored.pack)?)?)
            }
            _ => Ok(policy),
        })?;
        Ok(InstalledPolicy {
            version,
            installed_at: from_micros(installed_at),
            installed_by,
            pack: pack.clone(),
        })
    }

    /// The policy in force, with its version. Any active principal may read it.
    pub fn installed_policy(&self, ctx: &Context) -> Result<InstalledPolicy> {
        let latest = self
            .core
            .read(ctx, Op::new(Entry::new("policy.read")), |read| {
                (read.snapshot().latest_policy()?)
                    .ok_or_else(|| Error::NotFound("installed policy".into()))
            })?;
        let (version, stored) = latest;
        Ok(InstalledPolicy {
            version,
            installed_at: from_micros(stored.installed_at),
            installed_by: stored.installed_by,
            pack: PolicyPack::from_bytes(&stored.pack)?,
        })
    }
}
