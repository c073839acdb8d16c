//! Batched completions: jobs whose whole result is "done, with N records" (see
//! [`Completion::fits_batch`]) are completed together by one task, in one statement
//! ([`queue::complete_many`]) per batch.
//!
//! The task takes whatever completions are waiting when it is free, up to [`MAX_BATCH`]: under
//! load one transaction completes hundreds of jobs, and an idle worker completes a lone job at
//! once, with no timer adding latency. Every job still waits for its own answer, so a lost
//! lease or a failed commit is handled by the job like any other completion.
//!
//! [`Completion::fits_batch`]: importer_core::queue::Completion::fits_batch

use importer_core::queue::{self, Fence};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

/// Most completions in one statement.
pub(crate) const MAX_BATCH: usize = 500;

/// The answer to one job: `Ok(true)` completed, `Ok(false)` fenced, `Err` the statement failed.
type Answer = Result<bool, String>;

/// The sending side, shared by the jobs of one worker.
pub(crate) struct Completer {
    tx: mpsc::UnboundedSender<(Fence, i64, oneshot::Sender<Answer>)>,
}

impl Completer {
    /// Starts the completing task on `pool`; it ends when the completer is dropped.
    pub(crate) fn start(pool: PgPool) -> (Completer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Completer { tx }, tokio::spawn(complete_batches(pool, rx)))
    }

    /// Completes the fenced job with `records` imported, batched with others.
    pub(crate) async fn complete(&self, fence: Fence, records: i64) -> Answer {
        let (done, answer) = oneshot::channel();
        self.tx
            .send((fence, records, done))
            .map_err(|_| "the completion task has stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the completion task has stopped".to_owned())?
    }
}

async fn complete_batches(
    pool: PgPool,
    mut rx: mpsc::UnboundedReceiver<(Fence, i64, oneshot::Sender<Answer>)>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let items: Vec<(Fence, i64)> = batch.iter().map(|(f, n, _)| (*f, *n)).collect();
        let result = queue::complete_many(&pool, &items).await.map(|held| {
            held.into_iter()
                .collect::<std::collections::HashSet<Fence>>()
        });
        metrics::histogram!("importer_completion_batch_size").record(items.len() as f64);
        for (fence, _, done) in batch.drain(..) {
            let answer = match &result {
                Ok(held) => Ok(held.contains(&fence)),
                Err(error) => Err(error.to_string()),
            };
            // The job may have been cancelled meanwhile; then nobody waits for the answer.
            let _ = done.send(answer);
        }
    }
}
