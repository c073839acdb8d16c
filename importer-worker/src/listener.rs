//! Wake-ups: `LISTEN importer_jobs` so idle workers claim within milliseconds of an insert.

use std::time::Duration;

use importer_core::queue::NOTIFY_CHANNEL;
use sqlx::postgres::PgListener;
use sqlx::PgPool;

/// A notification listener that degrades to polling when its connection is lost.
pub(crate) struct JobListener {
    inner: Option<PgListener>,
}

impl JobListener {
    /// Connects and registers for notifications. Call it *before* the first claim, so a job
    /// inserted between that claim's query and the first wait still wakes us.
    pub(crate) async fn connect(pool: &PgPool) -> Self {
        let inner = match PgListener::connect_with(pool).await {
            Ok(mut listener) => match listener.listen(NOTIFY_CHANNEL).await {
                Ok(()) => Some(listener),
                Err(error) => {
                    tracing::warn!(%error, "LISTEN failed; falling back to polling");
                    None
                }
            },
            Err(error) => {
                tracing::warn!(%error, "listener connection failed; falling back to polling");
                None
            }
        };
        JobListener { inner }
    }

    /// Waits for a notification; never returns if notifications are unavailable (the caller
    /// races this against its poll timer). Coalesces a burst of notifications into one wake-up.
    pub(crate) async fn notified(&mut self) {
        let Some(listener) = self.inner.as_mut() else {
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
