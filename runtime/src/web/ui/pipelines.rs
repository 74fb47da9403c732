//! The pipelines page: the list with its filters, pause/unpause/trigger/delete, and the
//! trigger form's conf.

use super::*;

#[derive(Debug, Deserialize)]
pub(super) struct ListFilter {
    pub(super) search: Option<String>,
    pub(super) tag: Option<String>,
}

/// The schedule in words, as the list shows it: `every day at 06:00 (UTC)`; a cron
/// expression with no common reading is shown as written.
pub(super) fn schedule_words(p: &PipelineSpec) -> String {
    match p.schedule {
        crate::spec::Schedule::Manual => "manual only".into(),
        crate::spec::Schedule::Once => "once".into(),
        crate::spec::Schedule::Datasets(ids) => format!("when updated: {}", ids.join(", ")),
        crate::spec::Schedule::Cron(cron) => {
            let text = cron_words(cron).unwrap_or_else(|| format!("cron `{}`", p.schedule_text));
            format!("{text} ({})", p.timezone)
        }
    }
}

pub(super) fn cron_words(cron: &str) -> Option<String> {
    const DAYS: [&str; 8] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
    let fields: Vec<&str> = cron.split_whitespace().collect();
    let [minute, hour, day, month, weekday] = fields.as_slice() else { return None };
    let number = |f: &str| f.parse::<u32>().ok();
    let at = |h: u32, m: u32| format!("at {h:02}:{m:02}");
    if fields.iter().all(|f| *f == "*") {
        return Some("every minute".into());
    }
    match (number(minute), number(hour), *day, *month, *weekday) {
        (Some(m), Some(h), "*", "*", "*") => Some(format!("every day {}", at(h, m))),
        (Some(m), Some(h), "*", "*", "1-5") => Some(format!("every weekday {}", at(h, m))),
        (Some(m), Some(h), "*", "*", w) => {
            let day = DAYS.get(usize::try_from(number(w)?).ok()?)?;
            Some(format!("every {day} {}", at(h, m)))
        }
        (Some(m), Some(h), d, "*", "*") => Some(format!("on day {} of every month {}", number(d)?, at(h, m))),
        (Some(m), None, "*", "*", "*") if *hour == "*" => Some(format!("every hour at minute {m}")),
        (None, None, "*", "*", "*") if *hour == "*" => {
            let step = minute.strip_prefix("*/").and_then(number)?;
            Some(if step == 1 { "every minute".into() } else { format!("every {step} minutes") })
        }
        _ => None,
    }
}

pub(super) async fn pipelines(
    State(state): State<AppState>,
    session: SignedIn,
    Query(filter): Query<ListFilter>,
) -> Response {
    let rows = match state.store.pipelines().await {
        Ok(rows) => rows,
        Err(e) => return store_error(e),
    };
    let recent = match state.store.recent_runs(5).await {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    let search = filter.search.unwrap_or_default();
    let tag = filter.tag.unwrap_or_default();
    let mut tags: Vec<&str> = state.registry.pipelines.iter().flat_map(|p| p.tags.iter().copied()).collect();
    tags.sort_unstable();
    tags.dedup();
    let list: Vec<Value> = state
        .registry
        .pipelines
        .iter()
        .filter(|p| search.is_empty() || p.id.contains(search.as_str()) || p.description.contains(search.as_str()))
        .filter(|p| tag.is_empty() || p.tags.contains(&tag.as_str()))
        .filter_map(|p| {
            let row = rows.iter().find(|r| r.pipeline_id == p.id && r.is_active)?;
            let runs: Vec<Value> = recent
                .get(p.id)
                .map(|runs| runs.iter().map(|r| json!({ "run_id": r.run_id, "state": r.state })).collect())
                .unwrap_or_default();
            Some(json!({
                "id": p.id,
                "description": p.description,
                "owner": p.owner,
                "paused": row.is_paused,
                "schedule_words": schedule_words(p),
                "next_run": row.next_run_at.map(to_rfc3339),
                "runs": runs,
                "tags": p.tags,
            }))
        })
        .collect();
    render(
        "pipelines.html",
        with(page_context(&session), context! { pipelines => v(&list), search, tag, tags => v(&tags) }),
    )
}

pub(super) async fn pipeline_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((dag_id, action)): Path<(String, String)>,
    CsrfForm { form: fields, store, .. }: CsrfForm<User, HashMap<String, String>>,
) -> Response {
    let Some(p) = state.registry.pipeline(&dag_id) else {
        return (StatusCode::NOT_FOUND, format!("pipeline `{dag_id}` not found")).into_response();
    };
    let done = match action.as_str() {
        "pause" | "unpause" => store.set_paused(p.id, action == "pause").await.map_err(store_error),
        "trigger" => {
            let conf = match trigger_conf(p, &fields) {
                Ok(conf) => conf,
                Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
            };
            let run_id = fields.get("run_id").filter(|id| !id.is_empty()).cloned();
            crate::scheduler::trigger_as(&store, p, conf, None, run_id).await.map(|_| ()).map_err(|e| match e {
                crate::scheduler::TriggerError::Params(m) => (StatusCode::BAD_REQUEST, m).into_response(),
                crate::scheduler::TriggerError::Store(e) => store_error(e),
            })
        }
        _ => return (StatusCode::NOT_FOUND, "unknown action").into_response(),
    };
    if let Err(r) = done {
        return r;
    }
    state.wake.notify_one();
    let back =
        headers.get(header::REFERER).and_then(|r| r.to_str().ok()).filter(|r| r.contains(&format!("/dags/{dag_id}")));
    let target = if back.is_some() { format!("/dags/{dag_id}") } else { "/".to_string() };
    Redirect::to(&target).into_response()
}

/// The conf of a trigger form: `param.<name>` fields, typed by the declared params
/// (an empty field keeps the default).
pub(super) fn trigger_conf(p: &PipelineSpec, fields: &HashMap<String, String>) -> Result<Value, String> {
    let mut conf = serde_json::Map::new();
    for param in p.params {
        let Some(text) = fields.get(&format!("param.{}", param.name)).filter(|t| !t.is_empty()) else { continue };
        let value = match param.ty {
            crate::spec::ValueType::String => Value::String(text.clone()),
            _ => serde_json::from_str(text)
                .map_err(|_| format!("param `{}` must be {:?}: `{text}` is not", param.name, param.ty))?,
        };
        conf.insert(param.name.to_string(), value);
    }
    Ok(Value::Object(conf))
}

#[cfg(test)]
mod tests {
    use super::cron_words;

    #[test]
    fn common_schedules_read_as_words() {
        let words = |cron| cron_words(cron).unwrap_or_else(|| "-".into());
        assert_eq!(words("0 6 * * *"), "every day at 06:00");
        assert_eq!(words("30 2 * * 0"), "every Sunday at 02:30");
        assert_eq!(words("0 9 * * 1-5"), "every weekday at 09:00");
        assert_eq!(words("15 4 1 * *"), "on day 1 of every month at 04:15");
        assert_eq!(words("5 * * * *"), "every hour at minute 5");
        assert_eq!(words("*/15 * * * *"), "every 15 minutes");
        assert_eq!(words("* * * * *"), "every minute");
        assert_eq!(words("0 6 * 1 *"), "-", "anything rarer is shown as written");
    }
}
