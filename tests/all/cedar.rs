//! The default rhai policy against its Cedar translation
//! (`examples/policies/cedar/access.cedar`, mapped as its README says): on
//! generated requests both must agree on allow or deny and on how every
//! field of the bundled schema is shown.
//!
//! `engine/benches/policy.rs` includes this module, so the benchmark times
//! exactly the translation and the requests checked here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context as CedarContext, Decision as CedarDecision, Entities, Entity, EntityId,
    EntityTypeName, EntityUid, PolicySet, Request as CedarRequest, RestrictedExpression,
};
use custodian::{
    Action, CustomerAttributes, Decision, PreparedSubject, Schema, Sensitivity, Treatment,
};

/// The Cedar translation of the default pack, shared with the benchmark.
pub const CEDAR_POLICIES: &str = include_str!("../../examples/policies/cedar/access.cedar");

#[test]
fn rhai_and_cedar_agree_on_generated_requests() {
    // Here, not at the top: the benchmark includes this file without tests.
    use custodian::{CompiledPolicy, PolicyPack};
    use std::collections::BTreeSet;

    const REQUESTS: usize = 12_000;
    let rhai = CompiledPolicy::compile(&PolicyPack::default_pack()).unwrap();
    let cedar = CedarPolicy::new();
    let schema = Schema::default();
    let requests = generate(REQUESTS, 0x5EED);

    let mut disagreements = Vec::new();
    let mut allowed = 0;
    let mut reasons = BTreeSet::new();
    for request in &requests {
        let subject = request.prepared_subject();
        let (action, purpose, customer) =
            (request.action, &request.purpose, request.customer.as_ref());
        // The engine's way, remembering decisions, and the script run anew.
        let decision = rhai.decide(&subject, action, purpose, customer);
        let uncached = rhai.decide_uncached(&subject, action, purpose, customer);
        let cedar_subject = cedar.subject(request);
        let cedar_outcome = cedar.decide(&cedar_subject, request);
        for (how, decision) in [("remembered", &decision), ("run", &uncached)] {
            if let Err(problem) = agree(decision, &cedar_outcome, &schema) {
                disagreements.push(format!("{problem} ({how})\n  request: {request:?}"));
            }
        }
        allowed += usize::from(decision.allowed());
        // The deny reasons name principals and customers; only the rule
        // matters here.
        reasons.insert(
            decision
                .reason()
                .split(':')
                .next()
                .unwrap_or("")
                .to_string(),
        );
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements over {REQUESTS} requests; the first ones:\n{}",
        disagreements.len(),
        disagreements
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The mix reaches every rule, and both answers are common.
    assert!(
        (REQUESTS / 5..REQUESTS * 4 / 5).contains(&allowed),
        "{allowed} of {REQUESTS} allowed"
    );
    for rule in [
        "data steward handles a dormant customer",
        "customer is dormant",
        "administrator",
        "admins read customer data only with a stated purpose",
        "sales representative owns the customer",
        "manager of the customer's team",
        "support",
        "analyst",
        "counting shows no customer data",
    ] {
        assert!(reasons.contains(rule), "no request decided by `{rule}`");
    }
}

/// Whether the rhai `decision` and the Cedar `outcome` agree on access and
/// on every field of `schema`; `Err` says how they differ.
pub fn agree(decision: &Decision, outcome: &CedarOutcome, schema: &Schema) -> Result<(), String> {
    if let Some(fault) = decision.fault() {
        return Err(format!("the rhai policy failed: {fault}"));
    }
    if decision.allowed() != outcome.allowed {
        return Err(format!(
            "rhai {} ({}), Cedar {}",
            verb(decision.allowed()),
            decision.reason(),
            verb(outcome.allowed)
        ));
    }
    for field in schema.fields() {
        let rhai = decision.treatment(&field.name, field.sensitivity);
        let cedar = outcome.treatment(field.sensitivity);
        if rhai != cedar {
            return Err(format!(
                "field `{}`: rhai {rhai} ({}), Cedar {cedar}",
                field.name,
                decision.reason()
            ));
        }
    }
    Ok(())
}

fn verb(allowed: bool) -> &'static str {
    if allowed { "allows" } else { "denies" }
}

// ---------------------------------------------------------------------------
// Generated requests

/// One request, as both evaluators get it.
#[derive(Clone, Debug)]
pub struct Request {
    pub principal: String,
    pub kind: String,
    pub roles: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    pub action: Action,
    pub purpose: String,
    pub customer: Option<CustomerAttributes>,
}

impl Request {
    /// The principal in the form the rhai policy reads it.
    pub fn prepared_subject(&self) -> PreparedSubject {
        PreparedSubject::new(&self.principal, &self.kind, &self.roles, &self.attributes)
    }
}

const PRINCIPALS: [&str; 6] = ["wang", "li", "zhao", "qian", "sun", "root"];
/// The policy's six roles and one it does not know.
const ROLES: [&str; 7] = [
    "sales", "manager", "support", "analyst", "admin", "steward", "auditor",
];
const PURPOSES: [&str; 4] = ["", "service", "audit", "sales_contact"];
/// `None`: no team; `""` is a team like any other for both evaluators.
const TEAMS: [Option<&str>; 7] = [
    None,
    None,
    Some("east"),
    Some("east"),
    Some("west"),
    Some("west"),
    Some(""),
];
const TAGS: [&str; 3] = ["vip", "retail", "online"];

/// `n` requests from `seed`, always the same: principals with no role, one
/// role or several (including one the policy does not declare), with and
/// without a team; every action; a stated purpose or none; customers owned
/// by the principal or another, in a team or not, active or dormant, and
/// no customer (mostly counts).
pub fn generate(n: usize, seed: u64) -> Vec<Request> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            let principal = rng.pick(&PRINCIPALS).to_string();
            let kind = if rng.below(8) == 0 { "service" } else { "user" };
            let role_count = match rng.below(20) {
                0 => 0,
                1..=10 => 1,
                11..=16 => 2,
                _ => 3,
            };
            let mut roles = Vec::new();
            while roles.len() < role_count {
                let role = rng.pick(&ROLES).to_string();
                if !roles.contains(&role) {
                    roles.push(role);
                }
            }
            let mut attributes = BTreeMap::new();
            if let Some(team) = rng.pick(&TEAMS) {
                attributes.insert("team".to_string(), team.to_string());
            }
            if rng.below(4) == 0 {
                attributes.insert("region".to_string(), "north".to_string());
            }
            let action = *rng.pick(&Action::ALL);
            let purpose = rng.pick(&PURPOSES).to_string();
            let with_customer = match action {
                Action::Count => rng.below(5) == 0,
                _ => rng.below(20) != 0,
            };
            let customer = with_customer.then(|| {
                let owner = if rng.below(3) == 0 {
                    principal.clone()
                } else {
                    rng.pick(&PRINCIPALS).to_string()
                };
                let status = if rng.below(5) == 0 {
                    "dormant"
                } else {
                    "active"
                };
                let tags = TAGS
                    .iter()
                    .filter(|_| rng.below(3) == 0)
                    .map(|t| t.to_string())
                    .collect();
                CustomerAttributes::new(i as u64 + 1, owner, status)
                    .with_team(rng.pick(&TEAMS).map(str::to_string))
                    .with_tags(tags)
            });
            Request {
                principal,
                kind: kind.to_string(),
                roles,
                attributes,
                action,
                purpose,
                customer,
            }
        })
        .collect()
}

/// SplitMix64: small, fast and deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------
// The Cedar side

/// What Cedar answered for one request: access, and the treatment of each
/// field class (asked only when access is allowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CedarOutcome {
    pub allowed: bool,
    pub personal: Treatment,
    pub sensitive: Treatment,
}

impl CedarOutcome {
    /// How a field of `sensitivity` is shown: public fields are never
    /// masked by this policy.
    pub fn treatment(&self, sensitivity: Sensitivity) -> Treatment {
        match sensitivity {
            _ if !self.allowed => Treatment::Hidden,
            Sensitivity::Public => Treatment::Full,
            Sensitivity::Personal => self.personal,
            Sensitivity::Sensitive => self.sensitive,
        }
    }
}

/// `access.cedar`, parsed, with the entity ids every request uses made
/// once (as the rhai policy makes its action names once).
pub struct CedarPolicy {
    /// The policies annotated `@question("access")`.
    access: PolicySet,
    /// The policies annotated `@question("fields")`.
    fields: PolicySet,
    authorizer: Authorizer,
    /// `Action::"<op>"`, in `Action::ALL` order.
    operations: Vec<EntityUid>,
    see_personal_full: EntityUid,
    see_personal_masked: EntityUid,
    see_sensitive_full: EntityUid,
    see_sensitive_masked: EntityUid,
    /// The resource of a request about no single customer.
    no_customer: EntityUid,
    principal_type: EntityTypeName,
    role_type: EntityTypeName,
    customer_type: EntityTypeName,
}

/// A principal as a Cedar entity: built once per request, like
/// [`PreparedSubject`].
pub struct CedarSubject {
    uid: EntityUid,
    entity: Entity,
}

/// Everything one request needs but its action and context: the principal,
/// the resource and the entity store holding both.
pub struct CedarInputs {
    pub principal: EntityUid,
    pub resource: EntityUid,
    pub entities: Entities,
}

fn uid(type_name: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(type_name.clone(), EntityId::new(id))
}

impl Default for CedarPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl CedarPolicy {
    pub fn new() -> Self {
        let all = PolicySet::from_str(CEDAR_POLICIES).expect("access.cedar parses");
        let (mut access, mut fields) = (PolicySet::new(), PolicySet::new());
        for policy in all.policies() {
            match policy.annotation("question") {
                Some("access") => access.add(policy.clone()).unwrap(),
                Some("fields") => fields.add(policy.clone()).unwrap(),
                other => panic!(
                    "policy `{}` is annotated @question({other:?}): use \"access\" or \"fields\"",
                    policy.id()
                ),
            }
        }
        let action = EntityTypeName::from_str("Action").unwrap();
        let see = |name: &str| uid(&action, name);
        Self {
            access,
            fields,
            authorizer: Authorizer::new(),
            operations: Action::ALL
                .iter()
                .map(|a| uid(&action, a.as_str()))
                .collect(),
            see_personal_full: see("see_personal_full"),
            see_personal_masked: see("see_personal_masked"),
            see_sensitive_full: see("see_sensitive_full"),
            see_sensitive_masked: see("see_sensitive_masked"),
            no_customer: uid(&EntityTypeName::from_str("Customers").unwrap(), "all"),
            principal_type: EntityTypeName::from_str("Principal").unwrap(),
            role_type: EntityTypeName::from_str("Role").unwrap(),
            customer_type: EntityTypeName::from_str("Customer").unwrap(),
        }
    }

    /// The principal of `request`, its roles as parents.
    pub fn subject(&self, request: &Request) -> CedarSubject {
        let principal = uid(&self.principal_type, &request.principal);
        let attributes = request
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), RestrictedExpression::new_string(v.clone())));
        let attrs = HashMap::from([
            (
                "kind".to_string(),
                RestrictedExpression::new_string(request.kind.clone()),
            ),
            (
                "attributes".to_string(),
                RestrictedExpression::new_record(attributes).unwrap(),
            ),
        ]);
        let parents: HashSet<EntityUid> = request
            .roles
            .iter()
            .map(|r| uid(&self.role_type, r))
            .collect();
        let entity = Entity::new(principal.clone(), attrs, parents).unwrap();
        CedarSubject {
            uid: principal,
            entity,
        }
    }

    /// The entity store of one request: the principal and the customer.
    pub fn inputs(
        &self,
        subject: &CedarSubject,
        customer: Option<&CustomerAttributes>,
    ) -> CedarInputs {
        let Some(customer) = customer else {
            let entities = Entities::from_entities([subject.entity.clone()], None).unwrap();
            return CedarInputs {
                principal: subject.uid.clone(),
                resource: self.no_customer.clone(),
                entities,
            };
        };
        let resource = uid(&self.customer_type, &customer.id().to_string());
        let mut attrs = HashMap::from([
            (
                "owner".to_string(),
                RestrictedExpression::new_entity_uid(uid(&self.principal_type, customer.owner())),
            ),
            (
                "status".to_string(),
                RestrictedExpression::new_string(customer.status().to_string()),
            ),
            (
                "tags".to_string(),
                RestrictedExpression::new_set(
                    customer
                        .tags()
                        .iter()
                        .map(|t| RestrictedExpression::new_string(t.clone())),
                ),
            ),
        ]);
        if let Some(team) = customer.team() {
            attrs.insert(
                "team".to_string(),
                RestrictedExpression::new_string(team.to_string()),
            );
        }
        let entity = Entity::new(resource.clone(), attrs, HashSet::new()).unwrap();
        let entities = Entities::from_entities([subject.entity.clone(), entity], None).unwrap();
        CedarInputs {
            principal: subject.uid.clone(),
            resource,
            entities,
        }
    }

    /// The access question alone, as a ready-made Cedar request.
    pub fn access_request(
        &self,
        inputs: &CedarInputs,
        action: Action,
        purpose: &str,
    ) -> CedarRequest {
        let context = CedarContext::from_pairs([(
            "purpose".to_string(),
            RestrictedExpression::new_string(purpose.to_string()),
        )])
        .unwrap();
        let index = Action::ALL.iter().position(|a| *a == action).unwrap();
        CedarRequest::new(
            inputs.principal.clone(),
            self.operations[index].clone(),
            inputs.resource.clone(),
            context,
            None,
        )
        .unwrap()
    }

    /// Whether the access policies permit `request`.
    pub fn permits(&self, request: &CedarRequest, entities: &Entities) -> bool {
        self.ask(&self.access, request, entities)
    }

    /// Whether `policies` permit `request`. A policy that errs is skipped by
    /// Cedar, which for a forbid would fail open: none may.
    fn ask(&self, policies: &PolicySet, request: &CedarRequest, entities: &Entities) -> bool {
        let response = self.authorizer.is_authorized(request, policies, entities);
        if let Some(error) = response.diagnostics().errors().next() {
            panic!("a Cedar policy failed: {error}");
        }
        response.decision() == CedarDecision::Allow
    }

    /// Access alone: may `action` be done for `purpose`?
    pub fn allows(&self, inputs: &CedarInputs, action: Action, purpose: &str) -> bool {
        self.permits(
            &self.access_request(inputs, action, purpose),
            &inputs.entities,
        )
    }

    /// Access and, when allowed, the field treatments: two to four more
    /// questions.
    pub fn outcome(&self, inputs: &CedarInputs, action: Action, purpose: &str) -> CedarOutcome {
        if !self.allows(inputs, action, purpose) {
            return CedarOutcome {
                allowed: false,
                personal: Treatment::Hidden,
                sensitive: Treatment::Hidden,
            };
        }
        let context = CedarContext::from_pairs([
            (
                "purpose".to_string(),
                RestrictedExpression::new_string(purpose.to_string()),
            ),
            (
                "op".to_string(),
                RestrictedExpression::new_string(action.as_str().to_string()),
            ),
        ])
        .unwrap();
        let ask = |question: &EntityUid| {
            let request = CedarRequest::new(
                inputs.principal.clone(),
                question.clone(),
                inputs.resource.clone(),
                context.clone(),
                None,
            )
            .unwrap();
            self.ask(&self.fields, &request, &inputs.entities)
        };
        let class = |full: &EntityUid, masked: &EntityUid| {
            if ask(full) {
                Treatment::Full
            } else if ask(masked) {
                Treatment::Masked
            } else {
                Treatment::Hidden
            }
        };
        CedarOutcome {
            allowed: true,
            personal: class(&self.see_personal_full, &self.see_personal_masked),
            sensitive: class(&self.see_sensitive_full, &self.see_sensitive_masked),
        }
    }

    /// [`CedarPolicy::outcome`] of `request`, for the principal `subject`.
    pub fn decide(&self, subject: &CedarSubject, request: &Request) -> CedarOutcome {
        let inputs = self.inputs(subject, request.customer.as_ref());
        self.outcome(&inputs, request.action, &request.purpose)
    }
}
