//! The REST API at `/api/v1`, in the shape of Airflow's stable API v1 (the official
//! `apache-airflow-client` 2.x works against it): DAGs (pipelines), DAG runs, task
//! instances and their logs, connections, variables, pools, health, version and import
//! errors (always none: pipelines are compiled). Errors are RFC 7807 problems, a query
//! string that does not parse included; lists take `limit` and `offset` as Airflow does
//! (no limit or 0: the default page of 100; above 1,000: cut to 1,000).

use super::AppState;
use super::auth::{Caller, Role};
use super::problem::Problem;
use crate::clock::{Micros, parse_datetime, to_rfc3339};
use crate::connection::{Connection, Format, is_secret_key, mask_extra};
use crate::crypto::Crypto;
use crate::rules::TiState;
use crate::spec::{PipelineSpec, Schedule, TaskKind, TaskSpec};
use crate::store::{LogFrom, RunRow, TiRow};
use crate::tasklog::{LogToken, PageSize};
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Map, Value, json};

mod access;
mod config;
mod connections;
mod dag_runs;
mod dags;
mod datasets;
mod event_logs;
mod filters;
mod monitoring;
mod pools;
mod repair;
mod sources;
mod task_history;
mod task_instances;
mod variables;
mod xcom;

use access::*;
use config::*;
use connections::*;
use dag_runs::*;
use dags::*;
use datasets::*;
use event_logs::*;
use filters::*;
use monitoring::*;
use pools::*;
use repair::*;
use sources::*;
use task_history::*;
use task_instances::*;
use variables::*;
use xcom::*;

type ApiResult = Result<Response, Problem>;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(super::health))
        .route("/version", get(version))
        .route("/openapi.yaml", get(openapi))
        .route("/importErrors", get(import_errors))
        .route("/importErrors/{import_error_id}", get(import_error))
        .route("/config", get(get_config))
        .route("/config/section/{section}/option/{option}", get(get_config_value))
        .route("/eventLogs", get(list_event_logs))
        .route("/eventLogs/{event_log_id}", get(get_event_log))
        .route("/plugins", get(plugins))
        .route("/providers", get(providers))
        .route("/parseDagFile/{file_token}", put(reparse_dag_file))
        .route("/datasets", get(list_datasets))
        .route("/datasets/events", get(list_dataset_events).post(post_dataset_event))
        .route("/datasets/queuedEvent/{uri}", get(dataset_queued_events).delete(delete_dataset_queued_events))
        .route("/datasets/{uri}", get(get_dataset))
        .route("/dags/{dag_id}/datasets/queuedEvent", get(dag_queued_events).delete(delete_dag_queued_events))
        .route("/dags/{dag_id}/datasets/queuedEvent/{uri}", get(dag_queued_event).delete(delete_dag_queued_event))
        .route("/dags/{dag_id}/dagRuns/{run_id}/upstreamDatasetEvents", get(upstream_dataset_events))
        .route("/dags", get(list_dags).patch(patch_dags))
        .route("/dags/{dag_id}", get(get_dag).patch(patch_dag).delete(delete_dag))
        .route("/dags/{dag_id}/tasks", get(list_tasks))
        .route("/dags/{dag_id}/tasks/{task_id}", get(get_task))
        .route("/dags/{dag_id}/details", get(get_dag_details))
        .route("/dagStats", get(dag_stats))
        .route("/dagSources/{file_token}", get(get_dag_source))
        .route("/dagWarnings", get(list_dag_warnings))
        .route("/users", get(list_users).post(post_user))
        .route("/users/{username}", get(get_user).patch(patch_user).delete(delete_user))
        .route("/roles", get(list_roles).post(post_role))
        .route("/roles/{role_name}", get(get_role).patch(patch_role).delete(delete_role))
        .route("/permissions", get(list_permissions))
        .route("/dags/{dag_id}/clearTaskInstances", post(post_clear_task_instances))
        .route("/dags/{dag_id}/dagRuns/{run_id}/clear", post(clear_dag_run))
        .route("/dags/{dag_id}/updateTaskInstancesState", post(post_set_task_instances_state))
        .route("/dags/{dag_id}/dagRuns/{run_id}/setNote", axum::routing::patch(set_run_note))
        .route(
            "/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/setNote",
            axum::routing::patch(set_task_instance_note),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/setNote",
            axum::routing::patch(set_mapped_task_instance_note),
        )
        .route("/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries", get(list_tries))
        .route("/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries/{try_number}", get(get_try))
        .route("/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/links", get(get_extra_links))
        .route("/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/dependencies", get(get_dependencies))
        .route("/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/listMapped", get(list_mapped_task_instances))
        .route("/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries", get(list_xcom_entries))
        .route("/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}", get(get_xcom_entry))
        .route(
            "/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}",
            get(get_mapped_task_instance).patch(patch_mapped_task_instance),
        )
        .route("/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/tries", get(list_mapped_tries))
        .route(
            "/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/tries/{try_number}",
            get(get_mapped_try),
        )
        .route(
            "/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/dependencies",
            get(get_mapped_dependencies),
        )
        .route("/dags/{dag_id}/dagRuns", get(list_runs).post(post_run))
        .route("/dags/~/dagRuns/list", post(list_runs_batch))
        .route("/dags/~/dagRuns/~/taskInstances/list", post(list_task_instances_batch))
        .route("/dags/{dag_id}/dagRuns/{run_id}", get(get_run).patch(patch_run).delete(delete_run))
        .route("/dags/{dag_id}/dagRuns/{run_id}/taskInstances", get(list_task_instances))
        .route(
            "/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}",
            get(get_task_instance).patch(patch_task_instance),
        )
        .route("/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}", get(get_log))
        .route("/connections", get(list_connections).post(post_connection))
        .route(
            "/connections/test",
            post(test_connection).get(get_connection_test).patch(patch_connection_test).delete(delete_connection_test),
        )
        .route("/connections/{connection_id}", get(get_connection).patch(patch_connection).delete(delete_connection))
        .route("/variables", get(list_variables).post(post_variable))
        .route("/variables/{key}", get(get_variable).patch(patch_variable).delete(delete_variable))
        .route("/pools", get(list_pools).post(post_pool))
        .route("/pools/{name}", get(get_pool).patch(patch_pool).delete(delete_pool))
        .fallback(no_such_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
}

/// An unknown route: a 404 problem, after the request's body is read. Answering before the
/// body is read closes the connection with unread bytes in its receive queue, which the
/// kernel turns into a reset: a client still sending its body loses the answer too.
async fn no_such_endpoint(body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>) -> Problem {
    drop(body);
    Problem::not_found("no such API endpoint")
}

/// A known route asked with a method it does not take; its body is read for the same reason.
async fn method_not_allowed(body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>) -> Problem {
    drop(body);
    Problem::new(StatusCode::METHOD_NOT_ALLOWED, "this endpoint does not take that method")
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

/// Path parameters. One that does not parse (`tries/one` where a number goes) names no
/// resource: a 404 problem, as Airflow's integer routes answer, never axum's plain text.
pub struct Path<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(e) => Err(Problem::not_found(format!("no such resource: {}", e.body_text()))),
        }
    }
}

/// Query-string parameters; a string that does not parse (`limit=ten`, `paused=null`) is
/// a 400 problem, not axum's plain-text rejection.
pub struct Params<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Params(value)),
            Err(e) => Err(Problem::bad_request(format!("invalid query string: {}", e.body_text()))),
        }
    }
}

/// A page's size when none (or 0) is asked for, and the largest page served: a larger
/// `limit` is cut to it, as Airflow's `fallback_page_limit` and `maximum_page_limit` do.
const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 1000;

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default, deserialize_with = "saturating")]
    limit: Option<i64>,
    #[serde(default, deserialize_with = "saturating")]
    offset: Option<i64>,
}

/// An integer of any size, held to `i64`: a `limit` beyond it is still a page above the
/// maximum (cut to it, as Airflow does with Python's unbounded integers).
fn saturating<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    text.filter(|t| !t.is_empty())
        .map(|t| saturating_int(&t).ok_or_else(|| serde::de::Error::custom(format!("`{t}` is not an integer"))))
        .transpose()
}

/// `text` as an integer, held to `i64`'s range; `None` when it is not one.
pub(super) fn saturating_int(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(if text.starts_with('-') { i64::MIN } else { i64::MAX }))
}

impl Page {
    fn limit(&self) -> Result<i64, Problem> {
        match self.limit {
            None | Some(0) => Ok(DEFAULT_PAGE),
            Some(n) if n < 0 => Err(Problem::bad_request(format!(
                "limit {n} is negative: give a page size from 1 to {MAX_PAGE}, or 0 for the default {DEFAULT_PAGE}"
            ))),
            Some(n) => Ok(n.min(MAX_PAGE)),
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
