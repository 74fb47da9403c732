//! Alerts and SLAs in the store: the notification outbox and SLA misses.
//!
//! A notification row is written in the transaction that records its event (a try's
//! outcome, a run's end, an SLA miss), so an event is never lost to a crash between
//! the two; delivery then claims rows one by one (a lease on `next_attempt_at`, so two
//! processes never send the same row at once) and retries failed sends with backoff.

use super::{Doing, Result, Store, Tx, get, opt, q};
use crate::clock::{Micros, to_rfc3339};
use crate::registry::Registry;
use crate::rules::RunType;
use crate::spec::{PipelineSpec, TaskSpec};
use serde_json::{Value, json};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A task failed for good, or a run failed.
    Failure,
    /// A try failed and another will follow.
    Retry,
    /// A task or a run succeeded.
    Success,
    /// A task had not succeeded by its SLA deadline.
    SlaMiss,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Failure => "failure",
            Event::Retry => "retry",
            Event::Success => "success",
            Event::SlaMiss => "sla_miss",
        }
    }

    /// The connections a task tells of this event (SLA misses go where failures go).
    pub fn task_targets(self, task: &TaskSpec) -> &'static [&'static str] {
        match self {
            Event::Failure | Event::SlaMiss => task.on_failure,
            Event::Retry => task.on_retry,
            Event::Success => task.on_success,
        }
    }
}

/// How many times a notification is attempted before it is given up as `failed`.
pub const MAX_ATTEMPTS: i64 = 5;
/// While one process sends a notification, others leave it alone this long.
const SEND_LEASE_MICROS: Micros = 60_000_000;

/// One notification to deliver (or delivered).
#[derive(Debug, Clone)]
pub struct NotificationRow {
    pub id: i64,
    pub event: String,
    /// The connection it goes through.
    pub target: String,
    pub pipeline_id: String,
    pub run_id: String,
    pub task_id: Option<String>,
    /// The JSON body: pipeline, run, task, try, state, logical date, error.
    pub payload: Value,
    /// Email recipients (smtp targets).
    pub recipients: Vec<String>,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// A recorded SLA miss.
#[derive(Debug, Clone)]
pub struct SlaMissRow {
    pub pipeline_id: String,
    pub run_id: String,
    pub task_id: String,
    pub deadline: Micros,
    pub detected_at: Micros,
}

/// The deadline of `task` in a run. SLAs apply to scheduled runs and count, as Airflow's
/// do, from the run's start as scheduled: the end of its data interval (a daily run of
/// logical date D starts at D + 1 day).
pub(super) fn sla_deadline(task: &TaskSpec, run_type: RunType, data_interval_end: Micros) -> Option<Micros> {
    let secs = task.sla_secs.filter(|_| run_type == RunType::Scheduled)?;
    Some(data_interval_end.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1_000_000)))
}

/// What one notification says, before delivery adds the links.
pub(super) struct Notice<'a> {
    pub event: Event,
    pub pipeline_id: &'a str,
    pub run_id: &'a str,
    pub logical_date: Micros,
    /// `None` for a run-level event.
    pub task_id: Option<&'a str>,
    pub try_number: Option<i64>,
    pub state: &'a str,
    pub error: Option<&'a str>,
    pub sla_deadline: Option<Micros>,
}

/// Writes one pending notification per target, inside the caller's transaction.
pub(super) async fn enqueue(
    tx: &mut Tx,
    notice: &Notice<'_>,
    targets: &[&str],
    recipients: &[&str],
    now: Micros,
) -> Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    let payload = json!({
        "event": notice.event.as_str(),
        "pipeline": notice.pipeline_id,
        "run": notice.run_id,
        "task": notice.task_id,
        "try": notice.try_number,
        "state": notice.state,
        "logical_date": to_rfc3339(notice.logical_date),
        "error": notice.error,
        "sla_deadline": notice.sla_deadline.map(to_rfc3339),
    });
    let recipients = json!(recipients).to_string();
    for target in targets {
        q("INSERT INTO notifications (event, target, pipeline_id, run_id, task_id, payload, recipients, state, \
           attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8)")
        .bind(notice.event.as_str())
        .bind(*target)
        .bind(notice.pipeline_id)
        .bind(notice.run_id)
        .bind(notice.task_id)
        .bind(payload.to_string())
        .bind(&recipients)
        .bind(now)
        .execute(&mut **tx)
        .await
        .doing("queueing a notification")?;
    }
    Ok(())
}

/// The run id and logical date of run `run_pk`, for a notice.
pub(super) async fn run_identity(tx: &mut Tx, run_pk: i64) -> Result<(String, Micros)> {
    let row = q("SELECT run_id, logical_date FROM runs WHERE id = $1")
        .bind(run_pk)
        .fetch_one(&mut **tx)
        .await
        .doing("reading a run")?;
    Ok((get(&row, "run_id")?, get(&row, "logical_date")?))
}

/// Queues the run-level notifications of a run that just ended.
pub(super) async fn run_ended(
    tx: &mut Tx,
    pipeline: &PipelineSpec,
    run_pk: i64,
    failed: bool,
    now: Micros,
) -> Result<()> {
    let (event, targets) =
        if failed { (Event::Failure, pipeline.on_failure) } else { (Event::Success, pipeline.on_success) };
    if targets.is_empty() {
        return Ok(());
    }
    let (run_id, logical_date) = run_identity(tx, run_pk).await?;
    let notice = Notice {
        event,
        pipeline_id: pipeline.id,
        run_id: &run_id,
        logical_date,
        task_id: None,
        try_number: None,
        state: if failed { "failed" } else { "success" },
        error: None,
        sla_deadline: None,
    };
    enqueue(tx, &notice, targets, pipeline.email, now).await
}

const NOTIFICATION_COLUMNS: &str = "id, event, target, pipeline_id, run_id, task_id, payload, recipients, state, \
                                    attempts, last_error";

fn notification_row(row: &sqlx::any::AnyRow) -> Result<NotificationRow> {
    let payload: String = get(row, "payload")?;
    let recipients: String = get(row, "recipients")?;
    Ok(NotificationRow {
        id: get(row, "id")?,
        event: get(row, "event")?,
        target: get(row, "target")?,
        pipeline_id: get(row, "pipeline_id")?,
        run_id: get(row, "run_id")?,
        task_id: opt(row, "task_id"),
        payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
        recipients: serde_json::from_str(&recipients).unwrap_or_default(),
        state: get(row, "state")?,
        attempts: get(row, "attempts")?,
        last_error: opt(row, "last_error"),
    })
}

impl Store {
    /// Claims up to `limit` notifications that are due: each is leased to the caller,
    /// its attempt counted, before it is sent.
    pub async fn claim_due_notifications(&self, limit: i64) -> Result<Vec<NotificationRow>> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let rows = q(sqlx::AssertSqlSafe(format!(
            "SELECT {NOTIFICATION_COLUMNS}, next_attempt_at FROM notifications \
             WHERE state = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2"
        )))
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .doing("reading due notifications")?;
        let mut claimed = Vec::new();
        for row in &rows {
            let mut n = notification_row(row)?;
            let due_at: i64 = get(row, "next_attempt_at")?;
            let won = q("UPDATE notifications SET attempts = attempts + 1, next_attempt_at = $3 \
                         WHERE id = $1 AND state = 'pending' AND next_attempt_at = $2")
            .bind(n.id)
            .bind(due_at)
            .bind(now + SEND_LEASE_MICROS)
            .execute(&mut *tx)
            .await
            .doing("claiming a notification")?;
            if won.rows_affected() == 1 {
                n.attempts += 1;
                claimed.push(n);
            }
        }
        tx.commit().await.doing("claiming notifications")?;
        Ok(claimed)
    }

    /// Records a delivery.
    pub async fn notification_sent(&self, id: i64) -> Result<()> {
        let now = self.now();
        let mut tx = self.begin().await?;
        q("UPDATE notifications SET state = 'sent', sent_at = $2, last_error = NULL WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .doing("recording a sent notification")?;
        tx.commit().await.doing("recording a sent notification")
    }

    /// Records a failed attempt: retried at `retry_at`, or given up when `None`.
    pub async fn notification_failed(&self, id: i64, error: &str, retry_at: Option<Micros>) -> Result<()> {
        let mut tx = self.begin().await?;
        q("UPDATE notifications SET state = $2, last_error = $3, next_attempt_at = COALESCE($4, next_attempt_at) \
           WHERE id = $1")
        .bind(id)
        .bind(if retry_at.is_some() { "pending" } else { "failed" })
        .bind(error)
        .bind(retry_at)
        .execute(&mut *tx)
        .await
        .doing("recording a failed notification")?;
        tx.commit().await.doing("recording a failed notification")
    }

    /// When the next pending notification is due.
    pub async fn next_notification_at(&self) -> Result<Option<Micros>> {
        let mut tx = self.begin().await?;
        let row = q("SELECT MIN(next_attempt_at) AS at FROM notifications WHERE state = 'pending'")
            .fetch_one(&mut *tx)
            .await
            .doing("reading pending notifications")?;
        tx.commit().await.doing("reading pending notifications")?;
        Ok(opt(&row, "at"))
    }

    /// The latest notifications, newest first, optionally of one pipeline.
    pub async fn notifications(&self, pipeline_id: Option<&str>, limit: i64) -> Result<Vec<NotificationRow>> {
        let mut tx = self.begin().await?;
        let rows = q(sqlx::AssertSqlSafe(format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE ($1 IS NULL OR pipeline_id = $1) \
             ORDER BY id DESC LIMIT $2"
        )))
        .bind(pipeline_id)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .doing("listing notifications")?;
        tx.commit().await.doing("listing notifications")?;
        rows.iter().map(notification_row).collect()
    }

    /// Judges every task instance whose SLA deadline has passed: one that succeeded (or
    /// was skipped) in time met it; any other missed it, which is recorded once and
    /// notified. Returns the misses recorded now.
    pub async fn record_sla_misses(&self, registry: &Registry) -> Result<Vec<SlaMissRow>> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let rows =
            q("SELECT ti.id, ti.task_id, ti.state, ti.try_number, ti.end_date, ti.sla_deadline, ti.pipeline_id, \
                      r.run_id, r.logical_date FROM task_instances ti JOIN runs r ON r.id = ti.run_pk \
                      WHERE ti.sla_deadline IS NOT NULL AND ti.sla_deadline <= $1 ORDER BY ti.sla_deadline LIMIT 1000")
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .doing("reading SLA deadlines")?;
        let mut misses = Vec::new();
        for row in &rows {
            let ti_id: i64 = get(row, "id")?;
            let deadline: i64 = get(row, "sla_deadline")?;
            let state: String = get(row, "state")?;
            let end: Option<i64> = opt(row, "end_date");
            let judged = q("UPDATE task_instances SET sla_deadline = NULL WHERE id = $1 AND sla_deadline IS NOT NULL")
                .bind(ti_id)
                .execute(&mut *tx)
                .await
                .doing("judging an SLA")?;
            let met = matches!(state.as_str(), "success" | "skipped" | "removed") && end.is_some_and(|e| e <= deadline);
            if met || judged.rows_affected() != 1 {
                continue;
            }
            let miss = SlaMissRow {
                pipeline_id: get(row, "pipeline_id")?,
                run_id: get(row, "run_id")?,
                task_id: get(row, "task_id")?,
                deadline,
                detected_at: now,
            };
            q("INSERT INTO sla_misses (ti_id, pipeline_id, run_id, task_id, deadline, detected_at) \
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (ti_id) DO NOTHING")
            .bind(ti_id)
            .bind(&miss.pipeline_id)
            .bind(&miss.run_id)
            .bind(&miss.task_id)
            .bind(deadline)
            .bind(now)
            .execute(&mut *tx)
            .await
            .doing("recording an SLA miss")?;
            if let Some(task) = registry.pipeline(&miss.pipeline_id).and_then(|p| p.task(&miss.task_id)) {
                let notice = Notice {
                    event: Event::SlaMiss,
                    pipeline_id: &miss.pipeline_id,
                    run_id: &miss.run_id,
                    logical_date: get(row, "logical_date")?,
                    task_id: Some(&miss.task_id),
                    try_number: Some(get(row, "try_number")?),
                    state: &state,
                    error: None,
                    sla_deadline: Some(deadline),
                };
                enqueue(&mut tx, &notice, Event::SlaMiss.task_targets(task), task.email, now).await?;
            }
            misses.push(miss);
        }
        tx.commit().await.doing("recording SLA misses")?;
        Ok(misses)
    }

    /// The earliest SLA deadline not yet judged.
    pub async fn next_sla_deadline(&self) -> Result<Option<Micros>> {
        let mut tx = self.begin().await?;
        let row = q("SELECT MIN(sla_deadline) AS at FROM task_instances WHERE sla_deadline IS NOT NULL")
            .fetch_one(&mut *tx)
            .await
            .doing("reading SLA deadlines")?;
        tx.commit().await.doing("reading SLA deadlines")?;
        Ok(opt(&row, "at"))
    }

    /// Recorded SLA misses, newest first, optionally of one pipeline.
    pub async fn sla_misses(&self, pipeline_id: Option<&str>, limit: i64) -> Result<Vec<SlaMissRow>> {
        let mut tx = self.begin().await?;
        let rows = q("SELECT pipeline_id, run_id, task_id, deadline, detected_at FROM sla_misses \
                      WHERE ($1 IS NULL OR pipeline_id = $1) ORDER BY detected_at DESC, ti_id DESC LIMIT $2")
        .bind(pipeline_id)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .doing("listing SLA misses")?;
        tx.commit().await.doing("listing SLA misses")?;
        rows.iter()
            .map(|row| {
                Ok(SlaMissRow {
                    pipeline_id: get(row, "pipeline_id")?,
                    run_id: get(row, "run_id")?,
                    task_id: get(row, "task_id")?,
                    deadline: get(row, "deadline")?,
                    detected_at: get(row, "detected_at")?,
                })
            })
            .collect()
    }
}
