//! What every store module uses to talk SQL: statements (prepared and kept, see the store's
//! docs), typed column reads, error tagging, and the [`Dialect`] for the few places
//! PostgreSQL and SQLite are spelled differently.

use super::{Result, StoreError};
use crate::clock::Micros;
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, SqlSafeStr};

/// The SQL dialect of a store's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// The dialect a transaction speaks.
    pub(crate) fn of(tx: &Tx) -> Dialect {
        // sqlx's Any driver names its backend; this is the one place the name is read.
        if tx.backend_name() == "PostgreSQL" { Dialect::Postgres } else { Dialect::Sqlite }
    }

    /// Membership in a JSON array bound as parameter `$n`: a list of any length is one
    /// parameter (binding thousands of numbered parameters is quadratic in SQLite). On
    /// PostgreSQL the array is built once and matched with `= ANY`, which plans as a plain
    /// index lookup.
    pub(crate) fn in_json(self, n: usize, of_ids: bool) -> String {
        match (self, of_ids) {
            (Dialect::Postgres, true) => format!("= ANY(ARRAY(SELECT json_array_elements_text(${n}::json)::BIGINT))"),
            (Dialect::Postgres, false) => format!("= ANY(ARRAY(SELECT json_array_elements_text(${n}::json)))"),
            (Dialect::Sqlite, _) => format!("IN (SELECT value FROM json_each(${n}))"),
        }
    }

    /// `(id, try_number)` (columns `id` and `try`) among a JSON array of `[id, try]` pairs
    /// bound as parameter `$n`.
    pub(crate) fn in_json_tries(self, id: &str, try_number: &str, n: usize) -> String {
        match self {
            Dialect::Postgres => format!(
                "{id} = ANY(ARRAY(SELECT (e->>0)::BIGINT FROM json_array_elements(${n}::json) AS e)) \
                 AND ({id}, {try_number}) IN (SELECT (e->>0)::BIGINT, (e->>1)::BIGINT FROM json_array_elements(${n}::json) AS e)"
            ),
            Dialect::Sqlite => format!(
                "({id}, {try_number}) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(${n}))"
            ),
        }
    }

    /// A text column's length in bytes.
    pub(crate) fn byte_length(self, column: &str) -> String {
        match self {
            Dialect::Postgres => format!("octet_length({column})"),
            Dialect::Sqlite => format!("length(CAST({column} AS BLOB))"),
        }
    }
}

pub(crate) type Tx = sqlx::Transaction<'static, Any>;

/// A statement, prepared on first use on each connection and kept (see the store's docs).
pub(crate) fn q(sql: impl SqlSafeStr) -> sqlx::query::Query<'static, Any, sqlx::any::AnyArguments> {
    sqlx::query(sql)
}

/// A list bound as one JSON parameter (see [`Dialect::in_json`]).
pub(crate) fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// Tags a sqlx error with what the store was doing.
pub(crate) trait Doing<T> {
    fn doing(self, what: &'static str) -> Result<T>;
}

impl<T> Doing<T> for std::result::Result<T, sqlx::Error> {
    fn doing(self, what: &'static str) -> Result<T> {
        self.map_err(|source| StoreError::Query { doing: what, source })
    }
}

/// Reads a column that may be NULL.
pub(crate) fn opt<T>(row: &AnyRow, column: &str) -> Option<T>
where
    T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    use sqlx::Row;
    row.try_get::<Option<T>, _>(column).ok().flatten()
}

/// Reads a column that must be there; a missing or mistyped one is a store error.
pub(crate) fn get<T>(row: &AnyRow, column: &'static str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    use sqlx::Row;
    row.try_get::<T, _>(column).doing(column)
}

/// Values bound to a [`Conditions`]' parameters.
pub(crate) enum Bound {
    Text(String),
    Number(i64),
}

/// Conditions joined by AND, with their parameters in order.
pub(crate) struct Conditions {
    pub(crate) dialect: Dialect,
    pub(crate) clauses: Vec<String>,
    pub(crate) bound: Vec<Bound>,
}

impl Conditions {
    pub(crate) fn new(dialect: Dialect) -> Conditions {
        Conditions { dialect, clauses: Vec::new(), bound: Vec::new() }
    }

    pub(crate) fn next(&self) -> usize {
        self.bound.len() + 1
    }

    pub(crate) fn one_of(&mut self, column: &str, values: Option<&Vec<String>>) {
        if let Some(values) = values {
            self.clauses.push(format!("{column} {}", self.dialect.in_json(self.next(), false)));
            self.bound.push(Bound::Text(json_list(values)));
        }
    }

    /// `column = value`, when a value is given.
    pub(crate) fn equals(&mut self, column: &str, value: Option<Bound>) {
        if let Some(value) = value {
            self.clauses.push(format!("{column} = ${}", self.next()));
            self.bound.push(value);
        }
    }

    /// `column` is none of `values`, when a list is given.
    pub(crate) fn none_of(&mut self, column: &str, values: Option<&Vec<String>>) {
        if let Some(values) = values {
            self.clauses.push(format!("NOT ({column} {})", self.dialect.in_json(self.next(), false)));
            self.bound.push(Bound::Text(json_list(values)));
        }
    }

    pub(crate) fn between(&mut self, column: &str, (from, to): (Option<Micros>, Option<Micros>)) {
        for (bound, op) in [(from, ">="), (to, "<=")] {
            if let Some(at) = bound {
                self.clauses.push(format!("{column} {op} ${}", self.next()));
                self.bound.push(Bound::Number(at));
            }
        }
    }

    pub(crate) fn sql(&self) -> String {
        if self.clauses.is_empty() { String::new() } else { format!(" WHERE {}", self.clauses.join(" AND ")) }
    }

    pub(crate) fn bind<'q>(
        &self,
        mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        for value in &self.bound {
            query = match value {
                Bound::Text(text) => query.bind(text.clone()),
                Bound::Number(n) => query.bind(*n),
            };
        }
        query
    }
}

/// One page of what a filtered `SELECT` finds, and how many it finds in all.
pub(crate) struct Paged<'a> {
    pub(crate) columns: &'a str,
    pub(crate) table: &'a str,
    pub(crate) order_by: &'a str,
    pub(crate) limit: i64,
    pub(crate) offset: i64,
    pub(crate) doing: &'static str,
}

impl Conditions {
    /// The rows of `paged` these conditions select, and their count, in `tx`.
    pub(crate) async fn page(&self, tx: &mut Tx, paged: Paged<'_>) -> Result<(Vec<AnyRow>, i64)> {
        let page = self.next();
        let (columns, table, order_by) = (paged.columns, paged.table, paged.order_by);
        let sql = format!(
            "SELECT {columns} FROM {table}{} ORDER BY {order_by} LIMIT ${page} OFFSET ${}",
            self.sql(),
            page + 1
        );
        let rows = self
            .bind(q(AssertSqlSafe(sql)))
            .bind(paged.limit)
            .bind(paged.offset)
            .fetch_all(&mut **tx)
            .await
            .doing(paged.doing)?;
        let count = format!("SELECT COUNT(*) AS n FROM {table}{}", self.sql());
        let total = get(&self.bind(q(AssertSqlSafe(count))).fetch_one(&mut **tx).await.doing(paged.doing)?, "n")?;
        Ok((rows, total))
    }
}
