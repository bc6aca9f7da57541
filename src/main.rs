//! `custodian`: the operator's command line. It parses arguments, calls the
//! engine and prints; every rule lives in the `custodian` crate.

mod args;
mod demo;
mod input;
mod output;
mod parse;
mod plugins;
mod privacy;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow, bail};
use chrono::Utc;
use clap::Parser;
use custodian::{
    AuditDurability, CaseReport, Channel, Checkpoint, ConsentChange, Context, CustomerUpdate,
    Direction, Engine, ImportOptions, MasterKey, NewCustomer, NewFollowUp, NewInteraction,
    PolicyPack, PrincipalKind, PrincipalUpdate, Query, Schema, Status, parse_amount,
};

use args::access::{AuditCmd, PolicyCmd, PrincipalCmd, SessionCmd, TwoFactorCmd};
use args::records::{CustomerCmd, FollowUpCmd, InteractionCmd};
use args::{Cli, Command, Global};
use input::read_secret;
use parse::{attributes, pairs, parse_item, parse_time};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Init {
            new_key,
            schema,
            admin,
        } => init(g, new_key, schema.as_deref(), &admin),
        Command::Demo { dir } => demo::run(dir),
        Command::Principal(cmd) => principal(g, cmd),
        Command::Customer(cmd) => customer(g, cmd),
        Command::Interaction(cmd) => interaction(g, cmd),
        Command::FollowUp(cmd) => follow_up(g, cmd),
        Command::Audit(cmd) => audit(g, cmd),
        Command::Login { name, totp, source } => login(g, &name, totp.as_deref(), &source),
        Command::Session(cmd) => session(g, cmd),
        Command::Policy(cmd) => policy(g, cmd),
        Command::Plugin(cmd) => plugins::plugin(g, cmd),
        Command::Outbox(cmd) => plugins::outbox(g, cmd),
        Command::Consent(cmd) => privacy::consent(g, cmd),
        Command::Hold(cmd) => privacy::hold(g, cmd),
        Command::Lifecycle { customer } => privacy::lifecycle(g, customer),
        Command::Retention(cmd) => privacy::retention(g, cmd),
        Command::Subject(cmd) => privacy::subject(g, cmd),
        Command::Report(cmd) => privacy::report(g, cmd),
        Command::Purpose(cmd) => privacy::purpose(g, cmd),
        Command::Alerts { limit } => plugins::alerts(g, limit),
    }
}

fn master_key(g: &Global) -> Result<MasterKey> {
    if let Some(path) = &g.key_file {
        return Ok(MasterKey::from_file(path)?);
    }
    if std::env::var_os("CUSTODIAN_KEY").is_some() {
        return Ok(MasterKey::from_env("CUSTODIAN_KEY")?);
    }
    bail!("no master key: give --key-file FILE or set CUSTODIAN_KEY")
}

fn builder(g: &Global, key: MasterKey) -> custodian::EngineBuilder {
    let mut b = Engine::builder().path(&g.db).master_key(key);
    if let Some(k) = &g.key_store {
        b = b.key_store(k);
    }
    for m in &g.key_mirror {
        b = b.key_mirror(m);
    }
    b
}

fn open(g: &Global) -> Result<Engine> {
    Ok(builder(g, master_key(g)?).open()?)
}

fn ctx(g: &Global) -> Context {
    match &g.session {
        Some(token) => Context::session(token, &g.purpose),
        None => Context::new(&g.principal, &g.purpose),
    }
}

fn login(g: &Global, name: &str, totp: Option<&str>, source: &str) -> Result<()> {
    let engine = open(g)?;
    let password = zeroize::Zeroizing::new(read_secret("password: ")?);
    let session = engine.login(name, &password, totp, source)?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "token": session.token(),
                "principal": session.principal,
                "expires_at": session.expires_at,
            })
        );
    } else {
        println!("{}", session.token());
        eprintln!(
            "logged in as {}; the session ends by {} (pass it with --session or CUSTODIAN_SESSION)",
            session.principal, session.expires_at
        );
    }
    Ok(())
}

fn session(g: &Global, cmd: SessionCmd) -> Result<()> {
    let engine = open(g)?;
    let ctx = ctx(g);
    match cmd {
        SessionCmd::List => output::sessions(&engine.sessions(&ctx)?, g.json)?,
        SessionCmd::Revoke { token, all } => match (token, all) {
            (_, Some(name)) => {
                let n = engine.revoke_sessions(&ctx, &name)?;
                eprintln!("revoked {n} session(s) of {name}");
            }
            (Some(token), None) => {
                engine.revoke_session(&ctx, &token)?;
                eprintln!("session revoked");
            }
            (None, None) => bail!("give a session token or id, or --all NAME"),
        },
    }
    Ok(())
}

fn load_pack(dir: &Path) -> Result<PolicyPack> {
    Ok(PolicyPack::from_dir(dir)?)
}

/// Prints a case report; fails when a case failed.
fn report_cases(report: &CaseReport, what: &str) -> Result<()> {
    for f in &report.failures {
        eprintln!("FAIL {}: {}", f.case, f.problem);
    }
    println!(
        "{what}: {} case(s) passed, {} failed",
        report.passed,
        report.failures.len()
    );
    if report.failures.is_empty() {
        Ok(())
    } else {
        bail!("{} policy case(s) failed", report.failures.len())
    }
}

/// The schema policy cases are checked against: the database's when one
/// is reachable, the bundled one otherwise.
fn schema_for_cases(g: &Global) -> Schema {
    if g.db.exists()
        && let Ok(engine) = open(g)
    {
        return engine.schema().clone();
    }
    Schema::default()
}

fn policy(g: &Global, cmd: PolicyCmd) -> Result<()> {
    match cmd {
        PolicyCmd::Check { dir } => {
            let pack = load_pack(&dir)?;
            report_cases(&pack.check_cases(&schema_for_cases(g))?, "policy compiles")
        }
        PolicyCmd::Test { dir, cases } => {
            let pack = load_pack(&dir)?;
            let text = std::fs::read_to_string(&cases)
                .with_context(|| format!("cannot read `{}`", cases.display()))?;
            report_cases(
                &pack.test_cases(&text, &schema_for_cases(g))?,
                "policy test",
            )
        }
        PolicyCmd::Install { dir } => {
            let pack = load_pack(&dir)?;
            let engine = open(g)?;
            let installed = engine.install_policy(&ctx(g), &pack)?;
            eprintln!(
                "installed policy version {} from {}; it decides from now on",
                installed.version,
                dir.display()
            );
            Ok(())
        }
        PolicyCmd::Show => {
            let engine = open(g)?;
            let installed = engine.installed_policy(&ctx(g))?;
            if g.json {
                let files: serde_json::Map<String, serde_json::Value> = installed
                    .pack
                    .files()
                    .map(|(name, text)| (name.to_string(), text.into()))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({
                        "version": installed.version,
                        "installed_at": installed.installed_at,
                        "installed_by": installed.installed_by,
                        "files": files,
                    })
                );
            } else {
                println!(
                    "policy version {} installed {} by {}",
                    installed.version, installed.installed_at, installed.installed_by
                );
                for (name, text) in installed.pack.files() {
                    println!("\n==> {name} <==\n{text}");
                }
            }
            Ok(())
        }
    }
}

fn init(g: &Global, new_key: bool, schema: Option<&Path>, admin: &str) -> Result<()> {
    if g.db.exists() {
        bail!("`{}` already exists; choose another --db", g.db.display());
    }
    let key = if new_key {
        let path = g.key_file.clone().unwrap_or_else(|| {
            let mut p = g.db.clone().into_os_string();
            p.push(".key");
            PathBuf::from(p)
        });
        let key = MasterKey::generate();
        key.write_new_file(&path)?;
        eprintln!(
            "wrote a new master key to {} (mode 0600): keep a copy somewhere safe and apart from the database; without it nothing can be read",
            path.display()
        );
        key
    } else {
        master_key(g)?
    };
    let mut b = builder(g, key).create(true).initial_admin(admin);
    if let Some(path) = schema {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read schema `{}`", path.display()))?;
        b = b.schema(Schema::from_toml(&text)?);
    }
    let engine = b.open()?;
    eprintln!(
        "created {} with key store {}; first admin: {admin}",
        g.db.display(),
        engine.key_store_path().display()
    );
    Ok(())
}

fn principal(g: &Global, cmd: PrincipalCmd) -> Result<()> {
    let engine = open(g)?;
    let ctx = ctx(g);
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
            eprintln!(
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
            eprintln!("updated principal {name}");
        }
        PrincipalCmd::Passwd { name } => {
            let acting_self = g.session.is_none() && g.principal == name;
            let current = if acting_self || g.session.is_some() {
                Some(zeroize::Zeroizing::new(read_secret(
                    "current password (empty if none): ",
                )?))
            } else {
                None
            };
            let new = zeroize::Zeroizing::new(read_secret("new password: ")?);
            if std::io::stdin().is_terminal() {
                let again = zeroize::Zeroizing::new(read_secret("new password again: ")?);
                if *again != *new {
                    bail!("the passwords differ; nothing was changed");
                }
            }
            let current = current
                .as_ref()
                .map(|c| c.as_str())
                .filter(|c| !c.is_empty());
            engine.set_password(&ctx, &name, current, &new)?;
            eprintln!("password of {name} set; its sessions were ended");
        }
        PrincipalCmd::TwoFactor(cmd) => match cmd {
            TwoFactorCmd::Enroll { name } => {
                let enrolled = engine.enroll_totp(&ctx, &name)?;
                println!("{}", enrolled.uri.as_str());
                eprintln!("recovery codes (each works once; store them offline):");
                for code in &enrolled.recovery_codes {
                    println!("{}", code.as_str());
                }
                eprintln!(
                    "add the URI to an authenticator app, then run `custodian principal 2fa verify {name} CODE`"
                );
            }
            TwoFactorCmd::Verify { name, code } => {
                engine.confirm_totp(&ctx, &name, &code)?;
                eprintln!("second factor of {name} confirmed; logins now need a code");
            }
            TwoFactorCmd::Disable { name } => {
                engine.disable_totp(&ctx, &name)?;
                eprintln!("second factor of {name} removed");
            }
        },
        PrincipalCmd::Unlock { name } => {
            engine.unlock_principal(&ctx, &name)?;
            eprintln!("unlocked {name}");
        }
        PrincipalCmd::List => output::principals(&engine.principals(&ctx)?, g.json)?,
        PrincipalCmd::Deactivate { name } => {
            engine.deactivate_principal(&ctx, &name)?;
            eprintln!("deactivated principal {name}");
        }
    }
    Ok(())
}

/// Prints a new record's id: alone, or as `{"id": N}` with `--json`.
fn print_id(g: &Global, id: u64) {
    if g.json {
        println!("{}", serde_json::json!({ "id": id }));
    } else {
        println!("{id}");
    }
}

fn customer(g: &Global, cmd: CustomerCmd) -> Result<()> {
    let engine = open(g)?;
    let ctx = ctx(g);
    match cmd {
        CustomerCmd::Add {
            fields,
            owner,
            consents,
            channel,
            notice,
        } => {
            let mut new = NewCustomer::new();
            for (k, v) in pairs(&fields)? {
                new = new.field(k, v);
            }
            new.owner = owner;
            if let Some(list) = consents {
                let notice = notice.unwrap_or_default();
                new.consents = ConsentChange::parse_list(&list, &channel, &notice)?;
            }
            let id = engine.create_customer(&ctx, new)?;
            print_id(g, id);
        }
        CustomerCmd::Get { id } => output::customers(&[engine.customer(&ctx, id)?], g.json)?,
        CustomerCmd::Find { query, limit } => {
            let (key, value) = query
                .split_once('=')
                .ok_or_else(|| anyhow!("`{query}` is not of the form key=value"))?;
            let query = match key {
                "owner" => Query::Owner(value.to_string()),
                "tag" | "tags" => Query::Tag(value.to_string()),
                "status" => Query::Status(Status::parse(value)?),
                field => Query::field(field, value),
            };
            output::customers(&engine.find_customers(&ctx, &query, limit)?, g.json)?;
        }
        CustomerCmd::Update { id, fields, owner } => {
            let mut update = CustomerUpdate::new();
            for (k, v) in pairs(&fields)? {
                update = if v.trim().is_empty() {
                    update.clear(k)
                } else {
                    update.set(k, v)
                };
            }
            update.owner = owner;
            engine.update_customer(&ctx, id, update)?;
            eprintln!("updated customer {id}");
        }
        CustomerCmd::Delete { id } => {
            engine.delete_customer(&ctx, id)?;
            eprintln!("deleted customer {id} and destroyed its key");
        }
        CustomerCmd::Count => {
            let n = engine.count_customers(&ctx)?;
            if g.json {
                println!("{}", serde_json::json!({ "count": n }));
            } else {
                println!("{n}");
            }
        }
        CustomerCmd::Import { file, batch } => import(g, &engine, &ctx, &file, batch)?,
    }
    Ok(())
}

fn import(g: &Global, engine: &Engine, ctx: &Context, file: &Path, batch: usize) -> Result<()> {
    let input =
        std::fs::File::open(file).with_context(|| format!("cannot open `{}`", file.display()))?;
    let total = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let terminal = std::io::stderr().is_terminal();
    let options = ImportOptions { batch_size: batch };
    let report = engine.import_csv(ctx, std::io::BufReader::new(input), &options, |p| {
        let mut err = std::io::stderr().lock();
        if terminal {
            // A rough bar from the line count; the file size gives the scale.
            let width = 30;
            let done = (p.last_line as f64 * 64.0 / total.max(1) as f64).min(1.0);
            let filled = (done * width as f64) as usize;
            let _ = write!(
                err,
                "\r[{}{}] {} imported, {} skipped",
                "#".repeat(filled),
                " ".repeat(width - filled.min(width)),
                p.imported,
                p.skipped
            );
        } else {
            // One line per durable commit: a supervisor can tell what is safe.
            let _ = writeln!(
                err,
                "committed {} customers through line {} (ids {}..={})",
                p.imported,
                p.last_line,
                p.ids.start(),
                p.ids.end()
            );
        }
    })?;
    if terminal {
        eprintln!();
    }
    for row in &report.errors {
        eprintln!("skipped {row}");
    }
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "imported": report.imported,
                "skipped": report.errors.len(),
                "first_id": report.first_id,
                "last_id": report.last_id,
            })
        );
    } else {
        println!(
            "imported {} customers, skipped {} rows",
            report.imported,
            report.errors.len()
        );
    }
    Ok(())
}

fn interaction(g: &Global, cmd: InteractionCmd) -> Result<()> {
    let engine = open(g)?;
    let ctx = ctx(g);
    match cmd {
        InteractionCmd::Add {
            customer,
            channel,
            direction,
            summary,
            body,
            at,
            amount,
            items,
        } => {
            let mut new = NewInteraction::new(
                Channel::parse(&channel)?,
                Direction::parse(&direction)?,
                summary,
            );
            new.body = body;
            new.at = at.as_deref().map(parse_time).transpose()?;
            new.amount_minor = amount.as_deref().map(parse_amount).transpose()?;
            new.items = items.iter().map(|i| parse_item(i)).collect::<Result<_>>()?;
            let id = engine.log_interaction(&ctx, customer, new)?;
            print_id(g, id);
        }
        InteractionCmd::List { customer } => {
            output::interactions(&engine.interactions(&ctx, customer)?, g.json)?
        }
    }
    Ok(())
}

fn follow_up(g: &Global, cmd: FollowUpCmd) -> Result<()> {
    let engine = open(g)?;
    let ctx = ctx(g);
    match cmd {
        FollowUpCmd::Add {
            customer,
            due,
            note,
            assignee,
        } => {
            let id = engine.add_follow_up(
                &ctx,
                NewFollowUp {
                    customer,
                    due: parse_time(&due)?,
                    assignee,
                    note,
                },
            )?;
            print_id(g, id);
        }
        FollowUpCmd::Due { before, assignee } => {
            let before = before
                .as_deref()
                .map(parse_time)
                .transpose()?
                .unwrap_or_else(Utc::now);
            output::follow_ups(
                &engine.follow_ups_due(&ctx, before, assignee.as_deref())?,
                g.json,
            )?;
        }
        FollowUpCmd::Done { id } => {
            engine.complete_follow_up(&ctx, id)?;
            eprintln!("follow-up {id} done");
        }
        FollowUpCmd::Dispatch { until } => {
            let until = until
                .as_deref()
                .map(parse_time)
                .transpose()?
                .unwrap_or_else(Utc::now);
            let n = engine.dispatch_due_follow_ups(until)?;
            if g.json {
                println!("{}", serde_json::json!({ "dispatched": n }));
            } else {
                eprintln!("dispatched {n} due follow-up(s) to subscribed plugins");
            }
        }
    }
    Ok(())
}

fn audit(g: &Global, cmd: AuditCmd) -> Result<()> {
    let engine = builder(g, master_key(g)?)
        .audit_durability(AuditDurability::Durable)
        .open()?;
    match cmd {
        AuditCmd::Verify { checkpoint } => {
            let checkpoint = match checkpoint {
                Some(path) => Some(Checkpoint::from_json(
                    &std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read `{}`", path.display()))?,
                )?),
                None => None,
            };
            let report = engine.verify_audit(checkpoint.as_ref())?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "audit chain verified: {} entries, head {}{}",
                    report.entries,
                    report.head_hash,
                    if report.checkpoint_checked {
                        ", checkpoint matches"
                    } else {
                        ""
                    }
                );
            }
        }
        AuditCmd::Checkpoint { out } => {
            let cp = engine.audit_checkpoint()?;
            std::fs::write(&out, cp.to_json())
                .with_context(|| format!("cannot write `{}`", out.display()))?;
            eprintln!(
                "checkpoint at entry {} written to {}",
                cp.seq,
                out.display()
            );
        }
        AuditCmd::Tail { n } => output::audit(&engine.audit_tail(&ctx(g), n)?, g.json)?,
    }
    Ok(())
}
