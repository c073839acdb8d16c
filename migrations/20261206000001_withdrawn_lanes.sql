-- A lane taken back before any worker claimed it (importer_core::lanes::withdraw) is marked as
-- reading nothing, in the transaction that deletes its job: a retry of the reader before it may
-- resume from a checkpoint that still names the lane as its stop, and must not wait for a lane
-- that will never read.
COMMENT ON COLUMN importer.range_lanes.heads IS
    'Keys of the lane''s first members, written after its first read (NULL before; empty when it found none or was taken back before it started)';
