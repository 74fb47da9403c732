//! Task instances of a run: list, one, and their logs (paged).

use super::*;

pub(super) fn task_instance_json(p: &PipelineSpec, run: &RunRow, ti: &TiRow) -> Value {
    let duration = match (ti.start_date, ti.end_date) {
        (Some(start), Some(end)) => json!((end - start) as f64 / 1e6),
        _ => Value::Null,
    };
    let kind = p.task(&ti.task_id).map_or("removed", |t| operator(&t.kind));
    json!({
        "task_id": ti.task_id,
        "task_display_name": ti.task_id,
        "dag_id": run.pipeline_id,
        "dag_run_id": run.run_id,
        "execution_date": to_rfc3339(run.logical_date),
        "start_date": date(ti.start_date),
        "end_date": date(ti.end_date),
        "duration": duration,
        "state": if ti.state == TiState::None { Value::Null } else { ti.state.as_str().into() },
        "try_number": ti.try_number,
        "map_index": -1,
        "max_tries": (ti.max_tries - 1).max(0),
        "hostname": ti.worker.clone().unwrap_or_default(),
        "unixname": "sluice",
        "pool": ti.pool,
        "pool_slots": ti.pool_slots,
        "queue": ti.queue,
        "priority_weight": ti.priority_weight,
        "operator": kind,
        "queued_when": date(ti.queued_at),
        "pid": null,
        "executor": null,
        "executor_config": "{}",
        "rendered_map_index": null,
        "rendered_fields": {},
        "note": ti.note,
    })
}

/// The task instances of a run, or across runs and pipelines (`~`), by Airflow's filters.
pub(super) async fn list_task_instances(
    State(state): State<AppState>,
    _caller: Caller,
    Path((dag_id, run_id)): Path<(String, String)>,
    query: ListQuery,
) -> ApiResult {
    // A list is a filter, as in Airflow: an unknown pipeline or run lists nothing.
    let page = query.page()?;
    search_task_instances(&state, &query.task_instances(&dag_id, &run_id)?, &page).await
}

/// `POST /dags/~/dagRuns/~/taskInstances/list`: the task instances a
/// `ListTaskInstanceForm` asks for.
pub(super) async fn list_task_instances_batch(
    State(state): State<AppState>,
    _caller: Caller,
    Body(form): Body<ListTasksForm>,
) -> ApiResult {
    search_task_instances(&state, &form.filter()?, &form.page()).await
}

async fn search_task_instances(state: &AppState, filter: &crate::store::TiFilter, page: &Page) -> ApiResult {
    let (found, total) = state.store.search_task_instances(filter, page.limit()?, page.offset()?).await?;
    let listed: Vec<Value> = found
        .iter()
        .filter_map(|(run, ti)| Some(task_instance_json(state.registry.pipeline(&run.pipeline_id)?, run, ti)))
        .collect();
    ok(json!({ "task_instances": listed, "total_entries": total }))
}

pub(super) async fn find_task_instance(
    state: &AppState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> Result<(RunRow, TiRow), Problem> {
    let run = state.store.run_by_id(dag_id, run_id).await?;
    let ti = state.store.task_instances(run.id).await?.into_iter().find(|t| t.task_id == task_id);
    let ti = ti.ok_or_else(|| Problem::not_found(format!("task instance `{task_id}` of run `{run_id}` not found")))?;
    Ok((run, ti))
}

pub(super) async fn get_task_instance(
    State(state): State<AppState>,
    _caller: Caller,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
) -> ApiResult {
    let p = pipeline(&state, &dag_id)?;
    let (run, ti) = find_task_instance(&state, &dag_id, &run_id, &task_id).await?;
    let mut json = task_instance_json(p, &run, &ti);
    json["rendered_fields"] = json!(state.store.rendered(ti.id, ti.try_number).await?);
    ok(json)
}

/// The query of `get_log`, as text: each value is checked here, so a bad one is a 400
/// problem naming it rather than axum's plain-text rejection.
#[derive(Debug, Deserialize)]
pub(super) struct LogQuery {
    pub(super) full_content: Option<String>,
    pub(super) token: Option<String>,
    pub(super) map_index: Option<String>,
}

/// A try's log, as Airflow serves it:
/// - JSON (the default): one page ([`PageSize::DEFAULT`]: 1,000 lines or 1 MiB) from the
///   start, or from where `token` says, with the `continuation_token` of the next page. At
///   the end of what is stored the page is empty and the token stays put, so a client can
///   poll a running try with it.
/// - JSON with `full_content=true`: everything from there on, streamed page by page from
///   the store, never built in memory (what is stored is bounded by the try's log cap).
/// - `Accept: text/plain`: the lines from there on, streamed the same way (Airflow streams
///   its text form too).
///
/// Tasks are never mapped: `map_index` may only be -1, Airflow's index of an unmapped task.
pub(super) async fn get_log(
    State(state): State<AppState>,
    _caller: Caller,
    Path((dag_id, run_id, task_id, try_number)): Path<(String, String, String, i64)>,
    Params(query): Params<LogQuery>,
    headers: axum::http::HeaderMap,
) -> ApiResult {
    pipeline(&state, &dag_id)?;
    let full_content = match query.full_content.as_deref() {
        None | Some("false" | "False" | "0") => false,
        Some("true" | "True" | "1") => true,
        Some(other) => return Err(Problem::bad_request(format!("full_content must be true or false, not `{other}`"))),
    };
    let (_, ti) = find_task_instance(&state, &dag_id, &run_id, &task_id).await?;
    if let Some(index) = &query.map_index {
        match index.parse::<i64>() {
            Ok(n) => super::task_history::unmapped(&task_id, n)?,
            Err(_) => return Err(Problem::bad_request(format!("map_index must be an integer, not `{index}`"))),
        }
    }
    if try_number < 1 || try_number > ti.try_number.max(1) {
        return Err(Problem::not_found(format!(
            "task `{task_id}` has no try {try_number} (it has had {})",
            ti.try_number
        )));
    }
    let after = match &query.token {
        None => 0,
        Some(token) => {
            LogToken::decode(token, ti.id, try_number).map_err(|e| Problem::bad_request(e.to_string()))?.after
        }
    };
    let wants_text = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/plain") && !a.contains("application/json"));
    let log = LogCursor { store: state.store.clone(), ti_id: ti.id, try_number };
    if wants_text {
        let body = log.stream(after, Wrap::Text);
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response());
    }
    if full_content {
        let body = log.stream(after, Wrap::Json);
        return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
    }
    let page = state.store.log_page(ti.id, try_number, LogFrom::After(after), PageSize::DEFAULT).await?;
    let next = page.last().map_or(after, |row| row.id);
    ok(json!({ "content": text_of(&page), "continuation_token": log.token(next) }))
}

/// The log of one try, read from the store.
#[derive(Clone)]
pub(super) struct LogCursor {
    pub(super) store: crate::store::Store,
    pub(super) ti_id: i64,
    pub(super) try_number: i64,
}

/// How a streamed log is wrapped: plain lines, or Airflow's JSON object.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Wrap {
    Text,
    Json,
}

/// Where a streamed log is: before its first byte, reading after a line id, or done.
pub(super) enum Step {
    Open,
    Lines(i64),
    Close(i64),
    Done,
}

impl LogCursor {
    fn token(&self, after: i64) -> String {
        LogToken { ti_id: self.ti_id, try_number: self.try_number, after }.encode()
    }

    /// The lines after `after`, page by page from the store as the client reads them: one
    /// page is in memory at a time. A store failure midway ends the answer unfinished
    /// (the client sees a broken transfer, not a log that looks complete).
    fn stream(self, after: i64, wrap: Wrap) -> axum::body::Body {
        let steps = futures_util::stream::try_unfold(Step::Open, move |step| {
            let log = self.clone();
            async move {
                let (chunk, next) = match step {
                    Step::Open => {
                        let open = if wrap == Wrap::Json { r#"{"content": ""# } else { "" };
                        (open.to_string(), Step::Lines(after))
                    }
                    Step::Lines(from) => {
                        let page = log
                            .store
                            .log_page(log.ti_id, log.try_number, LogFrom::After(from), PageSize::DEFAULT)
                            .await?;
                        match page.last().map(|row| row.id) {
                            None => (String::new(), Step::Close(from)),
                            Some(last) => {
                                let text = text_of(&page);
                                let chunk = match wrap {
                                    Wrap::Text => text,
                                    Wrap::Json => json_string_body(&text),
                                };
                                (chunk, Step::Lines(last))
                            }
                        }
                    }
                    Step::Close(last) => {
                        let close = match wrap {
                            Wrap::Text => String::new(),
                            Wrap::Json => format!(r#"", "continuation_token": "{}"}}"#, log.token(last)),
                        };
                        (close, Step::Done)
                    }
                    Step::Done => return Ok::<_, crate::store::StoreError>(None),
                };
                Ok(Some((axum::body::Bytes::from(chunk), next)))
            }
        });
        axum::body::Body::from_stream(steps)
    }
}

/// Lines as Airflow's `content`: each ends with a newline.
pub(super) fn text_of(rows: &[crate::store::LogRow]) -> String {
    let mut text = String::with_capacity(rows.iter().map(|r| r.line.len() + 1).sum());
    for row in rows {
        text.push_str(&row.line);
        text.push('\n');
    }
    text
}

/// `text` escaped as the inside of a JSON string (without its quotes), for a JSON body
/// written in pieces.
pub(super) fn json_string_body(text: &str) -> String {
    let quoted = Value::String(text.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// Writes an operator's note on a task instance (role User) and answers the instance.
pub(super) async fn set_task_instance_note(
    State(state): State<AppState>,
    caller: Caller,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Body(body): Body<super::dag_runs::Note>,
) -> ApiResult {
    caller.require(Role::User)?;
    let p = pipeline(&state, &dag_id)?;
    let (run, ti) = find_task_instance(&state, &dag_id, &run_id, &task_id).await?;
    caller.store(&state).set_task_note(ti.id, body.checked()?).await?;
    let (run, ti) = find_task_instance(&state, &dag_id, &run.run_id, &ti.task_id).await?;
    ok(task_instance_json(p, &run, &ti))
}

pub(super) async fn set_mapped_task_instance_note(
    State(state): State<AppState>,
    caller: Caller,
    Path((dag_id, run_id, task_id, map_index)): Path<(String, String, String, i64)>,
    body: Body<super::dag_runs::Note>,
) -> ApiResult {
    super::task_history::unmapped(&task_id, map_index)?;
    set_task_instance_note(State(state), caller, Path((dag_id, run_id, task_id)), body).await
}
