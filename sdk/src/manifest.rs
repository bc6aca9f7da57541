//! A builder over the interface's [`Manifest`] record.

use crate::{Access, CommandKind, EventKind, FieldRequest, Hook, Manifest};

impl Manifest {
    /// Starts a manifest that asks for nothing.
    ///
    /// Defaults: empty description; no hooks, events, fields, commands,
    /// channels or regions; 60 commands and 0 messages per minute. The name
    /// is lowercase letters, digits and `-` (the engine refuses others at
    /// install); the plugin acts as principal `plugin:<name>`.
    #[must_use]
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        publisher: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            publisher: publisher.into(),
            description: String::new(),
            hooks: Vec::new(),
            events: Vec::new(),
            fields: Vec::new(),
            commands: Vec::new(),
            commands_per_minute: 60,
            messages_per_minute: 0,
            channels: Vec::new(),
            regions: Vec::new(),
        }
    }

    /// One line the operator sees at install.
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Asks for an entry point (once, however often it is named).
    #[must_use]
    pub fn hook(mut self, hook: Hook) -> Self {
        push_new(&mut self.hooks, hook);
        self
    }

    /// Subscribes to an event; also asks for the [`Hook::OnEvent`] hook,
    /// without which events are never delivered.
    #[must_use]
    pub fn event(mut self, event: EventKind) -> Self {
        push_new(&mut self.events, event);
        self.hook(Hook::OnEvent)
    }

    /// Subscribes to several events, as [`Manifest::event`] does.
    #[must_use]
    pub fn events(self, events: impl IntoIterator<Item = EventKind>) -> Self {
        events.into_iter().fold(self, Self::event)
    }

    /// Asks to see a customer field at the given access. Asking again for
    /// the same field replaces the earlier access.
    #[must_use]
    pub fn field(mut self, name: impl Into<String>, access: Access) -> Self {
        let name = name.into();
        self.fields.retain(|f| f.name != name);
        self.fields.push(FieldRequest { name, access });
        self
    }

    /// Asks to see a field's value itself.
    #[must_use]
    pub fn field_full(self, name: impl Into<String>) -> Self {
        self.field(name, Access::Full)
    }

    /// Asks to see only a field's masked rendering (`138****8000`).
    #[must_use]
    pub fn field_masked(self, name: impl Into<String>) -> Self {
        self.field(name, Access::Masked)
    }

    /// Asks to issue a kind of command (once, however often it is named).
    #[must_use]
    pub fn command(mut self, kind: CommandKind) -> Self {
        push_new(&mut self.commands, kind);
        self
    }

    /// Asks to issue several kinds of command.
    #[must_use]
    pub fn commands(self, kinds: impl IntoIterator<Item = CommandKind>) -> Self {
        kinds.into_iter().fold(self, Self::command)
    }

    /// Commands of any kind per minute (default 60).
    #[must_use]
    pub fn commands_per_minute(mut self, limit: u32) -> Self {
        self.commands_per_minute = limit;
        self
    }

    /// `send-message` commands per minute (default 0: sends nothing).
    #[must_use]
    pub fn messages_per_minute(mut self, limit: u32) -> Self {
        self.messages_per_minute = limit;
        self
    }

    /// A message channel it sends on (`sms`, `email`, `wechat`, ...).
    #[must_use]
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        push_new(&mut self.channels, channel.into());
        self
    }

    /// A region whose customers it handles (`CN`, `EU`, ...).
    #[must_use]
    pub fn region(mut self, region: impl Into<String>) -> Self {
        push_new(&mut self.regions, region.into());
        self
    }
}

fn push_new<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_ask_for_nothing() {
        let m = Manifest::new("shop-orders", "1.0.0", "Acme");
        assert_eq!(
            (m.name.as_str(), m.version.as_str(), m.publisher.as_str()),
            ("shop-orders", "1.0.0", "Acme")
        );
        assert!(m.description.is_empty());
        assert!(m.hooks.is_empty() && m.events.is_empty() && m.fields.is_empty());
        assert!(m.commands.is_empty() && m.channels.is_empty() && m.regions.is_empty());
        assert_eq!((m.commands_per_minute, m.messages_per_minute), (60, 0));
    }

    #[test]
    fn builder_deduplicates_and_events_imply_the_hook() {
        let m = Manifest::new("sms-reminder", "0.1.0", "Acme")
            .description("reminds")
            .events([EventKind::FollowUpDue, EventKind::FollowUpDue])
            .hook(Hook::OnEvent)
            .field_full("name")
            .field_masked("phone")
            .field_masked("name")
            .commands([CommandKind::SendMessage, CommandKind::SendMessage])
            .command(CommandKind::LogInteraction)
            .commands_per_minute(10)
            .messages_per_minute(5)
            .channel("sms")
            .channel("sms")
            .region("CN");
        assert_eq!(m.description, "reminds");
        assert_eq!(m.hooks, [Hook::OnEvent]);
        assert_eq!(m.events, [EventKind::FollowUpDue]);
        assert_eq!(
            m.fields,
            [
                FieldRequest {
                    name: "phone".into(),
                    access: Access::Masked
                },
                FieldRequest {
                    name: "name".into(),
                    access: Access::Masked
                },
            ]
        );
        assert_eq!(
            m.commands,
            [CommandKind::SendMessage, CommandKind::LogInteraction]
        );
        assert_eq!((m.commands_per_minute, m.messages_per_minute), (10, 5));
        assert_eq!(m.channels, ["sms"]);
        assert_eq!(m.regions, ["CN"]);
    }
}
