//! Connections: Airflow URIs, environment variables, `airflow connections export/import`
//! files, resolution from the compiled specs, and that no output leaks a password.

use serde_json::{Map, Value, json};
use sluice_runtime::Connection;
use sluice_runtime::connection::{ConnectionError, Format, connections_from_env, export, import};
use sluice_runtime::spec::{ConnType, ConnectionSpec};
use std::collections::HashMap;

/// A password using every character class that needs encoding somewhere.
const NASTY: &str = "p@ss:w/rd?#&=+ %25é€😀\"'\\<>{}|^`[];,$!*()~_.-";

fn extra(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("test extra must be an object, got {other}"),
    }
}

fn uri(id: &str, text: &str) -> Connection {
    Connection::from_uri(id, text).unwrap_or_else(|e| panic!("`{text}` should parse: {e}"))
}

/// One connection of each kind the tests round-trip, with awkward values.
fn samples() -> Vec<Connection> {
    vec![
        Connection {
            id: "postgres_mlsp".into(),
            conn_type: "postgres".into(),
            host: Some("postgres".into()),
            port: Some(5432),
            database: Some("mlsp".into()),
            schema: Some("analytics".into()),
            login: Some("mlsp user@corp".into()),
            password: Some(NASTY.into()),
            extra: extra(json!({"sslmode": "require", "application_name": "sluice & co"})),
            description: "Main application database".into(),
        },
        Connection {
            id: "backend_api".into(),
            conn_type: "http".into(),
            host: Some("backend".into()),
            port: Some(8000),
            schema: Some("https".into()),
            extra: extra(json!({"token": "t0k3n/+=", "timeout": 30, "headers": {"X-Id": ["a", "b"]}})),
            ..Default::default()
        },
        Connection {
            id: "redis_default".into(),
            conn_type: "redis".into(),
            host: Some("redis".into()),
            port: Some(6379),
            database: Some("0".into()),
            // Redis has no user: Python reads `redis://:pw@…` as an empty login.
            login: Some("".into()),
            password: Some("r3dis:pw".into()),
            ..Default::default()
        },
        Connection {
            id: "local_db".into(),
            conn_type: "sqlite".into(),
            database: Some("/var/lib/sluice/app db.sqlite".into()),
            ..Default::default()
        },
        Connection {
            id: "mail".into(),
            conn_type: "smtp".into(),
            host: Some("smtp.example.com".into()),
            port: Some(587),
            login: Some("alerts".into()),
            password: Some("true".into()),
            extra: extra(json!({"from_email": "alerts@example.com", "disable_ssl": "false", "empty": ""})),
            ..Default::default()
        },
        Connection {
            id: "gcp".into(),
            conn_type: "google_cloud_platform".into(),
            extra: extra(json!({"project": "0123", "keyfile_dict": {"private_key": "-----BEGIN\nKEY-----"}})),
            ..Default::default()
        },
        // Values YAML would read as other types, or that need quoting.
        Connection {
            id: "tricky".into(),
            conn_type: "postgres".into(),
            host: Some("null".into()),
            login: Some("true".into()),
            password: Some("0123".into()),
            database: Some("- a: b # c".into()),
            schema: Some("1e3".into()),
            description: "two\nlines: with \"quotes\"".into(),
            ..Default::default()
        },
    ]
}

// --- URIs --------------------------------------------------------------------------------------

#[test]
fn uris_round_trip_with_special_characters() {
    for conn in samples() {
        let text = conn.to_uri();
        let back = uri(&conn.id, &text);
        let without_description = Connection { description: String::new(), ..conn.clone() };
        assert_eq!(back, without_description, "round trip through `{}`", conn.masked_uri());
        assert_eq!(conn.uri(), text, "uri() is what a shell task sees: the same text");
    }
}

#[test]
fn passwords_are_percent_encoded_as_python_quote_does() {
    let conn = Connection {
        id: "db".into(),
        conn_type: "postgres".into(),
        host: Some("h".into()),
        login: Some("a b".into()),
        password: Some("p@ss/w:rd é".into()),
        ..Default::default()
    };
    // urllib.parse.quote("p@ss/w:rd é", safe="") == "p%40ss%2Fw%3Ard%20%C3%A9"
    assert_eq!(conn.to_uri(), "postgres://a%20b:p%40ss%2Fw%3Ard%20%C3%A9@h");
}

#[test]
fn airflow_postgres_example() {
    let conn = uri("pg", "postgres://user:p%40ss@host:5432/db");
    assert_eq!(conn.conn_type, "postgres");
    assert_eq!(conn.login.as_deref(), Some("user"));
    assert_eq!(conn.password.as_deref(), Some("p@ss"));
    assert_eq!(conn.host.as_deref(), Some("host"));
    assert_eq!(conn.port, Some(5432));
    assert_eq!(conn.database.as_deref(), Some("db"));
    assert_eq!(conn.schema, None);
    assert!(conn.extra.is_empty());
    assert_eq!(conn.to_uri(), "postgres://user:p%40ss@host:5432/db");

    assert_eq!(uri("pg", "postgresql://u@h/d").conn_type, "postgres");
}

#[test]
fn airflow_http_examples() {
    let conn = uri("api", "http://host:8000?timeout=30");
    assert_eq!(conn.conn_type, "http");
    assert_eq!(conn.host.as_deref(), Some("host"));
    assert_eq!(conn.port, Some(8000));
    assert_eq!(conn.schema, None);
    // Airflow reads query values as strings.
    assert_eq!(conn.extra, extra(json!({"timeout": "30"})));
    assert_eq!(conn.base_url().expect("an http connection with a host"), "http://host:8000");
    assert_eq!(conn.to_uri(), "http://host:8000/?timeout=30");

    let secure = uri("api", "https://api.example.com");
    assert_eq!(secure.conn_type, "http");
    assert_eq!(secure.schema.as_deref(), Some("https"));
    assert_eq!(secure.base_url().expect("an http connection with a host"), "https://api.example.com");
    // Written back the way Airflow's HTTP hook reads the schema: in the path.
    assert_eq!(secure.to_uri(), "http://api.example.com/https");
    assert_eq!(uri("api", &secure.to_uri()), secure);

    let err = Connection::from_uri("api", "https://host/v1").expect_err("https with a path is ambiguous");
    assert!(matches!(&err, ConnectionError::Invalid { field, .. } if field == "schema"), "{err}");

    // Airflow's `type://protocol://host` form keeps the protocol in the host.
    let nested = uri("api", "http://https://api.example.com:8443");
    assert_eq!(nested.host.as_deref(), Some("https://api.example.com"));
    assert_eq!(nested.port, Some(8443));
    assert_eq!(nested.base_url().expect("host with protocol"), "https://api.example.com:8443");
    assert_eq!(nested.to_uri(), "http://https://api.example.com:8443");
}

#[test]
fn airflow_get_uri_documented_examples() {
    // Airflow docs, "Generating a connection URI".
    let conn = Connection {
        id: "fancy".into(),
        conn_type: "fancy_type".into(),
        login: Some("my-login".into()),
        password: Some("my-password".into()),
        host: Some("my-host".into()),
        port: Some(5432),
        database: Some("my-schema".into()),
        extra: extra(json!({"param1": "val1", "param2": "val2"})),
        ..Default::default()
    };
    assert_eq!(conn.to_uri(), "fancy-type://my-login:my-password@my-host:5432/my-schema?param1=val1&param2=val2");
    assert_eq!(uri("fancy", &conn.to_uri()), conn);

    // Airflow docs: an extra that is not flat goes in `__extra__`, JSON-encoded.
    let nested = uri(
        "nested",
        "my-conn-type://my-login:my-password@my-host:5432/my-schema?__extra__=%7B%22my_val%22%3A+%5B%22list%22%2C+\
         %22of%22%2C+%22values%22%5D%2C+%22extra_dict%22%3A+%7B%22nested%22%3A+%7B%22dict%22%3A+%5B%22val%22%5D%7D%7D%7D",
    );
    assert_eq!(nested.conn_type, "my_conn_type");
    assert_eq!(
        nested.extra,
        extra(json!({"my_val": ["list", "of", "values"], "extra_dict": {"nested": {"dict": ["val"]}}}))
    );

    // Airflow docs: `+` in the query is a space, `%2A` a star.
    let mysql = uri("m", "mysql://myname:mypassword@myhost.com?this_param=some+val&that_param=other+val%2A");
    assert_eq!(mysql.extra, extra(json!({"this_param": "some val", "that_param": "other val*"})));

    // Non-string extra values are written as `__extra__`, so they read back with their types.
    let typed = Connection { extra: extra(json!({"timeout": 30, "verify": false})), ..conn.clone() };
    assert!(typed.to_uri().contains("?__extra__=%7B"), "{}", typed.to_uri());
    assert_eq!(uri("fancy", &typed.to_uri()).extra, typed.extra);
}

#[test]
fn sqlite_paths() {
    let conn = uri("db", "sqlite:////abs/path.db");
    assert_eq!(conn.conn_type, "sqlite");
    assert_eq!(conn.host, None);
    assert_eq!(conn.database.as_deref(), Some("/abs/path.db"));
    assert_eq!(conn.to_uri(), "sqlite:////abs/path.db");

    assert_eq!(uri("db", "sqlite:///relative/app.db").database.as_deref(), Some("relative/app.db"));
    // Airflow's own form: the file in the host.
    let airflow = uri("db", "sqlite://%2Ftmp%2Fsqlite_default.db");
    assert_eq!(airflow.database.as_deref(), Some("/tmp/sqlite_default.db"));
    assert_eq!(airflow.host, None);
}

#[test]
fn file_paths() {
    let abs = uri("feed", "file:///srv/games");
    assert_eq!(abs.conn_type, "file");
    assert_eq!((abs.host.as_deref(), abs.database.as_deref()), (None, Some("/srv/games")));
    assert_eq!(abs.to_uri(), "file:///srv/games");

    let rel = uri("feed", "file://data/sample/games");
    assert_eq!(rel.database.as_deref(), Some("data/sample/games"));
    assert_eq!(rel.to_uri(), "file://data/sample/games");
    assert_eq!(uri("feed", &rel.to_uri()), rel);
}

#[test]
fn uri_edge_cases() {
    // Empty login and password are kept apart from absent ones, as Python does.
    let conn = uri("r", "redis://:secret@redis:6379/0");
    assert_eq!(conn.login.as_deref(), Some(""));
    assert_eq!(conn.password.as_deref(), Some("secret"));
    assert_eq!(conn.database.as_deref(), Some("0"));
    let empty = uri("e", "postgres://user:@h");
    assert_eq!((empty.login.as_deref(), empty.password.as_deref()), (Some("user"), Some("")));
    let no_password = uri("e", "postgres://user@h");
    assert_eq!((no_password.login.as_deref(), no_password.password), (Some("user"), None));
    // Port without host or login: Airflow's `@:port`.
    let port_only = Connection { id: "p".into(), conn_type: "postgres".into(), port: Some(5432), ..Default::default() };
    assert_eq!(port_only.to_uri(), "postgres://@:5432");
    assert_eq!(uri("p", &port_only.to_uri()).port, Some(5432));
    // IPv6 literals.
    let v6 = uri("v6", "http://[::1]:8080");
    assert_eq!(v6.host.as_deref(), Some("::1"));
    assert_eq!(v6.base_url().expect("http with host"), "http://[::1]:8080");
    assert_eq!(uri("v6", &v6.to_uri()), v6);
    // The field the path does not carry travels in the extra.
    let both = Connection {
        id: "b".into(),
        conn_type: "http".into(),
        host: Some("h".into()),
        schema: Some("https".into()),
        database: Some("db".into()),
        ..Default::default()
    };
    assert_eq!(both.to_uri(), "http://h/https?__database__=db");
    assert_eq!(uri("b", &both.to_uri()), both);
    // Hosts keep their case.
    assert_eq!(uri("c", "postgres://MyHost/db").host.as_deref(), Some("MyHost"));
}

#[test]
fn bad_uris_are_clear_errors_without_secrets() {
    let cases = [
        ("no scheme", "host:5432/db", "uri"),
        ("bad port", "postgres://user:hunter2@host:99999/db", "port"),
        // An unencoded `/` in the password: the rest of it lands in the port.
        ("unencoded password", "postgres://user:hunt/er2@host/db", "port"),
        ("bad __extra__", "http://h?__extra__=hunter2", "extra"),
        ("bad scheme", "9x://h", "conn_type"),
        ("non-UTF-8 password", "postgres://user:%FFhunter2@h", "password"),
    ];
    for (what, text, field) in cases {
        let err = Connection::from_uri("my_conn", text).expect_err(what);
        let message = err.to_string();
        assert!(
            matches!(&err, ConnectionError::Invalid { conn_id, field: f, .. } if conn_id == "my_conn" && f == field),
            "{what}: {err:?}"
        );
        assert!(message.starts_with(&format!("connection `my_conn` has an invalid `{field}`")), "{what}: {message}");
        assert!(!message.contains("hunter2") && !message.contains("hunt"), "{what} leaks: {message}");
    }
    let err = Connection::from_uri("x", "postgres://h").expect("fine").base_url().expect_err("not http");
    assert!(err.to_string().contains("needs an http connection"), "{err}");
}

// --- Masking -----------------------------------------------------------------------------------

#[test]
fn masked_output_never_contains_the_password() {
    for conn in samples() {
        let masked = conn.masked_uri();
        let debug = format!("{conn:?}");
        if let Some(password) = conn.password.as_deref().filter(|p| !p.is_empty()) {
            let encoded = conn.to_uri();
            assert!(encoded.contains(':'), "sanity: the real URI has a password");
            for text in [&masked, &debug] {
                assert!(!text.contains(password), "{text}");
            }
            // Nor its encoded form.
            let real_password_part = encoded.split('@').next().expect("has userinfo").rsplit(':').next().expect("pw");
            assert!(!masked.contains(real_password_part), "{masked}");
            assert!(masked.contains(":***@"), "{masked}");
        }
    }
    let api = &samples()[1];
    let masked = api.masked_uri();
    assert!(!masked.contains("t0k3n") && !masked.contains("t0k3n%2F"), "the token extra is masked: {masked}");
    let gcp = &samples()[5];
    assert!(!gcp.masked_uri().contains("BEGIN"), "{}", gcp.masked_uri());
    assert!(gcp.masked_uri().contains("0123"), "non-secret extras stay visible: {}", gcp.masked_uri());

    let flat = uri("f", "http://u:pw@h?api_key=abc123&region=eu");
    assert_eq!(flat.masked_uri(), "http://u:***@h/?api_key=***&region=eu");
}

// --- Environment -------------------------------------------------------------------------------

fn vars(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>().into_iter()
}

#[test]
fn env_connections_uri_and_json_forms() {
    let found = connections_from_env(vars(&[
        ("PATH", "/usr/bin"),
        ("AIRFLOW_CONN_POSTGRES_MLSP", "postgres://mlsp_user:p%40ss@postgres:5432/mlsp"),
        (
            "AIRFLOW_CONN_BACKEND_API",
            r#"{"conn_type": "http", "host": "backend", "port": "8000", "schema": "https", "extra": {"token": "x"}}"#,
        ),
        ("SLUICE_CONN_MAIL", r#"{"conn_type":"smtp","host":"smtp","port":587,"extra":"{\"from_email\": \"a@b\"}"}"#),
        ("AIRFLOW_CONN_REDIS", "redis://first:6379/0"),
        ("SLUICE_CONN_REDIS", "redis://second:6379/1"),
        ("AIRFLOW__CORE__FERNET_KEY", "not a connection"),
    ]));
    let conns: Vec<Connection> = found.into_iter().map(|r| r.expect("every value is valid")).collect();
    let ids: Vec<&str> = conns.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["backend_api", "mail", "postgres_mlsp", "redis"], "sorted, lowercased ids");

    assert_eq!(conns[0].conn_type, "http");
    assert_eq!(conns[0].port, Some(8000));
    assert_eq!(conns[0].schema.as_deref(), Some("https"));
    assert_eq!(conns[0].extra, extra(json!({"token": "x"})));
    assert_eq!(conns[1].extra, extra(json!({"from_email": "a@b"})));
    assert_eq!(conns[1].port, Some(587));
    assert_eq!(conns[2].password.as_deref(), Some("p@ss"));
    assert_eq!(conns[2].database.as_deref(), Some("mlsp"));
    assert_eq!(conns[3].host.as_deref(), Some("second"), "SLUICE_CONN_ wins over AIRFLOW_CONN_");

    // The same, the other way round in the iterator.
    let found = connections_from_env(vars(&[("SLUICE_CONN_R", "redis://s"), ("AIRFLOW_CONN_R", "redis://a")]));
    assert_eq!(found[0].as_ref().expect("valid").host.as_deref(), Some("s"));
}

#[test]
fn env_errors_name_the_connection() {
    let found = connections_from_env(vars(&[
        ("AIRFLOW_CONN_BROKEN", "{\"conn_type\": \"postgres\", \"password\": \"hunter2\""),
        ("AIRFLOW_CONN_BAD_PORT", r#"{"conn_type": "postgres", "port": "hunter2"}"#),
        ("AIRFLOW_CONN_NO_TYPE", r#"{"host": "h"}"#),
        ("AIRFLOW_CONN_", "postgres://h"),
    ]));
    let errors: Vec<ConnectionError> = found.into_iter().map(|r| r.expect_err("all are broken")).collect();
    let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors[0].conn_id(), Some("AIRFLOW_CONN_"), "{}", texts[0]);
    assert!(texts[1].starts_with("connection `bad_port` has an invalid `port`"), "{}", texts[1]);
    assert!(texts[2].starts_with("connection `broken` has an invalid `connection`"), "{}", texts[2]);
    assert!(texts[3].starts_with("connection `no_type` has an invalid `conn_type`"), "{}", texts[3]);
    for text in &texts {
        assert!(!text.contains("hunter2"), "{text}");
    }
}

// --- Import / export ---------------------------------------------------------------------------

#[test]
fn export_import_round_trips_in_json_and_yaml() {
    let mut conns = samples();
    conns.sort_by(|a, b| a.id.cmp(&b.id));
    for format in [Format::Json, Format::Yaml] {
        let text = export(&conns, format);
        let back = import(&text, format).unwrap_or_else(|e| panic!("{format} export must import: {e}\n{text}"));
        let mut back = back;
        back.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(back, conns, "{format} round trip of:\n{text}");
    }
}

#[test]
fn export_import_round_trips_in_env_format() {
    let mut conns = samples();
    conns.sort_by(|a, b| a.id.cmp(&b.id));
    let text = export(&conns, Format::Env);
    assert_eq!(text.lines().count(), conns.len(), "{text}");
    assert!(text.lines().all(|l| l.split_once('=').is_some_and(|(id, uri)| !id.is_empty() && uri.contains("://"))));
    let back = import(&text, Format::Env).expect("env export must import");
    // The env format is URIs: descriptions are not part of them (as in Airflow).
    let expected: Vec<Connection> =
        conns.iter().map(|c| Connection { description: String::new(), ..c.clone() }).collect();
    assert_eq!(back, expected, "env round trip of:\n{text}");
}

#[test]
fn json_export_has_airflows_shape() {
    let conns = samples();
    let text = export(&conns[..1], Format::Json);
    let doc: Value = serde_json::from_str(&text).expect("export is JSON");
    let entry = &doc["postgres_mlsp"];
    assert_eq!(entry["conn_type"], "postgres");
    assert_eq!(entry["host"], "postgres");
    assert_eq!(entry["port"], 5432);
    assert_eq!(entry["login"], "mlsp user@corp");
    assert_eq!(entry["password"], NASTY);
    assert_eq!(entry["description"], "Main application database");
    // Airflow's `schema` of a postgres connection is the database name.
    assert_eq!(entry["schema"], "mlsp");
    // `extra` is a JSON text, as Airflow stores and exports it.
    let extra_text = entry["extra"].as_str().expect("extra is a string");
    let extra_value: Value = serde_json::from_str(extra_text).expect("extra is JSON");
    assert_eq!(extra_value["sslmode"], "require");
    assert_eq!(extra_value["__schema__"], "analytics");
    let keys: Vec<&str> = entry.as_object().expect("object").keys().map(String::as_str).collect();
    let mut expected = ["conn_type", "description", "extra", "host", "login", "password", "port", "schema"];
    expected.sort_unstable();
    assert_eq!(keys, expected);
}

#[test]
fn imports_airflow_exports() {
    // As `airflow connections export conns.json` writes it (extra as text, nulls included).
    let json = r#"{
  "airflow_db": {
    "conn_type": "postgres", "description": null, "login": "airflow", "password": "air flow",
    "host": "postgres", "port": 5432, "schema": "airflow", "extra": null
  },
  "http_default": {
    "conn_type": "http", "description": "", "login": null, "password": null,
    "host": "httpbin.org", "port": null, "schema": "https", "extra": "{\"timeout\": 10}"
  },
  "as_uri": "redis://:pw@redis:6379/0"
}"#;
    let conns = import(json, Format::Json).expect("Airflow's export imports");
    assert_eq!(conns.len(), 3);
    let db = conns.iter().find(|c| c.id == "airflow_db").expect("listed");
    assert_eq!(db.database.as_deref(), Some("airflow"));
    assert_eq!(db.password.as_deref(), Some("air flow"));
    assert_eq!(db.description, "");
    let http = conns.iter().find(|c| c.id == "http_default").expect("listed");
    assert_eq!(http.schema.as_deref(), Some("https"));
    assert_eq!(http.extra, extra(json!({"timeout": 10})));
    assert_eq!(http.base_url().expect("http"), "https://httpbin.org");
    assert_eq!(conns.iter().find(|c| c.id == "as_uri").expect("listed").password.as_deref(), Some("pw"));

    // As PyYAML dumps it (sorted keys), with an unquoted number for the redis database.
    let yaml = "redis_default:\n  conn_type: redis\n  description: null\n  extra: null\n  host: redis\n  \
                login: null\n  password: null\n  port: 6379\n  schema: 0\n";
    let conns = import(yaml, Format::Yaml).expect("Airflow's YAML export imports");
    assert_eq!(conns[0].database.as_deref(), Some("0"));
    assert_eq!(conns[0].port, Some(6379));

    let env = "# exported\n\npostgres_mlsp=postgres://u:p%40ss@postgres:5432/mlsp\nmail={\"conn_type\": \"smtp\"}\n";
    let conns = import(env, Format::Env).expect("env file imports");
    assert_eq!(conns.len(), 2);
    assert_eq!(conns[0].password.as_deref(), Some("p@ss"));
    assert_eq!(conns[1].conn_type, "smtp");
}

#[test]
fn import_errors_are_clear_and_keep_secrets_out() {
    let cases: [(&str, Format, &str); 8] = [
        ("{\"a\": {\"conn_type\": \"postgres\", \"password\": \"hunter2\"", Format::Json, "not valid JSON"),
        ("[\"hunter2\"]", Format::Json, "top level must be a mapping"),
        ("a:\n  password: \"hunter2\n  host: [", Format::Yaml, "not valid YAML"),
        ("{\"a\": {\"conn_type\": \"http\", \"passwrd\": \"hunter2\"}}", Format::Json, "`passwrd`: unknown key"),
        ("{\"a\": {\"conn_type\": \"http\", \"extra\": \"hunter2\"}}", Format::Json, "invalid `extra`"),
        ("a=postgres://h\na=postgres://hunter2\n", Format::Env, "defined more than once"),
        ("hunter2\n", Format::Env, "line 1 has no `=`"),
        ("a={\"conn_type\": \"postgres\", \"password\": hunter2}\n", Format::Env, "not a JSON object"),
    ];
    for (text, format, expected) in cases {
        let err = import(text, format).expect_err(expected);
        let message = err.to_string();
        assert!(message.contains(expected), "{format}: expected `{expected}` in: {message}");
        assert!(!message.contains("hunter2"), "{format} leaks: {message}");
    }
    assert!(import("  \n", Format::Json).expect("empty is no connections").is_empty());
}

#[test]
fn format_from_path() {
    assert_eq!(Format::from_path("conns.json"), Ok(Format::Json));
    assert_eq!(Format::from_path("/tmp/conns.YAML"), Ok(Format::Yaml));
    assert_eq!(Format::from_path("conns.yml"), Ok(Format::Yaml));
    assert_eq!(Format::from_path("prod.env"), Ok(Format::Env));
    let err = Format::from_path("conns.txt").expect_err("unknown extension");
    assert_eq!(
        err.to_string(),
        "cannot tell the format of `conns.txt` from its extension: use a .json, .yaml, .yml or .env file"
    );
    assert!(Format::from_path("conns").is_err());
}

// --- From the compiled specs -------------------------------------------------------------------

static MLSP: ConnectionSpec = ConnectionSpec {
    id: "postgres_mlsp",
    conn_type: ConnType::Postgres,
    description: "Main application database",
    host: Some("postgres"),
    port: Some(5432),
    schema: None,
    database: Some("mlsp"),
    login: Some("mlsp_user"),
    password_env: Some("MLSP_DB_PASSWORD"),
    extra_json: "{}",
    standalone_uri: Some("sqlite://mlsp.sqlite"),
};

static API: ConnectionSpec = ConnectionSpec {
    id: "backend_api",
    conn_type: ConnType::Http,
    description: "",
    host: Some("backend"),
    port: Some(8000),
    schema: Some("http"),
    database: None,
    login: None,
    password_env: None,
    extra_json: r#"{"token":"${BACKEND_API_TOKEN}","retries":3,"note":"${not a ref}"}"#,
    standalone_uri: None,
};

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| map.get(name).cloned()
}

#[test]
fn from_spec_with_the_env_var() {
    let env = env_of(&[("MLSP_DB_PASSWORD", "s3cret"), ("BACKEND_API_TOKEN", "tok")]);
    let db = Connection::from_spec(&MLSP, &env).expect("the variable is set");
    assert_eq!(db.id, "postgres_mlsp");
    assert_eq!(db.conn_type, "postgres");
    assert_eq!(db.password.as_deref(), Some("s3cret"));
    assert_eq!(db.database.as_deref(), Some("mlsp"));
    assert_eq!(db.description, "Main application database");
    assert_eq!(db.to_uri(), "postgres://mlsp_user:s3cret@postgres:5432/mlsp");

    let api = Connection::from_spec(&API, &env).expect("the variable is set");
    assert_eq!(api.conn_type, "http");
    assert_eq!(api.password, None);
    assert_eq!(api.extra, extra(json!({"token": "tok", "retries": 3, "note": "${not a ref}"})));
    assert_eq!(api.base_url().expect("http"), "http://backend:8000");
}

#[test]
fn from_spec_without_the_env_var() {
    let err = Connection::from_spec(&MLSP, &env_of(&[])).expect_err("the variable is not set");
    assert_eq!(
        err,
        ConnectionError::MissingEnv {
            conn_id: "postgres_mlsp".into(),
            field: "password".into(),
            var: "MLSP_DB_PASSWORD".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "connection `postgres_mlsp`: `password` is read from the environment variable MLSP_DB_PASSWORD, which is not set"
    );

    let err = Connection::from_spec(&API, &env_of(&[("MLSP_DB_PASSWORD", "x")])).expect_err("token not set");
    assert_eq!(
        err.to_string(),
        "connection `backend_api`: `extra.token` is read from the environment variable BACKEND_API_TOKEN, which is not set"
    );
}

#[test]
fn all_types_have_lowercase_names() {
    for (conn_type, name) in [
        (ConnType::Postgres, "postgres"),
        (ConnType::Redis, "redis"),
        (ConnType::Http, "http"),
        (ConnType::Sqlite, "sqlite"),
        (ConnType::Smtp, "smtp"),
        (ConnType::File, "file"),
    ] {
        let spec = ConnectionSpec {
            id: "c",
            conn_type,
            description: "",
            host: None,
            port: None,
            schema: None,
            database: None,
            login: None,
            password_env: None,
            extra_json: "",
            standalone_uri: None,
        };
        assert_eq!(Connection::from_spec(&spec, &|_| None).expect("nothing to resolve").conn_type, name);
    }
}
