//! Dates as Airflow's templates see them: a date-time (a pendulum `DateTime`, in UTC) with
//! `strftime`, `isoformat`, `timestamp`, pendulum's `add` / `subtract`, and Python's
//! `timedelta`.

use chrono::{DateTime, Datelike, Months, TimeDelta, Timelike, Utc};
use minijinja::value::{Kwargs, Object, ObjectRepr, Value, from_args};
use minijinja::{ErrorKind, State};
use std::fmt::{self, Write as _};
use std::sync::Arc;

pub(super) fn parse_date(what: &str, text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| format!("the run's {what} `{text}` is not an RFC 3339 date-time"))
}

/// An RFC 3339 date-time as Airflow writes a logical date: ISO 8601 in UTC
/// (`2024-01-01T00:00:00+00:00`). `None` when `text` is not RFC 3339.
pub(crate) fn isoformat_utc(text: &str) -> Option<String> {
    DateTime::parse_from_rfc3339(text).ok().map(|d| isoformat(&d.with_timezone(&Utc)))
}

/// Python's `datetime.isoformat()`: microseconds only when there are some.
pub(super) fn isoformat(date: &DateTime<Utc>) -> String {
    if date.nanosecond() / 1000 == 0 {
        date.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    } else {
        date.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string()
    }
}

pub(super) fn invalid(message: impl Into<String>) -> minijinja::Error {
    minijinja::Error::new(ErrorKind::InvalidOperation, message.into())
}

/// `date` formatted with a strftime `format`; an unknown directive is an error.
pub(super) fn strftime(date: &impl fmt::Display, format: &str) -> Result<String, minijinja::Error> {
    let mut out = String::new();
    // chrono reports an unknown `%` directive as a formatting error.
    write!(out, "{date}").map_err(|_| invalid(format!("`{format}` is not a valid strftime format")))?;
    Ok(out)
}

/// A date-time as Airflow's templates see one (a pendulum `DateTime`, in UTC).
#[derive(Debug)]
pub(super) struct TemplateDate(pub(super) DateTime<Utc>);

/// The units pendulum's `add` and `subtract` take.
const SHIFT_UNITS: &[&str] = &["years", "months", "weeks", "days", "hours", "minutes", "seconds"];

impl TemplateDate {
    /// pendulum's `add(days=1, ...)` (`sign` 1) and `subtract(...)` (`sign` -1); a
    /// `timedelta` may be given instead, as the one positional argument.
    fn shift(&self, args: &[Value], sign: i64) -> Result<Value, minijinja::Error> {
        let (positional, kwargs): (Option<&Value>, Kwargs) = from_args(args)?;
        let mut date = self.0;
        if let Some(delta) = positional {
            let delta = delta
                .downcast_object_ref::<TemplateDelta>()
                .ok_or_else(|| invalid("`add` and `subtract` take a timedelta or units such as `days=1`"))?;
            date = date
                .checked_add_signed(TimeDelta::microseconds(delta.0.saturating_mul(sign)))
                .ok_or_else(|| invalid("the date is out of range"))?;
        }
        for unit in SHIFT_UNITS {
            let amount: Option<i64> = kwargs.get(unit)?;
            let Some(amount) = amount.map(|a| a.saturating_mul(sign)) else { continue };
            date = match *unit {
                "years" | "months" => {
                    let months = if *unit == "years" { amount.saturating_mul(12) } else { amount };
                    let magnitude = Months::new(u32::try_from(months.unsigned_abs()).unwrap_or(u32::MAX));
                    if months >= 0 { date.checked_add_months(magnitude) } else { date.checked_sub_months(magnitude) }
                }
                _ => date.checked_add_signed(TimeDelta::microseconds(unit_micros(unit).saturating_mul(amount))),
            }
            .ok_or_else(|| invalid("the date is out of range"))?;
        }
        kwargs.assert_all_used()?;
        Ok(Value::from_object(TemplateDate(date)))
    }
}

/// Microseconds in one `unit` of [`SHIFT_UNITS`] below a month.
fn unit_micros(unit: &str) -> i64 {
    const SECOND: i64 = 1_000_000;
    match unit {
        "weeks" => 7 * 86_400 * SECOND,
        "days" => 86_400 * SECOND,
        "hours" => 3_600 * SECOND,
        "minutes" => 60 * SECOND,
        _ => SECOND,
    }
}

impl Object for TemplateDate {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let d = &self.0;
        let value = match key.as_str()? {
            "year" => d.year(),
            "month" => i32::try_from(d.month()).ok()?,
            "day" => i32::try_from(d.day()).ok()?,
            "hour" => i32::try_from(d.hour()).ok()?,
            "minute" => i32::try_from(d.minute()).ok()?,
            "second" => i32::try_from(d.second()).ok()?,
            "microsecond" => i32::try_from(d.nanosecond() / 1000).ok()?,
            _ => return None,
        };
        Some(Value::from(value))
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, minijinja::Error> {
        match method {
            "strftime" => {
                let (format,): (&str,) = from_args(args)?;
                Ok(Value::from(strftime(&self.0.format(format), format)?))
            }
            "isoformat" => {
                let () = from_args(args)?;
                Ok(Value::from(isoformat(&self.0)))
            }
            "timestamp" => {
                let () = from_args(args)?;
                Ok(Value::from(self.0.timestamp_micros() as f64 / 1e6))
            }
            "add" => self.shift(args, 1),
            "subtract" => self.shift(args, -1),
            _ => Err(minijinja::Error::new(
                ErrorKind::UnknownMethod,
                format!(
                    "a date-time has no method `{method}`; it has strftime, isoformat, timestamp, add, subtract \
                     (dates do not add with `+`: write `logical_date.add(days=1)`)"
                ),
            )),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&isoformat(&self.0))
    }
}

/// Python's `timedelta`, in microseconds: renders as Python prints one (`1 day, 2:00:00`).
#[derive(Debug)]
pub(super) struct TemplateDelta(pub(super) i64);

impl TemplateDelta {
    /// `timedelta(days=0, seconds=0, microseconds=0, milliseconds=0, minutes=0, hours=0,
    /// weeks=0)`, keywords only.
    pub(super) fn from_kwargs(kwargs: Kwargs) -> Result<Value, minijinja::Error> {
        let mut micros: i64 = 0;
        for (unit, scale) in [
            ("weeks", unit_micros("weeks")),
            ("days", unit_micros("days")),
            ("hours", unit_micros("hours")),
            ("minutes", unit_micros("minutes")),
            ("seconds", unit_micros("seconds")),
            ("milliseconds", 1_000),
            ("microseconds", 1),
        ] {
            let amount: Option<f64> = kwargs.get(unit)?;
            if let Some(amount) = amount {
                micros = micros.saturating_add((amount * scale as f64).round() as i64);
            }
        }
        kwargs.assert_all_used()?;
        Ok(Value::from_object(TemplateDelta(micros)))
    }

    /// Python's normalized parts: days (may be negative), seconds and microseconds (not).
    fn parts(&self) -> (i64, i64, i64) {
        let day = unit_micros("days");
        let days = self.0.div_euclid(day);
        let rest = self.0.rem_euclid(day);
        (days, rest / 1_000_000, rest % 1_000_000)
    }
}

impl Object for TemplateDelta {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let (days, seconds, micros) = self.parts();
        match key.as_str()? {
            "days" => Some(Value::from(days)),
            "seconds" => Some(Value::from(seconds)),
            "microseconds" => Some(Value::from(micros)),
            _ => None,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, minijinja::Error> {
        match method {
            "total_seconds" => {
                let () = from_args(args)?;
                Ok(Value::from(self.0 as f64 / 1e6))
            }
            _ => Err(minijinja::Error::new(
                ErrorKind::UnknownMethod,
                format!("a timedelta has no method `{method}`; it has total_seconds"),
            )),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (days, seconds, micros) = self.parts();
        match days {
            0 => {}
            1 | -1 => write!(f, "{days} day, ")?,
            _ => write!(f, "{days} days, ")?,
        }
        write!(f, "{}:{:02}:{:02}", seconds / 3600, seconds % 3600 / 60, seconds % 60)?;
        if micros != 0 {
            write!(f, ".{micros:06}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timedelta_prints_as_python_prints_it() {
        let render = |micros| Value::from_object(TemplateDelta(micros)).to_string();
        assert_eq!(render(86_400_000_000), "1 day, 0:00:00");
        assert_eq!(render(2 * 86_400_000_000 + 3_723_000_000), "2 days, 1:02:03");
        assert_eq!(render(-3_600_000_000), "-1 day, 23:00:00");
        assert_eq!(render(1_500_000), "0:00:01.500000");
    }
}
