//! Datasets: the declared ones (synced from the registry), their events (a task that
//! produces one succeeded, or an event came through the REST API), and the runs of pipelines
//! scheduled on them. A pipeline runs once each of its datasets has had an event since its
//! last dataset-triggered run, as Airflow's data-aware scheduling does; its cursors say which
//! event each run saw, so no event starts it twice and one run answers many events.

use super::runs::{NewRun, RunRow};
use super::sql::{Bound, Conditions, Paged};
use super::{Doing, Result, Store, StoreError, Tx, get, opt, q};
use crate::clock::{Micros, to_rfc3339};
use crate::registry::Registry;
use crate::rules::RunType;
use crate::spec::{PipelineSpec, Schedule};
use sqlx::any::AnyRow;

/// A dataset as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetRow {
    /// The REST API's id.
    pub key: i64,
    pub id: String,
    pub uri: String,
    pub description: String,
    pub created_at: Micros,
    pub updated_at: Micros,
}

/// One update of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetEvent {
    pub id: i64,
    pub dataset_id: String,
    /// The dataset's REST API id.
    pub dataset_key: i64,
    pub uri: String,
    /// The task that produced it; `None` for an event from outside.
    pub source_pipeline: Option<String>,
    pub source_run_id: Option<String>,
    pub source_task: Option<String>,
    pub source_map_index: i64,
    /// What the producer said about it, as JSON.
    pub extra: String,
    pub created_at: Micros,
}

/// Which dataset events to list (each filter optional), as Airflow's `getDatasetEvents`.
#[derive(Debug, Clone, Default)]
pub struct DatasetEventFilter {
    pub dataset_key: Option<i64>,
    pub source_pipeline: Option<String>,
    pub source_task: Option<String>,
    pub source_run_id: Option<String>,
    pub source_map_index: Option<i64>,
    pub oldest_first: bool,
}

/// Who produced an event.
#[derive(Debug, Clone, Copy)]
pub(super) struct Producer<'a> {
    pub pipeline: &'a str,
    pub run_id: &'a str,
    pub task: &'a str,
}

const EVENT_COLUMNS: &str = "e.id, e.dataset_id, d.api_id AS dataset_key, d.uri, e.source_pipeline, e.source_run_id, e.source_task, \
                             e.source_map_index, e.extra, e.created_at";

fn dataset_row(row: &AnyRow) -> Result<DatasetRow> {
    Ok(DatasetRow {
        key: get(row, "api_id")?,
        id: get(row, "id")?,
        uri: get(row, "uri")?,
        description: get(row, "description")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

fn event_row(row: &AnyRow) -> Result<DatasetEvent> {
    Ok(DatasetEvent {
        id: get(row, "id")?,
        dataset_id: get(row, "dataset_id")?,
        dataset_key: get(row, "dataset_key")?,
        uri: get(row, "uri")?,
        source_pipeline: opt(row, "source_pipeline"),
        source_run_id: opt(row, "source_run_id"),
        source_task: opt(row, "source_task"),
        source_map_index: get(row, "source_map_index")?,
        extra: get(row, "extra")?,
        created_at: get(row, "created_at")?,
    })
}

impl Store {
    /// Every dataset the store knows, by id.
    pub async fn datasets(&self) -> Result<Vec<DatasetRow>> {
        let mut tx = self.begin().await?;
        let rows = q("SELECT api_id, id, uri, description, created_at, updated_at FROM datasets ORDER BY api_id")
            .fetch_all(&mut *tx)
            .await
            .doing("listing datasets")?;
        tx.commit().await.doing("listing datasets")?;
        rows.iter().map(dataset_row).collect()
    }

    /// Events that match `filter`, newest first, a page of them (`limit`, `offset`), and
    /// how many match in all.
    pub async fn dataset_events(
        &self,
        filter: &DatasetEventFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<DatasetEvent>, i64)> {
        let mut tx = self.begin().await?;
        let mut conditions = Conditions::new(super::Dialect::of(&tx));
        conditions.equals("d.api_id", filter.dataset_key.map(Bound::Number));
        conditions.equals("e.source_pipeline", filter.source_pipeline.clone().map(Bound::Text));
        conditions.equals("e.source_task", filter.source_task.clone().map(Bound::Text));
        conditions.equals("e.source_run_id", filter.source_run_id.clone().map(Bound::Text));
        conditions.equals("e.source_map_index", filter.source_map_index.map(Bound::Number));
        let paged = Paged {
            columns: EVENT_COLUMNS,
            table: "dataset_events e JOIN datasets d ON d.id = e.dataset_id",
            order_by: if filter.oldest_first { "e.id" } else { "e.id DESC" },
            limit,
            offset,
            doing: "listing dataset events",
        };
        let (rows, total) = conditions.page(&mut tx, paged).await?;
        tx.commit().await.doing("listing dataset events")?;
        Ok((rows.iter().map(event_row).collect::<Result<_>>()?, total))
    }

    /// Records an update of the dataset with URI `uri` from outside (the REST API's
    /// `POST /datasets/events`); `extra` is what the caller says about it.
    pub async fn record_dataset_event(&self, uri: &str, extra: &serde_json::Value) -> Result<DatasetEvent> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let row = q("SELECT id FROM datasets WHERE uri = $1")
            .bind(uri)
            .fetch_optional(&mut *tx)
            .await
            .doing("finding a dataset")?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("no dataset has the URI `{uri}`")));
        };
        let dataset_id: String = get(&row, "id")?;
        let id = insert_event(&mut tx, &dataset_id, None, &extra.to_string(), now).await?;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM dataset_events e JOIN datasets d ON d.id = e.dataset_id WHERE e.id = $1"
        );
        let event =
            event_row(&q(sqlx::AssertSqlSafe(sql)).bind(id).fetch_one(&mut *tx).await.doing("reading an event")?)?;
        self.audit(&mut tx, super::Change::new("dataset.event").detail("uri", uri)).await?;
        tx.commit().await.doing("recording a dataset event")?;
        Ok(event)
    }

    /// Starts a run of `pipeline` (scheduled on datasets) when each of its datasets has had
    /// an event since its last run; the run's data interval spans those events.
    pub async fn trigger_on_datasets(&self, pipeline: &PipelineSpec) -> Result<Option<RunRow>> {
        let Schedule::Datasets(ids) = pipeline.schedule else { return Ok(None) };
        let now = self.now();
        // The scheduler asks at every pass: the pipeline's lock (which finishing tasks take
        // too) is taken only once its datasets are all updated, and the check is made again
        // under it.
        let mut tx = self.begin().await?;
        let due = updates_since_last_run(&mut tx, pipeline.id, ids, now).await?;
        tx.commit().await.doing("reading dataset cursors")?;
        if due.is_none() {
            return Ok(None);
        }
        let mut tx = self.begin_locked(&[pipeline.id]).await?;
        let Some((updated, since)) = updates_since_last_run(&mut tx, pipeline.id, ids, now).await? else {
            return Ok(None);
        };
        let run = NewRun {
            run_id: format!("dataset_triggered__{}", to_rfc3339(now)),
            run_type: RunType::DatasetTriggered,
            logical_date: now,
            data_interval_start: since,
            data_interval_end: now,
            conf: serde_json::json!({}),
        };
        let run = self.create_run_in(&mut tx, pipeline, &run).await?;
        for (id, latest) in updated {
            q("UPDATE dataset_cursors SET last_event_id = $3 WHERE pipeline_id = $1 AND dataset_id = $2")
                .bind(pipeline.id)
                .bind(id)
                .bind(latest)
                .execute(&mut *tx)
                .await
                .doing("moving a dataset cursor")?;
        }
        tx.commit().await.doing("starting a dataset-triggered run")?;
        Ok(Some(run))
    }
}

/// An update a dataset-scheduled pipeline has not run for yet (Airflow's queued event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedDatasetEvent {
    pub pipeline_id: String,
    pub uri: String,
    /// When the first event its next run will answer came.
    pub created_at: Micros,
}

impl Store {
    /// The queued events: per pipeline and dataset, the updates since its last run. Either
    /// filter may be left out.
    pub async fn queued_dataset_events(
        &self,
        pipeline_id: Option<&str>,
        uri: Option<&str>,
    ) -> Result<Vec<QueuedDatasetEvent>> {
        let mut tx = self.begin().await?;
        let rows = q("SELECT c.pipeline_id, d.uri, (SELECT MIN(e.created_at) FROM dataset_events e \
                        WHERE e.dataset_id = c.dataset_id AND e.id > c.last_event_id) AS first_at \
                      FROM dataset_cursors c JOIN datasets d ON d.id = c.dataset_id ORDER BY c.pipeline_id, d.uri")
        .fetch_all(&mut *tx)
        .await
        .doing("listing queued dataset events")?;
        tx.commit().await.doing("listing queued dataset events")?;
        let mut queued = Vec::new();
        for row in &rows {
            let Some(created_at) = opt::<i64>(row, "first_at") else { continue };
            let event = QueuedDatasetEvent { pipeline_id: get(row, "pipeline_id")?, uri: get(row, "uri")?, created_at };
            if pipeline_id.is_none_or(|p| p == event.pipeline_id) && uri.is_none_or(|u| u == event.uri) {
                queued.push(event);
            }
        }
        Ok(queued)
    }

    /// Drops queued events (the pipeline's cursors move past them): those of `pipeline_id`,
    /// of the dataset `uri`, or both. Returns how many there were.
    pub async fn clear_queued_dataset_events(&self, pipeline_id: Option<&str>, uri: Option<&str>) -> Result<usize> {
        let queued = self.queued_dataset_events(pipeline_id, uri).await?;
        let mut tx = self.begin().await?;
        for event in &queued {
            q("UPDATE dataset_cursors SET last_event_id = (SELECT COALESCE(MAX(e.id), 0) FROM dataset_events e \
                 WHERE e.dataset_id = dataset_cursors.dataset_id) \
               WHERE pipeline_id = $1 AND dataset_id = (SELECT id FROM datasets WHERE uri = $2)")
            .bind(&event.pipeline_id)
            .bind(&event.uri)
            .execute(&mut *tx)
            .await
            .doing("clearing queued dataset events")?;
            self.audit(
                &mut tx,
                super::Change::new("dataset.clear_queued")
                    .pipeline(&event.pipeline_id)
                    .detail("uri", event.uri.as_str()),
            )
            .await?;
        }
        tx.commit().await.doing("clearing queued dataset events")?;
        Ok(queued.len())
    }

    /// The events a dataset-triggered run answered: those of its pipeline's datasets within
    /// its data interval.
    pub async fn run_dataset_events(&self, pipeline: &PipelineSpec, run: &RunRow) -> Result<Vec<DatasetEvent>> {
        let Schedule::Datasets(ids) = pipeline.schedule else { return Ok(Vec::new()) };
        if run.run_type != RunType::DatasetTriggered {
            return Ok(Vec::new());
        }
        let mut events = Vec::new();
        let mut tx = self.begin().await?;
        for id in ids {
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM dataset_events e JOIN datasets d ON d.id = e.dataset_id \
                 WHERE e.dataset_id = $1 AND e.created_at >= $2 AND e.created_at <= $3 ORDER BY e.id"
            );
            let rows = q(sqlx::AssertSqlSafe(sql))
                .bind(*id)
                .bind(run.data_interval_start)
                .bind(run.data_interval_end)
                .fetch_all(&mut *tx)
                .await
                .doing("reading a run's dataset events")?;
            for row in &rows {
                events.push(event_row(row)?);
            }
        }
        tx.commit().await.doing("reading a run's dataset events")?;
        Ok(events)
    }
}

/// When each of `ids` has an event past the pipeline's cursor: the latest event of each, and
/// when the first of those events came; `None` while one has none.
async fn updates_since_last_run<'a>(
    tx: &mut Tx,
    pipeline_id: &str,
    ids: &[&'a str],
    now: Micros,
) -> Result<Option<(Vec<(&'a str, i64)>, Micros)>> {
    let rows = q("SELECT c.dataset_id, c.last_event_id, \
                    (SELECT MAX(e.id) FROM dataset_events e WHERE e.dataset_id = c.dataset_id) AS latest, \
                    (SELECT MIN(e.created_at) FROM dataset_events e WHERE e.dataset_id = c.dataset_id \
                       AND e.id > c.last_event_id) AS first_at \
                  FROM dataset_cursors c WHERE c.pipeline_id = $1")
    .bind(pipeline_id)
    .fetch_all(&mut **tx)
    .await
    .doing("reading dataset cursors")?;
    let mut updated = Vec::new();
    let mut since = now;
    for id in ids {
        let row = rows.iter().find(|r| get::<String>(r, "dataset_id").is_ok_and(|d| d == *id));
        let Some(row) = row else { return Ok(None) };
        let (last, latest): (i64, Option<i64>) = (get(row, "last_event_id")?, opt(row, "latest"));
        match latest {
            Some(latest) if latest > last => {
                updated.push((*id, latest));
                since = since.min(opt::<i64>(row, "first_at").unwrap_or(now));
            }
            _ => return Ok(None),
        }
    }
    Ok(Some((updated, since)))
}

/// Upserts the registry's datasets, and starts the cursors of pipelines scheduled on them at
/// the latest event (a new pipeline waits for the next one).
pub(super) async fn sync(tx: &mut Tx, registry: &Registry, now: Micros) -> Result<()> {
    for d in registry.datasets {
        q("INSERT INTO datasets (id, uri, description, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
           ON CONFLICT (id) DO UPDATE SET uri = excluded.uri, description = excluded.description, \
           updated_at = excluded.updated_at")
        .bind(d.id)
        .bind(d.uri)
        .bind(d.description)
        .bind(now)
        .execute(&mut **tx)
        .await
        .doing("syncing a dataset")?;
    }
    for p in registry.pipelines {
        let Schedule::Datasets(ids) = p.schedule else { continue };
        for id in ids {
            q("INSERT INTO dataset_cursors (pipeline_id, dataset_id, last_event_id) \
               SELECT $1, $2, COALESCE(MAX(id), 0) FROM dataset_events WHERE dataset_id = $2 \
               ON CONFLICT (pipeline_id, dataset_id) DO NOTHING")
            .bind(p.id)
            .bind(*id)
            .execute(&mut **tx)
            .await
            .doing("starting a dataset cursor")?;
        }
    }
    Ok(())
}

/// Records that `producer` updated `datasets`, in the transaction that records its success.
pub(super) async fn produce(tx: &mut Tx, datasets: &[&str], producer: Producer<'_>, now: Micros) -> Result<()> {
    for id in datasets {
        insert_event(tx, id, Some(producer), "{}", now).await?;
    }
    Ok(())
}

async fn insert_event(
    tx: &mut Tx,
    dataset_id: &str,
    producer: Option<Producer<'_>>,
    extra: &str,
    now: Micros,
) -> Result<i64> {
    let row =
        q("INSERT INTO dataset_events (dataset_id, source_pipeline, source_run_id, source_task, extra, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id")
        .bind(dataset_id)
        .bind(producer.map(|p| p.pipeline))
        .bind(producer.map(|p| p.run_id))
        .bind(producer.map(|p| p.task))
        .bind(extra)
        .bind(now)
        .fetch_one(&mut **tx)
        .await
        .doing("recording a dataset event")?;
    get(&row, "id")
}
