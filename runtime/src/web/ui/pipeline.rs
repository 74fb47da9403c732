//! One pipeline: its graph (states of the latest run), its runs and their task instances;
//! the grid, graph and durations are drawn by [`super::drawing`].

use super::drawing::{self, GridRun};
use super::*;

pub(super) fn ti_state(ti: &TiRow) -> &'static str {
    ti.state.as_str()
}

pub(super) async fn pipeline(State(state): State<AppState>, session: SignedIn, Path(dag_id): Path<String>) -> Response {
    let Some(p) = state.registry.pipeline(&dag_id) else {
        return (StatusCode::NOT_FOUND, format!("pipeline `{dag_id}` not found")).into_response();
    };
    let row = match state.store.pipeline(p.id).await {
        Ok(row) => row,
        Err(e) => return store_error(e),
    };
    let runs = match state.store.runs(p.id, 25).await {
        Ok(runs) => runs,
        Err(e) => return store_error(e),
    };
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
    let latest = runs.first().zip(run_tis.first());
    let no_states = HashMap::new();
    let graph = drawing::graph(p, grid_runs.first().map_or(&no_states, |r| &r.states));
    let gantt = latest.and_then(|(run, tis)| drawing::gantt(run, tis));
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
    });
    render(
        "pipeline.html",
        with(
            page_context(&session),
            context! {
                p => v(&view),
                params => v(&params),
                grid => minijinja::Value::from_safe_string(drawing::grid(p, &grid_runs)),
                graph => minijinja::Value::from_safe_string(graph),
                gantt => gantt.map(minijinja::Value::from_safe_string),
                latest => latest.map(|(r, _)| r.run_id.clone()),
                refresh => active,
            },
        ),
    )
}
