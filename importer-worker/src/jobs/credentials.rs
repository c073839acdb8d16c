//! An account's decrypted credentials and the clients bound to them, loaded per job.
//!
//! Loaded fresh for every job (one indexed query and two decryptions, microseconds) rather than
//! cached: a key fixed by an operator takes effect on the very next job, which is what makes
//! "fix the key, requeue the dead jobs" work without restarting workers.

use importer_core::accounts;
use importer_core::mailchimp::MailchimpAccount;
use importer_core::secrets::{Secret, SecretField, SecretSlot};

use super::{JobContext, JobError};

/// What a job needs to talk to both APIs for one account.
pub(super) struct Credentials {
    /// Mailchimp, bound to the account's key and base URL.
    pub mailchimp: MailchimpAccount,
    /// Base URL of the records API.
    pub destination_url: String,
    /// The destination key.
    pub destination_key: Secret,
    /// The account's Mailchimp concurrency budget.
    pub max_concurrency: usize,
}

/// Loads and decrypts the credentials of `account_id`.
///
/// A missing account or a malformed key is permanent: retrying cannot fix it, an operator must.
/// So is a stored key that the right encryption key does not open for this account (altered, or
/// copied from another row). A key sealed by an encryption key this worker lacks is this
/// worker's fault ([`JobError::WorkerFault`]): other workers with the right
/// `IMPORTER_SECRET_KEY` (or `IMPORTER_SECRET_KEY_PREVIOUS`, during a rotation) can run the job.
pub(super) async fn load(ctx: &JobContext, account_id: i64) -> Result<Credentials, JobError> {
    let stored = accounts::credentials_for_job(&ctx.pool, account_id)
        .await?
        .ok_or_else(|| JobError::Permanent(format!("account {account_id} does not exist")))?;
    let decrypt = |field: SecretField, bytes: &[u8]| {
        let what = field.column();
        ctx.secrets
            .decrypt(SecretSlot::new(account_id, field), bytes)
            .map_err(|e| {
                if e.is_key_fault() {
                    JobError::WorkerFault(format!(
                        "this worker cannot decrypt the {what} of account {account_id}: {e}"
                    ))
                } else {
                    JobError::Permanent(format!(
                        "the {what} of account {account_id} cannot be used, no key was sent: {e}; store it again with importer-admin accounts update"
                    ))
                }
            })
    };
    // No key leaves for a URL outside the policy (stored before it, or by hand in SQL).
    let mailchimp_base = stored
        .mailchimp_base_url
        .clone()
        .unwrap_or_else(|| "https://api.mailchimp.com".to_owned());
    for (what, url) in [
        ("Mailchimp base URL", &mailchimp_base),
        ("destination URL", &stored.destination_url),
    ] {
        ctx.url_policy.check(url).map_err(|refused| {
            JobError::Permanent(format!(
                "account {account_id}'s {what} is refused, no key was sent: {refused}"
            ))
        })?;
    }
    let mailchimp_key = decrypt(SecretField::MailchimpKey, &stored.mailchimp_key)?;
    let destination_key = decrypt(SecretField::DestinationKey, &stored.destination_key)?;
    let mailchimp = ctx
        .mailchimp
        .account(&mailchimp_key, stored.mailchimp_base_url.as_deref())
        .map_err(JobError::from)?;
    Ok(Credentials {
        mailchimp,
        destination_url: stored.destination_url,
        destination_key,
        max_concurrency: usize::try_from(stored.max_concurrency).unwrap_or(1).max(1),
    })
}
