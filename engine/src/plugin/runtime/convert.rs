//! Between the WIT types and the engine's: sizes of what a plugin
//! returns, the interface version a component was built against, and its
//! manifest.

use wasmtime::Engine;
use wasmtime::component::Component;

use super::wit;
use crate::plugin::{
    CommandKind, EventKind, FieldAccess, Hook, INTERFACE_VERSION, MAX_MANIFEST_CHANNELS,
    MAX_MANIFEST_FIELDS, MAX_MANIFEST_REGIONS, PluginError, PluginManifest,
};

fn ref_size(r: &wit::CustomerRef) -> usize {
    match r {
        wit::CustomerRef::Id(_) => 8,
        wit::CustomerRef::Phone(s)
        | wit::CustomerRef::Email(s)
        | wit::CustomerRef::ExternalId(s) => s.len(),
    }
}

/// Bytes a command carries, roughly as lifted.
pub(super) fn command_size(c: &wit::Command) -> usize {
    match c {
        wit::Command::UpsertCustomer(u) => {
            ref_size(&u.match_)
                + u.external_id.as_ref().map_or(0, String::len)
                + u.fields
                    .iter()
                    .map(|f| f.name.len() + f.value.len())
                    .sum::<usize>()
                + u.tags.iter().map(String::len).sum::<usize>()
        }
        wit::Command::LogInteraction(l) => {
            ref_size(&l.customer)
                + l.summary.len()
                + l.body.as_ref().map_or(0, String::len)
                + l.items.iter().map(|i| i.name.len() + 16).sum::<usize>()
        }
        wit::Command::CreateFollowUp(f) => ref_size(&f.customer) + f.note.len() + 8,
        wit::Command::SendMessage(m) => {
            ref_size(&m.customer)
                + m.channel.len()
                + m.template.len()
                + m.params
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
        }
    }
}

/// Refuses a component built against an incompatible interface version
/// before the linker's less helpful error.
pub(super) fn check_version(engine: &Engine, component: &Component) -> Result<(), PluginError> {
    let ty = component.component_type();
    let prefix = "custodian:plugin/handler@";
    let found = ty
        .exports(engine)
        .find_map(|(name, _)| name.strip_prefix(prefix).map(str::to_string));
    let Some(found) = found else {
        return Err(PluginError::Invalid(format!(
            "it does not export the `{prefix}{INTERFACE_VERSION}` interface; build it with custodian-sdk"
        )));
    };
    if !compatible(&found, INTERFACE_VERSION) {
        return Err(PluginError::Version {
            found,
            supported: INTERFACE_VERSION.to_string(),
        });
    }
    Ok(())
}

/// Cargo's rule: the same major version, and for 0.x the same minor.
fn compatible(found: &str, supported: &str) -> bool {
    let parts = |v: &str| -> Option<(u64, u64)> {
        let mut it = v.split(['.', '-', '+']);
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    };
    match (parts(found), parts(supported)) {
        (Some((0, a)), Some((0, b))) => a == b,
        (Some((a, _)), Some((b, _))) => a == b,
        _ => false,
    }
}

/// Refuses a manifest that lists more than a manifest may ask for,
/// before its lists are gathered (where repeats would vanish).
pub(super) fn check_manifest_size(m: &wit::Manifest) -> Result<(), PluginError> {
    for (what, count, max) in [
        ("fields", m.fields.len(), MAX_MANIFEST_FIELDS),
        ("channels", m.channels.len(), MAX_MANIFEST_CHANNELS),
        ("regions", m.regions.len(), MAX_MANIFEST_REGIONS),
        ("hooks", m.hooks.len(), 2),
        ("events", m.events.len(), EventKind::ALL.len()),
        ("commands", m.commands.len(), 4),
    ] {
        if count > max {
            return Err(PluginError::Manifest(format!(
                "it asks for {count} {what}; a manifest may ask for at most {max}"
            )));
        }
    }
    Ok(())
}

pub(super) fn from_wit_manifest(m: wit::Manifest) -> PluginManifest {
    PluginManifest {
        name: m.name,
        version: m.version,
        publisher: m.publisher,
        description: m.description,
        hooks: m
            .hooks
            .into_iter()
            .map(|h| match h {
                wit::Hook::Ingest => Hook::Ingest,
                wit::Hook::OnEvent => Hook::OnEvent,
            })
            .collect(),
        events: m.events.into_iter().map(event_kind).collect(),
        fields: m
            .fields
            .into_iter()
            .map(|f| {
                let access = match f.access {
                    wit::Access::Full => FieldAccess::Full,
                    wit::Access::Masked => FieldAccess::Masked,
                };
                (f.name, access)
            })
            .collect(),
        commands: m.commands.into_iter().map(command_kind_of).collect(),
        commands_per_minute: m.commands_per_minute,
        messages_per_minute: m.messages_per_minute,
        channels: m.channels.into_iter().collect(),
        regions: m.regions.into_iter().collect(),
    }
}

fn event_kind(k: wit::EventKind) -> EventKind {
    match k {
        wit::EventKind::CustomerCreated => EventKind::CustomerCreated,
        wit::EventKind::CustomerUpdated => EventKind::CustomerUpdated,
        wit::EventKind::CustomerErased => EventKind::CustomerErased,
        wit::EventKind::InteractionLogged => EventKind::InteractionLogged,
        wit::EventKind::FollowUpDue => EventKind::FollowUpDue,
        wit::EventKind::AlertRaised => EventKind::AlertRaised,
    }
}

fn command_kind_of(k: wit::CommandKind) -> CommandKind {
    match k {
        wit::CommandKind::UpsertCustomer => CommandKind::UpsertCustomer,
        wit::CommandKind::LogInteraction => CommandKind::LogInteraction,
        wit::CommandKind::CreateFollowUp => CommandKind::CreateFollowUp,
        wit::CommandKind::SendMessage => CommandKind::SendMessage,
    }
}

/// The kind of a command.
pub(crate) fn command_kind(c: &wit::Command) -> CommandKind {
    match c {
        wit::Command::UpsertCustomer(_) => CommandKind::UpsertCustomer,
        wit::Command::LogInteraction(_) => CommandKind::LogInteraction,
        wit::Command::CreateFollowUp(_) => CommandKind::CreateFollowUp,
        wit::Command::SendMessage(_) => CommandKind::SendMessage,
    }
}

/// The kind of an event.
pub(crate) fn event_kind_of(e: &wit::Event) -> EventKind {
    match e {
        wit::Event::CustomerCreated(_) => EventKind::CustomerCreated,
        wit::Event::CustomerUpdated(_) => EventKind::CustomerUpdated,
        wit::Event::CustomerErased(_) => EventKind::CustomerErased,
        wit::Event::InteractionLogged(_) => EventKind::InteractionLogged,
        wit::Event::FollowUpDue(_) => EventKind::FollowUpDue,
        wit::Event::AlertRaised(_) => EventKind::AlertRaised,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_of_a_million_fields_is_refused_naming_the_limit() {
        let field = wit::FieldRequest {
            name: "f".into(),
            access: wit::Access::Full,
        };
        let manifest = wit::Manifest {
            name: "huge".into(),
            version: "1".into(),
            publisher: "p".into(),
            description: String::new(),
            hooks: vec![wit::Hook::Ingest],
            events: Vec::new(),
            fields: vec![field; 1_000_000],
            commands: Vec::new(),
            commands_per_minute: 0,
            messages_per_minute: 0,
            channels: Vec::new(),
            regions: Vec::new(),
        };
        let error = check_manifest_size(&manifest).unwrap_err().to_string();
        assert_eq!(
            error,
            "plugin manifest: it asks for 1000000 fields; a manifest may ask for at most 256"
        );
    }

    #[test]
    fn versions_follow_cargo_compatibility() {
        assert!(compatible("0.2.0", "0.2.0"));
        assert!(!compatible("0.1.0", "0.2.0"));
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.3", "0.1.0"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(!compatible("1.0.0", "0.1.0"));
        assert!(compatible("1.4.0", "1.0.0"));
        assert!(!compatible("2.0.0", "1.0.0"));
        assert!(!compatible("x", "0.1.0"));
    }
}
