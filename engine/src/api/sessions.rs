//! Logins, passwords, the second factor and sessions.

use zeroize::Zeroizing;

use super::Engine;
use crate::crypto::hex;
use crate::identity::{self, IdentityError, password, totp};
use crate::model::from_micros;
use crate::op::{Entry, Keep, Op, Rule, Session, SessionInfo, TotpEnrollment, name_key};
use crate::op::{session_id, token_hash, token_is_id};
use crate::store::{StoredThrottle, StoredTotp};
use crate::{Context, Denied, Error, Result};

const ISSUER: &str = "Custodian";

/// The principal `name` itself, or an admin.
fn self_or_admin(name: &str, what: &str) -> Rule {
    Rule::SelfOrAdmin {
        name: name.to_string(),
        what: what.to_string(),
    }
}

impl Engine {
    /// Logs `name` in with a password and, when the account has one or a
    /// role requires one, a second factor (a TOTP code or a recovery code).
    /// `source` names where the attempt comes from (an IP address, a
    /// terminal), for throttling and the audit chain. A failure answers
    /// [`Denied::LoginFailed`] whatever was wrong.
    pub fn login(
        &self,
        name: &str,
        password: &str,
        second_factor: Option<&str>,
        source: &str,
    ) -> Result<Session> {
        self.core.login(name, password, second_factor, source)
    }

    /// Ends the session of `token` (logging out).
    pub fn logout(&self, token: &str) -> Result<()> {
        self.core.logout(token)
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
        identity::check_name(name)?;
        let entry = Entry::new("principal.password").target(format!("principal {name}"));
        let op = Op::new(entry.clone()).rule(self_or_admin(name, "set the password of"));
        // Permission first: a refused caller learns nothing about `name`
        // (not even whether it exists) and costs no hashing.
        let admitted = self.core.admit_early(ctx, &op)?;
        let caller = admitted.caller();
        let own = admitted.actor().name == name;
        let now = self.core.records.now();
        let (target, creds, wait) = self.core.store.read(|r| {
            let wait = self.core.auth.wait(r.throttle(&name_key(name))?, now);
            Ok::<_, Error>((r.principal(name)?, r.credentials(name)?, wait))
        })?;
        let Some(target) = target else {
            return Err(IdentityError::Unknown(name.to_string()).into());
        };
        // A locked account stays locked: an old session cannot reset it.
        if own && creds.locked {
            return self
                .core
                .refuse(caller, &entry, Denied::Locked(name.to_string()).into());
        }
        let mut personal: Vec<&str> = Vec::new();
        for key in ["email", "display_name"] {
            if let Some(v) = target.attributes.get(key) {
                personal.push(v);
                personal.extend(v.split_once('@').map(|(local, _)| local));
            }
        }
        password::check_strength(new_password, name, &personal)
            .map_err(IdentityError::WeakPassword)?;
        // Proving the current password is a login attempt: throttled and
        // counted the same way, so a stolen session cannot guess it.
        if let Some(secs) = wait.filter(|_| own && creds.password.is_some()) {
            let throttled = Denied::Throttled {
                what: "password change".into(),
                retry_after: secs,
            };
            return self.core.refuse(caller, &entry, throttled.into());
        }
        // Verified outside the write transaction: hashing takes tens of ms.
        let current_ok = match (&creds.password, current) {
            (None, _) => true,
            (Some(phc), Some(given)) => password::verify_password(phc, given),
            (Some(_), None) => false,
        };
        let phc = password::hash_password(new_password).map_err(IdentityError::WeakPassword)?;
        self.core.write_as(caller, op, |tx| {
            if own && !current_ok {
                tx.keep_on_refusal(Keep::Failure {
                    name: name.to_string(),
                    source: "password change".into(),
                });
                let why = "the current password is wrong: changing your own password needs it";
                return Err(Denied::Rule(why.into()).into());
            }
            let mut creds = tx.txn().credentials(name)?;
            creds.password = Some(phc.clone());
            creds.password_set_at = Some(tx.records().now());
            tx.txn().put_credentials(name, &creds)?;
            tx.txn().remove_sessions(&mut |_, s| s.principal == name)?;
            Ok(())
        })
    }

    /// Starts TOTP enrolment for `name` (itself or, for an admin, anyone):
    /// returns the `otpauth://` URI and ten recovery codes. The factor is
    /// required from the first [`Engine::confirm_totp`] on.
    pub fn enroll_totp(&self, ctx: &Context, name: &str) -> Result<TotpEnrollment> {
        identity::check_name(name)?;
        let ring = &self.core.records.ring;
        let secret = totp::new_secret();
        let uri = totp::otpauth_uri(&secret, name, ISSUER).map_err(IdentityError::SecondFactor)?;
        let codes: Vec<Zeroizing<String>> = (totp::new_recovery_codes().into_iter())
            .map(Zeroizing::new)
            .collect();
        let sealed = ring.seal_secret(&totp::secret_slot(name), &secret)?;
        let hashes: Vec<[u8; 32]> = (codes.iter())
            .map(|c| totp::hash_recovery(ring.login_key(), c))
            .collect();
        let entry = Entry::new("principal.2fa.enroll").target(format!("principal {name}"));
        let op = Op::new(entry).rule(self_or_admin(name, "enroll a second factor for"));
        self.core.write(ctx, op, |tx| {
            if tx.txn().principal(name)?.is_none() {
                return Err(IdentityError::Unknown(name.into()).into());
            }
            let mut creds = tx.txn().credentials(name)?;
            if creds.totp.as_ref().is_some_and(|t| t.confirmed) {
                let why = format!("`{name}` already has a second factor; disable it first");
                return Err(IdentityError::SecondFactor(why).into());
            }
            creds.totp = Some(StoredTotp {
                secret: sealed.clone(),
                confirmed: false,
                last_step: None,
            });
            creds.recovery = hashes.clone();
            tx.txn().put_credentials(name, &creds)?;
            Ok(())
        })?;
        Ok(TotpEnrollment {
            uri: Zeroizing::new(uri),
            recovery_codes: codes,
        })
    }

    /// Confirms a TOTP enrolment with a current code from the app.
    pub fn confirm_totp(&self, ctx: &Context, name: &str, code: &str) -> Result<()> {
        identity::check_name(name)?;
        let now = self.core.records.clock.now();
        let now_secs = u64::try_from(now.timestamp()).unwrap_or(0);
        let entry = Entry::new("principal.2fa.confirm").target(format!("principal {name}"));
        let op = Op::new(entry).rule(self_or_admin(name, "confirm the second factor of"));
        self.core.write(ctx, op, |tx| {
            let mut creds = tx.txn().credentials(name)?;
            let Some(enrolment) = creds.totp.clone() else {
                let why = format!("`{name}` has no second factor to confirm; enroll one first");
                return Err(IdentityError::SecondFactor(why).into());
            };
            let ring = &tx.records().ring;
            let secret = ring.open_secret(&totp::secret_slot(name), &enrolment.secret)?;
            let Some(step) = totp::verify(&secret, code, now_secs, enrolment.last_step) else {
                let why =
                    "the code does not match: check the app's clock and type the current code";
                return Err(IdentityError::SecondFactor(why.into()).into());
            };
            creds.totp = Some(StoredTotp {
                confirmed: true,
                last_step: Some(step),
                ..enrolment
            });
            tx.txn().put_credentials(name, &creds)?;
            Ok(())
        })
    }

    /// Removes `name`'s second factor and recovery codes. Only admins may
    /// (a principal that lost its device cannot prove who it is).
    pub fn disable_totp(&self, ctx: &Context, name: &str) -> Result<()> {
        identity::check_name(name)?;
        let entry = Entry::new("principal.2fa.disable").target(format!("principal {name}"));
        let op = Op::new(entry).admins("disable second factors");
        self.core.write(ctx, op, |tx| {
            let mut creds = tx.txn().credentials(name)?;
            creds.totp = None;
            creds.recovery.clear();
            tx.txn().put_credentials(name, &creds)?;
            Ok(())
        })
    }

    /// Unlocks an account locked by failed logins. Only admins may.
    pub fn unlock_principal(&self, ctx: &Context, name: &str) -> Result<()> {
        identity::check_name(name)?;
        let entry = Entry::new("principal.unlock").target(format!("principal {name}"));
        let op = Op::new(entry).admins("unlock principals");
        self.core.write(ctx, op, |tx| {
            if tx.txn().principal(name)?.is_none() {
                return Err(IdentityError::Unknown(name.into()).into());
            }
            let mut creds = tx.txn().credentials(name)?;
            creds.locked = false;
            creds.failures = 0;
            creds.last_failure_at = None;
            tx.txn().put_credentials(name, &creds)?;
            tx.txn()
                .put_throttle(&name_key(name), StoredThrottle::default())?;
            Ok(())
        })
    }

    /// Live sessions: all of them for an admin, one's own otherwise.
    pub fn sessions(&self, ctx: &Context) -> Result<Vec<SessionInfo>> {
        let now = self.core.records.now();
        let auth = &self.core.auth;
        self.core
            .read(ctx, Op::new(Entry::new("session.list")), |read| {
                let actor = read.actor().clone();
                let all = read.snapshot().sessions()?;
                Ok((all.into_iter())
                    .filter(|(_, s)| actor.admin || s.principal == actor.name)
                    .filter(|(_, s)| !auth.expired(s, now))
                    .map(|(hash, s)| SessionInfo {
                        id: session_id(&hash),
                        expires_at: auth.expires_at(s.created_at),
                        principal: s.principal,
                        created_at: from_micros(s.created_at),
                        last_seen: from_micros(s.last_seen),
                        source: s.source,
                        second_factor: s.second_factor,
                    })
                    .collect())
            })
    }

    /// Revokes one session, named by its token or by the id
    /// [`Engine::sessions`] lists. One's own, or any for an admin.
    pub fn revoke_session(&self, ctx: &Context, token_or_id: &str) -> Result<()> {
        let by_token =
            (!token_is_id(token_or_id)).then(|| token_hash(&self.core.records.ring, token_or_id));
        let shown: String = token_or_id.chars().take(16).collect();
        let entry = Entry::new("session.revoke").target(format!("session {shown}"));
        self.core.write(ctx, Op::new(entry), |tx| {
            let actor = tx.actor().clone();
            let mut others = false;
            let removed = tx.txn().remove_sessions(&mut |k, s| {
                let hit = match &by_token {
                    Some(h) => k == h.as_slice(),
                    None => hex(k).starts_with(token_or_id) && token_or_id.len() >= 8,
                };
                let allowed = actor.admin || s.principal == actor.name;
                others |= hit && !allowed;
                hit && allowed
            })?;
            match (removed, others) {
                (0, true) => Err(Denied::NotPermitted {
                    principal: actor.name,
                    what: "revoke the sessions of others".into(),
                    who: "itself or an admin".into(),
                }
                .into()),
                (0, false) => Err(Error::NotFound(format!("session `{shown}`"))),
                _ => Ok(()),
            }
        })
    }

    /// Revokes every session of `name`; returns how many there were. One's
    /// own, or anyone's for an admin.
    pub fn revoke_sessions(&self, ctx: &Context, name: &str) -> Result<usize> {
        identity::check_name(name)?;
        let entry = Entry::new("session.revoke").target(format!("sessions of {name}"));
        let op = Op::new(entry).rule(self_or_admin(name, "revoke the sessions of"));
        self.core.write(ctx, op, |tx| {
            Ok(tx.txn().remove_sessions(&mut |_, s| s.principal == name)?)
        })
    }
}
