//! The payload's parser: bytes the shop sends (one order or an array of
//! them, JSON) become commands. Pure Rust with no host calls, so that it
//! also builds natively: the fuzz target `shop_orders` includes this file
//! (`fuzz/src/lib.rs`).

use std::collections::BTreeMap;

use custodian_sdk::{
    Channel, Command, CustomerRef, Field, LogInteraction, OrderItem, UpsertCustomer, money, time,
};
use serde::Deserialize;
use serde_json::Value;

/// The commands of a payload, or a message naming the order that is wrong
/// (see the crate's documentation).
pub(crate) fn ingest(payload: &[u8]) -> Result<Vec<Command>, String> {
    let payload: Value =
        serde_json::from_slice(payload).map_err(|e| format!("payload is not JSON: {e}"))?;
    let mut batch = Batch::default();
    match payload {
        Value::Array(orders) => {
            for (i, order) in orders.into_iter().enumerate() {
                let name = format!("order {}{}", i + 1, order_id_suffix(&order));
                batch.add(order).map_err(|e| format!("{name}: {e}"))?;
            }
        }
        order @ Value::Object(_) => {
            let name = format!("order{}", order_id_suffix(&order));
            batch.add(order).map_err(|e| format!("{name}: {e}"))?;
        }
        _ => return Err("payload must be an order object or an array of orders".into()),
    }
    Ok(batch.into_commands())
}

#[derive(Deserialize)]
struct Order {
    order_id: Id,
    placed_at: String,
    currency: String,
    total: Amount,
    customer: OrderCustomer,
    #[serde(default)]
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct OrderCustomer {
    id: Id,
    name: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    address: Option<String>,
}

#[derive(Deserialize)]
struct Item {
    name: String,
    quantity: u32,
    unit_price: Option<Amount>,
}

/// Shops write ids as strings or integers.
#[derive(Deserialize)]
#[serde(untagged)]
enum Id {
    Text(String),
    Number(u64),
}

impl Id {
    fn into_string(self) -> String {
        match self {
            Self::Text(s) => s,
            Self::Number(n) => n.to_string(),
        }
    }
}

/// An amount as a decimal string (`"2999.00"`, exact) or a JSON number
/// (taken in its shortest decimal rendering, exact for what shops send).
#[derive(Deserialize)]
#[serde(untagged)]
enum Amount {
    Text(String),
    Number(serde_json::Number),
}

impl Amount {
    fn minor(&self, currency: &str) -> Result<i64, money::MoneyError> {
        match self {
            Self::Text(s) => money::parse_in(s, currency),
            Self::Number(n) => money::parse_in(&n.to_string(), currency),
        }
    }
}

/// ` (`A1001`)` when the order has a readable id, for error messages.
fn order_id_suffix(order: &Value) -> String {
    match order.get("order_id") {
        Some(Value::String(id)) => format!(" (`{id}`)"),
        Some(Value::Number(id)) => format!(" (`{id}`)"),
        _ => String::new(),
    }
}

/// The commands of a payload in the making: one upsert per customer, at the
/// place of its first order.
#[derive(Default)]
struct Batch {
    steps: Vec<Step>,
    upserts: Vec<UpsertCustomer>,
    upsert_of: BTreeMap<String, usize>,
}

enum Step {
    Upsert(usize),
    Log(LogInteraction),
}

impl Batch {
    fn add(&mut self, order: Value) -> Result<(), String> {
        let order: Order = serde_json::from_value(order).map_err(|e| e.to_string())?;
        let order_id = order.order_id.into_string();
        let at = time::parse(&order.placed_at).map_err(|e| format!("placed_at: {e}"))?;
        let currency = order.currency.trim().to_ascii_uppercase();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "currency: `{}` is not a three-letter code like `CNY`",
                order.currency
            ));
        }
        let total = order
            .total
            .minor(&currency)
            .map_err(|e| format!("total: {e}"))?;
        let mut items = Vec::with_capacity(order.items.len());
        let mut count: u64 = 0;
        for (i, item) in order.items.into_iter().enumerate() {
            let mut line = OrderItem::new(item.name, item.quantity);
            if let Some(price) = item.unit_price {
                let price = price
                    .minor(&currency)
                    .map_err(|e| format!("item {}: unit_price: {e}", i + 1))?;
                line = line.unit_price_minor(price);
            }
            count += u64::from(item.quantity);
            items.push(line);
        }

        let OrderCustomer {
            id,
            name,
            phone,
            email,
            address,
        } = order.customer;
        let customer_id = id.into_string();
        if customer_id.is_empty() {
            return Err("customer.id is empty".into());
        }
        self.upsert(
            &customer_id,
            [
                ("name", name),
                ("phone", phone),
                ("email", email),
                ("address", address),
            ],
        );

        let summary = format!(
            "Order {order_id}: {count} item{}, {} {currency}",
            if count == 1 { "" } else { "s" },
            money::format_minor(total, money::decimals(&currency)),
        );
        let log = Command::log_interaction(
            CustomerRef::external_id(customer_id),
            Channel::Order,
            summary,
        )
        .at(at)
        .amount_minor(total);
        self.steps.push(Step::Log(LogInteraction { items, ..log }));
        Ok(())
    }

    /// Adds the customer's upsert, or merges the fields into the one an
    /// earlier order of the batch made.
    fn upsert(&mut self, customer_id: &str, fields: [(&str, Option<String>); 4]) {
        let existing = self
            .upsert_of
            .get(customer_id)
            .and_then(|&i| self.upserts.get_mut(i));
        if let Some(upsert) = existing {
            for (name, value) in fields {
                let Some(value) = value else { continue };
                match upsert.fields.iter_mut().find(|f| f.name == name) {
                    Some(field) => field.value = value,
                    None => upsert.fields.push(Field {
                        name: name.into(),
                        value,
                    }),
                }
            }
            return;
        }
        let upsert = fields.into_iter().fold(
            Command::upsert_customer(CustomerRef::external_id(customer_id))
                .external_id(customer_id)
                .tag("shop"),
            |upsert, (name, value)| upsert.field_opt(name, value),
        );
        self.upsert_of
            .insert(customer_id.to_owned(), self.upserts.len());
        self.steps.push(Step::Upsert(self.upserts.len()));
        self.upserts.push(upsert);
    }

    fn into_commands(self) -> Vec<Command> {
        let mut upserts: Vec<Option<UpsertCustomer>> = self.upserts.into_iter().map(Some).collect();
        self.steps
            .into_iter()
            .filter_map(|step| match step {
                Step::Upsert(i) => upserts.get_mut(i).and_then(Option::take).map(Command::from),
                Step::Log(log) => Some(log.into()),
            })
            .collect()
    }
}
