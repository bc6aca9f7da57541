//! What a call was shown: the customers handed to the plugin (by its
//! lookups and in its event) and their values, so that a value shown to
//! the call is refused in state not filed under its customer and redacted
//! from log lines and messages the engine keeps.
//!
//! Values are compared on their letters and digits only, lowercased, so
//! that `+86 138 0013 8000` is found in `8613800138000` too. Values shorter
//! than [`MIN_TRACKED`] bytes so compared are not tracked: they match too
//! much to mean anything. Masked renderings (`138****8000`) are not
//! tracked either: showing them is what masking is for.

use std::collections::BTreeSet;

use super::wit;

/// The shortest value tracked, in bytes of its letters and digits.
const MIN_TRACKED: usize = 4;
/// Values tracked per call; past it, everything counts as holding one.
const MAX_TRACKED: usize = 1024;

/// What replaces a value shown to the call in a log line.
const REDACTED: &str = "[redacted]";
/// What replaces a whole line when the call was shown more values than
/// are tracked.
const REDACTED_LINE: &str = "[redacted: the call was shown more values than are tracked]";

/// The customers and values shown to one call.
#[derive(Default)]
pub(super) struct Shown {
    customers: BTreeSet<u64>,
    values: BTreeSet<String>,
    /// More values than tracked were shown: nothing is taken as clean.
    overflow: bool,
}

fn normalize(text: &str) -> String {
    (text.chars())
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

impl Shown {
    /// A customer handed to the plugin, with the values it showed.
    pub(super) fn customer(&mut self, customer: &wit::Customer) {
        self.customers.insert(customer.id);
        for field in &customer.fields {
            if !customer.masked.contains(&field.name) {
                self.value(&field.value);
            }
        }
    }

    /// What an event hands the plugin.
    pub(super) fn event(&mut self, event: &wit::Event) {
        match event {
            wit::Event::CustomerCreated(c) | wit::Event::CustomerUpdated(c) => self.customer(c),
            wit::Event::InteractionLogged(logged) => self.customer(&logged.customer),
            wit::Event::FollowUpDue(due) => {
                self.customer(&due.customer);
                if let Some(note) = &due.note {
                    self.value(note);
                }
            }
            wit::Event::CustomerErased(_) | wit::Event::AlertRaised(_) => {}
        }
    }

    fn value(&mut self, value: &str) {
        let value = normalize(value);
        if value.len() < MIN_TRACKED || self.overflow {
            return;
        }
        if self.values.len() >= MAX_TRACKED {
            self.overflow = true;
            self.values.clear();
            return;
        }
        self.values.insert(value);
    }

    /// Whether `customer` was handed to the call.
    pub(super) fn has_customer(&self, customer: u64) -> bool {
        self.customers.contains(&customer)
    }

    /// Whether `text` holds a value shown to the call.
    pub(super) fn holds(&self, text: &str) -> bool {
        if self.overflow {
            return true;
        }
        if self.values.is_empty() {
            return false;
        }
        let text = normalize(text);
        self.values.iter().any(|v| text.contains(v.as_str()))
    }

    /// [`Shown::holds`] for bytes: their UTF-8 runs are compared.
    pub(super) fn holds_bytes(&self, bytes: &[u8]) -> bool {
        self.holds(&String::from_utf8_lossy(bytes))
    }

    /// `text` with each value shown to the call, however spelled,
    /// replaced by [`REDACTED`].
    pub(super) fn redact(&self, text: String) -> String {
        if self.overflow {
            return REDACTED_LINE.to_string();
        }
        if self.values.is_empty() {
            return text;
        }
        // The letters and digits of `text`, lowercased, and for each byte
        // of them the bytes of `text` they come from.
        let mut norm = String::with_capacity(text.len());
        let mut origin: Vec<(usize, usize)> = Vec::with_capacity(text.len());
        for (at, c) in text.char_indices().filter(|(_, c)| c.is_alphanumeric()) {
            for lower in c.to_lowercase() {
                let start = norm.len();
                norm.push(lower);
                origin.resize(origin.len() + (norm.len() - start), (at, at + c.len_utf8()));
            }
        }
        let mut hidden = vec![false; text.len()];
        for value in &self.values {
            for (at, _) in norm.match_indices(value.as_str()) {
                let first = origin.get(at).map(|o| o.0);
                let last = origin.get(at + value.len() - 1).map(|o| o.1);
                if let (Some(first), Some(last)) = (first, last)
                    && let Some(run) = hidden.get_mut(first..last)
                {
                    run.fill(true);
                }
            }
        }
        if !hidden.contains(&true) {
            return text;
        }
        let mut out = String::with_capacity(text.len());
        let mut in_run = false;
        for (at, c) in text.char_indices() {
            if hidden.get(at).copied().unwrap_or(false) {
                if !in_run {
                    out.push_str(REDACTED);
                }
                in_run = true;
            } else {
                in_run = false;
                out.push(c);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn li_na() -> wit::Customer {
        wit::Customer {
            id: 7,
            status: "active".into(),
            fields: vec![
                wit::Field {
                    name: "name".into(),
                    value: "Li Na".into(),
                },
                wit::Field {
                    name: "phone".into(),
                    value: "+86 138 0013 8000".into(),
                },
                wit::Field {
                    name: "tags".into(),
                    value: "vip customers".into(),
                },
            ],
            masked: vec!["tags".into()],
        }
    }

    #[test]
    fn a_shown_value_is_found_however_it_is_spelled() {
        let mut shown = Shown::default();
        assert!(!shown.holds("Li Na"));
        shown.customer(&li_na());
        assert!(shown.has_customer(7) && !shown.has_customer(8));
        assert!(shown.holds("called li-na today"));
        assert!(shown.holds("8613800138000"));
        assert!(shown.holds_bytes(b"\x05LI NA\x00"));
        // Masked: a rendering, not tracked.
        assert!(!shown.holds("vip customers"));
        assert_eq!(
            shown.redact("seen: LI NA, ok".into()),
            "seen: [redacted], ok"
        );
        assert_eq!(
            shown.redact("phone=+86 138-0013-8000!".into()),
            "phone=+[redacted]!"
        );
        assert_eq!(shown.redact("all good".into()), "all good");
        let mut short = Shown::default();
        short.value("Li");
        assert!(!short.holds("li"), "too short to track");
    }

    #[test]
    fn past_the_tracked_values_everything_counts() {
        let mut shown = Shown::default();
        for i in 0..=MAX_TRACKED {
            shown.value(&format!("value {i:06}"));
        }
        assert!(shown.holds("anything at all"));
    }
}
