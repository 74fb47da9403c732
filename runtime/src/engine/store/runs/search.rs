//! Runs and task instances across pipelines, by the REST API's list filters. Each filter
//! given adds one condition; every value is bound as a parameter, never spelled into the
//! statement.

use super::*;
use crate::store::sql::{Conditions, Paged, json_list};

/// Which runs a list asks for; a `None` does not filter. Ranges are inclusive.
#[derive(Debug, Default, Clone)]
pub struct RunFilter {
    pub pipelines: Option<Vec<String>>,
    pub run_ids: Option<Vec<String>>,
    pub states: Option<Vec<String>>,
    pub logical_date: (Option<Micros>, Option<Micros>),
    pub start_date: (Option<Micros>, Option<Micros>),
    pub end_date: (Option<Micros>, Option<Micros>),
}

/// Which task instances a list asks for, within the runs `runs` selects.
#[derive(Debug, Default, Clone)]
pub struct TiFilter {
    pub runs: RunFilter,
    pub task_ids: Option<Vec<String>>,
    pub states: Option<Vec<String>>,
    pub pools: Option<Vec<String>>,
    pub queues: Option<Vec<String>>,
    pub start_date: (Option<Micros>, Option<Micros>),
    pub end_date: (Option<Micros>, Option<Micros>),
    /// Seconds from start to end.
    pub duration: (Option<f64>, Option<f64>),
}

impl Conditions {
    /// The conditions of a run filter.
    fn runs(&mut self, filter: &RunFilter) {
        self.one_of("pipeline_id", filter.pipelines.as_ref());
        self.one_of("run_id", filter.run_ids.as_ref());
        self.one_of("state", filter.states.as_ref());
        self.between("logical_date", filter.logical_date);
        self.between("start_date", filter.start_date);
        self.between("end_date", filter.end_date);
    }
}

impl Store {
    /// One page of the runs `filter` selects, newest logical date first, and how many it
    /// selects in all.
    pub async fn search_runs(&self, filter: &RunFilter, limit: i64, offset: i64) -> Result<(Vec<RunRow>, i64)> {
        let mut tx = self.begin().await?;
        let mut conditions = Conditions::new(Dialect::of(&tx));
        conditions.runs(filter);
        let order_by = "logical_date DESC, id DESC";
        let paged = Paged { columns: RUN_COLUMNS, table: "runs", order_by, limit, offset, doing: "searching runs" };
        let (rows, total) = conditions.page(&mut tx, paged).await?;
        tx.commit().await.doing("searching runs")?;
        Ok((rows.iter().map(run_row).collect::<Result<_>>()?, total))
    }

    /// One page of the task instances `filter` selects, each with its run, by run (newest
    /// logical date first) and then as created, and how many it selects in all.
    pub async fn search_task_instances(
        &self,
        filter: &TiFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<(RunRow, TiRow)>, i64)> {
        let mut tx = self.begin().await?;
        let dialect = Dialect::of(&tx);
        let mut runs = Conditions::new(dialect);
        runs.runs(&filter.runs);
        // The task instances' own conditions follow the runs' parameters.
        let mut tis = Conditions { dialect, clauses: Vec::new(), bound: runs.bound };
        tis.clauses.push(format!("run_pk IN (SELECT id FROM runs{})", {
            let inner = Conditions { dialect, clauses: runs.clauses, bound: Vec::new() };
            inner.sql()
        }));
        tis.one_of("task_id", filter.task_ids.as_ref());
        tis.one_of("state", filter.states.as_ref());
        tis.one_of("pool", filter.pools.as_ref());
        tis.one_of("queue", filter.queues.as_ref());
        tis.between("start_date", filter.start_date);
        tis.between("end_date", filter.end_date);
        let micros = |secs: Option<f64>| secs.map(|s| (s * 1e6) as Micros);
        tis.between("(end_date - start_date)", (micros(filter.duration.0), micros(filter.duration.1)));
        let page = tis.next();
        let order = "ORDER BY (SELECT logical_date FROM runs r WHERE r.id = run_pk) DESC, run_pk DESC, id";
        let sql =
            format!("SELECT {TI_COLUMNS} FROM task_instances{} {order} LIMIT ${page} OFFSET ${}", tis.sql(), page + 1);
        let rows = tis
            .bind(q(AssertSqlSafe(sql)))
            .bind(limit)
            .bind(offset)
            .fetch_all(&mut *tx)
            .await
            .doing("searching task instances")?;
        let count = format!("SELECT COUNT(*) AS n FROM task_instances{}", tis.sql());
        let total: i64 =
            get(&tis.bind(q(AssertSqlSafe(count))).fetch_one(&mut *tx).await.doing("counting task instances")?, "n")?;
        let instances: Vec<TiRow> = rows.iter().map(ti_row).collect::<Result<_>>()?;
        let mut run_pks: Vec<i64> = instances.iter().map(|ti| ti.run_pk).collect();
        run_pks.sort_unstable();
        run_pks.dedup();
        let run_rows =
            q(AssertSqlSafe(format!("SELECT {RUN_COLUMNS} FROM runs WHERE id {}", dialect.in_json(1, true))))
                .bind(json_list(&run_pks))
                .fetch_all(&mut *tx)
                .await
                .doing("reading the runs of task instances")?;
        tx.commit().await.doing("searching task instances")?;
        let runs: Vec<RunRow> = run_rows.iter().map(run_row).collect::<Result<_>>()?;
        let paired = instances
            .into_iter()
            .filter_map(|ti| runs.iter().find(|r| r.id == ti.run_pk).map(|run| (run.clone(), ti)))
            .collect();
        Ok((paired, total))
    }
}
