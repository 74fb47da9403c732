//! `/eventLogs`: the audit log, in Airflow's `EventLog` shape, for Ops and Admins (the
//! `Audit Logs` grant: it names users and their addresses). `extra` is the change's
//! details as JSON, with `surface` (api, ui, cli) and `from` (the client's address, or the
//! CLI's host).

use super::*;
use crate::store::{AuditFilter, AuditOrder, AuditRow};

fn event_log_json(row: &AuditRow) -> Value {
    json!({
        "event_log_id": row.id,
        "when": to_rfc3339(row.at),
        "dag_id": row.pipeline_id,
        "task_id": row.task_id,
        "run_id": row.run_id,
        "map_index": row.map_index,
        "try_number": row.try_number,
        "event": row.event,
        "execution_date": Value::Null,
        "owner": row.owner,
        "extra": row.extra,
    })
}

impl ListQuery {
    /// The records an `/eventLogs` query asks for, and their order (Airflow's default:
    /// oldest first, by id).
    fn event_logs(&self) -> Result<(AuditFilter, (AuditOrder, bool)), Problem> {
        let text = |key: &str| self.one(key).map(str::to_string);
        let names = |key: &str| {
            self.one(key).map(|v| v.split(',').map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect())
        };
        let at = |key: &str| -> Result<Option<Micros>, Problem> {
            self.one(key)
                .map(|v| {
                    parse_datetime(v)
                        .ok_or_else(|| Problem::bad_request(format!("`{key}` is not an RFC 3339 date-time: `{v}`")))
                })
                .transpose()
        };
        let filter = AuditFilter {
            pipeline: text("dag_id"),
            run_id: text("run_id"),
            task: text("task_id"),
            map_index: self.number("map_index")?,
            try_number: self.number("try_number")?,
            event: text("event"),
            owner: text("owner"),
            included_events: names("included_events"),
            excluded_events: names("excluded_events"),
            at: (at("after")?, at("before")?),
        };
        let order_by = self.one("order_by").unwrap_or("event_log_id");
        let (ascending, field) = match order_by.strip_prefix('-') {
            Some(field) => (false, field),
            None => (true, order_by),
        };
        let order = match field {
            "event_log_id" => AuditOrder::Id,
            "when" => AuditOrder::At,
            "event" => AuditOrder::Event,
            "owner" => AuditOrder::Owner,
            "dag_id" => AuditOrder::Pipeline,
            other => {
                return Err(Problem::bad_request(format!(
                    "cannot order event logs by `{other}`: use event_log_id, when, event, owner or dag_id, \
                     with a leading `-` for descending"
                )));
            }
        };
        Ok((filter, (order, ascending)))
    }
}

pub(super) async fn list_event_logs(State(state): State<AppState>, caller: Caller, query: ListQuery) -> ApiResult {
    caller.require(Role::Op)?;
    let (filter, order) = query.event_logs()?;
    let page = query.page()?;
    let (rows, total) = state.store.audit_log(&filter, order, page.limit()?, page.offset()?).await?;
    ok(json!({
        "event_logs": rows.iter().map(event_log_json).collect::<Vec<_>>(),
        "total_entries": total,
    }))
}

pub(super) async fn get_event_log(State(state): State<AppState>, caller: Caller, Path(id): Path<i64>) -> ApiResult {
    caller.require(Role::Op)?;
    ok(event_log_json(&state.store.audit_entry(id).await?))
}
