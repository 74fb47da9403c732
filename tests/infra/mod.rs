//! Real backing services for end-to-end and fault tests, started the way
//! `generated/docker-compose.yml` starts them, with only what must differ on one machine
//! rewritten: container paths become temp files, fixed ports become free loopback ports,
//! and the compose host names (`postgres`, `pgbouncer`, `redis`) become `127.0.0.1`.
//!
//! ```ignore
//! mod infra;
//! let compose = infra::Compose::load();
//! let db = infra::Database::fresh("e2e");
//! let bouncer = infra::Bouncer::start(&compose, &db);
//! let redis = infra::Redis::start(&compose);
//! let mut worker = compose.service("worker", &vars).expect("all variables set");
//! worker.rewrite_addresses(&[
//!     ("postgres:5432/airflow", &format!("{}/{}", db.address(), db.name())),
//!     ("pgbouncer:6432/airflow", &format!("{}/{}", bouncer.address(), db.name())),
//!     ("redis:6379", &redis.address()),
//! ]);
//! ```
//!
//! Needs PostgreSQL (the machine's on 127.0.0.1:5432 with trust auth for the superuser
//! `postgres`, or else a private one the tests start) and what
//! `scripts/install-test-deps.sh` installs (pgbouncer, psql, redis-server). A missing tool
//! fails the test with that hint; nothing is skipped.

// Each test file uses a part of the harness.
#![allow(dead_code)]

pub mod cluster;
pub mod standalone;

use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Environment variables by name.
pub type Env = BTreeMap<String, String>;

/// Prints a test's measured result and appends it to `target/tmp/test-results.txt`, which
/// CI prints after the tests (cargo hides a passing test's output).
pub fn report(line: &str) {
    println!("{line}");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-results.txt");
    if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(&path) {
        let _ = writeln!(file, "{line}");
    }
}

const INSTALL_HINT: &str = "run scripts/install-test-deps.sh";
/// How long a server may take to listen before the test fails.
const START_LIMIT: Duration = Duration::from_secs(20);
/// Lines of a log quoted in a panic message.
const TAIL_LINES: usize = 40;

// ---------------------------------------------------------------------------------------
// Compose
// ---------------------------------------------------------------------------------------

/// `generated/docker-compose.yml`, parsed.
#[derive(Debug)]
pub struct Compose {
    dir: PathBuf,
    doc: Json,
}

/// One compose service as a container would see it: variables interpolated, bind mounts
/// resolved to host paths.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    /// Empty when the service keeps its image's command.
    pub command: Vec<String>,
    /// Empty when the service keeps its image's entrypoint.
    pub entrypoint: Vec<String>,
    pub environment: Env,
    /// Bind mounts: container path -> host path (relative sources resolved against
    /// `generated/`). Named volumes are left out.
    pub mounts: BTreeMap<String, PathBuf>,
}

impl Compose {
    /// Reads this workspace's `generated/docker-compose.yml`.
    pub fn load() -> Compose {
        // The workspace root holds generated/ (tests of member crates live below it).
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|d| d.join("generated"))
            .find(|d| d.join("docker-compose.yml").is_file())
            .expect("generated/docker-compose.yml in the workspace");
        let path = dir.join("docker-compose.yml");
        let text = read(&path);
        let doc: Json = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
        assert!(doc["services"].is_object(), "{} has no `services`", path.display());
        Compose { dir, doc }
    }

    /// The directory the file's relative paths are resolved against (`generated/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The service's raw YAML, not interpolated.
    pub fn raw(&self, service: &str) -> &Json {
        let raw = &self.doc["services"][service];
        assert!(raw.is_object(), "docker-compose.yml has no service `{service}`");
        raw
    }

    /// A service with `vars` interpolated as `docker compose` would with exactly those
    /// variables set (the test's own environment is not read). Fails, with compose's
    /// message, when a `${VAR:?...}` is unset or empty.
    pub fn service(&self, name: &str, vars: &Env) -> Result<ServiceSpec, String> {
        let raw = self.raw(name);
        let strings = |key: &str| -> Result<Vec<String>, String> {
            match &raw[key] {
                Json::Null => Ok(Vec::new()),
                Json::Array(items) => items.iter().map(|v| interpolate(&scalar(v), vars)).collect(),
                other => Err(format!("service `{name}`: `{key}` is {other}; the harness reads only the list form")),
            }
        };
        let mut environment = Env::new();
        match &raw["environment"] {
            Json::Null => {}
            Json::Object(map) => {
                for (key, value) in map {
                    // `KEY:` with no value passes the variable through from the host.
                    let value = match value {
                        Json::Null => vars.get(key).cloned(),
                        v => Some(interpolate(&scalar(v), vars)?),
                    };
                    environment.extend(value.map(|v| (key.clone(), v)));
                }
            }
            Json::Array(items) => {
                for item in items {
                    let item = interpolate(&scalar(item), vars)?;
                    match item.split_once('=') {
                        Some((key, value)) => environment.insert(key.to_string(), value.to_string()),
                        None => vars.get(&item).and_then(|v| environment.insert(item.clone(), v.clone())),
                    };
                }
            }
            other => return Err(format!("service `{name}`: unexpected environment {other}")),
        }
        let mut mounts = BTreeMap::new();
        for volume in raw["volumes"].as_array().into_iter().flatten() {
            let (source, target) = match volume {
                Json::String(short) => {
                    let short = interpolate(short, vars)?;
                    let mut parts = short.split(':');
                    (parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or_default().to_string())
                }
                long => (interpolate(&scalar(&long["source"]), vars)?, interpolate(&scalar(&long["target"]), vars)?),
            };
            if source.starts_with('.') || source.starts_with('/') {
                mounts.insert(target, self.dir.join(source));
            }
        }
        Ok(ServiceSpec {
            name: name.to_string(),
            command: strings("command")?,
            entrypoint: strings("entrypoint")?,
            environment,
            mounts,
        })
    }
}

impl ServiceSpec {
    /// Replaces each `from` (a `host:port`, optionally followed by `/database`) with `to`
    /// in every environment value, where it stands as a whole address (`redis:6379` in
    /// `redis://redis:6379/1`, not in `myredis:63790`). Returns how many it replaced, so a
    /// test can assert its map still matches the compose file.
    pub fn rewrite_addresses(&mut self, map: &[(&str, &str)]) -> usize {
        let mut count = 0;
        for value in self.environment.values_mut() {
            for (from, to) in map {
                let (replaced, n) = replace_address(value, from, to);
                *value = replaced;
                count += n;
            }
        }
        count
    }

    /// The host path of a file the service mounts at `container_path`.
    pub fn host_path(&self, container_path: &str) -> &Path {
        self.mounts
            .get(container_path)
            .unwrap_or_else(|| panic!("service `{}` mounts nothing at {container_path}", self.name))
    }

    /// Arguments with every mounted container path replaced by its host path.
    pub fn localize(&self, args: &[String]) -> Vec<String> {
        args.iter()
            .map(|a| self.mounts.get(a).map_or_else(|| a.clone(), |p| p.to_string_lossy().into_owned()))
            .collect()
    }
}

pub use sluice_testkit::compose::interpolate;

fn replace_address(text: &str, from: &str, to: &str) -> (String, usize) {
    let part_of_name = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    let (mut out, mut last, mut count) = (String::new(), 0, 0);
    for (at, _) in text.match_indices(from) {
        let end = at + from.len();
        if at < last || part_of_name(text[..at].chars().next_back()) || part_of_name(text[end..].chars().next()) {
            continue;
        }
        out.push_str(&text[last..at]);
        out.push_str(to);
        (last, count) = (end, count + 1);
    }
    out.push_str(&text[last..]);
    (out, count)
}

/// A YAML scalar as compose reads it: strings as they are, numbers and booleans as text.
fn scalar(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------

/// A fresh database on the local PostgreSQL, owned by the compose's metadata user
/// (`POSTGRES_USER`, created as a login role when missing); dropped on Drop.
#[derive(Debug)]
pub struct Database {
    name: String,
    user: String,
    /// The server's `host:port`.
    server: String,
}

static DATABASES: AtomicUsize = AtomicUsize::new(0);

impl Database {
    /// The metadata user's password in every test. PostgreSQL's trust auth ignores it;
    /// PgBouncer's SCRAM auth file and the clients' URLs must agree on it. URL-safe,
    /// because compose writes it into URLs unescaped.
    pub const PASSWORD: &'static str = "sluice-test-password";
    /// Where the tests' PostgreSQL listens (the machine's on 127.0.0.1:5432, or a private
    /// one: [`sluice_testkit::postgres::address`]).
    pub fn server() -> &'static str {
        sluice_testkit::postgres::address()
    }

    /// Creates `<prefix>_<pid>_<n>` (dropping a leftover of that name first). `prefix`:
    /// lowercase letters, digits and `_`.
    pub fn fresh(prefix: &str) -> Database {
        Database::fresh_on(Database::server(), prefix)
    }

    /// As [`Database::fresh`], on the server at `server` (`host:port`, trust auth for
    /// `postgres`), e.g. a [`PrivatePostgres`].
    pub fn fresh_on(server: &str, prefix: &str) -> Database {
        assert!(
            prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "database prefix `{prefix}`: use lowercase letters, digits and `_`"
        );
        let vars = Env::from([("POSTGRES_PASSWORD".to_string(), Database::PASSWORD.to_string())]);
        let postgres = Compose::load().service("postgres", &vars).unwrap_or_else(|e| panic!("compose: {e}"));
        let user = postgres.environment.get("POSTGRES_USER").expect("POSTGRES_USER in the postgres service").clone();
        assert!(user.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "unusual role name `{user}`");
        let name = format!("{prefix}_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::SeqCst));

        // Tests create the role concurrently: the loser of the race sees unique_violation.
        let admin_sql = |sql: &str| match psql_at(server, "postgres", sql) {
            Ok(out) => out,
            Err(e) => panic!("`{sql}` on PostgreSQL at {server} (trust auth for `postgres`): {e}"),
        };
        admin_sql(&format!(
            "DO $$ BEGIN \
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{user}') THEN \
                 CREATE ROLE {user} LOGIN PASSWORD '{pw}'; \
               END IF; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; \
             END $$",
            pw = Database::PASSWORD
        ));
        let can_login = admin_sql(&format!("SELECT rolcanlogin FROM pg_roles WHERE rolname = '{user}'"));
        assert_eq!(can_login.trim(), "t", "role {user} exists but cannot log in");
        admin_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        admin_sql(&format!("CREATE DATABASE {name} OWNER {user}"));
        Database { name, user, server: server.to_string() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn password(&self) -> &str {
        Database::PASSWORD
    }

    /// `host:port` of its server, what `postgres:5432` becomes.
    pub fn address(&self) -> String {
        self.server.clone()
    }

    /// Straight to PostgreSQL, as `SLUICE_DATABASE_DIRECT_URL` (migrations, LISTEN).
    pub fn direct_url(&self) -> String {
        postgres_url(&self.user, Database::PASSWORD, &self.server, &self.name)
    }
}

impl Drop for Database {
    /// Best effort: `WITH (FORCE)` ends connections a bouncer may still hold.
    fn drop(&mut self) {
        let _ = psql_at(&self.server, "postgres", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// Runs one statement as `postgres` on `database` of the local PostgreSQL; its output
/// (`a|b` rows). Panics on error.
pub fn psql_on(database: &str, sql: &str) -> String {
    psql_at(Database::server(), database, sql).unwrap_or_else(|e| panic!("`{sql}` on {database}: {e}"))
}

/// Runs one statement as `postgres` on `database` of the server at `server`.
pub fn psql_at(server: &str, database: &str, sql: &str) -> Result<String, String> {
    let (host, port) = server.split_once(':').expect("host:port");
    let out = Command::new(tool("psql"))
        .arg(format!("host={host} port={port} user=postgres dbname={database} connect_timeout=10"))
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env_remove("PGSERVICE")
        .env_remove("PGPASSWORD")
        .output()
        .map_err(|e| format!("run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

// Not every test binary that includes this module uses it.
#[allow(unused_imports)]
pub use sluice_testkit::postgres::PrivatePostgres;

/// `postgres://user:password@address/database`, user and password percent-encoded.
pub fn postgres_url(user: &str, password: &str, address: &str, database: &str) -> String {
    format!("postgres://{}:{}@{address}/{database}", percent_encode(user), percent_encode(password))
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// PgBouncer
// ---------------------------------------------------------------------------------------

/// The real `pgbouncer`, started as the compose `pgbouncer` service starts it: its
/// entrypoint script writes the auth file from the service's environment and execs
/// PgBouncer on the generated ini. Rewritten: the container paths (into a temp dir), the
/// listen address and port (loopback, a free port), the `[databases]` entry (served under
/// the fresh database's name, pointing at it on the local PostgreSQL) and, as root, `user =
/// postgres` (PgBouncer refuses to run as root). Killed on Drop.
#[derive(Debug)]
pub struct Bouncer {
    port: u16,
    url: String,
    script: Vec<String>,
    env: Env,
    log: PathBuf,
    process: Option<Service>,
    dir: TempDir,
}

impl Bouncer {
    pub fn start(compose: &Compose, database: &Database) -> Bouncer {
        let vars = Env::from([("POSTGRES_PASSWORD".to_string(), database.password().to_string())]);
        let spec = compose.service("pgbouncer", &vars).unwrap_or_else(|e| panic!("compose: {e}"));
        for (what, value) in [("user", database.user()), ("password", database.password())] {
            assert!(
                spec.environment.values().any(|v| v == value),
                "the pgbouncer service's environment does not carry the metadata {what}: {:?}",
                spec.environment.keys()
            );
        }
        let (container_ini, host_ini) = spec
            .mounts
            .iter()
            .find(|(target, _)| target.ends_with("pgbouncer.ini"))
            .expect("the pgbouncer service mounts a pgbouncer.ini");
        let generated = read(host_ini);
        let container_auth = ini_value(&generated, "auth_file").expect("auth_file in pgbouncer.ini");

        let dir = tempfile::Builder::new().prefix("sluice-pgbouncer-").tempdir().expect("temp dir");
        let (ini, auth) = (dir.path().join("pgbouncer.ini"), dir.path().join("userlist.txt"));
        let port = free_port();
        fs::write(&ini, local_ini(&generated, port, &auth, database.name(), &database.address()))
            .expect("write pgbouncer.ini");

        let mut script = spec.entrypoint.clone();
        assert!(script.len() >= 2, "pgbouncer entrypoint is not `shell flags script`: {script:?}");
        let body = script.pop().expect("entrypoint script");
        assert!(
            body.contains(&container_auth) && body.contains(container_ini.as_str()),
            "the entrypoint script does not use {container_auth} and {container_ini}:\n{body}"
        );
        script.push(
            body.replace(&container_auth, &auth.to_string_lossy())
                .replace(container_ini.as_str(), &ini.to_string_lossy()),
        );

        let url = postgres_url(database.user(), database.password(), &format!("127.0.0.1:{port}"), database.name());
        let log = dir.path().join("pgbouncer.log");
        let mut bouncer = Bouncer { port, url, script, env: spec.environment, log, process: None, dir };
        bouncer.spawn();
        bouncer
    }

    /// `postgres://user:password@127.0.0.1:port/database`, as `SLUICE_DATABASE_URL`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, what `pgbouncer:6432` becomes.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as a crashed container: clients lose their connections mid-transaction.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Kills it (if running) and starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Service::pid)
    }

    /// A setting of the `[pgbouncer]` section it runs with (`default_pool_size`).
    pub fn setting(&self, key: &str) -> Option<String> {
        ini_value(&read(&self.dir.path().join("pgbouncer.ini")), key)
    }

    /// The end of PgBouncer's log (stderr), across restarts.
    pub fn log_tail(&self) -> String {
        tail(&self.log, TAIL_LINES)
    }

    fn spawn(&mut self) {
        let mut process = Service::spawn("pgbouncer", &self.script[0], &self.script[1..], &self.env, &self.log);
        process.wait_for_port(self.port, START_LIMIT);
        self.process = Some(process);
    }
}

/// The generated ini adapted to this machine (see [`Bouncer`]); panics when a setting to
/// adapt is missing, so a changed generator cannot silently test something else.
fn local_ini(generated: &str, port: u16, auth_file: &Path, database: &str, server: &str) -> String {
    let (mut section, mut out, mut adapted) = (String::new(), String::new(), Vec::new());
    for line in generated.lines() {
        let trimmed = line.trim();
        let key = trimmed.split('=').next().unwrap_or_default().trim();
        let replaced = if trimmed.starts_with('[') {
            section = trimmed.to_string();
            let user = if section == "[pgbouncer]" && is_root() { "\nuser = postgres" } else { "" };
            format!("{line}{user}")
        } else if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            line.to_string()
        } else {
            match (section.as_str(), key) {
                ("[databases]", _) => {
                    let (_, params) = line.split_once('=').expect("a `name = params` database entry");
                    let params: Vec<String> = params
                        .split_whitespace()
                        .map(|p| match p.split_once('=') {
                            Some(("host", _)) => format!("host={}", server.split(':').next().expect("host")),
                            Some(("port", _)) => {
                                format!("port={}", server.rsplit(':').next().expect("port"))
                            }
                            Some(("dbname", _)) => format!("dbname={database}"),
                            _ => p.to_string(),
                        })
                        .collect();
                    format!("{database} = {}", params.join(" "))
                }
                ("[pgbouncer]", "listen_addr") => "listen_addr = 127.0.0.1".to_string(),
                ("[pgbouncer]", "listen_port") => format!("listen_port = {port}"),
                ("[pgbouncer]", "auth_file") => format!("auth_file = {}", auth_file.display()),
                _ => line.to_string(),
            }
        };
        if replaced != line && !trimmed.starts_with('[') {
            adapted.push(if section == "[databases]" { "database" } else { key });
        }
        out.push_str(&replaced);
        out.push('\n');
    }
    for key in ["database", "listen_addr", "listen_port", "auth_file"] {
        assert!(adapted.contains(&key), "pgbouncer.ini has no {key} to adapt:\n{generated}");
    }
    assert_eq!(adapted.iter().filter(|k| **k == "database").count(), 1, "one database entry expected:\n{generated}");
    out
}

fn ini_value(ini: &str, key: &str) -> Option<String> {
    ini.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

// ---------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------

/// What a Redis keeps across a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// As `generated/redis/redis.conf` says: the append-only file (fsync every second).
    AsGenerated,
    /// Nothing on disk (`appendonly no`, `save ""`): a restart starts empty.
    Off,
}

/// The real `redis-server`, started with the compose `redis` service's command (the
/// generated `redis.conf`), with only the port, bind address, data directory, pid file,
/// log file and daemonizing overridden on the command line. Killed on Drop; the data
/// directory lives until then, so a restart finds what the append-only file kept.
#[derive(Debug)]
pub struct Redis {
    port: u16,
    program: PathBuf,
    args: Vec<String>,
    persistence: Persistence,
    process: Option<Service>,
    dir: TempDir,
}

impl Redis {
    /// With the generated persistence (the append-only file).
    pub fn start(compose: &Compose) -> Redis {
        Redis::start_with(compose, Persistence::AsGenerated)
    }

    pub fn start_with(compose: &Compose, persistence: Persistence) -> Redis {
        let spec = compose.service("redis", &Env::new()).unwrap_or_else(|e| panic!("compose: {e}"));
        let command = spec.localize(&spec.command);
        assert!(!command.is_empty(), "the redis service has no command");
        let program = tool(&command[0]);
        let dir = tempfile::Builder::new().prefix("sluice-redis-").tempdir().expect("temp dir");
        let port = free_port();
        let mut args = command[1..].to_vec();
        let data = dir.path().to_string_lossy().into_owned();
        let pidfile = dir.path().join("redis.pid").to_string_lossy().into_owned();
        for (key, value) in [
            ("--port", port.to_string()),
            ("--bind", "127.0.0.1".to_string()),
            ("--dir", data),
            ("--daemonize", "no".to_string()),
            ("--pidfile", pidfile),
            ("--logfile", String::new()),
        ] {
            args.extend([key.to_string(), value]);
        }
        let mut redis = Redis { port, program, args, persistence, process: None, dir };
        redis.spawn();
        redis
    }

    /// `redis://127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: u32) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`, what `redis:6379` becomes.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL: what the last second of writes survives depends on the persistence.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Kills it (if running) and starts it again on the same port and data directory.
    pub fn restart(&mut self) {
        self.restart_with(self.persistence);
    }

    /// As [`Redis::restart`], switching persistence: `Off` after `AsGenerated` starts empty
    /// (the append-only file is not read), `AsGenerated` loads what the file kept.
    pub fn restart_with(&mut self, persistence: Persistence) {
        self.kill();
        self.persistence = persistence;
        self.spawn();
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Service::pid)
    }

    /// The end of Redis's log, across restarts.
    pub fn log_tail(&self) -> String {
        tail(&self.dir.path().join("redis.log"), TAIL_LINES)
    }

    fn spawn(&mut self) {
        let mut args = self.args.clone();
        if self.persistence == Persistence::Off {
            args.extend(["--appendonly", "no", "--save", ""].map(String::from));
        }
        let log = self.dir.path().join("redis.log");
        let mut process = Service::spawn("redis-server", &self.program, &args, &Env::new(), &log);
        process.wait_for_port(self.port, START_LIMIT);
        // Listening is not ready: while it loads the append-only file Redis answers -LOADING.
        let deadline = Instant::now() + START_LIMIT;
        while redis_ping(self.port).as_deref() != Some("+PONG") {
            if Instant::now() > deadline {
                panic!("redis-server does not answer PING after {START_LIMIT:?}:\n{}", process.log_tail(TAIL_LINES));
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.process = Some(process);
    }
}

/// The first line of Redis's reply to PING.
fn redis_ping(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"PING\r\n").ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    Some(line.trim_end().to_string())
}

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

/// A process the test started, in its own process group, its stdout and stderr appended to
/// a log file. Killed (with its whole group) on Drop.
#[derive(Debug)]
pub struct Service {
    name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
    group_killed: bool,
}

impl Service {
    /// Starts `program args` with exactly `env` plus `PATH` (nothing else of the test's
    /// environment leaks in, as in a container).
    pub fn spawn(name: &str, program: impl AsRef<OsStr>, args: &[impl AsRef<OsStr>], env: &Env, log: &Path) -> Service {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let stderr = file.try_clone().expect("clone the log file handle");
        let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", std::env::var("PATH").unwrap_or_default());
        let mut cmd = Command::new(program.as_ref());
        cmd.args(args)
            .env_clear()
            .env("PATH", path)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
        Service { name: name.to_string(), child, log: log.to_path_buf(), exited: None, group_killed: false }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Its exit status, if it has exited.
    pub fn status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().unwrap_or_else(|e| panic!("wait for {}: {e}", self.name));
        }
        self.exited
    }

    /// Waits up to `limit` for it to exit by itself.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.status() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL to its whole process group (the process and whatever it started, as a
    /// container's processes die with it), then reaps it. Idempotent.
    pub fn kill(&mut self) {
        if !self.group_killed {
            // The group id cannot be given to another process while any member lives, and
            // pids are not reused within moments, so this cannot hit an unrelated process.
            signal("KILL", &format!("-{}", self.pid()));
            self.group_killed = true;
        }
        if self.status().is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    /// SIGTERM to the process only (as `docker stop` signals a container's main process),
    /// then SIGKILL to the group: at once when the process exits within `grace` (what it
    /// left behind dies with the container), after `grace` otherwise. Returns how it
    /// ended: `None` when it had to be killed.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.status().is_none() {
            signal("TERM", &self.pid().to_string());
        }
        let status = self.wait(grace);
        self.kill();
        status
    }

    /// Waits until something accepts connections on `127.0.0.1:port`; panics with the log
    /// tail if the process exits first or `limit` passes.
    pub fn wait_for_port(&mut self, port: u16, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.status() {
                panic!("{} exited ({status}) before listening on {port}:\n{}", self.name, self.log_tail(TAIL_LINES));
            }
            if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!("{} does not listen on {port} after {limit:?}:\n{}", self.name, self.log_tail(TAIL_LINES));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `kill -s <signal> -- <target>`: `libc` is not a dependency and unsafe code is forbidden.
fn signal(signal: &str, target: &str) {
    let _ =
        Command::new("kill").args(["-s", signal, "--", target]).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/// A port nothing listens on now (bound to port 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a free port").port()
}

/// A tool by name, found on PATH or in the sbin directories (pgbouncer is in /usr/sbin).
pub fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` not found: {INSTALL_HINT}"))
}

use sluice_testkit::process::is_root;

/// The last `lines` lines of a file (which may not exist yet).
fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
