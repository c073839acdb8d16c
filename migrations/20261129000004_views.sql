-- Views for people: the questions an operator asks, answerable with plain SQL.

CREATE VIEW importer.queue_depth AS
SELECT j.account_id,
       a.name                                                       AS account,
       a.paused,
       s.state,
       count(*)                                                     AS jobs,
       count(*) FILTER (WHERE j.holds_slot AND j.locked_until > now()) AS slots,
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
COMMENT ON VIEW importer.queue_depth IS
    'Jobs per account and state: waiting (claimable now), scheduled (run_after in the future: backoff, snooze), running (live lease), expired (lease passed, will be reclaimed or dead-lettered)';
COMMENT ON COLUMN importer.queue_depth.state IS 'waiting, scheduled, running or expired (see the view comment)';
COMMENT ON COLUMN importer.queue_depth.slots IS 'Jobs holding a live Mailchimp slot (at most accounts.max_concurrency)';
COMMENT ON COLUMN importer.queue_depth.oldest_age IS 'Age of the oldest job in this state, since it was enqueued';
COMMENT ON COLUMN importer.queue_depth.next_run_after IS 'Earliest run_after in this state (for scheduled: when the next job becomes claimable)';

CREATE VIEW importer.run_progress AS
SELECT r.id                                                         AS run_id,
       r.list_id,
       l.mailchimp_list_id,
       l.name                                                       AS list_name,
       r.account_id,
       a.name                                                       AS account,
       r.status,
       r.mode,
       r.trigger,
       r.since,
       r.until,
       r.members_total,
       r.jobs_total,
       r.jobs_done,
       r.jobs_pending,
       r.jobs_dead,
       r.jobs_cancelled,
       r.records_imported,
       r.records_rejected,
       round(100.0 * r.jobs_done / nullif(r.jobs_total, 0), 1)      AS percent,
       coalesce(r.finished_at, now()) - r.created_at                AS elapsed,
       round(r.records_imported
             / greatest(extract(epoch FROM coalesce(r.finished_at, now())
                                           - coalesce(r.started_at, r.created_at)), 0.001), 1)
                                                                    AS records_per_second,
       r.created_at,
       r.started_at,
       r.finished_at,
       r.error
  FROM importer.runs r
  JOIN importer.lists l ON l.id = r.list_id
  JOIN importer.accounts a ON a.id = r.account_id;
COMMENT ON VIEW importer.run_progress IS 'How far each run is: its window, job counters, records, percent done, elapsed time and throughput';
COMMENT ON COLUMN importer.run_progress.percent IS 'Jobs done / jobs total, in percent (the plan job counts as one job)';
COMMENT ON COLUMN importer.run_progress.elapsed IS 'From creation to finish (or to now while active), queueing included';
COMMENT ON COLUMN importer.run_progress.records_per_second IS 'Records imported per second since the import began (started_at)';

CREATE VIEW importer.dead_jobs_by_error AS
SELECT d.last_error                                                 AS error,
       count(*)                                                     AS jobs,
       count(DISTINCT d.run_id)                                     AS runs,
       count(DISTINCT d.account_id)                                 AS accounts,
       array_agg(DISTINCT d.reason)                                 AS reasons,
       min(d.died_at)                                               AS first_died_at,
       max(d.died_at)                                               AS last_died_at,
       min(d.id)                                                    AS example_job_id
  FROM importer.dead_jobs d
 GROUP BY d.last_error;
COMMENT ON VIEW importer.dead_jobs_by_error IS
    'Which errors killed jobs: dead jobs grouped by their last error, with how many runs and accounts they hit and when (requeue with importer-admin dead requeue --error TEXT)';
COMMENT ON COLUMN importer.dead_jobs_by_error.reasons IS 'Why they died: exhausted, permanent and/or lease_expired';
COMMENT ON COLUMN importer.dead_jobs_by_error.runs IS 'Distinct runs the error hit (each of them is failed or still running)';
COMMENT ON COLUMN importer.dead_jobs_by_error.example_job_id IS 'One dead job with this error, to inspect its error history';

CREATE VIEW importer.lists_behind_schedule AS
SELECT l.id                                                         AS list_id,
       l.mailchimp_list_id,
       l.name                                                       AS list_name,
       l.account_id,
       a.name                                                       AS account,
       a.paused                                                     AS account_paused,
       l.schedule,
       l.synced_until,
       now() - l.synced_until                                       AS lag,
       last_completed.finished_at                                   AS last_completed_at,
       active.id                                                    AS active_run_id,
       active.status                                                AS active_run_status
  FROM importer.lists l
  JOIN importer.accounts a ON a.id = l.account_id
  LEFT JOIN LATERAL (
       SELECT r.finished_at
         FROM importer.runs r
        WHERE r.list_id = l.id AND r.status = 'completed'
        ORDER BY r.created_at DESC
        LIMIT 1) last_completed ON true
  LEFT JOIN importer.runs active
         ON active.list_id = l.id AND active.status IN ('planning', 'running')
 WHERE l.enabled
   AND (l.synced_until IS NULL OR l.synced_until < now() - 2 * l.schedule);
COMMENT ON VIEW importer.lists_behind_schedule IS
    'Enabled lists never synced, or whose cursor lags more than two schedule periods (at least one scheduled sync missed or failed; one period plus the run time is normal)';
COMMENT ON COLUMN importer.lists_behind_schedule.lag IS 'now() - synced_until: how old the newest delivered change may be';
COMMENT ON COLUMN importer.lists_behind_schedule.account_paused IS 'A paused account gets no scheduled runs: its lists fall behind by design';
COMMENT ON COLUMN importer.lists_behind_schedule.active_run_id IS 'The run in progress for this list, if any';

CREATE VIEW importer.leases AS
SELECT j.locked_by                                                  AS worker,
       count(*)                                                     AS jobs,
       count(*) FILTER (WHERE j.locked_until > now())               AS live,
       count(*) FILTER (WHERE j.holds_slot AND j.locked_until > now()) AS slots,
       count(*) FILTER (WHERE j.locked_until <= now())              AS expired,
       count(DISTINCT j.account_id)                                 AS accounts,
       min(j.locked_until)                                          AS next_expiry
  FROM importer.jobs j
 WHERE j.locked_by IS NOT NULL
 GROUP BY j.locked_by;
COMMENT ON VIEW importer.leases IS 'Jobs held per worker: live leases, Mailchimp slots, expired leases (a worker that died shows only expired ones)';
COMMENT ON COLUMN importer.leases.live IS 'Jobs whose lease has not expired';
COMMENT ON COLUMN importer.leases.slots IS 'Live jobs holding a Mailchimp slot (a request may be in flight)';
COMMENT ON COLUMN importer.leases.expired IS 'Jobs whose lease expired: the worker stalled or died; the next claim takes them over';
COMMENT ON COLUMN importer.leases.next_expiry IS 'Earliest locked_until among the worker''s jobs';
