//! Principals, for administrators: who may act, with which roles.

use super::Engine;
use crate::identity::{
    self, ADMIN_ROLE, IdentityError, Principal, PrincipalKind, PrincipalRecord, PrincipalUpdate,
};
use crate::op::{Core, Entry, Op};
use crate::store::{Snapshot, Txn};
use crate::{Context, Denied, Error, Result};

/// Makes the first administrator of a new database (also after a crash
/// between creating the file and its first admin).
pub(super) fn bootstrap_admin(core: &Core, name: &str) -> Result<()> {
    identity::check_name(name)?;
    if core.store.read(|r| r.principal_count())? > 0 {
        return Ok(());
    }
    let now = core.records.now();
    let entry = Entry::new("principal.create").target(format!("principal {name}"));
    core.setup(name, entry, |w| {
        if w.principal_count()? > 0 {
            return Ok(false);
        }
        w.put_principal(&PrincipalRecord {
            name: name.to_string(),
            kind: PrincipalKind::User,
            roles: vec![ADMIN_ROLE.to_string()],
            active: true,
            created_at: now,
            attributes: Default::default(),
        })?;
        Ok(true)
    })
}

/// How many active admins there are.
fn active_admins(snapshot: &dyn Snapshot) -> Result<usize> {
    let all = snapshot.principals()?;
    Ok(all
        .iter()
        .filter(|p| p.active && p.roles.iter().any(|r| r == ADMIN_ROLE))
        .count())
}

/// Refuses to leave the database without an active admin.
fn keep_an_admin(txn: &dyn Txn, target: &PrincipalRecord, stays_admin: bool) -> Result<()> {
    let is_admin = target.active && target.roles.iter().any(|r| r == ADMIN_ROLE);
    if is_admin && !stays_admin && active_admins(txn)? <= 1 {
        let name = &target.name;
        let why = format!("`{name}` is the last active admin; add another admin first");
        return Err(Denied::Rule(why).into());
    }
    Ok(())
}

impl Engine {
    /// Adds a principal with roles. Only admins may.
    pub fn add_principal(
        &self,
        ctx: &Context,
        name: &str,
        kind: PrincipalKind,
        roles: &[&str],
    ) -> Result<()> {
        identity::check_name(name)?;
        if kind == PrincipalKind::Plugin {
            return Err(Error::Config(
                "plugin principals are made by installing the plugin".into(),
            ));
        }
        self.check_roles(roles.iter().copied())?;
        let entry = Entry::new("principal.create")
            .target(format!("principal {name}"))
            .fields(roles.iter().map(|r| format!("role:{r}")).collect());
        let op = Op::new(entry).admins("add principals");
        self.core.write(ctx, op, |tx| {
            if tx.txn().principal(name)?.is_some() {
                return Err(IdentityError::Exists(name.to_string()).into());
            }
            let created_at = tx.records().now();
            tx.txn().put_principal(&PrincipalRecord {
                name: name.to_string(),
                kind,
                roles: roles.iter().map(|r| r.to_string()).collect(),
                active: true,
                created_at,
                attributes: Default::default(),
            })?;
            Ok(())
        })
    }

    /// Deactivates a principal (a user, a service account, or a plugin's
    /// principal `plugin:<name>`): from now on it can do nothing, and every
    /// session of it ends. Only admins may; the last active admin stays.
    pub fn deactivate_principal(&self, ctx: &Context, name: &str) -> Result<()> {
        identity::check_reference(name)?;
        let entry = Entry::new("principal.deactivate").target(format!("principal {name}"));
        let op = Op::new(entry).admins("deactivate principals");
        self.core.write(ctx, op, |tx| {
            let Some(mut target) = tx.txn().principal(name)? else {
                return Err(IdentityError::Unknown(name.to_string()).into());
            };
            keep_an_admin(tx.txn(), &target, false)?;
            target.active = false;
            tx.txn().put_principal(&target)?;
            // Offboarding: every session ends with the account.
            tx.txn().remove_sessions(&mut |_, s| s.principal == name)?;
            Ok(())
        })
    }

    /// Changes a principal's roles and attributes (team, region, manager,
    /// display_name, email). Only admins may.
    pub fn update_principal(
        &self,
        ctx: &Context,
        name: &str,
        update: &PrincipalUpdate,
    ) -> Result<()> {
        identity::check_name(name)?;
        if let Some(roles) = &update.roles {
            self.check_roles(roles.iter().map(String::as_str))?;
        }
        for (key, value) in &update.set_attributes {
            identity::check_attribute(key, value)?;
        }
        let mut changed: Vec<String> = (update.set_attributes.keys())
            .chain(&update.remove_attributes)
            .map(|k| format!("attribute:{k}"))
            .collect();
        if let Some(roles) = &update.roles {
            changed.extend(roles.iter().map(|r| format!("role:{r}")));
        }
        let entry = Entry::new("principal.update")
            .target(format!("principal {name}"))
            .fields(changed);
        let op = Op::new(entry).admins("change principals");
        self.core.write(ctx, op, |tx| {
            let Some(mut target) = tx.txn().principal(name)? else {
                return Err(IdentityError::Unknown(name.to_string()).into());
            };
            if let Some(roles) = &update.roles {
                keep_an_admin(tx.txn(), &target, roles.iter().any(|r| r == ADMIN_ROLE))?;
                target.roles = roles.clone();
            }
            for key in &update.remove_attributes {
                target.attributes.remove(key);
            }
            for (key, value) in &update.set_attributes {
                target.attributes.insert(key.clone(), value.clone());
            }
            tx.txn().put_principal(&target)?;
            Ok(())
        })
    }

    /// Every principal. Only admins may list them.
    pub fn principals(&self, ctx: &Context) -> Result<Vec<Principal>> {
        let op = Op::new(Entry::new("principal.list")).admins("list principals");
        self.core.read(ctx, op, |read| {
            let all = read.snapshot().principals()?;
            Ok(all.into_iter().map(Principal::from).collect())
        })
    }

    /// Checks role names, and that the installed policy defines each.
    pub(super) fn check_roles<'r>(&self, roles: impl Iterator<Item = &'r str>) -> Result<()> {
        let policy = self.core.policy();
        for role in roles {
            identity::check_role(role)?;
            if !policy.roles().contains_key(role) {
                return Err(IdentityError::UndefinedRole(role.to_string()).into());
            }
        }
        Ok(())
    }
}
