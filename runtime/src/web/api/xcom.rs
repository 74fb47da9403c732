//! XCom entries: a task instance's typed outputs under Airflow's keys. A task with one
//! output answers it as `return_value` (what a Python operator's return is in Airflow);
//! a task with several answers one entry per output name.

use super::task_instances::find_task_instance;
use super::*;

/// `(key, value)` of each entry of recorded outputs (a JSON object of output names).
fn entries(outputs: &Value) -> Vec<(String, Value)> {
    match outputs {
        Value::Object(fields) if fields.len() == 1 => {
            fields.values().map(|v| ("return_value".to_string(), v.clone())).collect()
        }
        Value::Object(fields) => fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Value::Null => Vec::new(),
        other => vec![("return_value".to_string(), other.clone())],
    }
}

/// An entry in Airflow's `XComCollectionItem` shape (no value).
fn entry_json(key: &str, at: Micros, run: &RunRow, task_id: &str) -> Value {
    json!({
        "key": key,
        "timestamp": to_rfc3339(at),
        "execution_date": to_rfc3339(run.logical_date),
        "map_index": -1,
        "task_id": task_id,
        "dag_id": run.pipeline_id,
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct XcomFilter {
    #[serde(default, deserialize_with = "super::saturating")]
    limit: Option<i64>,
    #[serde(default, deserialize_with = "super::saturating")]
    offset: Option<i64>,
    map_index: Option<i64>,
    xcom_key: Option<String>,
}

pub(super) async fn list_xcom_entries(
    State(state): State<AppState>,
    _caller: Caller,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Params(filter): Params<XcomFilter>,
) -> ApiResult {
    // A list is a filter, as in Airflow: an unknown task instance has no entries.
    let found = match find_task_instance(&state, &dag_id, &run_id, &task_id).await {
        Ok(found) => Some(found),
        Err(problem) if problem.status == StatusCode::NOT_FOUND => None,
        Err(problem) => return Err(problem),
    };
    let recorded = match &found {
        Some((_, ti)) => state.store.recorded_outputs(ti.id).await?,
        None => None,
    };
    let items: Vec<Value> = recorded
        .iter()
        .filter(|_| filter.map_index.is_none_or(|i| i == -1))
        .flat_map(|(outputs, at)| entries(outputs).into_iter().map(move |(key, _)| (key, *at)))
        .filter(|(key, _)| filter.xcom_key.as_deref().is_none_or(|k| k == key))
        .filter_map(|(key, at)| found.as_ref().map(|(run, _)| entry_json(&key, at, run, &task_id)))
        .collect();
    let page = Page { limit: filter.limit, offset: filter.offset };
    ok(json!({ "xcom_entries": page.slice(&items)?, "total_entries": items.len() }))
}

#[derive(Debug, Deserialize)]
pub(super) struct XcomQuery {
    map_index: Option<i64>,
    stringify: Option<bool>,
}

/// One entry with its value: as JSON text by default (`stringify`, as Airflow answers a
/// stored value), or the value itself with `stringify=false`.
pub(super) async fn get_xcom_entry(
    State(state): State<AppState>,
    _caller: Caller,
    Path((dag_id, run_id, task_id, key)): Path<(String, String, String, String)>,
    Params(query): Params<XcomQuery>,
) -> ApiResult {
    pipeline(&state, &dag_id)?;
    let (run, ti) = find_task_instance(&state, &dag_id, &run_id, &task_id).await?;
    let missing =
        || Problem::not_found(format!("task instance `{task_id}` of run `{run_id}` has no XCom entry `{key}`"));
    if query.map_index.is_some_and(|i| i != -1) {
        return Err(missing());
    }
    let (outputs, at) = state.store.recorded_outputs(ti.id).await?.ok_or_else(missing)?;
    let value = entries(&outputs).into_iter().find(|(k, _)| *k == key).map(|(_, v)| v).ok_or_else(missing)?;
    let value = if query.stringify.unwrap_or(true) { Value::String(value.to_string()) } else { value };
    let mut entry = entry_json(&key, at, &run, &task_id);
    entry["value"] = value;
    ok(entry)
}
