//! `/v1/orders`: create, read, list, pay, close, ship, cancel.

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, MerchantAuth, OptionalJson};
use super::{AppState, page_limit, path_id};
use crate::usecases::{CreateOrder, CreateOrderOutcome, PayOrder, ShipOrder};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use payq_domain::{Order, OrderId, OrderStatus};
use serde::{Deserialize, Serialize};

/// Creates an order. The same `merchant_order_no` with the same content answers `200`
/// with the existing order.
#[utoipa::path(post, path = "/v1/orders", operation_id = "orders_create", tag = "orders", request_body = CreateOrder,
    responses((status = 201, body = Order), (status = 200, description = "the same order already existed", body = Order)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    MerchantAuth(merchant): MerchantAuth,
    ApiJson(req): ApiJson<CreateOrder>,
) -> Result<(StatusCode, Json<Order>), ApiError> {
    Ok(match state.payq.create_order(&merchant, req).await? {
        CreateOrderOutcome::Created(o) => (StatusCode::CREATED, Json(o)),
        CreateOrderOutcome::Existing(o) => (StatusCode::OK, Json(o)),
    })
}

/// `GET /v1/orders` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<OrderStatus>,
    limit: Option<u32>,
    /// An order id: list the orders older than it.
    after: Option<String>,
}

/// A page of orders.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderList {
    data: Vec<Order>,
    has_more: bool,
}

/// Lists the merchant's orders, newest first.
#[utoipa::path(get, path = "/v1/orders", operation_id = "orders_list", tag = "orders", params(ListQuery),
    responses((status = 200, body = OrderList)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    MerchantAuth(merchant): MerchantAuth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<OrderList>, ApiError> {
    let limit = page_limit(q.limit)?;
    let after = q.after.map(|a| a.parse::<OrderId>().map_err(|e| ApiError::invalid(e.to_string()))).transpose()?;
    let page = state.payq.list_orders(&merchant, q.status, after.as_ref(), limit).await?;
    Ok(Json(OrderList { data: page.orders, has_more: page.has_more }))
}

/// One order.
#[utoipa::path(get, path = "/v1/orders/{id}", operation_id = "orders_get", tag = "orders", params(("id" = OrderId, Path)),
    responses((status = 200, body = Order)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    MerchantAuth(merchant): MerchantAuth,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    Ok(Json(state.payq.order(&merchant, &path_id(&id, "order")?).await?))
}

/// Starts a payment: answers `202` with the order `paying`; the channel is called by a
/// worker and its callback completes the payment.
#[utoipa::path(post, path = "/v1/orders/{id}/pay", operation_id = "orders_pay", tag = "orders", params(("id" = OrderId, Path)), request_body = PayOrder,
    responses((status = 202, body = Order)), security(("bearer" = [])))]
pub async fn pay(
    State(state): State<AppState>,
    MerchantAuth(merchant): MerchantAuth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PayOrder>,
) -> Result<(StatusCode, Json<Order>), ApiError> {
    let order = state.payq.pay(&merchant, &path_id(&id, "order")?, req).await?;
    Ok((StatusCode::ACCEPTED, Json(order)))
}

/// `POST /v1/orders/{id}/checkout` body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// Where the checkout page sends the buyer back when done (http or https).
    #[schema(max_length = 512)]
    return_url: Option<String>,
}

/// A link to payq's hosted checkout page for an order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckoutLink {
    /// `<public_url>/checkout/<order id>?t=<token>`: send the buyer here.
    url: String,
    /// The link works until the order's deadline.
    #[schema(value_type = String)]
    expires_at: payq_domain::Timestamp,
}

/// A signed link to the order's hosted checkout page (docs/checkout.md), valid until the
/// order's deadline.
#[utoipa::path(post, path = "/v1/orders/{id}/checkout", operation_id = "orders_checkout", tag = "orders", params(("id" = OrderId, Path)), request_body = CheckoutRequest,
    responses((status = 201, body = CheckoutLink)), security(("bearer" = [])))]
pub async fn checkout(
    State(state): State<AppState>,
    MerchantAuth(merchant): MerchantAuth,
    Path(id): Path<String>,
    OptionalJson(req): OptionalJson<CheckoutRequest>,
) -> Result<(StatusCode, Json<CheckoutLink>), ApiError> {
    let req = req.unwrap_or_default();
    let order = state.payq.order(&merchant, &path_id(&id, "order")?).await?;
    if let Some(url) = &req.return_url {
        crate::usecases::check_return_url(url)?;
    }
    let link = crate::checkout::link::Link {
        merchant_id: merchant.id.clone(),
        expires_at: order.expires_at,
        return_url: req.return_url,
    };
    let token = crate::checkout::link::token(&crate::checkout::link::key(&state.admin_token), &order.id, &link);
    let url = format!("{}/checkout/{}?t={token}", state.payq.public_url(), order.id);
    Ok((StatusCode::CREATED, Json(CheckoutLink { url, expires_at: order.expires_at })))
}

/// Closes an unpaid order.
#[utoipa::path(post, path = "/v1/orders/{id}/close", operation_id = "orders_close", tag = "orders", params(("id" = OrderId, Path)),
    responses((status = 200, body = Order)), security(("bearer" = [])))]
pub async fn close(
    State(state): State<AppState>,
    MerchantAuth(merchant): MerchantAuth,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    Ok(Json(state.payq.close(&merchant, &path_id(&id, "order")?).await?))
}

/// Marks a paid order shipped.
#[utoipa::path(post, path = "/v1/orders/{id}/ship", operation_id = "orders_ship", tag = "orders", params(("id" = OrderId, Path)), request_body = ShipOrder,
    responses((status = 200, body = Order)), security(("bearer" = [])))]
pub async fn ship(
    State(state): State<AppState>,
    MerchantAuth(merchant): MerchantAuth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ShipOrder>,
) -> Result<Json<Order>, ApiError> {
    Ok(Json(state.payq.ship(&merchant, &path_id(&id, "order")?, req).await?))
}

/// `POST /v1/orders/{id}/cancel` body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelOrder {
    reason: Option<String>,
}

/// Cancels a paid order and refunds it in full.
#[utoipa::path(post, path = "/v1/orders/{id}/cancel", operation_id = "orders_cancel", tag = "orders", params(("id" = OrderId, Path)), request_body = CancelOrder,
    responses((status = 200, body = Order)), security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    MerchantAuth(merchant): MerchantAuth,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<CancelOrder>,
) -> Result<Json<Order>, ApiError> {
    let reason = body.and_then(|b| b.reason);
    Ok(Json(state.payq.cancel(&merchant, &path_id(&id, "order")?, reason).await?))
}
