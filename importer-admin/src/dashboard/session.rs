//! Signed-in callers: sessions kept in server memory behind an `HttpOnly`, `SameSite=Strict`
//! cookie that holds only a random id, each with its own CSRF token; and `Authorization: Bearer`
//! for scripts, which carries no ambient authority and so needs no CSRF token.
//!
//! Sessions live in memory on purpose: a restart signs everyone out, which is cheap for a
//! handful of operators and means no session secret to store, rotate or leak.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use rand::RngCore;
use subtle::ConstantTimeEq;

use super::users::{Role, User};
use super::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "importer_session";

/// How long a session lasts from sign-in.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// One signed-in browser.
#[derive(Debug, Clone)]
struct Session {
    user: String,
    role: Role,
    csrf: String,
    expires: Instant,
    flash: Option<String>,
}

/// The sessions of this server.
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session for `user`; returns its id (the cookie's value).
    pub fn start(&self, user: &User) -> String {
        let id = random_hex();
        let mut sessions = self.lock();
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(
            id.clone(),
            Session {
                user: user.name.clone(),
                role: user.role,
                csrf: random_hex(),
                expires: now + SESSION_TTL,
                flash: None,
            },
        );
        id
    }

    /// Ends a session.
    pub fn end(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Leaves a message for the session's next page.
    pub fn flash(&self, id: &str, message: String) {
        if let Some(s) = self.lock().get_mut(id) {
            s.flash = Some(message);
        }
    }

    /// The session's caller; `page` takes its flash message (a fragment or an action leaves it
    /// for the next page).
    fn caller(&self, id: &str, page: bool) -> Option<Caller> {
        let mut sessions = self.lock();
        let session = sessions
            .get_mut(id)
            .filter(|s| s.expires > Instant::now())?;
        let flash = if page { session.flash.take() } else { None };
        Some(Caller {
            name: session.user.clone(),
            role: session.role,
            session: Some(SessionRef {
                id: id.to_owned(),
                csrf: session.csrf.clone(),
            }),
            flash,
        })
    }
}

/// 32 random bytes as hex, from the operating system's generator.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The session a caller came with.
#[derive(Debug, Clone)]
pub struct SessionRef {
    /// The session id.
    pub id: String,
    /// Its CSRF token, which every form it posts must carry.
    pub csrf: String,
}

/// Who is calling: a signed-in browser or a script with a bearer token.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user's name (the audit log's actor).
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// The session, for a browser; none for a bearer token.
    pub session: Option<SessionRef>,
    /// The message left by the previous action, shown once.
    pub flash: Option<String>,
}

impl Caller {
    /// The CSRF token forms must carry (empty for a bearer caller, who needs none).
    pub fn csrf(&self) -> &str {
        self.session.as_ref().map_or("", |s| s.csrf.as_str())
    }

    /// Whether a form's CSRF token is this session's (always true for a bearer token).
    pub fn csrf_ok(&self, token: Option<&str>) -> bool {
        match &self.session {
            None => true,
            Some(s) => token.is_some_and(|t| bool::from(t.as_bytes().ct_eq(s.csrf.as_bytes()))),
        }
    }
}

/// A request that is not signed in: pages redirect to the sign-in form, the rest get 401.
pub struct SignIn {
    page: bool,
    next: String,
}

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        if self.page {
            let next: String = url_encode(&self.next);
            Redirect::to(&format!("/login?next={next}")).into_response()
        } else {
            (
                StatusCode::UNAUTHORIZED,
                "sign in first (session cookie or Authorization: Bearer)",
            )
                .into_response()
        }
    }
}

/// Percent-encodes everything but unreserved characters.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = SignIn;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, SignIn> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Some(token) = bearer {
            if let Some(user) = state.users.authenticate(token.trim()) {
                return Ok(Caller {
                    name: user.name.clone(),
                    role: user.role,
                    session: None,
                    flash: None,
                });
            }
        }
        let path = parts.uri.path();
        let page = parts.method == axum::http::Method::GET
            && !path.starts_with("/api/")
            && !path.starts_with("/fragments/");
        let jar = CookieJar::from_headers(&parts.headers);
        if let Some(caller) = jar
            .get(COOKIE)
            .and_then(|c| state.sessions.caller(c.value(), page))
        {
            return Ok(caller);
        }
        Err(SignIn {
            page,
            next: parts
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        })
    }
}

/// The cookie that carries a new session's id. It has no Max-Age: it ends with the browser,
/// and the server forgets the session after its TTL anyway.
pub fn session_cookie(id: String, secure: bool) -> Cookie<'static> {
    let mut cookie = Cookie::new(COOKIE, id);
    cookie.set_http_only(true);
    cookie.set_same_site(SameSite::Strict);
    cookie.set_path("/");
    cookie.set_secure(secure);
    cookie
}

/// The session cookie to remove (same name and path).
pub fn removal_cookie() -> Cookie<'static> {
    let mut cookie = Cookie::new(COOKIE, "");
    cookie.set_path("/");
    cookie
}
