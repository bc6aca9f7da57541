//! What the engine offers a plugin during a call: its clock, the plugin's
//! private state (unscoped, or filed under a customer shown to the call),
//! and customer lookups within the grant.
//!
//! These call into the engine, so they work only inside a component the
//! engine runs; in a native build (a host-side unit test) they panic.

use crate::bindings::custodian::plugin::host as wit;
use crate::{Customer, CustomerRef, Timestamp};

pub use wit::Level;

/// The engine's clock, in milliseconds since the epoch. Use it rather than
/// the system clock: tests and replays set it.
#[must_use]
pub fn now() -> Timestamp {
    wit::now()
}

/// Reads the plugin's private state under `key`.
#[must_use]
pub fn state_get(key: &str) -> Option<Vec<u8>> {
    wit::state_get(key)
}

/// Writes the plugin's private state under `key`. The write is kept only if
/// the call succeeds, in the same transaction as its commands.
///
/// # Errors
///
/// The engine's message when it refuses the write: a quota, a bad key, or
/// a key or value holding a customer value shown to this call (file that
/// under the customer with [`customer_state_set`]).
pub fn state_set(key: &str, value: &[u8]) -> Result<(), String> {
    wit::state_set(key, value)
}

/// Reads the plugin's state about `customer` under `key`. The customer must
/// have been shown to this call: by [`lookup`] or in the event.
///
/// # Errors
///
/// The engine's message when the customer was not shown to this call.
pub fn customer_state_get(customer: u64, key: &str) -> Result<Option<Vec<u8>>, String> {
    wit::customer_state_get(customer, key)
}

/// Writes the plugin's state about `customer` under `key`: filed under the
/// customer, sealed under its key, removed when it is erased. The customer
/// must have been shown to this call; the write is kept only if the call
/// succeeds.
///
/// # Errors
///
/// The engine's message when it refuses the write: the customer was not
/// shown to this call, a quota, a bad key.
pub fn customer_state_set(customer: u64, key: &str, value: &[u8]) -> Result<(), String> {
    wit::customer_state_set(customer, key, value)
}

/// A customer as granted: by id, by this plugin's external id, or by a phone
/// or email the plugin was granted in full. `None` when there is no such
/// customer or the plugin may not look it up that way.
#[must_use]
pub fn lookup(customer: &CustomerRef) -> Option<Customer> {
    wit::lookup(customer)
}

/// Writes a line to the plugin's log at `level`; see also [`crate::log`].
pub fn log(level: Level, message: &str) {
    wit::log(level, message);
}
