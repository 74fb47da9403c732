//! One task instance: its tries, the page of its log, its rendered templates and outputs,
//! and the operator's actions on it.

use super::*;

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

pub(super) async fn task_action(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id, action)): Path<(String, String, String, String)>,
    CsrfForm { store, .. }: CsrfForm<User>,
) -> Response {
    let Some(p) = state.registry.pipeline(&dag_id) else {
        return (StatusCode::NOT_FOUND, format!("pipeline `{dag_id}` not found")).into_response();
    };
    let run = match state.store.run_by_id(&dag_id, &run_id).await {
        Ok(run) => run,
        Err(e) => return store_error(e),
    };
    let parallelism = state.registry.deployment.parallelism;
    let done = match action.as_str() {
        "clear" => store.clear_task(p, run.id, &task_id, false).await.map(|_| ()),
        "mark-success" => store.mark_task(p, run.id, &task_id, TiState::Success, parallelism).await.map(|_| ()),
        "mark-failed" => store.mark_task(p, run.id, &task_id, TiState::Failed, parallelism).await.map(|_| ()),
        _ => return (StatusCode::NOT_FOUND, "unknown action").into_response(),
    };
    if let Err(e) = done {
        return store_error(e);
    }
    state.wake.notify_one();
    Redirect::to(&format!("/dags/{dag_id}/runs/{}/tasks/{task_id}", encode(&run_id, b""))).into_response()
}
