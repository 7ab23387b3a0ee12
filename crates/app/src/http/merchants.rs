//! `/v1/merchants` (admin).

use super::error::ApiError;
use super::extract::{AdminAuth, ApiJson};
use super::middleware::SecretFields;
use super::{AppState, path_id};
use crate::usecases::{CreateMerchant, CreatedMerchant};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use payq_domain::{Merchant, MerchantId};
use payq_store::StoreError;

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
    let id: MerchantId = path_id(&id, "merchant")?;
    match state.payq.store().merchant(&id).await {
        Ok(m) => Ok(Json(m)),
        Err(StoreError::NotFound) => Err(ApiError::not_found("merchant")),
        Err(e) => Err(ApiError::from(e)),
    }
}
