//! `serve`: the operator dashboard on a local address until SIGTERM or Ctrl-C.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::dashboard::{self, users::Users};

/// Connections of the dashboard's pool: a page runs up to six queries at once.
const POOL_SIZE: u32 = 10;

/// Reads the users, connects, and serves; prints the address once listening.
pub async fn run<W: Write>(url: &str, args: ServeArgs, out: &mut W) -> anyhow::Result<()> {
    let users = users(&args)?;
    let options = crate::database::parse_url(url)?;
    let pool = crate::database::connect(&options, POOL_SIZE).await?;
    let stop = stop_on_signal();
    let config = dashboard::Config {
        listen: args.listen,
        users,
        secure_cookies: args.secure_cookies,
        refresh: Duration::from_millis(args.refresh_ms),
    };
    let mut printed = Ok(());
    let result = dashboard::serve(pool.clone(), config, stop, |address| {
        printed = writeln!(out, "dashboard: http://{address}/").and_then(|()| out.flush());
    })
    .await;
    pool.close().await;
    printed.context("cannot print the dashboard's address")?;
    result
}

/// The users from `--users-file`, else from `IMPORTER_DASHBOARD_USERS`.
fn users(args: &ServeArgs) -> anyhow::Result<Users> {
    let text = match &args.users_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the users file {}", path.display()))?,
        None => args.users.clone().unwrap_or_default(),
    };
    Ok(Users::parse(&text)?)
}

/// A token cancelled on SIGTERM (containers) or Ctrl-C. The handlers are registered before
/// this returns, so a signal that arrives right after the caller says it is ready is not lost
/// (a handler registered later would let it kill the process).
pub fn stop_on_signal() -> CancellationToken {
    let stop = CancellationToken::new();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                let stop = stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                    stop.cancel();
                });
            }
            _ => tracing::error!("cannot listen for SIGTERM and Ctrl-C"),
        }
    }
    #[cfg(not(unix))]
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.cancel();
            }
        });
    }
    stop
}
