//! Dates and times as the interface's [`Timestamp`]: milliseconds since
//! 1970-01-01T00:00:00Z.
//!
//! Only the formats integrations actually send are parsed: RFC 3339
//! (`2026-11-20T10:00:00Z`, `2026-11-20T18:00:00.250+08:00`), plain dates
//! (`2026-11-20`) and compact dates (`20261120`). Plain and compact dates
//! mean midnight UTC. Years are 0000 to 9999, as RFC 3339 allows.
//!
//! ```
//! use custodian_sdk::time::{self, UtcOffset};
//!
//! let at = time::parse_rfc3339("2026-11-20T10:00:00Z")?;
//! assert_eq!(at, 1_795_168_800_000);
//! assert_eq!(time::parse("20261120")?, time::parse("2026-11-20T00:00:00Z")?);
//! assert_eq!(time::format_date(at, UtcOffset::UTC), "2026-11-20");
//! assert_eq!(time::format_hm(at, UtcOffset::CHINA), "18:00");
//! # Ok::<(), custodian_sdk::time::TimeError>(())
//! ```

use std::fmt;

use crate::Timestamp;

const MS_PER_SECOND: i64 = 1_000;
const MS_PER_MINUTE: i64 = 60 * MS_PER_SECOND;
const MS_PER_DAY: i64 = 24 * 60 * MS_PER_MINUTE;

/// A text that is not a date or time this module understands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeError {
    /// The text does not have the expected shape.
    Syntax {
        /// The text given.
        input: String,
        /// What was expected, with an example.
        expected: &'static str,
    },
    /// The shape is right but a part is out of range (month 13, 31 April).
    Range {
        /// The text given.
        input: String,
        /// The part out of range.
        part: &'static str,
    },
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax { input, expected } => {
                write!(f, "invalid date or time `{input}`: expected {expected}")
            }
            Self::Range { input, part } => {
                write!(f, "invalid date or time `{input}`: {part} out of range")
            }
        }
    }
}

impl std::error::Error for TimeError {}

/// A fixed offset from UTC, used to render local dates and times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcOffset {
    minutes: i32,
}

impl UtcOffset {
    /// UTC itself.
    pub const UTC: Self = Self { minutes: 0 };
    /// China Standard Time, UTC+08:00 (no daylight saving).
    pub const CHINA: Self = Self { minutes: 8 * 60 };

    /// An offset of whole minutes east of UTC (negative west), clamped to
    /// ±23:59.
    #[must_use]
    pub const fn minutes(minutes: i32) -> Self {
        let limit = 24 * 60 - 1;
        let minutes = if minutes > limit {
            limit
        } else if minutes < -limit {
            -limit
        } else {
            minutes
        };
        Self { minutes }
    }

    /// An offset of whole hours east of UTC (negative west).
    #[must_use]
    pub const fn hours(hours: i32) -> Self {
        Self::minutes(hours.saturating_mul(60))
    }
}

/// Parses an RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
///
/// `t`, `z` and a space in place of `T` are accepted (RFC 3339 allows
/// them). Fractions finer than a millisecond are truncated; a leap second
/// (`:60`) counts as the first second of the next minute.
///
/// # Errors
///
/// [`TimeError`] when the text is not such a date-time or a part is out of
/// range.
pub fn parse_rfc3339(input: &str) -> Result<Timestamp, TimeError> {
    const EXPECTED: &str = "RFC 3339 like `2026-11-20T10:00:00Z` or `2026-11-20T18:00:00+08:00`";
    let syntax = || TimeError::Syntax {
        input: input.to_owned(),
        expected: EXPECTED,
    };
    let mut c = Cursor::new(input);
    let date = c.date().ok_or_else(syntax)?;
    if !matches!(c.byte(), Some(b'T' | b't' | b' ')) {
        return Err(syntax());
    }
    let hour = c.digits(2).ok_or_else(syntax)?;
    c.expect(b':').ok_or_else(syntax)?;
    let minute = c.digits(2).ok_or_else(syntax)?;
    c.expect(b':').ok_or_else(syntax)?;
    let second = c.digits(2).ok_or_else(syntax)?;
    let mut millis = 0;
    if c.peek() == Some(b'.') {
        c.byte();
        millis = c.fraction_millis().ok_or_else(syntax)?;
    }
    let offset_minutes = match c.byte() {
        Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let oh = c.digits(2).ok_or_else(syntax)?;
            c.expect(b':').ok_or_else(syntax)?;
            let om = c.digits(2).ok_or_else(syntax)?;
            if oh > 23 || om > 59 {
                return Err(range(input, "offset"));
            }
            let minutes = i64::from(oh * 60 + om);
            if sign == b'-' { -minutes } else { minutes }
        }
        _ => return Err(syntax()),
    };
    if !c.is_empty() {
        return Err(syntax());
    }
    if hour > 23 {
        return Err(range(input, "hour"));
    }
    if minute > 59 {
        return Err(range(input, "minute"));
    }
    if second > 60 {
        return Err(range(input, "second"));
    }
    let day = checked_days(input, date)?;
    Ok(day * MS_PER_DAY
        + i64::from(hour) * 60 * MS_PER_MINUTE
        + i64::from(minute) * MS_PER_MINUTE
        + i64::from(second) * MS_PER_SECOND
        + millis
        - offset_minutes * MS_PER_MINUTE)
}

/// Parses a compact date `YYYYMMDD` (`20261120`) as midnight UTC.
///
/// # Errors
///
/// [`TimeError`] when the text is not eight digits of a real date.
pub fn parse_yyyymmdd(input: &str) -> Result<Timestamp, TimeError> {
    let mut c = Cursor::new(input);
    let date = (|| Some((c.digits(4)?, c.digits(2)?, c.digits(2)?)))();
    match date {
        Some(date) if c.is_empty() => Ok(checked_days(input, date)? * MS_PER_DAY),
        _ => Err(TimeError::Syntax {
            input: input.to_owned(),
            expected: "a compact date like `20261120`",
        }),
    }
}

/// Parses a plain date `YYYY-MM-DD` (`2026-11-20`) as midnight UTC.
///
/// # Errors
///
/// [`TimeError`] when the text is not such a date or the date does not exist.
pub fn parse_date(input: &str) -> Result<Timestamp, TimeError> {
    let mut c = Cursor::new(input);
    match c.date() {
        Some(date) if c.is_empty() => Ok(checked_days(input, date)? * MS_PER_DAY),
        _ => Err(TimeError::Syntax {
            input: input.to_owned(),
            expected: "a date like `2026-11-20`",
        }),
    }
}

/// Parses any of the accepted shapes: RFC 3339, `YYYY-MM-DD` or
/// `YYYYMMDD` (the last two as midnight UTC).
///
/// # Errors
///
/// [`TimeError`] from the parser the text's length selects.
pub fn parse(input: &str) -> Result<Timestamp, TimeError> {
    match input.len() {
        8 => parse_yyyymmdd(input),
        10 => parse_date(input),
        _ => parse_rfc3339(input),
    }
}

/// The date of `at` as `YYYY-MM-DD`, at the given offset from UTC.
#[must_use]
pub fn format_date(at: Timestamp, offset: UtcOffset) -> String {
    let (y, m, d) = civil_from_days(local(at, offset).div_euclid(MS_PER_DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The time of day of `at` as `HH:MM`, at the given offset from UTC.
#[must_use]
pub fn format_hm(at: Timestamp, offset: UtcOffset) -> String {
    let minutes = local(at, offset).rem_euclid(MS_PER_DAY) / MS_PER_MINUTE;
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// `at` as RFC 3339 in UTC with milliseconds: `2026-11-20T10:00:00.000Z`.
#[must_use]
pub fn format_rfc3339(at: Timestamp) -> String {
    let ms = at.rem_euclid(MS_PER_DAY);
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        format_date(at, UtcOffset::UTC),
        ms / (60 * MS_PER_MINUTE),
        ms / MS_PER_MINUTE % 60,
        ms / MS_PER_SECOND % 60,
        ms % MS_PER_SECOND
    )
}

fn local(at: Timestamp, offset: UtcOffset) -> i64 {
    at.saturating_add(i64::from(offset.minutes) * MS_PER_MINUTE)
}

fn range(input: &str, part: &'static str) -> TimeError {
    TimeError::Range {
        input: input.to_owned(),
        part,
    }
}

/// Days since 1970-01-01 of a validated civil date.
fn checked_days(input: &str, (y, m, d): (u32, u32, u32)) -> Result<i64, TimeError> {
    if !(1..=12).contains(&m) {
        return Err(range(input, "month"));
    }
    if d == 0 || d > days_in_month(y, m) {
        return Err(range(input, "day"));
    }
    Ok(days_from_civil(i64::from(y), m, d))
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's `days_from_civil` and `civil_from_days`: exact for the
// proleptic Gregorian calendar, no tables.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A forward-only reader over ASCII bytes.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn new(input: &'a str) -> Self {
        Self {
            rest: input.as_bytes(),
        }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.byte()? == want).then_some(())
    }

    /// Exactly `n` decimal digits.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let (digits, rest) = self.rest.split_at_checked(n)?;
        let mut value = 0;
        for &b in digits {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(b - b'0');
        }
        self.rest = rest;
        Some(value)
    }

    /// `YYYY-MM-DD`, not yet range-checked.
    fn date(&mut self) -> Option<(u32, u32, u32)> {
        let y = self.digits(4)?;
        self.expect(b'-')?;
        let m = self.digits(2)?;
        self.expect(b'-')?;
        let d = self.digits(2)?;
        Some((y, m, d))
    }

    /// One or more digits after the decimal point, as whole milliseconds.
    fn fraction_millis(&mut self) -> Option<i64> {
        let len = self.rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let (digits, rest) = self.rest.split_at_checked(len)?;
        if digits.is_empty() {
            return None;
        }
        self.rest = rest;
        let mut millis = 0;
        for i in 0..3 {
            let digit = digits.get(i).map_or(0, |b| i64::from(b - b'0'));
            millis = millis * 10 + digit;
        }
        Some(millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_in_utc_and_with_offsets() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2026-11-20T10:00:00Z"), Ok(1_795_168_800_000));
        assert_eq!(
            parse_rfc3339("2026-11-20T18:00:00+08:00"),
            Ok(1_795_168_800_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-20T05:30:00-04:30"),
            Ok(1_795_168_800_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-20t10:00:00.25z"),
            Ok(1_795_168_800_250)
        );
        assert_eq!(
            parse_rfc3339("2026-11-20 10:00:00.123456789Z"),
            Ok(1_795_168_800_123)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59.999Z"), Ok(-1));
        assert_eq!(
            parse_rfc3339("2016-12-31T23:59:60Z"),
            parse_rfc3339("2017-01-01T00:00:00Z")
        );
    }

    #[test]
    fn rfc3339_rejects_bad_shapes_and_ranges() {
        for bad in [
            "",
            "2026-11-20",
            "2026-11-20T10:00Z",
            "2026-11-20T10:00:00",
            "2026-11-20T10:00:00.Z",
            "2026-11-20T10:00:00+0800",
            "2026-11-20T10:00:00Zjunk",
            "26-11-20T10:00:00Z",
            "2026-11-20X10:00:00Z",
            "２０26-11-20T10:00:00Z",
        ] {
            assert!(
                matches!(parse_rfc3339(bad), Err(TimeError::Syntax { .. })),
                "{bad}"
            );
        }
        for (bad, part) in [
            ("2026-13-01T00:00:00Z", "month"),
            ("2026-00-01T00:00:00Z", "month"),
            ("2026-04-31T00:00:00Z", "day"),
            ("2025-02-29T00:00:00Z", "day"),
            ("2026-11-20T24:00:00Z", "hour"),
            ("2026-11-20T10:60:00Z", "minute"),
            ("2026-11-20T10:00:61Z", "second"),
            ("2026-11-20T10:00:00+24:00", "offset"),
        ] {
            assert_eq!(parse_rfc3339(bad), Err(range(bad, part)), "{bad}");
        }
        assert_eq!(
            parse_rfc3339("2026-13-01T00:00:00Z")
                .map_err(|e| e.to_string())
                .unwrap_err(),
            "invalid date or time `2026-13-01T00:00:00Z`: month out of range"
        );
    }

    #[test]
    fn dates_are_midnight_utc() {
        let midnight = parse_rfc3339("2026-11-20T00:00:00Z");
        assert_eq!(parse_yyyymmdd("20261120"), midnight);
        assert_eq!(parse_date("2026-11-20"), midnight);
        assert_eq!(parse("20261120"), midnight);
        assert_eq!(parse("2026-11-20"), midnight);
        assert_eq!(parse("2024-02-29"), parse_rfc3339("2024-02-29T00:00:00Z"));
        assert_eq!(parse_date("2000-02-29").map(|_| ()), Ok(()));
        assert!(matches!(
            parse_date("1900-02-29"),
            Err(TimeError::Range { part: "day", .. })
        ));
        for bad in ["2026112", "2026-1120", "2026112O", "+2026112"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_round_trip_every_day_of_four_centuries() {
        // 0000-03-01 .. 9999-12-31 would be slow in debug; four centuries
        // cover every leap-year rule.
        let start = days_from_civil(1900, 1, 1);
        for day in start..start + 146_097 {
            let at = day * MS_PER_DAY;
            let text = format_date(at, UtcOffset::UTC);
            assert_eq!(parse_date(&text), Ok(at), "{text}");
        }
    }

    #[test]
    fn formats_at_offsets() {
        let at = parse_rfc3339("2026-11-20T20:05:09.042Z").unwrap_or_default();
        assert_eq!(format_date(at, UtcOffset::UTC), "2026-11-20");
        assert_eq!(format_date(at, UtcOffset::CHINA), "2026-11-21");
        assert_eq!(format_hm(at, UtcOffset::CHINA), "04:05");
        assert_eq!(format_hm(at, UtcOffset::hours(-5)), "15:05");
        assert_eq!(format_rfc3339(at), "2026-11-20T20:05:09.042Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(UtcOffset::minutes(10_000), UtcOffset::minutes(1439));
    }
}
