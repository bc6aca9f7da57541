//! `next-major`: a minimal plugin built against `custodian:plugin@1.0.0`, a
//! major version of the interface the engine does not speak, so that the
//! engine's tests can check it is refused at install. A test fixture, never
//! to be installed anywhere else.
//!
//! Its bindings come from `wit-bindgen` directly (not the SDK, which is
//! bound to the real interface) over its own copy of the interface in
//! `wit/plugin.wit`, identical but for the package version. Were it
//! installed anyway, it would ask for the `ingest` hook and nothing else,
//! and answer every call with no commands.

use bindings::custodian::plugin::types::{Command, Event, Hook, Manifest};
use bindings::exports::custodian::plugin::handler::Guest;

/// The bindings of the version-1 copy of the interface.
#[allow(
    missing_docs,
    unsafe_code,
    clippy::all,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "generated code"
)]
mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
    });
}

/// The plugin.
struct NextMajor;

impl Guest for NextMajor {
    fn describe() -> Manifest {
        Manifest {
            name: "next-major".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            publisher: "Custodian tests".into(),
            description: "built against custodian:plugin@1.0.0: must be refused".into(),
            hooks: vec![Hook::Ingest],
            events: Vec::new(),
            fields: Vec::new(),
            commands: Vec::new(),
            commands_per_minute: 1,
            messages_per_minute: 0,
            channels: Vec::new(),
            regions: Vec::new(),
        }
    }

    fn ingest(_payload: Vec<u8>) -> Result<Vec<Command>, String> {
        Ok(Vec::new())
    }

    fn on_event(_event: Event) -> Result<Vec<Command>, String> {
        Ok(Vec::new())
    }
}

// The generated entry points are `unsafe extern "C"` functions: allowed here
// only.
#[allow(unsafe_code)]
const _: () = {
    bindings::export!(NextMajor with_types_in bindings);
};
