-- Sensors and mapped tasks.
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
