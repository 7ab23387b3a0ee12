//! Merchants: the list, creating one (its secrets shown once), editing its webhook, event
//! filter and settings, and rotating its API key and webhook secret. Every change goes
//! through the same use cases, and the same checks, as the API.

use super::layout::{csrf, flash, page, time};
use super::session::Session;
use super::{CheckedForm, ConsoleError, form_value, form_values};
use crate::state::AppState;
use crate::usecases::{CreateMerchant, InputError, MerchantChangeError, RotateCredentials, UpdateMerchant};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use payq_domain::{EventType, HumanDuration, Merchant, MerchantId, MerchantSettings};
use serde::Deserialize;

/// `GET /console/merchants`.
pub async fn list(State(state): State<AppState>, session: Session) -> Result<Markup, ConsoleError> {
    let merchants = state.payq.merchants(500).await?;
    Ok(page("Merchants", "/console/merchants", &session, list_body(&session, &merchants, None)))
}

fn list_body(session: &Session, merchants: &[Merchant], problem: Option<&str>) -> Markup {
    html! {
        h1 { "Merchants" }
        (flash(problem, false))
        form.row #create-merchant method="post" action="/console/merchants" {
            (csrf(session))
            div { label for="name" { "Name" } input #name name="name" required; }
            div { label for="webhook_url" { "Webhook URL (optional)" } input #webhook_url name="webhook_url" size="40"; }
            button type="submit" { "Create merchant" }
        }
        table #merchants {
            tr { th { "merchant" } th { "name" } th { "webhook" } th { "created" } }
            @for m in merchants {
                tr {
                    td { a href={ "/console/merchants/" (m.id) } { code { (m.id) } } }
                    td { (m.name) }
                    td { (m.webhook_url.as_deref().unwrap_or("—")) }
                    td { (time(Some(m.created_at))) }
                }
            }
        }
    }
}

/// `POST /console/merchants`: creates one and shows its secrets, once.
pub async fn create(State(state): State<AppState>, form: CheckedForm) -> Result<Response, ConsoleError> {
    let CheckedForm { session, body } = form;
    let req = CreateMerchant {
        name: form_value(&body, "name").unwrap_or_default(),
        webhook_url: form_value(&body, "webhook_url"),
        webhook_events: None,
        settings: MerchantSettings::default(),
    };
    match state.payq.create_merchant(req).await {
        Ok(created) => {
            let secrets = html! {
                h1 { "Merchant created" }
                (shown_once(Some(&created.api_key), Some(&created.webhook_secret)))
                p { a href={ "/console/merchants/" (created.merchant.id) } { "Go to " (created.merchant.name) } }
            };
            Ok(page("Merchant created", "/console/merchants", &session, secrets).into_response())
        }
        Err(crate::usecases::WriteError::Input(e)) => {
            let merchants = state.payq.merchants(500).await?;
            let body = list_body(&session, &merchants, Some(&e.to_string()));
            Ok((StatusCode::BAD_REQUEST, page("Merchants", "/console/merchants", &session, body)).into_response())
        }
        Err(crate::usecases::WriteError::Store(_)) => {
            Err(ConsoleError::new(StatusCode::SERVICE_UNAVAILABLE, "The database could not take the merchant."))
        }
    }
}

/// New secrets, in a box that says they will not be shown again.
fn shown_once(api_key: Option<&str>, webhook_secret: Option<&str>) -> Markup {
    html! {
        div.secret #secrets role="status" {
            p { strong { "Copy these now: they are not shown again." } }
            @if let Some(key) = api_key { p { "API key: " code #new-api-key { (key) } } }
            @if let Some(secret) = webhook_secret { p { "Webhook secret: " code #new-webhook-secret { (secret) } } }
        }
    }
}

/// `?saved=1` after an update.
#[derive(Debug, Default, Deserialize)]
pub struct Saved {
    #[serde(default)]
    saved: Option<u8>,
}

/// `GET /console/merchants/{id}`.
pub async fn edit(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(saved): Query<Saved>,
) -> Result<Markup, ConsoleError> {
    let merchant = merchant(&state, &id).await?;
    let done = saved.saved.map(|_| "Saved.");
    Ok(page(&merchant.name.clone(), "/console/merchants", &session, edit_body(&session, &merchant, done, None)))
}

async fn merchant(state: &AppState, id: &str) -> Result<Merchant, ConsoleError> {
    let id: MerchantId = id.parse().map_err(|_| ConsoleError::not_found("merchant"))?;
    match state.payq.merchant(&id).await {
        Ok(m) => Ok(m),
        Err(crate::usecases::LookupError::NotFound(_)) => Err(ConsoleError::not_found("merchant")),
        Err(crate::usecases::LookupError::Store(_)) => {
            Err(ConsoleError::new(StatusCode::SERVICE_UNAVAILABLE, "The database could not answer; try again shortly."))
        }
    }
}

/// The merchant's settings as form fields: name, value, help.
fn settings_fields(s: &MerchantSettings) -> [(&'static str, String, &'static str); 6] {
    [
        ("payment_timeout", s.payment_timeout.to_string(), "unpaid orders close after"),
        ("post_pay_check_delay", s.post_pay_check_delay.to_string(), "stock check after payment"),
        ("ship_deadline", s.ship_deadline.to_string(), "first ship reminder after"),
        ("ship_reminder_interval", s.ship_reminder_interval.to_string(), "between reminders"),
        ("ship_reminder_max", s.ship_reminder_max.to_string(), "reminders at most (0–20)"),
        ("refund_review", s.refund_review.to_string(), "refund review window"),
    ]
}

fn edit_body(session: &Session, m: &Merchant, done: Option<&str>, problem: Option<&str>) -> Markup {
    let events = m.webhook_events.as_ref().map(|e| e.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "));
    html! {
        h1 { (m.name) " " code { (m.id) } }
        (flash(done, true))
        (flash(problem, false))
        p { a href={ "/console/orders?merchant=" (m.id) } { "This merchant's orders" } }
        form #edit-merchant method="post" action={ "/console/merchants/" (m.id) } {
            (csrf(session))
            fieldset {
                legend { "Merchant" }
                label for="name" { "Name" } input #name name="name" value=(m.name) required size="40";
                label for="webhook_url" { "Webhook URL (empty: no webhooks)" }
                input #webhook_url name="webhook_url" value=(m.webhook_url.as_deref().unwrap_or_default()) size="60";
                label for="webhook_events" { "Event types the webhook receives (comma-separated; empty: all)" }
                input #webhook_events name="webhook_events" value=(events.unwrap_or_default()) size="60"
                    placeholder="payment.succeeded, refund.succeeded";
            }
            fieldset {
                legend { "Settings" }
                @for (name, value, help) in settings_fields(&m.settings) {
                    label for=(name) { (name) " — " (help) } input id=(name) name=(name) value=(value);
                }
            }
            button #save type="submit" { "Save" }
        }
        h2 { "Rotate credentials" }
        form.row #rotate method="post" action={ "/console/merchants/" (m.id) "/rotate" } {
            (csrf(session))
            label { input type="checkbox" name="api_key" value="true"; " API key" }
            label { input type="checkbox" name="webhook_secret" value="true"; " webhook secret" }
            div { label for="overlap" { "Old ones keep working for" } input #overlap name="overlap" value="24h" size="8"; }
            button #rotate-submit type="submit" { "Rotate" }
        }
    }
}

/// `POST /console/merchants/{id}`: the whole form, through the same checks as `PATCH`.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: CheckedForm,
) -> Result<Response, ConsoleError> {
    let CheckedForm { session, body } = form;
    let current = merchant(&state, &id).await?;
    let outcome = match update_from_form(&body) {
        Ok(req) => state.payq.update_merchant(&current.id, req).await,
        Err(problem) => Err(MerchantChangeError::Input(problem)),
    };
    match outcome {
        Ok(m) => Ok(Redirect::to(&format!("/console/merchants/{}?saved=1", m.id)).into_response()),
        Err(e) => change_refused(&session, &current, e),
    }
}

/// The edit form as an update: every field is sent, so every field is set.
fn update_from_form(body: &str) -> Result<UpdateMerchant, InputError> {
    let events = match form_value(body, "webhook_events") {
        None => None,
        Some(list) => Some(
            list.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| {
                    serde_json::from_value::<EventType>(serde_json::Value::String(t.to_owned()))
                        .map_err(|_| InputError::Malformed(format!("unknown event type {t:?}")))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let mut settings = serde_json::Map::new();
    for (name, _, _) in settings_fields(&MerchantSettings::default()) {
        if let Some(value) = form_value(body, name) {
            let value = if name == "ship_reminder_max" {
                serde_json::Value::from(
                    value
                        .parse::<u32>()
                        .map_err(|_| InputError::Malformed(format!("{name} must be a whole number")))?,
                )
            } else {
                serde_json::Value::String(value)
            };
            settings.insert(name.to_owned(), value);
        }
    }
    Ok(UpdateMerchant {
        name: Some(form_value(body, "name").unwrap_or_default()),
        webhook_url: Some(form_value(body, "webhook_url")),
        webhook_events: Some(events),
        settings: Some(settings),
        channels: None,
    })
}

/// `POST /console/merchants/{id}/rotate`: shows the new secrets once.
pub async fn rotate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: CheckedForm,
) -> Result<Response, ConsoleError> {
    let CheckedForm { session, body } = form;
    let current = merchant(&state, &id).await?;
    let overlap = match form_value(&body, "overlap").map(|o| o.parse::<HumanDuration>()).transpose() {
        Ok(overlap) => overlap,
        Err(e) => return Ok(refused(&session, &current, &format!("overlap: {e}"))),
    };
    let req = RotateCredentials {
        api_key: !form_values(&body, "api_key").is_empty(),
        webhook_secret: !form_values(&body, "webhook_secret").is_empty(),
        overlap,
    };
    match state.payq.rotate_credentials(&current.id, req).await {
        Ok(rotated) => {
            let body = html! {
                h1 { "New credentials for " (current.name) }
                (shown_once(rotated.api_key.as_deref(), rotated.webhook_secret.as_deref()))
                p { "The replaced ones keep working until " (time(Some(rotated.previous_valid_until))) "." }
                p { a href={ "/console/merchants/" (current.id) } { "Back to " (current.name) } }
            };
            Ok(page("Rotated", "/console/merchants", &session, body).into_response())
        }
        Err(e) => change_refused(&session, &current, e),
    }
}

/// What an edit or a rotation that did not happen shows: a bad value on the merchant's
/// page (`400`), else an error page.
fn change_refused(session: &Session, m: &Merchant, e: MerchantChangeError) -> Result<Response, ConsoleError> {
    match e {
        MerchantChangeError::Input(e) => Ok(refused(session, m, &e.to_string())),
        MerchantChangeError::MerchantNotFound => Err(ConsoleError::not_found("merchant")),
        MerchantChangeError::Store(_) => {
            Err(ConsoleError::new(StatusCode::SERVICE_UNAVAILABLE, "The database could not take the change."))
        }
    }
}

fn refused(session: &Session, m: &Merchant, problem: &str) -> Response {
    let body = edit_body(session, m, None, Some(problem));
    (StatusCode::BAD_REQUEST, page(&m.name, "/console/merchants", session, body)).into_response()
}
