//! The audit trail: who changed what, when and from where. A store acting for a person
//! ([`Store::acting_as`]) writes one row in the transaction of each change it makes, so a
//! change and its record land or fail together; the scheduler's and workers' own steps are
//! not a person's and write none.

use super::sql::{Bound, Conditions, Paged};
use super::{Doing, Result, Store, Tx, get, opt, q};
use crate::clock::Micros;
use serde_json::{Map, Value};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;
use std::sync::Arc;

/// Where a change was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Api,
    Ui,
    Cli,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Api => "api",
            Surface::Ui => "ui",
            Surface::Cli => "cli",
        }
    }
}

/// The person a store acts for: a user of the UI or API with the client's address, or the
/// account running the CLI on its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub who: String,
    pub surface: Surface,
    /// The client's address (UI, API) or the host name (CLI).
    pub from: String,
}

impl Actor {
    pub fn new(who: impl Into<String>, surface: Surface, from: impl Into<String>) -> Actor {
        Actor { who: who.into(), surface, from: from.into() }
    }

    /// Whoever runs this CLI: the login name (`$USER`, `$LOGNAME`, else the user id) on
    /// this host.
    pub fn cli() -> Actor {
        let who = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| format!("uid {}", rustix::process::getuid().as_raw()));
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        Actor::new(who, Surface::Cli, host)
    }
}

/// One change, as it is recorded. Built with the setters; `detail` never holds a secret
/// (a connection's password, a variable's value): name the thing, not its content.
#[derive(Debug, Clone, Default)]
pub struct Change {
    event: &'static str,
    pipeline: Option<String>,
    run_id: Option<String>,
    /// The run's row id, when the run id is not at hand: read in the same statement.
    run_pk: Option<i64>,
    task: Option<String>,
    map_index: Option<i64>,
    try_number: Option<i64>,
    detail: Map<String, Value>,
}

impl Change {
    pub fn new(event: &'static str) -> Change {
        Change { event, ..Change::default() }
    }

    pub fn pipeline(mut self, id: &str) -> Change {
        self.pipeline = Some(id.to_string());
        self
    }

    pub fn run_id(mut self, id: &str) -> Change {
        self.run_id = Some(id.to_string());
        self
    }

    pub fn run(mut self, run_pk: i64) -> Change {
        self.run_pk = Some(run_pk);
        self
    }

    pub fn task(mut self, id: &str) -> Change {
        self.task = Some(id.to_string());
        self
    }

    pub fn try_number(mut self, n: i64) -> Change {
        self.try_number = Some(n);
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Change {
        self.detail.insert(key.to_string(), value.into());
        self
    }
}

/// A recorded change.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub id: i64,
    pub at: Micros,
    pub event: String,
    pub owner: String,
    pub surface: String,
    pub origin: String,
    pub pipeline_id: Option<String>,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub map_index: Option<i64>,
    pub try_number: Option<i64>,
    /// The details as a JSON object, `surface` and `origin` among them.
    pub extra: String,
}

/// Which records a list asks for; a `None` does not filter.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub pipeline: Option<String>,
    pub run_id: Option<String>,
    pub task: Option<String>,
    pub map_index: Option<i64>,
    pub try_number: Option<i64>,
    pub event: Option<String>,
    pub owner: Option<String>,
    pub included_events: Option<Vec<String>>,
    pub excluded_events: Option<Vec<String>>,
    pub at: (Option<Micros>, Option<Micros>),
}

/// How a list is ordered: a column, newest first unless ascending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOrder {
    Id,
    At,
    Event,
    Owner,
    Pipeline,
}

impl AuditOrder {
    fn column(self) -> &'static str {
        match self {
            AuditOrder::Id => "id",
            AuditOrder::At => "at",
            AuditOrder::Event => "event",
            AuditOrder::Owner => "owner",
            AuditOrder::Pipeline => "pipeline_id",
        }
    }
}

const AUDIT_COLUMNS: &str =
    "id, at, event, owner, surface, origin, pipeline_id, run_id, task_id, map_index, try_number, extra";

fn audit_row(row: &AnyRow) -> Result<AuditRow> {
    Ok(AuditRow {
        id: get(row, "id")?,
        at: get(row, "at")?,
        event: get(row, "event")?,
        owner: get(row, "owner")?,
        surface: get(row, "surface")?,
        origin: get(row, "origin")?,
        pipeline_id: opt(row, "pipeline_id"),
        run_id: opt(row, "run_id"),
        task_id: opt(row, "task_id"),
        map_index: opt(row, "map_index"),
        try_number: opt(row, "try_number"),
        extra: opt::<String>(row, "extra").unwrap_or_else(|| "{}".into()),
    })
}

impl Conditions {
    fn audit(&mut self, filter: &AuditFilter) {
        self.equals("pipeline_id", filter.pipeline.clone().map(Bound::Text));
        self.equals("run_id", filter.run_id.clone().map(Bound::Text));
        self.equals("task_id", filter.task.clone().map(Bound::Text));
        self.equals("map_index", filter.map_index.map(Bound::Number));
        self.equals("try_number", filter.try_number.map(Bound::Number));
        self.equals("event", filter.event.clone().map(Bound::Text));
        self.equals("owner", filter.owner.clone().map(Bound::Text));
        self.one_of("event", filter.included_events.as_ref());
        self.none_of("event", filter.excluded_events.as_ref());
        self.between("at", filter.at);
    }
}

impl Store {
    /// This store, recording every change it makes as `actor`'s.
    pub fn acting_as(&self, actor: Actor) -> Store {
        Store { actor: Some(Arc::new(actor)), ..self.clone() }
    }

    /// The person this store acts for, if any.
    pub fn actor(&self) -> Option<&Actor> {
        self.actor.as_deref()
    }

    /// Records `change` in `tx` when this store acts for a person.
    pub(crate) async fn audit(&self, tx: &mut Tx, change: Change) -> Result<()> {
        let Some(actor) = &self.actor else { return Ok(()) };
        let mut extra = change.detail;
        extra.insert("surface".into(), actor.surface.as_str().into());
        extra.insert("from".into(), actor.from.clone().into());
        q("INSERT INTO audit_log (at, event, owner, surface, origin, pipeline_id, run_id, task_id, map_index, \
           try_number, extra) \
           SELECT $1, $2, $3, $4, $5, COALESCE($6, r.pipeline_id), COALESCE($7, r.run_id), $8, $9, $10, $11 \
           FROM (SELECT 1 AS one) AS one LEFT JOIN runs r ON r.id = $12")
        .bind(self.now())
        .bind(change.event)
        .bind(actor.who.clone())
        .bind(actor.surface.as_str())
        .bind(actor.from.clone())
        .bind(change.pipeline)
        .bind(change.run_id)
        .bind(change.task)
        .bind(change.map_index)
        .bind(change.try_number)
        .bind(Value::Object(extra).to_string())
        .bind(change.run_pk)
        .execute(&mut **tx)
        .await
        .doing("recording a change in the audit log")?;
        Ok(())
    }

    /// Records `change` alone, for a change made outside the store (a sign-in).
    pub async fn record(&self, change: Change) -> Result<()> {
        let mut tx = self.begin().await?;
        self.audit(&mut tx, change).await?;
        tx.commit().await.doing("recording a change in the audit log")
    }

    /// One page of the records `filter` selects, ordered by `order` (descending unless
    /// `ascending`), and how many it selects in all.
    pub async fn audit_log(
        &self,
        filter: &AuditFilter,
        (order, ascending): (AuditOrder, bool),
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<AuditRow>, i64)> {
        let mut tx = self.begin().await?;
        let mut conditions = Conditions::new(super::Dialect::of(&tx));
        conditions.audit(filter);
        let direction = if ascending { "ASC" } else { "DESC" };
        let order_by = format!("{} {direction}, id {direction}", order.column());
        let doing = "reading the audit log";
        let paged = Paged { columns: AUDIT_COLUMNS, table: "audit_log", order_by: &order_by, limit, offset, doing };
        let (rows, total) = conditions.page(&mut tx, paged).await?;
        tx.commit().await.doing("reading the audit log")?;
        Ok((rows.iter().map(audit_row).collect::<Result<_>>()?, total))
    }

    /// Record `id`.
    pub async fn audit_entry(&self, id: i64) -> Result<AuditRow> {
        let mut tx = self.begin().await?;
        let row = q(AssertSqlSafe(format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id = $1")))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .doing("reading the audit log")?;
        tx.commit().await.doing("reading the audit log")?;
        match row {
            Some(row) => audit_row(&row),
            None => Err(super::StoreError::NotFound(format!("event log {id}"))),
        }
    }
}
