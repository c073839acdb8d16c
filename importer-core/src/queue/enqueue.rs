//! Adding jobs: one statement for any number of jobs (`UNNEST`), counted on their runs in the
//! same transaction, and one `NOTIFY` to wake idle workers.

use sqlx::{Acquire, PgConnection, PgExecutor, Postgres};

use super::{NewJob, QueueError};

/// Enqueues one job; returns its id. See [`enqueue_many`] for the rules and errors.
pub async fn enqueue<'a, A>(conn: A, job: &NewJob) -> Result<i64, QueueError>
where
    A: Acquire<'a, Database = Postgres>,
{
    let ids = enqueue_many(conn, std::slice::from_ref(job)).await?;
    // enqueue_many returns one id per job, so this cannot be empty.
    ids.first()
        .copied()
        .ok_or(QueueError::Database(sqlx::Error::RowNotFound))
}

/// Enqueues `jobs` in one statement and notifies [`NOTIFY_CHANNEL`](super::NOTIFY_CHANNEL);
/// returns their ids in input order.
///
/// Jobs with a `run_id` are counted on their run (`jobs_total`, `jobs_pending`), which must be
/// planning or running; otherwise nothing is enqueued and the error is
/// [`QueueError::RunNotActive`]. Pass a pool, a connection or a transaction (a savepoint is used
/// inside a caller's transaction); the notification goes out when the outermost one commits.
pub async fn enqueue_many<'a, A>(conn: A, jobs: &[NewJob]) -> Result<Vec<i64>, QueueError>
where
    A: Acquire<'a, Database = Postgres>,
{
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    if jobs.iter().all(|j| j.run_id.is_none()) {
        // No run to check or count: the single INSERT is atomic on its own.
        let mut conn = conn.acquire().await?;
        return insert_jobs(&mut conn, jobs).await;
    }
    let mut tx = conn.begin().await?;
    let ids = insert_jobs(&mut tx, jobs).await?;
    tx.commit().await?;
    Ok(ids)
}

/// Locks the runs named by `jobs` (in id order), checks they are active, inserts the jobs and
/// counts them on their runs. Must run inside a transaction when any job has a run.
pub(crate) async fn insert_jobs(
    conn: &mut PgConnection,
    jobs: &[NewJob],
) -> Result<Vec<i64>, QueueError> {
    let mut run_ids: Vec<i64> = jobs.iter().filter_map(|j| j.run_id).collect();
    run_ids.sort_unstable();
    run_ids.dedup();
    if !run_ids.is_empty() {
        let active: Vec<i64> = sqlx::query_scalar(
            "SELECT r.id FROM importer.runs r
              WHERE r.id = ANY($1) AND r.status IN ('planning', 'running')
              ORDER BY r.id
                FOR NO KEY UPDATE",
        )
        .bind(&run_ids)
        .fetch_all(&mut *conn)
        .await?;
        if let Some(missing) = run_ids.iter().find(|id| !active.contains(id)) {
            return Err(QueueError::RunNotActive { run_id: *missing });
        }
    }

    let kinds: Vec<&str> = jobs.iter().map(|j| j.kind.as_str()).collect();
    let args: Vec<&serde_json::Value> = jobs.iter().map(|j| &j.args).collect();
    let accounts: Vec<i64> = jobs.iter().map(|j| j.account_id).collect();
    let runs: Vec<Option<i64>> = jobs.iter().map(|j| j.run_id).collect();
    let max_attempts: Vec<i32> = jobs.iter().map(|j| j.max_attempts).collect();
    let run_after: Vec<Option<chrono::DateTime<chrono::Utc>>> =
        jobs.iter().map(|j| j.run_after).collect();

    // Identity values are drawn in insertion order, so sorting the ids restores input order.
    let ids: Vec<i64> = sqlx::query_scalar(
        "WITH input AS (
             SELECT * FROM unnest($1::text[], $2::jsonb[], $3::bigint[], $4::bigint[],
                                  $5::int[], $6::timestamptz[])
                      WITH ORDINALITY AS t(kind, args, account_id, run_id, max_attempts, run_after, ord)
         ),
         inserted AS (
             INSERT INTO importer.jobs (kind, args, account_id, run_id, max_attempts, run_after)
             SELECT i.kind, i.args, i.account_id, i.run_id, i.max_attempts, coalesce(i.run_after, now())
               FROM input i
              ORDER BY i.ord
             RETURNING id
         ),
         counted AS (
             UPDATE importer.runs r
                SET jobs_total = r.jobs_total + c.n,
                    jobs_pending = r.jobs_pending + c.n
               FROM (SELECT run_id, count(*)::int AS n FROM input
                      WHERE run_id IS NOT NULL GROUP BY run_id) c
              WHERE r.id = c.run_id
         ),
         notified AS MATERIALIZED (
             SELECT importer.wake_workers() WHERE EXISTS (SELECT 1 FROM inserted)
         )
         SELECT id FROM inserted
          WHERE (SELECT count(*) FROM notified) >= 0
          ORDER BY id",
    )
    .bind(&kinds)
    .bind(&args)
    .bind(&accounts)
    .bind(&runs)
    .bind(&max_attempts)
    .bind(&run_after)
    .fetch_all(&mut *conn)
    .await?;
    Ok(ids)
}

/// Takes back a job of a run that no worker holds: deletes it and counts it done on its run, in
/// one statement (run row locked before the job row). Returns whether it was still waiting; a
/// claimed, finished or missing job is left alone. A lane is taken back with
/// [`crate::lanes::withdraw`], which calls this after checking that the lane has not read.
/// Errors are database failures.
pub async fn withdraw<'e, E: PgExecutor<'e>>(executor: E, job_id: i64) -> Result<bool, QueueError> {
    let gone: i64 = sqlx::query_scalar(
        "WITH run_lock AS MATERIALIZED (
             SELECT r.id FROM importer.runs r
              WHERE r.id = (SELECT j.run_id FROM importer.jobs j
                             WHERE j.id = $1 AND j.locked_until IS NULL)
                FOR NO KEY UPDATE
         ),
         gone AS (
             DELETE FROM importer.jobs j
              WHERE j.id = $1 AND j.locked_until IS NULL
                AND (SELECT count(*) FROM run_lock) >= 0
             RETURNING j.run_id
         ),
         counted AS (
             UPDATE importer.runs r
                SET jobs_pending = r.jobs_pending - 1,
                    jobs_done = r.jobs_done + 1
               FROM gone g
              WHERE r.id = g.run_id
         )
         SELECT count(*) FROM gone",
    )
    .bind(job_id)
    .fetch_one(executor)
    .await?;
    Ok(gone == 1)
}
