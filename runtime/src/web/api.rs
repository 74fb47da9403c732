//! The REST API at `/api/v1`, in the shape of Airflow's stable API v1 (the official
//! `apache-airflow-client` 2.x works against it): DAGs (pipelines), DAG runs, task
//! instances and their logs, connections, variables, pools, health, version and import
//! errors (always none: pipelines are compiled). Errors are RFC 7807 problems; lists
//! take `limit` (default 100) and `offset`.

use super::AppState;
use super::auth::{Caller, Role};
use super::problem::Problem;
use crate::clock::{Micros, parse_datetime, to_rfc3339};
use crate::connection::{Connection, Format, is_secret_key, mask_extra};
use crate::crypto::Crypto;
use crate::rules::TiState;
use crate::spec::{PipelineSpec, Schedule, TaskKind};
use crate::store::{LogFrom, RunRow, TiRow};
use crate::tasklog::{LogToken, PageSize};
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Map, Value, json};

type ApiResult = Result<Response, Problem>;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(super::health))
        .route("/version", get(version))
        .route("/openapi.yaml", get(openapi))
        .route("/importErrors", get(import_errors))
        .route("/dags", get(list_dags))
        .route("/dags/{dag_id}", get(get_dag).patch(patch_dag))
        .route("/dags/{dag_id}/tasks", get(list_tasks))
        .route("/dags/{dag_id}/dagRuns", get(list_runs).post(post_run))
        .route("/dags/{dag_id}/dagRuns/{run_id}", get(get_run).patch(patch_run).delete(delete_run))
        .route("/dags/{dag_id}/dagRuns/{run_id}/taskInstances", get(list_task_instances))
        .route("/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}", get(get_task_instance))
        .route("/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}", get(get_log))
        .route("/connections", get(list_connections).post(post_connection))
        .route("/connections/{connection_id}", get(get_connection).patch(patch_connection).delete(delete_connection))
        .route("/variables", get(list_variables).post(post_variable))
        .route("/variables/{key}", get(get_variable).patch(patch_variable).delete(delete_variable))
        .route("/pools", get(list_pools).post(post_pool))
        .route("/pools/{name}", get(get_pool).patch(patch_pool).delete(delete_pool))
        .fallback(|| async { Problem::not_found("no such API endpoint") })
}

/// A JSON body; a malformed one is a 400 problem (413 when too large), not axum's text.
pub struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Problem> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "the request body is too large"))
            }
            Err(e) => Err(Problem::bad_request(format!("invalid request body: {}", e.body_text()))),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Page {
    limit: Option<i64>,
    offset: Option<i64>,
}

impl Page {
    fn limit(&self) -> Result<i64, Problem> {
        match self.limit {
            None => Ok(100),
            Some(n) if (1..=1000).contains(&n) => Ok(n),
            Some(n) => Err(Problem::bad_request(format!("limit {n} is out of range: use 1 to 1000"))),
        }
    }

    fn offset(&self) -> Result<i64, Problem> {
        match self.offset {
            None => Ok(0),
            Some(n) if n >= 0 => Ok(n),
            Some(n) => Err(Problem::bad_request(format!("offset {n} is negative"))),
        }
    }

    /// The page of `items`.
    fn slice<T: Clone>(&self, items: &[T]) -> Result<Vec<T>, Problem> {
        let (limit, offset) = (self.limit()?, self.offset()?);
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(items.len());
        let end = start.saturating_add(usize::try_from(limit).unwrap_or(0)).min(items.len());
        Ok(items[start..end].to_vec())
    }
}

fn ok(value: Value) -> ApiResult {
    Ok(axum::Json(value).into_response())
}

fn date(micros: Option<Micros>) -> Value {
    micros.map_or(Value::Null, |m| Value::String(to_rfc3339(m)))
}

fn pipeline<'a>(state: &'a AppState, dag_id: &str) -> Result<&'a PipelineSpec, Problem> {
    state.registry.pipeline(dag_id).ok_or_else(|| Problem::not_found(format!("DAG `{dag_id}` not found")))
}

fn crypto(state: &AppState) -> Result<&Crypto, Problem> {
    Ok(&state.crypto)
}

// --- monitoring ----------------------------------------------------------------------

async fn version(_caller: Caller) -> ApiResult {
    ok(json!({ "version": env!("CARGO_PKG_VERSION"), "git_version": null }))
}

/// This API's OpenAPI document (public, as Airflow serves its own).
async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], include_str!("openapi.yaml")).into_response()
}

async fn import_errors(_caller: Caller) -> ApiResult {
    ok(json!({ "import_errors": [], "total_entries": 0 }))
}

// --- DAGs ----------------------------------------------------------------------------

fn dag_json(p: &PipelineSpec, paused: Option<bool>, active: Option<bool>, next_run: Option<Micros>) -> Value {
    let schedule = match p.schedule {
        Schedule::Manual => Value::Null,
        _ => json!({ "__type": "CronExpression", "value": p.schedule_text }),
    };
    json!({
        "dag_id": p.id,
        "dag_display_name": p.id,
        "root_dag_id": null,
        "is_paused": paused,
        "is_active": active,
        "is_subdag": false,
        "last_parsed_time": null,
        "last_pickled": null,
        "last_expired": null,
        "scheduler_lock": null,
        "pickle_id": null,
        "default_view": "grid",
        "fileloc": "pipelines.yaml",
        "file_token": p.id,
        "owners": [p.owner],
        "description": if p.description.is_empty() { Value::Null } else { p.description.into() },
        "schedule_interval": schedule,
        "timetable_description": if p.schedule_text.is_empty() { Value::Null } else { p.schedule_text.into() },
        "tags": p.tags.iter().map(|t| json!({ "name": t })).collect::<Vec<_>>(),
        "max_active_tasks": p.max_active_tasks,
        "max_active_runs": p.max_active_runs,
        "has_task_concurrency_limits": false,
        "has_import_errors": false,
        "next_dagrun": date(next_run),
        "next_dagrun_data_interval_start": null,
        "next_dagrun_data_interval_end": null,
        "next_dagrun_create_after": date(next_run),
        "max_consecutive_failed_dag_runs": 0,
    })
}

#[derive(Debug, Deserialize)]
struct DagFilter {
    limit: Option<i64>,
    offset: Option<i64>,
    tags: Option<String>,
    dag_id_pattern: Option<String>,
    paused: Option<bool>,
}

async fn list_dags(State(state): State<AppState>, _caller: Caller, Query(filter): Query<DagFilter>) -> ApiResult {
    let rows = state.store.pipelines().await?;
    let dags: Vec<Value> = state
        .registry
        .pipelines
        .iter()
        .filter_map(|p| {
            let row = rows.iter().find(|r| r.pipeline_id == p.id)?;
            let tags_match = filter.tags.as_deref().is_none_or(|t| t.split(',').any(|t| p.tags.contains(&t)));
            let id_match = filter.dag_id_pattern.as_deref().is_none_or(|pat| p.id.contains(pat));
            let paused_match = filter.paused.is_none_or(|paused| paused == row.is_paused);
            (tags_match && id_match && paused_match)
                .then(|| dag_json(p, Some(row.is_paused), Some(row.is_active), row.next_run_at))
        })
        .collect();
    let page = Page { limit: filter.limit, offset: filter.offset };
    ok(json!({ "dags": page.slice(&dags)?, "total_entries": dags.len() }))
}

async fn get_dag(State(state): State<AppState>, _caller: Caller, Path(dag_id): Path<String>) -> ApiResult {
    let p = pipeline(&state, &dag_id)?;
    let row = state.store.pipeline(&dag_id).await?;
    ok(dag_json(p, Some(row.is_paused), Some(row.is_active), row.next_run_at))
}

#[derive(Debug, Deserialize)]
struct UpdateMask {
    update_mask: Option<String>,
}

async fn patch_dag(
    State(state): State<AppState>,
    caller: Caller,
    Path(dag_id): Path<String>,
    Query(mask): Query<UpdateMask>,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult {
    caller.require(Role::User)?;
    pipeline(&state, &dag_id)?;
    if let Some(fields) = mask.update_mask.as_deref()
        && fields.split(',').any(|f| f.trim() != "is_paused")
    {
        return Err(Problem::bad_request("only `is_paused` can be updated"));
    }
    let paused = body
        .get("is_paused")
        .and_then(Value::as_bool)
        .ok_or_else(|| Problem::bad_request("give `is_paused`: true or false"))?;
    state.store.set_paused(&dag_id, paused).await?;
    state.wake.notify_one();
    get_dag(State(state), caller, Path(dag_id)).await
}

async fn list_tasks(State(state): State<AppState>, _caller: Caller, Path(dag_id): Path<String>) -> ApiResult {
    let p = pipeline(&state, &dag_id)?;
    let tasks: Vec<Value> = p
        .tasks
        .iter()
        .map(|t| {
            json!({
                "task_id": t.id,
                "task_display_name": t.id,
                "owner": p.owner,
                "operator_name": operator(&t.kind),
                "trigger_rule": format!("{:?}", t.trigger_rule),
                "retries": t.retry.retries,
                "pool": t.pool,
                "pool_slots": t.pool_slots,
                "queue": t.queue,
                "priority_weight": t.priority_weight,
                "downstream_task_ids": p.tasks.iter().filter(|d| d.depends_on.contains(&t.id)).map(|d| d.id).collect::<Vec<_>>(),
                "doc_md": if t.description.is_empty() { Value::Null } else { t.description.into() },
            })
        })
        .collect();
    ok(json!({ "tasks": tasks, "total_entries": p.tasks.len() }))
}

fn operator(kind: &TaskKind) -> &'static str {
    match kind {
        TaskKind::Rust { .. } => "RustOperator",
        TaskKind::Shell { .. } => "BashOperator",
        TaskKind::Http { .. } => "HttpOperator",
        TaskKind::Sql { .. } => "SQLExecuteQueryOperator",
    }
}

// --- DAG runs ------------------------------------------------------------------------

fn run_json(run: &RunRow) -> Value {
    let conf: Value = serde_json::from_str(&run.conf).unwrap_or_else(|_| json!({}));
    json!({
        "dag_run_id": run.run_id,
        "dag_id": run.pipeline_id,
        "logical_date": to_rfc3339(run.logical_date),
        "execution_date": to_rfc3339(run.logical_date),
        "start_date": date(run.start_date),
        "end_date": date(run.end_date),
        "data_interval_start": to_rfc3339(run.data_interval_start),
        "data_interval_end": to_rfc3339(run.data_interval_end),
        "last_scheduling_decision": null,
        "run_type": run.run_type,
        "state": run.state,
        "external_trigger": run.run_type != "scheduled",
        "conf": conf,
        "note": null,
    })
}

async fn list_runs(
    State(state): State<AppState>,
    _caller: Caller,
    Path(dag_id): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult {
    pipeline(&state, &dag_id)?;
    let (runs, total) = state.store.runs_page(&dag_id, page.limit()?, page.offset()?).await?;
    ok(json!({ "dag_runs": runs.iter().map(run_json).collect::<Vec<_>>(), "total_entries": total }))
}

async fn post_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(dag_id): Path<String>,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult {
    caller.require(Role::User)?;
    let p = pipeline(&state, &dag_id)?;
    let conf = match body.get("conf") {
        None | Some(Value::Null) => json!({}),
        Some(conf @ Value::Object(_)) => conf.clone(),
        Some(_) => return Err(Problem::bad_request("`conf` must be a JSON object")),
    };
    let logical_date = match body.get("logical_date").or_else(|| body.get("execution_date")) {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(
            parse_datetime(text)
                .ok_or_else(|| Problem::bad_request(format!("`logical_date` is not a date-time: `{text}`")))?,
        ),
        Some(_) => return Err(Problem::bad_request("`logical_date` must be a date-time string")),
    };
    let run_id = match body.get("dag_run_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => return Err(Problem::bad_request("`dag_run_id` must be a string")),
    };
    let run = crate::scheduler::trigger_as(&state.store, p, conf, logical_date, run_id).await.map_err(|e| match e {
        crate::scheduler::TriggerError::Params(m) => Problem::bad_request(m),
        crate::scheduler::TriggerError::Store(e) => Problem::from(e),
    })?;
    state.wake.notify_one();
    ok(run_json(&run))
}

async fn find_run(state: &AppState, dag_id: &str, run_id: &str) -> Result<RunRow, Problem> {
    state.store.run_by_id(dag_id, run_id).await.map_err(|e| match e {
        crate::store::StoreError::NotFound(_) => {
            Problem::not_found(format!("DAG run `{run_id}` of DAG `{dag_id}` not found"))
        }
        other => other.into(),
    })
}

async fn get_run(
    State(state): State<AppState>,
    _caller: Caller,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult {
    pipeline(&state, &dag_id)?;
    ok(run_json(&find_run(&state, &dag_id, &run_id).await?))
}

async fn patch_run(
    State(state): State<AppState>,
    caller: Caller,
    Path((dag_id, run_id)): Path<(String, String)>,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult {
    caller.require(Role::User)?;
    let p = pipeline(&state, &dag_id)?;
    let run = find_run(&state, &dag_id, &run_id).await?;
    match body.get("state").and_then(Value::as_str) {
        Some(s @ ("success" | "failed")) => state.store.set_run_state(p, run.id, s).await?,
        Some("queued") => {
            let roots = p.tasks.iter().filter(|t| t.depends_on.is_empty());
            for root in roots {
                state.store.clear_task(p, run.id, root.id, true).await?;
            }
        }
        _ => return Err(Problem::bad_request("give `state`: success, failed or queued")),
    }
    state.wake.notify_one();
    ok(run_json(&find_run(&state, &dag_id, &run_id).await?))
}

async fn delete_run(
    State(state): State<AppState>,
    caller: Caller,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult {
    caller.require(Role::User)?;
    let p = pipeline(&state, &dag_id)?;
    let run = find_run(&state, &dag_id, &run_id).await?;
    state.store.delete_run(p, run.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// --- task instances ------------------------------------------------------------------

fn task_instance_json(p: &PipelineSpec, run: &RunRow, ti: &TiRow) -> Value {
    let duration = match (ti.start_date, ti.end_date) {
        (Some(start), Some(end)) => json!((end - start) as f64 / 1e6),
        _ => Value::Null,
    };
    let kind = p.task(&ti.task_id).map_or("removed", |t| operator(&t.kind));
    json!({
        "task_id": ti.task_id,
        "task_display_name": ti.task_id,
        "dag_id": run.pipeline_id,
        "dag_run_id": run.run_id,
        "execution_date": to_rfc3339(run.logical_date),
        "start_date": date(ti.start_date),
        "end_date": date(ti.end_date),
        "duration": duration,
        "state": if ti.state == TiState::None { Value::Null } else { ti.state.as_str().into() },
        "try_number": ti.try_number,
        "map_index": -1,
        "max_tries": (ti.max_tries - 1).max(0),
        "hostname": ti.worker.clone().unwrap_or_default(),
        "unixname": "sluice",
        "pool": ti.pool,
        "pool_slots": ti.pool_slots,
        "queue": ti.queue,
        "priority_weight": ti.priority_weight,
        "operator": kind,
        "queued_when": date(ti.queued_at),
        "pid": null,
        "executor": null,
        "executor_config": "{}",
        "rendered_map_index": null,
        "rendered_fields": {},
        "note": null,
    })
}

async fn list_task_instances(
    State(state): State<AppState>,
    _caller: Caller,
    Path((dag_id, run_id)): Path<(String, String)>,
    Query(page): Query<Page>,
) -> ApiResult {
    let p = pipeline(&state, &dag_id)?;
    let run = find_run(&state, &dag_id, &run_id).await?;
    let tis = state.store.task_instances(run.id).await?;
    let all: Vec<Value> = tis.iter().map(|ti| task_instance_json(p, &run, ti)).collect();
    ok(json!({ "task_instances": page.slice(&all)?, "total_entries": all.len() }))
}

async fn find_task_instance(
    state: &AppState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> Result<(RunRow, TiRow), Problem> {
    let run = find_run(state, dag_id, run_id).await?;
    let ti = state.store.task_instances(run.id).await?.into_iter().find(|t| t.task_id == task_id);
    let ti = ti.ok_or_else(|| Problem::not_found(format!("task instance `{task_id}` of run `{run_id}` not found")))?;
    Ok((run, ti))
}

async fn get_task_instance(
    State(state): State<AppState>,
    _caller: Caller,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
) -> ApiResult {
    let p = pipeline(&state, &dag_id)?;
    let (run, ti) = find_task_instance(&state, &dag_id, &run_id, &task_id).await?;
    let mut json = task_instance_json(p, &run, &ti);
    json["rendered_fields"] = json!(state.store.rendered(ti.id, ti.try_number).await?);
    ok(json)
}

/// The query of `get_log`, as text: each value is checked here, so a bad one is a 400
/// problem naming it rather than axum's plain-text rejection.
#[derive(Debug, Deserialize)]
struct LogQuery {
    full_content: Option<String>,
    token: Option<String>,
    map_index: Option<String>,
}

/// A try's log, as Airflow serves it:
/// - JSON (the default): one page ([`PageSize::DEFAULT`]: 1,000 lines or 1 MiB) from the
///   start, or from where `token` says, with the `continuation_token` of the next page. At
///   the end of what is stored the page is empty and the token stays put, so a client can
///   poll a running try with it.
/// - JSON with `full_content=true`: everything from there on, streamed page by page from
///   the store, never built in memory (what is stored is bounded by the try's log cap).
/// - `Accept: text/plain`: the lines from there on, streamed the same way (Airflow streams
///   its text form too).
///
/// Tasks are never mapped: `map_index` may only be -1, Airflow's index of an unmapped task.
async fn get_log(
    State(state): State<AppState>,
    _caller: Caller,
    Path((dag_id, run_id, task_id, try_number)): Path<(String, String, String, i64)>,
    Query(query): Query<LogQuery>,
    headers: axum::http::HeaderMap,
) -> ApiResult {
    pipeline(&state, &dag_id)?;
    let full_content = match query.full_content.as_deref() {
        None | Some("false" | "False" | "0") => false,
        Some("true" | "True" | "1") => true,
        Some(other) => return Err(Problem::bad_request(format!("full_content must be true or false, not `{other}`"))),
    };
    let (_, ti) = find_task_instance(&state, &dag_id, &run_id, &task_id).await?;
    if let Some(index) = &query.map_index {
        match index.parse::<i64>() {
            Ok(-1) => {}
            Ok(n) => {
                return Err(Problem::not_found(format!("task `{task_id}` is not mapped: it has no map index {n}")));
            }
            Err(_) => return Err(Problem::bad_request(format!("map_index must be an integer, not `{index}`"))),
        }
    }
    if try_number < 1 || try_number > ti.try_number.max(1) {
        return Err(Problem::not_found(format!(
            "task `{task_id}` has no try {try_number} (it has had {})",
            ti.try_number
        )));
    }
    let after = match &query.token {
        None => 0,
        Some(token) => {
            LogToken::decode(token, ti.id, try_number).map_err(|e| Problem::bad_request(e.to_string()))?.after
        }
    };
    let wants_text = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/plain") && !a.contains("application/json"));
    let log = LogCursor { store: state.store.clone(), ti_id: ti.id, try_number };
    if wants_text {
        let body = log.stream(after, Wrap::Text);
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response());
    }
    if full_content {
        let body = log.stream(after, Wrap::Json);
        return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
    }
    let page = state.store.log_page(ti.id, try_number, LogFrom::After(after), PageSize::DEFAULT).await?;
    let next = page.last().map_or(after, |row| row.id);
    ok(json!({ "content": text_of(&page), "continuation_token": log.token(next) }))
}

/// The log of one try, read from the store.
#[derive(Clone)]
struct LogCursor {
    store: crate::store::Store,
    ti_id: i64,
    try_number: i64,
}

/// How a streamed log is wrapped: plain lines, or Airflow's JSON object.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wrap {
    Text,
    Json,
}

/// Where a streamed log is: before its first byte, reading after a line id, or done.
enum Step {
    Open,
    Lines(i64),
    Close(i64),
    Done,
}

impl LogCursor {
    fn token(&self, after: i64) -> String {
        LogToken { ti_id: self.ti_id, try_number: self.try_number, after }.encode()
    }

    /// The lines after `after`, page by page from the store as the client reads them: one
    /// page is in memory at a time. A store failure midway ends the answer unfinished
    /// (the client sees a broken transfer, not a log that looks complete).
    fn stream(self, after: i64, wrap: Wrap) -> axum::body::Body {
        let steps = futures_util::stream::try_unfold(Step::Open, move |step| {
            let log = self.clone();
            async move {
                let (chunk, next) = match step {
                    Step::Open => {
                        let open = if wrap == Wrap::Json { r#"{"content": ""# } else { "" };
                        (open.to_string(), Step::Lines(after))
                    }
                    Step::Lines(from) => {
                        let page = log
                            .store
                            .log_page(log.ti_id, log.try_number, LogFrom::After(from), PageSize::DEFAULT)
                            .await?;
                        match page.last().map(|row| row.id) {
                            None => (String::new(), Step::Close(from)),
                            Some(last) => {
                                let text = text_of(&page);
                                let chunk = match wrap {
                                    Wrap::Text => text,
                                    Wrap::Json => json_string_body(&text),
                                };
                                (chunk, Step::Lines(last))
                            }
                        }
                    }
                    Step::Close(last) => {
                        let close = match wrap {
                            Wrap::Text => String::new(),
                            Wrap::Json => format!(r#"", "continuation_token": "{}"}}"#, log.token(last)),
                        };
                        (close, Step::Done)
                    }
                    Step::Done => return Ok::<_, crate::store::StoreError>(None),
                };
                Ok(Some((axum::body::Bytes::from(chunk), next)))
            }
        });
        axum::body::Body::from_stream(steps)
    }
}

/// Lines as Airflow's `content`: each ends with a newline.
fn text_of(rows: &[crate::store::LogRow]) -> String {
    let mut text = String::with_capacity(rows.iter().map(|r| r.line.len() + 1).sum());
    for row in rows {
        text.push_str(&row.line);
        text.push('\n');
    }
    text
}

/// `text` escaped as the inside of a JSON string (without its quotes), for a JSON body
/// written in pieces.
fn json_string_body(text: &str) -> String {
    let quoted = Value::String(text.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

// --- connections ---------------------------------------------------------------------

/// A connection as Airflow lists it: no password, no extra. Airflow's `schema` is the
/// protocol of an http connection and the database of the others.
fn connection_item(c: &Connection) -> Value {
    json!({
        "connection_id": c.id,
        "conn_type": c.conn_type,
        "description": if c.description.is_empty() { Value::Null } else { c.description.clone().into() },
        "host": c.host,
        "login": c.login,
        "schema": if c.conn_type == "http" { &c.schema } else { &c.database },
        "port": c.port,
    })
}

/// One connection: the item and its extra, secret values masked; never the password.
fn connection_json(c: &Connection) -> Value {
    let mut item = connection_item(c);
    item["extra"] =
        if c.extra.is_empty() { Value::Null } else { mask_extra(&Value::Object(c.extra.clone())).to_string().into() };
    item
}

async fn list_connections(State(state): State<AppState>, caller: Caller, Query(page): Query<Page>) -> ApiResult {
    caller.require(Role::Op)?;
    let infos = state.store.connection_infos().await?;
    let all: Vec<Value> = infos
        .iter()
        .map(|c| {
            connection_item(&Connection {
                id: c.id.clone(),
                conn_type: c.conn_type.clone(),
                description: c.description.clone(),
                host: c.host.clone(),
                port: c.port,
                schema: c.schema.clone(),
                database: c.database.clone(),
                login: c.login.clone(),
                ..Connection::default()
            })
        })
        .collect();
    ok(json!({ "connections": page.slice(&all)?, "total_entries": all.len() }))
}

/// A connection from an API body (Airflow's field names), read as Airflow's JSON import.
fn connection_from_body(id: &str, mut body: Map<String, Value>) -> Result<Connection, Problem> {
    body.remove("connection_id");
    if let Some(Value::String(extra)) = body.get("extra") {
        let parsed: Value = serde_json::from_str(extra)
            .map_err(|e| Problem::bad_request(format!("`extra` must be a JSON object in a string: {e}")))?;
        body.insert("extra".into(), parsed);
    }
    let text = json!({ id: Value::Object(body) }).to_string();
    let mut conns = crate::connection::import(&text, Format::Json).map_err(|e| Problem::bad_request(e.to_string()))?;
    conns.pop().ok_or_else(|| Problem::bad_request("no connection in the body"))
}

async fn post_connection(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult {
    caller.require(Role::Op)?;
    let id = body
        .get("connection_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Problem::bad_request("give `connection_id`"))?
        .to_string();
    let conn = connection_from_body(&id, body)?;
    state.store.add_connection(&conn, crypto(&state)?).await?;
    ok(connection_json(&conn))
}

async fn get_connection(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult {
    caller.require(Role::Op)?;
    let conn = state.store.connection(&id, crypto(&state)?).await.map_err(|e| match e {
        crate::store::StoreError::NotFound(_) => Problem::not_found(format!("connection `{id}` not found")),
        other => other.into(),
    })?;
    ok(connection_json(&conn))
}

async fn patch_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult {
    caller.require(Role::Op)?;
    let crypto = crypto(&state)?;
    state.store.connection(&id, crypto).await?;
    if body.get("connection_id").and_then(Value::as_str).is_some_and(|other| other != id) {
        return Err(Problem::bad_request("`connection_id` cannot be changed"));
    }
    let conn = connection_from_body(&id, body)?;
    state.store.upsert_connection(&conn, crate::store::ConnectionSource::Runtime, crypto).await?;
    ok(connection_json(&conn))
}

async fn delete_connection(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult {
    caller.require(Role::Op)?;
    state.store.delete_connection(&id).await.map_err(|e| match e {
        crate::store::StoreError::NotFound(_) => Problem::not_found(format!("connection `{id}` not found")),
        other => other.into(),
    })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// --- variables -----------------------------------------------------------------------

const MASK: &str = "***";

async fn list_variables(State(state): State<AppState>, caller: Caller, Query(page): Query<Page>) -> ApiResult {
    caller.require(Role::Op)?;
    let all: Vec<Value> = state
        .store
        .variable_infos()
        .await?
        .iter()
        .map(|v| {
            let value = if v.secret { MASK.to_string() } else { v.value.clone().unwrap_or_default() };
            json!({ "key": v.key, "value": value, "description": v.description })
        })
        .collect();
    ok(json!({ "variables": page.slice(&all)?, "total_entries": all.len() }))
}

async fn get_variable(State(state): State<AppState>, caller: Caller, Path(key): Path<String>) -> ApiResult {
    caller.require(Role::Op)?;
    let info = state.store.variable_infos().await?.into_iter().find(|v| v.key == key);
    let info = info.ok_or_else(|| Problem::not_found(format!("variable `{key}` not found")))?;
    let value = match info.value {
        Some(value) if !info.secret => value,
        _ => MASK.to_string(),
    };
    ok(json!({ "key": info.key, "value": value, "description": info.description }))
}

fn variable_fields(body: &Map<String, Value>) -> Result<(String, String, Option<String>), Problem> {
    let key = body.get("key").and_then(Value::as_str).filter(|k| !k.is_empty());
    let key = key.ok_or_else(|| Problem::bad_request("give `key`"))?.to_string();
    let value = match body.get("value") {
        Some(Value::String(v)) => v.clone(),
        _ => return Err(Problem::bad_request("give `value` as a string")),
    };
    let description = body.get("description").and_then(Value::as_str).map(str::to_string);
    Ok((key, value, description))
}

async fn post_variable(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult {
    caller.require(Role::Op)?;
    let (key, value, description) = variable_fields(&body)?;
    let secret = is_secret_key(&key);
    state.store.set_variable(&key, &value, secret, description.as_deref(), crypto(&state)?).await?;
    get_variable(State(state), caller, Path(key)).await
}

async fn patch_variable(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult {
    caller.require(Role::Op)?;
    let (body_key, value, description) = variable_fields(&body)?;
    if body_key != key {
        return Err(Problem::bad_request("the body's `key` must match the path"));
    }
    if !state.store.variable_infos().await?.iter().any(|v| v.key == key) {
        return Err(Problem::not_found(format!("variable `{key}` not found")));
    }
    state.store.set_variable(&key, &value, is_secret_key(&key), description.as_deref(), crypto(&state)?).await?;
    get_variable(State(state), caller, Path(key)).await
}

async fn delete_variable(State(state): State<AppState>, caller: Caller, Path(key): Path<String>) -> ApiResult {
    caller.require(Role::Op)?;
    state.store.delete_variable(&key).await.map_err(|e| match e {
        crate::store::StoreError::NotFound(_) => Problem::not_found(format!("variable `{key}` not found")),
        other => other.into(),
    })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// --- pools ---------------------------------------------------------------------------

async fn pools_json(state: &AppState) -> Result<Vec<Value>, Problem> {
    Ok(state
        .store
        .pool_usage()
        .await?
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "slots": p.slots,
                "occupied_slots": p.running + p.queued,
                "running_slots": p.running,
                "queued_slots": p.queued,
                "scheduled_slots": 0,
                "deferred_slots": 0,
                "open_slots": p.slots - p.running - p.queued,
                "description": if p.description.is_empty() { Value::Null } else { p.description.clone().into() },
                "include_deferred": false,
            })
        })
        .collect())
}

async fn list_pools(State(state): State<AppState>, _caller: Caller, Query(page): Query<Page>) -> ApiResult {
    let all = pools_json(&state).await?;
    ok(json!({ "pools": page.slice(&all)?, "total_entries": all.len() }))
}

async fn get_pool(State(state): State<AppState>, _caller: Caller, Path(name): Path<String>) -> ApiResult {
    let all = pools_json(&state).await?;
    let pool = all.into_iter().find(|p| p["name"] == name.as_str());
    ok(pool.ok_or_else(|| Problem::not_found(format!("pool `{name}` not found")))?)
}

/// `slots` and `description` of a pool body; `current` fills what a PATCH leaves out.
fn pool_fields(body: &Map<String, Value>, current: Option<(i64, String)>) -> Result<(i64, String), Problem> {
    let slots = match (body.get("slots"), &current) {
        (Some(v), _) => {
            v.as_i64().filter(|n| *n >= 0).ok_or_else(|| Problem::bad_request("`slots` must be 0 or more"))?
        }
        (None, Some((slots, _))) => *slots,
        (None, None) => return Err(Problem::bad_request("give `slots`")),
    };
    let description = match (body.get("description"), current) {
        (Some(Value::String(d)), _) => d.clone(),
        (Some(Value::Null) | None, Some((_, d))) => d,
        (Some(Value::Null) | None, None) => String::new(),
        (Some(_), _) => return Err(Problem::bad_request("`description` must be a string")),
    };
    Ok((slots, description))
}

async fn post_pool(State(state): State<AppState>, caller: Caller, Body(body): Body<Map<String, Value>>) -> ApiResult {
    caller.require(Role::Op)?;
    let name = body.get("name").and_then(Value::as_str).filter(|n| !n.trim().is_empty());
    let name = name.ok_or_else(|| Problem::bad_request("give `name`"))?.to_string();
    if state.store.pool_usage().await?.iter().any(|p| p.name == name) {
        return Err(Problem::conflict(format!("pool `{name}` exists already")));
    }
    let (slots, description) = pool_fields(&body, None)?;
    state.store.upsert_pool(&name, slots, &description).await?;
    get_pool(State(state), caller, Path(name)).await
}

async fn patch_pool(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult {
    caller.require(Role::Op)?;
    let current = state.store.pool_usage().await?.into_iter().find(|p| p.name == name);
    let current = current.ok_or_else(|| Problem::not_found(format!("pool `{name}` not found")))?;
    if body.get("name").and_then(Value::as_str).is_some_and(|n| n != name) {
        return Err(Problem::bad_request("a pool cannot be renamed"));
    }
    let (slots, description) = pool_fields(&body, Some((current.slots, current.description)))?;
    state.store.upsert_pool(&name, slots, &description).await?;
    get_pool(State(state), caller, Path(name)).await
}

async fn delete_pool(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult {
    caller.require(Role::Op)?;
    state.store.delete_pool(&name).await.map_err(|e| match e {
        crate::store::StoreError::NotFound(_) => Problem::not_found(format!("pool `{name}` not found")),
        other => other.into(),
    })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
