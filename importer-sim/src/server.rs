//! Starting both simulators on their sockets, seeding them, and shutting them down.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::SimConfig;
use crate::destination::DestinationSim;
use crate::mailchimp::MailchimpSim;

/// How long `shutdown` waits for open requests (e.g. injected hangs) before aborting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Both simulators, running.
#[derive(Debug)]
pub struct Sim {
    mailchimp: MailchimpSim,
    destination: DestinationSim,
    mailchimp_addr: SocketAddr,
    destination_addr: SocketAddr,
    shutdown: CancellationToken,
    servers: Vec<JoinHandle<()>>,
}

/// Starts both simulators on `127.0.0.1:0`.
///
/// Errors: a socket could not be bound.
pub async fn start(config: SimConfig) -> anyhow::Result<Sim> {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    start_on(config, any, any).await
}

/// Starts the Mailchimp simulator on `mailchimp` and the destination on `destination`, after
/// registering the configured accounts, lists and destination keys.
///
/// Errors: an address could not be bound.
pub async fn start_on(
    config: SimConfig,
    mailchimp: SocketAddr,
    destination: SocketAddr,
) -> anyhow::Result<Sim> {
    let mc = MailchimpSim::new(config.seed, config.mailchimp.clone());
    let dest = DestinationSim::new(config.seed, config.destination.clone(), Some(mc.clone()));
    let seed_mc = mc.clone();
    let seed_dest = dest.clone();
    let accounts = config.accounts;
    // Generating large lists is CPU work: keep it off the async worker threads.
    tokio::task::spawn_blocking(move || {
        for account in &accounts {
            seed_mc.add_api_key(&account.api_key);
            for list in &account.lists {
                seed_mc.create_list(&account.api_key, &list.id, list.members);
            }
            if let Some(key) = &account.destination_key {
                seed_dest.add_key(key);
            }
        }
    })
    .await
    .context("seeding the configured accounts")?;

    let mc_listener = TcpListener::bind(mailchimp)
        .await
        .with_context(|| format!("binding the Mailchimp simulator to {mailchimp}"))?;
    let dest_listener = TcpListener::bind(destination)
        .await
        .with_context(|| format!("binding the destination simulator to {destination}"))?;
    let mailchimp_addr = mc_listener
        .local_addr()
        .context("Mailchimp simulator address")?;
    let destination_addr = dest_listener
        .local_addr()
        .context("destination simulator address")?;

    let shutdown = CancellationToken::new();
    let servers = vec![
        serve("mailchimp", mc_listener, mc.router(), shutdown.clone()),
        serve(
            "destination",
            dest_listener,
            dest.router(),
            shutdown.clone(),
        ),
    ];
    tracing::info!(%mailchimp_addr, %destination_addr, "simulators listening");
    Ok(Sim {
        mailchimp: mc,
        destination: dest,
        mailchimp_addr,
        destination_addr,
        shutdown,
        servers,
    })
}

fn serve(
    name: &'static str,
    listener: TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = result {
            tracing::error!(server = name, error = %e, "simulator server failed");
        }
    })
}

impl Sim {
    /// The Mailchimp base URL, `http://127.0.0.1:PORT/3.0`.
    pub fn mailchimp_url(&self) -> String {
        format!("http://{}/3.0", self.mailchimp_addr)
    }

    /// The destination base URL, `http://127.0.0.1:PORT` (records go to `{this}/record`).
    pub fn destination_url(&self) -> String {
        format!("http://{}", self.destination_addr)
    }

    /// The Mailchimp simulator's address.
    pub fn mailchimp_addr(&self) -> SocketAddr {
        self.mailchimp_addr
    }

    /// The destination simulator's address.
    pub fn destination_addr(&self) -> SocketAddr {
        self.destination_addr
    }

    /// Handle to the Mailchimp simulator's state.
    pub fn mailchimp(&self) -> MailchimpSim {
        self.mailchimp.clone()
    }

    /// Handle to the destination simulator's state.
    pub fn destination(&self) -> DestinationSim {
        self.destination.clone()
    }

    /// Stops accepting, lets open requests finish (at most a few seconds), then returns.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        for mut server in std::mem::take(&mut self.servers) {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
                .await
                .is_err()
            {
                server.abort();
            }
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        // A dropped Sim (e.g. at the end of a test) stops its servers too.
        self.shutdown.cancel();
    }
}
