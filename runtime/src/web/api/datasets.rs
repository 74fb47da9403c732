//! `/datasets`, dataset events and queued events, and a run's upstream dataset events.
//! Pipelines cannot produce or consume datasets yet, so the system is the one Airflow
//! describes when none exist: empty collections, and a 404 for any one dataset or queued
//! event (Airflow answers a 404, not an empty list, when a queue holds nothing).

use super::*;

/// Query parameters of the dataset lists: paging is checked as on every list; the filters
/// are accepted and match nothing.
#[derive(Debug, Deserialize)]
pub(super) struct DatasetFilter {
    #[serde(default, deserialize_with = "super::saturating")]
    limit: Option<i64>,
    #[serde(default, deserialize_with = "super::saturating")]
    offset: Option<i64>,
}

impl DatasetFilter {
    fn check(&self) -> Result<(), Problem> {
        let page = Page { limit: self.limit, offset: self.offset };
        page.limit()?;
        page.offset()?;
        Ok(())
    }
}

pub(super) async fn list_datasets(_caller: Caller, Params(filter): Params<DatasetFilter>) -> ApiResult {
    filter.check()?;
    ok(json!({ "datasets": [], "total_entries": 0 }))
}

pub(super) async fn get_dataset(_caller: Caller, Path(uri): Path<String>) -> ApiResult {
    Err(no_dataset(&uri))
}

pub(super) async fn list_dataset_events(_caller: Caller, Params(filter): Params<DatasetFilter>) -> ApiResult {
    filter.check()?;
    ok(json!({ "dataset_events": [], "total_entries": 0 }))
}

/// An event from outside for a dataset: none is declared, so the URI is unknown.
#[derive(Debug, Deserialize)]
pub(super) struct NewDatasetEvent {
    dataset_uri: String,
    #[serde(default)]
    #[allow(dead_code, reason = "read once datasets are declared")]
    extra: Option<Map<String, Value>>,
}

pub(super) async fn post_dataset_event(caller: Caller, Body(event): Body<NewDatasetEvent>) -> ApiResult {
    caller.require(Role::Op)?;
    Err(no_dataset(&event.dataset_uri))
}

pub(super) async fn dataset_queued_events(_caller: Caller, Path(uri): Path<String>) -> ApiResult {
    Err(no_queued_event(&format!("for dataset `{uri}`")))
}

pub(super) async fn delete_dataset_queued_events(caller: Caller, Path(uri): Path<String>) -> ApiResult {
    caller.require(Role::Op)?;
    Err(no_queued_event(&format!("for dataset `{uri}`")))
}

pub(super) async fn dag_queued_events(
    State(state): State<AppState>,
    _caller: Caller,
    Path(dag_id): Path<String>,
) -> ApiResult {
    pipeline(&state, &dag_id)?;
    Err(no_queued_event(&format!("for DAG `{dag_id}`")))
}

pub(super) async fn delete_dag_queued_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(dag_id): Path<String>,
) -> ApiResult {
    caller.require(Role::Op)?;
    pipeline(&state, &dag_id)?;
    Err(no_queued_event(&format!("for DAG `{dag_id}`")))
}

pub(super) async fn dag_queued_event(
    State(state): State<AppState>,
    _caller: Caller,
    Path((dag_id, uri)): Path<(String, String)>,
) -> ApiResult {
    pipeline(&state, &dag_id)?;
    Err(no_queued_event(&format!("for DAG `{dag_id}` and dataset `{uri}`")))
}

pub(super) async fn delete_dag_queued_event(
    State(state): State<AppState>,
    caller: Caller,
    Path((dag_id, uri)): Path<(String, String)>,
) -> ApiResult {
    caller.require(Role::Op)?;
    pipeline(&state, &dag_id)?;
    Err(no_queued_event(&format!("for DAG `{dag_id}` and dataset `{uri}`")))
}

/// The dataset events that triggered a run: a run exists, none did.
pub(super) async fn upstream_dataset_events(
    State(state): State<AppState>,
    _caller: Caller,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult {
    pipeline(&state, &dag_id)?;
    state.store.run_by_id(&dag_id, &run_id).await?;
    ok(json!({ "dataset_events": [], "total_entries": 0 }))
}

fn no_dataset(uri: &str) -> Problem {
    Problem::not_found(format!("dataset `{uri}` not found: no pipeline declares a dataset"))
}

fn no_queued_event(what: &str) -> Problem {
    Problem::not_found(format!("no queued dataset event {what}"))
}
