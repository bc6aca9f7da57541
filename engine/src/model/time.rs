//! Time: where the engine reads it, and how it is kept (microseconds
//! since the epoch at rest, `DateTime<Utc>` in the API).

use std::sync::Arc;

use chrono::{DateTime, Utc};

/// Where the engine reads the time for records, logins and sessions: the
/// system clock, or a clock the host controls (tests, simulations).
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

/// A time kept at rest, for the API (the epoch if it is out of range).
pub(crate) fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// The wall-clock time in µs: audit entries are stamped with it, whatever
/// the engine's [`Clock`] says.
pub(crate) fn wall_micros() -> i64 {
    Utc::now().timestamp_micros()
}
