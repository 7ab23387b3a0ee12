//! `/v1/merchants` (admin): create, read, update, rotate credentials.

use super::error::ApiError;
use super::extract::{AdminAuth, ApiJson, OptionalJson};
use super::middleware::SecretFields;
use super::{AppState, path_id};
use crate::usecases::{CreateMerchant, CreatedMerchant, RotateCredentials, RotatedCredentials, UpdateMerchant};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use payq_domain::{Merchant, MerchantId};

/// Creates a merchant; its API key and webhook secret are shown only in this response (a
/// replay of it under the same `Idempotency-Key` shows the merchant without them).
#[utoipa::path(post, path = "/v1/merchants", operation_id = "merchants_create", tag = "merchants", request_body = CreateMerchant,
    responses((status = 201, body = CreatedMerchant)), security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    _admin: AdminAuth,
    ApiJson(req): ApiJson<CreateMerchant>,
) -> Result<(StatusCode, Extension<SecretFields>, Json<CreatedMerchant>), ApiError> {
    let created = state.payq.create_merchant(req).await?;
    Ok((StatusCode::CREATED, Extension(SecretFields(&["api_key", "webhook_secret"])), Json(created)))
}

/// A merchant, without secrets.
#[utoipa::path(get, path = "/v1/merchants/{id}", operation_id = "merchants_get", tag = "merchants",
    params(("id" = MerchantId, Path)), responses((status = 200, body = Merchant)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    _admin: AdminAuth,
    Path(id): Path<String>,
) -> Result<Json<Merchant>, ApiError> {
    Ok(Json(state.payq.merchant(&path_id::<MerchantId>(&id, "merchant")?).await?))
}

/// Changes a merchant's name, webhook URL, webhook event filter or settings; what the body
/// leaves out stays as it is.
#[utoipa::path(patch, path = "/v1/merchants/{id}", operation_id = "merchants_update", tag = "merchants",
    params(("id" = MerchantId, Path)), request_body = UpdateMerchant,
    responses((status = 200, body = Merchant)), security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    _admin: AdminAuth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateMerchant>,
) -> Result<Json<Merchant>, ApiError> {
    Ok(Json(state.payq.update_merchant(&path_id(&id, "merchant")?, req).await?))
}

/// Issues a new API key and/or webhook secret, shown only in this response; the replaced
/// ones keep working for `overlap` (default 24h), and webhooks are signed with both.
#[utoipa::path(post, path = "/v1/merchants/{id}/rotate", operation_id = "merchants_rotate", tag = "merchants",
    params(("id" = MerchantId, Path)), request_body = RotateCredentials,
    responses((status = 200, body = RotatedCredentials)), security(("bearer" = [])))]
pub async fn rotate(
    State(state): State<AppState>,
    _admin: AdminAuth,
    Path(id): Path<String>,
    OptionalJson(req): OptionalJson<RotateCredentials>,
) -> Result<(Extension<SecretFields>, Json<RotatedCredentials>), ApiError> {
    let rotated = state.payq.rotate_credentials(&path_id(&id, "merchant")?, req.unwrap_or_default()).await?;
    Ok((Extension(SecretFields(&["api_key", "webhook_secret"])), Json(rotated)))
}
