//! The guard and approval steps of the path. Both let everything through
//! until the guard (budgets, rules, alerts) and the approvals (a second
//! approver for protected operations) land; they are called where those
//! must decide, so adding them changes no caller.

use super::{Entry, Read};
use crate::identity::Actor;
use crate::model::CustomerId;
use crate::store::Snapshot;
use crate::{Denied, Result};

/// The guard: the actor's budgets and rules (time of day, departure) for
/// the operation `op` names, on the operation's own snapshot or
/// transaction, before it does anything.
pub(super) fn guard(_snapshot: &dyn Snapshot, _actor: &Actor, _op: &Entry) -> Result<(), Denied> {
    Ok(())
}

/// The approval step: a protected operation runs only with a matching
/// approved request, looked up on the operation's own snapshot or
/// transaction.
pub(super) fn approval(
    _snapshot: &dyn Snapshot,
    _actor: &Actor,
    _op: &Entry,
) -> Result<(), Denied> {
    Ok(())
}

impl Read<'_> {
    /// The guard on what a read is about to reveal: every customer whose
    /// data it returns, counted before anything is decrypted, so a request
    /// larger than what is left can be refused whole.
    pub(crate) fn reveal(&mut self, customers: &[CustomerId]) -> Result<()> {
        let _ = (self.actor(), customers);
        Ok(())
    }
}
