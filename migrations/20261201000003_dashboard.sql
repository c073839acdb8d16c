-- The operator dashboard (importer-admin serve): an audit log of every operator action, a
-- per-minute record counter for the throughput chart, the last beat of every worker, and the
-- indexes that keep every page's filter an index range scan however many runs, dead jobs and
-- rejected records pile up.

-- ---------------------------------------------------------------------------------------------
-- audit_log
-- ---------------------------------------------------------------------------------------------
CREATE TABLE importer.audit_log (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                  timestamptz NOT NULL DEFAULT now(),
    actor               text        NOT NULL CHECK (actor <> ''),
    via                 text        NOT NULL CHECK (via IN ('cli', 'dashboard')),
    action              text        NOT NULL CHECK (action <> ''),
    objects             jsonb       NOT NULL DEFAULT '{}',
    outcome             text        NOT NULL CHECK (outcome IN ('ok', 'refused', 'failed')),
    detail              text
);
COMMENT ON TABLE importer.audit_log IS
    'Every action an operator took through importer-admin or its dashboard: who, what, on which objects, when, and the outcome (append-only)';
COMMENT ON COLUMN importer.audit_log.actor IS 'Dashboard user name, or cli:<OS user> (IMPORTER_ACTOR overrides it)';
COMMENT ON COLUMN importer.audit_log.via IS 'cli or dashboard';
COMMENT ON COLUMN importer.audit_log.action IS 'What was done, as a command path: accounts.pause, runs.cancel, dead.requeue, ...';
COMMENT ON COLUMN importer.audit_log.objects IS 'Which objects, e.g. {"account_id": 3} or {"filter": {...}}; never a secret';
COMMENT ON COLUMN importer.audit_log.outcome IS 'ok; refused (invalid or not allowed: nothing changed); failed (an error)';
COMMENT ON COLUMN importer.audit_log.detail IS 'What came of it (e.g. "12 jobs requeued") or the error message';
-- Newest first, overall (the primary key) and per actor and per action.
CREATE INDEX audit_log_by_actor ON importer.audit_log (actor, id DESC);
CREATE INDEX audit_log_by_action ON importer.audit_log (action, id DESC);

-- ---------------------------------------------------------------------------------------------
-- records_per_minute: what the throughput chart draws
-- ---------------------------------------------------------------------------------------------
-- One row per minute and writing backend (pg_backend_pid()): a backend only ever adds to its own
-- row, so two completions never wait on each other here and no lock order can cycle.
CREATE TABLE importer.records_per_minute (
    minute              timestamptz NOT NULL,
    backend             integer     NOT NULL,
    records             bigint      NOT NULL,
    PRIMARY KEY (minute, backend)
) WITH (fillfactor = 70);  -- records changes in place: HOT updates
COMMENT ON TABLE importer.records_per_minute IS
    'Records imported per minute (sum over backend): maintained by a trigger on runs.records_imported; importer.prune_records_per_minute() deletes rows older than 2 days';

CREATE FUNCTION importer.count_imported() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO importer.records_per_minute AS m (minute, backend, records)
    VALUES (date_trunc('minute', now()), pg_backend_pid(), NEW.records_imported - OLD.records_imported)
    ON CONFLICT (minute, backend) DO UPDATE SET records = m.records + EXCLUDED.records;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION importer.count_imported() IS 'Adds a run''s newly imported records to this minute''s row of records_per_minute';

CREATE TRIGGER runs_count_imported
    AFTER UPDATE OF records_imported ON importer.runs
    FOR EACH ROW WHEN (NEW.records_imported > OLD.records_imported)
    EXECUTE FUNCTION importer.count_imported();

CREATE OR REPLACE FUNCTION importer.prune_records_per_minute() RETURNS bigint
LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM importer.records_per_minute
         WHERE minute < now() - interval '2 days'
        RETURNING 1)
    SELECT count(*) FROM gone
$$;
COMMENT ON FUNCTION importer.prune_records_per_minute() IS 'Deletes throughput rows older than 2 days (the chart shows hours)';

-- ---------------------------------------------------------------------------------------------
-- The last beat of each worker
-- ---------------------------------------------------------------------------------------------
ALTER TABLE importer.jobs ADD COLUMN leased_at timestamptz;
COMMENT ON COLUMN importer.jobs.leased_at IS 'When the holder last claimed or renewed the lease (its last heartbeat for this job)';

CREATE VIEW importer.workers AS
SELECT j.locked_by                                                  AS worker,
       count(*) FILTER (WHERE j.locked_until > now())               AS jobs,
       count(*) FILTER (WHERE j.holds_slot AND j.locked_until > now()) AS slots,
       count(*) FILTER (WHERE j.locked_until <= now())              AS expired,
       max(j.leased_at)                                             AS last_beat,
       now() - max(j.leased_at)                                     AS since_last_beat
  FROM importer.jobs j
 WHERE j.locked_by IS NOT NULL
 GROUP BY j.locked_by;
COMMENT ON VIEW importer.workers IS
    'Workers seen through their leases: live jobs, Mailchimp slots, expired leases and the last heartbeat (a worker holding no job does not appear)';
COMMENT ON COLUMN importer.workers.last_beat IS 'Newest claim or lease renewal of this worker';

-- ---------------------------------------------------------------------------------------------
-- Indexes for the dashboard's filters
-- ---------------------------------------------------------------------------------------------
-- Runs newest first: all, per account (per status and per list exist already).
CREATE INDEX runs_by_created ON importer.runs (created_at DESC, id DESC);
CREATE INDEX runs_by_account ON importer.runs (account_id, created_at DESC);
-- An account's or a list's last successful sync.
CREATE INDEX runs_completed_by_list ON importer.runs (list_id, finished_at DESC) WHERE status = 'completed';
-- Dead jobs newest first, per error grouping sample and per account.
CREATE INDEX dead_jobs_by_account_died ON importer.dead_jobs (account_id, died_at DESC);
-- Rejected records newest first, per reason code and per run.
CREATE INDEX rejected_records_by_code_id ON importer.rejected_records (code, id DESC);

-- Whether a list is behind its schedule: one home for the rule, used by the view below and by
-- the lists page.
CREATE FUNCTION importer.is_behind(enabled boolean, synced_until timestamptz, schedule interval)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT enabled AND (synced_until IS NULL OR synced_until < now() - 2 * schedule)
$$;
COMMENT ON FUNCTION importer.is_behind(boolean, timestamptz, interval) IS
    'An enabled list never synced, or whose cursor lags more than two schedule periods (one period plus the run time is normal)';

-- The behind-schedule view read the last completed run per list through runs_by_list and a
-- filter on status; runs_completed_by_list answers it directly.
CREATE OR REPLACE VIEW importer.lists_behind_schedule AS
SELECT l.id                                                         AS list_id,
       l.mailchimp_list_id,
       l.name                                                       AS list_name,
       l.account_id,
       a.name                                                       AS account,
       a.paused                                                     AS account_paused,
       l.schedule,
       l.synced_until,
       now() - l.synced_until                                       AS lag,
       (SELECT r.finished_at
          FROM importer.runs r
         WHERE r.list_id = l.id AND r.status = 'completed'
         ORDER BY r.finished_at DESC
         LIMIT 1)                                                   AS last_completed_at,
       active.id                                                    AS active_run_id,
       active.status                                                AS active_run_status
  FROM importer.lists l
  JOIN importer.accounts a ON a.id = l.account_id
  LEFT JOIN importer.runs active
         ON active.list_id = l.id AND active.status IN ('planning', 'running')
 WHERE importer.is_behind(l.enabled, l.synced_until, l.schedule);
