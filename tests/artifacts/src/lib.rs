//! The plugin components built from `plugins/`, for the engine's tests.
//!
//! The build script builds the plugins workspace for `wasm32-wasip2` in
//! release (into `target/plugins`) whenever its sources, its lock file or
//! the SDK change, so a test that depends on this crate always runs against
//! components built from the sources it sees. Nothing here is a committed
//! binary.
//!
//! ```no_run
//! let bytes = std::fs::read(custodian_test_artifacts::SHOP_ORDERS)?;
//! let batch = std::fs::read(custodian_test_artifacts::sample("shop-orders", "orders.json"))?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The plugins' manifests and payload formats are documented in each
//! plugin's crate docs (`plugins/*/src/lib.rs`).

use std::path::PathBuf;

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

/// The folder of a plugin's sample payloads, by manifest name
/// (`shop-orders`): `plugins/<member>/samples`. Plugins without samples
/// (the test-only ones) and unknown names give a path that does not exist.
#[must_use]
pub fn samples_dir(plugin: &str) -> PathBuf {
    samples_path(plugin).map_or_else(
        || PathBuf::from(PLUGINS_DIR).join(plugin).join("samples"),
        PathBuf::from,
    )
}

/// A sample payload of a plugin: `sample("shop-orders", "orders.json")`.
#[must_use]
pub fn sample(plugin: &str, file: &str) -> PathBuf {
    samples_dir(plugin).join(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_component_and_sample_exists() {
        assert_eq!(ALL.len(), 7);
        for (name, path) in ALL {
            let bytes = std::fs::read(path).unwrap();
            // A component, not a core module: `\0asm`, version 0x0d, layer 1.
            assert_eq!(
                bytes.get(..8),
                Some(&b"\0asm\x0d\x00\x01\x00"[..]),
                "{name}"
            );
        }
        for (plugin, file) in [
            ("shop-orders", "order.json"),
            ("shop-orders", "orders.json"),
            ("chat-sync", "conversation.json"),
            ("chat-sync", "conversations.json"),
            ("sms-reminder", "follow-up-due.json"),
        ] {
            assert!(sample(plugin, file).is_file(), "{plugin}/{file}");
        }
        assert!(!samples_dir("misbehave").exists());
    }
}
