//! `tick`: runs the scheduler once (`importer.tick()`, on the database clock) and prints the runs it created.

use std::io::Write;

use importer_core::tick;
use sqlx::PgPool;

use crate::output::{self, Format};
use crate::progress;
use crate::views;

/// Runs `tick`.
pub async fn run<W: Write>(pool: &PgPool, format: Format, out: &mut W) -> anyhow::Result<()> {
    let created = tick::tick(pool, None).await?;
    let ids: Vec<i64> = created.iter().map(|r| r.run_id).collect();
    let rows = progress::by_ids(pool, &ids).await?;
    if format == Format::Json {
        return output::write_json(out, &rows);
    }
    if rows.is_empty() {
        writeln!(
            out,
            "tick created no runs: no enabled list of an active account is due"
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "tick created {}:",
        output::count(rows.len() as u64, "run", "runs")
    )?;
    output::write_table(out, &views::run_table(&rows))
}
