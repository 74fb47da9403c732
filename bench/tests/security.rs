//! Attacks as a `User` would make them, against a real `sluice standalone` process and a
//! real distributed deployment (the compose services as processes, PostgreSQL through
//! PgBouncer, Redis): a corpus of payloads sent as the `greeting` of the `security`
//! pipeline through the REST API and the UI's trigger form. Each payload must be printed
//! and stored as the literal it is, and must never run; the task that prints its
//! environment must show none of the deployment's keys.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_testkit::cluster::Cluster;
use sluice_testkit::process::Env;
use sluice_testkit::redis::Persistence;
use sluice_testkit::standalone::Standalone;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ADMIN: (&str, &str) = ("admin", "security-admin-password");
const USER: (&str, &str) = ("alice", "alice-password-1");
/// How long all the runs of one deployment may take.
const RUNS_LIMIT: Duration = Duration::from_secs(180);

/// Payloads as an attacker writes them; `PWNED` becomes a path that must never exist.
const PAYLOADS: &[&str] = &[
    "'; touch PWNED; env | grep SLUICE_; echo '",
    "\"; touch PWNED; echo \"",
    "$(touch PWNED)",
    "`touch PWNED`",
    "x; touch PWNED",
    "x && touch PWNED",
    "x || touch PWNED",
    "x | tee PWNED",
    "x\ntouch PWNED",
    "> PWNED",
    "${IFS}touch${IFS}PWNED",
    "\\'; touch PWNED; echo \\'",
    "'\"$(touch PWNED)\"'",
    "'); DROP TABLE greetings; --",
    "x'); DROP TABLE greetings; --",
    "\\'); DROP TABLE greetings; --",
    "*/ DROP TABLE greetings; /*",
    "plain words",
];

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sluice-bench"))
}

fn payloads(dir: &Path) -> Vec<String> {
    let pwned = dir.join("pwned").display().to_string();
    PAYLOADS.iter().map(|p| p.replace("PWNED", &pwned)).collect()
}

/// `application/x-www-form-urlencoded`: every byte but letters and digits as `%XX`.
fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// The web server of one deployment, as a script and a browser reach it.
struct Web {
    base: String,
    client: reqwest::Client,
}

impl Web {
    fn new(port: u16) -> Web {
        let client = sluice_runtime::tls::http_client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Web { base: format!("http://127.0.0.1:{port}"), client }
    }

    async fn api(
        &self,
        who: (&str, &str),
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request =
            self.client.request(method, format!("{}/api/v1{path}", self.base)).basic_auth(who.0, Some(who.1));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn form(&self, cookie: &str, path: &str, body: String) -> reqwest::Response {
        let request = self.client.post(format!("{}{path}", self.base)).header("cookie", cookie);
        request.header("content-type", "application/x-www-form-urlencoded").body(body).send().await.expect("answer")
    }

    /// Signs in through the login form; the session cookie.
    async fn sign_in(&self, who: (&str, &str)) -> String {
        let page = self.client.get(format!("{}/login", self.base)).send().await.expect("login page");
        let login_cookie = cookie(&page);
        let token = csrf(&page.text().await.expect("html"));
        let body = format!("csrf={token}&username={}&password={}", form_encode(who.0), form_encode(who.1));
        let signed = self.form(&login_cookie, "/login", body).await;
        assert_eq!(signed.status(), StatusCode::SEE_OTHER, "{} signs in", who.0);
        cookie(&signed)
    }

    async fn page(&self, cookie: &str, path: &str) -> String {
        let page = self.client.get(format!("{}{path}", self.base)).header("cookie", cookie).send().await.expect("page");
        page.text().await.expect("html")
    }

    /// The state of every run of `security` once none is still going.
    async fn wait_for_runs(&self, expected: usize) -> Vec<Value> {
        let deadline = Instant::now() + RUNS_LIMIT;
        loop {
            let (status, answer) =
                self.api(ADMIN, reqwest::Method::GET, "/dags/security/dagRuns?limit=100", None).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            let runs = answer["dag_runs"].as_array().cloned().unwrap_or_default();
            let done = runs.iter().filter(|r| matches!(r["state"].as_str(), Some("success" | "failed"))).count();
            if runs.len() >= expected && done == runs.len() {
                return runs;
            }
            assert!(Instant::now() < deadline, "{done} of {expected} runs finished: {runs:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn log(&self, run_id: &str, task: &str) -> String {
        let path = format!("/dags/security/dagRuns/{run_id}/taskInstances/{task}/logs/1");
        let (status, answer) = self.api(ADMIN, reqwest::Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        answer["content"].as_str().unwrap_or_default().to_string()
    }
}

fn cookie(response: &reqwest::Response) -> String {
    let set = response.headers().get("set-cookie").and_then(|c| c.to_str().ok()).expect("a Set-Cookie");
    set.split(';').next().expect("name=value").to_string()
}

fn csrf(html: &str) -> String {
    html.split(r#"name="csrf" value=""#).nth(1).and_then(|s| s.split('"').next()).expect("a csrf token").to_string()
}

/// The greetings the `record` task stored, by run id.
async fn recorded(scratch: &Path) -> Vec<(String, String)> {
    use sqlx::Connection;
    let url = format!("sqlite://{}", scratch.display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.expect("open the scratch database");
    sqlx::query_as("SELECT run_id, greeting FROM greetings").fetch_all(&mut db).await.expect("the greetings table")
}

/// Sends every payload as `alice` (a `User`) through the API and the UI form, waits for the
/// runs, and checks what each printed, stored and saw. `secrets` are values the serving
/// processes hold that no task may see.
async fn attack(web: &Web, dir: &Path, scratch: &Path, secrets: &[(&str, String)]) {
    let payloads = payloads(dir);
    let mut expected: Vec<(String, String)> = Vec::new();
    for (i, greeting) in payloads.iter().enumerate() {
        let run_id = format!("api_{i}");
        let body = json!({ "dag_run_id": run_id, "conf": { "greeting": greeting } });
        let (status, answer) = web.api(USER, reqwest::Method::POST, "/dags/security/dagRuns", Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{greeting:?}: {answer}");
        expected.push((run_id, greeting.clone()));
    }
    let session = web.sign_in(USER).await;
    let token = csrf(&web.page(&session, "/dags/security").await);
    for (i, greeting) in payloads.iter().enumerate().take(6) {
        let run_id = format!("ui_{i}");
        let body = format!("csrf={token}&param.greeting={}&run_id={run_id}", form_encode(greeting));
        let answer = web.form(&session, "/dags/security/trigger", body).await;
        assert_eq!(answer.status(), StatusCode::SEE_OTHER, "the UI form takes {greeting:?}");
        expected.push((run_id, greeting.clone()));
    }
    // A run id outside Airflow's pattern is refused by the form as by the API.
    let body = format!("csrf={token}&param.greeting=x&run_id={}", form_encode("x'; touch PWNED"));
    assert_eq!(web.form(&session, "/dags/security/trigger", body).await.status(), StatusCode::BAD_REQUEST);

    let runs = web.wait_for_runs(expected.len()).await;
    for run in &runs {
        assert_eq!(run["state"], "success", "{run}");
    }
    for (run_id, greeting) in &expected {
        let printed = web.log(run_id, "greet").await;
        for line in greeting.lines().filter(|l| !l.trim().is_empty()) {
            let times = printed.matches(line.trim()).count();
            assert!(times >= 3, "{run_id}: `{line}` printed {times} times, not 3:\n{printed}");
        }
    }
    let mut stored = recorded(scratch).await;
    stored.sort();
    expected.sort();
    assert_eq!(stored, expected, "every greeting stored as the literal it is, and the table survived");
    assert!(!dir.join("pwned").exists(), "a payload ran a command");

    let env = web.log(&expected[0].0, "env_dump").await;
    assert!(env.contains("AIRFLOW_CTX_DAG_ID=security"), "the task has its run facts:\n{env}");
    for name in
        ["SLUICE_FERNET_KEY", "SLUICE_SECRET_KEY", "SLUICE_ADMIN_PASSWORD", "SLUICE_DATABASE_URL", "SLUICE_HOME"]
    {
        assert!(!env.contains(&format!("{name}=")), "the task saw {name}:\n{env}");
    }
    for (what, value) in secrets {
        assert!(!env.contains(value.as_str()), "the task saw the {what}:\n{env}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_from_a_user_run_as_literals_in_standalone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let scratch = dir.path().join("scratch.sqlite");
    let fernet = "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=";
    let session_key = "standalone-session-key-for-the-security-test";
    let conn = format!("sqlite:///{}", scratch.display());
    let env = [
        ("SLUICE_ADMIN_USERNAME", ADMIN.0),
        ("SLUICE_ADMIN_PASSWORD", ADMIN.1),
        ("SLUICE_FERNET_KEY", fernet),
        ("SLUICE_SECRET_KEY", session_key),
        ("SLUICE_CONN_SCRATCH", conn.as_str()),
    ];
    let standalone = Standalone::launch(binary(), &home, &env)
        .unwrap_or_else(|(status, log)| panic!("standalone exited ({status}):\n{log}"));
    let created = std::process::Command::new(binary())
        .args(["users", "create", "-u", USER.0, "-e", "alice@example.com", "-r", "User", "-p", USER.1])
        .env("SLUICE_HOME", &home)
        .env_remove("SLUICE_DATABASE_URL")
        .output()
        .expect("users create");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));

    let web = Web::new(standalone.port);
    let secrets =
        [("Fernet key", fernet.to_string()), ("session key", session_key.into()), ("admin password", ADMIN.1.into())];
    attack(&web, dir.path(), &scratch, &secrets).await;
    drop(standalone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_from_a_user_run_as_literals_in_a_deployment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scratch: PathBuf = dir.path().join("scratch.sqlite");
    let extra = Env::from([("SLUICE_CONN_SCRATCH".into(), format!("sqlite:///{}", scratch.display()))]);
    let mut cluster = Cluster::start(binary(), Persistence::AsGenerated, extra);
    cluster.start_webserver();
    cluster.spawn("scheduler", "scheduler");
    cluster.spawn("worker", "worker");
    let out = cluster.cli_output(&["users", "create", "-u", USER.0, "-e", "a@example.com", "-r", "User", "-p", USER.1]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // `init` made `admin` with the cluster's own password: give it this test's.
    let reset = cluster.cli_output(&["users", "reset-password", "-u", ADMIN.0, "-p", ADMIN.1]);
    assert!(reset.status.success(), "{}", String::from_utf8_lossy(&reset.stderr));

    let web = Web::new(cluster.web_port());
    let worker_env = cluster.env("worker");
    let secret = |name: &str| worker_env.get(name).cloned().unwrap_or_else(|| panic!("the worker has {name}"));
    let secrets = [
        ("Fernet key", secret("SLUICE_FERNET_KEY")),
        ("database URL", secret("SLUICE_DATABASE_URL")),
        ("connection secret", secret("BACKEND_API_TOKEN")),
        ("session key", cluster.env("webserver").get("SLUICE_SECRET_KEY").cloned().expect("the web server's key")),
    ];
    attack(&web, dir.path(), &scratch, &secrets).await;
}
