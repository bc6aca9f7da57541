//! Passwords: argon2id hashing and the strength policy.
//!
//! Pure functions, no storage: the login flow keeps the PHC strings this
//! module produces and hands them back for verification.

use std::collections::HashSet;
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// Argon2id memory cost in KiB (19 MiB).
///
/// With [`ARGON2_ITERATIONS`] and [`ARGON2_PARALLELISM`] this is the minimum
/// configuration the OWASP Password Storage Cheat Sheet recommends for
/// argon2id (m=19 MiB, t=2, p=1). Raising any of them only affects new
/// hashes: verification reads the parameters from the stored PHC string.
pub(crate) const ARGON2_MEMORY_KIB: u32 = 19_456;
/// Argon2id passes over memory (OWASP minimum, see [`ARGON2_MEMORY_KIB`]).
pub(crate) const ARGON2_ITERATIONS: u32 = 2;
/// Argon2id lanes (OWASP minimum, see [`ARGON2_MEMORY_KIB`]).
pub(crate) const ARGON2_PARALLELISM: u32 = 1;

/// Fewest characters (not bytes) a password may have.
pub(crate) const MIN_PASSWORD_CHARS: usize = 12;
/// Most bytes a password may have: long enough for any passphrase, short
/// enough that hashing cannot be used to make the server work for nothing.
pub(crate) const MAX_PASSWORD_BYTES: usize = 1024;
/// Shortest name, email or other personal string that a password may not
/// contain; shorter ones would refuse too many good passwords.
pub(crate) const MIN_PERSONAL_CHARS: usize = 3;

/// The 10,000 most common passwords (SecLists, MIT; see
/// `COMMON_PASSWORDS_SOURCE.md`), one a line.
const COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

/// Hashes `password` with argon2id, the parameters above and a fresh random
/// salt, and returns the PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
pub(crate) fn hash_password(password: &str) -> Result<String, String> {
    let hash = hasher()?
        .hash_password(password.as_bytes())
        .map_err(|e| format!("cannot hash password: {e}"))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `phc`. A malformed or
/// unsupported PHC string is simply a mismatch. argon2 compares the outputs
/// in constant time.
pub(crate) fn verify_password(phc: &str, password: &str) -> bool {
    // The parameters come from `phc`, so hashes made with older settings
    // still verify after the constants change.
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// A PHC string with the current parameters, that no password matches
/// (its output is not an argon2 output). Verifying against it costs what
/// verifying a real hash costs, and it is a constant, so there is no
/// first-use work that would make one process's first unknown name slower.
const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$Y3VzdG9kaWFuLWR1bW15IQ$6npL8Gb0rh8U7W7tImb+y00qKTEKDbrbAjXYu3f8qTw";

/// Does the work of [`verify_password`] against a hash with the current
/// parameters and throws the answer away, so that a login for an unknown
/// account takes as long as one for a known account.
pub(crate) fn dummy_verify(password: &str) {
    // black_box keeps the optimizer from deciding the unused result makes
    // the work unnecessary.
    std::hint::black_box(verify_password(std::hint::black_box(DUMMY_PHC), password));
}

/// Checks `password` against the strength policy and returns, on refusal,
/// a reason a person can act on.
///
/// Refused: fewer than [`MIN_PASSWORD_CHARS`] characters; more than
/// [`MAX_PASSWORD_BYTES`] bytes; one character repeated; one of the 10,000
/// most common passwords, also once leading and trailing digits and
/// punctuation are stripped (`Dragon2024!`); containing the principal's
/// `name` or any of the `personal` strings (email, display name, ...), or
/// an email's local part, or one word of them, of at least
/// [`MIN_PERSONAL_CHARS`] characters. All comparisons ignore case.
pub(crate) fn check_strength(password: &str, name: &str, personal: &[&str]) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "password is too short: use at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "password is too long: use at most {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    let mut chars = password.chars();
    let first = chars.next();
    if chars.all(|c| Some(c) == first) {
        return Err("password is one character repeated: use a mix of characters".to_owned());
    }

    let lower = password.to_lowercase();
    let common = common_passwords();
    if common.contains(&lower) {
        return Err(
            "password is too common: it is among the 10,000 most used passwords; choose another"
                .to_owned(),
        );
    }
    let core = lower.trim_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation());
    if !core.is_empty() && common.contains(core) {
        return Err(
            "password is a common password with digits or symbols added: choose another".to_owned(),
        );
    }

    if personal_fragments(name, personal)
        .iter()
        .any(|fragment| lower.contains(fragment.as_str()))
    {
        return Err(
            "password contains your name or email address: leave personal details out".to_owned(),
        );
    }
    Ok(())
}

/// The argon2id hasher with the parameters above.
fn hasher() -> Result<Argon2<'static>, String> {
    let params = Params::new(
        ARGON2_MEMORY_KIB,
        ARGON2_ITERATIONS,
        ARGON2_PARALLELISM,
        None,
    )
    .map_err(|e| format!("invalid argon2 parameters: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The common-password list, lowercased, parsed once.
fn common_passwords() -> &'static HashSet<String> {
    static LIST: OnceLock<HashSet<String>> = OnceLock::new();
    // Owned strings because the list has mixed-case entries (`Password`)
    // and lookups are case-insensitive.
    LIST.get_or_init(|| COMMON_PASSWORDS.lines().map(str::to_lowercase).collect())
}

/// The lowercase strings a password may not contain: each of `name` and
/// `personal` whole, an email's local part, and the words of the local part
/// or of a display name (`alice.smith@x.org` gives `alice.smith@x.org`,
/// `alice.smith`, `alice`, `smith`). A domain is not split into words, so
/// `com` does not refuse every password containing it.
fn personal_fragments(name: &str, personal: &[&str]) -> Vec<String> {
    let mut fragments = Vec::new();
    for text in std::iter::once(name).chain(personal.iter().copied()) {
        let whole = text.trim().to_lowercase();
        let local = match whole.split_once('@') {
            Some((local, _domain)) => local.to_owned(),
            None => whole.clone(),
        };
        fragments.extend(
            local
                .split(|c: char| !c.is_alphanumeric())
                .map(str::to_owned),
        );
        fragments.push(local);
        fragments.push(whole);
    }
    fragments.retain(|fragment| fragment.chars().count() >= MIN_PERSONAL_CHARS);
    fragments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify_round_trip() {
        let phc = hash_password("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password(&phc, "correct horse battery staple"));
        assert!(!verify_password(&phc, "correct horse battery stapler"));
        assert!(!verify_password(&phc, ""));
    }

    #[test]
    fn hashes_are_salted() {
        let a = hash_password("same password here").unwrap();
        let b = hash_password("same password here").unwrap();
        assert_ne!(a, b);
        assert!(verify_password(&a, "same password here"));
        assert!(verify_password(&b, "same password here"));
    }

    #[test]
    fn malformed_phc_is_a_mismatch() {
        for phc in [
            "",
            "not a hash",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$!!!!",
            "$bcrypt$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            assert!(!verify_password(phc, "password"), "{phc:?}");
        }
    }

    #[test]
    fn the_dummy_hash_has_the_current_parameters_and_matches_nothing() {
        use argon2::password_hash::phc::PasswordHash;
        let dummy = PasswordHash::new(DUMMY_PHC).unwrap();
        let real = hash_password("correct horse battery staple").unwrap();
        let real = PasswordHash::new(&real).unwrap();
        // Same algorithm, version, parameters and output length: the same
        // work to verify.
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert_eq!(dummy.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
        assert_eq!(
            Params::try_from(&dummy).unwrap().m_cost(),
            ARGON2_MEMORY_KIB
        );
        for guess in ["", "custodian dummy password", "anything at all"] {
            assert!(!verify_password(DUMMY_PHC, guess));
            dummy_verify(guess);
        }
    }

    #[test]
    fn common_list_has_ten_thousand_entries() {
        assert_eq!(COMMON_PASSWORDS.lines().count(), 10_000);
        assert!(!COMMON_PASSWORDS.contains('\r'));
        assert!(COMMON_PASSWORDS.lines().all(|line| !line.is_empty()));
        let common = common_passwords();
        assert!(common.contains("password"));
        assert!(common.contains("qwertyuiop"));
        // `Password` and `PASSWORD` fold into `password`.
        assert!(common.len() < 10_000);
    }

    /// One refusal case: the password, the name, the personal strings and a
    /// fragment the reason must contain (`None` for accepted).
    fn check(password: &str, name: &str, personal: &[&str], expected: Option<&str>) {
        let result = check_strength(password, name, personal);
        match (expected, &result) {
            (None, Ok(())) => {}
            (Some(fragment), Err(reason)) => {
                assert!(
                    reason.contains(fragment),
                    "{password:?}: reason {reason:?} lacks {fragment:?}"
                );
                assert_eq!(reason.to_lowercase(), *reason, "reason must be lowercase");
                assert!(!reason.ends_with('.'), "reason must not end with a period");
            }
            _ => panic!("{password:?}: expected {expected:?}, got {result:?}"),
        }
    }

    #[test]
    fn strength_rules() {
        let none: &[&str] = &[];
        // Length counts characters, not bytes: 11 two-byte characters are
        // too short, 12 are enough.
        check("short1!", "alice", none, Some("too short"));
        check(&"é".repeat(11), "alice", none, Some("too short"));
        check("éèêëàâäôöûüç", "alice", none, None);
        check(&"ab".repeat(513), "alice", none, Some("too long"));
        check(&"ab".repeat(512), "alice", none, None);
        check(
            "aaaaaaaaaaaaaaaa",
            "alice",
            none,
            Some("one character repeated"),
        );
        check(
            "1111111111111",
            "alice",
            none,
            Some("one character repeated"),
        );
        // Exact entries of the list that are 12 characters or more.
        check(
            "qwertyuiop123",
            "alice",
            none,
            Some("digits or symbols added"),
        );
        check("1qaz2wsx3edc", "alice", none, Some("too common"));
        check("QWERTY123456", "alice", none, Some("too common"));
        check("qazwsxedcrfv", "alice", none, Some("too common"));
        // Short entries padded with digits and punctuation.
        check(
            "password1234",
            "alice",
            none,
            Some("digits or symbols added"),
        );
        check(
            "Password2024!",
            "alice",
            none,
            Some("digits or symbols added"),
        );
        check(
            "!!Dragon1234!!",
            "alice",
            none,
            Some("digits or symbols added"),
        );
        check(
            "letmein!!!!!!",
            "alice",
            none,
            Some("digits or symbols added"),
        );
        // Personal strings.
        check("xXalice-rules-99", "alice", none, Some("your name"));
        check(
            "Bob.Smith4ever!!",
            "bsmith",
            &["Bob Smith"],
            Some("your name"),
        );
        check(
            "mysmithpassword!",
            "bsmith",
            &["Bob Smith"],
            Some("your name"),
        );
        check(
            "carol.jones-secret",
            "cj",
            &["carol.jones@example.com"],
            Some("your name"),
        );
        check(
            "JONES-2-the-moon",
            "cj",
            &["carol.jones@example.com"],
            Some("your name"),
        );
        // Fragments shorter than three characters and email domains do not
        // count.
        check("cj-k8#Qz!vR2mW", "cj", &["cj@example.com"], None);
        check("my.com.puter.x9Q!", "cj", &["cj@example.com"], None);
        // A random-looking password passes.
        check(
            "k8#Qz!vR2mWp",
            "alice",
            &["alice@example.com", "Alice Liddell"],
            None,
        );
        check("correct horse battery staple", "alice", none, None);
    }
}
