//! Connecting to PostgreSQL with errors people can act on: one sentence naming the server
//! (host and port only: a URL's password is never printed) and the cause.

use std::io;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};

/// How long one connection attempt may take before we report the server unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the database could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The connection string does not parse (its text is not repeated: it may hold a password).
    #[error("DATABASE_URL is not a valid PostgreSQL connection string: {0}")]
    BadUrl(String),
    /// The server refused, timed out, or rejected the login.
    #[error(
        "cannot connect to PostgreSQL at {server}: {cause}; set DATABASE_URL (or --database-url)"
    )]
    Unreachable {
        /// `host:port`.
        server: String,
        /// What went wrong, e.g. `connection refused`.
        cause: String,
    },
}

/// Parses a connection string. Errors with [`ConnectError::BadUrl`].
pub fn parse_url(url: &str) -> Result<PgConnectOptions, ConnectError> {
    let url = url.trim();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConnectError::BadUrl(
            "it must start with postgres:// or postgresql://".to_owned(),
        ));
    }
    PgConnectOptions::from_str(url).map_err(|e| ConnectError::BadUrl(describe(&e)))
}

/// `host:port` of the server, safe to print.
pub fn server(options: &PgConnectOptions) -> String {
    format!("{}:{}", options.get_host(), options.get_port())
}

/// `url` with its password replaced by `***`, safe to print.
pub fn redacted_url(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    let authority = &url[start..end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => {
                format!("{}{user}:***@{host}{}", &url[..start], &url[end..])
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// `url` with its database (path) replaced by `database`, query parameters kept.
pub fn with_database(url: &str, database: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let path = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    let query = url[path..].find('?').map_or(url.len(), |i| path + i);
    format!("{}/{database}{}", &url[..path], &url[query..])
}

/// Connects a pool of `size` connections, checking the server with one connection first so
/// that an unreachable server gives its real cause (a pool would only report a timeout).
///
/// Errors: [`ConnectError::Unreachable`] with the cause.
pub async fn connect(options: &PgConnectOptions, size: u32) -> Result<PgPool, ConnectError> {
    let options = options.clone().application_name("importer-admin");
    let unreachable = |cause: String| ConnectError::Unreachable {
        server: server(&options),
        cause,
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
        Err(_) => {
            return Err(unreachable(format!(
                "no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            )))
        }
        Ok(Err(e)) => return Err(unreachable(describe(&e))),
        Ok(Ok(probe)) => {
            // Only a courtesy to the server; the pool opens its own connections.
            let _ = probe.close().await;
        }
    }
    Ok(importer_core::pool::options(size)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_lazy_with(options))
}

/// A short lowercase cause for a connection failure.
pub fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Io(e) => match e.kind() {
            io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            io::ErrorKind::TimedOut => "connection timed out".to_owned(),
            io::ErrorKind::ConnectionReset => "connection reset by the server".to_owned(),
            io::ErrorKind::NotFound => format!("not found ({e})"),
            io::ErrorKind::PermissionDenied => format!("permission denied ({e})"),
            _ => e.to_string(),
        },
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection".to_owned(),
        sqlx::Error::Tls(e) => format!("TLS failed: {e}"),
        sqlx::Error::Configuration(e) => e.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_password_is_never_printed() {
        let url = "postgres://alice:hunter2@db.example:6543/app?sslmode=require";
        let options = parse_url(url).unwrap();
        assert_eq!(server(&options), "db.example:6543");
        assert_eq!(
            redacted_url(url),
            "postgres://alice:***@db.example:6543/app?sslmode=require"
        );
        assert_eq!(redacted_url("postgres://bob@h/db"), "postgres://bob@h/db");
    }

    #[test]
    fn the_database_of_a_url_is_replaced_keeping_its_parameters() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "demo"),
            "postgres://u:p@h:5432/demo?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "demo"), "postgres://h/demo");
        assert_eq!(
            with_database("postgres://h?x=1", "demo"),
            "postgres://h/demo?x=1"
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_is_one_sentence_with_the_cause() {
        let options = parse_url("postgres://postgres:hunter2@127.0.0.1:1/x").unwrap();
        let err = connect(&options, 1).await.unwrap_err().to_string();
        assert!(
            err.starts_with("cannot connect to PostgreSQL at 127.0.0.1:1: connection refused"),
            "{err}"
        );
        assert!(!err.contains("hunter2"));
    }
}
