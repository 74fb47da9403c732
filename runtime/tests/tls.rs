//! Every client speaks TLS to real TLS servers the tests start (an HTTPS server,
//! PostgreSQL with `ssl=on`, `redis-server` on a `tls-port`), each presenting a certificate
//! of a test CA: trusted through the connection's CA file, and refused, with the host and
//! the reason, when the CA is another one or none is named.

mod support;

use serde_json::{Value, json};
use sluice_runtime::broker::Broker;
use sluice_runtime::executor::{ExecEnv, execute};
use sluice_runtime::spec::*;
use sluice_runtime::store::Store;
use sluice_runtime::task::Logger;
use sluice_runtime::web::ratelimit::{Limit, RateLimiter};
use sluice_runtime::{Connection, Registry, RunInfo, TaskError, TaskInput};
use sluice_testkit::certs::TestCa;
use sluice_testkit::https::HttpsServer;
use sluice_testkit::postgres::PrivatePostgres;
use sluice_testkit::redis::TlsRedis;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use support::task;

static TASKS: [TaskSpec; 2] = [
    TaskSpec {
        kind: TaskKind::Http {
            conn: "api",
            method: "GET",
            endpoint: "/feed/nba.csv",
            body: None,
            headers: &[],
            expect_status: &[200],
            skip_status: &[],
        },
        ..task("fetch", &[])
    },
    TaskSpec { kind: TaskKind::Sql { conn: "warehouse", statement: "{{ params.sql | safe }}" }, ..task("query", &[]) },
];

static PIPELINES: [PipelineSpec; 1] = [support::pipeline("tls", Schedule::Manual, &TASKS)];

static REGISTRY: Registry = Registry {
    source: "tls.rs",
    deployment: &support::DEPLOYMENT,
    connections: &[],
    pools: &[],
    datasets: &[],
    pipelines: &PIPELINES,
    sources: &[],
    python_context: "",
    dispatch: support::no_dispatch,
};

/// Runs `task_id` of the `tls` pipeline with `connection` and `params`.
async fn run(task_id: &str, connection: Connection, params: Value) -> Result<Value, TaskError> {
    let input = TaskInput {
        run: RunInfo {
            pipeline_id: "tls".into(),
            run_id: "manual__2024-03-05T06:07:08+00:00".into(),
            task_id: task_id.into(),
            try_number: 1,
            logical_date: "2024-03-05T06:07:08+00:00".into(),
            data_interval_start: "2024-03-04T06:07:08+00:00".into(),
            data_interval_end: "2024-03-05T06:07:08+00:00".into(),
            ..RunInfo::default()
        },
        params,
        connections: [(connection.id.clone(), connection)].into_iter().collect(),
        upstream_outputs: BTreeMap::new(),
        log: Logger::default(),
    };
    let spec = PIPELINES[0].task(task_id).expect("a task of the pipeline");
    execute(&REGISTRY, &PIPELINES[0], spec, input, &ExecEnv::new(Arc::new(BTreeMap::new()))).await
}

fn extra(value: Value) -> serde_json::Map<String, Value> {
    let Value::Object(map) = value else { panic!("extras are an object") };
    map
}

fn https_api(port: u16, extras: Value) -> Connection {
    Connection {
        id: "api".into(),
        conn_type: "http".into(),
        host: Some("localhost".into()),
        port: Some(port),
        schema: Some("https".into()),
        extra: extra(extras),
        ..Connection::default()
    }
}

fn tls_warehouse(port: u16, extras: Value) -> Connection {
    Connection {
        id: "warehouse".into(),
        conn_type: "postgres".into(),
        host: Some("localhost".into()),
        port: Some(port),
        database: Some("postgres".into()),
        login: Some("postgres".into()),
        extra: extra(extras),
        ..Connection::default()
    }
}

/// Asserts that `message` refuses the server's certificate, naming the host.
fn assert_refused(message: &str, host: &str) {
    assert!(message.contains(host), "the error names {host}: {message}");
    assert!(
        message.contains("certificate") || message.contains("UnknownIssuer"),
        "the error says the certificate was refused: {message}"
    );
}

// ---------------------------------------------------------------------------------------
// HTTPS

#[tokio::test]
async fn https_task_trusts_the_ca_file_in_extra_verify() {
    let ca = TestCa::new("Sluice test CA");
    let server = HttpsServer::start(&ca.server_cert("api")).await;
    let conn = https_api(server.port, json!({ "verify": ca.ca_file() }));
    let outputs = run("fetch", conn, json!({})).await.expect("the CA is trusted");
    assert_eq!(outputs["status"], 200);
    assert_eq!(outputs["body"]["tls"], true, "{outputs}");
    assert_eq!(server.seen(), ["GET /feed/nba.csv"]);
}

#[tokio::test]
async fn https_task_refuses_a_certificate_of_another_ca_or_of_no_trusted_ca() {
    let ca = TestCa::new("Sluice test CA");
    let other = TestCa::new("Another CA");
    let server = HttpsServer::start(&ca.server_cert("api")).await;
    for extras in [json!({ "verify": other.ca_file() }), json!({}), json!({ "verify": true })] {
        let message =
            run("fetch", https_api(server.port, extras.clone()), json!({})).await.expect_err("refused").message;
        assert_refused(&message, &format!("https://localhost:{}/feed/nba.csv", server.port));
    }
    assert!(server.seen().is_empty(), "no request crossed a refused connection: {:?}", server.seen());
}

#[tokio::test]
async fn https_verification_cannot_be_turned_off() {
    let message =
        run("fetch", https_api(443, json!({ "verify": false })), json!({})).await.expect_err("refused").message;
    assert_eq!(
        message,
        "connection `api` sets `extra.verify: false`, and Sluice always checks certificates: \
         name the server's CA file in `extra.verify` instead"
    );
}

// ---------------------------------------------------------------------------------------
// PostgreSQL: sql tasks and the metadata store

const SSL_IN_USE: &str = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

#[tokio::test]
async fn sql_task_connects_with_verify_full_and_refuses_another_ca() {
    let ca = TestCa::new("Sluice test CA");
    let other = TestCa::new("Another CA");
    let postgres = PrivatePostgres::start_tls(&ca.server_cert("postgres"));
    for mode in ["require", "verify-ca", "verify-full"] {
        let conn = tls_warehouse(postgres.port(), json!({ "sslmode": mode, "sslrootcert": ca.ca_file() }));
        let outputs = run("query", conn, json!({ "sql": SSL_IN_USE })).await.expect("connects over TLS");
        assert_eq!(outputs["rows"][0]["ssl"], true, "{mode}: {outputs}");
    }
    for mode in ["verify-ca", "verify-full"] {
        let conn = tls_warehouse(postgres.port(), json!({ "sslmode": mode, "sslrootcert": other.ca_file() }));
        let message = run("query", conn, json!({ "sql": SSL_IN_USE })).await.expect_err("refused").message;
        assert_refused(&message, &format!("localhost:{}", postgres.port()));
    }
}

#[tokio::test]
async fn metadata_store_connects_with_verify_full_and_refuses_another_ca() {
    let ca = TestCa::new("Sluice test CA");
    let other = TestCa::new("Another CA");
    let postgres = PrivatePostgres::start_tls(&ca.server_cert("postgres"));
    let url = |ca_file: &std::path::Path| {
        format!(
            "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
            postgres.port(),
            ca_file.display()
        )
    };
    let store = Store::connect(&url(&ca.ca_file())).await.expect("connects over TLS");
    store.migrate().await.expect("migrates over TLS");
    let Err(e) = Store::connect(&url(&other.ca_file())).await else { panic!("another CA must be refused") };
    assert_refused(&e.to_string(), &format!("localhost:{}", postgres.port()));
}

// ---------------------------------------------------------------------------------------
// Redis: the broker and the rate limiter

#[tokio::test]
async fn broker_and_rate_limiter_speak_rediss_and_refuse_another_ca() {
    let ca = TestCa::new("Sluice test CA");
    let other = TestCa::new("Another CA");
    let redis = TlsRedis::start(&ca.server_cert("redis"));
    let with_ca = |db: u32, ca_file: &std::path::Path| format!("{}?ssl_ca_certs={}", redis.url(db), ca_file.display());

    let broker = Broker::new(&with_ca(1, &ca.ca_file()), "tls").expect("a broker URL");
    broker.ping().await.expect("PING over TLS");

    let limiter = RateLimiter::redis(&with_ca(2, &ca.ca_file())).expect("a rate limit URL");
    let once = Limit { max: 1, window: Duration::from_secs(60) };
    limiter.hit("tls-test", once).await.expect("the first hit is allowed");
    assert!(limiter.hit("tls-test", once).await.is_err(), "the second hit is counted in Redis, over TLS");

    let refused = Broker::new(&with_ca(1, &other.ca_file()), "tls").expect("a broker URL");
    let e = refused.ping().await.expect_err("another CA must be refused");
    assert!(e.to_string().contains("certificate") || e.to_string().contains("UnknownIssuer"), "{e}");
}

#[test]
fn redis_urls_that_would_skip_the_certificate_check_are_refused() {
    let e = Broker::new("rediss://localhost:6380/1?ssl_cert_reqs=none", "tls").expect_err("refused");
    assert!(e.to_string().contains("Sluice always checks the server's certificate"), "{e}");
    let e = RateLimiter::redis("redis://localhost:6379/2?ssl_ca_certs=/tmp/ca.pem").expect_err("refused");
    assert!(e.contains("needs the `rediss://` scheme"), "{e}");
}
