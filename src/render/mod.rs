//! Printing results for people (aligned text) or programs (`--json`).
//!
//! A printable result implements [`Render`] with both forms; [`Output`],
//! chosen once from `--json`, prints the one asked for. Handlers never
//! look at the flag.

mod plugins;
mod privacy;
mod records;
mod terminal;

use std::fmt::Debug;
use std::io::{self, Write};

use anyhow::Result;
use custodian::Outcome;
use serde::Serialize;

pub use plugins::{audit_detail, call_report_text, grant_text, manifest_text};
pub use privacy::{Consents, LifecycleOf};
pub use records::{Count, NewId};
pub use terminal::{
    json_safe, line, redraw, say_line, stderr, stderr_is_terminal, stdout, tell_line,
};
pub(crate) use terminal::{say, tell};

/// How results are printed: for people or, with `--json`, for programs.
#[derive(Clone, Copy)]
pub enum Output {
    /// Aligned text, with notes on stderr.
    Human,
    /// JSON on stdout, and nothing else there.
    Json,
}

/// How `--json` prints a result.
pub enum Json {
    /// Indented over several lines: records and reports.
    Pretty,
    /// On one line: short answers such as `{"id":7}`.
    Line,
    /// Not at all: what people are shown on the way to a result that
    /// programs get whole.
    Omitted,
}

/// A result the command line prints.
pub trait Render {
    /// How `--json` prints [`Render::json`].
    const JSON: Json = Json::Pretty;

    /// Writes the result for people, on stdout.
    fn human(&self, out: &mut dyn Write) -> io::Result<()>;

    /// Writes what people are told on stderr after the result: what was
    /// done, what to do next. Programs get the result alone.
    fn note(&self, _err: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }

    /// The result for programs. A value to serialize rather than a
    /// `serde_json::Value`: a `Value` sorts the keys of objects, and the
    /// engine's types print their fields in their own order.
    fn json(&self) -> impl Serialize;
}

impl Output {
    /// Prints `value` in the form chosen.
    pub fn emit<R: Render + ?Sized>(self, value: &R) -> Result<()> {
        match self {
            Self::Human => {
                value.human(&mut stdout())?;
                value.note(&mut stderr())?;
            }
            Self::Json => {
                let text = match R::JSON {
                    Json::Pretty => serde_json::to_string_pretty(&value.json())?,
                    Json::Line => serde_json::to_string(&value.json())?,
                    Json::Omitted => return Ok(()),
                };
                writeln!(stdout(), "{}", json_safe(&text))?;
            }
        }
        Ok(())
    }
}

/// A list prints as its items do.
impl<T> Render for Vec<T>
where
    [T]: Render,
{
    const JSON: Json = <[T] as Render>::JSON;

    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        self.as_slice().human(out)
    }

    fn note(&self, err: &mut dyn Write) -> io::Result<()> {
        self.as_slice().note(err)
    }

    fn json(&self) -> impl Serialize {
        self.as_slice().json()
    }
}

/// The name serde gives a value (`on-event`): hooks have no `as_str`.
fn kebab<T: Serialize + Debug>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{value:?}"),
    }
}

/// Items for people: comma-separated, or `-` when there are none. Each
/// item is one line, shown as [`line`] does.
fn items(list: impl IntoIterator<Item = String>) -> String {
    let list: Vec<String> = list.into_iter().map(|i| line(&i).to_string()).collect();
    if list.is_empty() {
        "-".to_string()
    } else {
        list.join(", ")
    }
}

fn ids(list: &[u64]) -> String {
    items(list.iter().map(u64::to_string))
}

/// A labelled row of a listing; `value` is one line, shown as [`line`] does.
fn row(out: &mut String, label: &str, value: &str) {
    out.push_str(&format!("  {label:<10} {}\n", line(value)));
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Ok => "ok".to_string(),
        Outcome::Denied(r) => format!("DENIED: {}", line(r)),
        Outcome::Failed(r) => format!("failed: {}", line(r)),
    }
}
