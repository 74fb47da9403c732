//! The REST API's handlers over real HTTP: every route answers its role's callers, denies
//! the others (401 anonymous, 403 too weak a role), and turns bad input into a 4xx RFC 7807
//! problem, never a 500.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_runtime::crypto::Crypto;
use sluice_runtime::effective::{ExposeConfig, WebConfig};
use sluice_runtime::spec::*;
use sluice_runtime::store::{NewUser, Store};
use sluice_runtime::web::ratelimit::RateLimiter;
use sluice_runtime::web::{AppState, router};
use std::sync::{Arc, LazyLock};
use support::*;

static PIPELINES: LazyLock<[PipelineSpec; 1]> = LazyLock::new(|| {
    [graphed(PipelineSpec {
        params: &[ParamSpec { name: "greeting", ty: ValueType::String, default_json: Some("\"hi\""), description: "" }],
        ..pipeline(
            "api_dag",
            Schedule::Manual,
            &const { [TaskSpec { renamed_from: &["extract"], ..task("first", &[]) }, task("second", &["first"])] },
        )
    })]
});

/// Where `api_dag` was written, as the compiler would record it, with one warning.
static SOURCES: [PipelineSource; 1] = [PipelineSource {
    pipeline: "api_dag",
    file: "test.yaml",
    line: 3,
    yaml: "  - id: api_dag\n    tasks:\n      - id: first\n        rust: crate::tasks::first\n",
    bodies: &[("first", "crate::tasks::first")],
    warnings: &[CompilerWarning { code: "unused-param", line: 5, col: 7, message: "param `greeting` is never used" }],
}];

fn api_registry() -> &'static sluice_runtime::Registry {
    let plain = registry(&PIPELINES[..], &[]);
    Box::leak(Box::new(sluice_runtime::Registry { sources: &SOURCES, ..*plain }))
}

const ROLES: [&str; 4] = ["Viewer", "User", "Op", "Admin"];
/// Every test user's password.
const PW: &str = "test-pw-123";

struct Api {
    base: String,
    client: reqwest::Client,
    store: Store,
}

impl Api {
    async fn start() -> Api {
        Api::start_limited(RateLimiter::in_process()).await
    }

    async fn start_limited(limiter: RateLimiter) -> Api {
        Api::start_with(limiter, web_config(ExposeConfig::Yes, &[("SLUICE_TEST_CONNECTION", "Enabled")])).await
    }

    async fn start_with(limiter: RateLimiter, config: WebConfig) -> Api {
        let store = Store::in_memory().await.expect("store");
        let registry = api_registry();
        store.sync_pipelines(registry).await.expect("sync");
        for role in ROLES {
            let name = role.to_lowercase();
            let user = NewUser { username: &name, email: "", role, password: PW, first_name: "", last_name: "" };
            store.add_user(&user).await.expect("user");
        }
        let crypto = Crypto::from_env_value(Some(&Crypto::generate_key())).expect("a key");
        let state = AppState {
            store: store.clone(),
            registry,
            wake: Arc::new(tokio::sync::Notify::new()),
            crypto: Arc::new(crypto),
            limiter,
            sessions: sluice_runtime::web::session::Sessions::new(None, false),
            health: Default::default(),
            config: Arc::new(config),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}/api/v1", listener.local_addr().expect("addr"));
        let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Api { base, client: sluice_runtime::tls::http_client_builder().build().expect("client"), store }
    }

    async fn call(&self, user: Option<&str>, method: Method, path: &str, body: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(user) = user {
            request = request.basic_auth(user, Some(PW));
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.expect("a response");
        let status = response.status();
        let text = response.text().await.expect("a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

/// A 4xx answer must be a problem document naming its status.
fn assert_problem(status: StatusCode, body: &Value, expected: StatusCode, context: &str) {
    assert_eq!(status, expected, "{context}: {body}");
    assert_eq!(body["status"], expected.as_u16(), "{context}: a problem document: {body}");
    assert!(body["title"].is_string() && body["detail"].is_string(), "{context}: {body}");
}

#[tokio::test]
async fn every_route_needs_a_user_and_its_role() {
    let api = Api::start().await;
    let run = api.call(Some("user"), Method::POST, "/dags/api_dag/dagRuns", Some(r#"{"dag_run_id": "r1"}"#)).await;
    assert_eq!(run.0, StatusCode::OK, "{}", run.1);
    let conn = r#"{"connection_id": "mc", "conn_type": "http", "host": "h"}"#;
    assert_eq!(api.call(Some("op"), Method::POST, "/connections", Some(conn)).await.0, StatusCode::OK);
    assert_eq!(
        api.call(Some("op"), Method::POST, "/pools", Some(r#"{"name": "mp", "slots": 2}"#)).await.0,
        StatusCode::OK
    );
    // (method, path, body, the weakest role allowed)
    let routes: &[(Method, &str, Option<&str>, &str)] = &[
        (Method::GET, "/dags", None, "Viewer"),
        (Method::GET, "/dags/api_dag", None, "Viewer"),
        (Method::GET, "/dags/api_dag/tasks", None, "Viewer"),
        (Method::PATCH, "/dags/api_dag?update_mask=is_paused", Some(r#"{"is_paused": false}"#), "User"),
        (Method::GET, "/dags/api_dag/dagRuns", None, "Viewer"),
        (Method::GET, "/dags/api_dag/dagRuns/r1", None, "Viewer"),
        (Method::GET, "/dags/api_dag/dagRuns/r1/taskInstances", None, "Viewer"),
        (Method::GET, "/dags/api_dag/dagRuns/r1/taskInstances/first", None, "Viewer"),
        (Method::POST, "/dags/api_dag/dagRuns", Some("{}"), "User"),
        (Method::PATCH, "/dags/api_dag/dagRuns/r1", Some(r#"{"state": "failed"}"#), "User"),
        (Method::GET, "/connections", None, "Op"),
        (Method::GET, "/variables", None, "Op"),
        (Method::GET, "/pools", None, "Viewer"),
        (Method::GET, "/pools/default_pool", None, "Viewer"),
        (Method::GET, "/importErrors", None, "Viewer"),
        (Method::GET, "/dags/api_dag/dagRuns/r1/taskInstances/first/logs/1", None, "Viewer"),
        (Method::POST, "/variables", Some(r#"{"key": "m", "value": "v"}"#), "Op"),
        (Method::GET, "/variables/m", None, "Op"),
        (Method::PATCH, "/variables/m", Some(r#"{"key": "m", "value": "w"}"#), "Op"),
        (Method::GET, "/connections/mc", None, "Op"),
        (Method::PATCH, "/connections/mc", Some(r#"{"conn_type": "http", "host": "h2"}"#), "Op"),
        (Method::PATCH, "/pools/mp", Some(r#"{"slots": 3}"#), "Op"),
        (Method::GET, "/plugins", None, "Viewer"),
        (Method::GET, "/dags/api_dag/tasks/second", None, "Viewer"),
        (Method::GET, "/dags/api_dag/details", None, "Viewer"),
        (Method::GET, "/dagStats?dag_ids=api_dag", None, "Viewer"),
        (Method::GET, "/dags/~/dagRuns", None, "Viewer"),
        (Method::PATCH, "/dags?dag_id_pattern=api", Some(r#"{"is_paused": false}"#), "User"),
        (Method::GET, "/users", None, "Admin"),
        (Method::GET, "/users/viewer", None, "Admin"),
        (Method::PATCH, "/users/viewer?update_mask=roles", Some(r#"{"roles": [{"name": "Viewer"}]}"#), "Admin"),
        (Method::GET, "/roles", None, "Admin"),
        (Method::GET, "/roles/User", None, "Admin"),
        (Method::GET, "/permissions", None, "Admin"),
        (Method::PATCH, "/dags/api_dag/dagRuns/r1/setNote", Some(r#"{"note": "n"}"#), "User"),
        (Method::PATCH, "/dags/api_dag/dagRuns/r1/taskInstances/first/setNote", Some(r#"{"note": "n"}"#), "User"),
        (Method::PATCH, "/dags/api_dag/dagRuns/r1/taskInstances/first/-1/setNote", Some(r#"{"note": "n"}"#), "User"),
        (Method::GET, "/dags/~/dagRuns/~/taskInstances", None, "Viewer"),
        (Method::POST, "/dags/~/dagRuns/list", Some("{}"), "Viewer"),
        (Method::POST, "/dags/~/dagRuns/~/taskInstances/list", Some("{}"), "Viewer"),
        (Method::POST, "/dags/api_dag/clearTaskInstances", Some(r#"{"dry_run": true}"#), "User"),
        (Method::POST, "/dags/api_dag/dagRuns/r1/clear", Some(r#"{"dry_run": true}"#), "User"),
        (Method::GET, "/dags/api_dag/dagRuns/r1/taskInstances/first/tries", None, "Viewer"),
        (Method::GET, "/dags/api_dag/dagRuns/r1/taskInstances/first/-1/tries", None, "Viewer"),
        (Method::GET, "/dags/api_dag/dagRuns/r1/taskInstances/first/links", None, "Viewer"),
        (Method::GET, "/dags/api_dag/dagRuns/r1/taskInstances/first/dependencies", None, "Viewer"),
        (Method::GET, "/dags/api_dag/dagRuns/r1/taskInstances/first/-1/dependencies", None, "Viewer"),
        (Method::GET, "/dags/api_dag/dagRuns/r1/taskInstances/first/-1", None, "Viewer"),
        (Method::GET, "/dags/api_dag/dagRuns/r1/taskInstances/first/xcomEntries", None, "Viewer"),
        (Method::PATCH, "/dags/api_dag/dagRuns/r1/taskInstances/first", Some(r#"{"new_state": "success"}"#), "User"),
        (Method::PATCH, "/dags/api_dag/dagRuns/r1/taskInstances/first/-1", Some(r#"{"new_state": "success"}"#), "User"),
        (
            Method::POST,
            "/dags/api_dag/updateTaskInstancesState",
            Some(r#"{"task_id": "first", "dag_run_id": "r1", "new_state": "success"}"#),
            "User",
        ),
        (Method::GET, "/providers", None, "Viewer"),
        (Method::PUT, "/parseDagFile/api_dag", None, "User"),
        (Method::GET, "/datasets", None, "Viewer"),
        (Method::GET, "/datasets/events", None, "Viewer"),
        (Method::GET, "/dags/api_dag/dagRuns/r1/upstreamDatasetEvents", None, "Viewer"),
        (Method::GET, "/dagSources/api_dag", None, "Viewer"),
        (Method::GET, "/dagWarnings", None, "Viewer"),
        (Method::GET, "/config", None, "Op"),
        (Method::GET, "/config/section/core/option/mode", None, "Op"),
        (Method::POST, "/connections/test", Some(r#"{"conn_type": "file", "schema": "/"}"#), "Op"),
        (Method::GET, "/eventLogs", None, "Op"),
        (Method::GET, "/eventLogs/1", None, "Op"),
    ];
    for (method, path, body, weakest) in routes {
        let (status, answer) = api.call(None, method.clone(), path, *body).await;
        assert_problem(status, &answer, StatusCode::UNAUTHORIZED, &format!("anonymous {method} {path}"));
        let allowed = ROLES.iter().position(|r| r == weakest).expect("a role");
        for (i, role) in ROLES.iter().enumerate() {
            let user = role.to_lowercase();
            let (status, answer) = api.call(Some(&user), method.clone(), path, *body).await;
            if i < allowed {
                assert_problem(status, &answer, StatusCode::FORBIDDEN, &format!("{role} {method} {path}"));
            } else {
                assert!(status.is_success(), "{role} {method} {path}: {status} {answer}");
            }
        }
    }
    // Public, as in Airflow: the version.
    let (status, version) = api.call(None, Method::GET, "/version", None).await;
    assert_eq!(status, StatusCode::OK, "{version}");
    // What an empty system has none of: refused below the role, a 404 problem at it.
    let absent: &[(Method, &str, Option<&str>, &str)] = &[
        (Method::GET, "/importErrors/1", None, "Viewer"),
        (Method::GET, "/datasets/s3%3A%2F%2Fbucket%2Fgames", None, "Viewer"),
        (Method::POST, "/datasets/events", Some(r#"{"dataset_uri": "s3://bucket/games"}"#), "Op"),
        (Method::GET, "/datasets/queuedEvent/s3%3A%2F%2Fbucket%2Fgames", None, "Viewer"),
        (Method::DELETE, "/datasets/queuedEvent/s3%3A%2F%2Fbucket%2Fgames", None, "Op"),
        (Method::GET, "/dags/api_dag/datasets/queuedEvent", None, "Viewer"),
        (Method::DELETE, "/dags/api_dag/datasets/queuedEvent", None, "Op"),
        (Method::GET, "/dags/api_dag/datasets/queuedEvent/s3%3A%2F%2Fbucket%2Fgames", None, "Viewer"),
        (Method::DELETE, "/dags/api_dag/datasets/queuedEvent/s3%3A%2F%2Fbucket%2Fgames", None, "Op"),
        (Method::PUT, "/parseDagFile/no_such_dag", None, "User"),
        (Method::GET, "/eventLogs/999999", None, "Op"),
    ];
    for (method, path, body, weakest) in absent {
        let (status, answer) = api.call(None, method.clone(), path, *body).await;
        assert_problem(status, &answer, StatusCode::UNAUTHORIZED, &format!("anonymous {method} {path}"));
        let allowed = ROLES.iter().position(|r| r == weakest).expect("a role");
        for (i, role) in ROLES.iter().enumerate() {
            let (status, answer) = api.call(Some(&role.to_lowercase()), method.clone(), path, *body).await;
            let expected = if i < allowed { StatusCode::FORBIDDEN } else { StatusCode::NOT_FOUND };
            assert_problem(status, &answer, expected, &format!("{role} {method} {path}"));
        }
    }
    // Deletes: refused below the role, done once at it.
    let deletes: &[(&str, &str)] =
        &[("/variables/m", "Op"), ("/connections/mc", "Op"), ("/pools/mp", "Op"), ("/dags/api_dag/dagRuns/r1", "User")];
    for (path, weakest) in deletes {
        let (status, answer) = api.call(None, Method::DELETE, path, None).await;
        assert_problem(status, &answer, StatusCode::UNAUTHORIZED, &format!("anonymous DELETE {path}"));
        let allowed = ROLES.iter().position(|r| r == weakest).expect("a role");
        for role in &ROLES[..allowed] {
            let (status, answer) = api.call(Some(&role.to_lowercase()), Method::DELETE, path, None).await;
            assert_problem(status, &answer, StatusCode::FORBIDDEN, &format!("{role} DELETE {path}"));
        }
        let (status, _) = api.call(Some(&weakest.to_lowercase()), Method::DELETE, path, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{weakest} DELETE {path}");
    }
    let (status, body) = api.call(Some("admin"), Method::GET, "/dags", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["total_entries"], 1);
    let (status, _) = api.call(Some("viewer"), Method::GET, "/health", None).await;
    assert_eq!(status, StatusCode::OK, "health answers anyone");
    let (status, body) = api.call(Some("nobody"), Method::GET, "/dags", None).await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "an unknown user");
}

#[tokio::test]
async fn runs_are_triggered_read_marked_and_deleted() {
    let api = Api::start().await;
    let conf =
        r#"{"dag_run_id": "nightly-1", "logical_date": "2024-06-01T00:00:00+00:00", "conf": {"greeting": "hello"}}"#;
    let (status, run) = api.call(Some("user"), Method::POST, "/dags/api_dag/dagRuns", Some(conf)).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["dag_run_id"], "nightly-1");
    assert_eq!(run["logical_date"], "2024-06-01T00:00:00+00:00");
    assert_eq!(run["conf"]["greeting"], "hello");
    assert_eq!((run["state"].as_str(), run["run_type"].as_str()), (Some("queued"), Some("manual")));
    let (status, body) = api.call(Some("user"), Method::POST, "/dags/api_dag/dagRuns", Some(conf)).await;
    assert_problem(status, &body, StatusCode::CONFLICT, "the same run id twice");
    let (status, body) =
        api.call(Some("user"), Method::POST, "/dags/api_dag/dagRuns", Some(r#"{"conf": {"greeting": 5}}"#)).await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST, "a conf of the wrong type");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("greeting")), "{body}");
    let (status, list) = api.call(Some("viewer"), Method::GET, "/dags/api_dag/dagRuns?limit=1&offset=0", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((list["total_entries"].as_i64(), list["dag_runs"].as_array().map(Vec::len)), (Some(1), Some(1)));
    let (_, tis) = api.call(Some("viewer"), Method::GET, "/dags/api_dag/dagRuns/nightly-1/taskInstances", None).await;
    let ids: Vec<&str> =
        tis["task_instances"].as_array().expect("list").iter().filter_map(|t| t["task_id"].as_str()).collect();
    assert_eq!(ids, ["first", "second"]);
    assert_eq!(tis["task_instances"][0]["state"], Value::Null, "not started: no state, as Airflow");
    let (status, marked) =
        api.call(Some("user"), Method::PATCH, "/dags/api_dag/dagRuns/nightly-1", Some(r#"{"state": "success"}"#)).await;
    assert_eq!((status, marked["state"].as_str()), (StatusCode::OK, Some("success")), "{marked}");
    let (_, tis) = api.call(Some("viewer"), Method::GET, "/dags/api_dag/dagRuns/nightly-1/taskInstances", None).await;
    assert!(tis["task_instances"].as_array().expect("list").iter().all(|t| t["state"] == "success"), "{tis}");
    let (_, stats) = api.call(Some("viewer"), Method::GET, "/dagStats?dag_ids=api_dag,nope", None).await;
    assert_eq!(stats["total_entries"], 1, "{stats}");
    let counts: Vec<(&str, i64)> = stats["dags"][0]["stats"]
        .as_array()
        .expect("stats")
        .iter()
        .filter_map(|s| Some((s["state"].as_str()?, s["count"].as_i64()?)))
        .collect();
    assert_eq!(counts, [("queued", 0), ("running", 0), ("success", 1), ("failed", 0)], "{stats}");
    let (status, answer) = api.call(Some("viewer"), Method::GET, "/dagStats", None).await;
    assert_problem(status, &answer, StatusCode::BAD_REQUEST, "dagStats without dag_ids");
    let (status, body) =
        api.call(Some("user"), Method::PATCH, "/dags/api_dag/dagRuns/nightly-1", Some(r#"{"state": "paused"}"#)).await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST, "an unknown state");
    let (status, _) = api.call(Some("user"), Method::DELETE, "/dags/api_dag/dagRuns/nightly-1", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api.call(Some("user"), Method::GET, "/dags/api_dag/dagRuns/nightly-1", None).await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "a deleted run");
    assert!(api.store.runs("api_dag", 10).await.expect("runs").is_empty());
}

#[tokio::test]
async fn task_instances_are_cleared_with_their_relatives_dry_run_first() {
    let api = Api::start().await;
    let (status, run) =
        api.call(Some("user"), Method::POST, "/dags/api_dag/dagRuns", Some(r#"{"dag_run_id": "r1"}"#)).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let run_pk = api.store.run_by_id("api_dag", "r1").await.expect("run").id;
    let failed = sluice_runtime::rules::TiState::Failed;
    for task in ["first", "second"] {
        api.store.mark_task(&PIPELINES[0], run_pk, task, failed, 32).await.expect("mark");
    }
    let states = || async {
        let (_, tis) = api.call(Some("viewer"), Method::GET, "/dags/api_dag/dagRuns/r1/taskInstances", None).await;
        tis["task_instances"].as_array().expect("list").iter().map(|t| t["state"].clone()).collect::<Vec<Value>>()
    };
    assert_eq!(states().await, [json!("failed"), json!("failed")]);
    let api = &api;
    let clear = |body: Value| async move {
        api.call(Some("user"), Method::POST, "/dags/api_dag/clearTaskInstances", Some(&body.to_string())).await
    };
    let ids = |answer: &Value| -> Vec<String> {
        answer["task_instances"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|t| Some(t["task_id"].as_str()?.to_string()))
            .collect()
    };
    // A dry run (the default) lists and changes nothing.
    let (status, answer) = clear(json!({ "dag_run_id": "r1", "task_ids": ["first"] })).await;
    assert_eq!((status, ids(&answer)), (StatusCode::OK, vec!["first".to_string()]), "{answer}");
    assert_eq!(answer["task_instances"][0]["dag_run_id"], "r1", "{answer}");
    let (_, answer) = clear(json!({ "dag_run_id": "r1", "task_ids": ["first"], "include_downstream": true })).await;
    assert_eq!(ids(&answer), ["first", "second"], "{answer}");
    let (_, answer) = clear(json!({ "task_ids": ["second"], "include_upstream": true })).await;
    assert_eq!(ids(&answer), ["first", "second"], "in the pipeline's task order: {answer}");
    assert_eq!(states().await, [json!("failed"), json!("failed")], "a dry run changes nothing");
    // For real: the task and its downstream, and the run is reopened.
    let (status, answer) =
        clear(json!({ "dry_run": false, "dag_run_id": "r1", "task_ids": ["first"], "include_downstream": true })).await;
    assert_eq!((status, ids(&answer)), (StatusCode::OK, vec!["first".to_string(), "second".to_string()]), "{answer}");
    assert_eq!(states().await, [Value::Null, Value::Null], "cleared: no state, as Airflow");
    let (_, run) = api.call(Some("viewer"), Method::GET, "/dags/api_dag/dagRuns/r1", None).await;
    assert_eq!(run["state"], "queued", "{run}");
    // Nothing failed any more: only_failed (the default) finds nothing.
    let (_, answer) = clear(json!({ "dry_run": false, "dag_run_id": "r1" })).await;
    assert_eq!(ids(&answer), Vec::<String>::new(), "{answer}");
    for (body, what) in [
        (json!({ "only_failed": true, "only_running": true }), "only_failed and only_running"),
        (json!({ "task_ids": ["nope"] }), "an unknown task"),
        (json!({ "start_date": "yesterday" }), "a date that does not parse"),
    ] {
        let (status, answer) = clear(body).await;
        assert_problem(status, &answer, StatusCode::BAD_REQUEST, what);
    }
    let (status, answer) = clear(json!({ "dag_run_id": "nope" })).await;
    assert_problem(status, &answer, StatusCode::NOT_FOUND, "an unknown run");
    // A whole run: a dry run lists its task instances, a real one answers the run.
    api.call(Some("user"), Method::PATCH, "/dags/api_dag/dagRuns/r1", Some(r#"{"state": "success"}"#)).await;
    let (status, answer) = api.call(Some("user"), Method::POST, "/dags/api_dag/dagRuns/r1/clear", Some("{}")).await;
    assert_eq!((status, answer["total_entries"].as_i64()), (StatusCode::OK, Some(2)), "{answer}");
    assert_eq!(states().await, [json!("success"), json!("success")], "a dry run changes nothing");
    let (status, answer) =
        api.call(Some("user"), Method::POST, "/dags/api_dag/dagRuns/r1/clear", Some(r#"{"dry_run": false}"#)).await;
    assert_eq!(
        (status, answer["dag_run_id"].as_str(), answer["state"].as_str()),
        (StatusCode::OK, Some("r1"), Some("queued")),
        "{answer}"
    );
    assert_eq!(states().await, [Value::Null, Value::Null]);
}

/// Runs the queued task instances of `queued` to `outcome`, as a worker would.
async fn run_queued(
    api: &Api,
    queued: &[sluice_runtime::store::Queued],
    outcome: &sluice_runtime::store::Outcome,
) -> Vec<sluice_runtime::store::Queued> {
    let mut next = Vec::new();
    for q in queued {
        let p = &PIPELINES[0];
        let claimed = api.store.claim(q.ti_id, "w1", std::slice::from_ref(p)).await.expect("claim").expect("queued");
        next.extend(api.store.finish(p, claimed.ti_id, claimed.try_number, outcome, 32).await.expect("finish"));
    }
    next
}

#[tokio::test]
async fn tries_outputs_links_and_dependencies_of_a_task_instance() {
    use sluice_runtime::store::Outcome;
    let api = Api::start().await;
    let (status, run) =
        api.call(Some("user"), Method::POST, "/dags/api_dag/dagRuns", Some(r#"{"dag_run_id": "r1"}"#)).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let base = "/dags/api_dag/dagRuns/r1/taskInstances";
    let queued = api.store.advance_pipeline(&PIPELINES[0], 32).await.expect("advance");
    // `second` waits for `first`: its trigger rule says so.
    let (_, deps) = api.call(Some("viewer"), Method::GET, &format!("{base}/second/dependencies"), None).await;
    assert_eq!(deps["dependencies"][0]["name"], "Trigger Rule", "{deps}");
    assert!(
        deps["dependencies"][0]["reason"].as_str().is_some_and(|r| r.contains("all_success") && r.contains("first")),
        "{deps}"
    );
    let queued = run_queued(&api, &queued, &Outcome::Success(json!({ "rows": 3 }))).await;
    let (_, deps) = api.call(Some("viewer"), Method::GET, &format!("{base}/second/-1/dependencies"), None).await;
    assert!(
        deps["dependencies"][0]["reason"].as_str().is_some_and(|r| r.contains("'queued'")),
        "queued once `first` ended: {deps}"
    );
    let (_, deps) = api.call(Some("viewer"), Method::GET, &format!("{base}/first/dependencies"), None).await;
    assert_eq!(deps["dependencies"][0]["name"], "Task Instance State", "{deps}");
    // Outputs as XCom: one output is `return_value`.
    let (_, xcoms) = api.call(Some("viewer"), Method::GET, &format!("{base}/first/xcomEntries"), None).await;
    assert_eq!(
        (xcoms["total_entries"].as_i64(), xcoms["xcom_entries"][0]["key"].as_str()),
        (Some(1), Some("return_value")),
        "{xcoms}"
    );
    let (_, xcom) =
        api.call(Some("viewer"), Method::GET, &format!("{base}/first/xcomEntries/return_value"), None).await;
    assert_eq!(xcom["value"], "3", "stringified, as Airflow answers by default: {xcom}");
    let (_, xcom) = api
        .call(Some("viewer"), Method::GET, &format!("{base}/first/xcomEntries/return_value?stringify=false"), None)
        .await;
    assert_eq!(xcom["value"], 3, "{xcom}");
    let (status, answer) = api.call(Some("viewer"), Method::GET, &format!("{base}/first/xcomEntries/rows"), None).await;
    assert_problem(status, &answer, StatusCode::NOT_FOUND, "an XCom key that is not there");
    // `second` fails its first try; the tries list both states of the instance.
    run_queued(&api, &queued, &Outcome::Failed("boom".into())).await;
    let (_, tries) = api.call(Some("viewer"), Method::GET, &format!("{base}/second/tries"), None).await;
    let states: Vec<(i64, &str)> = tries["task_instances"]
        .as_array()
        .expect("tries")
        .iter()
        .filter_map(|t| Some((t["try_number"].as_i64()?, t["state"].as_str()?)))
        .collect();
    assert_eq!(states, [(1, "failed")], "{tries}");
    let (_, one) = api.call(Some("viewer"), Method::GET, &format!("{base}/second/-1/tries/1"), None).await;
    assert_eq!((one["task_id"].as_str(), one["try_number"].as_i64()), (Some("second"), Some(1)), "{one}");
    let (status, answer) = api.call(Some("viewer"), Method::GET, &format!("{base}/second/tries/2"), None).await;
    assert_problem(status, &answer, StatusCode::NOT_FOUND, "a try that never happened");
    let (_, links) = api.call(Some("viewer"), Method::GET, &format!("{base}/second/links"), None).await;
    assert_eq!(links, json!({ "extra_links": [] }));
    // The unmapped instance is map index -1; no other exists.
    let (_, ti) = api.call(Some("viewer"), Method::GET, &format!("{base}/second/-1"), None).await;
    assert_eq!((ti["task_id"].as_str(), ti["map_index"].as_i64()), (Some("second"), Some(-1)), "{ti}");
    for path in [format!("{base}/second/0"), format!("{base}/second/listMapped"), format!("{base}/second/3/tries")] {
        let (status, answer) = api.call(Some("viewer"), Method::GET, &path, None).await;
        assert_problem(status, &answer, StatusCode::NOT_FOUND, &path);
    }
}

#[tokio::test]
async fn task_states_are_set_by_hand_with_their_relatives() {
    let api = Api::start().await;
    let (status, run) =
        api.call(Some("user"), Method::POST, "/dags/api_dag/dagRuns", Some(r#"{"dag_run_id": "r1"}"#)).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let states = || async {
        let (_, tis) = api.call(Some("viewer"), Method::GET, "/dags/api_dag/dagRuns/r1/taskInstances", None).await;
        tis["task_instances"].as_array().expect("list").iter().map(|t| t["state"].clone()).collect::<Vec<Value>>()
    };
    let first = "/dags/api_dag/dagRuns/r1/taskInstances/first";
    // A dry run (the default) answers the instance and changes nothing.
    let (status, answer) = api.call(Some("user"), Method::PATCH, first, Some(r#"{"new_state": "failed"}"#)).await;
    assert_eq!(
        (status, answer["task_id"].as_str(), answer["dag_run_id"].as_str()),
        (StatusCode::OK, Some("first"), Some("r1")),
        "{answer}"
    );
    assert_eq!(states().await, [Value::Null, Value::Null]);
    let (status, answer) =
        api.call(Some("user"), Method::PATCH, first, Some(r#"{"new_state": "failed", "dry_run": false}"#)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(states().await[0], "failed");
    let (status, answer) = api
        .call(
            Some("user"),
            Method::PATCH,
            &format!("{first}/-1"),
            Some(r#"{"new_state": "success", "dry_run": false}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(states().await[0], "success");
    // With downstream, for real: both.
    let body = json!({ "task_id": "first", "dag_run_id": "r1", "include_downstream": true, "new_state": "skipped", "dry_run": false });
    let (status, answer) =
        api.call(Some("user"), Method::POST, "/dags/api_dag/updateTaskInstancesState", Some(&body.to_string())).await;
    let ids: Vec<&str> =
        answer["task_instances"].as_array().expect("list").iter().filter_map(|t| t["task_id"].as_str()).collect();
    assert_eq!((status, ids), (StatusCode::OK, vec!["first", "second"]), "{answer}");
    assert_eq!(states().await, [json!("skipped"), json!("skipped")]);
    for (body, what) in [
        (json!({ "task_id": "first", "dag_run_id": "r1", "new_state": "running" }), "a state only the scheduler sets"),
        (json!({ "task_id": "first", "new_state": "success" }), "no run"),
        (json!({ "dag_run_id": "r1", "new_state": "success" }), "no task"),
        (json!({ "task_id": "nope", "dag_run_id": "r1", "new_state": "success" }), "an unknown task"),
    ] {
        let (status, answer) = api
            .call(Some("user"), Method::POST, "/dags/api_dag/updateTaskInstancesState", Some(&body.to_string()))
            .await;
        assert_problem(status, &answer, StatusCode::BAD_REQUEST, what);
    }
}

#[tokio::test]
async fn runs_and_task_instances_are_listed_across_pipelines_by_filter() {
    let api = Api::start().await;
    for id in ["r1", "r2"] {
        let body = json!({ "dag_run_id": id }).to_string();
        let (status, run) = api.call(Some("user"), Method::POST, "/dags/api_dag/dagRuns", Some(&body)).await;
        assert_eq!(status, StatusCode::OK, "{run}");
    }
    api.call(Some("user"), Method::PATCH, "/dags/api_dag/dagRuns/r2", Some(r#"{"state": "success"}"#)).await;
    let count = |path: &'static str| {
        let api = &api;
        async move {
            let (status, answer) = api.call(Some("viewer"), Method::GET, path, None).await;
            assert_eq!(status, StatusCode::OK, "{path}: {answer}");
            answer["total_entries"].as_i64().expect("total_entries")
        }
    };
    assert_eq!(count("/dags/~/dagRuns").await, 2);
    assert_eq!(count("/dags/api_dag/dagRuns?state=success").await, 1);
    assert_eq!(count("/dags/~/dagRuns?state=success&state=queued").await, 2);
    assert_eq!(count("/dags/~/dagRuns?execution_date_gte=2999-01-01T00:00:00Z").await, 0);
    assert_eq!(count("/dags/~/dagRuns/~/taskInstances").await, 4);
    assert_eq!(count("/dags/~/dagRuns/~/taskInstances?state=success").await, 2);
    assert_eq!(count("/dags/api_dag/dagRuns/~/taskInstances?state=success&limit=1").await, 2);
    assert_eq!(count("/dags/api_dag/dagRuns/r1/taskInstances").await, 2);
    let batch = |path: &'static str, body: Value| {
        let api = &api;
        async move { api.call(Some("viewer"), Method::POST, path, Some(&body.to_string())).await }
    };
    let (status, runs) = batch("/dags/~/dagRuns/list", json!({ "dag_ids": ["api_dag"], "states": ["success"] })).await;
    assert_eq!((status, runs["total_entries"].as_i64()), (StatusCode::OK, Some(1)), "{runs}");
    assert_eq!(runs["dag_runs"][0]["dag_run_id"], "r2", "{runs}");
    let (_, tis) = batch("/dags/~/dagRuns/~/taskInstances/list", json!({ "task_ids": ["first"] })).await;
    assert_eq!(tis["total_entries"], 2, "{tis}");
    let (_, tis) =
        batch("/dags/~/dagRuns/~/taskInstances/list", json!({ "dag_run_ids": ["r1"], "task_ids": ["second"] })).await;
    let found: Vec<(&str, &str)> = tis["task_instances"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| Some((t["dag_run_id"].as_str()?, t["task_id"].as_str()?)))
        .collect();
    assert_eq!(found, [("r1", "second")], "{tis}");
    let (status, answer) =
        api.call(Some("viewer"), Method::GET, "/dags/~/dagRuns?start_date_lte=yesterday", None).await;
    assert_problem(status, &answer, StatusCode::BAD_REQUEST, "a date that does not parse");
    let (status, answer) = batch("/dags/~/dagRuns/list", json!({ "page_limit": "ten" })).await;
    assert_problem(status, &answer, StatusCode::BAD_REQUEST, "a page limit that is not a number");
}

#[tokio::test]
async fn notes_are_written_on_runs_and_task_instances() {
    let api = Api::start().await;
    let (status, run) =
        api.call(Some("user"), Method::POST, "/dags/api_dag/dagRuns", Some(r#"{"dag_run_id": "r1"}"#)).await;
    assert_eq!((status, &run["note"]), (StatusCode::OK, &Value::Null), "{run}");
    let note = r#"{"note": "re-run after the <feed> outage"}"#;
    let (status, run) = api.call(Some("user"), Method::PATCH, "/dags/api_dag/dagRuns/r1/setNote", Some(note)).await;
    assert_eq!((status, run["note"].as_str()), (StatusCode::OK, Some("re-run after the <feed> outage")), "{run}");
    let (_, run) = api.call(Some("viewer"), Method::GET, "/dags/api_dag/dagRuns/r1", None).await;
    assert_eq!(run["note"], "re-run after the <feed> outage", "{run}");
    let ti = "/dags/api_dag/dagRuns/r1/taskInstances/first";
    let (status, answer) =
        api.call(Some("user"), Method::PATCH, &format!("{ti}/setNote"), Some(r#"{"note": "slow"}"#)).await;
    assert_eq!((status, answer["note"].as_str()), (StatusCode::OK, Some("slow")), "{answer}");
    let (_, answer) = api.call(Some("viewer"), Method::GET, ti, None).await;
    assert_eq!(answer["note"], "slow", "{answer}");
    let (status, answer) =
        api.call(Some("user"), Method::PATCH, &format!("{ti}/-1/setNote"), Some(r#"{"note": null}"#)).await;
    assert_eq!((status, &answer["note"]), (StatusCode::OK, &Value::Null), "a null note removes it: {answer}");
    let long = json!({ "note": "n".repeat(1001) }).to_string();
    let (status, answer) = api.call(Some("user"), Method::PATCH, "/dags/api_dag/dagRuns/r1/setNote", Some(&long)).await;
    assert_problem(status, &answer, StatusCode::BAD_REQUEST, "a note over 1,000 characters");
    let (status, answer) =
        api.call(Some("user"), Method::PATCH, &format!("{ti}/3/setNote"), Some(r#"{"note": "x"}"#)).await;
    assert_problem(status, &answer, StatusCode::NOT_FOUND, "a map index that does not exist");
}

#[tokio::test]
async fn admins_manage_users_and_read_the_fixed_roles() {
    let api = Api::start().await;
    let (status, users) = api.call(Some("admin"), Method::GET, "/users", None).await;
    assert_eq!((status, users["total_entries"].as_i64()), (StatusCode::OK, Some(4)), "{users}");
    let new = json!({ "username": "ana", "email": "ana@example.com", "first_name": "Ana", "last_name": "L",
                      "roles": [{ "name": "Op" }], "password": "a-long-password" });
    let (status, user) = api.call(Some("admin"), Method::POST, "/users", Some(&new.to_string())).await;
    assert_eq!((status, user["roles"][0]["name"].as_str()), (StatusCode::OK, Some("Op")), "{user}");
    assert!(user.get("password").is_none(), "a password never comes back: {user}");
    let (status, answer) = api.call(Some("admin"), Method::POST, "/users", Some(&new.to_string())).await;
    assert_problem(status, &answer, StatusCode::CONFLICT, "the same username twice");
    // The new user signs in with their password and has their role.
    let client = reqwest::Client::new();
    let as_ana = |password: &'static str| {
        client.get(format!("{}/connections", api.base)).basic_auth("ana", Some(password)).send()
    };
    assert_eq!(as_ana("a-long-password").await.expect("answer").status(), StatusCode::OK);
    let (status, user) = api
        .call(Some("admin"), Method::PATCH, "/users/ana?update_mask=roles", Some(r#"{"roles": [{"name": "Viewer"}]}"#))
        .await;
    assert_eq!((status, user["roles"][0]["name"].as_str()), (StatusCode::OK, Some("Viewer")), "{user}");
    assert_eq!(as_ana("a-long-password").await.expect("answer").status(), StatusCode::FORBIDDEN, "a Viewer now");
    let (status, _) =
        api.call(Some("admin"), Method::PATCH, "/users/ana", Some(r#"{"password": "another-long-one"}"#)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(as_ana("a-long-password").await.expect("answer").status(), StatusCode::UNAUTHORIZED, "the old password");
    for (method, path, body, what) in [
        (Method::POST, "/users", json!({ "username": "bo", "email": "b@x", "password": "short" }), "a short password"),
        (
            Method::POST,
            "/users",
            json!({ "username": "bo", "email": "b@x", "password": "long-enough-pw", "roles": [{ "name": "Root" }] }),
            "an unknown role",
        ),
        (
            Method::POST,
            "/users",
            json!({ "username": "bo", "email": "b@x", "password": "long-enough-pw", "roles": [{ "name": "Op" }, { "name": "User" }] }),
            "two roles",
        ),
        (Method::PATCH, "/users/ana?update_mask=email", json!({ "email": "new@x" }), "a field that cannot change"),
        (Method::POST, "/roles", json!({ "name": "Auditor", "actions": [] }), "a new role"),
        (Method::PATCH, "/roles/Op", json!({ "name": "Op", "actions": [] }), "changing a fixed role"),
    ] {
        let (status, answer) = api.call(Some("admin"), method, path, Some(&body.to_string())).await;
        assert_problem(status, &answer, StatusCode::BAD_REQUEST, what);
    }
    let (status, _) = api.call(Some("admin"), Method::DELETE, "/users/ana", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, answer) = api.call(Some("admin"), Method::GET, "/users/ana", None).await;
    assert_problem(status, &answer, StatusCode::NOT_FOUND, "a deleted user");
    // Roles: the four, each holding what the one below holds.
    let (_, roles) = api.call(Some("admin"), Method::GET, "/roles", None).await;
    let names: Vec<&str> =
        roles["roles"].as_array().expect("roles").iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["Viewer", "User", "Op", "Admin"], "{roles}");
    let actions = |role: &Value| role["actions"].as_array().map_or(0, Vec::len);
    assert!(
        actions(&roles["roles"][0]) < actions(&roles["roles"][1])
            && actions(&roles["roles"][2]) < actions(&roles["roles"][3]),
        "{roles}"
    );
    let (_, op) = api.call(Some("admin"), Method::GET, "/roles/Op", None).await;
    assert!(op["actions"].as_array().expect("actions").iter().any(|a| a["resource"]["name"] == "Connections"), "{op}");
    let (status, answer) = api.call(Some("admin"), Method::DELETE, "/roles/Nope", None).await;
    assert_problem(status, &answer, StatusCode::NOT_FOUND, "an unknown role");
    let (_, permissions) = api.call(Some("admin"), Method::GET, "/permissions", None).await;
    assert!(
        permissions["actions"].as_array().expect("actions").iter().any(|a| a["name"] == "can_edit"),
        "{permissions}"
    );
}

#[tokio::test]
async fn pipelines_are_paused_in_bulk_and_a_compiled_one_is_not_deleted() {
    let api = Api::start().await;
    let (status, dags) =
        api.call(Some("user"), Method::PATCH, "/dags?dag_id_pattern=api", Some(r#"{"is_paused": true}"#)).await;
    assert_eq!((status, dags["total_entries"].as_i64()), (StatusCode::OK, Some(1)), "{dags}");
    assert_eq!(dags["dags"][0]["is_paused"], true, "{dags}");
    let (_, dag) = api.call(Some("viewer"), Method::GET, "/dags/api_dag", None).await;
    assert_eq!(dag["is_paused"], true, "{dag}");
    let (_, dags) =
        api.call(Some("user"), Method::PATCH, "/dags?dag_id_pattern=zzz", Some(r#"{"is_paused": false}"#)).await;
    assert_eq!(dags["total_entries"], 0, "{dags}");
    let (status, answer) = api.call(Some("user"), Method::PATCH, "/dags", Some(r#"{"is_paused": false}"#)).await;
    assert_problem(status, &answer, StatusCode::BAD_REQUEST, "no dag_id_pattern");
    let (status, answer) = api.call(Some("op"), Method::DELETE, "/dags/api_dag", None).await;
    assert_problem(status, &answer, StatusCode::CONFLICT, "a pipeline still compiled in");
    let (status, answer) = api.call(Some("op"), Method::DELETE, "/dags/nope", None).await;
    assert_problem(status, &answer, StatusCode::NOT_FOUND, "an unknown pipeline");
    let (status, answer) = api.call(Some("user"), Method::DELETE, "/dags/nope", None).await;
    assert_problem(status, &answer, StatusCode::FORBIDDEN, "a User deleting a pipeline's history");
}

#[tokio::test]
async fn pages_and_enums_as_airflow_serves_them() {
    let api = Api::start().await;
    // No limit and limit=0 give the default page; a limit above the maximum is cut to it.
    for path in ["/variables", "/variables?limit=0", "/variables?limit=5000"] {
        let (status, _) = api.call(Some("admin"), Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    for i in 0..120 {
        let body = json!({ "key": format!("k{i:03}"), "value": "v" }).to_string();
        let (status, answer) = api.call(Some("admin"), Method::POST, "/variables", Some(&body)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    for (path, page) in [("/variables", 100), ("/variables?limit=0", 100), ("/variables?limit=5000", 120)] {
        let (_, list) = api.call(Some("admin"), Method::GET, path, None).await;
        assert_eq!(list["variables"].as_array().map(Vec::len), Some(page), "{path}");
        assert_eq!(list["total_entries"], 120, "{path}");
    }
    let (_, task) = api.call(Some("viewer"), Method::GET, "/dags/api_dag/tasks/first", None).await;
    assert_eq!((task["task_id"].as_str(), &task["downstream_task_ids"]), (Some("first"), &json!(["second"])), "{task}");
    let (status, answer) = api.call(Some("viewer"), Method::GET, "/dags/api_dag/tasks/nope", None).await;
    assert_problem(status, &answer, StatusCode::NOT_FOUND, "an unknown task");
    let (_, details) = api.call(Some("viewer"), Method::GET, "/dags/api_dag/details", None).await;
    assert_eq!((details["dag_id"].as_str(), details["timezone"].as_str()), (Some("api_dag"), Some("UTC")), "{details}");
    assert_eq!(details["params"]["greeting"]["value"], "hi", "{details}");
    // Enums in Airflow's strings, as the official client validates them.
    let (_, tasks) = api.call(Some("viewer"), Method::GET, "/dags/api_dag/tasks", None).await;
    let rules: Vec<&str> =
        tasks["tasks"].as_array().expect("tasks").iter().filter_map(|t| t["trigger_rule"].as_str()).collect();
    assert_eq!(rules, ["all_success", "all_success"], "{tasks}");
}

/// One HTTP/1.1 answer read off `stream`: its status line and body.
async fn read_answer(stream: &mut tokio::net::TcpStream) -> (String, String) {
    use tokio::io::AsyncReadExt;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.expect("read the answer's head");
        assert!(n > 0, "the server closed the connection before answering");
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().expect("length")))
        .expect("a content-length");
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await.expect("read the answer's body");
        assert!(n > 0, "the server closed the connection mid-answer");
        buffer.extend_from_slice(&chunk[..n]);
    }
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, String::from_utf8_lossy(&buffer[head_end..head_end + length]).to_string())
}

#[tokio::test]
async fn an_unknown_route_answers_a_problem_and_the_connection_stays_usable() {
    use tokio::io::AsyncWriteExt;
    let api = Api::start().await;
    let host = api.base.trim_start_matches("http://").trim_end_matches("/api/v1").to_string();
    let mut stream = tokio::net::TcpStream::connect(&host).await.expect("connect");
    // A body large enough that the client is still sending it when an early answer comes.
    let body = format!("{{\"dry_run\": true, \"pad\": \"{}\"}}", "x".repeat(512 * 1024));
    for (method, path, status) in
        [("POST", "/api/v1/dags/api_dag/noSuchAction", "404"), ("DELETE", "/api/v1/version", "405")]
    {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("send the head");
        stream.write_all(body.as_bytes()).await.expect("send the whole body");
        let (line, answer) = read_answer(&mut stream).await;
        assert!(line.contains(status), "{method} {path}: {line}");
        let problem: Value = serde_json::from_str(&answer).expect("a problem document");
        assert_eq!(problem["status"].as_u64(), status.parse().ok(), "{answer}");
    }
    stream.write_all(format!("GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await.expect("send");
    let (line, _) = read_answer(&mut stream).await;
    assert!(line.contains("200"), "the same connection answers the next request: {line}");
}

#[tokio::test]
async fn bad_input_is_a_4xx_problem_not_a_500() {
    let api = Api::start().await;
    let cases: &[(Method, &str, Option<&str>, StatusCode)] = &[
        (Method::GET, "/dags/nope", None, StatusCode::NOT_FOUND),
        (Method::GET, "/dags/api_dag/dagRuns/nope", None, StatusCode::NOT_FOUND),
        (Method::GET, "/dags/api_dag/dagRuns/nope/taskInstances/first", None, StatusCode::NOT_FOUND),
        (Method::GET, "/no/such/route", None, StatusCode::NOT_FOUND),
        (Method::GET, "/dags?limit=-1", None, StatusCode::BAD_REQUEST),
        (Method::GET, "/dags?offset=-1", None, StatusCode::BAD_REQUEST),
        (Method::GET, "/dags?limit=ten", None, StatusCode::BAD_REQUEST),
        (Method::GET, "/dags?paused=null", None, StatusCode::BAD_REQUEST),
        (Method::GET, "/dags/api_dag/dagRuns?limit=1e3", None, StatusCode::BAD_REQUEST),
        (Method::PATCH, "/dags/api_dag", Some("{not json"), StatusCode::BAD_REQUEST),
        (Method::PATCH, "/dags/api_dag", Some(r#"{"is_paused": "yes"}"#), StatusCode::BAD_REQUEST),
        (Method::PATCH, "/dags/api_dag?update_mask=owners", Some(r#"{"is_paused": true}"#), StatusCode::BAD_REQUEST),
        (Method::POST, "/dags/api_dag/dagRuns", Some(r#"{"conf": [1]}"#), StatusCode::BAD_REQUEST),
        (Method::POST, "/dags/api_dag/dagRuns", Some(r#"{"logical_date": "tomorrow"}"#), StatusCode::BAD_REQUEST),
        (Method::POST, "/variables", Some(r#"{"key": "k"}"#), StatusCode::BAD_REQUEST),
        (Method::POST, "/variables", Some("[]"), StatusCode::BAD_REQUEST),
        (Method::GET, "/variables/missing", None, StatusCode::NOT_FOUND),
        (Method::DELETE, "/variables/missing", None, StatusCode::NOT_FOUND),
        (Method::POST, "/connections", Some(r#"{"conn_type": "http"}"#), StatusCode::BAD_REQUEST),
        (
            Method::POST,
            "/connections",
            Some(r#"{"connection_id": "c", "conn_type": "http", "extra": "{oops"}"#),
            StatusCode::BAD_REQUEST,
        ),
        (Method::GET, "/connections/missing", None, StatusCode::NOT_FOUND),
        (Method::DELETE, "/connections/missing", None, StatusCode::NOT_FOUND),
        (Method::GET, "/pools/missing", None, StatusCode::NOT_FOUND),
    ];
    for (method, path, body, expected) in cases {
        let (status, answer) = api.call(Some("admin"), method.clone(), path, *body).await;
        assert_problem(status, &answer, *expected, &format!("{method} {path}"));
    }
    // Run ids outside Airflow's allowed pattern, as a `User` sends them.
    let long = "r".repeat(251);
    for id in ["", " ", "a b", "x'; touch /tmp/p; echo '", "$(id)", "../etc", "a/b", "a\nb", "é", long.as_str()] {
        let body = json!({ "dag_run_id": id }).to_string();
        let (status, answer) = api.call(Some("user"), Method::POST, "/dags/api_dag/dagRuns", Some(&body)).await;
        assert_problem(status, &answer, StatusCode::BAD_REQUEST, &format!("dag_run_id {id:?}"));
    }
    let body = json!({ "dag_run_id": "ok_run-1.2:3+4~5" }).to_string();
    let (status, answer) = api.call(Some("user"), Method::POST, "/dags/api_dag/dagRuns", Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let huge = format!(r#"{{"key": "big", "value": "{}"}}"#, "x".repeat(2 * 1024 * 1024));
    let (status, answer) = api.call(Some("admin"), Method::POST, "/variables", Some(&huge)).await;
    assert_problem(status, &answer, StatusCode::PAYLOAD_TOO_LARGE, "an oversized body");
}

#[tokio::test]
async fn secrets_never_come_back() {
    let api = Api::start().await;
    let conn = r#"{"connection_id": "warehouse", "conn_type": "postgres", "host": "db", "login": "etl",
                   "password": "hunter2-pw", "schema": "dwh", "extra": "{\"sslmode\": \"require\", \"api_key\": \"k-secret-9\"}"}"#;
    let (status, created) = api.call(Some("op"), Method::POST, "/connections", Some(conn)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    for path in ["/connections", "/connections/warehouse"] {
        let (status, body) = api.call(Some("op"), Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK);
        let text = body.to_string();
        assert!(!text.contains("hunter2-pw") && !text.contains("k-secret-9"), "{path}: {text}");
    }
    let (_, one) = api.call(Some("op"), Method::GET, "/connections/warehouse", None).await;
    assert_eq!((one["schema"].as_str(), one["login"].as_str()), (Some("dwh"), Some("etl")));
    assert!(one["extra"].as_str().is_some_and(|e| e.contains("require")), "{one}");
    let (status, _) =
        api.call(Some("op"), Method::POST, "/variables", Some(r#"{"key": "db_password", "value": "s3cret"}"#)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, plain) =
        api.call(Some("op"), Method::POST, "/variables", Some(r#"{"key": "region", "value": "eu"}"#)).await;
    assert_eq!(plain["value"], "eu");
    for path in ["/variables", "/variables/db_password"] {
        let (_, body) = api.call(Some("op"), Method::GET, path, None).await;
        assert!(!body.to_string().contains("s3cret"), "{path}: {body}");
    }
    let (status, patched) =
        api.call(Some("op"), Method::PATCH, "/variables/region", Some(r#"{"key": "region", "value": "us"}"#)).await;
    assert_eq!((status, patched["value"].as_str()), (StatusCode::OK, Some("us")));
    let (status, _) = api.call(Some("op"), Method::DELETE, "/connections/warehouse", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.call(Some("op"), Method::GET, "/connections/warehouse", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metrics_count_runs_and_tasks_by_state() {
    let api = Api::start().await;
    let base = api.base.trim_end_matches("/api/v1").to_string();
    let anonymous = api.client.get(format!("{base}/metrics")).send().await.expect("response");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    for id in ["m1", "m2"] {
        let body = format!(r#"{{"dag_run_id": "{id}"}}"#);
        let (status, _) = api.call(Some("user"), Method::POST, "/dags/api_dag/dagRuns", Some(&body)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) =
        api.call(Some("user"), Method::PATCH, "/dags/api_dag/dagRuns/m1", Some(r#"{"state": "success"}"#)).await;
    assert_eq!(status, StatusCode::OK);
    let response =
        api.client.get(format!("{base}/metrics")).basic_auth("viewer", Some(PW)).send().await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().is_ok_and(|t| t.starts_with("text/plain; version=0.0.4")));
    let text = response.text().await.expect("text");
    for line in [
        r#"sluice_dag_runs{state="success"} 1"#,
        r#"sluice_dag_runs{state="queued"} 1"#,
        r#"sluice_task_instances{state="success"} 2"#,
        r#"sluice_task_instances{state="none"} 2"#,
        "# TYPE sluice_scheduling_delay_seconds summary",
        "# TYPE sluice_heartbeat_age_seconds gauge",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
}

#[tokio::test]
async fn failed_logins_and_busy_users_are_slowed_down() {
    use sluice_runtime::web::ratelimit::Limit;
    let minute = std::time::Duration::from_secs(60);
    let limiter =
        RateLimiter::in_process().with_limits(Limit { max: 3, window: minute }, Limit { max: 5, window: minute });
    let api = Api::start_limited(limiter).await;
    let wrong =
        |n: u32| api.client.get(format!("{}/dags", api.base)).basic_auth("viewer", Some(format!("wrong-{n}"))).send();
    for n in 0..3 {
        assert_eq!(wrong(n).await.expect("response").status(), StatusCode::UNAUTHORIZED);
    }
    let blocked = wrong(3).await.expect("response");
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = blocked.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // Locked out: even the right password waits, so guessing cannot go on.
    let (status, body) = api.call(Some("viewer"), Method::GET, "/dags", None).await;
    assert_problem(status, &body, StatusCode::TOO_MANY_REQUESTS, "the right password while locked out");
    // A user's request budget: 5 a minute, then 429 (a fresh server: the lockout above
    // holds for the whole address).
    let limiter =
        RateLimiter::in_process().with_limits(Limit { max: 3, window: minute }, Limit { max: 5, window: minute });
    let api = Api::start_limited(limiter).await;
    for _ in 0..5 {
        let (status, _) = api.call(Some("admin"), Method::GET, "/pools", None).await;
        assert_eq!(status, StatusCode::OK, "within the budget");
    }
    let (status, body) = api.call(Some("admin"), Method::GET, "/pools", None).await;
    assert_problem(status, &body, StatusCode::TOO_MANY_REQUESTS, "over the budget");
}

const FORM: &str = "application/x-www-form-urlencoded";

/// The login form's token and the cookie that carries its sealed copy, as a browser gets
/// them from `GET /login`.
async fn login_form(client: &reqwest::Client, site: &str) -> (String, String) {
    let page = client.get(format!("{site}/login")).send().await.expect("response");
    let cookie = page.headers()["set-cookie"].to_str().expect("ascii").split(';').next().expect("cookie").to_string();
    let html = page.text().await.expect("html");
    let token = html.split(r#"name="csrf" value=""#).nth(1).and_then(|s| s.split('"').next()).expect("token");
    (token.to_string(), cookie)
}

/// Signs in through the login form, as a browser does.
async fn sign_in(client: &reqwest::Client, site: &str, user: &str, password: &str) -> reqwest::Response {
    let (token, cookie) = login_form(client, site).await;
    client
        .post(format!("{site}/login"))
        .header("cookie", cookie)
        .header("content-type", FORM)
        .body(format!("csrf={token}&username={user}&password={password}"))
        .send()
        .await
        .expect("response")
}

/// The UI: sign-in, session cookie, CSRF on every form, roles on every action.
#[tokio::test]
async fn ui_pages_need_a_session_and_forms_need_its_csrf_token() {
    let api = Api::start().await;
    let site = api.base.trim_end_matches("/api/v1").to_string();
    let client =
        sluice_runtime::tls::http_client_builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    for page in
        ["/", "/dags/api_dag", "/dags/api_dag/runs/r/tasks/first", "/connections", "/variables", "/pools", "/users"]
    {
        let anonymous = client.get(format!("{site}{page}")).send().await.expect("response");
        assert_eq!(anonymous.status(), StatusCode::SEE_OTHER, "{page}");
        assert_eq!(anonymous.headers()["location"], "/login", "{page}");
    }
    for form in ["/dags/api_dag/trigger", "/variables", "/connections", "/pools", "/users", "/users/user/role"] {
        let anonymous = client.post(format!("{site}{form}")).header("content-type", FORM).body("csrf=x").send();
        assert_eq!(anonymous.await.expect("response").status(), StatusCode::SEE_OTHER, "anonymous POST {form}");
    }
    let login_page = client.get(format!("{site}/login")).send().await.expect("response").text().await.expect("html");
    assert!(login_page.contains(r#"<form id="login" method="post" action="/login">"#), "{login_page}");
    let sign_in = |user: &'static str, password: &'static str| {
        let (client, site) = (client.clone(), site.clone());
        async move { Ok::<_, ()>(sign_in(&client, &site, user, password).await) }
    };
    let wrong = sign_in("user", "nope").await.expect("response");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.text().await.expect("html").contains(r#"class="error""#));
    let cookie_of = |response: &reqwest::Response| {
        let set = response.headers()["set-cookie"].to_str().expect("ascii").to_string();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax"), "{set}");
        set.split(';').next().expect("name=value").to_string()
    };
    let signed = sign_in("user", PW).await.expect("response");
    assert_eq!((signed.status(), signed.headers()["location"].to_str().ok()), (StatusCode::SEE_OTHER, Some("/")));
    let cookie = cookie_of(&signed);
    let page = client.get(format!("{site}/")).header("cookie", &cookie).send().await.expect("response");
    let html = page.text().await.expect("html");
    assert!(html.contains(r#"<tr data-dag-id="api_dag">"#) && html.contains(r#"id="whoami">user<"#), "{html}");
    let csrf = html.split(r#"name="csrf" value=""#).nth(1).and_then(|s| s.split('"').next()).expect("a csrf token");
    let trigger = |cookie: String, csrf: String| {
        client
            .post(format!("{site}/dags/api_dag/trigger"))
            .header("cookie", cookie)
            .header("content-type", FORM)
            .body(format!("csrf={csrf}"))
            .send()
    };
    let forged = trigger(cookie.clone(), "forged".into()).await.expect("response");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN, "a form without the session's token");
    assert!(api.store.runs("api_dag", 10).await.expect("runs").is_empty());
    let done = trigger(cookie.clone(), csrf.to_string()).await.expect("response");
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(api.store.runs("api_dag", 10).await.expect("runs").len(), 1, "the form triggered a run");
    // The API accepts the session for reads; a change also needs the token in a header.
    let read = client.get(format!("{site}/api/v1/dags")).header("cookie", &cookie).send().await.expect("response");
    assert_eq!(read.status(), StatusCode::OK);
    let write = client
        .post(format!("{site}/api/v1/dags/api_dag/dagRuns"))
        .header("cookie", &cookie)
        .json(&serde_json::json!({}))
        .send();
    assert_eq!(write.await.expect("response").status(), StatusCode::FORBIDDEN);
    // A Viewer sees no buttons and cannot post them.
    let viewer = cookie_of(&sign_in("viewer", PW).await.expect("response"));
    let html = client
        .get(format!("{site}/"))
        .header("cookie", &viewer)
        .send()
        .await
        .expect("response")
        .text()
        .await
        .expect("html");
    assert!(!html.contains(r#"data-action="trigger""#), "{html}");
    assert_eq!(html.matches(r#"method="post""#).count(), 1, "a Viewer's page has no form but Log out: {html}");
    let denied = trigger(viewer.clone(), "anything".into()).await.expect("response");
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let conns = client.get(format!("{site}/connections")).header("cookie", &viewer).send().await.expect("response");
    assert_eq!(conns.status(), StatusCode::FORBIDDEN, "connections need Op");
    assert!(!html.contains(r#"id="default-password""#), "no banner for a chosen password");
    // Signed in with a well-known default password: a banner on every page says to change it.
    let weak =
        NewUser { username: "ops", email: "", role: "Admin", password: "changeme", first_name: "", last_name: "" };
    api.store.add_user(&weak).await.expect("user");
    let weak_cookie = cookie_of(&sign_in("ops", "changeme").await.expect("response"));
    let html = client
        .get(format!("{site}/"))
        .header("cookie", &weak_cookie)
        .send()
        .await
        .expect("response")
        .text()
        .await
        .expect("html");
    assert!(html.contains(r#"id="default-password""#), "{html}");
    // Users are managed by an Admin, through forms with the CSRF token.
    let viewer_users = client.get(format!("{site}/users")).header("cookie", &viewer).send().await.expect("response");
    assert_eq!(viewer_users.status(), StatusCode::FORBIDDEN);
    let admin = cookie_of(&sign_in("admin", PW).await.expect("response"));
    let page = client.get(format!("{site}/users")).header("cookie", &admin).send().await.expect("response");
    let html = page.text().await.expect("html");
    let admin_csrf = html.split(r#"name="csrf" value=""#).nth(1).and_then(|s| s.split('"').next()).expect("token");
    let add = client
        .post(format!("{site}/users"))
        .header("cookie", &admin)
        .header("content-type", FORM)
        .body(format!("csrf={admin_csrf}&username=newbie&email=n%40example.com&role=Viewer&password=long-enough-pw"))
        .send()
        .await
        .expect("response");
    assert_eq!(add.status(), StatusCode::SEE_OTHER);
    assert!(api.store.users().await.expect("users").iter().any(|u| u.username == "newbie" && u.role == "Viewer"));
    let short = client
        .post(format!("{site}/users"))
        .header("cookie", &admin)
        .header("content-type", FORM)
        .body(format!("csrf={admin_csrf}&username=short&role=Viewer&password=short"))
        .send()
        .await
        .expect("response");
    assert_eq!(short.status(), StatusCode::BAD_REQUEST);
    let promote = client
        .post(format!("{site}/users/newbie/role"))
        .header("cookie", &admin)
        .header("content-type", FORM)
        .body(format!("csrf={admin_csrf}&role=Op"))
        .send()
        .await
        .expect("response");
    assert_eq!(promote.status(), StatusCode::SEE_OTHER);
    assert!(api.store.users().await.expect("users").iter().any(|u| u.username == "newbie" && u.role == "Op"));
    // Signing out is a POST with the session's token; it ends the session for every copy
    // of the cookie.
    let shown = client.get(format!("{site}/logout")).header("cookie", &cookie).send().await.expect("response");
    assert_eq!(shown.status(), StatusCode::OK, "GET shows the button");
    assert!(shown.headers().get("set-cookie").is_none(), "GET /logout signs nobody out");
    let still = client.get(format!("{site}/")).header("cookie", &cookie).send().await.expect("response");
    assert_eq!(still.status(), StatusCode::OK, "still signed in after GET /logout");
    let logout = |csrf: String| {
        client
            .post(format!("{site}/logout"))
            .header("cookie", &cookie)
            .header("content-type", FORM)
            .body(format!("csrf={csrf}"))
            .send()
    };
    assert_eq!(logout("forged".into()).await.expect("response").status(), StatusCode::FORBIDDEN);
    let out = logout(csrf.to_string()).await.expect("response");
    assert_eq!((out.status(), out.headers()["location"].to_str().ok()), (StatusCode::SEE_OTHER, Some("/login")));
    assert!(out.headers()["set-cookie"].to_str().is_ok_and(|c| c.contains("Max-Age=0")));
    let replayed = client.get(format!("{site}/")).header("cookie", &cookie).send().await.expect("response");
    assert_eq!(replayed.headers()["location"], "/login", "the old cookie is no session any more");
}

/// The served OpenAPI document describes every route the API answers (and no other).
#[tokio::test]
async fn the_openapi_document_lists_the_served_routes() {
    let api = Api::start().await;
    let response = api.client.get(format!("{}/openapi.yaml", api.base)).send().await.expect("response");
    assert_eq!(response.status(), StatusCode::OK, "served without a login");
    let doc: Value = serde_saphyr::from_str(&response.text().await.expect("text")).expect("valid YAML");
    assert_eq!(doc["openapi"], "3.0.3");
    let paths: Vec<&str> = doc["paths"].as_object().expect("paths").keys().map(String::as_str).collect();
    let served = [
        "/health",
        "/version",
        "/importErrors",
        "/dags",
        "/dags/{dag_id}",
        "/dags/{dag_id}/tasks",
        "/dags/{dag_id}/dagRuns",
        "/dags/{dag_id}/dagRuns/{dag_run_id}",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{task_try_number}",
        "/connections",
        "/connections/{connection_id}",
        "/variables",
        "/variables/{variable_key}",
        "/pools",
        "/pools/{pool_name}",
        "/importErrors/{import_error_id}",
        "/plugins",
        "/providers",
        "/parseDagFile/{file_token}",
        "/datasets",
        "/datasets/{uri}",
        "/datasets/events",
        "/datasets/queuedEvent/{uri}",
        "/dags/{dag_id}/datasets/queuedEvent",
        "/dags/{dag_id}/datasets/queuedEvent/{uri}",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/upstreamDatasetEvents",
        "/dags/{dag_id}/tasks/{task_id}",
        "/dags/{dag_id}/details",
        "/dagStats",
        "/dags/{dag_id}/clearTaskInstances",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/clear",
        "/dags/{dag_id}/updateTaskInstancesState",
        "/dags/~/dagRuns/list",
        "/users",
        "/users/{username}",
        "/roles",
        "/roles/{role_name}",
        "/permissions",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/setNote",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/setNote",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/setNote",
        "/dags/~/dagRuns/~/taskInstances/list",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries/{task_try_number}",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/links",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/dependencies",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/listMapped",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/tries",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/tries/{task_try_number}",
        "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/dependencies",
        "/eventLogs",
        "/eventLogs/{event_log_id}",
        "/config",
        "/config/section/{section}/option/{option}",
        "/dagSources/{file_token}",
        "/dagWarnings",
        "/connections/test",
    ];
    let mut listed = paths.clone();
    listed.sort_unstable();
    let mut expected = served.to_vec();
    expected.sort_unstable();
    assert_eq!(listed, expected);
    // GET each path without parameters (dagStats needs dag_ids; the batch lists and the
    // connection test are POSTs).
    let posts = |p: &str| p.ends_with("/list") || p == "/connections/test";
    for path in served.iter().filter(|p| !p.contains('{') && **p != "/dagStats" && !posts(p)) {
        let (status, _) = api.call(Some("admin"), Method::GET, path, None).await;
        assert!(status.is_success(), "{path} is served: {status}");
    }
}

/// An Op manages connections and variables from the UI; secrets never reach the page.
#[tokio::test]
async fn connections_and_variables_are_managed_from_the_ui() {
    let api = Api::start().await;
    let site = api.base.trim_end_matches("/api/v1").to_string();
    let client =
        sluice_runtime::tls::http_client_builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let signed = sign_in(&client, &site, "op", PW).await;
    let cookie = signed.headers()["set-cookie"].to_str().expect("ascii").split(';').next().expect("cookie").to_string();
    let page = |path: &'static str| {
        let (client, cookie, site) = (client.clone(), cookie.clone(), site.clone());
        async move {
            client
                .get(format!("{site}{path}"))
                .header("cookie", cookie)
                .send()
                .await
                .expect("response")
                .text()
                .await
                .expect("html")
        }
    };
    let html = page("/variables").await;
    let csrf =
        html.split(r#"name="csrf" value=""#).nth(1).and_then(|s| s.split('"').next()).expect("token").to_string();
    let post = |path: &str, body: String| {
        client.post(format!("{site}{path}")).header("cookie", &cookie).header("content-type", FORM).body(body).send()
    };
    let saved = post("/variables", format!("csrf={csrf}&key=api_token&value=tok-123-secret&description="))
        .await
        .expect("response");
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let saved =
        post("/variables", format!("csrf={csrf}&key=region&value=eu-west&description=where")).await.expect("response");
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let html = page("/variables").await;
    assert!(html.contains("eu-west") && !html.contains("tok-123-secret"), "{html}");
    let uri = "postgres%3A%2F%2Fetl%3Apg-pw-777%40db%3A5432%2Fdwh";
    let added = post("/connections", format!("csrf={csrf}&conn_id=warehouse&conn_uri={uri}&description="))
        .await
        .expect("response");
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    let bad = post("/connections", format!("csrf={csrf}&conn_id=broken&conn_uri=not%20a%20uri&description="))
        .await
        .expect("response");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.expect("html").contains(r#"class="error""#));
    let html = page("/connections").await;
    assert!(html.contains(r#"data-id="warehouse""#) && !html.contains("pg-pw-777"), "{html}");
    // Saving the same id again replaces the connection: how one is edited.
    let uri = "postgres%3A%2F%2Fetl%3Apg-pw-777%40db2%3A5432%2Fdwh";
    let edited = post("/connections", format!("csrf={csrf}&conn_id=warehouse&conn_uri={uri}&description="))
        .await
        .expect("response");
    assert_eq!(edited.status(), StatusCode::SEE_OTHER);
    assert!(page("/connections").await.contains("db2"), "the host changed");
    let gone = post("/connections/warehouse/delete", format!("csrf={csrf}")).await.expect("response");
    assert_eq!(gone.status(), StatusCode::SEE_OTHER);
    let gone = post("/variables/region/delete", format!("csrf={csrf}")).await.expect("response");
    assert_eq!(gone.status(), StatusCode::SEE_OTHER);
    assert!(!page("/connections").await.contains(r#"data-id="warehouse""#));
    assert!(!page("/variables").await.contains("eu-west"));
    let forged = post("/variables", "csrf=forged&key=x&value=y".to_string()).await.expect("response");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn pools_are_created_resized_and_deleted() {
    let api = Api::start().await;
    let (status, body) = api.call(Some("user"), Method::POST, "/pools", Some(r#"{"name": "gpu", "slots": 2}"#)).await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "a User creating a pool");
    let (status, pool) = api
        .call(Some("op"), Method::POST, "/pools", Some(r#"{"name": "gpu", "slots": 2, "description": "GPUs"}"#))
        .await;
    assert_eq!(status, StatusCode::OK, "{pool}");
    assert_eq!(
        (pool["slots"].as_i64(), pool["open_slots"].as_i64(), pool["description"].as_str()),
        (Some(2), Some(2), Some("GPUs"))
    );
    let (status, body) = api.call(Some("op"), Method::POST, "/pools", Some(r#"{"name": "gpu", "slots": 1}"#)).await;
    assert_problem(status, &body, StatusCode::CONFLICT, "the same pool twice");
    let (status, pool) = api.call(Some("op"), Method::PATCH, "/pools/gpu", Some(r#"{"slots": 4}"#)).await;
    assert_eq!((status, pool["slots"].as_i64(), pool["description"].as_str()), (StatusCode::OK, Some(4), Some("GPUs")));
    let (status, body) = api.call(Some("op"), Method::PATCH, "/pools/gpu", Some(r#"{"slots": -1}"#)).await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST, "negative slots");
    let (status, body) = api.call(Some("op"), Method::DELETE, "/pools/default_pool", None).await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST, "deleting default_pool (as Airflow answers it)");
    let (status, _) = api.call(Some("op"), Method::DELETE, "/pools/gpu", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api.call(Some("op"), Method::GET, "/pools/gpu", None).await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "a deleted pool");
}

/// Concurrent wrong passwords, each counted before its hash is checked: no more than the
/// limit get as far as a verification, the API's basic auth and the UI's form alike.
#[tokio::test]
async fn concurrent_guesses_cannot_outrun_the_failed_login_limit() {
    use sluice_runtime::web::ratelimit::Limit;
    let minute = std::time::Duration::from_secs(60);
    let limiter =
        RateLimiter::in_process().with_limits(Limit { max: 4, window: minute }, Limit { max: 1000, window: minute });
    let api = Api::start_limited(limiter).await;
    let guesses = (0..24).map(|n| {
        let request = api.client.get(format!("{}/dags", api.base)).basic_auth("admin", Some(format!("guess-{n}")));
        async move { request.send().await.expect("response").status() }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((checked, refused), (4, 20), "{statuses:?}");

    let limiter =
        RateLimiter::in_process().with_limits(Limit { max: 4, window: minute }, Limit { max: 1000, window: minute });
    let api = Api::start_limited(limiter).await;
    let site = api.base.trim_end_matches("/api/v1").to_string();
    let (token, cookie) = login_form(&api.client, &site).await;
    let guesses = (0..24).map(|n| {
        let request = api
            .client
            .post(format!("{site}/login"))
            .header("cookie", &cookie)
            .header("content-type", FORM)
            .body(format!("csrf={token}&username=admin&password=guess-{n}"));
        async move { request.send().await.expect("response").status() }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((checked, refused), (4, 20), "{statuses:?}");
}

/// A right password is counted and then forgiven: a client signing in correctly again and
/// again is never locked out.
#[tokio::test]
async fn right_passwords_do_not_add_up_to_a_lockout() {
    use sluice_runtime::web::ratelimit::Limit;
    let minute = std::time::Duration::from_secs(60);
    let limiter =
        RateLimiter::in_process().with_limits(Limit { max: 2, window: minute }, Limit { max: 1000, window: minute });
    let api = Api::start_limited(limiter).await;
    for _ in 0..6 {
        assert_eq!(api.call(Some("viewer"), Method::GET, "/dags", None).await.0, StatusCode::OK);
    }
}

/// The login form carries a token of its own, bound to a cookie: a form posted from
/// another site (no cookie, or another browser's token) signs nobody in.
#[tokio::test]
async fn the_login_form_needs_its_own_token() {
    let api = Api::start().await;
    let site = api.base.trim_end_matches("/api/v1").to_string();
    let client =
        sluice_runtime::tls::http_client_builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let post = |cookie: Option<String>, body: String| {
        let mut request = client.post(format!("{site}/login")).header("content-type", FORM).body(body);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };
    let bare = post(None, format!("username=admin&password={PW}")).await.expect("response");
    assert_eq!(bare.status(), StatusCode::FORBIDDEN, "no token, no cookie");
    assert!(
        bare.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap_or("").starts_with("sluice_session="))
    );
    let (token, cookie) = login_form(&client, &site).await;
    let (other_token, _) = login_form(&client, &site).await;
    let crossed = post(Some(cookie.clone()), format!("csrf={other_token}&username=admin&password={PW}"));
    assert_eq!(crossed.await.expect("response").status(), StatusCode::FORBIDDEN, "another form's token");
    let no_cookie = post(None, format!("csrf={token}&username=admin&password={PW}"));
    assert_eq!(no_cookie.await.expect("response").status(), StatusCode::FORBIDDEN, "the token without its cookie");
    let signed = post(Some(cookie), format!("csrf={token}&username=admin&password={PW}")).await.expect("response");
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
}

/// Deleting a user, changing their role or resetting their password ends their sessions at
/// once, for the UI and for the API called with the cookie.
#[tokio::test]
async fn sessions_end_when_the_user_changes() {
    let api = Api::start().await;
    let site = api.base.trim_end_matches("/api/v1").to_string();
    let client =
        sluice_runtime::tls::http_client_builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let cookie_of = |response: &reqwest::Response| {
        response.headers()["set-cookie"].to_str().expect("ascii").split(';').next().expect("cookie").to_string()
    };
    let page = |cookie: &str, path: &str| client.get(format!("{site}{path}")).header("cookie", cookie).send();
    let (user, op, viewer) = (
        cookie_of(&sign_in(&client, &site, "user", PW).await),
        cookie_of(&sign_in(&client, &site, "op", PW).await),
        cookie_of(&sign_in(&client, &site, "viewer", PW).await),
    );
    for cookie in [&user, &op, &viewer] {
        assert_eq!(page(cookie, "/").await.expect("response").status(), StatusCode::OK);
    }
    assert_eq!(page(&op, "/connections").await.expect("response").status(), StatusCode::OK);

    api.store.delete_user("user").await.expect("deleted");
    let ui = page(&user, "/").await.expect("response");
    assert_eq!((ui.status(), ui.headers()["location"].to_str().ok()), (StatusCode::SEE_OTHER, Some("/login")));
    assert_eq!(page(&user, "/api/v1/dags").await.expect("response").status(), StatusCode::UNAUTHORIZED);

    api.store.set_role("op", "Viewer").await.expect("demoted");
    let ui = page(&op, "/connections").await.expect("response");
    assert_eq!(ui.headers().get("location").and_then(|l| l.to_str().ok()), Some("/login"), "demoted: signed out");
    assert_eq!(page(&op, "/api/v1/connections").await.expect("response").status(), StatusCode::UNAUTHORIZED);

    api.store.set_password("viewer", "another-pw-456").await.expect("reset");
    assert_eq!(page(&viewer, "/").await.expect("response").status(), StatusCode::SEE_OTHER);
    assert_eq!(page(&viewer, "/api/v1/dags").await.expect("response").status(), StatusCode::UNAUTHORIZED);

    // A user deleted and created again under the same name does not get the old sessions back.
    let again = NewUser { username: "user", email: "", role: "Admin", password: PW, first_name: "", last_name: "" };
    api.store.add_user(&again).await.expect("created again");
    assert_eq!(page(&user, "/").await.expect("response").status(), StatusCode::SEE_OTHER);
    let fresh = cookie_of(&sign_in(&client, &site, "user", PW).await);
    assert_eq!(page(&fresh, "/users").await.expect("response").status(), StatusCode::OK);
}

/// Every answer carries the headers that keep pages out of frames and content types
/// honest: pages, the API, errors, the stylesheet and /health.
#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let api = Api::start().await;
    let site = api.base.trim_end_matches("/api/v1").to_string();
    let client =
        sluice_runtime::tls::http_client_builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let admin = sign_in(&client, &site, "admin", PW).await;
    let cookie = admin.headers()["set-cookie"].to_str().expect("ascii").split(';').next().expect("cookie").to_string();
    let mut answers = vec![("the login redirect", admin)];
    for path in ["/", "/login", "/static/sluice.css", "/health", "/no-such-page", "/api/v1/dags", "/api/v1/nope"] {
        answers.push((path, client.get(format!("{site}{path}")).header("cookie", &cookie).send().await.expect("ok")));
    }
    answers.push(("anonymous API", client.get(format!("{site}/api/v1/dags")).send().await.expect("response")));
    let statuses: Vec<u16> = answers.iter().map(|(_, r)| r.status().as_u16()).collect();
    assert_eq!(statuses, [303, 200, 200, 200, 200, 404, 200, 404, 401]);
    for (what, answer) in &answers {
        let header = |name: &str| answer.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("(none)");
        let csp = header("content-security-policy");
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"), "{what}: {csp}");
        assert_eq!(header("x-frame-options"), "DENY", "{what}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
        assert_eq!(header("referrer-policy"), "same-origin", "{what}");
    }
    // The pages work under that policy: no inline style or script, the stylesheet served.
    let html = client.get(format!("{site}/")).header("cookie", &cookie).send().await.expect("ok").text().await;
    let html = html.expect("html");
    assert!(!html.contains("<style") && !html.contains("<script") && !html.contains("style="), "{html}");
    assert!(html.contains(r#"<link rel="stylesheet" href="/static/sluice.css">"#), "{html}");
}

/// A try of 3,500 lines in the store (in its first half every 50th is 100 KB long, so
/// pages end on the byte bound there and on the line bound after), and its expected text
/// as the API serves it.
async fn long_log(api: &Api) -> (i64, String) {
    let (status, run) =
        api.call(Some("user"), Method::POST, "/dags/api_dag/dagRuns", Some(r#"{"dag_run_id": "r1"}"#)).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let run = api.store.run_by_id("api_dag", "r1").await.expect("run");
    let tis = api.store.task_instances(run.id).await.expect("tis");
    let ti = tis.iter().find(|t| t.task_id == "first").expect("first").id;
    let lines: Vec<(String, String)> = (0..3_500)
        .map(|i| {
            let line = match i % 50 {
                7 if i < 1_750 => format!("line {i:04} {}", "y".repeat(100_000)),
                _ => format!("line {i:04} \"quoted\" \\ é"),
            };
            ("stdout".to_string(), line)
        })
        .collect();
    for batch in lines.chunks(700) {
        let appended = api.store.append_task_log(ti, 1, batch, Default::default()).await.expect("append");
        assert_eq!(appended.kept, batch.len());
    }
    (ti, lines.iter().map(|(_, line)| format!("{line}\n")).collect())
}

const LOG: &str = "/dags/api_dag/dagRuns/r1/taskInstances/first/logs/1";

#[tokio::test]
async fn a_long_log_is_read_page_by_page_in_order_and_completely() {
    let api = Api::start().await;
    let (_, expected) = long_log(&api).await;
    let mut content = String::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    let mut sizes = Vec::new();
    loop {
        let path = match &token {
            Some(token) => format!("{LOG}?token={token}"),
            None => LOG.to_string(),
        };
        let (status, body) = api.call(Some("viewer"), Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let page = body["content"].as_str().expect("content");
        assert!(page.lines().count() <= 1_000, "a page holds at most 1,000 lines");
        assert!(page.len() <= 1024 * 1024 + 100_100, "a page holds about 1 MiB at most: {}", page.len());
        token = Some(body["continuation_token"].as_str().expect("a continuation token").to_string());
        if page.is_empty() {
            break;
        }
        content.push_str(page);
        sizes.push(page.lines().count());
        pages += 1;
        assert!(pages < 100, "the pages end");
    }
    assert!(sizes.contains(&1_000), "pages end on the line bound: {sizes:?}");
    assert!(sizes[..sizes.len() - 1].iter().any(|n| *n < 1_000), "and on the byte bound: {sizes:?}");
    assert!(content == expected, "every line once, in order ({} of {} bytes)", content.len(), expected.len());

    // The last token stays at the end: polling it gives nothing new until there is more.
    let (_, again) =
        api.call(Some("viewer"), Method::GET, &format!("{LOG}?token={}", token.expect("token")), None).await;
    assert_eq!(again["content"], "");

    // Everything at once, streamed.
    let (status, full) = api.call(Some("viewer"), Method::GET, &format!("{LOG}?full_content=true"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(full["content"].as_str() == Some(expected.as_str()), "full_content is the whole log");
    let end = full["continuation_token"].as_str().expect("token");
    let (_, after) = api.call(Some("viewer"), Method::GET, &format!("{LOG}?token={end}"), None).await;
    assert_eq!(after["content"], "", "its token is at the end");

    // The text form streams the lines from the token on.
    let text = |query: String| {
        let request = api.client.get(format!("{}{LOG}{query}", api.base)).basic_auth("viewer", Some(PW));
        async move {
            let response = request.header("accept", "text/plain").send().await.expect("response");
            assert_eq!(response.status(), StatusCode::OK);
            assert!(response.headers()["content-type"].to_str().expect("ascii").starts_with("text/plain"));
            response.text().await.expect("text")
        }
    };
    assert!(text(String::new()).await == expected, "the whole log as text");
    let (_, first) = api.call(Some("viewer"), Method::GET, LOG, None).await;
    let first_page = first["content"].as_str().expect("content");
    let rest = text(format!("?token={}", first["continuation_token"].as_str().expect("token"))).await;
    assert!(format!("{first_page}{rest}") == expected, "the text after the first page");
}

#[tokio::test]
async fn bad_log_tokens_and_parameters_are_problems() {
    let api = Api::start().await;
    long_log(&api).await;
    let (_, other) =
        api.call(Some("viewer"), Method::GET, "/dags/api_dag/dagRuns/r1/taskInstances/second/logs/1", None).await;
    let foreign = other["continuation_token"].as_str().expect("a token of another log").to_string();
    for (query, expected) in [
        ("?token=garbage".to_string(), StatusCode::BAD_REQUEST),
        ("?token=e30".to_string(), StatusCode::BAD_REQUEST),
        (format!("?token={foreign}"), StatusCode::BAD_REQUEST),
        ("?full_content=maybe".to_string(), StatusCode::BAD_REQUEST),
        ("?map_index=one".to_string(), StatusCode::BAD_REQUEST),
        ("?map_index=3".to_string(), StatusCode::NOT_FOUND),
    ] {
        let (status, body) = api.call(Some("viewer"), Method::GET, &format!("{LOG}{query}"), None).await;
        assert_problem(status, &body, expected, &query);
    }
    let (status, body) = api.call(Some("viewer"), Method::GET, &format!("{LOG}?map_index=-1"), None).await;
    assert_eq!(status, StatusCode::OK, "an unmapped task's index: {body}");
}

/// The task page shows the last page of a long log, and links to the pages before it.
#[tokio::test]
async fn the_task_page_shows_the_last_page_of_a_long_log() {
    let api = Api::start().await;
    long_log(&api).await;
    let site = api.base.trim_end_matches("/api/v1").to_string();
    let client =
        sluice_runtime::tls::http_client_builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let signed = sign_in(&client, &site, "viewer", PW).await;
    let cookie = signed.headers()["set-cookie"].to_str().expect("ascii").split(';').next().expect("cookie").to_string();
    let page = |path: String| {
        let request = client.get(format!("{site}/dags/api_dag/runs/r1/tasks/first{path}")).header("cookie", &cookie);
        async move {
            let response = request.send().await.expect("response");
            assert_eq!(response.status(), StatusCode::OK);
            response.text().await.expect("html")
        }
    };
    let last = page(String::new()).await;
    assert!(last.contains(r#"<p id="formerly">Formerly <code>extract</code>"#), "the former id, as an alias");
    assert!(last.len() < 2 * 1024 * 1024, "one page, not the whole log: {} bytes", last.len());
    assert!(last.contains("line 3499 ") && !last.contains("line 0000 "), "the last lines");
    assert!(!last.contains(r#"data-page="later""#), "nothing after the last page");
    let earlier = last.split(r#"data-page="earlier""#).next().and_then(|s| s.rsplit("href=\"").next());
    let earlier = earlier.and_then(|s| s.split('"').next()).expect("a link to earlier lines").replace("&amp;", "&");
    let before = page(earlier).await;
    let last_shown_first = last.split("<pre id=\"log\">").nth(1).and_then(|s| s.get(..9)).expect("a first line");
    assert!(!before.contains(&format!("{last_shown_first} ")), "the page before holds other lines");
    assert!(before.contains(r#"data-page="later""#), "and a way back");
    let first = page("?try=1&after=0".into()).await;
    assert!(first.contains("line 0000 ") && !first.contains(r#"data-page="earlier""#), "the first page");
}

/// Changes through the API and the UI land in the event log with who, what and from
/// where; it is read, filtered and ordered as Airflow's `eventLogs`.
#[tokio::test]
async fn changes_through_the_api_and_the_ui_are_in_the_event_log() {
    let api = Api::start().await;
    let run = api.call(Some("user"), Method::POST, "/dags/api_dag/dagRuns", Some(r#"{"dag_run_id": "r1"}"#)).await;
    assert_eq!(run.0, StatusCode::OK, "{}", run.1);
    let paused = api.call(Some("user"), Method::PATCH, "/dags/api_dag", Some(r#"{"is_paused": true}"#)).await;
    assert_eq!(paused.0, StatusCode::OK, "{}", paused.1);
    let variable = api.call(Some("op"), Method::POST, "/variables", Some(r#"{"key": "k", "value": "hidden-1"}"#)).await;
    assert_eq!(variable.0, StatusCode::OK, "{}", variable.1);
    let site = api.base.trim_end_matches("/api/v1").to_string();
    let client =
        sluice_runtime::tls::http_client_builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    assert_eq!(sign_in(&client, &site, "op", "wrong-password").await.status(), StatusCode::UNAUTHORIZED);
    let signed = sign_in(&client, &site, "op", PW).await;
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let cookie = signed.headers()["set-cookie"].to_str().expect("ascii").split(';').next().expect("cookie").to_string();

    let (status, all) = api.call(Some("op"), Method::GET, "/eventLogs", None).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let events: Vec<(&str, &str)> = all["event_logs"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| (e["event"].as_str().expect("event"), e["owner"].as_str().expect("owner")))
        .collect();
    assert_eq!(
        events,
        [("trigger", "user"), ("pause", "user"), ("variable.set", "op"), ("login_failed", "op"), ("login", "op")]
    );
    assert_eq!(all["total_entries"], 5);
    let first = &all["event_logs"][0];
    assert_eq!((first["dag_id"].as_str(), first["run_id"].as_str()), (Some("api_dag"), Some("r1")), "{first}");
    let extra: Value = serde_json::from_str(first["extra"].as_str().expect("extra")).expect("JSON");
    assert_eq!((extra["surface"].as_str(), extra["from"].as_str()), (Some("api"), Some("127.0.0.1")), "{extra}");
    let login = &all["event_logs"][4];
    assert!(login["extra"].as_str().expect("extra").contains(r#""surface":"ui""#), "{login}");
    assert!(!all.to_string().contains("hidden-1"), "a variable's value is never recorded: {all}");

    let id = first["event_log_id"].as_i64().expect("an id");
    let (status, one) = api.call(Some("op"), Method::GET, &format!("/eventLogs/{id}"), None).await;
    assert_eq!((status, &one), (StatusCode::OK, first));
    for (query, expected) in [
        ("?event=pause", vec!["pause"]),
        ("?dag_id=api_dag&order_by=-event_log_id", vec!["pause", "trigger"]),
        ("?owner=op&excluded_events=login_failed", vec!["variable.set", "login"]),
        ("?included_events=login,login_failed&limit=1&offset=1", vec!["login"]),
        ("?order_by=event&limit=2", vec!["login", "login_failed"]),
        ("?before=2000-01-01T00:00:00Z", vec![]),
    ] {
        let (status, page) = api.call(Some("op"), Method::GET, &format!("/eventLogs{query}"), None).await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        let got: Vec<&str> =
            page["event_logs"].as_array().expect("list").iter().map(|e| e["event"].as_str().expect("event")).collect();
        assert_eq!(got, expected, "{query}");
    }
    // The UI's audit page, filtered by user.
    let page = client.get(format!("{site}/audit?owner=user")).header("cookie", &cookie).send().await.expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(html.contains(r#"data-event="trigger""#) && html.contains(r#"data-event="pause""#), "{html}");
    assert!(!html.contains(r#"data-event="login""#) && html.contains("2 records"), "{html}");
    for bad in ["?order_by=password", "?map_index=one", "?after=yesterday"] {
        let (status, problem) = api.call(Some("op"), Method::GET, &format!("/eventLogs{bad}"), None).await;
        assert_problem(status, &problem, StatusCode::BAD_REQUEST, bad);
    }
}

/// The webserver's configuration, as one with these variables set would serve it.
fn web_config(expose: ExposeConfig, vars: &[(&str, &str)]) -> WebConfig {
    let lookup = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
    let registry = registry(&PIPELINES[..], &[]);
    let settings = sluice_runtime::settings::Settings::from_lookup(registry, &lookup);
    let settings = sluice_runtime::effective::effective(registry, &settings, &lookup);
    WebConfig { expose, settings, connection_tests: vars.contains(&("SLUICE_TEST_CONNECTION", "Enabled")) }
}

/// `/config` serves the settings only when exposed, to Ops and Admins, never a secret.
#[tokio::test]
async fn the_configuration_is_served_only_when_exposed_and_never_its_secrets() {
    let vars = [
        ("SLUICE_DATABASE_URL", "postgres://sluice:db-pw-4242@pgbouncer:6432/sluice"),
        ("SLUICE_FERNET_KEY", "not-a-key-but-a-secret-4343"),
        ("SLUICE_EXPOSE_CONFIG", "true"),
    ];
    let hidden = Api::start_with(RateLimiter::in_process(), web_config(ExposeConfig::No, &vars)).await;
    let (status, problem) = hidden.call(Some("admin"), Method::GET, "/config", None).await;
    assert_problem(status, &problem, StatusCode::FORBIDDEN, "not exposed");
    assert!(problem["detail"].as_str().expect("detail").contains("SLUICE_EXPOSE_CONFIG"), "{problem}");

    let api = Api::start_with(RateLimiter::in_process(), web_config(ExposeConfig::Yes, &vars)).await;
    for role in ["viewer", "user"] {
        let (status, problem) = api.call(Some(role), Method::GET, "/config", None).await;
        assert_problem(status, &problem, StatusCode::FORBIDDEN, role);
    }
    let (status, all) = api.call(Some("op"), Method::GET, "/config", None).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let text = all.to_string();
    assert!(!text.contains("db-pw-4242") && !text.contains("not-a-key-but-a-secret-4343"), "{text}");
    let sections: Vec<&str> =
        all["sections"].as_array().expect("sections").iter().map(|s| s["name"].as_str().expect("name")).collect();
    assert_eq!(sections, ["core", "database", "webserver", "celery"]);
    let (status, one) = api.call(Some("op"), Method::GET, "/config/section/database/option/database_url", None).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["sections"][0]["options"][0]["value"], "postgres://sluice:***@pgbouncer:6432/sluice");
    let (status, section) = api.call(Some("op"), Method::GET, "/config?section=webserver", None).await;
    assert_eq!(status, StatusCode::OK, "{section}");
    assert_eq!(section["sections"].as_array().map(Vec::len), Some(1), "{section}");
    for missing in ["/config?section=nope", "/config/section/core/option/nope", "/config/section/nope/option/mode"] {
        let (status, problem) = api.call(Some("op"), Method::GET, missing, None).await;
        assert_problem(status, &problem, StatusCode::NOT_FOUND, missing);
    }

    let partly = Api::start_with(RateLimiter::in_process(), web_config(ExposeConfig::NonSensitiveOnly, &vars)).await;
    let (_, one) = partly.call(Some("op"), Method::GET, "/config/section/database/option/database_url", None).await;
    assert_eq!(one["sections"][0]["options"][0]["value"], "< hidden >", "{one}");
    let (_, core) = partly.call(Some("op"), Method::GET, "/config/section/core/option/parallelism", None).await;
    assert_eq!(core["sections"][0]["options"][0]["value"], "32", "{core}");
}

/// `connections/test` reaches real systems when enabled, and is refused when not.
#[tokio::test]
async fn connections_are_tested_against_real_systems_when_enabled() {
    let off = Api::start_with(RateLimiter::in_process(), WebConfig::default()).await;
    let body = r#"{"connection_id": "x", "conn_type": "http", "host": "127.0.0.1"}"#;
    let (status, problem) = off.call(Some("admin"), Method::POST, "/connections/test", Some(body)).await;
    assert_problem(status, &problem, StatusCode::FORBIDDEN, "tests disabled");
    assert!(problem["detail"].as_str().expect("detail").contains("SLUICE_TEST_CONNECTION=Enabled"), "{problem}");

    let config = web_config(ExposeConfig::No, &[("SLUICE_TEST_CONNECTION", "Enabled")]);
    let api = Api::start_with(RateLimiter::in_process(), config).await;
    let postgres = sluice_testkit::postgres::address();
    let (pg_host, pg_port) = postgres.rsplit_once(':').expect("host:port");
    let site = api.base.trim_end_matches("/api/v1").trim_start_matches("http://").to_string();
    let (site_host, site_port) = site.rsplit_once(':').expect("host:port");
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("addr").port();
    let cases = [
        (
            json!({"conn_type": "postgres", "host": pg_host, "port": pg_port.parse::<u16>().expect("port"), "login": "postgres"}),
            true,
            "SELECT 1",
        ),
        (json!({"conn_type": "http", "host": site_host, "port": site_port.parse::<u16>().expect("port")}), true, "200"),
        (json!({"conn_type": "redis", "host": "127.0.0.1", "port": 6379}), true, "PONG"),
        (json!({"conn_type": "http", "host": "127.0.0.1", "port": unused}), false, "failed"),
        (
            json!({"conn_type": "postgres", "host": "127.0.0.1", "port": unused, "login": "postgres"}),
            false,
            "cannot connect",
        ),
    ];
    for (body, works, says) in cases {
        let (status, answer) = api.call(Some("op"), Method::POST, "/connections/test", Some(&body.to_string())).await;
        assert_eq!(status, StatusCode::OK, "{body}: {answer}");
        assert_eq!(answer["status"], works, "{body}: {answer}");
        assert!(answer["message"].as_str().expect("message").contains(says), "{body}: {answer}");
    }
    // A stored connection, by id; a connection named `test` is still read at its path.
    let stored = r#"{"connection_id": "test", "conn_type": "redis", "host": "127.0.0.1", "port": 6379}"#;
    assert_eq!(api.call(Some("op"), Method::POST, "/connections", Some(stored)).await.0, StatusCode::OK);
    let (status, answer) =
        api.call(Some("op"), Method::POST, "/connections/test", Some(r#"{"connection_id": "test"}"#)).await;
    assert_eq!((status, &answer["status"]), (StatusCode::OK, &json!(true)), "{answer}");
    let (status, named) = api.call(Some("op"), Method::GET, "/connections/test", None).await;
    assert_eq!((status, named["conn_type"].as_str()), (StatusCode::OK, Some("redis")), "{named}");
    let (status, problem) = api.call(Some("user"), Method::POST, "/connections/test", Some(body)).await;
    assert_problem(status, &problem, StatusCode::FORBIDDEN, "a User");
}

/// `dagSources` serves a pipeline's YAML block and its Rust bodies; `dagWarnings` the
/// compiler's warnings about it.
#[tokio::test]
async fn a_pipelines_source_and_its_compiler_warnings_are_served() {
    let api = Api::start().await;
    let text = api.client.get(format!("{}/dagSources/api_dag", api.base)).basic_auth("viewer", Some(PW));
    let text = text.send().await.expect("response");
    assert_eq!(text.status(), StatusCode::OK);
    assert!(text.headers()["content-type"].to_str().expect("ascii").starts_with("text/plain"));
    let text = text.text().await.expect("text");
    assert_eq!(
        text,
        "# test.yaml, line 3\n  - id: api_dag\n    tasks:\n      - id: first\n        rust: crate::tasks::first\n\
         # Rust task bodies:\n#   first: crate::tasks::first\n"
    );
    let json = api.client.get(format!("{}/dagSources/api_dag", api.base)).basic_auth("viewer", Some(PW));
    let json: Value =
        json.header("accept", "application/json").send().await.expect("response").json().await.expect("json");
    assert_eq!(json["content"], text.as_str());
    let png = api.client.get(format!("{}/dagSources/api_dag", api.base)).basic_auth("viewer", Some(PW));
    let png = png.header("accept", "image/png").send().await.expect("response");
    assert_eq!(png.status(), StatusCode::NOT_ACCEPTABLE);
    let (status, problem) = api.call(Some("viewer"), Method::GET, "/dagSources/nope", None).await;
    assert_problem(status, &problem, StatusCode::NOT_FOUND, "an unknown file token");
    let (_, dag) = api.call(Some("viewer"), Method::GET, "/dags/api_dag", None).await;
    assert_eq!(dag["file_token"], "api_dag", "the token the DAG answer names is the one served");

    let (status, all) = api.call(Some("viewer"), Method::GET, "/dagWarnings", None).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["total_entries"], 1);
    let warning = &all["dag_warnings"][0];
    assert_eq!(warning["dag_id"], "api_dag");
    assert_eq!(warning["warning_type"], "unused-param");
    assert_eq!(warning["message"], "test.yaml:5:7: param `greeting` is never used");
    assert!(warning["timestamp"].as_str().is_some_and(|t| t.ends_with('Z') || t.contains('+')), "{warning}");
    for (query, total) in
        [("?dag_id=api_dag", 1), ("?dag_id=other", 0), ("?warning_type=cycle", 0), ("?order_by=-message", 1)]
    {
        let (status, page) = api.call(Some("viewer"), Method::GET, &format!("/dagWarnings{query}"), None).await;
        assert_eq!((status, page["total_entries"].as_i64()), (StatusCode::OK, Some(total)), "{query}: {page}");
    }
    let (status, problem) = api.call(Some("viewer"), Method::GET, "/dagWarnings?order_by=nope", None).await;
    assert_problem(status, &problem, StatusCode::BAD_REQUEST, "a bad order");
}

/// The operator's repairs from the UI: pick a run, note it, mark it, clear it, preview a
/// task's clear with its downstream before confirming, delete a run (Ops only).
#[tokio::test]
async fn runs_and_task_instances_are_repaired_from_the_ui() {
    let api = Api::start().await;
    let site = api.base.trim_end_matches("/api/v1").to_string();
    let client =
        sluice_runtime::tls::http_client_builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    for run in ["r1", "r2"] {
        let body = format!(r#"{{"dag_run_id": "{run}"}}"#);
        assert_eq!(api.call(Some("user"), Method::POST, "/dags/api_dag/dagRuns", Some(&body)).await.0, StatusCode::OK);
    }
    let mark = r#"{"dry_run": false, "new_state": "failed"}"#;
    let (status, _) =
        api.call(Some("user"), Method::PATCH, "/dags/api_dag/dagRuns/r1/taskInstances/first", Some(mark)).await;
    assert_eq!(status, StatusCode::OK);
    let session = |user: &'static str| {
        let (client, site) = (client.clone(), site.clone());
        async move {
            let signed = sign_in(&client, &site, user, PW).await;
            let cookie =
                signed.headers()["set-cookie"].to_str().expect("ascii").split(';').next().expect("c").to_string();
            let html = client.get(format!("{site}/dags/api_dag?run=r1")).header("cookie", &cookie).send().await;
            let html = html.expect("page").text().await.expect("html");
            let csrf = html.split(r#"name="csrf" value=""#).nth(1).and_then(|s| s.split('"').next()).expect("token");
            (cookie, csrf.to_string(), html)
        }
    };
    let (cookie, csrf, html) = session("user").await;
    // The picked run (not the latest) is the one shown, marked in the grid.
    assert!(html.contains(r#"<section id="run" class="panel" data-run-id="r1">"#), "{html}");
    assert!(html.contains(r#"class="run picked"><a class="run-state" data-run-id="r1""#), "{html}");
    assert!(html.contains(r#"id="version-hash""#), "{html}");
    assert!(html.contains(r#"<details id="source""#) && html.contains("rust: crate::tasks::first"), "{html}");
    assert!(!html.contains(r#"data-action="run-delete""#), "a User has no delete button");
    // The runs' day in the calendar shows both runs (still queued).
    let (_, r1) = api.call(Some("viewer"), Method::GET, "/dags/api_dag/dagRuns/r1", None).await;
    let today = r1["logical_date"].as_str().expect("a date")[..10].to_string();
    assert!(html.contains(&format!(r#"data-date="{today}" data-state="running" title="{today}: 2 run(s)""#)), "{html}");
    let post = |path: String, body: String| {
        let (client, cookie) = (client.clone(), cookie.clone());
        async move {
            let answer =
                client.post(path).header("cookie", cookie).header("content-type", FORM).body(body).send().await;
            let answer = answer.expect("response");
            (answer.status(), answer.text().await.expect("body"))
        }
    };
    let run_form = |action: &str| format!("{site}/dags/api_dag/runs/r1/{action}");
    let (status, _) = post(run_form("note"), format!("csrf={csrf}&note=looked+at+it")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, run) = api.call(Some("viewer"), Method::GET, "/dags/api_dag/dagRuns/r1", None).await;
    assert_eq!(run["note"], "looked at it");

    // A task's clear is previewed, with its downstream, and changes nothing until confirmed.
    let task_form = format!("{site}/dags/api_dag/runs/r1/tasks/first/clear");
    let (status, preview) = post(task_form.clone(), format!("csrf={csrf}&downstream=on")).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert!(preview.contains(r#"<li data-task-id="first">"#) && preview.contains(r#"<li data-task-id="second">"#));
    let states = || async {
        let (_, tis) = api.call(Some("viewer"), Method::GET, "/dags/api_dag/dagRuns/r1/taskInstances", None).await;
        let mut all: Vec<(String, String)> = tis["task_instances"]
            .as_array()
            .expect("list")
            .iter()
            .map(|t| {
                (t["task_id"].as_str().expect("id").to_string(), t["state"].as_str().unwrap_or("none").to_string())
            })
            .collect();
        all.sort();
        all
    };
    assert_eq!(
        states().await,
        [("first".into(), "failed".into()), ("second".into(), "none".into())],
        "the preview changed nothing"
    );
    let (status, _) = post(task_form, format!("csrf={csrf}&downstream=on&confirm=on")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(states().await.iter().all(|(_, s)| s == "none"), "cleared: {:?}", states().await);

    // The run marked failed, then cleared as a whole.
    assert_eq!(post(run_form("mark-failed"), format!("csrf={csrf}")).await.0, StatusCode::SEE_OTHER);
    let (_, run) = api.call(Some("viewer"), Method::GET, "/dags/api_dag/dagRuns/r1", None).await;
    assert_eq!(run["state"], "failed");
    assert_eq!(post(run_form("clear"), format!("csrf={csrf}")).await.0, StatusCode::SEE_OTHER);
    let (_, run) = api.call(Some("viewer"), Method::GET, "/dags/api_dag/dagRuns/r1", None).await;
    assert_eq!(run["state"], "queued", "a cleared run is queued again");

    // Deleting needs an Op, and the token.
    let (status, _) = post(run_form("delete"), format!("csrf={csrf}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (op_cookie, op_csrf, op_html) = session("op").await;
    assert!(op_html.contains(r#"data-action="run-delete""#));
    let forged = client.post(run_form("delete")).header("cookie", &op_cookie).header("content-type", FORM);
    assert_eq!(forged.body("csrf=forged").send().await.expect("response").status(), StatusCode::FORBIDDEN);
    let delete = client.post(run_form("delete")).header("cookie", &op_cookie).header("content-type", FORM);
    assert_eq!(delete.body(format!("csrf={op_csrf}")).send().await.expect("response").status(), StatusCode::SEE_OTHER);
    let (status, _) = api.call(Some("viewer"), Method::GET, "/dags/api_dag/dagRuns/r1", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, log) = api.call(Some("op"), Method::GET, "/eventLogs?dag_id=api_dag&order_by=event_log_id", None).await;
    let events: Vec<&str> =
        log["event_logs"].as_array().expect("list").iter().filter_map(|e| e["event"].as_str()).collect();
    for event in ["set_note", "clear", "mark_run_failed", "delete_run"] {
        assert!(events.contains(&event), "{event} not in {events:?}");
    }
}

/// The browse pages find runs and task instances across pipelines by state, pipeline and
/// logical date; the warnings page lists the compiler's warnings.
#[tokio::test]
async fn runs_and_task_instances_are_browsed_by_state_pipeline_and_date() {
    let api = Api::start().await;
    let site = api.base.trim_end_matches("/api/v1").to_string();
    let client =
        sluice_runtime::tls::http_client_builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    for (run, date) in [("r1", "2024-03-01T06:00:00Z"), ("r2", "2024-03-02T06:00:00Z")] {
        let body = format!(r#"{{"dag_run_id": "{run}", "logical_date": "{date}"}}"#);
        let (status, answer) = api.call(Some("user"), Method::POST, "/dags/api_dag/dagRuns", Some(&body)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let (status, _) =
        api.call(Some("user"), Method::PATCH, "/dags/api_dag/dagRuns/r1", Some(r#"{"state": "failed"}"#)).await;
    assert_eq!(status, StatusCode::OK);
    let signed = sign_in(&client, &site, "viewer", PW).await;
    let cookie = signed.headers()["set-cookie"].to_str().expect("ascii").split(';').next().expect("c").to_string();
    let page = |path: String| {
        let (client, cookie) = (client.clone(), cookie.clone());
        async move {
            let answer = client.get(path).header("cookie", cookie).send().await.expect("response");
            (answer.status(), answer.text().await.expect("html"))
        }
    };
    let rows = |html: &str| html.matches(r#"class="browse-row""#).count();
    let (status, html) = page(format!("{site}/browse/runs?state=failed")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(">r1</a>") && !html.contains(">r2</a>") && rows(&html) == 1, "{html}");
    let (_, html) = page(format!("{site}/browse/runs?dag_id=api_dag&from=2024-03-02&to=2024-03-02")).await;
    assert!(html.contains(">r2</a>") && rows(&html) == 1, "a day includes all of it: {html}");
    let (_, html) = page(format!("{site}/browse/task-instances?state=skipped&dag_id=api_dag")).await;
    assert_eq!(rows(&html), 2, "r1's tasks not started were skipped when it was marked failed: {html}");
    let (_, html) = page(format!("{site}/browse/task-instances?dag_id=api_dag")).await;
    assert_eq!(rows(&html), 4, "{html}");
    let (status, html) = page(format!("{site}/browse/runs?from=yesterday")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("`yesterday` is not a date"), "{html}");
    let (status, html) = page(format!("{site}/warnings")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("unused-param") && html.contains("test.yaml:5:7"), "{html}");
    let (status, html) = page(format!("{site}/sla-misses")).await;
    assert_eq!(status, StatusCode::OK, "{html}");
}

/// The connections page tests a stored connection against the real system when tests are
/// enabled, and shows what answered.
#[tokio::test]
async fn a_connection_is_tested_from_the_ui() {
    let api = Api::start().await;
    let site = api.base.trim_end_matches("/api/v1").to_string();
    let client =
        sluice_runtime::tls::http_client_builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let redis = r#"{"connection_id": "cache", "conn_type": "redis", "host": "127.0.0.1", "port": 6379}"#;
    assert_eq!(api.call(Some("op"), Method::POST, "/connections", Some(redis)).await.0, StatusCode::OK);
    let signed = sign_in(&client, &site, "op", PW).await;
    let cookie = signed.headers()["set-cookie"].to_str().expect("ascii").split(';').next().expect("c").to_string();
    let html = client.get(format!("{site}/connections")).header("cookie", &cookie).send().await.expect("page");
    let html = html.text().await.expect("html");
    assert!(html.contains("connections/cache/test\">") && html.contains(r#"data-action="test""#), "{html}");
    let csrf = html.split(r#"name="csrf" value=""#).nth(1).and_then(|s| s.split('"').next()).expect("token");
    let tested = client
        .post(format!("{site}/connections/cache/test"))
        .header("cookie", &cookie)
        .header("content-type", FORM)
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .expect("response");
    assert_eq!(tested.status(), StatusCode::OK);
    let html = tested.text().await.expect("html");
    assert!(html.contains("Connection `cache` works: `cache` answered PING with PONG."), "{html}");
}
