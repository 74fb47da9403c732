//! The administrative commands of the `sluice` binary, run as a user runs them: `init`,
//! `db check`, `version`, `healthcheck`, the run and task queries, `dags pause/unpause`,
//! `connections`, `variables`, `users`, `fernet` and `config`.
//!
//! Each test is a session with its own SLUICE_HOME (the standalone SQLite file lives
//! there) and an environment cleared of every SLUICE_ and AIRFLOW_ setting and connection
//! secret, so nothing leaks in from the shell or between tests. Each command gets a happy
//! path and a bad input: a failure exits 1 with one `error: ...` line, a usage error
//! exits 2. Secrets never reach the output of listings, nor the database file in the clear.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Variables the sample `pipelines.yaml` reads connection secrets from.
const SECRET_VARS: [&str; 4] = ["MLSP_DB_PASSWORD", "MLFLOW_DB_PASSWORD", "BACKEND_API_TOKEN", "POSTGRES_PASSWORD"];

/// The name of the standalone SQLite file in SLUICE_HOME (see `Settings::store_url`).
const DATABASE_FILE: &str = "sluice.sqlite";

/// A user's shell: a fresh SLUICE_HOME and the variables set in it.
struct Session {
    home: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Session {
    fn new() -> Session {
        Session { home: tempfile::tempdir().expect("temp home"), env: Vec::new() }
    }

    /// A session with a Fernet key, made by `sluice fernet generate`.
    fn keyed() -> Session {
        let mut session = Session::new();
        let key = session.ok(&["fernet", "generate"]).trim().to_string();
        session.set("SLUICE_FERNET_KEY", &key);
        session
    }

    fn home(&self) -> &Path {
        self.home.path()
    }

    /// `echo $VAR`, as set in this session.
    fn var(&self, var: &str) -> String {
        let value = self.env.iter().find(|(v, _)| v == var).map(|(_, value)| value.clone());
        value.unwrap_or_else(|| panic!("{var} is not set in this session"))
    }

    /// `export VAR=value`.
    fn set(&mut self, var: &str, value: &str) {
        self.env.retain(|(v, _)| v != var);
        self.env.push((var.to_string(), value.to_string()));
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        for (var, _) in std::env::vars_os() {
            let name = var.to_string_lossy();
            if name.starts_with("SLUICE_") || name.starts_with("AIRFLOW_") || SECRET_VARS.contains(&name.as_ref()) {
                command.env_remove(&var);
            }
        }
        command.args(args).env("SLUICE_HOME", self.home()).envs(self.env.iter().map(|(k, v)| (k, v)));
        command.output().expect("sluice runs")
    }

    /// Runs `sluice <args>`, which must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`sluice {}`: exit {:?}\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Runs `sluice -o json <args>`, which must succeed and print JSON.
    fn json(&self, args: &[&str]) -> Value {
        let args: Vec<&str> = args.iter().copied().chain(["-o", "json"]).collect();
        let out = self.ok(&args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("`sluice {}` is not JSON ({e}):\n{out}", args.join(" ")))
    }

    /// Runs `sluice <args>`, which must fail: exit 1 and one `error: ` line on stderr, no
    /// panic. Returns that line.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "`sluice {}`\nstdout:\n{}\nstderr:\n{stderr}",
            args.join(" "),
            text(&out.stdout)
        );
        assert!(stderr.starts_with("error: ") && stderr.lines().count() == 1, "one sentence: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    }

    /// Runs `sluice <args>`, which must be a usage error: exit 2, clap's message.
    fn usage_error(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "`sluice {}`\nstderr:\n{stderr}", args.join(" "));
        assert!(stderr.starts_with("error: ") && !stderr.contains("panicked"), "{stderr}");
        stderr
    }

    /// The bytes of every file in SLUICE_HOME whose name starts with the database file's
    /// (the file itself and its journal or WAL).
    fn database_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(self.home()).expect("read SLUICE_HOME") {
            let path = entry.expect("entry").path();
            if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with(DATABASE_FILE)) {
                bytes.extend(std::fs::read(&path).expect("read database file"));
            }
        }
        bytes
    }

    fn file(&self, name: &str) -> PathBuf {
        self.home().join(name)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn rows(json: &Value) -> &Vec<Value> {
    json.as_array().unwrap_or_else(|| panic!("a JSON list: {json}"))
}

fn ids<'a>(json: &'a Value, key: &str) -> Vec<&'a str> {
    rows(json).iter().filter_map(|row| row[key].as_str()).collect()
}

#[cfg(unix)]
fn assert_owner_only(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).expect("exported file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{} holds secrets: readable by its owner only", path.display());
}

#[cfg(not(unix))]
fn assert_owner_only(_: &Path) {}

#[test]
fn init_twice_is_idempotent() {
    let session = Session::new();
    let first = session.ok(&["init"]);
    let ready = first.lines().find(|l| l.starts_with("database ready (")).unwrap_or_else(|| panic!("{first}"));
    assert!(!ready.contains("(0 migration(s)") && !ready.contains("pipelines: 0 added"), "{ready}");
    assert!(first.contains("admin user `admin` created with password "), "{first}");
    let second = session.ok(&["init"]);
    assert_eq!(
        second.lines().last(),
        Some("database ready (0 migration(s) applied); pipelines: 0 added, 0 changed, 0 deactivated"),
        "nothing to do the second time: {second}"
    );
    assert!(!second.contains("admin user"), "no new admin password: {second}");
    assert_eq!(ids(&session.json(&["users", "list"]), "username"), ["admin"]);
}

#[test]
fn init_needs_a_home_it_can_create() {
    let mut session = Session::new();
    let file = session.file("not-a-folder");
    std::fs::write(&file, "").expect("write a file");
    session.set("SLUICE_HOME", &file.display().to_string());
    let err = session.fails(&["init"]);
    assert!(err.contains("cannot create") && err.contains("set SLUICE_HOME to a writable folder"), "{err}");
}

#[test]
fn db_check_reports_the_sqlite_file() {
    let session = Session::new();
    session.ok(&["init"]);
    let out = session.ok(&["db", "check"]);
    let url = format!("sqlite://{}", session.file(DATABASE_FILE).display());
    assert_eq!(out.trim(), format!("connection to {url} is healthy"));
}

#[test]
fn db_check_fails_on_an_unusable_database_url() {
    let mut session = Session::new();
    session.set("SLUICE_DATABASE_URL", "mysql://root:db-pw-123@localhost:1/sluice");
    let err = session.fails(&["db", "check"]);
    assert!(!err.contains("db-pw-123"), "the password is not quoted: {err}");
}

#[test]
fn version_prints_the_package_version() {
    let session = Session::new();
    assert_eq!(session.ok(&["version"]).trim(), format!("sluice {}", env!("CARGO_PKG_VERSION")));
    assert_eq!(session.ok(&["--version"]).trim(), format!("sluice {}", env!("CARGO_PKG_VERSION")));
    session.usage_error(&["version", "extra"]);
}

#[test]
fn healthcheck_checks_the_store_of_a_service() {
    let session = Session::new();
    session.ok(&["init"]);
    assert_eq!(session.ok(&["healthcheck", "scheduler"]), "", "a health check prints nothing when healthy");
    let err = session.fails(&["healthcheck", "nope"]);
    assert!(err.contains("unknown service `nope`: use webserver, scheduler or worker"), "{err}");
}

/// A private `redis-server` on a free port, stopped when dropped.
struct RedisServer {
    child: std::process::Child,
    port: u16,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (run scripts/install-test-deps.sh)");
        // Wait for it to listen (the server is up in milliseconds; a dead one fails below).
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        RedisServer { child, port }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn healthcheck_pings_a_broker_whose_url_selects_a_db() {
    let redis = RedisServer::start();
    let mut session = Session::new();
    session.ok(&["init"]);
    // The deployment's broker URL carries the db index (`redis://redis:6379/1`).
    session.set("SLUICE_BROKER_URL", &format!("redis://127.0.0.1:{}/1", redis.port));
    assert_eq!(session.ok(&["healthcheck", "worker"]), "");
    assert_eq!(session.ok(&["healthcheck", "scheduler"]), "");
    drop(redis);
    let err = session.fails(&["healthcheck", "worker"]);
    assert!(err.contains("Redis broker error"), "{err}");
}

#[test]
fn runs_and_task_states_can_be_queried() {
    let session = Session::new();
    assert_eq!(session.json(&["dags", "list-runs", "example_dag"]), Value::Array(Vec::new()));
    session.ok(&["dags", "trigger", "example_dag", "-e", "2024-05-01"]);
    let runs = session.json(&["dags", "list-runs", "example_dag", "--limit", "1"]);
    assert_eq!(ids(&runs, "run_id"), ["manual__2024-05-01T00:00:00+00:00"]);
    let table = session.ok(&["dags", "list-runs", "example_dag"]);
    assert!(table.starts_with("dag_id") && table.contains("manual__2024-05-01T00:00:00+00:00 | queued"), "{table}");

    let run = "manual__2024-05-01T00:00:00+00:00";
    assert_eq!(session.ok(&["dags", "state", "example_dag", run]).trim(), "queued");
    assert_eq!(session.ok(&["dags", "state", "example_dag", "2024-05-01"]).trim(), "queued");
    assert_eq!(session.ok(&["tasks", "state", "example_dag", "print_hello", run]).trim(), "none");

    let err = session.fails(&["dags", "list-runs", "nope"]);
    assert!(err.contains("no pipeline `nope`"), "{err}");
    let err = session.fails(&["dags", "state", "example_dag", "2030-01-01"]);
    assert!(err.contains("no run `2030-01-01` of pipeline `example_dag`"), "{err}");
    let err = session.fails(&["tasks", "state", "example_dag", "nope", run]);
    assert!(err.contains("has no task `nope`"), "{err}");
    session.usage_error(&["dags", "list-runs", "example_dag", "--limit", "many"]);
}

#[test]
fn pause_and_unpause_answer_in_json() {
    let session = Session::new();
    assert_eq!(session.ok(&["dags", "pause", "example_dag"]).trim(), "pipeline example_dag paused");
    let paused = session.json(&["dags", "pause", "example_dag"]);
    assert_eq!(paused, serde_json::json!([{"dag_id": "example_dag", "is_paused": true}]));
    let unpaused = session.json(&["dags", "unpause", "example_dag"]);
    assert_eq!(unpaused, serde_json::json!([{"dag_id": "example_dag", "is_paused": false}]));
    let list = session.json(&["dags", "list"]);
    let example = rows(&list).iter().find(|d| d["dag_id"] == "example_dag").expect("example_dag listed");
    assert_eq!(example["is_paused"], false);
    let err = session.fails(&["dags", "unpause", "nope"]);
    assert!(err.contains("no pipeline `nope`"), "{err}");
}

#[test]
fn tasks_list_shows_kinds_and_upstreams() {
    let session = Session::new();
    let tasks = session.json(&["tasks", "list", "example_dag"]);
    assert_eq!(ids(&tasks, "task_id"), ["print_hello", "print_date"]);
    assert!(rows(&tasks).iter().all(|t| t["kind"].is_string() && t["depends_on"].is_array()), "{tasks}");
    let table = session.ok(&["tasks", "list", "example_dag"]);
    assert!(table.starts_with("task_id") && table.contains("print_date"), "{table}");
    let err = session.fails(&["tasks", "list", "nope"]);
    assert!(err.contains("no pipeline `nope`") && err.contains("example_dag"), "{err}");
}

#[test]
fn connections_with_a_password_need_a_fernet_key() {
    let session = Session::new();
    let err = session.fails(&[
        "connections",
        "add",
        "warehouse",
        "--conn-type",
        "postgres",
        "--conn-host",
        "db",
        "--conn-password",
        "s3cr3t-pw-XYZ",
    ]);
    assert!(err.contains("no Fernet key is configured") && err.contains("SLUICE_FERNET_KEY"), "{err}");
    assert!(!err.contains("s3cr3t-pw-XYZ"), "{err}");
    assert!(!contains(&session.database_bytes(), "s3cr3t-pw-XYZ"), "nothing stored in the clear");
    assert_eq!(session.json(&["connections", "list"]), Value::Array(Vec::new()), "nothing stored at all");
}

#[test]
fn connection_passwords_are_encrypted_at_rest_and_masked() {
    let session = Session::keyed();
    let added = session.ok(&[
        "connections",
        "add",
        "warehouse",
        "--conn-type",
        "postgres",
        "--conn-host",
        "db.internal",
        "--conn-port",
        "5432",
        "--conn-login",
        "etl",
        "--conn-password",
        "s3cr3t-pw-XYZ",
        "--conn-schema",
        "dwh",
    ]);
    assert!(added.starts_with("connection `warehouse` added: "), "{added}");
    assert!(!added.contains("s3cr3t-pw-XYZ"), "{added}");

    let database = session.database_bytes();
    assert!(contains(&database, "db.internal"), "the connection is in {DATABASE_FILE}");
    assert!(!contains(&database, "s3cr3t-pw-XYZ"), "the password is encrypted at rest");

    let shown = session.ok(&["connections", "get", "warehouse"]);
    assert!(shown.contains("password") && shown.contains("***"), "{shown}");
    assert!(!shown.contains("s3cr3t-pw-XYZ"), "{shown}");
    let json = session.json(&["connections", "get", "warehouse"]);
    assert_eq!(json["host"], "db.internal");
    assert_eq!(json["password"], "***");
    assert_eq!(json["is_encrypted"], true);
    assert!(!json.to_string().contains("s3cr3t-pw-XYZ"), "{json}");

    let list = session.json(&["connections", "list"]);
    assert_eq!(ids(&list, "conn_id"), ["warehouse"]);
    assert_eq!(list[0]["has_password"], true);
    assert!(!list.to_string().contains("s3cr3t-pw-XYZ"), "{list}");

    let err = session.fails(&["connections", "add", "warehouse", "--conn-type", "postgres"]);
    assert!(err.contains("connection `warehouse` already exists"), "{err}");
    assert_eq!(session.ok(&["connections", "delete", "warehouse"]).trim(), "connection `warehouse` deleted");
    let err = session.fails(&["connections", "get", "warehouse"]);
    assert!(err.contains("warehouse"), "{err}");
    let err = session.fails(&["connections", "delete", "warehouse"]);
    assert!(err.contains("warehouse"), "{err}");
}

#[test]
fn connections_add_takes_a_uri_or_fields_not_both() {
    let session = Session::keyed();
    let added = session.ok(&["connections", "add", "cache", "--conn-uri", "redis://:r3dis-pw@cache.internal:6379/0"]);
    assert!(!added.contains("r3dis-pw"), "{added}");
    assert_eq!(session.json(&["connections", "get", "cache"])["host"], "cache.internal");

    let err =
        session.usage_error(&["connections", "add", "x", "--conn-uri", "redis://cache:6379/0", "--conn-host", "h"]);
    assert!(err.contains("--conn-host"), "{err}");
    session.usage_error(&["connections", "add", "x"]);
    let err = session.fails(&["connections", "add", "x", "--conn-type", "http", "--conn-extra", "[1, 2]"]);
    assert!(err.contains("--conn-extra of connection `x` is not a JSON object"), "{err}");
}

#[test]
fn connections_export_and_import_round_trip() {
    let session = Session::keyed();
    session.ok(&[
        "connections",
        "add",
        "api",
        "--conn-type",
        "http",
        "--conn-host",
        "api.example.com",
        "--conn-password",
        "s3cr3t-pw-XYZ",
    ]);
    let exported: Value = serde_json::from_str(&session.ok(&["connections", "export", "-"])).expect("JSON export");
    assert_eq!(exported["api"]["password"], "s3cr3t-pw-XYZ", "export is the explicit way to take secrets out");

    let file = session.file("connections.json");
    let path = file.display().to_string();
    let out = session.ok(&["connections", "export", &path]);
    assert!(out.starts_with("exported 1 connection(s) to ") && !out.contains("s3cr3t-pw-XYZ"), "{out}");
    assert_owner_only(&file);
    serde_json::from_str::<Value>(&std::fs::read_to_string(&file).expect("exported file")).expect("JSON file");

    let mut other = Session::new();
    other.set("SLUICE_FERNET_KEY", &session.var("SLUICE_FERNET_KEY"));
    let imported = other.ok(&["connections", "import", &path]);
    assert!(imported.contains("imported 1 connection(s)") && imported.contains("added: api"), "{imported}");
    assert_eq!(other.json(&["connections", "get", "api"])["host"], "api.example.com");

    let err = other.fails(&["connections", "import", &path]);
    assert!(err.contains("`api`") && err.contains("nothing was imported"), "{err}");
    assert!(other.ok(&["connections", "import", &path, "--overwrite"]).contains("replaced: api"));
    let missing = other.file("missing.json").display().to_string();
    let err = other.fails(&["connections", "import", &missing]);
    assert!(err.contains("cannot read"), "{err}");
    let err = other.fails(&["connections", "export", &other.file("connections.txt").display().to_string()]);
    assert!(err.contains("cannot tell the format") && !err.contains("s3cr3t-pw-XYZ"), "{err}");
}

#[test]
fn declared_connections_are_listed_after_init_without_secrets() {
    let mut session = Session::keyed();
    session.set("MLSP_DB_PASSWORD", "mlsp-db-pw-111");
    session.set("MLFLOW_DB_PASSWORD", "mlflow-db-pw-222");
    session.set("BACKEND_API_TOKEN", "backend-token-333");
    session.ok(&["init"]);
    let list = session.json(&["connections", "list"]);
    let declared = ids(&list, "conn_id");
    for id in ["postgres_mlsp", "postgres_mlflow", "redis_default", "mlflow_tracking", "backend_api", "sports_feed"] {
        assert!(declared.contains(&id), "{id} in {declared:?}");
    }
    assert!(rows(&list).iter().all(|c| c["source"] == "pipelines.yaml"), "{list}");
    let table = session.ok(&["connections", "list"]);
    for secret in ["mlsp-db-pw-111", "mlflow-db-pw-222", "backend-token-333"] {
        assert!(!list.to_string().contains(secret) && !table.contains(secret), "{secret} shown");
        assert!(!contains(&session.database_bytes(), secret), "{secret} stored in the clear");
    }
    let backend = session.json(&["connections", "get", "backend_api"]);
    assert_eq!(backend["extra"]["token"], "***", "{backend}");
    assert!(!session.ok(&["connections", "get", "backend_api"]).contains("backend-token-333"));
    let err = session.fails(&["connections", "delete", "postgres_mlsp"]);
    assert!(err.contains("declared in pipelines.yaml"), "{err}");
}

#[test]
fn variables_set_get_list_and_delete() {
    let session = Session::keyed();
    assert_eq!(
        session.ok(&["variables", "set", "league", "nba", "--description", "the league"]).trim(),
        "variable `league` set"
    );
    session.ok(&["variables", "set", "api_token", "tok-s3cr3t-777"]);
    assert_eq!(session.ok(&["variables", "get", "league"]), "nba\n");
    assert_eq!(session.ok(&["variables", "get", "api_token"]), "tok-s3cr3t-777\n", "get is an explicit request");
    assert_eq!(session.ok(&["variables", "get", "missing", "--default", "fallback"]), "fallback\n");

    let list = session.json(&["variables", "list"]);
    assert_eq!(ids(&list, "key"), ["api_token", "league"]);
    let token = rows(&list).iter().find(|v| v["key"] == "api_token").expect("api_token listed");
    assert_eq!(token["value"], "***");
    assert_eq!(token["secret"], true);
    assert!(!session.ok(&["variables", "list"]).contains("tok-s3cr3t-777"));
    assert!(!contains(&session.database_bytes(), "tok-s3cr3t-777"), "a secret variable is encrypted at rest");

    assert_eq!(session.ok(&["variables", "delete", "league"]).trim(), "variable `league` deleted");
    let err = session.fails(&["variables", "get", "league"]);
    assert!(err.contains("variable `league` not found"), "{err}");
    let err = session.fails(&["variables", "delete", "league"]);
    assert!(err.contains("league"), "{err}");
}

#[test]
fn secret_variables_need_a_fernet_key() {
    let session = Session::new();
    session.ok(&["variables", "set", "league", "nba"]);
    let err = session.fails(&["variables", "set", "api_token", "tok-s3cr3t-777"]);
    assert!(err.contains("SLUICE_FERNET_KEY") && !err.contains("tok-s3cr3t-777"), "{err}");
    session.usage_error(&["variables", "set", "league"]);
}

#[test]
fn variables_export_and_import_round_trip() {
    let session = Session::keyed();
    session.ok(&["variables", "set", "league", "nba"]);
    session.ok(&["variables", "set", "limits", r#"{"games": 82}"#]);
    let exported: Value = serde_json::from_str(&session.ok(&["variables", "export", "-"])).expect("JSON export");
    assert_eq!(exported, serde_json::json!({"league": "nba", "limits": {"games": 82}}));

    let file = session.file("variables.json");
    let path = file.display().to_string();
    assert!(session.ok(&["variables", "export", &path]).starts_with("exported 2 variable(s) to "));
    assert_owner_only(&file);

    let other = Session::new();
    let imported = other.ok(&["variables", "import", &path]);
    assert!(imported.contains("imported 2 variable(s)") && imported.contains("2 created"), "{imported}");
    assert_eq!(other.ok(&["variables", "get", "limits"]).trim(), r#"{"games":82}"#);
    let skipped = other.ok(&["variables", "import", &path, "--action-on-existing-key", "skip"]);
    assert!(skipped.contains("2 skipped"), "{skipped}");
    other.fails(&["variables", "import", &path, "-a", "fail"]);

    let bad = other.file("bad.json");
    std::fs::write(&bad, "[1, 2]").expect("write");
    let err = other.fails(&["variables", "import", &bad.display().to_string()]);
    assert!(err.contains("must be one JSON object"), "{err}");
    other.usage_error(&["variables", "import", &path, "--action-on-existing-key", "merge"]);
}

#[test]
fn users_create_list_reset_password_and_delete() {
    let session = Session::new();
    let created = session.ok(&[
        "users",
        "create",
        "--username",
        "ada",
        "--email",
        "ada@example.com",
        "--role",
        "Op",
        "--random-password",
    ]);
    let password = created
        .trim()
        .strip_prefix("user `ada` created with role Op; password (shown only now): ")
        .unwrap_or_else(|| panic!("a generated password is shown once: {created}"));
    assert!(password.len() >= 16 && password.chars().all(|c| c.is_ascii_alphanumeric()), "{password}");

    let users = session.json(&["users", "list"]);
    assert_eq!(ids(&users, "username"), ["ada"]);
    assert_eq!(users[0]["role"], "Op");
    assert!(!users.to_string().contains(password), "a listing never shows a password");

    let reset = session.ok(&["users", "reset-password", "-u", "ada", "--use-random-password"]);
    assert!(reset.starts_with("password of user `ada` reset; new password (shown only now): "), "{reset}");
    assert_eq!(
        session.ok(&["users", "reset-password", "-u", "ada", "-p", "chosen-pw"]).trim(),
        "password of user `ada` reset"
    );
    let err = session.fails(&["users", "reset-password", "-u", "ada", "-p", ""]);
    assert!(err.contains("the password cannot be empty"), "{err}");
    let err = session.fails(&["users", "reset-password", "-u", "ada", "-p", "chosen7"]);
    assert!(err.contains("at least 8 characters"), "{err}");

    let err = session.fails(&["users", "create", "-u", "ada", "-e", "a@example.com", "-r", "Admin", "-p", "pw-of-ada"]);
    assert!(err.contains("ada"), "{err}");
    session.usage_error(&["users", "create", "-u", "bob", "-e", "b@example.com", "-r", "Root", "-p", "pw"]);
    session.usage_error(&["users", "create", "-u", "bob", "-e", "b@example.com", "-r", "User"]);

    assert_eq!(session.ok(&["users", "delete", "-u", "ada"]).trim(), "user `ada` deleted");
    assert_eq!(session.json(&["users", "list"]), Value::Array(Vec::new()));
    let err = session.fails(&["users", "delete", "-u", "ada"]);
    assert!(err.contains("ada"), "{err}");
}

#[test]
fn fernet_generate_prints_a_urlsafe_base64_key() {
    let mut session = Session::new();
    let out = session.ok(&["fernet", "generate"]);
    let key = out.strip_suffix('\n').expect("one line");
    assert_eq!(key.len(), 44, "{key}");
    assert!(key.ends_with('=') && !key[..43].contains('='), "{key}");
    assert!(key[..43].chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "url-safe: {key}");
    assert_ne!(session.ok(&["fernet", "generate"]), out, "a new key each time");
    session.set("SLUICE_FERNET_KEY", key);
    let config = session.json(&["config", "list"]);
    let state = rows(&config).iter().find(|r| r["setting"] == "fernet_key").expect("fernet_key row");
    assert_eq!(state["value"], "set (1 key)", "sluice accepts the key it made");
    session.usage_error(&["fernet", "generate", "extra"]);
}

#[test]
fn fernet_rotate_moves_secrets_onto_the_new_key() {
    let mut session = Session::keyed();
    let old = session.var("SLUICE_FERNET_KEY");
    let args = ["connections", "add", "api", "--conn-type", "http", "--conn-host", "h", "--conn-password", "pw-1"];
    session.ok(&args);
    session.ok(&["variables", "set", "api_token", "tok-1"]);
    let new = session.ok(&["fernet", "generate"]).trim().to_string();

    session.set("SLUICE_FERNET_KEY", &format!("{new},{old}"));
    let out = session.ok(&["fernet", "rotate"]);
    assert_eq!(
        out.trim(),
        "re-encrypted 1 connection(s) and 1 variable(s) with the first key in SLUICE_FERNET_KEY; \
         the other 1 key(s) in SLUICE_FERNET_KEY can now be removed"
    );

    session.set("SLUICE_FERNET_KEY", &new);
    assert_eq!(session.json(&["connections", "get", "api"])["password"], "***");
    assert_eq!(session.ok(&["variables", "get", "api_token"]).trim(), "tok-1");
    let exported: Value = serde_json::from_str(&session.ok(&["connections", "export", "-"])).expect("JSON export");
    assert_eq!(exported["api"]["password"], "pw-1");

    session.set("SLUICE_FERNET_KEY", &old);
    let err = session.fails(&["connections", "get", "api"]);
    assert!(err.contains("cannot read the password of connection `api`") && !err.contains(&old), "{err}");
    session.fails(&["variables", "get", "api_token"]);
}

#[test]
fn fernet_rotate_needs_a_valid_key() {
    let mut session = Session::new();
    let err = session.fails(&["fernet", "rotate"]);
    assert!(err.contains("no Fernet key is configured") && err.contains("SLUICE_FERNET_KEY"), "{err}");
    session.set("SLUICE_FERNET_KEY", "not-a-key-hunter2");
    let err = session.fails(&["fernet", "rotate"]);
    assert!(err.contains("is not a Fernet key") && !err.contains("hunter2"), "{err}");
}

#[test]
fn config_list_never_shows_secret_values() {
    let mut session = Session::new();
    let key = session.ok(&["fernet", "generate"]).trim().to_string();
    session.set("SLUICE_FERNET_KEY", &key);
    session.set("SLUICE_SECRET_KEY", "flask-secret-555");
    session.set("SLUICE_ADMIN_PASSWORD", "admin-pw-666");
    session.set("SLUICE_DATABASE_URL", "postgres://mlsp_user:db-pw-777@pgbouncer:6432/airflow");
    session.set("SLUICE_DATABASE_DIRECT_URL", "postgres://mlsp_user:db-pw-888@postgres:5432/airflow");
    session.set("SLUICE_BROKER_URL", "redis://:redis-pw-999@redis:6379/1");
    let table = session.run(&["config", "list"]);
    let json = session.json(&["config", "list"]);
    let shown = format!("{}{}{json}", text(&table.stdout), text(&table.stderr));
    for secret in [key.as_str(), "flask-secret-555", "admin-pw-666", "db-pw-777", "db-pw-888", "redis-pw-999"] {
        assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
    }
    let value = |setting: &str| {
        let row = rows(&json).iter().find(|r| r["setting"] == setting);
        row.unwrap_or_else(|| panic!("no {setting} in {json}"))["value"].clone()
    };
    assert_eq!(value("fernet_key"), "set (1 key)");
    assert_eq!(value("secret_key"), "set");
    assert_eq!(value("admin_password"), "set");
    assert_eq!(value("database_url"), "postgres://mlsp_user:***@pgbouncer:6432/airflow");
    assert_eq!(value("database_direct_url"), "postgres://mlsp_user:***@postgres:5432/airflow");
    assert_eq!(value("broker_url"), "redis://:***@redis:6379/1");

    session.set("SLUICE_FERNET_KEY", "not-a-key-hunter2");
    let invalid = session.json(&["config", "list"]);
    assert!(!invalid.to_string().contains("hunter2"), "{invalid}");
    session.usage_error(&["config", "nope"]);
}

#[test]
fn config_list_masks_a_password_given_as_a_url_parameter() {
    let mut session = Session::new();
    session.set("SLUICE_DATABASE_URL", "postgres://mlsp_user@pgbouncer:6432/airflow?password=db-pw-777");
    let table = session.ok(&["config", "list"]);
    let json = session.json(&["config", "list"]);
    assert!(!table.contains("db-pw-777") && !json.to_string().contains("db-pw-777"), "{table}");
}

/// A change made with the CLI is in the audit log: the login name running it, the host,
/// surface `cli`, and no secret value.
#[test]
fn cli_changes_are_in_the_audit_log() {
    let mut session = Session::keyed();
    session.set("USER", "deployer");
    session.ok(&["variables", "set", "api_token", "tok-s3cr3t-778"]);
    session.ok(&["dags", "pause", "example_dag"]);
    let url = format!("sqlite://{}", session.file(DATABASE_FILE).display());
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let (rows, total) = runtime.block_on(async {
        let store = sluice_runtime::store::Store::connect(&url).await.expect("the CLI's store");
        let order = (sluice_runtime::store::AuditOrder::Id, true);
        store.audit_log(&Default::default(), order, 100, 0).await.expect("the audit log")
    });
    assert_eq!(total, 2, "{rows:?}");
    let seen: Vec<(&str, &str, &str, Option<&str>)> = rows
        .iter()
        .map(|r| (r.event.as_str(), r.owner.as_str(), r.surface.as_str(), r.pipeline_id.as_deref()))
        .collect();
    assert_eq!(seen, [("variable.set", "deployer", "cli", None), ("pause", "deployer", "cli", Some("example_dag"))]);
    assert!(rows.iter().all(|r| !r.origin.is_empty() && !r.extra.contains("tok-s3cr3t-778")), "{rows:?}");
}
