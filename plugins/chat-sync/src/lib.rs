//! `chat-sync`: chat conversation logs become customers and chat
//! interactions with a transcript.
//!
//! **Payload** (`ingest`): JSON, one conversation or an array of them; see
//! `samples/conversation.json` and `samples/conversations.json`:
//!
//! ```json
//! {"conversation_id": "wx-conv-5001",
//!  "customer": {"external_id": "wx-123", "name": "Wang Fang"},
//!  "messages": [
//!    {"at": "2026-11-20T10:02:00+08:00", "from": "customer", "text": "Hi, is the sofa in stock?"},
//!    {"at": "2026-11-20T10:03:30+08:00", "from": "agent", "text": "Yes, in grey and blue."}]}
//! ```
//!
//! `customer.external_id` (the chat platform's id for the person) and at
//! least one message are required; `customer.name` is optional, except the first time a customer is seen
//! (the engine creates a customer only with a name). `from` is
//! `customer` or `agent`; `at` is RFC 3339. Other keys (a phone number the
//! chat platform knows, say) are ignored: this plugin writes names only.
//!
//! **Commands**, in payload order:
//! - one `upsert-customer` per distinct `external_id`, at its first
//!   conversation: matched by `external-id(external_id)`, remembering it,
//!   with field `name` when given (the latest given wins). Nothing else: no
//!   phone, no id number, no tags;
//! - one `log-interaction` per conversation for `external-id(external_id)`:
//!   channel `chat`, inbound when the customer wrote first (else outbound),
//!   at the first message's time, summary the first line of the customer's
//!   first message clipped to 200 characters (`Conversation <id>` when the
//!   customer wrote nothing), body the transcript: one line per message in
//!   the order given, `HH:MM customer: text` (`agent` for the agent), times
//!   in China Standard Time (UTC+08:00, the region it serves), line breaks
//!   inside a message folded to spaces.
//!
//! A payload that is not JSON, or any bad conversation, fails the whole
//! call with a message naming the conversation (counting from 1).
//!
//! **Asks for**: hook `ingest`; commands `upsert-customer` and
//! `log-interaction` at up to 10,000 a minute; no messages; region `CN`;
//! field `name`, masked (the engine lets a plugin write only fields in its
//! grant; it is granted no phone and no id number).

mod payload;

use custodian_sdk::{Command, CommandKind, Event, Guest, Hook, Manifest};

/// The plugin.
struct ChatSync;

impl Guest for ChatSync {
    fn describe() -> Manifest {
        Manifest::new("chat-sync", env!("CARGO_PKG_VERSION"), "Custodian")
            .description("imports chat conversations as interactions with transcripts")
            .hook(Hook::Ingest)
            .commands([CommandKind::UpsertCustomer, CommandKind::LogInteraction])
            .field_masked("name")
            .commands_per_minute(10_000)
            .messages_per_minute(0)
            .region("CN")
    }

    fn ingest(payload: Vec<u8>) -> Result<Vec<Command>, String> {
        payload::ingest(&payload)
    }

    fn on_event(_event: Event) -> Result<Vec<Command>, String> {
        Ok(Vec::new())
    }
}

custodian_sdk::export!(ChatSync);

#[cfg(test)]
mod tests {
    use super::*;
    use custodian_sdk::{Access, Channel, CustomerRef, Direction, Field, LogInteraction, time};

    fn ingest(payload: &str) -> Result<Vec<Command>, String> {
        ChatSync::ingest(payload.as_bytes().to_vec())
    }

    #[test]
    fn a_conversation_is_an_upsert_and_a_chat_with_its_transcript() {
        let commands = ingest(include_str!("../samples/conversation.json")).unwrap();
        let [Command::UpsertCustomer(u), Command::LogInteraction(log)] = &commands[..] else {
            panic!("{commands:?}");
        };
        assert_eq!(u.match_, CustomerRef::ExternalId("wx-123".into()));
        assert_eq!(u.external_id.as_deref(), Some("wx-123"));
        assert_eq!(
            u.fields,
            [Field {
                name: "name".into(),
                value: "Wang Fang".into()
            }]
        );
        assert!(u.tags.is_empty());
        assert_eq!(log.customer, CustomerRef::ExternalId("wx-123".into()));
        assert_eq!(
            (log.channel, log.direction),
            (Channel::Chat, Direction::Inbound)
        );
        assert_eq!(log.at, time::parse_rfc3339("2026-11-20T02:02:00Z").ok());
        assert_eq!(
            log.summary,
            "Hi, is the grey sofa from your autumn catalogue in stock?"
        );
        assert_eq!(
            log.body.as_deref(),
            Some(
                "10:02 customer: Hi, is the grey sofa from your autumn catalogue in stock? I'd need it before December.\n\
                 10:03 agent: Yes, we have two left. Delivery to Shanghai takes 5 days.\n\
                 10:05 customer: Great, I'll order today."
            )
        );
        assert_eq!((log.amount_minor, log.items.len()), (None, 0));
    }

    #[test]
    fn several_conversations_upsert_each_customer_once() {
        let commands = ingest(include_str!("../samples/conversations.json")).unwrap();
        let shape: Vec<String> = commands
            .iter()
            .map(|c| match c {
                Command::UpsertCustomer(u) => format!("upsert {:?} {:?}", u.match_, u.fields),
                Command::LogInteraction(LogInteraction {
                    direction, summary, ..
                }) => format!("log {direction:?} {summary}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            shape,
            [
                r#"upsert CustomerRef::ExternalId("wx-123") [Field { name: "name", value: "Wang Fang" }]"#,
                "log Direction::Inbound Hi, is the grey sofa from your autumn catalogue in stock?",
                r#"upsert CustomerRef::ExternalId("wx-456") [Field { name: "name", value: "Zhou Min" }]"#,
                "log Direction::Outbound Thanks! When will it arrive?",
                "log Direction::Outbound Conversation wx-conv-5003",
            ]
        );
    }

    #[test]
    fn summaries_are_clipped_to_200_characters() {
        let long = "长".repeat(300);
        let payload = format!(
            r#"{{"conversation_id":"c","customer":{{"external_id":"x"}},"messages":[{{"at":"2026-11-20T10:00:00Z","from":"customer","text":"{long}\nsecond line"}}]}}"#
        );
        let commands = ingest(&payload).unwrap();
        let Some(Command::LogInteraction(log)) = commands.get(1) else {
            panic!("{commands:?}");
        };
        assert_eq!(log.summary, "长".repeat(200));
        assert_eq!(
            log.body.as_deref(),
            Some(format!("18:00 customer: {long} second line").as_str())
        );
    }

    #[test]
    fn bad_conversations_are_named_in_the_error() {
        assert!(
            ingest("nope")
                .unwrap_err()
                .starts_with("payload is not JSON")
        );
        assert_eq!(
            ingest(r#"{"conversation_id":"c","customer":{"external_id":"x"},"messages":[]}"#),
            Err("conversation 1 (`c`): no messages".into())
        );
        assert_eq!(
            ingest(
                r#"[{"conversation_id":"c","customer":{"external_id":"x"},"messages":[{"at":"noon","from":"customer","text":"hi"}]}]"#
            ),
            Err("conversation 1 (`c`): message 1: invalid date or time `noon`: expected RFC 3339 like `2026-11-20T10:00:00Z` or `2026-11-20T18:00:00+08:00`".into())
        );
        assert!(
            ingest(r#"{"conversation_id":"c","customer":{"external_id":"x"},"messages":[{"at":"2026-11-20T10:00:00Z","from":"bot","text":"hi"}]}"#)
                .unwrap_err()
                .starts_with("conversation 1 (`c`): unknown variant `bot`")
        );
    }

    #[test]
    fn manifest_asks_for_the_masked_name_only() {
        let m = ChatSync::describe();
        assert_eq!(m.name, "chat-sync");
        assert_eq!(m.hooks, [Hook::Ingest]);
        assert_eq!(m.fields.len(), 1);
        assert_eq!(
            (m.fields[0].name.as_str(), m.fields[0].access),
            ("name", Access::Masked)
        );
        assert_eq!(
            m.commands,
            [CommandKind::UpsertCustomer, CommandKind::LogInteraction]
        );
    }
}
