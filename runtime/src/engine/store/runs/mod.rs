//! Runs and task instances: creation, the state machine, and what workers claim and
//! report. Each transition is one transaction; finishing a task also decides what becomes
//! ready downstream in that same transaction, so dispatch needs no polling.
//!
//! This module holds the rows and the run queries; the state machine's paths each have a
//! module: [`claim`], [`finish`], [`advance`] (what becomes ready, pools, closing runs),
//! [`admin`] (what an operator forces), and [`logs`] (logs, rendered templates, outputs).

use super::alerts::{self, Event};
use super::audit::Change;
use super::{Doing, Result, Store, StoreError, Tx, get, opt, q};
use crate::clock::Micros;
use crate::rules::{RunState, RunType, TiState};
use crate::spec::{PipelineSpec, TaskSpec, TriggerRule};
use crate::store::sql::Dialect;
use crate::tasklog::{LogLimits, LogUsage, PageSize};
use sqlx::AssertSqlSafe;
use std::collections::{BTreeMap, HashMap};

mod admin;
mod advance;
mod claim;
mod finish;
mod logs;
mod search;

pub use admin::CLEAN_BATCH;
pub(in crate::engine::store) use advance::insert_task_instance;
use advance::*;
use claim::*;
use finish::*;
pub use logs::{LogAppend, LogFrom, LogRow};
pub use search::{RunFilter, TiFilter};

/// A run to create.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub run_id: String,
    pub run_type: RunType,
    pub logical_date: Micros,
    pub data_interval_start: Micros,
    pub data_interval_end: Micros,
    pub conf: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub id: i64,
    pub pipeline_id: String,
    pub run_id: String,
    pub run_type: RunType,
    pub state: RunState,
    pub logical_date: Micros,
    pub data_interval_start: Micros,
    pub data_interval_end: Micros,
    pub conf: String,
    pub start_date: Option<Micros>,
    pub end_date: Option<Micros>,
    /// An operator's note on the run.
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TiRow {
    pub id: i64,
    pub run_pk: i64,
    pub task_id: String,
    pub state: TiState,
    pub try_number: i64,
    pub max_tries: i64,
    pub priority_weight: i64,
    pub error: Option<String>,
    pub start_date: Option<Micros>,
    pub end_date: Option<Micros>,
    pub pool: String,
    pub pool_slots: i64,
    pub queue: String,
    pub queued_at: Option<Micros>,
    /// The worker running (or that last ran) it.
    pub worker: Option<String>,
    /// An operator's note on the task instance.
    pub note: Option<String>,
}

/// A task instance made ready: hand it to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub ti_id: i64,
    pub queue: String,
    pub priority_weight: i64,
}

/// What a finishing worker may run next itself (see [`Store::finish_many`]).
#[derive(Debug, Clone, Copy)]
pub struct Take<'a> {
    pub worker: &'a str,
    /// The queues the worker reads; empty: every queue.
    pub queues: &'a [String],
    /// Where the claimed task's upstreams are looked up.
    pub pipelines: &'a [PipelineSpec],
}

impl Take<'_> {
    fn serves(&self, queue: &str) -> bool {
        self.queues.is_empty() || self.queues.iter().any(|q| q == queue)
    }
}

/// What a worker needs to run a claimed task instance.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub ti_id: i64,
    pub run_pk: i64,
    pub pipeline_id: String,
    pub task_id: String,
    pub try_number: i64,
    pub run: RunRow,
    /// Outputs of the run's finished tasks, by task id.
    pub outputs: BTreeMap<String, serde_json::Value>,
}

/// One try's end to record (see [`Store::finish_many`]).
#[derive(Debug, Clone)]
pub struct Finish<'a> {
    pub pipeline: &'a PipelineSpec,
    pub ti_id: i64,
    pub try_number: i64,
    pub outcome: Outcome,
    /// The try's run, when the caller has it: a task of the same run claimed next with
    /// [`Take`] needs it, and need not read it again.
    pub run: Option<RunRow>,
    /// What the try leaves besides its outcome, written in the outcome's transaction.
    pub trail: Trail,
}

/// What a try leaves behind besides its outcome: written with it, so a short task's log
/// and templates cost no transaction of their own.
#[derive(Debug, Clone, Default)]
pub struct Trail {
    /// The templates the try rendered, as JSON (`{what: text}`, secrets masked).
    pub rendered: Option<String>,
    /// The last lines of its log, not written yet: `(stream, line)`.
    pub log: Vec<(String, String)>,
    /// The most of the try's log that is kept, for `log`.
    pub log_limits: LogLimits,
}

/// What recording one [`Finish`] did. All default when the try was not running (a late
/// or duplicate report).
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// This call recorded the try's end. `false`: the try was no longer running (the zombie
    /// sweep failed it, it was handed back, or its outcome was already recorded), and the
    /// store's state stands.
    pub ended: bool,
    /// The try failed (it may be retried).
    pub failed: bool,
    /// How many task instances its run queued in that transaction (taken ones included):
    /// none may mean the run ended, or freed room that other runs wait for.
    pub run_queued: usize,
    /// The task its worker slot claimed to run next (with [`Take`]).
    pub next: Option<Claimed>,
}

impl Recorded {
    /// Whether the scheduler must look: a failure may mean a retry to time, and a finish
    /// that queued nothing may end a run or free room another run waits for.
    pub fn needs_scheduler(&self) -> bool {
        self.failed || self.run_queued == 0
    }
}

/// What [`Store::finish_many`] did: the task instances queued and not taken, to hand to
/// the broker, and what became of each finish, in order.
#[derive(Debug, Clone, Default)]
pub struct RecordedBatch {
    pub queued: Vec<Queued>,
    pub each: Vec<Recorded>,
}

/// A try whose end was recorded: `finishes[index]`.
#[derive(Debug)]
struct Ended {
    index: usize,
    run_pk: i64,
    task_id: String,
    state: TiState,
    error: Option<String>,
}

/// How a try ended. Serialized (`{"success": outputs}` / `{"failed": "why"}` /
/// `{"skipped": "why"}`) in the worker's spool, where an outcome waits while the store
/// cannot take it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success(serde_json::Value),
    Failed(String),
    /// The task asked to be skipped (a skip outcome, exit code or status).
    Skipped(String),
    /// A sensor in `reschedule` mode said "not yet": it pokes again later, or times out.
    NotReady(String),
}

const RUN_COLUMNS: &str = "id, pipeline_id, run_id, run_type, state, logical_date, data_interval_start, \
                           data_interval_end, conf, start_date, end_date, note";
const TI_COLUMNS: &str = "id, run_pk, task_id, state, try_number, max_tries, priority_weight, error, start_date, \
                          end_date, pool, pool_slots, queue, queued_at, worker, note";

fn run_row(row: &sqlx::any::AnyRow) -> Result<RunRow> {
    Ok(RunRow {
        id: get(row, "id")?,
        pipeline_id: get(row, "pipeline_id")?,
        run_id: get(row, "run_id")?,
        run_type: parsed(row, "run_type", RunType::parse)?,
        state: parsed(row, "state", RunState::parse)?,
        logical_date: get(row, "logical_date")?,
        data_interval_start: get(row, "data_interval_start")?,
        data_interval_end: get(row, "data_interval_end")?,
        conf: get(row, "conf")?,
        start_date: opt(row, "start_date"),
        end_date: opt(row, "end_date"),
        note: opt(row, "note"),
    })
}

/// A text column holding one of an enum's names; another value is a store error (a row
/// written by a newer version, or by hand).
fn parsed<T>(row: &sqlx::any::AnyRow, column: &'static str, parse: fn(&str) -> Option<T>) -> Result<T> {
    let text: String = get(row, column)?;
    parse(&text).ok_or_else(|| StoreError::Conflict(format!("unknown {column} `{text}` in the metadata database")))
}

fn ti_row(row: &sqlx::any::AnyRow) -> Result<TiRow> {
    let state: String = get(row, "state")?;
    Ok(TiRow {
        id: get(row, "id")?,
        run_pk: get(row, "run_pk")?,
        task_id: get(row, "task_id")?,
        state: TiState::parse(&state).ok_or_else(|| StoreError::Conflict(format!("unknown task state `{state}`")))?,
        try_number: get(row, "try_number")?,
        max_tries: get(row, "max_tries")?,
        priority_weight: get(row, "priority_weight")?,
        error: opt(row, "error"),
        start_date: opt(row, "start_date"),
        end_date: opt(row, "end_date"),
        pool: get(row, "pool")?,
        pool_slots: get(row, "pool_slots")?,
        queue: get(row, "queue")?,
        queued_at: opt(row, "queued_at"),
        worker: opt(row, "worker"),
        note: opt(row, "note"),
    })
}

/// Every task below `task_id`, nearest first ([`PipelineSpec::relatives`]). (The effective
/// priority weight, which sums over the same set, is compiled too:
/// [`TaskSpec::effective_priority_weight`].)
pub fn descendants<'p>(pipeline: &'p PipelineSpec, task_id: &str) -> Vec<&'p TaskSpec> {
    let Some(start) = pipeline.tasks.iter().position(|t| t.id == task_id) else { return Vec::new() };
    pipeline.relatives(&[start], false, true)[1..].iter().filter_map(|&t| pipeline.tasks.get(t)).collect()
}

/// The tasks that list `task` among their upstreams, as compiled.
pub(super) fn downstream_of<'p>(pipeline: &'p PipelineSpec, task: &TaskSpec) -> impl Iterator<Item = &'p TaskSpec> {
    task.downstream.iter().filter_map(|&d| pipeline.tasks.get(d as usize))
}

impl Store {
    /// A transaction holding the row locks of pipelines `ids` (PostgreSQL; sorted, so
    /// that lockers never wait on each other in a circle): every state change of one
    /// pipeline's runs takes its turn, however many schedulers and workers decide.
    /// The lock is taken with `BEGIN`, in the same round trip. SQLite has one writer, so
    /// it needs none.
    pub(in crate::engine::store) async fn begin_locked(&self, ids: &[&str]) -> Result<Tx> {
        if self.backend != Dialect::Postgres {
            return self.begin().await;
        }
        // Pipeline ids are identifiers (the compiler checks them); quoted all the same.
        let quoted: Vec<String> = ids.iter().map(|id| format!("'{}'", id.replace('\'', "''"))).collect();
        let sql = format!(
            "BEGIN; SELECT pipeline_id FROM pipelines WHERE pipeline_id IN ({}) ORDER BY pipeline_id FOR UPDATE",
            quoted.join(", ")
        );
        self.pool.begin_with(AssertSqlSafe(sql)).await.doing("locking a pipeline")
    }

    /// Creates a run and its task instances, `queued` until the scheduler starts it.
    pub async fn create_run(&self, pipeline: &PipelineSpec, new: &NewRun) -> Result<RunRow> {
        let mut tx = self.begin().await?;
        let run = self.create_run_in(&mut tx, pipeline, new).await?;
        tx.commit().await.doing("creating a run")?;
        Ok(run)
    }

    /// [`Store::create_run`] inside the caller's transaction.
    pub(in crate::engine::store) async fn create_run_in(
        &self,
        tx: &mut Tx,
        pipeline: &PipelineSpec,
        new: &NewRun,
    ) -> Result<RunRow> {
        let now = self.now();
        let clash = q("SELECT run_id FROM runs WHERE pipeline_id = $1 AND (run_id = $2 OR logical_date = $3)")
            .bind(pipeline.id)
            .bind(&new.run_id)
            .bind(new.logical_date)
            .fetch_optional(&mut **tx)
            .await
            .doing("checking for a duplicate run")?;
        if let Some(row) = clash {
            let existing: String = get(&row, "run_id")?;
            return Err(StoreError::Conflict(format!(
                "pipeline `{}` already has run `{existing}` for this logical date",
                pipeline.id
            )));
        }
        let sql = format!(
            "INSERT INTO runs (pipeline_id, run_id, run_type, state, logical_date, data_interval_start, \
             data_interval_end, conf, version_hash, created_at) VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9) \
             RETURNING {RUN_COLUMNS}"
        );
        let row = q(AssertSqlSafe(sql))
            .bind(pipeline.id)
            .bind(&new.run_id)
            .bind(new.run_type.as_str())
            .bind(new.logical_date)
            .bind(new.data_interval_start)
            .bind(new.data_interval_end)
            .bind(new.conf.to_string())
            .bind(pipeline.version_hash)
            .bind(now)
            .fetch_one(&mut **tx)
            .await;
        let row = match row {
            // Another scheduler created it between the check and here.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!(
                    "pipeline `{}` already has a run for this logical date",
                    pipeline.id
                )));
            }
            other => other.doing("creating a run")?,
        };
        let run = run_row(&row)?;
        for task in pipeline.tasks {
            let deadline = alerts::sla_deadline(task, new.run_type, new.data_interval_end);
            insert_task_instance(tx, run.id, pipeline, task, deadline).await?;
        }
        self.audit(tx, Change::new("trigger").pipeline(pipeline.id).run_id(&run.run_id)).await?;
        Ok(run)
    }

    pub async fn run(&self, run_pk: i64) -> Result<RunRow> {
        let mut tx = self.begin().await?;
        let row = q(AssertSqlSafe(format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1")))
            .bind(run_pk)
            .fetch_optional(&mut *tx)
            .await
            .doing("reading a run")?;
        tx.commit().await.doing("reading a run")?;
        row.as_ref().map(run_row).transpose()?.ok_or_else(|| StoreError::NotFound(format!("run #{run_pk}")))
    }

    pub async fn run_by_id(&self, pipeline_id: &str, run_id: &str) -> Result<RunRow> {
        let mut tx = self.begin().await?;
        let row = q(AssertSqlSafe(format!("SELECT {RUN_COLUMNS} FROM runs WHERE pipeline_id = $1 AND run_id = $2")))
            .bind(pipeline_id)
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await
            .doing("reading a run")?;
        tx.commit().await.doing("reading a run")?;
        row.as_ref()
            .map(run_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("run `{run_id}` of pipeline `{pipeline_id}`")))
    }

    /// Runs of a pipeline, newest logical date first.
    /// A page of a pipeline's runs, newest first, and how many there are in all.
    pub async fn runs_page(&self, pipeline_id: &str, limit: i64, offset: i64) -> Result<(Vec<RunRow>, i64)> {
        let mut tx = self.begin().await?;
        let rows = q(AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE pipeline_id = $1 ORDER BY logical_date DESC, id DESC LIMIT $2 OFFSET $3"
        )))
        .bind(pipeline_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *tx)
        .await
        .doing("listing runs")?;
        let total: i64 = get(
            &q("SELECT COUNT(*) AS n FROM runs WHERE pipeline_id = $1")
                .bind(pipeline_id)
                .fetch_one(&mut *tx)
                .await
                .doing("counting runs")?,
            "n",
        )?;
        tx.commit().await.doing("listing runs")?;
        Ok((rows.iter().map(run_row).collect::<Result<_>>()?, total))
    }

    /// Sets a finished-or-not run's outcome by hand, as Airflow's "mark run as": `success`
    /// makes its unfinished tasks succeed; `failed` fails its running and queued tasks and
    /// skips those not started. Running tasks are not stopped: their outcome is recorded
    /// against the try only if the run still waits for it.
    pub async fn set_run_state(&self, pipeline: &PipelineSpec, run_pk: i64, state: &str) -> Result<()> {
        let now = self.now();
        let mut tx = self.begin_locked(&[pipeline.id]).await?;
        let (done, undone) = match state {
            "success" => ("success", "success"),
            "failed" => ("failed", "skipped"),
            other => return Err(StoreError::Conflict(format!("a run can be marked success or failed, not `{other}`"))),
        };
        q("UPDATE task_instances SET state = $2, end_date = $3, next_try_at = NULL WHERE run_pk = $1 \
           AND state IN ('running', 'queued', 'up_for_retry', 'up_for_reschedule')")
        .bind(run_pk)
        .bind(done)
        .bind(now)
        .execute(&mut *tx)
        .await
        .doing("marking a run's tasks")?;
        q("UPDATE task_instances SET state = $2, end_date = $3 WHERE run_pk = $1 AND state IN ('none', 'scheduled')")
            .bind(run_pk)
            .bind(undone)
            .bind(now)
            .execute(&mut *tx)
            .await
            .doing("marking a run's tasks")?;
        let changed =
            q("UPDATE runs SET state = $2, end_date = $3, start_date = COALESCE(start_date, $3) WHERE id = $1")
                .bind(run_pk)
                .bind(state)
                .bind(now)
                .execute(&mut *tx)
                .await
                .doing("marking a run")?;
        if changed.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("run {run_pk}")));
        }
        let event = if state == "success" { "mark_run_success" } else { "mark_run_failed" };
        self.audit(&mut tx, Change::new(event).run(run_pk)).await?;
        tx.commit().await.doing("marking a run")
    }

    /// Deletes a run with its task instances, tries, logs and outputs.
    pub async fn delete_run(&self, pipeline: &PipelineSpec, run_pk: i64) -> Result<()> {
        let mut tx = self.begin_locked(&[pipeline.id]).await?;
        // Recorded first, while the run's id can still be read.
        self.audit(&mut tx, Change::new("delete_run").run(run_pk)).await?;
        for table in ["task_logs", "task_outputs", "task_tries"] {
            q(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE ti_id IN (SELECT id FROM task_instances WHERE run_pk = $1)"
            )))
            .bind(run_pk)
            .execute(&mut *tx)
            .await
            .doing("deleting a run's task data")?;
        }
        q("DELETE FROM task_instances WHERE run_pk = $1")
            .bind(run_pk)
            .execute(&mut *tx)
            .await
            .doing("deleting a run's task instances")?;
        let done = q("DELETE FROM runs WHERE id = $1").bind(run_pk).execute(&mut *tx).await.doing("deleting a run")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("run {run_pk}")));
        }
        tx.commit().await.doing("deleting a run")
    }

    /// The newest `per_pipeline` runs of every pipeline, newest first.
    pub async fn recent_runs(&self, per_pipeline: i64) -> Result<HashMap<String, Vec<RunRow>>> {
        let mut tx = self.begin().await?;
        let rows = q(AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs r WHERE (SELECT COUNT(*) FROM runs n WHERE n.pipeline_id = r.pipeline_id \
             AND (n.logical_date > r.logical_date OR (n.logical_date = r.logical_date AND n.id > r.id))) < $1 \
             ORDER BY pipeline_id, logical_date DESC, id DESC"
        )))
        .bind(per_pipeline)
        .fetch_all(&mut *tx)
        .await
        .doing("listing recent runs")?;
        tx.commit().await.doing("listing recent runs")?;
        let mut by_pipeline: HashMap<String, Vec<RunRow>> = HashMap::new();
        for row in &rows {
            let run = run_row(row)?;
            by_pipeline.entry(run.pipeline_id.clone()).or_default().push(run);
        }
        Ok(by_pipeline)
    }

    pub async fn runs(&self, pipeline_id: &str, limit: i64) -> Result<Vec<RunRow>> {
        let mut tx = self.begin().await?;
        let rows = q(AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE pipeline_id = $1 ORDER BY logical_date DESC LIMIT $2"
        )))
        .bind(pipeline_id)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .doing("listing runs")?;
        tx.commit().await.doing("listing runs")?;
        rows.iter().map(run_row).collect()
    }

    /// The pipeline's latest successful run whose logical date is before `before` (Airflow's
    /// `prev_*_success` template variables).
    pub async fn previous_success(&self, pipeline_id: &str, before: Micros) -> Result<Option<RunRow>> {
        let mut tx = self.begin().await?;
        let row = q(AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE pipeline_id = $1 AND state = 'success' AND logical_date < $2 \
             ORDER BY logical_date DESC LIMIT 1"
        )))
        .bind(pipeline_id)
        .bind(before)
        .fetch_optional(&mut *tx)
        .await
        .doing("finding the previous successful run")?;
        tx.commit().await.doing("finding the previous successful run")?;
        row.as_ref().map(run_row).transpose()
    }

    /// Sets (or, with `None`, removes) the note on run `run_pk`.
    pub async fn set_run_note(&self, run_pk: i64, note: Option<&str>) -> Result<()> {
        let mut tx = self.begin().await?;
        q("UPDATE runs SET note = $2 WHERE id = $1")
            .bind(run_pk)
            .bind(note)
            .execute(&mut *tx)
            .await
            .doing("writing a note")?;
        self.audit(&mut tx, Change::new("set_note").run(run_pk)).await?;
        tx.commit().await.doing("writing a note")
    }

    /// Sets (or, with `None`, removes) the note on task instance `ti_id`.
    pub async fn set_task_note(&self, ti_id: i64, note: Option<&str>) -> Result<()> {
        let mut tx = self.begin().await?;
        q("UPDATE task_instances SET note = $2 WHERE id = $1")
            .bind(ti_id)
            .bind(note)
            .execute(&mut *tx)
            .await
            .doing("writing a note")?;
        let at = q("SELECT run_pk, task_id FROM task_instances WHERE id = $1")
            .bind(ti_id)
            .fetch_optional(&mut *tx)
            .await
            .doing("writing a note")?;
        if let Some(at) = at {
            let task: String = get(&at, "task_id")?;
            let change = Change::new("set_note").run(get(&at, "run_pk")?).task(&task);
            self.audit(&mut tx, change).await?;
        }
        tx.commit().await.doing("writing a note")
    }

    /// Runs of a pipeline whose logical date is within `[from, to]` (either bound open when
    /// `None`), oldest first.
    pub async fn runs_between(
        &self,
        pipeline_id: &str,
        from: Option<Micros>,
        to: Option<Micros>,
    ) -> Result<Vec<RunRow>> {
        let mut tx = self.begin().await?;
        let rows = q(AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE pipeline_id = $1 AND logical_date >= $2 AND logical_date <= $3 \
             ORDER BY logical_date, id"
        )))
        .bind(pipeline_id)
        .bind(from.unwrap_or(Micros::MIN))
        .bind(to.unwrap_or(Micros::MAX))
        .fetch_all(&mut *tx)
        .await
        .doing("listing runs by date")?;
        tx.commit().await.doing("listing runs by date")?;
        rows.iter().map(run_row).collect()
    }

    /// Runs that are queued or running, oldest first: what the scheduler looks after.
    pub async fn active_runs(&self) -> Result<Vec<RunRow>> {
        let mut tx = self.begin().await?;
        let rows = q(AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE state IN ('queued', 'running') ORDER BY logical_date, id"
        )))
        .fetch_all(&mut *tx)
        .await
        .doing("listing active runs")?;
        tx.commit().await.doing("listing active runs")?;
        rows.iter().map(run_row).collect()
    }

    /// The latest logical date of a scheduled run: where the timetable continues from.
    pub async fn last_scheduled(&self, pipeline_id: &str) -> Result<Option<Micros>> {
        let mut tx = self.begin().await?;
        let row = q("SELECT MAX(logical_date) AS last FROM runs WHERE pipeline_id = $1 AND run_type = 'scheduled'")
            .bind(pipeline_id)
            .fetch_one(&mut *tx)
            .await
            .doing("reading the last scheduled run")?;
        tx.commit().await.doing("reading the last scheduled run")?;
        Ok(opt(&row, "last"))
    }

    pub async fn task_instances(&self, run_pk: i64) -> Result<Vec<TiRow>> {
        let mut tx = self.begin().await?;
        let rows = q(AssertSqlSafe(format!("SELECT {TI_COLUMNS} FROM task_instances WHERE run_pk = $1 ORDER BY id")))
            .bind(run_pk)
            .fetch_all(&mut *tx)
            .await
            .doing("listing task instances")?;
        tx.commit().await.doing("listing task instances")?;
        rows.iter().map(ti_row).collect()
    }

    /// The earliest time a task waiting for a retry or a sensor's next poke becomes due, for
    /// the scheduler's timer.
    pub async fn next_retry_at(&self) -> Result<Option<Micros>> {
        let mut tx = self.begin().await?;
        let row =
            q("SELECT MIN(next_try_at) AS at FROM task_instances WHERE state IN ('up_for_retry', 'up_for_reschedule')")
                .fetch_one(&mut *tx)
                .await
                .doing("reading retries")?;
        tx.commit().await.doing("reading retries")?;
        Ok(opt(&row, "at"))
    }
}
