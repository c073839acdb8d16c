//! How the services' connection pools check their connections.
//!
//! sqlx pings every connection it hands out (`test_before_acquire`): one more round trip
//! before each statement, which on a busy worker is a round trip per claim, completion, handoff
//! and heartbeat, and on an idle worker half of a one-statement claim's pickup. A connection
//! used moments ago was alive then: like HikariCP's `aliveBypassWindowMs` (500 ms), only a
//! connection idle for at least [`PING_AFTER_IDLE`] is pinged. A connection that died within
//! that window (PostgreSQL restarted) may fail its next statement instead, and is dropped;
//! every caller already handles a failed statement (retry, back off, or let the lease expire).

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::Connection;

/// Idle time after which a pooled connection is pinged before it is handed out.
pub const PING_AFTER_IDLE: Duration = Duration::from_millis(500);

/// Pool options with at most `max_connections`, pinging only connections idle for at least
/// [`PING_AFTER_IDLE`].
pub fn options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sqlx::PgPool;

    /// A connection idle past the window is pinged and, found dead, replaced: the caller never
    /// sees the dead connection.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_connection_idle_past_the_window_is_checked_before_use(pool: PgPool) {
        let ours = options(1)
            .connect_with((*pool.connect_options()).clone())
            .await
            .unwrap();
        let first: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&ours)
            .await
            .unwrap();
        // Kill the pooled connection's backend, then wait past the window.
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(first)
            .execute(&pool)
            .await
            .unwrap();
        tokio::time::sleep(PING_AFTER_IDLE + Duration::from_millis(200)).await;
        let second: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&ours)
            .await
            .unwrap();
        assert_ne!(first, second);
    }
}
