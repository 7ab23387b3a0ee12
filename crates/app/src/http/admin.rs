//! `/v1/admin/*`: dead letters and stats (admin token).

use super::error::ApiError;
use super::extract::{AdminAuth, ApiQuery};
use super::{AppState, page_limit, path_id};
use crate::usecases::Stats;
use axum::Json;
use axum::extract::{Path, State};
use payq_domain::DeadLetterId;
use payq_store::DeadLetter;
use serde::{Deserialize, Serialize};

/// `GET /v1/admin/dead-letters` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterQuery {
    limit: Option<u32>,
}

/// Dead letters, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLetterList {
    data: Vec<DeadLetter>,
}

/// Lists dead letters.
#[utoipa::path(get, path = "/v1/admin/dead-letters", operation_id = "admin_dead_letters", tag = "admin", params(DeadLetterQuery),
    responses((status = 200, body = DeadLetterList)), security(("bearer" = [])))]
pub async fn dead_letters(
    State(state): State<AppState>,
    _admin: AdminAuth,
    ApiQuery(q): ApiQuery<DeadLetterQuery>,
) -> Result<Json<DeadLetterList>, ApiError> {
    let limit = page_limit(q.limit.or(Some(100)))?;
    let data = state.payq.dead_letters(limit).await?;
    Ok(Json(DeadLetterList { data }))
}

/// Puts a dead letter back in the queue, due now.
#[utoipa::path(post, path = "/v1/admin/dead-letters/{id}/replay", operation_id = "admin_replay", tag = "admin", params(("id" = inline(DeadLetterId), Path)),
    responses((status = 200, description = "replayed")), security(("bearer" = [])))]
pub async fn replay(
    State(state): State<AppState>,
    _admin: AdminAuth,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id: DeadLetterId = path_id(&id, "dead letter")?;
    let message_id = state.payq.replay_dead_letter(&id).await?;
    Ok(Json(serde_json::json!({ "replayed": id, "message_id": message_id.as_str() })))
}

/// Counts by status, pending messages by kind and due time, dead letters.
#[utoipa::path(get, path = "/v1/admin/stats", operation_id = "admin_stats", tag = "admin", responses((status = 200, description = "stats")),
    security(("bearer" = [])))]
pub async fn stats(State(state): State<AppState>, _admin: AdminAuth) -> Result<Json<serde_json::Value>, ApiError> {
    let Stats { orders_by_status: orders, messages } = state.payq.stats().await?;
    let to_map = |v: Vec<(String, i64)>| {
        v.into_iter().map(|(k, n)| (k, serde_json::Value::from(n))).collect::<serde_json::Map<_, _>>()
    };
    let orders = to_map(orders);
    // Distributed mode: what waits in each RabbitMQ queue (null when the broker does not
    // answer; empty in embedded mode, which has no queues).
    let queue_depths = match &state.payq.settings().amqp_url {
        None => serde_json::json!({}),
        Some(url) => {
            let topology = crate::application::topology(state.payq.settings());
            match payq_bus::rabbit::topology::queue_depths(url, &topology, std::time::Duration::from_secs(3)).await {
                Ok(depths) => serde_json::Value::Object(
                    depths.into_iter().map(|(q, n)| (q, serde_json::Value::from(n))).collect(),
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "admin stats: no queue depths");
                    serde_json::Value::Null
                }
            }
        }
    };
    Ok(Json(serde_json::json!({
        "orders_by_status": orders,
        "pending_messages_by_kind": to_map(messages.pending_by_kind),
        "pending_messages_by_due": to_map(messages.pending_by_due),
        "oldest_overdue_ms": messages.oldest_overdue_ms,
        "dead_letters": messages.dead_letters,
        "pending_messages": messages.pending_total,
        "engine_totals": to_map(messages.counters),
        "queue_depths": queue_depths,
    })))
}
