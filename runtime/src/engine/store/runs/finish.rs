//! Recording the ends of tries: successes and failures (retries, alerts), then what they
//! made ready, in the same transaction.

use super::*;
use crate::rules::{self, AfterFailure, AfterNotReady};
use crate::store::datasets;
use crate::store::sql::{Dialect, json_list};

impl Store {
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
        let finish =
            Finish { pipeline, ti_id, try_number, outcome: outcome.clone(), run: None, trail: Trail::default() };
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
        // A late report's log is still the try's log: written whether or not it ends it.
        for finish in finishes.iter().filter(|f| !f.trail.log.is_empty()) {
            let (ti, try_number, limits) = (finish.ti_id, finish.try_number, finish.trail.log_limits);
            if logs::append_task_log(&mut tx, ti, try_number, &finish.trail.log, limits, now).await?.cut {
                logs::end_task_log(&mut tx, ti, try_number, 0, limits).await?;
            }
        }
        let mut ended = record_successes(&mut tx, finishes, now).await?;
        // Targets a branch left out end skipped with it: they are decided with its ending.
        let mut left_out: Vec<(i64, &str)> = Vec::new();
        for end in &ended {
            left_out.extend(skip_unchosen(&mut tx, &finishes[end.index], end, now).await?);
        }
        for (index, finish) in finishes.iter().enumerate() {
            let end = match &finish.outcome {
                Outcome::Failed(message) => record_failure(&mut tx, index, finish, message, now).await?,
                Outcome::Skipped(_) => record_skip(&mut tx, index, finish, now).await?,
                Outcome::NotReady(reason) => record_not_ready(&mut tx, index, finish, reason, now).await?,
                Outcome::Success(_) => None,
            };
            ended.extend(end);
        }
        for end in &ended {
            queue_task_alerts(&mut tx, &finishes[end.index], end, now).await?;
            if let Some(rendered) = &finishes[end.index].trail.rendered {
                record_rendered(&mut tx, &finishes[end.index], rendered).await?;
            }
        }

        // Each run is decided once, for all of its tasks that ended.
        let mut report = RecordedBatch { queued: Vec::new(), each: vec![Recorded::default(); finishes.len()] };
        let mut runs: Vec<i64> = ended.iter().map(|e| e.run_pk).collect();
        runs.sort_unstable();
        runs.dedup();
        for run_pk in runs {
            let of_run: Vec<&Ended> = ended.iter().filter(|e| e.run_pk == run_pk).collect();
            let pipeline = finishes[of_run[0].index].pipeline;
            let mut tasks: Vec<&str> = of_run.iter().map(|e| e.task_id.as_str()).collect();
            let skipped_targets = left_out.iter().filter(|(run, _)| *run == run_pk).map(|(_, task)| *task);
            tasks.extend(skipped_targets);
            let all_succeeded = tasks.len() == of_run.len() && of_run.iter().all(|e| e.state == TiState::Success);
            let queued = advance_after(&mut tx, pipeline, run_pk, &tasks, all_succeeded, now, parallelism).await?;
            for end in &of_run {
                report.each[end.index] = Recorded {
                    ended: true,
                    failed: matches!(end.state, TiState::Failed | TiState::UpForRetry),
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
        crate::failpoint!("store.finish.before_commit");
        tx.commit().await.doing("finishing a task")?;
        Ok(report)
    }
}

/// Keeps what a try rendered, with its end.
async fn record_rendered(tx: &mut Tx, finish: &Finish<'_>, rendered: &str) -> Result<()> {
    q("UPDATE task_tries SET rendered = $3 WHERE ti_id = $1 AND try_number = $2")
        .bind(finish.ti_id)
        .bind(finish.try_number)
        .bind(rendered)
        .execute(&mut **tx)
        .await
        .doing("recording rendered templates")?;
    Ok(())
}

/// Records the successes among `finishes` whose try is running: two statements however
/// many there are. Outputs other than unit leave a row each.
pub(super) async fn record_successes(tx: &mut Tx, finishes: &[Finish<'_>], now: Micros) -> Result<Vec<Ended>> {
    let tries: Vec<(i64, i64)> =
        finishes.iter().filter(|f| matches!(f.outcome, Outcome::Success(_))).map(|f| (f.ti_id, f.try_number)).collect();
    if tries.is_empty() {
        return Ok(Vec::new());
    }
    let update = format!(
        "UPDATE task_instances SET state = 'success', end_date = $1, error = NULL, next_try_at = NULL, \
         poke_started_at = NULL WHERE state = 'running' AND {} RETURNING id, run_pk, task_id, try_number",
        Dialect::of(tx).in_json_tries("id", "try_number", 2)
    );
    // PostgreSQL ends the tries in the same statement (one round trip fewer).
    let postgres = Dialect::of(tx) == Dialect::Postgres;
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
            Dialect::of(tx).in_json_tries("ti_id", "try_number", 2)
        );
        q(AssertSqlSafe(sql)).bind(now).bind(json_list(&recorded)).execute(&mut **tx).await.doing("recording a try")?;
    }
    for end in &ended {
        let finish = &finishes[end.index];
        if let Some(task) = finish.pipeline.task(&end.task_id).filter(|t| !t.produces.is_empty()) {
            let (run_id, _) = alerts::run_identity(tx, end.run_pk).await?;
            let producer = datasets::Producer { pipeline: finish.pipeline.id, run_id: &run_id, task: task.id };
            datasets::produce(tx, task.produces, producer, now).await?;
        }
        if let Outcome::Success(outputs) = &finish.outcome
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

/// Ends `finish`'s try in the tries list: how it ended, when, and its error if any.
async fn end_try(tx: &mut Tx, finish: &Finish<'_>, state: TiState, error: Option<&str>, now: Micros) -> Result<()> {
    q("UPDATE task_tries SET state = $3, end_date = $4, error = $5 WHERE ti_id = $1 AND try_number = $2")
        .bind(finish.ti_id)
        .bind(finish.try_number)
        .bind(state.as_str())
        .bind(now)
        .bind(error)
        .execute(&mut **tx)
        .await
        .doing("recording a try")?;
    Ok(())
}

/// Records that `finishes[index]` failed with `message`, if its try is running: up for
/// retry while it has tries left, else failed.
pub(super) async fn record_failure(
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
    let after = match finish.pipeline.task(&task_id) {
        Some(task) => rules::after_failure(&task.retry, finish.try_number, max_tries, now),
        // No longer in the pipeline: nothing to retry.
        None => AfterFailure::Fail,
    };
    let (state, next_try) = match after {
        AfterFailure::Retry { at } => (TiState::UpForRetry, Some(at)),
        AfterFailure::Fail => (TiState::Failed, None),
    };
    q("UPDATE task_instances SET state = $2, end_date = $3, error = $4, next_try_at = $5, poke_started_at = NULL \
       WHERE id = $1")
    .bind(finish.ti_id)
    .bind(state.as_str())
    .bind(now)
    .bind(message)
    .bind(next_try)
    .execute(&mut **tx)
    .await
    .doing("recording a task outcome")?;
    end_try(tx, finish, TiState::Failed, Some(message), now).await?;
    let run_pk = get(&row, "run_pk")?;
    Ok(Some(Ended { index, run_pk, task_id, state, error: Some(message.to_string()) }))
}

/// Records that `finishes[index]` asked to be skipped, if its try is running: `skipped`,
/// never retried.
pub(super) async fn record_skip(tx: &mut Tx, index: usize, finish: &Finish<'_>, now: Micros) -> Result<Option<Ended>> {
    let row = q("UPDATE task_instances SET state = 'skipped', end_date = $3, error = NULL, next_try_at = NULL, \
                 poke_started_at = NULL WHERE id = $1 AND state = 'running' AND try_number = $2 \
                 RETURNING run_pk, task_id")
    .bind(finish.ti_id)
    .bind(finish.try_number)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await
    .doing("recording a task outcome")?;
    let Some(row) = row else { return Ok(None) };
    end_try(tx, finish, TiState::Skipped, None, now).await?;
    Ok(Some(Ended {
        index,
        run_pk: get(&row, "run_pk")?,
        task_id: get(&row, "task_id")?,
        state: TiState::Skipped,
        error: None,
    }))
}

/// Records a sensor's "not yet" (`reschedule` mode), if its try is running: up for
/// reschedule until its next poke, holding no slot (the poke does not use up a retry), or,
/// past its timeout, failed (retried as any failure) or skipped with `soft_fail`.
pub(super) async fn record_not_ready(
    tx: &mut Tx,
    index: usize,
    finish: &Finish<'_>,
    reason: &str,
    now: Micros,
) -> Result<Option<Ended>> {
    let row = q("SELECT start_date, poke_started_at, task_id FROM task_instances WHERE id = $1 \
                 AND state = 'running' AND try_number = $2")
    .bind(finish.ti_id)
    .bind(finish.try_number)
    .fetch_optional(&mut **tx)
    .await
    .doing("recording a sensor's poke")?;
    let Some(row) = row else { return Ok(None) };
    let task_id: String = get(&row, "task_id")?;
    let Some(sensor) = finish.pipeline.task(&task_id).and_then(|t| t.sensor.as_ref()) else {
        let message = format!("task `{task_id}` said \"not yet\" ({reason}), which only a task with `sensor:` may say");
        return record_failure(tx, index, finish, &message, now).await;
    };
    let since = opt::<i64>(&row, "poke_started_at").or_else(|| opt(&row, "start_date")).unwrap_or(now);
    let (at, since) = match rules::after_not_ready(sensor, since, now) {
        AfterNotReady::Reschedule { at, since } => (at, since),
        AfterNotReady::TimedOut => {
            let ended = crate::executor::sensor_timed_out(sensor, reason);
            return match ended.ending {
                crate::task::Ending::Skip => record_skip(tx, index, finish, now).await,
                _ => record_failure(tx, index, finish, &ended.message, now).await,
            };
        }
    };
    let row = q("UPDATE task_instances SET state = 'up_for_reschedule', end_date = $2, next_try_at = $3, \
                 poke_started_at = $4, max_tries = max_tries + 1, error = NULL WHERE id = $1 RETURNING run_pk")
    .bind(finish.ti_id)
    .bind(now)
    .bind(at)
    .bind(since)
    .fetch_one(&mut **tx)
    .await
    .doing("recording a sensor's poke")?;
    end_try(tx, finish, TiState::UpForReschedule, None, now).await?;
    let run_pk = get(&row, "run_pk")?;
    Ok(Some(Ended { index, run_pk, task_id, state: TiState::UpForReschedule, error: None }))
}

/// Ends `skipped` the `branch:` targets a branch task that succeeded did not choose (those
/// still waiting: a target another rule already ran keeps its state). Returns them.
async fn skip_unchosen<'p>(tx: &mut Tx, finish: &Finish<'p>, end: &Ended, now: Micros) -> Result<Vec<(i64, &'p str)>> {
    let Some(task) = finish.pipeline.task(&end.task_id).filter(|t| !t.branch.is_empty()) else { return Ok(Vec::new()) };
    let Outcome::Success(outputs) = &finish.outcome else { return Ok(Vec::new()) };
    let chosen = outputs.get(sluice_contract::outputs::BRANCH).and_then(|c| c.as_array());
    let is_chosen = |target: &str| chosen.is_some_and(|c| c.iter().any(|v| v.as_str() == Some(target)));
    let unchosen: Vec<&'p str> = task.branch.iter().copied().filter(|t| !is_chosen(t)).collect();
    if unchosen.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "UPDATE task_instances SET state = 'skipped', end_date = $2 WHERE run_pk = $1 \
         AND state IN ('none', 'scheduled') AND task_id {} RETURNING task_id",
        Dialect::of(tx).in_json(3, false)
    );
    let rows = q(AssertSqlSafe(sql))
        .bind(end.run_pk)
        .bind(now)
        .bind(json_list(&unchosen))
        .fetch_all(&mut **tx)
        .await
        .doing("skipping the branches not taken")?;
    let mut skipped = Vec::new();
    for row in &rows {
        let id: String = get(row, "task_id")?;
        if let Some(target) = unchosen.iter().find(|t| **t == id) {
            skipped.push((end.run_pk, *target));
        }
    }
    Ok(skipped)
}

/// Queues the notifications the task asked for on this end (success, retry, failure); a
/// skip tells no one.
pub(super) async fn queue_task_alerts(tx: &mut Tx, finish: &Finish<'_>, end: &Ended, now: Micros) -> Result<()> {
    let Some(task) = finish.pipeline.task(&end.task_id) else { return Ok(()) };
    let event = match end.state {
        TiState::Success => Event::Success,
        TiState::UpForRetry => Event::Retry,
        TiState::Skipped | TiState::UpForReschedule => return Ok(()),
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
pub(super) struct Known<'a> {
    pub(super) runs: Vec<&'a RunRow>,
    pub(super) succeeded: Vec<(i64, &'a str)>,
    pub(super) outputs: Vec<((i64, &'a str), &'a serde_json::Value)>,
}

impl<'a> Known<'a> {
    pub(super) fn of(finishes: &'a [Finish<'a>], ended: &'a [Ended]) -> Known<'a> {
        let mut known = Known { runs: finishes.iter().filter_map(|f| f.run.as_ref()).collect(), ..Known::default() };
        for end in ended {
            if let Outcome::Success(value) = &finishes[end.index].outcome {
                known.succeeded.push((end.run_pk, end.task_id.as_str()));
                if !value.is_null() {
                    known.outputs.push(((end.run_pk, end.task_id.as_str()), value));
                }
            }
        }
        known
    }
}
