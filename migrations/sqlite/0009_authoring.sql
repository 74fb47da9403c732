-- no-transaction
-- Sensors, mapped tasks and datasets (see the PostgreSQL migration of the same number).
-- SQLite cannot change a table's CHECK or UNIQUE constraints, so `runs` and `task_instances`
-- are rebuilt, as SQLite's documentation describes: foreign keys off while the table is swapped (the rows that
-- reference it stay as they are), checked before the commit.
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE runs_new (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline_id          TEXT NOT NULL REFERENCES pipelines (pipeline_id),
    run_id               TEXT NOT NULL,
    run_type             TEXT NOT NULL CHECK (run_type IN ('scheduled', 'manual', 'backfill', 'dataset_triggered')),
    state                TEXT NOT NULL CHECK (state IN ('queued', 'running', 'success', 'failed')),
    logical_date         BIGINT NOT NULL,
    data_interval_start  BIGINT NOT NULL,
    data_interval_end    BIGINT NOT NULL,
    conf                 TEXT NOT NULL DEFAULT '{}',
    version_hash         TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    start_date           BIGINT,
    end_date             BIGINT,
    note                 TEXT,
    UNIQUE (pipeline_id, run_id),
    UNIQUE (pipeline_id, logical_date)
);
INSERT INTO runs_new (id, pipeline_id, run_id, run_type, state, logical_date, data_interval_start,
    data_interval_end, conf, version_hash, created_at, start_date, end_date, note)
SELECT id, pipeline_id, run_id, run_type, state, logical_date, data_interval_start, data_interval_end, conf,
    version_hash, created_at, start_date, end_date, note
FROM runs;
DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;
CREATE INDEX runs_active ON runs (pipeline_id, state) WHERE state IN ('queued', 'running');
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
-- Datasets (Airflow's data-aware scheduling). `datasets` holds those pipelines.yaml declares
-- (and keeps those it no longer does, with their events); each event is one update of a
-- dataset, by a task that produces it or from outside (the REST API). A pipeline scheduled
-- on datasets runs when each has had an event since its last run: `dataset_cursors` holds,
-- per pipeline and dataset, the last event that run saw (the latest when the pipeline was
-- first synced, so older events never start it).
CREATE TABLE datasets (
    -- The REST API's integer id; `id` is the one pipelines.yaml gives.
    api_id           INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    uri              TEXT NOT NULL UNIQUE,
    description      TEXT NOT NULL DEFAULT '',
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE TABLE dataset_events (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset_id       TEXT NOT NULL REFERENCES datasets (id),
    source_pipeline  TEXT,
    source_run_id    TEXT,
    source_task      TEXT,
    source_map_index BIGINT NOT NULL DEFAULT -1,
    extra            TEXT NOT NULL DEFAULT '{}',
    created_at       BIGINT NOT NULL
);
CREATE INDEX dataset_events_by_dataset ON dataset_events (dataset_id, id);
CREATE TABLE dataset_cursors (
    pipeline_id      TEXT NOT NULL,
    dataset_id       TEXT NOT NULL REFERENCES datasets (id),
    last_event_id    BIGINT NOT NULL,
    PRIMARY KEY (pipeline_id, dataset_id)
);
PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys = ON;
