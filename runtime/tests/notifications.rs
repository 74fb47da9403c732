//! Alerts and SLAs against real receivers on loopback: a webhook (axum), an SMTP server
//! speaking the protocol, and a file; on both store backends, with a manual clock.

mod support;

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;
use sluice_runtime::Registry;
use sluice_runtime::notify::Notifier;
use sluice_runtime::resolver::Resolver;
use sluice_runtime::scheduler::{Liveness, Scheduler};
use sluice_runtime::spec::*;
use sluice_runtime::store::{NotificationRow, Outcome, Queued, Store};
use sluice_testkit::certs::TestCa;
use sluice_testkit::smtp::{SmtpServer, SmtpTls};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A webhook receiver: records each JSON body and answers with the status it is told to.
#[derive(Clone)]
struct Webhook {
    bodies: Arc<Mutex<Vec<Value>>>,
    status: Arc<AtomicU16>,
    port: u16,
    /// Told of each body received.
    received: Arc<tokio::sync::Notify>,
}

impl Webhook {
    async fn start() -> Webhook {
        async fn receive(State(hook): State<Webhook>, body: axum::Json<Value>) -> StatusCode {
            hook.bodies.lock().expect("lock").push(body.0);
            hook.received.notify_waiters();
            StatusCode::from_u16(hook.status.load(Ordering::SeqCst)).expect("status")
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let hook = Webhook {
            bodies: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            port,
            received: Arc::new(tokio::sync::Notify::new()),
        };
        let app = axum::Router::new().route("/hooks/sluice", axum::routing::post(receive)).with_state(hook.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        hook
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().expect("lock").clone()
    }
}

/// One received email: the envelope's recipients and the message text.
type Mail = (Vec<String>, String);

/// A minimal SMTP server: accepts every command and keeps each message's envelope and data.
#[derive(Clone, Default)]
struct Smtp {
    messages: Arc<Mutex<Vec<Mail>>>,
}

impl Smtp {
    async fn start() -> (Smtp, u16) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let smtp = Smtp::default();
        let server = smtp.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move { server.session(socket).await });
            }
        });
        (smtp, port)
    }

    async fn session(&self, socket: tokio::net::TcpStream) -> std::io::Result<()> {
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"220 test ESMTP\r\n").await?;
        let mut recipients = Vec::new();
        while let Some(line) = lines.next_line().await? {
            let upper = line.to_ascii_uppercase();
            if upper.starts_with("RCPT TO:") {
                recipients.push(line[8..].trim().trim_matches(['<', '>']).to_string());
            }
            if upper == "DATA" {
                write.write_all(b"354 go ahead\r\n").await?;
                let mut data = String::new();
                while let Some(l) = lines.next_line().await? {
                    if l == "." {
                        break;
                    }
                    data.push_str(&l);
                    data.push('\n');
                }
                self.messages.lock().expect("lock").push((std::mem::take(&mut recipients), data));
            }
            let reply: &[u8] = if upper == "QUIT" { b"221 bye\r\n" } else { b"250 ok\r\n" };
            write.write_all(reply).await?;
            if upper == "QUIT" {
                break;
            }
        }
        Ok(())
    }
}

fn connection(id: &'static str, conn_type: ConnType, port: u16, extra: &'static str) -> ConnectionSpec {
    ConnectionSpec {
        id,
        conn_type,
        description: "",
        host: Some("127.0.0.1"),
        port: Some(port),
        schema: Some("http"),
        database: None,
        login: None,
        password_env: None,
        extra_json: extra,
        standalone_uri: None,
    }
}

fn registry_of(pipelines: Vec<PipelineSpec>, connections: Vec<ConnectionSpec>) -> &'static Registry {
    Box::leak(Box::new(Registry {
        source: "test.yaml",
        deployment: &DEPLOYMENT,
        connections: Box::leak(connections.into_boxed_slice()),
        pools: &[],
        datasets: &[],
        pipelines: Box::leak(pipelines.into_boxed_slice()),
        sources: &[],
        python_context: "",
        dispatch: no_dispatch,
    }))
}

fn notifier(store: &Store, registry: &'static Registry) -> Notifier {
    Notifier::new(store.clone(), Resolver::from_env(registry).standalone(None), "http://sluice.example:8080")
}

/// Runs every queued task instance of `queued` to `outcome(task_id)`; returns what the
/// finishes queued next.
async fn finish_all(
    store: &Store,
    pipeline: &PipelineSpec,
    queued: Vec<Queued>,
    outcome: impl Fn(&str) -> Outcome,
) -> Vec<Queued> {
    let mut next = Vec::new();
    for q in queued {
        let claimed =
            store.claim(q.ti_id, "w1", std::slice::from_ref(pipeline)).await.expect("claim").expect("claimed");
        let done = outcome(&claimed.task_id);
        next.extend(store.finish(pipeline, claimed.ti_id, claimed.try_number, &done, 32).await.expect("finish"));
    }
    next
}

fn by_event<'a>(bodies: &'a [Value], event: &str, task: Option<&str>) -> Vec<&'a Value> {
    bodies.iter().filter(|b| b["event"] == event && b["task"].as_str() == task).collect()
}

#[tokio::test]
async fn webhook_hears_of_retries_failures_successes_and_the_run() {
    let hook = Webhook::start().await;
    let flaky = TaskSpec {
        retry: RetryPolicy { retries: 1, retry_delay_secs: 60, exponential_backoff: false, max_retry_delay_secs: None },
        on_failure: &["hook"],
        on_retry: &["hook"],
        ..task("flaky", &[])
    };
    let fine = TaskSpec { on_success: &["hook"], ..task("fine", &[]) };
    let tasks: &'static [TaskSpec] = Box::leak(Box::new([flaky, fine]));
    let pipeline = PipelineSpec { on_failure: &["hook"], ..pipeline("alerting", Schedule::Manual, tasks) };
    let registry = registry_of(
        vec![pipeline],
        vec![connection("hook", ConnType::Http, hook.port, r#"{"endpoint": "/hooks/sluice"}"#)],
    );
    let p = &registry.pipelines[0];
    for db in &BACKENDS {
        hook.bodies.lock().expect("lock").clear();
        let (store, clock) = store(db).await;
        store.sync_pipelines(registry).await.expect("sync");
        let collect = Arc::new(Collect::default());
        let scheduler = Scheduler::new(registry, store.clone(), collect.clone());
        let run = sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
        scheduler.tick().await.expect("tick");
        let failing = |task: &str| {
            if task == "flaky" {
                Outcome::Failed("exit code 3".into())
            } else {
                Outcome::Success(serde_json::json!({}))
            }
        };
        assert!(finish_all(&store, p, collect.take(), failing).await.is_empty(), "flaky waits for its retry");
        assert_eq!(notifier(&store, registry).deliver_due().await, 2, "retry + success");
        clock.advance_secs(61);
        scheduler.tick().await.expect("tick");
        finish_all(&store, p, collect.take(), failing).await;
        assert_eq!(notifier(&store, registry).deliver_due().await, 2, "failure + run failure");
        assert_eq!(notifier(&store, registry).deliver_due().await, 0, "each is sent once");

        let bodies = hook.bodies();
        assert_eq!(bodies.len(), 4, "{bodies:#?}");
        let retry = by_event(&bodies, "retry", Some("flaky"));
        assert_eq!(retry.len(), 1, "{bodies:#?}");
        assert_eq!(retry[0]["try"], 1);
        assert_eq!(retry[0]["state"], "up_for_retry");
        assert_eq!(retry[0]["error"], "exit code 3");
        assert_eq!(retry[0]["pipeline"], "alerting");
        assert_eq!(retry[0]["run"], run.run_id.as_str());
        let failure = by_event(&bodies, "failure", Some("flaky"));
        assert_eq!((failure[0]["try"].as_i64(), failure[0]["state"].as_str()), (Some(2), Some("failed")));
        let encoded_run = run.run_id.replace(':', "%3A").replace('+', "%2B");
        assert_eq!(
            failure[0]["log_url"],
            format!("http://sluice.example:8080/api/v1/dags/alerting/dagRuns/{encoded_run}/taskInstances/flaky/logs/2")
        );
        let success = by_event(&bodies, "success", Some("fine"));
        assert_eq!((success[0]["try"].as_i64(), success[0]["state"].as_str()), (Some(1), Some("success")));
        let run_failed = by_event(&bodies, "failure", None);
        assert_eq!(run_failed.len(), 1, "the run's own failure: {bodies:#?}");
        assert_eq!(run_failed[0]["state"], "failed");
        assert_eq!(run_failed[0]["log_url"], Value::Null);
        assert_eq!(
            run_failed[0]["run_url"],
            format!("http://sluice.example:8080/api/v1/dags/alerting/dagRuns/{encoded_run}")
        );
        let sent = store.notifications(Some("alerting"), 10).await.expect("list");
        assert!(sent.iter().all(|n| n.state == "sent" && n.attempts == 1), "{sent:?}");
    }
}

#[tokio::test]
async fn a_failing_receiver_is_retried_with_backoff_then_given_up() {
    let hook = Webhook::start().await;
    let tasks: &'static [TaskSpec] = Box::leak(Box::new([TaskSpec { on_success: &["hook"], ..task("a", &[]) }]));
    let registry = registry_of(
        vec![pipeline("retrying", Schedule::Manual, tasks)],
        vec![connection("hook", ConnType::Http, hook.port, r#"{"endpoint": "/hooks/sluice"}"#)],
    );
    let p = &registry.pipelines[0];
    for db in &BACKENDS {
        hook.bodies.lock().expect("lock").clear();
        hook.status.store(503, Ordering::SeqCst);
        let (store, clock) = store(db).await;
        store.sync_pipelines(registry).await.expect("sync");
        let collect = Arc::new(Collect::default());
        let scheduler = Scheduler::new(registry, store.clone(), collect.clone());
        sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
        scheduler.tick().await.expect("tick");
        finish_all(&store, p, collect.take(), |_| Outcome::Success(serde_json::json!({}))).await;
        let notifier = notifier(&store, registry);
        assert_eq!(notifier.deliver_due().await, 0);
        assert_eq!(notifier.deliver_due().await, 0, "not again before its backoff");
        let pending = store.notifications(None, 1).await.expect("list");
        assert_eq!((pending[0].state.as_str(), pending[0].attempts), ("pending", 1));
        assert!(pending[0].last_error.as_deref().is_some_and(|e| e.contains("503")), "{pending:?}");
        let next = store.next_notification_at().await.expect("next").expect("a retry is due later");
        assert_eq!(next - store.now(), 10_000_000, "first retry after 10 s");
        // Four more attempts, each after its backoff, all refused: then it is given up.
        for _ in 0..4 {
            clock.advance_secs(600);
            notifier.deliver_due().await;
        }
        let given_up = store.notifications(None, 1).await.expect("list");
        assert_eq!((given_up[0].state.as_str(), given_up[0].attempts), ("failed", 5));
        assert_eq!(hook.bodies().len(), 5, "five attempts reached the receiver");
        assert_eq!(store.next_notification_at().await.expect("next"), None);
        // The receiver recovering changes nothing for a given-up notification.
        hook.status.store(200, Ordering::SeqCst);
        clock.advance_secs(600);
        assert_eq!(notifier.deliver_due().await, 0);
    }
}

#[tokio::test]
async fn sla_misses_are_recorded_and_notified_once() {
    let hook = Webhook::start().await;
    let (smtp, smtp_port) = Smtp::start().await;
    let slow = TaskSpec {
        sla_secs: Some(600),
        on_failure: &["hook", "mail"],
        email: &["oncall@mlsp.example"],
        ..task("slow", &[])
    };
    let quick = TaskSpec { sla_secs: Some(600), on_failure: &["hook"], ..task("quick", &[]) };
    let tasks: &'static [TaskSpec] = Box::leak(Box::new([quick, slow]));
    let hourly = PipelineSpec { schedule_text: "0 * * * *", ..pipeline("hourly", Schedule::Cron("0 * * * *"), tasks) };
    let registry = registry_of(
        vec![hourly],
        vec![
            connection("hook", ConnType::Http, hook.port, r#"{"endpoint": "/hooks/sluice"}"#),
            // A relay on the private network: neither implicit TLS nor STARTTLS.
            connection(
                "mail",
                ConnType::Smtp,
                smtp_port,
                r#"{"from": "sluice@mlsp.example", "disable_ssl": true, "disable_tls": true}"#,
            ),
        ],
    );
    let p = &registry.pipelines[0];
    for db in &BACKENDS {
        hook.bodies.lock().expect("lock").clear();
        smtp.messages.lock().expect("lock").clear();
        let (store, clock) = store(db).await;
        store.sync_pipelines(registry).await.expect("sync");
        let collect = Arc::new(Collect::default());
        // `slow` runs with no worker heartbeating it: not a zombie within this test's hour.
        let patient =
            Liveness { zombie_threshold: Duration::from_secs(86_400), queued_timeout: Duration::from_secs(86_400) };
        let scheduler = Scheduler::new(registry, store.clone(), collect.clone()).with_liveness(patient);
        // At T0 (a full hour) the run of the hour before is due: its deadline is T0 + 10 min.
        let next = scheduler.tick().await.expect("tick");
        let runs = store.runs("hourly", 10).await.expect("runs");
        assert_eq!(runs.len(), 1);
        assert_eq!(next, Some(T0 + 600_000_000), "the scheduler wakes at the SLA deadline");
        let queued = collect.take();
        // `quick` succeeds in time; `slow` is still running at the deadline.
        let mut slow_ti = None;
        for q in queued {
            let claimed = store.claim(q.ti_id, "w1", std::slice::from_ref(p)).await.expect("claim").expect("claimed");
            if claimed.task_id == "quick" {
                clock.advance_secs(60);
                store.finish(p, claimed.ti_id, 1, &Outcome::Success(serde_json::json!({})), 32).await.expect("finish");
            } else {
                slow_ti = Some(claimed.ti_id);
            }
        }
        clock.set(T0 + 599_000_000);
        scheduler.tick().await.expect("tick");
        assert!(store.sla_misses(None, 10).await.expect("misses").is_empty(), "not yet: {}", store.now() - T0);
        clock.advance_secs(1);
        scheduler.tick().await.expect("tick");
        let misses = store.sla_misses(Some("hourly"), 10).await.expect("misses");
        assert_eq!(misses.len(), 1, "{misses:?}");
        assert_eq!((misses[0].task_id.as_str(), misses[0].deadline), ("slow", T0 + 600_000_000));
        assert_eq!(misses[0].run_id, runs[0].run_id);
        // Finishing late and more passes do not record or notify it again.
        store
            .finish(p, slow_ti.expect("slow ran"), 1, &Outcome::Success(serde_json::json!({})), 32)
            .await
            .expect("finish");
        clock.advance_secs(1800);
        scheduler.tick().await.expect("tick");
        assert_eq!(store.sla_misses(None, 10).await.expect("misses").len(), 1);
        let delivered = notifier(&store, registry).deliver_due().await;
        assert_eq!(delivered, 2, "webhook and email for the one miss");
        let bodies = hook.bodies();
        assert_eq!(bodies.len(), 1, "{bodies:#?}");
        assert_eq!(bodies[0]["event"], "sla_miss");
        assert_eq!(bodies[0]["task"], "slow");
        assert_eq!(bodies[0]["state"], "running");
        assert_eq!(bodies[0]["sla_deadline"], sluice_runtime::clock::to_rfc3339(T0 + 600_000_000));
        let messages = smtp.messages.lock().expect("lock").clone();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].0, ["oncall@mlsp.example"]);
        assert!(messages[0].1.contains("Subject: [sluice] SLA missed: hourly.slow"), "{}", messages[0].1);
        assert!(messages[0].1.contains("From: sluice@mlsp.example"), "{}", messages[0].1);
        assert!(messages[0].1.contains("task: slow"), "{}", messages[0].1);
        // Manual runs have no SLA.
        sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
        clock.advance_secs(86_400);
        scheduler.tick().await.expect("tick");
        assert_eq!(
            store.sla_misses(None, 10).await.expect("misses").iter().filter(|m| m.run_id.starts_with("manual")).count(),
            0
        );
    }
}

#[tokio::test]
async fn a_file_target_gets_one_json_line_per_notification() {
    let dir = tempfile::tempdir().expect("dir");
    let path: &'static str = Box::leak(dir.path().join("alerts").display().to_string().into_boxed_str());
    let alerts = ConnectionSpec {
        database: Some(path),
        host: None,
        port: None,
        ..connection("alerts", ConnType::File, 0, "{}")
    };
    let (registry, store) = one_failure(&["alerts"], vec![alerts]).await;
    assert_eq!(notifier(&store, registry).deliver_due().await, 1, "{:?}", store.notifications(None, 5).await);
    let text = std::fs::read_to_string(dir.path().join("alerts/notifications.jsonl")).expect("written");
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(lines.len(), 1);
    assert_eq!((lines[0]["event"].as_str(), lines[0]["error"].as_str()), (Some("failure"), Some("boom")));
}

/// A pipeline whose task `a` tells `targets` of its failure, through these connections;
/// the task has failed once the returned store is handed back.
async fn one_failure(targets: &'static [&'static str], connections: Vec<ConnectionSpec>) -> (&'static Registry, Store) {
    failed(TaskSpec { on_failure: targets, ..task("a", &[]) }, connections).await
}

/// A pipeline of the one task `failing`, run once to failure, through these connections.
async fn failed(failing: TaskSpec, connections: Vec<ConnectionSpec>) -> (&'static Registry, Store) {
    let tasks: &'static [TaskSpec] = Box::leak(Box::new([failing]));
    let registry = registry_of(vec![pipeline("stalling", Schedule::Manual, tasks)], connections);
    let p = &registry.pipelines[0];
    let (store, _) = store(&Db::Sqlite).await;
    store.sync_pipelines(registry).await.expect("sync");
    let collect = Arc::new(Collect::default());
    let scheduler = Scheduler::new(registry, store.clone(), collect.clone());
    sluice_runtime::scheduler::trigger(&store, p, serde_json::json!({}), None).await.expect("trigger");
    scheduler.tick().await.expect("tick");
    finish_all(&store, p, collect.take(), |_| Outcome::Failed("boom".into())).await;
    (registry, store)
}

/// Turns a hang into a failure: far above every deadline the notifier keeps.
async fn or_hang<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), work).await.unwrap_or_else(|_| panic!("{what} hung"))
}

#[tokio::test]
async fn a_stalled_webhook_does_not_hold_back_the_others() {
    let stalled = support::servers::Stalled::start().await;
    let hook = Webhook::start().await;
    // The stalled receiver comes first, and keeps the default deadline (30 s).
    let (registry, store) = one_failure(
        &["stalled", "hook"],
        vec![
            connection("stalled", ConnType::Http, stalled.port, r#"{"endpoint": "/hooks/sluice"}"#),
            connection("hook", ConnType::Http, hook.port, r#"{"endpoint": "/hooks/sluice"}"#),
        ],
    )
    .await;
    let notifier = notifier(&store, registry);
    let sending = tokio::spawn(async move { notifier.deliver_due().await });
    or_hang("the working webhook's alert", async {
        loop {
            let received = hook.received.notified();
            if !hook.bodies().is_empty() {
                return;
            }
            received.await;
        }
    })
    .await;
    or_hang("the stalled webhook's request", stalled.until(|s| s.accepted() == 1)).await;
    assert_eq!(stalled.open(), 1, "the working webhook got its alert while the stalled one was still waited on");
    assert_eq!(hook.bodies()[0]["event"], "failure");
    sending.abort();
}

#[tokio::test]
async fn a_webhook_that_never_answers_fails_at_its_deadline_and_is_retried() {
    let stalled = support::servers::Stalled::start().await;
    let (registry, store) = one_failure(
        &["stalled"],
        vec![connection("stalled", ConnType::Http, stalled.port, r#"{"endpoint": "/hooks/sluice", "timeout": 1}"#)],
    )
    .await;
    assert_eq!(or_hang("delivery", notifier(&store, registry).deliver_due()).await, 0);
    let row = &store.notifications(None, 1).await.expect("list")[0];
    assert_eq!((row.state.as_str(), row.attempts), ("pending", 1), "retried later");
    let error = row.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("no complete answer within the 1s deadline"), "{error}");
    or_hang("the abandoned request's close", stalled.until(|s| s.open() == 0)).await;
}

#[tokio::test]
async fn a_webhook_answering_an_endless_body_is_read_only_to_the_cap() {
    let (port, server) = support::servers::endless_body().await;
    let (registry, store) = one_failure(
        &["endless"],
        vec![connection("endless", ConnType::Http, port, r#"{"endpoint": "/hooks/sluice"}"#)],
    )
    .await;
    assert_eq!(or_hang("delivery", notifier(&store, registry).deliver_due()).await, 1, "a 200 is a delivery");
    let written = or_hang("the server noticing the hang-up", server).await.expect("server");
    assert!(written < 64 * 1024 * 1024, "{written} bytes written before the notifier hung up");
    assert_eq!(store.notifications(None, 1).await.expect("list")[0].state, "sent");
}

/// A failed task whose failure is mailed through the smtp connection `mail` at
/// localhost:`port` with `extra` (and `login`); returns how many notifications were sent
/// and the notifications as stored.
async fn mail_a_failure(port: u16, extra: Value, login: Option<&'static str>) -> (usize, Vec<NotificationRow>) {
    let extra: &'static str = Box::leak(extra.to_string().into_boxed_str());
    let mailed = TaskSpec { on_failure: &["mail"], email: &["oncall@mlsp.example"], ..task("a", &[]) };
    let mail = ConnectionSpec { host: Some("localhost"), login, ..connection("mail", ConnType::Smtp, port, extra) };
    let (registry, store) = failed(mailed, vec![mail]).await;
    let sent = or_hang("delivering the email", notifier(&store, registry).deliver_due()).await;
    (sent, store.notifications(None, 5).await.expect("notifications"))
}

#[tokio::test]
async fn email_goes_over_starttls_and_implicit_tls_to_a_real_server() {
    let ca = TestCa::new("Sluice test CA");
    let cert = ca.server_cert("smtp");
    for (tls, extra) in [
        (SmtpTls::StartTls, serde_json::json!({ "disable_ssl": true, "ssl_ca_certs": ca.ca_file() })),
        (SmtpTls::Implicit, serde_json::json!({ "ssl_ca_certs": ca.ca_file() })),
    ] {
        let server = SmtpServer::start(tls, &cert);
        let (sent, notifications) = mail_a_failure(server.port, extra, None).await;
        assert_eq!(sent, 1, "{tls:?}: {:?}\n{}", notifications[0].last_error, server.log());
        let messages = server.messages();
        assert_eq!(messages.len(), 1, "{tls:?}: one message delivered");
        assert!(messages[0].contains("oncall@mlsp.example"), "{}", messages[0]);
    }
}

#[tokio::test]
async fn email_refuses_a_server_certificate_of_another_ca() {
    let ca = TestCa::new("Sluice test CA");
    let other = TestCa::new("Another CA");
    let server = SmtpServer::start(SmtpTls::StartTls, &ca.server_cert("smtp"));
    let extra = serde_json::json!({ "disable_ssl": true, "ssl_ca_certs": other.ca_file() });
    let (sent, notifications) = mail_a_failure(server.port, extra, None).await;
    assert_eq!(sent, 0);
    let error = notifications[0].last_error.clone().unwrap_or_default();
    assert!(error.contains(&format!("localhost:{}", server.port)), "names the server: {error}");
    assert!(error.contains("certificate") || error.contains("UnknownIssuer"), "says why: {error}");
    assert!(server.messages().is_empty(), "nothing was delivered");
}

#[tokio::test]
async fn a_login_is_never_sent_in_clear() {
    let extra = serde_json::json!({ "disable_ssl": true, "disable_tls": true });
    let (sent, notifications) = mail_a_failure(25, extra, Some("alerts")).await;
    assert_eq!(sent, 0);
    let error = notifications[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("would send its login in clear"), "{error}");
}
