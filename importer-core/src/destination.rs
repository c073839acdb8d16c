//! The destination records API client: posts mapped records in batches no larger than the
//! destination accepts and checks that every batch was stored whole.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;

use crate::mailchimp::parse_retry_after;
use crate::mapping::Record;
use crate::secrets::Secret;

/// Longest server message kept in an error.
const MAX_MESSAGE_CHARS: usize = 500;

/// Settings of the destination client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationConfig {
    /// Whole-request timeout per batch.
    pub timeout: Duration,
    /// Timeout to open a connection.
    pub connect_timeout: Duration,
    /// Records per request; the destination answers 413 above its limit (1000 by contract).
    pub max_batch: usize,
}

impl Default for DestinationConfig {
    fn default() -> Self {
        DestinationConfig {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_batch: 1000,
        }
    }
}

/// A failed post. Never contains the destination key.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// `max_batch` is 0 or the HTTP client could not be built.
    #[error("invalid destination client configuration: {0}")]
    Config(String),
    /// The key cannot be sent as a header value (control characters); nothing was sent.
    #[error("the destination key contains characters not allowed in an HTTP header")]
    InvalidKey,
    /// The base URL does not parse.
    #[error("invalid destination URL: {0}")]
    InvalidUrl(String),
    /// No complete answer within the timeout.
    #[error("destination request timed out")]
    Timeout(#[source] reqwest::Error),
    /// The connection could not be opened.
    #[error("could not connect to the destination")]
    Connect(#[source] reqwest::Error),
    /// The connection broke mid-request or mid-response.
    #[error("connection to the destination failed")]
    Transport(#[source] reqwest::Error),
    /// 401: missing or wrong key.
    #[error("destination refused the key (401): {message}")]
    Unauthorized {
        /// The destination's error message.
        message: String,
    },
    /// 400: a record the destination will never take; the message names its index.
    #[error("destination rejected the batch (400): {message}")]
    BadRequest {
        /// The destination's error message, naming the bad record's index.
        message: String,
    },
    /// 413 for a single record: the destination refuses even the smallest batch.
    #[error("destination refused a one-record batch as too large (413): {message}")]
    PayloadTooLarge {
        /// The destination's error message.
        message: String,
    },
    /// Any other non-2xx answer; retryable when 5xx, 408 or 429.
    #[error("destination answered {status}: {message}")]
    Status {
        /// HTTP status the destination answered.
        status: u16,
        /// The destination's error message.
        message: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// Fewer records accepted than sent: part of the batch was not stored (re-sending is safe).
    #[error("destination accepted {accepted} of {sent} records")]
    ShortCount {
        /// Records in the batch.
        sent: usize,
        /// Records the destination says it accepted.
        accepted: u64,
    },
    /// A 2xx answer that is not `{"status": "OK", "response": <count>}`.
    #[error("destination response is malformed: {reason}")]
    Malformed {
        /// What is wrong with the response.
        reason: String,
    },
}

impl DestinationError {
    /// Whether re-sending may succeed: timeouts, connection failures, 5xx, 408, 429, short
    /// counts and unreadable answers (the destination is idempotent). Permanent: configuration,
    /// 401, 400, 413 and other 4xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            DestinationError::Timeout(_)
            | DestinationError::Connect(_)
            | DestinationError::Transport(_)
            | DestinationError::ShortCount { .. }
            | DestinationError::Malformed { .. } => true,
            DestinationError::Status { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            DestinationError::Config(_)
            | DestinationError::InvalidKey
            | DestinationError::InvalidUrl(_)
            | DestinationError::Unauthorized { .. }
            | DestinationError::BadRequest { .. }
            | DestinationError::PayloadTooLarge { .. } => false,
        }
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DestinationError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status the destination answered, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            DestinationError::Unauthorized { .. } => Some(401),
            DestinationError::BadRequest { .. } => Some(400),
            DestinationError::PayloadTooLarge { .. } => Some(413),
            DestinationError::Status { status, .. } => Some(*status),
            DestinationError::ShortCount { .. } => Some(200),
            _ => None,
        }
    }

    /// A short stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            DestinationError::Config(_) => "config",
            DestinationError::InvalidKey => "invalid_key",
            DestinationError::InvalidUrl(_) => "invalid_url",
            DestinationError::Timeout(_) => "timeout",
            DestinationError::Connect(_) => "connect",
            DestinationError::Transport(_) => "transport",
            DestinationError::Unauthorized { .. } => "unauthorized",
            DestinationError::BadRequest { .. } => "bad_request",
            DestinationError::PayloadTooLarge { .. } => "payload_too_large",
            DestinationError::Status { status, .. } if *status >= 500 => "server_error",
            DestinationError::Status { .. } => "client_error",
            DestinationError::ShortCount { .. } => "short_count",
            DestinationError::Malformed { .. } => "malformed",
        }
    }

    fn from_reqwest(err: reqwest::Error) -> Self {
        let err = err.without_url();
        if err.is_timeout() {
            DestinationError::Timeout(err)
        } else if err.is_connect() {
            DestinationError::Connect(err)
        } else if err.is_builder() {
            DestinationError::InvalidUrl(err.to_string())
        } else {
            DestinationError::Transport(err)
        }
    }
}

/// The process's destination HTTP client; clones share one connection pool.
#[derive(Clone)]
pub struct DestinationClient {
    http: reqwest::Client,
    max_batch: usize,
    /// Per `/record` URL, the batch size a 413 taught (below `max_batch`), for this process.
    learned: Arc<Mutex<HashMap<String, usize>>>,
}

impl fmt::Debug for DestinationClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DestinationClient")
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Accepted {
    status: String,
    response: u64,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
}

impl DestinationClient {
    /// Builds the client. Errors with [`DestinationError::Config`] for `max_batch == 0` or when
    /// TLS cannot start.
    pub fn new(config: DestinationConfig) -> Result<Self, DestinationError> {
        if config.max_batch == 0 {
            return Err(DestinationError::Config(
                "max_batch must be at least 1".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("mailchimp-importer/", env!("CARGO_PKG_VERSION")))
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| DestinationError::Config(e.to_string()))?;
        Ok(DestinationClient {
            http,
            max_batch: config.max_batch,
            learned: Arc::default(),
        })
    }

    /// The largest batch this client sends.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Posts `records` to `{base_url}/record` in batches of at most `max_batch`, one after the
    /// other, and returns how many were accepted (all of them). Stops at the first failed batch;
    /// re-sending everything is safe because the destination upserts by id.
    ///
    /// A 413 (the destination's limit is below `max_batch`; CONTRACTS.md makes it configurable)
    /// halves the batch and sends it again, down to one record; the size that went through is
    /// kept for that URL, so later posts do not meet the 413 again. Errors: see
    /// [`DestinationError`]; [`DestinationError::ShortCount`] when a batch was partly stored,
    /// [`DestinationError::PayloadTooLarge`] when even one record is refused.
    pub async fn post_records(
        &self,
        base_url: &str,
        key: &Secret,
        records: &[Record],
    ) -> Result<usize, DestinationError> {
        let mut auth =
            HeaderValue::from_str(key.expose()).map_err(|_| DestinationError::InvalidKey)?;
        auth.set_sensitive(true);
        let url = format!("{}/record", base_url.trim_end_matches('/'));
        let mut size = self.batch_size(&url);
        let mut rest = records;
        while !rest.is_empty() {
            let batch = &rest[..size.min(rest.len())];
            match self.post_batch(&url, &auth, key.expose(), batch).await {
                Ok(()) => rest = &rest[batch.len()..],
                Err(DestinationError::PayloadTooLarge { .. }) if batch.len() > 1 => {
                    size = batch.len() / 2;
                    tracing::warn!(
                        batch = size,
                        "the destination refused the batch as too large (413); sending smaller batches"
                    );
                    self.learned
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(url.clone(), size);
                }
                Err(error) => return Err(error),
            }
        }
        Ok(records.len())
    }

    /// The batch size for `url`: `max_batch`, or what a 413 taught for it.
    fn batch_size(&self, url: &str) -> usize {
        let learned = self.learned.lock().unwrap_or_else(PoisonError::into_inner);
        learned
            .get(url)
            .copied()
            .unwrap_or(self.max_batch)
            .min(self.max_batch)
    }

    async fn post_batch(
        &self,
        url: &str,
        auth: &HeaderValue,
        secret: &str,
        batch: &[Record],
    ) -> Result<(), DestinationError> {
        let body = serde_json::to_vec(batch).map_err(|e| DestinationError::Malformed {
            reason: format!("could not encode the batch: {e}"),
        })?;
        let response = self
            .http
            .post(url)
            .header(AUTHORIZATION, auth.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(DestinationError::from_reqwest)?;
        let status = response.status();
        let retry_after = parse_retry_after(response.headers());
        let bytes = response
            .bytes()
            .await
            .map_err(DestinationError::from_reqwest)?;
        if !status.is_success() {
            let message = server_message(&bytes, secret);
            tracing::debug!(status = status.as_u16(), %message, "destination error");
            return Err(match status.as_u16() {
                400 => DestinationError::BadRequest { message },
                401 => DestinationError::Unauthorized { message },
                413 => DestinationError::PayloadTooLarge { message },
                code => DestinationError::Status {
                    status: code,
                    message,
                    retry_after,
                },
            });
        }
        let answer: Accepted =
            serde_json::from_slice(&bytes).map_err(|e| DestinationError::Malformed {
                reason: e.to_string(),
            })?;
        if answer.status != "OK" {
            return Err(DestinationError::Malformed {
                reason: format!("status is {:?}, not \"OK\"", answer.status),
            });
        }
        if answer.response != batch.len() as u64 {
            return Err(DestinationError::ShortCount {
                sent: batch.len(),
                accepted: answer.response,
            });
        }
        Ok(())
    }
}

/// The `message` of an error body, else its text; bounded, with the key scrubbed.
fn server_message(body: &[u8], secret: &str) -> String {
    let message = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.message)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    let mut message = if secret.is_empty() {
        message
    } else {
        message.replace(secret, "[redacted]")
    };
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(cut);
        message.push('…');
    }
    if message.is_empty() {
        "(no message)".to_owned()
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_are_bounded_and_never_carry_the_key() {
        let key = "dest-key-0123456789";
        let json = format!("{{\"status\":\"error\",\"message\":\"bad key {key}\"}}");
        assert_eq!(server_message(json.as_bytes(), key), "bad key [redacted]");
        assert_eq!(server_message(b"", key), "(no message)");
        assert_eq!(server_message(b" oops \n", key), "oops");
        let long = "x".repeat(5000);
        assert_eq!(
            server_message(long.as_bytes(), key).chars().count(),
            MAX_MESSAGE_CHARS + 1
        );
    }

    #[test]
    fn a_zero_batch_size_is_refused() {
        let config = DestinationConfig {
            max_batch: 0,
            ..DestinationConfig::default()
        };
        assert!(matches!(
            DestinationClient::new(config),
            Err(DestinationError::Config(_))
        ));
    }
}
