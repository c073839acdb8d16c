//! Slot handoff: a job done with Mailchimp passes its slot straight to the next waiting job of the
//! same account, in one statement.
//!
//! Releasing a slot and claiming again costs two transactions and a wake-up of the claim loop,
//! during which the account has one Mailchimp request fewer in flight than it may. A handoff
//! clears the holder's slot and leases the next waiting job (with a slot) atomically, so the
//! account's live slot count never changes and no account lock is needed: the cap cannot be
//! exceeded by a one-for-one swap of a slot the claims still count (they count either the old or
//! the new slot, never both or neither). A lease expired past the grace is no longer counted, so
//! its slot is only given back, never passed on. The statement is the SQL function
//! `importer.handoff_slot`, which grants the lease with `importer.grant_leases` like the claim.

use std::time::Duration;

use sqlx::PgPool;

use super::leasing::SLOT_GRACE;
use super::{micros, ClaimedJob, Fence, QueueError};

/// What a [`handoff_slot`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Handoff {
    /// The fence no longer holds a slot (lease taken over, or the slot already given back).
    Fenced,
    /// The slot was released; no job of the account was waiting, the account is paused, it is
    /// at (or over) its cap without this slot, or the lease expired longer than the grace ago
    /// (claims no longer count that slot, so passing it on could exceed the cap).
    Released,
    /// The slot now belongs to this job, leased to the caller.
    Next(ClaimedJob),
}

/// Clears `fence`'s slot and, in the same statement, leases the next waiting job of the same
/// account to `worker_id` with that slot, unless the account is paused, its other live slots
/// already reach its `max_concurrency` (lowered meanwhile), or the lease expired past the grace:
/// then the slot is only released.
/// Errors are database failures, and then nothing changes.
pub async fn handoff_slot(
    pool: &PgPool,
    fence: Fence,
    worker_id: &str,
    lease: Duration,
) -> Result<Handoff, QueueError> {
    let (released, next): (bool, Option<sqlx::types::Json<ClaimedJob>>) =
        sqlx::query_as("SELECT released, next FROM importer.handoff_slot($1, $2, $3, $4, $5)")
            .bind(fence.job_id)
            .bind(fence.token)
            .bind(worker_id)
            .bind(micros(lease))
            .bind(micros(SLOT_GRACE))
            .fetch_one(pool)
            .await?;
    Ok(match (released, next) {
        (false, _) => Handoff::Fenced,
        (_, None) => Handoff::Released,
        (_, Some(job)) => Handoff::Next(job.0),
    })
}
