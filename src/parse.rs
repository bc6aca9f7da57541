//! Reading the text operators type: `name=value` pairs, times, order
//! items, and the kebab-case names of the engine's types.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use custodian::{FieldAccess, OrderItem, parse_amount};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Splits `name=value` arguments.
pub fn pairs(args: &[String]) -> Result<Vec<(String, String)>> {
    args.iter()
        .map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| anyhow!("`{a}` is not of the form field=value"))
        })
        .collect()
}

/// Splits `key=value` attribute arguments.
pub fn attributes(args: &[String]) -> Result<BTreeMap<String, String>> {
    Ok(pairs(args)?.into_iter().collect())
}

/// Parses a time given on the command line, in UTC.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    bail!("`{text}` is not a time: use RFC 3339, YYYY-MM-DD or YYYY-MM-DD HH:MM (UTC)")
}

/// A time given on the command line, or now when none was.
pub fn time_or_now(text: Option<&str>) -> Result<DateTime<Utc>> {
    Ok(text.map(parse_time).transpose()?.unwrap_or_else(Utc::now))
}

/// Parses an order item, `name:quantity[:unit price]`.
pub fn parse_item(text: &str) -> Result<OrderItem> {
    let bad = || anyhow!("item `{text}` is not name:quantity[:unit price]");
    let mut parts = text.rsplitn(3, ':').collect::<Vec<_>>();
    parts.reverse();
    let (name, quantity, price) = match parts.as_slice() {
        [name, q] => (*name, *q, None),
        [name, q, p] => match q.parse::<u32>() {
            Ok(_) => (*name, *q, Some(*p)),
            Err(_) => (text.rsplit_once(':').map_or(text, |(n, _)| n), *p, None),
        },
        _ => return Err(bad()),
    };
    Ok(OrderItem {
        name: name.to_string(),
        quantity: quantity.parse().map_err(|_| bad())?,
        unit_price_minor: price.map(parse_amount).transpose()?,
    })
}

/// Parses a kebab-case name the engine's types deserialize from
/// (`on-event`, `send-message`); the error lists the valid names.
pub fn kebab<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_value(Value::String(text.trim().to_string())).map_err(|e| e.to_string())
}

/// Parses `name` or `name:masked` (`name:full` too).
pub fn field_spec(text: &str) -> Result<(String, Option<FieldAccess>), String> {
    let (name, access) = match text.trim().split_once(':') {
        None => (text.trim(), None),
        Some((name, access)) => (name, Some(kebab::<FieldAccess>(access)?)),
    };
    if name.is_empty() {
        return Err(format!("`{text}` names no field"));
    }
    Ok((name.to_string(), access))
}
