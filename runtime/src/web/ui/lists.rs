//! The admin lists: connections, variables and pools, each with its form.

use super::*;

/// A create form's field: `(name, label, input type, required)`.
type FormField<'a> = (&'a str, &'a str, &'a str, bool);

/// A list, with a delete button per row and a create form when `editable`.
pub(super) struct ListPage<'a> {
    pub(super) title: &'a str,
    pub(super) table_id: &'a str,
    pub(super) columns: &'a [&'a str],
    pub(super) rows: Vec<Vec<String>>,
    /// Where rows are deleted (`<base>/<id>/delete`) and created (`<base>`), with the
    /// create form's `(name, label, input type, required)`.
    pub(super) editable: Option<(&'a str, &'a [FormField<'a>])>,
    /// A button on every row besides delete: `(action, label)`, posted to
    /// `<base>/<id>/<action>`.
    pub(super) row_action: Option<(&'a str, &'a str)>,
    /// What the last action found, shown above the list.
    pub(super) notice: Option<String>,
}

pub(super) fn list_page(session: &Session, page: ListPage<'_>, error: Option<String>) -> Response {
    let (delete_base, create) = match page.editable {
        Some((base, fields)) => {
            let fields: Vec<Value> = fields
                .iter()
                .map(|(name, label, ty, required)| json!({ "name": name, "label": label, "type": ty, "required": required }))
                .collect();
            (Some(base), Some(json!({ "action": base, "fields": fields })))
        }
        None => (None, None),
    };
    let failed = error.is_some();
    let (row_action, row_label) = page.row_action.unzip();
    let mut response = render(
        "list.html",
        with(
            page_context(session),
            context! {
                title => page.title,
                table_id => page.table_id,
                columns => v(page.columns),
                rows => v(&page.rows),
                delete_base,
                create => v(create),
                row_action,
                row_label,
                notice => page.notice,
                error,
            },
        ),
    );
    if failed {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    response
}

pub(super) const CONNECTION_FIELDS: &[FormField<'static>] = &[
    ("conn_id", "Id", "text", true),
    ("conn_uri", "Airflow URI", "text", true),
    ("description", "Description", "text", false),
];

pub(super) async fn connections_page(state: &AppState, session: &Session, error: Option<String>) -> Response {
    connections_page_with(state, session, error, None).await
}

/// The connections page, with what a connection test found.
async fn connections_page_with(
    state: &AppState,
    session: &Session,
    error: Option<String>,
    notice: Option<String>,
) -> Response {
    match state.store.connection_infos().await {
        Ok(conns) => {
            let rows = conns
                .into_iter()
                .map(|c| {
                    vec![
                        c.id,
                        c.conn_type,
                        c.host.unwrap_or_default(),
                        c.port.map(|p| p.to_string()).unwrap_or_default(),
                        c.login.unwrap_or_default(),
                        if c.has_password { "***".into() } else { String::new() },
                        c.description,
                    ]
                })
                .collect();
            let page = ListPage {
                title: "Connections",
                table_id: "connections",
                columns: &["id", "type", "host", "port", "login", "password", "description"],
                rows,
                editable: Some(("/connections", CONNECTION_FIELDS)),
                // The Test button only where tests are enabled (SLUICE_TEST_CONNECTION).
                row_action: state.config.connection_tests.then_some(("test", "Test")),
                notice,
            };
            list_page(session, page, error)
        }
        Err(e) => store_error(e),
    }
}

pub(super) async fn connections(State(state): State<AppState>, session: SignedIn<Op>) -> Response {
    connections_page(&state, &session, None).await
}

/// The fields of [`CONNECTION_FIELDS`].
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ConnectionForm {
    conn_id: String,
    conn_uri: String,
    description: String,
}

pub(super) async fn add_connection(
    State(state): State<AppState>,
    CsrfForm { session, form, store }: CsrfForm<Op, ConnectionForm>,
) -> Response {
    let added = match crate::connection::Connection::from_uri(form.conn_id.trim(), form.conn_uri.trim()) {
        Ok(mut conn) => {
            conn.description = form.description.trim().to_string();
            // Saving an id that exists replaces that connection (the way to edit one).
            let source = crate::store::ConnectionSource::Runtime;
            store.upsert_connection(&conn, source, &state.crypto).await.map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    match added {
        Ok(()) => Redirect::to("/connections").into_response(),
        Err(error) => connections_page(&state, &session, Some(error)).await,
    }
}

/// Tests a stored connection (`SLUICE_TEST_CONNECTION=Enabled`) and shows what answered.
pub(super) async fn test_connection(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { session, store, .. }: CsrfForm<Op>,
) -> Response {
    if !state.config.connection_tests {
        return (StatusCode::FORBIDDEN, "testing connections is disabled: set SLUICE_TEST_CONNECTION=Enabled")
            .into_response();
    }
    let conn = match state.store.connection(&id, &state.crypto).await {
        Ok(conn) => conn,
        Err(e) => return store_error(e),
    };
    if let Err(e) = store.record(crate::store::Change::new("connection.test").detail("conn_id", id.as_str())).await {
        return store_error(e);
    }
    let notice = match crate::connection::probe::probe(&conn).await {
        Ok(answer) => format!("Connection `{id}` works: {answer}."),
        Err(why) => format!("Connection `{id}` failed: {why}."),
    };
    connections_page_with(&state, &session, None, Some(notice)).await
}

pub(super) async fn delete_connection(Path(id): Path<String>, CsrfForm { store, .. }: CsrfForm<Op>) -> Response {
    match store.delete_connection(&id).await {
        Ok(()) => Redirect::to("/connections").into_response(),
        Err(e) => store_error(e),
    }
}

pub(super) const VARIABLE_FIELDS: &[FormField<'static>] = &[
    ("key", "Key", "text", true),
    ("value", "Value", "text", true),
    ("description", "Description", "text", false),
    ("secret", "Secret (encrypted, masked)", "checkbox", false),
];

pub(super) async fn variables_page(state: &AppState, session: &Session, error: Option<String>) -> Response {
    match state.store.variable_infos().await {
        Ok(vars) => {
            let rows = vars
                .into_iter()
                .map(|v| {
                    let value = if v.secret { "***".into() } else { v.value.unwrap_or_default() };
                    vec![v.key, value, v.description]
                })
                .collect();
            let page = ListPage {
                title: "Variables",
                table_id: "variables",
                columns: &["key", "value", "description"],
                rows,
                editable: Some(("/variables", VARIABLE_FIELDS)),
                row_action: None,
                notice: None,
            };
            list_page(session, page, error)
        }
        Err(e) => store_error(e),
    }
}

pub(super) async fn variables(State(state): State<AppState>, session: SignedIn<Op>) -> Response {
    variables_page(&state, &session, None).await
}

/// The fields of [`VARIABLE_FIELDS`].
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct VariableForm {
    key: String,
    value: String,
    description: String,
    /// The checkbox: present (`on`) when ticked.
    secret: String,
}

pub(super) async fn set_variable(
    State(state): State<AppState>,
    CsrfForm { session, form, store }: CsrfForm<Op, VariableForm>,
) -> Response {
    let key = form.key.trim();
    let secret = !form.secret.is_empty() || crate::connection::is_secret_key(key);
    let description = Some(form.description.as_str()).filter(|d| !d.is_empty());
    match store.set_variable(key, &form.value, secret, description, &state.crypto).await {
        Ok(()) => Redirect::to("/variables").into_response(),
        Err(e) => variables_page(&state, &session, Some(e.to_string())).await,
    }
}

pub(super) async fn delete_variable(Path(key): Path<String>, CsrfForm { store, .. }: CsrfForm<Op>) -> Response {
    match store.delete_variable(&key).await {
        Ok(()) => Redirect::to("/variables").into_response(),
        Err(e) => store_error(e),
    }
}

pub(super) const POOL_FIELDS: &[FormField<'static>] = &[
    ("name", "Name", "text", true),
    ("slots", "Slots", "number", true),
    ("description", "Description", "text", false),
];

pub(super) async fn pools_page(state: &AppState, session: &Session, error: Option<String>) -> Response {
    match state.store.pool_usage().await {
        Ok(pools) => {
            let rows = pools
                .into_iter()
                .map(|p| {
                    vec![
                        p.name,
                        p.slots.to_string(),
                        p.running.to_string(),
                        p.queued.to_string(),
                        (p.slots - p.running - p.queued).to_string(),
                        p.description,
                    ]
                })
                .collect();
            let page = ListPage {
                title: "Pools",
                table_id: "pools",
                columns: &["name", "slots", "running", "queued", "open", "description"],
                rows,
                editable: (session.role() >= Role::Op).then_some(("/pools", POOL_FIELDS)),
                row_action: None,
                notice: None,
            };
            list_page(session, page, error)
        }
        Err(e) => store_error(e),
    }
}

pub(super) async fn pools(State(state): State<AppState>, session: SignedIn) -> Response {
    pools_page(&state, &session, None).await
}

/// The fields of [`POOL_FIELDS`]; `slots` as typed, so a bad number is shown on the page.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct PoolForm {
    name: String,
    slots: String,
    description: String,
}

/// Creates a pool or resizes one of that name.
pub(super) async fn save_pool(
    State(state): State<AppState>,
    CsrfForm { session, form, store }: CsrfForm<Op, PoolForm>,
) -> Response {
    let (name, slots, description) = (form.name.trim(), form.slots.trim(), form.description.trim());
    let saved = match slots.parse::<i64>() {
        Ok(slots) => store.upsert_pool(name, slots, description).await.map_err(|e| e.to_string()),
        Err(_) => Err(format!("slots must be a number, not `{slots}`")),
    };
    match saved {
        Ok(()) => Redirect::to("/pools").into_response(),
        Err(error) => pools_page(&state, &session, Some(error)).await,
    }
}

pub(super) async fn delete_pool(
    State(state): State<AppState>,
    Path(name): Path<String>,
    CsrfForm { session, store, .. }: CsrfForm<Op>,
) -> Response {
    match store.delete_pool(&name).await {
        Ok(()) => Redirect::to("/pools").into_response(),
        Err(e) => pools_page(&state, &session, Some(e.to_string())).await,
    }
}
