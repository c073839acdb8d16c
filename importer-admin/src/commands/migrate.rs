//! `migrate` (apply `importer_core::MIGRATOR`, then the roles and grants of
//! `importer_core::roles`; idempotent) and `migrate --check` (list pending migrations, fail if
//! there are any).

use std::io::Write;

use anyhow::{bail, Context};
use importer_core::MIGRATOR;
use serde::Serialize;
use sqlx::migrate::Migrate;
use sqlx::PgPool;

use crate::output::{self, Format};

/// A migration of this build.
#[derive(Debug, Serialize)]
struct MigrationView {
    version: i64,
    description: String,
    applied: bool,
}

/// Runs `migrate` or `migrate --check`.
pub async fn run<W: Write>(
    pool: &PgPool,
    check: bool,
    skip_roles: bool,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    let before = status(pool).await?;
    let pending: Vec<&MigrationView> = before.iter().filter(|m| !m.applied).collect();
    if check {
        if format == Format::Json {
            output::write_json(out, &before)?;
        } else if pending.is_empty() {
            writeln!(
                out,
                "database is up to date ({} applied)",
                migrations(before.len())
            )?;
        } else {
            writeln!(out, "pending: {}", migrations(pending.len()))?;
            for m in &pending {
                writeln!(out, "  {} {}", m.version, m.description)?;
            }
        }
        if !pending.is_empty() {
            bail!(
                "{} pending; apply with importer-admin migrate",
                migrations(pending.len())
            );
        }
        return Ok(());
    }
    MIGRATOR
        .run(pool)
        .await
        .context("cannot apply the migrations")?;
    if !skip_roles {
        importer_core::roles::apply(pool).await.context(
            "cannot create the roles importer_worker and importer_operator or grant them \
             (the migrating user needs CREATEROLE and must own the schema; --skip-roles skips)",
        )?;
    }
    let applied: Vec<&MigrationView> = pending;
    let text = if applied.is_empty() {
        format!(
            "database is up to date ({} applied)",
            migrations(before.len())
        )
    } else {
        let names: Vec<String> = applied
            .iter()
            .map(|m| format!("{} {}", m.version, m.description))
            .collect();
        format!(
            "applied {}: {}",
            migrations(applied.len()),
            names.join(", ")
        )
    };
    let after = status(pool).await?;
    output::done(out, format, &text, &after)
}

fn migrations(n: usize) -> String {
    output::count(n as u64, "migration", "migrations")
}

/// Every migration of this build and whether the database has it.
async fn status(pool: &PgPool) -> anyhow::Result<Vec<MigrationView>> {
    // Reading only: a database never migrated has no bookkeeping table yet, and --check must
    // not create one.
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    let applied: Vec<i64> = if exists {
        let mut conn = pool.acquire().await?;
        conn.list_applied_migrations()
            .await
            .context("cannot read the applied migrations")?
            .into_iter()
            .map(|m| m.version)
            .collect()
    } else {
        Vec::new()
    };
    Ok(MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| MigrationView {
            version: m.version,
            description: m.description.to_string(),
            applied: applied.contains(&m.version),
        })
        .collect())
}
