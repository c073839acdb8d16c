//! A real `importer-admin serve` on port 0 of the test's database, and an HTTP client that
//! signs in like a browser (session cookie, CSRF token from the page) or with a bearer token.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead, BufReader};
use std::process::Child;

use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::StatusCode;

use super::Admin;

/// The operator's token.
pub const OPERATOR_TOKEN: &str = "operator-token-7f3c9a1e55d2";
/// The viewer's token.
pub const VIEWER_TOKEN: &str = "viewer-token-2b8e4d6a90c1";

/// A running dashboard.
pub struct Dashboard {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    client: reqwest::Client,
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One answer, read whole.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: String,
}

impl Answer {
    /// Where a redirect points.
    pub fn location(&self) -> Option<&str> {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok())
    }
}

/// Someone using the dashboard.
#[derive(Debug, Clone)]
pub enum Who {
    /// No credentials at all.
    Nobody,
    /// A bearer token.
    Bearer(String),
    /// A browser session: its cookie header value and its CSRF token.
    Session { cookie: String, csrf: String },
}

impl Dashboard {
    /// Starts `serve` with an operator `ana` and a viewer `vic`.
    pub fn start(admin: &Admin) -> Self {
        let users = format!("ana:operator:{OPERATOR_TOKEN},vic:viewer:{VIEWER_TOKEN}");
        let mut child = admin
            .clone_with_env("IMPORTER_DASHBOARD_USERS", &users)
            .spawn(&["serve", "--listen", "127.0.0.1:0", "--refresh-ms", "300"]);
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("dashboard: ")
            .unwrap_or_else(|| panic!("serve printed {line:?}"))
            .trim_end_matches('/')
            .to_owned();
        let client = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap();
        Dashboard {
            child,
            base,
            client,
        }
    }

    fn with(&self, who: &Who, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match who {
            Who::Nobody => request,
            Who::Bearer(token) => request.bearer_auth(token),
            Who::Session { cookie, .. } => request.header(COOKIE, cookie),
        }
    }

    async fn read(response: reqwest::Response) -> Answer {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// `GET path`.
    pub async fn get(&self, who: &Who, path: &str) -> Answer {
        let request = self.client.get(format!("{}{path}", self.base));
        Self::read(self.with(who, request).send().await.unwrap()).await
    }

    /// `POST path` with `fields`; a session's CSRF token is added unless `fields` has one.
    pub async fn post(&self, who: &Who, path: &str, fields: &[(&str, &str)]) -> Answer {
        let mut form: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Who::Session { csrf, .. } = who {
            if !fields.iter().any(|(k, _)| *k == "csrf") {
                form.push(("csrf".to_owned(), csrf.clone()));
            }
        }
        let request = self.client.post(format!("{}{path}", self.base)).form(&form);
        Self::read(self.with(who, request).send().await.unwrap()).await
    }

    /// Signs in with `token` through the form; the session's cookie and CSRF token.
    pub async fn sign_in(&self, token: &str) -> Who {
        let answer = self
            .post(&Who::Nobody, "/login", &[("token", token), ("next", "/")])
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{answer:?}");
        let set_cookie = answer
            .headers
            .get(SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .unwrap()
            .to_owned();
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let page = self
            .get(
                &Who::Session {
                    cookie: cookie.clone(),
                    csrf: String::new(),
                },
                "/",
            )
            .await;
        let csrf = csrf_of(&page.body);
        Who::Session { cookie, csrf }
    }
}

/// The CSRF token of a page's forms.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("the page has a form") + marker.len();
    html[start..start + 64].to_owned()
}
