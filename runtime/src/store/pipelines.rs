//! Pipelines and pools: synced from the compiled specs at start, versioned by hash.

use super::{Doing, Result, Store, StoreError, get, opt, q};
use crate::registry::Registry;
use crate::spec::Schedule;

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
        let now = self.now();
        let mut report = SyncReport::default();
        let mut tx = self.begin().await?;
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
        let declared_default = registry.pools.iter().any(|p| p.name == "default_pool");
        if !declared_default {
            q("INSERT INTO pools (name, slots, description) VALUES ('default_pool', 128, 'Default pool') \
               ON CONFLICT (name) DO NOTHING")
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

    pub async fn set_paused(&self, id: &str, paused: bool) -> Result<()> {
        let mut tx = self.begin().await?;
        let done = q("UPDATE pipelines SET is_paused = $2, updated_at = $3 WHERE pipeline_id = $1")
            .bind(id)
            .bind(i64::from(paused))
            .bind(self.now())
            .execute(&mut *tx)
            .await
            .doing("pausing a pipeline")?;
        tx.commit().await.doing("pausing a pipeline")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("pipeline `{id}`")));
        }
        Ok(())
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
