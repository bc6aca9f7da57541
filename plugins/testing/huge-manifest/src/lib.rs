//! `huge-manifest`: a plugin whose `describe()` asks for a million fields,
//! for the engine's tests: installing it must be refused with a sentence
//! that names the limit. Never install it anywhere else.

use custodian_sdk::{Access, Command, Event, FieldRequest, Guest, Hook, Manifest};

/// Fields the manifest asks for.
const FIELDS: usize = 1_000_000;

/// The plugin.
struct HugeManifest;

impl Guest for HugeManifest {
    fn describe() -> Manifest {
        let mut manifest = Manifest::new(
            "huge-manifest",
            env!("CARGO_PKG_VERSION"),
            "Custodian tests",
        )
        .description("asks for a million fields: for the engine's tests only")
        .hook(Hook::Ingest);
        // Pushed directly: the builder checks each name against the
        // others, which would take longer than any deadline.
        manifest.fields.reserve_exact(FIELDS);
        manifest.fields.extend((0..FIELDS).map(|i| FieldRequest {
            name: format!("f{i}"),
            access: Access::Full,
        }));
        manifest
    }

    fn ingest(_: Vec<u8>) -> Result<Vec<Command>, String> {
        Ok(Vec::new())
    }

    fn on_event(_: Event) -> Result<Vec<Command>, String> {
        Ok(Vec::new())
    }
}

custodian_sdk::export!(HugeManifest);
