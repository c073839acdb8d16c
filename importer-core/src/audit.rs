//! The audit log (`importer.audit_log`): one row per operator action taken through the CLI or
//! the dashboard, with who, what, on which objects, when, and the outcome. Rows are only ever
//! appended; [`list`] reads them newest first.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

/// Where an action came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// `importer-admin` on the command line.
    Cli,
    /// The web dashboard (`importer-admin serve`).
    Dashboard,
}

crate::text_enum!(Via { Cli => "cli", Dashboard => "dashboard" });

/// What came of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It was done.
    Ok,
    /// Invalid or not allowed: nothing changed.
    Refused,
    /// It failed with an error.
    Failed,
}

crate::text_enum!(Outcome { Ok => "ok", Refused => "refused", Failed => "failed" });

/// An action to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    /// Dashboard user, or `cli:<user>`.
    pub actor: String,
    /// CLI or dashboard.
    pub via: Via,
    /// A command path such as `accounts.pause`.
    pub action: String,
    /// The objects acted on (never a secret).
    pub objects: serde_json::Value,
    /// What came of it.
    pub outcome: Outcome,
    /// A summary of the result or the error message.
    pub detail: Option<String>,
}

/// A row of `importer.audit_log`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Row id (newer rows have larger ids).
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// From where.
    pub via: Via,
    /// What.
    pub action: String,
    /// On which objects.
    pub objects: serde_json::Value,
    /// The outcome.
    pub outcome: Outcome,
    /// The result or the error.
    pub detail: Option<String>,
}
crate::from_row!(Entry {
    id,
    at,
    actor,
    via,
    action,
    objects,
    outcome,
    detail
});

/// Which rows [`list`] returns, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this actor's.
    pub actor: Option<String>,
    /// Only this action's.
    pub action: Option<String>,
    /// Only rows older than this id (the next page).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// Longest detail kept: an error message, not a dump.
const DETAIL_MAX_CHARS: usize = 2000;

/// Appends `entry`; returns its id. Errors are database failures.
pub async fn record(pool: &PgPool, entry: &NewEntry) -> Result<i64, sqlx::Error> {
    let detail = entry
        .detail
        .as_deref()
        .map(|d| d.chars().take(DETAIL_MAX_CHARS).collect::<String>());
    sqlx::query_scalar(
        "INSERT INTO importer.audit_log (actor, via, action, objects, outcome, detail)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(&entry.actor)
    .bind(entry.via)
    .bind(&entry.action)
    .bind(&entry.objects)
    .bind(entry.outcome)
    .bind(detail)
    .fetch_one(pool)
    .await
}

/// Rows matching `filter`, newest first (one index range each: the primary key, or the actor or
/// action index). Errors are database failures.
pub async fn list(pool: &PgPool, filter: &Filter) -> Result<Vec<Entry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, at, actor, via, action, objects, outcome, detail
           FROM importer.audit_log
          WHERE ($1::text IS NULL OR actor = $1)
            AND ($2::text IS NULL OR action = $2)
            AND ($3::bigint IS NULL OR id < $3)
          ORDER BY id DESC
          LIMIT $4",
    )
    .bind(filter.actor.as_deref())
    .bind(filter.action.as_deref())
    .bind(filter.before_id)
    .bind(filter.limit)
    .fetch_all(pool)
    .await
}
