//! Advancing runs: starting queued runs within `max_active_runs`, deciding what is ready
//! after each ending (trigger rules), queueing it within pools and `parallelism`, and
//! closing runs.

use super::*;
use crate::rules::{self, RunState, Step};
use crate::store::sql::{Dialect, json_list};

impl Store {
    /// Starts queued runs while the pipeline is below `max_active_runs`, then decides what
    /// is ready in each of its running runs. Returns the task instances it queued.
    pub async fn advance_pipeline(&self, pipeline: &PipelineSpec, parallelism: u32) -> Result<Vec<Queued>> {
        let now = self.now();
        let mut tx = self.begin_locked(&[pipeline.id]).await?;
        start_queued_runs(&mut tx, pipeline, now).await?;
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
        crate::failpoint!("store.advance.before_commit");
        tx.commit().await.doing("advancing a pipeline")?;
        Ok(queued)
    }
}

/// Starts the pipeline's oldest queued runs while it is below `max_active_runs`; returns
/// the runs it started.
async fn start_queued_runs(tx: &mut Tx, pipeline: &PipelineSpec, now: Micros) -> Result<Vec<i64>> {
    let running: i64 = get(
        &q("SELECT COUNT(*) AS n FROM runs WHERE pipeline_id = $1 AND state = 'running'")
            .bind(pipeline.id)
            .fetch_one(&mut **tx)
            .await
            .doing("counting running runs")?,
        "n",
    )?;
    let room = i64::from(pipeline.max_active_runs) - running;
    let mut started = Vec::new();
    if room <= 0 {
        return Ok(started);
    }
    let queued =
        q("SELECT id FROM runs WHERE pipeline_id = $1 AND state = 'queued' ORDER BY logical_date, id LIMIT $2")
            .bind(pipeline.id)
            .bind(room)
            .fetch_all(&mut **tx)
            .await
            .doing("listing queued runs")?;
    for row in queued {
        let id: i64 = get(&row, "id")?;
        q("UPDATE runs SET state = 'running', start_date = $2 WHERE id = $1 AND state = 'queued'")
            .bind(id)
            .bind(now)
            .execute(&mut **tx)
            .await
            .doing("starting a run")?;
        started.push(id);
    }
    Ok(started)
}

/// A new task instance of `task` in run `run_pk`, waiting for its upstreams.
pub(in crate::engine::store) async fn insert_task_instance(
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
    .bind(task.retry.max_tries())
    .bind(task.effective_priority_weight)
    .bind(task.pool)
    .bind(i64::from(task.pool_slots))
    .bind(task.queue)
    .bind(sla_deadline)
    .execute(&mut **tx)
    .await
    .doing("creating task instances")?;
    Ok(())
}

/// What the state machine needs of one task instance it may queue.
#[derive(Debug)]
pub(super) struct Slot {
    id: i64,
    task_id: String,
    state: TiState,
    weight: i64,
    next_try: Option<i64>,
    pool: String,
    slots: i64,
    queue: String,
}

pub(super) const SLOT_COLUMNS: &str = "id, task_id, state, priority_weight, next_try_at, pool, pool_slots, queue";

pub(super) fn slot(row: &sqlx::any::AnyRow) -> Result<Slot> {
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

/// The slots of tasks `ids` of run `run_pk`, by task id.
pub(super) async fn slots_of(tx: &mut Tx, run_pk: i64, ids: &[&str]) -> Result<HashMap<String, Slot>> {
    let mut found = HashMap::new();
    let sql = format!(
        "SELECT {SLOT_COLUMNS} FROM task_instances WHERE run_pk = $1 AND task_id {}",
        Dialect::of(tx).in_json(2, false)
    );
    let query = q(AssertSqlSafe(sql)).bind(run_pk).bind(json_list(ids));
    for row in query.fetch_all(&mut **tx).await.doing("reading task instances")? {
        let slot = slot(&row)?;
        found.insert(slot.task_id.clone(), slot);
    }
    Ok(found)
}

/// [`slots_of`], and in the same statement the best of the run's tasks that wait for
/// room (`scheduled`), as many as could be queued at most.
pub(super) async fn slots_and_waiting(
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
        Dialect::of(tx).in_json(2, false)
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
pub(super) async fn counted_states(tx: &mut Tx, run_pk: i64, ids: &[&str]) -> Result<Vec<TiState>> {
    let mut states = Vec::new();
    let sql = format!(
        "SELECT state, COUNT(*) AS n FROM task_instances WHERE run_pk = $1 AND task_id {} GROUP BY state",
        Dialect::of(tx).in_json(2, false)
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

pub(super) async fn set_done_state(tx: &mut Tx, id: i64, state: TiState, now: Micros) -> Result<()> {
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
pub(super) struct Room {
    global: i64,
    pipeline: i64,
    pools: HashMap<String, i64>,
}

impl Room {
    pub(super) async fn read(tx: &mut Tx, pipeline: &PipelineSpec, parallelism: u32) -> Result<Room> {
        // Slots are counted across pipelines: concurrent deciders take turns here, and
        // count after the lock, so they see each other's queued tasks.
        if Dialect::of(tx) == Dialect::Postgres {
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
pub(super) async fn queue_ready(
    tx: &mut Tx,
    room: &mut Room,
    mut ready: Vec<Slot>,
    now: Micros,
) -> Result<Vec<Queued>> {
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
             WHERE id {} AND state IN ('none', 'scheduled', 'up_for_retry', 'up_for_reschedule') RETURNING id",
            Dialect::of(tx).in_json(1, true)
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
            Dialect::of(tx).in_json(1, true)
        );
        q(AssertSqlSafe(sql)).bind(json_list(&waiting)).execute(&mut **tx).await.doing("scheduling tasks")?;
    }
    Ok(queued)
}

/// Ends run `run_pk` as `end` says, if it is still running.
pub(super) async fn close_run(
    tx: &mut Tx,
    pipeline: &PipelineSpec,
    run_pk: i64,
    end: RunState,
    now: Micros,
) -> Result<bool> {
    let closed = q("UPDATE runs SET state = $2, end_date = $3 WHERE id = $1 AND state = 'running'")
        .bind(run_pk)
        .bind(end.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await
        .doing("closing a run")?;
    if closed.rows_affected() != 1 {
        return Ok(false);
    }
    alerts::run_ended(tx, pipeline, run_pk, end == RunState::Failed, now).await?;
    Ok(true)
}

/// Settles a whole running run ([`rules::settle`]): ends the waiting tasks that cannot
/// run, queues what may run within the pool, pipeline and global limits (highest priority
/// first), and closes the run when all its tasks are done. Runs inside the caller's
/// transaction. The scheduler's pass, which also picks up due retries; a finishing task
/// uses [`advance_after`], which reads only what it decides.
pub(super) async fn advance_in_tx(
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
    let states: HashMap<&str, TiState> = slots.iter().map(|(id, s)| (id.as_str(), s.state)).collect();
    let retry_due = |id: &str| slots.get(id).and_then(|s| s.next_try).is_none_or(|at| at <= now);
    let settlement = rules::settle(pipeline, &states, retry_due);
    for (task_id, state) in &settlement.ended {
        if let Some(slot) = slots.get(*task_id) {
            set_done_state(tx, slot.id, *state, now).await?;
        }
    }
    let mut queued = Vec::new();
    if !settlement.ready.is_empty() {
        let ready: Vec<Slot> = settlement.ready.iter().filter_map(|id| slots.remove(*id)).collect();
        let mut room = Room::read(tx, pipeline, parallelism).await?;
        queued = queue_ready(tx, &mut room, ready, now).await?;
    }
    if let Some(end) = settlement.run_end {
        close_run(tx, pipeline, run_pk, end, now).await?;
    }
    Ok(queued)
}

/// Whether a task waiting under `rule` still waits when one more upstream succeeds while
/// another is unfinished. Every upstream's end decides its downstream tasks in turn (under
/// the pipeline's lock), so a join learns nothing new from a success until the last.
pub(super) fn waits_after_success(rule: TriggerRule) -> bool {
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
pub(super) async fn upstream_unfinished(tx: &mut Tx, run_pk: i64, task: &TaskSpec) -> Result<bool> {
    let rows = q("SELECT task_id FROM task_instances WHERE run_pk = $1 AND task_id <> $2 \
                  AND state IN ('none', 'scheduled', 'queued', 'running', 'up_for_retry', 'up_for_reschedule') LIMIT 8")
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
pub(super) const READ_UPSTREAMS_AT_MOST: usize = 256;

/// After tasks `finished` of run `run_pk` ended: decides their downstream tasks (and
/// theirs, as skips and upstream failures cascade), queues what became ready and what of
/// the run waited for the room it freed, and closes the run when nothing is left. Reads
/// only what it decides, so one task's finish costs the same however wide the run is.
pub(super) async fn advance_after(
    tx: &mut Tx,
    pipeline: &PipelineSpec,
    run_pk: i64,
    finished: &[&str],
    succeeded: bool,
    now: Micros,
    parallelism: u32,
) -> Result<Vec<Queued>> {
    let mut candidates: Vec<&TaskSpec> =
        finished.iter().filter_map(|f| pipeline.task(f)).flat_map(|f| downstream_of(pipeline, f)).collect();
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
        let mut ready_now: Vec<&str> = Vec::new();
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
            let new_state = match rules::step(task, &ups) {
                Step::Ready => {
                    // Taken out of `slots` after the round: a task that is ready is still
                    // an unfinished upstream of the candidates decided after it.
                    ready_now.push(task.id);
                    unfinished = true;
                    continue;
                }
                Step::Wait => {
                    unfinished = true;
                    continue;
                }
                Step::End(state) => state,
            };
            if let Some(slot) = slots.get(task.id) {
                set_done_state(tx, slot.id, new_state, now).await?;
            }
            next.extend(downstream_of(pipeline, task));
        }
        for id in ready_now {
            if let Some(slot) = slots.remove(id) {
                ready.push(slot);
            }
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
            let leaves: Vec<&str> = rules::leaves(pipeline).collect();
            let states = slots_of(tx, run_pk, &leaves).await?;
            let end = rules::run_end(pipeline, |id| states.get(id).map_or(TiState::Removed, |s| s.state));
            if close_run(tx, pipeline, run_pk, end, now).await? {
                // A run held back by `max_active_runs` starts as this one ends, in the same
                // transaction, whatever kind either run is: no wait for the scheduler.
                for started in start_queued_runs(tx, pipeline, now).await? {
                    queued.extend(advance_in_tx(tx, pipeline, started, now, parallelism).await?);
                }
            }
        }
    }
    Ok(queued)
}
