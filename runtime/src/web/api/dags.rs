//! `/dags`: list, one, patch (pause), and their details.

use super::*;

pub(super) fn dag_json(
    p: &PipelineSpec,
    paused: Option<bool>,
    active: Option<bool>,
    next_run: Option<Micros>,
) -> Value {
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
pub(super) struct DagFilter {
    pub(super) limit: Option<i64>,
    pub(super) offset: Option<i64>,
    pub(super) tags: Option<String>,
    pub(super) dag_id_pattern: Option<String>,
    pub(super) paused: Option<bool>,
}

pub(super) async fn list_dags(
    State(state): State<AppState>,
    _caller: Caller,
    Query(filter): Query<DagFilter>,
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

#[derive(Debug, Deserialize)]
pub(super) struct UpdateMask {
    pub(super) update_mask: Option<String>,
}

pub(super) async fn patch_dag(
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

pub(super) async fn list_tasks(
    State(state): State<AppState>,
    _caller: Caller,
    Path(dag_id): Path<String>,
) -> ApiResult {
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
                "downstream_task_ids": t.downstream.iter().filter_map(|&d| p.tasks.get(d as usize)).map(|d| d.id).collect::<Vec<_>>(),
                "doc_md": if t.description.is_empty() { Value::Null } else { t.description.into() },
            })
        })
        .collect();
    ok(json!({ "tasks": tasks, "total_entries": p.tasks.len() }))
}

pub(super) fn operator(kind: &TaskKind) -> &'static str {
    match kind {
        TaskKind::Rust { .. } => "RustOperator",
        TaskKind::Shell { .. } => "BashOperator",
        TaskKind::Http { .. } => "HttpOperator",
        TaskKind::Sql { .. } => "SQLExecuteQueryOperator",
    }
}
