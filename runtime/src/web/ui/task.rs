//! One task instance: its tries, the page of its log, its rendered templates and outputs,
//! and the operator's actions on it.

use super::*;
use crate::repair::{Only, clearable};

#[derive(Debug, Deserialize)]
pub(super) struct TryQuery {
    #[serde(rename = "try")]
    pub(super) try_number: Option<i64>,
    /// Show the page of the log after this line id (0: the first page).
    pub(super) after: Option<i64>,
    /// Show the page of the log before this line id; neither: the last page.
    pub(super) before: Option<i64>,
}

pub(super) async fn task_instance(
    State(state): State<AppState>,
    session: SignedIn,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Query(query): Query<TryQuery>,
) -> Response {
    let run = match state.store.run_by_id(&dag_id, &run_id).await {
        Ok(run) => run,
        Err(e) => return store_error(e),
    };
    let tis = match state.store.task_instances(run.id).await {
        Ok(tis) => tis,
        Err(e) => return store_error(e),
    };
    let Some(ti) = tis.into_iter().find(|t| t.task_id == task_id) else {
        return (StatusCode::NOT_FOUND, format!("task `{task_id}` not in run `{run_id}`")).into_response();
    };
    let shown = query.try_number.unwrap_or(ti.try_number).clamp(1, ti.try_number.max(1));
    // One page of the log, the last unless asked otherwise, with links to the pages
    // around it: a 10 MiB log is never sent (or built) whole.
    let from = match (query.after, query.before) {
        (Some(after), _) => LogFrom::After(after),
        (None, Some(before)) => LogFrom::Before(before),
        (None, None) => LogFrom::Before(i64::MAX),
    };
    let (page, ends) = match (
        state.store.log_page(ti.id, shown, from, PageSize::DEFAULT).await,
        state.store.log_ends(ti.id, shown).await,
    ) {
        (Ok(page), Ok(ends)) => (page, ends),
        (Err(e), _) | (_, Err(e)) => return store_error(e),
    };
    let (earlier, later) = log_neighbours(&page, ends, from);
    let log = page.iter().map(|row| row.line.as_str()).collect::<Vec<_>>().join("\n");
    let outputs =
        state.store.outputs(ti.id).await.ok().flatten().map(|o| serde_json::to_string_pretty(&o).unwrap_or_default());
    let rendered = state.store.rendered(ti.id, shown).await.unwrap_or_default();
    // `renamed_from`: the ids this task had before, whose history it carries.
    let formerly: Vec<&str> = state
        .registry
        .pipeline(&dag_id)
        .and_then(|p| p.task(&task_id))
        .map(|t| t.renamed_from.to_vec())
        .unwrap_or_default();
    render(
        "task.html",
        with(
            page_context(&session),
            context! {
                dag_id, run_path => encode(&run_id, b""), run_id, task_id,
                state => ti.state.as_str(),
                try_number => ti.try_number,
                max_tries => ti.max_tries,
                error => ti.error,
                tries => v((1..=ti.try_number).collect::<Vec<_>>()),
                shown_try => shown,
                log,
                earlier,
                later,
                outputs,
                rendered => v(&rendered),
                formerly => v(&formerly),
                refresh => matches!(ti.state, TiState::Running | TiState::Queued | TiState::Scheduled),
            },
        ),
    )
}

/// Whether a page of a log has lines before and after it: the id to page back from and
/// the id to page on from. A page past the end (an old link to a log since cleared)
/// offers the way back.
pub(super) fn log_neighbours(page: &[LogRow], ends: Option<(i64, i64)>, from: LogFrom) -> (Option<i64>, Option<i64>) {
    let Some((first, last)) = ends else { return (None, None) };
    match (page.first(), page.last()) {
        (Some(top), Some(bottom)) => ((top.id > first).then_some(top.id), (bottom.id < last).then_some(bottom.id)),
        _ => match from {
            LogFrom::After(_) => (Some(last + 1), None),
            LogFrom::Before(_) => (None, Some(first - 1)),
        },
    }
}

/// A task instance's action form: how far a clear or mark reaches, and whether a clear's
/// preview was confirmed. Checkboxes post `on` when ticked, nothing when not.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct TaskActionForm {
    downstream: Option<String>,
    upstream: Option<String>,
    only_failed: Option<String>,
    confirm: Option<String>,
}

pub(super) async fn task_action(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id, action)): Path<(String, String, String, String)>,
    CsrfForm { session, form, store }: CsrfForm<User, TaskActionForm>,
) -> Response {
    let Some(p) = state.registry.pipeline(&dag_id) else {
        return (StatusCode::NOT_FOUND, format!("pipeline `{dag_id}` not found")).into_response();
    };
    let Some(root) = p.tasks.iter().position(|t| t.id == task_id) else {
        return (StatusCode::NOT_FOUND, format!("pipeline `{dag_id}` has no task `{task_id}`")).into_response();
    };
    let run = match state.store.run_by_id(&dag_id, &run_id).await {
        Ok(run) => run,
        Err(e) => return store_error(e),
    };
    let ticked = |field: &Option<String>| field.as_deref().is_some_and(|v| !v.is_empty());
    let (downstream, upstream) = (ticked(&form.downstream), ticked(&form.upstream));
    let reach = p.relatives(&[root], upstream, downstream);
    let parallelism = state.registry.deployment.parallelism;
    let done = match action.as_str() {
        "clear" => {
            let instances = match state.store.task_instances(run.id).await {
                Ok(instances) => instances,
                Err(e) => return store_error(e),
            };
            let only = if ticked(&form.only_failed) { Only::Failed } else { Only::Any };
            let ids = clearable(p, &reach, &instances, only);
            if !ticked(&form.confirm) {
                return render(
                    "clear.html",
                    with(
                        page_context(&session),
                        context! {
                            dag_id, run_path => encode(&run_id, b""), run_id, task_id,
                            ids => v(&ids),
                            downstream, upstream, only_failed => only == Only::Failed,
                        },
                    ),
                );
            }
            store.clear_tasks(p, run.id, &ids).await.map(|_| ())
        }
        "mark-success" | "mark-failed" => {
            let to = if action == "mark-success" { TiState::Success } else { TiState::Failed };
            let ids: Vec<&str> = reach.iter().filter_map(|&t| p.tasks.get(t)).map(|t| t.id).collect();
            store.mark_tasks(p, run.id, &ids, to, parallelism).await.map(|_| ())
        }
        _ => return (StatusCode::NOT_FOUND, "unknown action").into_response(),
    };
    if let Err(e) = done {
        return store_error(e);
    }
    state.wake.notify_one();
    Redirect::to(&format!("/dags/{dag_id}/runs/{}/tasks/{task_id}", encode(&run_id, b""))).into_response()
}
