//! Values that try to become code: a corpus of shell and SQL payloads, and random strings
//! made of every character that means something to bash or SQL, rendered into real commands
//! run by bash and real statements run by SQLite and PostgreSQL (the tests' own, user
//! postgres, trust auth). Each value must arrive as the literal it is, or be refused; none
//! may run.

use proptest::prelude::*;
use serde_json::{Value, json};
use sluice_runtime::executor::{ExecEnv, execute};
use sluice_runtime::spec::*;
use sluice_runtime::task::Logger;
use sluice_runtime::{Connection, RunInfo, TaskError, TaskInput};
use std::collections::BTreeMap;
use std::path::Path;

mod support;

/// A task of `kind`, with a timeout so a broken quoting cannot hang the suite.
const fn task(id: &'static str, kind: TaskKind) -> TaskSpec {
    TaskSpec { kind, execution_timeout_secs: Some(30), ..support::task(id, &[]) }
}

/// One value in every place a command can hold it; each form writes what it got to a file
/// of its own under `$OUT` (a directory the test makes, passed through `env:`).
const SHELL_FORMS: &str = r#"printf %s {{ params.v }} > "$OUT/bare"
printf %s "{{ params.v }}" > "$OUT/double"
printf %s '{{ params.v }}' > "$OUT/single"
printf %s $'{{ params.v }}' > "$OUT/ansi"
printf %s "$(printf %s {{ params.v }}; echo .)" > "$OUT/subst"
printf %s "$V" > "$OUT/env"
# a comment before {{ params.w }}
"#;
const SHELL_FILES: &[&str] = &["bare", "double", "single", "ansi", "env"];

/// The sample's own command: the greeting inside single quotes.
const PRINT_DATE: &str = "date && echo '{{ params.v }} on {{ ds }}'";

static TASKS: [TaskSpec; 5] = [
    task(
        "shell_forms",
        TaskKind::Shell {
            command: SHELL_FORMS,
            env: &[("OUT", "{{ params.out }}"), ("V", "{{ params.v }}")],
            skip_exit_code: Some(99),
        },
    ),
    task("print_date", TaskKind::shell(PRINT_DATE)),
    task(
        "env_dump",
        TaskKind::Shell {
            command: "env -0 > \"$OUT/env\"",
            env: &[("OUT", "{{ params.out }}")],
            skip_exit_code: Some(99),
        },
    ),
    task(
        "sql_lite",
        TaskKind::Sql {
            conn: "lite",
            statement: "CREATE TABLE IF NOT EXISTS canary (x); \
                            SELECT {{ params.v }} AS bare, '{{ params.v }}' AS quoted, 1 AS \"{{ params.v }}\"",
        },
    ),
    task(
        "sql_pg",
        TaskKind::Sql {
            conn: "pg",
            statement: "SELECT {{ params.v }} AS bare, '{{ params.v }}' AS quoted, E'{{ params.v }}' AS escaped, \
                            $${{ params.w }}$$ AS dollar, 1 AS \"{{ params.v }}\" -- {{ params.w }}",
        },
    ),
];

static PIPELINES: [PipelineSpec; 1] = [support::pipeline("injection", Schedule::Manual, &TASKS)];

fn spec(id: &str) -> &'static TaskSpec {
    PIPELINES[0].task(id).expect("the test pipeline has this task")
}

fn input(task_id: &str, params: Value, connections: Vec<Connection>) -> TaskInput {
    TaskInput {
        run: RunInfo {
            pipeline_id: "injection".into(),
            run_id: "manual__2024-03-05T06:07:08+00:00".into(),
            task_id: task_id.into(),
            try_number: 1,
            logical_date: "2024-03-05T06:07:08+00:00".into(),
            data_interval_start: "2024-03-04T06:07:08+00:00".into(),
            data_interval_end: "2024-03-05T06:07:08+00:00".into(),
            ..RunInfo::default()
        },
        params,
        connections: connections.into_iter().map(|c| (c.id.clone(), c)).collect(),
        upstream_outputs: BTreeMap::new(),
        log: Logger::default(),
    }
}

async fn run(task_id: &str, params: Value, connections: Vec<Connection>) -> (Result<Value, TaskError>, String) {
    let input = input(task_id, params, connections);
    let log = input.log.clone();
    static REGISTRY: std::sync::OnceLock<&'static sluice_runtime::Registry> = std::sync::OnceLock::new();
    let registry = REGISTRY.get_or_init(|| support::registry(&PIPELINES, &[]));
    let result = execute(registry, &PIPELINES[0], spec(task_id), input, &ExecEnv::default()).await;
    let text = log.entries().iter().map(|l| format!("{}\n", l.text)).collect::<String>();
    (result, text)
}

/// Payloads as an attacker writes them. Each one, if it ran, creates `$OUT/pwned` (or
/// drops the canary table); `PWNED` is replaced by the path.
const PAYLOADS: &[&str] = &[
    "'; touch PWNED; echo '",
    "\"; touch PWNED; echo \"",
    "$(touch PWNED)",
    "`touch PWNED`",
    "x; touch PWNED",
    "x && touch PWNED",
    "x || touch PWNED",
    "x | tee PWNED",
    "x\ntouch PWNED",
    "x\r\ntouch PWNED",
    "> PWNED",
    "${IFS}touch${IFS}PWNED",
    "$'\\x27'; touch PWNED",
    "\\'; touch PWNED; echo \\'",
    "'\"$(touch PWNED)\"'",
    "*",
    "~",
    "-n",
    "",
    " leading and trailing ",
    "'); DROP TABLE canary; --",
    "x'); DROP TABLE canary; --",
    "\\'); DROP TABLE canary; --",
    "$$; DROP TABLE canary; --",
    "*/ DROP TABLE canary; /*",
    "\" FROM canary; DROP TABLE canary; --",
    "héllo wörld ✓",
];

fn payload(template: &str, dir: &Path) -> String {
    template.replace("PWNED", &dir.join("pwned").display().to_string())
}

/// Runs the shell forms with `value`; every form must hold `value` exactly.
async fn shell_holds_literally(value: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let params = json!({ "v": value, "w": "a comment", "out": dir.path().display().to_string() });
    let (result, log) = run("shell_forms", params, vec![]).await;
    result.map_err(|e| format!("{value:?}: the command failed: {}\n{log}", e.message))?;
    for name in SHELL_FILES {
        let got = std::fs::read_to_string(dir.path().join(name)).map_err(|e| format!("{name}: {e}"))?;
        if got != value {
            return Err(format!("{value:?}: form `{name}` got {got:?}\n{log}"));
        }
    }
    let subst = std::fs::read_to_string(dir.path().join("subst")).map_err(|e| e.to_string())?;
    if subst != format!("{value}.") {
        return Err(format!("{value:?}: form `subst` got {subst:?}"));
    }
    if dir.path().join("pwned").exists() {
        return Err(format!("{value:?} ran a command"));
    }
    Ok(())
}

#[tokio::test]
async fn shell_payloads_arrive_as_literals_and_never_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    for template in PAYLOADS {
        let value = payload(template, dir.path());
        shell_holds_literally(&value).await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(!dir.path().join("pwned").exists());
}

#[tokio::test]
async fn the_samples_print_date_prints_the_greeting_and_runs_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    for greeting in ["Hello from Sluice", &payload("'; touch PWNED; env | grep SLUICE_; echo '", dir.path())] {
        let (result, log) = run("print_date", json!({ "v": greeting }), vec![]).await;
        let outputs = result.unwrap_or_else(|e| panic!("{}\n{log}", e.message));
        assert_eq!(outputs["stdout"], json!(format!("{greeting} on 2024-03-05")), "{log}");
    }
    assert!(!dir.path().join("pwned").exists(), "the payload ran");
}

#[tokio::test]
async fn a_value_in_a_comment_cannot_end_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = payload("x\ntouch PWNED", dir.path());
    let params = json!({ "v": "v", "w": w, "out": dir.path().display().to_string() });
    let (result, _) = run("shell_forms", params, vec![]).await;
    let error = result.expect_err("a newline cannot be quoted inside a comment");
    assert!(error.message.contains("comment"), "{}", error.message);
    assert!(!dir.path().join("pwned").exists());
}

#[tokio::test]
async fn a_shell_task_gets_only_its_declared_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pg_conn = Connection { password: Some("conn-secret".into()), ..pg() };
    let params = json!({ "out": dir.path().display().to_string() });
    let (result, log) = run("env_dump", params, vec![pg_conn]).await;
    result.unwrap_or_else(|e| panic!("{}\n{log}", e.message));
    let dump = std::fs::read_to_string(dir.path().join("env")).expect("env was written");
    let mut names: Vec<&str> = dump.split('\0').filter_map(|kv| kv.split_once('=').map(|(k, _)| k)).collect();
    names.sort();
    // bash adds PWD, SHLVL and `_` itself.
    let allowed = |name: &str| {
        ["PATH", "HOME", "LANG", "TZ", "OUT", "PWD", "SHLVL", "_", "AIRFLOW_CONN_PG"].contains(&name)
            || name.starts_with("AIRFLOW_CTX_")
            || name.starts_with("SLUICE_") && !name.contains("KEY") && !name.contains("DATABASE")
    };
    let extra: Vec<&&str> = names.iter().filter(|n| !allowed(n)).collect();
    assert!(extra.is_empty(), "the task saw {extra:?} of the worker's environment; all: {names:?}");
    // This test process has cargo's variables; none reaches the command.
    assert!(std::env::var("CARGO_MANIFEST_DIR").is_ok());
    assert!(names.contains(&"AIRFLOW_CTX_DAG_ID") && names.contains(&"AIRFLOW_CONN_PG"), "{names:?}");
}

// ---------------------------------------------------------------------------------------
// SQL

fn lite(dir: &Path) -> Connection {
    Connection {
        id: "lite".into(),
        conn_type: "sqlite".into(),
        database: Some(dir.join("inj.db").display().to_string()),
        ..Connection::default()
    }
}

fn pg() -> Connection {
    Connection {
        id: "pg".into(),
        conn_type: "postgres".into(),
        host: Some("127.0.0.1".into()),
        port: Some(sluice_testkit::postgres::port()),
        database: Some("postgres".into()),
        login: Some("postgres".into()),
        ..Connection::default()
    }
}

async fn sqlite_holds_literally(value: &str, dir: &Path) -> Result<(), String> {
    let (result, log) = run("sql_lite", json!({ "v": value }), vec![lite(dir)]).await;
    let outputs = result.map_err(|e| format!("{value:?}: {}\n{log}", e.message))?;
    let row = &outputs["rows"][0];
    if row["bare"] != json!(value) || row["quoted"] != json!(value) || row[value] != json!(1) {
        return Err(format!("{value:?}: got {row}"));
    }
    Ok(())
}

async fn postgres_holds_literally(value: &str) -> Result<(), String> {
    let (result, log) = run("sql_pg", json!({ "v": value, "w": "note" }), vec![pg()]).await;
    let outputs = result.map_err(|e| format!("{value:?}: {}\n{log}", e.message))?;
    let row = &outputs["rows"][0];
    let same = ["bare", "quoted", "escaped"].iter().all(|c| row[*c] == json!(value));
    // PostgreSQL folds nothing in a quoted identifier, but cuts it at 63 bytes.
    let cut = (0..=value.len().min(63)).rev().find(|&at| value.is_char_boundary(at)).unwrap_or(0);
    let ident = &value[..cut];
    if !same || row["dollar"] != json!("note") || row[ident] != json!(1) {
        return Err(format!("{value:?}: got {row}"));
    }
    Ok(())
}

#[tokio::test]
async fn sql_payloads_arrive_as_literals_and_never_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    for template in PAYLOADS {
        let value = payload(template, dir.path());
        if value.is_empty() {
            continue; // an empty identifier is not SQL
        }
        sqlite_holds_literally(&value, dir.path()).await.unwrap_or_else(|e| panic!("{e}"));
        postgres_holds_literally(&value).await.unwrap_or_else(|e| panic!("{e}"));
    }
    // The canary survived every payload.
    let (result, log) = run("sql_lite", json!({ "v": "still here" }), vec![lite(dir.path())]).await;
    result.unwrap_or_else(|e| panic!("{}\n{log}", e.message));
}

#[tokio::test]
async fn sql_values_that_cannot_be_quoted_where_they_stand_are_refused() {
    // `$` inside a dollar-quoted body, a line break inside a `--` comment.
    for w in ["$$; DROP TABLE canary; --", "x\nDROP TABLE canary"] {
        let (result, _) = run("sql_pg", json!({ "v": "v", "w": w }), vec![pg()]).await;
        let error = result.expect_err("refused");
        assert!(error.message.starts_with("cannot render the statement: the "), "{}", error.message);
    }
}

/// Characters that mean something to bash or SQL, and a few ordinary ones.
fn hostile_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just('\''),
            Just('"'),
            Just('\\'),
            Just('$'),
            Just('`'),
            Just(';'),
            Just('&'),
            Just('|'),
            Just('('),
            Just(')'),
            Just('\n'),
            Just(' '),
            Just('*'),
            Just('#'),
            Just('-'),
            Just('/'),
            Just('{'),
            Just('}'),
            Just('!'),
            Just('<'),
            Just('>'),
            Just('~'),
            Just('%'),
            Just('é'),
            proptest::char::range('a', 'e'),
        ],
        1..24,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_value_is_one_literal_in_every_shell_form(value in hostile_text()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let checked = runtime.block_on(shell_holds_literally(&value));
        prop_assert!(checked.is_ok(), "{}", checked.err().unwrap_or_default());
    }

    #[test]
    fn any_value_is_one_literal_in_every_sql_form(value in hostile_text()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let checked = runtime.block_on(async {
            sqlite_holds_literally(&value, dir.path()).await?;
            postgres_holds_literally(&value).await
        });
        prop_assert!(checked.is_ok(), "{}", checked.err().unwrap_or_default());
    }
}
