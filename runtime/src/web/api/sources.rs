//! `dagSources` and `dagWarnings`: what the compiler read. A pipeline's file token is its
//! id (as `file_token` in the DAG answers says); its source is its block of the pipelines
//! file with the Rust paths of its task bodies, and its warnings are the compiler's
//! warnings inside that block, dated when its current version was first synced.

use super::*;
use crate::spec::PipelineSource;

/// The text `dagSources` answers: the YAML block as written, then where the Rust bodies
/// are, as YAML comments so the whole stays valid YAML.
pub(super) fn source_text(source: &PipelineSource) -> String {
    let mut text = format!("# {}, line {}\n{}", source.file, source.line, source.yaml);
    if !source.bodies.is_empty() {
        text.push_str("# Rust task bodies:\n");
        for (task, path) in source.bodies {
            text.push_str(&format!("#   {task}: {path}\n"));
        }
    }
    text
}

/// How the caller wants the source: plain text (Airflow's first choice), JSON, or neither.
fn wants_json(headers: &axum::http::HeaderMap) -> Result<bool, Problem> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("*/*");
    for range in accept.split(',').map(|r| r.split(';').next().unwrap_or_default().trim()) {
        match range {
            "text/plain" | "text/*" | "*/*" | "" => return Ok(false),
            "application/json" | "application/*" => return Ok(true),
            _ => {}
        }
    }
    Err(Problem::new(StatusCode::NOT_ACCEPTABLE, "a pipeline's source is served as text/plain or application/json"))
}

pub(super) async fn get_dag_source(
    State(state): State<AppState>,
    _caller: Caller,
    headers: axum::http::HeaderMap,
    Path(file_token): Path<String>,
) -> ApiResult {
    let json = wants_json(&headers)?;
    let source = state
        .registry
        .source(&file_token)
        .ok_or_else(|| Problem::not_found(format!("file token `{file_token}` names no pipeline")))?;
    let text = source_text(source);
    if json {
        ok(json!({ "content": text }))
    } else {
        Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct WarningQuery {
    dag_id: Option<String>,
    warning_type: Option<String>,
    order_by: Option<String>,
    #[serde(default, deserialize_with = "super::saturating")]
    limit: Option<i64>,
    #[serde(default, deserialize_with = "super::saturating")]
    offset: Option<i64>,
}

pub(super) async fn list_dag_warnings(
    State(state): State<AppState>,
    _caller: Caller,
    Params(query): Params<WarningQuery>,
) -> ApiResult {
    let synced = state.store.versions_synced_at().await?;
    let mut warnings: Vec<(&str, &str, String, Value)> = state
        .registry
        .sources
        .iter()
        .filter(|s| query.dag_id.as_deref().is_none_or(|id| id == s.pipeline))
        .flat_map(|s| {
            let at = date(synced.get(s.pipeline).copied());
            s.warnings.iter().map(move |w| {
                let message = format!("{}:{}:{}: {}", s.file, w.line, w.col, w.message);
                (s.pipeline, w.code, message, at.clone())
            })
        })
        .filter(|(_, code, _, _)| query.warning_type.as_deref().is_none_or(|t| t == *code))
        .collect();
    let order_by = query.order_by.as_deref().filter(|o| !o.is_empty()).unwrap_or("dag_id");
    let (descending, field) = match order_by.strip_prefix('-') {
        Some(field) => (true, field),
        None => (false, order_by),
    };
    match field {
        "dag_id" => warnings.sort_by(|a, b| a.0.cmp(b.0)),
        "warning_type" => warnings.sort_by(|a, b| a.1.cmp(b.1)),
        "message" => warnings.sort_by(|a, b| a.2.cmp(&b.2)),
        "timestamp" => warnings.sort_by(|a, b| a.3.as_str().cmp(&b.3.as_str())),
        other => {
            return Err(Problem::bad_request(format!(
                "cannot order DAG warnings by `{other}`: use dag_id, warning_type, message or timestamp"
            )));
        }
    }
    if descending {
        warnings.reverse();
    }
    let all: Vec<Value> = warnings
        .into_iter()
        .map(|(dag_id, code, message, at)| {
            json!({ "dag_id": dag_id, "warning_type": code, "message": message, "timestamp": at })
        })
        .collect();
    let page = Page { limit: query.limit, offset: query.offset };
    ok(json!({ "dag_warnings": page.slice(&all)?, "total_entries": all.len() }))
}
