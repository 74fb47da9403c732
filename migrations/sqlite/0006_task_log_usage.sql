-- How much of each try's log is stored, kept beside the log so that the cap on one try's
-- log (SLUICE_TASK_LOG_MAX_LINES / SLUICE_TASK_LOG_MAX_BYTES) holds across the worker's
-- batches, and across a try handed back and run again, without counting the log's rows on
-- every write. `lines` and `bytes` count the task's own lines (not the line saying where the
-- log was cut); `dropped` counts the lines not kept; `cut_line` is the id of the task_logs
-- row saying where the log was cut, rewritten with the final count when the try ends.
CREATE TABLE task_log_usage (
    ti_id            BIGINT NOT NULL REFERENCES task_instances (id) ON DELETE CASCADE,
    try_number       BIGINT NOT NULL,
    lines            BIGINT NOT NULL DEFAULT 0,
    bytes            BIGINT NOT NULL DEFAULT 0,
    dropped          BIGINT NOT NULL DEFAULT 0,
    cut_line         BIGINT,
    PRIMARY KEY (ti_id, try_number)
);
