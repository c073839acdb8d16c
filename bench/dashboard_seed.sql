-- The dashboard benchmark's database: 1,000 accounts with 10 lists each (10,000 lists),
-- 100 finished runs per list (1,000,000 runs, 1 in 20 failed), 100,000 dead jobs spread over
-- the failed runs, 100,000 rejected records, 20,000 audit rows, 20 active runs with 2,000
-- queued jobs, and 3 hours of throughput. Every row satisfies the schema's checks.
INSERT INTO importer.accounts (name, mailchimp_key, mailchimp_key_hint, destination_url,
                               destination_key, destination_key_hint, max_concurrency)
SELECT format('client-%s', a), '\x00'::bytea, '…-us6', 'https://records.example.com',
       '\x00'::bytea, '…c0de', 10
  FROM generate_series(1, 1000) a;

INSERT INTO importer.lists (account_id, mailchimp_list_id, name, schedule, synced_until)
SELECT a.id, format('list%s', l), format('Audience %s', l), interval '1 hour',
       CASE WHEN l = 1 AND a.id % 10 = 0 THEN now() - interval '5 hours' ELSE now() - interval '20 minutes' END
  FROM importer.accounts a, generate_series(1, 10) l;

INSERT INTO importer.runs (list_id, account_id, mode, since, until, status, trigger, members_total,
                           jobs_total, jobs_done, jobs_dead, records_imported, records_rejected,
                           created_at, started_at, finished_at, error)
SELECT l.id, l.account_id, 'incremental', t - interval '1 hour', t,
       CASE WHEN r % 20 = 0 THEN 'failed' ELSE 'completed' END, 'admin', 1000,
       3, CASE WHEN r % 20 = 0 THEN 2 ELSE 3 END, CASE WHEN r % 20 = 0 THEN 1 ELSE 0 END,
       1000, r % 3, t, t + interval '1 second', t + interval '30 seconds',
       CASE WHEN r % 20 = 0 THEN '1 job dead' END
  FROM importer.lists l, generate_series(1, 100) r,
       LATERAL (SELECT now() - (101 - r) * interval '1 hour' - (l.id % 3600) * interval '1 second' AS t) w;

INSERT INTO importer.dead_jobs (id, kind, args, account_id, run_id, attempts, max_attempts,
                                last_error, errors, reason, created_at, died_at)
SELECT 1000000 + row_number() OVER (), 'import_window', '{"lo": 0, "hi": 1}', r.account_id, r.id, 5, 5,
       CASE (r.id % 4) WHEN 0 THEN 'destination returned 503 Service Unavailable'
                       WHEN 1 THEN 'Mailchimp returned 500 Internal Server Error'
                       WHEN 2 THEN 'destination timed out after 30s'
                       ELSE 'Mailchimp 401: API key invalid' END,
       '[{"attempt": 5, "at": "2026-12-01T00:00:00Z", "error": "destination returned 503", "kind": "retryable"}]',
       CASE WHEN r.id % 4 = 3 THEN 'permanent' ELSE 'exhausted' END, r.created_at, r.finished_at
  FROM (SELECT id, account_id, created_at, finished_at FROM importer.runs
         WHERE status = 'failed' ORDER BY id LIMIT 50000) r, generate_series(1, 2);

INSERT INTO importer.rejected_records (run_id, list_id, member_id, email, reason, code, excerpt, member, created_at)
SELECT r.id, r.list_id, md5(r.id::text), NULL, 'member has no email_address', 'missing_email',
       '{"id": "abc", "status": "subscribed"}', NULL, r.finished_at
  FROM (SELECT id, list_id, finished_at FROM importer.runs ORDER BY id LIMIT 100000) r;

INSERT INTO importer.audit_log (at, actor, via, action, objects, outcome, detail)
SELECT now() - i * interval '1 minute', CASE WHEN i % 2 = 0 THEN 'ana' ELSE 'cli:ops' END,
       CASE WHEN i % 2 = 0 THEN 'dashboard' ELSE 'cli' END, 'accounts.pause',
       jsonb_build_object('account_id', i % 1000 + 1), 'ok', 'account paused'
  FROM generate_series(1, 20000) i;

-- 20 active runs (on lists whose runs above are all finished) with their queued jobs.
WITH active AS (
    INSERT INTO importer.runs (list_id, account_id, mode, until, status, trigger, members_total,
                               jobs_total, jobs_pending, jobs_done, records_imported, started_at)
    SELECT l.id, l.account_id, 'full', now() - interval '1 minute', 'running', 'admin', 100000,
           101, 100, 1, 0, now() - interval '1 minute'
      FROM importer.lists l WHERE l.id % 500 = 7
    RETURNING id, account_id)
INSERT INTO importer.jobs (kind, args, account_id, run_id)
SELECT 'import_window', '{"lo": 0, "hi": 1}', a.account_id, a.id
  FROM active a, generate_series(1, 100);

INSERT INTO importer.records_per_minute (minute, backend, records)
SELECT date_trunc('minute', now()) - m * interval '1 minute', b, 2000 + (m * 37 % 900)
  FROM generate_series(0, 179) m, generate_series(1, 4) b;

ANALYZE;
