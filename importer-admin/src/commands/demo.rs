//! `demo`: one command that shows a real import end to end, in process: a fresh database on
//! the server of DATABASE_URL, both simulators, W workers (`importer_worker::run`), a full sync
//! of every list started by the scheduler, then mutations in Mailchimp and an incremental sync,
//! and finally a verification of the destination against Mailchimp.
//!
//! Accounts and lists are registered through the same functions as `accounts add` and
//! `lists add`. The dashboard serves the demo database while it runs (its address is printed),
//! and with `--serve` until Ctrl-C. The demo database is dropped at the end unless
//! `--keep-database`.

mod private_cluster;
mod report;

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use importer_core::lists::NewList;
use importer_core::runs::{self, RequestedMode, RunError, RunRequest};
use importer_core::secrets::{Secret, SecretBox, SECRET_KEY_ENV};
use importer_core::{tick, MIGRATOR};
use importer_sim::{DestinationSimConfig, MailchimpSimConfig, Sim, SimConfig};
use importer_worker::WorkerConfig;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::DemoArgs;
use crate::commands::accounts::{self, AccountInput};
use crate::commands::{lists, watch};
use crate::dashboard::{self, users::Users};
use crate::database;
use crate::output::Format;
use report::{DemoList, DemoReport};

/// The port of the server the demo uses when DATABASE_URL is not set: libpq's `PGPORT`, else
/// 5432.
fn default_port() -> anyhow::Result<u16> {
    match std::env::var("PGPORT") {
        Ok(port) => port
            .trim()
            .parse()
            .with_context(|| format!("PGPORT must be a port number, got {port:?}")),
        Err(_) => Ok(5432),
    }
}

/// The server of DATABASE_URL; without one, `postgres@127.0.0.1` on the default port; and when
/// nothing answers there, a private throw-away cluster (returned, so that it outlives the demo
/// and is removed after it), or an error that says how to get a server.
async fn choose_server(
    database_url: Option<&str>,
) -> anyhow::Result<(String, Option<private_cluster::PrivateCluster>)> {
    if let Some(url) = database_url {
        return Ok((url.to_owned(), None));
    }
    let port = default_port()?;
    if private_cluster::something_listens(port) {
        return Ok((
            format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            None,
        ));
    }
    let Some(bindir) = private_cluster::find_bindir() else {
        anyhow::bail!(
            "{}",
            private_cluster::how_to_get_a_server(
                port,
                "no PostgreSQL server binaries (initdb, pg_ctl) were found to start a private one"
            )
        );
    };
    let cluster =
        tokio::task::spawn_blocking(move || private_cluster::PrivateCluster::start(&bindir, port))
            .await
            .context("the private cluster's setup panicked")??;
    Ok((cluster.url(), Some(cluster)))
}

/// How often the progress display refreshes.
const REFRESH: Duration = Duration::from_millis(250);

/// Runs `demo` against the server of `database_url`, the local default, or a private cluster
/// ([`choose_server`]).
pub async fn run<W: Write>(
    database_url: Option<&str>,
    args: DemoArgs,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    let (server_url, cluster) = choose_server(database_url).await?;
    if let Some(cluster) = &cluster {
        if args.keep_database {
            anyhow::bail!(
                "--keep-database needs a server that outlives the demo, and this one is a private cluster removed at the end: set DATABASE_URL"
            );
        }
        if format == Format::Table {
            writeln!(
                out,
                "no PostgreSQL answered on 127.0.0.1:{} and DATABASE_URL is not set: started a private throw-away cluster in {} (removed at the end)",
                default_port()?,
                cluster.dir().display()
            )?;
        }
    }
    let result = run_on(&server_url, args, format, out).await;
    if let Some(cluster) = cluster {
        let dir = cluster.dir().to_owned();
        tokio::task::spawn_blocking(move || cluster.remove())
            .await
            .context("removing the private cluster panicked")?
            .with_context(|| format!("cannot remove the private cluster in {}", dir.display()))?;
    }
    result
}

/// The demo on the server of `server_url`: creates its database, runs, drops it.
async fn run_on<W: Write>(
    server_url: &str,
    args: DemoArgs,
    format: Format,
    out: &mut W,
) -> anyhow::Result<()> {
    let server = database::parse_url(server_url)?;
    let admin = database::connect(&server, 1).await?;
    let name = format!("importer_demo_{:08x}", rand::random::<u32>());
    // The name is generated (letters, digits, underscore), so it is safe to splice in.
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .with_context(|| {
            format!("cannot create the demo database {name} (the demo needs CREATEDB)")
        })?;
    let options = server.clone().database(&name);
    // Ctrl-C stops the demo between steps: workers are stopped gracefully before the database
    // is dropped, so no job is cut off mid-transaction.
    let interrupt = CancellationToken::new();
    let on_ctrl_c = {
        let interrupt = interrupt.clone();
        tokio::spawn(async move {
            interrupted().await;
            interrupt.cancel();
        })
    };
    let result = demo(&options, &name, &args, format, out, &interrupt).await;
    on_ctrl_c.abort();
    if args.keep_database {
        if format == Format::Table {
            writeln!(
                out,
                "kept the demo database: DATABASE_URL={}",
                database::redacted_url(&database::with_database(server_url, &name))
            )?;
        }
    } else {
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&admin)
            .await
            .with_context(|| format!("cannot drop the demo database {name}"))?;
    }
    admin.close().await;
    result
}

/// Resolves on Ctrl-C (never, if the handler cannot be installed).
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Everything between creating and dropping the database.
async fn demo<W: Write>(
    options: &PgConnectOptions,
    name: &str,
    args: &DemoArgs,
    format: Format,
    out: &mut W,
    interrupt: &CancellationToken,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let table = format == Format::Table;
    let pool = database::connect(options, 4).await?;
    MIGRATOR
        .run(&pool)
        .await
        .context("cannot migrate the demo database")?;
    let secrets = match std::env::var_os(SECRET_KEY_ENV) {
        Some(_) => SecretBox::from_env()?,
        // An ephemeral key: the demo database is thrown away with it.
        None => SecretBox::from_hex(&SecretBox::generate_key_hex())?,
    };
    let lag = args.sync_lag.unwrap_or_else(|| demo_lag(args));
    importer_core::settings::set_sync_lag(&pool, lag)
        .await
        .context("cannot set the demo's sync lag")?;
    let sim = importer_sim::start(sim_config(args))
        .await
        .context("cannot start the simulators")?;
    let demo_lists = register(&pool, &secrets, &sim, args).await?;
    if interrupt.is_cancelled() {
        anyhow::bail!("interrupted by Ctrl-C");
    }
    if table {
        writeln!(
            out,
            "demo database {name} on {}; Mailchimp simulator {}, destination simulator {}",
            database::server(options),
            sim.mailchimp_url(),
            sim.destination_url()
        )?;
        writeln!(
            out,
            "{} accounts x {} lists x {} contacts; {} workers; sync lag {}",
            args.accounts,
            args.lists_per_account,
            args.contacts,
            args.workers,
            crate::output::interval(lag)
        )?;
    }

    let (dashboard, dashboard_stop, dashboard_task) =
        start_dashboard(&pool, args, format, out).await?;

    // The scheduler creates every list's first (full) run; the workers pick them up.
    let ticked = tick::tick(&pool, None).await?;
    let full_ids: Vec<i64> = ticked.iter().map(|r| r.run_id).collect();
    let shutdown = CancellationToken::new();
    let workers = start_workers(options, &secrets, args.workers, &shutdown);
    let phases = async {
        if table {
            writeln!(
                out,
                "\n== full sync: {} runs created by the scheduler",
                full_ids.len()
            )?;
        }
        let display = watch::Display::for_output(format);
        let full = watch::watch(&pool, &full_ids, REFRESH, display, out).await?;
        watch::require_completed(&full)?;

        // last_changed has one-second resolution: change members in a later second than the
        // full runs' `until`; then the incremental runs must start once the changes are older
        // than the sync lag (their window ends at now minus the lag), in a later second.
        next_second().await;
        let mutations = mutate(&sim, &demo_lists, args.contacts);
        tokio::time::sleep(lag).await;
        next_second().await;
        let mut incremental_ids = Vec::new();
        for list in &demo_lists {
            incremental_ids.push(start_incremental(&pool, list.list_id).await?);
        }
        if table {
            writeln!(
                out,
                "\n== incremental sync: {} contacts modified and {} added in Mailchimp; {} runs",
                mutations.0,
                mutations.1,
                incremental_ids.len()
            )?;
        }
        let incremental = watch::watch(&pool, &incremental_ids, REFRESH, display, out).await?;
        watch::require_completed(&incremental)?;
        Ok::<_, anyhow::Error>((full, incremental))
    };
    let outcome = tokio::select! {
        outcome = phases => outcome,
        _ = interrupt.cancelled() => Err(anyhow::anyhow!("interrupted by Ctrl-C")),
        _ = tokio::time::sleep(args.timeout) => Err(anyhow::anyhow!(
            "the syncs did not finish within {}; rerun with --keep-database to inspect the runs",
            crate::output::interval(args.timeout)
        )),
    };
    let report = outcome.map(|(full, incremental)| {
        DemoReport::build(
            name,
            &sim,
            &demo_lists,
            &full,
            &incremental,
            started.elapsed(),
        )
    });
    if let Ok(report) = &report {
        report.write(out, format)?;
    }
    if args.serve && !interrupt.is_cancelled() {
        writeln!(
            out,
            "\nserving the dashboard at http://{dashboard}/ with the workers and simulators; Ctrl-C stops"
        )?;
        out.flush()?;
        interrupt.cancelled().await;
    }
    shutdown.cancel();
    for worker in workers {
        match worker.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "a demo worker failed"),
            Err(e) => tracing::warn!(error = %e, "a demo worker panicked"),
        }
    }
    dashboard_stop.cancel();
    if let Ok(Err(e)) = dashboard_task.await {
        tracing::warn!(error = %format!("{e:#}"), "the demo's dashboard failed");
    }
    sim.shutdown().await;
    pool.close().await;
    report?.require_complete()
}

/// Starts the dashboard on the demo database and prints where it is. Its users come from
/// `IMPORTER_DASHBOARD_USERS` when set; otherwise one operator `demo` with a fresh random token,
/// printed once: the demo database, and so the token, lives only as long as the demo.
async fn start_dashboard<W: Write>(
    pool: &PgPool,
    args: &DemoArgs,
    format: Format,
    out: &mut W,
) -> anyhow::Result<(
    std::net::SocketAddr,
    CancellationToken,
    JoinHandle<anyhow::Result<()>>,
)> {
    let (users, token) = match std::env::var("IMPORTER_DASHBOARD_USERS") {
        Ok(text) if !text.trim().is_empty() => (Users::parse(&text)?, None),
        _ => {
            let token = format!(
                "{:016x}{:016x}",
                rand::random::<u64>(),
                rand::random::<u64>()
            );
            (
                Users::parse(&format!("demo:operator:{token}"))?,
                Some(token),
            )
        }
    };
    let config = dashboard::Config {
        listen: args.dashboard_listen,
        users,
        secure_cookies: false,
        refresh: Duration::from_secs(1),
    };
    let stop = CancellationToken::new();
    let (bound, address) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(dashboard::serve(
        pool.clone(),
        config,
        stop.clone(),
        move |a| {
            let _ = bound.send(a);
        },
    ));
    let address = match address.await {
        Ok(address) => address,
        Err(_) => {
            return Err(match server.await {
                Ok(Err(e)) => e,
                _ => anyhow::anyhow!("the dashboard did not start"),
            })
        }
    };
    let line = match token {
        Some(token) => format!("dashboard: http://{address}/ (sign in with the token {token})"),
        None => {
            format!("dashboard: http://{address}/ (sign in as one of IMPORTER_DASHBOARD_USERS)")
        }
    };
    if format == Format::Table {
        writeln!(out, "{line}")?;
    } else {
        eprintln!("{line}");
    }
    Ok((address, stop, server))
}

/// The demo's sync lag when none is given: long enough for its own simulated clock offset and
/// visibility delay, short enough that the demo's incremental step does not wait a minute.
fn demo_lag(args: &DemoArgs) -> Duration {
    Duration::from_secs(2 + args.clock_offset_secs.unsigned_abs())
        + Duration::from_millis(args.visibility_delay_ms)
}

/// The simulators with a small latency model, so the demo is quick but not instantaneous, and
/// the Mailchimp switches the demo was given.
fn sim_config(args: &DemoArgs) -> SimConfig {
    SimConfig {
        seed: 42,
        mailchimp: MailchimpSimConfig {
            latency_base: Duration::from_millis(20),
            latency_per_member: Duration::from_micros(20),
            clock_offset_secs: args.clock_offset_secs,
            visibility_delay: Duration::from_millis(args.visibility_delay_ms),
            inclusive_since: args.inclusive_since,
            unstable_ties: args.unstable_ties,
            churn: args.churn.clone(),
            ..MailchimpSimConfig::default()
        },
        destination: DestinationSimConfig {
            latency_base: Duration::from_millis(2),
            latency_per_record: Duration::from_micros(2),
            ..DestinationSimConfig::default()
        },
        accounts: Vec::new(),
    }
}

/// Creates the accounts and lists in the simulators and in the importer.
async fn register(
    pool: &PgPool,
    secrets: &SecretBox,
    sim: &Sim,
    args: &DemoArgs,
) -> anyhow::Result<Vec<DemoList>> {
    let mailchimp = sim.mailchimp();
    let destination = sim.destination();
    let mut demo_lists = Vec::new();
    for a in 1..=args.accounts {
        let api_key = mailchimp.new_api_key("us6");
        let destination_key = format!("demo-destination-{a}-{:016x}", rand::random::<u64>());
        destination.add_key(&destination_key);
        let input = AccountInput {
            name: format!("demo-{a}"),
            mailchimp_key: Secret::new(api_key.clone()),
            destination_key: Secret::new(destination_key.clone()),
            mailchimp_base_url: Some(sim.mailchimp_url()),
            destination_url: sim.destination_url(),
            max_concurrency: importer_core::accounts::DEFAULT_MAX_CONCURRENCY,
        };
        let account = accounts::create(pool, secrets, &input).await?;
        for l in 1..=args.lists_per_account {
            let mailchimp_list_id = format!("demo{a:02}list{l:02}");
            let generate = mailchimp.clone();
            let (key, id, n) = (api_key.clone(), mailchimp_list_id.clone(), args.contacts);
            // Generating members is CPU work: keep it off the runtime's threads.
            tokio::task::spawn_blocking(move || generate.create_list(&key, &id, n as usize))
                .await
                .context("generating the demo lists")?;
            let list = lists::create(
                pool,
                &NewList {
                    account_id: account.id,
                    mailchimp_list_id: mailchimp_list_id.clone(),
                    name: Some(format!("Demo list {l} of account {a}")),
                    // Daily: the scheduler creates the first run now and no other during the demo.
                    schedule: Duration::from_secs(86_400),
                    enabled: true,
                },
            )
            .await?;
            demo_lists.push(DemoList {
                account: account.name.clone(),
                destination_key: destination_key.clone(),
                list_id: list.id,
                mailchimp_list_id,
            });
        }
    }
    Ok(demo_lists)
}

/// Starts `n` in-process workers, each with its own pool and id, ticking every second.
fn start_workers(
    options: &PgConnectOptions,
    secrets: &SecretBox,
    n: u32,
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<anyhow::Result<importer_worker::WorkerReport>>> {
    (1..=n)
        .map(|k| {
            let config = WorkerConfig {
                worker_id: Some(format!("demo-worker-{k}")),
                concurrency: 16,
                poll_ms: 200,
                tick_secs: 1,
                http_addr: String::new(),
                shutdown_grace_secs: 5,
                pool_size: Some(5),
                ..WorkerConfig::default()
            };
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(config.pool_size())
                .acquire_timeout(Duration::from_secs(10))
                .connect_lazy_with(
                    options
                        .clone()
                        .application_name(&format!("demo-worker-{k}")),
                );
            tokio::spawn(importer_worker::run(
                config,
                pool,
                secrets.clone(),
                shutdown.clone(),
            ))
        })
        .collect()
}

/// Modifies about 5 % and adds about 2 % of every list's contacts; returns (modified, added).
fn mutate(sim: &Sim, demo_lists: &[DemoList], contacts: u32) -> (usize, usize) {
    let mailchimp = sim.mailchimp();
    let contacts = contacts as usize;
    let (modify, add) = ((contacts / 20).max(1), (contacts / 50).max(1));
    let mut totals = (0, 0);
    for list in demo_lists {
        totals.0 += mailchimp
            .modify_members(&list.mailchimp_list_id, modify)
            .len();
        totals.1 += mailchimp.add_members(&list.mailchimp_list_id, add).len();
    }
    totals
}

/// Starts an operator's incremental run of a list. If the scheduler got there first (a new
/// schedule slot began), waits for that run and starts ours after it, so our window covers the
/// changes.
async fn start_incremental(pool: &PgPool, list_id: i64) -> anyhow::Result<i64> {
    let request = RunRequest {
        mode: RequestedMode::Auto,
    };
    loop {
        match runs::create(pool, list_id, request).await {
            Ok(run) => return Ok(run.id),
            Err(RunError::AlreadyActive { run_id, .. }) => {
                let mut sink = std::io::sink();
                watch::watch(pool, &[run_id], REFRESH, watch::Display::Quiet, &mut sink).await?;
            }
            Err(e) => return Err(e).context("cannot start the incremental run"),
        }
    }
}

/// Sleeps into the next whole second (plus a margin for clock granularity).
async fn next_second() {
    let millis = Utc::now().timestamp_subsec_millis();
    let wait = 1000u64.saturating_sub(u64::from(millis.min(999))) + 20;
    tokio::time::sleep(Duration::from_millis(wait)).await;
}
