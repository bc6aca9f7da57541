//! The payload's parser: bytes the chat platform sends (one conversation
//! or an array of them, JSON) become commands. Pure Rust with no host
//! calls, so that it also builds natively: the fuzz target `chat_sync`
//! includes this file (`fuzz/src/lib.rs`).

use std::collections::BTreeMap;

use custodian_sdk::{
    Channel, Command, CustomerRef, Direction, Field,
    time::{self, UtcOffset},
};
use serde::Deserialize;
use serde_json::Value;

/// Longest summary, in characters.
const SUMMARY_CHARS: usize = 200;

/// The commands of a payload, or a message naming the conversation that
/// is wrong (see the crate's documentation).
pub(crate) fn ingest(payload: &[u8]) -> Result<Vec<Command>, String> {
    let payload: Value =
        serde_json::from_slice(payload).map_err(|e| format!("payload is not JSON: {e}"))?;
    let conversations = match payload {
        Value::Array(list) => list,
        one @ Value::Object(_) => vec![one],
        _ => return Err("payload must be a conversation object or an array of them".into()),
    };
    let mut out = Output::default();
    for (i, conversation) in conversations.into_iter().enumerate() {
        let name = match conversation.get("conversation_id") {
            Some(Value::String(id)) => format!("conversation {} (`{id}`)", i + 1),
            _ => format!("conversation {}", i + 1),
        };
        out.add(conversation).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(out.commands)
}

#[derive(Deserialize)]
struct Conversation {
    conversation_id: String,
    customer: ChatCustomer,
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct ChatCustomer {
    external_id: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    at: String,
    from: Sender,
    text: String,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Sender {
    Customer,
    Agent,
}

impl Sender {
    fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Agent => "agent",
        }
    }
}

#[derive(Default)]
struct Output {
    commands: Vec<Command>,
    /// Index in `commands` of each customer's upsert.
    upsert_of: BTreeMap<String, usize>,
}

impl Output {
    fn add(&mut self, conversation: Value) -> Result<(), String> {
        let c: Conversation = serde_json::from_value(conversation).map_err(|e| e.to_string())?;
        let external_id = c.customer.external_id;
        if external_id.is_empty() {
            return Err("customer.external_id is empty".into());
        }
        let Some(first) = c.messages.first() else {
            return Err("no messages".into());
        };
        let mut transcript = String::new();
        let mut times = Vec::with_capacity(c.messages.len());
        for (i, m) in c.messages.iter().enumerate() {
            let at = time::parse_rfc3339(&m.at).map_err(|e| format!("message {}: {e}", i + 1))?;
            times.push(at);
            if !transcript.is_empty() {
                transcript.push('\n');
            }
            let text = m.text.lines().collect::<Vec<_>>().join(" ");
            transcript.push_str(&format!(
                "{} {}: {}",
                time::format_hm(at, UtcOffset::CHINA),
                m.from.as_str(),
                text
            ));
        }
        let summary = match c.messages.iter().find(|m| m.from == Sender::Customer) {
            Some(m) => m
                .text
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(SUMMARY_CHARS)
                .collect(),
            None => format!("Conversation {}", c.conversation_id),
        };
        let direction = match first.from {
            Sender::Customer => Direction::Inbound,
            Sender::Agent => Direction::Outbound,
        };

        self.upsert(&external_id, c.customer.name);
        let mut log = Command::log_interaction(
            CustomerRef::external_id(external_id),
            Channel::Chat,
            summary,
        )
        .direction(direction)
        .body(transcript);
        if let Some(&at) = times.first() {
            log = log.at(at);
        }
        self.commands.push(log.into());
        Ok(())
    }

    /// One upsert per customer; a later name replaces an earlier one.
    fn upsert(&mut self, external_id: &str, name: Option<String>) {
        let existing = self
            .upsert_of
            .get(external_id)
            .and_then(|&i| self.commands.get_mut(i));
        if let Some(Command::UpsertCustomer(upsert)) = existing {
            if let Some(name) = name {
                upsert.fields = vec![Field {
                    name: "name".into(),
                    value: name,
                }];
            }
            return;
        }
        self.upsert_of
            .insert(external_id.to_owned(), self.commands.len());
        self.commands.push(
            Command::upsert_customer(CustomerRef::external_id(external_id))
                .external_id(external_id)
                .field_opt("name", name)
                .into(),
        );
    }
}
