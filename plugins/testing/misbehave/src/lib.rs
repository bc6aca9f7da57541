//! `misbehave`: a plugin that is hostile on purpose, for the engine's
//! sandbox tests. Never install it anywhere else.
//!
//! **Describes itself** with terminal controls in its manifest's
//! description (escape sequences, CR, BEL, backspace, NUL, U+009B, U+202E,
//! DEL and a line of its own), for the tests of what reaches a terminal.
//!
//! **Asks for** a lot, so that tests can narrow the grant: hooks `ingest`
//! and `on-event`, every event kind, fields `name`, `phone`, `id_number`
//! and `note` (the follow-up note of `follow-up-due`) in full, all four
//! commands at 100 a minute, 5 messages a minute, channel `sms`.
//!
//! **`ingest(payload)`**: the payload is UTF-8 text whose first word picks a
//! behaviour (the rest are its arguments, separated by whitespace):
//!
//! | payload | behaviour |
//! | --- | --- |
//! | `loop` | spins forever (the deadline must stop it) |
//! | `grow` | allocates and touches 1 MiB blocks until memory is refused |
//! | `recurse` | recurses without bound (the stack must overflow) |
//! | `huge [N]` | one `upsert-customer` for `id(1)` whose field `name` is N MiB of `x` (default 100) |
//! | `flood [N]` | N `log-interaction`s (call, inbound, summary `flood <i>`) for `id(1)` (default 1000) |
//! | `command KIND ID [FIELD=VALUE ...]` | one command about `id(ID)`: `upsert` (the fields given, default `name=Misbehave`), `log` (a call), `follow-up` (due a day after the engine's clock), `message` or `marketing` (an `sms` of template `misbehave`, purpose service or marketing) |
//! | `lookup ID`, `lookup phone:P`, `lookup email:E` | looks the customer up by id, phone or email and prints `seen: name=Li Na,phone=138****8000` (the fields as granted, in the order given) or `seen: none`; no commands |
//! | `print TEXT` | prints TEXT (the rest of the payload) to stdout and to stderr; no commands |
//! | `state-set K V` | writes V (the rest of the payload) to the plugin's state under K; no commands |
//! | `state-get K` | prints `state: <value>` or `state: none`; no commands |
//! | `state-fill N SIZE [PREFIX]` | writes N state keys `<PREFIX>-<i>` (default `fill`) of SIZE bytes of `x`, stopping at the first refusal; prints `state-fill: <i> accepted` and, if refused, `; refused: <message>`; no commands |
//! | `cstate-set ID K V` | looks customer ID up, then writes V (the rest) to its state about the customer under K; no commands |
//! | `cstate-set-unseen ID K V` | the same without the lookup; no commands |
//! | `cstate-get ID K` | looks customer ID up, then prints `cstate: <value>` or `cstate: none`; no commands |
//! | `park ID FIELD` | looks customer ID up and tries to keep the value of FIELD where it does not belong: prints `parked: <value>` to stdout, logs it, and writes it to unscoped state under `parked`, printing `park: kept` or `park: refused: <message>`; no commands |
//! | `log-flood N SIZE` | writes N host log lines of SIZE bytes of `x`; no commands |
//! | `remember TEXT` / `recall` | keeps TEXT in the instance's memory / prints `recalled: <text>` or `recalled: none` |
//! | `ambient` | tries what WASI could give an unsandboxed program: prints the number of environment variables and arguments, whether `/`, `.`, `/etc/passwd` and `/tmp` can be read, whether a file can be written, a TCP connection made and stdin read |
//! | `trap` | panics with `deliberate trap` (a trap: panics abort) |
//! | `sleep [MS]` | sleeps MS milliseconds (default 60,000) in the host (`std::thread::sleep`, a WASI clocks poll), then returns no commands |
//! | `ok` | no commands |
//! | `fail` | the error `deliberate failure` |
//!
//! Anything else is an error naming the word. A payload that is not UTF-8
//! is an error too.
//!
//! **`on-event(event)`** prints one line, `event: <kind>` followed, when
//! there is anything to show, by a space and `name=value` pairs joined by
//! `,`: the customer's fields as granted (`event: customer-created
//! name=Li Na,phone=+86 138 0013 8000`), then for `follow-up-due` the note
//! when the engine handed one over (`event: follow-up-due
//! name=Li Na,note=call back`); `id=<id>` for `customer-erased`,
//! `kind=..,message=..` for `alert-raised`. It returns no commands. Then,
//! if the plugin's state holds `sleep MS` under the key `on-event` (set it
//! with `state-set on-event sleep MS`), it sleeps MS milliseconds in the
//! host, as `sleep` does.

use std::hint::black_box;

use custodian_sdk::{
    Channel, Command, CommandKind, Customer, CustomerRef, Event, EventKind, Guest, Hook, Manifest,
    MessagePurpose, host,
};

const MIB: usize = 1 << 20;

thread_local! {
    /// What `remember` keeps inside the instance.
    static REMEMBERED: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The manifest's description, hostile too: terminal controls that would,
/// shown as they are, erase the line, move the cursor up, ring the bell,
/// retitle the window, reverse what follows, and start a line of their own
/// that looks like part of the consent screen.
const DESCRIPTION: &str = "hostile on purpose: for the engine's sandbox tests only\u{1b}[2K\r\u{1b}[1A\u{1b}]0;title\u{7}\u{8}\u{0}\u{9b}0m\u{202e}\u{7f}\ngrants    nothing";

/// The plugin.
struct Misbehave;

impl Guest for Misbehave {
    fn describe() -> Manifest {
        Manifest::new("misbehave", env!("CARGO_PKG_VERSION"), "Custodian tests")
            .description(DESCRIPTION)
            .hook(Hook::Ingest)
            .events([
                EventKind::CustomerCreated,
                EventKind::CustomerUpdated,
                EventKind::CustomerErased,
                EventKind::InteractionLogged,
                EventKind::FollowUpDue,
                EventKind::AlertRaised,
            ])
            .field_full("name")
            .field_full("phone")
            .field_full("id_number")
            .field_full("note")
            .commands([
                CommandKind::UpsertCustomer,
                CommandKind::LogInteraction,
                CommandKind::CreateFollowUp,
                CommandKind::SendMessage,
            ])
            .commands_per_minute(100)
            .messages_per_minute(5)
            .channel("sms")
    }

    fn ingest(payload: Vec<u8>) -> Result<Vec<Command>, String> {
        let text = String::from_utf8(payload).map_err(|_| "payload is not UTF-8".to_owned())?;
        let text = text.trim();
        let (word, rest) = text
            .split_once(char::is_whitespace)
            .map_or((text, ""), |(word, rest)| (word, rest.trim_start()));
        let mut args = rest.split_whitespace();
        match word {
            "loop" => spin(),
            "grow" => grow(),
            "recurse" => {
                let depth = recurse(0);
                Err(format!("recursion ended at depth {depth}"))
            }
            "huge" => {
                let mib = count(args.next(), 100)?;
                let len = usize::try_from(mib)
                    .ok()
                    .and_then(|m| m.checked_mul(MIB))
                    .ok_or_else(|| format!("`{mib}` MiB does not fit in memory"))?;
                Ok(vec![
                    Command::upsert_customer(CustomerRef::id(1))
                        .field("name", "x".repeat(len))
                        .into(),
                ])
            }
            "flood" => {
                let n = count(args.next(), 1000)?;
                Ok((0..n)
                    .map(|i| {
                        Command::log_interaction(
                            CustomerRef::id(1),
                            Channel::Call,
                            format!("flood {i}"),
                        )
                        .into()
                    })
                    .collect())
            }
            "command" => {
                let kind = args.next().ok_or("`command` needs a kind and an id")?;
                let id = CustomerRef::id(customer_id(args.next())?);
                Ok(vec![command(kind, id, args)?])
            }
            "lookup" => {
                // By id, or `phone:NUMBER` / `email:ADDRESS`.
                let by = match args.next() {
                    Some(arg) if arg.starts_with("phone:") => {
                        CustomerRef::Phone(arg.trim_start_matches("phone:").to_string())
                    }
                    Some(arg) if arg.starts_with("email:") => {
                        CustomerRef::Email(arg.trim_start_matches("email:").to_string())
                    }
                    arg => CustomerRef::id(customer_id(arg)?),
                };
                match host::lookup(&by) {
                    Some(customer) => println!("seen: {}", fields(&customer)),
                    None => println!("seen: none"),
                }
                Ok(Vec::new())
            }
            "print" => {
                println!("{rest}");
                eprintln!("{rest}");
                Ok(Vec::new())
            }
            "state-set" => {
                let (key, value) = rest
                    .split_once(char::is_whitespace)
                    .map_or((rest, ""), |(k, v)| (k, v.trim_start()));
                host::state_set(key, value.as_bytes())?;
                Ok(Vec::new())
            }
            "state-get" => {
                let key = args.next().unwrap_or_default();
                match host::state_get(key) {
                    Some(value) => println!("state: {}", String::from_utf8_lossy(&value)),
                    None => println!("state: none"),
                }
                Ok(Vec::new())
            }
            "state-fill" => {
                let n = count(args.next(), 1)?;
                let size = usize::try_from(count(args.next(), 1024)?).unwrap_or(usize::MAX);
                let prefix = args.next().unwrap_or("fill");
                let value = vec![b'x'; size];
                let mut accepted = 0;
                let mut refused = None;
                for i in 0..n {
                    match host::state_set(&format!("{prefix}-{i}"), &value) {
                        Ok(()) => accepted += 1,
                        Err(e) => {
                            refused = Some(e);
                            break;
                        }
                    }
                }
                match refused {
                    Some(e) => println!("state-fill: {accepted} accepted; refused: {e}"),
                    None => println!("state-fill: {accepted} accepted"),
                }
                Ok(Vec::new())
            }
            "cstate-set" | "cstate-set-unseen" => {
                let id = customer_id(args.next())?;
                let key = args.next().ok_or("a state key is needed")?;
                let value: Vec<&str> = args.collect();
                if word == "cstate-set" {
                    let _ = host::lookup(&CustomerRef::id(id));
                }
                host::customer_state_set(id, key, value.join(" ").as_bytes())?;
                Ok(Vec::new())
            }
            "cstate-get" => {
                let id = customer_id(args.next())?;
                let key = args.next().unwrap_or_default();
                let _ = host::lookup(&CustomerRef::id(id));
                match host::customer_state_get(id, key)? {
                    Some(value) => println!("cstate: {}", String::from_utf8_lossy(&value)),
                    None => println!("cstate: none"),
                }
                Ok(Vec::new())
            }
            "park" => {
                let id = customer_id(args.next())?;
                let field = args.next().ok_or("a field is needed")?;
                let customer = host::lookup(&CustomerRef::id(id)).ok_or("no such customer")?;
                let value = customer.get(field).ok_or("no such field")?.to_owned();
                println!("parked: {value}");
                host::log(host::Level::Info, &format!("parked: {value}"));
                match host::state_set("parked", value.as_bytes()) {
                    Ok(()) => println!("park: kept"),
                    Err(e) => println!("park: refused: {e}"),
                }
                Ok(Vec::new())
            }
            "log-flood" => {
                let n = count(args.next(), 1000)?;
                let size = usize::try_from(count(args.next(), 1024)?).unwrap_or(usize::MAX);
                let line = "x".repeat(size);
                for _ in 0..n {
                    host::log(host::Level::Info, &line);
                }
                Ok(Vec::new())
            }
            "remember" => {
                // Kept in the instance's own memory: gone if every call
                // gets a fresh instance.
                REMEMBERED.with(|r| r.replace(rest.to_owned()));
                Ok(Vec::new())
            }
            "recall" => {
                let value = REMEMBERED.with(|r| r.borrow().clone());
                println!(
                    "recalled: {}",
                    if value.is_empty() { "none" } else { &value }
                );
                Ok(Vec::new())
            }
            "ambient" => {
                // What WASI would hand an unsandboxed program.
                let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                println!("env: {}", env.len());
                println!("args: {}", std::env::args().count());
                for path in ["/", ".", "/etc/passwd", "/tmp"] {
                    match std::fs::read_dir(path) {
                        Ok(_) => println!("dir {path}: readable"),
                        Err(_) => match std::fs::read(path) {
                            Ok(_) => println!("file {path}: readable"),
                            Err(e) => println!("path {path}: refused ({})", e.kind()),
                        },
                    }
                }
                match std::fs::write("escape.txt", b"x") {
                    Ok(()) => println!("write: allowed"),
                    Err(e) => println!("write: refused ({})", e.kind()),
                }
                match std::net::TcpStream::connect("127.0.0.1:80") {
                    Ok(_) => println!("tcp: connected"),
                    Err(e) => println!("tcp: refused ({})", e.kind()),
                }
                let mut line = String::new();
                match std::io::stdin().read_line(&mut line) {
                    Ok(0) | Err(_) => println!("stdin: empty"),
                    Ok(n) => println!("stdin: {n} bytes"),
                }
                Ok(Vec::new())
            }
            "trap" => trap(),
            "sleep" => {
                sleep(count(args.next(), 60_000)?);
                Ok(Vec::new())
            }
            "ok" => Ok(Vec::new()),
            "fail" => Err("deliberate failure".into()),
            other => Err(format!(
                "unknown word `{other}`: expected loop, grow, recurse, huge, flood, command, \
                 lookup, print, state-set, state-get, state-fill, cstate-set, cstate-set-unseen, \
                 cstate-get, park, log-flood, remember, recall, ambient, trap, sleep, ok or fail"
            )),
        }
    }

    fn on_event(event: Event) -> Result<Vec<Command>, String> {
        println!("{}", event_line(&event));
        let asked = host::state_get("on-event").and_then(|v| String::from_utf8(v).ok());
        if let Some(ms) = asked.as_deref().and_then(|a| a.strip_prefix("sleep ")) {
            sleep(count(Some(ms.trim()), 60_000)?);
        }
        Ok(Vec::new())
    }
}

custodian_sdk::export!(Misbehave);

/// The line `on-event` prints: `event: <kind>`, then what the event
/// showed the plugin.
fn event_line(event: &Event) -> String {
    let details = match event {
        Event::CustomerErased(id) => format!("id={id}"),
        Event::AlertRaised(alert) => format!("kind={},message={}", alert.kind, alert.message),
        Event::FollowUpDue(due) => {
            let mut pairs = fields(&due.customer);
            if let Some(note) = &due.note {
                if !pairs.is_empty() {
                    pairs.push(',');
                }
                pairs.push_str("note=");
                pairs.push_str(note);
            }
            pairs
        }
        other => other.customer().map(fields).unwrap_or_default(),
    };
    let kind = event.kind().name();
    if details.is_empty() {
        format!("event: {kind}")
    } else {
        format!("event: {kind} {details}")
    }
}

/// `name=value` pairs joined by `,`, in the order the engine gave them.
fn fields(customer: &Customer) -> String {
    customer
        .fields
        .iter()
        .map(|f| format!("{}={}", f.name, f.value))
        .collect::<Vec<_>>()
        .join(",")
}

fn command<'a>(
    kind: &str,
    customer: CustomerRef,
    mut fields: impl Iterator<Item = &'a str>,
) -> Result<Command, String> {
    let message = |purpose| Command::send_message("sms", customer.clone(), "misbehave", purpose);
    Ok(match kind {
        "upsert" => {
            let mut upsert = Command::upsert_customer(customer.clone());
            for pair in fields.by_ref() {
                let (name, value) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("`{pair}` is not FIELD=VALUE"))?;
                upsert = upsert.field(name, value);
            }
            if upsert.fields.is_empty() {
                upsert = upsert.field("name", "Misbehave");
            }
            upsert.into()
        }
        "log" => Command::log_interaction(customer, Channel::Call, "misbehave").into(),
        "follow-up" => {
            Command::create_follow_up(customer, host::now().saturating_add(DAY_MS), "misbehave")
                .into()
        }
        "message" => message(MessagePurpose::Service).into(),
        "marketing" => message(MessagePurpose::Marketing).into(),
        other => {
            return Err(format!(
                "unknown command kind `{other}`: expected upsert, log, follow-up, message or marketing"
            ));
        }
    })
}

fn count(arg: Option<&str>, default: u64) -> Result<u64, String> {
    arg.map_or(Ok(default), |n| {
        n.parse().map_err(|_| format!("`{n}` is not a count"))
    })
}

fn customer_id(arg: Option<&str>) -> Result<u64, String> {
    let arg = arg.ok_or("a customer id is needed")?;
    arg.parse()
        .map_err(|_| format!("`{arg}` is not a customer id"))
}

/// Spins until the engine's deadline stops it. `black_box` keeps the
/// optimizer from proving the loop useless.
/// Waits `ms` milliseconds in the host: a blocking call the deadline must
/// end as surely as a loop.
fn sleep(ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

fn spin() -> ! {
    let mut i: u64 = 0;
    loop {
        i = black_box(i).wrapping_add(1);
    }
}

/// Allocates and touches 1 MiB blocks until an allocation fails (which
/// aborts: a trap).
fn grow() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0_u8; MIB];
        // Zeroed pages may never be written by the allocator: touch one
        // byte per 4 KiB page so that the memory is really used.
        for page in block.chunks_mut(4096) {
            if let Some(byte) = page.first_mut() {
                *byte = 1;
            }
        }
        blocks.push(black_box(block));
    }
}

/// Recurses without a reachable base case until the engine's stack limit
/// traps. Not a tail call (the result is used after the call), and the
/// opaque `black_box` after it keeps LLVM from turning the recursion into a
/// loop. Nothing is kept in linear memory, so it is the engine's call stack
/// that overflows, not the program's shadow stack.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(black_box(depth + 1)).wrapping_add(black_box(depth))
}

#[expect(clippy::panic, reason = "trapping is this behaviour's whole point")]
fn trap() -> ! {
    panic!("deliberate trap")
}

#[cfg(test)]
mod tests {
    use super::*;
    use custodian_sdk::{Access, Alert, Field, FollowUpDue};

    fn ingest(payload: &str) -> Result<Vec<Command>, String> {
        Misbehave::ingest(payload.as_bytes().to_vec())
    }

    #[test]
    fn harmless_words_answer_as_documented() {
        assert_eq!(ingest("ok"), Ok(vec![]));
        assert_eq!(ingest("  ok \n"), Ok(vec![]));
        assert_eq!(ingest("fail"), Err("deliberate failure".into()));
        assert_eq!(ingest("print hello  world"), Ok(vec![]));
        assert!(
            ingest("dance")
                .unwrap_err()
                .starts_with("unknown word `dance`")
        );
        assert!(ingest("").unwrap_err().starts_with("unknown word ``"));
        assert_eq!(
            Misbehave::ingest(vec![0xff]),
            Err("payload is not UTF-8".into())
        );
    }

    #[test]
    fn floods_and_huge_values_have_the_sizes_asked() {
        assert_eq!(ingest("flood").map(|c| c.len()), Ok(1000));
        assert_eq!(ingest("flood 3").map(|c| c.len()), Ok(3));
        let commands = ingest("huge 1").unwrap();
        let [Command::UpsertCustomer(u)] = &commands[..] else {
            panic!("{commands:?}");
        };
        assert_eq!(u.match_, CustomerRef::Id(1));
        assert_eq!(u.fields.len(), 1);
        assert_eq!(u.fields[0].name, "name");
        assert_eq!(u.fields[0].value.len(), MIB);
        assert!(ingest("flood many").is_err());
    }

    #[test]
    fn commands_of_each_kind() {
        let one = |payload: &str| ingest(payload).map(|mut c| c.pop());
        let Ok(Some(Command::UpsertCustomer(u))) = one("command upsert 5 phone=+8613800138000")
        else {
            panic!()
        };
        assert_eq!(u.match_, CustomerRef::Id(5));
        assert_eq!(
            u.fields,
            [Field {
                name: "phone".into(),
                value: "+8613800138000".into()
            }]
        );
        let Ok(Some(Command::UpsertCustomer(u))) = one("command upsert 5") else {
            panic!()
        };
        assert_eq!(u.fields[0].value, "Misbehave");
        assert!(matches!(
            one("command log 5"),
            Ok(Some(Command::LogInteraction(_)))
        ));
        let Ok(Some(Command::SendMessage(m))) = one("command marketing 7") else {
            panic!()
        };
        assert_eq!(
            (m.channel.as_str(), m.customer, m.purpose),
            ("sms", CustomerRef::Id(7), MessagePurpose::Marketing)
        );
        let Ok(Some(Command::SendMessage(m))) = one("command message 7") else {
            panic!()
        };
        assert_eq!(m.purpose, MessagePurpose::Service);
        assert!(ingest("command dance 7").is_err());
        assert!(ingest("command log").is_err());
        assert!(ingest("command log seven").is_err());
    }

    #[test]
    fn fields_are_printed_as_pairs() {
        let c = Customer {
            id: 1,
            status: "active".into(),
            fields: vec![
                Field {
                    name: "name".into(),
                    value: "Li Na".into(),
                },
                Field {
                    name: "phone".into(),
                    value: "138****8000".into(),
                },
            ],
            masked: vec!["phone".into()],
        };
        assert_eq!(fields(&c), "name=Li Na,phone=138****8000");
        assert_eq!(
            event_line(&Event::CustomerCreated(c)),
            "event: customer-created name=Li Na,phone=138****8000"
        );
    }

    #[test]
    fn each_event_kind_prints_what_it_showed() {
        let c = Customer {
            id: 3,
            status: "active".into(),
            fields: vec![Field {
                name: "name".into(),
                value: "Li Na".into(),
            }],
            masked: Vec::new(),
        };
        let due = |customer: Customer, note: Option<&str>| {
            Event::FollowUpDue(FollowUpDue {
                customer,
                follow_up: 9,
                due: 0,
                note: note.map(str::to_owned),
            })
        };
        assert_eq!(
            event_line(&due(c.clone(), Some("call back"))),
            "event: follow-up-due name=Li Na,note=call back"
        );
        assert_eq!(
            event_line(&due(c.clone(), None)),
            "event: follow-up-due name=Li Na"
        );
        let bare = Customer {
            fields: vec![],
            ..c.clone()
        };
        assert_eq!(
            event_line(&due(bare.clone(), Some("x"))),
            "event: follow-up-due note=x"
        );
        assert_eq!(event_line(&due(bare, None)), "event: follow-up-due");
        assert_eq!(
            event_line(&Event::CustomerErased(3)),
            "event: customer-erased id=3"
        );
        assert_eq!(
            event_line(&Event::AlertRaised(Alert {
                kind: "k".into(),
                message: "m".into(),
            })),
            "event: alert-raised kind=k,message=m"
        );
        assert_eq!(
            event_line(&Event::CustomerUpdated(c)),
            "event: customer-updated name=Li Na"
        );
    }

    #[test]
    fn manifest_asks_for_everything_a_test_narrows() {
        let m = Misbehave::describe();
        assert_eq!(m.name, "misbehave");
        assert_eq!(m.hooks, [Hook::Ingest, Hook::OnEvent]);
        assert_eq!(
            m.events,
            [
                EventKind::CustomerCreated,
                EventKind::CustomerUpdated,
                EventKind::CustomerErased,
                EventKind::InteractionLogged,
                EventKind::FollowUpDue,
                EventKind::AlertRaised,
            ]
        );
        assert!(m.fields.iter().all(|f| f.access == Access::Full));
        assert_eq!(
            m.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["name", "phone", "id_number", "note"]
        );
        assert_eq!(m.commands.len(), 4);
        assert_eq!((m.commands_per_minute, m.messages_per_minute), (100, 5));
        assert_eq!(m.channels, ["sms"]);
    }
}
