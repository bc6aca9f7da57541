//! The identity step: who is acting ([`Context`], as the caller states it)
//! and who was found to be acting ([`Caller`], which only this step makes).

use std::time::Duration;

use super::{Core, Entry, outcome_of};
use crate::audit::{Outcome, Record};
use crate::crypto::{Keyring, keyed_hash};
use crate::model::wall_micros;
use crate::store::Txn;
use crate::{Denied, Error, Result};

/// `last_seen` is written at most this often: a read per call, a write per
/// minute per session.
const LAST_SEEN_GRANULARITY: Duration = Duration::from_secs(60);

pub(super) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The keyed hash a session token is stored under.
pub(crate) fn token_hash(ring: &Keyring, token: &str) -> [u8; 32] {
    keyed_hash(ring.login_key(), &[b"session", token.as_bytes()])
}

/// Who is acting, and for which purpose. Every operation takes one; both are
/// written to the audit entry.
///
/// A context is made either from a session token that [`crate::Engine::login`]
/// issued ([`Context::session`]), or by a host application that
/// authenticates its users itself and vouches for them
/// ([`Context::new`]: the host capability; only code holding the engine,
/// and so the master key, can use it).
#[derive(Clone, PartialEq, Eq)]
pub struct Context {
    principal: String,
    purpose: String,
    session: Option<String>,
    step_up: Option<String>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("principal", &self.principal)
            .field("purpose", &self.purpose)
            .field("session", &self.session.as_ref().map(|_| "…"))
            .field("step_up", &self.step_up.as_ref().map(|_| "…"))
            .finish()
    }
}

impl Context {
    /// `principal`, authenticated by the host, acting for `purpose` (e.g.
    /// `sales_contact`, `support`).
    pub fn new(principal: impl Into<String>, purpose: impl Into<String>) -> Self {
        Self {
            principal: principal.into(),
            purpose: purpose.into(),
            session: None,
            step_up: None,
        }
    }

    /// Whoever holds the session `token` (from [`crate::Engine::login`]),
    /// acting for `purpose`. An expired or revoked token fails every call.
    pub fn session(token: impl Into<String>, purpose: impl Into<String>) -> Self {
        Self {
            principal: "(session)".into(),
            purpose: purpose.into(),
            session: Some(token.into()),
            step_up: None,
        }
    }

    /// The same context with a fresh second-factor code (TOTP or recovery
    /// code) of the acting principal: a read past a budget whose policy's
    /// `limits` says `over: "step_up"` goes on with it. The code is checked
    /// only when a budget asks for it, and then used up (a code is good for
    /// one step-up, as for one login); a wrong one counts as a failed login.
    pub fn step_up(mut self, code: impl Into<String>) -> Self {
        self.step_up = Some(code.into());
        self
    }

    /// The acting principal's name.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// The stated purpose.
    pub fn purpose(&self) -> &str {
        &self.purpose
    }
}

/// A caller whose identity was established: a host-vouched principal, or
/// the principal of a live session with the second factor its roles
/// require. Only the identity step makes one. Whether the principal is
/// active is checked on the operation's own snapshot or transaction.
#[derive(Clone)]
pub(crate) struct Caller {
    principal: String,
    purpose: String,
    /// A second-factor code the context carries for a step-up.
    step_up: Option<String>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("principal", &self.principal)
            .field("purpose", &self.purpose)
            .field("step_up", &self.step_up.as_ref().map(|_| "…"))
            .finish()
    }
}

impl Caller {
    /// The engine acting on its own behalf (setup, the first admin) or a
    /// plugin's principal on a call the engine makes: no session to check.
    pub(super) fn internal(principal: impl Into<String>, purpose: impl Into<String>) -> Self {
        Self {
            principal: principal.into(),
            purpose: purpose.into(),
            step_up: None,
        }
    }

    /// With the step-up code `ctx` carries.
    fn stepping_up(mut self, ctx: &Context) -> Self {
        self.step_up = ctx.step_up.clone();
        self
    }

    /// The step-up code the context carried.
    pub(crate) fn step_up_code(&self) -> Option<&str> {
        self.step_up.as_deref()
    }

    pub(crate) fn principal(&self) -> &str {
        &self.principal
    }

    pub(crate) fn purpose(&self) -> &str {
        &self.purpose
    }
}

/// The audit record of what a caller did.
impl Entry {
    /// The audit record for `who` (principal, purpose) with `outcome`.
    /// Caller-supplied text is cut to a bounded length: a refused call by
    /// an unknown principal must not be able to write an entry of any size.
    pub(crate) fn record(&self, who: &Caller, outcome: Outcome) -> Record {
        self.clone().into_record(who, outcome)
    }

    /// [`Entry::record`], consuming the entry.
    pub(crate) fn into_record(self, who: &Caller, outcome: Outcome) -> Record {
        // A reason can quote what a caller or a plugin sent: bounded too.
        let outcome = match outcome {
            Outcome::Denied(reason) => Outcome::Denied(clip(&reason, MAX_REASON)),
            Outcome::Failed(reason) => Outcome::Failed(clip(&reason, MAX_REASON)),
            Outcome::Ok => Outcome::Ok,
        };
        Record {
            at: wall_micros(),
            actor: clip(who.principal(), 128),
            action: self.action,
            target: self.target.as_deref().map(|t| clip(t, 256)),
            customers: self.customers,
            fields: self.fields,
            purpose: clip(who.purpose(), 256),
            outcome,
        }
    }
}

/// The longest reason an audit entry keeps, in bytes.
const MAX_REASON: usize = 1024;

/// `text` cut to at most `max` bytes, on a character boundary, marked `…`.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", text.get(..end).unwrap_or_default())
}

impl Core {
    /// The identity step: resolves a session context into the principal it
    /// stands for; a host-vouched context passes as it is. A refusal is
    /// audited.
    pub(crate) fn authenticate(&self, ctx: &Context) -> Result<Caller> {
        let Some(token) = &ctx.session else {
            return Ok(Caller::internal(&ctx.principal, &ctx.purpose).stepping_up(ctx));
        };
        let hash = token_hash(&self.records.ring, token);
        let now = self.records.now();
        let found = self.store.read(|r| {
            let Some(session) = r.session(&hash)? else {
                return Ok::<_, Error>(None);
            };
            let principal = r.principal(&session.principal)?;
            Ok(Some((session, principal)))
        })?;
        let entry = Entry::new("session.use");
        let refuse = |caller: &Caller, denied: Denied| {
            let error = Error::Denied(denied);
            self.audit_read(entry.record(caller, outcome_of(&error)))?;
            Err(error)
        };
        let Some((session, principal)) = found else {
            let anonymous = Caller::internal("(session)", &ctx.purpose);
            return refuse(&anonymous, Denied::InvalidSession);
        };
        let caller = Caller::internal(session.principal.clone(), &ctx.purpose);
        if self.auth.expired(&session, now) {
            self.store.write(|w: &mut dyn Txn| {
                w.remove_sessions(&mut |k, _| k == hash.as_slice())?;
                Ok::<_, Error>(())
            })?;
            return refuse(&caller, Denied::SessionExpired);
        }
        let Some(principal) = principal.filter(|p| p.active) else {
            return refuse(&caller, Denied::Deactivated(session.principal.clone()));
        };
        let needs = self.roles_needing_2fa(&principal.roles);
        if !session.second_factor && !needs.is_empty() {
            return refuse(&caller, Denied::NeedsSecondFactor { roles: needs });
        }
        if now.saturating_sub(session.last_seen) > micros(LAST_SEEN_GRANULARITY) {
            self.store.write(|w: &mut dyn Txn| {
                // Revoked meanwhile: do not bring it back.
                if let Some(mut s) = w.session(&hash)? {
                    s.last_seen = now;
                    w.put_session(&hash, &s)?;
                }
                Ok::<_, Error>(())
            })?;
        }
        Ok(caller.stepping_up(ctx))
    }

    /// Roles among `roles` that the installed policy says need 2FA.
    pub(crate) fn roles_needing_2fa(&self, roles: &[String]) -> Vec<String> {
        let policy = self.policy();
        (roles.iter())
            .filter(|r| (policy.roles().get(r.as_str())).is_some_and(|d| d.require_2fa))
            .cloned()
            .collect()
    }
}
