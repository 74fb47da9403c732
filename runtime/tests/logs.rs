//! A try's log is capped where it is stored, on SQLite and PostgreSQL alike: a real worker
//! runs real shell commands that print without end, and the store keeps the first lines
//! up to the cap, one line saying where the log was cut and how much was not kept, and the
//! task's outcome.

mod support;

use sluice_runtime::rules::TiState;
use sluice_runtime::scheduler::Dispatch;
use sluice_runtime::spec::*;
use sluice_runtime::store::{LogFrom, LogRow, Queued, Store};
use sluice_runtime::tasklog::{LogLimits, PageSize};
use sluice_runtime::worker::Worker;
use std::sync::Arc;
use support::*;

static PIPELINES: [PipelineSpec; 1] = [pipeline(
    "chatty",
    Schedule::Manual,
    &[
        TaskSpec { kind: TaskKind::shell("seq 1 2000000"), ..task("two_million_lines", &[]) },
        TaskSpec {
            kind: TaskKind::shell("yes 'a line of forty bytes, give or take...' | head -n 100000; exit 3"),
            ..task("long_then_fails", &[])
        },
    ],
)];

/// Runs are driven by hand here: nothing is dispatched anywhere.
#[derive(Debug)]
struct Nowhere;

impl Dispatch for Nowhere {
    fn dispatch(&self, _: Vec<Queued>) {}
}

/// Queues `task` in a new run and has a worker with `limits` run it to its recorded end.
async fn run_task(store: &Store, task: &str, limits: LogLimits) -> (i64, i64) {
    let registry = registry(&PIPELINES, &[]);
    store.sync_pipelines(registry).await.expect("sync");
    let p = &PIPELINES[0];
    let run = sluice_runtime::scheduler::trigger(store, p, serde_json::json!({}), None).await.expect("trigger");
    let queued = store.force_queue(run.id, task).await.expect("queue");
    let worker =
        Worker::new(registry, store.clone(), Arc::new(Nowhere), "w1").without_notifier().with_log_limits(limits);
    let finished = worker.run_task(queued.ti_id).await.expect("recorded").expect("claimed");
    assert!(finished.next.is_none());
    (run.id, queued.ti_id)
}

/// Every stored line of a try, page by page.
async fn stored_log(store: &Store, ti_id: i64, try_number: i64) -> Vec<LogRow> {
    let mut all: Vec<LogRow> = Vec::new();
    loop {
        let from = LogFrom::After(all.last().map_or(0, |r| r.id));
        let page = store.log_page(ti_id, try_number, from, PageSize::DEFAULT).await.expect("page");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

async fn state_of(store: &Store, run_pk: i64, ti_id: i64) -> TiState {
    store.task_instances(run_pk).await.expect("tis").into_iter().find(|t| t.id == ti_id).expect("ti").state
}

#[tokio::test]
async fn two_million_lines_end_recorded_with_the_log_cut_at_the_line_cap() {
    let limits = LogLimits { max_lines: 5_000, max_bytes: 10 * 1024 * 1024 };
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let (run, ti) = run_task(&store, "two_million_lines", limits).await;
        assert_eq!(state_of(&store, run, ti).await, TiState::Success, "the outcome is recorded");
        let log = stored_log(&store, ti, 1).await;
        assert_eq!(log.len(), 5_001, "the cap, and the line saying where it was cut");
        assert_eq!(log[0].line, "Running command: seq 1 2000000");
        let numbers: Vec<String> = (1..5_000).map(|n| n.to_string()).collect();
        assert_eq!(
            log[1..5_000].iter().map(|r| r.line.clone()).collect::<Vec<_>>(),
            numbers,
            "the first lines, in order"
        );
        // 2,000,001 lines written (the command line and the numbers), 5,000 kept.
        assert_eq!(log[5_000].line, "[log cut at 5000 lines / 10 MiB: 1995001 more lines not kept]");
    }
}

#[tokio::test]
async fn a_failing_task_keeps_its_error_after_the_byte_cap() {
    let limits = LogLimits { max_lines: 1_000_000, max_bytes: 64 * 1024 };
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let (run, ti) = run_task(&store, "long_then_fails", limits).await;
        assert_eq!(state_of(&store, run, ti).await, TiState::Failed, "the outcome is recorded");
        let log = stored_log(&store, ti, 1).await;
        let (error, rest) = log.split_last().expect("lines");
        let (notice, kept) = rest.split_last().expect("lines");
        let bytes: usize = kept.iter().map(|r| r.line.len()).sum();
        assert!(bytes <= 64 * 1024, "{bytes} bytes kept");
        assert!(bytes > 60 * 1024, "filled up to the cap: {bytes}");
        let written = 100_001; // the command line and the lines of `yes`
        let dropped = written - kept.len();
        assert_eq!(notice.line, format!("[log cut at 1000000 lines / 64 KiB: {dropped} more lines not kept]"));
        assert_eq!(error.stream, "error");
        assert_eq!(error.line, "the command exited with status 3 (its output is in the log)");
    }
}

/// The counts live in the store: a second writer of the same try (a try handed back and
/// run again) continues from them, and cannot get past the cap either.
#[tokio::test]
async fn the_cap_holds_across_batches_and_writers() {
    let limits = LogLimits { max_lines: 10, max_bytes: 1024 };
    let lines = |from: usize, n: usize| -> Vec<(String, String)> {
        (from..from + n).map(|i| ("stdout".to_string(), format!("line {i}"))).collect()
    };
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let registry = registry(&PIPELINES, &[]);
        store.sync_pipelines(registry).await.expect("sync");
        let run = sluice_runtime::scheduler::trigger(&store, &PIPELINES[0], serde_json::json!({}), None)
            .await
            .expect("trigger");
        let ti = store.force_queue(run.id, "two_million_lines").await.expect("queue").ti_id;
        let first = store.append_task_log(ti, 1, &lines(0, 4), limits).await.expect("append");
        assert_eq!((first.kept, first.cut), (4, false));
        let other_writer = store.clone();
        let second = other_writer.append_task_log(ti, 1, &lines(4, 4), limits).await.expect("append");
        assert_eq!((second.kept, second.cut), (4, false));
        let third = store.append_task_log(ti, 1, &lines(8, 5), limits).await.expect("append");
        assert_eq!((third.kept, third.cut), (2, true));
        let after = other_writer.append_task_log(ti, 1, &lines(13, 3), limits).await.expect("append");
        assert_eq!((after.kept, after.cut), (0, true), "nothing after the cut");
        store.end_task_log(ti, 1, 7, limits).await.expect("end");
        let log = stored_log(&store, ti, 1).await;
        let texts: Vec<&str> = log.iter().map(|r| r.line.as_str()).collect();
        let mut expected: Vec<String> = (0..10).map(|i| format!("line {i}")).collect();
        expected.push("[log cut at 10 lines / 1 KiB: 13 more lines not kept]".into());
        assert_eq!(texts, expected);
        // Another try of the same task instance has a cap of its own.
        assert_eq!(store.append_task_log(ti, 2, &lines(0, 3), limits).await.expect("append").kept, 3);
        // The runtime's own last word is kept past the cap.
        store.append_logs(ti, 1, &[("error".into(), "it failed".into())]).await.expect("append");
        assert_eq!(stored_log(&store, ti, 1).await.last().map(|r| r.line.as_str()), Some("it failed"));
    }
}

/// Pages are sized by the database, in lines and in bytes, and read both ways.
#[tokio::test]
async fn pages_hold_at_most_their_size_and_read_both_ways() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let registry = registry(&PIPELINES, &[]);
        store.sync_pipelines(registry).await.expect("sync");
        let run = sluice_runtime::scheduler::trigger(&store, &PIPELINES[0], serde_json::json!({}), None)
            .await
            .expect("trigger");
        let ti = store.force_queue(run.id, "two_million_lines").await.expect("queue").ti_id;
        let lines: Vec<(String, String)> = (0..25).map(|i| ("stdout".into(), format!("{i:02}é"))).collect();
        store.append_task_log(ti, 1, &lines, LogLimits::default()).await.expect("append");
        // Each line is 4 bytes (é is two): a 10-byte page holds two lines and a half.
        let size = PageSize { lines: 5, bytes: 10 };
        let page = store.log_page(ti, 1, LogFrom::After(0), size).await.expect("page");
        assert_eq!(page.iter().map(|r| r.line.as_str()).collect::<Vec<_>>(), ["00é", "01é", "02é"]);
        let size = PageSize { lines: 5, bytes: 1_000 };
        let last = store.log_page(ti, 1, LogFrom::Before(i64::MAX), size).await.expect("page");
        assert_eq!(last.iter().map(|r| r.line.as_str()).collect::<Vec<_>>(), ["20é", "21é", "22é", "23é", "24é"]);
        let before = store.log_page(ti, 1, LogFrom::Before(last[0].id), size).await.expect("page");
        assert_eq!(before.last().map(|r| r.line.as_str()), Some("19é"));
        let (first, end) = store.log_ends(ti, 1).await.expect("ends").expect("lines");
        assert_eq!((first, end), (page[0].id, last[4].id));
        let one = store.log_page(ti, 1, LogFrom::After(0), PageSize { lines: 5, bytes: 1 }).await.expect("page");
        assert_eq!(one.len(), 1, "at least one line, however long");
        assert_eq!(store.log_ends(ti, 9).await.expect("ends"), None);
    }
}
