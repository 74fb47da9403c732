-- Alerts and SLAs. A task instance of a scheduled run carries its SLA deadline until the
-- scheduler has judged it (then NULL): met, or recorded in sla_misses once.
-- Notifications are an outbox: written in the transaction that records the event, then
-- delivered (and retried) by whichever process is free, so none is lost to a crash.

ALTER TABLE task_instances ADD COLUMN sla_deadline BIGINT;
CREATE INDEX task_instances_sla ON task_instances (sla_deadline) WHERE sla_deadline IS NOT NULL;

CREATE TABLE sla_misses (
    ti_id            BIGINT PRIMARY KEY REFERENCES task_instances (id) ON DELETE CASCADE,
    pipeline_id      TEXT NOT NULL,
    run_id           TEXT NOT NULL,
    task_id          TEXT NOT NULL,
    deadline         BIGINT NOT NULL,
    detected_at      BIGINT NOT NULL
);
CREATE INDEX sla_misses_by_pipeline ON sla_misses (pipeline_id, detected_at);

CREATE TABLE notifications (
    id               BIGSERIAL PRIMARY KEY,
    event            TEXT NOT NULL CHECK (event IN ('failure', 'retry', 'success', 'sla_miss')),
    target           TEXT NOT NULL,
    pipeline_id      TEXT NOT NULL,
    run_id           TEXT NOT NULL,
    task_id          TEXT,
    payload          TEXT NOT NULL,
    recipients       TEXT NOT NULL DEFAULT '[]',
    state            TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    sent_at          BIGINT
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE state = 'pending';
