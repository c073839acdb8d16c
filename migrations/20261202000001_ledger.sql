-- The ledger (issue 12): for every list, what we delivered for each member, written in the
-- transaction that checkpoints or completes the job that delivered it. With it a run skips the
-- members whose mapped record did not change (Mailchimp moves last_changed for interests, tags
-- and stats, which we do not map), and an audit compares Mailchimp with what we delivered.
--
-- Scale: thousands of accounts, hundreds of millions of rows, a write per member read.
-- * Row width. A Mailchimp id is 32 hex digits (the subscriber hash): stored decoded, 16 bytes
--   (importer.ledger_key). Fixed-width columns first, the key last: no alignment padding. A row
--   is 80 bytes with its header, plus 4 of line pointer; its primary-key entry 40.
-- * HOT updates. No updated column is indexed, and every partition keeps 15 % of each page free
--   (fillfactor 85), so re-delivering a member rewrites its row on its own page without touching
--   the index: a run's ledger writes cost heap pages only.
-- * Partitioning. 16 hash partitions by list: each vacuums on its own (an autovacuum scale factor
--   of 2 % rather than 20 %: a partition of 10 M rows is vacuumed after 200 k updates, not 2 M),
--   and a list's rows live in one partition, so a list's lookups and audits touch one index.
--   Hash rather than one partition per list: thousands of partitions would make every plan slow.
-- * Deleting a list deletes its rows (ON DELETE CASCADE): rare, and bounded by the list.

-- The stored form of a member id: 32 lowercase hex digits decode to 16 bytes. Any other id (CONTRACTS: lists
-- from before 2015 may have ids that are not the subscriber hash) is kept as its UTF-8 bytes,
-- padded with one zero byte when those are exactly 16 long, so the two forms never collide and
-- importer.ledger_member_id gives the id back.
CREATE FUNCTION importer.ledger_key(member_id text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN member_id ~ '^[0-9a-f]{32}$' THEN decode(member_id, 'hex')
        WHEN octet_length(member_id) = 16 THEN convert_to(member_id, 'UTF8') || '\x00'::bytea
        ELSE convert_to(member_id, 'UTF8')
    END
$$;
COMMENT ON FUNCTION importer.ledger_key(text) IS
    'The ledger''s form of a Mailchimp member id: 16 bytes for a 32-hex-digit id, else its UTF-8 bytes (never 16 long); inverse: importer.ledger_member_id';

CREATE FUNCTION importer.ledger_member_id(member_key bytea) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN length(member_key) = 16 THEN encode(member_key, 'hex')
        WHEN length(member_key) = 17 AND get_byte(member_key, 16) = 0
            THEN convert_from(substring(member_key FROM 1 FOR 16), 'UTF8')
        ELSE convert_from(member_key, 'UTF8')
    END
$$;
COMMENT ON FUNCTION importer.ledger_member_id(bytea) IS
    'The Mailchimp member id of a ledger key (inverse of importer.ledger_key)';

CREATE TABLE importer.ledger (
    list_id      bigint      NOT NULL REFERENCES importer.lists (id) ON DELETE CASCADE,
    fingerprint  bigint      NOT NULL,
    last_changed timestamptz,
    confirmed_at timestamptz NOT NULL DEFAULT now(),
    member_key   bytea       NOT NULL,
    PRIMARY KEY (list_id, member_key)
) PARTITION BY HASH (list_id);
COMMENT ON TABLE importer.ledger IS
    'What we delivered for each member of each list: the fingerprint of its mapped record, its last_changed then, and when. Written with the checkpoint or completion of the job that delivered it';
COMMENT ON COLUMN importer.ledger.fingerprint IS
    'First 8 bytes of a SHA-256 of the mapped record (id, firstname, lastname, email, status): equal means the destination already holds this record';
COMMENT ON COLUMN importer.ledger.last_changed IS
    'The member''s last_changed when we last read it (delivered, or found unchanged); NULL when Mailchimp sent none';
COMMENT ON COLUMN importer.ledger.confirmed_at IS
    'When we last delivered the record, or found that the destination already held it';
COMMENT ON COLUMN importer.ledger.member_key IS 'importer.ledger_key of the member id; importer.ledger_member_id gives it back';

DO $$
BEGIN
    FOR i IN 0..15 LOOP
        EXECUTE format(
            'CREATE TABLE importer.ledger_p%s PARTITION OF importer.ledger
                 FOR VALUES WITH (MODULUS 16, REMAINDER %s)
                 WITH (fillfactor = 85, autovacuum_vacuum_scale_factor = 0.02,
                       autovacuum_analyze_scale_factor = 0.02)',
            lpad(i::text, 2, '0'), i);
        EXECUTE format(
            'COMMENT ON TABLE importer.ledger_p%s IS %L',
            lpad(i::text, 2, '0'),
            format('Partition %s of 16 of importer.ledger (hash of list_id); query importer.ledger', i));
    END LOOP;
END
$$;

-- Operators read it by id.
CREATE VIEW importer.ledger_members AS
SELECT g.list_id,
       importer.ledger_member_id(g.member_key) AS member_id,
       g.fingerprint,
       g.last_changed,
       g.confirmed_at
  FROM importer.ledger g;
COMMENT ON VIEW importer.ledger_members IS 'The ledger with member ids in Mailchimp''s form';

ALTER TABLE importer.lists
    ADD COLUMN always_post boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN importer.lists.always_post IS
    'Post every member read, even when the ledger shows the destination already holds its record (for destinations that need every touch)';

ALTER TABLE importer.runs
    ADD COLUMN records_unchanged bigint NOT NULL DEFAULT 0 CHECK (records_unchanged >= 0);
COMMENT ON COLUMN importer.runs.records_unchanged IS
    'Members read whose mapped record matched the ledger: not posted again (only unmapped fields such as interests, tags or stats changed)';

CREATE OR REPLACE VIEW importer.run_progress AS
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
       r.error,
       r.records_unchanged
  FROM importer.runs r
  JOIN importer.lists l ON l.id = r.list_id
  JOIN importer.accounts a ON a.id = r.account_id;
COMMENT ON COLUMN importer.run_progress.records_unchanged IS
    'Members read whose record the destination already held (not posted again)';
