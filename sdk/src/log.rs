//! Lines in the plugin's log, kept by the engine with the call's outcome.
//!
//! `println!` and `eprintln!` also reach the engine (as captured stdout and
//! stderr, size-limited), but these carry a level. Like everything in
//! [`crate::host`], they work only inside the engine.

use crate::host::{self, Level};

/// Logs at level debug.
pub fn debug(message: &str) {
    host::log(Level::Debug, message);
}

/// Logs at level info.
pub fn info(message: &str) {
    host::log(Level::Info, message);
}

/// Logs at level warn.
pub fn warn(message: &str) {
    host::log(Level::Warn, message);
}

/// Logs at level error.
pub fn error(message: &str) {
    host::log(Level::Error, message);
}
