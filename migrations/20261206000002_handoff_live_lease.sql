-- The slot handoff swaps only a slot the claim still counts (a lease live or expired less than
-- the grace ago). It accepted any lease with this token, however long expired: a stalled
-- holder's handoff then raced a claim that no longer counted that slot, and both leased a job
-- with it (max_concurrency exceeded by one). Such a holder is now fenced: its lease is lost.
CREATE OR REPLACE FUNCTION importer.handoff_slot(job_id bigint, token bigint, worker text, lease_us bigint,
                                      grace_us bigint, OUT released boolean, OUT next jsonb)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    account bigint;
    candidate bigint;
    room boolean;
BEGIN
    UPDATE importer.jobs j SET holds_slot = false, extra_slots = 0
     WHERE j.id = job_id AND j.lease_token = token AND j.holds_slot
       -- a slot the claim still counts: live, or expired within the grace
       AND j.locked_until > now() - grace_us * interval '1 microsecond'
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
    'Releases the slot of the lease (job_id, token), if the claim still counts it (live, or expired less than grace_us ago), and in the same transaction leases the next waiting job of its account to worker with that slot, unless the account is paused or at its cap without it';
