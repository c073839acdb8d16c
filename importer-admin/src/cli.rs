//! The command line: clap types for every subcommand (their value parsers are in `values`).

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use importer_core::runs::RunStatus;

use crate::output::Format;
use crate::values::{parse_interval, parse_on_off, parse_schedule, parse_time};

/// Operate mailchimp-importer: migrations, accounts, lists, runs, dead jobs, the queue, and a
/// one-command demo.
#[derive(Debug, Parser)]
#[command(name = "importer-admin", version, about, propagate_version = true)]
pub struct Cli {
    /// PostgreSQL connection string (`demo` defaults to postgres://postgres@127.0.0.1:5432/postgres
    /// and creates its own database on that server).
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Output of listings and show commands: `table` for people, `json` for scripts.
    #[arg(long, env = "IMPORTER_OUTPUT", global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the schema migrations (idempotent), or with --check list the pending ones.
    Migrate(MigrateArgs),
    /// Client accounts: Mailchimp key, destination, concurrency budget.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Mailchimp audiences to sync, their schedule and cursor.
    #[command(subcommand)]
    Lists(ListsCommand),
    /// Syncs of lists: start, inspect, cancel, watch.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// The dead-letter store: inspect, requeue, purge.
    #[command(subcommand)]
    Dead(DeadCommand),
    /// Queue depth per account and state, and the leases each worker holds.
    Queue,
    /// Run the scheduler once (importer.tick) and print the runs it created.
    Tick,
    /// Audit a list: compare Mailchimp with what we delivered (the ledger), re-deliver what is
    /// missing or stale, report members deleted in Mailchimp. Waits for the workers to finish it.
    Audit(AuditArgs),
    /// Deployment-wide settings: the sync lag.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// The encryption of stored API keys: which key sealed them, and rotation to a new key.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Register the accounts and lists of an importer-sim config file (idempotent).
    Seed(SeedArgs),
    /// Run a real import end to end in process: simulators, workers, full and incremental sync,
    /// verification.
    Demo(DemoArgs),
    /// Serve the operator dashboard (web pages over the same views) until SIGTERM or Ctrl-C.
    Serve(ServeArgs),
    /// Serve the database's state as Prometheus metrics (lists behind, dead jobs, queue, runs,
    /// workers) for the alerting rules, until SIGTERM or Ctrl-C.
    Exporter(ExporterArgs),
}

/// A list's audit period, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditEvery {
    /// Only when an operator asks.
    Off,
    /// Every this long.
    Every(Duration),
}

fn parse_audit_every(text: &str) -> Result<AuditEvery, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(AuditEvery::Off);
    }
    let every = parse_interval(text)?;
    if every < Duration::from_secs(3600) || every > Duration::from_secs(366 * 86_400) {
        return Err(format!("{text:?} is not between 1h and 366d"));
    }
    Ok(AuditEvery::Every(every))
}

/// `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// List id or account/mailchimp_list_id.
    pub list: String,
    /// Only start it (follow it with `runs watch`).
    #[arg(long, conflicts_with = "last")]
    pub no_wait: bool,
    /// Show the list's newest audit instead of running one.
    #[arg(long)]
    pub last: bool,
    /// Do not trust the ledger: post every member changed before the cursor again (when the
    /// destination lost or altered records, which no audit can see: it has no read API).
    #[arg(long, conflicts_with = "last")]
    pub redeliver: bool,
    /// How long to wait for the workers to finish it, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub timeout_secs: u64,
}

/// `exporter`.
#[derive(Debug, Args)]
pub struct ExporterArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(
        long,
        env = "IMPORTER_EXPORTER_LISTEN",
        default_value = "127.0.0.1:9187"
    )]
    pub listen: std::net::SocketAddr,
}

/// `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; localhost only unless told otherwise (port 0 picks a free one).
    #[arg(
        long,
        env = "IMPORTER_DASHBOARD_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: std::net::SocketAddr,
    /// Who may sign in: `name:role:token` entries (role viewer or operator, token at least 16
    /// characters), separated by commas or newlines.
    #[arg(
        long,
        env = "IMPORTER_DASHBOARD_USERS",
        hide_env_values = true,
        conflicts_with = "users_file"
    )]
    pub users: Option<String>,
    /// Read the users from this file instead (one `name:role:token` per line).
    #[arg(long, value_name = "PATH")]
    pub users_file: Option<PathBuf>,
    /// Mark the session cookie Secure (when the dashboard is served behind TLS).
    #[arg(long, env = "IMPORTER_DASHBOARD_SECURE_COOKIES")]
    pub secure_cookies: bool,
    /// How often live sections refresh, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(250..=60_000))]
    pub refresh_ms: u64,
}

/// `migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Only list the pending migrations; exit 1 if there are any.
    #[arg(long)]
    pub check: bool,
    /// Do not create or grant the roles importer_worker and importer_operator (for a user
    /// without CREATEROLE; grant them yourself, see docs/operations.md).
    #[arg(long)]
    pub skip_roles: bool,
}

/// Where the API keys come from: an environment variable, a file or standard input, never argv.
/// When both keys come from standard input, the Mailchimp key is the first line.
#[derive(Debug, Clone, Default, Args)]
pub struct KeySources {
    /// Read the Mailchimp API key from this environment variable.
    #[arg(long, value_name = "VAR", group = "mailchimp_key")]
    pub mailchimp_key_env: Option<String>,
    /// Read the Mailchimp API key from this file.
    #[arg(long, value_name = "PATH", group = "mailchimp_key")]
    pub mailchimp_key_file: Option<PathBuf>,
    /// Read the Mailchimp API key from standard input (first line).
    #[arg(long, group = "mailchimp_key")]
    pub mailchimp_key_stdin: bool,
    /// Read the destination API key from this environment variable.
    #[arg(long, value_name = "VAR", group = "destination_key")]
    pub destination_key_env: Option<String>,
    /// Read the destination API key from this file.
    #[arg(long, value_name = "PATH", group = "destination_key")]
    pub destination_key_file: Option<PathBuf>,
    /// Read the destination API key from standard input (after the Mailchimp key, if that is
    /// read from standard input too).
    #[arg(long, group = "destination_key")]
    pub destination_key_stdin: bool,
}

/// `accounts ...`.
#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Add an account (keys from --*-key-env, --*-key-file or --*-key-stdin).
    Add(AccountAddArgs),
    /// List accounts (keys shown redacted).
    List,
    /// Show one account and its lists.
    Show {
        /// Account name or id.
        account: String,
    },
    /// Change an account: name, URLs, concurrency, keys.
    Update(AccountUpdateArgs),
    /// Pause an account: no scheduled runs, none of its jobs claimed.
    Pause {
        /// Account name or id.
        account: String,
    },
    /// Resume a paused account.
    Resume {
        /// Account name or id.
        account: String,
    },
    /// Remove an account with its lists, runs, jobs and dead jobs.
    Remove {
        /// Account name or id.
        account: String,
        /// Really remove it (required).
        #[arg(long)]
        yes: bool,
    },
}

/// `accounts add`.
#[derive(Debug, Args)]
pub struct AccountAddArgs {
    /// Unique account name.
    #[arg(long)]
    pub name: String,
    /// Base URL of the records API (records go to {URL}/record).
    #[arg(long, value_name = "URL")]
    pub destination_url: String,
    /// Mailchimp API base URL override (default: https://<dc>.api.mailchimp.com/3.0 from the key).
    #[arg(long, value_name = "URL")]
    pub mailchimp_base_url: Option<String>,
    /// Most Mailchimp requests in flight for this account across all workers.
    #[arg(long, default_value_t = importer_core::accounts::DEFAULT_MAX_CONCURRENCY,
          value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub max_concurrency: i32,
    /// Succeed without changes when an account of this name exists.
    #[arg(long)]
    pub if_not_exists: bool,
    #[command(flatten)]
    pub keys: KeySources,
}

/// `accounts update`.
#[derive(Debug, Args)]
pub struct AccountUpdateArgs {
    /// Account name or id.
    pub account: String,
    /// New name.
    #[arg(long)]
    pub name: Option<String>,
    /// New records API base URL.
    #[arg(long, value_name = "URL")]
    pub destination_url: Option<String>,
    /// New Mailchimp API base URL override.
    #[arg(long, value_name = "URL", conflicts_with = "clear_mailchimp_base_url")]
    pub mailchimp_base_url: Option<String>,
    /// Remove the Mailchimp base URL override (use the key's data centre).
    #[arg(long)]
    pub clear_mailchimp_base_url: bool,
    /// New concurrency budget.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub max_concurrency: Option<i32>,
    #[command(flatten)]
    pub keys: KeySources,
}

/// `lists ...`. A `<list>` is its numeric id or `account/mailchimp_list_id`.
#[derive(Debug, Subcommand)]
pub enum ListsCommand {
    /// Add a Mailchimp audience of an account to sync.
    Add(ListAddArgs),
    /// List lists with their schedule and cursor.
    List {
        /// Only this account's (name or id).
        #[arg(long)]
        account: Option<String>,
    },
    /// Enable scheduled runs of a list.
    Enable {
        /// List id or account/mailchimp_list_id.
        list: String,
    },
    /// Disable scheduled runs of a list (a running run continues).
    Disable {
        /// List id or account/mailchimp_list_id.
        list: String,
    },
    /// Change how often a list is synced.
    SetSchedule {
        /// List id or account/mailchimp_list_id.
        list: String,
        /// Interval such as 30m, 1h, 1d (1m to 31d).
        #[arg(value_parser = parse_schedule)]
        interval: Duration,
    },
    /// Give a list its own sync lag, or `default` for the deployment's (settings show).
    SetSyncLag {
        /// List id or account/mailchimp_list_id.
        list: String,
        /// Interval such as 30s, 2m, or `default`.
        #[arg(value_parser = parse_lag)]
        lag: LagArg,
    },
    /// Post every member read (`on`), or skip members whose record the destination already
    /// holds per the ledger (`off`, the default).
    SetAlwaysPost {
        /// List id or account/mailchimp_list_id.
        list: String,
        /// on or off.
        #[arg(value_parser = parse_on_off, action = clap::ArgAction::Set)]
        value: bool,
    },
    /// How often the tick audits a list (1h to 366d, default 7d), or `off` for only on request
    /// (`importer-admin audit`).
    SetAuditEvery {
        /// List id or account/mailchimp_list_id.
        list: String,
        /// Interval such as 1d, 7d, or `off`.
        #[arg(value_parser = parse_audit_every)]
        every: AuditEvery,
    },
    /// Move a list's cursor (without --to: forget it, the next run is full). Refused while the
    /// list has an active run (cancel it first); the list's coverage is forgotten too.
    ResetCursor {
        /// List id or account/mailchimp_list_id.
        list: String,
        /// New cursor (RFC 3339, e.g. 2026-11-01T00:00:00Z): changes since then are synced again.
        #[arg(long, value_parser = parse_time)]
        to: Option<DateTime<Utc>>,
    },
}

/// `secrets ...`.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// How many stored keys each encryption key sealed (IMPORTER_SECRET_KEY is "current",
    /// IMPORTER_SECRET_KEY_PREVIOUS "previous"); nothing is decrypted.
    Status,
    /// Re-seal every stored key under IMPORTER_SECRET_KEY, opening it with that key or
    /// IMPORTER_SECRET_KEY_PREVIOUS; in batches, while workers run. Idempotent.
    Rotate {
        /// Accounts per transaction.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        batch: i64,
    },
}

/// `settings ...`.
#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Show the settings.
    Show,
    /// Change settings (at least one).
    Set(SettingsSetArgs),
}

/// `settings set`.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct SettingsSetArgs {
    /// How far behind the database clock a run's window ends (e.g. 60s, 2m): covers
    /// Mailchimp's clock skew and late visibility of changes. At most 1d.
    #[arg(long, value_parser = parse_interval)]
    pub sync_lag: Option<Duration>,
    /// Keep finished runs (with their dead jobs and rejected records) this long, e.g. 90d (at
    /// least 1d; a list's newest completed run is always kept).
    #[arg(long, value_parser = parse_interval)]
    pub keep_runs: Option<Duration>,
    /// Keep dead jobs this long (at least 1h).
    #[arg(long, value_parser = parse_interval)]
    pub keep_dead_jobs: Option<Duration>,
    /// Keep rejected records this long (at least 1h).
    #[arg(long, value_parser = parse_interval)]
    pub keep_rejected_records: Option<Duration>,
    /// Keep audit log rows this long (at least 1d).
    #[arg(long, value_parser = parse_interval)]
    pub keep_audit_log: Option<Duration>,
}

/// `lists add`.
#[derive(Debug, Args)]
pub struct ListAddArgs {
    /// Account name or id.
    #[arg(long)]
    pub account: String,
    /// Mailchimp audience id (the {list_id} of /lists/{list_id}/members).
    #[arg(long, value_name = "MAILCHIMP_ID")]
    pub list_id: String,
    /// A name for people.
    #[arg(long)]
    pub name: Option<String>,
    /// How often to sync: 30m, 1h, 1d (1m to 31d).
    #[arg(long, default_value = "1h", value_parser = parse_schedule)]
    pub schedule: Duration,
    /// Add it without scheduled runs.
    #[arg(long)]
    pub disabled: bool,
    /// Post every member read, even those whose record the destination already holds (for
    /// destinations that need every touch). Default: skip them (the ledger).
    #[arg(long)]
    pub always_post: bool,
    /// Succeed without changes when the account already has this list.
    #[arg(long)]
    pub if_not_exists: bool,
}

/// Run statuses as command-line values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    /// Created, plan job not done.
    Planning,
    /// Importing.
    Running,
    /// Every job completed.
    Completed,
    /// Finished with dead jobs.
    Failed,
    /// Cancelled by an operator.
    Cancelled,
}

impl From<StatusArg> for RunStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Planning => RunStatus::Planning,
            StatusArg::Running => RunStatus::Running,
            StatusArg::Completed => RunStatus::Completed,
            StatusArg::Failed => RunStatus::Failed,
            StatusArg::Cancelled => RunStatus::Cancelled,
        }
    }
}

/// `runs ...`.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Start a run of a list now: incremental from its cursor (full if it has none).
    Start {
        /// List id or account/mailchimp_list_id.
        list: String,
        /// Full sync, whatever the cursor.
        #[arg(long, conflicts_with = "since")]
        full: bool,
        /// Incremental from this instant (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        since: Option<DateTime<Utc>>,
    },
    /// List runs, newest first.
    List {
        /// Only runs in this status.
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// Only this account's runs (name or id).
        #[arg(long)]
        account: Option<String>,
        /// Only this list's runs (id or account/mailchimp_list_id).
        #[arg(long)]
        list: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show a run: window, counters, percent, throughput and the errors of its dead jobs.
    Show {
        /// Run id.
        id: i64,
    },
    /// Cancel an active run: its queued jobs are removed.
    Cancel {
        /// Run id.
        id: i64,
    },
    /// Live progress until the run (default: every active run) finishes; exit 1 if one failed.
    Watch {
        /// Run id (default: every active run).
        id: Option<i64>,
        /// Refresh interval in milliseconds.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(50..))]
        interval_ms: u64,
    },
}

/// `dead ...`.
#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// List dead jobs, most recently died first.
    List {
        /// Only this run's.
        #[arg(long)]
        run: Option<i64>,
        /// Only those whose last error contains this text (case-insensitive).
        #[arg(long, value_name = "TEXT")]
        error_contains: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Show a dead job with its full error history.
    Show {
        /// Dead job id.
        id: i64,
    },
    /// Move dead jobs back into the queue with fresh attempts (a failed run runs again).
    Requeue(RequeueTarget),
    /// Delete dead jobs that died more than an interval ago.
    Purge {
        /// Age such as 7d or 12h.
        #[arg(long, value_parser = parse_interval)]
        older_than: Duration,
    },
}

/// Which dead jobs `dead requeue` moves: exactly one selector.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct RequeueTarget {
    /// One dead job.
    #[arg(long, value_name = "ID")]
    pub job: Option<i64>,
    /// Every dead job of a run.
    #[arg(long, value_name = "ID")]
    pub run: Option<i64>,
    /// Every dead job whose last error contains this text (case-insensitive).
    #[arg(long, value_name = "TEXT")]
    pub error_contains: Option<String>,
}

/// `seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// The importer-sim TOML configuration whose accounts to register.
    #[arg(long, value_name = "PATH")]
    pub sim_config: PathBuf,
    /// Mailchimp base URL of the simulator as the workers reach it.
    #[arg(long, value_name = "URL")]
    pub mailchimp_base_url: String,
    /// Destination base URL of the simulator as the workers reach it.
    #[arg(long, value_name = "URL")]
    pub destination_url: String,
    /// Schedule of the lists it adds (1m to 31d).
    #[arg(long, default_value = "1h", value_parser = parse_schedule)]
    pub schedule: Duration,
}

/// `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Accounts to create.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub accounts: u32,
    /// Contacts per list.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub contacts: u32,
    /// In-process workers.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub workers: u32,
    /// Lists per account.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub lists_per_account: u32,
    /// Keep the demo database afterwards (it is dropped by default).
    #[arg(long)]
    pub keep_database: bool,
    /// After the demo, keep the dashboard, the workers and the simulators up until Ctrl-C (then
    /// the database is dropped unless --keep-database).
    #[arg(long)]
    pub serve: bool,
    /// Where the demo's dashboard listens (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub dashboard_listen: std::net::SocketAddr,
    /// Give up (exit 1) if the syncs have not finished after this long.
    #[arg(long, default_value = "10m", value_parser = parse_interval)]
    pub timeout: Duration,
    /// The demo database's sync lag (default: 2s plus the simulated clock offset and visibility
    /// delay; production's default is 60s).
    #[arg(long, value_parser = parse_interval)]
    pub sync_lag: Option<Duration>,
    /// Simulated Mailchimp clock minus ours, in seconds (either sign).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub clock_offset_secs: i64,
    /// Simulated delay before a change becomes visible, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub visibility_delay_ms: u64,
    /// The simulated `since_last_changed` is inclusive.
    #[arg(long)]
    pub inclusive_since: bool,
    /// The simulated tie order inside a second changes on every request.
    #[arg(long)]
    pub unstable_ties: bool,
    /// Change the lists during the full sync: a churn step such as
    /// `after=3,modify=0.05,add=0.02,delete=0.02,archive=0.01` (repeatable).
    #[arg(long = "churn", value_parser = parse_churn)]
    pub churn: Vec<importer_sim::ChurnStep>,
}

fn parse_churn(text: &str) -> Result<importer_sim::ChurnStep, String> {
    importer_sim::ChurnStep::parse(text)
}

/// A list's sync lag on the command line: an interval, or the deployment's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagArg {
    /// The deployment's lag (`importer.settings`).
    Default,
    /// This lag.
    Lag(Duration),
}

fn parse_lag(text: &str) -> Result<LagArg, String> {
    if text.trim() == "default" {
        return Ok(LagArg::Default);
    }
    parse_interval(text).map(LagArg::Lag)
}

/// A usage error found after parsing (exit code 2, like clap's own).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    /// The `$ importer-admin …` examples of the README and docs/, continuation lines joined,
    /// comments, pipes and redirections cut off; examples with `...` placeholders skipped.
    fn documented_commands() -> Vec<(String, Vec<String>)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = vec![root.join("README.md")];
        let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        docs.sort();
        files.extend(
            docs.into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "md")),
        );
        let mut out = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let mut lines = text.lines();
            while let Some(line) = lines.next() {
                let Some(rest) = line.strip_prefix("$ importer-admin") else {
                    continue;
                };
                let mut command = rest.to_owned();
                while command.trim_end().ends_with('\\') {
                    command = command.trim_end().trim_end_matches('\\').to_owned();
                    command.push(' ');
                    command.push_str(lines.next().unwrap_or_default());
                }
                let command = command
                    .split("  #")
                    .next()
                    .unwrap_or_default()
                    .split(['|', '<'])
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                if command.contains("...") {
                    continue;
                }
                let mut args = vec!["importer-admin".to_owned()];
                args.extend(
                    command
                        .split_whitespace()
                        .map(|a| a.trim_matches('"').to_owned()),
                );
                out.push((
                    format!("{}: $ importer-admin{command}", file.display()),
                    args,
                ));
            }
        }
        out
    }

    /// Every command the docs show is one the CLI accepts: a renamed flag or subcommand fails
    /// here, not in a reader's terminal.
    #[test]
    fn every_command_in_the_docs_parses() {
        let commands = documented_commands();
        assert!(
            commands.len() > 30,
            "the docs show commands: {}",
            commands.len()
        );
        let mut refused = Vec::new();
        for (place, args) in commands {
            match Cli::try_parse_from(&args) {
                Ok(_) => {}
                Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {}
                Err(e) => refused.push(format!("{place}\n  {}", e.kind())),
            }
        }
        assert!(
            refused.is_empty(),
            "refused by the CLI:\n{}",
            refused.join("\n")
        );
    }
}
