//! The demo's fallback server: with no `DATABASE_URL` and nothing answering on the default port,
//! a private throw-away PostgreSQL cluster in a temporary directory, made with the installed
//! server binaries (`initdb`, `pg_ctl`), stopped and removed when the demo ends.
//!
//! Where the binaries are looked for, in order: `IMPORTER_PG_BINDIR` (only there when set), the
//! `pg_config --bindir` on `PATH`, the newest `/usr/lib/postgresql/<version>/bin` (Debian,
//! Ubuntu), then `initdb` on `PATH`. `initdb` refuses to run as root, so as root the cluster is
//! made and run as the `postgres` user (through `runuser`) when there is one.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{bail, Context};

/// The environment variable naming the directory of `initdb` and `pg_ctl`.
pub const BINDIR_ENV: &str = "IMPORTER_PG_BINDIR";

/// The OS user that runs the cluster when the demo runs as root.
const RUN_AS: &str = "postgres";

/// What a new user can do when no server answers and no cluster can be made here.
pub fn how_to_get_a_server(port: u16, why: &str) -> String {
    format!(
        "no PostgreSQL answers on 127.0.0.1:{port} and DATABASE_URL is not set; {why}. Any of these works:\n  \
         - point DATABASE_URL at a server where you may CREATE DATABASE, e.g. DATABASE_URL=postgres://user:password@host:5432/postgres\n  \
         - start a local server: `docker run -d --rm -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16`, or `sudo pg_ctlcluster <version> main start` where one is installed\n  \
         - install PostgreSQL's server (Debian/Ubuntu: `sudo apt-get install postgresql`; macOS: `brew install postgresql`) and run the demo again: it then starts a throw-away cluster by itself (or set {BINDIR_ENV} to the directory of initdb and pg_ctl)"
    )
}

/// Whether anything accepts TCP connections on `127.0.0.1:port` (within a second).
pub fn something_listens(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// The directory holding `initdb` and `pg_ctl`, if this machine has one.
pub fn find_bindir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os(BINDIR_ENV) {
        let dir = PathBuf::from(dir);
        return has_tools(&dir).then_some(dir);
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let debian = newest_debian_bindir();
    let on_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| dir.join("initdb").is_file()));
    [from_pg_config, debian, on_path]
        .into_iter()
        .flatten()
        .find(|dir| has_tools(dir))
}

/// `/usr/lib/postgresql/<highest version>/bin`, where Debian puts the server binaries.
fn newest_debian_bindir() -> Option<PathBuf> {
    let versions = std::fs::read_dir("/usr/lib/postgresql").ok()?;
    versions
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, dir)| dir)
}

/// A running private cluster; stopped and removed on [`PrivateCluster::remove`] or drop.
#[derive(Debug)]
pub struct PrivateCluster {
    dir: PathBuf,
    bindir: PathBuf,
    port: u16,
    run_as: Option<&'static str>,
    running: bool,
}

impl PrivateCluster {
    /// Makes a cluster in a new temporary directory with the tools of `bindir` and starts it on
    /// a free port of 127.0.0.1 (trust authentication, reachable from this machine only).
    /// Errors say which step failed with the tool's own message.
    /// `port` is the default port that did not answer, for the message when none can be made.
    pub fn start(bindir: &Path, port: u16) -> anyhow::Result<Self> {
        let run_as = if is_root() {
            if !user_exists(RUN_AS) {
                bail!(
                    "{}",
                    how_to_get_a_server(
                        port,
                        "initdb cannot run as root and there is no `postgres` user to run it as"
                    )
                );
            }
            Some(RUN_AS)
        } else {
            None
        };
        let dir = std::env::temp_dir().join(format!(
            "importer-demo-pg-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut cluster = PrivateCluster {
            dir,
            bindir: bindir.to_owned(),
            port: free_port()?,
            run_as,
            running: false,
        };
        if let Some(user) = run_as {
            cluster.chown_to(user)?;
        }
        let data = cluster.dir.join("data");
        cluster.tool(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "--encoding=UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            cluster.port,
            cluster.dir.display()
        );
        let log = cluster.dir.join("server.log");
        cluster.tool(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "start".as_ref(),
            ],
        )?;
        cluster.running = true;
        Ok(cluster)
    }

    /// The connection string of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Its temporary directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server (immediately: nothing in it is kept) and removes the directory.
    pub fn remove(mut self) -> anyhow::Result<()> {
        self.stop_and_remove()
    }

    fn stop_and_remove(&mut self) -> anyhow::Result<()> {
        if self.running {
            self.running = false;
            let data = self.dir.join("data");
            self.tool(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-m".as_ref(),
                    "immediate".as_ref(),
                    "-w".as_ref(),
                    "stop".as_ref(),
                ],
            )?;
        }
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)
                .with_context(|| format!("cannot remove {}", self.dir.display()))?;
        }
        Ok(())
    }

    /// Runs one of the server tools (as the cluster's user when root), failing with its output.
    fn tool(&self, name: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<Output> {
        let program = self.bindir.join(name);
        let mut command = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        // Run from the cluster's directory: the tools' user may not be able to read ours.
        command.args(args).current_dir(&self.dir);
        let output = command
            .output()
            .with_context(|| format!("cannot run {}", program.display()))?;
        if !output.status.success() {
            bail!(
                "{name} failed while making the demo's private PostgreSQL cluster: {}{}",
                String::from_utf8_lossy(&output.stderr).trim(),
                String::from_utf8_lossy(&output.stdout).trim()
            );
        }
        Ok(output)
    }

    /// Hands the directory to `user`, who runs the server.
    fn chown_to(&self, user: &str) -> anyhow::Result<()> {
        let status = Command::new("chown")
            .arg(user)
            .arg(&self.dir)
            .status()
            .context("cannot run chown")?;
        if !status.success() {
            bail!("cannot give {} to the {user} user", self.dir.display());
        }
        Ok(())
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_remove() {
            eprintln!("warning: {e:#}");
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("cannot find a free port for the private cluster")?;
    Ok(listener.local_addr()?.port())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn user_exists(user: &str) -> bool {
    Command::new("id")
        .arg(user)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
