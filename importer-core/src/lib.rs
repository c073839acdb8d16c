//! importer-core: everything the worker and the admin CLI share.
//!
//! - the PostgreSQL queue ([`queue`]), runs ([`runs`]) and the scheduler tick ([`tick`]);
//! - accounts and lists ([`accounts`], [`lists`]) with their secrets encrypted at rest ([`secrets`]);
//! - the Mailchimp client ([`mailchimp`]), the destination client ([`destination`]), the
//!   member-to-record mapping ([`mapping`]) and rejected members ([`rejection`]);
//! - the sync engine: the window and its ranges ([`window`]), and the lossless reading of one
//!   range while contacts change ([`range_reader`]);
//! - deployment settings such as the sync lag ([`settings`]);
//! - what operators did ([`audit`]) and records imported per minute ([`throughput`]).

#![warn(unreachable_pub, missing_docs)]

pub mod accounts;
pub mod audit;
pub mod backoff;
pub mod destination;
pub mod lanes;
pub mod ledger;
pub mod list_audit;
pub mod lists;
pub mod mailchimp;
pub mod mapping;
pub mod queue;
pub mod range_reader;
pub mod rejected;
pub mod rejection;
pub mod retention;
pub mod roles;
pub mod runs;
pub mod secrets;
pub mod settings;
pub mod throughput;
pub mod tick;
pub mod url_policy;
pub mod window;

/// The schema migrations (`migrations/` at the workspace root), shared by the binaries and tests.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
