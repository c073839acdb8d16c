//! Test harness: runs the real `importer-admin` binary against the test's own database and
//! captures its exit code and output.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod dashboard;
pub mod import;

use std::io::Write;
use std::process::{Child, Command, Stdio};

use importer_core::secrets::SecretBox;
use sqlx::PgPool;

/// The server tests use when DATABASE_URL is not set.
pub const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A Mailchimp key of the right shape.
pub const MC_KEY: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9-us6";
/// A destination key long enough to be hinted by its last 4 characters.
pub const DEST_KEY: &str = "dest-key-TOPSECRET-8f3a91";

/// DATABASE_URL (or the default server).
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_SERVER.to_owned())
}

/// `url` with its database replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{database}", &base[..path]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// The URL of the test pool's database.
pub fn url_for(pool: &PgPool) -> String {
    let database = pool
        .connect_options()
        .get_database()
        .expect("sqlx::test pools name their database")
        .to_owned();
    with_database(&server_url(), &database)
}

/// What one invocation did.
#[derive(Debug)]
pub struct Outcome {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Outcome {
    /// Asserts exit code 0 and returns self.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success:\n{self:#?}");
        self
    }

    /// Asserts this exit code and returns self.
    #[track_caller]
    pub fn code(self, code: i32) -> Self {
        assert_eq!(self.code, code, "expected exit code {code}:\n{self:#?}");
        self
    }

    /// Standard output parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// Both streams, for searching.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// The binary, configured for one database.
#[derive(Debug, Clone)]
pub struct Admin {
    /// DATABASE_URL given to the binary (None: unset).
    pub url: Option<String>,
    /// IMPORTER_SECRET_KEY given to the binary.
    pub secret_key: String,
    env: Vec<(String, String)>,
}

impl Admin {
    /// The binary on the test pool's database.
    pub fn new(pool: &PgPool) -> Self {
        Admin::with_url(Some(url_for(pool)))
    }

    /// The binary on any database URL (None: DATABASE_URL unset).
    pub fn with_url(url: Option<String>) -> Self {
        Admin {
            url,
            secret_key: SecretBox::generate_key_hex(),
            env: vec![
                ("MC_KEY".to_owned(), MC_KEY.to_owned()),
                ("DEST_KEY".to_owned(), DEST_KEY.to_owned()),
            ],
        }
    }

    /// A copy with one more environment variable.
    pub fn clone_with_env(&self, key: &str, value: &str) -> Self {
        let mut copy = Admin {
            url: self.url.clone(),
            secret_key: self.secret_key.clone(),
            env: self.env.clone(),
        };
        copy.env.push((key.to_owned(), value.to_owned()));
        copy
    }

    /// Adds an environment variable for every invocation.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs `importer-admin args…`.
    pub fn run(&self, args: &[&str]) -> Outcome {
        self.run_with_stdin(args, "")
    }

    /// Starts `importer-admin args…` with piped stdout and stderr, to read while it runs.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdin(Stdio::null())
            .spawn()
            .expect("the importer-admin binary runs")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_importer-admin"));
        command
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("IMPORTER_OUTPUT")
            .env_remove("RUST_LOG")
            .env("IMPORTER_SECRET_KEY", &self.secret_key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(url) = &self.url {
            command.env("DATABASE_URL", url);
        }
        for (k, v) in &self.env {
            command.env(k, v);
        }
        command
    }

    /// Runs `importer-admin args…` with `stdin` on standard input.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Outcome {
        let mut child = self
            .command(args)
            .spawn()
            .expect("the importer-admin binary runs");
        {
            let mut input = child.stdin.take().unwrap();
            // The command may exit without reading (e.g. a usage error): ignore a closed pipe.
            let _ = input.write_all(stdin.as_bytes());
        }
        let output = child.wait_with_output().unwrap();
        Outcome {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Adds account `name` (keys from MC_KEY and DEST_KEY) pointing at unused local ports.
    pub fn add_account(&self, name: &str) -> Outcome {
        self.run(&[
            "accounts",
            "add",
            "--name",
            name,
            "--destination-url",
            "http://127.0.0.1:9/dest",
            "--mailchimp-base-url",
            "http://127.0.0.1:9/3.0",
            "--mailchimp-key-env",
            "MC_KEY",
            "--destination-key-env",
            "DEST_KEY",
        ])
        .ok()
    }

    /// Adds list `mailchimp_id` to `account`.
    pub fn add_list(&self, account: &str, mailchimp_id: &str) -> Outcome {
        self.run(&[
            "lists",
            "add",
            "--account",
            account,
            "--list-id",
            mailchimp_id,
        ])
        .ok()
    }
}
