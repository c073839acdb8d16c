//! Server-side rendering: the minijinja templates (compiled into the binary, HTML autoescaped),
//! the filters they format numbers and times with, and the error page every refusal renders.

use std::sync::LazyLock;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use minijinja::{Environment, Value};

use crate::output;

/// Every template, by name.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("error.html", include_str!("templates/error.html")),
    ("confirm.html", include_str!("templates/confirm.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("inflight.html", include_str!("templates/inflight.html")),
    ("chart.html", include_str!("templates/chart.html")),
    ("accounts.html", include_str!("templates/accounts.html")),
    ("lists.html", include_str!("templates/lists.html")),
    ("runs.html", include_str!("templates/runs.html")),
    ("run.html", include_str!("templates/run.html")),
    ("run_live.html", include_str!("templates/run_live.html")),
    ("dead.html", include_str!("templates/dead.html")),
    ("dead_job.html", include_str!("templates/dead_job.html")),
    ("rejected.html", include_str!("templates/rejected.html")),
    ("audit.html", include_str!("templates/audit.html")),
];

static ENV: LazyLock<Result<Environment<'static>, minijinja::Error>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in TEMPLATES {
        env.add_template(name, source)?;
    }
    env.add_filter("age", |secs: Option<f64>| {
        secs.map_or_else(|| "-".to_owned(), output::age)
    });
    env.add_filter("time", |t: Option<String>| match t {
        Some(t) => t
            .parse::<DateTime<Utc>>()
            .map_or(t, |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
        None => "-".to_owned(),
    });
    env.add_filter("num", |n: Option<i64>| {
        n.map_or_else(|| "-".to_owned(), thousands)
    });
    Ok(env)
});

/// `1234567` as `1,234,567`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Renders `name` with `ctx`; a template error is a 500 page (and a log line), never a panic.
pub fn page(name: &str, ctx: Value) -> Response {
    match render(name, ctx) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "dashboard template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

fn render(name: &str, ctx: Value) -> Result<String, minijinja::Error> {
    let env = ENV.as_ref().map_err(|e| {
        minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
    })?;
    env.get_template(name)?.render(ctx)
}

/// A request the dashboard refuses or could not serve: a status and a message for people.
#[derive(Debug)]
pub struct PageError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong and, for a refusal, that nothing changed.
    pub message: String,
}

impl PageError {
    /// 400: invalid input; nothing changed.
    pub fn bad(message: impl Into<String>) -> Self {
        PageError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 404: no such object.
    pub fn not_found(what: impl Into<String>) -> Self {
        PageError {
            status: StatusCode::NOT_FOUND,
            message: what.into(),
        }
    }

    /// 403: not allowed; nothing changed.
    pub fn forbidden(message: impl Into<String>) -> Self {
        PageError {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for PageError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %crate::database::describe(&e), "dashboard query failed");
        PageError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the database did not answer; try again".to_owned(),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let mut response = page(
            "error.html",
            minijinja::context! { status => self.status.as_u16(), message => self.message },
        );
        *response.status_mut() = self.status;
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        assert!(ENV.as_ref().is_ok(), "{:?}", ENV.as_ref().err());
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(-1234567), "-1,234,567");
    }
}
