//! Time, injectable: the services read it through a [`Clock`] so tests drive time by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Microseconds since the Unix epoch, UTC: the unit of every time in the store.
pub type Micros = i64;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Micros;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Micros {
        chrono::Utc::now().timestamp_micros()
    }
}

/// A clock that moves only when told to, for tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    pub fn at(now: Micros) -> Arc<ManualClock> {
        Arc::new(ManualClock { now: AtomicI64::new(now) })
    }

    pub fn set(&self, now: Micros) {
        self.now.store(now, Ordering::SeqCst);
    }

    pub fn advance_secs(&self, secs: i64) {
        self.now.fetch_add(secs * 1_000_000, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Micros {
        self.now.load(Ordering::SeqCst)
    }
}

/// RFC 3339 in UTC with a `+00:00` offset, as Airflow prints dates.
pub fn to_rfc3339(micros: Micros) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false))
        .unwrap_or_default()
}

/// Parses RFC 3339 or a bare date (`2024-01-01`, midnight UTC).
pub fn parse_datetime(text: &str) -> Option<Micros> {
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(d.timestamp_micros());
    }
    let naive = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .or_else(|| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").ok())?;
    Some(naive.and_utc().timestamp_micros())
}

/// The system clock moved forward by a settable offset: `dags test` jumps over retry
/// delays with it instead of sleeping.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset: AtomicI64,
}

impl ShiftedClock {
    pub fn new() -> Arc<ShiftedClock> {
        Arc::new(ShiftedClock::default())
    }

    /// Moves the clock so that `now()` is at least `at`.
    pub fn jump_to(&self, at: Micros) {
        let behind = at - SystemClock.now() - self.offset.load(Ordering::SeqCst);
        if behind > 0 {
            self.offset.fetch_add(behind, Ordering::SeqCst);
        }
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> Micros {
        SystemClock.now() + self.offset.load(Ordering::SeqCst)
    }
}
