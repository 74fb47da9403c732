//! Browse pages: every run and every task instance across pipelines, filtered by state,
//! pipeline and logical date (so "everything that failed last night" is one form away),
//! the SLA misses, and the compiler's warnings. A page of 100 rows at a time.

use super::*;
use crate::clock::{Micros, parse_datetime};
use crate::store::{RunFilter, TiFilter};

/// Rows per page.
const BROWSE_PAGE: i64 = 100;
const DAY: i64 = 86_400_000_000;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct BrowseQuery {
    state: String,
    dag_id: String,
    /// Logical dates from this day (`2024-01-01`, or RFC 3339) ...
    from: String,
    /// ... to this day, inclusive.
    to: String,
    page: u32,
}

impl BrowseQuery {
    fn given(value: &str) -> Option<Vec<String>> {
        let value = value.trim();
        (!value.is_empty()).then(|| vec![value.to_string()])
    }

    /// The logical-date range asked for; a day given as a date includes all of it.
    fn dates(&self) -> Result<(Option<Micros>, Option<Micros>), String> {
        let parse = |text: &str, end_of_day: bool| -> Result<Option<Micros>, String> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            let at = parse_datetime(text).ok_or_else(|| format!("`{text}` is not a date: use 2024-01-01"))?;
            Ok(Some(if end_of_day && !text.contains('T') { at + DAY - 1 } else { at }))
        };
        Ok((parse(&self.from, false)?, parse(&self.to, true)?))
    }

    fn runs(&self) -> Result<RunFilter, String> {
        Ok(RunFilter {
            pipelines: Self::given(&self.dag_id),
            states: Self::given(&self.state),
            logical_date: self.dates()?,
            ..RunFilter::default()
        })
    }

    /// The filter as a query string, for the paging links.
    fn query_string(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("state", &self.state)
            .append_pair("dag_id", &self.dag_id)
            .append_pair("from", &self.from)
            .append_pair("to", &self.to)
            .finish()
    }
}

/// One row of a browse table: its cells, the state it shows, and where it links.
fn row(cells: Vec<String>, state: &str, link: String) -> Value {
    json!({ "cells": cells, "state": state, "link": link })
}

fn run_link(dag_id: &str, run_id: &str) -> String {
    format!("/dags/{}?run={}", encode(dag_id, b""), encode(run_id, b""))
}

fn browse_page(
    session: &Session,
    state: &AppState,
    kind: &str,
    query: &BrowseQuery,
    (columns, rows, total): (&[&str], Vec<Value>, i64),
    states: &[&str],
    error: Option<String>,
) -> Response {
    let offset = i64::from(query.page) * BROWSE_PAGE;
    let failed = error.is_some();
    let mut response = render(
        "browse.html",
        with(
            page_context(session),
            context! {
                kind,
                title => if kind == "runs" { "Runs" } else { "Task instances" },
                columns => v(columns),
                rows => v(rows),
                total,
                states => v(states),
                pipelines => v(state.registry.pipelines.iter().map(|p| p.id).collect::<Vec<_>>()),
                q => context! { state => query.state.clone(), dag_id => query.dag_id.clone(), from => query.from.clone(), to => query.to.clone() },
                filter_query => query.query_string(),
                next => (offset + BROWSE_PAGE < total).then_some(query.page + 1),
                previous => query.page.checked_sub(1),
                error,
            },
        ),
    );
    if failed {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    response
}

const RUN_STATES: &[&str] = &["queued", "running", "success", "failed"];
const TI_STATES: &[&str] = &[
    "none",
    "scheduled",
    "queued",
    "running",
    "success",
    "failed",
    "up_for_retry",
    "up_for_reschedule",
    "upstream_failed",
    "skipped",
    "removed",
];

pub(super) async fn browse_runs(
    State(state): State<AppState>,
    session: SignedIn,
    Query(query): Query<BrowseQuery>,
) -> Response {
    const COLUMNS: &[&str] = &["Pipeline", "Run", "State", "Type", "Logical date", "Started", "Ended"];
    let filter = match query.runs() {
        Ok(filter) => filter,
        Err(why) => {
            return browse_page(&session, &state, "runs", &query, (COLUMNS, Vec::new(), 0), RUN_STATES, Some(why));
        }
    };
    let offset = i64::from(query.page) * BROWSE_PAGE;
    let (runs, total) = match state.store.search_runs(&filter, BROWSE_PAGE, offset).await {
        Ok(found) => found,
        Err(e) => return store_error(e),
    };
    let rows = runs
        .iter()
        .map(|r| {
            let cells = vec![
                r.pipeline_id.clone(),
                r.run_id.clone(),
                r.state.as_str().to_string(),
                r.run_type.as_str().to_string(),
                to_rfc3339(r.logical_date),
                r.start_date.map(to_rfc3339).unwrap_or_default(),
                r.end_date.map(to_rfc3339).unwrap_or_default(),
            ];
            row(cells, r.state.as_str(), run_link(&r.pipeline_id, &r.run_id))
        })
        .collect();
    browse_page(&session, &state, "runs", &query, (COLUMNS, rows, total), RUN_STATES, None)
}

pub(super) async fn browse_task_instances(
    State(state): State<AppState>,
    session: SignedIn,
    Query(query): Query<BrowseQuery>,
) -> Response {
    const COLUMNS: &[&str] = &["Pipeline", "Run", "Task", "State", "Try", "Started", "Ended"];
    let filter = match query.runs() {
        Ok(runs) => TiFilter {
            runs: RunFilter { states: None, ..runs },
            states: BrowseQuery::given(&query.state),
            ..TiFilter::default()
        },
        Err(why) => {
            return browse_page(
                &session,
                &state,
                "task-instances",
                &query,
                (COLUMNS, Vec::new(), 0),
                TI_STATES,
                Some(why),
            );
        }
    };
    let offset = i64::from(query.page) * BROWSE_PAGE;
    let (found, total) = match state.store.search_task_instances(&filter, BROWSE_PAGE, offset).await {
        Ok(found) => found,
        Err(e) => return store_error(e),
    };
    let rows = found
        .iter()
        .map(|(r, ti)| {
            let cells = vec![
                r.pipeline_id.clone(),
                r.run_id.clone(),
                ti.task_id.clone(),
                ti.state.as_str().to_string(),
                ti.try_number.to_string(),
                ti.start_date.map(to_rfc3339).unwrap_or_default(),
                ti.end_date.map(to_rfc3339).unwrap_or_default(),
            ];
            let link = format!(
                "/dags/{}/runs/{}/tasks/{}",
                encode(&r.pipeline_id, b""),
                encode(&r.run_id, b""),
                encode(&ti.task_id, b"")
            );
            row(cells, ti.state.as_str(), link)
        })
        .collect();
    browse_page(&session, &state, "task-instances", &query, (COLUMNS, rows, total), TI_STATES, None)
}

/// The SLA misses recorded, newest first, and the compiler's warnings, per pipeline.
pub(super) async fn sla_misses(State(state): State<AppState>, session: SignedIn) -> Response {
    let misses = match state.store.sla_misses(None, 500).await {
        Ok(misses) => misses,
        Err(e) => return store_error(e),
    };
    let rows: Vec<Vec<String>> = misses
        .iter()
        .map(|m| {
            vec![
                m.pipeline_id.clone(),
                m.run_id.clone(),
                m.task_id.clone(),
                to_rfc3339(m.deadline),
                to_rfc3339(m.detected_at),
            ]
        })
        .collect();
    list_page(
        &session,
        ListPage {
            title: "SLA misses",
            table_id: "sla-misses",
            columns: &["Pipeline", "Run", "Task", "Deadline", "Seen"],
            rows,
            editable: None,
            row_action: None,
            notice: None,
        },
        None,
    )
}

pub(super) async fn compiler_warnings(State(state): State<AppState>, session: SignedIn) -> Response {
    let rows: Vec<Vec<String>> = state
        .registry
        .sources
        .iter()
        .flat_map(|s| {
            s.warnings.iter().map(move |w| {
                vec![
                    s.pipeline.to_string(),
                    w.code.to_string(),
                    format!("{}:{}:{}", s.file, w.line, w.col),
                    w.message.to_string(),
                ]
            })
        })
        .collect();
    list_page(
        &session,
        ListPage {
            title: "Compiler warnings",
            table_id: "warnings",
            columns: &["Pipeline", "Kind", "Where", "Warning"],
            rows,
            editable: None,
            row_action: None,
            notice: None,
        },
        None,
    )
}
