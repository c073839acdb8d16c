//! importer-core: everything the worker and the admin CLI share.
//!
//! - the PostgreSQL queue ([`queue`]), runs ([`runs`]) and the scheduler tick ([`tick`]);
//! - accounts and lists ([`accounts`], [`lists`]) with their secrets encrypted at rest ([`secrets`]);
//! - the Mailchimp client ([`mailchimp`]), the destination client ([`destination`]), the
//!   member-to-record mapping ([`mapping`]) and rejected members ([`rejection`]);
//! - the sync engine: the window and its ranges ([`window`]), and the lossless reading of one
//!   range while contacts change ([`range_reader`]);
//! - deployment settings such as the sync lag ([`settings`]), and how pools check connections
//!   ([`pool`]);
//! - what operators did ([`audit`]) and records imported per minute ([`throughput`]);
//! - the `RUST_LOG` filter every binary logs through ([`log_filter`]).

#![warn(unreachable_pub, missing_docs)]

use std::{borrow::Cow, sync::LazyLock};

use sqlx::migrate::{Migration, MigrationType, Migrator};

pub mod accounts;
pub mod audit;
pub mod backoff;
pub mod destination;
pub mod lanes;
pub mod ledger;
pub mod list_audit;
pub mod lists;
pub mod log_filter;
pub mod mailchimp;
pub mod mapping;
pub mod pool;
pub mod queue;
pub mod range_reader;
pub mod rejected;
pub mod rejection;
pub mod retention;
pub mod roles;
mod row_mapping;
pub mod runs;
pub mod secrets;
pub mod settings;
pub mod throughput;
pub mod tick;
pub mod url_policy;
pub mod window;

/// The schema migrations (`migrations/` at the workspace root), shared by the binaries and tests.
///
/// Embedded by `build.rs` rather than `sqlx::migrate!`, so that building the binaries does not
/// build sqlx's proc-macro crate; a test checks both give the same versions and checksums.
pub static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| Migrator {
    migrations: Cow::Owned(
        EMBEDDED_MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    // sqlx's own rule for a migration that runs outside a transaction.
                    sql.starts_with("-- no-transaction"),
                )
            })
            .collect(),
    ),
    ..Migrator::DEFAULT
});

/// `(version, description, SQL)` of every file in `migrations/`, in version order (`build.rs`).
const EMBEDDED_MIGRATIONS: &[(i64, &str, &str)] =
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
