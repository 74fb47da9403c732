//! Datasets across pipelines, on SQLite and PostgreSQL: a task that produces a dataset records
//! an event with its success, and a pipeline scheduled on datasets runs once each of them has
//! an event since its last run (Airflow's data-aware scheduling), never twice for one event.

mod support;

use sluice_runtime::Registry;
use sluice_runtime::rules::{RunState, RunType};
use sluice_runtime::scheduler::Scheduler;
use sluice_runtime::spec::*;
use sluice_runtime::store::{DatasetEventFilter, Store};
use sluice_runtime::worker::Worker;
use std::sync::{Arc, LazyLock};
use support::*;

static DATASETS: [DatasetSpec; 2] = [
    DatasetSpec { id: "games", uri: "postgres://mlsp/games", description: "loaded games" },
    DatasetSpec { id: "odds", uri: "s3://feeds/odds", description: "" },
];

static PIPELINES: LazyLock<Vec<PipelineSpec>> = LazyLock::new(|| {
    vec![
        pipeline("scraper", Schedule::Manual, &const { [TaskSpec { produces: &["games"], ..task("load", &[]) }] }),
        pipeline("report", Schedule::Datasets(&["games"]), &const { [task("write", &[])] }),
        pipeline("betting", Schedule::Datasets(&["games", "odds"]), &const { [task("price", &[])] }),
    ]
});

fn registry() -> &'static Registry {
    static REGISTRY: LazyLock<Registry> =
        LazyLock::new(|| Registry { datasets: &DATASETS, pipelines: &PIPELINES[..], ..*support::registry(&[], &[]) });
    &REGISTRY
}

/// Runs what `scheduler`'s pass queues, and what that queues, until nothing is queued.
async fn pass(scheduler: &Scheduler, collect: &Collect, worker: &Worker) {
    scheduler.tick().await.expect("tick");
    loop {
        let queued = std::mem::take(&mut *collect.0.lock().expect("lock"));
        if queued.is_empty() {
            return;
        }
        for q in queued {
            worker.run_task(q.ti_id).await.expect("run task");
        }
        scheduler.tick().await.expect("tick");
    }
}

async fn runs_of(store: &Store, pipeline: &str) -> Vec<sluice_runtime::store::RunRow> {
    store.runs(pipeline, 100).await.expect("runs")
}

#[tokio::test]
async fn a_produced_dataset_starts_the_pipelines_scheduled_on_it_once() {
    for db in &BACKENDS {
        let (store, clock) = store(db).await;
        store.sync_pipelines(registry()).await.expect("sync");
        let collect = Arc::new(Collect::default());
        let scheduler = Scheduler::new(registry(), store.clone(), collect.clone());
        let worker = Worker::new(registry(), store.clone(), collect.clone(), "w1").without_notifier();
        pass(&scheduler, &collect, &worker).await;
        assert!(runs_of(&store, "report").await.is_empty(), "{db:?}: no event yet, no run");

        let scraper = registry().pipeline("scraper").expect("scraper");
        let run =
            sluice_runtime::scheduler::trigger(&store, scraper, serde_json::json!({}), None).await.expect("trigger");
        clock.advance_secs(1);
        pass(&scheduler, &collect, &worker).await;
        assert_eq!(store.run(run.id).await.expect("run").state, RunState::Success, "{db:?}");
        let (events, total) = store.dataset_events(&DatasetEventFilter::default(), 10, 0).await.expect("events");
        assert_eq!(total, 1, "{db:?}: the success recorded one event");
        assert_eq!(
            (events[0].dataset_id.as_str(), events[0].source_task.as_deref(), events[0].source_run_id.as_deref()),
            ("games", Some("load"), Some(run.run_id.as_str())),
            "{db:?}"
        );
        let reports = runs_of(&store, "report").await;
        assert_eq!(reports.len(), 1, "{db:?}: the event started `report`");
        assert_eq!((reports[0].run_type, reports[0].state), (RunType::DatasetTriggered, RunState::Success), "{db:?}");
        assert!(reports[0].run_id.starts_with("dataset_triggered__"), "{db:?}: {}", reports[0].run_id);
        let answered = store.run_dataset_events(registry().pipeline("report").expect("report"), &reports[0]).await;
        assert_eq!(answered.expect("events").len(), 1, "{db:?}: the run answered the one event");
        assert!(runs_of(&store, "betting").await.is_empty(), "{db:?}: `betting` waits for `odds` too");
        let queued = store.queued_dataset_events(Some("betting"), None).await.expect("queued");
        assert_eq!(queued.len(), 1, "{db:?}: games is queued for betting: {queued:?}");

        clock.advance_secs(1);
        pass(&scheduler, &collect, &worker).await;
        assert_eq!(runs_of(&store, "report").await.len(), 1, "{db:?}: one event starts one run");

        store.record_dataset_event("s3://feeds/odds", &serde_json::json!({"rows": 12})).await.expect("event");
        clock.advance_secs(1);
        pass(&scheduler, &collect, &worker).await;
        let betting = runs_of(&store, "betting").await;
        assert_eq!(betting.len(), 1, "{db:?}: both datasets updated: `betting` runs");
        assert_eq!(betting[0].state, RunState::Success, "{db:?}");
        assert!(store.queued_dataset_events(Some("betting"), None).await.expect("queued").is_empty(), "{db:?}");
        let unknown = store.record_dataset_event("s3://nowhere", &serde_json::json!({})).await;
        assert!(unknown.is_err(), "{db:?}: an unknown URI is refused");
    }
}
