//! One pipeline: its runs and their task instances in the grid, where any run can be
//! picked (`?run=<run id>`, the latest by default) to see its graph, durations, note and
//! actions; the version it runs and the block of `pipelines.yaml` it came from. The grid,
//! graph and durations are drawn by [`super::drawing`].

use super::drawing::{self, GridRun};
use super::*;

pub(super) fn ti_state(ti: &TiRow) -> &'static str {
    ti.state.as_str()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct PipelineQuery {
    /// The run picked in the grid.
    run: Option<String>,
}

pub(super) async fn pipeline(
    State(state): State<AppState>,
    session: SignedIn,
    Path(dag_id): Path<String>,
    Query(query): Query<PipelineQuery>,
) -> Response {
    let Some(p) = state.registry.pipeline(&dag_id) else {
        return (StatusCode::NOT_FOUND, format!("pipeline `{dag_id}` not found")).into_response();
    };
    let row = match state.store.pipeline(p.id).await {
        Ok(row) => row,
        Err(e) => return store_error(e),
    };
    let mut runs = match state.store.runs(p.id, 25).await {
        Ok(runs) => runs,
        Err(e) => return store_error(e),
    };
    // A picked run older than the grid's runs joins them, at the end.
    if let Some(wanted) = query.run.as_deref().filter(|w| !runs.iter().any(|r| r.run_id == *w)) {
        match state.store.run_by_id(p.id, wanted).await {
            Ok(run) => runs.push(run),
            Err(e) => return store_error(e),
        }
    }
    let picked = query.run.as_deref().and_then(|w| runs.iter().position(|r| r.run_id == w)).unwrap_or(0);
    let mut run_tis: Vec<Vec<TiRow>> = Vec::with_capacity(runs.len());
    for run in &runs {
        match state.store.task_instances(run.id).await {
            Ok(tis) => run_tis.push(tis),
            Err(e) => return store_error(e),
        }
    }
    let grid_runs: Vec<GridRun<'_>> = runs
        .iter()
        .zip(&run_tis)
        .map(|(run, tis)| GridRun { run, states: tis.iter().map(|ti| (ti.task_id.as_str(), ti_state(ti))).collect() })
        .collect();
    let shown = runs.get(picked).zip(run_tis.get(picked));
    let no_states = HashMap::new();
    let graph = drawing::graph(p, grid_runs.get(picked).map_or(&no_states, |r| &r.states));
    let gantt = shown.and_then(|(run, tis)| drawing::gantt(run, tis));
    let run_view = shown.map(|(run, _)| {
        json!({
            "run_id": run.run_id,
            "path": encode(&run.run_id, b""),
            "state": run.state.as_str(),
            "run_type": run.run_type.as_str(),
            "logical_date": to_rfc3339(run.logical_date),
            "start_date": run.start_date.map(to_rfc3339),
            "end_date": run.end_date.map(to_rfc3339),
            "note": run.note,
            "finished": !run.state.is_active(),
        })
    });
    let now = state.store.now();
    let since = now - drawing::CALENDAR_DAYS * 86_400_000_000;
    let calendar = match state.store.runs_between(p.id, Some(since), None).await {
        Ok(days) => drawing::calendar(&days, now),
        Err(e) => return store_error(e),
    };
    let source = state
        .registry
        .source(p.id)
        .map(|s| json!({ "file": s.file, "line": s.line, "yaml": s.yaml, "warnings": s.warnings.len() }));
    let active = runs.iter().any(|r| r.state.is_active());
    let params: Vec<Value> = p
        .params
        .iter()
        .map(|param| {
            let default = param.default_json.map(|d| match serde_json::from_str::<Value>(d) {
                Ok(Value::String(s)) => s,
                _ => d.to_string(),
            });
            json!({ "name": param.name, "ty": format!("{:?}", param.ty).to_lowercase(), "default": default })
        })
        .collect();
    let view = json!({
        "id": p.id,
        "description": p.description,
        "paused": row.is_paused,
        "schedule_words": schedule_words(p),
        "version_hash": p.version_hash,
    });
    render(
        "pipeline.html",
        with(
            page_context(&session),
            context! {
                p => v(&view),
                params => v(&params),
                grid => minijinja::Value::from_safe_string(drawing::grid(p, &grid_runs, picked)),
                graph => minijinja::Value::from_safe_string(graph),
                gantt => gantt.map(minijinja::Value::from_safe_string),
                run => v(run_view),
                calendar => minijinja::Value::from_safe_string(calendar),
                source => v(source),
                refresh => active,
            },
        ),
    )
}
