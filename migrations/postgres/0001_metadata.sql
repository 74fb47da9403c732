-- Sluice metadata store, PostgreSQL. Times are microseconds since the Unix epoch (UTC),
-- JSON is text, states are text with CHECKs (no custom types: they need named
-- statements, which PgBouncer in transaction mode cannot carry).

CREATE TABLE pipelines (
    pipeline_id      TEXT PRIMARY KEY,
    version_hash     TEXT NOT NULL,
    is_active        BIGINT NOT NULL DEFAULT 1,
    is_paused        BIGINT NOT NULL,
    description      TEXT NOT NULL DEFAULT '',
    owner            TEXT NOT NULL DEFAULT '',
    tags             TEXT NOT NULL DEFAULT '[]',
    schedule         TEXT NOT NULL DEFAULT '',
    timezone         TEXT NOT NULL DEFAULT 'UTC',
    next_run_at      BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

CREATE TABLE pipeline_versions (
    pipeline_id      TEXT NOT NULL REFERENCES pipelines (pipeline_id),
    version_hash     TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (pipeline_id, version_hash)
);

CREATE TABLE runs (
    id                   BIGSERIAL PRIMARY KEY,
    pipeline_id          TEXT NOT NULL REFERENCES pipelines (pipeline_id),
    run_id               TEXT NOT NULL,
    run_type             TEXT NOT NULL CHECK (run_type IN ('scheduled', 'manual', 'backfill')),
    state                TEXT NOT NULL CHECK (state IN ('queued', 'running', 'success', 'failed')),
    logical_date         BIGINT NOT NULL,
    data_interval_start  BIGINT NOT NULL,
    data_interval_end    BIGINT NOT NULL,
    conf                 TEXT NOT NULL DEFAULT '{}',
    version_hash         TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    start_date           BIGINT,
    end_date             BIGINT,
    UNIQUE (pipeline_id, run_id),
    UNIQUE (pipeline_id, logical_date)
);
CREATE INDEX runs_active ON runs (pipeline_id, state) WHERE state IN ('queued', 'running');

CREATE TABLE task_instances (
    id               BIGSERIAL PRIMARY KEY,
    run_pk           BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    pipeline_id      TEXT NOT NULL,
    task_id          TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('none', 'scheduled', 'queued', 'running', 'success',
                         'failed', 'up_for_retry', 'upstream_failed', 'skipped', 'removed')),
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
    UNIQUE (run_pk, task_id)
);
CREATE INDEX task_instances_live ON task_instances (state, pool) WHERE state IN ('queued', 'running');
CREATE INDEX task_instances_retry ON task_instances (next_try_at) WHERE state = 'up_for_retry';

CREATE TABLE task_tries (
    ti_id            BIGINT NOT NULL REFERENCES task_instances (id) ON DELETE CASCADE,
    try_number       BIGINT NOT NULL,
    state            TEXT NOT NULL,
    start_date       BIGINT,
    end_date         BIGINT,
    worker           TEXT,
    error            TEXT,
    PRIMARY KEY (ti_id, try_number)
);

CREATE TABLE task_logs (
    id               BIGSERIAL PRIMARY KEY,
    ti_id            BIGINT NOT NULL REFERENCES task_instances (id) ON DELETE CASCADE,
    try_number       BIGINT NOT NULL,
    at               BIGINT NOT NULL,
    stream           TEXT NOT NULL,
    line             TEXT NOT NULL
);
CREATE INDEX task_logs_by_try ON task_logs (ti_id, try_number, id);

CREATE TABLE task_outputs (
    ti_id            BIGINT PRIMARY KEY REFERENCES task_instances (id) ON DELETE CASCADE,
    outputs          TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);

CREATE TABLE connections (
    conn_id            TEXT PRIMARY KEY,
    conn_type          TEXT NOT NULL,
    description        TEXT NOT NULL DEFAULT '',
    host               TEXT,
    port               BIGINT,
    schema             TEXT,
    database           TEXT,
    login              TEXT,
    password           TEXT,
    extra              TEXT,
    is_encrypted       BIGINT NOT NULL DEFAULT 0,
    source             TEXT NOT NULL CHECK (source IN ('pipelines.yaml', 'runtime')),
    updated_at         BIGINT NOT NULL
);

CREATE TABLE variables (
    key              TEXT PRIMARY KEY,
    val              TEXT NOT NULL,
    is_encrypted     BIGINT NOT NULL DEFAULT 0,
    description      TEXT NOT NULL DEFAULT '',
    updated_at       BIGINT NOT NULL
);

CREATE TABLE pools (
    name             TEXT PRIMARY KEY,
    slots            BIGINT NOT NULL,
    description      TEXT NOT NULL DEFAULT ''
);

CREATE TABLE users (
    id               BIGSERIAL PRIMARY KEY,
    username         TEXT NOT NULL UNIQUE,
    email            TEXT NOT NULL DEFAULT '',
    first_name       TEXT NOT NULL DEFAULT '',
    last_name        TEXT NOT NULL DEFAULT '',
    role             TEXT NOT NULL CHECK (role IN ('Admin', 'Op', 'User', 'Viewer')),
    password_hash    TEXT NOT NULL,
    active           BIGINT NOT NULL DEFAULT 1,
    created_at       BIGINT NOT NULL,
    last_login       BIGINT
);

CREATE TABLE jobs (
    id               BIGSERIAL PRIMARY KEY,
    job_type         TEXT NOT NULL,
    hostname         TEXT NOT NULL,
    state            TEXT NOT NULL,
    started_at       BIGINT NOT NULL,
    heartbeat_at     BIGINT NOT NULL
);
