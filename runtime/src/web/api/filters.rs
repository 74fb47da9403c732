//! The list filters of runs and task instances, from a query string (keys may repeat:
//! `state=success&state=failed`) or from the batch forms' bodies, and the `~` wildcard
//! that lists across every pipeline or run.

use super::*;
use crate::store::{RunFilter, TiFilter};

/// `~`: every pipeline (or every run), as Airflow spells it.
pub(super) const ANY: &str = "~";

/// A list route's query pairs, repeated keys kept; each value is checked when read, so a
/// bad one is a 400 problem naming it.
pub(super) struct ListQuery(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        let raw = parts.uri.query().unwrap_or_default();
        Ok(ListQuery(form_urlencoded::parse(raw.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()))
    }
}

impl ListQuery {
    /// The last value given for `key`; an empty one (`state=`) is no value, as if the key
    /// were left out.
    pub(super) fn one(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, v)| k == key && !v.is_empty()).map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> Option<Vec<String>> {
        let values: Vec<String> =
            self.0.iter().filter(|(k, v)| k == key && !v.is_empty()).map(|(_, v)| v.clone()).collect();
        (!values.is_empty()).then_some(values)
    }

    pub(super) fn number(&self, key: &str) -> Result<Option<i64>, Problem> {
        self.one(key)
            .map(|v| {
                saturating_int(v).ok_or_else(|| Problem::bad_request(format!("`{key}` must be an integer, not `{v}`")))
            })
            .transpose()
    }

    fn seconds(&self, key: &str) -> Result<Option<f64>, Problem> {
        self.one(key)
            .map(|v| {
                v.parse().map_err(|_| Problem::bad_request(format!("`{key}` must be a number of seconds, not `{v}`")))
            })
            .transpose()
    }

    fn range(&self, field: &str) -> Result<(Option<Micros>, Option<Micros>), Problem> {
        let at = |key: String| -> Result<Option<Micros>, Problem> {
            self.one(&key)
                .map(|v| {
                    parse_datetime(v)
                        .ok_or_else(|| Problem::bad_request(format!("`{key}` is not an RFC 3339 date-time: `{v}`")))
                })
                .transpose()
        };
        Ok((at(format!("{field}_gte"))?, at(format!("{field}_lte"))?))
    }

    pub(super) fn page(&self) -> Result<Page, Problem> {
        Ok(Page { limit: self.number("limit")?, offset: self.number("offset")? })
    }

    /// The runs of `dag_id` (every pipeline's for `~`) the query asks for.
    pub(super) fn runs(&self, dag_id: &str) -> Result<RunFilter, Problem> {
        Ok(RunFilter {
            pipelines: (dag_id != ANY).then(|| vec![dag_id.to_string()]),
            run_ids: None,
            states: self.all("state"),
            logical_date: self.range("execution_date")?,
            start_date: self.range("start_date")?,
            end_date: self.range("end_date")?,
        })
    }

    /// The task instances of `dag_id` / `run_id` (`~` for every one) the query asks for.
    pub(super) fn task_instances(&self, dag_id: &str, run_id: &str) -> Result<TiFilter, Problem> {
        Ok(TiFilter {
            runs: RunFilter {
                pipelines: (dag_id != ANY).then(|| vec![dag_id.to_string()]),
                run_ids: (run_id != ANY).then(|| vec![run_id.to_string()]),
                logical_date: self.range("execution_date")?,
                ..RunFilter::default()
            },
            task_ids: None,
            states: self.all("state"),
            pools: self.all("pool"),
            queues: self.all("queue"),
            start_date: self.range("start_date")?,
            end_date: self.range("end_date")?,
            duration: (self.seconds("duration_gte")?, self.seconds("duration_lte")?),
        })
    }
}

/// A form's `<field>_gte` / `<field>_lte` pair as an inclusive range.
fn range(gte: &Option<String>, lte: &Option<String>, field: &str) -> Result<(Option<Micros>, Option<Micros>), Problem> {
    let at = |value: &Option<String>, bound: &str| {
        value
            .as_deref()
            .map(|v| {
                parse_datetime(v).ok_or_else(|| {
                    Problem::bad_request(format!("`{field}_{bound}` is not an RFC 3339 date-time: `{v}`"))
                })
            })
            .transpose()
    };
    Ok((at(gte, "gte")?, at(lte, "lte")?))
}

/// Airflow's `ListDagRunsForm`: the runs of `POST /dags/~/dagRuns/list`.
#[derive(Debug, Deserialize)]
pub(super) struct ListRunsForm {
    page_offset: Option<i64>,
    page_limit: Option<i64>,
    dag_ids: Option<Vec<String>>,
    states: Option<Vec<String>>,
    execution_date_gte: Option<String>,
    execution_date_lte: Option<String>,
    start_date_gte: Option<String>,
    start_date_lte: Option<String>,
    end_date_gte: Option<String>,
    end_date_lte: Option<String>,
}

impl ListRunsForm {
    pub(super) fn page(&self) -> Page {
        Page { limit: self.page_limit, offset: self.page_offset }
    }

    pub(super) fn filter(&self) -> Result<RunFilter, Problem> {
        Ok(RunFilter {
            pipelines: self.dag_ids.clone(),
            run_ids: None,
            states: self.states.clone(),
            logical_date: range(&self.execution_date_gte, &self.execution_date_lte, "execution_date")?,
            start_date: range(&self.start_date_gte, &self.start_date_lte, "start_date")?,
            end_date: range(&self.end_date_gte, &self.end_date_lte, "end_date")?,
        })
    }
}

/// Airflow's `ListTaskInstanceForm`: the task instances of
/// `POST /dags/~/dagRuns/~/taskInstances/list`.
#[derive(Debug, Deserialize)]
pub(super) struct ListTasksForm {
    page_offset: Option<i64>,
    page_limit: Option<i64>,
    dag_ids: Option<Vec<String>>,
    dag_run_ids: Option<Vec<String>>,
    task_ids: Option<Vec<String>>,
    execution_date_gte: Option<String>,
    execution_date_lte: Option<String>,
    start_date_gte: Option<String>,
    start_date_lte: Option<String>,
    end_date_gte: Option<String>,
    end_date_lte: Option<String>,
    duration_gte: Option<f64>,
    duration_lte: Option<f64>,
    state: Option<Vec<String>>,
    pool: Option<Vec<String>>,
    queue: Option<Vec<String>>,
}

impl ListTasksForm {
    pub(super) fn page(&self) -> Page {
        Page { limit: self.page_limit, offset: self.page_offset }
    }

    pub(super) fn filter(&self) -> Result<TiFilter, Problem> {
        Ok(TiFilter {
            runs: RunFilter {
                pipelines: self.dag_ids.clone(),
                run_ids: self.dag_run_ids.clone(),
                logical_date: range(&self.execution_date_gte, &self.execution_date_lte, "execution_date")?,
                ..RunFilter::default()
            },
            task_ids: self.task_ids.clone(),
            states: self.state.clone(),
            pools: self.pool.clone(),
            queues: self.queue.clone(),
            start_date: range(&self.start_date_gte, &self.start_date_lte, "start_date")?,
            end_date: range(&self.end_date_gte, &self.end_date_lte, "end_date")?,
            duration: (self.duration_gte, self.duration_lte),
        })
    }
}
