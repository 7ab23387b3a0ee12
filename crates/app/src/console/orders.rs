//! Orders across merchants: a search (id, merchant order number, status, merchant) in
//! pages of 50, and one order's timeline: its state changes and events with their webhook
//! deliveries, refunds, pending timers and jobs with their due times, and dead letters.

use super::ConsoleError;
use super::layout::{money, page, status, time};
use super::session::Session;
use crate::state::AppState;
use crate::usecases::InputError;
use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use payq_domain::{MerchantId, OrderId, OrderStatus};
use payq_store::{OrderHistory, OrderSearch};
use serde::Deserialize;

const PAGE: u32 = 50;

/// The search form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct SearchForm {
    /// An order id or a merchant order number.
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    merchant: String,
    #[serde(default)]
    after: String,
}

impl SearchForm {
    /// The store's search, or why the form cannot be one.
    fn search(&self) -> Result<(OrderSearch, Option<OrderId>), InputError> {
        let q = self.q.trim();
        let mut search = OrderSearch::default();
        if !q.is_empty() {
            match q.parse::<OrderId>() {
                Ok(id) => search.id = Some(id),
                Err(_) => search.merchant_order_no = Some(q.to_owned()),
            }
        }
        if !self.status.is_empty() {
            search.status = Some(
                self.status
                    .parse::<OrderStatus>()
                    .map_err(|_| InputError::Malformed(format!("unknown status {:?}", self.status)))?,
            );
        }
        if !self.merchant.trim().is_empty() {
            search.merchant_id = Some(
                self.merchant
                    .trim()
                    .parse::<MerchantId>()
                    .map_err(|_| InputError::Malformed("that is not a merchant id".into()))?,
            );
        }
        let after = if self.after.is_empty() { None } else { self.after.parse::<OrderId>().ok() };
        Ok((search, after))
    }

    /// This search's query string with `after` set to `next`.
    fn next_page(&self, next: &OrderId) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("q", &self.q).append_pair("status", &self.status).append_pair("merchant", &self.merchant);
        query.append_pair("after", next.as_str());
        format!("/console/orders?{}", query.finish())
    }
}

/// `GET /console/orders`.
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(form): Query<SearchForm>,
) -> Result<Markup, ConsoleError> {
    let (results, problem) = match form.search() {
        Ok((search, after)) => (Some(state.payq.search_orders(&search, after.as_ref(), PAGE).await?), None),
        Err(problem) => (None, Some(problem)),
    };
    let body = html! {
        h1 { "Orders" }
        form.search method="get" action="/console/orders" {
            div { label for="q" { "Order id or merchant order no." } input #q name="q" value=(form.q) size="36"; }
            div {
                label for="status" { "Status" }
                select #status name="status" {
                    option value="" { "any" }
                    @for s in OrderStatus::ALL {
                        option value=(s.as_str()) selected[form.status == s.as_str()] { (s.as_str()) }
                    }
                }
            }
            div { label for="merchant" { "Merchant id" } input #merchant name="merchant" value=(form.merchant) size="36"; }
            button type="submit" { "Search" }
        }
        (super::layout::flash(problem.map(|p| p.to_string()).as_deref(), false))
        @if let Some(page) = &results {
            table #orders {
                tr { th { "order" } th { "merchant order no." } th { "status" } th { "amount" } th { "merchant" } th { "created" } }
                @for o in &page.orders {
                    tr {
                        td { a href={ "/console/orders/" (o.id) } { code { (o.id) } } }
                        td { (o.merchant_order_no) }
                        td { (status(o.status.as_str())) }
                        td { (money(o.amount, o.currency)) }
                        td { code { (o.merchant_id) } }
                        td { (time(Some(o.created_at))) }
                    }
                }
            }
            @if page.orders.is_empty() { p.muted #no-orders { "No order matches." } }
            @if let (true, Some(last)) = (page.has_more, page.orders.last()) {
                p { a #next-page href=(form.next_page(&last.id)) { "Next page →" } }
            }
        }
    };
    Ok(page("Orders", "/console/orders", &session, body))
}

/// `GET /console/orders/{id}`.
pub async fn timeline(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Markup, ConsoleError> {
    let id: OrderId = id.parse().map_err(|_| ConsoleError::not_found("order"))?;
    let history = state.payq.order_history(&id).await?;
    let title = format!("Order {}", history.order.id);
    Ok(page(&title, "/console/orders", &session, timeline_body(&history)))
}

fn timeline_body(h: &OrderHistory) -> Markup {
    let o = &h.order;
    html! {
        h1 { "Order " code { (o.id) } " " (status(o.status.as_str())) }
        table #order-summary {
            tr { th { "merchant" } td { a href={ "/console/merchants/" (o.merchant_id) } { code { (o.merchant_id) } } } }
            tr { th { "merchant order no." } td { (o.merchant_order_no) } }
            tr { th { "amount" } td { (money(o.amount, o.currency)) " (refunded " (money(o.amount_refunded, o.currency)) ")" } }
            tr { th { "created" } td { (time(Some(o.created_at))) } }
            tr { th { "pay by" } td { (time(Some(o.expires_at))) } }
            tr { th { "paid" } td { (time(o.paid_at)) } }
            tr { th { "shipped" } td { (time(o.shipped_at)) } }
            tr { th { "closed" } td { (time(o.closed_at)) " " (o.close_reason.as_ref().map(|r| r.as_str()).unwrap_or_default()) } }
            tr { th { "cancelled" } td { (time(o.cancelled_at)) } }
            @if let Some(p) = &o.payment {
                tr { th { "payment" } td { code { (p.id) } " via " (p.channel) " " (status(p.status.as_str()))
                    @if let Some(reason) = &p.failure_reason { " " span.muted { (reason) } } } }
            }
        }
        h2 { "Timeline" }
        table #timeline {
            tr { th { "time" } th { "event" } th { "status after" } th { "webhook" } }
            @for e in &h.events {
                tr {
                    td { (e.event.created_at) }
                    td { code { (e.event.event_type.as_str()) } }
                    td { (e.event.data["order"]["status"].as_str().map(status).unwrap_or_default()) }
                    td {
                        @match e.delivered {
                            Some((attempts, at)) => { (status("delivered")) " after " (attempts) " attempt(s), " (time(Some(at))) }
                            None => span.muted { "not delivered (yet)" }
                        }
                    }
                }
            }
        }
        h2 { "Refunds" }
        @if h.refunds.is_empty() { p.muted { "None." } } @else {
            table #refunds {
                tr { th { "refund" } th { "amount" } th { "status" } th { "executes" } th { "reason" } }
                @for r in &h.refunds {
                    tr {
                        td { code { (r.id) } } td { (money(r.amount, r.currency)) } td { (status(r.status.as_str())) }
                        td { (time(Some(r.execute_at))) } td { (r.reason.as_deref().unwrap_or_default()) }
                    }
                }
            }
        }
        h2 { "Pending timers and jobs" }
        @if h.pending.is_empty() { p.muted #no-pending { "Nothing pending." } } @else {
            table #pending {
                tr { th { "kind" } th { "due" } th { "attempts" } th { "last error" } }
                @for m in &h.pending {
                    tr { td { code { (m.kind) } } td { (time(Some(m.due_at))) } td { (m.attempts) } td { (m.last_error.as_deref().unwrap_or_default()) } }
                }
            }
        }
        p.muted { "Timers that fired show up above as the events they caused (order.closed, order.check_passed, ship_reminder, …)." }
        h2 { "Dead letters" }
        @if h.dead_letters.is_empty() { p.muted { "None." } } @else {
            table #order-dead-letters {
                tr { th { "dead letter" } th { "kind" } th { "attempts" } th { "last error" } }
                @for d in &h.dead_letters {
                    tr { td { a href={ "/console/dead-letters/" (d.id) } { code { (d.id) } } } td { code { (d.kind) } } td { (d.attempts) } td { (d.last_error) } }
                }
            }
        }
    }
}
