//! `/pools`: Airflow's pool CRUD.

use super::*;

pub(super) async fn pools_json(state: &AppState) -> Result<Vec<Value>, Problem> {
    Ok(state
        .store
        .pool_usage()
        .await?
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "slots": p.slots,
                "occupied_slots": p.running + p.queued,
                "running_slots": p.running,
                "queued_slots": p.queued,
                "scheduled_slots": 0,
                "deferred_slots": 0,
                "open_slots": p.slots - p.running - p.queued,
                "description": if p.description.is_empty() { Value::Null } else { p.description.clone().into() },
                "include_deferred": false,
            })
        })
        .collect())
}

pub(super) async fn list_pools(
    State(state): State<AppState>,
    _caller: Caller,
    Params(page): Params<Page>,
) -> ApiResult {
    let all = pools_json(&state).await?;
    ok(json!({ "pools": page.slice(&all)?, "total_entries": all.len() }))
}

pub(super) async fn get_pool(State(state): State<AppState>, _caller: Caller, Path(name): Path<String>) -> ApiResult {
    let all = pools_json(&state).await?;
    let pool = all.into_iter().find(|p| p["name"] == name.as_str());
    ok(pool.ok_or_else(|| Problem::not_found(format!("pool `{name}` not found")))?)
}

/// `slots` and `description` of a pool body; `current` fills what a PATCH leaves out.
pub(super) fn pool_fields(body: &Map<String, Value>, current: Option<(i64, String)>) -> Result<(i64, String), Problem> {
    let slots = match (body.get("slots"), &current) {
        (Some(v), _) => {
            v.as_i64().filter(|n| *n >= 0).ok_or_else(|| Problem::bad_request("`slots` must be 0 or more"))?
        }
        (None, Some((slots, _))) => *slots,
        (None, None) => return Err(Problem::bad_request("give `slots`")),
    };
    let description = match (body.get("description"), current) {
        (Some(Value::String(d)), _) => d.clone(),
        (Some(Value::Null) | None, Some((_, d))) => d,
        (Some(Value::Null) | None, None) => String::new(),
        (Some(_), _) => return Err(Problem::bad_request("`description` must be a string")),
    };
    Ok((slots, description))
}

pub(super) async fn post_pool(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult {
    caller.require(Role::Op)?;
    let name = body.get("name").and_then(Value::as_str).filter(|n| !n.trim().is_empty());
    let name = name.ok_or_else(|| Problem::bad_request("give `name`"))?.to_string();
    if state.store.pool_usage().await?.iter().any(|p| p.name == name) {
        return Err(Problem::conflict(format!("pool `{name}` exists already")));
    }
    let (slots, description) = pool_fields(&body, None)?;
    caller.store(&state).upsert_pool(&name, slots, &description).await?;
    get_pool(State(state), caller, Path(name)).await
}

pub(super) async fn patch_pool(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult {
    caller.require(Role::Op)?;
    let current = state.store.pool_usage().await?.into_iter().find(|p| p.name == name);
    let current = current.ok_or_else(|| Problem::not_found(format!("pool `{name}` not found")))?;
    if body.get("name").and_then(Value::as_str).is_some_and(|n| n != name) {
        return Err(Problem::bad_request("a pool cannot be renamed"));
    }
    let (slots, description) = pool_fields(&body, Some((current.slots, current.description)))?;
    caller.store(&state).upsert_pool(&name, slots, &description).await?;
    get_pool(State(state), caller, Path(name)).await
}

pub(super) async fn delete_pool(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult {
    caller.require(Role::Op)?;
    if name == sluice_contract::defaults::POOL {
        // As Airflow answers it: a bad request, not a conflict.
        return Err(Problem::bad_request("`default_pool` cannot be deleted"));
    }
    caller.store(&state).delete_pool(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
