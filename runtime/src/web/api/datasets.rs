//! `/datasets`, their events (listed, and sent from outside), queued events (updates a
//! dataset-scheduled pipeline has not run for yet) and the events a run answered, in
//! Airflow 2.10's shapes. A dataset's `id` here is its integer REST id; the one
//! `pipelines.yaml` gives it is in `extra.id`.

use super::*;
use crate::store::{DatasetEvent, DatasetEventFilter, DatasetRow, QueuedDatasetEvent};

/// Query parameters of `GET /datasets`.
#[derive(Debug, Deserialize)]
pub(super) struct DatasetFilter {
    #[serde(default, deserialize_with = "super::saturating")]
    limit: Option<i64>,
    #[serde(default, deserialize_with = "super::saturating")]
    offset: Option<i64>,
    order_by: Option<String>,
    uri_pattern: Option<String>,
    dag_ids: Option<String>,
}

/// The pipelines scheduled on dataset `id`, and the tasks that produce it.
fn references(state: &AppState, d: &DatasetRow) -> (Vec<&'static PipelineSpec>, Vec<(&'static str, &'static str)>) {
    let consumers: Vec<&PipelineSpec> = state.registry.consumers_of(&d.id).collect();
    let producers = state
        .registry
        .pipelines
        .iter()
        .flat_map(|p| p.tasks.iter().map(move |t| (p, t)))
        .filter(|(_, t)| t.produces.contains(&d.id.as_str()))
        .map(|(p, t)| (p.id, t.id))
        .collect();
    (consumers, producers)
}

fn dataset_json(state: &AppState, d: &DatasetRow) -> Value {
    let (consumers, producers) = references(state, d);
    let (created, updated) = (date(Some(d.created_at)), date(Some(d.updated_at)));
    json!({
        "id": d.key,
        "uri": d.uri,
        "extra": { "id": d.id, "description": d.description },
        "created_at": created,
        "updated_at": updated,
        "consuming_dags": consumers.iter().map(|p| json!({
            "dag_id": p.id, "created_at": created, "updated_at": updated,
        })).collect::<Vec<_>>(),
        "producing_tasks": producers.iter().map(|(dag, task)| json!({
            "dag_id": dag, "task_id": task, "created_at": created, "updated_at": updated,
        })).collect::<Vec<_>>(),
    })
}

fn event_json(e: &DatasetEvent) -> Value {
    let extra: Value = serde_json::from_str(&e.extra).unwrap_or_else(|_| json!({}));
    json!({
        "dataset_id": e.dataset_key,
        "dataset_uri": e.uri,
        "extra": if extra.is_object() { extra } else { json!({}) },
        "source_dag_id": e.source_pipeline,
        "source_task_id": e.source_task,
        "source_run_id": e.source_run_id,
        "source_map_index": e.source_map_index,
        "created_dagruns": [],
        "timestamp": date(Some(e.created_at)),
    })
}

fn queued_json(q: &QueuedDatasetEvent) -> Value {
    json!({ "uri": q.uri, "dag_id": q.pipeline_id, "created_at": date(Some(q.created_at)) })
}

pub(super) async fn list_datasets(
    State(state): State<AppState>,
    _caller: Caller,
    Params(filter): Params<DatasetFilter>,
) -> ApiResult {
    let page = Page { limit: filter.limit, offset: filter.offset };
    let mut datasets = state.store.datasets().await?;
    if let Some(pattern) = filter.uri_pattern.as_deref().filter(|p| !p.is_empty()) {
        datasets.retain(|d| d.uri.contains(pattern));
    }
    if let Some(dags) = filter.dag_ids.as_deref().filter(|d| !d.is_empty()) {
        let dags: Vec<&str> = dags.split(',').map(str::trim).collect();
        datasets.retain(|d| {
            let (consumers, producers) = references(&state, d);
            consumers.iter().any(|p| dags.contains(&p.id)) || producers.iter().any(|(p, _)| dags.contains(p))
        });
    }
    let order = filter.order_by.as_deref().filter(|o| !o.is_empty()).unwrap_or("id");
    let (descending, field) = order.strip_prefix('-').map_or((false, order), |f| (true, f));
    match field {
        "id" => datasets.sort_by_key(|d| d.key),
        "uri" => datasets.sort_by(|a, b| a.uri.cmp(&b.uri)),
        "created_at" => datasets.sort_by_key(|d| (d.created_at, d.key)),
        "updated_at" => datasets.sort_by_key(|d| (d.updated_at, d.key)),
        other => {
            return Err(Problem::bad_request(format!(
                "cannot order datasets by `{other}`: use id, uri, created_at or updated_at (`-` first for descending)"
            )));
        }
    }
    if descending {
        datasets.reverse();
    }
    let total = datasets.len();
    let listed: Vec<Value> = page.slice(&datasets)?.iter().map(|d| dataset_json(&state, d)).collect();
    ok(json!({ "datasets": listed, "total_entries": total }))
}

/// The dataset with URI `uri`.
async fn by_uri(state: &AppState, uri: &str) -> Result<DatasetRow, Problem> {
    let datasets = state.store.datasets().await?;
    datasets.into_iter().find(|d| d.uri == uri).ok_or_else(|| no_dataset(uri))
}

pub(super) async fn get_dataset(State(state): State<AppState>, _caller: Caller, Path(uri): Path<String>) -> ApiResult {
    let dataset = by_uri(&state, &uri).await?;
    ok(dataset_json(&state, &dataset))
}

/// Query parameters of `GET /datasets/events`.
#[derive(Debug, Deserialize)]
pub(super) struct EventFilter {
    #[serde(default, deserialize_with = "super::saturating")]
    limit: Option<i64>,
    #[serde(default, deserialize_with = "super::saturating")]
    offset: Option<i64>,
    order_by: Option<String>,
    #[serde(default, deserialize_with = "super::saturating")]
    dataset_id: Option<i64>,
    source_dag_id: Option<String>,
    source_task_id: Option<String>,
    source_run_id: Option<String>,
    #[serde(default, deserialize_with = "super::saturating")]
    source_map_index: Option<i64>,
}

pub(super) async fn list_dataset_events(
    State(state): State<AppState>,
    _caller: Caller,
    Params(filter): Params<EventFilter>,
) -> ApiResult {
    let page = Page { limit: filter.limit, offset: filter.offset };
    let oldest_first = match filter.order_by.as_deref() {
        None | Some("" | "-timestamp" | "-id") => false,
        Some("timestamp" | "id") => true,
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "cannot order dataset events by `{other}`: use timestamp or -timestamp"
            )));
        }
    };
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let query = DatasetEventFilter {
        dataset_key: filter.dataset_id,
        source_pipeline: nonempty(filter.source_dag_id),
        source_task: nonempty(filter.source_task_id),
        source_run_id: nonempty(filter.source_run_id),
        source_map_index: filter.source_map_index,
        oldest_first,
    };
    let (events, total) = state.store.dataset_events(&query, page.limit()?, page.offset()?).await?;
    ok(json!({ "dataset_events": events.iter().map(event_json).collect::<Vec<_>>(), "total_entries": total }))
}

/// `POST /datasets/events`: an update of a dataset from outside, by its URI.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewDatasetEvent {
    dataset_uri: String,
    #[serde(default)]
    extra: Option<Map<String, Value>>,
}

pub(super) async fn post_dataset_event(
    State(state): State<AppState>,
    caller: Caller,
    Body(event): Body<NewDatasetEvent>,
) -> ApiResult {
    caller.require(Role::Op)?;
    let extra = Value::Object(event.extra.unwrap_or_default());
    let recorded =
        caller.store(&state).record_dataset_event(&event.dataset_uri, &extra).await.map_err(|e| match e {
            crate::store::StoreError::NotFound(_) => no_dataset(&event.dataset_uri),
            other => other.into(),
        })?;
    ok(event_json(&recorded))
}

/// Queued events, or a 404 when there are none (as Airflow answers).
fn queued_answer(queued: &[QueuedDatasetEvent], what: &str) -> ApiResult {
    if queued.is_empty() {
        return Err(no_queued_event(what));
    }
    ok(json!({ "queued_events": queued.iter().map(queued_json).collect::<Vec<_>>(), "total_entries": queued.len() }))
}

pub(super) async fn dataset_queued_events(
    State(state): State<AppState>,
    _caller: Caller,
    Path(uri): Path<String>,
) -> ApiResult {
    let queued = state.store.queued_dataset_events(None, Some(&uri)).await?;
    queued_answer(&queued, &format!("for dataset `{uri}`"))
}

pub(super) async fn delete_dataset_queued_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(uri): Path<String>,
) -> ApiResult {
    caller.require(Role::Op)?;
    cleared(caller.store(&state).clear_queued_dataset_events(None, Some(&uri)).await?, &format!("for dataset `{uri}`"))
}

pub(super) async fn dag_queued_events(
    State(state): State<AppState>,
    _caller: Caller,
    Path(dag_id): Path<String>,
) -> ApiResult {
    pipeline(&state, &dag_id)?;
    let queued = state.store.queued_dataset_events(Some(&dag_id), None).await?;
    queued_answer(&queued, &format!("for DAG `{dag_id}`"))
}

pub(super) async fn delete_dag_queued_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(dag_id): Path<String>,
) -> ApiResult {
    caller.require(Role::Op)?;
    pipeline(&state, &dag_id)?;
    cleared(
        caller.store(&state).clear_queued_dataset_events(Some(&dag_id), None).await?,
        &format!("for DAG `{dag_id}`"),
    )
}

pub(super) async fn dag_queued_event(
    State(state): State<AppState>,
    _caller: Caller,
    Path((dag_id, uri)): Path<(String, String)>,
) -> ApiResult {
    pipeline(&state, &dag_id)?;
    let queued = state.store.queued_dataset_events(Some(&dag_id), Some(&uri)).await?;
    match queued.first() {
        Some(one) => ok(queued_json(one)),
        None => Err(no_queued_event(&format!("for DAG `{dag_id}` and dataset `{uri}`"))),
    }
}

pub(super) async fn delete_dag_queued_event(
    State(state): State<AppState>,
    caller: Caller,
    Path((dag_id, uri)): Path<(String, String)>,
) -> ApiResult {
    caller.require(Role::Op)?;
    pipeline(&state, &dag_id)?;
    let count = caller.store(&state).clear_queued_dataset_events(Some(&dag_id), Some(&uri)).await?;
    cleared(count, &format!("for DAG `{dag_id}` and dataset `{uri}`"))
}

/// 204 when queued events were dropped, else the 404 Airflow answers.
fn cleared(count: usize, what: &str) -> ApiResult {
    if count == 0 {
        return Err(no_queued_event(what));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The dataset events that triggered a run.
pub(super) async fn upstream_dataset_events(
    State(state): State<AppState>,
    _caller: Caller,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult {
    let p = pipeline(&state, &dag_id)?;
    let run = state.store.run_by_id(&dag_id, &run_id).await?;
    let events = state.store.run_dataset_events(p, &run).await?;
    ok(json!({ "dataset_events": events.iter().map(event_json).collect::<Vec<_>>(), "total_entries": events.len() }))
}

fn no_dataset(uri: &str) -> Problem {
    Problem::not_found(format!("no dataset has the URI `{uri}`: pipelines.yaml declares datasets under `datasets:`"))
}

fn no_queued_event(what: &str) -> Problem {
    Problem::not_found(format!("no queued dataset event {what}"))
}
