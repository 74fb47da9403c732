//! What a try leaves besides its state: its log (capped, paged), its rendered templates and
//! its outputs.

use super::*;

impl Store {
    /// What try `try_number` rendered; empty when nothing was recorded.
    pub async fn rendered(&self, ti_id: i64, try_number: i64) -> Result<BTreeMap<String, String>> {
        let mut tx = self.begin().await?;
        let row = q("SELECT rendered FROM task_tries WHERE ti_id = $1 AND try_number = $2")
            .bind(ti_id)
            .bind(try_number)
            .fetch_optional(&mut *tx)
            .await
            .doing("reading rendered templates")?;
        tx.commit().await.doing("reading rendered templates")?;
        let text: Option<String> = row.and_then(|r| opt(&r, "rendered"));
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default())
    }

    /// The outputs a task instance's successful try recorded.
    pub async fn outputs(&self, ti_id: i64) -> Result<Option<serde_json::Value>> {
        Ok(self.recorded_outputs(ti_id).await?.map(|(outputs, _)| outputs))
    }

    /// The outputs a task instance's successful try recorded, and when.
    pub async fn recorded_outputs(&self, ti_id: i64) -> Result<Option<(serde_json::Value, Micros)>> {
        let mut tx = self.begin().await?;
        let row = q("SELECT outputs, created_at FROM task_outputs WHERE ti_id = $1")
            .bind(ti_id)
            .fetch_optional(&mut *tx)
            .await
            .doing("reading task outputs")?;
        tx.commit().await.doing("reading task outputs")?;
        let Some(row) = row else { return Ok(None) };
        let text: String = get(&row, "outputs")?;
        Ok(serde_json::from_str(&text).ok().map(|outputs| (outputs, opt(&row, "created_at").unwrap_or_default())))
    }

    /// Every recorded try of a task instance, oldest first, each as the instance looked
    /// when that try ended (or as it is, for the try under way).
    pub async fn tries(&self, ti: &TiRow) -> Result<Vec<TiRow>> {
        let mut tx = self.begin().await?;
        let rows = q("SELECT try_number, state, start_date, end_date, worker, error FROM task_tries \
                      WHERE ti_id = $1 ORDER BY try_number")
        .bind(ti.id)
        .fetch_all(&mut *tx)
        .await
        .doing("listing tries")?;
        tx.commit().await.doing("listing tries")?;
        rows.iter()
            .map(|row| {
                let state: String = get(row, "state")?;
                Ok(TiRow {
                    try_number: get(row, "try_number")?,
                    state: TiState::parse(&state)
                        .ok_or_else(|| StoreError::Conflict(format!("unknown task state `{state}`")))?,
                    start_date: opt(row, "start_date"),
                    end_date: opt(row, "end_date"),
                    worker: opt(row, "worker"),
                    error: opt(row, "error"),
                    ..ti.clone()
                })
            })
            .collect()
    }

    /// Appends lines to a try's log, outside its cap: the runtime's own last word on a try
    /// (its error, a zombie's fate). A task's own lines go through
    /// [`Store::append_task_log`].
    pub async fn append_logs(&self, ti_id: i64, try_number: i64, lines: &[(String, String)]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let mut tx = self.begin().await?;
        insert_log_lines(&mut tx, ti_id, try_number, now, lines).await?;
        tx.commit().await.doing("writing a task log")
    }

    /// A try's log lines, in order: all of them at once (at most the try's cap, see
    /// [`Store::append_task_log`]); readers that show a log use [`Store::log_page`].
    pub async fn logs(&self, ti_id: i64, try_number: i64) -> Result<Vec<String>> {
        let mut tx = self.begin().await?;
        let rows = q("SELECT line FROM task_logs WHERE ti_id = $1 AND try_number = $2 ORDER BY id")
            .bind(ti_id)
            .bind(try_number)
            .fetch_all(&mut *tx)
            .await
            .doing("reading a task log")?;
        tx.commit().await.doing("reading a task log")?;
        rows.iter().map(|r| get(r, "line")).collect()
    }

    /// Appends the lines a try wrote to its log, within `limits`: what fits is stored, the
    /// rest is counted as dropped, and where the log is first cut one line says so
    /// ([`LogLimits::cut_notice`]). Once a try's log is cut nothing more of its own is
    /// kept, so the stored log is always a prefix of what the task wrote. The counts live
    /// in `task_log_usage`, so the cap holds across batches, writers and hand-backs.
    ///
    /// On the usual path (the lines fit) this costs two statements: the counts are added
    /// optimistically and read back in one upsert, then the lines go in with one insert per
    /// [`LOG_INSERT_ROWS`]. Only the batch that crosses the cap pays for the correction.
    pub async fn append_task_log(
        &self,
        ti_id: i64,
        try_number: i64,
        lines: &[(String, String)],
        limits: LogLimits,
    ) -> Result<LogAppend> {
        if lines.is_empty() {
            return Ok(LogAppend::default());
        }
        let now = self.now();
        let mut tx = self.begin().await?;
        let appended = append_task_log(&mut tx, ti_id, try_number, lines, limits, now).await?;
        tx.commit().await.doing("writing a task log")?;
        Ok(appended)
    }

    /// Ends a try's log: adds `more_dropped` (lines its writer did not even send, once the
    /// log was cut) to the count, and rewrites the line where the log was cut with the
    /// final count. Nothing to do for a log that was never cut.
    pub async fn end_task_log(&self, ti_id: i64, try_number: i64, more_dropped: u64, limits: LogLimits) -> Result<()> {
        let mut tx = self.begin().await?;
        end_task_log(&mut tx, ti_id, try_number, more_dropped, limits).await?;
        tx.commit().await.doing("ending a task log")
    }

    /// One page of a try's log, oldest line first: at most `size.lines` lines and
    /// `size.bytes` bytes of text (but at least one line), read after or before a line id.
    /// The database does the sizing, so a page of long lines is never read whole into
    /// memory first.
    pub async fn log_page(&self, ti_id: i64, try_number: i64, from: LogFrom, size: PageSize) -> Result<Vec<LogRow>> {
        let length = self.backend.byte_length("line");
        let (condition, order, position) = match from {
            LogFrom::After(id) => ("id > $3", "", id),
            LogFrom::Before(id) => ("id < $3", " DESC", id),
        };
        // The newest page is read backwards; the running sum over the (limited) rows finds
        // where the byte bound falls.
        let sql = format!(
            "SELECT id, stream, line FROM ( \
               SELECT id, stream, line, size, SUM(size) OVER (ORDER BY id{order}) AS upto FROM ( \
                 SELECT id, stream, line, {length} AS size FROM task_logs \
                 WHERE ti_id = $1 AND try_number = $2 AND {condition} ORDER BY id{order} LIMIT $4 \
               ) rows_in_page \
             ) sized WHERE upto - size < $5 ORDER BY id"
        );
        let mut tx = self.begin().await?;
        let rows = q(AssertSqlSafe(sql))
            .bind(ti_id)
            .bind(try_number)
            .bind(position)
            .bind(size.lines.max(1))
            .bind(size.bytes.max(1))
            .fetch_all(&mut *tx)
            .await
            .doing("reading a task log")?;
        tx.commit().await.doing("reading a task log")?;
        rows.iter()
            .map(|r| Ok(LogRow { id: get(r, "id")?, stream: get(r, "stream")?, line: get(r, "line")? }))
            .collect()
    }

    /// The ids of the first and the last stored line of a try's log; `None` when it is
    /// empty. Pages use them to tell whether there is more before or after them.
    pub async fn log_ends(&self, ti_id: i64, try_number: i64) -> Result<Option<(i64, i64)>> {
        let mut tx = self.begin().await?;
        let row = q("SELECT \
                       (SELECT id FROM task_logs WHERE ti_id = $1 AND try_number = $2 ORDER BY id LIMIT 1) AS first, \
                       (SELECT id FROM task_logs WHERE ti_id = $1 AND try_number = $2 ORDER BY id DESC LIMIT 1) AS last")
            .bind(ti_id)
            .bind(try_number)
            .fetch_one(&mut *tx)
            .await
            .doing("reading a task log")?;
        tx.commit().await.doing("reading a task log")?;
        Ok(opt::<i64>(&row, "first").zip(opt::<i64>(&row, "last")))
    }
}

/// What [`Store::append_task_log`] did with a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogAppend {
    /// How many lines of the batch were stored (the first ones).
    pub kept: usize,
    /// The try's log is cut: nothing more it writes will be kept.
    pub cut: bool,
}

/// Where a page of a log starts (see [`Store::log_page`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFrom {
    /// The lines after this id (0: from the start).
    After(i64),
    /// The lines before this id (`i64::MAX`: the newest).
    Before(i64),
}

/// One stored line of a try's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// Increases with every line: pages continue from it.
    pub id: i64,
    /// `stdout`, `stderr`, `info`, `error` or `system`.
    pub stream: String,
    pub line: String,
}

/// Rows per `INSERT` of log lines: five parameters a row stays far below the parameter
/// limits of both backends (SQLite's 32,766, PostgreSQL's 65,535).
pub(super) const LOG_INSERT_ROWS: usize = 500;

/// [`Store::append_task_log`] inside a transaction of the caller's.
pub(super) async fn append_task_log(
    tx: &mut Tx,
    ti_id: i64,
    try_number: i64,
    lines: &[(String, String)],
    limits: LogLimits,
    now: Micros,
) -> Result<LogAppend> {
    if lines.is_empty() {
        return Ok(LogAppend::default());
    }
    let doing = "writing a task log";
    let sizes: Vec<u64> = lines.iter().map(|(_, line)| line.len() as u64).collect();
    let (count, bytes) = (sizes.len() as i64, sizes.iter().sum::<u64>() as i64);
    // The upsert also locks the try's counts (PostgreSQL) until the commit: two writers
    // of one try take turns, and neither can slip past the cap.
    let row = q("INSERT INTO task_log_usage (ti_id, try_number, lines, bytes, dropped) VALUES ($1, $2, $3, $4, 0) \
                 ON CONFLICT (ti_id, try_number) DO UPDATE \
                 SET lines = task_log_usage.lines + excluded.lines, bytes = task_log_usage.bytes + excluded.bytes \
                 RETURNING lines, bytes, cut_line")
    .bind(ti_id)
    .bind(try_number)
    .bind(count)
    .bind(bytes)
    .fetch_one(&mut **tx)
    .await
    .doing(doing)?;
    let (total_lines, total_bytes): (i64, i64) = (get(&row, "lines")?, get(&row, "bytes")?);
    let cut_line: Option<i64> = opt(&row, "cut_line");
    let used = LogUsage {
        lines: u64::try_from(total_lines - count).unwrap_or(0),
        bytes: u64::try_from(total_bytes - bytes).unwrap_or(0),
    };
    let kept = if cut_line.is_some() { 0 } else { limits.admit(used, sizes.iter().copied()) };
    insert_log_lines(tx, ti_id, try_number, now, &lines[..kept]).await?;
    if kept == lines.len() {
        return Ok(LogAppend { kept, cut: false });
    }
    let cut_line = match cut_line {
        Some(id) => id,
        None => {
            let row = q("INSERT INTO task_logs (ti_id, try_number, at, stream, line) VALUES ($1, $2, $3, 'info', $4) \
                         RETURNING id")
            .bind(ti_id)
            .bind(try_number)
            .bind(now)
            .bind(limits.cut_notice(None))
            .fetch_one(&mut **tx)
            .await
            .doing(doing)?;
            get(&row, "id")?
        }
    };
    let kept_bytes: u64 = sizes[..kept].iter().sum();
    q("UPDATE task_log_usage SET lines = $3, bytes = $4, dropped = dropped + $5, cut_line = $6 \
       WHERE ti_id = $1 AND try_number = $2")
    .bind(ti_id)
    .bind(try_number)
    .bind(i64::try_from(used.lines + kept as u64).unwrap_or(i64::MAX))
    .bind(i64::try_from(used.bytes + kept_bytes).unwrap_or(i64::MAX))
    .bind((lines.len() - kept) as i64)
    .bind(cut_line)
    .execute(&mut **tx)
    .await
    .doing(doing)?;
    Ok(LogAppend { kept, cut: true })
}

/// [`Store::end_task_log`] inside a transaction of the caller's.
pub(super) async fn end_task_log(
    tx: &mut Tx,
    ti_id: i64,
    try_number: i64,
    more_dropped: u64,
    limits: LogLimits,
) -> Result<()> {
    let doing = "ending a task log";
    let row = q("UPDATE task_log_usage SET dropped = dropped + $3 WHERE ti_id = $1 AND try_number = $2 \
                 RETURNING dropped, cut_line")
    .bind(ti_id)
    .bind(try_number)
    .bind(i64::try_from(more_dropped).unwrap_or(i64::MAX))
    .fetch_optional(&mut **tx)
    .await
    .doing(doing)?;
    if let Some(row) = row
        && let Some(cut_line) = opt::<i64>(&row, "cut_line")
    {
        let dropped = u64::try_from(get::<i64>(&row, "dropped")?).unwrap_or(0);
        q("UPDATE task_logs SET line = $2 WHERE id = $1")
            .bind(cut_line)
            .bind(limits.cut_notice(Some(dropped)))
            .execute(&mut **tx)
            .await
            .doing(doing)?;
    }
    Ok(())
}

/// Inserts `lines` in order, [`LOG_INSERT_ROWS`] per statement (a statement per line made a
/// chatty command cost one round trip per line).
pub(super) async fn insert_log_lines(
    tx: &mut Tx,
    ti_id: i64,
    try_number: i64,
    at: Micros,
    lines: &[(String, String)],
) -> Result<()> {
    for chunk in lines.chunks(LOG_INSERT_ROWS) {
        let values: Vec<String> =
            (0..chunk.len()).map(|i| format!("($1, $2, $3, ${}, ${})", 4 + 2 * i, 5 + 2 * i)).collect();
        let sql = format!("INSERT INTO task_logs (ti_id, try_number, at, stream, line) VALUES {}", values.join(", "));
        let mut insert = q(AssertSqlSafe(sql)).bind(ti_id).bind(try_number).bind(at);
        for (stream, line) in chunk {
            insert = insert.bind(stream.clone()).bind(line.clone());
        }
        insert.execute(&mut **tx).await.doing("writing a task log")?;
    }
    Ok(())
}
