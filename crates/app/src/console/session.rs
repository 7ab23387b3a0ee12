//! Signing in to the console with the admin token: a session cookie that proves it without
//! holding it (`<expiry>.<HMAC-SHA256(admin token, "console-session:<expiry>")>`, HttpOnly,
//! SameSite=Strict, path `/console`), and a per-session token every form carries against
//! cross-site requests. Changing the admin token ends every session.

use crate::crypto::{constant_time_eq, sign};
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use payq_domain::Timestamp;

/// The session cookie's name.
pub const COOKIE: &str = "payq_console";
/// How long a sign-in lasts.
const SESSION_SECONDS: i64 = 12 * 3600;

/// A signed-in operator.
pub struct Session {
    /// The token the session's forms carry.
    pub csrf: String,
}

/// The cookie value of a session ending at `expires` (Unix seconds).
fn session_value(admin_token: &str, expires: i64) -> String {
    format!("{expires}.{}", sign(admin_token, expires, b"console-session"))
}

fn csrf_token(admin_token: &str, expires: i64) -> String {
    sign(admin_token, expires, b"console-csrf")
}

/// The `Set-Cookie` value that signs the operator in, if `token` is the admin token.
pub fn sign_in(state: &AppState, token: &str) -> Option<String> {
    if !state.is_admin_token(token) {
        return None;
    }
    let expires = Timestamp::now().unix_seconds() + SESSION_SECONDS;
    let value = session_value(&state.admin_token, expires);
    Some(format!("{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}"))
}

/// The `Set-Cookie` value that signs the operator out.
pub fn sign_out() -> String {
    format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The session a `Cookie` header carries, if it is valid now.
fn session_of(state: &AppState, cookies: &str) -> Option<Session> {
    let value = cookies.split(';').find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))?;
    let expires: i64 = value.split_once('.')?.0.parse().ok()?;
    if expires <= Timestamp::now().unix_seconds()
        || !constant_time_eq(value, &session_value(&state.admin_token, expires))
    {
        return None;
    }
    Some(Session { csrf: csrf_token(&state.admin_token, expires) })
}

impl Session {
    /// Whether a submitted form token belongs to this session.
    pub fn accepts(&self, submitted: &str) -> bool {
        constant_time_eq(&self.csrf, submitted)
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    /// Without a valid session, a page sends the browser to the sign-in form.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Session, Response> {
        let cookies = parts.headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        session_of(state, cookies).ok_or_else(|| Redirect::to("/console/login").into_response())
    }
}
