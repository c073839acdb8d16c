-- The run finishing rule, in one place.
--
-- Every path that counts a job on its run (complete, complete_many, dead-letter, the reaping of
-- expired leases, requeue, cancel) only adjusts the counters. These triggers turn "the update
-- that brought jobs_pending to 0 on an active run" into its outcome, exactly once: row locks
-- serialise concurrent updates of one run, so exactly one of them sees pending go 1 -> 0.
--   completed when no job of the run is dead, and then the list cursor moves to
--             greatest(synced_until, until) (never backwards: an older run finishing late
--             cannot undo a newer one);
--   failed    otherwise; the cursor stays, so the next run covers the window again.
-- Cancel sets status = 'cancelled' itself, which the WHEN clause leaves alone.

CREATE FUNCTION importer.finish_run() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.jobs_dead = 0 THEN
        NEW.status := 'completed';
        NEW.error := NULL;
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
    'Trigger: the update that brings an active run''s jobs_pending to 0 finishes it (completed when no job died, else failed)';

CREATE TRIGGER finish_run
    BEFORE UPDATE OF jobs_pending ON importer.runs
    FOR EACH ROW
    WHEN (NEW.jobs_pending = 0 AND OLD.jobs_pending > 0 AND NEW.status IN ('planning', 'running'))
    EXECUTE FUNCTION importer.finish_run();

CREATE FUNCTION importer.advance_cursor() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE importer.lists
       SET synced_until = greatest(synced_until, NEW.until)
     WHERE id = NEW.list_id;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION importer.advance_cursor() IS
    'Trigger: a run that becomes completed moves its list''s cursor to greatest(synced_until, until), never backwards';

-- Not "UPDATE OF status": the status is changed by the finish_run trigger, not by the statement.
CREATE TRIGGER advance_cursor
    AFTER UPDATE ON importer.runs
    FOR EACH ROW
    WHEN (NEW.status = 'completed' AND OLD.status IS DISTINCT FROM 'completed')
    EXECUTE FUNCTION importer.advance_cursor();
