-- Fleet trust: poison-partition accounting and quarantine, the reaper's view of re-sent runs, and the
-- indexes the reaper's pruning of old state rows needs. Additive only.

CREATE TABLE IF NOT EXISTS partition_health (
    job             text NOT NULL,
    table_name      text NOT NULL,
    partition       text NOT NULL DEFAULT '',
    failures        integer NOT NULL DEFAULT 0,  -- failed or dead attempts in a row, across messages
    attempt_run     text,                        -- the attempt in flight: set at its start, cleared at its end
    attempt_at      timestamptz,
    last_error      text,
    last_failure_at timestamptz,
    quarantined_at  timestamptz,                 -- skipped until released or quarantined_at + cool-off
    released_by     text,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (job, table_name, partition)
);
CREATE INDEX IF NOT EXISTS partition_health_quarantined ON partition_health (job, table_name)
    WHERE quarantined_at IS NOT NULL;

ALTER TABLE job_runs ADD COLUMN IF NOT EXISTS requeued_at timestamptz;   -- last re-send by the reaper
ALTER TABLE job_runs ADD COLUMN IF NOT EXISTS requeues integer NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS job_runs_finished ON job_runs (finished_at)
    WHERE state IN ('done', 'failed', 'stopped');
CREATE INDEX IF NOT EXISTS plans_finished ON plans (updated_at)
    WHERE state IN ('done', 'abandoned', 'failed');
