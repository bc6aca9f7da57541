//! Test cases for a policy: `cases.toml`, a table of requests and the
//! decisions expected for them. A pack's cases must pass before it replaces
//! the running policy. The format is documented in
//! `examples/policies/README.md`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::pack::toml_error;
use super::{
    Action, CaseFailure, CaseReport, CustomerFacts, Policy, PolicyError, Subject, Treatment,
};
use crate::model::{Schema, Sensitivity};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    principal: CasePrincipal,
    action: String,
    #[serde(default)]
    purpose: String,
    customer: Option<CaseCustomer>,
    expect: Expect,
    #[serde(default)]
    fields: BTreeMap<String, Treatment>,
    reason_contains: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasePrincipal {
    id: String,
    #[serde(default = "default_kind")]
    kind: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseCustomer {
    id: u64,
    owner: String,
    team: Option<String>,
    #[serde(default = "default_status")]
    status: String,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Allow,
    Deny,
}

impl Expect {
    fn as_str(self) -> &'static str {
        match self {
            Expect::Allow => "allow",
            Expect::Deny => "deny",
        }
    }
}

fn default_kind() -> String {
    "user".into()
}

fn default_status() -> String {
    "active".into()
}

/// Interaction and follow-up text, decided as personal fields of these names.
const TEXT_PARTS: [&str; 3] = ["summary", "body", "note"];
const KINDS: [&str; 3] = ["user", "service", "plugin"];
const STATUSES: [&str; 2] = ["active", "dormant"];

/// Parses `cases_toml` and runs every case against `policy`.
pub(super) fn run(
    policy: &Policy,
    cases_toml: &str,
    schema: &Schema,
) -> Result<CaseReport, PolicyError> {
    let file: CaseFile =
        toml::from_str(cases_toml).map_err(|e| PolicyError::Cases(toml_error(cases_toml, &e)))?;
    let mut names = BTreeSet::new();
    let mut report = CaseReport::default();
    for case in &file.cases {
        if !names.insert(case.name.as_str()) {
            return Err(PolicyError::Cases(format!(
                "case name `{}` is used twice: give each case its own name",
                case.name
            )));
        }
        let problems = run_case(policy, case, schema)?;
        if problems.is_empty() {
            report.passed += 1;
        }
        report
            .failures
            .extend(problems.into_iter().map(|problem| CaseFailure {
                case: case.name.clone(),
                problem,
            }));
    }
    Ok(report)
}

/// Runs one case; returns its unmet expectations. A case that cannot be
/// run as written (unknown action, field, kind or status) is an error.
fn run_case(policy: &Policy, case: &Case, schema: &Schema) -> Result<Vec<String>, PolicyError> {
    let bad = |what: String| PolicyError::Cases(format!("case `{}`: {what}", case.name));
    let action = Action::parse(&case.action).ok_or_else(|| {
        let known: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        bad(format!(
            "unknown action `{}`: use one of {}",
            case.action,
            known.join(", ")
        ))
    })?;
    let principal = &case.principal;
    if !KINDS.contains(&principal.kind.as_str()) {
        return Err(bad(format!(
            "unknown principal kind `{}`: use one of {}",
            principal.kind,
            KINDS.join(", ")
        )));
    }
    let customer = match &case.customer {
        Some(c) if !STATUSES.contains(&c.status.as_str()) => {
            return Err(bad(format!(
                "unknown customer status `{}`: use one of {}",
                c.status,
                STATUSES.join(", ")
            )));
        }
        Some(c) => Some(CustomerFacts {
            id: c.id,
            owner: c.owner.clone(),
            team: c.team.clone(),
            status: c.status.clone(),
            tags: c.tags.clone(),
        }),
        None => None,
    };
    let mut expected_fields = Vec::new();
    for (field, treatment) in &case.fields {
        // The free text of interactions and follow-ups is decided like a
        // personal field of that name.
        let sensitivity = match schema.field(field) {
            Some(def) => def.sensitivity,
            None if TEXT_PARTS.contains(&field.as_str()) => Sensitivity::Personal,
            None => {
                return Err(bad(format!(
                    "field `{field}` is not in the schema nor one of `summary`, `body`, `note`: check its spelling"
                )));
            }
        };
        expected_fields.push((field, sensitivity, *treatment));
    }

    let subject = Subject::new(
        &principal.id,
        &principal.kind,
        &principal.roles,
        &principal.attributes,
    );
    let decision = policy.authorize(&subject, action, &case.purpose, customer.as_ref());

    let mut problems = Vec::new();
    if let Some(fault) = decision.fault() {
        problems.push(format!("the policy failed: {fault}"));
        return Ok(problems);
    }
    let got = if decision.allowed() {
        Expect::Allow
    } else {
        Expect::Deny
    };
    if got != case.expect {
        problems.push(format!(
            "expected {}, got {} (reason: {})",
            case.expect.as_str(),
            got.as_str(),
            decision.reason()
        ));
    }
    if let Some(needle) = &case.reason_contains
        && !decision.reason().contains(needle.as_str())
    {
        problems.push(format!(
            "reason `{}` does not contain `{needle}`",
            decision.reason()
        ));
    }
    for (field, sensitivity, expected) in expected_fields {
        let treatment = decision.treatment(field, sensitivity);
        if treatment != expected {
            problems.push(format!(
                "field `{field}`: expected {expected}, got {treatment}"
            ));
        }
    }
    Ok(problems)
}
