//! `importer-admin`: parse the command line, connect, dispatch to the command, and map the
//! outcome to an exit code (0 ok, 1 failure, 2 usage).

mod audited;
mod cli;
mod commands;
mod dashboard;
mod database;
mod lookup;
mod output;
mod progress;
mod secret_input;
mod values;
mod views;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::{Cli, Command, UsageError};
use crate::commands::{
    accounts, audit, dead, demo, exporter, lists, migrate, queue, runs, secrets, seed, serve,
    settings, tick,
};

/// Connections of the admin pool: commands run one statement at a time.
const POOL_SIZE: u32 = 4;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Not locked for the whole run: the progress bars of `runs watch` write to stdout too.
    let mut out = io::stdout();
    let result = runtime.block_on(dispatch(cli, &mut out));
    let flushed = out.flush();
    match result.and(flushed.map_err(Into::into)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report(&error),
    }
}

/// Logs go to stderr (warnings only unless RUST_LOG says otherwise), never to the output.
fn init_tracing() {
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(io::stderr))
        .with(importer_core::log_filter::from_env("warn,sqlx=error"))
        .try_init();
}

/// Prints the error as one line and returns its exit code.
fn report(error: &anyhow::Error) -> ExitCode {
    // `importer-admin ... | head` closing the pipe early is not a failure.
    if let Some(io) = error.root_cause().downcast_ref::<io::Error>() {
        if io.kind() == io::ErrorKind::BrokenPipe {
            return ExitCode::SUCCESS;
        }
    }
    if error.downcast_ref::<UsageError>().is_some() {
        eprintln!("error: {error}\n\nFor more information, try '--help'.");
        return ExitCode::from(2);
    }
    eprintln!("error: {error:#}");
    ExitCode::FAILURE
}

async fn dispatch<W: Write>(cli: Cli, out: &mut W) -> anyhow::Result<()> {
    let format = cli.output;
    let url = cli.database_url;
    let command = match cli.command {
        // The demo creates (and drops) its own database on the server of DATABASE_URL.
        Command::Demo(args) => return demo::run(url.as_deref(), args, format, out).await,
        command => command,
    };
    let Some(url) = url else {
        return Err(UsageError(
            "no database: set DATABASE_URL or pass --database-url postgres://user@host:5432/db"
                .to_owned(),
        )
        .into());
    };
    // The dashboard runs until stopped, on a pool of its own size.
    let command = match command {
        Command::Serve(args) => return serve::run(&url, args, out).await.map_err(explain_schema),
        Command::Exporter(args) => {
            return exporter::run(&url, args, out).await.map_err(explain_schema)
        }
        command => command,
    };
    let options = database::parse_url(&url)?;
    let pool = database::connect(&options, POOL_SIZE).await?;
    let audited = audited::action(&command);
    let result = run_on(&pool, command, format, out).await;
    if let Some((action, objects)) = audited {
        audited::record(&pool, action, objects, &result).await;
    }
    pool.close().await;
    result.map_err(explain_schema)
}

/// Runs a command that works on an existing database.
async fn run_on<W: Write>(
    pool: &sqlx::PgPool,
    command: Command,
    format: output::Format,
    out: &mut W,
) -> anyhow::Result<()> {
    match command {
        Command::Migrate(args) => {
            migrate::run(pool, args.check, args.skip_roles, format, out).await
        }
        Command::Accounts(command) => accounts::run(pool, command, format, out).await,
        Command::Lists(command) => lists::run(pool, command, format, out).await,
        Command::Runs(command) => runs::run(pool, command, format, out).await,
        Command::Dead(command) => dead::run(pool, command, format, out).await,
        Command::Queue => queue::run(pool, format, out).await,
        Command::Tick => tick::run(pool, format, out).await,
        Command::Audit(args) => audit::run(pool, args, format, out).await,
        Command::Settings(command) => settings::run(pool, command, format, out).await,
        Command::Secrets(command) => secrets::run(pool, command, format, out).await,
        Command::Seed(args) => seed::run(pool, args, format, out).await,
        Command::Demo(_) | Command::Serve(_) | Command::Exporter(_) => Err(anyhow::anyhow!(
            "demo, serve and exporter are dispatched before connecting"
        )),
    }
}

/// A database that was never migrated fails every query with "relation ... does not exist":
/// say what to do about it.
fn explain_schema(error: anyhow::Error) -> anyhow::Error {
    let missing = error.chain().any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .and_then(|e| e.as_database_error())
            .and_then(|db| db.code())
            .is_some_and(|code| code == "42P01" || code == "3F000")
    });
    if missing {
        error.context("the database has no importer schema; run importer-admin migrate first")
    } else {
        error
    }
}
