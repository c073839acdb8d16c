//! Slot handoff: a job done with Mailchimp passes its slot straight to the next waiting job of the
//! same account, in one statement.
//!
//! Releasing a slot and claiming again costs two transactions and a wake-up of the claim loop,
//! during which the account has one Mailchimp request fewer in flight than it may. A handoff
//! clears the holder's slot and leases the next waiting job (with a slot) atomically, so the
//! account's live slot count never changes and no account lock is needed: the cap cannot be
//! exceeded by a one-for-one swap, whatever concurrent claims do (they count either the old or
//! the new slot, never both or neither).

use std::sync::LazyLock;
use std::time::Duration;

use sqlx::PgPool;

use super::leasing::SLOT_GRACE;
use super::{micros, ClaimedJob, Fence, QueueError, GRANT_LEASE, LEASED_COLUMNS};

/// The handoff statement: `$1`/`$2` the fence, `$3` the worker, `$4` the lease and `$5` the slot
/// grace in microseconds; formatted once, so its text never changes.
static HANDOFF: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH mine AS MATERIALIZED (
             SELECT account_id, 1 + extra_slots AS own FROM importer.jobs
              WHERE id = $1 AND lease_token = $2 AND locked_until IS NOT NULL AND holds_slot
         ),
         released AS (
             UPDATE importer.jobs SET holds_slot = false, extra_slots = 0
              WHERE id = $1 AND lease_token = $2 AND locked_until IS NOT NULL AND holds_slot
             RETURNING account_id
         ),
         -- Live slots of the account besides ours (as claim counts them): the swap may only
         -- take a new slot while that leaves the account within its cap, which an operator may
         -- just have lowered.
         room AS (
             SELECT a.id AS account_id
               FROM mine m
               JOIN importer.accounts a ON a.id = m.account_id AND NOT a.paused
              WHERE (SELECT coalesce(sum(1 + s.extra_slots), 0) FROM importer.jobs s
                      WHERE s.account_id = m.account_id AND s.holds_slot
                        AND s.locked_until > now() - $5 * interval '1 microsecond')
                    - m.own < a.max_concurrency
         ),
         next AS (
             SELECT j.id
               FROM importer.jobs j
               JOIN room r ON j.account_id = r.account_id
              WHERE j.locked_until IS NULL AND j.run_after <= now()
              ORDER BY j.run_after, j.id
              LIMIT 1
                FOR UPDATE OF j SKIP LOCKED
         ),
         claimed AS (
             UPDATE importer.jobs j
                SET {GRANT_LEASE}
               FROM next
              WHERE j.id = next.id AND j.locked_until IS NULL
             RETURNING {LEASED_COLUMNS}
         )
         SELECT (SELECT count(*) FROM released),
                (SELECT to_jsonb(c) FROM claimed c)"
    )
});

/// What a [`handoff_slot`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Handoff {
    /// The fence no longer holds a slot (lease taken over, or the slot already given back).
    Fenced,
    /// The slot was released; no job of the account was waiting, the account is paused, or it is
    /// at (or over) its cap without this slot.
    Released,
    /// The slot now belongs to this job, leased to the caller.
    Next(ClaimedJob),
}

/// Clears `fence`'s slot and, in the same statement, leases the next waiting job of the same
/// account to `worker_id` with that slot, unless the account is paused or its other live slots
/// already reach its `max_concurrency` (lowered meanwhile): then the slot is only released. Errors are database failures, and then nothing changes.
pub async fn handoff_slot(
    pool: &PgPool,
    fence: Fence,
    worker_id: &str,
    lease: Duration,
) -> Result<Handoff, QueueError> {
    let (released, next): (i64, Option<sqlx::types::Json<ClaimedJob>>) =
        sqlx::query_as(HANDOFF.as_str())
            .bind(fence.job_id)
            .bind(fence.token)
            .bind(worker_id)
            .bind(micros(lease))
            .bind(micros(SLOT_GRACE))
            .fetch_one(pool)
            .await?;
    Ok(match (released, next) {
        (0, _) => Handoff::Fenced,
        (_, None) => Handoff::Released,
        (_, Some(job)) => Handoff::Next(job.0),
    })
}
