//! What reaches the terminal: every character a terminal would act on
//! rather than show is written visibly instead.
//!
//! Stored text (customer fields, summaries, notes, reasons) and text a
//! plugin supplies (its manifest, its log, its errors) could otherwise
//! carry escape sequences that move the cursor, erase or recolour lines,
//! retitle the window or reorder text: enough to rewrite what an operator
//! is asked to grant. All human output goes through [`Terminal`] (results
//! and notes through [`super::Output`], everything else through [`say!`]
//! and [`tell!`]), and `--json` through [`json_safe`]. A test holds the
//! rest of the command line to it: no `println!`, `eprintln!` or direct
//! use of stdout and stderr outside this file.
//!
//! A neutralized character is written as `\u{1b}` (`\n`, `\r` and `\t` as
//! such), so that the operator sees something was there.

use std::fmt::{self, Write as _};
use std::io::{self, Write};

/// Whether a terminal could act on `c` instead of showing it: C0 and C1
/// controls and DEL (escape sequences, CR, BEL, backspace, NUL, the
/// single-character CSI U+009B), the bidirectional formatting characters
/// that reorder what follows (U+202E and the like), and the line and
/// paragraph separators.
fn acts(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// Appends `text` to `out` with every character a terminal would act on
/// written visibly; line ends and tabs too unless `keep_lines` (a tab
/// moves to the next stop and hides nothing, and scripts are indented
/// with them).
fn neutralize(out: &mut String, text: &str, keep_lines: bool) {
    for c in text.chars() {
        match c {
            '\n' | '\t' if keep_lines => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if acts(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// Stored or supplied text shown on one line of a listing: line ends are
/// neutralized too, so that no value can start a line of its own. Pads as
/// a `str` does (`{:<20}`).
pub struct Line<'a>(pub &'a str);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(self.0.len());
        neutralize(&mut text, self.0, false);
        f.pad(&text)
    }
}

/// `text` shown on one line; see [`Line`].
pub fn line(text: &str) -> Line<'_> {
    Line(text)
}

/// A writer for people: passes line ends and tabs through and writes every other
/// character a terminal would act on visibly. Each write is taken as
/// text on its own (the formatting machinery writes whole `str`s); bytes
/// that are not UTF-8 are shown as `\x..`.
pub struct Terminal<W: Write>(pub W);

impl<W: Write> Write for Terminal<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut text = String::with_capacity(buf.len());
        for chunk in buf.utf8_chunks() {
            neutralize(&mut text, chunk.valid(), true);
            for byte in chunk.invalid() {
                let _ = write!(text, "\\x{byte:02x}");
            }
        }
        self.0.write_all(text.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// People's stdout. The one place the command line reaches it.
pub fn stdout() -> Terminal<io::StdoutLock<'static>> {
    Terminal(io::stdout().lock())
}

/// People's stderr. The one place the command line reaches it.
pub fn stderr() -> Terminal<io::StderrLock<'static>> {
    Terminal(io::stderr().lock())
}

/// Whether stderr is a terminal (progress is drawn on one line there).
pub fn stderr_is_terminal() -> bool {
    io::IsTerminal::is_terminal(&io::stderr())
}

/// Redraws the progress line on a terminal's stderr: a carriage return of
/// the command line's own, then `text` neutralized like everything else.
pub fn redraw(text: &str) {
    let mut err = io::stderr().lock();
    let _ = err.write_all(b"\r");
    let _ = write!(Terminal(&mut err), "{text}");
    let _ = err.flush();
}

/// JSON as serialized, with the characters a terminal would act on that
/// JSON leaves as they are (DEL, the C1 controls, bidirectional formatting,
/// line separators) written as `\u....` escapes too: the same value, and
/// nothing a terminal acts on. serde_json already escapes the C0 controls;
/// outside strings JSON holds none of these characters, so escaping them
/// wherever they are keeps the text valid JSON.
pub fn json_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if acts(c) && !matches!(c, '\n' | '\r' | '\t') {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// A line on people's stdout: `println!`, through [`Terminal`].
macro_rules! say {
    () => {
        $crate::render::say_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::render::say_line(format_args!($($arg)*))
    };
}

/// A line on people's stderr: `eprintln!`, through [`Terminal`].
macro_rules! tell {
    () => {
        $crate::render::tell_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::render::tell_line(format_args!($($arg)*))
    };
}

pub(crate) use {say, tell};

/// What [`say!`] writes. A closed stdout loses the line rather than
/// panicking as `println!` would.
pub fn say_line(args: fmt::Arguments<'_>) {
    let _ = writeln!(stdout(), "{args}");
}

/// What [`tell!`] writes.
pub fn tell_line(args: fmt::Arguments<'_>) {
    let _ = writeln!(stderr(), "{args}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_acting_character_is_shown_and_line_ends_kept() {
        let mut out = Terminal(Vec::new());
        write!(out, "a\u{1b}[2Jb\rc\u{7}\u{8}\u{0}\u{9b}\u{202e}\u{7f}d\ne").unwrap();
        assert_eq!(
            String::from_utf8(out.0).unwrap(),
            "a\\u{1b}[2Jb\\rc\\u{7}\\u{8}\\u{0}\\u{9b}\\u{202e}\\u{7f}d\ne"
        );
    }

    #[test]
    fn a_line_shows_its_line_ends_and_pads() {
        assert_eq!(format!("[{:<6}]", line("a\nb")), "[a\\nb  ]");
    }

    /// The class closed: a print that bypassed [`Terminal`] would let
    /// stored text reach the terminal as it is.
    #[test]
    fn nothing_else_in_the_command_line_writes_to_the_terminal() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![root];
        let mut offenders = Vec::new();
        while let Some(path) = files.pop() {
            if path.is_dir() {
                for entry in std::fs::read_dir(&path).unwrap() {
                    files.push(entry.unwrap().path());
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("render/terminal.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, l) in text.lines().enumerate() {
                let found = [
                    "print!(",
                    "println!(",
                    "eprint!(",
                    "eprintln!(",
                    "dbg!(",
                    "io::stdout()",
                    "io::stderr()",
                ]
                .iter()
                .any(|p| l.contains(p));
                if found {
                    offenders.push(format!("{}:{}: {}", path.display(), n + 1, l.trim()));
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "writes that bypass render::Terminal:\n{}",
            offenders.join("\n")
        );
    }

    #[test]
    fn json_stays_the_same_value() {
        let text = "\u{1b}[31m\u{9b}\u{202e}\u{7f}\r\n\u{2028}";
        let json = json_safe(&serde_json::to_string(&text).unwrap());
        assert!(!json.chars().any(acts), "{json}");
        assert_eq!(serde_json::from_str::<String>(&json).unwrap(), text);
    }
}
