-- mailchimp-importer schema: the queue, the schedule, run bookkeeping and the dead-letter store.
-- This schema is a public interface: operators read it with psql. Every table and every
-- non-obvious column carries a COMMENT.

CREATE SCHEMA IF NOT EXISTS importer;
COMMENT ON SCHEMA importer IS 'mailchimp-importer: accounts, lists, runs, the job queue and the dead-letter store';

-- ---------------------------------------------------------------------------------------------
-- accounts
-- ---------------------------------------------------------------------------------------------
CREATE TABLE importer.accounts (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                text        NOT NULL UNIQUE CHECK (name <> ''),
    mailchimp_key       bytea       NOT NULL,
    mailchimp_key_hint  text        NOT NULL,
    mailchimp_base_url  text,
    destination_url     text        NOT NULL,
    destination_key     bytea       NOT NULL,
    destination_key_hint text       NOT NULL,
    max_concurrency     integer     NOT NULL DEFAULT 10 CHECK (max_concurrency BETWEEN 1 AND 1000),
    paused              boolean     NOT NULL DEFAULT false,
    last_claimed_at     timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE importer.accounts IS 'A client: its Mailchimp credentials, its destination and its Mailchimp concurrency budget';
COMMENT ON COLUMN importer.accounts.mailchimp_key IS 'Mailchimp API key, encrypted (ChaCha20-Poly1305, nonce || ciphertext) with IMPORTER_SECRET_KEY';
COMMENT ON COLUMN importer.accounts.mailchimp_key_hint IS 'Redacted form of the key safe to display, e.g. …-us6';
COMMENT ON COLUMN importer.accounts.mailchimp_base_url IS 'Overrides https://<dc>.api.mailchimp.com/3.0 (used for the simulator); NULL = derived from the key';
COMMENT ON COLUMN importer.accounts.destination_url IS 'Base URL of the records API; records are POSTed to {destination_url}/record';
COMMENT ON COLUMN importer.accounts.destination_key IS 'Destination API key, encrypted like mailchimp_key';
COMMENT ON COLUMN importer.accounts.destination_key_hint IS 'Redacted form of the destination key safe to display';
COMMENT ON COLUMN importer.accounts.max_concurrency IS 'Most Mailchimp requests in flight for this account across all workers (Mailchimp allows 10 per key)';
COMMENT ON COLUMN importer.accounts.paused IS 'A paused account gets no scheduled runs and none of its jobs are claimed';
COMMENT ON COLUMN importer.accounts.last_claimed_at IS 'When a worker last claimed jobs of this account; claims visit accounts least recently served first';

-- ---------------------------------------------------------------------------------------------
-- lists
-- ---------------------------------------------------------------------------------------------
CREATE TABLE importer.lists (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id          bigint      NOT NULL REFERENCES importer.accounts (id) ON DELETE CASCADE,
    mailchimp_list_id   text        NOT NULL CHECK (mailchimp_list_id ~ '^[A-Za-z0-9]{1,64}$'),
    name                text,
    schedule            interval    NOT NULL DEFAULT interval '1 hour' CHECK (schedule >= interval '1 minute'),
    enabled             boolean     NOT NULL DEFAULT true,
    synced_until        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, mailchimp_list_id),
    UNIQUE (id, account_id)  -- target of runs' foreign key, which so checks the run's account too
);
COMMENT ON TABLE importer.lists IS 'A Mailchimp audience of an account, synced on its schedule';
COMMENT ON COLUMN importer.lists.mailchimp_list_id IS 'Mailchimp audience id (the {list_id} in /lists/{list_id}/members)';
COMMENT ON COLUMN importer.lists.schedule IS 'How often a scheduled run is created: once per period, at a fixed per-list phase within it (see importer.tick)';
COMMENT ON COLUMN importer.lists.enabled IS 'A disabled list gets no scheduled runs (an operator may still start one)';
COMMENT ON COLUMN importer.lists.synced_until IS 'Cursor: every member changed before this instant has been delivered. NULL = never synced, next run is full';

-- ---------------------------------------------------------------------------------------------
-- runs
-- ---------------------------------------------------------------------------------------------
CREATE TABLE importer.runs (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    list_id             bigint      NOT NULL,
    account_id          bigint      NOT NULL,
    mode                text        NOT NULL CHECK (mode IN ('full', 'incremental')),
    since               timestamptz,
    until               timestamptz NOT NULL,
    status              text        NOT NULL DEFAULT 'planning'
                                    CHECK (status IN ('planning', 'running', 'completed', 'failed', 'cancelled')),
    trigger             text        NOT NULL CHECK (trigger IN ('schedule', 'admin')),
    scheduled_for       timestamptz,
    members_total       bigint,
    jobs_total          integer     NOT NULL DEFAULT 0 CHECK (jobs_total >= 0),
    jobs_pending        integer     NOT NULL DEFAULT 0 CHECK (jobs_pending >= 0),
    jobs_done           integer     NOT NULL DEFAULT 0 CHECK (jobs_done >= 0),
    jobs_dead           integer     NOT NULL DEFAULT 0 CHECK (jobs_dead >= 0),
    jobs_cancelled      integer     NOT NULL DEFAULT 0 CHECK (jobs_cancelled >= 0),
    records_imported    bigint      NOT NULL DEFAULT 0,
    records_rejected    bigint      NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    error               text,
    CHECK (since IS NULL OR since <= until),
    CHECK ((mode = 'full') = (since IS NULL)),
    CHECK ((trigger = 'schedule') = (scheduled_for IS NOT NULL)),
    CHECK ((status IN ('planning', 'running')) = (finished_at IS NULL)),
    -- One foreign key checks both the list and that the run's account is the list's account
    -- (one check per inserted run instead of two: importer.tick inserts thousands at once).
    FOREIGN KEY (list_id, account_id) REFERENCES importer.lists (id, account_id) ON DELETE CASCADE,
    -- Nothing is lost: every job a run ever had is pending, done, dead or cancelled.
    CONSTRAINT runs_jobs_add_up CHECK (jobs_pending + jobs_done + jobs_dead + jobs_cancelled = jobs_total)
) WITH (fillfactor = 70);  -- counters change on every completion: leave room for HOT updates
COMMENT ON TABLE importer.runs IS 'One sync of one list over the window [since, until) of last_changed';
COMMENT ON COLUMN importer.runs.mode IS 'full (no lower bound, first sync or forced) or incremental (since the list cursor)';
COMMENT ON COLUMN importer.runs.since IS 'Lower bound (inclusive) of last_changed; NULL for a full run';
COMMENT ON COLUMN importer.runs.until IS 'Upper bound (exclusive) of last_changed, frozen (truncated to the second) when the run is created';
COMMENT ON COLUMN importer.runs.status IS 'planning -> running -> completed | failed; cancelled by an operator. failed -> running again when its dead jobs are requeued';
COMMENT ON COLUMN importer.runs.trigger IS 'schedule (created by importer.tick) or admin (created by an operator)';
COMMENT ON COLUMN importer.runs.scheduled_for IS 'The schedule slot this run fills; unique per list, which makes tick idempotent';
COMMENT ON COLUMN importer.runs.members_total IS 'Members Mailchimp counted in the window when the run was planned';
COMMENT ON COLUMN importer.runs.jobs_pending IS 'Jobs of this run still in importer.jobs; the completion that brings it to 0 finishes the run';
COMMENT ON COLUMN importer.runs.jobs_dead IS 'Jobs of this run currently in importer.dead_jobs (requeue decrements it)';
COMMENT ON COLUMN importer.runs.jobs_total IS 'Jobs this run ever had: its plan_run job plus the import_window jobs the plan enqueued';
COMMENT ON COLUMN importer.runs.jobs_done IS 'Jobs of this run completed (deleted from importer.jobs)';
COMMENT ON COLUMN importer.runs.jobs_cancelled IS 'Jobs removed from the queue when the run was cancelled';
COMMENT ON COLUMN importer.runs.records_imported IS 'Records the destination accepted for this run';
COMMENT ON COLUMN importer.runs.records_rejected IS 'Members that could not be mapped (see importer.rejected_records)';
COMMENT ON COLUMN importer.runs.started_at IS 'When the plan job finished counting the window and the import began';
COMMENT ON COLUMN importer.runs.finished_at IS 'When the run became completed, failed or cancelled (NULL while active)';
COMMENT ON COLUMN importer.runs.error IS 'Why the run failed or was cancelled';
COMMENT ON CONSTRAINT runs_jobs_add_up ON importer.runs IS 'Nothing is lost: jobs_total = pending + done + dead + cancelled';

CREATE UNIQUE INDEX runs_one_active_per_list ON importer.runs (list_id) WHERE status IN ('planning', 'running');
COMMENT ON INDEX importer.runs_one_active_per_list IS 'Invariant: at most one active (planning or running) run per list';
CREATE UNIQUE INDEX runs_one_per_slot ON importer.runs (list_id, scheduled_for) WHERE scheduled_for IS NOT NULL;
CREATE INDEX runs_by_status ON importer.runs (status, created_at);
COMMENT ON INDEX importer.runs_one_per_slot IS 'One scheduled run per list and schedule slot: importer.tick is idempotent';
CREATE INDEX runs_by_list ON importer.runs (list_id, created_at DESC);

-- ---------------------------------------------------------------------------------------------
-- jobs: the queue
-- ---------------------------------------------------------------------------------------------
CREATE TABLE importer.jobs (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind                text        NOT NULL CHECK (kind IN ('plan_run', 'import_window')),
    args                jsonb       NOT NULL DEFAULT '{}',
    account_id          bigint      NOT NULL REFERENCES importer.accounts (id) ON DELETE CASCADE,
    run_id              bigint      REFERENCES importer.runs (id) ON DELETE CASCADE,
    attempts            integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts        integer     NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
    run_after           timestamptz NOT NULL DEFAULT now(),
    locked_by           text,
    locked_until        timestamptz,
    holds_slot          boolean     NOT NULL DEFAULT false,
    last_error          text,
    errors              jsonb       NOT NULL DEFAULT '[]',
    created_at          timestamptz NOT NULL DEFAULT now(),
    -- "locked" is locked_by IS NOT NULL or, equivalently, locked_until IS NOT NULL
    CONSTRAINT jobs_lease_consistent CHECK ((locked_by IS NULL) = (locked_until IS NULL)),
    CONSTRAINT jobs_slot_needs_lease CHECK (NOT holds_slot OR locked_until IS NOT NULL)
) WITH (fillfactor = 80);  -- room for HOT updates of holds_slot (release_slot)
COMMENT ON TABLE importer.jobs IS 'The queue: live jobs only. A finished job is deleted in the transaction that counts it on its run';
COMMENT ON COLUMN importer.jobs.kind IS 'plan_run (count the window, enqueue its import_window jobs) or import_window (fetch one page, map, post)';
COMMENT ON COLUMN importer.jobs.attempts IS 'Claims so far, counted at claim time (a job that kills its worker still runs out of attempts)';
COMMENT ON COLUMN importer.jobs.run_after IS 'Not claimable before this instant (backoff, Retry-After, snooze)';
COMMENT ON COLUMN importer.jobs.locked_by IS 'Worker id holding the lease; NULL when the job is waiting';
COMMENT ON COLUMN importer.jobs.locked_until IS 'Lease (visibility timeout): after it passes the job may be claimed again';
COMMENT ON COLUMN importer.jobs.holds_slot IS 'The holder may have a Mailchimp request in flight: counts against accounts.max_concurrency while the lease is live';
COMMENT ON COLUMN importer.jobs.args IS 'Kind-specific arguments, e.g. {"offset": 3000, ...} for import_window';
COMMENT ON COLUMN importer.jobs.run_id IS 'The run this job counts on (its counters change in the same transaction as the job)';
COMMENT ON COLUMN importer.jobs.max_attempts IS 'Claims allowed; a failure or an expired lease on the last one moves the job to importer.dead_jobs';
COMMENT ON COLUMN importer.jobs.last_error IS 'The most recent failure (a retried error or an expired lease; snoozes appear only in errors)';
COMMENT ON COLUMN importer.jobs.errors IS 'Every error this job saw: [{attempt, at, error, kind}], kind one of retry, snooze, lease_expired';

-- Claim order per account: waiting jobs by (run_after, id); held jobs by locked_until (expired
-- leases are reclaimed, live ones with holds_slot count against max_concurrency). holds_slot is
-- deliberately not indexed, so release_slot is a HOT update.
CREATE INDEX jobs_waiting ON importer.jobs (account_id, run_after, id) WHERE locked_until IS NULL;
COMMENT ON INDEX importer.jobs_waiting IS 'Claim order of waiting jobs within an account; also the distinct-account skip scan of claims';
CREATE INDEX jobs_leased ON importer.jobs (account_id, locked_until) WHERE locked_until IS NOT NULL;
COMMENT ON INDEX importer.jobs_leased IS 'Held jobs per account: live Mailchimp slots and expired leases';
CREATE INDEX jobs_by_run ON importer.jobs (run_id) WHERE run_id IS NOT NULL;

-- ---------------------------------------------------------------------------------------------
-- dead_jobs
-- ---------------------------------------------------------------------------------------------
CREATE TABLE importer.dead_jobs (
    id                  bigint      PRIMARY KEY,
    kind                text        NOT NULL,
    args                jsonb       NOT NULL,
    account_id          bigint      NOT NULL REFERENCES importer.accounts (id) ON DELETE CASCADE,
    run_id              bigint      REFERENCES importer.runs (id) ON DELETE CASCADE,
    attempts            integer     NOT NULL,
    max_attempts        integer     NOT NULL,
    last_error          text,
    errors              jsonb       NOT NULL DEFAULT '[]',
    reason              text        NOT NULL CHECK (reason IN ('exhausted', 'permanent', 'lease_expired')),
    created_at          timestamptz NOT NULL,
    died_at             timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE importer.dead_jobs IS 'Jobs that exhausted their attempts or failed permanently, with every error they saw; requeue moves them back to importer.jobs';
COMMENT ON COLUMN importer.dead_jobs.id IS 'The id the job had in importer.jobs (kept on requeue)';
COMMENT ON COLUMN importer.dead_jobs.attempts IS 'Claims the job had when it died';
COMMENT ON COLUMN importer.dead_jobs.last_error IS 'The error that killed the job (importer.dead_jobs_by_error groups by it)';
COMMENT ON COLUMN importer.dead_jobs.errors IS 'Every error the job saw: [{attempt, at, error, kind}], kind one of retry, snooze, lease_expired, exhausted, permanent';
COMMENT ON COLUMN importer.dead_jobs.created_at IS 'When the job was first enqueued';
COMMENT ON COLUMN importer.dead_jobs.reason IS 'exhausted (retryable errors used every attempt), permanent (e.g. 401, 404), lease_expired (the last attempt never finished)';
CREATE INDEX dead_jobs_by_run ON importer.dead_jobs (run_id);
CREATE INDEX dead_jobs_by_died_at ON importer.dead_jobs (died_at);
CREATE INDEX dead_jobs_by_account ON importer.dead_jobs (account_id);

-- ---------------------------------------------------------------------------------------------
-- rejected_records
-- ---------------------------------------------------------------------------------------------
CREATE TABLE importer.rejected_records (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id              bigint      NOT NULL REFERENCES importer.runs (id) ON DELETE CASCADE,
    list_id             bigint      NOT NULL REFERENCES importer.lists (id) ON DELETE CASCADE,
    member_id           text,
    email               text,
    reason              text        NOT NULL,
    member              jsonb       NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE importer.rejected_records IS 'Members that could not be mapped to a record (no email, no id, unknown status), with the reason: nothing is dropped silently';
COMMENT ON COLUMN importer.rejected_records.member IS 'The member as Mailchimp returned it (the mapped fields only)';
COMMENT ON COLUMN importer.rejected_records.member_id IS 'Mailchimp member id (subscriber hash), when the member had one';
COMMENT ON COLUMN importer.rejected_records.reason IS 'Why the member could not be mapped, e.g. no email address';
CREATE INDEX rejected_records_by_run ON importer.rejected_records (run_id);
CREATE INDEX rejected_records_by_list ON importer.rejected_records (list_id);
