//! Borrowed slots: a holder that needs several Mailchimp requests in flight at once (a plan job
//! probing its window in parallel) borrows free slots of its account for a moment, within
//! `max_concurrency`, and gives them back.
//!
//! The rule that keeps the cap exact is the claim's: only a transaction holding the account's
//! row lock adds slots, and it counts the live ones in a statement that starts after the lock.

use sqlx::PgPool;

use super::leasing::SLOT_GRACE;
use super::{micros, Fence, QueueError};

/// Raises the fenced job's borrowed slots towards `want` (beyond its own slot), as far as the
/// account's free slots allow; returns how many it holds beyond its own now (possibly 0), or
/// `None` when the fence no longer holds a slot. Waits for a concurrent claim of the account to
/// commit. Errors are database failures.
pub async fn borrow_slots(
    pool: &PgPool,
    fence: Fence,
    want: u32,
) -> Result<Option<u32>, QueueError> {
    let mut tx = pool.begin().await?;
    let account: Option<i64> = sqlx::query_scalar(
        "SELECT a.id FROM importer.accounts a
          WHERE a.id = (SELECT j.account_id FROM importer.jobs j
                         WHERE j.id = $1 AND j.lease_token = $2 AND j.locked_until > now()
                           AND j.holds_slot)
            FOR NO KEY UPDATE",
    )
    .bind(fence.job_id)
    .bind(fence.token)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(account) = account else {
        return Ok(None);
    };
    // A new statement: its snapshot sees every claim that committed before we got the lock.
    let held: Option<i16> = sqlx::query_scalar(
        "UPDATE importer.jobs j
            SET extra_slots = j.extra_slots
                              + greatest(0, least($3 - j.extra_slots, x.max_concurrency - x.live))
           FROM (SELECT a.max_concurrency,
                        (SELECT coalesce(sum(1 + s.extra_slots), 0) FROM importer.jobs s
                          WHERE s.account_id = a.id AND s.holds_slot
                            AND s.locked_until > now() - $5 * interval '1 microsecond')::int AS live
                   FROM importer.accounts a WHERE a.id = $4) x
          WHERE j.id = $1 AND j.lease_token = $2 AND j.holds_slot AND j.locked_until > now()
         RETURNING j.extra_slots",
    )
    .bind(fence.job_id)
    .bind(fence.token)
    .bind(i32::try_from(want.min(1000)).unwrap_or(1000))
    .bind(account)
    .bind(micros(SLOT_GRACE))
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(held.map(|n| u32::try_from(n).unwrap_or(0)))
}

/// Gives back every slot the fenced job borrowed (its own slot stays). `Ok(false)`: the fence
/// no longer holds. Errors are database failures.
pub async fn return_slots(pool: &PgPool, fence: Fence) -> Result<bool, QueueError> {
    let done = sqlx::query(
        "UPDATE importer.jobs SET extra_slots = 0
          WHERE id = $1 AND lease_token = $2 AND locked_until IS NOT NULL",
    )
    .bind(fence.job_id)
    .bind(fence.token)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
