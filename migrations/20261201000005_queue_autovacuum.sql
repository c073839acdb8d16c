-- The queue turns over completely: a job's row is deleted when it completes, so dead tuples
-- pile up at the rate jobs finish while the live table stays the size of the backlog. The
-- default trigger (20 % of the table's rows) waits for ever fewer rows on a small table and
-- the cost delay slows the pass down: vacuum the queue by a fixed count of dead tuples and at
-- full speed, so freed pages are reused and the table and its indexes stay small
-- (bench/RESULTS.md, queue_bloat).
ALTER TABLE importer.jobs SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_cost_delay = 0
);
