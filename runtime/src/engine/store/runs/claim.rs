//! Claiming queued task instances for a worker: one transaction for a batch.

use super::*;
use crate::store::sql::{Dialect, json_list};

impl Store {
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
}

/// Claims queued task instances `ti_ids` for `worker` inside `tx` (see
/// [`Store::claim_many`]): four statements however many there are.
pub(super) async fn claim_in_tx(
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
        Dialect::of(tx).in_json(1, true)
    );
    // PostgreSQL starts the tries in the same statement (one round trip fewer).
    let postgres = Dialect::of(tx) == Dialect::Postgres;
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
            Dialect::of(tx).in_json(1, true)
        );
        q(AssertSqlSafe(sql)).bind(json_list(&ids)).execute(&mut **tx).await.doing("recording a try")?;
    }

    let mut run_pks: Vec<i64> = claimed.iter().map(|c| c.1).collect();
    run_pks.sort_unstable();
    run_pks.dedup();
    let mut runs: HashMap<i64, RunRow> =
        known.runs.iter().filter(|r| run_pks.contains(&r.id)).map(|r| (r.id, (*r).clone())).collect();
    if runs.len() < run_pks.len() {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id {}", Dialect::of(tx).in_json(1, true));
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
            Dialect::of(tx).in_json(1, true),
            Dialect::of(tx).in_json(2, false)
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
