//! `shop-orders`: e-commerce orders become customers and order interactions.
//!
//! **Payload** (`ingest`): JSON, either one order or an array of orders (a
//! batch export); see `samples/order.json` and `samples/orders.json`:
//!
//! ```json
//! {"order_id": "A1001", "placed_at": "2026-11-20T10:00:00Z", "currency": "CNY",
//!  "total": "2999.00",
//!  "customer": {"id": "C77", "name": "Li Na", "phone": "+86 138 0013 8000",
//!               "email": "li.na@example.com", "address": "..."},
//!  "items": [{"sku": "S1", "name": "Sofa", "quantity": 1, "unit_price": "2999.00"}]}
//! ```
//!
//! `customer.id` (a string or an integer) is required; its name, phone,
//! email and address are optional, but the engine creates a customer only
//! with a name (the default schema requires one), so a customer's first
//! order must carry it. `placed_at` is RFC 3339 (or a date,
//! midnight UTC). Amounts are decimal strings (or JSON numbers) in the
//! currency's own decimals (2 for `CNY`), converted exactly to minor units.
//! `items` may be absent. Other keys are ignored.
//!
//! **Commands**, in payload order:
//! - one `upsert-customer` per distinct `customer.id` in the payload, at
//!   its first order: matched by `external-id(customer.id)`, remembering
//!   that external id, with the fields present (a later order of the same
//!   customer in the batch overrides a field it repeats) and tag `shop`.
//!   Fewer commands than one upsert per order, and no update lost;
//! - one `log-interaction` per order for `external-id(customer.id)`: channel
//!   `order`, inbound, at `placed_at`, summary `Order A1001: 1 item, 2999.00
//!   CNY` (items counted by quantity), the total and the items in minor
//!   units.
//!
//! A payload that is not JSON, or any bad order, fails the whole call with a
//! message naming the order (`order 2 (`A1002`): total: invalid amount ...`,
//! counting from 1) and nothing is written.
//!
//! **Asks for**: hook `ingest`; commands `upsert-customer` and
//! `log-interaction` at up to 1,000,000 a minute (bulk imports); no messages;
//! region `CN`; fields `name`, `phone`, `email`, `address` and `tags`,
//! masked: it never reads a customer, but the engine lets a plugin write
//! only fields in its grant, and the masked view is the least of it.

mod payload;

use custodian_sdk::{Command, CommandKind, Event, Guest, Hook, Manifest};

/// The plugin.
struct ShopOrders;

impl Guest for ShopOrders {
    fn describe() -> Manifest {
        Manifest::new("shop-orders", env!("CARGO_PKG_VERSION"), "Custodian")
            .description("imports e-commerce orders: customers and order history")
            .hook(Hook::Ingest)
            .commands([CommandKind::UpsertCustomer, CommandKind::LogInteraction])
            .field_masked("name")
            .field_masked("phone")
            .field_masked("email")
            .field_masked("address")
            .field_masked("tags")
            .commands_per_minute(1_000_000)
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

custodian_sdk::export!(ShopOrders);

#[cfg(test)]
mod tests {
    use super::*;
    use custodian_sdk::{Channel, CustomerRef, Direction, Field, OrderItem};

    fn ingest(payload: &str) -> Result<Vec<Command>, String> {
        ShopOrders::ingest(payload.as_bytes().to_vec())
    }

    fn field(name: &str, value: &str) -> Field {
        Field {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn one_order_is_an_upsert_and_a_log() {
        let commands = ingest(include_str!("../samples/order.json")).unwrap();
        let [
            Command::UpsertCustomer(upsert),
            Command::LogInteraction(log),
        ] = &commands[..]
        else {
            panic!("{commands:?}");
        };
        assert_eq!(upsert.match_, CustomerRef::ExternalId("C77".into()));
        assert_eq!(upsert.external_id.as_deref(), Some("C77"));
        assert_eq!(
            upsert.fields,
            [
                field("name", "Li Na"),
                field("phone", "+86 138 0013 8000"),
                field("email", "li.na@example.com"),
                field("address", "88 Jianguo Road, Chaoyang District, Beijing"),
            ]
        );
        assert_eq!(upsert.tags, ["shop"]);
        assert_eq!(log.customer, CustomerRef::ExternalId("C77".into()));
        assert_eq!(
            (log.channel, log.direction),
            (Channel::Order, Direction::Inbound)
        );
        assert_eq!(log.at, Some(1_795_168_800_000));
        assert_eq!(log.summary, "Order A1001: 1 item, 2999.00 CNY");
        assert_eq!(log.amount_minor, Some(299_900));
        assert_eq!(
            log.items,
            [OrderItem::new("Sofa", 1).unit_price_minor(299_900)]
        );
    }

    #[test]
    fn a_batch_upserts_each_customer_once_with_the_latest_fields() {
        let commands = ingest(include_str!("../samples/orders.json")).unwrap();
        let kinds: Vec<_> = commands
            .iter()
            .map(|c| match c {
                Command::UpsertCustomer(u) => format!("upsert {:?}", u.match_),
                Command::LogInteraction(l) => format!("log {}", l.summary),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "upsert CustomerRef::ExternalId(\"C77\")",
                "log Order A1001: 1 item, 2999.00 CNY",
                "upsert CustomerRef::ExternalId(\"C78\")",
                "log Order A1002: 3 items, 458.50 CNY",
                "log Order A1003: 2 items, 120.00 CNY",
                "upsert CustomerRef::ExternalId(\"1042\")",
                "log Order A1004: 1 item, 15.00 CNY",
            ]
        );
        let Command::UpsertCustomer(li_na) = &commands[0] else {
            panic!()
        };
        // A1003 gave C77 a new phone; the name stays from A1001.
        assert_eq!(
            li_na.fields,
            [
                field("name", "Li Na"),
                field("phone", "+86 139 0000 1111"),
                field("email", "li.na@example.com"),
                field("address", "88 Jianguo Road, Chaoyang District, Beijing"),
            ]
        );
    }

    #[test]
    fn bad_orders_are_named_in_the_error() {
        assert_eq!(ingest("[]"), Ok(vec![]));
        assert!(
            ingest("{")
                .unwrap_err()
                .starts_with("payload is not JSON: ")
        );
        assert_eq!(
            ingest("42").unwrap_err(),
            "payload must be an order object or an array of orders"
        );
        let good = r#"{"order_id":"A1","placed_at":"2026-11-20T10:00:00Z","currency":"CNY","total":"1.00","customer":{"id":"C1"}}"#;
        assert_eq!(ingest(good).map(|c| c.len()), Ok(2));
        let bad_total = good.replace("\"1.00\"", "\"1,000.00\"");
        assert_eq!(
            ingest(&format!("[{good},{bad_total}]")).unwrap_err(),
            "order 2 (`A1`): total: invalid amount `1,000.00`: expected a decimal number like `2999.00`"
        );
        let no_customer = r#"{"order_id":"A9","placed_at":"2026-11-20T10:00:00Z","currency":"CNY","total":"1.00"}"#;
        assert!(
            ingest(no_customer)
                .unwrap_err()
                .starts_with("order (`A9`): missing field `customer`"),
        );
        let bad_date = good.replace("2026-11-20T10:00:00Z", "yesterday");
        assert!(
            ingest(&bad_date)
                .unwrap_err()
                .starts_with("order (`A1`): placed_at: invalid date or time `yesterday`")
        );
        assert_eq!(
            ingest(&good.replace("\"C1\"", "\"\"")).unwrap_err(),
            "order (`A1`): customer.id is empty"
        );
        assert_eq!(
            ingest(&good.replace("CNY", "yuan")).unwrap_err(),
            "order (`A1`): currency: `yuan` is not a three-letter code like `CNY`"
        );
        assert_eq!(ingest("[1]").unwrap_err().get(..9), Some("order 1: "));
    }

    #[test]
    fn numbers_are_accepted_for_ids_and_amounts() {
        let order = r#"{"order_id":7,"placed_at":"20261120","currency":"jpy","total":1500,"customer":{"id":42},"items":[{"name":"Tea","quantity":3,"unit_price":500}]}"#;
        let commands = ingest(order).unwrap();
        let [Command::UpsertCustomer(u), Command::LogInteraction(log)] = &commands[..] else {
            panic!("{commands:?}");
        };
        assert_eq!(u.match_, CustomerRef::ExternalId("42".into()));
        assert_eq!(log.summary, "Order 7: 3 items, 1500 JPY");
        assert_eq!(log.amount_minor, Some(1500));
        assert_eq!(log.items[0].unit_price_minor, Some(500));
        assert_eq!(log.at, Some(1_795_132_800_000));
    }

    #[test]
    fn manifest_asks_for_bulk_ingest_only() {
        let m = ShopOrders::describe();
        assert_eq!(m.name, "shop-orders");
        assert_eq!(m.hooks, [Hook::Ingest]);
        assert!(m.events.is_empty());
        assert_eq!(
            m.commands,
            [CommandKind::UpsertCustomer, CommandKind::LogInteraction]
        );
        assert_eq!(
            (m.commands_per_minute, m.messages_per_minute),
            (1_000_000, 0)
        );
        assert_eq!(m.regions, ["CN"]);
        assert!(
            m.fields
                .iter()
                .all(|f| f.access == custodian_sdk::Access::Masked)
        );
    }
}
