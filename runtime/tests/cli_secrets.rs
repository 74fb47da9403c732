//! The secrets commands (`connections`, `variables`, `users`, `fernet`, `config`) through
//! their library entry points: the real clap definitions parse the arguments, the command
//! runs against an in-memory store, and the test reads what it would print. Usage errors
//! are clap's (exit 2 in the binary); failures are one sentence (exit 1).

mod support;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use serde_json::Value;
use sluice_runtime::cli::Output;
use sluice_runtime::cli::config::{self, ConfigCommand};
use sluice_runtime::cli::connections::{self, ConnectionsCommand};
use sluice_runtime::cli::fernet::{self, FernetCommand};
use sluice_runtime::cli::users::{self, UsersCommand};
use sluice_runtime::cli::variables::{self, VariablesCommand};
use sluice_runtime::crypto::Crypto;
use sluice_runtime::settings::Settings;
use sluice_runtime::store::Store;
use std::collections::HashMap;
use support::*;

/// The same shape as `sluice`'s own command line, for the commands under test.
#[derive(Parser, Debug)]
#[command(name = "sluice")]
struct Cli {
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Connections {
        #[command(subcommand)]
        command: ConnectionsCommand,
    },
    Variables {
        #[command(subcommand)]
        command: VariablesCommand,
    },
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    Fernet {
        #[command(subcommand)]
        command: FernetCommand,
    },
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("sluice").chain(args.iter().copied()))
}

/// The kind of usage error `args` make (the binary exits 2 with it).
fn usage_error(args: &[&str]) -> ErrorKind {
    match parse(args) {
        Ok(cli) => panic!("`{}` should be a usage error, parsed as {cli:?}", args.join(" ")),
        Err(e) => e.kind(),
    }
}

/// A user's session: one store, one key list, one environment.
struct Session {
    store: Store,
    crypto: Crypto,
    settings: Settings,
    env: HashMap<String, String>,
}

impl Session {
    async fn new(crypto: Crypto) -> Session {
        let settings = Settings::from_lookup(registry_with_connections(&[]), &|name| match name {
            "SLUICE_DATABASE_URL" => Some("postgres://mlsp_user:db-hunter2@pgbouncer:6432/airflow".into()),
            "SLUICE_HOME" => Some("/data".into()),
            "SLUICE_WEBSERVER_PORT" => Some("8080".into()),
            _ => None,
        });
        Session { store: Store::in_memory().await.expect("store"), crypto, settings, env: HashMap::new() }
    }

    async fn keyed() -> Session {
        Session::new(Crypto::from_env_value(Some(&Crypto::generate_key())).expect("valid key")).await
    }

    /// Runs `sluice <args>`: what it prints, or its error sentence.
    async fn sluice(&self, args: &[&str]) -> Result<String, String> {
        let cli = parse(args).unwrap_or_else(|e| panic!("`{}` should parse: {e}", args.join(" ")));
        let output = cli.output;
        let result = match cli.command {
            Command::Connections { command } => connections::run(&self.store, &self.crypto, command, output).await,
            Command::Variables { command } => variables::run(&self.store, &self.crypto, command, output).await,
            Command::Users { command } => users::run(&self.store, command, output).await,
            Command::Fernet { command: FernetCommand::Generate } => Ok(fernet::generate()),
            Command::Fernet { command: FernetCommand::Rotate } => {
                fernet::rotate(&self.store, &self.crypto, "SLUICE_FERNET_KEY").await
            }
            Command::Config { command } => {
                let env = |name: &str| self.env.get(name).cloned();
                Ok(config::run(registry(&[], &[]), &self.settings, &env, command, output))
            }
        };
        result.map_err(|e| e.to_string())
    }

    async fn ok(&self, args: &[&str]) -> String {
        self.sluice(args).await.unwrap_or_else(|e| panic!("`{}` failed: {e}", args.join(" ")))
    }

    async fn fails(&self, args: &[&str]) -> String {
        match self.sluice(args).await {
            Ok(out) => panic!("`{}` should fail, printed:\n{out}", args.join(" ")),
            Err(e) => {
                assert!(!e.contains('\n'), "an error is one line: {e}");
                e
            }
        }
    }
}

const PASSWORD: &str = "s3cr3t-Pa55";

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

#[tokio::test]
async fn connections_add_get_list_delete() {
    let s = Session::keyed().await;
    let out = s
        .ok(&[
            "connections",
            "add",
            "my_conn",
            "--conn-type",
            "postgres",
            "--conn-host",
            "localhost",
            "--conn-port",
            "5432",
            "--conn-login",
            "user",
            "--conn-password",
            PASSWORD,
            "--conn-schema",
            "mlsp",
            "--conn-extra",
            r#"{"sslmode": "require", "api_token": "tok-123"}"#,
            "--conn-description",
            "Seed example",
        ])
        .await;
    assert_eq!(
        out,
        "connection `my_conn` added: postgres://user:***@localhost:5432/mlsp?api_token=***&sslmode=require\n"
    );
    s.ok(&["connections", "add", "api", "--conn-uri", "https://svc:pw-in-uri@backend:8000?token=t0k"]).await;
    s.ok(&["connections", "add", "cache", "--conn-json", r#"{"conn_type": "redis", "host": "redis", "port": 6379}"#])
        .await;

    let get = s.ok(&["connections", "get", "my_conn"]).await;
    assert!(!get.contains(PASSWORD) && !get.contains("tok-123"), "no secret is printed:\n{get}");
    for expected in ["localhost", "5432", "mlsp", "require", "Seed example", "***", "runtime"] {
        assert!(get.contains(expected), "`{expected}` is shown:\n{get}");
    }
    let got = json(&s.ok(&["connections", "get", "my_conn", "-o", "json"]).await);
    assert_eq!(got["database"], "mlsp", "Airflow's schema of a postgres connection is its database");
    assert_eq!(got["password"], "***");
    assert_eq!(got["extra"]["api_token"], "***");
    assert_eq!(got["is_encrypted"], true);
    let api = s.ok(&["connections", "get", "api"]).await;
    assert!(!api.contains("pw-in-uri") && !api.contains("t0k"), "{api}");

    let list = s.ok(&["connections", "list"]).await;
    assert!(list.starts_with("conn_id "), "a table:\n{list}");
    assert_eq!(list.lines().count(), 5, "header, rule, three rows:\n{list}");
    assert!(!list.contains(PASSWORD));
    let rows = json(&s.ok(&["connections", "list", "--output", "json"]).await);
    let ids: Vec<&str> = rows.as_array().expect("array").iter().map(|r| r["conn_id"].as_str().unwrap_or("")).collect();
    assert_eq!(ids, ["api", "cache", "my_conn"]);

    assert_eq!(s.ok(&["connections", "delete", "cache"]).await, "connection `cache` deleted\n");
    assert_eq!(s.fails(&["connections", "get", "cache"]).await, "connection `cache` not found");
    assert_eq!(s.fails(&["connections", "delete", "cache"]).await, "connection `cache` not found");
    let again = s.fails(&["connections", "add", "api", "--conn-uri", "http://x"]).await;
    assert_eq!(again, "connection `api` already exists");
}

#[tokio::test]
async fn connections_bad_input() {
    assert_eq!(
        usage_error(&["connections", "add", "c", "--conn-uri", "postgres://h", "--conn-host", "h"]),
        ErrorKind::ArgumentConflict
    );
    assert_eq!(
        usage_error(&["connections", "add", "c", "--conn-uri", "postgres://h", "--conn-json", "{}"]),
        ErrorKind::ArgumentConflict
    );
    assert_eq!(usage_error(&["connections", "add", "c", "--conn-host", "h"]), ErrorKind::MissingRequiredArgument);
    assert_eq!(
        usage_error(&["connections", "add", "c", "--conn-type", "http", "--conn-port", "http"]),
        ErrorKind::ValueValidation
    );
    assert_eq!(usage_error(&["connections", "add"]), ErrorKind::MissingRequiredArgument);
    assert_eq!(usage_error(&["connections", "export", "-", "--format", "xml"]), ErrorKind::InvalidValue);
    assert_eq!(usage_error(&["connections", "frobnicate"]), ErrorKind::InvalidSubcommand);
    assert_eq!(usage_error(&["connections", "--help"]), ErrorKind::DisplayHelp);

    let s = Session::keyed().await;
    let secret_extra = r#"{"token": "leak-me""#;
    let err = s.fails(&["connections", "add", "c", "--conn-type", "http", "--conn-extra", secret_extra]).await;
    assert_eq!(err, "--conn-extra of connection `c` is not a JSON object");
    let err = s.fails(&["connections", "add", "c", "--conn-json", r#"["leak-me"]"#]).await;
    assert_eq!(err, "--conn-json of connection `c` is not a JSON object");
    let err = s.fails(&["connections", "add", "c", "--conn-uri", "leak-me"]).await;
    assert!(err.starts_with("connection `c` has an invalid `uri`") && !err.contains("leak-me"), "{err}");
    let err = s.fails(&["connections", "add", "c", "--conn-uri", "postgres://u:p/w@h:5432/db"]).await;
    assert!(err.contains("invalid `port`") && !err.contains("p/w"), "{err}");
    let err = s.fails(&["connections", "add", "bad id", "--conn-type", "http"]).await;
    assert!(err.contains("not a valid connection id"), "{err}");
    let err = s.fails(&["connections", "import", "/nonexistent/conns.json"]).await;
    assert!(err.starts_with("cannot read /nonexistent/conns.json"), "{err}");
    let err = s.fails(&["connections", "import", "conns.txt"]).await;
    assert!(err.starts_with("cannot tell the format of `conns.txt`"), "{err}");

    // Without a key: a secret is refused with the recipe for a key; the rest works.
    let s = Session::new(Crypto::from_env_value(None).expect("no key")).await;
    let err = s.fails(&["connections", "add", "c", "--conn-type", "http", "--conn-password", PASSWORD]).await;
    assert!(err.contains("no Fernet key is configured") && err.contains("openssl rand -base64 32"), "{err}");
    assert!(!err.contains(PASSWORD));
    s.ok(&["connections", "add", "c", "--conn-type", "http", "--conn-host", "backend"]).await;
    assert!(s.ok(&["connections", "list"]).await.contains("backend"));
    assert!(s.ok(&["connections", "get", "c"]).await.contains("backend"));
}

#[tokio::test]
async fn connections_export_and_import_round_trip_in_every_format() {
    let s = Session::keyed().await;
    s.ok(&["connections", "add", "db", "--conn-uri", &format!("postgres://u:{PASSWORD}@db:5432/mlsp?sslmode=require")])
        .await;
    s.ok(&["connections", "add", "api", "--conn-type", "http", "--conn-host", "backend", "--conn-schema", "https"])
        .await;
    let before = s.store.connections(&s.crypto).await.expect("read");
    let dir = tempfile::tempdir().expect("temp dir");

    for ext in ["json", "yaml", "env"] {
        let path = dir.path().join(format!("conns.{ext}"));
        let path = path.to_str().expect("utf-8 path");
        assert_eq!(
            s.ok(&["connections", "export", path]).await,
            format!(
                "exported 2 connection(s) to {path} ({}; it holds their secrets)\n",
                match ext {
                    "json" => "JSON",
                    "yaml" => "YAML",
                    _ => "env",
                }
            )
        );
        let text = std::fs::read_to_string(path).expect("written");
        assert!(text.contains(PASSWORD), "the export is the explicit way out for secrets");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "only the owner reads an export");
        }

        let fresh = Session::keyed().await;
        let out = fresh.ok(&["connections", "import", path]).await;
        assert_eq!(out, format!("imported 2 connection(s) from {path}; added: api, db\n"));
        assert_eq!(fresh.store.connections(&fresh.crypto).await.expect("read"), before, "{ext} round trip");
        let err = fresh.fails(&["connections", "import", path]).await;
        assert!(err.starts_with("2 connections already exist: `api`, `db`; nothing was imported"), "{err}");
        let out = fresh.ok(&["connections", "import", path, "--overwrite"]).await;
        assert_eq!(out, format!("imported 2 connection(s) from {path}; replaced: api, db\n"));
    }

    let stdout = json(&s.ok(&["connections", "export", "-"]).await);
    assert_eq!(stdout["db"]["password"], PASSWORD);
    assert!(s.ok(&["connections", "export", "-", "--format", "env"]).await.starts_with("api=http://backend/https\n"));
}

#[tokio::test]
async fn variables_set_get_list_export_import_delete() {
    let s = Session::keyed().await;
    assert_eq!(
        s.ok(&["variables", "set", "region", "eu-west", "--description", "Where we run"]).await,
        "variable `region` set\n"
    );
    s.ok(&["variables", "set", "limits", r#"{"rows": 500}"#]).await;
    s.ok(&["variables", "set", "mlflow_token", "tok-secret"]).await;
    s.ok(&["variables", "set", "flag", "hidden-value", "--secret"]).await;

    assert_eq!(s.ok(&["variables", "get", "region"]).await, "eu-west\n");
    assert_eq!(s.ok(&["variables", "get", "mlflow_token"]).await, "tok-secret\n", "asked for by name: printed");
    assert_eq!(s.ok(&["variables", "get", "nope", "--default", "dflt"]).await, "dflt\n");
    assert_eq!(s.fails(&["variables", "get", "nope"]).await, "variable `nope` not found");

    let list = s.ok(&["variables", "list"]).await;
    assert!(!list.contains("tok-secret") && !list.contains("hidden-value"), "secret values masked:\n{list}");
    assert!(list.contains("eu-west") && list.contains("Where we run") && list.contains("***"), "{list}");
    let rows = json(&s.ok(&["variables", "list", "-o", "json"]).await);
    let flag = rows.as_array().expect("array").iter().find(|r| r["key"] == "flag").expect("listed").clone();
    assert_eq!((flag["value"].as_str(), flag["secret"].as_bool()), (Some("***"), Some(true)));

    let exported = json(&s.ok(&["variables", "export", "-"]).await);
    assert_eq!(exported["limits"]["rows"], 500, "a JSON value is exported as JSON, as Airflow does");
    assert_eq!(exported["flag"], "hidden-value");

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("vars.json");
    let path = path.to_str().expect("utf-8 path");
    s.ok(&["variables", "export", path]).await;
    let fresh = Session::keyed().await;
    fresh.ok(&["variables", "set", "region", "us-east"]).await;
    let err = fresh.fails(&["variables", "import", path, "-a", "fail"]).await;
    assert!(err.starts_with("variable `region` already exists; nothing was imported"), "{err}");
    let out = fresh.ok(&["variables", "import", path, "--action-on-existing-key", "skip"]).await;
    assert_eq!(out, format!("imported 3 variable(s) from {path}: 3 created, 0 overwritten, 1 skipped (region)\n"));
    assert_eq!(fresh.ok(&["variables", "get", "region"]).await, "us-east\n");
    assert_eq!(fresh.ok(&["variables", "get", "limits"]).await, "{\"rows\":500}\n");
    assert_eq!(fresh.ok(&["variables", "get", "mlflow_token"]).await, "tok-secret\n");
    let out = fresh.ok(&["variables", "import", path]).await;
    assert_eq!(out, format!("imported 4 variable(s) from {path}: 0 created, 4 overwritten\n"));
    assert_eq!(fresh.ok(&["variables", "get", "region"]).await, "eu-west\n");

    assert_eq!(s.ok(&["variables", "delete", "region"]).await, "variable `region` deleted\n");
    assert_eq!(s.fails(&["variables", "delete", "region"]).await, "variable `region` not found");
}

#[tokio::test]
async fn variables_bad_input() {
    assert_eq!(usage_error(&["variables", "set", "only_key"]), ErrorKind::MissingRequiredArgument);
    assert_eq!(usage_error(&["variables", "import", "f.json", "-a", "merge"]), ErrorKind::InvalidValue);

    let s = Session::keyed().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("vars.json");
    std::fs::write(&path, r#"{"db_password": "leak-me""#).expect("write");
    let path = path.to_str().expect("utf-8 path");
    let err = s.fails(&["variables", "import", path]).await;
    assert!(err.contains("is not valid JSON") && !err.contains("leak-me"), "{err}");
    std::fs::write(path, r#"["a"]"#).expect("write");
    assert!(s.fails(&["variables", "import", path]).await.contains("must be one JSON object"));

    let s = Session::new(Crypto::from_env_value(None).expect("no key")).await;
    let err = s.fails(&["variables", "set", "x", "leak-me", "--secret"]).await;
    assert!(err.starts_with("secret variable `x` cannot be stored: no Fernet key"), "{err}");
    assert!(!err.contains("leak-me"));
    s.ok(&["variables", "set", "region", "eu"]).await;
    assert!(s.ok(&["variables", "list"]).await.contains("eu"));
}

#[tokio::test]
async fn users_create_list_reset_delete() {
    let s = Session::keyed().await;
    let out = s
        .ok(&[
            "users",
            "create",
            "--username",
            "ada",
            "--email",
            "ada@example.com",
            "--role",
            "Op",
            "--password",
            PASSWORD,
            "--firstname",
            "Ada",
            "--lastname",
            "Lovelace",
        ])
        .await;
    assert_eq!(out, "user `ada` created with role Op\n");
    assert!(s.store.check_password("ada", PASSWORD).await.expect("check"));

    let out =
        s.ok(&["users", "create", "-u", "bob", "-e", "bob@example.com", "-r", "Viewer", "--random-password"]).await;
    let generated = out.rsplit(' ').next().expect("password at the end").trim();
    assert!(out.starts_with("user `bob` created with role Viewer; password (shown only now): "), "{out}");
    assert_eq!(generated.len(), 20);
    assert!(s.store.check_password("bob", generated).await.expect("check"));

    let err = s.fails(&["users", "create", "-u", "ada", "-e", "a@x", "-r", "Admin", "-p", "another-pw"]).await;
    assert_eq!(err, "user `ada` already exists");
    let err = s.fails(&["users", "create", "-u", "eve", "-e", "e@x", "-r", "Admin", "-p", ""]).await;
    assert!(err.starts_with("the password cannot be empty"), "{err}");

    let list = s.ok(&["users", "list"]).await;
    assert!(list.contains("Lovelace") && list.contains("Viewer") && !list.contains(PASSWORD), "{list}");
    let rows = json(&s.ok(&["users", "list", "-o", "json"]).await);
    assert_eq!(rows[0]["username"], "ada");
    assert_eq!(rows[0]["first_name"], "Ada");

    assert_eq!(
        s.ok(&["users", "reset-password", "-u", "ada", "-p", "new-pass"]).await,
        "password of user `ada` reset\n"
    );
    assert!(s.store.check_password("ada", "new-pass").await.expect("check"));
    let out = s.ok(&["users", "reset-password", "--username", "ada", "--use-random-password"]).await;
    let generated = out.rsplit(' ').next().expect("password at the end").trim();
    assert!(s.store.check_password("ada", generated).await.expect("check"));
    assert!(!s.store.check_password("ada", "new-pass").await.expect("check"));
    assert_eq!(
        s.fails(&["users", "reset-password", "-u", "nobody", "-p", "nobody-pw"]).await,
        "user `nobody` not found"
    );
    let err = s.fails(&["users", "reset-password", "-u", "ada", "-p", "1234567"]).await;
    assert!(err.starts_with("the password is too short: it needs at least 8 characters"), "{err}");
    assert!(s.store.check_password("ada", generated).await.expect("check"), "the password did not change");

    assert_eq!(s.ok(&["users", "delete", "--username", "bob"]).await, "user `bob` deleted\n");
    assert_eq!(s.fails(&["users", "delete", "-u", "bob"]).await, "user `bob` not found");
}

#[tokio::test]
async fn users_bad_input() {
    let base = ["users", "create", "-u", "x", "-e", "x@example.com"];
    let with = |more: &[&'static str]| -> Vec<&'static str> { base.iter().chain(more).copied().collect() };
    assert_eq!(usage_error(&with(&["-r", "Root", "-p", "x"])), ErrorKind::InvalidValue);
    assert_eq!(usage_error(&with(&["-r", "Admin"])), ErrorKind::MissingRequiredArgument);
    assert_eq!(usage_error(&with(&["-r", "Admin", "-p", "x", "--random-password"])), ErrorKind::ArgumentConflict);
    assert_eq!(
        usage_error(&["users", "create", "-u", "x", "-r", "Admin", "-p", "x"]),
        ErrorKind::MissingRequiredArgument
    );
    assert_eq!(usage_error(&["users", "delete"]), ErrorKind::MissingRequiredArgument);
    assert_eq!(usage_error(&["users", "reset-password", "-u", "x"]), ErrorKind::MissingRequiredArgument);
}

#[tokio::test]
async fn fernet_generate_and_rotate() {
    let s = Session::keyed().await;
    let key = s.ok(&["fernet", "generate"]).await;
    assert_eq!(key.len(), 45, "44 characters and a newline: {key:?}");
    let key = key.trim_end();
    assert!(Crypto::from_env_value(Some(key)).is_ok(), "a usable key");
    assert_ne!(key, s.ok(&["fernet", "generate"]).await.trim_end());

    let (old, new) = (Crypto::generate_key(), Crypto::generate_key());
    let mut s = Session::new(Crypto::from_env_value(Some(&old)).expect("valid")).await;
    s.ok(&["connections", "add", "db", "--conn-uri", &format!("postgres://u:{PASSWORD}@db/mlsp")]).await;
    s.ok(&["variables", "set", "api_key", "k"]).await;
    s.ok(&["variables", "set", "region", "eu"]).await;
    s.crypto = Crypto::from_env_value(Some(&format!("{new},{old}"))).expect("valid");
    assert_eq!(
        s.ok(&["fernet", "rotate"]).await,
        "re-encrypted 1 connection(s) and 1 variable(s) with the first key in SLUICE_FERNET_KEY; \
         the other 1 key(s) in SLUICE_FERNET_KEY can now be removed\n"
    );
    s.crypto = Crypto::from_env_value(Some(&new)).expect("valid");
    assert!(s.ok(&["connections", "export", "-"]).await.contains(PASSWORD), "the new key alone opens everything");
    assert_eq!(s.ok(&["variables", "get", "api_key"]).await, "k\n");

    s.crypto = Crypto::from_env_value(None).expect("no key");
    let err = s.fails(&["fernet", "rotate"]).await;
    assert!(err.contains("no Fernet key is configured"), "{err}");
    assert_eq!(usage_error(&["fernet"]), ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand);
}

#[tokio::test]
async fn config_list_shows_settings_but_no_secret() {
    let mut s = Session::keyed().await;
    let (k1, k2) = (Crypto::generate_key(), Crypto::generate_key());
    for (name, value) in [
        ("SLUICE_MODE", "distributed".to_string()),
        ("SLUICE_DATABASE_URL", "set".into()),
        ("SLUICE_BROKER_URL", "redis://:redis-hunter2@redis:6379/1".into()),
        ("SLUICE_FERNET_KEY", format!("{k1},{k2}")),
        ("SLUICE_SECRET_KEY", "web-hunter2".into()),
        ("SLUICE_ADMIN_PASSWORD", "admin-hunter2".into()),
    ] {
        s.env.insert(name.into(), value);
    }
    let table = s.ok(&["config", "list"]).await;
    for secret in ["hunter2", k1.as_str(), k2.as_str()] {
        assert!(!table.contains(secret), "`{secret}` must not be shown:\n{table}");
    }
    let rows = json(&s.ok(&["config", "list", "-o", "json"]).await);
    let value = |setting: &str| -> Value {
        rows.as_array()
            .expect("array")
            .iter()
            .find(|r| r["setting"] == setting)
            .map(|r| r["value"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(value("mode"), "distributed");
    assert_eq!(value("database_url"), "postgres://mlsp_user:***@pgbouncer:6432/airflow");
    assert_eq!(value("broker_url"), "redis://:***@redis:6379/1");
    assert_eq!(value("rate_limit_url"), Value::Null, "unset URLs are left out");
    assert_eq!(value("fernet_key_env"), "SLUICE_FERNET_KEY");
    assert_eq!(value("fernet_key"), "set (2 keys, the first encrypts)");
    assert_eq!(value("secret_key"), "set");
    assert_eq!(value("admin_password"), "set");
    assert_eq!(value("home"), "/data");
    assert_eq!(value("webserver_port"), 8080);
    assert_eq!(value("parallelism"), 32);
    assert_eq!(value("queues"), "default");

    s.env.insert("SLUICE_FERNET_KEY".into(), "not-a-key".into());
    let rows = json(&s.ok(&["config", "list", "-o", "json"]).await);
    let fernet = rows.as_array().expect("array").iter().find(|r| r["setting"] == "fernet_key").expect("row").clone();
    let text = fernet["value"].as_str().expect("text");
    assert!(
        text.starts_with("invalid: the key in SLUICE_FERNET_KEY is not a Fernet key") && !text.contains("not-a-key")
    );
    s.env.clear();
    let rows = json(&s.ok(&["config", "list", "-o", "json"]).await);
    let fernet = rows.as_array().expect("array").iter().find(|r| r["setting"] == "fernet_key").expect("row").clone();
    assert_eq!(fernet["value"], "not set");
}
