//! Logins: passwords, the second factor, throttling and sessions.
//!
//! Every attempt is audited. A failed login answers the same whether the
//! account exists or not, and costs the same: an unknown name still runs a
//! password hash. Counters live in the database, so they survive a crash.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use super::customers::{refuse, writer_actor};
use super::{Context, Engine, Event, Inner, from_micros};
use crate::audit::{self, Outcome};
use crate::crypto::{hex, keyed_hash, random_bytes};
use crate::identity::{self, IdentityError, password, totp};
use crate::store::{StoredCredentials, StoredSession, StoredThrottle, StoredTotp, Writer};
use crate::{Error, Result};

/// The answer to every failed login: it never says which part was wrong,
/// nor whether the account exists.
pub const LOGIN_FAILED: &str =
    "login failed: wrong name, password or code, or the account is locked or deactivated";

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

/// Where logins and sessions read the time: the system clock, or a clock
/// the host controls (tests, simulations).
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(Arc::new(Utc::now))
    }

    /// A clock that asks `now`.
    pub fn from_fn(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
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
    /// The bearer token, for [`Context::session`].
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
    /// [`Engine::revoke_session`].
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
/// `last_seen` is written at most this often: a read per call, a write per
/// minute per session.
const LAST_SEEN_GRANULARITY: Duration = Duration::from_secs(60);
const ISSUER: &str = "Custodian";

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

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
    fn wait(&self, t: StoredThrottle, now: i64) -> Option<u64> {
        let t = self.live(t, now);
        let until = t
            .last_failure_at
            .saturating_add(micros(self.backoff(t.failures)));
        (t.failures > 0 && now < until).then(|| {
            let left = until.saturating_sub(now);
            u64::try_from(left).unwrap_or(0).div_ceil(1_000_000)
        })
    }
}

/// Throttle keys are cut to a bounded length: a caller-supplied name or
/// source must not grow the table by its own size.
fn name_key(name: &str) -> String {
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

/// Why a login failed, for the audit chain only (the caller always gets
/// [`LOGIN_FAILED`]).
fn login_event(name: &str, source: &str) -> Event<'static> {
    Event::new("login").target(format!("principal {name} from {source}"))
}

impl Inner {
    fn token_hash(&self, token: &str) -> [u8; 32] {
        keyed_hash(self.ring.login_key(), &[b"session", token.as_bytes()])
    }

    fn recovery_hash(&self, code: &str) -> [u8; 32] {
        totp::hash_recovery(self.ring.login_key(), code)
    }

    /// Roles among `roles` that the installed policy says need 2FA.
    fn roles_needing_2fa(&self, roles: &[String]) -> Vec<String> {
        let policy = self.policy();
        roles
            .iter()
            .filter(|r| {
                policy
                    .roles()
                    .get(r.as_str())
                    .is_some_and(|d| d.require_2fa)
            })
            .cloned()
            .collect()
    }

    /// Whether a session has outlived its idle or absolute lifetime at `now`.
    fn expired(&self, session: &StoredSession, now: i64) -> bool {
        now > session
            .created_at
            .saturating_add(micros(self.auth.session_absolute))
            || now
                > session
                    .last_seen
                    .saturating_add(micros(self.auth.session_idle))
    }

    /// Resolves a session context into the principal it stands for; a
    /// host-asserted context passes unchanged.
    pub(crate) fn authenticate<'c>(&self, ctx: &'c Context) -> Result<Cow<'c, Context>> {
        let Some(token) = &ctx.session else {
            return Ok(Cow::Borrowed(ctx));
        };
        let hash = self.token_hash(token);
        let now = self.clock.now().timestamp_micros();
        let found = self.store.read(|r| {
            let Some(session) = r.session(&hash)? else {
                return Ok::<_, Error>(None);
            };
            let principal = r.principal(&session.principal)?;
            Ok(Some((session, principal)))
        })?;
        let event = || Event::new("session.use");
        let anonymous = Context::new("(session)", ctx.purpose());
        let Some((session, principal)) = found else {
            return self.deny(
                &anonymous,
                event(),
                "invalid or revoked session token; log in again".into(),
            );
        };
        let as_principal = Context::new(session.principal.clone(), ctx.purpose());
        if self.expired(&session, now) {
            self.store.write(|w| {
                w.remove_sessions(|k, _| k == hash.as_slice())?;
                Ok::<_, Error>(())
            })?;
            return self.deny(
                &as_principal,
                event(),
                "the session has expired; log in again".into(),
            );
        }
        match principal {
            Some(p) if p.active => {
                let needs = self.roles_needing_2fa(&p.roles);
                if !session.second_factor && !needs.is_empty() {
                    let reason = format!(
                        "role `{}` requires a second factor: log in again with a code",
                        needs.join("`, `")
                    );
                    return self.deny(&as_principal, event(), reason);
                }
            }
            _ => {
                return self.deny(
                    &as_principal,
                    event(),
                    format!("principal `{}` is deactivated", session.principal),
                );
            }
        }
        if now.saturating_sub(session.last_seen) > micros(LAST_SEEN_GRANULARITY) {
            self.store.write(|w| {
                // Revoked meanwhile: do not bring it back.
                if let Some(mut s) = w.session(&hash)? {
                    s.last_seen = now;
                    w.put_session(&hash, &s)?;
                }
                Ok::<_, Error>(())
            })?;
        }
        Ok(Cow::Owned(as_principal))
    }

    /// Records a failed login: counters up, the account locked at the
    /// limit, the attempt audited. Returns the generic refusal.
    fn login_failed(
        &self,
        w: &mut Writer<'_>,
        name: &str,
        source: &str,
        known: bool,
        reason: &str,
        now: i64,
    ) -> Result<Error> {
        let mut why = reason.to_string();
        if self.count_failure(w, name, source, known, now)? {
            why.push_str("; account locked");
        }
        let ctx = Context::new(name, "login");
        let record = login_event(name, source).record(&ctx, Outcome::Denied(why));
        audit::append(w, self.ring.audit_key(), &record)?;
        Ok(Error::Denied(LOGIN_FAILED.into()))
    }
}

impl Inner {
    /// Audits an attempt refused by the throttle (no password was checked)
    /// and returns the refusal.
    fn login_throttled(
        &self,
        w: &mut Writer<'_>,
        name: &str,
        source: &str,
        secs: u64,
    ) -> Result<Error> {
        let ctx = Context::new(name, "login");
        let record = login_event(name, source)
            .record(&ctx, Outcome::Denied(format!("throttled for {secs} s")));
        audit::append(w, self.ring.audit_key(), &record)?;
        Ok(Error::Denied(format!(
            "login refused: too many failed attempts; retry in {secs} s"
        )))
    }

    /// Counts a failed proof of a password: the throttle counters of the
    /// name and the source, and for a known account its failures, locking
    /// it at the limit. Returns whether this failure locked it.
    fn count_failure(
        &self,
        w: &mut Writer<'_>,
        name: &str,
        source: &str,
        known: bool,
        now: i64,
    ) -> Result<bool> {
        for key in [name_key(name), source_key(source)] {
            let t = self.auth.live(w.throttle(&key)?, now);
            w.put_throttle(
                &key,
                StoredThrottle {
                    failures: t.failures.saturating_add(1),
                    last_failure_at: now,
                },
            )?;
        }
        if !known {
            return Ok(false);
        }
        let mut creds = w.credentials(name)?;
        creds.failures = creds.failures.saturating_add(1);
        creds.last_failure_at = Some(now);
        let locks = !creds.locked && creds.failures >= self.auth.max_failures;
        creds.locked |= locks;
        w.put_credentials(name, &creds)?;
        if locks {
            // A lock is for the account, not only for new logins.
            w.remove_sessions(|_, s| s.principal == name)?;
        }
        Ok(locks)
    }
}

impl Engine {
    /// Logs `name` in with a password and, when the account has one or a
    /// role requires one, a second factor (a TOTP code or a recovery code).
    /// `source` names where the attempt comes from (an IP address, a
    /// terminal), for throttling and the audit chain.
    pub fn login(
        &self,
        name: &str,
        password: &str,
        second_factor: Option<&str>,
        source: &str,
    ) -> Result<Session> {
        let inner = &self.inner;
        let now_at = inner.clock.now();
        let now = now_at.timestamp_micros();
        let valid_name = identity::check_name(name).is_ok();
        // Throttled attempts are refused before any password work, alike
        // for known and unknown names.
        let (principal, creds, wait) = inner.store.read(|r| {
            let principal = if valid_name { r.principal(name)? } else { None };
            let creds = match &principal {
                Some(_) => r.credentials(name)?,
                None => StoredCredentials::default(),
            };
            let by_name = inner.auth.wait(r.throttle(&name_key(name))?, now);
            let by_source = inner.auth.wait(r.throttle(&source_key(source))?, now);
            Ok::<_, Error>((principal, creds, by_name.max(by_source)))
        })?;
        if let Some(secs) = wait {
            return Err(inner
                .store
                .write(|w| inner.login_throttled(w, name, source, secs))?);
        }
        let password_ok = match (&principal, &creds.password) {
            (Some(_), Some(phc)) => password::verify_password(phc, password),
            _ => {
                password::dummy_verify(password);
                false
            }
        };
        let needs_2fa = principal
            .as_ref()
            .map(|p| inner.roles_needing_2fa(&p.roles))
            .unwrap_or_default();
        inner.store.write(|w| {
            let failed = |w: &mut Writer<'_>, known: bool, why: &str| {
                inner
                    .login_failed(w, name, source, known, why, now)
                    .map(Err)
            };
            let refused = |w: &mut Writer<'_>, reason: String| {
                let ctx = Context::new(name, "login");
                let record =
                    login_event(name, source).record(&ctx, Outcome::Denied(reason.clone()));
                audit::append(w, inner.ring.audit_key(), &record)?;
                Ok::<_, Error>(Err(Error::Denied(reason)))
            };
            // Re-check the throttle inside the transaction: attempts made at
            // once all passed the check above before any failure counted.
            let by_name = inner.auth.wait(w.throttle(&name_key(name))?, now);
            let by_source = inner.auth.wait(w.throttle(&source_key(source))?, now);
            if let Some(secs) = by_name.max(by_source) {
                return inner.login_throttled(w, name, source, secs).map(Err);
            }
            // Re-read inside the transaction: a concurrent login may have
            // used the code or locked the account meanwhile.
            let principal = if valid_name { w.principal(name)? } else { None };
            let Some(principal) = principal else {
                return failed(w, false, "unknown principal");
            };
            let mut creds = w.credentials(name)?;
            if !principal.active {
                return failed(w, true, "deactivated");
            }
            if creds.locked {
                return failed(w, true, "account locked");
            }
            if !password_ok {
                return failed(w, true, "wrong password");
            }
            let enrolled = creds.totp.as_ref().is_some_and(|t| t.confirmed);
            let mut second = false;
            if enrolled || !needs_2fa.is_empty() {
                // The password was right: saying what is missing reveals
                // nothing an attacker did not just prove to know.
                if !enrolled {
                    let reason = format!(
                        "role `{}` requires a second factor and `{name}` has none: an admin must run `custodian principal 2fa enroll {name}`",
                        needs_2fa.join("`, `")
                    );
                    return refused(w, reason);
                }
                let Some(code) = second_factor else {
                    return refused(
                        w,
                        "a second factor is required: give a TOTP or recovery code".into(),
                    );
                };
                if !inner.check_second_factor(name, &mut creds, code, now_at)? {
                    return failed(w, true, "wrong second factor");
                }
                second = true;
            }
            creds.failures = 0;
            creds.last_failure_at = None;
            w.put_credentials(name, &creds)?;
            w.put_throttle(&name_key(name), StoredThrottle::default())?;
            let token = Zeroizing::new(format!("{TOKEN_PREFIX}{}", hex(&random_bytes::<32>())));
            let hash = inner.token_hash(&token);
            w.put_session(
                &hash,
                &StoredSession {
                    principal: name.to_string(),
                    created_at: now,
                    last_seen: now,
                    source: source.chars().take(128).collect(),
                    second_factor: second,
                },
            )?;
            let ctx = Context::new(name, "login");
            let event = login_event(name, source).fields(vec![format!("session:{}", session_id(&hash))]);
            audit::append(w, inner.ring.audit_key(), &event.record(&ctx, Outcome::Ok))?;
            Ok(Ok(Session {
                token,
                principal: name.to_string(),
                expires_at: from_micros(now.saturating_add(micros(inner.auth.session_absolute))),
            }))
        })?
    }

    /// Ends the session of `token` (logging out).
    pub fn logout(&self, token: &str) -> Result<()> {
        let hash = self.inner.token_hash(token);
        let inner = &self.inner;
        inner.store.write(|w| {
            let Some(session) = w.session(&hash)? else {
                return Ok::<_, Error>(());
            };
            w.remove_sessions(|k, _| k == hash.as_slice())?;
            let ctx = Context::new(session.principal, "logout");
            let event =
                Event::new("session.revoke").target(format!("session {}", session_id(&hash)));
            audit::append(w, inner.ring.audit_key(), &event.record(&ctx, Outcome::Ok))?;
            Ok(())
        })
    }

    /// Sets `name`'s password. Changing one's own password needs the
    /// current one; an admin may set another principal's (a reset). The
    /// strength policy applies; every session of `name` ends.
    pub fn set_password(
        &self,
        ctx: &Context,
        name: &str,
        current: Option<&str>,
        new_password: &str,
    ) -> Result<()> {
        let ctx = &self.inner.authenticate(ctx)?;
        identity::check_name(name)?;
        let inner = &self.inner;
        let event = || Event::new("principal.password").target(format!("principal {name}"));
        let own = ctx.principal() == name;
        let now = inner.clock.now().timestamp_micros();
        // Permission first: a refused caller learns nothing about `name`
        // (not even whether it exists) and costs no hashing.
        let (actor, target, creds, wait) = inner.store.read(|r| {
            let actor = inner.actor(r, ctx, event)?;
            let wait = inner.auth.wait(r.throttle(&name_key(name))?, now);
            Ok::<_, Error>((actor, r.principal(name)?, r.credentials(name)?, wait))
        })?;
        if !own && !actor.admin {
            let reason = format!(
                "principal `{}` may not set the password of `{name}`: only admins may",
                actor.name
            );
            return inner.deny(ctx, event(), reason);
        }
        let Some(target) = target else {
            return Err(IdentityError::Unknown(name.to_string()).into());
        };
        // A locked account stays locked: an old session cannot reset it.
        if own && creds.locked {
            let reason =
                format!("`{name}` is locked after failed logins; an admin must unlock it first");
            return inner.deny(ctx, event(), reason);
        }
        let mut personal: Vec<&str> = Vec::new();
        for key in ["email", "display_name"] {
            if let Some(v) = target.attributes.get(key) {
                personal.push(v);
                if let Some((local, _)) = v.split_once('@') {
                    personal.push(local);
                }
            }
        }
        password::check_strength(new_password, name, &personal)
            .map_err(IdentityError::WeakPassword)?;
        // Proving the current password is a login attempt: throttled and
        // counted the same way, so a stolen session cannot guess it.
        if own && creds.password.is_some() {
            if let Some(secs) = wait {
                let reason = format!("too many wrong current passwords; retry in {secs} s");
                return inner.deny(ctx, event(), reason);
            }
        }
        // Verified outside the write transaction: hashing takes tens of ms.
        let current_ok = match (&creds.password, current) {
            (None, _) => true,
            (Some(phc), Some(given)) => password::verify_password(phc, given),
            (Some(_), None) => false,
        };
        let phc = password::hash_password(new_password).map_err(IdentityError::WeakPassword)?;
        inner.store.write(|w| {
            let actor = match writer_actor(w, ctx)? {
                Ok(a) => a,
                Err(reason) => return refuse(inner, w, ctx, event(), Error::Denied(reason)),
            };
            if !own && !actor.admin {
                let reason = format!(
                    "principal `{}` may not set the password of `{name}`: only admins may",
                    actor.name
                );
                return refuse(inner, w, ctx, event(), Error::Denied(reason));
            }
            if own && !current_ok {
                inner.count_failure(w, name, "password change", true, now)?;
                let reason = "the current password is wrong: changing your own password needs it"
                    .to_string();
                return refuse(inner, w, ctx, event(), Error::Denied(reason));
            }
            let mut creds = w.credentials(name)?;
            creds.password = Some(phc.clone());
            creds.password_set_at = Some(inner.clock.now().timestamp_micros());
            w.put_credentials(name, &creds)?;
            w.remove_sessions(|_, s| s.principal == name)?;
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(()))
        })?
    }

    /// Starts TOTP enrolment for `name` (itself or, for an admin, anyone):
    /// returns the `otpauth://` URI and ten recovery codes. The factor is
    /// required from the first [`Engine::confirm_totp`] on.
    pub fn enroll_totp(&self, ctx: &Context, name: &str) -> Result<TotpEnrollment> {
        let ctx = &self.inner.authenticate(ctx)?;
        identity::check_name(name)?;
        let inner = &self.inner;
        let event = || Event::new("principal.2fa.enroll").target(format!("principal {name}"));
        let secret = totp::new_secret();
        let uri = Zeroizing::new(
            totp::otpauth_uri(&secret, name, ISSUER).map_err(IdentityError::SecondFactor)?,
        );
        let codes: Vec<Zeroizing<String>> = totp::new_recovery_codes()
            .into_iter()
            .map(Zeroizing::new)
            .collect();
        let sealed = inner.ring.seal_secret(&format!("totp:{name}"), &secret)?;
        let hashes: Vec<[u8; 32]> = codes.iter().map(|c| inner.recovery_hash(c)).collect();
        inner.store.write(|w| {
            if let Err(e) = self_or_admin(w, ctx, name, "enroll a second factor for")? {
                return refuse(inner, w, ctx, event(), e);
            }
            if w.principal(name)?.is_none() {
                return refuse(inner, w, ctx, event(), IdentityError::Unknown(name.into()).into());
            }
            let mut creds = w.credentials(name)?;
            if creds.totp.as_ref().is_some_and(|t| t.confirmed) {
                let e = IdentityError::SecondFactor(format!(
                    "`{name}` already has a second factor; disable it first with `custodian principal 2fa disable {name}`"
                ));
                return refuse(inner, w, ctx, event(), e.into());
            }
            creds.totp = Some(StoredTotp {
                secret: sealed.clone(),
                confirmed: false,
                last_step: None,
            });
            creds.recovery = hashes.clone();
            w.put_credentials(name, &creds)?;
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(()))
        })??;
        Ok(TotpEnrollment {
            uri,
            recovery_codes: codes,
        })
    }

    /// Confirms a TOTP enrolment with a current code from the app.
    pub fn confirm_totp(&self, ctx: &Context, name: &str, code: &str) -> Result<()> {
        let ctx = &self.inner.authenticate(ctx)?;
        identity::check_name(name)?;
        let inner = &self.inner;
        let now = inner.clock.now();
        let event = || Event::new("principal.2fa.confirm").target(format!("principal {name}"));
        inner.store.write(|w| {
            if let Err(e) = self_or_admin(w, ctx, name, "confirm the second factor of")? {
                return refuse(inner, w, ctx, event(), e);
            }
            let mut creds = w.credentials(name)?;
            let Some(enrolment) = creds.totp.clone() else {
                let e = IdentityError::SecondFactor(format!(
                    "`{name}` has no second factor to confirm; run `custodian principal 2fa enroll {name}` first"
                ));
                return refuse(inner, w, ctx, event(), e.into());
            };
            let secret = inner.ring.open_secret(&format!("totp:{name}"), &enrolment.secret)?;
            let Some(step) = totp::verify(&secret, code, unix_secs(now), enrolment.last_step) else {
                let e = IdentityError::SecondFactor(
                    "the code does not match: check the app's clock and type the current code".into(),
                );
                return refuse(inner, w, ctx, event(), e.into());
            };
            creds.totp = Some(StoredTotp {
                confirmed: true,
                last_step: Some(step),
                ..enrolment
            });
            w.put_credentials(name, &creds)?;
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(()))
        })?
    }

    /// Removes `name`'s second factor and recovery codes. Only admins may
    /// (a principal that lost its device cannot prove who it is).
    pub fn disable_totp(&self, ctx: &Context, name: &str) -> Result<()> {
        let ctx = &self.inner.authenticate(ctx)?;
        identity::check_name(name)?;
        let inner = &self.inner;
        let event = || Event::new("principal.2fa.disable").target(format!("principal {name}"));
        inner.store.write(|w| {
            if let Err(e) = admin_only(w, ctx, "disable second factors")? {
                return refuse(inner, w, ctx, event(), e);
            }
            let mut creds = w.credentials(name)?;
            creds.totp = None;
            creds.recovery.clear();
            w.put_credentials(name, &creds)?;
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(()))
        })?
    }

    /// Unlocks an account locked by failed logins. Only admins may.
    pub fn unlock_principal(&self, ctx: &Context, name: &str) -> Result<()> {
        let ctx = &self.inner.authenticate(ctx)?;
        identity::check_name(name)?;
        let inner = &self.inner;
        let event = || Event::new("principal.unlock").target(format!("principal {name}"));
        inner.store.write(|w| {
            if let Err(e) = admin_only(w, ctx, "unlock principals")? {
                return refuse(inner, w, ctx, event(), e);
            }
            if w.principal(name)?.is_none() {
                return refuse(
                    inner,
                    w,
                    ctx,
                    event(),
                    IdentityError::Unknown(name.into()).into(),
                );
            }
            let mut creds = w.credentials(name)?;
            creds.locked = false;
            creds.failures = 0;
            creds.last_failure_at = None;
            w.put_credentials(name, &creds)?;
            w.put_throttle(&name_key(name), StoredThrottle::default())?;
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(()))
        })?
    }

    /// Live sessions: all of them for an admin, one's own otherwise.
    pub fn sessions(&self, ctx: &Context) -> Result<Vec<SessionInfo>> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let event = || Event::new("session.list");
        let (actor, all) = inner.store.read(|r| {
            let actor = inner.actor(r, ctx, event)?;
            Ok::<_, Error>((actor, r.sessions()?))
        })?;
        inner.audit_read(event().record(ctx, Outcome::Ok))?;
        let absolute = micros(inner.auth.session_absolute);
        let now = inner.clock.now().timestamp_micros();
        Ok(all
            .into_iter()
            .filter(|(_, s)| actor.admin || s.principal == actor.name)
            .filter(|(_, s)| !inner.expired(s, now))
            .map(|(hash, s)| SessionInfo {
                id: session_id(&hash),
                expires_at: from_micros(s.created_at.saturating_add(absolute)),
                principal: s.principal,
                created_at: from_micros(s.created_at),
                last_seen: from_micros(s.last_seen),
                source: s.source,
                second_factor: s.second_factor,
            })
            .collect())
    }

    /// Revokes one session, named by its token or by the id
    /// [`Engine::sessions`] lists. One's own, or any for an admin.
    pub fn revoke_session(&self, ctx: &Context, token_or_id: &str) -> Result<()> {
        let ctx = &self.inner.authenticate(ctx)?;
        let inner = &self.inner;
        let by_token = token_or_id
            .starts_with(TOKEN_PREFIX)
            .then(|| inner.token_hash(token_or_id));
        let shown: String = token_or_id.chars().take(16).collect();
        let event = || Event::new("session.revoke").target(format!("session {shown}"));
        inner.store.write(|w| {
            let actor = match writer_actor(w, ctx)? {
                Ok(a) => a,
                Err(reason) => return refuse(inner, w, ctx, event(), Error::Denied(reason)),
            };
            let mut others = false;
            let removed = w.remove_sessions(|k, s| {
                let hit = match &by_token {
                    Some(h) => k == h.as_slice(),
                    None => hex(k).starts_with(token_or_id) && token_or_id.len() >= 8,
                };
                let allowed = actor.admin || s.principal == actor.name;
                others |= hit && !allowed;
                hit && allowed
            })?;
            if removed == 0 {
                let error = if others {
                    Error::Denied(format!(
                        "principal `{}` may revoke only its own sessions",
                        actor.name
                    ))
                } else {
                    Error::NotFound(format!("session `{shown}`"))
                };
                return refuse(inner, w, ctx, event(), error);
            }
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(()))
        })?
    }

    /// Revokes every session of `name`; returns how many there were. One's
    /// own, or anyone's for an admin.
    pub fn revoke_sessions(&self, ctx: &Context, name: &str) -> Result<usize> {
        let ctx = &self.inner.authenticate(ctx)?;
        identity::check_name(name)?;
        let inner = &self.inner;
        let event = || Event::new("session.revoke").target(format!("sessions of {name}"));
        inner.store.write(|w| {
            if let Err(e) = self_or_admin(w, ctx, name, "revoke the sessions of")? {
                return refuse(inner, w, ctx, event(), e);
            }
            let n = w.remove_sessions(|_, s| s.principal == name)?;
            audit::append(w, inner.ring.audit_key(), &event().record(ctx, Outcome::Ok))?;
            Ok::<_, Error>(Ok(n))
        })?
    }
}

impl Inner {
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
                .ring
                .open_secret(&format!("totp:{name}"), &enrolment.secret)?;
            if let Some(step) = totp::verify(&secret, code, unix_secs(now), enrolment.last_step) {
                enrolment.last_step = Some(step);
                return Ok(true);
            }
        }
        let hash = self.recovery_hash(code);
        let before = creds.recovery.len();
        creds.recovery.retain(|h| constant_eq(h, &hash) == 0);
        Ok(creds.recovery.len() < before)
    }
}

fn constant_eq(a: &[u8; 32], b: &[u8; 32]) -> u8 {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    u8::from(diff == 0)
}

fn unix_secs(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp()).unwrap_or(0)
}

fn session_id(hash: &[u8; 32]) -> String {
    hex(hash.get(..6).unwrap_or_default())
}

/// `Ok(Err(refusal))` unless the actor is `name` itself or an admin.
fn self_or_admin(w: &Writer<'_>, ctx: &Context, name: &str, what: &str) -> Result<Result<()>> {
    Ok(match writer_actor(w, ctx)? {
        Ok(a) if a.admin || a.name == name => Ok(()),
        Ok(a) => Err(Error::Denied(format!(
            "principal `{}` may not {what} `{name}`: only itself or an admin may",
            a.name
        ))),
        Err(reason) => Err(Error::Denied(reason)),
    })
}

/// `Ok(Err(refusal))` unless the actor is an admin.
pub(crate) fn admin_only(w: &Writer<'_>, ctx: &Context, what: &str) -> Result<Result<()>> {
    Ok(match writer_actor(w, ctx)? {
        Ok(a) if a.admin => Ok(()),
        Ok(a) => Err(Error::Denied(format!(
            "principal `{}` may not {what}: only admins may",
            a.name
        ))),
        Err(reason) => Err(Error::Denied(reason)),
    })
}
