//! Channels' notifications: `POST /v1/channels/sim/notify` (the simulated channel's signed
//! callbacks) and `POST /v1/channels/alipay/notify` (Alipay's asynchronous notifications).

use super::AppState;
use super::error::ApiError;
use crate::channel::ChannelStatus;
use crate::channel::sim::{SIGNATURE_HEADER, SimNotification};
use crate::crypto::verify_signature;
use crate::usecases::NotificationError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use payq_domain::{PaymentId, Timestamp};
use payq_store::StoreError;

/// How far a callback's signature timestamp may be from now.
const SIGNATURE_TOLERANCE_S: i64 = 300;

/// Receives a payment result from the simulated channel. The signature
/// (`Sim-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`) must match and be
/// fresh; a repeated callback changes nothing.
#[utoipa::path(post, path = "/v1/channels/sim/notify", operation_id = "channels_sim_notify", tag = "channels", request_body = SimNotification,
    responses((status = 200, description = "accepted"), (status = 401, description = "bad or stale signature")))]
pub async fn sim_notify(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("missing Sim-Signature header"))?;
    verify_signature(state.sim.secret(), signature, &body, Timestamp::now().unix_seconds(), SIGNATURE_TOLERANCE_S)
        .map_err(|e| ApiError::unauthorized(e.to_string()))?;
    let note: SimNotification =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("invalid notification: {e}")))?;
    let payment_id: PaymentId = note.payment_id.parse().map_err(|_| ApiError::not_found("payment"))?;
    let payment = match state.payq.store().payment(&payment_id).await {
        Ok(p) => p,
        Err(StoreError::NotFound) => return Err(ApiError::not_found("payment")),
        Err(e) => return Err(ApiError::from(e)),
    };
    if payment.amount != note.amount || payment.currency.code() != note.currency {
        return Err(ApiError::invalid("notification amount or currency does not match the payment"));
    }
    let status = match note.status.as_str() {
        "succeeded" => ChannelStatus::Succeeded { txn_id: note.txn_id },
        "failed" => ChannelStatus::Failed { reason: note.failure_reason.unwrap_or_else(|| "declined".into()) },
        other => return Err(ApiError::invalid(format!("unknown status {other:?}"))),
    };
    state.payq.apply_channel_status(&payment_id, status).await?;
    Ok(Json(serde_json::json!({ "received": true })))
}

/// Receives an Alipay notification (form-encoded, signed by Alipay). Answered with the
/// plain body `success` once its outcome is recorded; any other answer makes Alipay send it
/// again: a `400` problem for a notification payq refuses (bad signature, unknown payment,
/// another app, another amount), `503` while it cannot be recorded.
#[utoipa::path(post, path = "/v1/channels/alipay/notify", operation_id = "channels_alipay_notify", tag = "channels",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "Alipay's notification parameters"),
    responses(
        (status = 200, description = "recorded", body = String, content_type = "text/plain"),
        (status = 400, description = "refused: bad signature, unknown payment, wrong app or amount"),
        (status = 503, description = "not recorded now; Alipay sends it again")))]
pub async fn alipay_notify(State(state): State<AppState>, body: Bytes) -> Result<&'static str, ApiError> {
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    match state.payq.alipay_notification(&params).await {
        Ok(()) => Ok("success"),
        Err(NotificationError::Refused(why)) => {
            tracing::warn!(%why, "alipay notification refused");
            Err(ApiError::invalid(format!("alipay notification refused: {why}")))
        }
        // Alipay sends it again.
        Err(NotificationError::Unavailable(why)) => Err(ApiError::storage_unavailable(&why)),
    }
}
