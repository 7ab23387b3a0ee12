//! Refunds: `POST /v1/orders/{id}/refunds`, `GET /v1/refunds/{id}`, approve and reject.

use super::error::ApiError;
use super::extract::{ApiJson, MerchantAuth};
use super::{AppState, path_id};
use crate::usecases::CreateRefund;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use payq_domain::{OrderId, Refund, RefundId};

/// Requests a refund; it waits `refund_review` (or `review`) before it executes.
#[utoipa::path(post, path = "/v1/orders/{id}/refunds", operation_id = "refunds_create", tag = "refunds", params(("id" = OrderId, Path)), request_body = CreateRefund,
    responses((status = 201, body = Refund)), security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    MerchantAuth(merchant): MerchantAuth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CreateRefund>,
) -> Result<(StatusCode, Json<Refund>), ApiError> {
    let refund = state.payq.create_refund(&merchant, &path_id(&id, "order")?, req).await?;
    Ok((StatusCode::CREATED, Json(refund)))
}

/// One refund.
#[utoipa::path(get, path = "/v1/refunds/{id}", operation_id = "refunds_get", tag = "refunds", params(("id" = RefundId, Path)),
    responses((status = 200, body = Refund)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    MerchantAuth(merchant): MerchantAuth,
    Path(id): Path<String>,
) -> Result<Json<Refund>, ApiError> {
    let id: RefundId = path_id(&id, "refund")?;
    Ok(Json(state.payq.refund(&merchant, &id).await?))
}

/// Approves a refund in review: it executes now.
#[utoipa::path(post, path = "/v1/refunds/{id}/approve", operation_id = "refunds_approve", tag = "refunds", params(("id" = RefundId, Path)),
    responses((status = 200, body = Refund)), security(("bearer" = [])))]
pub async fn approve(
    State(state): State<AppState>,
    MerchantAuth(merchant): MerchantAuth,
    Path(id): Path<String>,
) -> Result<Json<Refund>, ApiError> {
    let id: RefundId = path_id(&id, "refund")?;
    Ok(Json(state.payq.approve_refund(&merchant, &id).await?))
}

/// Rejects a refund in review.
#[utoipa::path(post, path = "/v1/refunds/{id}/reject", operation_id = "refunds_reject", tag = "refunds", params(("id" = RefundId, Path)),
    responses((status = 200, body = Refund)), security(("bearer" = [])))]
pub async fn reject(
    State(state): State<AppState>,
    MerchantAuth(merchant): MerchantAuth,
    Path(id): Path<String>,
) -> Result<Json<Refund>, ApiError> {
    let id: RefundId = path_id(&id, "refund")?;
    Ok(Json(state.payq.reject_refund(&merchant, &id).await?))
}
