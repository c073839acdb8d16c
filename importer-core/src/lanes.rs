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

/// Records the keys of a lane's first members, once (a retried lane keeps its first heads: the
/// reader before it may already stop at them).
pub async fn record_heads(pool: &PgPool, lane_id: i64, heads: &[u64]) -> Result<(), LaneError> {
    let keys: Vec<i64> = heads.iter().map(|&k| k as i64).collect();
    sqlx::query("UPDATE importer.range_lanes SET heads = $2 WHERE id = $1 AND heads IS NULL")
        .bind(lane_id)
        .bind(&keys)
        .execute(pool)
        .await?;
    Ok(())
}

/// The keys of a lane's first members, once it has read them.
pub async fn heads(pool: &PgPool, lane_id: i64) -> Result<Option<Vec<u64>>, LaneError> {
    let keys: Option<Option<Vec<i64>>> =
        sqlx::query_scalar("SELECT heads FROM importer.range_lanes WHERE id = $1")
            .bind(lane_id)
            .fetch_optional(pool)
            .await?;
    Ok(keys
        .flatten()
        .map(|keys| keys.into_iter().map(|k| k as u64).collect()))
}

/// Takes back the lane `lane_id`, whose job `job_id` no worker has claimed yet
/// ([`queue::withdraw`]), and records in the same transaction that the lane reads nothing (empty
/// heads). Returns whether the job was still waiting.
///
/// The mark is what a retry of the reader before the lane relies on: that reader may resume
/// from a checkpoint that still names this lane as its stop (it was killed before checkpointing
/// the stop it took back). Finding empty heads, it reads on to its own end at once instead of
/// waiting for a lane that will never read (reading a later lane's share twice, harmlessly).
pub async fn withdraw(pool: &PgPool, lane_id: i64, job_id: i64) -> Result<bool, LaneError> {
    let mut tx = pool.begin().await?;
    if !queue::withdraw(&mut *tx, job_id).await? {
        return Ok(false);
    }
    sqlx::query("UPDATE importer.range_lanes SET heads = '{}' WHERE id = $1 AND heads IS NULL")
        .bind(lane_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}
