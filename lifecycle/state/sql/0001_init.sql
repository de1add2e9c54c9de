-- Artemis Lifecycle state, version 1. Timestamps always come from the injectable clock, never now().

CREATE TABLE IF NOT EXISTS job_runs (
    run_id          text PRIMARY KEY,
    job             text NOT NULL,
    table_name      text NOT NULL,
    partition       text NOT NULL DEFAULT '',
    state           text NOT NULL,            -- queued | running | done | failed | stopped
    manual          boolean NOT NULL DEFAULT false,
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL DEFAULT 5,
    worker          text,
    created_at      timestamptz NOT NULL,
    started_at      timestamptz,
    heartbeat_at    timestamptz,
    finished_at     timestamptz,
    error           text,
    counts          jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS job_runs_by_table ON job_runs (table_name, job, created_at DESC);
CREATE INDEX IF NOT EXISTS job_runs_open ON job_runs (state) WHERE state IN ('queued', 'running');

CREATE TABLE IF NOT EXISTS plans (
    plan_id         text PRIMARY KEY,
    job             text NOT NULL,
    table_name      text NOT NULL,
    partition       text NOT NULL DEFAULT '',
    state           text NOT NULL,            -- planned | executing | committing | committed | done | abandoned | failed | unknown
    base_snapshot_id bigint,
    run_id          text,
    payload         jsonb NOT NULL DEFAULT '{}'::jsonb,
    progress        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS plans_open ON plans (job, table_name, partition)
    WHERE state NOT IN ('done', 'abandoned', 'failed');

CREATE TABLE IF NOT EXISTS journal (
    entry_id        bigserial PRIMARY KEY,
    plan_id         text NOT NULL REFERENCES plans(plan_id),
    table_name      text NOT NULL,
    kind            text NOT NULL,            -- stage | delete | purge | orphan | metadata ...
    path            text NOT NULL,
    state           text NOT NULL,            -- pending | written | copied | deleted | committed | removed | skipped
    bytes           bigint,
    eligible_at     timestamptz,
    info            jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    UNIQUE (plan_id, kind, path)
);
CREATE INDEX IF NOT EXISTS journal_by_table ON journal (table_name, kind, state);
CREATE INDEX IF NOT EXISTS journal_by_path ON journal (path);

CREATE TABLE IF NOT EXISTS cold_objects (
    object_id       bigserial PRIMARY KEY,
    table_name      text NOT NULL,
    snapshot_ids    bigint[] NOT NULL DEFAULT '{}',
    source_path     text NOT NULL,
    cold_uri        text NOT NULL,
    bytes           bigint NOT NULL,
    checksum        text NOT NULL,            -- S3 ETag or sha256 of a local copy
    storage_class   text,
    copied_at       timestamptz NOT NULL,
    plan_id         text,
    UNIQUE (table_name, source_path)
);

CREATE TABLE IF NOT EXISTS writer_heartbeats (
    writer_id         text PRIMARY KEY,
    host              text,
    started_at        timestamptz,
    last_heartbeat_at timestamptz,
    in_progress_paths text[]
);
