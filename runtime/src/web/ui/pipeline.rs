//! One pipeline: its graph (states of the latest run), its runs and their task instances.

use super::*;

/// Layered layout of the task graph: a column per depth, a row per task in its column, in
/// declaration order. Depths and upstream indices are compiled, so the layout is linear in
/// tasks and edges: the page reloads every two seconds while a run is active.
pub(super) fn graph(p: &PipelineSpec, states: &HashMap<String, String>) -> Value {
    let (w, gap_x, gap_y) = (160, 40, 44);
    let mut rows_in: Vec<usize> = Vec::new();
    let pos: Vec<(usize, usize)> = p
        .tasks
        .iter()
        .map(|t| {
            let d = t.depth as usize;
            if rows_in.len() <= d {
                rows_in.resize(d + 1, 0);
            }
            let row = rows_in[d];
            rows_in[d] += 1;
            (10 + d * (w + gap_x), 10 + row * gap_y)
        })
        .collect();
    let nodes: Vec<Value> = p
        .tasks
        .iter()
        .zip(&pos)
        .map(|(t, (x, y))| {
            json!({ "id": t.id, "x": x, "y": y, "w": w, "state": states.get(t.id).map_or("none", String::as_str) })
        })
        .collect();
    let edges: Vec<Value> = p
        .tasks
        .iter()
        .zip(&pos)
        .flat_map(|(t, to)| t.upstream.iter().filter_map(|&u| pos.get(u as usize)).map(move |from| (from, to)))
        .map(|((x1, y1), (x2, y2))| json!({ "x1": x1 + w, "y1": y1 + 14, "x2": x2, "y2": y2 + 14 }))
        .collect();
    let width = pos.iter().map(|(x, _)| x + w + 10).max().unwrap_or(200);
    let height = pos.iter().map(|(_, y)| y + 40).max().unwrap_or(60);
    json!({ "nodes": nodes, "edges": edges, "width": width, "height": height })
}

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
    let mut run_views = Vec::new();
    let mut latest: Option<(&RunRow, Vec<TiRow>)> = None;
    for run in &runs {
        let tis = match state.store.task_instances(run.id).await {
            Ok(tis) => tis,
            Err(e) => return store_error(e),
        };
        let by_task: BTreeMap<String, Value> =
            tis.iter().map(|ti| (ti.task_id.clone(), json!({ "state": ti_state(ti) }))).collect();
        run_views.push(json!({
            "run_id": run.run_id,
            "run_path": encode(&run.run_id, b""),
            "state": run.state,
            "tis": by_task,
        }));
        if latest.is_none() {
            latest = Some((run, tis));
        }
    }
    let states: HashMap<String, String> = latest
        .as_ref()
        .map(|(_, tis)| tis.iter().map(|ti| (ti.task_id.clone(), ti_state(ti).to_string())).collect())
        .unwrap_or_default();
    let gantt: Vec<Value> = latest
        .as_ref()
        .map(|(run, tis)| {
            let start = run.start_date.unwrap_or(0);
            let end = tis.iter().filter_map(|t| t.end_date).max().unwrap_or(start).max(start + 1);
            let scale = 460.0 / (end - start) as f64;
            tis.iter()
                .filter_map(|ti| {
                    let (s, e) = (ti.start_date?, ti.end_date.unwrap_or(end));
                    Some(json!({
                        "id": ti.task_id,
                        "x": ((s - start) as f64 * scale) as i64,
                        "w": (((e - s) as f64 * scale) as i64).max(2),
                        "secs": format!("{:.2}", (e - s) as f64 / 1e6),
                        "state": ti_state(ti),
                    }))
                })
                .collect()
        })
        .unwrap_or_default();
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
    let tasks: Vec<&str> = p.tasks.iter().map(|t| t.id).collect();
    render(
        "pipeline.html",
        with(
            page_context(&session),
            context! {
                p => v(&view),
                runs => v(&run_views),
                tasks => v(&tasks),
                params => v(&params),
                graph => v(graph(p, &states)),
                gantt => v(&gantt),
                latest => latest.map(|(r, _)| r.run_id.clone()),
                refresh => active,
            },
        ),
    )
}
