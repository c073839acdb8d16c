//! Mailchimp's error responses: `application/problem+json` with an `X-Request-Id` header.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

const TYPE: &str = "https://mailchimp.com/developer/marketing/docs/errors/";

/// One Mailchimp error answer.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub status: StatusCode,
    pub title: &'static str,
    pub detail: String,
    /// Field errors of a 400: (field, message).
    pub errors: Vec<(String, String)>,
    pub retry_after: Option<u64>,
}

impl Problem {
    fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// 401: no key in the request.
    pub(crate) fn key_missing() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "API Key Missing",
            "Your request did not include an API key.",
        )
    }

    /// 401: unknown or revoked key.
    pub(crate) fn key_invalid() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "API Key Invalid",
            "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
        )
    }

    /// 404: unknown resource, or a list of another key.
    pub(crate) fn not_found() -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            "Resource Not Found",
            "The requested resource could not be found.",
        )
    }

    /// 400 on one bad parameter.
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Problem {
        let message = message.into();
        let mut p = Problem::new(
            StatusCode::BAD_REQUEST,
            "Invalid Resource",
            format!("The resource submitted could not be validated: {field}: {message}"),
        );
        p.errors.push((field.to_owned(), message));
        p
    }

    /// 429: too many simultaneous connections.
    pub(crate) fn too_many(max: usize, retry_after: Option<u64>) -> Problem {
        let mut p = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests",
            format!("You have exceeded the limit of {max} simultaneous connections."),
        );
        p.retry_after = retry_after;
        p
    }

    /// 500 or 503 (injected fault).
    pub(crate) fn server_error(unavailable: bool) -> Problem {
        if unavailable {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                "This service is temporarily unavailable. Please try again later.",
            )
        } else {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
                "An unexpected internal error has occurred. Please contact Support for more information.",
            )
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let instance = uuid::Uuid::new_v4().to_string();
        let mut body = json!({
            "type": TYPE,
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
            "instance": instance,
        });
        if !self.errors.is_empty() {
            body["errors"] = self
                .errors
                .iter()
                .map(|(field, message)| json!({"field": field, "message": message}))
                .collect();
        }
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json; charset=utf-8"),
        );
        if let Ok(v) = HeaderValue::from_str(&instance) {
            headers.insert("x-request-id", v);
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
