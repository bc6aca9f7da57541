//! Constructors for the interface's commands, customer references, and
//! readers for customers and events.
//!
//! Every command starts from a constructor on [`Command`] that takes what
//! the command cannot do without, continues with setters for the optional
//! parts, and becomes a [`Command`] with `.into()`:
//!
//! ```
//! use custodian_sdk::{Channel, Command, CustomerRef, OrderItem};
//!
//! let commands: Vec<Command> = vec![
//!     Command::upsert_customer(CustomerRef::external_id("C77"))
//!         .external_id("C77")
//!         .field("name", "Li Na")
//!         .tag("shop")
//!         .into(),
//!     Command::log_interaction(CustomerRef::external_id("C77"), Channel::Order, "Order A1001")
//!         .amount_minor(299_900)
//!         .item(OrderItem::new("Sofa", 1).unit_price_minor(299_900))
//!         .into(),
//! ];
//! assert_eq!(commands.len(), 2);
//! ```

use crate::{
    Channel, Command, CreateFollowUp, Customer, CustomerRef, Direction, Event, EventKind, Field,
    LogInteraction, MessagePurpose, OrderItem, SendMessage, Timestamp, UpsertCustomer,
};

impl Command {
    /// Creates the customer `customer` names, or updates it: see
    /// [`UpsertCustomer`]'s setters. No fields, tags or external id by
    /// default.
    #[must_use]
    pub fn upsert_customer(customer: CustomerRef) -> UpsertCustomer {
        UpsertCustomer {
            match_: customer,
            external_id: None,
            fields: Vec::new(),
            tags: Vec::new(),
        }
    }

    /// Logs an interaction with a customer. Defaults: direction
    /// [`Direction::Inbound`], no time (the engine's clock), no body, no
    /// amount, no items.
    #[must_use]
    pub fn log_interaction(
        customer: CustomerRef,
        channel: Channel,
        summary: impl Into<String>,
    ) -> LogInteraction {
        LogInteraction {
            customer,
            channel,
            direction: Direction::Inbound,
            at: None,
            summary: summary.into(),
            body: None,
            amount_minor: None,
            items: Vec::new(),
        }
    }

    /// Schedules a follow-up with a customer, due at `due`.
    #[must_use]
    pub fn create_follow_up(
        customer: CustomerRef,
        due: Timestamp,
        note: impl Into<String>,
    ) -> CreateFollowUp {
        CreateFollowUp {
            customer,
            due,
            note: note.into(),
        }
    }

    /// Asks the engine to send a message from a template on a channel
    /// (`sms`, `email`, ...). The engine checks consent (marketing needs the
    /// customer's marketing consent) and resolves the address itself. No
    /// template parameters by default.
    #[must_use]
    pub fn send_message(
        channel: impl Into<String>,
        customer: CustomerRef,
        template: impl Into<String>,
        purpose: MessagePurpose,
    ) -> SendMessage {
        SendMessage {
            channel: channel.into(),
            customer,
            template: template.into(),
            params: Vec::new(),
            purpose,
        }
    }
}

impl UpsertCustomer {
    /// Remembers `id` as this plugin's own id for the customer, for later
    /// [`CustomerRef::external_id`] references.
    #[must_use]
    pub fn external_id(mut self, id: impl Into<String>) -> Self {
        self.external_id = Some(id.into());
        self
    }

    /// Sets a field (`name`, `phone`, `email`, `address`, ...).
    #[must_use]
    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.push(Field {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// Sets a field when there is a value; does nothing for `None`.
    #[must_use]
    pub fn field_opt(self, name: impl Into<String>, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(value) => self.field(name, value),
            None => self,
        }
    }

    /// Adds a tag to the customer's tags.
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
}

impl LogInteraction {
    /// Who started it (default [`Direction::Inbound`]).
    #[must_use]
    pub fn direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }

    /// When it happened (default: when the engine executes the command).
    #[must_use]
    pub fn at(mut self, at: Timestamp) -> Self {
        self.at = Some(at);
        self
    }

    /// The full text: a transcript, an email body.
    #[must_use]
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// An order total in minor units (see [`crate::money`]).
    #[must_use]
    pub fn amount_minor(mut self, amount: i64) -> Self {
        self.amount_minor = Some(amount);
        self
    }

    /// Adds an order line.
    #[must_use]
    pub fn item(mut self, item: OrderItem) -> Self {
        self.items.push(item);
        self
    }
}

impl SendMessage {
    /// Adds a template parameter.
    #[must_use]
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }
}

impl OrderItem {
    /// An order line without a price.
    #[must_use]
    pub fn new(name: impl Into<String>, quantity: u32) -> Self {
        Self {
            name: name.into(),
            quantity,
            unit_price_minor: None,
        }
    }

    /// The price of one, in minor units.
    #[must_use]
    pub fn unit_price_minor(mut self, price: i64) -> Self {
        self.unit_price_minor = Some(price);
        self
    }
}

impl From<UpsertCustomer> for Command {
    fn from(c: UpsertCustomer) -> Self {
        Self::UpsertCustomer(c)
    }
}

impl From<LogInteraction> for Command {
    fn from(c: LogInteraction) -> Self {
        Self::LogInteraction(c)
    }
}

impl From<CreateFollowUp> for Command {
    fn from(c: CreateFollowUp) -> Self {
        Self::CreateFollowUp(c)
    }
}

impl From<SendMessage> for Command {
    fn from(c: SendMessage) -> Self {
        Self::SendMessage(c)
    }
}

impl CustomerRef {
    /// The engine's id for the customer.
    #[must_use]
    pub fn id(id: u64) -> Self {
        Self::Id(id)
    }

    /// A phone number, matched through the engine's blind index.
    #[must_use]
    pub fn phone(phone: impl Into<String>) -> Self {
        Self::Phone(phone.into())
    }

    /// An email address, matched through the engine's blind index.
    #[must_use]
    pub fn email(email: impl Into<String>) -> Self {
        Self::Email(email.into())
    }

    /// This plugin's own id for the customer, as set by
    /// [`UpsertCustomer::external_id`].
    #[must_use]
    pub fn external_id(id: impl Into<String>) -> Self {
        Self::ExternalId(id.into())
    }
}

impl Customer {
    /// The value of a field as granted (full or masked), or `None` when the
    /// customer has no such field or the plugin was not granted it.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.as_str())
    }

    /// Whether field `name` was shown masked: its value is a rendering
    /// (`138****8000`), not the value.
    #[must_use]
    pub fn is_masked(&self, name: &str) -> bool {
        self.masked.iter().any(|m| m == name)
    }

    /// A [`CustomerRef`] to this customer, by the engine's id.
    #[must_use]
    pub fn to_ref(&self) -> CustomerRef {
        CustomerRef::Id(self.id)
    }
}

impl Event {
    /// What kind of event this is, as named in manifests.
    #[must_use]
    pub fn kind(&self) -> EventKind {
        match self {
            Self::CustomerCreated(_) => EventKind::CustomerCreated,
            Self::CustomerUpdated(_) => EventKind::CustomerUpdated,
            Self::CustomerErased(_) => EventKind::CustomerErased,
            Self::InteractionLogged(_) => EventKind::InteractionLogged,
            Self::FollowUpDue(_) => EventKind::FollowUpDue,
            Self::AlertRaised(_) => EventKind::AlertRaised,
        }
    }

    /// The customer the event carries, as granted; `None` for erasures and
    /// alerts.
    #[must_use]
    pub fn customer(&self) -> Option<&Customer> {
        match self {
            Self::CustomerCreated(c) | Self::CustomerUpdated(c) => Some(c),
            Self::InteractionLogged(e) => Some(&e.customer),
            Self::FollowUpDue(e) => Some(&e.customer),
            Self::CustomerErased(_) | Self::AlertRaised(_) => None,
        }
    }
}

impl EventKind {
    /// The name used in the interface (`follow-up-due`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::CustomerCreated => "customer-created",
            Self::CustomerUpdated => "customer-updated",
            Self::CustomerErased => "customer-erased",
            Self::InteractionLogged => "interaction-logged",
            Self::FollowUpDue => "follow-up-due",
            Self::AlertRaised => "alert-raised",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Alert, FollowUpDue};

    fn li_na() -> Customer {
        Customer {
            id: 7,
            status: "active".into(),
            fields: vec![
                Field {
                    name: "name".into(),
                    value: "Li Na".into(),
                },
                Field {
                    name: "phone".into(),
                    value: "138****8000".into(),
                },
            ],
            masked: vec!["phone".into()],
        }
    }

    #[test]
    fn constructors_fill_defaults_and_setters_fill_the_rest() {
        let upsert: Command = Command::upsert_customer(CustomerRef::phone("+86 138 0013 8000"))
            .external_id("C77")
            .field("name", "Li Na")
            .field_opt("email", None::<String>)
            .field_opt("address", Some("Beijing"))
            .tag("shop")
            .into();
        assert_eq!(
            upsert,
            Command::UpsertCustomer(UpsertCustomer {
                match_: CustomerRef::Phone("+86 138 0013 8000".into()),
                external_id: Some("C77".into()),
                fields: vec![
                    Field {
                        name: "name".into(),
                        value: "Li Na".into()
                    },
                    Field {
                        name: "address".into(),
                        value: "Beijing".into()
                    },
                ],
                tags: vec!["shop".into()],
            })
        );

        let log = Command::log_interaction(CustomerRef::id(7), Channel::Chat, "hello");
        assert_eq!(
            (log.direction, log.at, &log.body, log.amount_minor),
            (Direction::Inbound, None, &None, None)
        );
        let log: Command = log
            .direction(Direction::Outbound)
            .at(5)
            .body("hi")
            .amount_minor(100)
            .item(OrderItem::new("Sofa", 2).unit_price_minor(50))
            .into();
        let Command::LogInteraction(log) = log else {
            panic!("not a log-interaction: {log:?}");
        };
        assert_eq!(log.direction, Direction::Outbound);
        assert_eq!((log.at, log.body.as_deref()), (Some(5), Some("hi")));
        assert_eq!(
            log.items,
            [OrderItem {
                name: "Sofa".into(),
                quantity: 2,
                unit_price_minor: Some(50)
            }]
        );

        let follow_up: Command =
            Command::create_follow_up(CustomerRef::external_id("C77"), 10, "call back").into();
        assert_eq!(
            follow_up,
            Command::CreateFollowUp(CreateFollowUp {
                customer: CustomerRef::ExternalId("C77".into()),
                due: 10,
                note: "call back".into()
            })
        );

        let message: Command = Command::send_message(
            "sms",
            CustomerRef::email("a@example.com"),
            "t",
            MessagePurpose::Service,
        )
        .param("due", "2026-11-20")
        .into();
        assert_eq!(
            message,
            Command::SendMessage(SendMessage {
                channel: "sms".into(),
                customer: CustomerRef::Email("a@example.com".into()),
                template: "t".into(),
                params: vec![("due".into(), "2026-11-20".into())],
                purpose: MessagePurpose::Service,
            })
        );
    }

    #[test]
    fn customers_and_events_are_read_by_name() {
        let c = li_na();
        assert_eq!(c.get("name"), Some("Li Na"));
        assert_eq!(c.get("phone"), Some("138****8000"));
        assert_eq!(c.get("id_number"), None);
        assert_eq!(c.to_ref(), CustomerRef::Id(7));

        let due = Event::FollowUpDue(FollowUpDue {
            customer: c.clone(),
            follow_up: 1,
            due: 0,
            note: None,
        });
        assert_eq!(due.kind(), EventKind::FollowUpDue);
        assert_eq!(due.kind().name(), "follow-up-due");
        assert_eq!(due.customer(), Some(&c));
        assert_eq!(Event::CustomerErased(7).customer(), None);
        let alert = Event::AlertRaised(Alert {
            kind: "k".into(),
            message: "m".into(),
        });
        assert_eq!(alert.kind().name(), "alert-raised");
    }
}
