//! The web UI: server-rendered pages (minijinja, auto-escaped), a form login with a
//! session cookie, and forms that carry a CSRF token. Pages: pipelines (pause, trigger,
//! recent runs, search and tag filter), a pipeline (grid of runs x tasks, the task graph
//! with live states, durations of the latest run, a trigger form from the typed params),
//! a task instance (tries, outputs, log, clear / mark), and lists of connections,
//! variables and pools (secrets never sent to the browser).

use super::AppState;
use super::auth::{Admin, CsrfForm, Op, Role, SignedIn, User};
use super::session::Session;
use crate::clock::to_rfc3339;
use crate::connection::uri::encode;
use crate::crypto::same_secret;
use crate::rules::TiState;
use crate::spec::PipelineSpec;
use crate::store::{LogFrom, LogRow, TiRow};
use crate::tasklog::PageSize;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::{Environment, context};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::OnceLock;

mod audit;
mod browse;
mod drawing;
mod lists;
mod login;
mod pipeline;
mod pipelines;
mod run;
mod task;
mod users;

use audit::*;
use browse::*;
use lists::*;
use login::*;
use pipeline::*;
use pipelines::*;
use run::*;
use task::*;
use users::*;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pipelines))
        .route("/login", get(login_page).post(login))
        .route("/logout", get(logout_page).post(logout))
        .route("/static/sluice.css", get(stylesheet))
        .route("/dags/{dag_id}", get(pipeline))
        .route("/dags/{dag_id}/{action}", post(pipeline_action))
        .route("/dags/{dag_id}/runs/{run_id}/{action}", post(run_action))
        .route("/dags/{dag_id}/runs/{run_id}/tasks/{task_id}", get(task_instance))
        .route("/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/{action}", post(task_action))
        .route("/connections", get(connections).post(add_connection))
        .route("/connections/{id}/delete", post(delete_connection))
        .route("/connections/{id}/test", post(test_connection))
        .route("/variables", get(variables).post(set_variable))
        .route("/variables/{key}/delete", post(delete_variable))
        .route("/audit", get(audit_log))
        .route("/browse/runs", get(browse_runs))
        .route("/browse/task-instances", get(browse_task_instances))
        .route("/sla-misses", get(sla_misses))
        .route("/warnings", get(compiler_warnings))
        .route("/pools", get(pools).post(save_pool))
        .route("/pools/{name}/delete", post(delete_pool))
        .route("/users", get(users).post(add_user))
        .route("/users/{username}/delete", post(delete_user))
        .route("/users/{username}/role", post(change_role))
}

pub(super) fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in [
            ("base.html", include_str!("../templates/base.html")),
            ("login.html", include_str!("../templates/login.html")),
            ("logout.html", include_str!("../templates/logout.html")),
            ("pipelines.html", include_str!("../templates/pipelines.html")),
            ("pipeline.html", include_str!("../templates/pipeline.html")),
            ("task.html", include_str!("../templates/task.html")),
            ("list.html", include_str!("../templates/list.html")),
            ("users.html", include_str!("../templates/users.html")),
            ("audit.html", include_str!("../templates/audit.html")),
            ("clear.html", include_str!("../templates/clear.html")),
            ("browse.html", include_str!("../templates/browse.html")),
        ] {
            if let Err(e) = env.add_template(name, source) {
                tracing::error!("template {name}: {e}");
            }
        }
        env
    })
}

/// A rendered page, or a 500 that says which template failed.
pub(super) fn render(name: &str, ctx: minijinja::Value) -> Response {
    match templates().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!("rendering {name}: {e:#}");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

pub(super) fn page_context(session: &Session) -> minijinja::Value {
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
pub(super) fn v(value: impl serde::Serialize) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(value))
}

pub(super) fn with(base: minijinja::Value, extra: minijinja::Value) -> minijinja::Value {
    context! { ..extra, ..base }
}

/// The error page of a failed store call, its status from the API's mapping.
pub(super) fn store_error(e: crate::store::StoreError) -> Response {
    super::problem::store_failure(e).into_response()
}

#[cfg(test)]
mod tests;
