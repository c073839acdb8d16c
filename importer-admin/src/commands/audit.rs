//! `audit`: audits a list (a run of mode `audit`, done by the workers) and prints what it found:
//! drift healed, members deleted in Mailchimp, and what the audit cost.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use importer_core::list_audit::{self, AuditResult, DeletedMember};
use importer_core::runs;
use serde::Serialize;
use sqlx::PgPool;

use crate::cli::AuditArgs;
use crate::lookup;
use crate::output::{self, Format};
use crate::progress;

/// Deleted members listed by id (the rest: `importer.deleted_members`).
const LISTED: i64 = 20;

/// What `audit` prints as JSON.
#[derive(Serialize)]
struct AuditView {
    result: AuditResult,
    bytes_per_member: f64,
    deleted_members_total: i64,
    deleted_members: Vec<DeletedMember>,
}

/// Runs `audit`.
pub async fn run<W: Write>(
    pool: &PgPool,
    args: AuditArgs,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    let (list, account) = lookup::list(pool, &args.list).await?;
    let label = format!("{}/{}", account.name, list.mailchimp_list_id);
    if args.last {
        let result = list_audit::latest(pool, list.id)
            .await?
            .with_context(|| format!("list {label} has not been audited yet"))?;
        return print(pool, result, &label, format, out).await;
    }
    let run = runs::create_audit(pool, list.id, args.redeliver).await?;
    if args.no_wait {
        let text = format!(
            "started audit run {} of {label} (until {}); follow it with: importer-admin runs watch {}",
            run.id,
            output::time(run.until),
            run.id
        );
        let rows = progress::by_ids(pool, &[run.id]).await?;
        return output::done(out, format, &text, &rows);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs);
    let finished = loop {
        let now = runs::get(pool, run.id)
            .await?
            .context("the audit run vanished")?;
        if !now.status.is_active() {
            break now;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "audit run {} still {} after {} s (are workers running?); follow it with: importer-admin runs watch {}",
            run.id,
            now.status,
            args.timeout_secs,
            run.id
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let result = list_audit::result(pool, run.id).await?.with_context(|| {
        format!(
            "audit run {} ended {} without a result: {}",
            run.id,
            finished.status,
            finished
                .error
                .as_deref()
                .unwrap_or("see importer-admin runs show")
        )
    })?;
    print(pool, result, &label, format, out).await
}

async fn print<W: Write>(
    pool: &PgPool,
    result: AuditResult,
    label: &str,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    let (deleted, total) = list_audit::deleted_members(pool, result.list_id, LISTED).await?;
    let view = AuditView {
        bytes_per_member: result.bytes_per_member(),
        deleted_members_total: total,
        deleted_members: deleted,
        result,
    };
    if format == Format::Json {
        return output::write_json(out, &view);
    }
    let r = &view.result;
    let table = output::details(vec![
        ("audit run", r.run_id.to_string()),
        ("list", format!("{label} (id {})", r.list_id)),
        ("concluded", output::time(r.concluded_at)),
        ("members in Mailchimp", r.members_seen.to_string()),
        ("missing", r.missing.to_string()),
        ("stale", r.stale.to_string()),
        ("healed", r.healed.to_string()),
        ("deferred to the next sync", r.deferred.to_string()),
        ("rejected", r.rejected.to_string()),
        (
            "deleted in Mailchimp",
            format!("{} ({} newly noticed)", r.deleted, r.deleted_new),
        ),
        ("unhealed", r.unhealed.to_string()),
        (
            "cost",
            format!(
                "{} requests, {:.1} bytes per member",
                r.mailchimp_requests, view.bytes_per_member
            ),
        ),
    ]);
    output::write_table(out, &table)?;
    if r.redeliver {
        writeln!(
            out,
            "the ledger was not trusted (--redeliver): every member changed before the cursor was posted again"
        )?;
    }
    if view.deleted_members_total > 0 {
        writeln!(
            out,
            "deleted in Mailchimp, still at the destination (the records API has no delete):"
        )?;
        let mut t = output::table(["member id", "last delivered change", "noticed"]);
        for d in &view.deleted_members {
            t.add_row(vec![
                d.member_id.clone(),
                output::opt_time(d.last_changed),
                output::time(d.noticed_at),
            ]);
        }
        output::write_table(out, &t)?;
        if view.deleted_members_total > LISTED {
            writeln!(
                out,
                "… and {} more: SELECT * FROM importer.deleted_members WHERE list_id = {}",
                view.deleted_members_total - LISTED,
                r.list_id
            )?;
        }
    }
    Ok(())
}
