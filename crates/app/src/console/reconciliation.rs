//! Reconciliation: runs by bill date and channel, one run's discrepancies, resolving one
//! with a note, and running a day again (docs/console.md).

use super::layout::{csrf, flash, money, page, status, time};
use super::session::Session;
use super::{CheckedForm, ConsoleError, form_value};
use crate::state::AppState;
use crate::usecases::ReconcileError;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use payq_domain::{BillChannel, BillDate, DiscrepancyId, MerchantId, ReconciliationId};
use payq_store::RunFilter;
use serde::Deserialize;

/// What the last action did, shown above the page.
#[derive(Debug, Default, Deserialize)]
pub struct Outcome {
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    refused: Option<String>,
}

impl From<ReconcileError> for ConsoleError {
    fn from(e: ReconcileError) -> Self {
        match e {
            ReconcileError::NotFound(what) => ConsoleError::not_found(what),
            ReconcileError::MerchantNotFound => ConsoleError::not_found("merchant"),
            ReconcileError::Store(f) => ConsoleError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, f.to_string()),
            e => ConsoleError::new(axum::http::StatusCode::BAD_REQUEST, e.to_string()),
        }
    }
}

/// `GET /console/reconciliation`: the latest runs, newest bill date first.
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(outcome): Query<Outcome>,
) -> Result<Markup, ConsoleError> {
    let (runs, _) = state.payq.reconciliation_runs(&RunFilter::default(), 100).await?;
    let body = html! {
        h1 { "Reconciliation" }
        (flash(outcome.done.as_deref(), true))
        (flash(outcome.refused.as_deref(), false))
        @if runs.is_empty() { p.muted #no-runs { "No reconciliation has run yet." } } @else {
            table #runs {
                tr { th { "bill date" } th { "channel" } th { "merchant" } th { "status" } th { "matched" }
                     th { "discrepancies" } th { "channel amount" } th { "payq amount" } th { "completed" } }
                @for r in &runs {
                    tr {
                        td { a href={ "/console/reconciliation/" (r.id) } { (r.bill_date) } }
                        td { (r.channel) }
                        td { code { (r.merchant_id) } }
                        td { (status(r.status.as_str())) }
                        td.matched { (r.counts.matched) }
                        td.discrepancies { (r.counts.discrepancies()) }
                        td { (money(r.totals.channel_amount, "CNY")) }
                        td { (money(r.totals.payq_amount, "CNY")) }
                        td { (time(r.completed_at)) }
                    }
                }
            }
        }
    };
    Ok(page("Reconciliation", "/console/reconciliation", &session, body))
}

/// `GET /console/reconciliation/{id}`: a run and its discrepancies.
pub async fn run(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(outcome): Query<Outcome>,
) -> Result<Markup, ConsoleError> {
    let id: ReconciliationId = id.parse().map_err(|_| ConsoleError::not_found("reconciliation"))?;
    let run = state.payq.reconciliation_run(&id).await?;
    let found = state.payq.discrepancies(&id).await?;
    let amount = |a: Option<i64>| a.map(|a| money(a, "CNY")).unwrap_or_default();
    let body = html! {
        h1 { "Reconciliation " (run.bill_date) " · " (run.channel) }
        (flash(outcome.done.as_deref(), true))
        (flash(outcome.refused.as_deref(), false))
        table #run {
            tr { th { "merchant" } td { code { (run.merchant_id) } } }
            tr { th { "status" } td #run-status { (status(run.status.as_str())) } }
            tr { th { "bill requests" } td { (run.attempts) } }
            @if let Some(error) = &run.error { tr { th { "error" } td #run-error { (error) } } }
            tr { th { "matched" } td #run-matched { (run.counts.matched) } }
            tr { th { "channel amount" } td { (money(run.totals.channel_amount, "CNY")) } }
            tr { th { "payq amount" } td { (money(run.totals.payq_amount, "CNY")) } }
            tr { th { "refunds" } td { (money(run.totals.refunds, "CNY")) } }
            tr { th { "fees" } td { (money(run.totals.fees, "CNY")) } }
        }
        form method="post" action={ "/console/reconciliation/" (run.id) "/rerun" } {
            (csrf(&session))
            button #rerun type="submit" { "Run again" }
        }
        h2 { "Discrepancies" }
        @if found.is_empty() { p.muted #no-discrepancies { "None." } } @else {
            table #discrepancies {
                tr { th { "kind" } th { "order no" } th { "payq" } th { "channel" } th { "payq status" }
                     th { "channel status" } th { "resolution" } }
                @for d in &found {
                    tr id={ "d-" (d.id) } {
                        td.kind { code { (d.kind.as_str()) } }
                        td { code { (d.merchant_order_no.as_deref().unwrap_or_default()) } }
                        td { (amount(d.payq_amount)) }
                        td { (amount(d.channel_amount)) }
                        td { (d.payq_status.as_deref().unwrap_or_default()) }
                        td { (d.channel_status.as_deref().unwrap_or_default()) }
                        td.resolution {
                            @if let Some(at) = d.resolved_at {
                                (d.note.as_deref().unwrap_or_default()) " · " (d.resolved_by.as_deref().unwrap_or_default())
                                " · " (time(Some(at)))
                            } @else {
                                form.row method="post" action={ "/console/discrepancies/" (d.id) "/resolve" } {
                                    (csrf(&session))
                                    input type="hidden" name="run" value=(run.id);
                                    input name="note" placeholder="what was done" aria-label="note" required;
                                    button type="submit" { "Resolve" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page("Reconciliation", "/console/reconciliation", &session, body))
}

/// `POST /console/discrepancies/{id}/resolve` with `note` (and the `run` to go back to).
pub async fn resolve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: CheckedForm,
) -> Result<Response, ConsoleError> {
    let CheckedForm { body, .. } = form;
    let id: DiscrepancyId = id.parse().map_err(|_| ConsoleError::not_found("discrepancy"))?;
    let run = form_value(&body, "run").unwrap_or_default();
    let back = |query: &str| Redirect::to(&format!("/console/reconciliation/{run}?{query}")).into_response();
    let note = form_value(&body, "note").unwrap_or_default();
    if note.trim().is_empty() {
        return Ok(back("refused=Write+a+note+saying+what+was+done."));
    }
    state.payq.resolve_discrepancy(&id, "console", note.trim()).await?;
    Ok(back("done=Resolved."))
}

/// `POST /console/reconciliation/{id}/rerun`: runs the day again now.
pub async fn rerun(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _checked: CheckedForm,
) -> Result<Response, ConsoleError> {
    let id: ReconciliationId = id.parse().map_err(|_| ConsoleError::not_found("reconciliation"))?;
    let run = state.payq.reconciliation_run(&id).await?;
    let (merchant, channel, date): (MerchantId, BillChannel, BillDate) = (run.merchant_id, run.channel, run.bill_date);
    state.payq.start_reconciliation(&merchant, channel, date).await?;
    Ok(Redirect::to(&format!("/console/reconciliation/{id}?done=Started+again.")).into_response())
}
