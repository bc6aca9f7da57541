//! What a policy's `limits(actor)` returns, checked: budgets of rows,
//! distinct customers and lookup misses per window, and what happens to a
//! request past one.

use rhai::{Dynamic, Map};
use serde::{Deserialize, Serialize};

use super::{Measure, Span};

/// Budgets for one measure: at most this many per window (`None`: no
/// budget for that window).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caps {
    /// In the last 60 minutes.
    pub hour: Option<u64>,
    /// In the last 24 hours.
    pub day: Option<u64>,
    /// In the last 30 days.
    pub month: Option<u64>,
}

impl Caps {
    /// The budget of window `span`.
    pub fn get(&self, span: Span) -> Option<u64> {
        match span {
            Span::Hour => self.hour,
            Span::Day => self.day,
            Span::Month => self.month,
        }
    }

    /// Whether no window has a budget.
    pub fn is_empty(&self) -> bool {
        self.hour.is_none() && self.day.is_none() && self.month.is_none()
    }
}

/// What happens to a request a budget has no room for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Over {
    /// Refused whole, and an alert raised.
    #[default]
    Block,
    /// Served only with a fresh second-factor code from the actor
    /// (a step-up), and alerted.
    StepUp,
}

impl Over {
    /// Its name in scripts: `block` or `step_up`.
    pub fn as_str(self) -> &'static str {
        match self {
            Over::Block => "block",
            Over::StepUp => "step_up",
        }
    }
}

/// What a usual day holds for a role: more in one day is unusual and
/// raises an alert (not a refusal), until the principal has days enough of
/// its own for a baseline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usual {
    /// Customer records shown in a day.
    pub rows: Option<u64>,
    /// Lookups that found nothing in a day.
    pub misses: Option<u64>,
}

/// One actor's budgets, as its policy declares them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Customer records shown (reads, searches, lookups and exports alike).
    pub rows: Caps,
    /// Distinct customers shown.
    pub customers: Caps,
    /// Lookups that found nothing.
    pub misses: Caps,
    /// What happens to a request past a budget.
    pub over: Over,
    /// What a usual day holds, before the principal has a baseline.
    pub usual: Usual,
}

impl Limits {
    /// The budgets of `measure`.
    pub fn caps(&self, measure: Measure) -> &Caps {
        match measure {
            Measure::Rows => &self.rows,
            Measure::Customers => &self.customers,
            Measure::Misses => &self.misses,
        }
    }

    /// Reads what `limits(actor)` returned: `()` for no budgets, or a map
    /// of `rows`, `customers` and `misses` (each a map of `hour`, `day`
    /// and `month` to a count) and `over` (`"block"` or `"step_up"`). Anything else is an error that says what and where.
    pub fn from_script(value: Dynamic) -> Result<Option<Limits>, String> {
        if value.is_unit() {
            return Ok(None);
        }
        let type_name = value.type_name();
        let Some(map) = value.try_cast::<Map>() else {
            return Err(format!(
                "limits must return a map such as #{{ rows: #{{ day: 500 }} }} or () for none, not a value of type `{type_name}`"
            ));
        };
        let mut limits = Limits::default();
        for (key, value) in map {
            match key.as_str() {
                "rows" => limits.rows = caps("rows", value)?,
                "customers" => limits.customers = caps("customers", value)?,
                "misses" => limits.misses = caps("misses", value)?,
                "over" => limits.over = over(value)?,
                "usual" => limits.usual = usual(value)?,
                other => {
                    return Err(format!(
                        "limits: unknown key `{}`; use rows, customers, misses, over and usual",
                        clip(other)
                    ));
                }
            }
        }
        Ok(Some(limits))
    }
}

fn caps(measure: &str, value: Dynamic) -> Result<Caps, String> {
    let type_name = value.type_name();
    let Some(map) = value.try_cast::<Map>() else {
        return Err(format!(
            "limits: `{measure}` must be a map such as #{{ hour: 100, day: 500 }}, not a value of type `{type_name}`"
        ));
    };
    let mut caps = Caps::default();
    for (key, value) in map {
        let slot = match key.as_str() {
            "hour" => &mut caps.hour,
            "day" => &mut caps.day,
            "month" => &mut caps.month,
            other => {
                return Err(format!(
                    "limits: `{measure}` has an unknown window `{}`; use hour, day and month",
                    clip(other)
                ));
            }
        };
        *slot = Some(whole(measure, &key, &value)?);
    }
    Ok(caps)
}

fn usual(value: Dynamic) -> Result<Usual, String> {
    let type_name = value.type_name();
    let Some(map) = value.try_cast::<Map>() else {
        return Err(format!(
            "limits: `usual` must be a map such as #{{ rows: 300, misses: 10 }}, not a value of type `{type_name}`"
        ));
    };
    let mut usual = Usual::default();
    for (key, value) in map {
        let slot = match key.as_str() {
            "rows" => &mut usual.rows,
            "misses" => &mut usual.misses,
            other => {
                return Err(format!(
                    "limits: `usual` has an unknown key `{}`; use rows and misses",
                    clip(other)
                ));
            }
        };
        *slot = Some(whole("usual", &key, &value)?);
    }
    Ok(usual)
}

/// A count a script gave for `map.key`: a whole number of at least 0.
fn whole(map: &str, key: &str, value: &Dynamic) -> Result<u64, String> {
    (value.as_int().ok())
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| format!("limits: `{map}.{key}` must be a whole number of at least 0"))
}

fn over(value: Dynamic) -> Result<Over, String> {
    let text = value.into_immutable_string().ok();
    match text.as_deref() {
        Some("block") => Ok(Over::Block),
        Some("step_up") => Ok(Over::StepUp),
        _ => Err(r#"limits: `over` must be "block" or "step_up""#.to_string()),
    }
}

/// A key a script chose, cut short for an error message.
fn clip(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(script: &str) -> Result<Option<Limits>, String> {
        let engine = rhai::Engine::new_raw();
        let value: Dynamic = engine.eval(script).map_err(|e| e.to_string())?;
        Limits::from_script(value)
    }

    #[test]
    fn a_map_of_budgets_is_read_and_unit_means_none() {
        let limits = parse(
            r#"#{ rows: #{ hour: 10, day: 100 }, customers: #{ month: 50 }, misses: #{ hour: 3 }, over: "step_up", usual: #{ rows: 40 } }"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(limits.rows.hour, Some(10));
        assert_eq!(limits.rows.day, Some(100));
        assert_eq!(limits.rows.month, None);
        assert_eq!(limits.customers.month, Some(50));
        assert_eq!(limits.misses.hour, Some(3));
        assert_eq!(limits.over, Over::StepUp);
        assert_eq!((limits.usual.rows, limits.usual.misses), (Some(40), None));
        assert_eq!(parse("()").unwrap(), None);
        assert_eq!(parse("#{}").unwrap(), Some(Limits::default()));
    }

    #[test]
    fn malformed_budgets_are_refused_saying_what() {
        for (script, says) in [
            ("42", "must return a map"),
            ("#{ rows: 5 }", "`rows` must be a map"),
            ("#{ rows: #{ week: 5 } }", "unknown window `week`"),
            (
                "#{ rows: #{ day: -1 } }",
                "`rows.day` must be a whole number",
            ),
            (
                "#{ rows: #{ day: 1.5 } }",
                "`rows.day` must be a whole number",
            ),
            ("#{ row: #{ day: 1 } }", "unknown key `row`"),
            (r#"#{ over: "warn" }"#, "`over` must be"),
            ("#{ usual: #{ rows: -3 } }", "`usual.rows` must be"),
            ("#{ usual: #{ customers: 3 } }", "unknown key `customers`"),
        ] {
            let error = parse(script).unwrap_err();
            assert!(error.contains(says), "{script}: {error}");
        }
    }
}
