//! Request extractors that answer bad input with problem responses: JSON bodies, query
//! strings, merchant API keys and the admin token.

use super::AppState;
use super::error::ApiError;
use crate::usecases::AuthError;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use payq_domain::Merchant;
use serde::de::DeserializeOwned;

/// A JSON body; malformed, mistyped or oversized bodies become problem responses.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}

/// A JSON body that may be absent (an empty body is `None`).
pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|r| match r.status() {
            axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(),
            _ => ApiError::invalid(r.body_text()),
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        serde_json::from_slice(&bytes)
            .map(|v| OptionalJson(Some(v)))
            .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
    }
}

/// A query string; bad values become problem responses.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(value))
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <key>"))
}

/// The merchant whose API key authenticated the request.
pub struct MerchantAuth(pub Merchant);

/// The merchant whose API key `token` is.
pub(crate) async fn merchant_of_key(state: &AppState, token: &str) -> Result<Merchant, ApiError> {
    state.payq.authenticate(token).await.map_err(|e| match e {
        AuthError::Refused => ApiError::unauthorized("invalid API key"),
        AuthError::Store(f) => f.into(),
    })
}

/// Who a request authenticates as, for keeping its `Idempotency-Key`: `None` when its
/// credentials are missing or wrong (the handler then refuses it, and nothing is kept).
pub(crate) async fn principal(state: &AppState, parts: &Parts) -> Result<Option<String>, ApiError> {
    let Ok(token) = bearer(parts) else { return Ok(None) };
    if state.is_admin_token(token) {
        return Ok(Some("admin".to_owned()));
    }
    match merchant_of_key(state, token).await {
        Ok(merchant) => Ok(Some(merchant.id.to_string())),
        Err(e) if e.status == axum::http::StatusCode::UNAUTHORIZED => Ok(None),
        Err(e) => Err(e),
    }
}

impl FromRequestParts<AppState> for MerchantAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let merchant = merchant_of_key(state, token).await?;
        if let Err(wait) = state.limiter.check(&merchant.id) {
            return Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests for this merchant; retry after the Retry-After seconds",
            )
            .retry_after(wait));
        }
        Ok(MerchantAuth(merchant))
    }
}

/// Proof that the request carries the admin token.
pub struct AdminAuth;

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if !state.is_admin_token(token) {
            return Err(ApiError::unauthorized("invalid admin token"));
        }
        Ok(AdminAuth)
    }
}
