-- The audit trail (Airflow's event log): every change a person makes through the UI, the
-- REST API or the CLI, written in the transaction that makes it. `owner` is who, `surface`
-- and `origin` say from where (api/ui/cli; the client's address or the CLI's host), `extra`
-- holds the details as JSON, never a secret.
CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT NOT NULL,
    event       TEXT NOT NULL,
    owner       TEXT NOT NULL,
    surface     TEXT NOT NULL CHECK (surface IN ('api', 'ui', 'cli')),
    origin      TEXT NOT NULL,
    pipeline_id TEXT,
    run_id      TEXT,
    task_id     TEXT,
    map_index   BIGINT,
    try_number  BIGINT,
    extra       TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_pipeline ON audit_log (pipeline_id, at);
