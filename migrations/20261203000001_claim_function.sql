-- The claim in one round trip (issue 9: pickup latency and throughput). The claim was six round
-- trips from the worker: BEGIN, set_config, the reap, the account step, the job step, COMMIT.
-- As one PL/pgSQL function called in autocommit it is one, and its steps keep their semantics:
-- a VOLATILE function takes a new snapshot for each statement under READ COMMITTED, so the job
-- step still sees every commit of an earlier claimer of the accounts it has just locked.
--
-- Granting a lease is one function (importer.grant_leases), shared by the claim and the slot
-- handoff, which moves here too for that reason. Every function here is PL/pgSQL, never
-- LANGUAGE sql: PostgreSQL plans a SQL function's statements again on every call (~2.7 ms for
-- the reap alone, more than the claim's whole execution), while PL/pgSQL keeps its plans for
-- the session, as the worker's prepared statements did.

CREATE TYPE importer.leased_job AS (
    id           bigint,
    kind         text,
    args         jsonb,
    account_id   bigint,
    run_id       bigint,
    attempt      integer,
    lease_token  bigint,
    snoozes      integer,
    max_attempts integer,
    locked_until timestamptz
);
COMMENT ON TYPE importer.leased_job IS
    'A job just leased, as its holder reads it: attempt is this claim''s attempt number, (id, lease_token) the fence';

-- Dead-letters jobs whose lease expired on their last attempt (reason lease_expired), at most
-- batch of them; returns how many. Runs before jobs, in id order, like every path that counts
-- on runs.
CREATE FUNCTION importer.reap_expired(batch bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    reaped bigint;
BEGIN
    WITH expired AS (
        SELECT j.id, j.run_id FROM importer.jobs j
         WHERE j.locked_until <= now() AND j.attempts >= j.max_attempts
         LIMIT batch
    ),
    run_locks AS MATERIALIZED (
        SELECT r.id FROM importer.runs r
         WHERE r.id = ANY(ARRAY(SELECT run_id FROM expired WHERE run_id IS NOT NULL))
         ORDER BY r.id
           FOR NO KEY UPDATE
    ),
    victims AS (
        SELECT j.id FROM importer.jobs j
         WHERE j.id = ANY(ARRAY(SELECT id FROM expired))
           AND j.locked_until <= now() AND j.attempts >= j.max_attempts
           -- forces run_locks (the runs' locks) before the jobs' locks
           AND (SELECT count(*) FROM run_locks) >= 0
           FOR UPDATE SKIP LOCKED
    ),
    gone AS (
        DELETE FROM importer.jobs j WHERE j.id = ANY(ARRAY(SELECT id FROM victims))
        RETURNING j.*
    ),
    buried AS (
        INSERT INTO importer.dead_jobs
               (id, kind, args, account_id, run_id, attempts, max_attempts, last_error,
                errors, errors_total, reason, created_at)
        SELECT g.id, g.kind, g.args, g.account_id, g.run_id, g.attempts, g.max_attempts,
               'lease expired on the last attempt',
               importer.push_error(g.errors, jsonb_build_object(
                   'attempt', g.attempts, 'at', now(),
                   'error', format('lease expired on the last attempt (held by %s)', g.locked_by),
                   'kind', 'lease_expired')),
               g.errors_total + 1, 'lease_expired', g.created_at
          FROM gone g
    ),
    counted AS (
        UPDATE importer.runs r
           SET jobs_pending = r.jobs_pending - c.n,
               jobs_dead = r.jobs_dead + c.n
          FROM (SELECT run_id, count(*)::int AS n FROM gone
                 WHERE run_id IS NOT NULL GROUP BY run_id) c
         WHERE r.id = c.run_id
    )
    SELECT count(*) INTO reaped FROM gone;
    RETURN reaped;
END
$$;
COMMENT ON FUNCTION importer.reap_expired(bigint) IS
    'Dead-letters (reason lease_expired) at most batch jobs whose lease expired on their last attempt; returns how many. importer.claim calls it';

-- Leases the jobs ids to worker for lease_us microseconds, each with a Mailchimp slot: the one
-- definition of what granting a lease sets. Each job is re-checked on its newest row version
-- (waiting and due, or its lease expired with attempts left) and skipped when another
-- transaction holds it. A job whose lease expired records that in its error history.
CREATE FUNCTION importer.grant_leases(ids bigint[], worker text, lease_us bigint)
RETURNS SETOF importer.leased_job
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN QUERY
    UPDATE importer.jobs j
       SET attempts = j.attempts + 1,
           -- the fence: a fresh token, never reused for the life of the job id
           lease_token = nextval('importer.lease_tokens'),
           locked_by = worker,
           locked_until = now() + lease_us * interval '1 microsecond',
           leased_at = now(),
           holds_slot = true,
           last_error = CASE WHEN j.locked_until IS NULL THEN j.last_error
                             ELSE 'lease expired before the job finished' END,
           errors = CASE WHEN j.locked_until IS NULL THEN j.errors
                         ELSE importer.push_error(j.errors, jsonb_build_object(
                                  'attempt', j.attempts, 'at', now(),
                                  'error', format('lease expired before the job finished (held by %s)', j.locked_by),
                                  'kind', 'lease_expired')) END,
           errors_total = j.errors_total + CASE WHEN j.locked_until IS NULL THEN 0 ELSE 1 END
      FROM (SELECT l.id FROM importer.jobs l
             WHERE l.id = ANY(ids)
               AND ((l.locked_until IS NULL AND l.run_after <= now())
                    OR (l.locked_until <= now() AND l.attempts < l.max_attempts))
               FOR UPDATE SKIP LOCKED) lk
     WHERE j.id = lk.id
    RETURNING j.id, j.kind, j.args, j.account_id, j.run_id, j.attempts, j.lease_token, j.snoozes,
              j.max_attempts, j.locked_until;
END
$$;
COMMENT ON FUNCTION importer.grant_leases(bigint[], text, bigint) IS
    'Leases the claimable ones of ids to worker for lease_us microseconds, each holding a Mailchimp slot (attempt counted, fresh lease token); the claim and the slot handoff call it';

-- The claim: at most claim_limit jobs leased to worker for lease_us microseconds, exactly
-- within each account's max_concurrency (an expired slot counts for grace_us more). The
-- algorithm is in importer-core/src/queue/leasing.rs's module doc; its steps are:
--  1. reap exhausted expired leases;
--  2. lock the accounts this claim may serve, FOR NO KEY UPDATE SKIP LOCKED;
--  3. in a new statement (a new snapshot, taken after those locks), count each locked
--     account's live slots and lease at most max_concurrency - live of its jobs, interleaving
--     accounts.
-- JIT is off: the planner's cost estimates pass jit_above_cost on a large jobs table, and
-- compiling took ~1 s for statements that run in milliseconds. It must run under READ COMMITTED
-- (a new snapshot per statement), which the worker's autocommit call does. synchronous_commit is
-- off for the caller's transaction (the call's own, in autocommit): a claim lost in a crash of PostgreSQL itself leaves its
-- jobs waiting, and an idle worker picks a job up one disk flush sooner.
CREATE FUNCTION importer.claim(worker text, claim_limit bigint, lease_us bigint, grace_us bigint)
RETURNS SETOF importer.leased_job
LANGUAGE plpgsql VOLATILE
SET jit = off
AS $$
DECLARE
    -- accounts visited by the skip scan: a claim costs the same with 10 or 10,000 busy accounts
    visit constant bigint := least(2 * claim_limit + 32, 4096);
    locked bigint[];
BEGIN
    IF claim_limit <= 0 THEN
        RETURN;
    END IF;
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM importer.reap_expired(1000);

    locked := ARRAY(
        WITH RECURSIVE pivot AS MATERIALIZED (
            SELECT floor(random() * (coalesce((SELECT max(a.id) FROM importer.accounts a), 0) + 1))::bigint AS id
        ),
        -- distinct accounts with waiting jobs, a skip scan over jobs_waiting (one index probe
        -- each): at most visit of them, from a random pivot upwards ...
        upper_part(account_id, n) AS (
            (SELECT j.account_id, 1 FROM importer.jobs j
              WHERE j.locked_until IS NULL AND j.account_id >= (SELECT p.id FROM pivot p)
              ORDER BY j.account_id LIMIT 1)
            UNION ALL
            SELECT (SELECT j.account_id FROM importer.jobs j
                     WHERE j.locked_until IS NULL AND j.account_id > w.account_id
                     ORDER BY j.account_id LIMIT 1),
                   w.n + 1
              FROM upper_part w
             WHERE w.account_id IS NOT NULL AND w.n < visit
        ),
        -- ... then wrapping around below the pivot
        lower_part(account_id, n) AS (
            (SELECT j.account_id, 1 FROM importer.jobs j
              WHERE j.locked_until IS NULL AND j.account_id < (SELECT p.id FROM pivot p)
              ORDER BY j.account_id LIMIT 1)
            UNION ALL
            SELECT (SELECT j.account_id FROM importer.jobs j
                     WHERE j.locked_until IS NULL AND j.account_id > w.account_id
                       AND j.account_id < (SELECT p.id FROM pivot p)
                     ORDER BY j.account_id LIMIT 1),
                   w.n + 1
              FROM lower_part w
             WHERE w.account_id IS NOT NULL
               AND w.n < visit - (SELECT count(u.account_id) FROM upper_part u)
        ),
        waiting AS (
            SELECT u.account_id FROM upper_part u
            UNION ALL SELECT l.account_id FROM lower_part l
        ),
        candidates AS MATERIALIZED (
            SELECT w.account_id FROM waiting w
             WHERE w.account_id IS NOT NULL
               -- the account's earliest waiting job is due (an index probe on jobs_waiting)
               AND (SELECT j.run_after FROM importer.jobs j
                     WHERE j.account_id = w.account_id AND j.locked_until IS NULL
                     ORDER BY j.run_after LIMIT 1) <= now()
            UNION
            SELECT j.account_id FROM importer.jobs j
             WHERE j.locked_until <= now() AND j.attempts < j.max_attempts
        ),
        -- what each candidate could give this claim: its free slots, at most its due jobs
        offers AS MATERIALIZED (
            SELECT a.id, a.last_claimed_at,
                   least(a.max_concurrency
                         - (SELECT coalesce(sum(1 + s.extra_slots), 0) FROM importer.jobs s
                             WHERE s.account_id = c.account_id AND s.holds_slot
                               AND s.locked_until > now() - grace_us * interval '1 microsecond'),
                         -- due jobs, counted in two index ranges (jobs_waiting, jobs_leased),
                         -- each in its index's order so that the planner walks the index: one
                         -- OR over both, or no order, ran as a sequential scan per account
                         (SELECT count(*) FROM (
                              SELECT 1 FROM importer.jobs j
                               WHERE j.account_id = c.account_id
                                 AND j.locked_until IS NULL AND j.run_after <= now()
                               ORDER BY j.run_after, j.id
                               LIMIT claim_limit) d)
                         + (SELECT count(*) FROM (
                              SELECT 1 FROM importer.jobs j
                               WHERE j.account_id = c.account_id
                                 AND j.locked_until <= now() AND j.attempts < j.max_attempts
                               ORDER BY j.locked_until
                               LIMIT claim_limit) e)) AS offer
              FROM candidates c
              JOIN importer.accounts a ON a.id = c.account_id
             WHERE NOT a.paused
        ),
        -- least recently served first, only as many accounts as the limit needs: concurrent
        -- claimers then lock different accounts instead of one claimer locking them all
        needed AS (
            SELECT o.id FROM (
                SELECT f.id, f.offer,
                       sum(f.offer) OVER (ORDER BY f.last_claimed_at NULLS FIRST, f.id) AS running
                  FROM offers f WHERE f.offer > 0) o
             WHERE o.running - o.offer < claim_limit
        )
        -- lock that many, skipping accounts another claimer holds right now (LIMIT applies
        -- after SKIP LOCKED), so concurrent claimers take the next accounts instead of none;
        -- NO KEY so that inserting jobs (their foreign key takes KEY SHARE) is not blocked
        SELECT a.id
          FROM importer.accounts a
          JOIN offers o ON o.id = a.id AND o.offer > 0
         ORDER BY a.last_claimed_at NULLS FIRST, a.id
         LIMIT (SELECT count(*) FROM needed)
           FOR NO KEY UPDATE OF a SKIP LOCKED
    );
    IF cardinality(locked) = 0 THEN
        RETURN;
    END IF;

    UPDATE importer.accounts a SET last_claimed_at = now() WHERE a.id = ANY(locked);

    -- step 3, a new statement and so a new snapshot: it sees every earlier claimer's commit
    RETURN QUERY
    SELECT g.* FROM importer.grant_leases(ARRAY(
        WITH acc AS MATERIALIZED (
            SELECT a.id, u.ord,
                   a.max_concurrency
                   - (SELECT coalesce(sum(1 + s.extra_slots), 0) FROM importer.jobs s
                       WHERE s.account_id = a.id AND s.holds_slot
                         AND s.locked_until > now() - grace_us * interval '1 microsecond')::int AS free
              FROM unnest(locked) WITH ORDINALITY AS u(id, ord)
              JOIN importer.accounts a ON a.id = u.id
        ),
        candidates AS (
            SELECT c.id, acc.ord, acc.free,
                   row_number() OVER (PARTITION BY acc.id ORDER BY c.prio, c.at, c.id) AS rn
              FROM acc
             CROSS JOIN LATERAL (
                   -- expired leases first, then waiting jobs by run_after
                   (SELECT j.id, 0 AS prio, j.locked_until AS at
                      FROM importer.jobs j
                     WHERE j.account_id = acc.id AND j.locked_until <= now()
                       AND j.attempts < j.max_attempts
                     ORDER BY j.locked_until
                     LIMIT least(greatest(acc.free, 0), claim_limit))
                   UNION ALL
                   (SELECT j.id, 1 AS prio, j.run_after AS at
                      FROM importer.jobs j
                     WHERE j.account_id = acc.id AND j.locked_until IS NULL
                       AND j.run_after <= now()
                     ORDER BY j.run_after, j.id
                     LIMIT least(greatest(acc.free, 0), claim_limit))
             ) c
             WHERE acc.free > 0
        )
        -- round robin over the accounts, in the order they were locked
        SELECT c.id FROM candidates c WHERE c.rn <= c.free ORDER BY c.rn, c.ord LIMIT claim_limit
    ), worker, lease_us) g
    ORDER BY g.id;
END
$$;
COMMENT ON FUNCTION importer.claim(text, bigint, bigint, bigint) IS
    'Leases at most claim_limit claimable jobs to worker for lease_us microseconds, exactly within each account''s max_concurrency (expired slots count for grace_us more); under READ COMMITTED only: its steps rely on a new snapshot per statement';

-- The slot handoff: the fence (job_id, token) gives its Mailchimp slot straight to the next
-- waiting job of its account, leased to worker, unless the account is paused or its other live
-- slots already reach max_concurrency (an operator may just have lowered it). released is false
-- when the fence held no slot; next is the leased job, or NULL. No account lock is needed: a
-- one-for-one swap cannot exceed the cap, whatever concurrent claims do.
CREATE FUNCTION importer.handoff_slot(job_id bigint, token bigint, worker text, lease_us bigint,
                                      grace_us bigint, OUT released boolean, OUT next jsonb)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    account bigint;
    candidate bigint;
    room boolean;
BEGIN
    UPDATE importer.jobs j SET holds_slot = false, extra_slots = 0
     WHERE j.id = job_id AND j.lease_token = token AND j.locked_until IS NOT NULL AND j.holds_slot
    RETURNING j.account_id INTO account;
    released := FOUND;
    IF NOT released THEN
        RETURN;
    END IF;
    -- live slots of the account, ours no longer among them (as the claim counts them)
    SELECT a.max_concurrency > (SELECT coalesce(sum(1 + s.extra_slots), 0) FROM importer.jobs s
                                 WHERE s.account_id = account AND s.holds_slot
                                   AND s.locked_until > now() - grace_us * interval '1 microsecond')
      INTO room
      FROM importer.accounts a
     WHERE a.id = account AND NOT a.paused;
    IF room IS NOT TRUE THEN
        RETURN;
    END IF;
    SELECT j.id INTO candidate
      FROM importer.jobs j
     WHERE j.account_id = account AND j.locked_until IS NULL AND j.run_after <= now()
     ORDER BY j.run_after, j.id
     LIMIT 1
       FOR UPDATE SKIP LOCKED;
    IF candidate IS NULL THEN
        RETURN;
    END IF;
    SELECT to_jsonb(g) INTO next FROM importer.grant_leases(ARRAY[candidate], worker, lease_us) g;
END
$$;
COMMENT ON FUNCTION importer.handoff_slot(bigint, bigint, text, bigint, bigint) IS
    'Releases the slot of the lease (job_id, token) and, in the same transaction, leases the next waiting job of its account to worker with that slot, unless the account is paused or at its cap without it';
