//! Scheduling semantics with a manual clock: cron in the pipeline's timezone across DST,
//! data intervals, catchup on and off, `@once`, manual-only and paused pipelines.

mod support;

use sluice_runtime::clock::to_rfc3339;
use sluice_runtime::scheduler::Scheduler;
use sluice_runtime::spec::*;
use sluice_runtime::timetable::{Interval, Timetable, utc_micros};
use std::sync::Arc;
use support::*;

const DAILY_6: PipelineSpec =
    PipelineSpec { schedule_text: "0 6 * * *", ..pipeline("daily", Schedule::Cron("0 6 * * *"), &[task("a", &[])]) };

fn intervals(runs: &[sluice_runtime::store::RunRow]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        runs.iter().map(|r| (to_rfc3339(r.data_interval_start), to_rfc3339(r.data_interval_end))).collect();
    out.sort();
    out
}

#[test]
fn cron_intervals_follow_the_timezone_across_dst() {
    // Midnight in Berlin: clocks jump from 02:00 to 03:00 on 2024-03-31, so that day is 23 hours.
    let p = PipelineSpec {
        timezone: "Europe/Berlin",
        start_date: Some("2024-03-29T00:00:00"),
        catchup: true,
        ..pipeline("berlin", Schedule::Cron("0 0 * * *"), &[])
    };
    let t = Timetable::for_pipeline(&p).expect("timetable");
    let now = utc_micros(2024, 4, 2, 12, 0);
    let mut last = None;
    let mut lengths = Vec::new();
    while let Some(Interval { start, end }) = t.next_due(last, now) {
        lengths.push((end - start) / 3_600_000_000);
        last = Some(start);
    }
    assert_eq!(lengths, [24, 24, 23, 24], "the days of March 29, 30, 31 (DST) and April 1");
    assert_eq!(to_rfc3339(utc_micros(2024, 3, 29, 0, 0)), "2024-03-29T00:00:00+00:00");
    let first = t.next_due(None, now).expect("due");
    assert_eq!(to_rfc3339(first.start), "2024-03-28T23:00:00+00:00", "midnight CET is 23:00 UTC");
}

#[tokio::test]
async fn catchup_creates_every_missed_interval() {
    static P: [PipelineSpec; 1] = [PipelineSpec { catchup: true, start_date: Some("2024-05-29T00:00:00"), ..DAILY_6 }];
    for db in &BACKENDS {
        let (store, _) = store(db).await;
        let reg = registry(&P, &[]);
        store.sync_pipelines(reg).await.expect("sync");
        let scheduler = Scheduler::new(reg, store.clone(), Arc::new(Collect::default()));
        let next = scheduler.tick().await.expect("tick");
        let runs = store.runs("daily", 100).await.expect("runs");
        assert_eq!(
            intervals(&runs),
            [
                ("2024-05-29T06:00:00+00:00".to_string(), "2024-05-30T06:00:00+00:00".to_string()),
                ("2024-05-30T06:00:00+00:00".into(), "2024-05-31T06:00:00+00:00".into()),
            ],
            "T0 is 2024-06-01T00:00Z: the interval ending 06-01T06:00 is not over yet"
        );
        assert_eq!(
            next.map(to_rfc3339).as_deref(),
            Some("2024-06-01T06:00:00+00:00"),
            "wakes when the next interval ends"
        );
        assert_eq!(runs[0].run_id, "scheduled__2024-05-30T06:00:00+00:00");
    }
}

#[tokio::test]
async fn without_catchup_only_the_latest_interval_runs() {
    static P: [PipelineSpec; 1] = [PipelineSpec { start_date: Some("2024-01-01T00:00:00"), ..DAILY_6 }];
    for db in &BACKENDS {
        let (store, clock) = store(db).await;
        let reg = registry(&P, &[]);
        store.sync_pipelines(reg).await.expect("sync");
        let scheduler = Scheduler::new(reg, store.clone(), Arc::new(Collect::default()));
        scheduler.tick().await.expect("tick");
        let runs = store.runs("daily", 100).await.expect("runs");
        assert_eq!(
            intervals(&runs),
            [("2024-05-30T06:00:00+00:00".to_string(), "2024-05-31T06:00:00+00:00".to_string())]
        );
        scheduler.tick().await.expect("tick again");
        assert_eq!(store.runs("daily", 100).await.expect("runs").len(), 1, "no duplicate run");
        clock.set(utc_micros(2024, 6, 1, 6, 0));
        scheduler.tick().await.expect("tick at 06:00");
        assert_eq!(store.runs("daily", 100).await.expect("runs").len(), 2, "the next interval once it ended");
    }
}

#[tokio::test]
async fn once_runs_once_and_manual_and_paused_never_on_their_own() {
    static P: [PipelineSpec; 3] = [
        pipeline("once", Schedule::Once, &[task("a", &[])]),
        pipeline("manual", Schedule::Manual, &[task("a", &[])]),
        PipelineSpec { paused_at_creation: true, ..pipeline("paused", Schedule::Cron("* * * * *"), &[task("a", &[])]) },
    ];
    for db in &BACKENDS {
        let (store, clock) = store(db).await;
        let reg = registry(&P, &[]);
        store.sync_pipelines(reg).await.expect("sync");
        let collect = Arc::new(Collect::default());
        let scheduler = Scheduler::new(reg, store.clone(), collect.clone());
        scheduler.tick().await.expect("tick");
        clock.advance_secs(86_400);
        scheduler.tick().await.expect("tick");
        let once = store.runs("once", 10).await.expect("runs");
        assert_eq!(once.len(), 1);
        assert_eq!(to_rfc3339(once[0].logical_date), "2024-01-01T00:00:00+00:00", "@once runs at its start date");
        assert!(store.runs("manual", 10).await.expect("runs").is_empty());
        assert!(store.runs("paused", 10).await.expect("runs").is_empty(), "paused at creation");
        // Dispatched when queued, and again after a day nobody took it (stuck in queued).
        let dispatched: std::collections::BTreeSet<i64> =
            collect.0.lock().expect("lock").iter().map(|q| q.ti_id).collect();
        assert_eq!(dispatched.len(), 1, "the @once run's task was dispatched");
        store.set_paused("paused", false).await.expect("unpause");
        scheduler.tick().await.expect("tick");
        assert_eq!(store.runs("paused", 10).await.expect("runs").len(), 1, "unpaused: the latest interval runs");
    }
}
