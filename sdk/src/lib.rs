//! Build Custodian plugins: sandboxed WebAssembly components that turn
//! outside data (shop orders, chat logs) into commands and react to what
//! happens in the engine (follow-ups falling due).
//!
//! A plugin is a `cdylib` crate built for `wasm32-wasip2`. It implements
//! [`Guest`] and exports it with [`export!`]:
//!
//! ```
//! use custodian_sdk::{
//!     Channel, Command, CommandKind, CustomerRef, Event, Guest, Hook, Manifest, time,
//! };
//!
//! /// Turns `phone,name,RFC 3339 time` lines from a call centre into calls.
//! struct CallLog;
//!
//! impl Guest for CallLog {
//!     fn describe() -> Manifest {
//!         Manifest::new("call-log", "1.0.0", "Example Corp")
//!             .description("imports the call centre's daily call list")
//!             .hook(Hook::Ingest)
//!             .commands([CommandKind::UpsertCustomer, CommandKind::LogInteraction])
//!             .region("CN")
//!     }
//!
//!     fn ingest(payload: Vec<u8>) -> Result<Vec<Command>, String> {
//!         let text = String::from_utf8(payload).map_err(|_| "payload is not UTF-8")?;
//!         let mut commands = Vec::new();
//!         for (n, line) in text.lines().enumerate() {
//!             let mut parts = line.split(',');
//!             let (Some(phone), Some(name), Some(at), None) =
//!                 (parts.next(), parts.next(), parts.next(), parts.next())
//!             else {
//!                 return Err(format!("line {}: expected `phone,name,time`", n + 1));
//!             };
//!             let at = time::parse_rfc3339(at).map_err(|e| format!("line {}: {e}", n + 1))?;
//!             commands.push(
//!                 Command::upsert_customer(CustomerRef::phone(phone))
//!                     .field("phone", phone)
//!                     .field("name", name)
//!                     .into(),
//!             );
//!             commands.push(
//!                 Command::log_interaction(CustomerRef::phone(phone), Channel::Call, "Call")
//!                     .at(at)
//!                     .into(),
//!             );
//!         }
//!         Ok(commands)
//!     }
//!
//!     fn on_event(_event: Event) -> Result<Vec<Command>, String> {
//!         Ok(Vec::new())
//!     }
//! }
//!
//! custodian_sdk::export!(CallLog);
//!
//! # fn main() {
//! // The pure parts run natively too, which is how plugins unit-test.
//! let commands = CallLog::ingest(b"+86 138 0013 8000,Li Na,2026-11-20T10:00:00Z".to_vec());
//! assert_eq!(commands.map(|c| c.len()), Ok(2));
//! assert!(CallLog::ingest(b"just a name".to_vec()).is_err());
//! # }
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`: the
//! `.wasm` in `target/wasm32-wasip2/release/` is the component the operator
//! installs. The engine asks [`Guest::describe`] for the [`Manifest`] and
//! the operator grants all of it or a subset; the engine enforces that grant
//! on every call, so ask for as little as the plugin needs.
//!
//! What is here:
//! - The interface's types ([`Manifest`], [`Command`], [`Event`],
//!   [`Customer`], ...), generated from `wit/plugin.wit`, with builders:
//!   [`Manifest::new`], [`Command::upsert_customer`],
//!   [`Command::log_interaction`], [`Command::create_follow_up`],
//!   [`Command::send_message`], [`CustomerRef::external_id`],
//!   [`Customer::get`], [`Event::kind`].
//! - [`host`]: the engine's clock, private state and lookups; [`log`]:
//!   levelled log lines.
//! - [`time`]: RFC 3339 and compact dates to [`Timestamp`] and back;
//!   [`money`]: exact decimal amounts to minor units.
//!
//! The plugin crate must name this dependency `custodian_sdk` (the default
//! for package `custodian-sdk`): [`export!`] refers to it by that name.
#![deny(unsafe_code)]

mod command;
pub mod host;
pub mod log;
mod manifest;
pub mod money;
pub mod time;

/// The implementation of a plugin: one type, exported with [`export!`].
///
/// Each function is one call from the engine, in a fresh sandbox with the
/// limits of the plugin's grant. `ingest` and `on_event` return the
/// commands the engine executes in one transaction, or an error message
/// that rolls the call back (`order 2 (A1002): invalid amount ...`).
pub use bindings::exports::custodian::plugin::handler::Guest;

/// Milliseconds since 1970-01-01T00:00:00Z; see [`time`].
pub use bindings::custodian::plugin::types::Timestamp;

/// A manifest: what the plugin asks for. Build one with [`Manifest::new`].
pub use bindings::custodian::plugin::types::Manifest;

/// A command for the engine; build one with the constructors on this type
/// ([`Command::upsert_customer`], ...) and `.into()`.
pub use bindings::custodian::plugin::types::Command;

/// Something that happened in the engine, delivered to `on_event`.
pub use bindings::custodian::plugin::types::Event;

/// A customer as the plugin was granted to see it; read fields with
/// [`Customer::get`].
pub use bindings::custodian::plugin::types::Customer;

/// How a command names a customer: [`CustomerRef::id`],
/// [`CustomerRef::phone`], [`CustomerRef::email`],
/// [`CustomerRef::external_id`].
pub use bindings::custodian::plugin::types::CustomerRef;

pub use bindings::custodian::plugin::types::{
    Access, Alert, Channel, CommandKind, CreateFollowUp, Direction, EventKind, Field, FieldRequest,
    FollowUpDue, Hook, InteractionLogged, LogInteraction, MessagePurpose, OrderItem, SendMessage,
    UpsertCustomer,
};

/// Exports a type implementing [`Guest`] as the plugin's implementation.
///
/// Invoke it once per plugin crate, at module level, with the name of a type
/// in scope: `custodian_sdk::export!(MyPlugin);`.
#[macro_export]
macro_rules! export {
    ($ty:ident) => {
        // The generated entry points are `unsafe extern "C"` functions with
        // exported names: allowed here so that plugin crates can deny
        // `unsafe_code` everywhere else.
        #[allow(unsafe_code)]
        const _: () = {
    $crate::bindings::export!($ty with_types_in $crate::bindings);
        };
    };
}

/// The bindings `wit_bindgen` generates from `wit/plugin.wit`: canonical ABI
/// glue, reached through the re-exports above and [`export!`].
#[doc(hidden)]
#[allow(
    missing_docs,
    unsafe_code,
    clippy::all,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "generated code: checked by wit-bindgen's own tests, not ours"
)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        additional_derives: [PartialEq, Eq],
        pub_export_macro: true,
        default_bindings_module: "custodian_sdk::bindings",
    });
}
