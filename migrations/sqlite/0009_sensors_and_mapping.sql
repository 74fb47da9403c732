-- no-transaction
-- Sensors and mapped tasks (see the PostgreSQL migration of the same number). SQLite cannot
-- change a table's CHECK or UNIQUE constraints, so `task_instances` is rebuilt, as SQLite's
-- documentation describes: foreign keys off while the table is swapped (the rows that
-- reference it stay as they are), checked before the commit.
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE task_instances_new (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    run_pk           BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    pipeline_id      TEXT NOT NULL,
    task_id          TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('none', 'scheduled', 'queued', 'running', 'success',
                         'failed', 'up_for_retry', 'up_for_reschedule', 'upstream_failed', 'skipped', 'removed')),
    try_number       BIGINT NOT NULL DEFAULT 0,
    max_tries        BIGINT NOT NULL,
    priority_weight  BIGINT NOT NULL,
    pool             TEXT NOT NULL,
    pool_slots       BIGINT NOT NULL,
    queue            TEXT NOT NULL,
    queued_at        BIGINT,
    start_date       BIGINT,
    end_date         BIGINT,
    next_try_at      BIGINT,
    worker           TEXT,
    heartbeat_at     BIGINT,
    error            TEXT,
    sla_deadline     BIGINT,
    note             TEXT,
    poke_started_at  BIGINT,
    map_index        BIGINT NOT NULL DEFAULT -1,
    UNIQUE (run_pk, task_id, map_index)
);
INSERT INTO task_instances_new (id, run_pk, pipeline_id, task_id, state, try_number, max_tries, priority_weight,
    pool, pool_slots, queue, queued_at, start_date, end_date, next_try_at, worker, heartbeat_at, error,
    sla_deadline, note)
SELECT id, run_pk, pipeline_id, task_id, state, try_number, max_tries, priority_weight, pool, pool_slots, queue,
    queued_at, start_date, end_date, next_try_at, worker, heartbeat_at, error, sla_deadline, note
FROM task_instances;
DROP TABLE task_instances;
ALTER TABLE task_instances_new RENAME TO task_instances;
CREATE INDEX task_instances_live ON task_instances (state, pool) WHERE state IN ('queued', 'running');
CREATE INDEX task_instances_retry ON task_instances (next_try_at) WHERE state IN ('up_for_retry', 'up_for_reschedule');
CREATE INDEX task_instances_sla ON task_instances (sla_deadline) WHERE sla_deadline IS NOT NULL;
CREATE INDEX task_instances_scheduled ON task_instances (run_pk, priority_weight DESC, id) WHERE state = 'scheduled';
CREATE INDEX task_instances_unfinished ON task_instances (run_pk, task_id)
    WHERE state IN ('none', 'scheduled', 'queued', 'running', 'up_for_retry', 'up_for_reschedule');
PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys = ON;
