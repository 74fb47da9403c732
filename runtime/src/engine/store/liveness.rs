//! What keeps work moving when processes die: worker heartbeats on running task
//! instances, zombies (running, but their worker stopped beating), task instances stuck
//! in `queued` (their dispatch was lost), and hand-back at shutdown.

use super::{Doing, Result, Store, get, q};
use crate::clock::Micros;
use crate::store::Queued;

/// A task instance whose worker stopped heartbeating while it ran.
#[derive(Debug, Clone)]
pub struct Zombie {
    pub ti_id: i64,
    pub try_number: i64,
    pub pipeline_id: String,
    pub task_id: String,
    pub worker: String,
    pub heartbeat_at: Micros,
}

fn queued_row(row: &sqlx::any::AnyRow) -> Result<Queued> {
    Ok(Queued { ti_id: get(row, "id")?, queue: get(row, "queue")?, priority_weight: get(row, "priority_weight")? })
}

// The liveness queries repeat `state IN ('queued', 'running')`, the condition of the
// partial index `task_instances_live`: SQLite uses a partial index only when the query
// names its condition, and would otherwise scan every task instance on every sweep.

impl Store {
    /// Records that `worker` is alive and still running its task instances.
    pub async fn beat_running_tasks(&self, worker: &str) -> Result<u64> {
        let mut tx = self.begin().await?;
        let done = q("UPDATE task_instances SET heartbeat_at = $2 \
                      WHERE state = 'running' AND worker = $1 AND state IN ('queued', 'running')")
        .bind(worker)
        .bind(self.now())
        .execute(&mut *tx)
        .await
        .doing("recording task heartbeats")?;
        tx.commit().await.doing("recording task heartbeats")?;
        Ok(done.rows_affected())
    }

    /// Running task instances whose last heartbeat is older than `before`.
    pub async fn zombies(&self, before: Micros) -> Result<Vec<Zombie>> {
        let mut tx = self.begin().await?;
        let rows = q("SELECT id, try_number, pipeline_id, task_id, worker, heartbeat_at FROM task_instances \
                      WHERE state = 'running' AND heartbeat_at < $1 \
                      ORDER BY id LIMIT 1000")
        .bind(before)
        .fetch_all(&mut *tx)
        .await
        .doing("looking for zombie tasks")?;
        tx.commit().await.doing("looking for zombie tasks")?;
        rows.iter()
            .map(|row| {
                Ok(Zombie {
                    ti_id: get(row, "id")?,
                    try_number: get(row, "try_number")?,
                    pipeline_id: get(row, "pipeline_id")?,
                    task_id: get(row, "task_id")?,
                    worker: super::opt(row, "worker").unwrap_or_default(),
                    heartbeat_at: get(row, "heartbeat_at")?,
                })
            })
            .collect()
    }

    /// Task instances queued before `before` and still not taken: their dispatch was
    /// lost (a broker restart, an eviction, a dead worker). Their queued time restarts
    /// now, and the caller dispatches them again; a duplicate is harmless, as a claim
    /// takes a task instance only once.
    pub async fn requeue_stuck(&self, before: Micros) -> Result<Vec<Queued>> {
        let mut tx = self.begin().await?;
        let rows = q("UPDATE task_instances SET queued_at = $2 \
                      WHERE state = 'queued' AND queued_at < $1 AND state IN ('queued', 'running') \
                      RETURNING id, queue, priority_weight")
        .bind(before)
        .bind(self.now())
        .fetch_all(&mut *tx)
        .await
        .doing("requeueing stuck tasks")?;
        tx.commit().await.doing("requeueing stuck tasks")?;
        rows.iter().map(queued_row).collect()
    }

    /// Every queued task instance, oldest first: what a broker that lost its data must
    /// carry again.
    pub async fn all_queued(&self) -> Result<Vec<Queued>> {
        let mut tx = self.begin().await?;
        let rows = q("SELECT id, queue, priority_weight FROM task_instances \
               WHERE state = 'queued' AND state IN ('queued', 'running') ORDER BY queued_at, id")
        .fetch_all(&mut *tx)
        .await
        .doing("listing queued tasks")?;
        tx.commit().await.doing("listing queued tasks")?;
        rows.iter().map(queued_row).collect()
    }

    /// Gives a running try back unfinished (a worker shutting down): the task instance is
    /// queued again and the try does not count. `None` when it is no longer this try.
    pub async fn hand_back(&self, ti_id: i64, try_number: i64) -> Result<Option<Queued>> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let row = q("UPDATE task_instances SET state = 'queued', try_number = try_number - 1, queued_at = $3, \
                     worker = NULL, start_date = NULL WHERE id = $1 AND state = 'running' AND try_number = $2 \
                     RETURNING id, queue, priority_weight")
        .bind(ti_id)
        .bind(try_number)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .doing("handing a task back")?;
        if row.is_some() {
            q("DELETE FROM task_tries WHERE ti_id = $1 AND try_number = $2")
                .bind(ti_id)
                .bind(try_number)
                .execute(&mut *tx)
                .await
                .doing("handing a task back")?;
            q("INSERT INTO task_logs (ti_id, try_number, at, stream, line) VALUES ($1, $2, $3, 'system', $4)")
                .bind(ti_id)
                .bind(try_number)
                .bind(now)
                .bind("handed back unfinished: its worker shut down; the try does not count")
                .execute(&mut *tx)
                .await
                .doing("handing a task back")?;
        }
        tx.commit().await.doing("handing a task back")?;
        row.as_ref().map(queued_row).transpose()
    }
}
