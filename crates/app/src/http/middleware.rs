//! Cross-cutting request handling: `Idempotency-Key` replay for every `POST`, and request
//! metrics.

use super::AppState;
use super::error::ApiError;
use super::extract;
use crate::crypto::sha256_hex;
use axum::body::{Body, to_bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use payq_store::{IdempotencyBegin, StoredResponse};
use std::time::{Duration, Instant};

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 64 * 1024;

/// How long an `Idempotency-Key` reservation holds without renewal. A request renews it
/// while it runs, so only a request cut off by a crash lets it lapse, and a retry within
/// seconds of the restart then runs afresh (see docs/operations.md).
const RESERVATION_LEASE: Duration = Duration::from_secs(3);

/// Top-level fields of a response that are secrets: never stored for replay. Handlers mark
/// their responses with it (merchant creation shows the API key and webhook secret once).
#[derive(Debug, Clone, Copy)]
pub struct SecretFields(pub &'static [&'static str]);

/// Replays the first answer to a repeated `Idempotency-Key`, refuses a key reused with
/// another body, and keeps each answer (not 5xx ones, so those can be retried). Keys are
/// kept only for authenticated requests; a reservation is a lease renewed while the
/// request runs.
pub async fn idempotency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get("idempotency-key").cloned() else {
        return next.run(req).await;
    };
    let key = match key.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()) => k.to_owned(),
        _ => {
            return ApiError::invalid("Idempotency-Key must be 1 to 255 visible ASCII characters").into_response();
        }
    };
    let (parts, body) = req.into_parts();
    let principal = match extract::principal(&state, &parts).await {
        Ok(Some(principal)) => principal,
        // Not authenticated: the handler answers 401 and nothing is recorded.
        Ok(None) => return next.run(Request::from_parts(parts, body)).await,
        Err(e) => return e.into_response(),
    };
    let Ok(bytes) = to_bytes(body, BODY_LIMIT).await else {
        return ApiError::too_large().into_response();
    };
    let mut fingerprint = format!("{} {}\n", parts.method, parts.uri.path()).into_bytes();
    fingerprint.extend_from_slice(&bytes);
    let request_hash = sha256_hex(&fingerprint);
    let payq = &state.payq;
    let lease_ms = RESERVATION_LEASE.as_millis() as i64;
    match payq.idempotency_begin(&principal, &key, &request_hash, lease_ms).await {
        Err(e) => ApiError::from(e).into_response(),
        Ok(IdempotencyBegin::Mismatch) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_mismatch",
            "this Idempotency-Key was used with a different request",
        )
        .into_response(),
        Ok(IdempotencyBegin::InProgress) => ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_in_progress",
            "a request with this Idempotency-Key is still being processed; retry in a few seconds",
        )
        .into_response(),
        Ok(IdempotencyBegin::Replay(stored)) => replay(stored),
        Ok(IdempotencyBegin::Reserved) => {
            let run = next.run(Request::from_parts(parts, Body::from(bytes)));
            let response = renewing(payq, &principal, &key, lease_ms, run).await;
            let secrets = response.extensions().get::<SecretFields>().copied();
            let (head, body) = response.into_parts();
            let Ok(body) = to_bytes(body, usize::MAX).await else {
                let _ = payq.idempotency_release(&principal, &key).await;
                return ApiError::internal(&"could not read the response body").into_response();
            };
            let outcome = if head.status.is_server_error() {
                payq.idempotency_release(&principal, &key).await
            } else {
                let kept = without_secrets(&body, secrets);
                let stored = StoredResponse { status: head.status.as_u16(), body: kept };
                payq.idempotency_complete(&principal, &key, &stored).await
            };
            if let Err(e) = outcome {
                // The reservation lapses with its lease; a retry then runs afresh.
                tracing::warn!(error = %e, "could not record the idempotent response");
            }
            Response::from_parts(head, Body::from(body))
        }
    }
}

/// Awaits the request, renewing its key's reservation every third of the lease. The
/// renewal runs as a task of its own: a renewal waiting for the SQLite writer must never
/// stop the request, which may itself hold the writer, from making progress.
async fn renewing(
    payq: &crate::usecases::Payq,
    principal: &str,
    key: &str,
    lease_ms: i64,
    run: impl std::future::Future<Output = Response>,
) -> Response {
    let every = RESERVATION_LEASE / 3;
    let (payq, principal, key) = (payq.clone(), principal.to_owned(), key.to_owned());
    let renewal = tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = payq.idempotency_renew(&principal, &key, lease_ms).await {
                tracing::warn!(error = %e, "could not renew an Idempotency-Key reservation");
            }
        }
    });
    let response = run.await;
    renewal.abort();
    response
}

/// The response body to keep for replay: without the fields marked secret.
fn without_secrets(body: &[u8], secrets: Option<SecretFields>) -> String {
    let text = String::from_utf8_lossy(body).into_owned();
    let Some(SecretFields(fields)) = secrets else { return text };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(mut object)) => {
            for field in fields {
                object.remove(*field);
            }
            serde_json::Value::Object(object).to_string()
        }
        // Not an object: keep nothing that might hold a secret.
        _ => "{}".to_owned(),
    }
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let content_type = if status.is_success() { "application/json" } else { "application/problem+json" };
    (
        status,
        [(header::CONTENT_TYPE, content_type), (header::HeaderName::from_static("idempotent-replayed"), "true")],
        stored.body,
    )
        .into_response()
}

/// Marks an answer written in the shape a payment channel reads (WeChat Pay's
/// `{"code": "FAIL", "message"}`), which [`problems_only`] leaves as it is.
#[derive(Debug, Clone, Copy)]
pub struct ChannelAnswer;

/// Turns every error answer that is not a problem already (the framework's own: 405, a
/// path that is not UTF-8, a rejected header) into `application/problem+json` with a
/// stable code, keeping its status. Answers marked [`ChannelAnswer`] are kept.
pub async fn problems_only(req: Request, next: Next) -> Response {
    if let Some(refusal) = oversized(&req) {
        return refusal.into_response();
    }
    let response = next.run(req).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    if response.extensions().get::<ChannelAnswer>().is_some() {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let (code, detail) = match status {
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this route does not accept that method"),
        StatusCode::NOT_FOUND => ("not_found", "route not found"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "request body exceeds 64 KiB"),
        StatusCode::URI_TOO_LONG => ("uri_too_long", "the request URI is too long"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "expected content-type: application/json"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ("headers_too_large", "the request headers are too large"),
        s if s.is_server_error() => ("internal", "an internal error occurred"),
        _ => ("invalid_request", "the request is malformed (path, query or headers)"),
    };
    let mut problem = ApiError::new(status, code, detail).into_response();
    if let Some(allow) = allow {
        problem.headers_mut().insert(header::ALLOW, allow);
    }
    problem
}

/// The longest request URI payq reads (path and query).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most request-header bytes (names and values) payq reads.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// The most request headers payq reads.
pub const MAX_HEADERS: usize = 64;

/// A `414` or `431` problem for a request past payq's limits. (Far larger requests are refused
/// by the HTTP layer itself before payq sees them: URIs over 64 KiB, headers over 400 KiB or
/// more than 100 of them; see docs/security.md.)
fn oversized(req: &Request) -> Option<ApiError> {
    let uri = req.uri();
    let uri_bytes = uri.path_and_query().map_or(0, |pq| pq.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.scheme_str().map_or(0, str::len);
    if uri_bytes > MAX_URI_BYTES {
        return Some(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request URI is longer than {MAX_URI_BYTES} bytes"),
        ));
    }
    let headers = req.headers();
    let bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Some(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("the request has more than {MAX_HEADERS} headers or {MAX_HEADER_BYTES} bytes of them"),
        ));
    }
    None
}

/// The method as a metrics label, from a fixed set: invented methods cannot grow `/metrics`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The status as a metrics label: its class (`2xx` … `5xx`).
fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Counts requests by route template, method and status class, and records their latency.
pub async fn track(req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = method_label(req.method());
    let start = Instant::now();
    let response = next.run(req).await;
    let status = status_class(response.status());
    metrics::counter!("payq_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("payq_http_request_duration_seconds", "route" => route, "method" => method)
        .record(start.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request that holds the SQLite writer longer than a renewal period must still
    /// finish: the renewal waits for the writer beside it, not instead of it.
    #[tokio::test]
    async fn a_renewal_never_blocks_the_request_it_renews() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("renew.db").display());
        let store = payq_store::Store::open(&url).await.expect("store");
        let sim =
            payq_channels::sim::SimChannel::new(store.clone(), "s".into(), "1s".parse().expect("delay")).expect("sim");
        let payq = crate::usecases::Payq::new(
            store.clone(),
            std::sync::Arc::new(payq_channels::sim::Sim(sim)),
            std::sync::Arc::new(crate::Settings::default()),
        );
        let tx = store.begin().await.expect("the writer");
        let run = async move {
            tokio::time::sleep(RESERVATION_LEASE / 2).await;
            let _ = tx.commit().await;
            StatusCode::OK.into_response()
        };
        let response = tokio::time::timeout(RESERVATION_LEASE * 2, renewing(&payq, "admin", "k", 3_000, run)).await;
        assert_eq!(response.map(|r| r.status()).ok(), Some(StatusCode::OK), "the request finished");
    }
}
