//! Hints that name this command line's own commands. The engine's messages
//! never do (a host application or the console shows them too), so the
//! command line adds a line of its own for the refusals it can help with.

use custodian::{Denied, Error, PluginError, StoreError};

/// What to run next, for an error the engine returned somewhere in `e`.
pub fn hint(e: &anyhow::Error) -> Option<String> {
    let error = e.chain().find_map(|c| c.downcast_ref::<Error>())?;
    let hint = match error {
        Error::Store(StoreError::Missing(_)) => "create one with `custodian init`".to_string(),
        Error::Store(StoreError::KeyStoreMismatch(_)) => {
            "point --key-store at this database's key store".to_string()
        }
        Error::Store(StoreError::KeyStoreMissing(_)) => {
            "point --key-store at it, or restore it from a --key-mirror".to_string()
        }
        Error::Plugin(PluginError::Unknown(_)) => "see `custodian plugin list`".to_string(),
        Error::Denied(Denied::PluginNotEnabled { name, .. }) => {
            format!("an admin runs `custodian plugin enable {name}`")
        }
        Error::Denied(Denied::SecondFactorNotEnrolled { principal, .. }) => {
            format!("an admin runs `custodian principal 2fa enroll {principal}`")
        }
        Error::Denied(Denied::SessionExpired | Denied::InvalidSession) => {
            "log in again with `custodian login NAME`".to_string()
        }
        Error::Denied(Denied::Locked(name)) => {
            format!("an admin runs `custodian principal unlock {name}`")
        }
        _ => return None,
    };
    Some(hint)
}
