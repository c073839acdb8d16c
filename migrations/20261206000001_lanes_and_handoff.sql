-- Review fixes of 2026-12-06: lanes taken back, the slot handoff of an expired lease, the
-- window-events comment, and failed runs planned before a cursor reset.

-- A lane taken back before any worker claimed it (importer_core::lanes::withdraw) is marked as
-- reading nothing, in the transaction that deletes its job: a retry of the reader before it may
-- resume from a checkpoint that still names the lane as its stop, and must not wait for a lane
-- that will never read.
COMMENT ON COLUMN importer.range_lanes.heads IS
    'Keys of the lane''s first members, written after its first read (NULL before; empty when it found none or was taken back before it started)';

-- The slot handoff passes on only a slot the claim still counts (a lease live or expired less
-- than the grace ago). It passed on any lease's slot, however long expired: a stalled holder's
-- handoff then raced a claim that no longer counted that slot, and both leased a job with it
-- (max_concurrency exceeded by one). Past the grace the slot is only given back.
CREATE OR REPLACE FUNCTION importer.handoff_slot(job_id bigint, token bigint, worker text, lease_us bigint,
                                      grace_us bigint, OUT released boolean, OUT next jsonb)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    account bigint;
    counted boolean;
    candidate bigint;
    room boolean;
BEGIN
    UPDATE importer.jobs j SET holds_slot = false, extra_slots = 0
     WHERE j.id = job_id AND j.lease_token = token AND j.locked_until IS NOT NULL AND j.holds_slot
    RETURNING j.account_id,
              -- a slot the claim still counts: live, or expired within the grace
              j.locked_until > now() - grace_us * interval '1 microsecond'
         INTO account, counted;
    released := FOUND;
    IF NOT released OR NOT counted THEN
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
    'Releases the slot of the lease (job_id, token) and, if the claim still counted it (live, or expired less than grace_us ago), leases the next waiting job of its account to worker with that slot in the same transaction, unless the account is paused or at its cap without it';

-- A window event is a range that grew while it was read, or a member outside its range. The
-- comment also named "planned ranges that do not add up", which no code checks: a range's
-- first read is not compared with the plan's count (the plan counts under the since form it
-- knew then, and a range read under another one would count a second more or less).
COMMENT ON COLUMN importer.runs.window_events IS
    'Times the engine saw the window was not frozen (a range grew while it was read, a member outside its range): Mailchimp''s clock or visibility is off by more than the lag; affected ranges were re-read';

-- A failed run planned before its list's cursor was reset cannot be revived by requeueing its
-- dead jobs: its completion would cover its whole window, including what the reset meant to
-- forget (ranges it had read, and coverage of other runs it had planned around), so the next
-- run would silently skip those. reset_cursor stamps the list; dead requeue refuses (or, for a
-- requeue by filter, skips) the dead jobs of such a run.
ALTER TABLE importer.lists ADD COLUMN cursor_reset_at timestamptz;
COMMENT ON COLUMN importer.lists.cursor_reset_at IS
    'When the cursor was last set by hand (lists reset-cursor); failed runs created before it cannot be revived by dead requeue';
CREATE OR REPLACE FUNCTION importer.reset_cursor(p_list bigint, p_to timestamptz)
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
    UPDATE importer.lists SET synced_until = date_trunc('second', p_to), cursor_reset_at = now()
     WHERE id = p_list;
    active_run_id := NULL;
    synced_until := date_trunc('second', p_to);
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION importer.reset_cursor(bigint, timestamptz) IS
    'Sets a list cursor by hand (NULL = full sync next), forgets its coverage and stamps cursor_reset_at; refused (returns the active run id, changes nothing) while the list has an active run';
