-- The audit (issue 12): a run of mode 'audit' reads every member id and last_changed of a list
-- from Mailchimp, compares them with the ledger, re-delivers what is missing or stale and
-- records what was deleted in Mailchimp. An audit is a run, so runs_one_active_per_list orders
-- it with the list's syncs: never both at once (the one created second waits for the tick after
-- the first finishes; an operator's request is refused with the active run's id).

ALTER TABLE importer.runs DROP CONSTRAINT runs_mode_check;
ALTER TABLE importer.runs ADD CONSTRAINT runs_mode_check
    CHECK (mode IN ('full', 'incremental', 'audit'));
-- An audit, like a full sync, has no since: only an incremental run has one.
ALTER TABLE importer.runs DROP CONSTRAINT runs_check1;
ALTER TABLE importer.runs ADD CONSTRAINT runs_since_only_incremental
    CHECK ((mode = 'incremental') = (since IS NOT NULL));
COMMENT ON COLUMN importer.runs.mode IS
    'full (every member changed before until), incremental (changed in [since, until)) or audit (Mailchimp compared with the ledger; see importer.audit_results)';

ALTER TABLE importer.jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE importer.jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('plan_run', 'import_window', 'audit_list', 'noop'));
COMMENT ON COLUMN importer.jobs.kind IS
    'plan_run (count the window, enqueue its import_window jobs), import_window (read a range, map, post), audit_list (compare a list with its ledger, heal) or noop (does nothing: benchmarks of the queue)';

-- A scheduled audit and a scheduled sync of one list may fall on the same instant: a slot is
-- unique per list and per kind of run.
DROP INDEX importer.runs_one_per_slot;
CREATE UNIQUE INDEX runs_one_per_slot ON importer.runs (list_id, (mode = 'audit'), scheduled_for)
    WHERE scheduled_for IS NOT NULL;
COMMENT ON INDEX importer.runs_one_per_slot IS
    'One run per list per schedule slot, syncs and audits apart: makes the tick idempotent';

ALTER TABLE importer.lists
    ADD COLUMN audit_every interval DEFAULT interval '7 days'
        CHECK (audit_every BETWEEN interval '1 hour' AND interval '366 days');
COMMENT ON COLUMN importer.lists.audit_every IS
    'How often the tick audits this list (at a fixed per-list phase, like its syncs); NULL = only when an operator asks';

-- What a scan saw, while the audit runs: compared with the ledger at the end, then deleted.
CREATE TABLE importer.audit_seen (
    run_id       bigint      NOT NULL REFERENCES importer.runs (id) ON DELETE CASCADE,
    last_changed timestamptz,
    after_until  boolean     NOT NULL,
    member_key   bytea       NOT NULL,
    PRIMARY KEY (run_id, member_key)
);
COMMENT ON TABLE importer.audit_seen IS
    'Member keys (importer.ledger_key) and last_changed an audit run read from Mailchimp; kept until the audit concludes';
COMMENT ON COLUMN importer.audit_seen.after_until IS
    'Read by the second pass (changed at or after the audit''s until): present in Mailchimp, left to the next sync';

CREATE TABLE importer.audit_results (
    run_id             bigint      PRIMARY KEY REFERENCES importer.runs (id) ON DELETE CASCADE,
    list_id            bigint      NOT NULL REFERENCES importer.lists (id) ON DELETE CASCADE,
    members_seen       bigint      NOT NULL,
    missing            bigint      NOT NULL,
    stale              bigint      NOT NULL,
    healed             bigint      NOT NULL,
    deferred           bigint      NOT NULL,
    rejected           bigint      NOT NULL,
    deleted            bigint      NOT NULL,
    deleted_new        bigint      NOT NULL,
    mailchimp_requests bigint      NOT NULL,
    mailchimp_bytes    bigint      NOT NULL,
    redeliver          boolean     NOT NULL DEFAULT false,
    concluded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_results_by_list ON importer.audit_results (list_id, run_id DESC);
COMMENT ON TABLE importer.audit_results IS 'What each audit found and did';
COMMENT ON COLUMN importer.audit_results.members_seen IS 'Members in Mailchimp (both passes)';
COMMENT ON COLUMN importer.audit_results.missing IS 'Changed before the cursor and never delivered';
COMMENT ON COLUMN importer.audit_results.stale IS 'Changed before the cursor and delivered older (the ledger holds an earlier last_changed)';
COMMENT ON COLUMN importer.audit_results.healed IS 'Missing or stale members the audit re-delivered';
COMMENT ON COLUMN importer.audit_results.deferred IS 'Missing or stale members that changed again while the audit healed: the next sync delivers them';
COMMENT ON COLUMN importer.audit_results.rejected IS 'Missing or stale members that cannot be mapped (stored as rejected records of the audit run)';
COMMENT ON COLUMN importer.audit_results.deleted IS 'In the ledger, gone from Mailchimp (importer.deleted_members)';
COMMENT ON COLUMN importer.audit_results.deleted_new IS 'Of deleted, those no earlier audit had noticed: the drift an audit cannot heal (the records API has no delete)';
COMMENT ON COLUMN importer.audit_results.mailchimp_bytes IS 'Response bytes of the audit''s Mailchimp reads';
COMMENT ON COLUMN importer.audit_results.redeliver IS
    'The ledger was not trusted (the destination lost or altered records): every member changed before the cursor counted as missing or stale and was posted again';

CREATE TABLE importer.deleted_members (
    list_id      bigint      NOT NULL REFERENCES importer.lists (id) ON DELETE CASCADE,
    member_id    text        NOT NULL,
    last_changed timestamptz,
    noticed_at   timestamptz NOT NULL DEFAULT now(),
    noticed_by   bigint      NOT NULL,
    PRIMARY KEY (list_id, member_id)
);
COMMENT ON TABLE importer.deleted_members IS
    'Members we delivered that are gone from Mailchimp (often a GDPR erasure): the destination still holds them and has no delete, so the client must act. A member seen again leaves this table';
COMMENT ON COLUMN importer.deleted_members.last_changed IS 'The last_changed we last delivered';
COMMENT ON COLUMN importer.deleted_members.noticed_by IS 'The audit run that first noticed it';

-- The one home of "drift an audit found and could not heal".
CREATE FUNCTION importer.unhealed(a importer.audit_results) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT a.missing + a.stale - a.healed - a.deferred - a.rejected + a.deleted_new
$$;
COMMENT ON FUNCTION importer.unhealed(importer.audit_results) IS
    'Drift an audit found and could not heal: newly deleted members, and missing or stale ones neither delivered, deferred nor rejected';

-- The newest concluded audit of each list.
CREATE VIEW importer.list_audits AS
SELECT DISTINCT ON (a.list_id)
       a.list_id,
       l.mailchimp_list_id,
       a.run_id,
       r.status,
       a.concluded_at,
       a.members_seen,
       a.missing,
       a.stale,
       a.healed,
       a.deferred,
       a.rejected,
       a.deleted,
       a.deleted_new,
       importer.unhealed(a)                                         AS unhealed,
       a.mailchimp_requests,
       a.mailchimp_bytes
  FROM importer.audit_results a
  JOIN importer.lists l ON l.id = a.list_id
  JOIN importer.runs r ON r.id = a.run_id
 ORDER BY a.list_id, a.run_id DESC;
COMMENT ON VIEW importer.list_audits IS 'Each list''s newest audit and what it found';
COMMENT ON COLUMN importer.list_audits.unhealed IS
    'Drift the audit found and could not heal: newly deleted members, and missing or stale ones it could not deliver for another reason than a new change or a rejection';

-- A completed audit delivered nothing in order: it covers no window and never moves a cursor.
-- An audit that ends without concluding (cancelled, failed) drops what its scan stored.
CREATE OR REPLACE FUNCTION importer.settle_run() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.mode = 'audit' THEN
        DELETE FROM importer.audit_seen WHERE run_id = NEW.id;
        RETURN NULL;
    END IF;
    IF NEW.window_events > 0 THEN
        DELETE FROM importer.coverage WHERE run_id = NEW.id;
    ELSIF NEW.status = 'completed' THEN
        PERFORM importer.cover(NEW.id, ARRAY[NEW.since], ARRAY[NEW.until]);
    END IF;
    PERFORM importer.advance_cursor(NEW.list_id);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION importer.settle_run() IS
    'Trigger: a sync run that finishes settles its coverage (all of its window when completed, its completed ranges when failed or cancelled, nothing when its window moved) and the list cursor advances over the contiguous covered prefix; an audit settles no coverage and drops its scan''s rows';

-- The one way an audit is created: until frozen like a sync's (database clock - lag), one
-- audit_list job; lists with an active run or a filled slot are skipped.
CREATE FUNCTION importer.create_audits(
    p_lists     bigint[],
    p_trigger   text,
    p_slots     timestamptz[] DEFAULT NULL,
    p_redeliver boolean DEFAULT false)
RETURNS SETOF importer.runs
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    WITH input AS (
        SELECT u.list_id, s.slot
          FROM unnest(p_lists) WITH ORDINALITY AS u(list_id, ord)
          LEFT JOIN unnest(p_slots) WITH ORDINALITY AS s(slot, ord) ON s.ord = u.ord
    ),
    created AS (
        INSERT INTO importer.runs AS r
               (list_id, account_id, mode, since, until, trigger, scheduled_for, jobs_total, jobs_pending)
        SELECT l.id, l.account_id, 'audit', NULL,
               date_trunc('second', now() - coalesce(l.sync_lag, st.sync_lag)),
               p_trigger, i.slot, 1, 1
          FROM input i
          JOIN importer.lists l ON l.id = i.list_id
         CROSS JOIN importer.settings st
         ORDER BY l.id
        ON CONFLICT DO NOTHING
        RETURNING r.*
    ),
    queued AS (
        INSERT INTO importer.jobs (kind, args, account_id, run_id)
        SELECT 'audit_list', jsonb_build_object('run_id', c.id, 'redeliver', p_redeliver),
               c.account_id, c.id
          FROM created c
    )
    SELECT * FROM created;
    IF FOUND THEN
        PERFORM importer.wake_workers();
    END IF;
END
$$;
COMMENT ON FUNCTION importer.create_audits(bigint[], text, timestamptz[], boolean) IS
    'Creates audit runs (with their audit_list jobs) for lists: until = database clock - sync lag; skips lists with an active run or a filled slot; p_redeliver posts every member before the cursor again (the destination lost records). The only way audits are created';

-- The one home of a schedule slot: the start of the period of `period` seconds that holds `at`,
-- at the list's fixed phase ((id mod period) * 7919 mod period seconds), for syncs and audits.
CREATE FUNCTION importer.schedule_slot(list_id bigint, period bigint, at timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_timestamp((p.phase + floor((extract(epoch FROM at) - p.phase) / period) * period)::float8)
      FROM (SELECT ((list_id % period) * 7919) % period AS phase) p
$$;
COMMENT ON FUNCTION importer.schedule_slot(bigint, bigint, timestamptz) IS
    'The slot of a schedule of period seconds that holds at, at the list''s fixed phase ((id mod period) * 7919 mod period): spreads thousands of lists over the period';

-- The tick creates due syncs first, then due audits of lists left without an active run: a
-- list due for both syncs now and is audited by a later tick, once that sync has finished.
CREATE OR REPLACE FUNCTION importer.tick(now timestamptz DEFAULT now())
RETURNS TABLE (run_id bigint, list_id bigint, account_id bigint, mode text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_lists bigint[];
    v_slots timestamptz[];
BEGIN
    SELECT coalesce(array_agg(d.list_id ORDER BY d.list_id), '{}'),
           coalesce(array_agg(d.slot ORDER BY d.list_id), '{}')
      INTO v_lists, v_slots
      FROM (
        SELECT l.id AS list_id,
               importer.schedule_slot(l.id, importer.schedule_period(l.schedule), tick.now) AS slot
          FROM importer.lists l
          JOIN importer.accounts a ON a.id = l.account_id
         WHERE l.enabled
           AND NOT a.paused
           AND NOT EXISTS (SELECT 1 FROM importer.runs r
                            WHERE r.list_id = l.id AND r.status IN ('planning', 'running'))
      ) d
     WHERE NOT EXISTS (SELECT 1 FROM importer.runs r
                        WHERE r.list_id = d.list_id AND r.scheduled_for = d.slot
                          AND r.mode <> 'audit');
    RETURN QUERY
    SELECT c.id, c.list_id, c.account_id, c.mode
      FROM importer.create_runs(v_lists, 'schedule', 'auto', NULL, v_slots) c;

    -- Audits: at each list's own phase of its audit period, for lists with a sync completed
    -- before the slot began (a new list's first audit comes a period after its first sync).
    SELECT coalesce(array_agg(d.list_id ORDER BY d.list_id), '{}'),
           coalesce(array_agg(d.slot ORDER BY d.list_id), '{}')
      INTO v_lists, v_slots
      FROM (
        SELECT l.id AS list_id,
               importer.schedule_slot(
                   l.id,
                   least(greatest(floor(extract(epoch FROM l.audit_every)), 3600), 366 * 86400)::bigint,
                   tick.now) AS slot
          FROM importer.lists l
          JOIN importer.accounts a ON a.id = l.account_id
         WHERE l.enabled
           AND l.audit_every IS NOT NULL
           AND l.synced_until IS NOT NULL
           AND NOT a.paused
           AND NOT EXISTS (SELECT 1 FROM importer.runs r
                            WHERE r.list_id = l.id AND r.status IN ('planning', 'running'))
      ) d
     WHERE NOT EXISTS (SELECT 1 FROM importer.runs r
                        WHERE r.list_id = d.list_id AND r.scheduled_for = d.slot
                          AND r.mode = 'audit')
       AND EXISTS (SELECT 1 FROM importer.runs r
                    WHERE r.list_id = d.list_id AND r.status = 'completed'
                      AND r.mode <> 'audit' AND r.finished_at < d.slot);
    RETURN QUERY
    SELECT c.id, c.list_id, c.account_id, c.mode
      FROM importer.create_audits(v_lists, 'schedule', v_slots) c;
END
$$;
COMMENT ON FUNCTION importer.tick(timestamptz) IS
    'Creates the due scheduled runs: syncs through importer.create_runs (one per enabled list of an unpaused account, per slot of its schedule at the list''s fixed phase, none while the list has an active run), then audits through importer.create_audits (per slot of audit_every at the list''s phase, for lists with a sync completed before the slot began, none while the list has an active run). now picks the slots only; until always comes from the database clock. Idempotent and safe to call concurrently. Returns the runs it created.';

-- "When a run of it last completed" means a sync: an audit delivers no window.
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
         WHERE r.list_id = l.id AND r.status = 'completed' AND r.mode <> 'audit'
         ORDER BY r.finished_at DESC
         LIMIT 1)                                                   AS last_completed_at,
       active.id                                                    AS active_run_id,
       active.status                                                AS active_run_status
  FROM importer.lists l
  JOIN importer.accounts a ON a.id = l.account_id
  LEFT JOIN importer.runs active
         ON active.list_id = l.id AND active.status IN ('planning', 'running')
 WHERE importer.is_behind(l.enabled, l.synced_until, l.schedule);
COMMENT ON COLUMN importer.lists_behind_schedule.last_completed_at IS 'When a sync of it last completed (audits aside)';

-- Retention keeps a list's newest completed sync and, apart, its newest completed audit (with
-- its result): a weekly audit must not push the last sync out, nor hourly syncs the last audit.
CREATE OR REPLACE FUNCTION importer.prune(batch integer DEFAULT 1000)
RETURNS TABLE (what text, deleted bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, importer AS $$
DECLARE
    s importer.settings;
BEGIN
    SELECT * INTO s FROM importer.settings;
    RETURN QUERY
    WITH gone AS (
        DELETE FROM importer.runs r
         WHERE r.id IN (
               SELECT o.id FROM importer.runs o
                WHERE o.finished_at < now() - s.keep_runs
                  AND (o.status <> 'completed'
                       OR EXISTS (SELECT 1 FROM importer.runs n
                                   WHERE n.list_id = o.list_id AND n.status = 'completed'
                                     AND (n.mode = 'audit') = (o.mode = 'audit')
                                     AND n.finished_at > o.finished_at))
                ORDER BY o.finished_at
                LIMIT batch
                  FOR UPDATE SKIP LOCKED)
        RETURNING 1)
    SELECT 'runs'::text, count(*) FROM gone;

    RETURN QUERY
    WITH gone AS (
        DELETE FROM importer.dead_jobs d
         WHERE d.id IN (SELECT o.id FROM importer.dead_jobs o
                         WHERE o.died_at < now() - s.keep_dead_jobs
                         ORDER BY o.died_at LIMIT batch FOR UPDATE SKIP LOCKED)
        RETURNING 1)
    SELECT 'dead_jobs'::text, count(*) FROM gone;

    RETURN QUERY
    WITH gone AS (
        DELETE FROM importer.rejected_records x
         WHERE x.id IN (SELECT o.id FROM importer.rejected_records o
                         WHERE o.created_at < now() - s.keep_rejected_records
                         ORDER BY o.created_at LIMIT batch FOR UPDATE SKIP LOCKED)
        RETURNING 1)
    SELECT 'rejected_records'::text, count(*) FROM gone;

    RETURN QUERY
    WITH gone AS (
        DELETE FROM importer.audit_log x
         WHERE x.id IN (SELECT o.id FROM importer.audit_log o
                         WHERE o.at < now() - s.keep_audit_log
                         ORDER BY o.at LIMIT batch FOR UPDATE SKIP LOCKED)
        RETURNING 1)
    SELECT 'audit_log'::text, count(*) FROM gone;

    RETURN QUERY
    WITH gone AS (
        DELETE FROM importer.records_per_minute m
         WHERE m.minute < now() - interval '2 days'
           AND (m.minute, m.backend) IN (SELECT o.minute, o.backend FROM importer.records_per_minute o
                                          WHERE o.minute < now() - interval '2 days'
                                          ORDER BY o.minute LIMIT batch FOR UPDATE SKIP LOCKED)
        RETURNING 1)
    SELECT 'records_per_minute'::text, count(*) FROM gone;
END
$$;
COMMENT ON FUNCTION importer.prune(integer) IS
    'Deletes at most batch rows of each kind past its age in importer.settings (finished runs, keeping each list''s newest completed sync and newest completed audit; dead jobs; rejected records; audit rows; throughput minutes older than 2 days); returns what it deleted. Safe to call concurrently (SKIP LOCKED); workers call it after each tick';
COMMENT ON COLUMN importer.settings.keep_runs IS
    'Finished runs older than this (by finished_at) are pruned, with their dead jobs, rejected records and audit results; a list''s newest completed sync and newest completed audit are always kept';
