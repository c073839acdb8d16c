//! `from_row!` and `text_enum!` (`importer-core/src/row_mapping.rs`, which replace sqlx's derives)
//! against the real PostgreSQL: every variant round-trips as text under its database name, an
//! unknown name is an error naming the type, and a missing column fails the row.

#![allow(clippy::unwrap_used)]

use std::fmt::Debug;

use importer_core::audit::{Outcome, Via};
use importer_core::queue::{DeadReason, JobKind, JobState};
use importer_core::runs::{RunMode, RunStatus, Trigger};
use importer_core::throughput::Minute;
use sqlx::{PgPool, Postgres};

/// Binds each value, reads it back as text (its database name) and as the enum again.
async fn round_trip<T>(pool: &PgPool, values: &[(T, &str)])
where
    T: Copy + PartialEq + Debug + Send + Unpin,
    T: for<'q> sqlx::Encode<'q, Postgres>
        + for<'r> sqlx::Decode<'r, Postgres>
        + sqlx::Type<Postgres>,
{
    for &(value, name) in values {
        let (text, back): (String, T) = sqlx::query_as("SELECT $1::text, $1")
            .bind(value)
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(text, name, "{value:?} is stored as {name:?}");
        assert_eq!(back, value);
        let decoded: T = sqlx::query_scalar("SELECT $1::text")
            .bind(name)
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(decoded, value, "{name:?} decodes to {value:?}");
    }
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn every_text_enum_round_trips_by_its_database_name(pool: PgPool) {
    use JobKind::*;
    round_trip(
        &pool,
        &[
            (PlanRun, "plan_run"),
            (ImportWindow, "import_window"),
            (AuditList, "audit_list"),
            (Noop, "noop"),
        ],
    )
    .await;
    round_trip(
        &pool,
        &[
            (JobState::Waiting, "waiting"),
            (JobState::Scheduled, "scheduled"),
            (JobState::Running, "running"),
            (JobState::Expired, "expired"),
        ],
    )
    .await;
    round_trip(
        &pool,
        &[
            (DeadReason::Exhausted, "exhausted"),
            (DeadReason::Permanent, "permanent"),
            (DeadReason::LeaseExpired, "lease_expired"),
        ],
    )
    .await;
    round_trip(
        &pool,
        &[
            (RunStatus::Planning, "planning"),
            (RunStatus::Running, "running"),
            (RunStatus::Completed, "completed"),
            (RunStatus::Failed, "failed"),
            (RunStatus::Cancelled, "cancelled"),
        ],
    )
    .await;
    round_trip(
        &pool,
        &[
            (RunMode::Full, "full"),
            (RunMode::Incremental, "incremental"),
            (RunMode::Audit, "audit"),
        ],
    )
    .await;
    round_trip(
        &pool,
        &[(Trigger::Schedule, "schedule"), (Trigger::Admin, "admin")],
    )
    .await;
    round_trip(&pool, &[(Via::Cli, "cli"), (Via::Dashboard, "dashboard")]).await;
    round_trip(
        &pool,
        &[
            (Outcome::Ok, "ok"),
            (Outcome::Refused, "refused"),
            (Outcome::Failed, "failed"),
        ],
    )
    .await;
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn an_unknown_name_is_an_error_naming_the_type(pool: PgPool) {
    let err = sqlx::query_scalar::<_, JobKind>("SELECT 'import_everything'::text")
        .fetch_one(&pool)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("unknown JobKind") && message.contains("import_everything"),
        "{message}"
    );
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn a_row_is_read_by_column_name_and_a_missing_column_fails_it(pool: PgPool) {
    let minute: Minute = sqlx::query_as(
        "SELECT 7::bigint AS records, timestamptz '2026-12-02 10:00:00+00' AS minute",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(minute.records, 7);
    assert_eq!(minute.minute.to_rfc3339(), "2026-12-02T10:00:00+00:00");

    let err = sqlx::query_as::<_, Minute>("SELECT 7::bigint AS records")
        .fetch_one(&pool)
        .await
        .unwrap_err();
    assert!(
        matches!(err, sqlx::Error::ColumnNotFound(ref c) if c == "minute"),
        "{err}"
    );
}
