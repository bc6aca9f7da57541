//! TOTP second factor (RFC 6238) and recovery codes.
//!
//! Pure functions, no storage: the login flow keeps the secret, the last
//! accepted time step and the recovery-code hashes. Codes are computed by
//! totp-rs; this module only chooses the parameters, the drift window and
//! the replay rule.

use totp_rs::{Algorithm, TOTP};
use zeroize::{Zeroize, Zeroizing};

/// The slot a principal's TOTP secret is sealed in (bound into its AAD).
pub(crate) fn secret_slot(name: &str) -> String {
    format!("totp:{name}")
}

/// Seconds per TOTP time step (RFC 6238's recommended 30).
pub(crate) const TOTP_STEP_SECS: u64 = 30;
/// Digits in a TOTP code, what authenticator apps show by default.
pub(crate) const TOTP_DIGITS: usize = 6;
/// Steps of clock drift accepted either side of the current step (RFC 6238
/// §5.2 recommends at most one).
pub(crate) const TOTP_DRIFT_STEPS: u64 = 1;
/// Bytes in a TOTP secret: 160 bits, the HMAC-SHA-1 output size RFC 4226
/// recommends.
pub(crate) const TOTP_SECRET_BYTES: usize = 20;

/// Fewest secret bytes [`otpauth_uri`] accepts: RFC 4226's 128 bits.
const MIN_SECRET_BYTES: usize = 16;

/// Recovery codes issued at a time.
pub(crate) const RECOVERY_CODES: usize = 10;
/// Crockford's base32 alphabet in lowercase: no `i`, `l`, `o` or `u`, so no
/// symbol can be misread as another.
const RECOVERY_ALPHABET: [u8; 32] = *b"0123456789abcdefghjkmnpqrstvwxyz";
/// Symbols in a recovery code: 10 × 5 bits = 50 bits of entropy.
const RECOVERY_SYMBOLS: usize = 10;

/// A fresh random TOTP secret of [`TOTP_SECRET_BYTES`] bytes.
pub(crate) fn new_secret() -> Zeroizing<Vec<u8>> {
    let bytes = Zeroizing::new(crate::crypto::random_bytes::<TOTP_SECRET_BYTES>());
    Zeroizing::new(bytes.to_vec())
}

/// The Key Uri Format URI an authenticator app (Google Authenticator, Authy,
/// 1Password, ...) scans to enrol:
/// `otpauth://totp/Issuer:account?secret=BASE32&issuer=Issuer&algorithm=SHA1&digits=6&period=30`,
/// with issuer and account percent-encoded.
///
/// Refused when the secret is shorter than 128 bits (RFC 4226's minimum) or
/// the account or issuer contains `:`, which the label uses as separator.
/// The URI holds the secret: show it, never log it.
pub(crate) fn otpauth_uri(secret: &[u8], account: &str, issuer: &str) -> Result<String, String> {
    if account.contains(':') {
        return Err(format!(
            "invalid authenticator account name `{account}`: leave out `:`"
        ));
    }
    if issuer.contains(':') {
        return Err(format!(
            "invalid authenticator issuer `{issuer}`: leave out `:`"
        ));
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "totp secret is too short: use at least {MIN_SECRET_BYTES} bytes"
        ));
    }
    // An empty issuer would give the label `:account`; apps then show an
    // empty issuer, so leave it out instead.
    let issuer = (!issuer.is_empty()).then(|| issuer.to_owned());
    let totp = TOTP::new(
        Algorithm::SHA1,
        TOTP_DIGITS,
        drift_as_skew(),
        TOTP_STEP_SECS,
        secret.to_vec(),
        issuer,
        account.to_owned(),
    )
    .map_err(|e| format!("cannot build authenticator uri: {e}"))?;
    let totp = Wiped(totp);
    // totp-rs leaves out parameters equal to the defaults; some apps have
    // mishandled missing ones, so spell them all out.
    Ok(format!(
        "{}&algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_STEP_SECS}",
        totp.0.get_url()
    ))
}

/// The 6-digit code (zero-padded) for the time step containing `unix_secs`.
pub(crate) fn code_at(secret: &[u8], unix_secs: u64) -> String {
    generator(secret, TOTP_DIGITS).0.generate(unix_secs)
}

/// Checks `code` against the steps `unix_secs / 30` − 1 to + 1 and returns
/// the matching step, to be stored as the next call's `last_used_step`.
///
/// Whitespace is ignored (`123 456`); anything else but exactly six ASCII
/// digits fails. A step not strictly after `last_used_step` never matches,
/// so each code is accepted once. Every step in the window is compared, in
/// constant time, whether or not an earlier one matched.
pub(crate) fn verify(
    secret: &[u8],
    code: &str,
    unix_secs: u64,
    last_used_step: Option<u64>,
) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != TOTP_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = unix_secs / TOTP_STEP_SECS;
    let mut matched = None;
    for step in now.saturating_sub(TOTP_DRIFT_STEPS)..=now.saturating_add(TOTP_DRIFT_STEPS) {
        let Some(step_start) = step.checked_mul(TOTP_STEP_SECS) else {
            continue;
        };
        let expected = code_at(secret, step_start);
        let fresh = last_used_step.is_none_or(|last| step > last);
        // Ascending order: should two steps match, the later one is kept,
        // which retires the most of the window.
        if constant_time_eq(expected.as_bytes(), code.as_bytes()) && fresh {
            matched = Some(step);
        }
    }
    matched
}

/// [`RECOVERY_CODES`] fresh recovery codes, each `xxxxx-xxxxx` in
/// lowercase Crockford base32 (50 bits of entropy).
pub(crate) fn new_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect()
}

/// A recovery code as typed, reduced to the form that was hashed:
/// lowercase, without spaces or dashes, and with the letters Crockford
/// base32 reads as digits (`o` as `0`, `i` and `l` as `1`) mapped, so a
/// misread code still works.
pub(crate) fn normalize_recovery(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'o' => '0',
            'i' | 'l' => '1',
            other => other,
        })
        .collect()
}

/// Keyed BLAKE3 of the normalized recovery code; `key` comes from the
/// engine's keyring, so a stolen table of hashes cannot be brute-forced
/// offline without it.
pub(crate) fn hash_recovery(key: &[u8; 32], code: &str) -> [u8; 32] {
    let normalized = Zeroizing::new(normalize_recovery(code));
    *blake3::keyed_hash(key, normalized.as_bytes()).as_bytes()
}

/// A totp-rs generator whose copy of the secret is wiped when dropped
/// (totp-rs only does that itself with its `zeroize` feature, which this
/// crate does not enable).
struct Wiped(TOTP);

impl Drop for Wiped {
    fn drop(&mut self) {
        self.0.secret.zeroize();
    }
}

/// A SHA-1 generator for `secret` with `digits` digits. Unchecked because
/// codes must be computable for any stored secret; length rules apply when
/// a secret is issued ([`otpauth_uri`]).
fn generator(secret: &[u8], digits: usize) -> Wiped {
    Wiped(TOTP::new_unchecked(
        Algorithm::SHA1,
        digits,
        drift_as_skew(),
        TOTP_STEP_SECS,
        secret.to_vec(),
        None,
        String::new(),
    ))
}

/// totp-rs stores the drift as `u8`; ours is 1, so this never saturates.
fn drift_as_skew() -> u8 {
    u8::try_from(TOTP_DRIFT_STEPS).unwrap_or(u8::MAX)
}

/// Byte equality whose time depends only on the lengths (which are public:
/// always six digits here).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // black_box discourages the optimizer from turning the fold into an
    // early exit.
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)));
    diff == 0
}

/// One recovery code, `xxxxx-xxxxx`.
#[expect(
    clippy::indexing_slicing,
    reason = "the index is masked to 0..32, the alphabet's length"
)]
fn new_recovery_code() -> String {
    let bytes = Zeroizing::new(crate::crypto::random_bytes::<RECOVERY_SYMBOLS>());
    let mut code = String::with_capacity(RECOVERY_SYMBOLS + 1);
    for (i, byte) in bytes.iter().enumerate() {
        if i == RECOVERY_SYMBOLS / 2 {
            code.push('-');
        }
        // 256 is a multiple of 32, so the low five bits are uniform.
        code.push(char::from(RECOVERY_ALPHABET[usize::from(byte & 0x1f)]));
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B's SHA-1 seed.
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc6238_sha1_test_vectors() {
        // Appendix B, SHA-1 column: (T, 8-digit TOTP).
        let vectors: [(u64, &str); 6] = [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        let eight = generator(RFC_SECRET, 8);
        for (t, expected) in vectors {
            let code8 = eight.0.generate(t);
            assert_eq!(code8, expected, "8 digits at T = {t}");
            // RFC 4226 §5.3 truncation takes the 31-bit value mod 10^digits,
            // so the 6-digit code is the 8-digit one mod 10^6: its last six
            // digits, zero padding included (`07081804` gives `081804`).
            assert_eq!(code_at(RFC_SECRET, t), code8[2..], "6 digits at T = {t}");
        }
    }

    #[test]
    fn verify_accepts_one_step_of_drift() {
        let s = 1_111_111_109 / TOTP_STEP_SECS;
        let code = code_at(RFC_SECRET, s * TOTP_STEP_SECS);
        for at in [s - 1, s, s + 1] {
            assert_eq!(
                verify(RFC_SECRET, &code, at * TOTP_STEP_SECS + 7, None),
                Some(s),
                "checked at step {at}"
            );
        }
        for at in [s - 2, s + 2] {
            assert_eq!(
                verify(RFC_SECRET, &code, at * TOTP_STEP_SECS, None),
                None,
                "checked at step {at}"
            );
        }
    }

    #[test]
    fn verify_accepts_a_code_once() {
        let now = 2_000_000_000;
        let code = code_at(RFC_SECRET, now);
        let step = verify(RFC_SECRET, &code, now, None).unwrap();
        assert_eq!(step, now / TOTP_STEP_SECS);
        assert_eq!(verify(RFC_SECRET, &code, now, Some(step)), None);
        assert_eq!(verify(RFC_SECRET, &code, now + 30, Some(step)), None);
        // The next step's code is still welcome.
        let next = code_at(RFC_SECRET, now + 30);
        assert_eq!(
            verify(RFC_SECRET, &next, now + 30, Some(step)),
            Some(step + 1)
        );
        // An older last-used step does not block the current one.
        assert_eq!(verify(RFC_SECRET, &code, now, Some(step - 1)), Some(step));
    }

    #[test]
    fn verify_ignores_whitespace() {
        let now = 1_234_567_890;
        let code = code_at(RFC_SECRET, now);
        let spaced = format!(" {} {} ", &code[..3], &code[3..]);
        assert_eq!(
            verify(RFC_SECRET, &spaced, now, None),
            Some(now / TOTP_STEP_SECS)
        );
    }

    #[test]
    fn verify_rejects_malformed_codes() {
        let now = 1_234_567_890;
        let code = code_at(RFC_SECRET, now);
        let eight = generator(RFC_SECRET, 8).0.generate(now);
        for bad in [
            "",
            "12345",
            "1234567",
            "12a456",
            "+12345",
            "-12345",
            "١٢٣٤٥٦", // Arabic-Indic digits are digits, but not ASCII
            &code[..5],
            &format!("{code}0"),
            &eight,
        ] {
            assert_eq!(verify(RFC_SECRET, bad, now, None), None, "{bad:?}");
        }
    }

    #[test]
    fn verify_near_the_epoch_does_not_underflow() {
        let code = code_at(RFC_SECRET, 0);
        assert_eq!(verify(RFC_SECRET, &code, 0, None), Some(0));
        assert_eq!(verify(RFC_SECRET, &code, 59, None), Some(0));
        assert!(verify(RFC_SECRET, "000000", u64::MAX, None).is_none());
    }

    #[test]
    fn wrong_secret_fails() {
        let now = 1_234_567_890;
        let code = code_at(RFC_SECRET, now);
        assert_eq!(verify(b"another secret of 20b", &code, now, None), None);
    }

    #[test]
    fn new_secret_is_random() {
        let a = new_secret();
        let b = new_secret();
        assert_eq!(a.len(), TOTP_SECRET_BYTES);
        assert_ne!(*a, *b);
    }

    #[test]
    fn otpauth_uri_parses_back() {
        let secret = new_secret();
        let uri = otpauth_uri(&secret, "alice@example.com", "Acme CRM").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/Acme%20CRM:alice%40example.com?secret="),
            "{uri}"
        );
        for param in [
            "issuer=Acme%20CRM",
            "algorithm=SHA1",
            "digits=6",
            "period=30",
        ] {
            assert!(uri.contains(param), "{uri} lacks {param}");
        }
        let parsed = TOTP::from_url(&uri).unwrap();
        assert_eq!(parsed.secret, *secret);
        assert_eq!(parsed.issuer.as_deref(), Some("Acme CRM"));
        assert_eq!(parsed.account_name, "alice@example.com");
        assert_eq!(parsed.algorithm, Algorithm::SHA1);
        assert_eq!(parsed.digits, TOTP_DIGITS);
        assert_eq!(parsed.step, TOTP_STEP_SECS);
        assert_eq!(
            parsed.generate(1_234_567_890),
            code_at(&secret, 1_234_567_890)
        );
    }

    #[test]
    fn otpauth_uri_refusals() {
        let secret = new_secret();
        assert!(
            otpauth_uri(&secret, "a:b", "Acme")
                .unwrap_err()
                .contains("`:`")
        );
        assert!(
            otpauth_uri(&secret, "alice", "Ac:me")
                .unwrap_err()
                .contains("`:`")
        );
        assert!(
            otpauth_uri(&[7; 15], "alice", "Acme")
                .unwrap_err()
                .contains("too short")
        );
        assert!(otpauth_uri(&[7; 16], "alice", "Acme").is_ok());
        let no_issuer = otpauth_uri(&secret, "alice", "").unwrap();
        assert!(
            no_issuer.starts_with("otpauth://totp/alice?"),
            "{no_issuer}"
        );
    }

    #[test]
    fn recovery_codes_have_the_documented_shape() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        for code in &codes {
            assert_eq!(code.len(), 11, "{code}");
            assert_eq!(code.as_bytes()[5], b'-', "{code}");
            assert!(
                code.bytes()
                    .filter(|b| *b != b'-')
                    .all(|b| RECOVERY_ALPHABET.contains(&b)),
                "{code}"
            );
            assert_eq!(normalize_recovery(code).len(), RECOVERY_SYMBOLS);
        }
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), RECOVERY_CODES);
    }

    #[test]
    fn recovery_alphabet_is_unambiguous() {
        let mut sorted = RECOVERY_ALPHABET;
        sorted.sort_unstable();
        assert!(sorted.windows(2).all(|w| w[0] < w[1]), "duplicates");
        for ambiguous in [b'i', b'l', b'o', b'u'] {
            assert!(!RECOVERY_ALPHABET.contains(&ambiguous));
        }
    }

    #[test]
    fn recovery_normalization() {
        assert_eq!(normalize_recovery("AB3DE-FGH7K"), "ab3defgh7k");
        assert_eq!(normalize_recovery(" ab3de fgh7k "), "ab3defgh7k");
        assert_eq!(normalize_recovery("ab3de--fgh7k"), "ab3defgh7k");
        assert_eq!(normalize_recovery("O0IL1-x"), "00111x");
    }

    #[test]
    fn recovery_hash_is_keyed_and_normalized() {
        let key = [9u8; 32];
        let other = [10u8; 32];
        let h = hash_recovery(&key, "ab3de-fgh7k");
        assert_eq!(h, hash_recovery(&key, "AB3DE FGH7K"));
        assert_ne!(h, hash_recovery(&other, "ab3de-fgh7k"));
        assert_ne!(h, hash_recovery(&key, "ab3de-fgh7m"));
        assert_eq!(h, *blake3::keyed_hash(&key, b"ab3defgh7k").as_bytes());
    }
}
