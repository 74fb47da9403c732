//! When runs happen: logical dates and data intervals from a pipeline's schedule, in its
//! timezone, the way Airflow 2's cron timetable computes them. A scheduled run covers the
//! interval `[start, end)` between two fire times; its logical date is `start`, and it is
//! created once `end` has passed.

use crate::clock::Micros;
use crate::spec::{PipelineSpec, Schedule};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use std::str::FromStr;

/// A data interval; `start` is the run's logical date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub start: Micros,
    pub end: Micros,
}

/// A pipeline's schedule, parsed once.
#[derive(Debug, Clone)]
pub struct Timetable {
    cron: Option<Cron>,
    once: bool,
    tz: Tz,
    start: Option<Micros>,
    end: Option<Micros>,
    catchup: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimetableError(pub String);

impl std::fmt::Display for TimetableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Timetable {
    pub fn for_pipeline(p: &PipelineSpec) -> Result<Timetable, TimetableError> {
        let tz: Tz = p
            .timezone
            .parse()
            .map_err(|_| TimetableError(format!("pipeline `{}` has unknown timezone `{}`", p.id, p.timezone)))?;
        let local = |text: Option<&str>| -> Result<Option<Micros>, TimetableError> {
            let Some(text) = text else { return Ok(None) };
            let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
                .map_err(|_| TimetableError(format!("pipeline `{}` has an invalid date `{text}`", p.id)))?;
            Ok(tz.from_local_datetime(&naive).earliest().map(|d| d.timestamp_micros()))
        };
        let cron = match p.schedule {
            Schedule::Cron(expr) => Some(
                Cron::from_str(expr)
                    .map_err(|e| TimetableError(format!("pipeline `{}` has an invalid cron `{expr}`: {e}", p.id)))?,
            ),
            _ => None,
        };
        Ok(Timetable {
            cron,
            once: p.schedule == Schedule::Once,
            tz,
            start: local(p.start_date)?,
            end: local(p.end_date)?,
            catchup: p.catchup,
        })
    }

    /// The pipeline's `start_date` and `end_date`, as instants.
    pub fn bounds(&self) -> (Option<Micros>, Option<Micros>) {
        (self.start, self.end)
    }

    /// Whether the scheduler ever creates runs for this pipeline by itself.
    pub fn is_scheduled(&self) -> bool {
        self.cron.is_some() || self.once
    }

    fn utc(&self, micros: Micros) -> Option<DateTime<Tz>> {
        DateTime::from_timestamp_micros(micros).map(|d| d.with_timezone(&self.tz))
    }

    /// The first fire time strictly after `after` (or at it, when `inclusive`).
    fn fire_after(&self, after: Micros, inclusive: bool) -> Option<Micros> {
        let cron = self.cron.as_ref()?;
        let at = self.utc(after)?;
        cron.find_next_occurrence(&at, inclusive).ok().map(|d| d.timestamp_micros())
    }

    /// The last fire time at or before `at`.
    fn fire_at_or_before(&self, at: Micros) -> Option<Micros> {
        let cron = self.cron.as_ref()?;
        let t = self.utc(at)?;
        cron.find_previous_occurrence(&t, true).ok().map(|d| d.timestamp_micros())
    }

    /// The next interval to schedule, given the last scheduled logical date (if any) and
    /// the current time. `None` when nothing is due now or ever again. With `catchup` off,
    /// missed intervals are skipped: only the latest complete one runs.
    pub fn next_due(&self, last_logical: Option<Micros>, now: Micros) -> Option<Interval> {
        if self.once {
            if last_logical.is_some() {
                return None;
            }
            let at = self.start.unwrap_or(now);
            return (at <= now).then_some(Interval { start: at, end: at });
        }
        let first = match last_logical {
            Some(last) => self.fire_after(last, false)?,
            None => self.fire_after(self.start.unwrap_or(now), true)?,
        };
        let mut start = first;
        if !self.catchup {
            // The latest interval that has ended by `now`.
            let latest_end = self.fire_at_or_before(now)?;
            let latest_start = self.fire_at_or_before(latest_end - 1)?;
            start = start.max(latest_start);
        }
        let end = self.fire_after(start, false)?;
        if end > now {
            return None;
        }
        if self.end.is_some_and(|limit| start > limit) {
            return None;
        }
        Some(Interval { start, end })
    }

    /// When [`Timetable::next_due`] next returns an interval: the end of the next one.
    pub fn next_wakeup(&self, last_logical: Option<Micros>, now: Micros) -> Option<Micros> {
        if self.once {
            return if last_logical.is_some() { None } else { Some(self.start.unwrap_or(now)) };
        }
        let start = match last_logical {
            Some(last) => self.fire_after(last, false)?,
            None => self.fire_after(self.start.unwrap_or(now), true)?,
        };
        let start = if self.catchup { start } else { start.max(self.fire_at_or_before(now).unwrap_or(start)) };
        self.fire_after(start, false)
    }

    /// The interval a manual trigger at `at` covers: Airflow 2 infers the last complete
    /// scheduled interval for cron pipelines; manual-only pipelines get `[at, at]`.
    pub fn manual_interval(&self, at: Micros) -> Interval {
        match (self.fire_at_or_before(at), self.cron.is_some()) {
            (Some(end), true) => Interval { start: self.fire_at_or_before(end - 1).unwrap_or(end), end },
            _ => Interval { start: at, end: at },
        }
    }

    /// The fire times after `after`, for listings (`dags next-execution`).
    pub fn upcoming(&self, after: Micros, count: usize) -> Vec<Micros> {
        let mut out = Vec::new();
        let mut at = after;
        while out.len() < count {
            let Some(next) = self.fire_after(at, false) else { break };
            out.push(next);
            at = next;
        }
        out
    }
}

/// `2024-01-01T06:00:00+00:00` -> micros, or a date in UTC.
pub fn utc_micros(year: i32, month: u32, day: u32, hour: u32, minute: u32) -> Micros {
    Utc.with_ymd_and_hms(year, month, day, hour, minute, 0).single().map_or(0, |d| d.timestamp_micros())
}

impl Timetable {
    /// Every scheduled interval whose logical date falls in `[from, to]` (backfill).
    pub fn intervals_between(&self, from: Micros, to: Micros) -> Vec<Interval> {
        let mut out = Vec::new();
        let Some(mut start) = self.fire_after(from, true) else { return out };
        while start <= to {
            let Some(end) = self.fire_after(start, false) else { break };
            out.push(Interval { start, end });
            start = end;
        }
        out
    }
}
