//! What an operator does to runs and task instances: force, clear, mark, clean, recover.

use super::*;

/// How many runs `db clean` deletes per transaction.
pub const CLEAN_BATCH: i64 = 500;

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
        if row.is_some() {
            self.audit(&mut tx, Change::new("run_task").run(run_pk).task(task_id)).await?;
        }
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
        let busy = self
            .task_instances(run_pk)
            .await?
            .into_iter()
            .any(|ti| ti.task_id == task_id && matches!(ti.state, TiState::Queued | TiState::Running));
        if busy {
            return Err(StoreError::Conflict(format!("task `{task_id}` is queued or running: wait for it to finish")));
        }
        let mut targets = vec![task_id];
        if downstream {
            targets.extend(descendants(pipeline, task_id).into_iter().map(|t| t.id));
        }
        self.clear_tasks(pipeline, run_pk, &targets).await
    }

    /// Clears the task instances `task_ids` of run `run_pk` that are not queued or running
    /// (those are left as they are), in one transaction: each gets its retry policy's tries
    /// again and loses its outputs, and the run is reopened. The ids cleared, in the order
    /// given; nothing is changed (and the run stays as it is) when none could be.
    pub async fn clear_tasks(&self, pipeline: &PipelineSpec, run_pk: i64, task_ids: &[&str]) -> Result<Vec<String>> {
        let mut tx = self.begin_locked(&[pipeline.id]).await?;
        let mut cleared = Vec::new();
        for &id in task_ids {
            // A cleared task gets its policy's tries again, counted from the tries it used.
            let tries = i64::from(pipeline.task(id).map_or(0, |t| t.retry.retries)) + 1;
            let done = q("UPDATE task_instances SET state = 'none', end_date = NULL, next_try_at = NULL, poke_started_at = NULL, error = NULL, \
                          max_tries = try_number + $3 WHERE run_pk = $1 AND task_id = $2 AND state NOT IN ('queued', 'running')")
            .bind(run_pk)
            .bind(id)
            .bind(tries)
            .execute(&mut *tx)
            .await
            .doing("clearing a task")?;
            if done.rows_affected() == 0 {
                continue;
            }
            q("DELETE FROM task_outputs WHERE ti_id IN (SELECT id FROM task_instances WHERE run_pk = $1 AND task_id = $2)")
                .bind(run_pk)
                .bind(id)
                .execute(&mut *tx)
                .await
                .doing("clearing task outputs")?;
            cleared.push(id.to_string());
        }
        if cleared.is_empty() {
            return Ok(cleared);
        }
        q("UPDATE runs SET state = 'queued', end_date = NULL WHERE id = $1")
            .bind(run_pk)
            .execute(&mut *tx)
            .await
            .doing("reopening a run")?;
        self.audit(&mut tx, Change::new("clear").run(run_pk).pipeline(pipeline.id).detail("tasks", cleared.clone()))
            .await?;
        tx.commit().await.doing("clearing tasks")?;
        Ok(cleared)
    }

    /// Marks a task `success`, `failed` or `skipped` by hand (not while it runs; a task in
    /// that state already is left as it is), then lets the run continue from there.
    pub async fn mark_task(
        &self,
        pipeline: &PipelineSpec,
        run_pk: i64,
        task_id: &str,
        state: TiState,
        parallelism: u32,
    ) -> Result<Vec<Queued>> {
        let (marked, queued) = self.mark_tasks(pipeline, run_pk, &[task_id], state, parallelism).await?;
        if marked.is_empty() {
            let already =
                self.task_instances(run_pk).await?.iter().any(|ti| ti.task_id == task_id && ti.state == state);
            if !already {
                return Err(StoreError::Conflict(format!(
                    "task `{task_id}` of this run does not exist or is queued or running"
                )));
            }
        }
        Ok(queued)
    }

    /// Marks the task instances `task_ids` of run `run_pk` `success`, `failed` or `skipped`
    /// by hand, in one transaction; one that is queued or running, or in that state
    /// already, is left. What was decided below a marked task (upstream_failed, skipped)
    /// is decided again, and the run continues from there. The ids marked, in the order
    /// given, and the task instances that became ready.
    pub async fn mark_tasks(
        &self,
        pipeline: &PipelineSpec,
        run_pk: i64,
        task_ids: &[&str],
        state: TiState,
        parallelism: u32,
    ) -> Result<(Vec<String>, Vec<Queued>)> {
        if !matches!(state, TiState::Success | TiState::Failed | TiState::Skipped) {
            return Err(StoreError::Conflict("a task can only be marked success, failed or skipped".into()));
        }
        let now = self.now();
        let mut tx = self.begin_locked(&[pipeline.id]).await?;
        let mut marked = Vec::new();
        for &task_id in task_ids {
            let done =
                q("UPDATE task_instances SET state = $3, end_date = $4, next_try_at = NULL, poke_started_at = NULL \
                          WHERE run_pk = $1 AND task_id = $2 AND state NOT IN ('queued', 'running') AND state <> $3")
                .bind(run_pk)
                .bind(task_id)
                .bind(state.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await
                .doing("marking a task")?;
            if done.rows_affected() > 0 {
                marked.push(task_id.to_string());
            }
        }
        if marked.is_empty() {
            return Ok((marked, Vec::new()));
        }
        // What was decided downstream from the old states (upstream_failed, skipped) is
        // decided again from the new ones; a task marked here keeps its new state.
        let roots: Vec<usize> =
            marked.iter().filter_map(|id| pipeline.tasks.iter().position(|t| t.id == id.as_str())).collect();
        for below in pipeline.relatives(&roots, false, true) {
            let Some(below) = pipeline.tasks.get(below) else { continue };
            if marked.iter().any(|m| m == below.id) {
                continue;
            }
            q("UPDATE task_instances SET state = 'none', end_date = NULL WHERE run_pk = $1 AND task_id = $2 \
               AND state IN ('upstream_failed', 'skipped')")
            .bind(run_pk)
            .bind(below.id)
            .execute(&mut *tx)
            .await
            .doing("reopening downstream tasks")?;
        }
        q("UPDATE runs SET state = 'running', end_date = NULL WHERE id = $1 AND state IN ('success', 'failed')")
            .bind(run_pk)
            .execute(&mut *tx)
            .await
            .doing("reopening a run")?;
        let run_state: String = get(
            &q("SELECT state FROM runs WHERE id = $1").bind(run_pk).fetch_one(&mut *tx).await.doing("reading a run")?,
            "state",
        )?;
        let queued = if run_state == "running" {
            advance_in_tx(&mut tx, pipeline, run_pk, now, parallelism).await?
        } else {
            Vec::new()
        };
        let event = match state {
            TiState::Success => "mark_success",
            TiState::Failed => "mark_failed",
            _ => "mark_skipped",
        };
        self.audit(&mut tx, Change::new(event).run(run_pk).pipeline(pipeline.id).detail("tasks", marked.clone()))
            .await?;
        tx.commit().await.doing("marking tasks")?;
        Ok((marked, queued))
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
        if !dry_run && total > 0 {
            self.audit(
                &mut tx,
                Change::new("db_clean").detail("before", crate::clock::to_rfc3339(before)).detail("runs", total),
            )
            .await?;
        }
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
