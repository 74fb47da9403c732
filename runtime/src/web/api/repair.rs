//! Clearing: `clearTaskInstances` over a pipeline's runs, and `dagRuns/{id}/clear`. A
//! cleared task instance gets its retry policy's tries again and runs when its upstreams
//! allow; a queued or running one is never cleared (it ends first), so neither a dry run
//! nor a real one lists it.

use super::dag_runs::run_json;
use super::task_instances::task_instance_json;
use super::*;
use crate::repair::{Only, clearable};

fn yes() -> bool {
    true
}

/// What a clear or a mark reaches beyond the tasks and run it names, in both bodies.
#[derive(Debug, Deserialize)]
pub(super) struct Relatives {
    #[serde(default)]
    include_upstream: bool,
    #[serde(default)]
    include_downstream: bool,
    #[serde(default)]
    include_future: bool,
    #[serde(default)]
    include_past: bool,
}

impl Relatives {
    /// The logical-date range of the runs reached from a run at `logical_date`.
    fn runs_from(&self, logical_date: Micros) -> (Option<Micros>, Option<Micros>) {
        ((!self.include_past).then_some(logical_date), (!self.include_future).then_some(logical_date))
    }
}

/// Airflow's `ClearTaskInstances` body.
#[derive(Debug, Deserialize)]
pub(super) struct ClearTasks {
    #[serde(default = "yes")]
    dry_run: bool,
    task_ids: Option<Vec<String>>,
    start_date: Option<String>,
    end_date: Option<String>,
    #[serde(default = "yes")]
    only_failed: bool,
    #[serde(default)]
    only_running: bool,
    dag_run_id: Option<String>,
    #[serde(flatten)]
    relatives: Relatives,
}

/// The task indices a clear acts on: `task_ids` (every task when absent) with their
/// upstream and downstream tasks as asked.
fn chosen_tasks(
    p: &PipelineSpec,
    task_ids: Option<&[String]>,
    upstream: bool,
    downstream: bool,
) -> Result<Vec<usize>, Problem> {
    let roots: Vec<usize> = match task_ids {
        None => (0..p.tasks.len()).collect(),
        Some(ids) => ids
            .iter()
            .map(|id| {
                p.tasks.iter().position(|t| t.id == id).ok_or_else(|| {
                    Problem::bad_request(format!(
                        "DAG `{}` has no task `{id}`: `task_ids` names tasks of the DAG",
                        p.id
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(p.relatives(&roots, upstream, downstream))
}

fn parse_date(text: Option<&str>, field: &str) -> Result<Option<Micros>, Problem> {
    text.map(|t| {
        parse_datetime(t).ok_or_else(|| Problem::bad_request(format!("`{field}` is not an RFC 3339 date-time: `{t}`")))
    })
    .transpose()
}

pub(super) async fn post_clear_task_instances(
    State(state): State<AppState>,
    caller: Caller,
    Path(dag_id): Path<String>,
    Body(body): Body<ClearTasks>,
) -> ApiResult {
    caller.require(Role::User)?;
    let p = pipeline(&state, &dag_id)?;
    if body.only_failed && body.only_running {
        return Err(Problem::bad_request("`only_failed` and `only_running` cannot both be true"));
    }
    let tasks =
        chosen_tasks(p, body.task_ids.as_deref(), body.relatives.include_upstream, body.relatives.include_downstream)?;
    let (mut from, mut to) =
        (parse_date(body.start_date.as_deref(), "start_date")?, parse_date(body.end_date.as_deref(), "end_date")?);
    if let Some(run_id) = &body.dag_run_id {
        let run = state.store.run_by_id(&dag_id, run_id).await?;
        (from, to) = body.relatives.runs_from(run.logical_date);
    }
    let only = match (body.only_failed, body.only_running) {
        (true, _) => Only::Failed,
        (false, true) => Only::Running,
        (false, false) => Only::Any,
    };
    let mut references = Vec::new();
    for run in state.store.runs_between(&dag_id, from, to).await? {
        let instances = state.store.task_instances(run.id).await?;
        let chosen = clearable(p, &tasks, &instances, only);
        let cleared: Vec<String> = if body.dry_run || chosen.is_empty() {
            chosen.iter().map(|id| id.to_string()).collect()
        } else {
            caller.store(&state).clear_tasks(p, run.id, &chosen).await?
        };
        references.extend(cleared.into_iter().map(|task_id| {
            json!({
                "task_id": task_id,
                "dag_id": dag_id,
                "execution_date": to_rfc3339(run.logical_date),
                "dag_run_id": run.run_id,
            })
        }));
    }
    if !body.dry_run && !references.is_empty() {
        state.wake.notify_one();
    }
    ok(json!({ "task_instances": references }))
}

/// Airflow's `ClearDagRun` body.
#[derive(Debug, Deserialize)]
pub(super) struct ClearRun {
    #[serde(default = "yes")]
    dry_run: bool,
}

/// Clears every task instance of one run: a dry run lists them (as task instances); a
/// real one clears them and answers the run, reopened.
pub(super) async fn clear_dag_run(
    State(state): State<AppState>,
    caller: Caller,
    Path((dag_id, run_id)): Path<(String, String)>,
    Body(body): Body<ClearRun>,
) -> ApiResult {
    caller.require(Role::User)?;
    let p = pipeline(&state, &dag_id)?;
    let run = state.store.run_by_id(&dag_id, &run_id).await?;
    let instances = state.store.task_instances(run.id).await?;
    let clearable: Vec<&TiRow> =
        instances.iter().filter(|ti| !matches!(ti.state, TiState::Queued | TiState::Running)).collect();
    if body.dry_run {
        let listed: Vec<Value> = clearable.iter().map(|ti| task_instance_json(p, &run, ti)).collect();
        return ok(json!({ "total_entries": listed.len(), "task_instances": listed }));
    }
    let ids: Vec<&str> = clearable.iter().map(|ti| ti.task_id.as_str()).collect();
    if !caller.store(&state).clear_tasks(p, run.id, &ids).await?.is_empty() {
        state.wake.notify_one();
    }
    ok(run_json(&state.store.run(run.id).await?))
}

/// A state an operator may set by hand, from Airflow's `UpdateTaskState` names.
fn new_state(name: Option<&str>) -> Result<TiState, Problem> {
    match name {
        Some("success") => Ok(TiState::Success),
        Some("failed") => Ok(TiState::Failed),
        Some("skipped") => Ok(TiState::Skipped),
        Some(other) => {
            Err(Problem::bad_request(format!("`new_state` must be success, failed or skipped, not `{other}`")))
        }
        None => Err(Problem::bad_request("give `new_state`: success, failed or skipped")),
    }
}

fn reference(dag_id: &str, run: &RunRow, task_id: &str) -> Value {
    json!({
        "task_id": task_id,
        "dag_id": dag_id,
        "execution_date": to_rfc3339(run.logical_date),
        "dag_run_id": run.run_id,
    })
}

/// Which of `chosen` (task ids) in run `run` a mark to `state` changes: those not queued,
/// not running and not in that state already.
async fn markable<'a>(
    state: &AppState,
    run: &RunRow,
    chosen: &[&'a str],
    to: TiState,
) -> Result<Vec<&'a str>, Problem> {
    let instances = state.store.task_instances(run.id).await?;
    Ok(chosen
        .iter()
        .copied()
        .filter(|id| {
            instances.iter().any(|ti| {
                ti.task_id == *id && ti.state != to && !matches!(ti.state, TiState::Queued | TiState::Running)
            })
        })
        .collect())
}

/// Marks `ids` of `run` (or, in a dry run, says which it would), answering references.
async fn mark(
    state: &AppState,
    caller: &Caller,
    p: &PipelineSpec,
    run: &RunRow,
    ids: &[&str],
    to: TiState,
    dry_run: bool,
) -> Result<Vec<Value>, Problem> {
    let ids = markable(state, run, ids, to).await?;
    let marked: Vec<String> = if dry_run || ids.is_empty() {
        ids.iter().map(|id| id.to_string()).collect()
    } else {
        let (marked, queued) = caller.store(state).mark_tasks(p, run.id, &ids, to, PARALLELISM).await?;
        if !queued.is_empty() || !marked.is_empty() {
            state.wake.notify_one();
        }
        marked
    };
    Ok(marked.iter().map(|id| reference(p.id, run, id)).collect())
}

/// How many task instances a mark may queue at once; the scheduler queues the rest.
const PARALLELISM: u32 = 32;

/// Airflow's `UpdateTaskInstance` body.
#[derive(Debug, Deserialize)]
pub(super) struct UpdateTask {
    #[serde(default = "yes")]
    dry_run: bool,
    new_state: Option<String>,
}

/// Sets one task instance's state (`PATCH .../taskInstances/{task_id}`); answers its
/// reference, whether or not it changed.
pub(super) async fn patch_task_instance(
    State(state): State<AppState>,
    caller: Caller,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Body(body): Body<UpdateTask>,
) -> ApiResult {
    caller.require(Role::User)?;
    let p = pipeline(&state, &dag_id)?;
    let to = new_state(body.new_state.as_deref())?;
    let (run, _) = super::task_instances::find_task_instance(&state, &dag_id, &run_id, &task_id).await?;
    mark(&state, &caller, p, &run, &[task_id.as_str()], to, body.dry_run).await?;
    ok(reference(&dag_id, &run, &task_id))
}

pub(super) async fn patch_mapped_task_instance(
    State(state): State<AppState>,
    caller: Caller,
    Path((dag_id, run_id, task_id, map_index)): Path<(String, String, String, i64)>,
    body: Body<UpdateTask>,
) -> ApiResult {
    super::task_history::unmapped(&task_id, map_index)?;
    patch_task_instance(State(state), caller, Path((dag_id, run_id, task_id)), body).await
}

/// Airflow's `UpdateTaskInstancesState` body.
#[derive(Debug, Deserialize)]
pub(super) struct UpdateTasks {
    task_id: Option<String>,
    execution_date: Option<String>,
    dag_run_id: Option<String>,
    #[serde(flatten)]
    relatives: Relatives,
    #[serde(default = "yes")]
    dry_run: bool,
    new_state: Option<String>,
}

/// Sets the state of a task and, as asked, its upstream / downstream tasks, in one run
/// or (with `include_past` / `include_future`) in the runs before / after it.
pub(super) async fn post_set_task_instances_state(
    State(state): State<AppState>,
    caller: Caller,
    Path(dag_id): Path<String>,
    Body(body): Body<UpdateTasks>,
) -> ApiResult {
    caller.require(Role::User)?;
    let p = pipeline(&state, &dag_id)?;
    let to = new_state(body.new_state.as_deref())?;
    let task_id = body.task_id.as_deref().ok_or_else(|| Problem::bad_request("give `task_id`: the task to set"))?;
    let tasks = chosen_tasks(
        p,
        Some(&[task_id.to_string()]),
        body.relatives.include_upstream,
        body.relatives.include_downstream,
    )?;
    let ids: Vec<&str> = tasks.iter().filter_map(|&t| p.tasks.get(t)).map(|t| t.id).collect();
    let run =
        match (&body.dag_run_id, &body.execution_date) {
            (Some(_), Some(_)) => return Err(Problem::bad_request("give `dag_run_id` or `execution_date`, not both")),
            (None, None) => {
                return Err(Problem::bad_request("give `dag_run_id` or `execution_date`: the run to change"));
            }
            (Some(run_id), None) => state.store.run_by_id(&dag_id, run_id).await?,
            (None, Some(date)) => {
                let at = parse_date(Some(date), "execution_date")?;
                state.store.runs_between(&dag_id, at, at).await?.into_iter().next().ok_or_else(|| {
                    Problem::not_found(format!("DAG `{dag_id}` has no run with execution date `{date}`"))
                })?
            }
        };
    let (from, until) = body.relatives.runs_from(run.logical_date);
    let mut references = Vec::new();
    for each in state.store.runs_between(&dag_id, from, until).await? {
        references.extend(mark(&state, &caller, p, &each, &ids, to, body.dry_run).await?);
    }
    ok(json!({ "task_instances": references }))
}
