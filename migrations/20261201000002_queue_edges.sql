-- Queue edges (issue 9): fences unique for the life of a job, bounded snoozes and error
-- histories.

-- Fences. A claim draws a new lease token from this sequence; every move of a holder is
-- conditioned on (job id, lease token). Attempts can go down (snooze, release, requeue hand
-- them back), so (job id, attempt) could be issued twice and a stale holder could act on the new
-- holder's lease (ABA); a token never repeats.
CREATE SEQUENCE importer.lease_tokens AS bigint;
COMMENT ON SEQUENCE importer.lease_tokens IS 'Source of jobs.lease_token: one value per lease, never reused';

ALTER TABLE importer.jobs
    ADD COLUMN lease_token      bigint,
    ADD COLUMN snoozes          integer     NOT NULL DEFAULT 0 CHECK (snoozes >= 0),
    ADD COLUMN first_snoozed_at timestamptz,
    ADD COLUMN errors_total     integer     NOT NULL DEFAULT 0 CHECK (errors_total >= 0);
COMMENT ON COLUMN importer.jobs.lease_token IS 'The current lease''s token (from importer.lease_tokens), NULL when not leased; the holder''s fence is (id, lease_token)';
COMMENT ON COLUMN importer.jobs.snoozes IS 'Snoozes since the job last spent an attempt; drives the snooze backoff, and past the limit a snooze becomes a retry';
COMMENT ON COLUMN importer.jobs.first_snoozed_at IS 'When the current series of snoozes began (NULL: none since the last attempt was spent)';
COMMENT ON COLUMN importer.jobs.errors_total IS 'Entries ever added to errors; errors itself keeps only the newest (importer.push_error)';

ALTER TABLE importer.dead_jobs
    ADD COLUMN errors_total integer NOT NULL DEFAULT 0 CHECK (errors_total >= 0);
COMMENT ON COLUMN importer.dead_jobs.errors_total IS 'Entries ever added to errors; errors keeps only the newest (importer.push_error)';

-- The one home of "error histories stay bounded": every writer of jobs.errors goes through it.
CREATE FUNCTION importer.push_error(history jsonb, entry jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_agg(e ORDER BY n), '[]'::jsonb)
      FROM (SELECT e, n, count(*) OVER () AS total
              FROM jsonb_array_elements(coalesce(history, '[]'::jsonb) || jsonb_build_array(entry))
                   WITH ORDINALITY AS h(e, n)) t
     WHERE n > total - 20
$$;
COMMENT ON FUNCTION importer.push_error(jsonb, jsonb) IS
    'Appends entry to an error history, keeping the newest 20 entries (errors_total counts them all)';

-- A job kind that does nothing: benchmarks push it through the real worker to measure the
-- queue itself (claim, dispatch, completion) without any HTTP.
ALTER TABLE importer.jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE importer.jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('plan_run', 'import_window', 'noop'));
COMMENT ON COLUMN importer.jobs.kind IS 'plan_run (count the window, enqueue its import_window jobs), import_window (read a range, map, post) or noop (does nothing: benchmarks of the queue)';

