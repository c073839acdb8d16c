-- Least privilege: the group roles importer_worker and importer_operator and their grants.
-- Idempotent; `importer-admin migrate` applies it after the migrations, as the schema's owner.
-- Roles are cluster-wide, so concurrent migrations of several databases may race to create
-- them: a duplicate is not an error.
DO $$
BEGIN
    BEGIN
        CREATE ROLE importer_worker NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    BEGIN
        CREATE ROLE importer_operator NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
END $$;

-- Start from nothing, so a grant narrowed here is narrowed in every database.
REVOKE ALL ON ALL TABLES IN SCHEMA importer FROM importer_worker, importer_operator;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA importer FROM importer_worker, importer_operator;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA importer FROM PUBLIC, importer_worker, importer_operator;
REVOKE CREATE ON SCHEMA importer FROM PUBLIC;
GRANT USAGE ON SCHEMA importer TO importer_worker, importer_operator;

-- Workers: the queue and the run bookkeeping in full; accounts and lists read, with only the
-- columns a worker moves writable (the claim's last_claimed_at, the cursor); settings read.
GRANT SELECT, INSERT, UPDATE, DELETE
   ON importer.jobs, importer.dead_jobs, importer.runs, importer.coverage, importer.range_lanes,
      importer.rejected_records, importer.records_per_minute
   TO importer_worker;
GRANT SELECT ON importer.accounts, importer.lists, importer.settings TO importer_worker;
GRANT UPDATE (last_claimed_at) ON importer.accounts TO importer_worker;
GRANT UPDATE (synced_until) ON importer.lists TO importer_worker;
GRANT SELECT ON importer.queue_depth, importer.leases, importer.workers, importer.run_progress
   TO importer_worker;
-- The ledger: read and upserted with each delivery (its rows go with their list).
GRANT SELECT, INSERT, UPDATE ON importer.ledger TO importer_worker;
-- Audits: the scan's scratch rows, the results, the members found deleted.
GRANT SELECT, INSERT, DELETE ON importer.audit_seen TO importer_worker;
GRANT SELECT, INSERT ON importer.audit_results TO importer_worker;
GRANT SELECT, INSERT, DELETE ON importer.deleted_members TO importer_worker;

-- Operators: every row of every table and view, the audit log append-only.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA importer TO importer_operator;
REVOKE UPDATE, DELETE ON importer.audit_log FROM importer_operator;

GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA importer TO importer_worker, importer_operator;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA importer TO importer_worker, importer_operator;
