//! `sluice dags ...` and `sluice tasks ...`.

use super::error::{CliError, Context};
use super::open_store;
use super::output::{Output, print};
use crate::clock::{Micros, ShiftedClock, parse_datetime, to_rfc3339};
use crate::notify::{Notifier, base_url_from_env};
use crate::registry::Registry;
use crate::resolver::Resolver;
use crate::rules::TiState;
use crate::rules::{RunState, RunType};
use crate::scheduler::{Dispatch, trigger};
use crate::settings::Settings;
use crate::spec::PipelineSpec;
use crate::store::{LogFrom, RunRow, Store};
use crate::tasklog::PageSize;
use crate::timetable::Timetable;
use crate::worker::{LocalQueue, Worker};
use clap::Subcommand;
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Subcommand, Debug)]
pub enum DagsCommand {
    /// List the pipelines with their schedule and state.
    List,
    /// List the runs of a pipeline, newest first.
    ListRuns {
        dag_id: String,
        /// How many runs to show.
        #[arg(long, default_value_t = 25)]
        limit: i64,
    },
    /// Recorded SLA misses, newest first (all pipelines, or one).
    SlaMisses {
        dag_id: Option<String>,
        #[arg(long, default_value_t = 25)]
        limit: i64,
    },
    /// Notifications (alerts) sent or waiting, newest first (all pipelines, or one).
    Notifications {
        dag_id: Option<String>,
        #[arg(long, default_value_t = 25)]
        limit: i64,
    },
    /// The next logical dates the schedule will run.
    NextExecution {
        dag_id: String,
        #[arg(long, short = 'n', default_value_t = 1)]
        num_executions: usize,
    },
    /// Create a manual run.
    Trigger {
        dag_id: String,
        /// Params as a JSON object, checked against the declared types.
        #[arg(long, short)]
        conf: Option<String>,
        /// Logical date (RFC 3339 or YYYY-MM-DD); default now.
        #[arg(long, short = 'e')]
        logical_date: Option<String>,
        /// The run's id (letters, digits and `_.~:+-`); default `manual__<logical date>`.
        #[arg(long, short = 'r')]
        run_id: Option<String>,
    },
    /// Stop scheduling new runs.
    Pause { dag_id: String },
    /// Resume scheduling.
    Unpause { dag_id: String },
    /// The state of a run, by run id or logical date.
    State { dag_id: String, run: String },
    /// Create and run, in this process, the scheduled runs whose logical dates fall
    /// between START and END (recorded in the store like any run).
    Backfill {
        dag_id: String,
        #[arg(long, short = 's')]
        start_date: String,
        #[arg(long, short = 'e')]
        end_date: String,
    },
    /// Run a whole pipeline in this process for a logical date, without a scheduler
    /// (and without a database unless SLUICE_DATABASE_URL is set).
    Test {
        dag_id: String,
        /// Logical date (RFC 3339 or YYYY-MM-DD); default now.
        logical_date: Option<String>,
        /// Params as a JSON object.
        #[arg(long, short)]
        conf: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TasksCommand {
    /// A pipeline's tasks, with kind and upstreams.
    List { dag_id: String },
    /// The state of a task in a run (by run id or logical date).
    State { dag_id: String, task_id: String, run: String },
    /// Clear a task in a run so it runs again (and, with --downstream, what follows it).
    Clear {
        dag_id: String,
        task_id: String,
        /// The run, by run id or logical date.
        #[arg(long)]
        run: String,
        #[arg(long, short = 'd')]
        downstream: bool,
    },
    /// Mark a task of a run success or failed by hand; the run continues from there.
    Mark {
        dag_id: String,
        task_id: String,
        #[arg(long)]
        run: String,
        /// success or failed
        #[arg(long)]
        state: String,
    },
    /// Run one task in this process, ignoring its upstreams (as `airflow tasks test`).
    Test {
        dag_id: String,
        task_id: String,
        /// Logical date (RFC 3339 or YYYY-MM-DD); default now.
        logical_date: Option<String>,
    },
}

fn pipeline(registry: &'static Registry, id: &str) -> Result<&'static PipelineSpec, CliError> {
    registry.pipeline(id).ok_or_else(|| {
        let known: Vec<&str> = registry.pipelines.iter().map(|p| p.id).collect();
        CliError::Input(format!("no pipeline `{id}` in this build; known: {}", known.join(", ")))
    })
}

fn date_arg(text: Option<&str>) -> Result<Option<Micros>, CliError> {
    text.map(|t| {
        parse_datetime(t)
            .ok_or_else(|| CliError::Input(format!("`{t}` is not a date: use 2024-01-01 or 2024-01-01T06:00:00+00:00")))
    })
    .transpose()
}

fn conf_arg(text: Option<&str>) -> Result<serde_json::Value, CliError> {
    match text {
        None => Ok(json!({})),
        Some(t) => serde_json::from_str(t).context(|| "--conf is not JSON"),
    }
}

fn run_json(r: &RunRow) -> serde_json::Value {
    json!({
        "dag_id": r.pipeline_id,
        "run_id": r.run_id,
        "state": r.state,
        "run_type": r.run_type,
        "logical_date": to_rfc3339(r.logical_date),
        "start_date": r.start_date.map(to_rfc3339),
        "end_date": r.end_date.map(to_rfc3339),
    })
}

pub async fn dags(
    registry: &'static Registry,
    settings: &Settings,
    command: DagsCommand,
    output: Output,
) -> Result<ExitCode, CliError> {
    match command {
        DagsCommand::List => {
            let store = open_store(registry, settings).await?;
            let rows = store.pipelines().await?;
            let list: Vec<serde_json::Value> = registry
                .pipelines
                .iter()
                .map(|p| {
                    let row = rows.iter().find(|r| r.pipeline_id == p.id);
                    json!({
                        "dag_id": p.id,
                        "schedule": if p.schedule_text.is_empty() { "None" } else { p.schedule_text },
                        "owner": p.owner,
                        "is_paused": row.is_none_or(|r| r.is_paused),
                        "tasks": p.tasks.len(),
                    })
                })
                .collect();
            print(output, &["dag_id", "schedule", "owner", "is_paused", "tasks"], &list);
        }
        DagsCommand::ListRuns { dag_id, limit } => {
            pipeline(registry, &dag_id)?;
            let store = open_store(registry, settings).await?;
            let runs = store.runs(&dag_id, limit).await?;
            let rows: Vec<_> = runs.iter().map(run_json).collect();
            print(output, &["dag_id", "run_id", "state", "logical_date", "start_date", "end_date"], &rows);
        }
        DagsCommand::SlaMisses { dag_id, limit } => {
            if let Some(id) = &dag_id {
                pipeline(registry, id)?;
            }
            let store = open_store(registry, settings).await?;
            let misses = store.sla_misses(dag_id.as_deref(), limit).await?;
            let rows: Vec<_> = misses
                .iter()
                .map(|m| {
                    json!({
                        "dag_id": m.pipeline_id,
                        "run_id": m.run_id,
                        "task_id": m.task_id,
                        "deadline": to_rfc3339(m.deadline),
                        "detected_at": to_rfc3339(m.detected_at),
                    })
                })
                .collect();
            print(output, &["dag_id", "run_id", "task_id", "deadline", "detected_at"], &rows);
        }
        DagsCommand::Notifications { dag_id, limit } => {
            if let Some(id) = &dag_id {
                pipeline(registry, id)?;
            }
            let store = open_store(registry, settings).await?;
            let sent = store.notifications(dag_id.as_deref(), limit).await?;
            let rows: Vec<_> = sent
                .iter()
                .map(|n| {
                    json!({
                        "id": n.id,
                        "event": n.event,
                        "target": n.target,
                        "dag_id": n.pipeline_id,
                        "run_id": n.run_id,
                        "task_id": n.task_id,
                        "state": n.state,
                        "attempts": n.attempts,
                        "last_error": n.last_error,
                    })
                })
                .collect();
            print(
                output,
                &["id", "event", "target", "dag_id", "run_id", "task_id", "state", "attempts", "last_error"],
                &rows,
            );
        }
        DagsCommand::NextExecution { dag_id, num_executions } => {
            let p = pipeline(registry, &dag_id)?;
            let t = Timetable::for_pipeline(p)?;
            let now = chrono::Utc::now().timestamp_micros();
            let times = t.upcoming(now, num_executions);
            if times.is_empty() {
                println!("None");
            }
            for at in times {
                println!("{}", to_rfc3339(at));
            }
        }
        DagsCommand::Trigger { dag_id, conf, logical_date, run_id } => {
            let p = pipeline(registry, &dag_id)?;
            let (conf, logical_date) = (conf_arg(conf.as_deref())?, date_arg(logical_date.as_deref())?);
            if let Some(id) = &run_id {
                crate::scheduler::check_run_id(id)?;
            }
            let store = open_store(registry, settings).await?;
            let run = crate::scheduler::trigger_as(&store, p, conf, logical_date, run_id).await?;
            crate::distributed::wake_schedulers(registry, settings).await;
            print(output, &["dag_id", "run_id", "state", "logical_date"], &[run_json(&run)]);
        }
        DagsCommand::Pause { dag_id } | DagsCommand::Unpause { dag_id } if registry.pipeline(&dag_id).is_none() => {
            pipeline(registry, &dag_id)?;
        }
        DagsCommand::Pause { dag_id } => set_paused(registry, settings, &dag_id, true, output).await?,
        DagsCommand::Unpause { dag_id } => set_paused(registry, settings, &dag_id, false, output).await?,
        DagsCommand::State { dag_id, run } => {
            pipeline(registry, &dag_id)?;
            let store = open_store(registry, settings).await?;
            println!("{}", find_run(&store, &dag_id, &run).await?.state);
        }
        DagsCommand::Backfill { dag_id, start_date, end_date } => {
            let p = pipeline(registry, &dag_id)?;
            let (Some(from), Some(to)) = (date_arg(Some(&start_date))?, date_arg(Some(&end_date))?) else {
                return Err(CliError::Input("give --start-date and --end-date".into()));
            };
            return backfill(registry, settings, p, from, to).await;
        }
        DagsCommand::Test { dag_id, logical_date, conf } => {
            let p = pipeline(registry, &dag_id)?;
            return test_pipeline(
                registry,
                settings,
                p,
                date_arg(logical_date.as_deref())?,
                conf_arg(conf.as_deref())?,
                None,
            )
            .await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `dags pause` / `dags unpause`: a sentence for people, the pipeline's new state for
/// `-o json` (Airflow's `dag_id`, `is_paused`).
async fn set_paused(
    registry: &'static Registry,
    settings: &Settings,
    dag_id: &str,
    paused: bool,
    output: Output,
) -> Result<(), CliError> {
    let store = open_store(registry, settings).await?;
    store.set_paused(dag_id, paused).await?;
    match output {
        Output::Json => print(output, &["dag_id", "is_paused"], &[json!({"dag_id": dag_id, "is_paused": paused})]),
        Output::Table => println!("pipeline {dag_id} {}", if paused { "paused" } else { "unpaused" }),
    }
    Ok(())
}

pub async fn tasks(
    registry: &'static Registry,
    settings: &Settings,
    command: TasksCommand,
    output: Output,
) -> Result<ExitCode, CliError> {
    match command {
        TasksCommand::List { dag_id } => {
            let p = pipeline(registry, &dag_id)?;
            let rows: Vec<_> = p
                .tasks
                .iter()
                .map(|t| json!({"task_id": t.id, "kind": t.kind.name(), "depends_on": t.depends_on}))
                .collect();
            print(output, &["task_id", "kind", "depends_on"], &rows);
            Ok(ExitCode::SUCCESS)
        }
        TasksCommand::State { dag_id, task_id, run } => {
            pipeline(registry, &dag_id)?;
            let store = open_store(registry, settings).await?;
            let run = find_run(&store, &dag_id, &run).await?;
            let tis = store.task_instances(run.id).await?;
            let ti = tis
                .iter()
                .find(|t| t.task_id == task_id)
                .ok_or_else(|| CliError::Input(format!("run `{}` has no task `{task_id}`", run.run_id)))?;
            println!("{}", ti.state.as_str());
            Ok(ExitCode::SUCCESS)
        }
        TasksCommand::Clear { dag_id, task_id, run, downstream } => {
            let p = pipeline(registry, &dag_id)?;
            let store = open_store(registry, settings).await?;
            let run = find_run(&store, &dag_id, &run).await?;
            let cleared = store.clear_task(p, run.id, &task_id, downstream).await?;
            crate::distributed::wake_schedulers(registry, settings).await;
            println!("cleared in run {}: {}", run.run_id, cleared.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        TasksCommand::Mark { dag_id, task_id, run, state } => {
            let p = pipeline(registry, &dag_id)?;
            let state = match state.as_str() {
                "success" => TiState::Success,
                "failed" => TiState::Failed,
                other => {
                    return Err(CliError::Input(format!("cannot mark a task `{other}`: use success or failed")));
                }
            };
            let store = open_store(registry, settings).await?;
            let run = find_run(&store, &dag_id, &run).await?;
            let queued = store.mark_task(p, run.id, &task_id, state, registry.deployment.parallelism).await?;
            crate::distributed::publish(registry, settings, &queued).await;
            crate::distributed::wake_schedulers(registry, settings).await;
            println!("task {task_id} of run {} marked {}", run.run_id, state.as_str());
            Ok(ExitCode::SUCCESS)
        }
        TasksCommand::Test { dag_id, task_id, logical_date } => {
            let p = pipeline(registry, &dag_id)?;
            if p.task(&task_id).is_none() {
                let known: Vec<&str> = p.tasks.iter().map(|t| t.id).collect();
                return Err(CliError::Input(format!(
                    "pipeline `{dag_id}` has no task `{task_id}`; its tasks: {}",
                    known.join(", ")
                )));
            }
            test_pipeline(registry, settings, p, date_arg(logical_date.as_deref())?, json!({}), Some(&task_id)).await
        }
    }
}

/// Runs a pipeline (or one task of it) to the end in this process and prints each
/// task's outcome and log. Retry delays are skipped by moving the clock, not slept.
async fn test_pipeline(
    registry: &'static Registry,
    settings: &Settings,
    p: &'static PipelineSpec,
    logical_date: Option<Micros>,
    conf: serde_json::Value,
    only: Option<&str>,
) -> Result<ExitCode, CliError> {
    let clock = ShiftedClock::new();
    let store = match &settings.database_url {
        Some(_) => open_store(registry, settings).await?,
        None => {
            let store = Store::in_memory().await?;
            store.sync_pipelines(registry).await?;
            store
        }
    }
    .with_clock(clock.clone());
    let run = trigger(&store, p, conf, logical_date).await?;
    let ok = drive_run(registry, &store, p, &run, only, &clock, settings.task_log).await?;
    if registry.has_notifications() {
        let notifier = Notifier::new(store.clone(), Resolver::from_env(registry), base_url_from_env(registry));
        let sent = notifier.deliver_due().await;
        let all = store.notifications(Some(p.id), 1000).await?;
        let of_run: Vec<_> = all.iter().filter(|n| n.run_id == run.run_id).collect();
        if !of_run.is_empty() {
            println!("notifications: {sent} of {} sent", of_run.len());
        }
    }
    println!("run {}: {}", run.run_id, if ok { "success" } else { "failed" });
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Runs one run (or one task of it) to the end in this process, printing each task's
/// outcome and log. Retry delays are skipped by moving `clock`, not slept.
async fn drive_run(
    registry: &'static Registry,
    store: &Store,
    p: &'static PipelineSpec,
    run: &RunRow,
    only: Option<&str>,
    clock: &ShiftedClock,
    log_limits: crate::tasklog::LogLimits,
) -> Result<bool, CliError> {
    let (queue, mut rx) = LocalQueue::new();
    let queue = Arc::new(queue);
    let worker =
        Worker::new(registry, store.clone(), queue.clone(), "cli").without_notifier().with_log_limits(log_limits);
    let parallelism = registry.deployment.parallelism;
    match only {
        Some(task) => queue.dispatch(vec![store.force_queue(run.id, task).await?]),
        None => {
            store.start_run(run.id).await?;
            queue.dispatch(store.advance_pipeline(p, parallelism).await?);
        }
    }
    loop {
        while let Ok(ti_id) = rx.try_recv() {
            worker.run_task(ti_id).await?;
            report_task(store, run.id, ti_id).await?;
        }
        if only.is_some() {
            break;
        }
        let state = store.run(run.id).await?.state;
        if !state.is_active() {
            break;
        }
        match store.next_retry_at().await? {
            Some(at) => clock.jump_to(at),
            None => {
                return Err(CliError::Failure(format!(
                    "run `{}` is stuck: no task can start (pool or limit too small?)",
                    run.run_id
                )));
            }
        }
        let queued = store.advance_pipeline(p, parallelism).await?;
        if queued.is_empty() {
            return Err(CliError::Failure(format!(
                "run `{}` is stuck: a retry is due but nothing could start",
                run.run_id
            )));
        }
        queue.dispatch(queued);
    }
    let tis = store.task_instances(run.id).await?;
    Ok(match only {
        Some(task) => tis.iter().any(|t| t.task_id == task && t.state == TiState::Success),
        None => store.run(run.id).await?.state == RunState::Success,
    })
}

async fn report_task(store: &Store, run_pk: i64, ti_id: i64) -> Result<(), CliError> {
    let tis = store.task_instances(run_pk).await?;
    let Some(ti) = tis.iter().find(|t| t.id == ti_id) else { return Ok(()) };
    // Page by page: a log of up to its cap is printed without holding it all.
    let mut from = 0;
    loop {
        let page = store.log_page(ti.id, ti.try_number, LogFrom::After(from), PageSize::DEFAULT).await?;
        let Some(last) = page.last() else { break };
        from = last.id;
        for row in &page {
            println!("[{}] {}", ti.task_id, row.line);
        }
    }
    println!("[{}] {} (try {})", ti.task_id, ti.state.as_str(), ti.try_number);
    Ok(())
}

/// A run by its run id, or by its logical date.
async fn find_run(store: &Store, dag_id: &str, run: &str) -> Result<RunRow, CliError> {
    if let Ok(found) = store.run_by_id(dag_id, run).await {
        return Ok(found);
    }
    let no_run = || CliError::Input(format!("no run `{run}` of pipeline `{dag_id}`"));
    let at = parse_datetime(run).ok_or_else(no_run)?;
    let runs = store.runs(dag_id, i64::MAX).await?;
    runs.into_iter().find(|r| r.logical_date == at).ok_or_else(no_run)
}

/// Creates the backfill runs (skipping logical dates that already have a run) and runs
/// them one after the other in this process.
async fn backfill(
    registry: &'static Registry,
    settings: &Settings,
    p: &'static PipelineSpec,
    from: Micros,
    to: Micros,
) -> Result<ExitCode, CliError> {
    let timetable = Timetable::for_pipeline(p)?;
    if !timetable.is_scheduled() {
        return Err(CliError::Input(format!("pipeline `{}` has no schedule to backfill; use `dags trigger`", p.id)));
    }
    let intervals = timetable.intervals_between(from, to);
    if intervals.is_empty() {
        return Err(CliError::Input(format!("no scheduled logical date of `{}` falls between the two dates", p.id)));
    }
    let clock = ShiftedClock::new();
    let store = open_store(registry, settings).await?.with_clock(clock.clone());
    let mut all_ok = true;
    for interval in intervals {
        let new = crate::store::NewRun {
            run_id: format!("backfill__{}", to_rfc3339(interval.start)),
            run_type: RunType::Backfill,
            logical_date: interval.start,
            data_interval_start: interval.start,
            data_interval_end: interval.end,
            conf: json!({}),
        };
        let run = match store.create_run(p, &new).await {
            Ok(run) => run,
            Err(crate::store::StoreError::Conflict(_)) => {
                println!("{}: a run exists already, skipped", to_rfc3339(interval.start));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let ok = drive_run(registry, &store, p, &run, None, &clock, settings.task_log).await?;
        println!("run {}: {}", run.run_id, if ok { "success" } else { "failed" });
        all_ok &= ok;
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
