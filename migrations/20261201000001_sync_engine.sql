-- The sync engine (issue 8): one clock with a safety lag, coverage instead of a bare cursor,
-- ranges with checkpoints, borrowed Mailchimp slots for planning, and coded rejections.
--
-- What changes for operators:
--   importer.settings          deployment-wide settings (the sync lag); lists.sync_lag overrides it
--   importer.create_runs(...)  the one way a run is created (tick and operators): until is frozen
--                              from the database clock minus the lag
--   importer.coverage          delivered last_changed intervals beyond a list's cursor; the cursor
--                              moves only over a contiguous covered prefix (importer.advance_cursor)
--   importer.reset_cursor(...) moves a cursor by hand and forgets coverage, refused during a run
--   runs.window_events         times the engine saw that the window was not frozen

-- ---------------------------------------------------------------------------------------------
-- settings
-- ---------------------------------------------------------------------------------------------
CREATE TABLE importer.settings (
    singleton           boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    sync_lag            interval    NOT NULL DEFAULT interval '60 seconds'
                                    CHECK (sync_lag >= interval '0' AND sync_lag <= interval '1 day'),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
INSERT INTO importer.settings DEFAULT VALUES;
-- The row is the deployment's configuration: it can be changed, never removed.
CREATE RULE settings_keep_the_row AS ON DELETE TO importer.settings DO INSTEAD NOTHING;
COMMENT ON TABLE importer.settings IS 'Deployment-wide settings (exactly one row; change it with importer-admin settings set or UPDATE)';
COMMENT ON COLUMN importer.settings.sync_lag IS
    'Safety lag: a run covers last_changed < (database clock - lag), so Mailchimp clock skew and late visibility of changes within the lag cannot lose a contact. Default 60 s (see README)';

ALTER TABLE importer.lists
    ADD COLUMN sync_lag interval CHECK (sync_lag >= interval '0' AND sync_lag <= interval '1 day');
COMMENT ON COLUMN importer.lists.sync_lag IS 'Overrides importer.settings.sync_lag for this list (NULL = the deployment''s lag)';
COMMENT ON COLUMN importer.lists.synced_until IS
    'Cursor: every member whose last_changed is before this instant has been delivered. NULL = never synced. Moves only over contiguous importer.coverage';

-- ---------------------------------------------------------------------------------------------
-- runs: window events and Mailchimp cost
-- ---------------------------------------------------------------------------------------------
ALTER TABLE importer.runs
    ADD COLUMN window_events      integer NOT NULL DEFAULT 0 CHECK (window_events >= 0),
    ADD COLUMN members_read       bigint  NOT NULL DEFAULT 0 CHECK (members_read >= 0),
    ADD COLUMN mailchimp_requests bigint  NOT NULL DEFAULT 0 CHECK (mailchimp_requests >= 0),
    ADD COLUMN planning_requests  integer NOT NULL DEFAULT 0 CHECK (planning_requests >= 0);
COMMENT ON COLUMN importer.runs.window_events IS
    'Times the engine saw the window was not frozen (a range grew, a member outside its range, planned ranges that do not add up): Mailchimp''s clock or visibility is off by more than the lag; affected ranges were re-read';
COMMENT ON COLUMN importer.runs.members_read IS 'Members Mailchimp returned to this run''s range reads (re-reads included)';
COMMENT ON COLUMN importer.runs.mailchimp_requests IS 'Mailchimp requests this run made (planning included)';
COMMENT ON COLUMN importer.runs.planning_requests IS 'Of those, the plan job''s: counts and range-boundary probes';
COMMENT ON COLUMN importer.runs.until IS
    'Upper bound (exclusive) of last_changed: the database clock minus the sync lag when the run was created, in whole seconds';

-- ---------------------------------------------------------------------------------------------
-- coverage
-- ---------------------------------------------------------------------------------------------
CREATE TABLE importer.coverage (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    list_id             bigint      NOT NULL REFERENCES importer.lists (id) ON DELETE CASCADE,
    lo                  timestamptz NOT NULL,
    hi                  timestamptz NOT NULL,
    run_id              bigint      REFERENCES importer.runs (id) ON DELETE SET NULL,
    covered_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (lo < hi)
);
COMMENT ON TABLE importer.coverage IS
    'Intervals [lo, hi) of last_changed whose members have been delivered, beyond the list cursor (a completed range of a failed run, a --since run ahead of the cursor; while a run is active, the ranges it completed). Planning skips them; the cursor absorbs them once contiguous';
COMMENT ON COLUMN importer.coverage.lo IS 'Inclusive lower bound; -infinity for the start of a full sync';
COMMENT ON COLUMN importer.coverage.run_id IS 'The run whose range delivered the interval';
CREATE INDEX coverage_by_list ON importer.coverage (list_id, lo);

-- Moves a list's cursor over the contiguous covered prefix and forgets the coverage it absorbed.
-- The one rule of the cursor: it never moves over an interval nobody delivered.
CREATE FUNCTION importer.advance_cursor(p_list bigint) RETURNS timestamptz
LANGUAGE plpgsql AS $$
DECLARE
    c   timestamptz;
    nxt timestamptz;
BEGIN
    SELECT coalesce(synced_until, '-infinity') INTO c
      FROM importer.lists WHERE id = p_list FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    LOOP
        SELECT max(hi) INTO nxt FROM importer.coverage
         WHERE list_id = p_list AND lo <= c AND hi > c;
        EXIT WHEN nxt IS NULL;
        c := nxt;
    END LOOP;
    DELETE FROM importer.coverage WHERE list_id = p_list AND hi <= c;
    IF c > '-infinity' THEN
        UPDATE importer.lists SET synced_until = c
         WHERE id = p_list AND synced_until IS DISTINCT FROM c;
    END IF;
    RETURN nullif(c, '-infinity');
END
$$;
COMMENT ON FUNCTION importer.advance_cursor(bigint) IS
    'Moves the list cursor to the end of the contiguous coverage starting at it (never over a gap, never backwards) and deletes the coverage it absorbed; returns the cursor';

-- Records that the members of [lo, hi) (each pair) were delivered by run p_run. Called in the
-- transaction that completes the delivering job. The cursor does not move yet: a run's coverage
-- counts once the run has finished without seeing its window move (importer.settle_run below).
CREATE FUNCTION importer.cover(p_run bigint, p_lo timestamptz[], p_hi timestamptz[])
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO importer.coverage (list_id, lo, hi, run_id)
    SELECT r.list_id, coalesce(u.lo, '-infinity'), u.hi, r.id
      FROM importer.runs r
     CROSS JOIN unnest(p_lo, p_hi) AS u(lo, hi)
     WHERE r.id = p_run AND coalesce(u.lo, '-infinity') < u.hi;
$$;
COMMENT ON FUNCTION importer.cover(bigint, timestamptz[], timestamptz[]) IS
    'Records delivered intervals [lo, hi) (NULL lo = -infinity) of a run''s list; they move the cursor when the run finishes with a frozen window (importer.settle_run)';

-- What a run still has to read: its window [since, until) minus the list's coverage.
CREATE FUNCTION importer.run_gaps(p_run bigint)
RETURNS TABLE (lo timestamptz, hi timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r  record;
    cv record;
    c  timestamptz;
BEGIN
    SELECT coalesce(x.since, '-infinity') AS since, x.until, x.list_id INTO r
      FROM importer.runs x WHERE x.id = p_run;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    c := r.since;
    -- intervals in order of their start; c is the end of what is covered or already returned
    FOR cv IN
        SELECT k.lo AS k_lo, k.hi AS k_hi FROM importer.coverage k
         WHERE k.list_id = r.list_id AND k.hi > r.since AND k.lo < r.until
         ORDER BY k.lo
    LOOP
        IF cv.k_lo > c THEN
            lo := c;
            hi := least(cv.k_lo, r.until);
            RETURN NEXT;
        END IF;
        c := greatest(c, cv.k_hi);
        EXIT WHEN c >= r.until;
    END LOOP;
    IF c < r.until THEN
        lo := c;
        hi := r.until;
        RETURN NEXT;
    END IF;
END
$$;
COMMENT ON FUNCTION importer.run_gaps(bigint) IS
    'The parts of a run''s window [since, until) not yet covered (-infinity = the start of a full sync): what its plan job reads';

-- Moves a list cursor by hand (NULL: the next run is a full sync) and forgets the list's
-- coverage, so the next run re-delivers from there. Refused while the list has an active run
-- (its ranges would record coverage the operator just asked to forget): then active_run_id is
-- that run and nothing changes.
CREATE FUNCTION importer.reset_cursor(p_list bigint, p_to timestamptz)
RETURNS TABLE (active_run_id bigint, synced_until timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_active bigint;
BEGIN
    -- the list row first: a run created meanwhile waits for this transaction (its foreign key)
    PERFORM 1 FROM importer.lists WHERE id = p_list FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT r.id INTO v_active FROM importer.runs r
     WHERE r.list_id = p_list AND r.status IN ('planning', 'running');
    IF v_active IS NOT NULL THEN
        active_run_id := v_active;
        synced_until := (SELECT l.synced_until FROM importer.lists l WHERE l.id = p_list);
        RETURN NEXT;
        RETURN;
    END IF;
    DELETE FROM importer.coverage WHERE list_id = p_list;
    UPDATE importer.lists SET synced_until = date_trunc('second', p_to) WHERE id = p_list;
    active_run_id := NULL;
    synced_until := date_trunc('second', p_to);
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION importer.reset_cursor(bigint, timestamptz) IS
    'Sets a list cursor by hand (NULL = full sync next) and forgets its coverage; refused (returns the active run id, changes nothing) while the list has an active run';

-- The one home of "wake idle workers": every path that makes jobs claimable calls it (enqueue,
-- release, requeue, create_runs). The channel is importer_jobs, with an empty payload.
CREATE FUNCTION importer.wake_workers() RETURNS void
LANGUAGE sql AS $$ SELECT pg_notify('importer_jobs', '') $$;
COMMENT ON FUNCTION importer.wake_workers() IS
    'NOTIFY importer_jobs: idle workers LISTENing there claim at once (delivered at commit)';

-- ---------------------------------------------------------------------------------------------
-- create_runs: the one way a run is created
-- ---------------------------------------------------------------------------------------------
-- p_mode: 'auto' (from the list cursor, full when it has none), 'full', or 'since' (from p_since).
-- p_slots: the schedule slot of each list (scheduled runs), NULL for operators' runs.
-- until is frozen here, from the database clock (never a caller's) minus the list's lag, in whole
-- seconds. A list that already has an active run, or whose slot already has a run, is skipped
-- (ON CONFLICT on the unique indexes), as is one whose window would be inverted.
CREATE FUNCTION importer.create_runs(
    p_lists   bigint[],
    p_trigger text,
    p_mode    text DEFAULT 'auto',
    p_since   timestamptz DEFAULT NULL,
    p_slots   timestamptz[] DEFAULT NULL)
RETURNS SETOF importer.runs
LANGUAGE plpgsql AS $$
BEGIN
    IF p_mode NOT IN ('auto', 'full', 'since') THEN
        RAISE EXCEPTION 'create_runs: mode must be auto, full or since, not %', p_mode;
    END IF;
    IF p_mode = 'since' AND p_since IS NULL THEN
        RAISE EXCEPTION 'create_runs: mode since needs a since';
    END IF;
    RETURN QUERY
    WITH input AS (
        SELECT u.list_id, s.slot
          FROM unnest(p_lists) WITH ORDINALITY AS u(list_id, ord)
          LEFT JOIN unnest(p_slots) WITH ORDINALITY AS s(slot, ord) ON s.ord = u.ord
    ),
    target AS (
        SELECT l.id, l.account_id, i.slot,
               CASE p_mode WHEN 'full' THEN NULL
                           WHEN 'since' THEN date_trunc('second', p_since)
                           ELSE l.synced_until END AS since,
               date_trunc('second', now() - coalesce(l.sync_lag, st.sync_lag)) AS until
          FROM input i
          JOIN importer.lists l ON l.id = i.list_id
         CROSS JOIN importer.settings st
    ),
    created AS (
        INSERT INTO importer.runs AS r
               (list_id, account_id, mode, since, until, trigger, scheduled_for, jobs_total, jobs_pending)
        SELECT t.id, t.account_id, CASE WHEN t.since IS NULL THEN 'full' ELSE 'incremental' END,
               t.since, t.until, p_trigger, t.slot, 1, 1
          FROM target t
         WHERE t.since IS NULL OR t.since <= t.until
         ORDER BY t.id
        ON CONFLICT DO NOTHING
        RETURNING r.*
    ),
    planned AS (
        INSERT INTO importer.jobs (kind, args, account_id, run_id)
        SELECT 'plan_run', jsonb_build_object('run_id', c.id), c.account_id, c.id FROM created c
    )
    SELECT * FROM created;
    IF FOUND THEN
        PERFORM importer.wake_workers();
    END IF;
END
$$;
COMMENT ON FUNCTION importer.create_runs(bigint[], text, text, timestamptz, timestamptz[]) IS
    'Creates runs (with their plan_run jobs) for lists: until = database clock - sync lag, since from the mode (auto: the cursor); skips lists with an active run, a filled slot or an inverted window. The only way runs are created';

-- Schedules. A period must fit the tick's arithmetic and mean something: between one minute
-- and 31 days. Rows written before the bound are clamped into it first.
UPDATE importer.lists
   SET schedule = least(greatest(schedule, interval '1 minute'), interval '31 days')
 WHERE schedule NOT BETWEEN interval '1 minute' AND interval '31 days';
ALTER TABLE importer.lists
    ADD CONSTRAINT lists_schedule_bounds
    CHECK (schedule BETWEEN interval '1 minute' AND interval '31 days');

-- The tick's view of a schedule, in whole seconds, clamped to the bounds above: whatever a row
-- holds, the tick's arithmetic for one list cannot fail and take every other list down with it.
CREATE FUNCTION importer.schedule_period(schedule interval) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT least(greatest(floor(extract(epoch FROM schedule)), 60), 31 * 86400)::bigint
$$;
COMMENT ON FUNCTION importer.schedule_period(interval) IS
    'A list schedule in whole seconds, clamped to [1 minute, 31 days] (the bounds of lists_schedule_bounds)';

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
               to_timestamp((p.phase + floor((extract(epoch FROM tick.now) - p.phase) / p.period)
                                        * p.period)::float8) AS slot
          FROM importer.lists l
         CROSS JOIN LATERAL (
               SELECT importer.schedule_period(l.schedule) AS period) sp
         CROSS JOIN LATERAL (
               SELECT sp.period, ((l.id % sp.period) * 7919) % sp.period AS phase) p
          JOIN importer.accounts a ON a.id = l.account_id
         WHERE l.enabled
           AND NOT a.paused
           AND NOT EXISTS (SELECT 1 FROM importer.runs r
                            WHERE r.list_id = l.id AND r.status IN ('planning', 'running'))
      ) d
     WHERE NOT EXISTS (SELECT 1 FROM importer.runs r
                        WHERE r.list_id = d.list_id AND r.scheduled_for = d.slot);
    RETURN QUERY
    SELECT c.id, c.list_id, c.account_id, c.mode
      FROM importer.create_runs(v_lists, 'schedule', 'auto', NULL, v_slots) c;
END
$$;
COMMENT ON FUNCTION importer.tick(timestamptz) IS
    'Creates the due scheduled runs through importer.create_runs (one per enabled list of an unpaused account, per slot of its schedule at the list''s fixed phase, none while the list has an active run). now picks the slot only; until always comes from the database clock; schedules are read through importer.schedule_period, so no single list can make the tick fail. Idempotent and safe to call concurrently. Returns the runs it created.';

-- The finishing rule gains one condition: a run whose window was seen to move (a range grew
-- while it was read, a member outside its range, ranges that counted more than the plan) cannot
-- prove what it covered, since members may also have entered ranges it had already finished.
-- It fails, with the reason, and its coverage is dropped: the next run covers its window again.
CREATE OR REPLACE FUNCTION importer.finish_run() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.jobs_dead = 0 AND NEW.window_events = 0 THEN
        NEW.status := 'completed';
        NEW.error := NULL;
    ELSIF NEW.jobs_dead = 0 THEN
        NEW.status := 'failed';
        NEW.error := format('the window was not frozen (%s events): Mailchimp''s clock or the visibility of its changes is off by more than the sync lag; the next run covers this window again (raise the lag: importer-admin settings set --sync-lag)', NEW.window_events);
    ELSE
        NEW.status := 'failed';
        NEW.error := format('%s of %s jobs dead (see importer.dead_jobs)', NEW.jobs_dead, NEW.jobs_total);
    END IF;
    NEW.started_at := coalesce(NEW.started_at, now());
    NEW.finished_at := now();
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION importer.finish_run() IS
    'Trigger: the update that brings an active run''s jobs_pending to 0 finishes it: completed when no job died and its window stayed frozen, else failed with the reason';

-- When a run finishes (completed, failed or cancelled), its coverage settles. A completed run
-- delivered its whole window [since, until): its ranges partition what was not covered yet. A
-- failed or cancelled run keeps the ranges it completed. A run that saw its window move keeps
-- nothing. Then the cursor moves over the contiguous covered prefix, never over a gap (so a
-- --since beyond the cursor leaves the gap before it open).
DROP TRIGGER advance_cursor ON importer.runs;
DROP FUNCTION importer.advance_cursor();

CREATE FUNCTION importer.settle_run() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
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
    'Trigger: a run that finishes settles its coverage (all of its window when completed, its completed ranges when failed or cancelled, nothing when its window moved) and the list cursor advances over the contiguous covered prefix';

-- Not "UPDATE OF status": the status is changed by the finish_run trigger, not by the statement.
CREATE TRIGGER settle_run
    AFTER UPDATE ON importer.runs
    FOR EACH ROW
    WHEN (NEW.status IN ('completed', 'failed', 'cancelled')
          AND OLD.status IN ('planning', 'running'))
    EXECUTE FUNCTION importer.settle_run();

-- ---------------------------------------------------------------------------------------------
-- jobs: borrowed Mailchimp slots
-- ---------------------------------------------------------------------------------------------
ALTER TABLE importer.jobs
    ADD COLUMN extra_slots smallint NOT NULL DEFAULT 0 CHECK (extra_slots >= 0),
    ADD CONSTRAINT jobs_extra_slots_need_a_slot CHECK (extra_slots = 0 OR holds_slot);
COMMENT ON COLUMN importer.jobs.extra_slots IS
    'Mailchimp slots the holder borrowed beyond its own (a plan job probing its window in parallel); they count against accounts.max_concurrency like holds_slot';
COMMENT ON COLUMN importer.jobs.args IS
    'Kind-specific arguments: {"run_id"} for plan_run; {"list_id", "lo", "hi", "progress"} for import_window (progress is the range reader''s checkpoint)';
COMMENT ON COLUMN importer.jobs.kind IS
    'plan_run (count the window, split it into last_changed ranges, enqueue them) or import_window (read one range, map, post)';

CREATE OR REPLACE VIEW importer.queue_depth AS
SELECT j.account_id,
       a.name                                                       AS account,
       a.paused,
       s.state,
       count(*)                                                     AS jobs,
       coalesce(sum(1 + j.extra_slots) FILTER (WHERE j.holds_slot AND j.locked_until > now()), 0) AS slots,
       now() - min(j.created_at)                                    AS oldest_age,
       min(j.run_after)                                             AS next_run_after
  FROM importer.jobs j
  JOIN importer.accounts a ON a.id = j.account_id
 CROSS JOIN LATERAL (
       SELECT CASE
                  WHEN j.locked_until IS NULL AND j.run_after <= now() THEN 'waiting'
                  WHEN j.locked_until IS NULL THEN 'scheduled'
                  WHEN j.locked_until > now() THEN 'running'
                  ELSE 'expired'
              END AS state) s
 GROUP BY j.account_id, a.name, a.paused, s.state;

CREATE OR REPLACE VIEW importer.leases AS
SELECT j.locked_by                                                  AS worker,
       count(*)                                                     AS jobs,
       count(*) FILTER (WHERE j.locked_until > now())               AS live,
       coalesce(sum(1 + j.extra_slots) FILTER (WHERE j.holds_slot AND j.locked_until > now()), 0) AS slots,
       count(*) FILTER (WHERE j.locked_until <= now())              AS expired,
       count(DISTINCT j.account_id)                                 AS accounts,
       min(j.locked_until)                                          AS next_expiry
  FROM importer.jobs j
 WHERE j.locked_by IS NOT NULL
 GROUP BY j.locked_by;

-- ---------------------------------------------------------------------------------------------
-- rejected_records: a stable code, the detail, a bounded excerpt
-- ---------------------------------------------------------------------------------------------
ALTER TABLE importer.rejected_records
    ADD COLUMN code text,
    ADD COLUMN excerpt text,
    ALTER COLUMN member DROP NOT NULL;
UPDATE importer.rejected_records
   SET code = CASE WHEN reason ILIKE '%no id%' THEN 'missing_id'
                   WHEN reason ILIKE '%email%' THEN 'missing_email'
                   WHEN reason ILIKE '%status%' THEN 'invalid_status'
                   ELSE 'malformed_member' END,
       excerpt = left(member::text, 1024);
ALTER TABLE importer.rejected_records
    ALTER COLUMN code SET NOT NULL,
    ALTER COLUMN excerpt SET NOT NULL,
    ADD CONSTRAINT rejected_records_code_known CHECK (code IN (
        'missing_id', 'missing_email', 'invalid_status', 'invalid_field_type',
        'duplicate_field', 'invalid_utf8', 'malformed_member'));
COMMENT ON COLUMN importer.rejected_records.code IS
    'Stable reason code: missing_id, missing_email, invalid_status, invalid_field_type, duplicate_field, invalid_utf8, malformed_member (GROUP BY this)';
COMMENT ON COLUMN importer.rejected_records.reason IS 'The detail: what exactly was wrong (free text, for people)';
COMMENT ON COLUMN importer.rejected_records.excerpt IS 'The member as Mailchimp sent it, cut to 1 KiB (invalid UTF-8 replaced)';
COMMENT ON COLUMN importer.rejected_records.member IS 'The decoded member (mapped fields) when it could be decoded; NULL otherwise';
CREATE INDEX rejected_records_by_code ON importer.rejected_records (code);

-- ---------------------------------------------------------------------------------------------
-- range_lanes: a long range handed in part to an idle slot
-- ---------------------------------------------------------------------------------------------
CREATE TABLE importer.range_lanes (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id              bigint      NOT NULL REFERENCES importer.runs (id) ON DELETE CASCADE,
    start_offset        bigint      NOT NULL CHECK (start_offset >= 0),
    heads               bigint[],
    created_at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE importer.range_lanes IS
    'Lanes split off a range being read, so idle Mailchimp slots share it: the lane reads from start_offset on; the reader it was split from stops at the first of its heads';
COMMENT ON COLUMN importer.range_lanes.heads IS 'Keys of the lane''s first members, written after its first read (NULL before; empty when it found none)';
CREATE INDEX range_lanes_by_run ON importer.range_lanes (run_id);
