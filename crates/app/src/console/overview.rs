//! The overview: orders by status, pending timers by kind and how late the most overdue
//! one is, dead letters, and orders created and paid per minute over the last hour.

use super::ConsoleError;
use super::layout::{page, status};
use super::session::Session;
use crate::state::AppState;
use crate::usecases::Stats;
use axum::extract::State;
use maud::{Markup, html};
use payq_domain::Timestamp;
use payq_store::MinuteCounts;

/// `GET /console`.
pub async fn show(State(state): State<AppState>, session: Session) -> Result<Markup, ConsoleError> {
    let Stats { orders_by_status: orders, messages } = state.payq.stats().await?;
    let hour_ago = Timestamp::now().plus_millis(-3_600_000);
    let minutes = state.payq.orders_per_minute(hour_ago).await?;
    let total_orders: i64 = orders.iter().map(|(_, n)| n).sum();
    let body = html! {
        h1 { "Overview" }
        div.cards {
            div.card #orders-total { div.n { (total_orders) } div.label { "orders" } }
            div.card #pending-total { div.n { (messages.pending_total) } div.label { "pending timers and jobs" } }
            div.card #lateness {
                div.n { (messages.oldest_overdue_ms.map_or("0 ms".to_owned(), |ms| format!("{ms} ms"))) }
                div.label { "most overdue" }
            }
            div.card #dead-letters-total {
                div.n { a href="/console/dead-letters" { (messages.dead_letters) } }
                div.label { "dead letters" }
            }
        }
        h2 { "Orders created and paid per minute, last hour" }
        (chart(&minutes, hour_ago))
        div.columns {
            div {
                h2 { "Orders by status" }
                table #orders-by-status {
                    tr { th { "status" } th { "orders" } }
                    @for (s, n) in &orders {
                        tr { td { a href={ "/console/orders?status=" (s) } { (status(s)) } } td { (n) } }
                    }
                }
            }
            div {
                h2 { "Pending by kind" }
                table #pending-by-kind {
                    tr { th { "kind" } th { "pending" } }
                    @for (kind, n) in &messages.pending_by_kind { tr { td { code { (kind) } } td { (n) } } }
                }
            }
            div {
                h2 { "Pending by due time" }
                table {
                    tr { th { "due" } th { "pending" } }
                    @for (bucket, n) in &messages.pending_by_due { tr { td { (bucket) } td { (n) } } }
                }
            }
        }
    };
    Ok(page("Overview", "/console", &session, body))
}

/// An SVG bar chart of 60 minutes from `from`: created (light) and paid (green) side by side.
fn chart(minutes: &[MinuteCounts], from: Timestamp) -> Markup {
    const WIDTH: i64 = 720;
    const HEIGHT: i64 = 160;
    let first_minute = from.millis().div_euclid(60_000);
    let peak = minutes.iter().map(|m| m.created.max(m.paid)).max().unwrap_or(0).max(1);
    let bar = |n: i64| n * (HEIGHT - 20) / peak;
    let slot = WIDTH / 61;
    let total_created: i64 = minutes.iter().map(|m| m.created).sum();
    let total_paid: i64 = minutes.iter().map(|m| m.paid).sum();
    html! {
        svg.chart #throughput width=(WIDTH) height=(HEIGHT) viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img"
            aria-label={ (total_created) " orders created and " (total_paid) " paid in the last hour" } {
            @for m in minutes {
                @let x = (m.minute.millis().div_euclid(60_000) - first_minute).clamp(0, 60) * slot;
                rect.created x=(x) y=(HEIGHT - bar(m.created)) width=(slot / 2) height=(bar(m.created)) {
                    title { (m.minute.to_rfc3339()) ": " (m.created) " created" }
                }
                rect.paid x=(x + slot / 2) y=(HEIGHT - bar(m.paid)) width=(slot / 2) height=(bar(m.paid)) {
                    title { (m.minute.to_rfc3339()) ": " (m.paid) " paid" }
                }
            }
            text x="6" y="14" font-size="11" { "peak " (peak) "/min · " (total_created) " created, " (total_paid) " paid" }
        }
    }
}
