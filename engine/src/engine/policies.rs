//! Installing and reading the access policy: each install is a new,
//! audited version stored in the database, checked before it replaces the
//! running one.

use chrono::{DateTime, Utc};

use super::auth::admin_only;
use super::customers::refuse;
use super::{Context, Engine, Event, Inner, from_micros, now_micros};
use crate::audit::{self, Outcome};
use crate::identity::ADMIN_ROLE;
use crate::model::Schema;
use crate::policy::{CaseReport, Policy, PolicyError, PolicyPack};
use crate::store::StoredPolicy;
use crate::{Error, Result};

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

impl Inner {
    /// Loads the newest installed policy; a new database gets the default
    /// pack as version 1.
    pub(crate) fn load_policy(&self) -> Result<()> {
        if let Some((version, stored)) = self.store.read(|r| r.latest_policy())? {
            let pack = PolicyPack::from_bytes(&stored.pack)?;
            let policy = Policy::compile(&pack).map_err(|e| {
                Error::Config(format!(
                    "installed policy version {version} does not compile: {e}; install a fixed one"
                ))
            })?;
            self.set_policy(policy);
            return Ok(());
        }
        let pack = PolicyPack::default_pack();
        let policy = Policy::compile(&pack)?;
        let ctx = Context::new("setup", "setup");
        let key = self.ring.audit_key();
        self.store.write(|w| {
            if w.latest_policy()?.is_some() {
                return Ok(());
            }
            w.put_policy(
                1,
                &StoredPolicy {
                    pack: pack.to_bytes(),
                    installed_at: now_micros(),
                    installed_by: "setup".into(),
                },
            )?;
            let event = Event::new("policy.install").target("policy version 1 (default pack)");
            audit::append(w, key, &event.record(&ctx, Outcome::Ok))?;
            Ok::<_, Error>(())
        })?;
        self.set_policy(policy);
        Ok(())
    }
}

impl Engine {
    /// Installs `pack` as the new policy version: it must compile, define
    /// every role a principal holds, and pass its own cases; otherwise it
    /// is refused and the running policy stays. Only admins may.
    pub fn install_policy(&self, ctx: &Context, pack: &PolicyPack) -> Result<InstalledPolicy> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let event = || Event::new("policy.install");
        // Refuse a non-admin before looking at the pack, and audit it.
        let actor = inner.store.read(|r| inner.actor(r, ctx, event))?;
        if !actor.admin {
            let reason = format!(
                "principal `{}` may not install policies: only admins may",
                actor.name
            );
            return inner.deny(ctx, event(), reason);
        }
        let checked = check_for_install(pack, &inner.schema);
        let policy = match checked {
            Ok(policy) => policy,
            Err(e) => {
                inner.audit_read(event().record(ctx, Outcome::Failed(e.to_string())))?;
                return Err(e.into());
            }
        };
        let bytes = pack.to_bytes();
        let installed_at = now_micros();
        let mut version = 0;
        let outcome = inner.store.write(|w| {
            let next = w.latest_policy()?.map_or(1, |(v, _)| v + 1);
            let event = || Event::new("policy.install").target(format!("policy version {next}"));
            if let Err(e) = admin_only(w, ctx, "install policies")? {
                return refuse(inner, w, ctx, event(), e);
            }
            for p in w.principals()? {
                if let Some(role) = p
                    .roles
                    .iter()
                    .find(|r| !policy.roles().contains_key(r.as_str()))
                {
                    let e = PolicyError::Roles(format!(
                        "role `{role}` is held by `{}` but the new policy does not define it",
                        p.name
                    ));
                    return refuse(inner, w, ctx, event(), e.into());
                }
            }
            w.put_policy(
                next,
                &StoredPolicy {
                    pack: bytes.clone(),
                    installed_at,
                    installed_by: ctx.principal().to_string(),
                },
            )?;
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            version = next;
            Ok::<_, Error>(Ok(()))
        })?;
        outcome?;
        inner.set_policy(policy);
        Ok(InstalledPolicy {
            version,
            installed_at: from_micros(installed_at),
            installed_by: ctx.principal().to_string(),
            pack: pack.clone(),
        })
    }

    /// The policy in force, with its version. Any active principal may read it.
    pub fn installed_policy(&self, ctx: &Context) -> Result<InstalledPolicy> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let event = || Event::new("policy.read");
        let latest = inner.store.read(|r| {
            inner.actor(r, ctx, event)?;
            Ok::<_, Error>(r.latest_policy()?)
        })?;
        let Some((version, stored)) = latest else {
            return Err(Error::NotFound("installed policy".into()));
        };
        inner.audit_read(event().record(ctx, Outcome::Ok))?;
        Ok(InstalledPolicy {
            version,
            installed_at: from_micros(stored.installed_at),
            installed_by: stored.installed_by,
            pack: PolicyPack::from_bytes(&stored.pack)?,
        })
    }
}
