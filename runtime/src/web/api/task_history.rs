//! A task instance's tries, extra links and dependencies, and the `{map_index}` forms of
//! the task instance routes. Tasks are never mapped, so Airflow's index of an unmapped
//! task, -1, is the only one that exists; `listMapped` of a task answers that it is not
//! mapped, as Airflow does.

use super::task_instances::{find_task_instance, task_instance_json};
use super::*;
use crate::rules::{Decision, decide};

/// `map_index` of a path: -1 names the (unmapped) task instance; any other is not found.
pub(super) fn unmapped(task_id: &str, map_index: i64) -> Result<(), Problem> {
    if map_index == -1 {
        Ok(())
    } else {
        Err(Problem::not_found(format!("task `{task_id}` is not mapped: it has no map index {map_index}")))
    }
}

pub(super) async fn get_mapped_task_instance(
    State(state): State<AppState>,
    caller: Caller,
    Path((dag_id, run_id, task_id, map_index)): Path<(String, String, String, i64)>,
) -> ApiResult {
    unmapped(&task_id, map_index)?;
    super::task_instances::get_task_instance(State(state), caller, Path((dag_id, run_id, task_id))).await
}

pub(super) async fn list_mapped_task_instances(
    State(state): State<AppState>,
    _caller: Caller,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
) -> ApiResult {
    let p = pipeline(&state, &dag_id)?;
    state.store.run_by_id(&dag_id, &run_id).await?;
    if p.task(&task_id).is_none() {
        return Err(Problem::not_found(format!("DAG `{dag_id}` has no task `{task_id}`")));
    }
    Err(Problem::not_found(format!("task `{task_id}` is not mapped")))
}

/// Every try of a task instance, oldest first, in Airflow's task instance history shape.
pub(super) async fn list_tries(
    State(state): State<AppState>,
    _caller: Caller,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Params(page): Params<Page>,
) -> ApiResult {
    let p = pipeline(&state, &dag_id)?;
    let (run, ti) = find_task_instance(&state, &dag_id, &run_id, &task_id).await?;
    let tries: Vec<Value> = state.store.tries(&ti).await?.iter().map(|t| task_instance_json(p, &run, t)).collect();
    ok(json!({ "task_instances": page.slice(&tries)?, "total_entries": tries.len() }))
}

pub(super) async fn list_mapped_tries(
    State(state): State<AppState>,
    caller: Caller,
    Path((dag_id, run_id, task_id, map_index)): Path<(String, String, String, i64)>,
    page: Params<Page>,
) -> ApiResult {
    unmapped(&task_id, map_index)?;
    list_tries(State(state), caller, Path((dag_id, run_id, task_id)), page).await
}

pub(super) async fn get_try(
    State(state): State<AppState>,
    _caller: Caller,
    Path((dag_id, run_id, task_id, try_number)): Path<(String, String, String, i64)>,
) -> ApiResult {
    let p = pipeline(&state, &dag_id)?;
    let (run, ti) = find_task_instance(&state, &dag_id, &run_id, &task_id).await?;
    let tries = state.store.tries(&ti).await?;
    let found = tries.iter().find(|t| t.try_number == try_number).ok_or_else(|| {
        Problem::not_found(format!("task `{task_id}` has no try {try_number} (it has had {})", ti.try_number))
    })?;
    ok(task_instance_json(p, &run, found))
}

pub(super) async fn get_mapped_try(
    State(state): State<AppState>,
    caller: Caller,
    Path((dag_id, run_id, task_id, map_index, try_number)): Path<(String, String, String, i64, i64)>,
) -> ApiResult {
    unmapped(&task_id, map_index)?;
    get_try(State(state), caller, Path((dag_id, run_id, task_id, try_number))).await
}

/// No operator links: a Sluice task has none.
pub(super) async fn get_extra_links(
    State(state): State<AppState>,
    _caller: Caller,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
) -> ApiResult {
    pipeline(&state, &dag_id)?;
    find_task_instance(&state, &dag_id, &run_id, &task_id).await?;
    ok(json!({ "extra_links": [] }))
}

/// Why a task instance does not run yet: its own state when it has one that is not
/// waiting, else its trigger rule against its upstreams' states; nothing when it may run.
pub(super) async fn get_dependencies(
    State(state): State<AppState>,
    _caller: Caller,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
) -> ApiResult {
    let p = pipeline(&state, &dag_id)?;
    let (run, ti) = find_task_instance(&state, &dag_id, &run_id, &task_id).await?;
    let mut unmet = Vec::new();
    if !matches!(ti.state, TiState::None | TiState::Scheduled) {
        unmet.push(json!({
            "name": "Task Instance State",
            "reason": format!("Task is in the '{}' state.", ti.state.as_str()),
        }));
    } else if let Some(task) = p.task(&task_id) {
        let instances = state.store.task_instances(run.id).await?;
        let upstream: Vec<TiState> = task
            .depends_on
            .iter()
            .map(|up| instances.iter().find(|i| i.task_id == *up).map_or(TiState::None, |i| i.state))
            .collect();
        if decide(task.trigger_rule, &upstream) != Decision::Run {
            let done = upstream.iter().filter(|s| s.is_done()).count();
            unmet.push(json!({
                "name": "Trigger Rule",
                "reason": format!(
                    "Task's trigger rule '{}' is not met: {done} of {} upstream task(s) done ({}).",
                    task.trigger_rule.name(),
                    upstream.len(),
                    task.depends_on
                        .iter()
                        .zip(&upstream)
                        .map(|(id, s)| format!("{id}: {}", s.as_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }));
        }
    }
    ok(json!({ "dependencies": unmet }))
}

pub(super) async fn get_mapped_dependencies(
    State(state): State<AppState>,
    caller: Caller,
    Path((dag_id, run_id, task_id, map_index)): Path<(String, String, String, i64)>,
) -> ApiResult {
    unmapped(&task_id, map_index)?;
    get_dependencies(State(state), caller, Path((dag_id, run_id, task_id))).await
}
