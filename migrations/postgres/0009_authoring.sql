-- Sensors, mapped tasks and datasets.
-- A sensor in `reschedule` mode waits between pokes as `up_for_reschedule`, holding no slot;
-- `poke_started_at` is when the current wait began (its `timeout` counts from there across
-- the pokes, each one a try of its own), cleared when the wait ends.
-- A mapped task has one task instance per element of its input, told apart by `map_index`
-- (Airflow's: -1 for a task that is not mapped).
ALTER TABLE task_instances DROP CONSTRAINT task_instances_state_check;
ALTER TABLE task_instances ADD CONSTRAINT task_instances_state_check CHECK (state IN ('none', 'scheduled',
    'queued', 'running', 'success', 'failed', 'up_for_retry', 'up_for_reschedule', 'upstream_failed', 'skipped',
    'removed'));
ALTER TABLE task_instances ADD COLUMN poke_started_at BIGINT;
ALTER TABLE task_instances ADD COLUMN map_index BIGINT NOT NULL DEFAULT -1;
ALTER TABLE task_instances DROP CONSTRAINT task_instances_run_pk_task_id_key;
ALTER TABLE task_instances ADD CONSTRAINT task_instances_run_pk_task_id_map_index_key UNIQUE (run_pk, task_id, map_index);
DROP INDEX task_instances_retry;
CREATE INDEX task_instances_retry ON task_instances (next_try_at) WHERE state IN ('up_for_retry', 'up_for_reschedule');
DROP INDEX task_instances_unfinished;
CREATE INDEX task_instances_unfinished ON task_instances (run_pk, task_id)
    WHERE state IN ('none', 'scheduled', 'queued', 'running', 'up_for_retry', 'up_for_reschedule');
-- A run a dataset update started has Airflow's run type `dataset_triggered`.
ALTER TABLE runs DROP CONSTRAINT runs_run_type_check;
ALTER TABLE runs ADD CONSTRAINT runs_run_type_check CHECK (run_type IN ('scheduled', 'manual', 'backfill',
    'dataset_triggered'));

-- Datasets (Airflow's data-aware scheduling). `datasets` holds those pipelines.yaml declares
-- (and keeps those it no longer does, with their events); each event is one update of a
-- dataset, by a task that produces it or from outside (the REST API). A pipeline scheduled
-- on datasets runs when each has had an event since its last run: `dataset_cursors` holds,
-- per pipeline and dataset, the last event that run saw (the latest when the pipeline was
-- first synced, so older events never start it).
CREATE TABLE datasets (
    -- The REST API's integer id; `id` is the one pipelines.yaml gives.
    api_id           BIGSERIAL PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    uri              TEXT NOT NULL UNIQUE,
    description      TEXT NOT NULL DEFAULT '',
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE TABLE dataset_events (
    id               BIGSERIAL PRIMARY KEY,
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
