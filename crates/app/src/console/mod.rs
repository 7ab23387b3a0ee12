//! The operator console at `/console` (docs/console.md): server-rendered HTML pages over
//! the same store and use cases as the API, signed in with the admin token, with its one
//! stylesheet embedded in the binary (no CDN, no script, nothing fetched at run time).

mod dead_letters;
mod layout;
mod merchants;
mod orders;
mod overview;
mod reconciliation;
mod session;

use crate::state::AppState;
use crate::usecases::{LookupError, StoreFault};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use session::Session;

const STYLESHEET: &str = include_str!("console.css");

/// What the console's pages may load: only this origin, no scripts, no framing.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'";

/// The console's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/console", get(overview::show))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/assets/console.css", get(stylesheet))
        .route("/console/orders", get(orders::list))
        .route("/console/orders/{id}", get(orders::timeline))
        .route("/console/dead-letters", get(dead_letters::list))
        .route("/console/dead-letters/{id}", get(dead_letters::inspect))
        .route("/console/dead-letters/replay", post(dead_letters::replay))
        .route("/console/dead-letters/purge", post(dead_letters::purge))
        .route("/console/reconciliation", get(reconciliation::list))
        .route("/console/reconciliation/{id}", get(reconciliation::run))
        .route("/console/reconciliation/{id}/rerun", post(reconciliation::rerun))
        .route("/console/discrepancies/{id}/resolve", post(reconciliation::resolve))
        .route("/console/merchants", get(merchants::list).post(merchants::create))
        .route("/console/merchants/{id}", get(merchants::edit).post(merchants::update))
        .route("/console/merchants/{id}/rotate", post(merchants::rotate))
        .layer(axum::middleware::map_response(|mut response: Response| async move {
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
            headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }))
        .with_state(state)
}

async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLESHEET)
}

/// `GET /console/login`.
async fn login_form() -> impl IntoResponse {
    login_page(None, StatusCode::OK)
}

fn login_page(error: Option<&str>, status: StatusCode) -> Response {
    let body = html! {
        form.login method="post" action="/console/login" {
            h1 { "payq console" }
            (layout::flash(error, false))
            label for="token" { "Admin token" }
            input #token type="password" name="token" autocomplete="current-password" required autofocus;
            button type="submit" { "Sign in" }
        }
    };
    (status, layout::bare("Sign in", body)).into_response()
}

/// `POST /console/login` with the admin token: sets the session cookie.
async fn login(State(state): State<AppState>, body: String) -> Response {
    let token = form_values(&body, "token").into_iter().next().unwrap_or_default();
    match session::sign_in(&state, &token) {
        Some(cookie) => ([(header::SET_COOKIE, cookie)], Redirect::to("/console")).into_response(),
        None => login_page(Some("That is not the admin token."), StatusCode::UNAUTHORIZED),
    }
}

/// `POST /console/logout`.
async fn logout() -> Response {
    ([(header::SET_COOKIE, session::sign_out())], Redirect::to("/console/login")).into_response()
}

/// Every value of `name` in an `application/x-www-form-urlencoded` body.
fn form_values(body: &str, name: &str) -> Vec<String> {
    form_urlencoded::parse(body.as_bytes()).filter(|(k, _)| k == name).map(|(_, v)| v.into_owned()).collect()
}

/// The first value of `name`, trimmed; `None` when absent or empty.
fn form_value(body: &str, name: &str) -> Option<String> {
    form_values(body, name).into_iter().next().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// A console page that could not be shown: its status and what to tell the operator.
pub struct ConsoleError {
    status: StatusCode,
    message: String,
}

impl ConsoleError {
    fn new(status: StatusCode, message: impl Into<String>) -> ConsoleError {
        ConsoleError { status, message: message.into() }
    }

    fn not_found(what: &str) -> ConsoleError {
        ConsoleError::new(StatusCode::NOT_FOUND, format!("No such {what}."))
    }
}

impl From<StoreFault> for ConsoleError {
    fn from(e: StoreFault) -> Self {
        let status = match e {
            StoreFault::Contention(_) => StatusCode::CONFLICT,
            StoreFault::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            StoreFault::Unexpected(e) => {
                tracing::error!(error = %format!("{e:#}"), "console: the store failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ConsoleError::new(status, "The database could not answer; try again shortly.")
    }
}

impl From<LookupError> for ConsoleError {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::NotFound(what) => ConsoleError::not_found(what),
            LookupError::Store(f) => f.into(),
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let body = html! {
            main {
                h1 { (self.status.as_u16()) " " (self.status.canonical_reason().unwrap_or("Error")) }
                div.error role="alert" { (self.message) }
                p { a href="/console" { "Back to the console" } }
            }
        };
        (self.status, layout::bare("Error", body)).into_response()
    }
}

/// A console form post: a signed-in session, and a body that carries the session's form
/// token. A handler that takes one cannot forget the check against cross-site requests.
pub struct CheckedForm {
    pub session: Session,
    /// The form's `application/x-www-form-urlencoded` body.
    pub body: String,
}

impl axum::extract::FromRequest<AppState> for CheckedForm {
    type Rejection = Response;

    /// Without a session, the sign-in page; with a body whose token is not the session's,
    /// `403`.
    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<CheckedForm, Response> {
        use axum::extract::FromRequestParts as _;
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let req = axum::extract::Request::from_parts(parts, body);
        let body = String::from_request(req, state).await.map_err(IntoResponse::into_response)?;
        let submitted = form_values(&body, "csrf").into_iter().next().unwrap_or_default();
        if !session.accepts(&submitted) {
            let refused = "This form has expired; reload the page and try again.";
            return Err(ConsoleError::new(StatusCode::FORBIDDEN, refused).into_response());
        }
        Ok(CheckedForm { session, body })
    }
}
