//! Channels' notifications: `POST /v1/channels/sim/notify` (the simulated channel's signed
//! callbacks), `POST /v1/channels/alipay/notify` (Alipay's asynchronous notifications) and
//! `POST /v1/channels/wechatpay/notify` (WeChat Pay's encrypted, signed notifications).

use super::AppState;
use super::error::ApiError;
use crate::crypto::verify_signature;
use crate::usecases::NotificationError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use payq_channels::ChannelStatus;
use payq_channels::sim::{SIGNATURE_HEADER, SimNotification};
use payq_domain::{PaymentId, Timestamp};

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
    let payment = state.payq.payment(&payment_id).await?;
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

/// How payq refuses a WeChat Pay notification, in the shape WeChat Pay reads: it sends the
/// notification again later.
#[derive(Debug, serde::Serialize)]
pub struct WechatPayNotifyFailure {
    /// Always `FAIL`.
    pub code: String,
    /// Why.
    pub message: String,
}

fn wechatpay_failure(status: StatusCode, message: String) -> Response {
    let mut answer = (status, Json(WechatPayNotifyFailure { code: "FAIL".into(), message })).into_response();
    answer.extensions_mut().insert(super::middleware::ChannelAnswer);
    answer
}

/// Receives a WeChat Pay notification (JSON with an encrypted `resource`, signed under a
/// platform certificate: `Wechatpay-Serial`, `-Timestamp`, `-Nonce`, `-Signature`).
/// Answered `204` once its outcome is recorded; otherwise `{"code": "FAIL", "message"}`
/// with `400` for a notification payq refuses (bad or stale signature, a resource that
/// does not decrypt, unknown payment, another merchant, app or amount) or `503` while it
/// cannot be recorded, and WeChat Pay sends it again.
#[utoipa::path(post, path = "/v1/channels/wechatpay/notify", operation_id = "channels_wechatpay_notify", tag = "channels",
    request_body(content = String, content_type = "application/json", description = "WeChat Pay's notification"),
    params(
        ("Wechatpay-Serial" = Option<String>, Header, description = "the platform certificate's serial number"),
        ("Wechatpay-Timestamp" = Option<String>, Header, description = "unix seconds of the signature"),
        ("Wechatpay-Nonce" = Option<String>, Header, description = "the signature's nonce"),
        ("Wechatpay-Signature" = Option<String>, Header, description = "base64 SHA256withRSA signature")),
    responses(
        (status = 204, description = "recorded"),
        (status = 400, description = "refused (bad signature, resource, payment, merchant or amount): `{\"code\": \"FAIL\", \"message\"}`"),
        (status = 503, description = "not recorded now; WeChat Pay sends it again: `{\"code\": \"FAIL\", \"message\"}`")))]
pub async fn wechatpay_notify(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let signature = payq_channels::wechatpay::protocol::SignatureHeaders {
        serial: header("wechatpay-serial"),
        timestamp: header("wechatpay-timestamp"),
        nonce: header("wechatpay-nonce"),
        signature: header("wechatpay-signature"),
    };
    let Ok(body) = std::str::from_utf8(&body) else {
        return wechatpay_failure(StatusCode::BAD_REQUEST, "the body is not UTF-8".into());
    };
    match state.payq.wechatpay_notification(signature, body).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(NotificationError::Refused(why)) => {
            tracing::warn!(%why, "wechatpay notification refused");
            wechatpay_failure(StatusCode::BAD_REQUEST, format!("wechatpay notification refused: {why}"))
        }
        Err(NotificationError::Unavailable(why)) => {
            tracing::warn!(%why, "wechatpay notification not recorded now");
            wechatpay_failure(StatusCode::SERVICE_UNAVAILABLE, "not recorded now; send it again".into())
        }
    }
}
