//! Records imported per minute (`importer.records_per_minute`, kept by a trigger on
//! `runs.records_imported`): what the dashboard's throughput chart draws.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

/// Records imported in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Minute {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    /// Records the destination accepted in it.
    pub records: i64,
}
crate::from_row!(Minute { minute, records });

/// Every minute of the last `minutes` minutes, oldest first, the current one included; minutes
/// with no import count 0. Errors are database failures.
pub async fn per_minute(pool: &PgPool, minutes: i32) -> Result<Vec<Minute>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.minute, coalesce(sum(m.records), 0)::bigint AS records
           FROM generate_series(date_trunc('minute', now()) - ($1 - 1) * interval '1 minute',
                                date_trunc('minute', now()), interval '1 minute') AS s(minute)
           LEFT JOIN importer.records_per_minute m ON m.minute = s.minute
          GROUP BY s.minute
          ORDER BY s.minute",
    )
    .bind(minutes.max(1))
    .fetch_all(pool)
    .await
}
