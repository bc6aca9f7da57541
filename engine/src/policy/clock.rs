//! `now` in `limits(p, now)`: the engine's clock as a script reads it, at
//! a quarter-hour's resolution (so a principal's budgets can be remembered
//! for a quarter of an hour), in the time zone the script names.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Timelike, Utc};
use rhai::{EvalAltResult, INT, ImmutableString};

/// Seconds in the resolution scripts see the clock at.
pub(crate) const QUARTER_HOUR: i64 = 15 * 60;

/// `now`: the start of the current quarter-hour, in UTC.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScriptNow {
    at: DateTime<Utc>,
}

impl ScriptNow {
    /// The quarter-hour `unix_seconds` falls in.
    pub(crate) fn at(unix_seconds: i64) -> ScriptNow {
        let start = unix_seconds - unix_seconds.rem_euclid(QUARTER_HOUR);
        ScriptNow {
            at: DateTime::from_timestamp(start, 0).unwrap_or_default(),
        }
    }
}

/// `now.in_zone("+08:00")`: the same moment in a time zone.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LocalNow {
    at: DateTime<FixedOffset>,
}

type Script<T> = Result<T, Box<EvalAltResult>>;

fn in_zone(now: &mut ScriptNow, zone: ImmutableString) -> Script<LocalNow> {
    let wrong = || -> Box<EvalAltResult> {
        format!(
            "in_zone takes an offset from UTC such as \"+08:00\" or \"-05:30\", in quarter-hours, not `{}`",
            zone.chars().take(20).collect::<String>()
        )
        .into()
    };
    let offset: FixedOffset = zone.parse().map_err(|_| wrong())?;
    if offset.local_minus_utc() % 900 != 0 {
        return Err(wrong());
    }
    Ok(LocalNow {
        at: now.at.with_timezone(&offset),
    })
}

fn weekday(local: &mut LocalNow) -> ImmutableString {
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let index = local.at.weekday().num_days_from_monday() as usize;
    days.get(index).copied().unwrap_or("mon").into()
}

/// Whole days from today (in the zone) to `date` (`YYYY-MM-DD`): negative
/// once it has passed.
fn days_until(local: &mut LocalNow, date: ImmutableString) -> Script<INT> {
    let day =
        NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d").map_err(|_| -> Box<EvalAltResult> {
            format!(
                "days_until takes a date as YYYY-MM-DD, not `{}`",
                date.chars().take(20).collect::<String>()
            )
            .into()
        })?;
    Ok(day.signed_duration_since(local.at.date_naive()).num_days())
}

/// Registers `now` and what a script can read of it.
pub(super) fn register(engine: &mut rhai::Engine) {
    engine
        .register_type_with_name::<ScriptNow>("Now")
        .register_fn("in_zone", in_zone)
        .register_type_with_name::<LocalNow>("LocalTime")
        .register_get("hour", |l: &mut LocalNow| INT::from(l.at.hour()))
        .register_get("weekday", weekday)
        .register_get("date", |l: &mut LocalNow| -> ImmutableString {
            l.at.format("%Y-%m-%d").to_string().into()
        })
        .register_fn("days_until", days_until);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(script: &str, unix: i64) -> Result<rhai::Dynamic, String> {
        let mut engine = rhai::Engine::new_raw();
        register(&mut engine);
        let mut scope = rhai::Scope::new();
        scope.push("now", ScriptNow::at(unix));
        engine
            .eval_with_scope::<rhai::Dynamic>(&mut scope, script)
            .map_err(|e| e.to_string())
    }

    // 2026-03-02 13:07:00 UTC, a Monday: 21:07 in Beijing.
    const T: i64 = 1_772_456_820;

    #[test]
    fn the_clock_reads_in_the_zone_the_script_names() {
        assert_eq!(
            run(r#"now.in_zone("+08:00").hour"#, T).unwrap().as_int(),
            Ok(21)
        );
        assert_eq!(
            run(r#"now.in_zone("+00:00").hour"#, T).unwrap().as_int(),
            Ok(13)
        );
        let day = run(r#"now.in_zone("+08:00").weekday"#, T).unwrap();
        assert_eq!(day.into_string().unwrap(), "mon");
        let date = run(r#"now.in_zone("-14:00").date"#, T).unwrap();
        assert_eq!(date.into_string().unwrap(), "2026-03-01");
        let left = run(r#"now.in_zone("+08:00").days_until("2026-03-12")"#, T).unwrap();
        assert_eq!(left.as_int(), Ok(10));
        let gone = run(r#"now.in_zone("+08:00").days_until("2026-02-20")"#, T).unwrap();
        assert_eq!(gone.as_int(), Ok(-10));
    }

    #[test]
    fn bad_zones_and_dates_are_errors_that_say_what() {
        for (script, says) in [
            (r#"now.in_zone("Beijing").hour"#, "offset from UTC"),
            (r#"now.in_zone("+08:07").hour"#, "quarter-hours"),
            (
                r#"now.in_zone("+08:00").days_until("12/03/2026")"#,
                "YYYY-MM-DD",
            ),
        ] {
            let error = run(script, T).unwrap_err();
            assert!(error.contains(says), "{script}: {error}");
        }
    }

    #[test]
    fn scripts_see_the_start_of_the_quarter_hour() {
        let start = T - T.rem_euclid(QUARTER_HOUR);
        for t in [start, start + 1, start + QUARTER_HOUR - 1] {
            assert_eq!(ScriptNow::at(t).at.timestamp(), start);
        }
    }
}
