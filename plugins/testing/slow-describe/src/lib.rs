//! `slow-describe`: a plugin whose `describe` sleeps an hour in the host
//! (`std::thread::sleep`, a WASI clocks poll) before it answers, for the
//! engine's test that the deadline holds while the manifest is read
//! (install and inspect). `describe` takes no input, so a plugin of its
//! own is how a test picks this behaviour. Never install it anywhere else.

use custodian_sdk::{Command, Event, Guest, Hook, Manifest};

/// The plugin.
struct SlowDescribe;

impl Guest for SlowDescribe {
    fn describe() -> Manifest {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        Manifest::new(
            "slow-describe",
            env!("CARGO_PKG_VERSION"),
            "Custodian tests",
        )
        .description("describe sleeps an hour: for the engine's sandbox tests only")
        .hook(Hook::Ingest)
    }

    fn ingest(_payload: Vec<u8>) -> Result<Vec<Command>, String> {
        Ok(Vec::new())
    }

    fn on_event(_event: Event) -> Result<Vec<Command>, String> {
        Ok(Vec::new())
    }
}

custodian_sdk::export!(SlowDescribe);
