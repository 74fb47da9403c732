//! The web UI: server-rendered pages (minijinja, auto-escaped), a form login with a
//! session cookie, and forms that carry a CSRF token. Pages: pipelines (pause, trigger,
//! recent runs, search and tag filter), a pipeline (grid of runs x tasks, the task graph
//! with live states, durations of the latest run, a trigger form from the typed params),
//! a task instance (tries, outputs, log, clear / mark), and lists of connections,
//! variables and pools (secrets never sent to the browser).

use super::AppState;
use super::auth::Role;
use super::session::Session;
use crate::clock::to_rfc3339;
use crate::connection::uri::encode;
use crate::crypto::same_secret;
use crate::rules::TiState;
use crate::spec::PipelineSpec;
use crate::store::{LogFrom, LogRow, RunRow, TiRow};
use crate::tasklog::PageSize;
use axum::Form;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::{Environment, context};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pipelines))
        .route("/login", get(login_page).post(login))
        .route("/logout", get(logout_page).post(logout))
        .route("/static/sluice.css", get(stylesheet))
        .route("/dags/{dag_id}", get(pipeline))
        .route("/dags/{dag_id}/{action}", post(pipeline_action))
        .route("/dags/{dag_id}/runs/{run_id}/tasks/{task_id}", get(task_instance))
        .route("/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/{action}", post(task_action))
        .route("/connections", get(connections).post(add_connection))
        .route("/connections/{id}/delete", post(delete_connection))
        .route("/variables", get(variables).post(set_variable))
        .route("/variables/{key}/delete", post(delete_variable))
        .route("/pools", get(pools).post(save_pool))
        .route("/pools/{name}/delete", post(delete_pool))
        .route("/users", get(users).post(add_user))
        .route("/users/{username}/delete", post(delete_user))
        .route("/users/{username}/role", post(change_role))
}

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in [
            ("base.html", include_str!("templates/base.html")),
            ("login.html", include_str!("templates/login.html")),
            ("logout.html", include_str!("templates/logout.html")),
            ("pipelines.html", include_str!("templates/pipelines.html")),
            ("pipeline.html", include_str!("templates/pipeline.html")),
            ("task.html", include_str!("templates/task.html")),
            ("list.html", include_str!("templates/list.html")),
            ("users.html", include_str!("templates/users.html")),
        ] {
            if let Err(e) = env.add_template(name, source) {
                tracing::error!("template {name}: {e}");
            }
        }
        env
    })
}

/// A rendered page, or a 500 that says which template failed.
fn render(name: &str, ctx: minijinja::Value) -> Response {
    match templates().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!("rendering {name}: {e:#}");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

/// Why a page is not shown.
#[derive(Debug)]
enum Refused {
    /// Not signed in, or the session has ended: to the login page.
    SignIn,
    Forbidden(String),
    /// The users table could not be read.
    Store(crate::store::StoreError),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::SignIn => Redirect::to("/login").into_response(),
            Refused::Forbidden(why) => (StatusCode::FORBIDDEN, why).into_response(),
            Refused::Store(e) => store_error(e),
        }
    }
}

/// The signed-in user of a page request, with their role from the users table;
/// anonymous requests and ended sessions go to the login page.
async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<Session, Refused> {
    state.sessions.signed_in(&state.store, headers).await.map_err(Refused::Store)?.ok_or(Refused::SignIn)
}

/// The signed-in user of a page that needs `role`.
async fn signed_in_as(state: &AppState, headers: &HeaderMap, role: Role) -> Result<Session, Refused> {
    let session = signed_in(state, headers).await?;
    if session.role() < role {
        return Err(Refused::Forbidden(format!("this page needs the {role:?} role; yours is {}", session.role)));
    }
    Ok(session)
}

/// The signed-in user of a form POST, with its CSRF token checked and its role at least
/// `role`.
async fn authorized_form(state: &AppState, headers: &HeaderMap, csrf: &str, role: Role) -> Result<Session, Refused> {
    // The token first: a forged request costs no database read.
    let session = state.sessions.from_headers(headers).ok_or(Refused::SignIn)?;
    if !session.csrf_matches(csrf) {
        return Err(Refused::Forbidden("the form's CSRF token is missing or stale: reload the page".into()));
    }
    let session =
        state.sessions.confirm(&state.store, session).await.map_err(Refused::Store)?.ok_or(Refused::SignIn)?;
    if session.role() < role {
        return Err(Refused::Forbidden(format!("your role {} cannot do this", session.role)));
    }
    Ok(session)
}

fn page_context(session: &Session) -> minijinja::Value {
    context! {
        user => context! { username => session.username.clone(), role => session.role.clone() },
        csrf => session.csrf.clone(),
        can_edit => session.role() >= Role::User,
        can_op => session.role() >= Role::Op,
        can_admin => session.role() >= Role::Admin,
        default_password => session.default_password,
    }
}

/// Any serializable value for a template.
fn v(value: impl serde::Serialize) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(value))
}

fn with(base: minijinja::Value, extra: minijinja::Value) -> minijinja::Value {
    context! { ..extra, ..base }
}

fn store_error(e: crate::store::StoreError) -> Response {
    match e {
        crate::store::StoreError::NotFound(what) => {
            (StatusCode::NOT_FOUND, format!("{what} not found")).into_response()
        }
        crate::store::StoreError::Conflict(what) => (StatusCode::CONFLICT, what).into_response(),
        other => {
            tracing::warn!("page failed: {other}");
            (StatusCode::SERVICE_UNAVAILABLE, "the metadata database is not available; try again").into_response()
        }
    }
}

// --- login ---------------------------------------------------------------------------

/// The stylesheet of every page, served from here so the Content-Security-Policy needs
/// no inline style.
async fn stylesheet() -> Response {
    let headers = [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")];
    (headers, include_str!("templates/sluice.css")).into_response()
}

async fn login_page(State(state): State<AppState>) -> Response {
    login_form(&state, "", None, StatusCode::OK)
}

/// The sign-in page with a fresh login token (in the form, and sealed in its cookie).
fn login_form(state: &AppState, username: &str, error: Option<String>, status: StatusCode) -> Response {
    let (token, cookie) = state.sessions.login_token();
    let mut page = render("login.html", context! { error, username, csrf => token });
    *page.status_mut() = status;
    if let Ok(cookie) = header::HeaderValue::from_str(&cookie) {
        page.headers_mut().append(header::SET_COOKIE, cookie);
    }
    page
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    use axum::extract::FromRequest;
    let address = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "local".to_string(), |c| c.0.ip().to_string());
    let headers = request.headers().clone();
    let form = match Form::<LoginForm>::from_request(request, &state).await {
        Ok(Form(form)) => form,
        Err(e) => return (StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    };
    if !state.sessions.login_token_matches(&headers, &form.csrf) {
        let why = "This sign-in form has expired or did not come from this site: sign in again.";
        return login_form(&state, &form.username, Some(why.into()), StatusCode::FORBIDDEN);
    }
    let failures = format!("login-failures:{address}");
    // Counted as a failure before the hash is checked, forgiven when it matches, so that
    // concurrent guesses cannot all pass a check made before any of them failed.
    if let Err(wait) = state.limiter.hit(&failures, state.limiter.login).await {
        let secs = wait.as_secs().max(1);
        let why = format!("Too many failed sign-ins: try again in {secs} s.");
        let mut page = login_form(&state, &form.username, Some(why), StatusCode::TOO_MANY_REQUESTS);
        page.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        return page;
    }
    match state.store.authenticate(&form.username, &form.password).await {
        Ok(Some(account)) => {
            state.limiter.forgive(&failures, state.limiter.login).await;
            let mut session = Session::new(&form.username, &account);
            session.default_password = is_default_password(&form.username, &form.password);
            let mut response = Redirect::to("/").into_response();
            for cookie in [state.sessions.cookie(&session), state.sessions.clear_login_cookie()] {
                if let Ok(cookie) = header::HeaderValue::from_str(&cookie) {
                    response.headers_mut().append(header::SET_COOKIE, cookie);
                }
            }
            response
        }
        Ok(None) => {
            login_form(&state, &form.username, Some("Invalid username or password.".into()), StatusCode::UNAUTHORIZED)
        }
        Err(e) => store_error(e),
    }
}

/// The passwords a fresh Airflow or Sluice install is known by, and the username itself.
fn is_default_password(username: &str, password: &str) -> bool {
    let same = |known: &str| same_secret(password.as_bytes(), known.as_bytes());
    // Every candidate is compared, matched or not: the answer takes the same time.
    ["admin", "airflow", "password", "changeme", username].into_iter().fold(false, |found, known| found | same(known))
}

/// `GET /logout` signs nobody out (a link or an image on another site could): it shows
/// the button that does.
async fn logout_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers).await {
        Ok(session) => render("logout.html", page_context(&session)),
        Err(r) => r.into_response(),
    }
}

/// Signs out: ends every session of the user (a copy of the cookie is worthless from
/// now on) and drops the cookie.
async fn logout(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    let session = match authorized_form(&state, &headers, &form.csrf, Role::Viewer).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    if let Err(e) = state.store.end_sessions(&session.username).await {
        return store_error(e);
    }
    ([(header::SET_COOKIE, state.sessions.clear_cookie())], Redirect::to("/login")).into_response()
}

// --- pipelines -----------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct ListFilter {
    search: Option<String>,
    tag: Option<String>,
}

/// The schedule in words, as the list shows it: `every day at 06:00 (UTC)`; a cron
/// expression with no common reading is shown as written.
fn schedule_words(p: &PipelineSpec) -> String {
    match p.schedule {
        crate::spec::Schedule::Manual => "manual only".into(),
        crate::spec::Schedule::Once => "once".into(),
        crate::spec::Schedule::Cron(cron) => {
            let text = cron_words(cron).unwrap_or_else(|| format!("cron `{}`", p.schedule_text));
            format!("{text} ({})", p.timezone)
        }
    }
}

fn cron_words(cron: &str) -> Option<String> {
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

async fn pipelines(State(state): State<AppState>, headers: HeaderMap, Query(filter): Query<ListFilter>) -> Response {
    let session = match signed_in(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
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

#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    fields: HashMap<String, String>,
}

async fn pipeline_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((dag_id, action)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = authorized_form(&state, &headers, &form.csrf, Role::User).await {
        return r.into_response();
    }
    let Some(p) = state.registry.pipeline(&dag_id) else {
        return (StatusCode::NOT_FOUND, format!("pipeline `{dag_id}` not found")).into_response();
    };
    let done = match action.as_str() {
        "pause" | "unpause" => state.store.set_paused(p.id, action == "pause").await.map_err(store_error),
        "trigger" => {
            let conf = match trigger_conf(p, &form.fields) {
                Ok(conf) => conf,
                Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
            };
            let run_id = form.fields.get("run_id").filter(|id| !id.is_empty()).cloned();
            crate::scheduler::trigger_as(&state.store, p, conf, None, run_id).await.map(|_| ()).map_err(|e| match e {
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
fn trigger_conf(p: &PipelineSpec, fields: &HashMap<String, String>) -> Result<Value, String> {
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

// --- one pipeline --------------------------------------------------------------------

/// Layered layout of the task graph: a column per depth, a row per task in its column.
fn graph(p: &PipelineSpec, states: &HashMap<String, String>) -> Value {
    let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
    for _ in 0..p.tasks.len() {
        for t in p.tasks {
            let d = t.depends_on.iter().map(|u| depth.get(u).map_or(0, |d| d + 1)).max().unwrap_or(0);
            depth.insert(t.id, d);
        }
    }
    let (w, gap_x, gap_y) = (160, 40, 44);
    let mut rows_in: BTreeMap<usize, usize> = BTreeMap::new();
    let mut pos: HashMap<&str, (usize, usize)> = HashMap::new();
    for t in p.tasks {
        let d = depth.get(t.id).copied().unwrap_or(0);
        let row = rows_in.entry(d).or_insert(0);
        pos.insert(t.id, (10 + d * (w + gap_x), 10 + *row * gap_y));
        *row += 1;
    }
    let nodes: Vec<Value> = p
        .tasks
        .iter()
        .map(|t| {
            let (x, y) = pos[t.id];
            json!({ "id": t.id, "x": x, "y": y, "w": w, "state": states.get(t.id).map_or("none", String::as_str) })
        })
        .collect();
    let edges: Vec<Value> = p
        .tasks
        .iter()
        .flat_map(|t| t.depends_on.iter().map(move |u| (*u, t.id)))
        .filter_map(|(from, to)| {
            let ((x1, y1), (x2, y2)) = (pos.get(from)?, pos.get(to)?);
            Some(json!({ "x1": x1 + w, "y1": y1 + 14, "x2": x2, "y2": y2 + 14 }))
        })
        .collect();
    let width = pos.values().map(|(x, _)| x + w + 10).max().unwrap_or(200);
    let height = pos.values().map(|(_, y)| y + 40).max().unwrap_or(60);
    json!({ "nodes": nodes, "edges": edges, "width": width, "height": height })
}

fn ti_state(ti: &TiRow) -> &'static str {
    ti.state.as_str()
}

async fn pipeline(State(state): State<AppState>, headers: HeaderMap, Path(dag_id): Path<String>) -> Response {
    let session = match signed_in(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let Some(p) = state.registry.pipeline(&dag_id) else {
        return (StatusCode::NOT_FOUND, format!("pipeline `{dag_id}` not found")).into_response();
    };
    let row = match state.store.pipeline(p.id).await {
        Ok(row) => row,
        Err(e) => return store_error(e),
    };
    let runs = match state.store.runs(p.id, 25).await {
        Ok(runs) => runs,
        Err(e) => return store_error(e),
    };
    let mut run_views = Vec::new();
    let mut latest: Option<(&RunRow, Vec<TiRow>)> = None;
    for run in &runs {
        let tis = match state.store.task_instances(run.id).await {
            Ok(tis) => tis,
            Err(e) => return store_error(e),
        };
        let by_task: BTreeMap<String, Value> =
            tis.iter().map(|ti| (ti.task_id.clone(), json!({ "state": ti_state(ti) }))).collect();
        run_views.push(json!({
            "run_id": run.run_id,
            "run_path": encode(&run.run_id, b""),
            "state": run.state,
            "tis": by_task,
        }));
        if latest.is_none() {
            latest = Some((run, tis));
        }
    }
    let states: HashMap<String, String> = latest
        .as_ref()
        .map(|(_, tis)| tis.iter().map(|ti| (ti.task_id.clone(), ti_state(ti).to_string())).collect())
        .unwrap_or_default();
    let gantt: Vec<Value> = latest
        .as_ref()
        .map(|(run, tis)| {
            let start = run.start_date.unwrap_or(0);
            let end = tis.iter().filter_map(|t| t.end_date).max().unwrap_or(start).max(start + 1);
            let scale = 460.0 / (end - start) as f64;
            tis.iter()
                .filter_map(|ti| {
                    let (s, e) = (ti.start_date?, ti.end_date.unwrap_or(end));
                    Some(json!({
                        "id": ti.task_id,
                        "x": ((s - start) as f64 * scale) as i64,
                        "w": (((e - s) as f64 * scale) as i64).max(2),
                        "secs": format!("{:.2}", (e - s) as f64 / 1e6),
                        "state": ti_state(ti),
                    }))
                })
                .collect()
        })
        .unwrap_or_default();
    let active = runs.iter().any(|r| r.state == "queued" || r.state == "running");
    let params: Vec<Value> = p
        .params
        .iter()
        .map(|param| {
            let default = param.default_json.map(|d| match serde_json::from_str::<Value>(d) {
                Ok(Value::String(s)) => s,
                _ => d.to_string(),
            });
            json!({ "name": param.name, "ty": format!("{:?}", param.ty).to_lowercase(), "default": default })
        })
        .collect();
    let view = json!({
        "id": p.id,
        "description": p.description,
        "paused": row.is_paused,
        "schedule_words": schedule_words(p),
    });
    let tasks: Vec<&str> = p.tasks.iter().map(|t| t.id).collect();
    render(
        "pipeline.html",
        with(
            page_context(&session),
            context! {
                p => v(&view),
                runs => v(&run_views),
                tasks => v(&tasks),
                params => v(&params),
                graph => v(graph(p, &states)),
                gantt => v(&gantt),
                latest => latest.map(|(r, _)| r.run_id.clone()),
                refresh => active,
            },
        ),
    )
}

// --- one task instance ---------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct TryQuery {
    #[serde(rename = "try")]
    try_number: Option<i64>,
    /// Show the page of the log after this line id (0: the first page).
    after: Option<i64>,
    /// Show the page of the log before this line id; neither: the last page.
    before: Option<i64>,
}

async fn task_instance(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Query(query): Query<TryQuery>,
) -> Response {
    let session = match signed_in(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let run = match state.store.run_by_id(&dag_id, &run_id).await {
        Ok(run) => run,
        Err(e) => return store_error(e),
    };
    let tis = match state.store.task_instances(run.id).await {
        Ok(tis) => tis,
        Err(e) => return store_error(e),
    };
    let Some(ti) = tis.into_iter().find(|t| t.task_id == task_id) else {
        return (StatusCode::NOT_FOUND, format!("task `{task_id}` not in run `{run_id}`")).into_response();
    };
    let shown = query.try_number.unwrap_or(ti.try_number).clamp(1, ti.try_number.max(1));
    // One page of the log, the last unless asked otherwise, with links to the pages
    // around it: a 10 MiB log is never sent (or built) whole.
    let from = match (query.after, query.before) {
        (Some(after), _) => LogFrom::After(after),
        (None, Some(before)) => LogFrom::Before(before),
        (None, None) => LogFrom::Before(i64::MAX),
    };
    let (page, ends) = match (
        state.store.log_page(ti.id, shown, from, PageSize::DEFAULT).await,
        state.store.log_ends(ti.id, shown).await,
    ) {
        (Ok(page), Ok(ends)) => (page, ends),
        (Err(e), _) | (_, Err(e)) => return store_error(e),
    };
    let (earlier, later) = log_neighbours(&page, ends, from);
    let log = page.iter().map(|row| row.line.as_str()).collect::<Vec<_>>().join("\n");
    let outputs =
        state.store.outputs(ti.id).await.ok().flatten().map(|o| serde_json::to_string_pretty(&o).unwrap_or_default());
    let rendered = state.store.rendered(ti.id, shown).await.unwrap_or_default();
    render(
        "task.html",
        with(
            page_context(&session),
            context! {
                dag_id, run_path => encode(&run_id, b""), run_id, task_id,
                state => ti.state.as_str(),
                try_number => ti.try_number,
                max_tries => ti.max_tries,
                error => ti.error,
                tries => v((1..=ti.try_number).collect::<Vec<_>>()),
                shown_try => shown,
                log,
                earlier,
                later,
                outputs,
                rendered => v(&rendered),
                refresh => matches!(ti.state, TiState::Running | TiState::Queued | TiState::Scheduled),
            },
        ),
    )
}

/// Whether a page of a log has lines before and after it: the id to page back from and
/// the id to page on from. A page past the end (an old link to a log since cleared)
/// offers the way back.
fn log_neighbours(page: &[LogRow], ends: Option<(i64, i64)>, from: LogFrom) -> (Option<i64>, Option<i64>) {
    let Some((first, last)) = ends else { return (None, None) };
    match (page.first(), page.last()) {
        (Some(top), Some(bottom)) => ((top.id > first).then_some(top.id), (bottom.id < last).then_some(bottom.id)),
        _ => match from {
            LogFrom::After(_) => (Some(last + 1), None),
            LogFrom::Before(_) => (None, Some(first - 1)),
        },
    }
}

async fn task_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((dag_id, run_id, task_id, action)): Path<(String, String, String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = authorized_form(&state, &headers, &form.csrf, Role::User).await {
        return r.into_response();
    }
    let Some(p) = state.registry.pipeline(&dag_id) else {
        return (StatusCode::NOT_FOUND, format!("pipeline `{dag_id}` not found")).into_response();
    };
    let run = match state.store.run_by_id(&dag_id, &run_id).await {
        Ok(run) => run,
        Err(e) => return store_error(e),
    };
    let parallelism = state.registry.deployment.parallelism;
    let done = match action.as_str() {
        "clear" => state.store.clear_task(p, run.id, &task_id, false).await.map(|_| ()),
        "mark-success" => state.store.mark_task(p, run.id, &task_id, TiState::Success, parallelism).await.map(|_| ()),
        "mark-failed" => state.store.mark_task(p, run.id, &task_id, TiState::Failed, parallelism).await.map(|_| ()),
        _ => return (StatusCode::NOT_FOUND, "unknown action").into_response(),
    };
    if let Err(e) = done {
        return store_error(e);
    }
    state.wake.notify_one();
    Redirect::to(&format!("/dags/{dag_id}/runs/{}/tasks/{task_id}", encode(&run_id, b""))).into_response()
}

// --- lists ---------------------------------------------------------------------------

/// A create form's field: `(name, label, input type, required)`.
type FormField<'a> = (&'a str, &'a str, &'a str, bool);

/// A list, with a delete button per row and a create form when `editable`.
struct ListPage<'a> {
    title: &'a str,
    table_id: &'a str,
    columns: &'a [&'a str],
    rows: Vec<Vec<String>>,
    /// Where rows are deleted (`<base>/<id>/delete`) and created (`<base>`), with the
    /// create form's `(name, label, input type, required)`.
    editable: Option<(&'a str, &'a [FormField<'a>])>,
}

fn list_page(session: &Session, page: ListPage<'_>, error: Option<String>) -> Response {
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

const CONNECTION_FIELDS: &[FormField<'static>] = &[
    ("conn_id", "Id", "text", true),
    ("conn_uri", "Airflow URI", "text", true),
    ("description", "Description", "text", false),
];

async fn connections_page(state: &AppState, session: &Session, error: Option<String>) -> Response {
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

async fn connections(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in_as(&state, &headers, Role::Op).await {
        Ok(session) => connections_page(&state, &session, None).await,
        Err(r) => r.into_response(),
    }
}

async fn add_connection(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
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

async fn delete_connection(
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

const VARIABLE_FIELDS: &[FormField<'static>] = &[
    ("key", "Key", "text", true),
    ("value", "Value", "text", true),
    ("description", "Description", "text", false),
    ("secret", "Secret (encrypted, masked)", "checkbox", false),
];

async fn variables_page(state: &AppState, session: &Session, error: Option<String>) -> Response {
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

async fn variables(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in_as(&state, &headers, Role::Op).await {
        Ok(session) => variables_page(&state, &session, None).await,
        Err(r) => r.into_response(),
    }
}

async fn set_variable(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
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

async fn delete_variable(
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

const POOL_FIELDS: &[FormField<'static>] = &[
    ("name", "Name", "text", true),
    ("slots", "Slots", "number", true),
    ("description", "Description", "text", false),
];

async fn pools_page(state: &AppState, session: &Session, error: Option<String>) -> Response {
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

async fn pools(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers).await {
        Ok(session) => pools_page(&state, &session, None).await,
        Err(r) => r.into_response(),
    }
}

/// Creates a pool or resizes one of that name.
async fn save_pool(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
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

async fn delete_pool(
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

// --- users (Admin) -------------------------------------------------------------------

fn users_page(session: &Session, users: &[crate::store::UserRow], error: Option<String>) -> Response {
    let rows: Vec<Value> = users
        .iter()
        .map(|u| json!({ "username": u.username, "email": u.email, "role": u.role, "active": u.active }))
        .collect();
    render(
        "users.html",
        with(page_context(session), context! { users => v(&rows), roles => v(crate::store::ROLES), error }),
    )
}

async fn users(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match signed_in_as(&state, &headers, Role::Admin).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    match state.store.users().await {
        Ok(users) => users_page(&session, &users, None),
        Err(e) => store_error(e),
    }
}

async fn add_user(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    let session = match authorized_form(&state, &headers, &form.csrf, Role::Admin).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let field = |name: &str| form.fields.get(name).map(String::as_str).unwrap_or_default();
    // The store refuses a password that `check_new_password` refuses, as for the CLI.
    let user = crate::store::NewUser {
        username: field("username"),
        email: field("email"),
        role: field("role"),
        password: field("password"),
        first_name: "",
        last_name: "",
    };
    let error = state.store.add_user(&user).await.err().map(|e| e.to_string());
    match (error, state.store.users().await) {
        (None, _) => Redirect::to("/users").into_response(),
        (Some(error), Ok(users)) => {
            let mut page = users_page(&session, &users, Some(error));
            *page.status_mut() = StatusCode::BAD_REQUEST;
            page
        }
        (Some(_), Err(e)) => store_error(e),
    }
}

async fn change_role(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(username): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let session = match authorized_form(&state, &headers, &form.csrf, Role::Admin).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    if username == session.username {
        return (StatusCode::BAD_REQUEST, "you cannot change your own role").into_response();
    }
    let role = form.fields.get("role").map(String::as_str).unwrap_or_default();
    match state.store.set_role(&username, role).await {
        Ok(()) => Redirect::to("/users").into_response(),
        Err(e) => store_error(e),
    }
}

async fn delete_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(username): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let session = match authorized_form(&state, &headers, &form.csrf, Role::Admin).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    if username == session.username {
        return (StatusCode::BAD_REQUEST, "you cannot delete yourself").into_response();
    }
    match state.store.delete_user(&username).await {
        Ok(()) => Redirect::to("/users").into_response(),
        Err(e) => store_error(e),
    }
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
