//! Finds what a command argument names: an `<account>` (its name or id) or a `<list>` (its id
//! or `account/mailchimp_list_id`). Every command that takes one resolves it here, so they
//! accept the same forms and fail with the same message saying how to list them.

use anyhow::Context;
use importer_core::accounts::{self, Account};
use importer_core::lists::{self, List};
use sqlx::PgPool;

/// Finds an account by name, or by id when `reference` is a number that is an id.
/// Errors: no such account (the message says how to list them), database failures.
pub async fn account(pool: &PgPool, reference: &str) -> anyhow::Result<Account> {
    if let Ok(id) = reference.parse::<i64>() {
        if let Some(account) = accounts::get(pool, id).await? {
            return Ok(account);
        }
    }
    accounts::find_by_name(pool, reference)
        .await?
        .with_context(|| {
            format!(
                "no account named {reference:?} or with that id; see importer-admin accounts list"
            )
        })
}

/// Finds a list by id or `account/mailchimp_list_id`, with its account. Errors: no such list
/// (the message says how to list them), database failures.
pub async fn list(pool: &PgPool, reference: &str) -> anyhow::Result<(List, Account)> {
    let not_found = || {
        format!("no list {reference:?}; name it by id or account/mailchimp_list_id (see importer-admin lists list)")
    };
    let list = match reference.rsplit_once('/') {
        Some((account_ref, mailchimp_id)) => {
            let owner = account(pool, account_ref).await?;
            lists::list(pool, Some(owner.id))
                .await?
                .into_iter()
                .find(|l| l.mailchimp_list_id == mailchimp_id)
                .with_context(not_found)?
        }
        None => {
            let id: i64 = reference.parse().ok().with_context(not_found)?;
            lists::get(pool, id).await?.with_context(not_found)?
        }
    };
    let account = accounts::get(pool, list.account_id)
        .await?
        .with_context(not_found)?;
    Ok((list, account))
}
