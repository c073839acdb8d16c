//! `plan_run`: count the run's window on Mailchimp and enqueue one `import_window` job per page,
//! in the same transaction that completes the plan job (a run with no members completes at once).

use importer_core::queue::{ClaimedJob, Completion, JobKind, NewJob};
use importer_core::window::{plan_pages, Window};
use importer_core::{lists, runs};

use super::{credentials, JobContext, JobError};

/// Plans the run the job belongs to.
pub async fn run(ctx: &JobContext, job: &ClaimedJob) -> Result<Completion, JobError> {
    let run_id = job
        .run_id
        .ok_or_else(|| JobError::Permanent("plan_run job without a run".to_owned()))?;
    let run = runs::get(&ctx.pool, run_id)
        .await
        .map_err(|e| JobError::Retryable {
            message: format!("loading run {run_id}: {e}"),
            retry_after: None,
        })?
        .ok_or_else(|| JobError::Permanent(format!("run {run_id} does not exist")))?;
    let list = lists::get(&ctx.pool, run.list_id)
        .await
        .map_err(|e| JobError::Retryable {
            message: format!("loading list {}: {e}", run.list_id),
            retry_after: None,
        })?
        .ok_or_else(|| JobError::Permanent(format!("list {} does not exist", run.list_id)))?;
    let creds = credentials::load(ctx, job.account_id).await?;
    let window = Window {
        since: run.since,
        until: run.until,
    };
    let total = creds
        .mailchimp
        .count_members(
            &list.mailchimp_list_id,
            window.since_param(),
            Some(window.before_param()),
        )
        .await?;
    tracing::info!(members = total, "window counted");
    let children = plan_pages(&list.mailchimp_list_id, window, total)
        .into_iter()
        .map(|page| {
            Ok(NewJob {
                kind: JobKind::ImportWindow,
                args: serde_json::to_value(page)
                    .map_err(|e| JobError::Permanent(format!("encoding page args: {e}")))?,
                account_id: job.account_id,
                run_id: Some(run_id),
                max_attempts: job.max_attempts,
                run_after: None,
            })
        })
        .collect::<Result<Vec<_>, JobError>>()?;
    Ok(Completion {
        records_imported: 0,
        rejected: Vec::new(),
        children,
        members_total: Some(total as i64),
    })
}
