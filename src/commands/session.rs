//! `custodian login` and `custodian session`: sessions, from logging in to
//! revoking them.

use std::io::{self, Write};

use anyhow::{Result, bail};
use custodian::Session;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::args::Global;
use crate::args::access::SessionCmd;
use crate::input::read_secret;
use crate::render::{Json, Output, Render, tell};

pub fn login(g: &Global, out: Output, name: &str, totp: Option<&str>, source: &str) -> Result<()> {
    let engine = g.open()?;
    let password = Zeroizing::new(read_secret("password: ")?);
    out.emit(&LoggedIn(engine.login(name, &password, totp, source)?))
}

pub fn run(g: &Global, out: Output, cmd: SessionCmd) -> Result<()> {
    let engine = g.open()?;
    let ctx = g.ctx();
    match cmd {
        SessionCmd::List => out.emit(&engine.sessions(&ctx)?)?,
        SessionCmd::Revoke { token, all } => match (token, all) {
            (_, Some(name)) => {
                let n = engine.revoke_sessions(&ctx, &name)?;
                tell!("revoked {n} session(s) of {name}");
            }
            (Some(token), None) => {
                engine.revoke_session(&ctx, &token)?;
                tell!("session revoked");
            }
            (None, None) => bail!("give a session token or id, or --all NAME"),
        },
    }
    Ok(())
}

/// A new session: its token is the result.
struct LoggedIn(Session);

impl Render for LoggedIn {
    const JSON: Json = Json::Line;

    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", self.0.token())
    }

    fn note(&self, err: &mut dyn Write) -> io::Result<()> {
        writeln!(
            err,
            "logged in as {}; the session ends by {} (pass it with --session or CUSTODIAN_SESSION)",
            self.0.principal, self.0.expires_at
        )
    }

    fn json(&self) -> impl Serialize {
        serde_json::json!({
            "token": self.0.token(),
            "principal": self.0.principal,
            "expires_at": self.0.expires_at,
        })
    }
}
