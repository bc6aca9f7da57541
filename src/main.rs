//! `custodian`: the operator's command line. It parses arguments, calls the
//! engine and prints; every rule lives in the `custodian` crate.
//!
//! `args` declares the commands, `commands` holds one handler per command
//! group, and `render` prints their results for people or, with `--json`,
//! for programs.

mod args;
mod commands;
mod files;
mod hints;
mod input;
mod parse;
mod render;

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Parser;
use custodian::{Context, Engine, EngineBuilder, MasterKey};

use args::plugins::AlertCmd;
use args::{Cli, Command, Global};
use commands::{
    alert, audit, consent, customer, demo, follow_up, hold, init, interaction, outbox, plugin,
    policy, principal, purpose, report, retention, session, subject,
};
use render::{Output, tell};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: a reason may quote stored or plugin-supplied text.
            tell!("error: {}", render::line(&format!("{e:#}")));
            if let Some(hint) = hints::hint(&e) {
                tell!("hint: {}", render::line(&hint));
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    let out = if cli.json {
        Output::Json
    } else {
        Output::Human
    };
    match cli.command {
        Command::Init {
            new_key,
            schema,
            admin,
        } => init::run(g, new_key, schema.as_deref(), &admin),
        Command::Demo { dir } => demo::run(dir),
        Command::Principal(cmd) => principal::run(g, out, cmd),
        Command::Customer(cmd) => customer::run(g, out, cmd),
        Command::Interaction(cmd) => interaction::run(g, out, cmd),
        Command::FollowUp(cmd) => follow_up::run(g, out, cmd),
        Command::Audit(cmd) => audit::run(g, out, cmd),
        Command::Login { name, totp, source } => {
            session::login(g, out, &name, totp.as_deref(), &source)
        }
        Command::Session(cmd) => session::run(g, out, cmd),
        Command::Policy(cmd) => policy::run(g, out, cmd),
        Command::Plugin(cmd) => plugin::run(g, out, cmd),
        Command::Outbox(cmd) => outbox::run(g, out, cmd),
        Command::Alert(cmd) => alert::run(g, out, cmd),
        Command::Alerts { limit } => alert::run(g, out, AlertCmd::List { state: None, limit }),
        Command::Consent(cmd) => consent::run(g, out, cmd),
        Command::Hold(cmd) => hold::run(g, cmd),
        Command::Lifecycle { customer } => hold::lifecycle(g, out, customer),
        Command::Retention(cmd) => retention::run(g, out, cmd),
        Command::Subject(cmd) => subject::run(g, out, cmd),
        Command::Report(cmd) => report::run(g, out, cmd),
        Command::Purpose(cmd) => purpose::run(g, out, cmd),
    }
}

/// Opening the engine the global options describe, and acting in it.
impl Global {
    /// The master key: from --key-file, or the hex in CUSTODIAN_KEY.
    pub fn master_key(&self) -> Result<MasterKey> {
        if let Some(path) = &self.key_file {
            return Ok(MasterKey::from_file(path)?);
        }
        if std::env::var_os("CUSTODIAN_KEY").is_some() {
            return Ok(MasterKey::from_env("CUSTODIAN_KEY")?);
        }
        bail!("no master key: give --key-file FILE or set CUSTODIAN_KEY")
    }

    /// A builder for the database and key stores named, with `key`.
    pub fn builder(&self, key: MasterKey) -> EngineBuilder {
        let mut b = Engine::builder().path(&self.db).master_key(key);
        if let Some(k) = &self.key_store {
            b = b.key_store(k);
        }
        for m in &self.key_mirror {
            b = b.key_mirror(m);
        }
        b
    }

    /// The existing database, for one command.
    pub fn open(&self) -> Result<Opened> {
        Ok(Opened(self.builder(self.master_key()?).open()?))
    }

    /// Who acts, and for what purpose: the session's holder, or `--as`.
    pub fn ctx(&self) -> Context {
        let ctx = match &self.session {
            Some(token) => Context::session(token, &self.purpose),
            None => Context::new(&self.principal, &self.purpose),
        };
        match &self.step_up {
            Some(code) => ctx.step_up(code),
            None => ctx,
        }
    }
}

/// The engine of one command. A command exits once the events it caused
/// are delivered (each delivery is bounded by its plugin's deadline), so a
/// plugin's reaction is in the database when the command returns; a
/// command killed before that leaves them queued, and the next command to
/// open the database delivers them.
pub struct Opened(Engine);

impl std::ops::Deref for Opened {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.0
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        match self.0.drain_events() {
            Ok(0) => {}
            Ok(n) => {
                tell!("note: {n} events are still queued; they are delivered on the next open")
            }
            Err(e) => tell!(
                "note: the event queue was not read: {}",
                render::line(&e.to_string())
            ),
        }
    }
}
