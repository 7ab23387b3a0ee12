//! `/v1/inventory/{sku}`: stock per SKU.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, MerchantAuth};
use axum::Json;
use axum::extract::{Path, State};
use payq_domain::InventoryLevel;
use serde::Deserialize;

/// `PUT /v1/inventory/{sku}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutInventory {
    available: i64,
}

/// Sets the stock of a SKU.
#[utoipa::path(put, path = "/v1/inventory/{sku}", operation_id = "inventory_put", tag = "inventory", params(("sku" = String, Path)), request_body = PutInventory,
    responses((status = 200, body = InventoryLevel)), security(("bearer" = [])))]
pub async fn put(
    State(state): State<AppState>,
    MerchantAuth(merchant): MerchantAuth,
    Path(sku): Path<String>,
    ApiJson(req): ApiJson<PutInventory>,
) -> Result<Json<InventoryLevel>, ApiError> {
    Ok(Json(state.payq.put_inventory(&merchant, &sku, req.available).await?))
}

/// The stock of a SKU.
#[utoipa::path(get, path = "/v1/inventory/{sku}", operation_id = "inventory_get", tag = "inventory", params(("sku" = String, Path)),
    responses((status = 200, body = InventoryLevel)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    MerchantAuth(merchant): MerchantAuth,
    Path(sku): Path<String>,
) -> Result<Json<InventoryLevel>, ApiError> {
    Ok(Json(state.payq.inventory(&merchant, &sku).await?))
}
