//! importer-core: everything the worker and the admin CLI share.
//!
//! - the PostgreSQL queue ([`queue`]), runs ([`runs`]) and the scheduler tick ([`tick`]);
//! - accounts and lists ([`accounts`], [`lists`]) with their secrets encrypted at rest ([`secrets`]);
//! - the Mailchimp client ([`mailchimp`]), the destination client ([`destination`]) and the
//!   member-to-record mapping ([`mapping`]);
//! - the sync-window scheme that keeps offset paging lossless while contacts change ([`window`]).

pub mod accounts;
pub mod backoff;
pub mod destination;
pub mod lists;
pub mod mailchimp;
pub mod mapping;
pub mod queue;
pub mod runs;
pub mod secrets;
pub mod tick;
pub mod window;

/// The schema migrations (`migrations/` at the workspace root), shared by the binaries and tests.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
