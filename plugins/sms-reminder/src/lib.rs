//! `sms-reminder`: when a follow-up falls due, the customer gets an SMS
//! reminder.
//!
//! **Events** (`on-event`): on `follow-up-due` it returns one
//! `send-message`: channel `sms`, to `id(customer.id)`, template
//! `follow-up-reminder`, params `due` (the due date as `YYYY-MM-DD` in China
//! Standard Time, UTC+08:00) and `name` (the name as granted: the masked
//! rendering as it arrives, such as `L****`; were it granted in full, only
//! the first word; `customer` when the name is absent), purpose `service`.
//! Any other event returns no commands. `ingest` is not offered and
//! refuses every payload.
//!
//! The engine checks consent and resolves the phone number itself: the
//! plugin never sees a phone number and does not ask for one. A sample
//! event is in `samples/follow-up-due.json` (the event as JSON, for
//! reading; the engine delivers it through the interface).
//!
//! **Asks for**: hook `on-event` with event `follow-up-due`; command
//! `send-message` on channel `sms`, at up to 600 messages (and commands) a
//! minute; field `name`, masked.

use custodian_sdk::{
    Command, CommandKind, Customer, Event, EventKind, Guest, Manifest, MessagePurpose,
    time::{self, UtcOffset},
};

/// The template the engine renders, with params `due` and `name`.
const TEMPLATE: &str = "follow-up-reminder";

/// The plugin.
struct SmsReminder;

impl Guest for SmsReminder {
    fn describe() -> Manifest {
        Manifest::new("sms-reminder", env!("CARGO_PKG_VERSION"), "Custodian")
            .description("texts customers a reminder when a follow-up falls due")
            .event(EventKind::FollowUpDue)
            .command(CommandKind::SendMessage)
            .field_masked("name")
            .channel("sms")
            .commands_per_minute(600)
            .messages_per_minute(600)
    }

    fn ingest(_payload: Vec<u8>) -> Result<Vec<Command>, String> {
        Err("sms-reminder takes no payloads: it reacts to `follow-up-due` events".into())
    }

    fn on_event(event: Event) -> Result<Vec<Command>, String> {
        let Event::FollowUpDue(due) = event else {
            return Ok(Vec::new());
        };
        let reminder = Command::send_message(
            "sms",
            due.customer.to_ref(),
            TEMPLATE,
            MessagePurpose::Service,
        )
        .param("due", time::format_date(due.due, UtcOffset::CHINA))
        .param("name", greeting_name(&due.customer));
        Ok(vec![reminder.into()])
    }
}

custodian_sdk::export!(SmsReminder);

/// The masked name as it is, or the first word of a full one.
fn greeting_name(customer: &Customer) -> String {
    match customer.get("name").map(str::trim) {
        Some(name) if name.contains('*') => name.to_owned(),
        Some(name) => match name.split_whitespace().next() {
            Some(first) => first.to_owned(),
            None => "customer".to_owned(),
        },
        None => "customer".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custodian_sdk::{
        Alert, CustomerRef, Field, FollowUpDue, Hook, SendMessage, time::parse_rfc3339,
    };

    fn customer(name: Option<&str>) -> Customer {
        Customer {
            id: 42,
            status: "active".into(),
            fields: name
                .map(|n| Field {
                    name: "name".into(),
                    value: n.into(),
                })
                .into_iter()
                .collect(),
            masked: Vec::new(),
        }
    }

    fn due(name: Option<&str>, at: &str) -> Event {
        Event::FollowUpDue(FollowUpDue {
            customer: customer(name),
            follow_up: 9,
            due: parse_rfc3339(at).unwrap(),
            note: None,
        })
    }

    #[test]
    fn a_due_follow_up_sends_one_service_sms() {
        let commands = SmsReminder::on_event(due(Some("L****"), "2026-11-20T17:00:00Z"));
        assert_eq!(
            commands,
            Ok(vec![Command::SendMessage(SendMessage {
                channel: "sms".into(),
                customer: CustomerRef::Id(42),
                template: "follow-up-reminder".into(),
                // 17:00 UTC is 01:00 the next day in China.
                params: vec![
                    ("due".into(), "2026-11-21".into()),
                    ("name".into(), "L****".into())
                ],
                purpose: MessagePurpose::Service,
            })])
        );
    }

    #[test]
    fn names_are_masked_first_words_or_a_placeholder() {
        assert_eq!(greeting_name(&customer(Some("Li Na"))), "Li");
        assert_eq!(greeting_name(&customer(Some("李娜"))), "李娜");
        assert_eq!(greeting_name(&customer(Some("W** F***"))), "W** F***");
        assert_eq!(greeting_name(&customer(Some("  "))), "customer");
        assert_eq!(greeting_name(&customer(None)), "customer");
    }

    #[test]
    fn other_events_and_payloads_do_nothing() {
        assert_eq!(
            SmsReminder::on_event(Event::CustomerCreated(customer(None))),
            Ok(vec![])
        );
        assert_eq!(
            SmsReminder::on_event(Event::AlertRaised(Alert {
                kind: "k".into(),
                message: "m".into()
            })),
            Ok(vec![])
        );
        assert!(SmsReminder::ingest(b"{}".to_vec()).is_err());
    }

    #[test]
    fn manifest_asks_for_sms_and_the_masked_name() {
        let m = SmsReminder::describe();
        assert_eq!(m.name, "sms-reminder");
        assert_eq!(m.hooks, [Hook::OnEvent]);
        assert_eq!(m.events, [EventKind::FollowUpDue]);
        assert_eq!(m.commands, [CommandKind::SendMessage]);
        assert_eq!(m.channels, ["sms"]);
        assert_eq!(m.messages_per_minute, 600);
        assert_eq!(m.fields.len(), 1);
        assert_eq!(m.fields[0].name, "name");
        assert_eq!(m.fields[0].access, custodian_sdk::Access::Masked);
    }
}
