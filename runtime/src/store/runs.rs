//! Runs and task instances: creation, the state machine, and what workers claim and
//! report. Each transition is one transaction; finishing a task also decides what becomes
//! ready downstream in that same transaction, so dispatch needs no polling.

use super::alerts::{self, Event};
use super::{Doing, Result, Store, StoreError, Tx, get, opt, q};
use crate::clock::Micros;
use crate::rules::{Decision, TiState, decide};
use crate::spec::{PipelineSpec, TaskSpec, TriggerRule};
use crate::tasklog::{LogLimits, LogUsage, PageSize};
use sqlx::AssertSqlSafe;
use std::collections::{BTreeMap, HashMap};

/// A run to create.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub run_id: String,
    /// `scheduled`, `manual` or `backfill`.
    pub run_type: &'static str,
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
    pub run_type: String,
    pub state: String,
    pub logical_date: Micros,
    pub data_interval_start: Micros,
    pub data_interval_end: Micros,
    pub conf: String,
    pub start_date: Option<Micros>,
    pub end_date: Option<Micros>,
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
#[derive(Debug, Clone, Copy)]
pub struct Finish<'a> {
    pub pipeline: &'a PipelineSpec,
    pub ti_id: i64,
    pub try_number: i64,
    pub outcome: &'a Outcome,
    /// The try's run, when the caller has it: a task of the same run claimed next with
    /// [`Take`] needs it, and need not read it again.
    pub run: Option<&'a RunRow>,
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

/// How a try ended. Serialized (`{"success": outputs}` / `{"failed": "why"}`) in the
/// worker's spool, where an outcome waits while the store cannot take it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success(serde_json::Value),
    Failed(String),
}

const RUN_COLUMNS: &str = "id, pipeline_id, run_id, run_type, state, logical_date, data_interval_start, \
                           data_interval_end, conf, start_date, end_date";
const TI_COLUMNS: &str = "id, run_pk, task_id, state, try_number, max_tries, priority_weight, error, start_date, \
                          end_date, pool, pool_slots, queue, queued_at, worker";

fn run_row(row: &sqlx::any::AnyRow) -> Result<RunRow> {
    Ok(RunRow {
        id: get(row, "id")?,
        pipeline_id: get(row, "pipeline_id")?,
        run_id: get(row, "run_id")?,
        run_type: get(row, "run_type")?,
        state: get(row, "state")?,
        logical_date: get(row, "logical_date")?,
        data_interval_start: get(row, "data_interval_start")?,
        data_interval_end: get(row, "data_interval_end")?,
        conf: get(row, "conf")?,
        start_date: opt(row, "start_date"),
        end_date: opt(row, "end_date"),
    })
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
    })
}

/// Every task below `task_id`, nearest first.
pub fn descendants<'p>(pipeline: &'p PipelineSpec, task_id: &str) -> Vec<&'p str> {
    let mut out: Vec<&str> = Vec::new();
    let mut frontier = vec![task_id];
    while let Some(id) = frontier.pop() {
        for t in pipeline.tasks.iter().filter(|t| t.depends_on.contains(&id)) {
            if !out.contains(&t.id) {
                out.push(t.id);
                frontier.insert(0, t.id);
            }
        }
    }
    out
}

/// Airflow's default `downstream` weight rule: a task's own weight plus all its descendants'.
pub fn effective_priority(pipeline: &PipelineSpec, task: &TaskSpec) -> i64 {
    let below: i64 = descendants(pipeline, task.id)
        .iter()
        .filter_map(|id| pipeline.task(id))
        .map(|t| i64::from(t.priority_weight))
        .sum();
    i64::from(task.priority_weight) + below
}

/// Seconds to wait before try `next_try` (2 = the first retry), with Airflow's doubling
/// under exponential backoff and the cap.
pub fn retry_delay_secs(task: &TaskSpec, next_try: i64) -> u64 {
    let base = task.retry.retry_delay_secs;
    let delay = if task.retry.exponential_backoff {
        let exponent = u32::try_from((next_try - 2).max(0)).unwrap_or(u32::MAX).min(30);
        base.saturating_mul(1u64 << exponent)
    } else {
        base
    };
    task.retry.max_retry_delay_secs.map_or(delay, |cap| delay.min(cap))
}

impl Store {
    /// A transaction holding the row locks of pipelines `ids` (PostgreSQL; sorted, so
    /// that lockers never wait on each other in a circle): every state change of one
    /// pipeline's runs takes its turn, however many schedulers and workers decide.
    /// The lock is taken with `BEGIN`, in the same round trip. SQLite has one writer, so
    /// it needs none.
    async fn begin_locked(&self, ids: &[&str]) -> Result<Tx> {
        if self.backend != super::Backend::Postgres {
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
        let now = self.now();
        let mut tx = self.begin().await?;
        let clash = q("SELECT run_id FROM runs WHERE pipeline_id = $1 AND (run_id = $2 OR logical_date = $3)")
            .bind(pipeline.id)
            .bind(&new.run_id)
            .bind(new.logical_date)
            .fetch_optional(&mut *tx)
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
            .bind(new.run_type)
            .bind(new.logical_date)
            .bind(new.data_interval_start)
            .bind(new.data_interval_end)
            .bind(new.conf.to_string())
            .bind(pipeline.version_hash)
            .bind(now)
            .fetch_one(&mut *tx)
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
            insert_task_instance(&mut tx, run.id, pipeline, task, deadline).await?;
        }
        tx.commit().await.doing("creating a run")?;
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
           AND state IN ('running', 'queued', 'up_for_retry')")
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
        tx.commit().await.doing("marking a run")
    }

    /// Deletes a run with its task instances, tries, logs and outputs.
    pub async fn delete_run(&self, pipeline: &PipelineSpec, run_pk: i64) -> Result<()> {
        let mut tx = self.begin_locked(&[pipeline.id]).await?;
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

    /// Keeps what try `try_number` rendered (already masked).
    pub async fn record_rendered(
        &self,
        ti_id: i64,
        try_number: i64,
        rendered: &BTreeMap<String, String>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        q("UPDATE task_tries SET rendered = $3 WHERE ti_id = $1 AND try_number = $2")
            .bind(ti_id)
            .bind(try_number)
            .bind(serde_json::to_string(rendered).unwrap_or_default())
            .execute(&mut *tx)
            .await
            .doing("recording rendered templates")?;
        tx.commit().await.doing("recording rendered templates")
    }

    /// What try `try_number` rendered; empty when nothing was recorded.
    pub async fn rendered(&self, ti_id: i64, try_number: i64) -> Result<BTreeMap<String, String>> {
        let mut tx = self.begin().await?;
        let row = q("SELECT rendered FROM task_tries WHERE ti_id = $1 AND try_number = $2")
            .bind(ti_id)
            .bind(try_number)
            .fetch_optional(&mut *tx)
            .await
            .doing("reading rendered templates")?;
        tx.commit().await.doing("reading rendered templates")?;
        let text: Option<String> = row.and_then(|r| opt(&r, "rendered"));
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default())
    }

    /// The outputs a task instance's successful try recorded.
    pub async fn outputs(&self, ti_id: i64) -> Result<Option<serde_json::Value>> {
        let mut tx = self.begin().await?;
        let row = q("SELECT outputs FROM task_outputs WHERE ti_id = $1")
            .bind(ti_id)
            .fetch_optional(&mut *tx)
            .await
            .doing("reading task outputs")?;
        tx.commit().await.doing("reading task outputs")?;
        Ok(row.map(|r| get::<String>(&r, "outputs")).transpose()?.and_then(|t| serde_json::from_str(&t).ok()))
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

    /// Starts queued runs while the pipeline is below `max_active_runs`, then decides what
    /// is ready in each of its running runs. Returns the task instances it queued.
    pub async fn advance_pipeline(&self, pipeline: &PipelineSpec, parallelism: u32) -> Result<Vec<Queued>> {
        let now = self.now();
        let mut tx = self.begin_locked(&[pipeline.id]).await?;
        let running: i64 = get(
            &q("SELECT COUNT(*) AS n FROM runs WHERE pipeline_id = $1 AND state = 'running'")
                .bind(pipeline.id)
                .fetch_one(&mut *tx)
                .await
                .doing("counting running runs")?,
            "n",
        )?;
        let room = i64::from(pipeline.max_active_runs) - running;
        if room > 0 {
            let queued =
                q("SELECT id FROM runs WHERE pipeline_id = $1 AND state = 'queued' ORDER BY logical_date, id LIMIT $2")
                    .bind(pipeline.id)
                    .bind(room)
                    .fetch_all(&mut *tx)
                    .await
                    .doing("listing queued runs")?;
            for row in queued {
                let id: i64 = get(&row, "id")?;
                q("UPDATE runs SET state = 'running', start_date = $2 WHERE id = $1 AND state = 'queued'")
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .doing("starting a run")?;
            }
        }
        let runs = q("SELECT id FROM runs WHERE pipeline_id = $1 AND state = 'running' ORDER BY logical_date, id")
            .bind(pipeline.id)
            .fetch_all(&mut *tx)
            .await
            .doing("listing running runs")?;
        let mut queued = Vec::new();
        for row in runs {
            let run_pk: i64 = get(&row, "id")?;
            queued.extend(advance_in_tx(&mut tx, pipeline, run_pk, now, parallelism).await?);
        }
        fail::fail_point!("store.advance.before_commit", |_| std::process::abort());
        tx.commit().await.doing("advancing a pipeline")?;
        Ok(queued)
    }

    /// Claims a queued task instance for `worker`: it becomes `running` with its next try,
    /// with its upstreams' outputs (looked up in `pipelines`). `None` if another worker got
    /// it first or it is no longer queued.
    pub async fn claim(&self, ti_id: i64, worker: &str, pipelines: &[PipelineSpec]) -> Result<Option<Claimed>> {
        Ok(self.claim_many(&[ti_id], worker, pipelines).await?.pop())
    }

    /// [`Store::claim`] for several task instances in one transaction; returns those
    /// still queued, now claimed, in the order given.
    pub async fn claim_many(&self, ti_ids: &[i64], worker: &str, pipelines: &[PipelineSpec]) -> Result<Vec<Claimed>> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let claimed = claim_in_tx(&mut tx, ti_ids, worker, pipelines, &Known::default(), now).await?;
        tx.commit().await.doing("claiming a task")?;
        Ok(claimed)
    }

    /// Records how try `try_number` ended and, in the same transaction, queues whatever
    /// became ready. Only the current running try can finish (a late or duplicate report
    /// changes nothing), so recording an outcome is exactly-once.
    pub async fn finish(
        &self,
        pipeline: &PipelineSpec,
        ti_id: i64,
        try_number: i64,
        outcome: &Outcome,
        parallelism: u32,
    ) -> Result<Vec<Queued>> {
        let finish = Finish { pipeline, ti_id, try_number, outcome, run: None };
        Ok(self.finish_many(&[finish], parallelism, None).await?.queued)
    }

    /// Records several outcomes in one transaction (see [`Store::finish`]), deciding each
    /// affected run once for all of its finished tasks: outcomes that arrive together
    /// share one turn on their pipelines' locks. With `take`, each finished try's worker
    /// slot also claims, in the same transaction, a task it queued that the worker serves,
    /// to run next without a trip through the broker.
    pub async fn finish_many(
        &self,
        finishes: &[Finish<'_>],
        parallelism: u32,
        take: Option<Take<'_>>,
    ) -> Result<RecordedBatch> {
        let now = self.now();
        let mut pipeline_ids: Vec<&str> = finishes.iter().map(|f| f.pipeline.id).collect();
        pipeline_ids.sort_unstable();
        pipeline_ids.dedup();
        let mut tx = self.begin_locked(&pipeline_ids).await?;
        let mut ended = record_successes(&mut tx, finishes, now).await?;
        for (index, finish) in finishes.iter().enumerate() {
            if let Outcome::Failed(message) = finish.outcome
                && let Some(end) = record_failure(&mut tx, index, finish, message, now).await?
            {
                ended.push(end);
            }
        }
        for end in &ended {
            queue_task_alerts(&mut tx, &finishes[end.index], end, now).await?;
        }

        // Each run is decided once, for all of its tasks that ended.
        let mut report = RecordedBatch { queued: Vec::new(), each: vec![Recorded::default(); finishes.len()] };
        let mut runs: Vec<i64> = ended.iter().map(|e| e.run_pk).collect();
        runs.sort_unstable();
        runs.dedup();
        for run_pk in runs {
            let of_run: Vec<&Ended> = ended.iter().filter(|e| e.run_pk == run_pk).collect();
            let pipeline = finishes[of_run[0].index].pipeline;
            let tasks: Vec<&str> = of_run.iter().map(|e| e.task_id.as_str()).collect();
            let all_succeeded = of_run.iter().all(|e| e.state == TiState::Success);
            let queued = advance_after(&mut tx, pipeline, run_pk, &tasks, all_succeeded, now, parallelism).await?;
            for end in &of_run {
                report.each[end.index] = Recorded {
                    ended: true,
                    failed: end.state != TiState::Success,
                    run_queued: queued.len(),
                    next: None,
                };
            }
            report.queued.extend(queued);
        }

        if let Some(take) = take {
            let mut takers = Vec::new();
            let mut ids = Vec::new();
            for end in &ended {
                if let Some(at) = report.queued.iter().position(|q| take.serves(&q.queue)) {
                    ids.push(report.queued.remove(at).ti_id);
                    takers.push(end.index);
                }
            }
            let known = Known::of(finishes, &ended);
            for claimed in claim_in_tx(&mut tx, &ids, take.worker, take.pipelines, &known, now).await? {
                if let Some(at) = ids.iter().position(|id| *id == claimed.ti_id) {
                    report.each[takers[at]].next = Some(claimed);
                }
            }
        }
        fail::fail_point!("store.finish.before_commit", |_| std::process::abort());
        tx.commit().await.doing("finishing a task")?;
        Ok(report)
    }

    /// Appends lines to a try's log, outside its cap: the runtime's own last word on a try
    /// (its error, a zombie's fate). A task's own lines go through
    /// [`Store::append_task_log`].
    pub async fn append_logs(&self, ti_id: i64, try_number: i64, lines: &[(String, String)]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let mut tx = self.begin().await?;
        insert_log_lines(&mut tx, ti_id, try_number, now, lines).await?;
        tx.commit().await.doing("writing a task log")
    }

    /// A try's log lines, in order: all of them at once (at most the try's cap, see
    /// [`Store::append_task_log`]); readers that show a log use [`Store::log_page`].
    pub async fn logs(&self, ti_id: i64, try_number: i64) -> Result<Vec<String>> {
        let mut tx = self.begin().await?;
        let rows = q("SELECT line FROM task_logs WHERE ti_id = $1 AND try_number = $2 ORDER BY id")
            .bind(ti_id)
            .bind(try_number)
            .fetch_all(&mut *tx)
            .await
            .doing("reading a task log")?;
        tx.commit().await.doing("reading a task log")?;
        rows.iter().map(|r| get(r, "line")).collect()
    }

    /// Appends the lines a try wrote to its log, within `limits`: what fits is stored, the
    /// rest is counted as dropped, and where the log is first cut one line says so
    /// ([`LogLimits::cut_notice`]). Once a try's log is cut nothing more of its own is
    /// kept, so the stored log is always a prefix of what the task wrote. The counts live
    /// in `task_log_usage`, so the cap holds across batches, writers and hand-backs.
    ///
    /// On the usual path (the lines fit) this costs two statements: the counts are added
    /// optimistically and read back in one upsert, then the lines go in with one insert per
    /// [`LOG_INSERT_ROWS`]. Only the batch that crosses the cap pays for the correction.
    pub async fn append_task_log(
        &self,
        ti_id: i64,
        try_number: i64,
        lines: &[(String, String)],
        limits: LogLimits,
    ) -> Result<LogAppend> {
        if lines.is_empty() {
            return Ok(LogAppend::default());
        }
        let doing = "writing a task log";
        let sizes: Vec<u64> = lines.iter().map(|(_, line)| line.len() as u64).collect();
        let (count, bytes) = (sizes.len() as i64, sizes.iter().sum::<u64>() as i64);
        let now = self.now();
        let mut tx = self.begin().await?;
        // The upsert also locks the try's counts (PostgreSQL) until the commit: two writers
        // of one try take turns, and neither can slip past the cap.
        let row =
            q("INSERT INTO task_log_usage (ti_id, try_number, lines, bytes, dropped) VALUES ($1, $2, $3, $4, 0) \
                     ON CONFLICT (ti_id, try_number) DO UPDATE \
                     SET lines = task_log_usage.lines + excluded.lines, bytes = task_log_usage.bytes + excluded.bytes \
                     RETURNING lines, bytes, cut_line")
            .bind(ti_id)
            .bind(try_number)
            .bind(count)
            .bind(bytes)
            .fetch_one(&mut *tx)
            .await
            .doing(doing)?;
        let (total_lines, total_bytes): (i64, i64) = (get(&row, "lines")?, get(&row, "bytes")?);
        let cut_line: Option<i64> = opt(&row, "cut_line");
        let used = LogUsage {
            lines: u64::try_from(total_lines - count).unwrap_or(0),
            bytes: u64::try_from(total_bytes - bytes).unwrap_or(0),
        };
        let kept = if cut_line.is_some() { 0 } else { limits.admit(used, sizes.iter().copied()) };
        insert_log_lines(&mut tx, ti_id, try_number, now, &lines[..kept]).await?;
        if kept == lines.len() {
            tx.commit().await.doing(doing)?;
            return Ok(LogAppend { kept, cut: false });
        }
        let cut_line = match cut_line {
            Some(id) => id,
            None => {
                let row =
                    q("INSERT INTO task_logs (ti_id, try_number, at, stream, line) VALUES ($1, $2, $3, 'info', $4) \
                             RETURNING id")
                    .bind(ti_id)
                    .bind(try_number)
                    .bind(now)
                    .bind(limits.cut_notice(None))
                    .fetch_one(&mut *tx)
                    .await
                    .doing(doing)?;
                get(&row, "id")?
            }
        };
        let kept_bytes: u64 = sizes[..kept].iter().sum();
        q("UPDATE task_log_usage SET lines = $3, bytes = $4, dropped = dropped + $5, cut_line = $6 \
           WHERE ti_id = $1 AND try_number = $2")
        .bind(ti_id)
        .bind(try_number)
        .bind(i64::try_from(used.lines + kept as u64).unwrap_or(i64::MAX))
        .bind(i64::try_from(used.bytes + kept_bytes).unwrap_or(i64::MAX))
        .bind((lines.len() - kept) as i64)
        .bind(cut_line)
        .execute(&mut *tx)
        .await
        .doing(doing)?;
        tx.commit().await.doing(doing)?;
        Ok(LogAppend { kept, cut: true })
    }

    /// Ends a try's log: adds `more_dropped` (lines its writer did not even send, once the
    /// log was cut) to the count, and rewrites the line where the log was cut with the
    /// final count. Nothing to do for a log that was never cut.
    pub async fn end_task_log(&self, ti_id: i64, try_number: i64, more_dropped: u64, limits: LogLimits) -> Result<()> {
        let doing = "ending a task log";
        let mut tx = self.begin().await?;
        let row = q("UPDATE task_log_usage SET dropped = dropped + $3 WHERE ti_id = $1 AND try_number = $2 \
                     RETURNING dropped, cut_line")
        .bind(ti_id)
        .bind(try_number)
        .bind(i64::try_from(more_dropped).unwrap_or(i64::MAX))
        .fetch_optional(&mut *tx)
        .await
        .doing(doing)?;
        if let Some(row) = row
            && let Some(cut_line) = opt::<i64>(&row, "cut_line")
        {
            let dropped = u64::try_from(get::<i64>(&row, "dropped")?).unwrap_or(0);
            q("UPDATE task_logs SET line = $2 WHERE id = $1")
                .bind(cut_line)
                .bind(limits.cut_notice(Some(dropped)))
                .execute(&mut *tx)
                .await
                .doing(doing)?;
        }
        tx.commit().await.doing(doing)
    }

    /// One page of a try's log, oldest line first: at most `size.lines` lines and
    /// `size.bytes` bytes of text (but at least one line), read after or before a line id.
    /// The database does the sizing, so a page of long lines is never read whole into
    /// memory first.
    pub async fn log_page(&self, ti_id: i64, try_number: i64, from: LogFrom, size: PageSize) -> Result<Vec<LogRow>> {
        let length = match self.backend {
            super::Backend::Postgres => "octet_length(line)",
            super::Backend::Sqlite => "length(CAST(line AS BLOB))",
        };
        let (condition, order, position) = match from {
            LogFrom::After(id) => ("id > $3", "", id),
            LogFrom::Before(id) => ("id < $3", " DESC", id),
        };
        // The newest page is read backwards; the running sum over the (limited) rows finds
        // where the byte bound falls.
        let sql = format!(
            "SELECT id, stream, line FROM ( \
               SELECT id, stream, line, size, SUM(size) OVER (ORDER BY id{order}) AS upto FROM ( \
                 SELECT id, stream, line, {length} AS size FROM task_logs \
                 WHERE ti_id = $1 AND try_number = $2 AND {condition} ORDER BY id{order} LIMIT $4 \
               ) rows_in_page \
             ) sized WHERE upto - size < $5 ORDER BY id"
        );
        let mut tx = self.begin().await?;
        let rows = q(AssertSqlSafe(sql))
            .bind(ti_id)
            .bind(try_number)
            .bind(position)
            .bind(size.lines.max(1))
            .bind(size.bytes.max(1))
            .fetch_all(&mut *tx)
            .await
            .doing("reading a task log")?;
        tx.commit().await.doing("reading a task log")?;
        rows.iter()
            .map(|r| Ok(LogRow { id: get(r, "id")?, stream: get(r, "stream")?, line: get(r, "line")? }))
            .collect()
    }

    /// The ids of the first and the last stored line of a try's log; `None` when it is
    /// empty. Pages use them to tell whether there is more before or after them.
    pub async fn log_ends(&self, ti_id: i64, try_number: i64) -> Result<Option<(i64, i64)>> {
        let mut tx = self.begin().await?;
        let row = q("SELECT \
                       (SELECT id FROM task_logs WHERE ti_id = $1 AND try_number = $2 ORDER BY id LIMIT 1) AS first, \
                       (SELECT id FROM task_logs WHERE ti_id = $1 AND try_number = $2 ORDER BY id DESC LIMIT 1) AS last")
            .bind(ti_id)
            .bind(try_number)
            .fetch_one(&mut *tx)
            .await
            .doing("reading a task log")?;
        tx.commit().await.doing("reading a task log")?;
        Ok(opt::<i64>(&row, "first").zip(opt::<i64>(&row, "last")))
    }

    /// The earliest time a task waiting for a retry becomes due, for the scheduler's timer.
    pub async fn next_retry_at(&self) -> Result<Option<Micros>> {
        let mut tx = self.begin().await?;
        let row = q("SELECT MIN(next_try_at) AS at FROM task_instances WHERE state = 'up_for_retry'")
            .fetch_one(&mut *tx)
            .await
            .doing("reading retries")?;
        tx.commit().await.doing("reading retries")?;
        Ok(opt(&row, "at"))
    }
}

/// Records the successes among `finishes` whose try is running: two statements however
/// many there are. Outputs other than unit leave a row each.
async fn record_successes(tx: &mut Tx, finishes: &[Finish<'_>], now: Micros) -> Result<Vec<Ended>> {
    let tries: Vec<(i64, i64)> =
        finishes.iter().filter(|f| matches!(f.outcome, Outcome::Success(_))).map(|f| (f.ti_id, f.try_number)).collect();
    if tries.is_empty() {
        return Ok(Vec::new());
    }
    let update = format!(
        "UPDATE task_instances SET state = 'success', end_date = $1, error = NULL, next_try_at = NULL \
         WHERE state = 'running' AND {} RETURNING id, run_pk, task_id, try_number",
        in_json_tries(tx, "id", "try_number", 2)
    );
    // PostgreSQL ends the tries in the same statement (one round trip fewer).
    let postgres = tx.backend_name() == "PostgreSQL";
    let sql = if postgres {
        format!(
            "WITH done AS ({update}), tries AS (UPDATE task_tries t SET state = 'success', end_date = $1, \
             error = NULL FROM done WHERE t.ti_id = done.id AND t.try_number = done.try_number) \
             SELECT id, run_pk, task_id, try_number FROM done"
        )
    } else {
        update
    };
    let rows = q(AssertSqlSafe(sql))
        .bind(now)
        .bind(json_list(&tries))
        .fetch_all(&mut **tx)
        .await
        .doing("recording a task outcome")?;
    let mut ended = Vec::new();
    let mut recorded = Vec::new();
    for row in &rows {
        let (ti_id, try_number): (i64, i64) = (get(row, "id")?, get(row, "try_number")?);
        let Some(index) = finishes.iter().position(|f| f.ti_id == ti_id && f.try_number == try_number) else {
            continue;
        };
        recorded.push((ti_id, try_number));
        let task_id = get(row, "task_id")?;
        ended.push(Ended { index, run_pk: get(row, "run_pk")?, task_id, state: TiState::Success, error: None });
    }
    if !postgres && !recorded.is_empty() {
        let sql = format!(
            "UPDATE task_tries SET state = 'success', end_date = $1, error = NULL WHERE {}",
            in_json_tries(tx, "ti_id", "try_number", 2)
        );
        q(AssertSqlSafe(sql)).bind(now).bind(json_list(&recorded)).execute(&mut **tx).await.doing("recording a try")?;
    }
    for end in &ended {
        let finish = &finishes[end.index];
        if let Outcome::Success(outputs) = finish.outcome
            && !outputs.is_null()
        {
            q("INSERT INTO task_outputs (ti_id, outputs, created_at) VALUES ($1, $2, $3) \
               ON CONFLICT (ti_id) DO UPDATE SET outputs = excluded.outputs, created_at = excluded.created_at")
            .bind(finish.ti_id)
            .bind(outputs.to_string())
            .bind(now)
            .execute(&mut **tx)
            .await
            .doing("recording task outputs")?;
        }
    }
    Ok(ended)
}

/// Records that `finishes[index]` failed with `message`, if its try is running: up for
/// retry while it has tries left, else failed.
async fn record_failure(
    tx: &mut Tx,
    index: usize,
    finish: &Finish<'_>,
    message: &str,
    now: Micros,
) -> Result<Option<Ended>> {
    let row = q("SELECT run_pk, task_id, max_tries FROM task_instances WHERE id = $1 AND state = 'running' \
                 AND try_number = $2")
    .bind(finish.ti_id)
    .bind(finish.try_number)
    .fetch_optional(&mut **tx)
    .await
    .doing("recording a task outcome")?;
    let Some(row) = row else { return Ok(None) };
    let task_id: String = get(&row, "task_id")?;
    let max_tries: i64 = get(&row, "max_tries")?;
    let (state, next_try) = if finish.try_number < max_tries {
        let delay = finish.pipeline.task(&task_id).map_or(0, |t| retry_delay_secs(t, finish.try_number + 1));
        (TiState::UpForRetry, Some(now + i64::try_from(delay).unwrap_or(i64::MAX / 2_000_000) * 1_000_000))
    } else {
        (TiState::Failed, None)
    };
    q("UPDATE task_instances SET state = $2, end_date = $3, error = $4, next_try_at = $5 WHERE id = $1")
        .bind(finish.ti_id)
        .bind(state.as_str())
        .bind(now)
        .bind(message)
        .bind(next_try)
        .execute(&mut **tx)
        .await
        .doing("recording a task outcome")?;
    q("UPDATE task_tries SET state = 'failed', end_date = $3, error = $4 WHERE ti_id = $1 AND try_number = $2")
        .bind(finish.ti_id)
        .bind(finish.try_number)
        .bind(now)
        .bind(message)
        .execute(&mut **tx)
        .await
        .doing("recording a try")?;
    let run_pk = get(&row, "run_pk")?;
    Ok(Some(Ended { index, run_pk, task_id, state, error: Some(message.to_string()) }))
}

/// Queues the notifications the task asked for on this end (success, retry, failure).
async fn queue_task_alerts(tx: &mut Tx, finish: &Finish<'_>, end: &Ended, now: Micros) -> Result<()> {
    let Some(task) = finish.pipeline.task(&end.task_id) else { return Ok(()) };
    let event = match end.state {
        TiState::Success => Event::Success,
        TiState::UpForRetry => Event::Retry,
        _ => Event::Failure,
    };
    let targets = event.task_targets(task);
    if targets.is_empty() {
        return Ok(());
    }
    let (run_id, logical_date) = alerts::run_identity(tx, end.run_pk).await?;
    let notice = alerts::Notice {
        event,
        pipeline_id: finish.pipeline.id,
        run_id: &run_id,
        logical_date,
        task_id: Some(task.id),
        try_number: Some(finish.try_number),
        state: end.state.as_str(),
        error: end.error.as_deref(),
        sla_deadline: None,
    };
    alerts::enqueue(tx, &notice, targets, task.email, now).await
}

/// What a finishing transaction already holds when it claims: the runs its callers
/// passed, and the tasks that succeeded in it with their outputs (unit ones have none).
#[derive(Debug, Default)]
struct Known<'a> {
    runs: Vec<&'a RunRow>,
    succeeded: Vec<(i64, &'a str)>,
    outputs: Vec<((i64, &'a str), &'a serde_json::Value)>,
}

impl<'a> Known<'a> {
    fn of(finishes: &[Finish<'a>], ended: &'a [Ended]) -> Known<'a> {
        let mut known = Known { runs: finishes.iter().filter_map(|f| f.run).collect(), ..Known::default() };
        for end in ended {
            if let Outcome::Success(value) = finishes[end.index].outcome {
                known.succeeded.push((end.run_pk, end.task_id.as_str()));
                if !value.is_null() {
                    known.outputs.push(((end.run_pk, end.task_id.as_str()), value));
                }
            }
        }
        known
    }
}

/// Claims queued task instances `ti_ids` for `worker` inside `tx` (see
/// [`Store::claim_many`]): four statements however many there are.
async fn claim_in_tx(
    tx: &mut Tx,
    ti_ids: &[i64],
    worker: &str,
    pipelines: &[PipelineSpec],
    known: &Known<'_>,
    now: Micros,
) -> Result<Vec<Claimed>> {
    if ti_ids.is_empty() {
        return Ok(Vec::new());
    }
    let update = format!(
        "UPDATE task_instances SET state = 'running', try_number = try_number + 1, start_date = $2, \
         end_date = NULL, worker = $3, heartbeat_at = $2, error = NULL \
         WHERE id {} AND state = 'queued' RETURNING id, run_pk, pipeline_id, task_id, try_number",
        in_json(tx, 1, true)
    );
    // PostgreSQL starts the tries in the same statement (one round trip fewer).
    let postgres = tx.backend_name() == "PostgreSQL";
    let sql = if postgres {
        format!(
            "WITH claimed AS ({update}), tries AS (INSERT INTO task_tries (ti_id, try_number, state, start_date, \
             worker) SELECT id, try_number, 'running', $2, $3 FROM claimed) \
             SELECT id, run_pk, pipeline_id, task_id, try_number FROM claimed"
        )
    } else {
        update
    };
    let rows = q(AssertSqlSafe(sql))
        .bind(json_list(ti_ids))
        .bind(now)
        .bind(worker)
        .fetch_all(&mut **tx)
        .await
        .doing("claiming a task")?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut claimed = Vec::new();
    for row in &rows {
        claimed.push((
            get::<i64>(row, "id")?,
            get::<i64>(row, "run_pk")?,
            get::<String>(row, "pipeline_id")?,
            get::<String>(row, "task_id")?,
            get::<i64>(row, "try_number")?,
        ));
    }
    if !postgres {
        let ids: Vec<i64> = claimed.iter().map(|c| c.0).collect();
        let sql = format!(
            "INSERT INTO task_tries (ti_id, try_number, state, start_date, worker) \
             SELECT id, try_number, 'running', start_date, worker FROM task_instances WHERE id {}",
            in_json(tx, 1, true)
        );
        q(AssertSqlSafe(sql)).bind(json_list(&ids)).execute(&mut **tx).await.doing("recording a try")?;
    }

    let mut run_pks: Vec<i64> = claimed.iter().map(|c| c.1).collect();
    run_pks.sort_unstable();
    run_pks.dedup();
    let mut runs: HashMap<i64, RunRow> =
        known.runs.iter().filter(|r| run_pks.contains(&r.id)).map(|r| (r.id, (*r).clone())).collect();
    if runs.len() < run_pks.len() {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id {}", in_json(tx, 1, true));
        for row in q(AssertSqlSafe(sql)).bind(json_list(&run_pks)).fetch_all(&mut **tx).await.doing("reading a run")? {
            let run = run_row(&row)?;
            runs.insert(run.id, run);
        }
    }

    // Only direct upstreams' outputs reach a task (its typed `Upstream`).
    let upstreams_of = |pipeline_id: &str, task_id: &str| {
        pipelines.iter().find(|p| p.id == pipeline_id).and_then(|p| p.task(task_id)).map_or(&[][..], |t| t.depends_on)
    };
    let mut upstreams: Vec<&str> = claimed.iter().flat_map(|c| upstreams_of(&c.2, &c.3).iter().copied()).collect();
    upstreams.sort_unstable();
    upstreams.dedup();
    let mut outputs: HashMap<(i64, String), serde_json::Value> = HashMap::new();
    let all_known = claimed.iter().all(|c| {
        upstreams_of(&c.2, &c.3).iter().all(|u| known.succeeded.iter().any(|(run, task)| *run == c.1 && task == u))
    });
    if all_known {
        for ((run_pk, task), value) in &known.outputs {
            outputs.insert((*run_pk, (*task).to_string()), (*value).clone());
        }
    } else if !upstreams.is_empty() {
        let sql = format!(
            "SELECT ti.run_pk, ti.task_id, o.outputs FROM task_outputs o JOIN task_instances ti ON ti.id = o.ti_id \
             WHERE ti.run_pk {} AND ti.task_id {} AND ti.state = 'success'",
            in_json(tx, 1, true),
            in_json(tx, 2, false)
        );
        let query = q(AssertSqlSafe(sql)).bind(json_list(&run_pks)).bind(json_list(&upstreams));
        for row in query.fetch_all(&mut **tx).await.doing("reading upstream outputs")? {
            let text: String = get(&row, "outputs")?;
            let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
            outputs.insert((get(&row, "run_pk")?, get(&row, "task_id")?), value);
        }
    }

    let mut done = Vec::new();
    for id in ti_ids {
        let Some((ti_id, run_pk, pipeline_id, task_id, try_number)) = claimed.iter().find(|c| c.0 == *id).cloned()
        else {
            continue;
        };
        let Some(run) = runs.get(&run_pk).cloned() else { continue };
        let by_task = upstreams_of(&pipeline_id, &task_id)
            .iter()
            .filter_map(|u| outputs.get(&(run_pk, (*u).to_string())).map(|v| ((*u).to_string(), v.clone())))
            .collect();
        done.push(Claimed { ti_id, run_pk, pipeline_id, task_id, try_number, run, outputs: by_task });
    }
    Ok(done)
}

/// A new task instance of `task` in run `run_pk`, waiting for its upstreams.
pub(super) async fn insert_task_instance(
    tx: &mut Tx,
    run_pk: i64,
    pipeline: &PipelineSpec,
    task: &TaskSpec,
    sla_deadline: Option<Micros>,
) -> Result<()> {
    q("INSERT INTO task_instances (run_pk, pipeline_id, task_id, state, try_number, max_tries, \
       priority_weight, pool, pool_slots, queue, sla_deadline) VALUES ($1, $2, $3, 'none', 0, $4, $5, $6, $7, $8, $9)")
    .bind(run_pk)
    .bind(pipeline.id)
    .bind(task.id)
    .bind(i64::from(task.retry.retries) + 1)
    .bind(effective_priority(pipeline, task))
    .bind(task.pool)
    .bind(i64::from(task.pool_slots))
    .bind(task.queue)
    .bind(sla_deadline)
    .execute(&mut **tx)
    .await
    .doing("creating task instances")?;
    Ok(())
}

/// How many runs `db clean` deletes per transaction.
pub const CLEAN_BATCH: i64 = 500;

/// What the state machine needs of one task instance it may queue.
#[derive(Debug)]
struct Slot {
    id: i64,
    task_id: String,
    state: TiState,
    weight: i64,
    next_try: Option<i64>,
    pool: String,
    slots: i64,
    queue: String,
}

const SLOT_COLUMNS: &str = "id, task_id, state, priority_weight, next_try_at, pool, pool_slots, queue";

fn slot(row: &sqlx::any::AnyRow) -> Result<Slot> {
    let state: String = get(row, "state")?;
    Ok(Slot {
        id: get(row, "id")?,
        task_id: get(row, "task_id")?,
        state: TiState::parse(&state).unwrap_or(TiState::None),
        weight: get(row, "priority_weight")?,
        next_try: opt(row, "next_try_at"),
        pool: get(row, "pool")?,
        slots: get(row, "pool_slots")?,
        queue: get(row, "queue")?,
    })
}

/// Membership in a JSON array bound as parameter `$n`: a list of any length is one
/// parameter (binding thousands of numbered parameters is quadratic in SQLite). On
/// PostgreSQL the array is built once and matched with `= ANY`, which plans as a plain
/// index lookup.
fn in_json(tx: &Tx, n: usize, of_ids: bool) -> String {
    match (tx.backend_name() == "PostgreSQL", of_ids) {
        (true, true) => format!("= ANY(ARRAY(SELECT json_array_elements_text(${n}::json)::BIGINT))"),
        (true, false) => format!("= ANY(ARRAY(SELECT json_array_elements_text(${n}::json)))"),
        (false, _) => format!("IN (SELECT value FROM json_each(${n}))"),
    }
}

/// `(id, try_number)` (columns `id` and `try`) among a JSON array of `[id, try]` pairs
/// bound as parameter `$n`.
fn in_json_tries(tx: &Tx, id: &str, try_number: &str, n: usize) -> String {
    if tx.backend_name() == "PostgreSQL" {
        format!(
            "{id} = ANY(ARRAY(SELECT (e->>0)::BIGINT FROM json_array_elements(${n}::json) AS e)) \
             AND ({id}, {try_number}) IN (SELECT (e->>0)::BIGINT, (e->>1)::BIGINT FROM json_array_elements(${n}::json) AS e)"
        )
    } else {
        format!(
            "({id}, {try_number}) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(${n}))"
        )
    }
}

fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// The slots of tasks `ids` of run `run_pk`, by task id.
async fn slots_of(tx: &mut Tx, run_pk: i64, ids: &[&str]) -> Result<HashMap<String, Slot>> {
    let mut found = HashMap::new();
    let sql =
        format!("SELECT {SLOT_COLUMNS} FROM task_instances WHERE run_pk = $1 AND task_id {}", in_json(tx, 2, false));
    let query = q(AssertSqlSafe(sql)).bind(run_pk).bind(json_list(ids));
    for row in query.fetch_all(&mut **tx).await.doing("reading task instances")? {
        let slot = slot(&row)?;
        found.insert(slot.task_id.clone(), slot);
    }
    Ok(found)
}

/// [`slots_of`], and in the same statement the best of the run's tasks that wait for
/// room (`scheduled`), as many as could be queued at most.
async fn slots_and_waiting(
    tx: &mut Tx,
    pipeline: &PipelineSpec,
    run_pk: i64,
    ids: &[&str],
    parallelism: u32,
) -> Result<(HashMap<String, Slot>, Vec<Slot>)> {
    let sql = format!(
        "SELECT {SLOT_COLUMNS}, CAST(0 AS BIGINT) AS waiting FROM task_instances WHERE run_pk = $1 AND task_id {} \
         UNION ALL SELECT * FROM (SELECT {SLOT_COLUMNS}, CAST(1 AS BIGINT) AS waiting FROM task_instances \
         WHERE run_pk = $1 AND state = 'scheduled' ORDER BY priority_weight DESC, id LIMIT $3) AS w",
        in_json(tx, 2, false)
    );
    let at_most = pipeline.max_active_tasks.min(parallelism);
    let query = q(AssertSqlSafe(sql)).bind(run_pk).bind(json_list(ids)).bind(i64::from(at_most));
    let mut found = HashMap::new();
    let mut waiting = Vec::new();
    for row in query.fetch_all(&mut **tx).await.doing("reading task instances")? {
        let slot = slot(&row)?;
        if get::<i64>(&row, "waiting")? == 1 {
            waiting.push(slot);
        } else {
            found.insert(slot.task_id.clone(), slot);
        }
    }
    Ok((found, waiting))
}

/// The states of tasks `ids` of run `run_pk`, counted in the database: a join's thousand
/// upstreams cost a few rows, not a thousand.
async fn counted_states(tx: &mut Tx, run_pk: i64, ids: &[&str]) -> Result<Vec<TiState>> {
    let mut states = Vec::new();
    let sql = format!(
        "SELECT state, COUNT(*) AS n FROM task_instances WHERE run_pk = $1 AND task_id {} GROUP BY state",
        in_json(tx, 2, false)
    );
    let query = q(AssertSqlSafe(sql)).bind(run_pk).bind(json_list(ids));
    for row in query.fetch_all(&mut **tx).await.doing("counting upstream states")? {
        let state: String = get(&row, "state")?;
        let n: i64 = get(&row, "n")?;
        let state = TiState::parse(&state).unwrap_or(TiState::None);
        states.extend(std::iter::repeat_n(state, usize::try_from(n).unwrap_or(0)));
    }
    Ok(states)
}

async fn set_done_state(tx: &mut Tx, id: i64, state: TiState, now: Micros) -> Result<()> {
    q("UPDATE task_instances SET state = $2, end_date = $3 WHERE id = $1")
        .bind(id)
        .bind(state.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await
        .doing("skipping a task")?;
    Ok(())
}

/// Room left under `parallelism`, the pipeline's `max_active_tasks` and each pool.
#[derive(Debug)]
struct Room {
    global: i64,
    pipeline: i64,
    pools: HashMap<String, i64>,
}

impl Room {
    async fn read(tx: &mut Tx, pipeline: &PipelineSpec, parallelism: u32) -> Result<Room> {
        // Slots are counted across pipelines: concurrent deciders take turns here, and
        // count after the lock, so they see each other's queued tasks.
        if tx.backend_name() == "PostgreSQL" {
            q("SELECT name FROM pools ORDER BY name FOR UPDATE").fetch_all(&mut **tx).await.doing("locking pools")?;
        }
        // One row per pool, each also carrying the global and the pipeline's counts.
        let rows = q("SELECT p.name, \
                        CAST(p.slots - COALESCE((SELECT SUM(ti.pool_slots) FROM task_instances ti \
                          WHERE ti.pool = p.name AND ti.state IN ('queued', 'running')), 0) AS BIGINT) AS free, \
                        (SELECT COUNT(*) FROM task_instances WHERE state IN ('queued', 'running')) AS global, \
                        (SELECT COUNT(*) FROM task_instances WHERE pipeline_id = $1 AND state IN ('queued', 'running')) AS in_pipeline \
                      FROM pools p")
        .bind(pipeline.id)
        .fetch_all(&mut **tx)
        .await
        .doing("reading pools and active tasks")?;
        let (mut global, mut in_pipeline) = (0, 0);
        let mut pools = HashMap::new();
        for row in rows {
            pools.insert(get(&row, "name")?, get(&row, "free")?);
            global = get(&row, "global")?;
            in_pipeline = get(&row, "in_pipeline")?;
        }
        Ok(Room {
            global: i64::from(parallelism) - global,
            pipeline: i64::from(pipeline.max_active_tasks) - in_pipeline,
            pools,
        })
    }
}

/// Queues `ready` best first while there is room (one statement for all). Ready tasks
/// that do not fit become `scheduled`, where a finishing task of their run finds them.
/// Returns what was queued, best first.
async fn queue_ready(tx: &mut Tx, room: &mut Room, mut ready: Vec<Slot>, now: Micros) -> Result<Vec<Queued>> {
    ready.sort_by_key(|s| (std::cmp::Reverse(s.weight), s.id));
    let mut fitting = Vec::new();
    let mut waiting = Vec::new();
    for slot in ready {
        let free = room.pools.entry(slot.pool.clone()).or_insert(0);
        if room.global <= 0 || room.pipeline <= 0 || *free < slot.slots {
            if slot.state == TiState::None {
                waiting.push(slot.id);
            }
            continue;
        }
        *free -= slot.slots;
        room.global -= 1;
        room.pipeline -= 1;
        fitting.push(slot);
    }
    let mut queued = Vec::new();
    if !fitting.is_empty() {
        let ids: Vec<i64> = fitting.iter().map(|s| s.id).collect();
        let sql = format!(
            "UPDATE task_instances SET state = 'queued', queued_at = $2, next_try_at = NULL \
             WHERE id {} AND state IN ('none', 'scheduled', 'up_for_retry') RETURNING id",
            in_json(tx, 1, true)
        );
        let rows = q(AssertSqlSafe(sql))
            .bind(json_list(&ids))
            .bind(now)
            .fetch_all(&mut **tx)
            .await
            .doing("queueing a task")?;
        let mut done = std::collections::HashSet::new();
        for row in &rows {
            done.insert(get::<i64>(row, "id")?);
        }
        queued = fitting
            .into_iter()
            .filter(|s| done.contains(&s.id))
            .map(|s| Queued { ti_id: s.id, queue: s.queue, priority_weight: s.weight })
            .collect();
    }
    if !waiting.is_empty() {
        let sql = format!(
            "UPDATE task_instances SET state = 'scheduled' WHERE state = 'none' AND id {}",
            in_json(tx, 1, true)
        );
        q(AssertSqlSafe(sql)).bind(json_list(&waiting)).execute(&mut **tx).await.doing("scheduling tasks")?;
    }
    Ok(queued)
}

/// The tasks that list `id` among their upstreams.
fn downstream_of<'p>(pipeline: &'p PipelineSpec, id: &str) -> impl Iterator<Item = &'p TaskSpec> {
    pipeline.tasks.iter().filter(move |t| t.depends_on.contains(&id))
}

/// Ends run `run_pk` (failed when a leaf task failed) if it is still running.
async fn close_run(
    tx: &mut Tx,
    pipeline: &PipelineSpec,
    run_pk: i64,
    states: &HashMap<String, TiState>,
    now: Micros,
) -> Result<()> {
    let failed = pipeline
        .tasks
        .iter()
        .filter(|t| downstream_of(pipeline, t.id).next().is_none())
        .any(|leaf| matches!(states.get(leaf.id), Some(TiState::Failed | TiState::UpstreamFailed)));
    let closed = q("UPDATE runs SET state = $2, end_date = $3 WHERE id = $1 AND state = 'running'")
        .bind(run_pk)
        .bind(if failed { "failed" } else { "success" })
        .bind(now)
        .execute(&mut **tx)
        .await
        .doing("closing a run")?;
    if closed.rows_affected() == 1 {
        alerts::run_ended(tx, pipeline, run_pk, failed, now).await?;
    }
    Ok(())
}

/// Decides every waiting task of a running run, queues what may run within the pool,
/// pipeline and global limits (highest priority first), and closes the run when all its
/// tasks are done. Runs inside the caller's transaction. Reads the whole run: the
/// scheduler's pass, which also picks up due retries; a finishing task uses
/// [`advance_after`].
async fn advance_in_tx(
    tx: &mut Tx,
    pipeline: &PipelineSpec,
    run_pk: i64,
    now: Micros,
    parallelism: u32,
) -> Result<Vec<Queued>> {
    let rows = q(AssertSqlSafe(format!("SELECT {SLOT_COLUMNS} FROM task_instances WHERE run_pk = $1")))
        .bind(run_pk)
        .fetch_all(&mut **tx)
        .await
        .doing("reading task instances")?;
    let mut slots: HashMap<String, Slot> = HashMap::new();
    for row in &rows {
        let slot = slot(row)?;
        slots.insert(slot.task_id.clone(), slot);
    }
    let mut states: HashMap<String, TiState> = slots.iter().map(|(id, s)| (id.clone(), s.state)).collect();
    // Settle skips and upstream failures until nothing changes (they cascade downstream).
    let mut ready: Vec<&str> = Vec::new();
    loop {
        let mut changed = false;
        ready.clear();
        for task in pipeline.tasks {
            let state = states.get(task.id).copied().unwrap_or(TiState::Removed);
            let waiting = matches!(state, TiState::None | TiState::Scheduled);
            let retry_due =
                state == TiState::UpForRetry && slots.get(task.id).and_then(|i| i.next_try).is_none_or(|at| at <= now);
            if retry_due {
                ready.push(task.id);
                continue;
            }
            if !waiting {
                continue;
            }
            let ups: Vec<TiState> =
                task.depends_on.iter().map(|u| states.get(*u).copied().unwrap_or(TiState::Removed)).collect();
            let new_state = match decide(task.trigger_rule, &ups) {
                Decision::Run => {
                    ready.push(task.id);
                    continue;
                }
                Decision::Wait => continue,
                Decision::Skip => TiState::Skipped,
                Decision::UpstreamFailed => TiState::UpstreamFailed,
            };
            if let Some(slot) = slots.get(task.id) {
                set_done_state(tx, slot.id, new_state, now).await?;
            }
            states.insert(task.id.to_string(), new_state);
            changed = true;
        }
        if !changed {
            break;
        }
    }

    let mut queued = Vec::new();
    if !ready.is_empty() {
        let ready: Vec<Slot> = ready.iter().filter_map(|id| slots.remove(*id)).collect();
        let ids: HashMap<i64, String> = ready.iter().map(|s| (s.id, s.task_id.clone())).collect();
        let mut room = Room::read(tx, pipeline, parallelism).await?;
        queued = queue_ready(tx, &mut room, ready, now).await?;
        for q in &queued {
            if let Some(task) = ids.get(&q.ti_id) {
                states.insert(task.clone(), TiState::Queued);
            }
        }
    }
    if states.values().all(|s| s.is_done()) {
        close_run(tx, pipeline, run_pk, &states, now).await?;
    }
    Ok(queued)
}

/// Whether a task waiting under `rule` still waits when one more upstream succeeds while
/// another is unfinished. Every upstream's end decides its downstream tasks in turn (under
/// the pipeline's lock), so a join learns nothing new from a success until the last.
fn waits_after_success(rule: TriggerRule) -> bool {
    !matches!(
        rule,
        TriggerRule::AllFailed
            | TriggerRule::AllSkipped
            | TriggerRule::OneSuccess
            | TriggerRule::OneDone
            | TriggerRule::Always
    )
}

/// Whether an upstream of `task` is unfinished. Looks at a few unfinished task instances
/// of the run (an index holds only those) before counting all upstreams: in a join,
/// almost every unfinished task is an upstream.
async fn upstream_unfinished(tx: &mut Tx, run_pk: i64, task: &TaskSpec) -> Result<bool> {
    let rows = q("SELECT task_id FROM task_instances WHERE run_pk = $1 AND task_id <> $2 \
                  AND state IN ('none', 'scheduled', 'queued', 'running', 'up_for_retry') LIMIT 8")
    .bind(run_pk)
    .bind(task.id)
    .fetch_all(&mut **tx)
    .await
    .doing("looking for unfinished upstreams")?;
    for row in rows {
        let id: String = get(&row, "task_id")?;
        if task.depends_on.contains(&id.as_str()) {
            return Ok(true);
        }
    }
    Ok(counted_states(tx, run_pk, task.depends_on).await?.iter().any(|s| !s.is_done()))
}

/// Above this many upstreams in one decision round, upstream states are counted in the
/// database instead of read row by row.
const READ_UPSTREAMS_AT_MOST: usize = 256;

/// After tasks `finished` of run `run_pk` ended: decides their downstream tasks (and
/// theirs, as skips and upstream failures cascade), queues what became ready and what of
/// the run waited for the room it freed, and closes the run when nothing is left. Reads
/// only what it decides, so one task's finish costs the same however wide the run is.
async fn advance_after(
    tx: &mut Tx,
    pipeline: &PipelineSpec,
    run_pk: i64,
    finished: &[&str],
    succeeded: bool,
    now: Micros,
    parallelism: u32,
) -> Result<Vec<Queued>> {
    let mut candidates: Vec<&TaskSpec> = finished.iter().flat_map(|f| downstream_of(pipeline, f)).collect();
    candidates.sort_unstable_by_key(|t| t.id);
    candidates.dedup_by_key(|t| t.id);
    let mut ready: Vec<Slot> = Vec::new();
    let mut unfinished = false;
    // The run's tasks that wait for room (best first), read with the first round: the
    // slots these tasks held are free, and the best waiting tasks may take them.
    let mut waiting: Option<Vec<Slot>> = None;
    let mut decided: Vec<&str> = Vec::new();
    while !candidates.is_empty() {
        let mut upstreams: Vec<&str> = candidates.iter().flat_map(|c| c.depends_on.iter().copied()).collect();
        upstreams.sort_unstable();
        upstreams.dedup();
        let read_upstreams = upstreams.len() <= READ_UPSTREAMS_AT_MOST;
        let mut ids: Vec<&str> = candidates.iter().map(|c| c.id).collect();
        if read_upstreams {
            ids.extend(&upstreams);
        }
        let mut slots = if waiting.is_none() {
            let (slots, first_waiting) = slots_and_waiting(tx, pipeline, run_pk, &ids, parallelism).await?;
            waiting = Some(first_waiting);
            slots
        } else {
            slots_of(tx, run_pk, &ids).await?
        };
        decided.extend(candidates.iter().map(|c| c.id));
        let mut next: Vec<&TaskSpec> = Vec::new();
        for task in &candidates {
            let Some(state) = slots.get(task.id).map(|s| s.state) else { continue };
            if !matches!(state, TiState::None | TiState::Scheduled) {
                unfinished |= !state.is_done();
                continue;
            }
            let ups: Vec<TiState> = if read_upstreams {
                task.depends_on.iter().map(|u| slots.get(*u).map_or(TiState::Removed, |s| s.state)).collect()
            } else if succeeded
                && waits_after_success(task.trigger_rule)
                && upstream_unfinished(tx, run_pk, task).await?
            {
                unfinished = true;
                continue;
            } else {
                counted_states(tx, run_pk, task.depends_on).await?
            };
            let new_state = match decide(task.trigger_rule, &ups) {
                Decision::Run => {
                    if let Some(slot) = slots.remove(task.id) {
                        ready.push(slot);
                    }
                    unfinished = true;
                    continue;
                }
                Decision::Wait => {
                    unfinished = true;
                    continue;
                }
                Decision::Skip => TiState::Skipped,
                Decision::UpstreamFailed => TiState::UpstreamFailed,
            };
            if let Some(slot) = slots.get(task.id) {
                set_done_state(tx, slot.id, new_state, now).await?;
            }
            next.extend(downstream_of(pipeline, task.id));
        }
        next.sort_unstable_by_key(|t| t.id);
        next.dedup_by_key(|t| t.id);
        candidates = next;
    }

    let waiting = match waiting {
        Some(waiting) => waiting,
        None => slots_and_waiting(tx, pipeline, run_pk, &[], parallelism).await?.1,
    };
    let mut queued = Vec::new();
    if !waiting.is_empty() || !ready.is_empty() {
        unfinished = true;
        let mut room = Room::read(tx, pipeline, parallelism).await?;
        for slot in waiting {
            if !decided.contains(&slot.task_id.as_str()) && !ready.iter().any(|r| r.id == slot.id) {
                ready.push(slot);
            }
        }
        queued = queue_ready(tx, &mut room, ready, now).await?;
    }
    if !unfinished {
        let left: i64 = get(
            &q("SELECT COUNT(*) AS n FROM task_instances WHERE run_pk = $1 \
                AND state NOT IN ('success', 'failed', 'upstream_failed', 'skipped', 'removed')")
            .bind(run_pk)
            .fetch_one(&mut **tx)
            .await
            .doing("counting unfinished tasks")?,
            "n",
        )?;
        if left == 0 {
            let leaves: Vec<&str> = pipeline
                .tasks
                .iter()
                .filter(|t| downstream_of(pipeline, t.id).next().is_none())
                .map(|t| t.id)
                .collect();
            let states = slots_of(tx, run_pk, &leaves).await?.into_iter().map(|(id, s)| (id, s.state)).collect();
            close_run(tx, pipeline, run_pk, &states, now).await?;
        }
    }
    Ok(queued)
}

impl Store {
    /// Queues one task instance whatever its upstreams (`tasks test`, "run this now").
    pub async fn force_queue(&self, run_pk: i64, task_id: &str) -> Result<Queued> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let row = q("UPDATE task_instances SET state = 'queued', queued_at = $3 WHERE run_pk = $1 AND task_id = $2 \
                     AND state NOT IN ('queued', 'running') RETURNING id, queue, priority_weight")
        .bind(run_pk)
        .bind(task_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .doing("queueing a task")?;
        q("UPDATE runs SET state = 'running', start_date = $2 WHERE id = $1 AND state = 'queued'")
            .bind(run_pk)
            .bind(now)
            .execute(&mut *tx)
            .await
            .doing("starting a run")?;
        tx.commit().await.doing("queueing a task")?;
        let row = row.ok_or_else(|| StoreError::Conflict(format!("task `{task_id}` is already queued or running")))?;
        Ok(Queued {
            ti_id: get(&row, "id")?,
            queue: get(&row, "queue")?,
            priority_weight: get(&row, "priority_weight")?,
        })
    }
}

impl Store {
    /// After a restart of the single standalone process, tasks it was running have no
    /// worker any more: they go back to `queued` (at-least-once), and every queued task
    /// instance is returned so the in-process queue can be refilled.
    pub async fn recover_standalone(&self) -> Result<Vec<Queued>> {
        let mut tx = self.begin().await?;
        q("UPDATE task_tries SET state = 'failed', end_date = $1, error = 'the worker stopped while running it' \
           WHERE state = 'running'")
        .bind(self.now())
        .execute(&mut *tx)
        .await
        .doing("closing orphaned tries")?;
        q("UPDATE task_instances SET state = 'queued', worker = NULL WHERE state = 'running'")
            .execute(&mut *tx)
            .await
            .doing("requeueing orphaned tasks")?;
        let rows =
            q("SELECT id, queue, priority_weight FROM task_instances WHERE state = 'queued' ORDER BY queued_at, id")
                .fetch_all(&mut *tx)
                .await
                .doing("listing queued tasks")?;
        tx.commit().await.doing("recovering queued tasks")?;
        rows.iter()
            .map(|r| {
                Ok(Queued {
                    ti_id: get(r, "id")?,
                    queue: get(r, "queue")?,
                    priority_weight: get(r, "priority_weight")?,
                })
            })
            .collect()
    }
}

impl Store {
    /// Clears task `task_id` of a run (and, with `downstream`, every task below it) so it
    /// runs again, as Airflow's clear: tries so far are kept, and each cleared task gets
    /// its retries again on top of them. The run goes back to `queued`.
    pub async fn clear_task(
        &self,
        pipeline: &PipelineSpec,
        run_pk: i64,
        task_id: &str,
        downstream: bool,
    ) -> Result<Vec<String>> {
        let mut ids = vec![task_id.to_string()];
        if downstream {
            ids.extend(descendants(pipeline, task_id).into_iter().map(str::to_string));
        }
        let mut tx = self.begin_locked(&[pipeline.id]).await?;
        for id in &ids {
            let retries = pipeline.task(id).map_or(0, |t| i64::from(t.retry.retries));
            let done = q("UPDATE task_instances SET state = 'none', end_date = NULL, next_try_at = NULL, error = NULL, \
                          max_tries = try_number + $3 + 1 WHERE run_pk = $1 AND task_id = $2 AND state NOT IN ('queued', 'running')")
            .bind(run_pk)
            .bind(id)
            .bind(retries)
            .execute(&mut *tx)
            .await
            .doing("clearing a task")?;
            if done.rows_affected() == 0 && id == task_id {
                return Err(StoreError::Conflict(format!(
                    "task `{task_id}` is queued or running: wait for it to finish"
                )));
            }
            q("DELETE FROM task_outputs WHERE ti_id IN (SELECT id FROM task_instances WHERE run_pk = $1 AND task_id = $2)")
                .bind(run_pk)
                .bind(id)
                .execute(&mut *tx)
                .await
                .doing("clearing task outputs")?;
        }
        q("UPDATE runs SET state = 'queued', end_date = NULL WHERE id = $1")
            .bind(run_pk)
            .execute(&mut *tx)
            .await
            .doing("reopening a run")?;
        tx.commit().await.doing("clearing tasks")?;
        Ok(ids)
    }

    /// Marks a task `success` or `failed` by hand (not while it runs), then lets the run
    /// continue from there.
    pub async fn mark_task(
        &self,
        pipeline: &PipelineSpec,
        run_pk: i64,
        task_id: &str,
        state: TiState,
        parallelism: u32,
    ) -> Result<Vec<Queued>> {
        if !matches!(state, TiState::Success | TiState::Failed) {
            return Err(StoreError::Conflict("a task can only be marked success or failed".into()));
        }
        let now = self.now();
        let mut tx = self.begin_locked(&[pipeline.id]).await?;
        let done = q("UPDATE task_instances SET state = $3, end_date = $4, next_try_at = NULL \
                      WHERE run_pk = $1 AND task_id = $2 AND state NOT IN ('queued', 'running')")
        .bind(run_pk)
        .bind(task_id)
        .bind(state.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .doing("marking a task")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "task `{task_id}` of this run does not exist or is queued or running"
            )));
        }
        // What was decided downstream from the old state (upstream_failed, skipped) is
        // decided again from the new one.
        for id in descendants(pipeline, task_id) {
            q("UPDATE task_instances SET state = 'none', end_date = NULL WHERE run_pk = $1 AND task_id = $2 \
               AND state IN ('upstream_failed', 'skipped')")
            .bind(run_pk)
            .bind(id)
            .execute(&mut *tx)
            .await
            .doing("reopening downstream tasks")?;
        }
        q("UPDATE runs SET state = 'running', end_date = NULL WHERE id = $1 AND state IN ('success', 'failed')")
            .bind(run_pk)
            .execute(&mut *tx)
            .await
            .doing("reopening a run")?;
        let state: String = get(
            &q("SELECT state FROM runs WHERE id = $1").bind(run_pk).fetch_one(&mut *tx).await.doing("reading a run")?,
            "state",
        )?;
        let queued = if state == "running" {
            advance_in_tx(&mut tx, pipeline, run_pk, now, parallelism).await?
        } else {
            Vec::new()
        };
        tx.commit().await.doing("marking a task")?;
        Ok(queued)
    }

    /// Deletes finished runs (with their task instances, tries, logs, outputs and SLA
    /// misses) whose logical date is before `before`, and notifications done before it,
    /// in batches of [`CLEAN_BATCH`] runs, one transaction each, calling
    /// `progress(deleted, total)` after each. With `dry_run`, only counts them.
    pub async fn clean_before(&self, before: Micros, dry_run: bool, progress: &mut dyn FnMut(i64, i64)) -> Result<i64> {
        const FINISHED_BEFORE: &str = "logical_date < $1 AND state IN ('success', 'failed')";
        let mut tx = self.begin().await?;
        let row = q(AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM runs WHERE {FINISHED_BEFORE}")))
            .bind(before)
            .fetch_one(&mut *tx)
            .await
            .doing("counting old runs")?;
        let total: i64 = get(&row, "n")?;
        tx.commit().await.doing("counting old runs")?;
        if dry_run || total == 0 {
            return Ok(total);
        }
        let mut deleted = 0;
        loop {
            let mut tx = self.begin().await?;
            let ids: Vec<i64> = q(AssertSqlSafe(format!(
                "SELECT id FROM runs WHERE {FINISHED_BEFORE} ORDER BY id LIMIT {CLEAN_BATCH}"
            )))
            .bind(before)
            .fetch_all(&mut *tx)
            .await
            .doing("listing old runs")?
            .iter()
            .map(|r| get(r, "id"))
            .collect::<Result<_>>()?;
            let Some(&last) = ids.last() else { break };
            let batch = "run_pk IN (SELECT id FROM runs WHERE id <= $2 AND logical_date < $1 AND state IN ('success', 'failed'))";
            for table in ["task_logs", "task_outputs", "task_tries"] {
                q(AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE ti_id IN (SELECT id FROM task_instances WHERE {batch})"
                )))
                .bind(before)
                .bind(last)
                .execute(&mut *tx)
                .await
                .doing("deleting old task data")?;
            }
            q(AssertSqlSafe(format!("DELETE FROM task_instances WHERE {batch}")))
                .bind(before)
                .bind(last)
                .execute(&mut *tx)
                .await
                .doing("deleting old task instances")?;
            let done = q(AssertSqlSafe(format!("DELETE FROM runs WHERE id <= $2 AND {FINISHED_BEFORE}")))
                .bind(before)
                .bind(last)
                .execute(&mut *tx)
                .await
                .doing("deleting old runs")?;
            tx.commit().await.doing("cleaning old runs")?;
            deleted += i64::try_from(done.rows_affected()).unwrap_or(0);
            progress(deleted, total);
        }
        let mut tx = self.begin().await?;
        q("DELETE FROM notifications WHERE state <> 'pending' AND created_at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await
            .doing("deleting old notifications")?;
        tx.commit().await.doing("deleting old notifications")?;
        Ok(deleted)
    }

    pub async fn start_run(&self, run_pk: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        q("UPDATE runs SET state = 'running', start_date = $2 WHERE id = $1 AND state = 'queued'")
            .bind(run_pk)
            .bind(self.now())
            .execute(&mut *tx)
            .await
            .doing("starting a run")?;
        tx.commit().await.doing("starting a run")
    }
}

/// What [`Store::append_task_log`] did with a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogAppend {
    /// How many lines of the batch were stored (the first ones).
    pub kept: usize,
    /// The try's log is cut: nothing more it writes will be kept.
    pub cut: bool,
}

/// Where a page of a log starts (see [`Store::log_page`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFrom {
    /// The lines after this id (0: from the start).
    After(i64),
    /// The lines before this id (`i64::MAX`: the newest).
    Before(i64),
}

/// One stored line of a try's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// Increases with every line: pages continue from it.
    pub id: i64,
    /// `stdout`, `stderr`, `info`, `error` or `system`.
    pub stream: String,
    pub line: String,
}

/// Rows per `INSERT` of log lines: five parameters a row stays far below the parameter
/// limits of both backends (SQLite's 32,766, PostgreSQL's 65,535).
const LOG_INSERT_ROWS: usize = 500;

/// Inserts `lines` in order, [`LOG_INSERT_ROWS`] per statement (a statement per line made a
/// chatty command cost one round trip per line).
async fn insert_log_lines(
    tx: &mut Tx,
    ti_id: i64,
    try_number: i64,
    at: Micros,
    lines: &[(String, String)],
) -> Result<()> {
    for chunk in lines.chunks(LOG_INSERT_ROWS) {
        let values: Vec<String> =
            (0..chunk.len()).map(|i| format!("($1, $2, $3, ${}, ${})", 4 + 2 * i, 5 + 2 * i)).collect();
        let sql = format!("INSERT INTO task_logs (ti_id, try_number, at, stream, line) VALUES {}", values.join(", "));
        let mut insert = q(AssertSqlSafe(sql)).bind(ti_id).bind(try_number).bind(at);
        for (stream, line) in chunk {
            insert = insert.bind(stream.clone()).bind(line.clone());
        }
        insert.execute(&mut **tx).await.doing("writing a task log")?;
    }
    Ok(())
}
