//! Checkpoints: a long job (one range of a run, many pages) records what it has delivered so far
//! without finishing, so a retry resumes where it stopped instead of starting over.

use sqlx::PgPool;

use super::complete::{insert_rejected, Cost, RejectedRecord};
use super::{Fence, QueueError};

/// What a job delivered since its last checkpoint, and where to resume.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    /// The job's new arguments: its original ones plus its resume state.
    pub args: serde_json::Value,
    /// Records the destination accepted since the last checkpoint.
    pub records_imported: i64,
    /// Members rejected since the last checkpoint.
    pub rejected: Vec<RejectedRecord>,
    /// Mailchimp cost and window events since the last checkpoint.
    pub cost: Cost,
}

/// Records `checkpoint` for the fenced job in one transaction: replaces its arguments, stores
/// its rejected members and adds its counts to the job's run (run row locked before the job row,
/// the queue's lock order). Returns `Ok(false)` when the fence no longer holds (nothing
/// changed: the job belongs to someone else or was cancelled). Errors are database failures.
pub async fn checkpoint(
    pool: &PgPool,
    fence: Fence,
    checkpoint: &Checkpoint,
) -> Result<bool, QueueError> {
    let mut tx = pool.begin().await?;
    let run_id: Option<Option<i64>> = sqlx::query_scalar(
        "WITH run_lock AS MATERIALIZED (
             SELECT r.id FROM importer.runs r
              WHERE r.id = (SELECT j.run_id FROM importer.jobs j
                             WHERE j.id = $1 AND j.attempts = $2 AND j.locked_until > now())
                FOR NO KEY UPDATE
         ),
         run_counts AS (
             UPDATE importer.runs r
                SET records_imported = r.records_imported + $4,
                    records_rejected = r.records_rejected + $5,
                    members_read = r.members_read + $6,
                    mailchimp_requests = r.mailchimp_requests + $7,
                    window_events = r.window_events + $8
              WHERE r.id = (SELECT id FROM run_lock)
         )
         UPDATE importer.jobs j SET args = $3
          WHERE j.id = $1 AND j.attempts = $2 AND j.locked_until > now()
            AND (SELECT count(*) FROM run_lock) >= 0
         RETURNING j.run_id",
    )
    .bind(fence.job_id)
    .bind(fence.attempt)
    .bind(&checkpoint.args)
    .bind(checkpoint.records_imported)
    .bind(i64::try_from(checkpoint.rejected.len()).unwrap_or(i64::MAX))
    .bind(checkpoint.cost.members_read)
    .bind(checkpoint.cost.requests)
    .bind(checkpoint.cost.window_events)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(run_id) = run_id else {
        return Ok(false);
    };
    if let (Some(run_id), false) = (run_id, checkpoint.rejected.is_empty()) {
        insert_rejected(&mut *tx, run_id, &checkpoint.rejected).await?;
    }
    tx.commit().await?;
    Ok(true)
}
