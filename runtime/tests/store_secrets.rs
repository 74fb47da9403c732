//! Secrets in the store, on SQLite and PostgreSQL alike: connections and variables
//! encrypted at rest (checked on the raw tables through a second connection), decrypted
//! on read, refused without a key, rotated onto a new key; the YAML sync; users.

mod support;

use serde_json::{Map, Value, json};
use sluice_runtime::Connection;
use sluice_runtime::crypto::Crypto;
use sluice_runtime::spec::{ConnType, ConnectionSpec};
use sluice_runtime::store::{ConnectionSource, NewUser, OnExisting, StoreError};
use std::collections::HashMap;
use support::*;

const PASSWORD: &str = "p@ss:w/rd?#&= é";
const TOKEN: &str = "t0k3n-very-secret";

fn keyed(keys: &[&str]) -> Crypto {
    Crypto::from_env_value(Some(&keys.join(","))).expect("generated keys are valid")
}

fn no_key() -> Crypto {
    Crypto::from_env_value(None).expect("no key is not an error by itself")
}

fn extra(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("test extra must be an object, got {other}"),
    }
}

fn postgres_conn(id: &str) -> Connection {
    Connection {
        id: id.into(),
        conn_type: "postgres".into(),
        host: Some("db.internal".into()),
        port: Some(5432),
        database: Some("mlsp".into()),
        login: Some("mlsp_user".into()),
        password: Some(PASSWORD.into()),
        extra: extra(json!({"sslmode": "require", "api_token": TOKEN})),
        description: "Main database".into(),
        ..Default::default()
    }
}

fn plain_conn(id: &str) -> Connection {
    Connection {
        id: id.into(),
        conn_type: "http".into(),
        host: Some("mlflow".into()),
        port: Some(5000),
        schema: Some("http".into()),
        extra: extra(json!({"timeout": 30})),
        ..Default::default()
    }
}

/// The raw columns of a table row, read through a connection of its own.
struct Raw {
    pool: sqlx::AnyPool,
}

impl Raw {
    async fn open(url: &str) -> Raw {
        Raw { pool: sqlx::AnyPool::connect(url).await.expect("second connection") }
    }

    async fn connection(&self, id: &str) -> (Option<String>, Option<String>, i64) {
        sqlx::query_as("SELECT password, extra, is_encrypted FROM connections WHERE conn_id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .expect("raw connection row")
    }

    async fn variable(&self, key: &str) -> (String, i64) {
        sqlx::query_as("SELECT val, is_encrypted FROM variables WHERE key = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await
            .expect("raw variable row")
    }
}

fn assert_token(stored: &str, secret: &str) {
    assert!(stored.starts_with("gAAAAA"), "a Fernet token is stored, not `{stored}`");
    assert!(!stored.contains(secret), "the secret is not in the stored text");
}

fn conflict(err: StoreError) -> String {
    match err {
        StoreError::Conflict(text) => text,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn connection_secrets_are_encrypted_at_rest_and_round_trip() {
    for db in &BACKENDS {
        let (store, url, _dir) = store_with_url(db).await;
        let key = Crypto::generate_key();
        let crypto = keyed(&[&key]);
        let conn = postgres_conn("postgres_mlsp");
        store.add_connection(&conn, &crypto).await.expect("add");
        store.add_connection(&plain_conn("mlflow"), &crypto).await.expect("add");

        let raw = Raw::open(&url).await;
        let (password, stored_extra, encrypted) = raw.connection("postgres_mlsp").await;
        assert_eq!(encrypted, 1);
        let password = password.expect("a password is stored");
        assert_token(&password, PASSWORD);
        let stored_extra = stored_extra.expect("an extra is stored");
        assert_token(&stored_extra, TOKEN);
        assert!(!stored_extra.contains("sslmode"), "the whole extra is encrypted, as Airflow does");
        assert_eq!(crypto.decrypt(&password).expect("the same key"), PASSWORD);
        // With a key, even an extra without secrets is encrypted.
        let (_, mlflow_extra, mlflow_encrypted) = raw.connection("mlflow").await;
        assert_eq!(mlflow_encrypted, 1);
        assert_token(&mlflow_extra.expect("extra"), "timeout");

        assert_eq!(store.connection("postgres_mlsp", &crypto).await.expect("read"), conn);
        let all = store.connections(&crypto).await.expect("list");
        assert_eq!(all.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["mlflow", "postgres_mlsp"]);
        assert_eq!(all[0], plain_conn("mlflow"));

        // The listing needs no key and holds no secret.
        let infos = store.connection_infos().await.expect("infos");
        let info = infos.iter().find(|i| i.id == "postgres_mlsp").expect("listed");
        assert!(info.is_encrypted && info.has_password && info.has_extra);
        assert_eq!(info.source, ConnectionSource::Runtime);
        assert_eq!(info.port, Some(5432));
        assert!(!format!("{infos:?}").contains(PASSWORD));

        let err = store.add_connection(&conn, &crypto).await.expect_err("duplicate id");
        assert_eq!(conflict(err), "connection `postgres_mlsp` already exists");
    }
}

#[tokio::test]
async fn wrong_or_missing_key_is_a_clear_error() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        store.add_connection(&postgres_conn("c"), &keyed(&[&Crypto::generate_key()])).await.expect("add");
        store.set_variable("region", "eu-west", true, None, &keyed(&[&Crypto::generate_key()])).await.expect("set");

        let other = keyed(&[&Crypto::generate_key()]);
        let text = store.connection("c", &other).await.expect_err("another key").to_string();
        assert!(text.starts_with("cannot read the password of connection `c`: cannot decrypt"), "{text}");
        assert!(text.contains("SLUICE_FERNET_KEY"), "{text}");
        assert!(!text.contains(PASSWORD));
        let text = store.connections(&no_key()).await.expect_err("no key").to_string();
        assert!(text.contains("no Fernet key is configured"), "{text}");
        assert!(text.contains("openssl rand -base64 32"), "says how to make a key: {text}");
        let text = store.variable("region", &other).await.expect_err("another key").to_string();
        assert!(text.starts_with("cannot read variable `region`: cannot decrypt"), "{text}");

        assert_eq!(store.connection_infos().await.expect("no key needed").len(), 1);
        assert!(matches!(store.connection("missing", &other).await, Err(StoreError::NotFound(_))));
    }
}

#[tokio::test]
async fn without_a_key_secrets_are_refused_and_the_rest_is_plaintext() {
    for db in &BACKENDS {
        let (store, url, _dir) = store_with_url(db).await;
        let err = store.add_connection(&postgres_conn("c"), &no_key()).await.expect_err("a password needs a key");
        let text = conflict(err);
        assert!(text.starts_with("connection `c` cannot be stored: no Fernet key is configured"), "{text}");
        assert!(!text.contains(PASSWORD));
        // A secret-looking extra key needs one too.
        let mut api = plain_conn("api");
        api.extra.insert("token".into(), json!(TOKEN));
        store.add_connection(&api, &no_key()).await.expect_err("a token needs a key");
        let err = store.set_variable("db_password", "x", false, None, &no_key()).await.expect_err("secret key");
        assert!(conflict(err).starts_with("secret variable `db_password` cannot be stored: no Fernet key"));

        // Nothing secret: stored as it is, as Airflow does without a key.
        store.add_connection(&plain_conn("mlflow"), &no_key()).await.expect("nothing to encrypt");
        store.set_variable("region", "eu-west", false, None, &no_key()).await.expect("not secret");
        let raw = Raw::open(&url).await;
        assert_eq!(raw.connection("mlflow").await, (None, Some(r#"{"timeout":30}"#.into()), 0));
        assert_eq!(raw.variable("region").await, ("eu-west".into(), 0));
        assert_eq!(store.connection("mlflow", &no_key()).await.expect("plaintext"), plain_conn("mlflow"));
        assert_eq!(store.variable("region", &no_key()).await.expect("plaintext").as_deref(), Some("eu-west"));

        // The tests-only plaintext mode stores secrets in clear and says so.
        store.add_connection(&postgres_conn("c"), &Crypto::plaintext_for_tests()).await.expect("plaintext mode");
        let (password, _, encrypted) = raw.connection("c").await;
        assert_eq!((password.as_deref(), encrypted), (Some(PASSWORD), 0));
        assert_eq!(store.connection("c", &no_key()).await.expect("not encrypted"), postgres_conn("c"));
    }
}

#[tokio::test]
async fn rotation_moves_every_secret_to_the_first_key() {
    for db in &BACKENDS {
        let (store, url, _dir) = store_with_url(db).await;
        let (old, new) = (Crypto::generate_key(), Crypto::generate_key());
        let before = keyed(&[&old]);
        store.add_connection(&postgres_conn("a"), &before).await.expect("add");
        store.add_connection(&plain_conn("b"), &before).await.expect("add");
        store
            .add_connection(&Connection { id: "c".into(), conn_type: "redis".into(), ..Default::default() }, &before)
            .await
            .expect("nothing to encrypt");
        store.set_variable("api_key", "k-123", false, None, &before).await.expect("secret by name");
        store.set_variable("flag", "on", true, None, &before).await.expect("secret");
        store.set_variable("region", "eu", false, None, &before).await.expect("plain");
        let raw = Raw::open(&url).await;
        let token_before = raw.connection("a").await.0.expect("password");

        let during = keyed(&[&new, &old]);
        let report = store.rotate_secrets(&during).await.expect("rotate");
        assert_eq!((report.connections, report.variables), (2, 2), "only encrypted rows are rotated");

        let after = keyed(&[&new]);
        assert_eq!(store.connection("a", &after).await.expect("new key alone"), postgres_conn("a"));
        assert_eq!(store.connection("b", &after).await.expect("new key alone"), plain_conn("b"));
        assert_eq!(store.variable("api_key", &after).await.expect("read").as_deref(), Some("k-123"));
        assert_eq!(store.variable("flag", &after).await.expect("read").as_deref(), Some("on"));
        assert_eq!(store.variable("region", &after).await.expect("read").as_deref(), Some("eu"));
        assert!(store.connection("a", &before).await.is_err(), "the old key no longer opens it");
        let token_after = raw.connection("a").await.0.expect("password");
        assert_ne!(token_before, token_after);
        assert_token(&token_after, PASSWORD);

        // Without a key there is nothing to rotate with.
        let text = conflict(store.rotate_secrets(&no_key()).await.expect_err("no key"));
        assert!(text.contains("no Fernet key is configured"), "{text}");
    }
}

#[tokio::test]
async fn a_rotation_that_cannot_open_a_token_changes_nothing() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let (a, b, stranger) = (Crypto::generate_key(), Crypto::generate_key(), Crypto::generate_key());
        store.add_connection(&postgres_conn("first"), &keyed(&[&a])).await.expect("add");
        store.add_connection(&postgres_conn("second"), &keyed(&[&stranger])).await.expect("add");
        let text = conflict(store.rotate_secrets(&keyed(&[&b, &a])).await.expect_err("second is unreadable"));
        assert!(text.starts_with("cannot read the password of connection `second`"), "{text}");
        assert!(store.connection("first", &keyed(&[&a])).await.is_ok(), "the transaction rolled back");
    }
}

#[tokio::test]
async fn variables_secrets_are_encrypted_and_masked() {
    for db in &BACKENDS {
        let (store, url, _dir) = store_with_url(db).await;
        let crypto = keyed(&[&Crypto::generate_key()]);
        store.set_variable("region", "eu-west", false, Some("Where we run"), &crypto).await.expect("set");
        store.set_variable("limits", r#"{"rows": 500}"#, false, None, &crypto).await.expect("set");
        store.set_variable("mlflow_token", TOKEN, false, None, &crypto).await.expect("secret by its name");
        store.set_variable("flag", "s3cret-flag", true, None, &crypto).await.expect("secret by request");

        let raw = Raw::open(&url).await;
        assert_eq!(raw.variable("region").await, ("eu-west".into(), 0));
        let (stored, encrypted) = raw.variable("mlflow_token").await;
        assert_eq!(encrypted, 1);
        assert_token(&stored, TOKEN);
        let (stored, encrypted) = raw.variable("flag").await;
        assert_eq!(encrypted, 1);
        assert_token(&stored, "s3cret-flag");

        // Templates see every value; the flag says which ones a log must mask.
        let all = store.variables(&crypto).await.expect("all");
        let map: HashMap<&str, (&str, bool)> =
            all.iter().map(|v| (v.key.as_str(), (v.value.as_str(), v.secret))).collect();
        assert_eq!(map["region"], ("eu-west", false));
        assert_eq!(map["limits"], (r#"{"rows": 500}"#, false));
        assert_eq!(map["mlflow_token"], (TOKEN, true));
        assert_eq!(map["flag"], ("s3cret-flag", true));
        assert!(!format!("{all:?}").contains(TOKEN), "Debug masks secret values");

        // Listings leave secret values out and need no key.
        let infos = store.variable_infos().await.expect("infos");
        let keys: Vec<(&str, Option<&str>, bool)> =
            infos.iter().map(|v| (v.key.as_str(), v.value.as_deref(), v.secret)).collect();
        assert_eq!(
            keys,
            [
                ("flag", None, true),
                ("limits", Some(r#"{"rows": 500}"#), false),
                ("mlflow_token", None, true),
                ("region", Some("eu-west"), false)
            ]
        );
        assert_eq!(infos[3].description, "Where we run");

        // Setting again keeps the description unless given, and a secret stays secret.
        store.set_variable("region", "us-east", false, None, &crypto).await.expect("set");
        store.set_variable("flag", "other", false, None, &crypto).await.expect("set");
        let infos = store.variable_infos().await.expect("infos");
        assert_eq!(infos[3].description, "Where we run");
        assert_eq!(raw.variable("flag").await.1, 1, "a secret variable stays encrypted");
        assert_eq!(store.variable("flag", &crypto).await.expect("read").as_deref(), Some("other"));

        assert_eq!(store.variable("nope", &crypto).await.expect("read"), None);
        store.delete_variable("region").await.expect("delete");
        assert!(matches!(store.delete_variable("region").await, Err(StoreError::NotFound(_))));
        let err = store.set_variable(" ", "x", false, None, &crypto).await.expect_err("blank key");
        assert!(conflict(err).contains("is not a valid variable key"));
    }
}

#[tokio::test]
async fn variable_imports_overwrite_skip_or_fail_as_a_whole() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let crypto = keyed(&[&Crypto::generate_key()]);
        store.set_variable("a", "1", false, Some("kept"), &crypto).await.expect("set");
        let entries = vec![("a".to_string(), "2".to_string()), ("b_secret".to_string(), "3".to_string())];

        let err = store.import_variables(&entries, OnExisting::Fail, &crypto).await.expect_err("a exists");
        assert!(conflict(err).starts_with("variable `a` already exists; nothing was imported"));
        assert_eq!(store.variable("b_secret", &crypto).await.expect("read"), None, "nothing was written");

        let report = store.import_variables(&entries, OnExisting::Skip, &crypto).await.expect("skip");
        assert_eq!((report.created, report.skipped), (vec!["b_secret".to_string()], vec!["a".to_string()]));
        assert_eq!(store.variable("a", &crypto).await.expect("read").as_deref(), Some("1"));

        let report = store.import_variables(&entries, OnExisting::Overwrite, &crypto).await.expect("overwrite");
        assert_eq!(report.overwritten, ["a", "b_secret"]);
        assert_eq!(store.variable("a", &crypto).await.expect("read").as_deref(), Some("2"));
        let infos = store.variable_infos().await.expect("infos");
        assert_eq!(infos[0].description, "kept");
        assert!(infos[1].secret && infos[1].is_encrypted, "a secret-looking key is encrypted on import");
    }
}

static DECLARED: [ConnectionSpec; 3] = [
    ConnectionSpec {
        id: "postgres_mlsp",
        conn_type: ConnType::Postgres,
        description: "Main application database",
        host: Some("postgres"),
        port: Some(5432),
        schema: None,
        database: Some("mlsp"),
        login: Some("mlsp_user"),
        password_env: Some("MLSP_DB_PASSWORD"),
        extra_json: "",
        standalone_uri: None,
    },
    ConnectionSpec {
        id: "backend_api",
        conn_type: ConnType::Http,
        description: "",
        host: Some("backend"),
        port: Some(8000),
        schema: Some("http"),
        database: None,
        login: None,
        password_env: None,
        extra_json: r#"{"token":"${BACKEND_API_TOKEN}"}"#,
        standalone_uri: None,
    },
    ConnectionSpec {
        id: "redis_default",
        conn_type: ConnType::Redis,
        description: "",
        host: Some("redis"),
        port: Some(6379),
        schema: None,
        database: Some("0"),
        login: None,
        password_env: None,
        extra_json: "",
        standalone_uri: None,
    },
];

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| map.get(name).cloned()
}

#[tokio::test]
async fn the_yaml_sync_writes_declared_connections_and_leaves_runtime_ones_alone() {
    for db in &BACKENDS {
        let (store, url, _dir) = store_with_url(db).await;
        let crypto = keyed(&[&Crypto::generate_key()]);
        store.add_connection(&plain_conn("added_by_hand"), &crypto).await.expect("runtime connection");
        store.add_connection(&plain_conn("redis_default"), &crypto).await.expect("runtime, declared later");

        let env = env_of(&[("MLSP_DB_PASSWORD", PASSWORD)]);
        let report = store.sync_connections(registry_with_connections(&DECLARED), &env, &crypto).await.expect("sync");
        assert_eq!(report.written, ["postgres_mlsp", "redis_default"], "the YAML wins over a runtime row");
        assert_eq!(
            report.skipped,
            ["connection `backend_api`: `extra.token` is read from the environment variable BACKEND_API_TOKEN, \
              which is not set"]
        );
        assert!(report.removed.is_empty());

        let db_conn = store.connection("postgres_mlsp", &crypto).await.expect("synced");
        assert_eq!(db_conn.password.as_deref(), Some(PASSWORD));
        assert_eq!(db_conn.database.as_deref(), Some("mlsp"));
        assert_token(&Raw::open(&url).await.connection("postgres_mlsp").await.0.expect("password"), PASSWORD);
        assert_eq!(store.connection("added_by_hand", &crypto).await.expect("untouched"), plain_conn("added_by_hand"));
        let infos = store.connection_infos().await.expect("infos");
        let source = |id: &str| infos.iter().find(|i| i.id == id).map(|i| i.source);
        assert_eq!(source("postgres_mlsp"), Some(ConnectionSource::PipelinesYaml));
        assert_eq!(source("redis_default"), Some(ConnectionSource::PipelinesYaml));
        assert_eq!(source("added_by_hand"), Some(ConnectionSource::Runtime));

        // Declared connections cannot be changed or deleted at run time.
        let text = conflict(store.add_connection(&plain_conn("postgres_mlsp"), &crypto).await.expect_err("declared"));
        assert!(text.contains("is declared in pipelines.yaml"), "{text}");
        let replacement = plain_conn("postgres_mlsp");
        let upsert = store.upsert_connection(&replacement, ConnectionSource::Runtime, &crypto).await;
        assert!(conflict(upsert.expect_err("declared")).contains("declared in pipelines.yaml"));
        assert!(conflict(store.delete_connection("postgres_mlsp").await.expect_err("declared")).contains("declared"));
        let batch = [plain_conn("redis_default")];
        let import = store.import_connections(&batch, true, &crypto).await;
        assert!(conflict(import.expect_err("declared")).contains("declared"));

        // The next sync resolves what it could not before; dropped declarations go away.
        let env = env_of(&[("MLSP_DB_PASSWORD", "new"), ("BACKEND_API_TOKEN", TOKEN)]);
        let report = store.sync_connections(registry_with_connections(&DECLARED[..2]), &env, &crypto).await;
        let report = report.expect("sync");
        assert_eq!(report.written, ["postgres_mlsp", "backend_api"]);
        assert_eq!(report.removed, ["redis_default"]);
        assert!(report.skipped.is_empty());
        let api = store.connection("backend_api", &crypto).await.expect("synced now");
        assert_eq!(api.extra.get("token"), Some(&json!(TOKEN)));
        assert_eq!(store.connection("postgres_mlsp", &crypto).await.expect("read").password.as_deref(), Some("new"));
        assert!(matches!(store.connection("redis_default", &crypto).await, Err(StoreError::NotFound(_))));
        assert!(store.connection("added_by_hand", &crypto).await.is_ok(), "runtime connections stay");

        // Without a key a declared secret is skipped, not written in clear.
        let report = store.sync_connections(registry_with_connections(&DECLARED[..1]), &env, &no_key()).await;
        let report = report.expect("sync");
        assert!(report.written.is_empty());
        assert!(report.skipped[0].starts_with("connection `postgres_mlsp` cannot be stored: no Fernet key"));
    }
}

#[tokio::test]
async fn connection_imports_are_all_or_nothing() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let crypto = keyed(&[&Crypto::generate_key()]);
        store.add_connection(&plain_conn("b"), &crypto).await.expect("add");
        let batch = [postgres_conn("a"), postgres_conn("b"), plain_conn("c")];

        let err = store.import_connections(&batch, false, &crypto).await.expect_err("b exists");
        assert_eq!(
            conflict(err),
            "1 connection already exists: `b`; nothing was imported (import with overwrite to replace them)"
        );
        assert_eq!(store.connection_infos().await.expect("infos").len(), 1, "nothing was imported");

        let report = store.import_connections(&batch, true, &crypto).await.expect("overwrite");
        assert_eq!(report.added, ["a", "c"]);
        assert_eq!(report.replaced, ["b"]);
        assert_eq!(store.connection("b", &crypto).await.expect("replaced"), postgres_conn("b"));

        store.delete_connection("b").await.expect("delete");
        assert!(matches!(store.delete_connection("b").await, Err(StoreError::NotFound(_))));
        let bad = Connection { id: "no spaces".into(), conn_type: "http".into(), ..Default::default() };
        assert!(conflict(store.add_connection(&bad, &crypto).await.expect_err("bad id")).contains("not a valid"));
    }
}

#[tokio::test]
async fn users_are_created_once_deleted_and_their_password_reset() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let ada = NewUser {
            username: "ada",
            email: "ada@example.com",
            role: "Op",
            password: "first-pass",
            first_name: "Ada",
            last_name: "Lovelace",
        };
        store.add_user(&ada).await.expect("create");
        store.create_user("bob", "bob@example.com", "Viewer", "bob-pass").await.expect("create");
        let err = store.add_user(&NewUser { password: "other-pass", ..ada }).await.expect_err("duplicate");
        assert_eq!(conflict(err), "user `ada` already exists");
        let err = store.add_user(&NewUser { username: "eve", role: "Root", ..ada }).await.expect_err("bad role");
        assert!(conflict(err).starts_with("unknown role `Root`"));

        let users = store.users().await.expect("list");
        assert_eq!(users.len(), 2);
        assert_eq!((users[0].first_name.as_str(), users[0].last_name.as_str()), ("Ada", "Lovelace"));
        assert_eq!(users[0].role, "Op");
        assert!(!format!("{ada:?}").contains("first-pass"), "Debug hides the password");

        assert!(store.check_password("ada", "first-pass").await.expect("check"));
        store.set_password("ada", "second-pass").await.expect("reset");
        assert!(!store.check_password("ada", "first-pass").await.expect("check"), "the old one no longer works");
        assert!(store.check_password("ada", "second-pass").await.expect("check"));
        assert!(matches!(store.set_password("nobody", "nobody-pass").await, Err(StoreError::NotFound(_))));
        assert!(conflict(store.set_password("ada", "short").await.expect_err("short")).contains("at least 8"));
        let err = store.add_user(&NewUser { username: "eve", password: "short", ..ada }).await.expect_err("short");
        assert!(conflict(err).contains("at least 8"));
        assert!(conflict(store.set_password("ada", "").await.expect_err("empty")).contains("cannot be empty"));

        store.delete_user("ada").await.expect("delete");
        assert!(!store.check_password("ada", "second-pass").await.expect("check"));
        assert!(matches!(store.delete_user("ada").await, Err(StoreError::NotFound(_))));
        assert_eq!(store.users().await.expect("list").len(), 1);
    }
}

/// A session stamp changes with the role, the password and a sign-out, and never comes
/// back for a user created again under the same name; both backends alike.
#[tokio::test]
async fn session_stamps_change_when_sessions_must_end() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        store.create_user("ada", "", "Op", "first-pass").await.expect("create");
        let signed = store.authenticate("ada", "first-pass").await.expect("read").expect("signed in");
        let stamp = |account: Option<sluice_runtime::store::Account>| account.expect("active user").session_stamp;
        assert_eq!(store.account("ada").await.expect("read"), Some(signed.clone()));
        store.set_role("ada", "Viewer").await.expect("demote");
        let demoted = store.account("ada").await.expect("read").expect("active user");
        assert_eq!(demoted.role, "Viewer");
        assert_ne!(demoted.session_stamp, signed.session_stamp, "a role change ends sessions");
        store.set_password("ada", "second-pass").await.expect("reset");
        let reset = stamp(store.account("ada").await.expect("read"));
        assert_ne!(reset, demoted.session_stamp, "a reset ends sessions");
        store.end_sessions("ada").await.expect("sign out");
        let signed_out = stamp(store.account("ada").await.expect("read"));
        assert_ne!(signed_out, reset, "signing out ends sessions");
        store.delete_user("ada").await.expect("delete");
        assert_eq!(store.account("ada").await.expect("read"), None);
        store.create_user("ada", "", "Op", "first-pass").await.expect("create again");
        let again = stamp(store.account("ada").await.expect("read"));
        assert!(
            ![signed.session_stamp, demoted.session_stamp, reset, signed_out].contains(&again),
            "a new user, a new stamp"
        );
        assert_eq!(store.authenticate("nobody", "first-pass").await.expect("read"), None);
    }
}

/// Both backends read the same rows back alike (ports, flags, sources, times).
#[tokio::test]
async fn both_backends_list_the_same() {
    let mut listings = Vec::new();
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let crypto = keyed(&[&Crypto::generate_key()]);
        for conn in [postgres_conn("z"), plain_conn("a")] {
            store.add_connection(&conn, &crypto).await.expect("add");
        }
        listings.push(store.connection_infos().await.expect("infos"));
    }
    assert_eq!(listings[0], listings[1]);
}
