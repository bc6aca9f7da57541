//! `custodian principal`: who may act, their roles, passwords and second
//! factors.

use std::io::IsTerminal;

use anyhow::{Result, bail};
use custodian::{Context, Engine, PrincipalKind, PrincipalUpdate};
use zeroize::Zeroizing;

use crate::args::Global;
use crate::args::access::{PrincipalCmd, TwoFactorCmd};
use crate::input::read_secret;
use crate::parse::attributes;
use crate::render::{Output, say, tell};

pub fn run(g: &Global, out: Output, cmd: PrincipalCmd) -> Result<()> {
    let engine = g.open()?;
    let ctx = g.ctx();
    match cmd {
        PrincipalCmd::Add {
            name,
            roles,
            service,
            attributes: attrs,
        } => {
            let kind = if service {
                PrincipalKind::Service
            } else {
                PrincipalKind::User
            };
            let set_attributes = attributes(&attrs)?;
            let role_names: Vec<&str> = roles.iter().map(String::as_str).collect();
            engine.add_principal(&ctx, &name, kind, &role_names)?;
            if !set_attributes.is_empty() {
                let update = PrincipalUpdate {
                    set_attributes,
                    ..PrincipalUpdate::default()
                };
                engine.update_principal(&ctx, &name, &update)?;
            }
            tell!(
                "added principal {name}; set a password with `custodian principal passwd {name}`"
            );
        }
        PrincipalCmd::Set {
            name,
            roles,
            attributes: attrs,
            unset,
        } => {
            let update = PrincipalUpdate {
                roles: (!roles.is_empty()).then_some(roles),
                set_attributes: attributes(&attrs)?,
                remove_attributes: unset,
            };
            engine.update_principal(&ctx, &name, &update)?;
            tell!("updated principal {name}");
        }
        PrincipalCmd::Passwd { name } => passwd(g, &engine, &ctx, &name)?,
        PrincipalCmd::TwoFactor(cmd) => two_factor(&engine, &ctx, cmd)?,
        PrincipalCmd::Unlock { name } => {
            engine.unlock_principal(&ctx, &name)?;
            tell!("unlocked {name}");
        }
        PrincipalCmd::List => out.emit(&engine.principals(&ctx)?)?,
        PrincipalCmd::Budget { name } => out.emit(&engine.budget(&ctx, &name)?)?,
        PrincipalCmd::Deactivate { name } => {
            engine.deactivate_principal(&ctx, &name)?;
            tell!("deactivated principal {name}");
        }
    }
    Ok(())
}

/// Sets `name`'s password; one's own needs the current one.
fn passwd(g: &Global, engine: &Engine, ctx: &Context, name: &str) -> Result<()> {
    let acting_self = g.session.is_none() && g.principal == name;
    let current = if acting_self || g.session.is_some() {
        Some(Zeroizing::new(read_secret(
            "current password (empty if none): ",
        )?))
    } else {
        None
    };
    let new = Zeroizing::new(read_secret("new password: ")?);
    if std::io::stdin().is_terminal() {
        let again = Zeroizing::new(read_secret("new password again: ")?);
        if *again != *new {
            bail!("the passwords differ; nothing was changed");
        }
    }
    let current = current
        .as_ref()
        .map(|c| c.as_str())
        .filter(|c| !c.is_empty());
    engine.set_password(ctx, name, current, &new)?;
    tell!("password of {name} set; its sessions were ended");
    Ok(())
}

fn two_factor(engine: &Engine, ctx: &Context, cmd: TwoFactorCmd) -> Result<()> {
    match cmd {
        TwoFactorCmd::Enroll { name } => {
            let enrolled = engine.enroll_totp(ctx, &name)?;
            // Not through `Output`: the URI and the codes print the same
            // with --json.
            say!("{}", enrolled.uri.as_str());
            tell!("recovery codes (each works once; store them offline):");
            for code in &enrolled.recovery_codes {
                say!("{}", code.as_str());
            }
            tell!(
                "add the URI to an authenticator app, then run `custodian principal 2fa verify {name} CODE`"
            );
        }
        TwoFactorCmd::Verify { name, code } => {
            engine.confirm_totp(ctx, &name, &code)?;
            tell!("second factor of {name} confirmed; logins now need a code");
        }
        TwoFactorCmd::Disable { name } => {
            engine.disable_totp(ctx, &name)?;
            tell!("second factor of {name} removed");
        }
    }
    Ok(())
}
