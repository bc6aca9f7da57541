//! What a plugin returns, built from bytes: a grant and the list of
//! commands a call returned, as the engine lifts them from a component
//! (`custodian::fuzzing`). Every byte string decodes to some grant and
//! commands (missing bytes read as zero), so that the fuzzer spends its
//! time in the engine's checks rather than in a format.
//!
//! The format, for writing seeds by hand:
//! - the grant: one byte of granted command kinds (bit 0 upsert, 1 log,
//!   2 follow-up, 3 message), two bytes (little-endian) of two bits per
//!   field of [`FIELDS`] (0 or 3 not granted, 1 masked, 2 in full), one
//!   byte of granted channels (bits over [`CHANNELS`]);
//! - a count byte (modulo 17), then that many commands: a kind byte
//!   (modulo 4: upsert, log, follow-up, message) and its parts in the
//!   order of `sdk/wit/plugin.wit`; an option is a byte (odd: present)
//!   before its value; a list is a count byte (`0xff`: a two-byte count
//!   follows); an integer is little-endian; a reference is a byte (modulo
//!   4: id, phone, email, external id) and its value (an id is one byte).
//! - a string is a byte `n`: below `0xe0`, `n` bytes follow (not UTF-8:
//!   replaced, as a component's strings are always UTF-8); `0xe0` to
//!   `0xee`, a two-byte length and the bytes; `0xef`, a byte repeated a
//!   four-byte count of times (modulo 2 MiB, to reach the limits); from
//!   `0xf0`, the word of [`WORDS`] at `n - 0xf0`.

use custodian::fuzzing::{
    Channel, Command, CreateFollowUp, CustomerRef, Direction, Field, LogInteraction,
    MessagePurpose, OrderItem, SendMessage, UpsertCustomer,
};
use custodian::{CommandKind, FieldAccess, Grant, Hook};

/// The fields of the default schema a grant may name.
pub const FIELDS: [&str; 8] = [
    "name",
    "phone",
    "email",
    "address",
    "company",
    "id_number",
    "birthday",
    "tags",
];

/// The channels a grant may name.
pub const CHANNELS: [&str; 3] = ["sms", "email", "wechat"];

/// Strings that mean something to the engine: field names, values of
/// each field type, channels, dates.
pub const WORDS: [&str; 16] = [
    "name",
    "phone",
    "email",
    "tags",
    "birthday",
    "id_number",
    "sms",
    "13800138000",
    "li.na@example.com",
    "Li Na",
    "1988-03-12",
    "110105198803120217",
    "vip,renovation",
    "+86 139 1234 5678",
    "",
    "notes",
];

/// Bytes read front to back; zeros once they run out.
struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        taken
    }

    fn le<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        for b in &mut out {
            *b = self.byte();
        }
        out
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.le())
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.le())
    }

    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.le())
    }

    fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    fn count(&mut self) -> usize {
        match self.byte() {
            0xff => usize::from(self.u16()),
            n => usize::from(n),
        }
    }

    fn string(&mut self) -> String {
        match self.byte() {
            n @ 0..0xe0 => String::from_utf8_lossy(self.bytes(usize::from(n))).into_owned(),
            0xe0..0xef => {
                let n = usize::from(self.u16());
                String::from_utf8_lossy(self.bytes(n)).into_owned()
            }
            0xef => {
                let c = char::from(self.byte() & 0x7f);
                let n = self.u32() as usize % (2 << 20);
                std::iter::repeat_n(c, n).collect()
            }
            n => WORDS
                .get(usize::from(n - 0xf0))
                .copied()
                .unwrap_or_default()
                .to_string(),
        }
    }

    fn option<T>(&mut self, value: impl FnOnce(&mut Self) -> T) -> Option<T> {
        self.flag().then(|| value(self))
    }

    fn list<T>(&mut self, mut value: impl FnMut(&mut Self) -> T) -> Vec<T> {
        let n = self.count();
        let mut out = Vec::new();
        // Stops at the end of the input: a count alone makes no list.
        while out.len() < n && !self.data.is_empty() {
            out.push(value(self));
        }
        out
    }

    fn reference(&mut self) -> CustomerRef {
        match self.byte() % 4 {
            0 => CustomerRef::Id(u64::from(self.byte())),
            1 => CustomerRef::Phone(self.string()),
            2 => CustomerRef::Email(self.string()),
            _ => CustomerRef::ExternalId(self.string()),
        }
    }

    fn field(&mut self) -> Field {
        Field {
            name: self.string(),
            value: self.string(),
        }
    }

    fn grant(&mut self) -> Grant {
        let mut grant = Grant::none();
        grant.hooks.insert(Hook::Ingest);
        let kinds = self.byte();
        let all = [
            CommandKind::UpsertCustomer,
            CommandKind::LogInteraction,
            CommandKind::CreateFollowUp,
            CommandKind::SendMessage,
        ];
        for (bit, kind) in all.into_iter().enumerate() {
            if kinds & (1 << bit) != 0 {
                grant.commands.insert(kind);
            }
        }
        let fields = self.u16();
        for (i, name) in FIELDS.into_iter().enumerate() {
            let access = match (fields >> (2 * i)) & 3 {
                1 => FieldAccess::Masked,
                2 => FieldAccess::Full,
                _ => continue,
            };
            grant.fields.insert(name.to_string(), access);
        }
        let channels = self.byte();
        for (bit, name) in CHANNELS.into_iter().enumerate() {
            if channels & (1 << bit) != 0 {
                grant.channels.insert(name.to_string());
            }
        }
        grant.commands_per_minute = u32::MAX;
        grant.messages_per_minute = u32::MAX;
        grant
    }

    fn command(&mut self) -> Command {
        match self.byte() % 4 {
            0 => Command::UpsertCustomer(UpsertCustomer {
                match_: self.reference(),
                external_id: self.option(Self::string),
                fields: self.list(Self::field),
                tags: self.list(Self::string),
            }),
            1 => Command::LogInteraction(LogInteraction {
                customer: self.reference(),
                channel: match self.byte() % 7 {
                    0 => Channel::Call,
                    1 => Channel::Email,
                    2 => Channel::Chat,
                    3 => Channel::Sms,
                    4 => Channel::Meeting,
                    5 => Channel::Visit,
                    _ => Channel::Order,
                },
                direction: if self.flag() {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                },
                at: self.option(Self::i64),
                summary: self.string(),
                body: self.option(Self::string),
                amount_minor: self.option(Self::i64),
                items: self.list(|r| OrderItem {
                    name: r.string(),
                    quantity: r.u32(),
                    unit_price_minor: r.option(Self::i64),
                }),
            }),
            2 => Command::CreateFollowUp(CreateFollowUp {
                customer: self.reference(),
                due: self.i64(),
                note: self.string(),
            }),
            _ => Command::SendMessage(SendMessage {
                channel: self.string(),
                customer: self.reference(),
                template: self.string(),
                params: self.list(|r| (r.string(), r.string())),
                purpose: if self.flag() {
                    MessagePurpose::Marketing
                } else {
                    MessagePurpose::Service
                },
            }),
        }
    }
}

/// The grant and the commands `data` describes.
pub fn decode(data: &[u8]) -> (Grant, Vec<Command>) {
    let mut reader = Reader { data };
    let grant = reader.grant();
    let n = usize::from(reader.byte() % 17);
    let commands = (0..n).map(|_| reader.command()).collect();
    (grant, commands)
}
