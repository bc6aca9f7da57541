//! Principals and the audit chain, for administrators and operators.

use super::auth::admin_only;
use super::customers::{refuse, writer_actor};
use super::{Context, Engine, Event, now_micros};
use crate::audit::{self, AuditEntry, Checkpoint, Outcome, VerifyReport};
use crate::identity::{self, ADMIN_ROLE, IdentityError, Principal, PrincipalKind, PrincipalUpdate};
use crate::store::StoredPrincipal;
use crate::{Error, Result};

impl Engine {
    /// Adds a principal with roles. Only admins may.
    pub fn add_principal(
        &self,
        ctx: &Context,
        name: &str,
        kind: PrincipalKind,
        roles: &[&str],
    ) -> Result<()> {
        let ctx = &self.inner.authenticate(ctx)?;
        identity::check_name(name)?;
        if kind == PrincipalKind::Plugin {
            return Err(Error::Config(
                "plugin principals are made by installing the plugin (`custodian plugin install`)"
                    .into(),
            ));
        }
        let inner = &self.inner;
        inner.check_roles(roles.iter().copied())?;
        let event = || {
            Event::new("principal.create")
                .target(format!("principal {name}"))
                .fields(roles.iter().map(|r| format!("role:{r}")).collect())
        };
        inner.store.write(|w| {
            match writer_actor(w, ctx)? {
                Ok(a) if a.admin => {}
                Ok(a) => {
                    let reason = format!(
                        "principal `{}` may not add principals: only admins may",
                        a.name
                    );
                    return refuse(inner, w, ctx, event(), Error::Denied(reason));
                }
                Err(reason) => return refuse(inner, w, ctx, event(), Error::Denied(reason)),
            }
            if w.principal(name)?.is_some() {
                let error = IdentityError::Exists(name.to_string()).into();
                return refuse(inner, w, ctx, event(), error);
            }
            w.put_principal(&StoredPrincipal {
                name: name.to_string(),
                kind,
                roles: roles.iter().map(|r| r.to_string()).collect(),
                active: true,
                created_at: now_micros(),
                attributes: Default::default(),
            })?;
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(()))
        })?
    }

    /// Deactivates a principal: from now on it can do nothing. Only admins
    /// may, and the last active admin cannot be deactivated.
    pub fn deactivate_principal(&self, ctx: &Context, name: &str) -> Result<()> {
        let ctx = &self.inner.authenticate(ctx)?;
        identity::check_name(name)?;
        let inner = &self.inner;
        let event = || Event::new("principal.deactivate").target(format!("principal {name}"));
        inner.store.write(|w| {
            match writer_actor(w, ctx)? {
                Ok(a) if a.admin => {}
                Ok(a) => {
                    let reason = format!(
                        "principal `{}` may not deactivate principals: only admins may",
                        a.name
                    );
                    return refuse(inner, w, ctx, event(), Error::Denied(reason));
                }
                Err(reason) => return refuse(inner, w, ctx, event(), Error::Denied(reason)),
            }
            let Some(mut target) = w.principal(name)? else {
                let error = IdentityError::Unknown(name.to_string()).into();
                return refuse(inner, w, ctx, event(), error);
            };
            if target.roles.iter().any(|r| r == ADMIN_ROLE)
                && w.principals()?
                    .iter()
                    .filter(|p| p.active && p.roles.iter().any(|r| r == ADMIN_ROLE))
                    .count()
                    <= 1
                && target.active
            {
                let reason = format!("`{name}` is the last active admin; add another admin first");
                return refuse(inner, w, ctx, event(), Error::Denied(reason));
            }
            target.active = false;
            w.put_principal(&target)?;
            // Offboarding: every session ends with the account.
            w.remove_sessions(|_, s| s.principal == name)?;
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(()))
        })?
    }

    /// Changes a principal's roles and attributes (team, region, manager,
    /// display_name, email). Only admins may.
    pub fn update_principal(
        &self,
        ctx: &Context,
        name: &str,
        update: &PrincipalUpdate,
    ) -> Result<()> {
        let ctx = &self.inner.authenticate(ctx)?;
        identity::check_name(name)?;
        let inner = &self.inner;
        if let Some(roles) = &update.roles {
            inner.check_roles(roles.iter().map(String::as_str))?;
        }
        for (key, value) in &update.set_attributes {
            identity::check_attribute(key, value)?;
        }
        let mut changed: Vec<String> = update
            .set_attributes
            .keys()
            .chain(&update.remove_attributes)
            .map(|k| format!("attribute:{k}"))
            .collect();
        if let Some(roles) = &update.roles {
            changed.extend(roles.iter().map(|r| format!("role:{r}")));
        }
        let event = || {
            Event::new("principal.update")
                .target(format!("principal {name}"))
                .fields(changed.clone())
        };
        inner.store.write(|w| {
            if let Err(e) = admin_only(w, ctx, "change principals")? {
                return refuse(inner, w, ctx, event(), e);
            }
            let Some(mut target) = w.principal(name)? else {
                let error = IdentityError::Unknown(name.to_string()).into();
                return refuse(inner, w, ctx, event(), error);
            };
            if let Some(roles) = &update.roles {
                let admins = w
                    .principals()?
                    .iter()
                    .filter(|p| p.active && p.roles.iter().any(|r| r == ADMIN_ROLE))
                    .count();
                let was_admin = target.active && target.roles.iter().any(|r| r == ADMIN_ROLE);
                if was_admin && admins <= 1 && !roles.iter().any(|r| r == ADMIN_ROLE) {
                    let reason =
                        format!("`{name}` is the last active admin; add another admin first");
                    return refuse(inner, w, ctx, event(), Error::Denied(reason));
                }
                target.roles = roles.clone();
            }
            for key in &update.remove_attributes {
                target.attributes.remove(key);
            }
            for (key, value) in &update.set_attributes {
                target.attributes.insert(key.clone(), value.clone());
            }
            w.put_principal(&target)?;
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(()))
        })?
    }

    /// Every principal. Only admins may list them.
    pub fn principals(&self, ctx: &Context) -> Result<Vec<Principal>> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let event = || Event::new("principal.list");
        let (actor, all) = inner.store.read(|r| {
            let actor = inner.actor(r, ctx, event)?;
            Ok::<_, Error>((actor, r.principals()?))
        })?;
        if !actor.admin {
            let reason = format!(
                "principal `{}` may not list principals: only admins may",
                actor.name
            );
            return inner.deny(ctx, event(), reason);
        }
        inner.audit_read(event().record(ctx, Outcome::Ok))?;
        Ok(all.into_iter().map(Principal::from).collect())
    }

    /// Verifies the whole audit chain (and, given one, against an exported
    /// checkpoint). Queued read entries are flushed first.
    pub fn verify_audit(&self, checkpoint: Option<&Checkpoint>) -> Result<VerifyReport> {
        self.flush_audit()?;
        let key = self.inner.ring.audit_key();
        Ok(self
            .inner
            .store
            .read(|r| audit::verify(r, key, checkpoint))?)
    }

    /// The chain's head, to export and keep elsewhere: a later
    /// [`Engine::verify_audit`] with it detects truncation.
    pub fn audit_checkpoint(&self) -> Result<Checkpoint> {
        self.flush_audit()?;
        Ok(self.inner.store.read(audit::checkpoint)?)
    }

    /// The last `n` audit entries. Only admins may read the audit log.
    pub fn audit_tail(&self, ctx: &Context, n: usize) -> Result<Vec<AuditEntry>> {
        let ctx = &self.inner.authenticate(ctx)?;
        self.flush_audit()?;
        let inner = &self.inner;
        let event = || Event::new("audit.read");
        let (actor, raw) = inner.store.read(|r| {
            let actor = inner.actor(r, ctx, event)?;
            Ok::<_, Error>((actor, r.audit_tail(n)?))
        })?;
        if !actor.admin {
            let reason = format!(
                "principal `{}` may not read the audit log: only admins may",
                actor.name
            );
            return inner.deny(ctx, event(), reason);
        }
        let entries = raw
            .iter()
            .map(|(seq, bytes)| audit::decode_entry(*seq, bytes))
            .collect::<Result<Vec<_>, _>>()?;
        inner.audit_read(event().record(ctx, Outcome::Ok))?;
        Ok(entries)
    }
}

impl super::Inner {
    /// Checks role names, and that the installed policy defines each.
    pub(crate) fn check_roles<'r>(&self, roles: impl Iterator<Item = &'r str>) -> Result<()> {
        let policy = self.policy();
        for role in roles {
            identity::check_role(role)?;
            if !policy.roles().contains_key(role) {
                return Err(IdentityError::UndefinedRole(role.to_string()).into());
            }
        }
        Ok(())
    }
}
