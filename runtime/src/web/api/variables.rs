//! `/variables`: Airflow's variable CRUD; secret values never come back.

use super::*;

pub(super) const MASK: &str = "***";

pub(super) async fn list_variables(
    State(state): State<AppState>,
    caller: Caller,
    Params(page): Params<Page>,
) -> ApiResult {
    caller.require(Role::Op)?;
    let all: Vec<Value> = state
        .store
        .variable_infos()
        .await?
        .iter()
        .map(|v| {
            let value = if v.secret { MASK.to_string() } else { v.value.clone().unwrap_or_default() };
            json!({ "key": v.key, "value": value, "description": v.description })
        })
        .collect();
    ok(json!({ "variables": page.slice(&all)?, "total_entries": all.len() }))
}

pub(super) async fn get_variable(State(state): State<AppState>, caller: Caller, Path(key): Path<String>) -> ApiResult {
    caller.require(Role::Op)?;
    let info = state.store.variable_infos().await?.into_iter().find(|v| v.key == key);
    let info = info.ok_or_else(|| Problem::not_found(format!("variable `{key}` not found")))?;
    let value = match info.value {
        Some(value) if !info.secret => value,
        _ => MASK.to_string(),
    };
    ok(json!({ "key": info.key, "value": value, "description": info.description }))
}

pub(super) fn variable_fields(body: &Map<String, Value>) -> Result<(String, String, Option<String>), Problem> {
    let key = body.get("key").and_then(Value::as_str).filter(|k| !k.is_empty());
    let key = key.ok_or_else(|| Problem::bad_request("give `key`"))?.to_string();
    let value = match body.get("value") {
        Some(Value::String(v)) => v.clone(),
        _ => return Err(Problem::bad_request("give `value` as a string")),
    };
    let description = body.get("description").and_then(Value::as_str).map(str::to_string);
    Ok((key, value, description))
}

pub(super) async fn post_variable(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult {
    caller.require(Role::Op)?;
    let (key, value, description) = variable_fields(&body)?;
    let secret = is_secret_key(&key);
    caller.store(&state).set_variable(&key, &value, secret, description.as_deref(), crypto(&state)?).await?;
    get_variable(State(state), caller, Path(key)).await
}

pub(super) async fn patch_variable(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult {
    caller.require(Role::Op)?;
    let (body_key, value, description) = variable_fields(&body)?;
    if body_key != key {
        return Err(Problem::bad_request("the body's `key` must match the path"));
    }
    if !state.store.variable_infos().await?.iter().any(|v| v.key == key) {
        return Err(Problem::not_found(format!("variable `{key}` not found")));
    }
    caller
        .store(&state)
        .set_variable(&key, &value, is_secret_key(&key), description.as_deref(), crypto(&state)?)
        .await?;
    get_variable(State(state), caller, Path(key)).await
}

pub(super) async fn delete_variable(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> ApiResult {
    caller.require(Role::Op)?;
    caller.store(&state).delete_variable(&key).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
