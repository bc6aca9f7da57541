//! What the command line reads from the operator besides arguments:
//! secrets, confirmations, and files or stdin.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use anyhow::{Context as _, Result};

use crate::render::{stderr, tell};

/// Reads a secret: from a prompt without echo on a terminal, otherwise one
/// line of stdin. Never from the command line, where `ps` would show it.
pub fn read_secret(prompt: &str) -> Result<String> {
    if std::io::stdin().is_terminal() {
        Ok(rpassword::prompt_password(prompt)?)
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

/// Asks a yes/no question on stderr; only `y` or `yes` on stdin is yes.
pub fn confirm(question: &str) -> Result<bool> {
    {
        let mut err = stderr();
        write!(err, "{question} [y/N] ")?;
        err.flush()?;
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    if !std::io::stdin().is_terminal() {
        // Nothing echoed the answer: end the prompt's line.
        tell!();
    }
    let answer = line.trim().to_ascii_lowercase();
    Ok(answer == "y" || answer == "yes")
}

/// Reads a file, or stdin for `-`.
pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read stdin")?;
        return Ok(bytes);
    }
    std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))
}
