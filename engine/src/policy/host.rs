//! The sandboxed rhai host: the engine's limits, the script-facing types
//! and functions, and the call of `authorize` that never fails open.
//!
//! Speed: a call evaluates no top-level code (`eval_ast(false)`), reuses
//! its thread's scope, and reads the wall clock only every
//! [`CLOCK_CHECK_INTERVAL`] operations; `OptimizationLevel::Full` folds
//! calls with constant arguments (`allow("...")`) at compile time.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rhai::module_resolvers::DummyModuleResolver;
use rhai::packages::{
    ArithmeticPackage, BasicArrayPackage, BasicFnPackage, BasicIteratorPackage, BasicMapPackage,
    BasicMathPackage, BasicStringPackage, LogicPackage, MoreStringPackage, Package,
};
use rhai::{
    AST, CallFnOptions, Dynamic, Engine, EvalAltResult, ImmutableString, OptimizationLevel,
    ParseError, Scope,
};

use super::request::{self, Request};
use super::{
    CLOCK_CHECK_INTERVAL, Decision, MAX_ARRAY_SIZE, MAX_CALL_LEVELS, MAX_EXPR_DEPTH,
    MAX_FN_EXPR_DEPTH, MAX_MAP_SIZE, MAX_OPERATIONS, MAX_STRING_SIZE, MAX_TIMED_STRETCH,
    PolicyError, TIME_LIMIT, Treatment,
};
use crate::model::{FieldType, mask_value};

/// The name of the function every policy defines.
const AUTHORIZE: &str = "authorize";

/// Time spent by the `authorize` call running on this thread.
#[derive(Clone, Copy)]
struct Clock {
    /// The previous clock reading; `None` before the first.
    last: Option<Instant>,
    /// Time counted so far.
    used: Duration,
}

const CLOCK_START: Clock = Clock {
    last: None,
    used: Duration::ZERO,
};

thread_local! {
    /// rhai's progress callback gets only an operation count, so the time
    /// of the call in progress is kept here.
    static CLOCK: Cell<Clock> = const { Cell::new(CLOCK_START) };
}

thread_local! {
    /// The scope `authorize` runs in, reused by every call on this thread.
    static SCOPE: RefCell<Scope<'static>> = RefCell::new(Scope::with_capacity(16));
}

/// Starts this thread's clock for one call and clears it when dropped,
/// even if the call unwinds.
struct ClockGuard;

impl ClockGuard {
    fn start() -> ClockGuard {
        CLOCK.with(|c| c.set(CLOCK_START));
        ClockGuard
    }
}

impl Drop for ClockGuard {
    fn drop(&mut self) {
        CLOCK.with(|c| c.set(CLOCK_START));
    }
}

/// Reads the clock; true once the call has used up [`TIME_LIMIT`]. Each
/// stretch between two readings counts at most [`MAX_TIMED_STRETCH`]: a
/// thread the system set aside for longer is not faulted for the wait,
/// while a script slow on every stretch still reaches the limit. The
/// stretch before the first reading is not counted, so a call that ends
/// within [`CLOCK_CHECK_INTERVAL`] operations never reads the clock.
fn out_of_time() -> bool {
    CLOCK.with(|cell| {
        let mut clock = cell.get();
        let now = Instant::now();
        if let Some(last) = clock.last {
            let stretch = now.saturating_duration_since(last).min(MAX_TIMED_STRETCH);
            clock.used = clock.used.saturating_add(stretch);
        }
        clock.last = Some(now);
        cell.set(clock);
        clock.used >= TIME_LIMIT
    })
}

/// A rhai engine with only the packages a policy needs (no `sleep`, no
/// `eval`, no modules, no clock), every limit set, and the script API of
/// access policies (`req`, `allow`/`deny`, the masks).
pub(super) fn sandboxed_engine() -> Engine {
    let mut engine = bare_engine();
    request::register(&mut engine);
    register_decision(&mut engine);
    register_masks(&mut engine);
    engine
}

/// The sandbox every script of the engine runs in, with no script API of
/// its own: only the packages a script needs (no `sleep`, no `eval`, no
/// modules, no clock) and every limit set, the time limit included. Calls
/// must run under [`timed`] for the time limit to count from their start.
/// Access policies and `retention.rhai` register their own types and
/// functions on it.
pub(crate) fn bare_engine() -> Engine {
    let mut engine = Engine::new_raw();
    // Deliberately not `CorePackage`: its `LanguageCorePackage` brings
    // `sleep`, which would block the caller beyond any operation limit.
    engine
        .register_global_module(ArithmeticPackage::new().as_shared_module())
        .register_global_module(LogicPackage::new().as_shared_module())
        .register_global_module(BasicMathPackage::new().as_shared_module())
        .register_global_module(BasicStringPackage::new().as_shared_module())
        .register_global_module(MoreStringPackage::new().as_shared_module())
        .register_global_module(BasicIteratorPackage::new().as_shared_module())
        .register_global_module(BasicArrayPackage::new().as_shared_module())
        .register_global_module(BasicMapPackage::new().as_shared_module())
        .register_global_module(BasicFnPackage::new().as_shared_module());

    engine
        .set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(MAX_EXPR_DEPTH, MAX_FN_EXPR_DEPTH)
        .set_max_string_size(MAX_STRING_SIZE)
        .set_max_array_size(MAX_ARRAY_SIZE)
        .set_max_map_size(MAX_MAP_SIZE)
        .set_strict_variables(true)
        .set_optimization_level(OptimizationLevel::Full)
        .set_module_resolver(DummyModuleResolver::new())
        .disable_symbol("eval")
        .on_print(|_| {})
        .on_debug(|_, _, _| {})
        .on_progress(|operations| {
            let check = operations % CLOCK_CHECK_INTERVAL == 0;
            (check && out_of_time()).then_some(Dynamic::UNIT)
        });
    engine
}

/// Runs `call`, one call into a [`bare_engine`] script, with this thread's
/// clock started, so that the time limit counts from here.
pub(crate) fn timed<T>(call: impl FnOnce() -> T) -> T {
    let _clock = ClockGuard::start();
    call()
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
    let _clock = ClockGuard::start();
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

/// The error under the function calls `error` passed through.
fn root_cause(error: &EvalAltResult) -> &EvalAltResult {
    let mut cause = error;
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
    | EvalAltResult::ErrorInModule(_, inner, _) = cause
    {
        cause = inner;
    }
    cause
}

/// Whether a call was stopped by the time limit: the one fault that
/// depends on the machine rather than on the script and its input.
pub(crate) fn timed_out(error: &EvalAltResult) -> bool {
    matches!(root_cause(error), EvalAltResult::ErrorTerminated(..))
}

/// Says why a call failed, naming the limit that stopped it.
pub(crate) fn describe_fault(error: &EvalAltResult) -> String {
    let cause = root_cause(error);
    let at = match (cause.position().line(), cause.position().position()) {
        (Some(line), Some(position)) => format!(" (line {line}, position {position})"),
        (Some(line), None) => format!(" (line {line})"),
        _ => String::new(),
    };
    match cause {
        EvalAltResult::ErrorTooManyOperations(_) => {
            format!("the policy ran more than {MAX_OPERATIONS} operations{at}: an endless loop?")
        }
        EvalAltResult::ErrorTerminated(..) => format!(
            "the policy ran longer than its time limit of {} ms{at}",
            TIME_LIMIT.as_millis()
        ),
        EvalAltResult::ErrorStackOverflow(_) => format!(
            "the policy nested function calls deeper than {MAX_CALL_LEVELS} levels{at}: unbounded recursion?"
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) => format!(
            "the policy built a value over the sandbox's size limits ({}){at}: strings may hold {MAX_STRING_SIZE} bytes, arrays {MAX_ARRAY_SIZE} items, maps {MAX_MAP_SIZE} entries",
            lowercase_first(what)
        ),
        EvalAltResult::ErrorModuleNotFound(name, _) => {
            format!("the policy tried to import `{name}`{at}: policies may not import modules")
        }
        _ => format!("the policy failed: {}", lowercase_first(&error.to_string())),
    }
}

/// `text` with its first letter in lower case, as error messages start.
pub(crate) fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
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
