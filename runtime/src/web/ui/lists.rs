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
            };
            list_page(session, page, error)
        }
        Err(e) => store_error(e),
    }
}

pub(super) async fn connections(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in_as(&state, &headers, Role::Op).await {
        Ok(session) => connections_page(&state, &session, None).await,
        Err(r) => r.into_response(),
    }
}

pub(super) async fn add_connection(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let session = match authorized_form(&state, &headers, &form.csrf, Role::Op).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let field = |name: &str| form.fields.get(name).map(String::as_str).unwrap_or_default().trim().to_string();
    let added = match crate::connection::Connection::from_uri(&field("conn_id"), &field("conn_uri")) {
        Ok(mut conn) => {
            conn.description = field("description");
            // Saving an id that exists replaces that connection (the way to edit one).
            let source = crate::store::ConnectionSource::Runtime;
            state.store.upsert_connection(&conn, source, &state.crypto).await.map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    match added {
        Ok(()) => Redirect::to("/connections").into_response(),
        Err(error) => connections_page(&state, &session, Some(error)).await,
    }
}

pub(super) async fn delete_connection(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = authorized_form(&state, &headers, &form.csrf, Role::Op).await {
        return r.into_response();
    }
    match state.store.delete_connection(&id).await {
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
            };
            list_page(session, page, error)
        }
        Err(e) => store_error(e),
    }
}

pub(super) async fn variables(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in_as(&state, &headers, Role::Op).await {
        Ok(session) => variables_page(&state, &session, None).await,
        Err(r) => r.into_response(),
    }
}

pub(super) async fn set_variable(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let session = match authorized_form(&state, &headers, &form.csrf, Role::Op).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let field = |name: &str| form.fields.get(name).map(String::as_str).unwrap_or_default();
    let key = field("key").trim();
    let secret = !field("secret").is_empty() || crate::connection::is_secret_key(key);
    let description = Some(field("description")).filter(|d| !d.is_empty());
    match state.store.set_variable(key, field("value"), secret, description, &state.crypto).await {
        Ok(()) => Redirect::to("/variables").into_response(),
        Err(e) => variables_page(&state, &session, Some(e.to_string())).await,
    }
}

pub(super) async fn delete_variable(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = authorized_form(&state, &headers, &form.csrf, Role::Op).await {
        return r.into_response();
    }
    match state.store.delete_variable(&key).await {
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
            };
            list_page(session, page, error)
        }
        Err(e) => store_error(e),
    }
}

pub(super) async fn pools(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers).await {
        Ok(session) => pools_page(&state, &session, None).await,
        Err(r) => r.into_response(),
    }
}

/// Creates a pool or resizes one of that name.
pub(super) async fn save_pool(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let session = match authorized_form(&state, &headers, &form.csrf, Role::Op).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let field = |name: &str| form.fields.get(name).map(String::as_str).unwrap_or_default().trim();
    let saved = match field("slots").parse::<i64>() {
        Ok(slots) => {
            state.store.upsert_pool(field("name"), slots, field("description")).await.map_err(|e| e.to_string())
        }
        Err(_) => Err(format!("slots must be a number, not `{}`", field("slots"))),
    };
    match saved {
        Ok(()) => Redirect::to("/pools").into_response(),
        Err(error) => pools_page(&state, &session, Some(error)).await,
    }
}

pub(super) async fn delete_pool(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let session = match authorized_form(&state, &headers, &form.csrf, Role::Op).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    match state.store.delete_pool(&name).await {
        Ok(()) => Redirect::to("/pools").into_response(),
        Err(e) => pools_page(&state, &session, Some(e.to_string())).await,
    }
}
