-- The scheduler: importer.tick(now) creates the due scheduled runs with their plan_run jobs.
--
-- Every worker calls it every few seconds (and the admin CLI on demand; pg_cron could too), so
-- there is no leader. It is idempotent and safe under concurrent calls because unique indexes
-- decide, not the callers: runs_one_per_slot (one run per list and slot) and
-- runs_one_active_per_list (a list with an active run gets no other). ON CONFLICT DO NOTHING makes
-- a concurrent caller that lost the race skip the row instead of failing, and rows are inserted
-- in list order so concurrent callers wait on each other in the same order (no deadlock).
--
-- Slots: every list has a fixed phase within its schedule, phase = ((id mod s) * 7919) mod s
-- seconds (s = the schedule in seconds; 7919 is prime, so consecutive ids spread evenly over the
-- period), and slot = phase + floor((now - phase) / s) * s. All workers compute the same slot
-- without talking to each other, and 10,000 hourly lists fall due a few per tick through the hour
-- instead of all at the top of it (which would start 10,000 runs, and their Mailchimp traffic,
-- in one tick). A new list's current slot is already due, so its first sync starts at once.
CREATE FUNCTION importer.tick(now timestamptz DEFAULT now())
RETURNS TABLE (run_id bigint, list_id bigint, account_id bigint, mode text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH due AS (
        SELECT l.id AS list_id,
               l.account_id,
               l.synced_until,
               to_timestamp((p.phase + floor((extract(epoch FROM tick.now) - p.phase) / p.period)
                                        * p.period)::float8) AS slot
          FROM importer.lists l
         CROSS JOIN LATERAL (
               SELECT floor(extract(epoch FROM l.schedule))::bigint AS period) sp
         CROSS JOIN LATERAL (
               SELECT sp.period, ((l.id % sp.period) * 7919) % sp.period AS phase) p
          JOIN importer.accounts a ON a.id = l.account_id
         WHERE l.enabled
           AND NOT a.paused
           -- a cursor ahead of now (reset by hand) would make an inverted window: wait for it
           AND (l.synced_until IS NULL OR l.synced_until <= date_trunc('second', tick.now))
           AND NOT EXISTS (SELECT 1 FROM importer.runs r
                            WHERE r.list_id = l.id AND r.status IN ('planning', 'running'))
    ),
    created AS (
        INSERT INTO importer.runs AS r
               (list_id, account_id, mode, since, until, trigger, scheduled_for, jobs_total, jobs_pending)
        SELECT d.list_id,
               d.account_id,
               CASE WHEN d.synced_until IS NULL THEN 'full' ELSE 'incremental' END,
               d.synced_until,
               date_trunc('second', tick.now),
               'schedule',
               d.slot,
               1,
               1
          FROM due d
         WHERE NOT EXISTS (SELECT 1 FROM importer.runs r
                            WHERE r.list_id = d.list_id AND r.scheduled_for = d.slot)
         ORDER BY d.list_id
        ON CONFLICT DO NOTHING
        RETURNING r.id, r.list_id, r.account_id, r.mode
    ),
    planned AS (
        INSERT INTO importer.jobs (kind, args, account_id, run_id)
        SELECT 'plan_run', jsonb_build_object('run_id', c.id), c.account_id, c.id
          FROM created c
    )
    SELECT c.id, c.list_id, c.account_id, c.mode FROM created c;

    IF FOUND THEN
        PERFORM pg_notify('importer_jobs', '');
    END IF;
END
$$;
COMMENT ON FUNCTION importer.tick(timestamptz) IS
    'Creates the due scheduled runs (one per enabled list of an unpaused account, per slot of its schedule at the list''s fixed phase, none while the list has an active run) with their plan_run jobs; idempotent and safe to call concurrently. Returns the runs it created.';
