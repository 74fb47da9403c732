//! Cron schedules: field-by-field checks that say which field is wrong and why, then
//! croner for the real parsing and for fire times (plan, catch-up estimates).

use crate::model::Schedule;
use chrono::{NaiveDateTime, TimeZone};
use croner::Cron;
use std::str::FromStr;

/// What is wrong with a cron expression, and where inside it (byte offset and length).
#[derive(Debug, PartialEq)]
pub struct FieldProblem {
    pub message: String,
    pub offset: usize,
    pub len: usize,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// `L`, `W`, `#` and `?` as croner (and Airflow's croniter) accept them.
    specials: &'static [char],
}

const FIELDS: [Field; 5] = [
    Field { name: "minute", min: 0, max: 59, names: &[], specials: &[] },
    Field { name: "hour", min: 0, max: 23, names: &[], specials: &[] },
    Field { name: "day-of-month", min: 1, max: 31, names: &[], specials: &['L', 'W', '?'] },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
        specials: &[],
    },
    Field {
        name: "day-of-week",
        min: 0,
        max: 7,
        names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
        specials: &['L', '#', '?'],
    },
];

/// Checks a 5-field cron expression field by field.
pub fn check_fields(expr: &str) -> Result<(), FieldProblem> {
    let parts: Vec<(usize, &str)> = expr.split_whitespace().map(|p| (offset_in(expr, p), p)).collect();
    if parts.len() != 5 {
        return Err(FieldProblem {
            message: format!(
                "it has {} fields, cron needs 5 (minute hour day-of-month month day-of-week)",
                parts.len()
            ),
            offset: 0,
            len: expr.len(),
        });
    }
    for ((offset, text), field) in parts.into_iter().zip(FIELDS.iter()) {
        if let Err(message) = check_field(text, field) {
            return Err(FieldProblem {
                message: format!("the {} field `{text}` {message}", field.name),
                offset,
                len: text.len(),
            });
        }
    }
    Ok(())
}

fn offset_in(whole: &str, part: &str) -> usize {
    (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize)
}

fn check_field(text: &str, field: &Field) -> Result<(), String> {
    for item in text.split(',') {
        if item.is_empty() {
            return Err("has an empty list entry".into());
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(s) if s >= 1 && s <= field.max.max(1) => {}
                _ => return Err(format!("has an invalid step `/{step}` (1-{})", field.max.max(1))),
            }
        }
        if range == "*" || (range == "?" && field.specials.contains(&'?')) {
            continue;
        }
        if field.specials.iter().any(|c| *c != '?' && range.contains(*c)) {
            continue; // L, 5L, 15W, 5#3: croner checks the detail below.
        }
        let (low, high) = match range.split_once('-') {
            Some((low, high)) => (low, Some(high)),
            None => (range, None),
        };
        let low = value(low, field)?;
        if let Some(high) = high {
            let high = value(high, field)?;
            if high < low {
                return Err(format!("has a backwards range `{range}`"));
            }
        }
    }
    Ok(())
}

fn value(text: &str, field: &Field) -> Result<u32, String> {
    if let Some(i) = field.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(u32::try_from(i).unwrap_or(0) + u32::from(field.name == "month"));
    }
    match text.parse::<u32>() {
        Ok(v) if (field.min..=field.max).contains(&v) => Ok(v),
        Ok(_) => Err(format!("is out of range {}-{}", field.min, field.max)),
        Err(_) if field.names.is_empty() => Err(format!("is not a number from {} to {}", field.min, field.max)),
        Err(_) => Err(format!(
            "is not a number from {} to {} or a name like {}",
            field.min,
            field.max,
            field.names.first().copied().unwrap_or("")
        )),
    }
}

/// The croner schedule for a cron (or preset) schedule.
pub fn parse(schedule: &Schedule) -> Result<Cron, String> {
    let expr = schedule.cron().ok_or_else(|| "not a cron schedule".to_string())?;
    Cron::from_str(expr).map_err(|e| e.to_string())
}

/// Fire times strictly after `after`, in the pipeline's timezone, at most `count`.
pub fn next_fire_times<Tz: TimeZone>(
    cron: &Cron,
    after: &chrono::DateTime<Tz>,
    count: usize,
) -> Vec<chrono::DateTime<Tz>> {
    cron.iter_after(after.clone()).take(count).collect()
}

/// How many runs catch-up would create from `start` (local ISO time) until now, counting
/// at most `limit` so a huge backlog costs nothing to estimate.
pub fn count_runs_until_now(cron: &Cron, start: &str, tz: chrono_tz::Tz, limit: usize) -> usize {
    let Ok(naive) = NaiveDateTime::parse_from_str(start, "%Y-%m-%dT%H:%M:%S") else { return 0 };
    let Some(start) = tz.from_local_datetime(&naive).earliest() else { return 0 };
    let now = chrono::Utc::now().with_timezone(&tz);
    cron.iter_from(start, croner::Direction::Forward).take_while(|t| *t <= now).take(limit).count()
}

/// "At 06:00" style description, for plans and listings.
pub fn describe(schedule: &Schedule) -> String {
    match schedule {
        Schedule::Manual => "manual only".into(),
        Schedule::Once => "once, at the start date".into(),
        Schedule::Cron(_) => parse(schedule).map_or_else(|_| schedule.to_string(), |c| c.describe()),
        Schedule::Datasets(_) => format!("when updated: {}", schedule.to_string().trim_start_matches("on datasets ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_expressions() {
        for expr in
            ["0 6 * * *", "0 2 * * 0", "*/15 * * * *", "0 0 1 JAN *", "0 9-17 * * MON-FRI", "0 0 L * *", "0 0 * * 5#3"]
        {
            assert_eq!(check_fields(expr), Ok(()), "{expr}");
            assert!(parse(&Schedule::Cron(expr.into())).is_ok(), "{expr}");
        }
    }

    #[test]
    fn names_the_field() {
        let e = check_fields("0 25 * * *").expect_err("invalid");
        assert_eq!(e.message, "the hour field `25` is out of range 0-23");
        assert_eq!((e.offset, e.len), (2, 2));
        let e = check_fields("0 6 * * MOON").expect_err("invalid");
        assert!(e.message.starts_with("the day-of-week field `MOON`"), "{}", e.message);
        let e = check_fields("0 6 * *").expect_err("invalid");
        assert!(e.message.contains("4 fields"));
        let e = check_fields("*/0 * * * *").expect_err("invalid");
        assert!(e.message.contains("step"));
    }
}
