//! The executors against real things: bash processes, a local HTTP server, SQLite files and
//! the tests' PostgreSQL (user postgres, trust auth), plus templates and the log.

mod support;

use serde_json::{Value, json};
use sluice_runtime::executor::{ExecEnv, execute};
use sluice_runtime::spec::*;
use sluice_runtime::task::{LogLine, LogStream, Logger, TaskFuture};
use sluice_runtime::template::{TEMPLATE_VARIABLES, TemplateContext, render};
use sluice_runtime::{Connection, Registry, RunInfo, TaskError, TaskInput};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

// ---------------------------------------------------------------------------------------
// Hand-written specs, as the generated code writes them.

static DEPLOYMENT: DeploymentSpec = DeploymentSpec {
    project: "test",
    webserver_port: 8080,
    parallelism: 4,
    worker_concurrency: 4,
    worker_replicas: 1,
    queues: &["default"],
    paused_at_creation: false,
    load_examples: false,
    admin_username_env: "A",
    admin_password_env: "B",
    admin_email_env: "C",
    fernet_key_env: "D",
    secret_key_env: "E",
    broker_db: 1,
    rate_limit_db: 2,
    python: "python3",
};

static REGISTRY: Registry = Registry {
    source: "executors.rs",
    deployment: &DEPLOYMENT,
    connections: &[],
    pools: &[],
    datasets: &[],
    pipelines: &PIPELINES,
    sources: &[],
    python_context: "",
    dispatch,
};

const fn task(id: &'static str, kind: TaskKind, timeout: Option<u64>) -> TaskSpec {
    TaskSpec {
        retry: RetryPolicy { retries: 0, retry_delay_secs: 0, exponential_backoff: false, max_retry_delay_secs: None },
        execution_timeout_secs: timeout,
        email: &["data@example.com"],
        ..TaskSpec::new(id, kind)
    }
}

const fn shell(id: &'static str, command: &'static str, timeout: Option<u64>) -> TaskSpec {
    task(id, TaskKind::shell(command), timeout)
}

const fn sql(id: &'static str, conn: &'static str) -> TaskSpec {
    task(id, TaskKind::Sql { conn, statement: "{{ params.sql | safe }}" }, Some(30))
}

const fn rust(id: &'static str, timeout: Option<u64>) -> TaskSpec {
    task(id, TaskKind::Rust { path: "crate::tasks::test" }, timeout)
}

const ENV_COMMAND: &str = r#"echo "first {{ ds }} {{ params.greeting }}"
echo "to stderr" >&2
sleep 0.5
echo "ids $SLUICE_PIPELINE_ID $SLUICE_RUN_ID $SLUICE_TASK_ID $SLUICE_TRY_NUMBER $SLUICE_LOGICAL_DATE"
echo "airflow $AIRFLOW_CTX_DAG_ID $AIRFLOW_CTX_TASK_ID $AIRFLOW_CTX_RUN_ID $AIRFLOW_CTX_LOGICAL_DATE $AIRFLOW_CTX_TRY_NUMBER"
echo "conn $AIRFLOW_CONN_WAREHOUSE"
echo "password {{ conn.warehouse.password }}"
echo "last line"
echo
"#;

static PIPELINES: [PipelineSpec; 1] = [PipelineSpec {
    id: "exec_test",
    description: "",
    owner: "tests",
    tags: &[],
    schedule: Schedule::Manual,
    schedule_text: "",
    timezone: "UTC",
    start_date: None,
    end_date: None,
    catchup: false,
    max_active_runs: 1,
    max_active_tasks: 16,
    paused_at_creation: false,
    params: &[],
    on_failure: &[],
    on_success: &[],
    email: &[],
    tasks: TASKS,
    topo_order: support::in_order(TASKS.len()),
    version_hash: "test",
}];

/// A shell task's own outputs besides its last line and exit code.
const SHELL_DECLARED: &[OutputSpec] = &[
    OutputSpec { name: "stdout", ty: ValueType::String },
    OutputSpec { name: "exit_code", ty: ValueType::Int },
    OutputSpec { name: "games", ty: ValueType::Int },
    OutputSpec { name: "leagues", ty: ValueType::List(&ValueType::String) },
];

/// Independent tasks, one per behaviour under test.
const TASKS: &[TaskSpec] = &[
    shell("shell_env", ENV_COMMAND, None),
    shell("shell_cmd", "{{ params.cmd | safe }}", Some(30)),
    shell("shell_undefined", "echo {{ params.nope }}", None),
    TaskSpec { outputs: SHELL_DECLARED, ..shell("shell_outputs", "{{ params.cmd | safe }}", Some(30)) },
    shell("shell_timeout", "{{ params.cmd | safe }}", Some(1)),
    task(
        "http_post",
        TaskKind::Http {
            conn: "api",
            method: "POST",
            endpoint: "/api/runs/{{ ds_nodash }}",
            body: Some(r#"{"greeting": "{{ params.greeting }}", "run": "{{ run_id }}"}"#),
            headers: &[("Content-Type", "application/json"), ("X-Try", "{{ try_number }}")],
            expect_status: &[200, 201],
            skip_status: &[],
        },
        Some(30),
    ),
    task(
        "http_unexpected",
        TaskKind::Http {
            conn: "api",
            method: "GET",
            endpoint: "down",
            body: None,
            headers: &[],
            expect_status: &[200],
            skip_status: &[],
        },
        Some(30),
    ),
    task(
        "http_slow",
        TaskKind::Http {
            conn: "api",
            method: "GET",
            endpoint: "/slow",
            body: None,
            headers: &[],
            expect_status: &[],
            skip_status: &[],
        },
        Some(1),
    ),
    // No execution_timeout: only the request's own bounds stop it.
    task(
        "http_unbounded",
        TaskKind::Http {
            conn: "api",
            method: "GET",
            endpoint: "/feed",
            body: None,
            headers: &[],
            expect_status: &[],
            skip_status: &[],
        },
        None,
    ),
    sql("sql_lite", "lite"),
    sql("sql_pg", "pg"),
    task("sql_pg_slow", TaskKind::Sql { conn: "pg", statement: "SELECT pg_sleep(10)" }, Some(1)),
    rust("rust_ok", None),
    rust("rust_panics", None),
    rust("rust_missing", None),
    rust("rust_slow", Some(1)),
    rust("rust_blocks", Some(1)),
];

fn dispatch<'a>(_pipeline: &str, task: &str, input: &'a TaskInput) -> Option<TaskFuture<'a>> {
    match task {
        "rust_ok" => Some(Box::pin(async move {
            input.log.info(format!("hello from {}", input.run.task_id));
            Ok(json!({ "message": "done" }))
        })),
        "rust_panics" => Some(Box::pin(async move {
            let answer = 42;
            tokio::task::yield_now().await;
            panic!("boom {answer}");
        })),
        "rust_slow" => Some(Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(Value::Null)
        })),
        "rust_blocks" => Some(Box::pin(async move {
            let _dropped = SetOnDrop(&BLOCKING.dropped);
            BLOCKING.entered.store(true, SeqCst);
            // Blocks its thread (no `.await`) until the test opens the gate.
            {
                let (open, opened) = &BLOCKING.gate;
                let mut is_open = open.lock().expect("gate");
                while !*is_open {
                    is_open = opened.wait(is_open).expect("gate");
                }
            }
            BLOCKING.returned.store(true, SeqCst);
            tokio::task::yield_now().await;
            BLOCKING.went_on.store(true, SeqCst);
            Ok(Value::Null)
        })),
        _ => None,
    }
}

/// What the `rust_blocks` body went through.
struct Blocking {
    gate: (std::sync::Mutex<bool>, std::sync::Condvar),
    entered: AtomicBool,
    returned: AtomicBool,
    went_on: AtomicBool,
    dropped: AtomicBool,
}

static BLOCKING: Blocking = Blocking {
    gate: (std::sync::Mutex::new(false), std::sync::Condvar::new()),
    entered: AtomicBool::new(false),
    returned: AtomicBool::new(false),
    went_on: AtomicBool::new(false),
    dropped: AtomicBool::new(false),
};

impl Blocking {
    fn open(&self) {
        *self.gate.0.lock().expect("gate") = true;
        self.gate.1.notify_all();
    }
}

struct SetOnDrop(&'static AtomicBool);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// Returns once `flag` is set; panics after a generous deadline.
async fn until(flag: &AtomicBool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !flag.load(SeqCst) {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn spec(id: &str) -> &'static TaskSpec {
    PIPELINES[0].task(id).expect("the test pipeline has this task")
}

fn run_info(task_id: &str) -> RunInfo {
    RunInfo {
        pipeline_id: "exec_test".into(),
        run_id: "manual__2024-03-05T06:07:08+00:00".into(),
        task_id: task_id.into(),
        try_number: 2,
        logical_date: "2024-03-05T06:07:08+00:00".into(),
        data_interval_start: "2024-03-04T06:07:08+00:00".into(),
        data_interval_end: "2024-03-05T06:07:08+00:00".into(),
        run_type: "manual".into(),
        conf: json!({ "league": "nfl" }),
        prev_data_interval_start_success: Some("2024-03-03T06:07:08+00:00".into()),
        prev_start_date_success: None,
    }
}

fn input(task_id: &str, params: Value, connections: Vec<Connection>) -> TaskInput {
    TaskInput {
        run: run_info(task_id),
        params,
        connections: connections.into_iter().map(|c| (c.id.clone(), c)).collect(),
        upstream_outputs: BTreeMap::new(),
        log: Logger::default(),
    }
}

#[tokio::test]
async fn a_shell_task_hands_its_declared_outputs_over_typed() {
    let cmd = r#"echo "games=12" >> "$SLUICE_OUTPUTS"; echo 'leagues=["nfl", "nba"]' >> "$SLUICE_OUTPUTS"; echo done"#;
    let (result, _) = run("shell_outputs", input("shell_outputs", json!({ "cmd": cmd }), vec![])).await;
    assert_eq!(
        result.expect("succeeds"),
        json!({"stdout": "done", "exit_code": 0, "games": 12, "leagues": ["nfl", "nba"]})
    );
    let wrong = r#"echo "games=twelve" >> "$SLUICE_OUTPUTS"; echo 'leagues=[]' >> "$SLUICE_OUTPUTS""#;
    let (result, _) = run("shell_outputs", input("shell_outputs", json!({ "cmd": wrong }), vec![])).await;
    assert_eq!(
        result.expect_err("a mismatch fails").message,
        "output `games` of task `shell_outputs` is declared `int`, but the task wrote `twelve`"
    );
    let (result, _) = run("shell_outputs", input("shell_outputs", json!({ "cmd": "true" }), vec![])).await;
    let missing = result.expect_err("nothing written fails").message;
    assert!(missing.contains("did not write its output `games`"), "{missing}");
}

/// A Python task of `function` in a module with `source`, declaring `rows: int` and
/// `leagues: list<string>`.
fn python_task(source: &str, function: &'static str) -> (tempfile::TempDir, &'static TaskSpec) {
    let dir = tempfile::tempdir().expect("temp dir");
    let module = dir.path().join("task.py");
    std::fs::write(&module, source).expect("write module");
    let module: &'static str = Box::leak(module.display().to_string().into_boxed_str());
    const DECLARED: &[OutputSpec] = &[
        OutputSpec { name: "rows", ty: ValueType::Int },
        OutputSpec { name: "leagues", ty: ValueType::List(&ValueType::String) },
    ];
    let spec = TaskSpec { outputs: DECLARED, ..task("py", TaskKind::Python { module, function }, Some(30)) };
    (dir, Box::leak(Box::new(spec)))
}

#[tokio::test]
async fn a_python_task_gets_its_context_and_hands_back_checked_outputs() {
    let source = r#"
class SkipTask(Exception):
    pass

def count(ctx):
    print("greeting", ctx["params"]["greeting"], "run", ctx["run"]["run_id"])
    return {"rows": len(ctx["upstream"]["extract"]["leagues"]), "leagues": ctx["upstream"]["extract"]["leagues"]}

def wrong_type(ctx):
    return {"rows": "three", "leagues": []}

def stranger(ctx):
    return {"rows": 1, "leagues": [], "extra": True}

def skip(ctx):
    raise SkipTask("nothing new")

def boom(ctx):
    raise ValueError("bad data")
"#;
    let run = |function: &'static str| {
        let (dir, spec) = python_task(source, function);
        let mut input = input("py", json!({ "greeting": "hi" }), vec![]);
        input.upstream_outputs.insert("extract".into(), json!({ "leagues": ["nfl", "nba", "mlb"] }));
        let log = input.log.clone();
        async move {
            let result = execute(&REGISTRY, &PIPELINES[0], spec, input, &env()).await;
            drop(dir);
            (result, texts(&log.entries()))
        }
    };
    let (result, log) = run("count").await;
    assert_eq!(result.expect("succeeds"), json!({"rows": 3, "leagues": ["nfl", "nba", "mlb"]}), "{log}");
    assert!(log.contains("[stdout] greeting hi run manual__2024-03-05T06:07:08+00:00"), "{log}");
    let (result, _) = run("wrong_type").await;
    assert_eq!(
        result.expect_err("a wrong type fails").message,
        "output `rows` of task `py` is declared `int`, but the function returned \"three\""
    );
    let (result, _) = run("stranger").await;
    assert!(result.expect_err("fails").message.contains("returned output `extra`, which it does not declare"));
    let (result, _) = run("skip").await;
    let skipped = result.expect_err("skips");
    assert_eq!((skipped.ending, skipped.message.as_str()), (sluice_runtime::task::Ending::Skip, "nothing new"));
    let (result, log) = run("boom").await;
    assert!(result.expect_err("fails").message.contains("the Python function `boom` failed"), "{log}");
    assert!(log.contains("ValueError: bad data"), "the traceback is in the log: {log}");
}

fn env() -> ExecEnv {
    let mut vars = BTreeMap::new();
    vars.insert("region".to_string(), "eu-west".to_string());
    vars.insert("limits".to_string(), r#"{"rows": 500}"#.to_string());
    vars.insert("broken".to_string(), "{not json".to_string());
    vars.insert("api_token".to_string(), "tok-123456".to_string());
    ExecEnv { kill_grace: Duration::from_millis(500), ..ExecEnv::new(Arc::new(vars)) }
}

/// Runs `task_id` with `input`; returns the result and the log lines.
async fn run(task_id: &str, input: TaskInput) -> (Result<Value, TaskError>, Vec<LogLine>) {
    let log = input.log.clone();
    let result = execute(&REGISTRY, &PIPELINES[0], spec(task_id), input, &env()).await;
    (result, log.entries())
}

fn texts(lines: &[LogLine]) -> String {
    lines.iter().map(|l| format!("[{}] {}\n", l.stream, l.text)).collect()
}

fn warehouse() -> Connection {
    Connection {
        id: "warehouse".into(),
        conn_type: "postgres".into(),
        host: Some("db.internal".into()),
        port: Some(5432),
        database: Some("mlsp".into()),
        login: Some("loader".into()),
        password: Some("s3cret-pw!".into()),
        ..Connection::default()
    }
}

// ---------------------------------------------------------------------------------------
// Shell

#[tokio::test]
async fn shell_streams_lines_and_sees_its_environment() {
    let (tx, mut rx) = mpsc::channel(1024);
    let mut task_input = input("shell_env", json!({ "greeting": "hello" }), vec![warehouse()]);
    task_input.log = Logger::streaming(tx);
    let log = task_input.log.clone();
    let running =
        tokio::spawn(async move { execute(&REGISTRY, &PIPELINES[0], spec("shell_env"), task_input, &env()).await });

    // The first lines arrive while the command still sleeps.
    let mut streamed = Vec::new();
    while !streamed.iter().any(|l: &LogLine| l.text.starts_with("first")) {
        let line = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("a line within 5s");
        streamed.push(line.expect("the stream is open while the task runs"));
    }
    assert!(!running.is_finished(), "the line came before the command finished");

    let outputs = running.await.expect("no panic").expect("the command succeeds");
    assert_eq!(outputs, json!({ "stdout": "last line", "exit_code": 0 }));
    // The executor closed the stream: the receiver drains and ends.
    while let Some(line) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("the stream ends") {
        streamed.push(line);
    }
    assert_eq!(streamed, log.entries(), "everything kept was streamed");

    let all = texts(&streamed);
    assert!(all.contains("[info] Running command: echo \"first 2024-03-05 hello\""), "{all}");
    assert!(all.contains("[stdout] first 2024-03-05 hello"), "{all}");
    assert!(all.contains("[stderr] to stderr"), "{all}");
    assert!(
        all.contains(
            "[stdout] ids exec_test manual__2024-03-05T06:07:08+00:00 shell_env 2 2024-03-05T06:07:08+00:00\n"
        ),
        "{all}"
    );
    assert!(
        all.contains(
            "[stdout] airflow exec_test shell_env manual__2024-03-05T06:07:08+00:00 2024-03-05T06:07:08+00:00 2\n"
        ),
        "{all}"
    );
    // The connection's URI, with the (percent-encoded) password masked.
    let uri = warehouse().uri();
    assert!(uri.contains("s3cret-pw%21"), "{uri}");
    assert!(all.contains(&format!("[stdout] conn {}\n", uri.replace("s3cret-pw%21", "***"))), "{all}");
    assert!(all.contains("[stdout] password ***\n"), "{all}");
    assert!(!all.contains("s3cret"), "no secret in the log:\n{all}");
}

#[tokio::test]
async fn rendered_templates_are_kept_with_secrets_masked() {
    let env = env();
    // The task's command is `{{ params.cmd | safe }}`: rendered, it is this text.
    let cmd = json!({ "cmd": "echo eu-west tok-123456" });
    let input = input("shell_cmd", cmd, vec![]);
    execute(&REGISTRY, &PIPELINES[0], spec("shell_cmd"), input, &env).await.expect("runs");
    let rendered = env.rendered();
    let command = rendered.get("the shell command").expect("the command was kept");
    assert_eq!(command, "echo eu-west ***");
    assert!(!command.contains("tok-123456"), "a secret variable is masked: {command}");
}

#[tokio::test]
async fn shell_failure_names_the_exit_status_or_signal() {
    let cmd = json!({ "cmd": "echo about to fail; echo oops >&2; exit 3" });
    let (result, lines) = run("shell_cmd", input("shell_cmd", cmd, vec![])).await;
    let error = result.expect_err("exit 3 fails the task");
    assert_eq!(error.message, "the command exited with status 3 (its output is in the log)");
    let all = texts(&lines);
    assert!(all.contains("[stdout] about to fail") && all.contains("[stderr] oops"), "{all}");

    let cmd = json!({ "cmd": "echo bye; kill -KILL $$" });
    let (result, _) = run("shell_cmd", input("shell_cmd", cmd, vec![])).await;
    assert_eq!(result.expect_err("killed").message, "the command was killed by signal 9 (SIGKILL)");
}

#[tokio::test]
async fn shell_output_is_the_last_non_empty_line_and_long_lines_are_cut() {
    let cmd = json!({ "cmd": "printf 'one\\ntwo\\n\\n   \\n'; head -c 100000 /dev/zero | tr '\\0' x; echo" });
    let (result, lines) = run("shell_cmd", input("shell_cmd", cmd, vec![])).await;
    let outputs = result.expect("succeeds");
    let stdout = outputs["stdout"].as_str().expect("a string");
    assert!(stdout.starts_with("xxxx") && stdout.ends_with("[line cut at 65536 bytes]"), "{}", &stdout[..20]);
    assert!(lines.iter().any(|l| l.text == "two"));
}

/// Processes of the group `pgid` that are still running (zombies are dead already).
fn live_members(pgid: u32) -> Vec<String> {
    let mut live = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its `)`.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2) == Some(&pgid.to_string().as_str()) && fields.first() != Some(&"Z") {
            live.push(stat);
        }
    }
    live
}

fn pid_after(lines: &[LogLine], prefix: &str) -> u32 {
    lines
        .iter()
        .find_map(|l| l.text.strip_prefix(prefix))
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("a line `{prefix}<pid>` in:\n{}", texts(lines)))
}

#[tokio::test]
async fn shell_timeout_terminates_the_whole_process_group() {
    let cmd = "echo \"group $$\"; sleep 1000 & echo \"grandchild $!\"; bash -c 'sleep 1000; echo never' & wait";
    let (result, lines) = run("shell_timeout", input("shell_timeout", json!({ "cmd": cmd }), vec![])).await;
    let error = result.expect_err("times out");
    assert_eq!(error.message, "timed out after 1s; the command's process group was terminated");

    let group = pid_after(&lines, "group ");
    let grandchild = pid_after(&lines, "grandchild ");
    assert!(live_members(group).is_empty(), "still running: {:?}", live_members(group));
    let state = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
    assert!(state.is_empty() || state.contains(") Z "), "the grandchild is gone: {state}");
    assert!(!texts(&lines).contains("SIGKILL"), "SIGTERM was enough:\n{}", texts(&lines));
}

#[tokio::test]
async fn shell_timeout_kills_processes_that_ignore_sigterm() {
    let cmd = "trap '' TERM; echo \"group $$\"; sleep 1000 & wait; wait";
    let (result, lines) = run("shell_timeout", input("shell_timeout", json!({ "cmd": cmd }), vec![])).await;
    assert!(result.expect_err("times out").message.starts_with("timed out after 1s"));
    assert!(texts(&lines).contains("sending SIGKILL"), "{}", texts(&lines));
    let group = pid_after(&lines, "group ");
    assert!(live_members(group).is_empty(), "still running: {:?}", live_members(group));
}

#[tokio::test]
async fn shell_processes_left_behind_are_terminated() {
    let cmd = "echo \"group $$\"; sleep 1000 >/dev/null 2>&1 & echo done";
    let (result, lines) = run("shell_cmd", input("shell_cmd", json!({ "cmd": cmd }), vec![])).await;
    assert_eq!(result.expect("succeeds")["stdout"], "done");
    let group = pid_after(&lines, "group ");
    assert!(live_members(group).is_empty(), "still running: {:?}", live_members(group));
    assert!(texts(&lines).contains("left processes running"), "{}", texts(&lines));
}

// ---------------------------------------------------------------------------------------
// Templates

fn template_context() -> TemplateContext {
    let env = env();
    let params = json!({ "greeting": "hi", "limit": 5, "tags": ["a", "b"] });
    let connections = BTreeMap::from([("warehouse".to_string(), warehouse())]);
    let upstream = BTreeMap::from([("extract".to_string(), json!({ "rows": 7, "leagues": ["nfl", "mlb"] }))]);
    TemplateContext::new(&run_info("load"), &params, env.variables, &connections).with_upstream(&upstream)
}

#[test]
fn templates_render_the_names_airflow_ports_rely_on() {
    let ctx = template_context();
    let cases = [
        ("{{ upstream.extract.rows }} {{ upstream.extract.leagues | join(',') }}", "7 nfl,mlb"),
        ("{{ dag_run.conf.league }} {{ dag_run.run_type }} {{ dag_run.dag_id }}", "nfl manual exec_test"),
        ("{{ dag_run.logical_date.strftime('%d.%m') }}", "05.03"),
        ("{{ prev_data_interval_start_success }} {{ prev_start_date_success }}", "2024-03-03T06:07:08+00:00 None"),
        ("{{ macros.ds_add(ds, 7) }} {{ macros.ds_format(ds, '%Y-%m-%d', '%Y%m') }}", "2024-03-12 202403"),
        ("{{ logical_date.add(days=1).strftime('%Y-%m-%d') }}", "2024-03-06"),
        ("{{ data_interval_end.subtract(macros.timedelta(hours=7)) }}", "2024-03-04T23:07:08+00:00"),
    ];
    for (template, expected) in cases {
        assert_eq!(render(template, &ctx).expect(template), expected, "{template}");
    }
    let error = render("{{ upstream.extract.path }}", &ctx).expect_err("no such output");
    assert!(error.message.contains("upstream task `extract` has no output `path`"), "{}", error.message);
    let error = render("{{ upstream.load.rows }}", &ctx).expect_err("no such upstream");
    assert!(error.message.contains("`load` is not a direct upstream task"), "{}", error.message);
}

#[test]
fn templates_render_airflow_variables() {
    let ctx = template_context();
    let cases = [
        ("{{ ds }} {{ ds_nodash }}", "2024-03-05 20240305"),
        ("{{ ts }} {{ ts_nodash }}", "2024-03-05T06:07:08+00:00 20240305T060708"),
        ("{{ logical_date }} {{ logical_date.strftime('%Y/%m') }}", "2024-03-05T06:07:08+00:00 2024/03"),
        ("{{ data_interval_start }} {{ data_interval_end.day }}", "2024-03-04T06:07:08+00:00 5"),
        (
            "{{ run_id }} {{ pipeline_id }} {{ task_id }} {{ try_number }}",
            "manual__2024-03-05T06:07:08+00:00 exec_test load 2",
        ),
        ("{{ params.greeting }} {{ params.limit * 2 }} {{ params.tags | join(',') }}", "hi 10 a,b"),
        ("{{ var.value.region }} {{ var.json.limits.rows }} {{ var.value.get('nope', 'dflt') }}", "eu-west 500 dflt"),
        ("{{ conn.warehouse.host }}:{{ conn.warehouse.port }} {{ conn.warehouse.login }}", "db.internal:5432 loader"),
        ("{{ conn.warehouse.schema }} {{ conn.warehouse.database }} {{ conn.warehouse }}", "mlsp mlsp warehouse"),
        ("{% if params.missing is defined %}yes{% else %}no{% endif %}", "no"),
    ];
    for (template, expected) in cases {
        assert_eq!(render(template, &ctx).expect(template), expected, "{template}");
    }
    assert_eq!(render("{{ conn.warehouse.uri }}", &ctx).expect("uri"), warehouse().uri());
}

#[test]
fn templates_are_strict_about_undefined_names() {
    let ctx = template_context();
    let cases = [
        ("{{ params.nope }}", "`params.nope` is undefined (the run has no param `nope`)"),
        ("{{ conn.other.host }}", "`conn.other` is undefined (the task does not declare connection `other`)"),
        ("{{ var.value.missing }}", "`var.value.missing` is undefined (no variable `missing` is set)"),
        ("{{ var.json.broken }}", "`var.json.broken` is undefined (variable `broken` is not valid JSON)"),
        ("{{ dag }}", "`dag` is undefined (it is not a template variable; the variables are ds, ds_nodash, ts"),
        (
            "a\n{{ conn.warehouse.pasword }}",
            "`conn.warehouse.pasword` is undefined at line 2 (a connection has no attribute `pasword`",
        ),
        ("{% if params.nope %}x{% endif %}", "`params.nope` is undefined"),
        ("{{ ds | nosuchfilter }}", "unknown filter"),
    ];
    for (template, expected) in cases {
        let error = render(template, &ctx).expect_err(template);
        assert!(error.message.starts_with(expected), "{template}: {}", error.message);
        assert!(!error.message.contains('\n'), "one line: {}", error.message);
    }
}

#[test]
fn a_bad_run_date_fails_only_the_templates_that_use_it() {
    let run = RunInfo { logical_date: "yesterday".into(), ..run_info("t") };
    let ctx = TemplateContext::new(&run, &Value::Null, Arc::default(), &BTreeMap::new());
    assert_eq!(render("{{ run_id }}", &ctx).expect("no date needed"), "manual__2024-03-05T06:07:08+00:00");
    let error = render("{{ ds }}", &ctx).expect_err("needs the date");
    assert_eq!(error.message, "`ds` is undefined (the run's logical date `yesterday` is not an RFC 3339 date-time)");
}

#[test]
fn a_run_fills_every_name_the_compiler_lets_a_template_use() {
    // One list (`sluice_contract::template`): what the compiler accepts is what a run has.
    assert_eq!(template_context().names(), {
        let mut names: Vec<String> = TEMPLATE_VARIABLES.iter().map(|s| s.to_string()).collect();
        names.sort();
        names
    });
}

#[tokio::test]
async fn an_undefined_name_fails_the_task_before_anything_runs() {
    let (result, lines) = run("shell_undefined", input("shell_undefined", json!({}), vec![])).await;
    assert_eq!(
        result.expect_err("strict").message,
        "cannot render the shell command: `params.nope` is undefined (the run has no param `nope`)"
    );
    assert!(lines.is_empty(), "nothing ran: {}", texts(&lines));
}

// ---------------------------------------------------------------------------------------
// HTTP

/// What the test server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    authorization: String,
    content_type: String,
    x_try: String,
    body: String,
}

/// An HTTP server on 127.0.0.1:<free port>: `/down` answers 503, `/slow` after 10s,
/// anything else 201 with a JSON echo.
async fn http_server() -> (u16, Arc<std::sync::Mutex<Vec<Seen>>>) {
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: String| {
        let record = record.clone();
        async move {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let request = Seen {
                method: method.to_string(),
                path: uri.path().to_string(),
                authorization: header("authorization"),
                content_type: header("content-type"),
                x_try: header("x-try"),
                body,
            };
            record.lock().expect("lock").push(request.clone());
            match uri.path() {
                "/down" => {
                    (StatusCode::SERVICE_UNAVAILABLE, format!("backend down for maintenance {}", "x".repeat(600)))
                }
                "/slow" => {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    (StatusCode::OK, "late".to_string())
                }
                _ => (StatusCode::CREATED, json!({ "received": request.path, "body": request.body }).to_string()),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, seen)
}

fn api(port: u16, schema: &str) -> Connection {
    Connection {
        id: "api".into(),
        conn_type: "http".into(),
        host: Some("127.0.0.1".into()),
        port: Some(port),
        schema: Some(schema.into()),
        login: Some("user".into()),
        password: Some("pa:ss".into()),
        ..Connection::default()
    }
}

#[tokio::test]
async fn http_sends_the_rendered_request_with_basic_auth() {
    let (port, seen) = http_server().await;
    let task_input = input("http_post", json!({ "greeting": "hi" }), vec![api(port, "http")]);
    let (result, lines) = run("http_post", task_input).await;
    let outputs = result.expect("201 is expected");
    assert_eq!(outputs["status"], 201);
    assert_eq!(outputs["body"]["received"], "/api/runs/20240305", "the body is parsed as JSON");

    let seen = seen.lock().expect("lock")[0].clone();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/api/runs/20240305");
    assert_eq!(seen.authorization, "Basic dXNlcjpwYTpzcw==", "user:pa:ss");
    assert_eq!(seen.content_type, "application/json");
    assert_eq!(seen.x_try, "2");
    let body: Value = serde_json::from_str(&seen.body).expect("a JSON body");
    assert_eq!(body, json!({ "greeting": "hi", "run": "manual__2024-03-05T06:07:08+00:00" }));
    assert!(texts(&lines).contains(&format!("POST http://127.0.0.1:{port}/api/runs/20240305")), "{}", texts(&lines));
}

#[tokio::test]
async fn http_unexpected_status_fails_with_the_body() {
    let (port, seen) = http_server().await;
    let (result, _) = run("http_unexpected", input("http_unexpected", json!({}), vec![api(port, "http")])).await;
    let message = result.expect_err("503 is not 200").message;
    assert!(
        message.starts_with(&format!(
            "GET http://127.0.0.1:{port}/down returned status 503, expected 200; the body begins: backend down for maintenance xxx"
        )),
        "{message}"
    );
    let quoted = message.split("the body begins: ").nth(1).expect("quoted body");
    assert_eq!(quoted.len(), 500, "the first 500 bytes");
    assert_eq!(seen.lock().expect("lock")[0].path, "/down", "the endpoint got a `/`");
}

#[tokio::test]
async fn http_times_out_at_the_task_timeout() {
    let (port, _) = http_server().await;
    let (result, _) = run("http_slow", input("http_slow", json!({}), vec![api(port, "http")])).await;
    assert_eq!(result.expect_err("slow").message, "timed out after 1s");
}

/// The `api` connection to 127.0.0.1:`port` with these extras.
fn api_with(port: u16, extra: Value) -> Connection {
    let Value::Object(extra) = extra else { panic!("extras are an object") };
    Connection { extra, ..api(port, "http") }
}

#[tokio::test]
async fn http_a_server_that_never_answers_fails_the_task_at_its_deadline() {
    let server = support::servers::Stalled::start().await;
    let conn = api_with(server.port, json!({ "timeout": 1 }));
    let (result, _) = run("http_unbounded", input("http_unbounded", json!({}), vec![conn])).await;
    let message = result.expect_err("no answer").message;
    assert_eq!(
        message,
        format!(
            "GET http://127.0.0.1:{}/feed: no complete answer within the 1s deadline \
             (set `extra.timeout` on connection `api` to change it)",
            server.port
        )
    );
    assert_eq!(server.accepted(), 1, "the request reached the server");
    // The abandoned request's connection is closed, not left to linger.
    server.until(|s| s.open() == 0).await;
}

#[tokio::test]
async fn http_an_endless_body_fails_the_task_at_the_cap_and_is_read_no_further() {
    let (port, server) = support::servers::endless_body().await;
    let (result, lines) = run("http_unbounded", input("http_unbounded", json!({}), vec![api(port, "http")])).await;
    let message = result.expect_err("too large").message;
    assert_eq!(
        message,
        format!("GET http://127.0.0.1:{port}/feed returned a body larger than the 16 MiB cap; the rest was not read")
    );
    // The worker hung up: the server's writes fail. What it got written is the cap plus
    // what the sockets buffer, not an unbounded stream.
    let written = server.await.expect("server");
    assert!(written < 64 * 1024 * 1024, "{written} bytes written before the client hung up");
    assert!(!texts(&lines).contains("HTTP 200"), "no output from a cut body: {}", texts(&lines));
}

#[tokio::test]
async fn http_extra_timeout_must_be_a_number_of_seconds() {
    let conn = api_with(1, json!({ "timeout": "soon" }));
    let (result, _) = run("http_unbounded", input("http_unbounded", json!({}), vec![conn])).await;
    assert_eq!(
        result.expect_err("refused").message,
        r#"connection `api`: `extra.timeout` must be a positive number of seconds, not "soon""#
    );
}

// ---------------------------------------------------------------------------------------
// SQL

async fn run_sql(task_id: &str, conn: Connection, sql: &str) -> Result<Value, TaskError> {
    run(task_id, input(task_id, json!({ "sql": sql }), vec![conn])).await.0
}

#[tokio::test]
async fn sql_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("test.db");
    let lite = Connection {
        id: "lite".into(),
        conn_type: "sqlite".into(),
        database: Some(path.display().to_string()),
        ..Connection::default()
    };

    let created = run_sql(
        "sql_lite",
        lite.clone(),
        "CREATE TABLE t (id INTEGER, name TEXT, score REAL, flag BOOLEAN, empty TEXT);
         INSERT INTO t VALUES (1, 'a', 1.5, 1, NULL), (2, 'b', 2.25, 0, NULL)",
    )
    .await
    .expect("create and insert");
    assert_eq!(created, json!({ "rows_affected": 2, "rows": [] }));

    let selected = run_sql("sql_lite", lite.clone(), "SELECT * FROM t ORDER BY id").await.expect("select");
    assert_eq!(
        selected,
        json!({ "rows_affected": 2, "rows": [
            { "id": 1, "name": "a", "score": 1.5, "flag": 1, "empty": null },
            { "id": 2, "name": "b", "score": 2.25, "flag": 0, "empty": null },
        ]})
    );

    let updated = run_sql("sql_lite", lite.clone(), "UPDATE t SET score = score * 2").await.expect("update");
    assert_eq!(updated, json!({ "rows_affected": 2, "rows": [] }));

    let many = run_sql(
        "sql_lite",
        lite.clone(),
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 150) SELECT x FROM c",
    )
    .await
    .expect("150 rows");
    assert_eq!(many["rows_affected"], 150);
    assert_eq!(many["rows"].as_array().map(Vec::len), Some(100), "at most 100 rows are kept");

    let error = run_sql("sql_lite", lite, "SELECT * FROM missing").await.expect_err("no table");
    assert!(error.message.starts_with("the statement failed on `lite`: "), "{}", error.message);
    assert!(error.message.contains("no such table: missing"), "{}", error.message);
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

#[tokio::test]
async fn sql_on_postgres() {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let table = format!("sluice_exec_test_{}_{nanos}", std::process::id());

    let script = format!(
        "CREATE TABLE {table} (id int, big bigint, price numeric(10,2), ratio float8, ok boolean, name text,
                               at timestamptz, doc jsonb, nothing text);
         INSERT INTO {table} VALUES
           (1, 9007199254740993, 12.50, 0.25, true, 'a', '2024-03-05 06:07:08+00', '{{\"k\": [1, 2]}}', NULL),
           (2, -1, 3, 1e300, false, 'it''s; fine', '2024-03-05 06:07:08+00', 'null', NULL);"
    );
    let results = [
        run_sql("sql_pg", pg(), &script).await,
        run_sql(
            "sql_pg",
            pg(),
            // A timestamptz prints in the session's time zone: pin it.
            &format!("SELECT id, big, price, ratio, ok, name, at AT TIME ZONE 'UTC' AS at, doc, nothing FROM {table} ORDER BY id"),
        )
        .await,
        run_sql("sql_pg", pg(), &format!("UPDATE {table} SET ok = NOT ok")).await,
        run_sql("sql_pg", pg(), &format!("DELETE FROM {table} WHERE id = 2 RETURNING id, name")).await,
        run_sql("sql_pg", pg(), "SELECT * FROM sluice_no_such_table").await,
    ];
    let dropped = run_sql("sql_pg", pg(), &format!("DROP TABLE {table}")).await;
    let [created, selected, updated, deleted, missing] = results;

    assert_eq!(created.expect("create and insert"), json!({ "rows_affected": 2, "rows": [] }));
    assert_eq!(
        selected.expect("select"),
        json!({ "rows_affected": 2, "rows": [
            { "id": 1, "big": 9007199254740993_i64, "price": 12.5, "ratio": 0.25, "ok": true, "name": "a",
              "at": "2024-03-05 06:07:08", "doc": { "k": [1, 2] }, "nothing": null },
            { "id": 2, "big": -1, "price": 3.0, "ratio": 1e300, "ok": false, "name": "it's; fine",
              "at": "2024-03-05 06:07:08", "doc": null, "nothing": null },
        ]})
    );
    assert_eq!(updated.expect("update"), json!({ "rows_affected": 2, "rows": [] }));
    assert_eq!(deleted.expect("delete"), json!({ "rows_affected": 1, "rows": [{ "id": 2, "name": "it's; fine" }] }));
    let message = missing.expect_err("no table").message;
    assert!(message.starts_with("the statement failed on `pg`: "), "{message}");
    assert!(message.contains("sluice_no_such_table"), "{message}");
    assert_eq!(dropped.expect("drop"), json!({ "rows_affected": 0, "rows": [] }));
}

#[tokio::test]
async fn sql_times_out_and_masks_the_password_in_errors() {
    let (result, _) = run("sql_pg_slow", input("sql_pg_slow", json!({}), vec![pg()])).await;
    assert_eq!(result.expect_err("slow").message, "timed out after 1s");

    // The server rejects this login; the error may not quote the password, nor may the log.
    let wrong =
        Connection { login: Some("no-such-user-hunter2-xyz".into()), password: Some("hunter2-xyz".into()), ..pg() };
    let (result, lines) = run("sql_pg", input("sql_pg", json!({ "sql": "SELECT 1" }), vec![wrong])).await;
    let message = result.expect_err("no such role").message;
    let prefix = format!("cannot connect to `pg` (postgres at {}): ", sluice_testkit::postgres::address());
    assert!(message.starts_with(&prefix), "{message}");
    assert!(message.contains("no-such-user-***"), "the password inside the user name is masked: {message}");
    assert!(!texts(&lines).contains("hunter2-xyz"));
}

// ---------------------------------------------------------------------------------------
// Rust

#[tokio::test]
async fn rust_bodies_run_and_panics_are_failures() {
    let (result, lines) = run("rust_ok", input("rust_ok", json!({}), vec![])).await;
    assert_eq!(result.expect("ok"), json!({ "message": "done" }));
    assert_eq!(texts(&lines), "[info] hello from rust_ok\n");

    let (result, _) = run("rust_panics", input("rust_panics", json!({}), vec![])).await;
    assert_eq!(result.expect_err("panics").message, "the task body panicked: boom 42");

    let (result, _) = run("rust_missing", input("rust_missing", json!({}), vec![])).await;
    assert_eq!(
        result.expect_err("no body").message,
        "this binary has no body for Rust task `rust_missing` of pipeline `exec_test`: rebuild it from the current pipelines file"
    );

    let (result, _) = run("rust_slow", input("rust_slow", json!({}), vec![])).await;
    assert_eq!(result.expect_err("slow").message, "timed out after 1s; the task body was cancelled");
}

#[tokio::test]
async fn a_blocking_rust_body_holds_no_runtime_thread_and_still_times_out() {
    // On this test's single-threaded runtime, a body that blocked a runtime thread would stop
    // everything; the gate opens by itself late, so such a failure cannot hang the suite.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(30));
        BLOCKING.open();
    });
    let blocked = tokio::spawn(run("rust_blocks", input("rust_blocks", json!({}), vec![])));
    until(&BLOCKING.entered, "the blocking body started").await;

    let (result, _) = run("rust_ok", input("rust_ok", json!({}), vec![])).await;
    assert!(result.is_ok(), "another body runs meanwhile: {result:?}");
    assert!(!BLOCKING.returned.load(SeqCst), "... while the first one is still blocked");

    let (result, _) = blocked.await.expect("joined");
    assert_eq!(result.expect_err("timed out").message, "timed out after 1s; the task body was cancelled");
    assert!(!BLOCKING.returned.load(SeqCst), "the try failed on time, its body still blocked");

    // Once its blocking call returns, the body is dropped at its next `.await`.
    BLOCKING.open();
    until(&BLOCKING.dropped, "the body was dropped").await;
    assert!(BLOCKING.returned.load(SeqCst) && !BLOCKING.went_on.load(SeqCst), "it went no further");
}

// ---------------------------------------------------------------------------------------
// The log

#[test]
fn the_log_masks_secrets_and_keeps_the_last_lines() {
    let (tx, mut rx) = mpsc::channel(16);
    let log = Logger::streaming(tx);
    log.mask("hunter2");
    log.mask("hunter2-long");
    log.mask("ab"); // too short to mask
    log.info("password=hunter2-long and hunter2, ab");
    log.stderr("plain");
    assert_eq!(log.lines(), ["password=*** and ***, ab", "plain"]);
    assert_eq!(log.redact("x hunter2 y"), "x *** y");
    let first = rx.try_recv().expect("streamed");
    assert_eq!((first.stream, first.text.as_str()), (LogStream::Info, "password=*** and ***, ab"));
    assert_eq!(rx.try_recv().expect("streamed").stream, LogStream::Stderr);

    log.close();
    log.info("after close");
    assert!(matches!(rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));
    assert_eq!(log.lines().last().map(String::as_str), Some("after close"));

    let log = Logger::default();
    for i in 0..Logger::MAX_KEPT_LINES + 5 {
        log.stdout(format!("line {i}"));
    }
    assert_eq!(log.lines().len(), Logger::MAX_KEPT_LINES);
    assert_eq!(log.lines()[0], "line 5");
    assert_eq!(log.dropped(), 5);
    assert!(!format!("{log:?}").contains("line 5"), "Debug prints counts only");
}

/// A command that prints faster than its log is consumed is slowed down to the consumer's
/// pace: its output reader waits for room in the log's channel before it reads the pipe
/// again, so the pipe fills and the command blocks. The observable: how far the command
/// (which writes its progress to a file after each line) ever gets ahead of the lines the
/// consumer has received. Without backpressure it finishes at once, thousands ahead.
#[tokio::test]
async fn a_command_printing_faster_than_its_log_is_read_is_slowed_down() {
    const LINES: u64 = 2_000;
    const CHANNEL: usize = 8;
    let dir = tempfile::tempdir().expect("temp dir");
    let progress = dir.path().join("progress");
    // ~1 KB lines: the pipe (64 KiB) holds ~65 of them, the reader's buffer (8 KiB) ~8.
    let cmd =
        format!("for i in $(seq 1 {LINES}); do printf '%s %01000d\\n' $i 0; echo $i > '{}'; done", progress.display());
    let (tx, mut rx) = mpsc::channel(CHANNEL);
    let mut task_input = input("shell_cmd", json!({ "cmd": cmd }), vec![]);
    task_input.log = Logger::streaming(tx);
    let running =
        tokio::spawn(async move { execute(&REGISTRY, &PIPELINES[0], spec("shell_cmd"), task_input, &env()).await });

    let mut received = 0;
    let mut most_ahead = 0;
    while let Some(line) = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.expect("a line within 60s") {
        let Some(n) = line.text.split(' ').next().and_then(|n| n.parse::<u64>().ok()) else { continue };
        assert_eq!(n, received + 1, "no line is lost or out of order");
        received = n;
        let written: u64 = std::fs::read_to_string(&progress).ok().and_then(|p| p.trim().parse().ok()).unwrap_or(0);
        most_ahead = most_ahead.max(written.saturating_sub(received));
        // A slow consumer: the store writing a batch.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    running.await.expect("no panic").expect("the command succeeds");
    assert_eq!(received, LINES, "every line arrived, in order");
    // The channel, the line waiting for room, the reader's buffer and the pipe: ~85 lines.
    assert!(most_ahead <= 150, "the command ran {most_ahead} lines ahead of its log's consumer");
}

/// A Rust body's `log.info` never waits: with the channel full a line is kept in memory
/// only and counted, the count is said in the log as soon as there is room, and what is
/// still owed when the log closes is sent after the last line.
#[tokio::test]
async fn a_full_log_channel_counts_what_it_could_not_stream() {
    let (tx, mut rx) = mpsc::channel(4);
    let log = Logger::streaming(tx);
    for i in 0..10 {
        log.info(format!("line {i}"));
    }
    assert_eq!(log.not_streamed(), 6, "the channel held 4");
    let drained: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok()).map(|l| l.text).collect();
    assert_eq!(drained, ["line 0", "line 1", "line 2", "line 3"]);
    log.info("after room");
    let next: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok()).map(|l| l.text).collect();
    assert_eq!(
        next,
        ["[6 lines of the log were not kept: the task wrote them faster than the log could be stored]", "after room"]
    );
    assert_eq!(log.lines().len(), 11, "memory keeps every line (within its bounds)");

    for i in 0..5 {
        log.info(format!("again {i}"));
    }
    log.close();
    let mut rest = Vec::new();
    while let Some(line) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("the stream ends") {
        rest.push(line.text);
    }
    assert_eq!(
        rest,
        [
            "again 0",
            "again 1",
            "again 2",
            "again 3",
            "[1 line of the log was not kept: the task wrote it faster than the log could be stored]"
        ]
    );
    assert_eq!(log.not_streamed(), 7);
}

/// Memory holds at most the kept bounds, whatever a body writes: long lines are cut, and
/// the oldest lines go first.
#[test]
fn the_log_in_memory_is_bounded_in_bytes() {
    let log = Logger::default();
    log.info("x".repeat(Logger::MAX_LINE_BYTES * 3));
    let first = &log.lines()[0];
    assert!(first.len() < Logger::MAX_LINE_BYTES + 64, "{}", first.len());
    assert!(first.ends_with("[line cut at 65536 bytes]"));
    for _ in 0..100 {
        log.info("é".repeat(Logger::MAX_LINE_BYTES));
    }
    let kept: usize = log.lines().iter().map(String::len).sum();
    assert!(kept <= Logger::MAX_KEPT_BYTES, "{kept} bytes kept");
    assert!(log.lines().iter().all(|l| l.ends_with("[line cut at 65536 bytes]")));
    assert!(log.dropped() > 0);
}

#[tokio::test]
async fn a_missing_database_is_named_with_its_sqlstate_not_a_server_source_line() {
    let missing = Connection { database: Some("sluice_no_such_database".into()), ..pg() };
    let (result, _) = run("sql_pg", input("sql_pg", json!({ "sql": "SELECT 1" }), vec![missing])).await;
    let message = result.expect_err("no such database").message;
    assert_eq!(
        message,
        format!(
            "cannot connect to `pg` (postgres at {}): database \"sluice_no_such_database\" does not exist (SQLSTATE 3D000)",
            sluice_testkit::postgres::address()
        )
    );
}

/// The rows of one statement run as task `sql_pg` on `pg()`, with `env`'s connections.
async fn pg_rows(env: &ExecEnv, sql: &str) -> Vec<Value> {
    let task = input("sql_pg", json!({ "sql": sql }), vec![pg()]);
    let result = execute(&REGISTRY, &PIPELINES[0], spec("sql_pg"), task, env).await;
    let outputs = result.unwrap_or_else(|e| panic!("{sql}: {}", e.message));
    outputs["rows"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn sql_tasks_reuse_a_connection_and_find_it_as_a_fresh_session() {
    let env = env();
    let marker = "sluice_reuse_probe";
    let first = pg_rows(
        &env,
        &format!(
            "SET application_name = '{marker}'; SET search_path TO nowhere; \
         CREATE TEMP TABLE leftover (x int); SELECT pg_backend_pid() AS pid, pg_advisory_lock(4242) AS locked"
        ),
    )
    .await;
    let pid = first[0]["pid"].clone();
    let rows = pg_rows(
        &env,
        "SELECT pg_backend_pid() AS pid, current_setting('search_path') AS search_path, \
             current_setting('application_name') AS app, to_regclass('pg_temp.leftover') IS NULL AS no_temp, \
             (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks",
    )
    .await;
    let row = &rows[0];
    assert_eq!(row["pid"], pid, "the second task runs on the first one's server process: {row}");
    assert_eq!(row["search_path"], json!("\"$user\", public"), "{row}");
    assert_eq!(row["no_temp"], json!(true), "{row}");
    assert_eq!(row["locks"], json!(0), "{row}");
    assert_ne!(row["app"], json!(marker), "{row}");
}

#[tokio::test]
async fn a_transaction_a_sql_task_leaves_open_is_rolled_back() {
    let (env, table) = (env(), "sluice_left_open");
    pg_rows(&env, &format!("DROP TABLE IF EXISTS {table}")).await;
    pg_rows(&env, &format!("BEGIN; CREATE TABLE {table} (x int)")).await;
    let rows = pg_rows(&env, &format!("SELECT to_regclass('{table}') IS NULL AS gone")).await;
    assert_eq!(rows[0]["gone"], json!(true), "{rows:?}");
}
