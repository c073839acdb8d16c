//! Lease renewal: one statement extends every lease this worker holds. A job whose lease was
//! taken over is cancelled locally so it stops spending requests on work that is no longer ours,
//! and so is a job whose lease this worker could not renew for [`AT_RISK`] of the lease
//! (database unreachable, pool starved): it stops before its lease can expire and be claimed
//! by another worker, so no job ever has two live holders and the account's Mailchimp
//! concurrency stays within its cap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use importer_core::queue::{self, Fence};
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The fraction of the lease after which a job whose lease was not renewed is stopped: past
/// two missed heartbeats (one every third of the lease), with a third of the lease left for
/// the job's task to stop before another worker may claim it.
pub(crate) const AT_RISK: f64 = 2.0 / 3.0;

/// One running job: its fence, the token that stops its task, when its lease was last known
/// to be extended (claimed or renewed), and whether the at-risk rule stopped it (its task may
/// still be ending; its lease is no longer renewed).
struct Entry {
    fence: Fence,
    token: CancellationToken,
    renewed_at: Instant,
    at_risk: bool,
}

/// The jobs this worker is running.
#[derive(Default, Clone)]
pub(crate) struct InFlight {
    jobs: Arc<Mutex<Jobs>>,
}

/// The running jobs, the leases of jobs that the at-risk rule stopped and whose task has ended
/// (to release once the database answers), and whether the set is closed (hard stop: no job
/// may start any more).
#[derive(Default)]
struct Jobs {
    running: HashMap<i64, Entry>,
    stopped: Vec<Fence>,
    closed: bool,
}

impl Jobs {
    /// Removes the entry of `fence`'s lease only: a newer lease of the same job id stays.
    fn take(&mut self, fence: Fence) -> Option<Entry> {
        match self.running.get(&fence.job_id) {
            Some(entry) if entry.fence == fence => self.running.remove(&fence.job_id),
            _ => None,
        }
    }
}

impl InFlight {
    /// Registers a running job whose lease was granted by a request sent at `asked_at` (the
    /// lease runs from the database's commit, which came after: counting from when the answer
    /// arrived would let a late answer outlive the lease unnoticed); `false` (nothing
    /// registered) once [`InFlight::cancel_all`] closed the set, or when a newer lease of the
    /// same job runs here: the caller must release the job instead (fenced, that changes
    /// nothing). Of two leases of one job id only the newer (the higher token: tokens come from
    /// one sequence) may run; an older one still registered is stopped.
    pub(crate) fn insert(&self, fence: Fence, token: CancellationToken, asked_at: Instant) -> bool {
        let mut jobs = self.lock();
        if jobs.closed {
            return false;
        }
        if let Some(current) = jobs.running.get(&fence.job_id) {
            if current.fence.token > fence.token {
                return false;
            }
            current.token.cancel();
        }
        let entry = Entry {
            fence,
            token,
            renewed_at: asked_at,
            at_risk: false,
        };
        jobs.running.insert(fence.job_id, entry);
        true
    }

    /// Forgets a job that ended: its own lease only. The same job id may already run again
    /// under a new lease here (it snoozed or retried, and was claimed again before this task
    /// ended); forgetting that one would leave its lease unrenewed and unreleased at shutdown.
    /// A job the at-risk rule stopped has its lease kept to release (its task has ended, so no
    /// request of it is still in flight).
    pub(crate) fn remove(&self, fence: Fence) {
        let mut jobs = self.lock();
        if let Some(entry) = jobs.take(fence) {
            if entry.at_risk {
                jobs.stopped.push(entry.fence);
            }
        }
    }

    /// The fences of every running job whose lease is renewed (not stopped as at risk).
    pub(crate) fn fences(&self) -> Vec<Fence> {
        self.lock()
            .running
            .values()
            .filter(|e| !e.at_risk)
            .map(|e| e.fence)
            .collect()
    }

    /// Jobs running now.
    pub(crate) fn len(&self) -> usize {
        self.lock().running.len()
    }

    /// Marks `held` as renewed at `at` and cancels (and forgets) the jobs of `asked` that are
    /// not in `held`: their lease was lost. Returns the lost job ids.
    fn renewed(&self, asked: &[Fence], held: &[Fence], at: Instant) -> Vec<i64> {
        let held: std::collections::HashSet<Fence> = held.iter().copied().collect();
        let mut jobs = self.lock();
        let mut lost = Vec::new();
        for fence in asked {
            if held.contains(fence) {
                if let Some(entry) = jobs.running.get_mut(&fence.job_id) {
                    entry.renewed_at = entry.renewed_at.max(at);
                }
            } else if let Some(entry) = jobs.take(*fence) {
                entry.token.cancel();
                lost.push(fence.job_id);
            }
        }
        lost
    }

    /// Cancels the jobs whose lease was last extended `limit` or longer ago; their leases are
    /// no longer renewed, and are released once their tasks end ([`InFlight::take_stopped`]).
    fn cancel_overdue(&self, limit: Duration) -> Vec<i64> {
        let mut jobs = self.lock();
        let mut overdue = Vec::new();
        for (id, entry) in jobs.running.iter_mut() {
            if !entry.at_risk && entry.renewed_at.elapsed() >= limit {
                entry.at_risk = true;
                entry.token.cancel();
                overdue.push(*id);
            }
        }
        overdue.sort_unstable();
        overdue
    }

    /// The leases of jobs stopped by [`InFlight::cancel_overdue`] whose tasks have ended, to
    /// release: a job stopped because the database did not answer was not at fault, so it must
    /// not wait out its lease and then spend an attempt (or die as `lease_expired` on its last
    /// one). Give back what could not be released with [`InFlight::keep_stopped`].
    pub(crate) fn take_stopped(&self) -> Vec<Fence> {
        std::mem::take(&mut self.lock().stopped)
    }

    /// Keeps `fences` to release later (the database did not answer yet).
    fn keep_stopped(&self, fences: Vec<Fence>) {
        self.lock().stopped.extend(fences);
    }

    /// Cancels every running job's task and returns their fences, and closes the set: no job
    /// starts after this (hard stop at shutdown).
    pub(crate) fn cancel_all(&self) -> Vec<Fence> {
        let mut jobs = self.lock();
        jobs.closed = true;
        let mut fences: Vec<Fence> = jobs
            .running
            .drain()
            .map(|(_, e)| {
                e.token.cancel();
                e.fence
            })
            .collect();
        fences.append(&mut jobs.stopped);
        fences
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Jobs> {
        // A poisoned map only means a task panicked mid-insert; the data is still consistent.
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Extends the leases of `in_flight` every `interval` until `stop` is cancelled, and stops the
/// jobs whose lease is lost or could not be renewed for [`AT_RISK`] of `lease`.
pub(crate) async fn run(
    pool: PgPool,
    in_flight: InFlight,
    lease: Duration,
    interval: Duration,
    stop: CancellationToken,
) {
    let at_risk = lease.mul_f64(AT_RISK);
    // Checked more often than renewals, so a stalled renewal cannot delay the stop.
    let mut ticker = tokio::time::interval((interval / 4).max(Duration::from_millis(50)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renewal: Option<tokio::task::JoinHandle<()>> = None;
    let mut last_renewal = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                if let Some(task) = renewal.take() {
                    task.abort();
                }
                return;
            }
            _ = ticker.tick() => {}
        }
        let overdue = in_flight.cancel_overdue(at_risk);
        if !overdue.is_empty() {
            tracing::error!(
                jobs = ?overdue,
                lease_secs = lease.as_secs_f64(),
                "leases could not be renewed for two thirds of the lease (database unreachable or pool exhausted); stopping those jobs before another worker may take them"
            );
        }
        if renewal.as_ref().is_some_and(|t| !t.is_finished()) || last_renewal.elapsed() < interval {
            continue;
        }
        last_renewal = Instant::now();
        let stopped = in_flight.take_stopped();
        if !stopped.is_empty() {
            // A task of its own, so that a slow release never delays a renewal.
            tokio::spawn(release_stopped(
                pool.clone(),
                in_flight.clone(),
                stopped,
                interval,
            ));
        }
        let fences = in_flight.fences();
        if fences.is_empty() {
            continue;
        }
        // In its own task: a renewal that hangs (the pool starved, a lock) must not stop the
        // overdue check above; it is abandoned after one interval.
        let (pool, in_flight, asked_at) = (pool.clone(), in_flight.clone(), Instant::now());
        renewal = Some(tokio::spawn(async move {
            renew(&pool, &in_flight, &fences, lease, interval, asked_at).await;
        }));
    }
}

/// Releases `stopped` (without spending their attempts), or keeps them for the next try when
/// the database does not answer within `interval`.
async fn release_stopped(
    pool: PgPool,
    in_flight: InFlight,
    stopped: Vec<Fence>,
    interval: Duration,
) {
    match tokio::time::timeout(interval, queue::release(&pool, &stopped)).await {
        Ok(Ok(released)) => tracing::warn!(
            jobs = ?stopped.iter().map(|f| f.job_id).collect::<Vec<_>>(),
            released,
            "released the jobs stopped while their leases could not be renewed (no attempt spent)"
        ),
        _ => in_flight.keep_stopped(stopped),
    }
}

/// One renewal of `fences`, asked at `asked_at`, abandoned after `interval`.
async fn renew(
    pool: &PgPool,
    in_flight: &InFlight,
    fences: &[Fence],
    lease: Duration,
    interval: Duration,
    asked_at: Instant,
) {
    match tokio::time::timeout(interval, queue::heartbeat(pool, fences, lease)).await {
        Ok(Ok(held)) => {
            let lost = in_flight.renewed(fences, &held, asked_at);
            if !lost.is_empty() {
                tracing::warn!(jobs = ?lost, "leases lost (taken over or job cancelled); stopping those jobs");
            }
        }
        Ok(Err(error)) => tracing::warn!(%error, "heartbeat failed; will retry"),
        Err(_) => tracing::warn!(
            timeout_ms = interval.as_millis() as u64,
            "heartbeat did not answer in time; will retry"
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn fence(job_id: i64) -> Fence {
        Fence {
            job_id,
            token: job_id * 10,
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_job_whose_lease_is_not_renewed_is_stopped_before_the_lease_ends() {
        let lease = Duration::from_secs(30);
        let at_risk = lease.mul_f64(AT_RISK);
        let in_flight = InFlight::default();
        let (stale, renewed) = (CancellationToken::new(), CancellationToken::new());
        in_flight.insert(fence(1), stale.clone(), Instant::now());
        in_flight.insert(fence(2), renewed.clone(), Instant::now());

        tokio::time::advance(Duration::from_secs(15)).await;
        let lost = in_flight.renewed(&[fence(2)], &[fence(2)], Instant::now());
        assert!(lost.is_empty());
        assert!(
            in_flight.cancel_overdue(at_risk).is_empty(),
            "nothing overdue at 15 s"
        );

        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(
            in_flight.cancel_overdue(at_risk),
            vec![1],
            "job 1 unrenewed for 21 s"
        );
        assert!(stale.is_cancelled());
        assert!(!renewed.is_cancelled(), "job 2 was renewed at 15 s");
        assert_eq!(in_flight.fences(), vec![fence(2)]);
    }

    /// Regression: a job stopped because its lease could not be renewed kept the lease until
    /// it expired, and was then claimed again with an attempt spent (dead as `lease_expired`
    /// on its last one) for an outage that was not its fault. Its lease is kept to release
    /// once its task has ended (no request of it in flight any more), and is no longer renewed.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_job_stopped_for_an_unanswered_renewal_is_released_once_its_task_ends() {
        let at_risk = Duration::from_secs(30).mul_f64(AT_RISK);
        let in_flight = InFlight::default();
        let token = CancellationToken::new();
        in_flight.insert(fence(1), token.clone(), Instant::now());
        tokio::time::advance(Duration::from_secs(21)).await;
        assert_eq!(in_flight.cancel_overdue(at_risk), vec![1]);
        assert!(token.is_cancelled());
        assert!(in_flight.cancel_overdue(at_risk).is_empty(), "stopped once");
        assert!(in_flight.fences().is_empty(), "no longer renewed");
        assert!(
            in_flight.take_stopped().is_empty(),
            "its task has not ended yet"
        );
        in_flight.remove(fence(1));
        let stopped = in_flight.take_stopped();
        assert_eq!(stopped, vec![fence(1)]);
        assert!(in_flight.take_stopped().is_empty(), "taken once");
        in_flight.keep_stopped(stopped);
        assert_eq!(
            in_flight.cancel_all(),
            vec![fence(1)],
            "released at shutdown at the latest"
        );
    }

    /// The release itself, against the database: once the stopped job's task has ended, the
    /// heartbeat gives the job back, waiting again with its attempt returned.
    #[sqlx::test(migrator = "importer_core::MIGRATOR")]
    async fn the_heartbeat_releases_a_stopped_job_when_the_database_answers(pool: PgPool) {
        let account: i64 = sqlx::query_scalar(
            "INSERT INTO importer.accounts (name, mailchimp_key, mailchimp_key_hint, destination_url,
                                            destination_key, destination_key_hint, max_concurrency)
             VALUES ('a', '\\x00', '…', 'http://127.0.0.1:1', '\\x00', '…', 5) RETURNING id",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        let job = queue::NewJob::new(queue::JobKind::Noop, serde_json::json!({}), account);
        queue::enqueue(&pool, &job).await.unwrap();
        let lease = Duration::from_secs(30);
        let claimed = queue::claim(&pool, "w", 1, lease).await.unwrap().remove(0);
        let in_flight = InFlight::default();
        // As if the database had not answered a renewal for 25 s of the 30 s lease.
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(25))
            .unwrap_or_else(Instant::now);
        let token = CancellationToken::new();
        in_flight.insert(claimed.fence(), token.clone(), long_ago);
        let stop = CancellationToken::new();
        let beat = tokio::spawn(run(
            pool.clone(),
            in_flight.clone(),
            lease,
            Duration::from_millis(100),
            stop.clone(),
        ));
        tokio::time::timeout(Duration::from_secs(10), token.cancelled())
            .await
            .expect("the at-risk rule stops the job");
        in_flight.remove(claimed.fence()); // what the job's task does when it ends
        let released = async {
            loop {
                let row: (Option<i64>, i32) =
                    sqlx::query_as("SELECT lease_token, attempts FROM importer.jobs WHERE id = $1")
                        .bind(claimed.id)
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                if row.0.is_none() {
                    return row.1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let attempts = tokio::time::timeout(Duration::from_secs(10), released)
            .await
            .expect("released within seconds");
        assert_eq!(attempts, 0, "no attempt spent");
        stop.cancel();
        beat.await.unwrap();
    }

    /// Regression: the set was keyed by job id and forgot by job id, so the end of a job's
    /// old task, or a renewal asked for its old lease, forgot the same job running again under
    /// a new lease: unrenewed, and left leased by a stopped worker (seen in CI as
    /// `a_stopped_worker_holds_no_lease_whenever_it_stops`).
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn an_old_lease_of_a_job_never_forgets_or_stops_its_new_one() {
        let in_flight = InFlight::default();
        let old = Fence {
            job_id: 20,
            token: 1,
        };
        let new = Fence {
            job_id: 20,
            token: 2,
        };
        let (old_token, new_token) = (CancellationToken::new(), CancellationToken::new());
        in_flight.insert(old, old_token.clone(), Instant::now());
        in_flight.insert(new, new_token.clone(), Instant::now());
        in_flight.remove(old);
        assert_eq!(
            in_flight.fences(),
            vec![new],
            "the old task's end keeps the new lease"
        );
        let lost = in_flight.renewed(&[old], &[], Instant::now());
        assert!(lost.is_empty(), "{lost:?}");
        assert!(!new_token.is_cancelled());
        assert_eq!(in_flight.cancel_all(), vec![new], "released at shutdown");
    }

    /// Regression: a lease was counted from when the claim's answer arrived, not from when the
    /// claim was sent, so an answer that came late (a slow claim, a stalled connection) let the
    /// job run past the lease's real end, beside the worker that claimed it next.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_lease_is_counted_from_the_request_that_granted_it() {
        let at_risk = Duration::from_secs(30).mul_f64(AT_RISK);
        let in_flight = InFlight::default();
        let asked_at = Instant::now();
        tokio::time::advance(Duration::from_secs(25)).await;
        let late = CancellationToken::new();
        in_flight.insert(fence(1), late.clone(), asked_at);
        assert_eq!(
            in_flight.cancel_overdue(at_risk),
            vec![1],
            "25 s of a 30 s lease gone"
        );
        assert!(late.is_cancelled());
    }

    /// Regression: a job claimed again by the same worker replaced its older entry without
    /// stopping it, so two tasks ran it and shutdown could stop only one.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_newer_lease_of_a_job_stops_the_older_task() {
        let in_flight = InFlight::default();
        let (older, newer) = (CancellationToken::new(), CancellationToken::new());
        in_flight.insert(
            Fence {
                job_id: 5,
                token: 1,
            },
            older.clone(),
            Instant::now(),
        );
        in_flight.insert(
            Fence {
                job_id: 5,
                token: 2,
            },
            newer.clone(),
            Instant::now(),
        );
        assert!(older.is_cancelled() && !newer.is_cancelled());
        // A lease answered late, older than the one running: refused, the newer one kept.
        let late = CancellationToken::new();
        assert!(!in_flight.insert(
            Fence {
                job_id: 5,
                token: 1
            },
            late.clone(),
            Instant::now()
        ));
        assert!(!newer.is_cancelled());
        assert_eq!(
            in_flight.fences(),
            vec![Fence {
                job_id: 5,
                token: 2
            }]
        );
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_lease_that_did_not_renew_is_lost_and_its_job_stopped() {
        let in_flight = InFlight::default();
        let (kept, lost) = (CancellationToken::new(), CancellationToken::new());
        in_flight.insert(fence(1), kept.clone(), Instant::now());
        in_flight.insert(fence(2), lost.clone(), Instant::now());
        let gone = in_flight.renewed(&[fence(1), fence(2)], &[fence(1)], Instant::now());
        assert_eq!(gone, vec![2]);
        assert!(lost.is_cancelled() && !kept.is_cancelled());
        assert_eq!(in_flight.len(), 1);
    }
}
