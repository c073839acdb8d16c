//! Lanes of a range (`importer.range_lanes`): where a reader that handed part of its range to an
//! idle slot must stop. See [`crate::range_reader::RangeReader`] for why that is lossless.

use sqlx::PgPool;

use crate::queue::{self, QueueError};

/// Why a lane operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    /// The database failed or is unreachable.
    #[error("lanes database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Taking the lane's job back failed.
    #[error("lanes: {0}")]
    Queue(#[from] QueueError),
}

/// Registers a lane of `run_id` starting at `start_offset`; returns its id. An unused lane (its
/// job never enqueued) is harmless and goes with its run.
pub async fn create(pool: &PgPool, run_id: i64, start_offset: u64) -> Result<i64, LaneError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO importer.range_lanes (run_id, start_offset) VALUES ($1, $2) RETURNING id",
    )
    .bind(run_id)
    .bind(i64::try_from(start_offset).unwrap_or(i64::MAX))
    .fetch_one(pool)
    .await?)
}

/// Records the keys of a lane's first members, once, and returns the keys stored: this
/// attempt's, or an earlier attempt's. A retried lane keeps its first heads (the reader before
/// it may already stop at them); an attempt that finds other heads than its own must read
/// again from those (regression: an attempt that stalled past its lease recorded its heads
/// after the next attempt had started elsewhere, which then read on from its own heads, and
/// the members between the two were read by neither the lane nor the reader before it).
pub async fn record_heads(
    pool: &PgPool,
    lane_id: i64,
    heads: &[u64],
) -> Result<Vec<u64>, LaneError> {
    let keys: Vec<i64> = heads.iter().map(|&k| k as i64).collect();
    sqlx::query("UPDATE importer.range_lanes SET heads = $2 WHERE id = $1 AND heads IS NULL")
        .bind(lane_id)
        .bind(&keys)
        .execute(pool)
        .await?;
    // A statement of its own: its snapshot sees a concurrent first write the update waited for.
    Ok(heads_of(pool, lane_id)
        .await?
        .unwrap_or_else(|| heads.to_vec()))
}

/// The keys of a lane's first members, once it has read them.
pub async fn heads(pool: &PgPool, lane_id: i64) -> Result<Option<Vec<u64>>, LaneError> {
    Ok(heads_of(pool, lane_id).await?)
}

async fn heads_of(pool: &PgPool, lane_id: i64) -> Result<Option<Vec<u64>>, sqlx::Error> {
    let keys: Option<Option<Vec<i64>>> =
        sqlx::query_scalar("SELECT heads FROM importer.range_lanes WHERE id = $1")
            .bind(lane_id)
            .fetch_optional(pool)
            .await?;
    Ok(keys
        .flatten()
        .map(|keys| keys.into_iter().map(|k| k as u64).collect()))
}

/// Takes back the lane `lane_id`, whose job `job_id` no worker holds and which has not read yet
/// (no heads recorded), and records that the lane reads nothing (empty heads), in one
/// transaction. Returns whether it was taken back.
///
/// The mark comes first: it locks the lane's row, so a first read recording its heads at the
/// same moment either commits before (and the lane is not taken back: the reader before it
/// may already stop at those heads, regression) or finds the mark and records nothing. A lane
/// with heads was claimed and read even if its job waits again (retried, snoozed, released).
///
/// The mark is also what a retry of the reader before the lane relies on: that reader may
/// resume from a checkpoint that still names this lane as its stop (killed before
/// checkpointing the stop it took back). Finding empty heads, it reads on to its own end at once
/// instead of waiting for a lane that will never read (reading later lanes' shares twice,
/// harmlessly).
pub async fn withdraw(pool: &PgPool, lane_id: i64, job_id: i64) -> Result<bool, LaneError> {
    let mut tx = pool.begin().await?;
    let marked =
        sqlx::query("UPDATE importer.range_lanes SET heads = '{}' WHERE id = $1 AND heads IS NULL")
            .bind(lane_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    if marked == 0 || !queue::withdraw(&mut *tx, job_id).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}
