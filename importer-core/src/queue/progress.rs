//! Checkpoints: a long job (one range of a run, many pages) records what it has delivered so far
//! without finishing, so a retry resumes where it stopped instead of starting over.

use sqlx::PgPool;

use super::complete::{insert_rejected, write_ledger_first, Cost, RejectedRecord};
use super::enqueue::insert_jobs;
use super::leasing::SLOT_GRACE;
use super::{micros, Fence, NewJob, QueueError};
use crate::ledger::Delivery;

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
    /// Jobs to enqueue with it (a lane split off the range), counted on the run.
    pub children: Vec<NewJob>,
    /// Members read whose record the destination already held (not posted).
    pub records_unchanged: i64,
    /// What was delivered or found unchanged since the last checkpoint, for the ledger.
    pub ledger: Vec<Delivery>,
}

/// What a [`checkpoint`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointOutcome {
    /// The fence no longer holds: nothing changed.
    Fenced,
    /// Recorded.
    Recorded {
        /// Mailchimp slots of the job's account that are free with no job waiting for them:
        /// capacity a lane split off this job could use now.
        idle_slots: i64,
        /// Ids of the children enqueued with it, in input order.
        children: Vec<i64>,
    },
}

/// Records `checkpoint` for the fenced job in one transaction: replaces its arguments (and
/// resets its attempts to this one: it made progress), stores its rejected members, enqueues
/// its children and adds its counts to the job's run (its ledger rows written first, then the
/// run row locked before the job row: the queue's lock order). Returns
/// [`CheckpointOutcome::Fenced`] when the fence no longer holds (nothing changed: the job
/// belongs to someone else or was cancelled). Errors are database failures, and then nothing
/// changes.
pub async fn checkpoint(
    pool: &PgPool,
    fence: Fence,
    checkpoint: &Checkpoint,
) -> Result<CheckpointOutcome, QueueError> {
    let mut tx = pool.begin().await?;
    write_ledger_first(&mut tx, fence, &checkpoint.ledger).await?;
    let held: Option<(Option<i64>, i64)> = sqlx::query_as(
        "WITH run_lock AS MATERIALIZED (
             SELECT r.id FROM importer.runs r
              WHERE r.id = (SELECT j.run_id FROM importer.jobs j
                             WHERE j.id = $1 AND j.lease_token = $2 AND j.locked_until > now())
                FOR NO KEY UPDATE
         ),
         run_counts AS (
             UPDATE importer.runs r
                SET records_imported = r.records_imported + $4,
                    records_rejected = r.records_rejected + $5,
                    members_read = r.members_read + $6,
                    mailchimp_requests = r.mailchimp_requests + $7,
                    window_events = r.window_events + $8,
                    records_unchanged = r.records_unchanged + $10,
                    -- a run whose first job reports progress before any plan completes (an
                    -- audit) is running from then on
                    status = CASE WHEN r.status = 'planning' THEN 'running' ELSE r.status END,
                    started_at = coalesce(r.started_at, now())
              WHERE r.id = (SELECT id FROM run_lock)
         )
         -- Progress gives the attempts back: attempts counts the claims since the job last
         -- moved forward, so a long range that keeps delivering is never exhausted by faults
         -- and kills spread over its life, while a job that never progresses still is.
         UPDATE importer.jobs j SET args = $3, attempts = 1
          WHERE j.id = $1 AND j.lease_token = $2 AND j.locked_until > now()
            AND (SELECT count(*) FROM run_lock) >= 0
         RETURNING j.run_id,
                   -- free slots of the account, less the jobs already waiting for one
                   coalesce((SELECT a.max_concurrency
                           - (SELECT coalesce(sum(1 + s.extra_slots), 0) FROM importer.jobs s
                               WHERE s.account_id = a.id AND s.holds_slot
                                 AND s.locked_until > now() - $9 * interval '1 microsecond')
                           - (SELECT count(*) FROM (
                                  SELECT 1 FROM importer.jobs w
                                   WHERE w.account_id = a.id AND w.locked_until IS NULL
                                     AND w.run_after <= now()
                                   LIMIT 1000) waiting)
                      FROM importer.accounts a WHERE a.id = j.account_id AND NOT a.paused), 0)",
    )
    .bind(fence.job_id)
    .bind(fence.token)
    .bind(&checkpoint.args)
    .bind(checkpoint.records_imported)
    .bind(i64::try_from(checkpoint.rejected.len()).unwrap_or(i64::MAX))
    .bind(checkpoint.cost.members_read)
    .bind(checkpoint.cost.requests)
    .bind(checkpoint.cost.window_events)
    .bind(micros(SLOT_GRACE))
    .bind(checkpoint.records_unchanged)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((run_id, idle_slots)) = held else {
        return Ok(CheckpointOutcome::Fenced);
    };
    if let Some(run_id) = run_id {
        if !checkpoint.rejected.is_empty() {
            insert_rejected(&mut *tx, run_id, &checkpoint.rejected).await?;
        }
    }
    let children = if checkpoint.children.is_empty() {
        Vec::new()
    } else {
        insert_jobs(&mut tx, &checkpoint.children).await?
    };
    tx.commit().await?;
    Ok(CheckpointOutcome::Recorded {
        idle_slots: idle_slots.max(0),
        children,
    })
}
