//! The audit log page: every change made through the UI, API or CLI, newest first,
//! filtered by pipeline, user and event, a page of 100 at a time.

use super::*;
use crate::store::{AuditFilter, AuditOrder};

/// Rows per page.
const AUDIT_PAGE: i64 = 100;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct AuditQuery {
    dag_id: String,
    owner: String,
    event: String,
    page: u32,
}

fn given(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_string())
}

pub(super) async fn audit_log(
    State(state): State<AppState>,
    session: SignedIn<Op>,
    Query(query): Query<AuditQuery>,
) -> Response {
    let filter = AuditFilter {
        pipeline: given(&query.dag_id),
        owner: given(&query.owner),
        event: given(&query.event),
        ..AuditFilter::default()
    };
    let offset = i64::from(query.page) * AUDIT_PAGE;
    let (rows, total) = match state.store.audit_log(&filter, (AuditOrder::Id, false), AUDIT_PAGE, offset).await {
        Ok(found) => found,
        Err(e) => return store_error(e),
    };
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            let extra: Value = serde_json::from_str(&r.extra).unwrap_or_default();
            let details: Vec<String> = extra
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| *k != "surface" && *k != "from")
                .map(|(k, v)| format!("{k}: {}", v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                .collect();
            json!({
                "id": r.id,
                "when": to_rfc3339(r.at),
                "event": r.event,
                "owner": r.owner,
                "surface": r.surface,
                "origin": r.origin,
                "dag_id": r.pipeline_id,
                "run_id": r.run_id,
                "task_id": r.task_id,
                "details": details.join(", "),
            })
        })
        .collect();
    // The filter as a query string, for the paging links.
    let filter_query = form_urlencoded::Serializer::new(String::new())
        .append_pair("dag_id", &query.dag_id)
        .append_pair("owner", &query.owner)
        .append_pair("event", &query.event)
        .finish();
    let next = (offset + AUDIT_PAGE < total).then_some(query.page + 1);
    let previous = query.page.checked_sub(1);
    render(
        "audit.html",
        with(
            page_context(&session),
            context! {
                rows => v(rows),
                total,
                dag_id => query.dag_id,
                owner => query.owner,
                event => query.event,
                pipelines => v(state.registry.pipelines.iter().map(|p| p.id).collect::<Vec<_>>()),
                filter_query,
                next,
                previous,
            },
        ),
    )
}
