//! `/dags`: list, one, patch (pause), their details and their tasks.

use super::*;
use crate::rules::RunState;

pub(super) fn dag_json(
    p: &PipelineSpec,
    paused: Option<bool>,
    active: Option<bool>,
    next_run: Option<Micros>,
) -> Value {
    let schedule = match p.schedule {
        // Airflow answers `null` for a DAG scheduled on datasets, too.
        Schedule::Manual | Schedule::Datasets(_) => Value::Null,
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
pub(super) struct DagFilter {
    #[serde(default, deserialize_with = "super::saturating")]
    pub(super) limit: Option<i64>,
    #[serde(default, deserialize_with = "super::saturating")]
    pub(super) offset: Option<i64>,
    pub(super) tags: Option<String>,
    pub(super) dag_id_pattern: Option<String>,
    pub(super) paused: Option<bool>,
}

pub(super) async fn list_dags(
    State(state): State<AppState>,
    _caller: Caller,
    Params(filter): Params<DagFilter>,
) -> ApiResult {
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

pub(super) async fn get_dag(State(state): State<AppState>, _caller: Caller, Path(dag_id): Path<String>) -> ApiResult {
    let p = pipeline(&state, &dag_id)?;
    let row = state.store.pipeline(&dag_id).await?;
    ok(dag_json(p, Some(row.is_paused), Some(row.is_active), row.next_run_at))
}

/// The `is_paused` a DAG patch sets, the only field that can be updated; `None` when the
/// body does not set it (the patch changes nothing).
fn paused_in(update_mask: Option<&str>, body: &Map<String, Value>) -> Result<Option<bool>, Problem> {
    // An empty mask (`update_mask=`) names no field: the body says what changes.
    if let Some(fields) = update_mask
        && fields.split(',').map(str::trim).any(|f| !f.is_empty() && f != "is_paused")
    {
        return Err(Problem::bad_request("only `is_paused` can be updated"));
    }
    match body.get("is_paused") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(paused)) => Ok(Some(*paused)),
        Some(_) => Err(Problem::bad_request("`is_paused` must be true or false")),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct UpdateMask {
    pub(super) update_mask: Option<String>,
}

pub(super) async fn patch_dag(
    State(state): State<AppState>,
    caller: Caller,
    Path(dag_id): Path<String>,
    Params(mask): Params<UpdateMask>,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult {
    caller.require(Role::User)?;
    pipeline(&state, &dag_id)?;
    if let Some(paused) = paused_in(mask.update_mask.as_deref(), &body)? {
        caller.store(&state).set_paused(&dag_id, paused).await?;
        state.wake.notify_one();
    }
    get_dag(State(state), caller, Path(dag_id)).await
}

pub(super) async fn list_tasks(
    State(state): State<AppState>,
    _caller: Caller,
    Path(dag_id): Path<String>,
) -> ApiResult {
    let p = pipeline(&state, &dag_id)?;
    let tasks: Vec<Value> = p.tasks.iter().map(|t| task_json(p, t)).collect();
    ok(json!({ "tasks": tasks, "total_entries": p.tasks.len() }))
}

pub(super) async fn get_task(
    State(state): State<AppState>,
    _caller: Caller,
    Path((dag_id, task_id)): Path<(String, String)>,
) -> ApiResult {
    let p = pipeline(&state, &dag_id)?;
    let task = p.task(&task_id).ok_or_else(|| Problem::not_found(format!("DAG `{dag_id}` has no task `{task_id}`")))?;
    ok(task_json(p, task))
}

/// A task in Airflow's `Task` shape: what a Sluice task has, Airflow's defaults for the rest.
fn task_json(p: &PipelineSpec, t: &TaskSpec) -> Value {
    let (module_path, class_name) = operator_class(&t.kind);
    json!({
        "class_ref": { "module_path": module_path, "class_name": class_name },
        "task_id": t.id,
        "task_display_name": t.id,
        "owner": p.owner,
        "start_date": null,
        "end_date": null,
        "trigger_rule": t.trigger_rule.name(),
        "extra_links": [],
        "depends_on_past": false,
        "is_mapped": false,
        "wait_for_downstream": false,
        "retries": t.retry.retries,
        "queue": t.queue,
        "executor": null,
        "pool": t.pool,
        "pool_slots": t.pool_slots,
        "execution_timeout": t.execution_timeout_secs.map_or(Value::Null, time_delta),
        "retry_delay": time_delta(t.retry.retry_delay_secs),
        "retry_exponential_backoff": t.retry.exponential_backoff,
        "priority_weight": t.priority_weight,
        "weight_rule": "downstream",
        "ui_color": "#fff",
        "ui_fgcolor": "#000",
        "template_fields": template_fields(&t.kind),
        "downstream_task_ids": t.downstream.iter().filter_map(|&d| p.tasks.get(d as usize)).map(|d| d.id).collect::<Vec<_>>(),
        "doc_md": if t.description.is_empty() { Value::Null } else { t.description.into() },
    })
}

/// The fields the operator a kind stands in for renders, in Airflow's names.
fn template_fields(kind: &TaskKind) -> &'static [&'static str] {
    match kind {
        TaskKind::Rust { .. } => &[],
        TaskKind::Python { .. } => &["op_args", "op_kwargs"],
        TaskKind::Shell { .. } => &["bash_command", "env"],
        TaskKind::Http { .. } => &["endpoint", "data", "headers"],
        TaskKind::Sql { .. } => &["sql"],
    }
}

/// A duration in Airflow's `TimeDelta` shape.
fn time_delta(secs: u64) -> Value {
    json!({ "__type": "TimeDelta", "days": secs / 86_400, "seconds": secs % 86_400, "microseconds": 0 })
}

/// A DAG with its details (`DAGDetail`): schedule bounds, timezone, params and docs.
pub(super) async fn get_dag_details(
    State(state): State<AppState>,
    _caller: Caller,
    Path(dag_id): Path<String>,
) -> ApiResult {
    let p = pipeline(&state, &dag_id)?;
    let row = state.store.pipeline(&dag_id).await?;
    let (start, end) = crate::timetable::Timetable::for_pipeline(p).map(|t| t.bounds()).unwrap_or((None, None));
    let params: Map<String, Value> = p
        .params
        .iter()
        .map(|param| {
            let default = param.default_json.and_then(|d| serde_json::from_str(d).ok()).unwrap_or(Value::Null);
            let described = if param.description.is_empty() { Value::Null } else { param.description.into() };
            (param.name.to_string(), json!({ "__class": "airflow.models.param.Param", "value": default, "description": described, "schema": {} }))
        })
        .collect();
    let mut dag = dag_json(p, Some(row.is_paused), Some(row.is_active), row.next_run_at);
    if let Value::Object(fields) = &mut dag {
        let details = json!({
            "timezone": p.timezone,
            "catchup": p.catchup,
            "orientation": "LR",
            "concurrency": p.max_active_tasks,
            "start_date": date(start),
            "dag_run_timeout": null,
            "dataset_expression": null,
            "doc_md": if p.description.is_empty() { Value::Null } else { p.description.into() },
            "default_view": "grid",
            "params": params,
            "end_date": date(end),
            "is_paused_upon_creation": p.paused_at_creation,
            "last_parsed": null,
            "template_search_path": null,
            "render_template_as_native_obj": false,
        });
        if let Value::Object(details) = details {
            fields.extend(details);
        }
    }
    ok(dag)
}

pub(super) fn operator(kind: &TaskKind) -> &'static str {
    operator_class(kind).1
}

/// The Airflow operator a task kind stands in for: (module, class).
fn operator_class(kind: &TaskKind) -> (&'static str, &'static str) {
    match kind {
        TaskKind::Rust { .. } => ("sluice", "RustOperator"),
        TaskKind::Python { .. } => ("airflow.operators.python", "PythonOperator"),
        TaskKind::Shell { .. } => ("airflow.operators.bash", "BashOperator"),
        TaskKind::Http { .. } => ("airflow.providers.http.operators.http", "HttpOperator"),
        TaskKind::Sql { .. } => ("airflow.providers.common.sql.operators.sql", "SQLExecuteQueryOperator"),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct StatsFilter {
    dag_ids: Option<String>,
}

/// Runs of each asked-for pipeline by state, every run state listed (0 included), as
/// Airflow's `dagStats`. An id that names no pipeline is left out, as Airflow leaves out
/// a DAG it does not know.
pub(super) async fn dag_stats(
    State(state): State<AppState>,
    _caller: Caller,
    Params(filter): Params<StatsFilter>,
) -> ApiResult {
    let asked = filter.dag_ids.ok_or_else(|| Problem::bad_request("give `dag_ids`: DAG ids separated by commas"))?;
    let counts = state.store.run_counts().await?;
    let dags: Vec<Value> = asked
        .split(',')
        .map(str::trim)
        .filter(|id| state.registry.pipeline(id).is_some())
        .map(|id| {
            let stats: Vec<Value> = RunState::ALL
                .iter()
                .map(|run_state| {
                    let count =
                        counts.iter().find(|(p, s, _)| p == id && s == run_state.as_str()).map_or(0, |(_, _, n)| *n);
                    json!({ "state": run_state.as_str(), "count": count })
                })
                .collect();
            json!({ "dag_id": id, "stats": stats })
        })
        .collect();
    ok(json!({ "total_entries": dags.len(), "dags": dags }))
}

#[derive(Debug, Deserialize)]
pub(super) struct BulkFilter {
    #[serde(default, deserialize_with = "super::saturating")]
    limit: Option<i64>,
    #[serde(default, deserialize_with = "super::saturating")]
    offset: Option<i64>,
    tags: Option<String>,
    dag_id_pattern: Option<String>,
    update_mask: Option<String>,
}

/// Pauses or unpauses every pipeline whose id contains `dag_id_pattern` (and that has one
/// of `tags`), as Airflow's `PATCH /dags`; answers the pipelines changed, paged.
pub(super) async fn patch_dags(
    State(state): State<AppState>,
    caller: Caller,
    Params(filter): Params<BulkFilter>,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult {
    caller.require(Role::User)?;
    let pattern = filter
        .dag_id_pattern
        .as_deref()
        .ok_or_else(|| Problem::bad_request("give `dag_id_pattern`: the pipelines to change"))?;
    let paused = paused_in(filter.update_mask.as_deref(), &body)?;
    let page = Page { limit: filter.limit, offset: filter.offset };
    let chosen: Vec<&PipelineSpec> = state
        .registry
        .pipelines
        .iter()
        .filter(|p| p.id.contains(pattern))
        .filter(|p| filter.tags.as_deref().is_none_or(|t| t.split(',').any(|t| p.tags.contains(&t))))
        .collect();
    let chosen = page.slice(&chosen)?;
    if let Some(paused) = paused {
        for p in &chosen {
            caller.store(&state).set_paused(p.id, paused).await?;
        }
        state.wake.notify_one();
    }
    let rows = state.store.pipelines().await?;
    let dags: Vec<Value> = chosen
        .iter()
        .filter_map(|p| {
            let row = rows.iter().find(|r| r.pipeline_id == p.id)?;
            Some(dag_json(p, Some(row.is_paused), Some(row.is_active), row.next_run_at))
        })
        .collect();
    ok(json!({ "total_entries": dags.len(), "dags": dags }))
}

/// Deletes the history of a pipeline no longer compiled in (role Op); one still compiled
/// in is a 409 problem.
pub(super) async fn delete_dag(State(state): State<AppState>, caller: Caller, Path(dag_id): Path<String>) -> ApiResult {
    caller.require(Role::Op)?;
    caller.store(&state).delete_pipeline(&dag_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
