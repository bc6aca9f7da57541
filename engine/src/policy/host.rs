//! The policy's rhai host: the script-facing types and functions on the
//! engine's sandbox (`script`), and the call of `authorize` that never
//! fails open.
//!
//! Speed: a call evaluates no top-level code (`eval_ast(false)`), reuses
//! its thread's scope, and reads the wall clock only every
//! [`script::CLOCK_CHECK_INTERVAL`] operations; `OptimizationLevel::Full` folds
//! calls with constant arguments (`allow("...")`) at compile time.

use std::cell::RefCell;
use std::collections::BTreeMap;

use rhai::{
    AST, CallFnOptions, Dynamic, Engine, EvalAltResult, ImmutableString, ParseError, Scope,
};

use super::request::{self, Request};
use super::{Decision, PolicyError, Treatment};
use crate::model::{FieldType, mask_value};
use crate::script::{self, bare_engine, describe_fault, lowercase_first};

/// The name of the function every policy defines.
const AUTHORIZE: &str = "authorize";
/// The name of the function that declares an actor's budgets, if defined.
pub(super) const LIMITS: &str = "limits";

thread_local! {
    /// The scope `authorize` runs in, reused by every call on this thread.
    static SCOPE: RefCell<Scope<'static>> = RefCell::new(Scope::with_capacity(16));
}

/// A rhai engine with only the packages a policy needs (no `sleep`, no
/// `eval`, no modules, no clock), every limit set, and the script API of
/// access policies (`req`, `allow`/`deny`, the masks).
pub(super) fn sandboxed_engine() -> Engine {
    let mut engine = bare_engine();
    request::register(&mut engine);
    super::clock::register(&mut engine);
    register_decision(&mut engine);
    register_masks(&mut engine);
    engine
}

/// Compiles every script and merges their functions into one AST. Code
/// outside functions is dropped: it is never run.
pub(super) fn compile_scripts(
    engine: &Engine,
    scripts: &[(String, String)],
) -> Result<AST, PolicyError> {
    let mut merged = AST::empty();
    let mut defined_in: BTreeMap<(String, usize), &str> = BTreeMap::new();
    for (file, source) in scripts {
        let mut ast = engine
            .compile(source)
            .map_err(|e| compile_error(file, &e))?;
        for function in ast.iter_functions() {
            let key = (function.name.to_string(), function.params.len());
            if let Some(other) = defined_in.insert(key, file) {
                return Err(PolicyError::Compile {
                    file: file.clone(),
                    line: 0,
                    position: 0,
                    message: format!(
                        "function `{}` with {} parameter(s) is also defined in `{other}`: keep one",
                        function.name,
                        function.params.len()
                    ),
                });
            }
        }
        ast.clear_statements();
        ast.set_source(file.as_str());
        merged.combine(ast);
    }
    if !defined_in.contains_key(&(AUTHORIZE.to_string(), 1)) {
        return Err(PolicyError::MissingAuthorize);
    }
    Ok(merged)
}

fn compile_error(file: &str, error: &ParseError) -> PolicyError {
    let position = error.position();
    PolicyError::Compile {
        file: file.to_string(),
        line: position.line().unwrap_or(0),
        position: position.position().unwrap_or(0),
        message: lowercase_first(&error.err_type().to_string()),
    }
}

/// Runs `authorize(request)`; every failure becomes a denial with a fault.
/// What the call read is then in this thread's trace
/// ([`request::finish_trace`]).
pub(super) fn call_authorize(engine: &Engine, ast: &AST, request: Request) -> Decision {
    script::timed(|| run_authorize(engine, ast, request))
}

fn run_authorize(engine: &Engine, ast: &AST, request: Request) -> Decision {
    request::start_trace();
    // The scope is rewound after the call and reused by the next one on
    // this thread, so that its storage is allocated once.
    let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
    let mut call = Some(|scope: &mut Scope<'static>| {
        scope.clear();
        engine.call_fn_with_options::<Dynamic>(options, scope, ast, AUTHORIZE, (request,))
    });
    let reused = SCOPE.try_with(|cell| {
        let mut scope = cell.try_borrow_mut().ok()?;
        let call = call.take()?;
        Some(call(&mut scope))
    });
    // A fresh scope if this thread's is unavailable (a call nested in
    // another, or thread-local storage already destroyed).
    let result = match (reused, call.take()) {
        (Ok(Some(result)), _) => result,
        (_, Some(call)) => call(&mut Scope::new()),
        (_, None) => Err("the policy was not run: its scope was unavailable".into()),
    };
    match result {
        Ok(value) => match value.try_cast_result::<Decision>() {
            Ok(decision) => decision,
            Err(other) => Decision::fault_deny(format!(
                "authorize must return allow(..) or deny(..), not a value of type `{}`",
                engine.map_type_name(other.type_name())
            )),
        },
        Err(error) => Decision::fault_deny(describe_fault(&error)),
    }
}

/// Runs `limits(principal)`: the principal's budgets (`None`: none), or
/// what was wrong with the script or what it returned.
/// With `now`, `limits(principal, now)`.
pub(super) fn call_limits(
    engine: &Engine,
    ast: &AST,
    principal: &std::sync::Arc<request::PrincipalData>,
    now: Option<super::clock::ScriptNow>,
) -> Result<Option<crate::guard::Limits>, String> {
    script::timed(|| {
        let options = CallFnOptions::new().eval_ast(false);
        let argument = request::principal_value(principal);
        let mut scope = Scope::new();
        let value = match now {
            Some(now) => engine.call_fn_with_options::<Dynamic>(
                options,
                &mut scope,
                ast,
                LIMITS,
                (argument, Dynamic::from(now)),
            ),
            None => engine.call_fn_with_options::<Dynamic>(
                options,
                &mut scope,
                ast,
                LIMITS,
                (argument,),
            ),
        }
        .map_err(|e| describe_fault(&e))?;
        crate::guard::Limits::from_script(value)
    })
}

type ScriptResult<T> = Result<T, Box<EvalAltResult>>;

/// Applies `treatment` to each field named by `names`: a string or an
/// array of strings.
fn name_fields(
    decision: &mut Decision,
    method: &str,
    names: Dynamic,
    treatment: Treatment,
) -> ScriptResult<Decision> {
    let wrong = |what: &str| -> Box<EvalAltResult> {
        format!("{method}(..) takes a field name or an array of field names, not `{what}`").into()
    };
    if names.is_string() {
        let name = names.into_immutable_string().map_err(wrong)?;
        decision.set_field(name, treatment)?;
    } else if names.is_array() {
        for name in names.into_array().map_err(wrong)? {
            let name = name.into_immutable_string().map_err(wrong)?;
            decision.set_field(name, treatment)?;
        }
    } else {
        return Err(wrong(names.type_name()));
    }
    Ok(decision.clone())
}

fn register_decision(engine: &mut Engine) {
    engine
        .register_type_with_name::<Decision>("Decision")
        .register_fn("allow", |reason: ImmutableString| Decision::allow(reason))
        .register_fn("allow", || Decision::allow("allowed by policy"))
        .register_fn("deny", |reason: ImmutableString| Decision::deny(reason))
        .register_fn("deny", || Decision::deny("denied by policy"))
        .register_get("allowed", |d: &mut Decision| d.allowed)
        .register_get("reason", |d: &mut Decision| d.reason.clone())
        .register_fn("mask", |d: &mut Decision, names: Dynamic| {
            name_fields(d, "mask", names, Treatment::Masked)
        })
        .register_fn("hide", |d: &mut Decision, names: Dynamic| {
            name_fields(d, "hide", names, Treatment::Hidden)
        })
        .register_fn("show", |d: &mut Decision, names: Dynamic| {
            name_fields(d, "show", names, Treatment::Full)
        })
        .register_fn("mask_personal", |d: &mut Decision| {
            d.personal = Some(Treatment::Masked);
            d.clone()
        })
        .register_fn("hide_personal", |d: &mut Decision| {
            d.personal = Some(Treatment::Hidden);
            d.clone()
        })
        .register_fn("mask_sensitive", |d: &mut Decision| {
            d.sensitive = Some(Treatment::Masked);
            d.clone()
        })
        .register_fn("hide_sensitive", |d: &mut Decision| {
            d.sensitive = Some(Treatment::Hidden);
            d.clone()
        });
}

fn register_masks(engine: &mut Engine) {
    engine
        .register_fn("mask_phone", |s: &str| mask_value(FieldType::Phone, s))
        .register_fn("mask_email", |s: &str| mask_value(FieldType::Email, s))
        .register_fn("mask_name", |s: &str| mask_value(FieldType::Text, s))
        .register_fn("mask_address", |s: &str| mask_value(FieldType::Address, s))
        .register_fn("mask_id", |s: &str| mask_value(FieldType::IdNumber, s));
}
