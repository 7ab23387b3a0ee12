//! `/v1/admin/reconciliations` and `/v1/admin/discrepancies` (admin token): the daily
//! reconciliation's runs, starting one, their discrepancies, resolving one
//! (docs/channels.md, "Reconciliation").

use super::error::ApiError;
use super::extract::{AdminAuth, ApiJson, ApiQuery};
use super::{AppState, page_limit, path_id};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use payq_domain::{
    BillChannel, BillDate, Discrepancy, DiscrepancyId, MerchantId, ReconciliationId, ReconciliationRun, RunStatus,
};
use payq_store::RunFilter;
use serde::{Deserialize, Serialize};

/// `GET /v1/admin/reconciliations` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    merchant_id: Option<String>,
    channel: Option<String>,
    /// `YYYY-MM-DD`.
    bill_date: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
}

/// Runs, newest bill date first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunList {
    data: Vec<ReconciliationRun>,
    has_more: bool,
}

/// A run's discrepancies.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DiscrepancyList {
    data: Vec<Discrepancy>,
}

/// `POST /v1/admin/reconciliations` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    merchant_id: String,
    /// `alipay` or `wechatpay`.
    channel: String,
    /// `YYYY-MM-DD`, in the reconciliation time zone.
    bill_date: String,
}

/// `POST /v1/admin/discrepancies/{id}/resolve` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolve {
    /// What was done about it (up to 1,000 characters).
    note: String,
}

fn channel(raw: &str) -> Result<BillChannel, ApiError> {
    BillChannel::parse(raw)
        .ok_or_else(|| ApiError::validation(format!("channel must be \"alipay\" or \"wechatpay\", got {raw:?}")))
}

fn bill_date(raw: &str) -> Result<BillDate, ApiError> {
    raw.parse().map_err(|e: payq_domain::reconciliation::BillDateError| ApiError::validation(format!("bill_date: {e}")))
}

/// Lists runs.
#[utoipa::path(get, path = "/v1/admin/reconciliations", operation_id = "admin_reconciliations", tag = "admin", params(RunQuery),
    responses((status = 200, body = RunList)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    _admin: AdminAuth,
    ApiQuery(q): ApiQuery<RunQuery>,
) -> Result<Json<RunList>, ApiError> {
    let limit = page_limit(q.limit)?;
    let filter = RunFilter {
        merchant_id: q
            .merchant_id
            .as_deref()
            .map(|m| m.parse::<MerchantId>().map_err(|e| ApiError::validation(e.to_string())))
            .transpose()?,
        channel: q.channel.as_deref().map(channel).transpose()?,
        bill_date: q.bill_date.as_deref().map(bill_date).transpose()?,
        status: q
            .status
            .as_deref()
            .map(|s| RunStatus::parse(s).ok_or_else(|| ApiError::validation(format!("unknown status {s:?}"))))
            .transpose()?,
    };
    let (data, has_more) = state.payq.reconciliation_runs(&filter, limit).await?;
    Ok(Json(RunList { data, has_more }))
}

/// Starts a merchant's reconciliation of one channel for one day now (again, if it ran:
/// the new result replaces the old one).
#[utoipa::path(post, path = "/v1/admin/reconciliations", operation_id = "admin_reconcile", tag = "admin", request_body = StartRun,
    responses((status = 202, body = ReconciliationRun)), security(("bearer" = [])))]
pub async fn start(
    State(state): State<AppState>,
    _admin: AdminAuth,
    ApiJson(req): ApiJson<StartRun>,
) -> Result<(StatusCode, Json<ReconciliationRun>), ApiError> {
    let merchant: MerchantId = req.merchant_id.parse().map_err(|_| ApiError::not_found("merchant"))?;
    let run = state.payq.start_reconciliation(&merchant, channel(&req.channel)?, bill_date(&req.bill_date)?).await?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

/// One run.
#[utoipa::path(get, path = "/v1/admin/reconciliations/{id}", operation_id = "admin_reconciliation", tag = "admin", params(("id" = inline(ReconciliationId), Path)),
    responses((status = 200, body = ReconciliationRun)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    _admin: AdminAuth,
    Path(id): Path<String>,
) -> Result<Json<ReconciliationRun>, ApiError> {
    let id: ReconciliationId = path_id(&id, "reconciliation")?;
    Ok(Json(state.payq.reconciliation_run(&id).await?))
}

/// A run's discrepancies.
#[utoipa::path(get, path = "/v1/admin/reconciliations/{id}/discrepancies", operation_id = "admin_discrepancies", tag = "admin", params(("id" = inline(ReconciliationId), Path)),
    responses((status = 200, body = DiscrepancyList)), security(("bearer" = [])))]
pub async fn discrepancies(
    State(state): State<AppState>,
    _admin: AdminAuth,
    Path(id): Path<String>,
) -> Result<Json<DiscrepancyList>, ApiError> {
    let id: ReconciliationId = path_id(&id, "reconciliation")?;
    Ok(Json(DiscrepancyList { data: state.payq.discrepancies(&id).await? }))
}

/// Resolves a discrepancy with a note (who and when are recorded).
#[utoipa::path(post, path = "/v1/admin/discrepancies/{id}/resolve", operation_id = "admin_resolve_discrepancy", tag = "admin", params(("id" = inline(DiscrepancyId), Path)),
    request_body = Resolve, responses((status = 200, body = Discrepancy)), security(("bearer" = [])))]
pub async fn resolve(
    State(state): State<AppState>,
    _admin: AdminAuth,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<Resolve>,
) -> Result<Json<Discrepancy>, ApiError> {
    let id: DiscrepancyId = path_id(&id, "discrepancy")?;
    Ok(Json(state.payq.resolve_discrepancy(&id, "admin", &req.note).await?))
}
