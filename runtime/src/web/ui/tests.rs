//! Who may load each page and post each form, over real HTTP: anonymous requests and
//! ended sessions go to the login page, a role below the route's is refused, and so is
//! every form without its session's CSRF token. The form list is checked against the
//! router's own, so a new form route cannot be left out.

use crate::crypto::Crypto;
use crate::registry::Registry;
use crate::spec::DeploymentSpec;
use crate::store::{NewUser, Store};
use crate::web::session::{Session, Sessions};
use crate::web::{AppState, ratelimit::RateLimiter, router};
use reqwest::StatusCode;
use std::sync::Arc;

const ROLES: [&str; 4] = ["Viewer", "User", "Op", "Admin"];
const FORM: &str = "application/x-www-form-urlencoded";

/// Every form route of [`super::router`] as it is declared, a path that reaches it, and
/// the least role that may post it.
const FORMS: &[(&str, &str, &str)] = &[
    ("/dags/{dag_id}/{action}", "/dags/nope/pause", "User"),
    ("/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/{action}", "/dags/nope/runs/r/tasks/t/clear", "User"),
    ("/dags/{dag_id}/runs/{run_id}/{action}", "/dags/nope/runs/r/clear", "User"),
    ("/connections", "/connections", "Op"),
    ("/connections/{id}/delete", "/connections/nope/delete", "Op"),
    ("/connections/{id}/test", "/connections/nope/test", "Op"),
    ("/variables", "/variables", "Op"),
    ("/variables/{key}/delete", "/variables/nope/delete", "Op"),
    ("/pools", "/pools", "Op"),
    ("/pools/{name}/delete", "/pools/nope/delete", "Op"),
    ("/users", "/users", "Admin"),
    ("/users/{username}/delete", "/users/nope/delete", "Admin"),
    ("/users/{username}/role", "/users/nope/role", "Admin"),
    // Last: it ends the sessions of the Viewer who posts it.
    ("/logout", "/logout", "Viewer"),
];

/// Every signed-in page and the least role that may load it.
const PAGES: &[(&str, &str)] = &[
    ("/", "Viewer"),
    ("/dags/nope", "Viewer"),
    ("/dags/nope/runs/r/tasks/t", "Viewer"),
    ("/pools", "Viewer"),
    ("/browse/runs", "Viewer"),
    ("/browse/task-instances", "Viewer"),
    ("/sla-misses", "Viewer"),
    ("/warnings", "Viewer"),
    ("/logout", "Viewer"),
    ("/connections", "Op"),
    ("/variables", "Op"),
    ("/audit", "Op"),
    ("/users", "Admin"),
];

static DEPLOYMENT: DeploymentSpec = DeploymentSpec {
    project: "test",
    webserver_port: 8080,
    parallelism: 32,
    worker_concurrency: 4,
    worker_replicas: 1,
    queues: &["default"],
    paused_at_creation: false,
    load_examples: false,
    admin_username_env: "SLUICE_ADMIN_USERNAME",
    admin_password_env: "SLUICE_ADMIN_PASSWORD",
    admin_email_env: "SLUICE_ADMIN_EMAIL",
    fernet_key_env: "SLUICE_FERNET_KEY",
    secret_key_env: "SLUICE_SECRET_KEY",
    broker_db: 1,
    rate_limit_db: 2,
    python: "python3",
};

static REGISTRY: Registry = Registry {
    source: "test.yaml",
    deployment: &DEPLOYMENT,
    connections: &[],
    pools: &[],
    datasets: &[],
    pipelines: &[],
    sources: &[],
    python_context: "",
    dispatch: |_, _, _| None,
};

struct Site {
    base: String,
    client: reqwest::Client,
    store: Store,
    sessions: Sessions,
}

impl Site {
    /// A site with a user per role, named after it in lower case.
    async fn start() -> Site {
        let store = Store::in_memory().await.expect("store");
        for role in ROLES {
            let name = role.to_lowercase();
            let user =
                NewUser { username: &name, email: "", role, password: "test-pw-123", first_name: "", last_name: "" };
            store.add_user(&user).await.expect("user");
        }
        let sessions = Sessions::new(None, false);
        let state = AppState {
            store: store.clone(),
            registry: &REGISTRY,
            wake: Arc::default(),
            crypto: Arc::new(Crypto::from_env_value(Some(&Crypto::generate_key())).expect("a key")),
            limiter: RateLimiter::in_process(),
            sessions: sessions.clone(),
            health: Default::default(),
            config: std::sync::Arc::new(crate::effective::WebConfig { connection_tests: true, ..Default::default() }),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = crate::tls::http_client_builder().redirect(reqwest::redirect::Policy::none()).build();
        Site { base, client: client.expect("client"), store, sessions }
    }

    /// The session cookie (`name=value`) and CSRF token of `user`, as a login makes them.
    async fn session(&self, user: &str) -> (String, String) {
        let account = self.store.account(user).await.expect("users table").expect("an active user");
        let session = Session::new(user, &account);
        let set_cookie = self.sessions.cookie(&session);
        (set_cookie.split(';').next().unwrap_or_default().to_string(), session.csrf)
    }

    async fn get(&self, cookie: &str, path: &str) -> reqwest::Response {
        let request = self.client.get(format!("{}{path}", self.base)).header("cookie", cookie);
        request.send().await.expect("response")
    }

    async fn post(&self, cookie: &str, path: &str, csrf: &str) -> reqwest::Response {
        let request = self.client.post(format!("{}{path}", self.base)).header("cookie", cookie);
        request.header("content-type", FORM).body(format!("csrf={csrf}")).send().await.expect("response")
    }
}

fn to_login(response: &reqwest::Response) -> bool {
    response.status() == StatusCode::SEE_OTHER
        && response.headers().get("location").is_some_and(|l| l.as_bytes() == b"/login")
}

/// Whether `role` is at least `least`.
fn allowed(role: &str, least: &str) -> bool {
    let rank = |r: &str| ROLES.iter().position(|known| *known == r).expect("a role");
    rank(role) >= rank(least)
}

#[test]
fn the_form_list_is_the_routers() {
    let declared: Vec<&str> = include_str!("mod.rs")
        .lines()
        .filter(|line| line.trim_start().starts_with(".route(") && line.contains("post("))
        .filter_map(|line| line.split('"').nth(1))
        .filter(|path| *path != "/login")
        .collect();
    let listed: Vec<&str> = FORMS.iter().map(|(route, _, _)| *route).collect();
    let (mut declared_sorted, mut listed_sorted) = (declared.clone(), listed.clone());
    declared_sorted.sort_unstable();
    listed_sorted.sort_unstable();
    assert_eq!(declared_sorted, listed_sorted, "every form route, and only those, is in FORMS");
    assert!(!declared.is_empty());
}

#[tokio::test]
async fn every_page_needs_a_session_and_its_role() {
    let site = Site::start().await;
    for (path, least) in PAGES {
        assert!(to_login(&site.get("", path).await), "anonymous GET {path}");
        for role in ROLES {
            let (cookie, _) = site.session(&role.to_lowercase()).await;
            let page = site.get(&cookie, path).await;
            if allowed(role, least) {
                assert!(page.status() != StatusCode::FORBIDDEN && !to_login(&page), "{role} GET {path}: {page:?}");
            } else {
                assert_eq!(page.status(), StatusCode::FORBIDDEN, "{role} GET {path}");
            }
        }
    }
}

#[tokio::test]
async fn every_form_needs_a_session_its_csrf_token_and_its_role() {
    let site = Site::start().await;
    for (_, path, least) in FORMS {
        assert!(to_login(&site.post("", path, "forged").await), "anonymous POST {path}");
        for role in ROLES {
            let (cookie, csrf) = site.session(&role.to_lowercase()).await;
            for forged in ["", "forged", "0123456789abcdef0123456789abcdef"] {
                let refused = site.post(&cookie, path, forged).await;
                assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{role} POST {path} with csrf `{forged}`");
            }
            let posted = site.post(&cookie, path, &csrf).await;
            if !allowed(role, least) {
                assert_eq!(posted.status(), StatusCode::FORBIDDEN, "{role} POST {path}");
            } else if *path == "/logout" {
                assert!(to_login(&posted), "{role} signs out");
            } else {
                assert!(
                    posted.status() != StatusCode::FORBIDDEN && !to_login(&posted),
                    "{role} POST {path}: {posted:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn an_ended_session_is_sent_to_sign_in_even_with_its_token() {
    let site = Site::start().await;
    let (cookie, csrf) = site.session("admin").await;
    assert_eq!(site.get(&cookie, "/users").await.status(), StatusCode::OK);
    site.store.end_sessions("admin").await.expect("sessions ended");
    assert!(to_login(&site.get(&cookie, "/users").await), "a page");
    assert!(to_login(&site.post(&cookie, "/variables", &csrf).await), "a form");
}
