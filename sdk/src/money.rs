//! Money as integer minor units (cents, fen), parsed exactly from decimal
//! text: no floating point anywhere.
//!
//! ```
//! use custodian_sdk::money;
//!
//! assert_eq!(money::parse_minor("2999.00", 2)?, 299_900);
//! assert_eq!(money::parse_in("2999", "CNY")?, 299_900);
//! assert_eq!(money::parse_in("1500", "JPY")?, 1_500);
//! assert_eq!(money::format_minor(299_900, 2), "2999.00");
//! assert!(money::parse_minor("19.999", 2).is_err()); // would lose a tenth of a cent
//! # Ok::<(), custodian_sdk::money::MoneyError>(())
//! ```

use std::fmt;

/// A text that is not an exact amount.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MoneyError {
    /// Not a plain decimal number (`-12.50`); thousands separators,
    /// exponents and currency symbols are refused.
    Syntax {
        /// The text given.
        input: String,
    },
    /// More non-zero decimals than the currency has: converting would round.
    TooPrecise {
        /// The text given.
        input: String,
        /// The decimals the currency allows.
        decimals: u32,
    },
    /// The amount does not fit in 64-bit minor units.
    Overflow {
        /// The text given.
        input: String,
    },
}

impl fmt::Display for MoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax { input } => write!(
                f,
                "invalid amount `{input}`: expected a decimal number like `2999.00`"
            ),
            Self::TooPrecise { input, decimals } => write!(
                f,
                "invalid amount `{input}`: more than {decimals} decimals would be rounded"
            ),
            Self::Overflow { input } => write!(f, "invalid amount `{input}`: too large"),
        }
    }
}

impl std::error::Error for MoneyError {}

/// Parses a decimal amount into minor units with `decimals` digits after the
/// point: `parse_minor("2999.00", 2) == Ok(299_900)`.
///
/// Accepts an optional sign, digits, and an optional point followed by
/// digits; surrounding ASCII whitespace is ignored. Extra decimals are
/// accepted only when they are zeros (`"1.500"` with 2 decimals is 150).
///
/// # Errors
///
/// [`MoneyError`] for anything else, for amounts that would need rounding,
/// and for amounts beyond `i64` minor units.
pub fn parse_minor(amount: &str, decimals: u32) -> Result<i64, MoneyError> {
    let input = amount;
    let amount = amount.trim_ascii();
    let syntax = || MoneyError::Syntax {
        input: input.to_owned(),
    };
    let overflow = || MoneyError::Overflow {
        input: input.to_owned(),
    };
    let (negative, unsigned) = match amount.as_bytes().first() {
        Some(b'-') => (true, amount.get(1..).unwrap_or_default()),
        Some(b'+') => (false, amount.get(1..).unwrap_or_default()),
        _ => (false, amount),
    };
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) if !fraction.is_empty() => (whole, fraction),
        Some(_) => return Err(syntax()),
        None => (unsigned, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(syntax());
    }
    let scale = 10_i64.checked_pow(decimals).ok_or_else(overflow)?;
    let mut minor = digits_value(whole)
        .and_then(|w| w.checked_mul(scale))
        .ok_or_else(overflow)?;
    let kept = fraction.len().min(decimals as usize);
    let (kept_digits, dropped) = fraction.split_at(kept);
    if dropped.bytes().any(|b| b != b'0') {
        return Err(MoneyError::TooPrecise {
            input: input.to_owned(),
            decimals,
        });
    }
    if !kept_digits.is_empty() {
        let pad = 10_i64.checked_pow(decimals - kept as u32);
        let fraction_minor = digits_value(kept_digits)
            .zip(pad)
            .and_then(|(f, pad)| f.checked_mul(pad))
            .ok_or_else(overflow)?;
        minor = minor.checked_add(fraction_minor).ok_or_else(overflow)?;
    }
    Ok(if negative { -minor } else { minor })
}

/// Parses an amount in a currency (ISO 4217 code, any case) with the
/// currency's own decimals: see [`decimals`].
///
/// # Errors
///
/// As [`parse_minor`].
pub fn parse_in(amount: &str, currency: &str) -> Result<i64, MoneyError> {
    parse_minor(amount, decimals(currency))
}

/// The number of minor-unit digits of an ISO 4217 currency: 0 for `JPY`,
/// `KRW`, `VND` and the like, 3 for `BHD`, `KWD`, `OMR` and the like, 4 for
/// `CLF`, and 2 for everything else (`CNY`, `USD`, `EUR`, unknown codes).
#[must_use]
pub fn decimals(currency: &str) -> u32 {
    const ZERO: [&str; 17] = [
        "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
        "VUV", "XAF", "XOF", "XPF",
    ];
    const THREE: [&str; 7] = ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
    const FOUR: [&str; 2] = ["CLF", "UYW"];
    let is = |list: &[&str]| list.iter().any(|c| c.eq_ignore_ascii_case(currency));
    if is(&ZERO) {
        0
    } else if is(&THREE) {
        3
    } else if is(&FOUR) {
        4
    } else {
        2
    }
}

/// Renders minor units as a decimal amount: `format_minor(-1250, 2)` is
/// `"-12.50"`.
#[must_use]
pub fn format_minor(minor: i64, decimals: u32) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let magnitude = minor.unsigned_abs();
    match 10_u64.checked_pow(decimals) {
        Some(scale) if decimals > 0 => {
            let width = decimals as usize;
            format!("{sign}{}.{:0width$}", magnitude / scale, magnitude % scale)
        }
        // No decimals, or more than a u64 can scale: every digit is a
        // fraction digit then, and such a currency does not exist.
        _ => format!("{sign}{magnitude}"),
    }
}

fn digits_value(digits: &str) -> Option<i64> {
    digits.bytes().try_fold(0_i64, |acc, b| {
        acc.checked_mul(10)?.checked_add(i64::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_amounts() {
        for (text, decimals, minor) in [
            ("2999.00", 2, 299_900),
            ("2999", 2, 299_900),
            ("2999.5", 2, 299_950),
            ("0.01", 2, 1),
            ("19.99", 2, 1_999),
            ("1.500", 2, 150),
            ("-12.50", 2, -1_250),
            ("+7", 2, 700),
            (" 3.10\n", 2, 310),
            ("1500", 0, 1_500),
            ("1500.000", 0, 1_500),
            ("1.234", 3, 1_234),
            ("0", 2, 0),
            ("-0.00", 2, 0),
            ("92233720368547758.07", 2, i64::MAX),
            ("00042.10", 2, 4_210),
        ] {
            assert_eq!(parse_minor(text, decimals), Ok(minor), "{text:?}");
        }
    }

    #[test]
    fn refuses_what_would_round_or_is_not_a_number() {
        for text in [
            "", "-", ".5", "5.", "1,299.00", "1e3", "¥12", "12 CNY", "--1", "1.2.3", "0x10", "NaN",
        ] {
            assert_eq!(
                parse_minor(text, 2),
                Err(MoneyError::Syntax {
                    input: text.to_owned()
                }),
                "{text:?}"
            );
        }
        assert_eq!(
            parse_minor("19.999", 2),
            Err(MoneyError::TooPrecise {
                input: "19.999".to_owned(),
                decimals: 2
            })
        );
        for text in ["92233720368547758.08", "99999999999999999999"] {
            assert!(
                matches!(parse_minor(text, 2), Err(MoneyError::Overflow { .. })),
                "{text}"
            );
        }
        assert!(matches!(
            parse_minor("1", 19),
            Err(MoneyError::Overflow { .. })
        ));
        assert_eq!(
            parse_minor("1,299.00", 2).map_err(|e| e.to_string()),
            Err("invalid amount `1,299.00`: expected a decimal number like `2999.00`".to_owned())
        );
    }

    #[test]
    fn currencies_have_their_own_decimals() {
        assert_eq!(parse_in("2999.00", "CNY"), Ok(299_900));
        assert_eq!(parse_in("2999.00", "cny"), Ok(299_900));
        assert_eq!(parse_in("1500", "JPY"), Ok(1_500));
        assert!(parse_in("1500.5", "JPY").is_err());
        assert_eq!(parse_in("1.5", "KWD"), Ok(1_500));
        assert_eq!(parse_in("1", "XYZ"), Ok(100));
    }

    #[test]
    fn formats_what_it_parses() {
        for (minor, decimals, text) in [
            (299_900, 2, "2999.00"),
            (1, 2, "0.01"),
            (-1_250, 2, "-12.50"),
            (1_500, 0, "1500"),
            (1_234, 3, "1.234"),
            (i64::MIN, 2, "-92233720368547758.08"),
        ] {
            assert_eq!(format_minor(minor, decimals), text);
            if minor != i64::MIN {
                assert_eq!(parse_minor(text, decimals), Ok(minor));
            }
        }
    }
}
