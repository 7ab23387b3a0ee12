//! Cross-cutting request handling: `Idempotency-Key` replay for every `POST`, and request
//! metrics.

use super::AppState;
use super::error::ApiError;
use crate::crypto::sha256_hex;
use axum::body::{Body, to_bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use payq_store::{IdempotencyBegin, StoredResponse};
use std::time::Instant;

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Replays the first answer to a repeated `Idempotency-Key`, refuses a key reused with
/// another body, and keeps each answer (not 5xx ones, so those can be retried).
pub async fn idempotency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get("idempotency-key").cloned() else {
        return next.run(req).await;
    };
    let key = match key.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 => k.to_owned(),
        _ => {
            return ApiError::invalid("Idempotency-Key must be 1 to 255 visible ASCII characters").into_response();
        }
    };
    let principal = sha256_hex(req.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes).unwrap_or_default());
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, BODY_LIMIT).await else {
        return ApiError::too_large().into_response();
    };
    let mut fingerprint = format!("{} {}\n", parts.method, parts.uri.path()).into_bytes();
    fingerprint.extend_from_slice(&bytes);
    let request_hash = sha256_hex(&fingerprint);
    let store = state.payq.store().clone();
    match store.idempotency_begin(&principal, &key, &request_hash).await {
        Err(e) => ApiError::internal(&e).into_response(),
        Ok(IdempotencyBegin::Mismatch) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_mismatch",
            "this Idempotency-Key was used with a different request",
        )
        .into_response(),
        Ok(IdempotencyBegin::InProgress) => ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_in_progress",
            "a request with this Idempotency-Key is still being processed",
        )
        .into_response(),
        Ok(IdempotencyBegin::Replay(stored)) => replay(stored),
        Ok(IdempotencyBegin::Reserved) => {
            let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
            let (head, body) = response.into_parts();
            let Ok(body) = to_bytes(body, usize::MAX).await else {
                let _ = store.idempotency_release(&principal, &key).await;
                return ApiError::internal(&"could not read the response body").into_response();
            };
            let outcome = if head.status.is_server_error() {
                store.idempotency_release(&principal, &key).await
            } else {
                let stored =
                    StoredResponse { status: head.status.as_u16(), body: String::from_utf8_lossy(&body).into_owned() };
                store.idempotency_complete(&principal, &key, &stored).await
            };
            if let Err(e) = outcome {
                tracing::warn!(error = %e, "could not record the idempotent response");
            }
            Response::from_parts(head, Body::from(body))
        }
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

/// Counts requests by route and status and records their latency.
pub async fn track(req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("payq_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("payq_http_request_duration_seconds", "route" => route, "method" => method)
        .record(start.elapsed().as_secs_f64());
    response
}
