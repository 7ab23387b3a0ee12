//! `GET /v1/events`: the merchant's event log, oldest first; `POST
//! /v1/events/{id}/redeliver`: one more webhook delivery of an event.

use super::error::ApiError;
use super::extract::{ApiQuery, MerchantAuth};
use super::{AppState, page_limit, path_id};
use crate::usecases::EventsError;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use payq_domain::{Event, EventId};
use serde::{Deserialize, Serialize};

/// `GET /v1/events` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// An event id: list the events after it.
    after: Option<String>,
    limit: Option<u32>,
}

/// A page of events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventList {
    data: Vec<Event>,
    has_more: bool,
}

/// The merchant's events, oldest first.
#[utoipa::path(get, path = "/v1/events", operation_id = "events_list", tag = "events", params(EventsQuery),
    responses((status = 200, body = EventList)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    MerchantAuth(merchant): MerchantAuth,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<EventList>, ApiError> {
    let limit = page_limit(q.limit)?;
    let after = q.after.map(|a| a.parse::<EventId>().map_err(|e| ApiError::invalid(e.to_string()))).transpose()?;
    let (data, has_more) = state.payq.events(&merchant, after.as_ref(), limit).await.map_err(|e| match e {
        e @ EventsError::UnknownAfter => ApiError::invalid(e.to_string()),
        EventsError::Store(f) => f.into(),
    })?;
    Ok(Json(EventList { data, has_more }))
}

/// Delivers the event to the merchant's webhook once more, now (whatever earlier
/// deliveries and the webhook's event filter say); retried on the schedule if it fails.
#[utoipa::path(post, path = "/v1/events/{id}/redeliver", operation_id = "events_redeliver", tag = "events",
    params(("id" = EventId, Path)), responses((status = 202, description = "the delivery is scheduled")),
    security(("bearer" = [])))]
pub async fn redeliver(
    State(state): State<AppState>,
    MerchantAuth(merchant): MerchantAuth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let id: EventId = path_id(&id, "event")?;
    state.payq.redeliver_event(&merchant, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "event_id": id, "redelivery": "scheduled" }))))
}
