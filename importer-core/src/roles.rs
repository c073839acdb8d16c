//! Least privilege: the group roles `importer_worker` and `importer_operator` and their grants
//! (`roles.sql`). The schema's owner, which runs the migrations, applies them after every
//! migration; deployments grant a group role to each login role (`GRANT importer_worker TO
//! worker_login`). A worker so cannot change the schema, read the audit log or write an
//! account; an operator cannot change the schema or rewrite the audit log.

use sqlx::PgPool;

/// The worker's group role.
pub const WORKER_ROLE: &str = "importer_worker";
/// The operator's group role (importer-admin, the dashboard, the exporter).
pub const OPERATOR_ROLE: &str = "importer_operator";

/// Creates the group roles if they are missing and (re)applies their grants; idempotent.
/// Needs the `CREATEROLE` privilege the first time, and ownership of the schema. Errors are
/// database failures (e.g. permission denied).
pub async fn apply(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(include_str!("roles.sql"))
        .execute(pool)
        .await?;
    Ok(())
}
