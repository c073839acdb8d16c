//! A holder gives back what it holds without finishing: its Mailchimp slot (its requests are
//! done, the lease stays), or its whole lease at shutdown (without spending the attempt).

use sqlx::PgPool;

use super::{fence_arrays, Fence, QueueError};

/// Gives back the job's Mailchimp slot (its Mailchimp requests are done) so another job of the
/// account can be claimed; the lease itself stays. `Ok(false)`: the fence no longer holds.
pub async fn release_slot(pool: &PgPool, fence: Fence) -> Result<bool, QueueError> {
    let done = sqlx::query(
        "UPDATE importer.jobs SET holds_slot = false, extra_slots = 0
          WHERE id = $1 AND lease_token = $2 AND locked_until IS NOT NULL",
    )
    .bind(fence.job_id)
    .bind(fence.token)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Graceful shutdown: unlocks the still-held `fences` without spending their attempts, claimable
/// at once; returns how many were released and notifies idle workers. Errors are database
/// failures.
pub async fn release(pool: &PgPool, fences: &[Fence]) -> Result<u64, QueueError> {
    if fences.is_empty() {
        return Ok(0);
    }
    let (ids, tokens) = fence_arrays(fences);
    let released: i64 = sqlx::query_scalar(
        "WITH held AS MATERIALIZED (
             SELECT j.id
               FROM unnest($1::bigint[], $2::bigint[]) AS f(id, token)
               JOIN importer.jobs j ON j.id = f.id AND j.lease_token = f.token
              WHERE j.locked_by IS NOT NULL
              ORDER BY j.id
                FOR NO KEY UPDATE OF j
         ),
         released AS (
             UPDATE importer.jobs j
                SET attempts = j.attempts - 1,
                    lease_token = NULL,
                    locked_by = NULL,
                    locked_until = NULL,
                    holds_slot = false,
                    extra_slots = 0,
                    run_after = now()
              WHERE j.id = ANY(ARRAY(SELECT id FROM held))
             RETURNING j.id
         ),
         notified AS MATERIALIZED (
             SELECT importer.wake_workers() WHERE EXISTS (SELECT 1 FROM released)
         )
         SELECT count(*) FROM released WHERE (SELECT count(*) FROM notified) >= 0",
    )
    .bind(&ids)
    .bind(&tokens)
    .fetch_one(pool)
    .await?;
    Ok(u64::try_from(released).unwrap_or_default())
}
