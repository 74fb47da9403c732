//! No outcome is ever lost: a worker records a try's outcome whatever happens to its log,
//! keeps an outcome the store refuses in its spool on disk, and replays the spool at start
//! (before it claims anything) and at every heartbeat, exactly once. On SQLite and
//! PostgreSQL alike.
//!
//! The store is made to refuse writes by the database itself: a trigger that raises on the
//! write in question, dropped again to "restore" the database. That is a real database
//! failing a real statement, deterministic on both backends, and it lets a test break the
//! log table alone while outcomes still go through.

mod support;

use sluice_runtime::rules::TiState;
use sluice_runtime::shutdown::Shutdown;
use sluice_runtime::spec::*;
use sluice_runtime::spool::{Replayed, Spool};
use sluice_runtime::store::{Outcome, Store};
use sluice_runtime::worker::Worker;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use support::*;

const fn shell(id: &'static str, command: &'static str, depends_on: &'static [&'static str]) -> TaskSpec {
    TaskSpec { kind: TaskKind::shell(command), ..task(id, depends_on) }
}

static PIPELINES: LazyLock<[PipelineSpec; 2]> = LazyLock::new(|| {
    [
        pipeline("failing", Schedule::Manual, &const { [shell("boom", "echo about to fail; exit 3", &[])] }),
        graphed(pipeline(
            "pair",
            Schedule::Manual,
            &const { [shell("a", "echo a", &[]), shell("b", "echo b", &["a"])] },
        )),
    ]
});

/// What the database does to a write, for as long as the test wants.
enum Refuse {
    /// Every task log line.
    Logs,
    /// Every try that would end in success.
    Successes,
}

async fn refuse(store: &Store, db: &Db, what: Refuse) {
    let (table, op, condition) = match what {
        Refuse::Logs => ("task_logs", "INSERT", None),
        Refuse::Successes => ("task_instances", "UPDATE", Some("NEW.state = 'success'")),
    };
    match db {
        Db::Sqlite => {
            let when = condition.map(|c| format!("WHEN {c}")).unwrap_or_default();
            store
                .execute_admin(&format!(
                    "CREATE TRIGGER refuse_{table} BEFORE {op} ON {table} {when} \
                     BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                ))
                .await
                .expect("create trigger");
        }
        Db::Postgres => {
            store
                .execute_admin(&format!(
                    "CREATE FUNCTION refuse_{table}() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
                ))
                .await
                .expect("create function");
            let when = condition.map(|c| format!("WHEN ({c})")).unwrap_or_default();
            store
                .execute_admin(&format!(
                    "CREATE TRIGGER refuse_{table} BEFORE {op} ON {table} FOR EACH ROW {when} \
                     EXECUTE FUNCTION refuse_{table}()"
                ))
                .await
                .expect("create trigger");
        }
    }
}

async fn restore(store: &Store, db: &Db, table: &str) {
    let sql = match db {
        Db::Sqlite => format!("DROP TRIGGER refuse_{table}"),
        Db::Postgres => format!("DROP TRIGGER refuse_{table} ON {table}"),
    };
    store.execute_admin(&sql).await.expect("drop trigger");
}

/// A triggered run of `p` with its first task queued: (run pk, that task's id).
async fn started(store: &Store, p: &'static PipelineSpec) -> (i64, i64) {
    store.sync_pipelines(registry(&PIPELINES[..], &[])).await.expect("sync");
    let run = sluice_runtime::scheduler::trigger(store, p, serde_json::json!({}), None).await.expect("trigger");
    let queued = store.advance_pipeline(p, 32).await.expect("advance");
    assert_eq!(queued.len(), 1, "one root task");
    (run.id, queued[0].ti_id)
}

async fn ti(store: &Store, run_pk: i64, task: &str) -> sluice_runtime::store::TiRow {
    store.task_instances(run_pk).await.expect("tis").into_iter().find(|t| t.task_id == task).expect("task instance")
}

fn worker(store: &Store, dispatch: Arc<Collect>, name: &str) -> Worker {
    Worker::new(registry(&PIPELINES[..], &[]), store.clone(), dispatch, name).without_notifier()
}

#[tokio::test]
async fn a_failed_log_append_does_not_keep_the_outcome_from_the_store() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let (run_pk, boom) = started(&store, &PIPELINES[0]).await;
        refuse(&store, db, Refuse::Logs).await;
        let finished = worker(&store, Arc::default(), "w1").run_task(boom).await;
        assert!(finished.is_ok(), "the outcome is recorded though no log line could be: {finished:?}");
        let row = ti(&store, run_pk, "boom").await;
        assert_eq!(row.state, TiState::Failed, "the try's failure is in the store");
        assert!(row.error.as_deref().is_some_and(|e| e.contains("exit")), "{:?}", row.error);
        assert!(store.logs(boom, 1).await.expect("logs").is_empty(), "the log table refused every line");
    }
}

#[tokio::test]
async fn a_failed_log_append_does_not_keep_a_zombie_from_being_failed() {
    for db in &BACKENDS {
        let (store, clock) = store(db).await;
        let (run_pk, a) = started(&store, &PIPELINES[1]).await;
        store.claim(a, "gone", &PIPELINES[..]).await.expect("claim").expect("queued");
        refuse(&store, db, Refuse::Logs).await;
        clock.advance_secs(3600);
        let scheduler = sluice_runtime::scheduler::Scheduler::new(
            registry(&PIPELINES[..], &[]),
            store.clone(),
            Arc::new(Collect::default()),
        );
        let _ = scheduler.tick().await;
        let row = ti(&store, run_pk, "a").await;
        assert_eq!(row.state, TiState::Failed, "the zombie's try is failed though its log line was refused");
    }
}

#[tokio::test]
async fn an_outcome_the_store_refuses_waits_in_the_spool_and_is_recorded_once_after_a_restart() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let spool_dir = tempfile::tempdir().expect("temp dir");
        let (run_pk, a) = started(&store, &PIPELINES[1]).await;
        refuse(&store, db, Refuse::Successes).await;

        // The first worker runs `a`; the store refuses its success for longer than the
        // worker's patience (none here), so the outcome goes to the spool.
        let first = worker(&store, Arc::default(), "w1")
            .with_spool(Spool::new(spool_dir.path()))
            .with_record_patience(Duration::ZERO);
        let refused = first.run_task(a).await;
        assert!(refused.is_err(), "not recorded: {refused:?}");
        let spool = Spool::new(spool_dir.path());
        assert_eq!(spool.tries().await.expect("list"), [(a, 1)], "the outcome waits in the spool");
        let entry = std::fs::read_to_string(spool.path_of(a, 1)).expect("spool file");
        assert!(entry.contains(r#""outcome":{"success":"#) && entry.contains(r#""worker":"w1""#), "{entry}");
        assert_eq!(ti(&store, run_pk, "a").await.state, TiState::Running, "the store has no outcome yet");
        drop(first);

        // The database is back; a new worker process starts with the same spool.
        restore(&store, db, "task_instances").await;
        let dispatched = Arc::new(Collect::default());
        let second = worker(&store, dispatched.clone(), "w2").with_spool(Spool::new(spool_dir.path()));
        let replayed = second.replay_spool_first(&Shutdown::new()).await;
        assert_eq!(replayed, Replayed { recorded: 1, ..Replayed::default() });
        let row = ti(&store, run_pk, "a").await;
        assert_eq!((row.state, row.try_number), (TiState::Success, 1), "recorded, on its first try");
        let b = ti(&store, run_pk, "b").await;
        assert_eq!(dispatched.ids(), [b.id], "what the outcome made ready is dispatched");
        assert!(spool.tries().await.expect("list").is_empty(), "the spool is empty");

        // A crash between recording and removing the entry leaves it behind: replaying it
        // again changes nothing (the try is no longer running) and drops it.
        let ended_at = row.end_date;
        rewrite_entry(&spool, a, 1, "w1").await;
        let again = second.replay_spool().await;
        assert_eq!(again, Replayed { superseded: 1, ..Replayed::default() });
        let row = ti(&store, run_pk, "a").await;
        assert_eq!((row.state, row.try_number, row.end_date), (TiState::Success, 1, ended_at), "recorded once");
        assert_eq!(dispatched.ids(), [b.id], "nothing dispatched twice");
        assert!(spool.tries().await.expect("list").is_empty(), "the duplicate is dropped");
    }
}

#[tokio::test]
async fn a_spooled_outcome_of_a_try_taken_for_a_zombie_gives_way_to_the_store() {
    for db in &BACKENDS {
        let (store, clock) = store(db).await;
        let spool_dir = tempfile::tempdir().expect("temp dir");
        let (run_pk, a) = started(&store, &PIPELINES[1]).await;
        refuse(&store, db, Refuse::Successes).await;
        let first = worker(&store, Arc::default(), "w1")
            .with_spool(Spool::new(spool_dir.path()))
            .with_record_patience(Duration::ZERO);
        assert!(first.run_task(a).await.is_err(), "not recorded");
        restore(&store, db, "task_instances").await;

        // Meanwhile the worker stopped beating, and the scheduler failed the try.
        clock.advance_secs(3600);
        let scheduler = sluice_runtime::scheduler::Scheduler::new(
            registry(&PIPELINES[..], &[]),
            store.clone(),
            Arc::new(Collect::default()),
        );
        scheduler.tick().await.expect("tick");
        let reaped = ti(&store, run_pk, "a").await;
        assert_eq!(reaped.state, TiState::Failed, "taken for a zombie: {:?}", reaped.error);

        let replayed = worker(&store, Arc::default(), "w2")
            .with_spool(Spool::new(spool_dir.path()))
            .replay_spool_first(&Shutdown::new())
            .await;
        assert_eq!(replayed, Replayed { superseded: 1, ..Replayed::default() });
        let row = ti(&store, run_pk, "a").await;
        assert_eq!((row.state, row.error), (TiState::Failed, reaped.error), "the store's state stands");
        assert!(Spool::new(spool_dir.path()).tries().await.expect("list").is_empty(), "the entry is dropped");
    }
}

#[tokio::test]
async fn standalone_recovery_records_the_spool_before_it_requeues_what_was_running() {
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let spool_dir = tempfile::tempdir().expect("temp dir");
        let (run_pk, a) = started(&store, &PIPELINES[1]).await;
        refuse(&store, db, Refuse::Successes).await;
        let first = worker(&store, Arc::default(), "standalone")
            .with_spool(Spool::new(spool_dir.path()))
            .with_record_patience(Duration::ZERO);
        assert!(first.run_task(a).await.is_err(), "not recorded");
        restore(&store, db, "task_instances").await;

        // The standalone process restarts: `a` is still `running` in the store, and its
        // outcome waits in the spool.
        let second = worker(&store, Arc::default(), "standalone").with_spool(Spool::new(spool_dir.path()));
        let queued = sluice_runtime::standalone::recover(&second, &Shutdown::new()).await.expect("recover");
        let (a_row, b_row) = (ti(&store, run_pk, "a").await, ti(&store, run_pk, "b").await);
        assert_eq!((a_row.state, a_row.try_number), (TiState::Success, 1), "a is not run again");
        assert_eq!(queued.iter().map(|q| q.ti_id).collect::<Vec<_>>(), [b_row.id], "only b is left to run");
        assert!(Spool::new(spool_dir.path()).tries().await.expect("list").is_empty());
    }
}

/// Writes a spool entry by hand, as a worker would have: what a crash right after
/// recording, before the entry's removal, leaves behind.
async fn rewrite_entry(spool: &Spool, ti_id: i64, try_number: i64, worker: &str) {
    let entry = sluice_runtime::spool::Spooled {
        pipeline_id: "pair".into(),
        task_id: "a".into(),
        ti_id,
        try_number,
        worker: worker.into(),
        outcome: Outcome::Success(serde_json::Value::Null),
    };
    spool.keep(&entry).await.expect("write the entry");
}
