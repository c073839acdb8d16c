-- Retention: finished runs, dead jobs, rejected records and audit rows older than the ages in
-- importer.settings are deleted in bounded batches by importer.prune, which every worker calls
-- after its tick.

ALTER TABLE importer.settings
    ADD COLUMN keep_runs interval NOT NULL DEFAULT interval '90 days'
        CHECK (keep_runs >= interval '1 day'),
    ADD COLUMN keep_dead_jobs interval NOT NULL DEFAULT interval '30 days'
        CHECK (keep_dead_jobs >= interval '1 hour'),
    ADD COLUMN keep_rejected_records interval NOT NULL DEFAULT interval '30 days'
        CHECK (keep_rejected_records >= interval '1 hour'),
    ADD COLUMN keep_audit_log interval NOT NULL DEFAULT interval '365 days'
        CHECK (keep_audit_log >= interval '1 day');
COMMENT ON COLUMN importer.settings.keep_runs IS
    'Finished runs older than this (by finished_at) are pruned, with their dead jobs and rejected records; a list''s newest completed run is always kept';
COMMENT ON COLUMN importer.settings.keep_dead_jobs IS 'Dead jobs older than this (by died_at) are pruned';
COMMENT ON COLUMN importer.settings.keep_rejected_records IS 'Rejected records older than this are pruned';
COMMENT ON COLUMN importer.settings.keep_audit_log IS 'Audit log rows older than this are pruned';

-- Each prune is an index range from the oldest row.
CREATE INDEX runs_finished ON importer.runs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX rejected_records_by_created ON importer.rejected_records (created_at);
CREATE INDEX audit_log_by_at ON importer.audit_log (at);

-- SECURITY DEFINER: workers call it, and may delete old audit rows only through it.
CREATE FUNCTION importer.prune(batch integer DEFAULT 1000)
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
    'Deletes at most batch rows of each kind past its age in importer.settings (finished runs, keeping each list''s newest completed one; dead jobs; rejected records; audit rows; throughput minutes older than 2 days); returns what it deleted. Safe to call concurrently (SKIP LOCKED); workers call it after each tick';
