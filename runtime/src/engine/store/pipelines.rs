//! Pipelines and pools: synced from the compiled specs at start, versioned by hash.

use super::audit::Change;
use super::{Doing, Result, Store, StoreError, get, opt, q};
use crate::clock::Micros;
use crate::registry::Registry;
use crate::rules::RunType;
use crate::spec::Schedule;
use sluice_contract::defaults;

/// A pipeline as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineRow {
    pub pipeline_id: String,
    pub version_hash: String,
    pub is_active: bool,
    pub is_paused: bool,
    pub schedule: String,
    pub next_run_at: Option<i64>,
}

/// What a sync changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub deactivated: Vec<String>,
}

impl Store {
    /// Makes the store match the compiled pipelines: new ones are added (paused as their
    /// spec says), changed ones get a new version, missing ones become inactive and keep
    /// their history. Pools declared in the YAML get their declared sizes.
    pub async fn sync_pipelines(&self, registry: &Registry) -> Result<SyncReport> {
        // The runtime orders, clears and weighs tasks by the compiled graph facts alone;
        // facts that do not fit `depends_on` (a spec written by hand, generated code older
        // than its runtime) would do that wrongly, so they stop the start instead.
        for p in registry.pipelines {
            p.check_graph().map_err(|e| {
                StoreError::Conflict(format!("pipeline `{}`: the compiled graph facts do not fit: {e}", p.id))
            })?;
        }
        let now = self.now();
        let mut report = SyncReport::default();
        let mut tx = self.begin_exclusive("sync_pipelines").await?;
        for p in registry.pipelines {
            let existing = q("SELECT version_hash, is_active FROM pipelines WHERE pipeline_id = $1")
                .bind(p.id)
                .fetch_optional(&mut *tx)
                .await
                .doing("reading a pipeline")?;
            let schedule = match p.schedule {
                Schedule::Manual => String::new(),
                _ => p.schedule_text.to_string(),
            };
            let tags = serde_json::to_string(p.tags).unwrap_or_else(|_| "[]".into());
            match existing {
                None => {
                    q("INSERT INTO pipelines (pipeline_id, version_hash, is_active, is_paused, description, owner, tags, \
                       schedule, timezone, created_at, updated_at) VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8, $9, $9)")
                    .bind(p.id)
                    .bind(p.version_hash)
                    .bind(i64::from(p.paused_at_creation))
                    .bind(p.description)
                    .bind(p.owner)
                    .bind(tags)
                    .bind(schedule)
                    .bind(p.timezone)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .doing("adding a pipeline")?;
                    report.added.push(p.id.to_string());
                }
                Some(row) => {
                    let hash: String = get(&row, "version_hash")?;
                    let active: i64 = get(&row, "is_active")?;
                    if hash == p.version_hash && active == 1 {
                        continue;
                    }
                    q("UPDATE pipelines SET version_hash = $2, is_active = 1, description = $3, owner = $4, tags = $5, \
                       schedule = $6, timezone = $7, updated_at = $8 WHERE pipeline_id = $1")
                    .bind(p.id)
                    .bind(p.version_hash)
                    .bind(p.description)
                    .bind(p.owner)
                    .bind(tags)
                    .bind(schedule)
                    .bind(p.timezone)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .doing("updating a pipeline")?;
                    report.changed.push(p.id.to_string());
                    adopt_renamed_tasks(&mut tx, p).await?;
                    reconcile_active_runs(&mut tx, p).await?;
                }
            }
            q("INSERT INTO pipeline_versions (pipeline_id, version_hash, created_at) VALUES ($1, $2, $3) \
               ON CONFLICT (pipeline_id, version_hash) DO NOTHING")
            .bind(p.id)
            .bind(p.version_hash)
            .bind(now)
            .execute(&mut *tx)
            .await
            .doing("recording a pipeline version")?;
        }
        let active = q("SELECT pipeline_id FROM pipelines WHERE is_active = 1")
            .fetch_all(&mut *tx)
            .await
            .doing("listing pipelines")?;
        for row in active {
            let id: String = get(&row, "pipeline_id")?;
            if registry.pipeline(&id).is_none() {
                q("UPDATE pipelines SET is_active = 0, updated_at = $2 WHERE pipeline_id = $1")
                    .bind(&id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .doing("deactivating a pipeline")?;
                report.deactivated.push(id);
            }
        }
        let declared_default = registry.pools.iter().any(|p| p.name == defaults::POOL);
        if !declared_default {
            q("INSERT INTO pools (name, slots, description) VALUES ($1, $2, 'Default pool') \
               ON CONFLICT (name) DO NOTHING")
            .bind(defaults::POOL)
            .bind(i64::from(defaults::POOL_SLOTS))
            .execute(&mut *tx)
            .await
            .doing("creating the default pool")?;
        }
        for pool in registry.pools {
            q("INSERT INTO pools (name, slots, description) VALUES ($1, $2, $3) \
               ON CONFLICT (name) DO UPDATE SET slots = excluded.slots, description = excluded.description")
            .bind(pool.name)
            .bind(i64::from(pool.slots))
            .bind(pool.description)
            .execute(&mut *tx)
            .await
            .doing("syncing a pool")?;
        }
        super::datasets::sync(&mut tx, registry, now).await?;
        tx.commit().await.doing("committing the pipeline sync")?;
        Ok(report)
    }

    pub async fn pipelines(&self) -> Result<Vec<PipelineRow>> {
        let mut tx = self.begin().await?;
        let rows = q("SELECT pipeline_id, version_hash, is_active, is_paused, schedule, next_run_at FROM pipelines \
                      ORDER BY pipeline_id")
        .fetch_all(&mut *tx)
        .await
        .doing("listing pipelines")?;
        tx.commit().await.doing("listing pipelines")?;
        rows.iter().map(pipeline_row).collect()
    }

    pub async fn pipeline(&self, id: &str) -> Result<PipelineRow> {
        let mut tx = self.begin().await?;
        let row = q("SELECT pipeline_id, version_hash, is_active, is_paused, schedule, next_run_at FROM pipelines \
                     WHERE pipeline_id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .doing("reading a pipeline")?;
        tx.commit().await.doing("reading a pipeline")?;
        match row {
            Some(row) => pipeline_row(&row),
            None => Err(StoreError::NotFound(format!("pipeline `{id}`"))),
        }
    }

    /// Deletes the history of a pipeline the deployment no longer compiles in: its runs
    /// (their task instances, tries, logs and outputs with them), its versions and its
    /// row, in one transaction. A pipeline still compiled in is a conflict: it would be
    /// synced back at the next start.
    pub async fn delete_pipeline(&self, id: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let row = q("SELECT is_active FROM pipelines WHERE pipeline_id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .doing("reading a pipeline")?;
        let Some(row) = row else { return Err(StoreError::NotFound(format!("pipeline `{id}`"))) };
        if get::<i64>(&row, "is_active")? != 0 {
            return Err(StoreError::Conflict(format!(
                "pipeline `{id}` is compiled into this deployment: remove it from pipelines.yaml and deploy, then delete its history"
            )));
        }
        for statement in [
            "DELETE FROM runs WHERE pipeline_id = $1",
            "DELETE FROM pipeline_versions WHERE pipeline_id = $1",
            "DELETE FROM pipelines WHERE pipeline_id = $1",
        ] {
            q(statement).bind(id).execute(&mut *tx).await.doing("deleting a pipeline's history")?;
        }
        self.audit(&mut tx, Change::new("delete_dag").pipeline(id)).await?;
        tx.commit().await.doing("deleting a pipeline's history")
    }

    /// When each pipeline's current version was first synced, by pipeline id.
    pub async fn versions_synced_at(&self) -> Result<std::collections::HashMap<String, Micros>> {
        let mut tx = self.begin().await?;
        let rows = q("SELECT v.pipeline_id, v.created_at FROM pipeline_versions v \
                      JOIN pipelines p ON p.pipeline_id = v.pipeline_id AND p.version_hash = v.version_hash")
        .fetch_all(&mut *tx)
        .await
        .doing("reading pipeline versions")?;
        tx.commit().await.doing("reading pipeline versions")?;
        rows.iter().map(|r| Ok((get(r, "pipeline_id")?, get(r, "created_at")?))).collect()
    }

    pub async fn set_paused(&self, id: &str, paused: bool) -> Result<()> {
        let mut tx = self.begin().await?;
        let done = q("UPDATE pipelines SET is_paused = $2, updated_at = $3 WHERE pipeline_id = $1")
            .bind(id)
            .bind(i64::from(paused))
            .bind(self.now())
            .execute(&mut *tx)
            .await
            .doing("pausing a pipeline")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("pipeline `{id}`")));
        }
        self.audit(&mut tx, Change::new(if paused { "pause" } else { "unpause" }).pipeline(id)).await?;
        tx.commit().await.doing("pausing a pipeline")
    }

    /// Records when the scheduler next needs to look at a pipeline.
    pub async fn set_next_run_at(&self, id: &str, at: Option<i64>) -> Result<()> {
        let mut tx = self.begin().await?;
        q("UPDATE pipelines SET next_run_at = $2 WHERE pipeline_id = $1")
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await
            .doing("recording the next run")?;
        tx.commit().await.doing("recording the next run")
    }
}

/// A pool and what uses it now.
#[derive(Debug, Clone)]
pub struct PoolUsage {
    pub name: String,
    pub slots: i64,
    pub description: String,
    /// Slots taken by running / queued task instances.
    pub running: i64,
    pub queued: i64,
}

impl Store {
    /// Creates or resizes a pool. A pool declared in `pipelines.yaml` gets its declared
    /// size back at the next start.
    pub async fn upsert_pool(&self, name: &str, slots: i64, description: &str) -> Result<()> {
        if name.trim().is_empty() || slots < 0 {
            return Err(StoreError::Conflict("a pool needs a name and 0 or more slots".into()));
        }
        let mut tx = self.begin().await?;
        q("INSERT INTO pools (name, slots, description) VALUES ($1, $2, $3) \
           ON CONFLICT (name) DO UPDATE SET slots = excluded.slots, description = excluded.description")
        .bind(name)
        .bind(slots)
        .bind(description)
        .execute(&mut *tx)
        .await
        .doing("saving a pool")?;
        self.audit(&mut tx, Change::new("pool.set").detail("pool", name).detail("slots", slots)).await?;
        tx.commit().await.doing("saving a pool")
    }

    /// Deletes a pool no task instance waits on or runs in; never `default_pool`.
    pub async fn delete_pool(&self, name: &str) -> Result<()> {
        if name == defaults::POOL {
            return Err(StoreError::Conflict("`default_pool` cannot be deleted".into()));
        }
        let mut tx = self.begin().await?;
        let busy: i64 = get(
            &q("SELECT COUNT(*) AS n FROM task_instances WHERE pool = $1 AND state IN ('queued', 'running')")
                .bind(name)
                .fetch_one(&mut *tx)
                .await
                .doing("checking a pool")?,
            "n",
        )?;
        if busy > 0 {
            return Err(StoreError::Conflict(format!("pool `{name}` has {busy} task(s) queued or running")));
        }
        let done =
            q("DELETE FROM pools WHERE name = $1").bind(name).execute(&mut *tx).await.doing("deleting a pool")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("pool `{name}`")));
        }
        self.audit(&mut tx, Change::new("pool.delete").detail("pool", name)).await?;
        tx.commit().await.doing("deleting a pool")
    }

    /// Every pool with its slots in use, by name.
    pub async fn pool_usage(&self) -> Result<Vec<PoolUsage>> {
        let mut tx = self.begin().await?;
        let rows = q("SELECT p.name, p.slots, p.description, \
                      CAST(COALESCE((SELECT SUM(ti.pool_slots) FROM task_instances ti WHERE ti.pool = p.name AND ti.state = 'running'), 0) AS BIGINT) AS running, \
                      CAST(COALESCE((SELECT SUM(ti.pool_slots) FROM task_instances ti WHERE ti.pool = p.name AND ti.state = 'queued'), 0) AS BIGINT) AS queued \
                      FROM pools p ORDER BY p.name")
        .fetch_all(&mut *tx)
        .await
        .doing("reading pools")?;
        tx.commit().await.doing("reading pools")?;
        rows.iter()
            .map(|r| {
                Ok(PoolUsage {
                    name: get(r, "name")?,
                    slots: get(r, "slots")?,
                    description: get(r, "description")?,
                    running: get(r, "running")?,
                    queued: get(r, "queued")?,
                })
            })
            .collect()
    }
}

/// `renamed_from`: the task instances of a task's former ids, in every run of the pipeline
/// (active and past), become the task's own, with their tries, logs and outputs (which
/// hang on the instance). A finished one stays finished, so the task does not run again
/// under its new id. Where a run already has an instance of the new id that never started,
/// the former one replaces it.
async fn adopt_renamed_tasks(tx: &mut super::Tx, p: &crate::spec::PipelineSpec) -> Result<()> {
    for task in p.tasks.iter().filter(|t| !t.renamed_from.is_empty()) {
        for former in task.renamed_from.iter().filter(|f| p.task(f).is_none()) {
            q("DELETE FROM task_instances WHERE pipeline_id = $1 AND task_id = $2 AND try_number = 0 \
               AND state IN ('none', 'scheduled') AND EXISTS (SELECT 1 FROM task_instances f \
                 WHERE f.run_pk = task_instances.run_pk AND f.task_id = $3 AND f.map_index = task_instances.map_index)")
            .bind(p.id)
            .bind(task.id)
            .bind(*former)
            .execute(&mut **tx)
            .await
            .doing("replacing a renamed task's new instance")?;
            q("UPDATE task_instances SET task_id = $2 WHERE pipeline_id = $1 AND task_id = $3 AND NOT EXISTS \
               (SELECT 1 FROM task_instances n WHERE n.run_pk = task_instances.run_pk AND n.task_id = $2 \
                AND n.map_index = task_instances.map_index)")
            .bind(p.id)
            .bind(task.id)
            .bind(*former)
            .execute(&mut **tx)
            .await
            .doing("moving a renamed task's history")?;
        }
    }
    Ok(())
}

/// A new version of a pipeline while runs are active: task instances of tasks that are
/// gone become `removed`, new tasks get task instances, as Airflow's integrity check does.
async fn reconcile_active_runs(tx: &mut super::Tx, p: &crate::spec::PipelineSpec) -> Result<()> {
    let runs =
        q("SELECT id, run_type, data_interval_end FROM runs WHERE pipeline_id = $1 AND state IN ('queued', 'running')")
            .bind(p.id)
            .fetch_all(&mut **tx)
            .await
            .doing("listing active runs")?;
    for run in runs {
        let run_pk: i64 = get(&run, "id")?;
        let existing = q("SELECT task_id FROM task_instances WHERE run_pk = $1")
            .bind(run_pk)
            .fetch_all(&mut **tx)
            .await
            .doing("listing task instances")?;
        let existing: Vec<String> = existing.iter().map(|r| get(r, "task_id")).collect::<Result<_>>()?;
        for id in existing.iter().filter(|id| p.task(id).is_none()) {
            q("UPDATE task_instances SET state = 'removed' WHERE run_pk = $1 AND task_id = $2 AND state NOT IN ('queued', 'running')")
                .bind(run_pk)
                .bind(id)
                .execute(&mut **tx)
                .await
                .doing("removing a task instance")?;
        }
        for task in p.tasks.iter().filter(|t| !existing.iter().any(|id| id == t.id)) {
            let run_type: String = get(&run, "run_type")?;
            let run_type = RunType::parse(&run_type).unwrap_or(RunType::Manual);
            let deadline = super::alerts::sla_deadline(task, run_type, get(&run, "data_interval_end")?);
            super::runs::insert_task_instance(tx, run_pk, p, task, deadline).await?;
        }
    }
    Ok(())
}

fn pipeline_row(row: &sqlx::any::AnyRow) -> Result<PipelineRow> {
    Ok(PipelineRow {
        pipeline_id: get(row, "pipeline_id")?,
        version_hash: get(row, "version_hash")?,
        is_active: get::<i64>(row, "is_active")? == 1,
        is_paused: get::<i64>(row, "is_paused")? == 1,
        schedule: get(row, "schedule")?,
        next_run_at: opt(row, "next_run_at"),
    })
}

impl Store {
    /// Records that a service (`scheduler`, `worker`) is alive; returns its job id, to pass
    /// back on the next beat.
    pub async fn heartbeat(&self, job: Option<i64>, job_type: &str, hostname: &str) -> Result<i64> {
        let now = self.now();
        let mut tx = self.begin().await?;
        if let Some(id) = job {
            let done = q("UPDATE jobs SET heartbeat_at = $2, state = 'running' WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .doing("recording a heartbeat")?;
            if done.rows_affected() == 1 {
                tx.commit().await.doing("recording a heartbeat")?;
                return Ok(id);
            }
        }
        let row = q(
            "INSERT INTO jobs (job_type, hostname, state, started_at, heartbeat_at) VALUES ($1, $2, 'running', $3, $3) \
                     RETURNING id",
        )
        .bind(job_type)
        .bind(hostname)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .doing("registering a job")?;
        tx.commit().await.doing("registering a job")?;
        get(&row, "id")
    }

    /// The newest heartbeat of any service of `job_type`.
    pub async fn latest_heartbeat(&self, job_type: &str) -> Result<Option<i64>> {
        let mut tx = self.begin().await?;
        let row = q("SELECT MAX(heartbeat_at) AS at FROM jobs WHERE job_type = $1")
            .bind(job_type)
            .fetch_one(&mut *tx)
            .await
            .doing("reading heartbeats")?;
        tx.commit().await.doing("reading heartbeats")?;
        Ok(opt(&row, "at"))
    }
}
