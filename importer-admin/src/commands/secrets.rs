//! `secrets status | rotate`: which encryption key sealed the stored API keys, and re-sealing
//! them all under a new one while the workers run.
//!
//! A rotation, with no downtime:
//! 1. give every worker and `importer-admin` the new key as `IMPORTER_SECRET_KEY` and the old
//!    one as `IMPORTER_SECRET_KEY_PREVIOUS`, and restart them (they open both, seal with the new);
//! 2. `importer-admin secrets rotate`;
//! 3. when `secrets status` shows 0 under the previous key, remove `IMPORTER_SECRET_KEY_PREVIOUS`.

use std::io::Write;

use anyhow::{bail, Context};
use importer_core::accounts::{self, KeyUsage, RotationReport};
use importer_core::secrets::SecretBox;
use sqlx::PgPool;

use crate::cli::SecretsCommand;
use crate::output::{self, Format};

/// Runs a `secrets` subcommand.
pub async fn run<W: Write>(
    pool: &PgPool,
    command: SecretsCommand,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    let secrets = SecretBox::from_env().context("cannot load the encryption keys")?;
    match command {
        SecretsCommand::Status => status(pool, &secrets, format, out).await,
        SecretsCommand::Rotate { batch } => rotate(pool, &secrets, batch, format, out).await,
    }
}

async fn status<W: Write>(
    pool: &PgPool,
    secrets: &SecretBox,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    let usage = accounts::key_usage(pool, secrets).await?;
    if format == Format::Json {
        return output::write_json(out, &usage);
    }
    writeln!(out, "{}", usage_table(&usage))?;
    if usage.previous + usage.legacy > 0 {
        writeln!(
            out,
            "{} stored keys are not under the current key yet: run importer-admin secrets rotate",
            usage.previous + usage.legacy
        )?;
    } else if usage.previous_key_id.is_some() {
        writeln!(
            out,
            "rotation complete: IMPORTER_SECRET_KEY_PREVIOUS can be removed"
        )?;
    }
    Ok(())
}

fn usage_table(usage: &KeyUsage) -> comfy_table::Table {
    let mut rows = vec![(
        "current key",
        format!("{}: {} stored keys", usage.current_key_id, usage.current),
    )];
    rows.push((
        "previous key",
        match &usage.previous_key_id {
            Some(id) => format!("{id}: {} stored keys", usage.previous),
            None => "- (IMPORTER_SECRET_KEY_PREVIOUS is not set)".to_owned(),
        },
    ));
    rows.push(("old format", format!("{} stored keys", usage.legacy)));
    for (id, count) in &usage.unknown {
        rows.push(("unknown key", format!("{id}: {count} stored keys")));
    }
    output::details(rows)
}

async fn rotate<W: Write>(
    pool: &PgPool,
    secrets: &SecretBox,
    batch: i64,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    let report = accounts::rotate_secrets(pool, secrets, batch, |so_far| {
        tracing::info!(
            accounts = so_far.accounts,
            resealed = so_far.resealed,
            "rotation batch committed"
        );
    })
    .await?;
    match format {
        Format::Json => output::write_json(out, &report)?,
        Format::Table => write_report(out, secrets, &report)?,
    }
    if !report.failed.is_empty() {
        bail!(
            "{} stored keys could not be re-sealed (listed above); they are unchanged",
            report.failed.len()
        );
    }
    Ok(())
}

fn write_report<W: Write>(
    out: &mut W,
    secrets: &SecretBox,
    report: &RotationReport,
) -> anyhow::Result<()> {
    writeln!(
        out,
        "rotated to key {}: {} accounts, {} keys re-sealed, {} already under it, {} failed",
        secrets.current_key_id(),
        report.accounts,
        report.resealed,
        report.already_current,
        report.failed.len()
    )?;
    for failure in &report.failed {
        writeln!(
            out,
            "  account {} {}: {}",
            failure.account_id, failure.column, failure.error
        )?;
    }
    Ok(())
}
