//! Logins: passwords, the second factor, throttling and sessions, the
//! start of the identity step ([`super::Core::authenticate`] checks the
//! sessions made here).
//!
//! Every attempt is audited. A failed login answers the same whether the
//! account exists or not, and costs the same: an unknown name still runs a
//! password hash. Counters live in the database, so they survive a crash.

use std::time::Duration;

use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use super::context::{micros, token_hash};
use super::{Caller, Core, Entry, outcome_of};
use crate::audit::{self, Outcome};
use crate::crypto::{hex, keyed_hash, random_bytes};
use crate::guard::Breach;
use crate::identity::{self, password, totp};
use crate::model::from_micros;
use crate::store::{StoredCredentials, StoredSession, StoredThrottle, Txn};
use crate::{Denied, Error, Result};

/// How logins are throttled and how long sessions last. The defaults
/// follow common guidance (OWASP's authentication cheat sheet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSettings {
    /// Consecutive failures that lock an account until an admin unlocks
    /// it (default 5).
    pub max_failures: u32,
    /// Failures, per account name and per source, before each further
    /// attempt must wait (default 3).
    pub free_failures: u32,
    /// The first wait; it doubles with every further failure (default 1 s).
    pub backoff_base: Duration,
    /// The longest wait (default 15 min).
    pub backoff_max: Duration,
    /// Failures older than this are forgotten by the throttle, not by the
    /// lockout (default 1 h).
    pub throttle_window: Duration,
    /// A session unused for this long ends (default 30 min).
    pub session_idle: Duration,
    /// A session ends this long after login whatever its use (default 12 h).
    pub session_absolute: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            max_failures: 5,
            free_failures: 3,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(15 * 60),
            throttle_window: Duration::from_secs(60 * 60),
            session_idle: Duration::from_secs(30 * 60),
            session_absolute: Duration::from_secs(12 * 60 * 60),
        }
    }
}

/// A new session: its token is shown once and stored only hashed.
pub struct Session {
    token: Zeroizing<String>,
    /// Who logged in.
    pub principal: String,
    /// When the session ends at the latest.
    pub expires_at: DateTime<Utc>,
}

impl Session {
    /// The bearer token, for [`super::Context::session`].
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("principal", &self.principal)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A live session as listed: never its token.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SessionInfo {
    /// A short id (the start of the token's hash), accepted by
    /// [`crate::Engine::revoke_session`].
    pub id: String,
    /// Whose it is.
    pub principal: String,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// When it was last used (to the minute).
    pub last_seen: DateTime<Utc>,
    /// Where the login came from.
    pub source: String,
    /// Whether the login passed a second factor.
    pub second_factor: bool,
    /// When it ends at the latest.
    pub expires_at: DateTime<Utc>,
}

/// What enrolling a second factor returns, once: the URI for an
/// authenticator app and ten single-use recovery codes.
pub struct TotpEnrollment {
    /// `otpauth://totp/...`, to show as a QR code or type in.
    pub uri: Zeroizing<String>,
    /// Recovery codes, each good for one login; only their hashes are kept.
    pub recovery_codes: Vec<Zeroizing<String>>,
}

impl std::fmt::Debug for TotpEnrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrollment { .. }")
    }
}

const TOKEN_PREFIX: &str = "cst_";
impl AuthSettings {
    /// How long after its last failure a counter at `failures` must wait.
    fn backoff(&self, failures: u32) -> Duration {
        let Some(over) = failures.checked_sub(self.free_failures) else {
            return Duration::ZERO;
        };
        let factor = 1u32.checked_shl(over.min(31)).unwrap_or(u32::MAX);
        self.backoff_base
            .checked_mul(factor)
            .unwrap_or(self.backoff_max)
            .min(self.backoff_max)
    }

    /// The counter as the throttle sees it at `now`: old failures forgotten.
    fn live(&self, t: StoredThrottle, now: i64) -> StoredThrottle {
        if now.saturating_sub(t.last_failure_at) > micros(self.throttle_window) {
            StoredThrottle::default()
        } else {
            t
        }
    }

    /// Seconds still to wait at `now`, if any.
    pub(crate) fn wait(&self, t: StoredThrottle, now: i64) -> Option<u64> {
        let t = self.live(t, now);
        let until = t
            .last_failure_at
            .saturating_add(micros(self.backoff(t.failures)));
        (t.failures > 0 && now < until).then(|| {
            let left = until.saturating_sub(now);
            u64::try_from(left).unwrap_or(0).div_ceil(1_000_000)
        })
    }

    /// Whether a session has outlived its idle or absolute lifetime at `now`.
    pub(crate) fn expired(&self, session: &StoredSession, now: i64) -> bool {
        let absolute = session
            .created_at
            .saturating_add(micros(self.session_absolute));
        let idle = session.last_seen.saturating_add(micros(self.session_idle));
        now > absolute || now > idle
    }

    /// When a session made at `created_at` ends at the latest.
    pub(crate) fn expires_at(&self, created_at: i64) -> DateTime<Utc> {
        from_micros(created_at.saturating_add(micros(self.session_absolute)))
    }
}

/// The throttle key of an account name, cut to a bounded length: a
/// caller-supplied name must not grow the table by its own size.
pub(crate) fn name_key(name: &str) -> String {
    format!("name:{}", cut(name, 64))
}

fn source_key(source: &str) -> String {
    format!("source:{}", cut(source, 128))
}

fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// The short id of a session, as listed.
pub(crate) fn session_id(hash: &[u8; 32]) -> String {
    hex(hash.get(..6).unwrap_or_default())
}

/// Whether `token_or_id` is a token rather than a listed session id.
pub(crate) fn token_is_id(token_or_id: &str) -> bool {
    !token_or_id.starts_with(TOKEN_PREFIX)
}

impl Core {
    /// How a name that is no account is recorded and throttled: a keyed
    /// hash, so attempts can be told apart without keeping what was typed
    /// (a password typed into the name field stays nowhere).
    fn unknown_name(&self, name: &str) -> String {
        let hash = keyed_hash(
            self.records.ring.login_key(),
            &[b"login name", name.as_bytes()],
        );
        format!("unknown #{}", hex(hash.get(..6).unwrap_or_default()))
    }
}

/// The audit entry of a login attempt: who, from where.
fn login_entry(name: &str, source: &str) -> Entry {
    Entry::new("login").target(format!("principal {name} from {source}"))
}

fn constant_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unix_secs(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp()).unwrap_or(0)
}

impl Core {
    /// Logs `name` in; see [`crate::Engine::login`].
    pub(crate) fn login(
        &self,
        name: &str,
        password: &str,
        second_factor: Option<&str>,
        source: &str,
    ) -> Result<Session> {
        let now_at = self.records.clock.now();
        let now = now_at.timestamp_micros();
        let valid_name = identity::check_name(name).is_ok();
        // Throttled attempts are refused before any password work, alike
        // for known and unknown names.
        let (principal, creds, wait, label) = self.store.read(|r| {
            let principal = if valid_name { r.principal(name)? } else { None };
            let (creds, label) = match &principal {
                Some(_) => (r.credentials(name)?, name.to_string()),
                None => (StoredCredentials::default(), self.unknown_name(name)),
            };
            let by_name = self.auth.wait(r.throttle(&name_key(&label))?, now);
            let by_source = self.auth.wait(r.throttle(&source_key(source))?, now);
            Ok::<_, Error>((principal, creds, by_name.max(by_source), label))
        })?;
        let caller = Caller::internal(label.clone(), "login");
        let entry = login_entry(&label, source);
        if let Some(secs) = wait {
            return Err(self
                .store
                .write(|w| self.throttled(w, &caller, &entry, secs))?);
        }
        let password_ok = match (&principal, &creds.password) {
            (Some(_), Some(phc)) => password::verify_password(phc, password),
            _ => {
                password::dummy_verify(password);
                false
            }
        };
        let needs_2fa = (principal.as_ref())
            .map(|p| self.roles_needing_2fa(&p.roles))
            .unwrap_or_default();
        let attempt = Attempt {
            name,
            label: &label,
            source,
            caller: &caller,
            entry: &entry,
            now_at,
        };
        let verdict = self.store.write(|w| {
            let verdict = self.check_login(
                w,
                &attempt,
                valid_name,
                password_ok,
                &needs_2fa,
                second_factor,
            )?;
            match verdict {
                Verdict::Pass { second } => {
                    Ok(Verdict::Opened(self.open_session(w, &attempt, second)?))
                }
                refused => Ok::<_, Error>(refused),
            }
        })?;
        match verdict {
            Verdict::Opened(session) => Ok(session),
            Verdict::Refused(error) => Err(error),
            Verdict::Pass { .. } => Err(Error::Denied(Denied::LoginFailed)),
        }
    }

    /// Inside the login's transaction: the throttle again, the account,
    /// the password, the second factor. A refusal's counters and audit
    /// entry are written, and commit with it.
    fn check_login(
        &self,
        w: &mut dyn Txn,
        a: &Attempt<'_>,
        valid_name: bool,
        password_ok: bool,
        needs_2fa: &[String],
        code: Option<&str>,
    ) -> Result<Verdict> {
        let now = a.now_at.timestamp_micros();
        // Attempts made at once all passed the first check before any
        // failure counted.
        let by_name = self.auth.wait(w.throttle(&name_key(a.label))?, now);
        let by_source = self.auth.wait(w.throttle(&source_key(a.source))?, now);
        if let Some(secs) = by_name.max(by_source) {
            return self
                .throttled(w, a.caller, a.entry, secs)
                .map(Verdict::Refused);
        }
        // Re-read: a concurrent login may have used the code or locked the
        // account meanwhile.
        let principal = if valid_name {
            w.principal(a.name)?
        } else {
            None
        };
        let Some(principal) = principal else {
            return self
                .login_failed(w, a, false, "unknown principal")
                .map(Verdict::Refused);
        };
        let mut creds = w.credentials(a.name)?;
        let why = match () {
            () if !principal.active => Some("deactivated"),
            () if creds.locked => Some("account locked"),
            () if !password_ok => Some("wrong password"),
            () => None,
        };
        if let Some(why) = why {
            return self.login_failed(w, a, true, why).map(Verdict::Refused);
        }
        let enrolled = creds.totp.as_ref().is_some_and(|t| t.confirmed);
        if !enrolled && needs_2fa.is_empty() {
            return Ok(Verdict::Pass { second: false });
        }
        // The password was right: saying what is missing reveals nothing
        // an attacker did not just prove to know.
        let refusal = match code {
            _ if !enrolled => Some(Denied::SecondFactorNotEnrolled {
                principal: a.name.to_string(),
                roles: needs_2fa.to_vec(),
            }),
            None => Some(Denied::SecondFactorMissing),
            Some(_) => None,
        };
        if let Some(denied) = refusal {
            let error = Error::Denied(denied);
            let record = a.entry.record(a.caller, outcome_of(&error));
            audit::append(w, self.records.ring.audit_key(), &record)?;
            return Ok(Verdict::Refused(error));
        }
        let code = code.unwrap_or_default();
        if !self.check_second_factor(a.name, &mut creds, code, a.now_at)? {
            return self
                .login_failed(w, a, true, "wrong second factor")
                .map(Verdict::Refused);
        }
        w.put_credentials(a.name, &creds)?;
        Ok(Verdict::Pass { second: true })
    }

    /// Opens the session of a login that passed: counters reset, the
    /// token made, stored hashed, the login audited.
    fn open_session(&self, w: &mut dyn Txn, a: &Attempt<'_>, second: bool) -> Result<Session> {
        let now = a.now_at.timestamp_micros();
        let mut creds = w.credentials(a.name)?;
        creds.failures = 0;
        creds.last_failure_at = None;
        w.put_credentials(a.name, &creds)?;
        w.put_throttle(&name_key(a.name), StoredThrottle::default())?;
        let token = Zeroizing::new(format!("{TOKEN_PREFIX}{}", hex(&random_bytes::<32>())));
        let hash = token_hash(&self.records.ring, &token);
        w.put_session(
            &hash,
            &StoredSession {
                principal: a.name.to_string(),
                created_at: now,
                last_seen: now,
                source: a.source.chars().take(128).collect(),
                second_factor: second,
            },
        )?;
        let entry = a
            .entry
            .clone()
            .fields(vec![format!("session:{}", session_id(&hash))]);
        let record = entry.record(a.caller, Outcome::Ok);
        audit::append(w, self.records.ring.audit_key(), &record)?;
        Ok(Session {
            token,
            principal: a.name.to_string(),
            expires_at: self.auth.expires_at(now),
        })
    }

    /// Records a failed login: counters up, the account locked at the
    /// limit, the attempt audited (with why, which the caller never sees).
    fn login_failed(
        &self,
        w: &mut dyn Txn,
        a: &Attempt<'_>,
        known: bool,
        why: &str,
    ) -> Result<Error> {
        let now = a.now_at.timestamp_micros();
        let mut why = why.to_string();
        let account = known.then_some(a.name);
        if self.count_failure(w, a.label, account, a.source, now)? {
            why.push_str("; account locked");
        }
        let record = a.entry.record(a.caller, Outcome::Denied(why));
        audit::append(w, self.records.ring.audit_key(), &record)?;
        Ok(Error::Denied(Denied::LoginFailed))
    }

    /// Audits an attempt refused by the throttle (no password was checked)
    /// and returns the refusal.
    fn throttled(
        &self,
        w: &mut dyn Txn,
        caller: &Caller,
        entry: &Entry,
        secs: u64,
    ) -> Result<Error> {
        let record = entry.record(caller, Outcome::Denied(format!("throttled for {secs} s")));
        audit::append(w, self.records.ring.audit_key(), &record)?;
        Ok(Error::Denied(Denied::Throttled {
            what: "login".into(),
            retry_after: secs,
        }))
    }

    /// Counts a failed proof of a password: the throttle counters of the
    /// name as throttled (`label`) and the source, and for a known
    /// `account` its failures, locking it at the limit. Returns whether
    /// this failure locked it.
    pub(crate) fn count_failure(
        &self,
        w: &mut dyn Txn,
        label: &str,
        account: Option<&str>,
        source: &str,
        now: i64,
    ) -> Result<bool> {
        for key in [name_key(label), source_key(source)] {
            let t = self.auth.live(w.throttle(&key)?, now);
            w.put_throttle(
                &key,
                StoredThrottle {
                    failures: t.failures.saturating_add(1),
                    last_failure_at: now,
                },
            )?;
        }
        let Some(name) = account else {
            return Ok(false);
        };
        let mut creds = w.credentials(name)?;
        creds.failures = creds.failures.saturating_add(1);
        creds.last_failure_at = Some(now);
        let locks = !creds.locked && creds.failures >= self.auth.max_failures;
        creds.locked |= locks;
        w.put_credentials(name, &creds)?;
        if locks {
            // A lock is for the account, not only for new logins.
            w.remove_sessions(&mut |_, s| s.principal == name)?;
        }
        Ok(locks)
    }

    /// A step-up: `name` proves a fresh second factor to go on past a
    /// budget (`breach`). The code is used up as a login's is; a wrong one
    /// counts as a failed login (the account locks at the limit), and
    /// every attempt is audited.
    pub(crate) fn step_up(&self, name: &str, code: &str, breach: &Breach) -> Result<()> {
        let now_at = self.records.clock.now();
        let now = now_at.timestamp_micros();
        let caller = Caller::internal(name, "step-up");
        let entry = Entry::new("guard.step_up").target(format!(
            "{} per {}",
            breach.measure.as_str(),
            breach.span.as_str()
        ));
        // The attempts of one principal are throttled together, and apart
        // from everyone else's.
        let source = format!("step-up:{name}");
        self.store.write(|w| {
            let by_name = self.auth.wait(w.throttle(&name_key(name))?, now);
            let by_source = self.auth.wait(w.throttle(&source_key(&source))?, now);
            if let Some(secs) = by_name.max(by_source) {
                return Ok(Err(self.throttled(w, &caller, &entry, secs)?));
            }
            let mut creds = w.credentials(name)?;
            let enrolled = creds.totp.as_ref().is_some_and(|t| t.confirmed);
            let refusal = match () {
                () if creds.locked => Some(Denied::Locked(name.to_string())),
                () if !enrolled && creds.recovery.is_empty() => Some(Denied::Rule(format!(
                    "`{name}` has no second factor enrolled, so it cannot step up: an admin must enroll one"
                ))),
                () => None,
            };
            if let Some(denied) = refusal {
                let error = Error::Denied(denied);
                let record = entry.record(&caller, outcome_of(&error));
                audit::append(w, self.records.ring.audit_key(), &record)?;
                return Ok(Err(error));
            }
            if self.check_second_factor(name, &mut creds, code, now_at)? {
                w.put_credentials(name, &creds)?;
                let record = entry.record(&caller, Outcome::Ok);
                audit::append(w, self.records.ring.audit_key(), &record)?;
                return Ok(Ok(()));
            }
            let mut why = "wrong or used second-factor code".to_string();
            if self.count_failure(w, name, Some(name), &source, now)? {
                why.push_str("; account locked");
            }
            let record = entry.record(&caller, Outcome::Denied(why));
            audit::append(w, self.records.ring.audit_key(), &record)?;
            Ok::<_, Error>(Err(Error::Denied(Denied::StepUpFailed)))
        })?
    }

    /// Checks a TOTP or recovery code against `creds`, consuming it: the
    /// accepted step is recorded, a recovery code removed.
    fn check_second_factor(
        &self,
        name: &str,
        creds: &mut StoredCredentials,
        code: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        if let Some(enrolment) = creds.totp.as_mut() {
            let secret = self
                .records
                .ring
                .open_secret(&totp::secret_slot(name), &enrolment.secret)?;
            if let Some(step) = totp::verify(&secret, code, unix_secs(now), enrolment.last_step) {
                enrolment.last_step = Some(step);
                return Ok(true);
            }
        }
        let hash = totp::hash_recovery(self.records.ring.login_key(), code);
        let before = creds.recovery.len();
        creds.recovery.retain(|h| !constant_eq(h, &hash));
        Ok(creds.recovery.len() < before)
    }

    /// Ends the session of `token`; see [`crate::Engine::logout`].
    pub(crate) fn logout(&self, token: &str) -> Result<()> {
        let hash = token_hash(&self.records.ring, token);
        self.store.write(|w| {
            let Some(session) = w.session(&hash)? else {
                return Ok::<_, Error>(());
            };
            w.remove_sessions(&mut |k, _| k == hash.as_slice())?;
            let caller = Caller::internal(session.principal, "logout");
            let entry =
                Entry::new("session.revoke").target(format!("session {}", session_id(&hash)));
            audit::append(
                w,
                self.records.ring.audit_key(),
                &entry.record(&caller, Outcome::Ok),
            )?;
            Ok(())
        })
    }
}

/// Where a login stands inside its transaction.
enum Verdict {
    /// Every check passed; `second`: with a second factor.
    Pass { second: bool },
    /// The session is open.
    Opened(Session),
    /// Refused; the refusal's counters and entry commit.
    Refused(Error),
}

/// One login attempt.
struct Attempt<'a> {
    name: &'a str,
    /// How the name is recorded and throttled: as given for an account,
    /// as a keyed hash for a name that is none.
    label: &'a str,
    source: &'a str,
    caller: &'a Caller,
    entry: &'a Entry,
    now_at: DateTime<Utc>,
}
