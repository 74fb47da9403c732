//! `/connections`: Airflow's connection CRUD; secrets never come back.

use super::*;

/// A connection as Airflow lists it: no password, no extra. Airflow's `schema` is the
/// protocol of an http connection and the database of the others.
pub(super) fn connection_item(c: &Connection) -> Value {
    json!({
        "connection_id": c.id,
        "conn_type": c.conn_type,
        "description": if c.description.is_empty() { Value::Null } else { c.description.clone().into() },
        "host": c.host,
        "login": c.login,
        "schema": if c.conn_type == "http" { &c.schema } else { &c.database },
        "port": c.port,
    })
}

/// One connection: the item and its extra, secret values masked; never the password.
pub(super) fn connection_json(c: &Connection) -> Value {
    let mut item = connection_item(c);
    item["extra"] =
        if c.extra.is_empty() { Value::Null } else { mask_extra(&Value::Object(c.extra.clone())).to_string().into() };
    item
}

pub(super) async fn list_connections(
    State(state): State<AppState>,
    caller: Caller,
    Params(page): Params<Page>,
) -> ApiResult {
    caller.require(Role::Op)?;
    let infos = state.store.connection_infos().await?;
    let all: Vec<Value> = infos
        .iter()
        .map(|c| {
            connection_item(&Connection {
                id: c.id.clone(),
                conn_type: c.conn_type.clone(),
                description: c.description.clone(),
                host: c.host.clone(),
                port: c.port,
                schema: c.schema.clone(),
                database: c.database.clone(),
                login: c.login.clone(),
                ..Connection::default()
            })
        })
        .collect();
    ok(json!({ "connections": page.slice(&all)?, "total_entries": all.len() }))
}

/// A connection from an API body (Airflow's field names), read as Airflow's JSON import.
pub(super) fn connection_from_body(id: &str, mut body: Map<String, Value>) -> Result<Connection, Problem> {
    body.remove("connection_id");
    if let Some(Value::String(extra)) = body.get("extra") {
        let parsed: Value = serde_json::from_str(extra)
            .map_err(|e| Problem::bad_request(format!("`extra` must be a JSON object in a string: {e}")))?;
        body.insert("extra".into(), parsed);
    }
    let text = json!({ id: Value::Object(body) }).to_string();
    let mut conns = crate::connection::import(&text, Format::Json).map_err(|e| Problem::bad_request(e.to_string()))?;
    conns.pop().ok_or_else(|| Problem::bad_request("no connection in the body"))
}

pub(super) async fn post_connection(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult {
    caller.require(Role::Op)?;
    let id = body
        .get("connection_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Problem::bad_request("give `connection_id`"))?
        .to_string();
    let conn = connection_from_body(&id, body)?;
    caller.store(&state).add_connection(&conn, crypto(&state)?).await?;
    ok(connection_json(&conn))
}

pub(super) async fn get_connection(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult {
    caller.require(Role::Op)?;
    let conn = state.store.connection(&id, crypto(&state)?).await?;
    ok(connection_json(&conn))
}

pub(super) async fn patch_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult {
    caller.require(Role::Op)?;
    let crypto = crypto(&state)?;
    state.store.connection(&id, crypto).await?;
    if body.get("connection_id").and_then(Value::as_str).is_some_and(|other| other != id) {
        return Err(Problem::bad_request("`connection_id` cannot be changed"));
    }
    let conn = connection_from_body(&id, body)?;
    caller
        .store(&state)
        .upsert_connection(&conn, crate::store::ConnectionSource::Runtime, crypto)
        .await
        .map_err(declared_is_fixed)?;
    ok(connection_json(&conn))
}

pub(super) async fn delete_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    caller.require(Role::Op)?;
    caller.store(&state).delete_connection(&id).await.map_err(declared_is_fixed)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Tests a connection, given in full or (with only `connection_id`) a stored one, and says
/// whether it answered; a 403 problem unless `SLUICE_TEST_CONNECTION=Enabled`.
pub(super) async fn test_connection(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult {
    caller.require(Role::Op)?;
    if !state.config.connection_tests {
        return Err(Problem::forbidden(format!(
            "testing connections is disabled: set {}=Enabled on the webserver to allow it",
            crate::connection::probe::TEST_CONNECTION
        )));
    }
    let id = body.get("connection_id").and_then(Value::as_str).filter(|id| !id.is_empty()).map(str::to_string);
    let conn = match (body.contains_key("conn_type"), id) {
        (true, id) => connection_from_body(id.as_deref().unwrap_or("connection_test"), body)?,
        (false, Some(id)) => state.store.connection(&id, crypto(&state)?).await?,
        (false, None) => {
            return Err(Problem::bad_request("give `conn_type` and its fields, or a stored `connection_id`"));
        }
    };
    caller
        .store(&state)
        .record(crate::store::Change::new("connection.test").detail("conn_id", conn.id.as_str()))
        .await?;
    let (status, message) = match crate::connection::probe::probe(&conn).await {
        Ok(message) => (true, message),
        Err(message) => (false, message),
    };
    ok(json!({ "status": status, "message": message }))
}

// `/connections/test` is also the path of a connection whose id is `test`: the router
// matches the fixed path first, so its other methods are that connection's.

pub(super) async fn get_connection_test(state: State<AppState>, caller: Caller) -> ApiResult {
    get_connection(state, caller, Path("test".into())).await
}

pub(super) async fn patch_connection_test(
    state: State<AppState>,
    caller: Caller,
    body: Body<Map<String, Value>>,
) -> ApiResult {
    patch_connection(state, caller, Path("test".into()), body).await
}

pub(super) async fn delete_connection_test(state: State<AppState>, caller: Caller) -> ApiResult {
    delete_connection(state, caller, Path("test".into())).await
}

/// A connection declared in `pipelines.yaml` cannot be changed at run time: a 400 (a
/// status Airflow documents for these routes) saying to change the YAML.
fn declared_is_fixed(e: crate::store::StoreError) -> Problem {
    match e {
        crate::store::StoreError::Conflict(why) => Problem::bad_request(why),
        other => other.into(),
    }
}
