//! `macros`: the helpers of Airflow's `airflow.macros` that ported templates use:
//! `ds_add`, `ds_format`, `datetime` and `timedelta`.

use super::dates::{TemplateDate, TemplateDelta, invalid, strftime};
use chrono::{NaiveDate, NaiveDateTime, TimeDelta, Utc};
use minijinja::value::{Kwargs, Object, ObjectRepr, Value, from_args};
use minijinja::{ErrorKind, State};
use std::sync::Arc;

/// The `macros` namespace.
pub(super) fn namespace() -> Value {
    Value::from_pairs([
        ("ds_add", Value::from_function(ds_add)),
        ("ds_format", Value::from_function(ds_format)),
        ("datetime", Value::from_object(DatetimeClass)),
        ("timedelta", Value::from_function(TemplateDelta::from_kwargs)),
    ])
}

fn parse_ds(ds: &str) -> Result<NaiveDate, minijinja::Error> {
    NaiveDate::parse_from_str(ds, "%Y-%m-%d").map_err(|_| invalid(format!("`{ds}` is not a YYYY-MM-DD date")))
}

/// `macros.ds_add('2024-01-01', 5)` -> `2024-01-06` (negative days go back).
fn ds_add(ds: &str, days: i64) -> Result<String, minijinja::Error> {
    let date = parse_ds(ds)?;
    let shifted = TimeDelta::try_days(days)
        .and_then(|d| date.checked_add_signed(d))
        .ok_or_else(|| invalid("the date is out of range"))?;
    Ok(shifted.format("%Y-%m-%d").to_string())
}

/// `macros.ds_format('2024-01-06', '%Y-%m-%d', '%d/%m/%Y')` -> `06/01/2024`.
fn ds_format(ds: &str, input_format: &str, output_format: &str) -> Result<String, minijinja::Error> {
    let parsed = NaiveDateTime::parse_from_str(ds, input_format)
        .or_else(|_| NaiveDate::parse_from_str(ds, input_format).map(|d| d.and_time(chrono::NaiveTime::MIN)))
        .map_err(|_| invalid(format!("`{ds}` does not match the format `{input_format}`")))?;
    strftime(&parsed.format(output_format), output_format)
}

/// `macros.datetime`: Python's `datetime` class. Called, it makes a date-time in UTC
/// (`macros.datetime(2024, 1, 31)`); it has `now()`, `utcnow()`, `strptime(text, format)`
/// and `fromisoformat(text)`.
#[derive(Debug)]
struct DatetimeClass;

impl Object for DatetimeClass {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call(self: &Arc<Self>, _state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, minijinja::Error> {
        let (year, month, day, rest, kwargs): (i32, u32, u32, &[Value], Kwargs) = from_args(args)?;
        let mut clock = [0u32; 3];
        for (i, value) in rest.iter().enumerate() {
            let slot =
                clock.get_mut(i).ok_or_else(|| invalid("datetime takes year, month, day, hour, minute, second"))?;
            *slot = u32::try_from(value.clone()).map_err(|_| invalid("hour, minute and second are whole numbers"))?;
        }
        for (i, unit) in ["hour", "minute", "second"].iter().enumerate() {
            if let Some(v) = kwargs.get::<Option<u32>>(unit)? {
                clock[i] = v;
            }
        }
        kwargs.assert_all_used()?;
        let date = NaiveDate::from_ymd_opt(year, month, day)
            .and_then(|d| d.and_hms_opt(clock[0], clock[1], clock[2]))
            .ok_or_else(|| {
                invalid(format!("{year}-{month}-{day} {}:{}:{} is not a date-time", clock[0], clock[1], clock[2]))
            })?;
        Ok(Value::from_object(TemplateDate(date.and_utc())))
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, minijinja::Error> {
        let date = match method {
            "now" | "utcnow" => {
                let () = from_args(args)?;
                Utc::now()
            }
            "strptime" => {
                let (text, format): (&str, &str) = from_args(args)?;
                NaiveDateTime::parse_from_str(text, format)
                    .or_else(|_| NaiveDate::parse_from_str(text, format).map(|d| d.and_time(chrono::NaiveTime::MIN)))
                    .map_err(|_| invalid(format!("`{text}` does not match the format `{format}`")))?
                    .and_utc()
            }
            "fromisoformat" => {
                let (text,): (&str,) = from_args(args)?;
                chrono::DateTime::parse_from_rfc3339(text)
                    .map(|d| d.with_timezone(&Utc))
                    .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").map(|d| d.and_utc()))
                    .or_else(|_| parse_ds(text).map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc()))
                    .map_err(|_| invalid(format!("`{text}` is not an ISO 8601 date-time")))?
            }
            _ => {
                return Err(minijinja::Error::new(
                    ErrorKind::UnknownMethod,
                    format!("`macros.datetime` has no method `{method}`; it has now, utcnow, strptime, fromisoformat"),
                ));
            }
        };
        Ok(Value::from_object(TemplateDate(date)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str) -> String {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_global("macros", namespace());
        env.render_str(template, ()).unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn the_macros_answer_as_airflow_s() {
        assert_eq!(render("{{ macros.ds_add('2024-01-30', 5) }}"), "2024-02-04");
        assert_eq!(render("{{ macros.ds_add('2024-03-01', -1) }}"), "2024-02-29");
        assert_eq!(render("{{ macros.ds_format('2024-01-06', '%Y-%m-%d', '%d/%m/%Y') }}"), "06/01/2024");
        assert_eq!(render("{{ macros.datetime(2024, 1, 31, 6) }}"), "2024-01-31T06:00:00+00:00");
        assert_eq!(render("{{ macros.datetime(2024, 1, 31).add(months=1) }}"), "2024-02-29T00:00:00+00:00");
        assert_eq!(
            render("{{ macros.datetime.strptime('2024-05-01', '%Y-%m-%d').subtract(macros.timedelta(hours=1)) }}"),
            "2024-04-30T23:00:00+00:00"
        );
        assert_eq!(render("{{ macros.timedelta(days=1, hours=2) }}"), "1 day, 2:00:00");
        assert_eq!(render("{{ macros.timedelta(minutes=90).total_seconds() }}"), "5400.0");
        assert!(render("{{ macros.ds_add('01/02/2024', 1) }}").contains("not a YYYY-MM-DD date"));
    }
}
