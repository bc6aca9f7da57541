//! The request a policy reads (`req`), and the record of what it read.
//!
//! Every value a script can learn about a request passes through [`read`]:
//! one [`Probe`] (which value) answered from a [`Live`] view of the
//! request. While a call runs, each probe and its answer is recorded in
//! order; that record is what lets [`super::memo`] reuse the decision for a
//! later request that answers every probe the same way.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::Arc;

use rhai::{Array, Dynamic, INT, ImmutableString, Map};

use super::{Action, CustomerFacts};

/// Most probes one call may record; a call reading more is not
/// remembered (it is still decided).
pub(crate) const MAX_TRACE_PROBES: usize = 64;

/// The principal of a request, built once per operation and shared.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct PrincipalData {
    id: ImmutableString,
    kind: ImmutableString,
    roles: Vec<ImmutableString>,
    attributes: BTreeMap<String, String>,
}

impl PrincipalData {
    pub(super) fn new(
        id: &str,
        kind: &str,
        roles: &[String],
        attributes: &BTreeMap<String, String>,
    ) -> PrincipalData {
        PrincipalData {
            id: id.into(),
            kind: kind.into(),
            roles: roles.iter().map(|r| r.as_str().into()).collect(),
            attributes: attributes.clone(),
        }
    }
}

/// A request as plain borrowed data: what probes are answered from.
#[derive(Clone, Copy)]
pub(super) struct Live<'a> {
    pub(super) principal: &'a PrincipalData,
    pub(super) action: Action,
    pub(super) purpose: &'a str,
    pub(super) customer: Option<&'a CustomerFacts>,
}

/// One value a script can read from a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Probe {
    /// `req.action`.
    Action,
    /// `req.purpose`.
    Purpose,
    /// Whether `req.customer` is a customer or `()`.
    HasCustomer,
    /// `req.principal.id`.
    PrincipalId,
    /// `req.principal.kind`.
    PrincipalKind,
    /// `req.principal.roles`.
    PrincipalRoles,
    /// `req.principal.attributes`.
    PrincipalAttributes,
    /// `req.principal.has_role(name)`.
    HasRole(ImmutableString),
    /// `req.customer.id`.
    CustomerId,
    /// `req.customer.owner`.
    CustomerOwner,
    /// `req.customer.team`.
    CustomerTeam,
    /// `req.customer.status`.
    CustomerStatus,
    /// `req.customer.tags`.
    CustomerTags,
    /// `req.customer.has_tag(name)`.
    HasTag(ImmutableString),
}

/// A probe's answer, borrowed from the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AnswerRef<'a> {
    Bool(bool),
    Int(INT),
    Text(&'a str),
    SharedText(&'a ImmutableString),
    MaybeText(Option<&'a str>),
    SharedTexts(&'a [ImmutableString]),
    Texts(&'a [String]),
    Pairs(&'a BTreeMap<String, String>),
}

/// A probe's answer, kept in a remembered path. Strings are rhai strings,
/// so that the value a script gets and the one recorded share storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Answer {
    Bool(bool),
    Int(INT),
    Text(ImmutableString),
    MaybeText(Option<ImmutableString>),
    Texts(Vec<ImmutableString>),
    Pairs(BTreeMap<String, String>),
}

impl Answer {
    fn of(answer: AnswerRef<'_>) -> Answer {
        match answer {
            AnswerRef::Bool(b) => Answer::Bool(b),
            AnswerRef::Int(i) => Answer::Int(i),
            AnswerRef::Text(t) => Answer::Text(t.into()),
            AnswerRef::SharedText(t) => Answer::Text(t.clone()),
            AnswerRef::MaybeText(t) => Answer::MaybeText(t.map(Into::into)),
            AnswerRef::SharedTexts(t) => Answer::Texts(t.to_vec()),
            AnswerRef::Texts(t) => Answer::Texts(t.iter().map(|s| s.as_str().into()).collect()),
            AnswerRef::Pairs(p) => Answer::Pairs(p.clone()),
        }
    }

    /// The same answer, borrowed.
    pub(super) fn as_ref(&self) -> AnswerRef<'_> {
        match self {
            Answer::Bool(b) => AnswerRef::Bool(*b),
            Answer::Int(i) => AnswerRef::Int(*i),
            Answer::Text(t) => AnswerRef::SharedText(t),
            Answer::MaybeText(t) => AnswerRef::MaybeText(t.as_ref().map(ImmutableString::as_str)),
            Answer::Texts(t) => AnswerRef::SharedTexts(t),
            Answer::Pairs(p) => AnswerRef::Pairs(p),
        }
    }

    /// The value a script gets.
    fn to_dynamic(&self) -> Dynamic {
        match self {
            Answer::Bool(b) => (*b).into(),
            Answer::Int(i) => (*i).into(),
            Answer::Text(t) => t.clone().into(),
            Answer::MaybeText(t) => t.clone().map_or(Dynamic::UNIT, Into::into),
            Answer::Texts(t) => Dynamic::from_array(t.iter().cloned().map(Dynamic::from).collect()),
            Answer::Pairs(p) => Dynamic::from_map(
                p.iter()
                    .map(|(k, v)| (k.as_str().into(), ImmutableString::from(v.as_str()).into()))
                    .collect::<Map>(),
            ),
        }
    }
}

impl AnswerRef<'_> {
    /// The answer as text, if it is one.
    fn text(&self) -> Option<&str> {
        match self {
            AnswerRef::Text(t) => Some(t),
            AnswerRef::SharedText(t) => Some(t.as_str()),
            _ => None,
        }
    }

    /// Whether two answers are the same value, however each is stored.
    pub(super) fn same(self, other: AnswerRef<'_>) -> bool {
        let mixed = |a: &[String], b: &[ImmutableString]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.as_str() == y.as_str())
        };
        match (self, other) {
            (AnswerRef::Bool(a), AnswerRef::Bool(b)) => a == b,
            (AnswerRef::Int(a), AnswerRef::Int(b)) => a == b,
            (AnswerRef::MaybeText(a), AnswerRef::MaybeText(b)) => a == b,
            (AnswerRef::Pairs(a), AnswerRef::Pairs(b)) => a == b,
            (AnswerRef::Texts(a), AnswerRef::Texts(b)) => a == b,
            (AnswerRef::SharedTexts(a), AnswerRef::SharedTexts(b)) => a == b,
            (AnswerRef::Texts(a), AnswerRef::SharedTexts(b))
            | (AnswerRef::SharedTexts(b), AnswerRef::Texts(a)) => mixed(a, b),
            (a, b) => a.text().is_some_and(|a| b.text() == Some(a)),
        }
    }

    /// Hashes the value, consistently with [`AnswerRef::same`].
    pub(super) fn hash_value<H: std::hash::Hasher>(self, state: &mut H) {
        use std::hash::Hash;
        match self {
            AnswerRef::Bool(b) => (0u8, b).hash(state),
            AnswerRef::Int(i) => (1u8, i).hash(state),
            AnswerRef::MaybeText(t) => (2u8, t).hash(state),
            AnswerRef::Pairs(p) => (3u8, p).hash(state),
            AnswerRef::Text(t) => (4u8, t).hash(state),
            AnswerRef::SharedText(t) => (4u8, t.as_str()).hash(state),
            AnswerRef::Texts(t) => {
                (5u8, t.len()).hash(state);
                t.iter().for_each(|item| item.as_str().hash(state));
            }
            AnswerRef::SharedTexts(t) => {
                (5u8, t.len()).hash(state);
                t.iter().for_each(|item| item.as_str().hash(state));
            }
        }
    }
}

impl Live<'_> {
    /// The answer to `probe`. Customer probes on a request without a
    /// customer cannot be asked by a script (there is no customer value to
    /// ask them of); they answer `false`/`()` here.
    pub(super) fn answer(&self, probe: &Probe) -> AnswerRef<'_> {
        let customer = self.customer;
        match probe {
            Probe::Action => AnswerRef::Text(self.action.as_str()),
            Probe::Purpose => AnswerRef::Text(self.purpose),
            Probe::HasCustomer => AnswerRef::Bool(customer.is_some()),
            Probe::PrincipalId => AnswerRef::SharedText(&self.principal.id),
            Probe::PrincipalKind => AnswerRef::SharedText(&self.principal.kind),
            Probe::PrincipalRoles => AnswerRef::SharedTexts(&self.principal.roles),
            Probe::PrincipalAttributes => AnswerRef::Pairs(&self.principal.attributes),
            Probe::HasRole(role) => AnswerRef::Bool(self.principal.roles.iter().any(|r| r == role)),
            // Ids are sequential and never near 2^63; saturate rather than wrap.
            Probe::CustomerId => {
                AnswerRef::Int(customer.map_or(0, |c| INT::try_from(c.id).unwrap_or(INT::MAX)))
            }
            Probe::CustomerOwner => AnswerRef::MaybeText(customer.map(|c| c.owner.as_str())),
            Probe::CustomerTeam => AnswerRef::MaybeText(customer.and_then(|c| c.team.as_deref())),
            Probe::CustomerStatus => AnswerRef::MaybeText(customer.map(|c| c.status.as_str())),
            Probe::CustomerTags => AnswerRef::Texts(customer.map_or(&[], |c| &c.tags)),
            Probe::HasTag(tag) => {
                AnswerRef::Bool(customer.is_some_and(|c| c.tags.iter().any(|t| t == tag.as_str())))
            }
        }
    }
}

thread_local! {
    /// What the call running on this thread has read: probes and answers
    /// in the order first asked.
    static TRACE: RefCell<Vec<(Probe, Answer)>> = const { RefCell::new(Vec::new()) };
    /// Whether [`TRACE`] holds every read of the call running on this
    /// thread. Set by [`start_trace`]; cleared by a read that could not
    /// be recorded and by [`finish_trace`]. A `Cell` of a `bool`, so that it
    /// can always be cleared.
    static COMPLETE: Cell<bool> = const { Cell::new(false) };
}

/// Starts an empty trace for one call on this thread.
pub(super) fn start_trace() {
    let cleared = TRACE
        .try_with(|t| t.try_borrow_mut().map(|mut reads| reads.clear()).is_ok())
        .unwrap_or(false);
    COMPLETE.set(cleared);
}

/// Hands `f` what the call that just ran on this thread read, if every
/// read was recorded (else `None`), and ends the trace.
pub(super) fn finish_trace(f: impl FnOnce(Option<&[(Probe, Answer)]>)) {
    let complete = COMPLETE.replace(false);
    let mut f = Some(f);
    if complete {
        let _ = TRACE.try_with(|t| {
            if let Ok(reads) = t.try_borrow()
                && let Some(f) = f.take()
            {
                f(Some(reads.as_slice()));
            }
        });
    }
    if let Some(f) = f {
        f(None);
    }
}

fn record(probe: &Probe, answer: &Answer) {
    if !COMPLETE.get() {
        return;
    }
    let recorded = TRACE
        .try_with(|t| {
            let Ok(mut reads) = t.try_borrow_mut() else {
                return false;
            };
            if reads.iter().any(|(p, _)| p == probe) {
                return true;
            }
            if reads.len() >= MAX_TRACE_PROBES {
                return false;
            }
            reads.push((probe.clone(), answer.clone()));
            true
        })
        .unwrap_or(false);
    if !recorded {
        COMPLETE.set(false);
    }
}

/// `req`: the read-only request handed to `authorize`. A custom type read
/// through getters, each of which goes through [`read`].
#[derive(Clone, Debug)]
pub(super) struct Request(Arc<RequestData>);

#[derive(Debug)]
struct RequestData {
    principal: Arc<PrincipalData>,
    action: Action,
    purpose: String,
    customer: Option<CustomerFacts>,
}

impl Request {
    pub(super) fn new(live: &Live<'_>, principal: &Arc<PrincipalData>) -> Request {
        Request(Arc::new(RequestData {
            principal: principal.clone(),
            action: live.action,
            purpose: live.purpose.to_string(),
            customer: live.customer.cloned(),
        }))
    }

    fn live(&self) -> Live<'_> {
        Live {
            principal: &self.0.principal,
            action: self.0.action,
            purpose: &self.0.purpose,
            customer: self.0.customer.as_ref(),
        }
    }
}

/// Answers `probe` for a script, recording it.
fn read(request: &Request, probe: Probe) -> Dynamic {
    let answer = Answer::of(request.live().answer(&probe));
    record(&probe, &answer);
    answer.to_dynamic()
}

/// `req.principal` in scripts.
#[derive(Clone, Debug)]
struct PrincipalView(Request);

/// `principal` as scripts read `req.principal`, for a call about the
/// principal alone (`limits`).
pub(super) fn principal_value(principal: &Arc<PrincipalData>) -> Dynamic {
    let live = Live {
        principal,
        action: Action::Read,
        purpose: "",
        customer: None,
    };
    Dynamic::from(PrincipalView(Request::new(&live, principal)))
}

/// `req.customer` in scripts; only made when the request has a customer.
#[derive(Clone, Debug)]
struct CustomerView(Request);

/// Registers `req`, `req.principal` and `req.customer`: getters only, so
/// the request is read-only, and each getter reads through [`read`].
pub(super) fn register(engine: &mut rhai::Engine) {
    engine
        .register_type_with_name::<Request>("Request")
        .register_get("principal", |r: &mut Request| PrincipalView(r.clone()))
        .register_get("action", |r: &mut Request| read(r, Probe::Action))
        .register_get("purpose", |r: &mut Request| read(r, Probe::Purpose))
        .register_get("customer", |r: &mut Request| {
            let present = read(r, Probe::HasCustomer);
            if present.as_bool().unwrap_or(false) {
                Dynamic::from(CustomerView(r.clone()))
            } else {
                Dynamic::UNIT
            }
        });

    engine
        .register_type_with_name::<PrincipalView>("Principal")
        .register_get("id", |p: &mut PrincipalView| read(&p.0, Probe::PrincipalId))
        .register_get("kind", |p: &mut PrincipalView| {
            read(&p.0, Probe::PrincipalKind)
        })
        .register_get("roles", |p: &mut PrincipalView| -> Array {
            read(&p.0, Probe::PrincipalRoles)
                .into_array()
                .unwrap_or_default()
        })
        .register_get("attributes", |p: &mut PrincipalView| -> Map {
            read(&p.0, Probe::PrincipalAttributes)
                .try_cast::<Map>()
                .unwrap_or_default()
        })
        .register_fn(
            "has_role",
            |p: &mut PrincipalView, role: ImmutableString| {
                read(&p.0, Probe::HasRole(role)).as_bool().unwrap_or(false)
            },
        );

    engine
        .register_type_with_name::<CustomerView>("Customer")
        .register_get("id", |c: &mut CustomerView| read(&c.0, Probe::CustomerId))
        .register_get("owner", |c: &mut CustomerView| {
            read(&c.0, Probe::CustomerOwner)
        })
        .register_get("team", |c: &mut CustomerView| {
            read(&c.0, Probe::CustomerTeam)
        })
        .register_get("status", |c: &mut CustomerView| {
            read(&c.0, Probe::CustomerStatus)
        })
        .register_get("tags", |c: &mut CustomerView| -> Array {
            read(&c.0, Probe::CustomerTags)
                .into_array()
                .unwrap_or_default()
        })
        .register_fn("has_tag", |c: &mut CustomerView, tag: ImmutableString| {
            read(&c.0, Probe::HasTag(tag)).as_bool().unwrap_or(false)
        });
}

/// Replaces the request values a reason names in braces (`{customer.id}`,
/// `{principal.roles}`...; see `examples/policies/README.md`) with their
/// values; unknown names stay as written. `None` if there is nothing to
/// replace. Done after the script, because building strings in rhai costs
/// more than the rest of a typical decision, and because a reason built
/// from, say, the customer's id would make every customer's decision a
/// different one to remember.
pub(super) fn fill_reason(reason: &str, live: &Live<'_>) -> Option<String> {
    if !reason.contains('{') {
        return None;
    }
    let principal = live.principal;
    let customer = live.customer;
    let value = |name: &str| -> Option<String> {
        let or_none = |v: Option<&str>| v.unwrap_or("none").to_string();
        Some(match name {
            "action" => live.action.as_str().to_string(),
            "purpose" => live.purpose.to_string(),
            "principal.id" => principal.id.to_string(),
            "principal.kind" => principal.kind.to_string(),
            "principal.roles" => principal
                .roles
                .iter()
                .map(ImmutableString::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            "customer.id" => customer?.id.to_string(),
            "customer.owner" => customer?.owner.clone(),
            "customer.team" => or_none(customer?.team.as_deref()),
            "customer.status" => customer?.status.clone(),
            "customer.tags" => customer?.tags.join(", "),
            _ => {
                let attribute = name.strip_prefix("principal.attributes.")?;
                or_none(principal.attributes.get(attribute).map(String::as_str))
            }
        })
    };
    let mut out = String::with_capacity(reason.len() + 32);
    let mut rest = reason;
    while let Some(open) = rest.find('{') {
        let (before, from_brace) = rest.split_at(open);
        out.push_str(before);
        let filled = from_brace
            .find('}')
            .and_then(|close| Some((close, value(from_brace.get(1..close)?)?)));
        match filled {
            Some((close, text)) => {
                out.push_str(&text);
                rest = from_brace.get(close + 1..).unwrap_or("");
            }
            None => {
                out.push('{');
                rest = from_brace.get(1..).unwrap_or("");
            }
        }
    }
    out.push_str(rest);
    Some(out)
}
