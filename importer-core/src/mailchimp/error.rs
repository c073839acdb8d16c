//! [`MailchimpError`]: every way a Mailchimp call fails, sorted into retryable, rate-limited and
//! permanent for the worker.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::secrets::KeyError;

/// Longest `detail` kept from an error body; Mailchimp's are one sentence.
const MAX_DETAIL_CHARS: usize = 1000;

/// A failed Mailchimp call. Never contains the API key.
#[derive(Debug, thiserror::Error)]
pub enum MailchimpError {
    /// The API key does not have Mailchimp's shape; nothing was sent.
    #[error("invalid Mailchimp API key: {0}")]
    InvalidKey(#[from] KeyError),
    /// The list id is not 1-64 ASCII letters, digits, `-` or `_`; nothing was sent.
    #[error("invalid Mailchimp list id: it must be 1-64 ASCII letters, digits, - or _")]
    InvalidListId,
    /// A query parameter is out of range (e.g. `count` outside 1..=1000); nothing was sent.
    #[error("invalid Mailchimp query: {0}")]
    InvalidQuery(String),
    /// The base URL override does not parse.
    #[error("invalid Mailchimp base URL: {0}")]
    InvalidBaseUrl(String),
    /// The HTTP client could not be built (TLS initialisation).
    #[error("could not build the HTTP client")]
    Client(#[source] reqwest::Error),
    /// No complete answer within the client timeout.
    #[error("Mailchimp request timed out")]
    Timeout(#[source] reqwest::Error),
    /// The connection could not be opened.
    #[error("could not connect to Mailchimp")]
    Connect(#[source] reqwest::Error),
    /// The connection failed before the response head arrived (reset, closed).
    #[error("connection to Mailchimp failed")]
    Transport(#[source] reqwest::Error),
    /// 401: missing, invalid or revoked key, or the wrong data centre.
    #[error("Mailchimp refused the API key (401): {}", show(.detail))]
    Unauthorized {
        /// Mailchimp's `detail`, when its error body had one.
        detail: Option<String>,
    },
    /// 404: the list does not exist or belongs to another key.
    #[error("Mailchimp resource not found (404): {}", show(.detail))]
    NotFound {
        /// Mailchimp's `detail`, when its error body had one.
        detail: Option<String>,
    },
    /// 429, or a 403 without a body (what Mailchimp sends at very high volume).
    #[error("Mailchimp rate-limited the request ({status}): {}", show(.detail))]
    TooManyRequests {
        /// HTTP status Mailchimp answered (429 or 403).
        status: u16,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
        /// Mailchimp's `detail`, when its error body had one.
        detail: Option<String>,
    },
    /// Any other non-2xx answer; retryable when 5xx or 408.
    #[error("Mailchimp answered {status} {}: {}", show(.title), show(.detail))]
    Status {
        /// HTTP status Mailchimp answered.
        status: u16,
        /// Mailchimp's `title`, when its error body had one.
        title: Option<String>,
        /// Mailchimp's `detail`, when its error body had one.
        detail: Option<String>,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// A 2xx body that is not the expected JSON (malformed, truncated, or the connection broke
    /// while it was read).
    #[error("Mailchimp response body is malformed: {reason}")]
    Malformed {
        /// What is wrong with the body.
        reason: String,
    },
    /// A 2xx body longer than the configured maximum; reading stopped there (retryable: a
    /// smaller page may fit, and a persistent cause ends in the dead-letter store with this
    /// message).
    #[error(
        "Mailchimp response body exceeds the limit of {limit} bytes (MAILCHIMP_MAX_BODY_BYTES)"
    )]
    BodyTooLarge {
        /// The configured maximum body size, in bytes.
        limit: usize,
    },
}

fn show(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("(no detail)")
}

impl MailchimpError {
    /// Whether the same request may succeed later: timeouts, connection failures, 5xx, 408,
    /// rate limits and malformed bodies (truncation is transient). Permanent: bad input, 401,
    /// 404 and the other 4xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            MailchimpError::Timeout(_)
            | MailchimpError::Connect(_)
            | MailchimpError::Transport(_)
            | MailchimpError::TooManyRequests { .. }
            | MailchimpError::Malformed { .. }
            | MailchimpError::BodyTooLarge { .. } => true,
            MailchimpError::Status { status, .. } => *status >= 500 || *status == 408,
            MailchimpError::InvalidKey(_)
            | MailchimpError::InvalidListId
            | MailchimpError::InvalidQuery(_)
            | MailchimpError::InvalidBaseUrl(_)
            | MailchimpError::Client(_)
            | MailchimpError::Unauthorized { .. }
            | MailchimpError::NotFound { .. } => false,
        }
    }

    /// Whether Mailchimp pushed back on our concurrency: the worker snoozes the job instead of
    /// spending an attempt.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, MailchimpError::TooManyRequests { .. })
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            MailchimpError::TooManyRequests { retry_after, .. }
            | MailchimpError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, when Mailchimp answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            MailchimpError::Unauthorized { .. } => Some(401),
            MailchimpError::NotFound { .. } => Some(404),
            MailchimpError::TooManyRequests { status, .. }
            | MailchimpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Mailchimp's `detail`, when its error body had one.
    pub fn detail(&self) -> Option<&str> {
        match self {
            MailchimpError::Unauthorized { detail }
            | MailchimpError::NotFound { detail }
            | MailchimpError::TooManyRequests { detail, .. }
            | MailchimpError::Status { detail, .. } => detail.as_deref(),
            _ => None,
        }
    }

    /// A short stable label for metrics and logs (`timeout`, `status_503`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            MailchimpError::InvalidKey(_) => "invalid_key",
            MailchimpError::InvalidListId => "invalid_list_id",
            MailchimpError::InvalidQuery(_) => "invalid_query",
            MailchimpError::InvalidBaseUrl(_) => "invalid_base_url",
            MailchimpError::Client(_) => "client",
            MailchimpError::Timeout(_) => "timeout",
            MailchimpError::Connect(_) => "connect",
            MailchimpError::Transport(_) => "transport",
            MailchimpError::Unauthorized { .. } => "unauthorized",
            MailchimpError::NotFound { .. } => "not_found",
            MailchimpError::TooManyRequests { .. } => "rate_limited",
            MailchimpError::Status { status, .. } if *status >= 500 => "server_error",
            MailchimpError::Status { .. } => "client_error",
            MailchimpError::Malformed { .. } => "malformed",
            MailchimpError::BodyTooLarge { .. } => "body_too_large",
        }
    }

    /// Classifies a failure to send or to receive the response head.
    pub(crate) fn from_send(err: reqwest::Error) -> Self {
        let err = err.without_url();
        if err.is_timeout() {
            MailchimpError::Timeout(err)
        } else if err.is_connect() {
            MailchimpError::Connect(err)
        } else if err.is_builder() {
            MailchimpError::InvalidBaseUrl(err.to_string())
        } else {
            MailchimpError::Transport(err)
        }
    }

    /// Classifies a failure while reading a 2xx body.
    pub(crate) fn from_body(err: reqwest::Error) -> Self {
        let err = err.without_url();
        if err.is_timeout() {
            MailchimpError::Timeout(err)
        } else {
            MailchimpError::Malformed {
                reason: format!("reading the body failed: {}", error_chain(&err)),
            }
        }
    }

    /// The error for a non-2xx answer. `secret` is scrubbed from anything kept from the body.
    pub(crate) fn from_status(
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        secret: &str,
    ) -> Self {
        let retry_after = parse_retry_after(headers);
        let problem = Problem::parse(body, secret);
        let bodiless = body.iter().all(u8::is_ascii_whitespace);
        match status.as_u16() {
            401 => MailchimpError::Unauthorized {
                detail: problem.detail,
            },
            404 => MailchimpError::NotFound {
                detail: problem.detail,
            },
            429 => MailchimpError::TooManyRequests {
                status: 429,
                retry_after,
                detail: problem.detail,
            },
            403 if bodiless => MailchimpError::TooManyRequests {
                status: 403,
                retry_after,
                detail: None,
            },
            code => MailchimpError::Status {
                status: code,
                title: problem.title,
                detail: problem.detail,
                retry_after,
            },
        }
    }
}

/// The useful fields of an `application/problem+json` body; both `None` when it is not one.
#[derive(Default, Deserialize)]
struct Problem {
    title: Option<String>,
    detail: Option<String>,
}

impl Problem {
    fn parse(body: &[u8], secret: &str) -> Self {
        let problem: Problem = serde_json::from_slice(body).unwrap_or_default();
        Problem {
            title: problem.title.map(|t| clean(t, secret)),
            detail: problem.detail.map(|d| clean(d, secret)),
        }
    }
}

/// Bounds a server-provided string and removes the key should the server have echoed it.
fn clean(mut text: String, secret: &str) -> String {
    if !secret.is_empty() && text.contains(secret) {
        text = text.replace(secret, "[redacted]");
    }
    if let Some((cut, _)) = text.char_indices().nth(MAX_DETAIL_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// `Retry-After` as delay-seconds (integer or decimal) or an HTTP date; `None` when absent or
/// unparseable.
pub(crate) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delay = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delay.to_std().unwrap_or(Duration::ZERO))
}

/// `err` and its causes on one line (reqwest's own message is often just "error decoding").
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use reqwest::header::HeaderValue;

    fn retry_after(value: &str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        parse_retry_after(&headers)
    }

    #[test]
    fn retry_after_reads_seconds_decimals_and_dates() {
        assert_eq!(retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(retry_after("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(retry_after("-3"), None);
        assert_eq!(retry_after("soon"), None);
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let got = retry_after(&later).unwrap();
        assert!(got > Duration::from_secs(100) && got <= Duration::from_secs(120));
    }

    #[test]
    fn error_bodies_are_classified_without_panicking() {
        let empty = HeaderMap::new();
        let key = "0123456789abcdef0123456789abcdef-us6";
        let bodies: [&[u8]; 5] = [
            b"",
            b"   ",
            b"<html>bad gateway</html>",
            b"{\"detail\": 5}",
            b"{\"title\":\"Forbidden\",\"detail\":\"no\"}",
        ];
        for body in bodies {
            for code in [400u16, 401, 403, 404, 429, 500, 502, 503] {
                let status = StatusCode::from_u16(code).unwrap();
                let err = MailchimpError::from_status(status, &empty, body, key);
                assert_eq!(err.status(), Some(code));
            }
        }
        let forbidden = StatusCode::FORBIDDEN;
        assert!(MailchimpError::from_status(forbidden, &empty, b"", key).is_rate_limited());
        let with_body = MailchimpError::from_status(forbidden, &empty, bodies[4], key);
        assert!(!with_body.is_retryable());
        assert_eq!(with_body.detail(), Some("no"));
    }

    #[test]
    fn an_echoed_key_is_scrubbed_from_the_detail() {
        let key = "0123456789abcdef0123456789abcdef-us6";
        let body = format!("{{\"title\":\"x\",\"detail\":\"key {key} is bad\"}}");
        let err = MailchimpError::from_status(
            StatusCode::UNAUTHORIZED,
            &HeaderMap::new(),
            body.as_bytes(),
            key,
        );
        assert_eq!(err.detail(), Some("key [redacted] is bad"));
        assert!(!err.to_string().contains(key));
    }
}
