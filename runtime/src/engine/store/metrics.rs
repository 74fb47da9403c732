//! What `/metrics` reports, read in one transaction, and the run counts of `dagStats`.

use super::{Doing, Result, Store, get, opt, q};
use crate::clock::Micros;

/// Counts and timings of the metadata store at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// `(state, count)` of runs.
    pub runs: Vec<(String, i64)>,
    /// `(state, count)` of task instances.
    pub task_instances: Vec<(String, i64)>,
    /// `(queue, count)` of task instances waiting in `queued`.
    pub queued: Vec<(String, i64)>,
    /// Queued-to-running delay of tries started in the window: `(count, sum, max)` µs.
    pub scheduling_delay: (i64, i64, i64),
    /// `(pipeline, count, sum µs)` of tries that ended in the window.
    pub durations: Vec<(String, i64, i64)>,
    /// `(job type, hostname, last heartbeat)` of running services.
    pub heartbeats: Vec<(String, String, Micros)>,
}

fn pairs(rows: &[sqlx::any::AnyRow]) -> Result<Vec<(String, i64)>> {
    rows.iter().map(|r| Ok((get(r, "k")?, get(r, "n")?))).collect()
}

impl Store {
    /// The snapshot, with timings over the tries since `since`.
    pub async fn metrics(&self, since: Micros) -> Result<Snapshot> {
        let mut tx = self.begin().await?;
        let runs = q("SELECT state AS k, COUNT(*) AS n FROM runs GROUP BY state ORDER BY state")
            .fetch_all(&mut *tx)
            .await
            .doing("counting runs")?;
        let tis = q("SELECT state AS k, COUNT(*) AS n FROM task_instances GROUP BY state ORDER BY state")
            .fetch_all(&mut *tx)
            .await
            .doing("counting task instances")?;
        let queued = q(
            "SELECT queue AS k, COUNT(*) AS n FROM task_instances WHERE state = 'queued' GROUP BY queue ORDER BY queue",
        )
        .fetch_all(&mut *tx)
        .await
        .doing("counting queued tasks")?;
        let delay = q("SELECT COUNT(*) AS n, CAST(COALESCE(SUM(start_date - queued_at), 0) AS BIGINT) AS total, \
                       CAST(COALESCE(MAX(start_date - queued_at), 0) AS BIGINT) AS worst FROM task_instances \
                       WHERE start_date >= $1 AND queued_at IS NOT NULL AND start_date >= queued_at")
        .bind(since)
        .fetch_one(&mut *tx)
        .await
        .doing("reading scheduling delays")?;
        let durations = q("SELECT ti.pipeline_id AS k, COUNT(*) AS n, CAST(SUM(t.end_date - t.start_date) AS BIGINT) AS total \
                           FROM task_tries t JOIN task_instances ti ON ti.id = t.ti_id \
                           WHERE t.end_date >= $1 AND t.start_date IS NOT NULL GROUP BY ti.pipeline_id ORDER BY ti.pipeline_id")
        .bind(since)
        .fetch_all(&mut *tx)
        .await
        .doing("reading task durations")?;
        let beats = q("SELECT job_type, hostname, MAX(heartbeat_at) AS at FROM jobs WHERE state = 'running' \
                       GROUP BY job_type, hostname ORDER BY job_type, hostname")
        .fetch_all(&mut *tx)
        .await
        .doing("reading heartbeats")?;
        tx.commit().await.doing("reading metrics")?;
        Ok(Snapshot {
            runs: pairs(&runs)?,
            task_instances: pairs(&tis)?,
            queued: pairs(&queued)?,
            scheduling_delay: (get(&delay, "n")?, get(&delay, "total")?, get(&delay, "worst")?),
            durations: durations
                .iter()
                .map(|r| Ok((get(r, "k")?, get(r, "n")?, opt(r, "total").unwrap_or(0))))
                .collect::<Result<_>>()?,
            heartbeats: beats
                .iter()
                .map(|r| Ok((get(r, "job_type")?, get(r, "hostname")?, get(r, "at")?)))
                .collect::<Result<_>>()?,
        })
    }

    /// `(pipeline, run state, count)` of every pipeline's runs, by pipeline and state.
    pub async fn run_counts(&self) -> Result<Vec<(String, String, i64)>> {
        let mut tx = self.begin().await?;
        let rows = q("SELECT pipeline_id AS p, state AS k, COUNT(*) AS n FROM runs GROUP BY pipeline_id, state \
                      ORDER BY pipeline_id, state")
        .fetch_all(&mut *tx)
        .await
        .doing("counting runs by pipeline")?;
        tx.commit().await.doing("counting runs by pipeline")?;
        rows.iter().map(|r| Ok((get(r, "p")?, get(r, "k")?, get(r, "n")?))).collect()
    }
}
