//! `/dags/{dag_id}/dagRuns`: trigger, list, one, mark, delete.

use super::*;
use crate::rules::RunType;

pub(super) fn run_json(run: &RunRow) -> Value {
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
        "external_trigger": run.run_type != RunType::Scheduled,
        "conf": conf,
        "note": run.note,
    })
}

/// The runs of a pipeline, or of every pipeline (`~`), newest first, by Airflow's filters.
pub(super) async fn list_runs(
    State(state): State<AppState>,
    _caller: Caller,
    Path(dag_id): Path<String>,
    query: ListQuery,
) -> ApiResult {
    // A list is a filter, as in Airflow: an unknown pipeline lists no runs.
    let page = query.page()?;
    let (runs, total) = state.store.search_runs(&query.runs(&dag_id)?, page.limit()?, page.offset()?).await?;
    ok(json!({ "dag_runs": runs.iter().map(run_json).collect::<Vec<_>>(), "total_entries": total }))
}

/// `POST /dags/~/dagRuns/list`: the runs a `ListDagRunsForm` asks for.
pub(super) async fn list_runs_batch(
    State(state): State<AppState>,
    _caller: Caller,
    Body(form): Body<ListRunsForm>,
) -> ApiResult {
    let page = form.page();
    let (runs, total) = state.store.search_runs(&form.filter()?, page.limit()?, page.offset()?).await?;
    ok(json!({ "dag_runs": runs.iter().map(run_json).collect::<Vec<_>>(), "total_entries": total }))
}

pub(super) async fn post_run(
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
    let run = crate::scheduler::trigger_as(&caller.store(&state), p, conf, logical_date, run_id).await.map_err(
        |e| match e {
            crate::scheduler::TriggerError::Params(m) => Problem::bad_request(m),
            crate::scheduler::TriggerError::Store(e) => Problem::from(e),
        },
    )?;
    state.wake.notify_one();
    ok(run_json(&run))
}

pub(super) async fn get_run(
    State(state): State<AppState>,
    _caller: Caller,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult {
    pipeline(&state, &dag_id)?;
    ok(run_json(&state.store.run_by_id(&dag_id, &run_id).await?))
}

pub(super) async fn patch_run(
    State(state): State<AppState>,
    caller: Caller,
    Path((dag_id, run_id)): Path<(String, String)>,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult {
    caller.require(Role::User)?;
    let p = pipeline(&state, &dag_id)?;
    let run = state.store.run_by_id(&dag_id, &run_id).await?;
    match body.get("state").and_then(Value::as_str) {
        Some(s @ ("success" | "failed")) => caller.store(&state).set_run_state(p, run.id, s).await?,
        Some("queued") => {
            let roots = p.tasks.iter().filter(|t| t.depends_on.is_empty());
            for root in roots {
                caller.store(&state).clear_task(p, run.id, root.id, true).await?;
            }
        }
        _ => return Err(Problem::bad_request("give `state`: success, failed or queued")),
    }
    state.wake.notify_one();
    ok(run_json(&state.store.run_by_id(&dag_id, &run_id).await?))
}

pub(super) async fn delete_run(
    State(state): State<AppState>,
    caller: Caller,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult {
    caller.require(Role::User)?;
    let p = pipeline(&state, &dag_id)?;
    let run = state.store.run_by_id(&dag_id, &run_id).await?;
    caller.store(&state).delete_run(p, run.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Airflow's `SetDagRunNote` / `SetTaskInstanceNote` body.
#[derive(Debug, Deserialize)]
pub(super) struct Note {
    note: Option<String>,
}

impl Note {
    /// The note to store: `None` (or empty) removes it; at most 1,000 characters, as
    /// Airflow's note column holds.
    pub(super) fn checked(&self) -> Result<Option<&str>, Problem> {
        match self.note.as_deref() {
            None | Some("") => Ok(None),
            Some(text) if text.chars().count() > 1000 => {
                Err(Problem::bad_request("`note` is longer than 1,000 characters: shorten it"))
            }
            Some(text) => Ok(Some(text)),
        }
    }
}

/// Writes an operator's note on a run (role User) and answers the run.
pub(super) async fn set_run_note(
    State(state): State<AppState>,
    caller: Caller,
    Path((dag_id, run_id)): Path<(String, String)>,
    Body(body): Body<Note>,
) -> ApiResult {
    caller.require(Role::User)?;
    pipeline(&state, &dag_id)?;
    let run = state.store.run_by_id(&dag_id, &run_id).await?;
    caller.store(&state).set_run_note(run.id, body.checked()?).await?;
    ok(run_json(&state.store.run(run.id).await?))
}
