//! Wake-ups: `LISTEN importer_jobs` so idle workers claim within milliseconds of an insert.

use std::time::Duration;

use importer_core::queue::NOTIFY_CHANNEL;
use sqlx::postgres::PgListener;
use sqlx::PgPool;

/// How often a listener that never connected (the database was down when the worker started)
/// tries again.
const CONNECT_RETRY: Duration = Duration::from_secs(5);

/// A notification listener that degrades to polling when its connection is lost, and connects
/// later if it could not at first.
pub(crate) struct JobListener {
    inner: Option<PgListener>,
    pool: PgPool,
    next_attempt: tokio::time::Instant,
}

impl JobListener {
    /// Connects and registers for notifications. Call it *before* the first claim, so a job
    /// inserted between that claim's query and the first wait still wakes us.
    pub(crate) async fn connect(pool: &PgPool) -> Self {
        JobListener {
            inner: open(pool).await,
            pool: pool.clone(),
            next_attempt: tokio::time::Instant::now() + CONNECT_RETRY,
        }
    }

    /// Waits for a notification; never returns while notifications are unavailable (the
    /// caller races this against its poll timer), except once when a listener that could not
    /// connect at first connects now (regression: it polled for the worker's whole life).
    /// Coalesces a burst of notifications into one wake-up.
    pub(crate) async fn notified(&mut self) {
        let Some(listener) = self.inner.as_mut() else {
            if tokio::time::Instant::now() < self.next_attempt {
                return std::future::pending().await;
            }
            self.next_attempt = tokio::time::Instant::now() + CONNECT_RETRY;
            self.inner = open(&self.pool).await;
            if self.inner.is_some() {
                // Notifications sent before now were missed: a wake-up lets the claim loop look.
                tracing::info!("notification listener connected");
                return;
            }
            return std::future::pending().await;
        };
        match listener.try_recv().await {
            Ok(Some(_)) => {
                // Drain what is already buffered: one claim serves them all.
                while let Some(Ok(Some(_))) = futures::FutureExt::now_or_never(listener.try_recv())
                {
                }
            }
            Ok(None) => {
                // Connection lost; sqlx reconnects on the next call. Notifications sent meanwhile
                // are lost, so report a wake-up and let the claim loop look.
                tracing::warn!("notification connection lost; reconnecting");
            }
            Err(error) => {
                tracing::warn!(%error, "notification listener failed; retrying shortly");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// A listener registered on [`NOTIFY_CHANNEL`], or `None` (logged) when that fails.
async fn open(pool: &PgPool) -> Option<PgListener> {
    match PgListener::connect_with(pool).await {
        Ok(mut listener) => match listener.listen(NOTIFY_CHANNEL).await {
            Ok(()) => Some(listener),
            Err(error) => {
                tracing::warn!(%error, "LISTEN failed; polling until it succeeds");
                None
            }
        },
        Err(error) => {
            tracing::warn!(%error, "listener connection failed; polling until it connects");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Regression: a worker started while the database was down never listened again, and
    /// picked jobs up by polling only, for its whole life.
    #[sqlx::test(migrator = "importer_core::MIGRATOR")]
    async fn a_listener_that_could_not_connect_at_first_connects_later(pool: PgPool) {
        let mut listener = JobListener {
            inner: None,
            pool: pool.clone(),
            next_attempt: tokio::time::Instant::now(),
        };
        tokio::time::timeout(Duration::from_secs(10), listener.notified())
            .await
            .expect("the retry answers as a wake-up");
        assert!(listener.inner.is_some(), "connected and listening");
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(NOTIFY_CHANNEL)
            .execute(&pool)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), listener.notified())
            .await
            .expect("a notification wakes it");
    }
}
