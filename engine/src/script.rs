//! The rhai sandbox every script of the engine runs in: access policies
//! (`policy`) and `retention.rhai` (`privacy`) register their own types and
//! functions on it.
//!
//! `script` owns the packages a script may use (no `sleep`, no `eval`, no
//! modules, no clock; no closures, which rhai is built without, and no
//! `this`), every limit (operations, call depth, sizes, the memory all
//! values take together, time), the per-thread clock the time limit is
//! counted on, and how a failed call is described. It never touches
//! storage.
//!
//! Invariant: every limit is set explicitly (rhai leaves them unlimited by
//! default), and a call stopped by a limit is an error, never a hang.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use rhai::module_resolvers::DummyModuleResolver;
use rhai::packages::{
    ArithmeticPackage, BasicArrayPackage, BasicFnPackage, BasicIteratorPackage, BasicMapPackage,
    BasicMathPackage, BasicStringPackage, LogicPackage, MoreStringPackage, Package,
};
use rhai::{Dynamic, Engine, EvalAltResult, FnPtr, OptimizationLevel, Position, Scope};

/// Most rhai operations one `authorize` call may run; an endless loop stops
/// here.
pub(crate) const MAX_OPERATIONS: u64 = 100_000;
/// Deepest nesting of function calls; unbounded recursion stops here.
pub(crate) const MAX_CALL_LEVELS: usize = 32;
/// Deepest expression nesting at the top level of a script (checked when
/// compiling).
pub(crate) const MAX_EXPR_DEPTH: usize = 64;
/// Deepest expression nesting inside a function (checked when compiling).
pub(crate) const MAX_FN_EXPR_DEPTH: usize = 32;
/// Longest string a script may build, in bytes.
pub(crate) const MAX_STRING_SIZE: usize = 64 * 1024;
/// Most items in an array a script builds (nested arrays count in total).
/// Far below rhai's usual examples: the time one operation on a full array
/// or map takes (comparing, copying, searching) grows with this size, and
/// the clock is read only between operations.
pub(crate) const MAX_ARRAY_SIZE: usize = 1_000;
/// Most entries in an object map a script builds; see [`MAX_ARRAY_SIZE`].
pub(crate) const MAX_MAP_SIZE: usize = 1_000;
/// Most bytes the values of one call may hold together, in every
/// function's variables (call arguments included): strings, the items of
/// arrays, the keys and values of maps, the arguments curried into function
/// pointers. rhai's own limits weigh one value at a time, leave map keys
/// and curried arguments out, and do not check a map that `m[k] = v`
/// grows; this one holds whatever route a script takes. A call holds at
/// most this much in its variables, and briefly a few times as much while
/// one operation (such as `to_string` of a large map) runs: far below the
/// 64 MiB a decision may cost.
pub(crate) const MAX_VALUES_SIZE: usize = 4 * 1024 * 1024;
/// What every value costs besides its content (a `Dynamic`, a scope
/// entry, a map node), in the weighing of [`MAX_VALUES_SIZE`].
const VALUE_COST: usize = 32;
/// Time limit of one `authorize` call. Well below the 100 ms a caller may
/// wait, and far above the microseconds a sane policy takes.
pub(crate) const TIME_LIMIT: Duration = Duration::from_millis(20);
/// The clock is read every this many operations, so that timing costs a
/// few clock readings per call. The costliest operation that does not
/// fail (comparing two maps at [`MAX_MAP_SIZE`]) takes about half a
/// millisecond, so a stretch is at most some 16 ms.
pub(crate) const CLOCK_CHECK_INTERVAL: u64 = 32;
/// The most one stretch between clock readings counts towards
/// [`TIME_LIMIT`], so that a thread the system preempted is not faulted
/// for the wait. A script slow throughout is stopped after at most three
/// stretches (the first is not timed): within about 50 ms.
pub(crate) const MAX_TIMED_STRETCH: Duration = Duration::from_millis(10);
/// Largest policy file (script, roles or cases) accepted, in bytes.
pub(crate) const MAX_FILE_SIZE: u64 = 1024 * 1024;

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
    /// The weight of each function's variables in the call in progress, by
    /// call level, as last weighed: a function sees only its own scope, and
    /// its callers' do not change while it runs.
    static WEIGHTS: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Starts this thread's clock for one call and clears it when dropped,
/// even if the call unwinds.
struct ClockGuard;

impl ClockGuard {
    fn start() -> ClockGuard {
        CLOCK.with(|c| c.set(CLOCK_START));
        WEIGHTS.with(|w| w.borrow_mut().clear());
        ClockGuard
    }
}

impl Drop for ClockGuard {
    fn drop(&mut self) {
        CLOCK.with(|c| c.set(CLOCK_START));
        WEIGHTS.with(|w| w.borrow_mut().clear());
    }
}

/// Weighs what values hold, up to a budget.
struct Scale {
    left: usize,
}

impl Scale {
    /// Takes `bytes` from the budget; false once it is spent.
    fn take(&mut self, bytes: usize) -> bool {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                true
            }
            None => false,
        }
    }

    /// Weighs `value` and everything in it; false once the budget is
    /// spent, so that weighing costs at most the budget's worth of steps.
    fn weigh(&mut self, value: &Dynamic) -> bool {
        if !self.take(VALUE_COST) {
            return false;
        }
        // The tag first: most values are numbers and flags.
        if value.is_string() {
            if let Ok(text) = value.as_immutable_string_ref() {
                return self.take(text.len());
            }
        } else if value.is_array() {
            if let Ok(array) = value.as_array_ref() {
                return array.iter().all(|item| self.weigh(item));
            }
        } else if value.is_map() {
            if let Ok(map) = value.as_map_ref() {
                return map
                    .iter()
                    .all(|(key, item)| self.take(key.len()) && self.weigh(item));
            }
        } else if value.is_fnptr() {
            if let Some(pointer) = value.read_lock::<FnPtr>() {
                return self.take(pointer.fn_name().len())
                    && pointer.iter_curry().all(|item| self.weigh(item));
            }
        }
        true
    }
}

/// Weighs the variables of the function running (at `level`) and refuses
/// once those of the whole call, with its callers', pass
/// [`MAX_VALUES_SIZE`]. Called before every access to a variable: every
/// change a script makes goes through one (`this` is not in the
/// language), so a value grows past the limit by at most one operation's
/// worth.
fn check_values(scope: &Scope<'_>, level: usize) -> Result<(), Box<EvalAltResult>> {
    WEIGHTS.with(|weights| {
        let mut weights = weights.borrow_mut();
        // Levels above this one have returned.
        weights.resize(level.saturating_add(1), 0);
        let callers: usize = weights.iter().take(level).sum();
        let mut scale = Scale {
            left: MAX_VALUES_SIZE.saturating_sub(callers),
        };
        let within = scope
            .iter_raw()
            .all(|(name, _, value)| scale.take(name.len()) && scale.weigh(value));
        if !within {
            return Err(EvalAltResult::ErrorDataTooLarge(
                "Size of all values together".into(),
                Position::NONE,
            )
            .into());
        }
        if let Some(weight) = weights.last_mut() {
            *weight = MAX_VALUES_SIZE
                .saturating_sub(callers)
                .saturating_sub(scale.left);
        }
        Ok(())
    })
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
        // A method changing `this` would change a caller's variable
        // without an access to it, out of the weighing's sight.
        .disable_symbol("this")
        .on_print(|_| {})
        .on_debug(|_, _, _| {})
        .on_progress(|operations| {
            let check = operations % CLOCK_CHECK_INTERVAL == 0;
            (check && out_of_time()).then_some(Dynamic::UNIT)
        });
    #[expect(
        deprecated,
        reason = "rhai marks `on_var` volatile, not deprecated; the variable hook is the one place every change to a value passes"
    )]
    engine
        .on_var(|_, _, context| check_values(context.scope(), context.call_level()).map(|()| None));
    engine
}

/// Runs `call`, one call into a [`bare_engine`] script, with this thread's
/// clock started, so that the time limit counts from here.
pub(crate) fn timed<T>(call: impl FnOnce() -> T) -> T {
    let _clock = ClockGuard::start();
    call()
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
            "the policy built a value over the sandbox's size limits ({}){at}: strings may hold {MAX_STRING_SIZE} bytes, arrays {MAX_ARRAY_SIZE} items, maps {MAX_MAP_SIZE} entries, and all its values together {} MiB",
            lowercase_first(what),
            MAX_VALUES_SIZE / (1024 * 1024)
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
