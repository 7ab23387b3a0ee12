//! Dead letters: the list, one inspected (payload and last error), replaying one or many,
//! and purging them all after typing `purge` to confirm.

use super::layout::{csrf, flash, page, time};
use super::session::Session;
use super::{CheckedForm, ConsoleError, form_value, form_values};
use crate::state::AppState;
use crate::usecases::LookupError;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use payq_domain::DeadLetterId;
use serde::Deserialize;

/// What the last action did, shown above the list.
#[derive(Debug, Default, Deserialize)]
pub struct Outcome {
    #[serde(default)]
    replayed: Option<usize>,
    #[serde(default)]
    purged: Option<u64>,
    #[serde(default)]
    refused: Option<String>,
}

/// `GET /console/dead-letters`.
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(outcome): Query<Outcome>,
) -> Result<Markup, ConsoleError> {
    let dead = state.payq.dead_letters(200).await?;
    let done = match (outcome.replayed, outcome.purged) {
        (Some(n), _) => Some(format!("Replayed {n} dead letter(s): they are due now.")),
        (_, Some(n)) => Some(format!("Purged {n} dead letter(s).")),
        _ => None,
    };
    let body = html! {
        h1 { "Dead letters" }
        (flash(done.as_deref(), true))
        (flash(outcome.refused.as_deref(), false))
        @if dead.is_empty() { p.muted #no-dead-letters { "No dead letters." } } @else {
            form method="post" action="/console/dead-letters/replay" {
                (csrf(&session))
                table #dead-letters {
                    tr { th { "" } th { "dead letter" } th { "kind" } th { "key" } th { "attempts" } th { "last error" } th { "at" } }
                    @for d in &dead {
                        tr {
                            td { input type="checkbox" name="id" value=(d.id) aria-label={ "select " (d.id) }; }
                            td { a href={ "/console/dead-letters/" (d.id) } { code { (d.id) } } }
                            td { code { (d.kind) } }
                            td { @if let Some(key) = &d.key { @if key.starts_with("ord_") {
                                a href={ "/console/orders/" (key) } { code { (key) } } } @else { code { (key) } } } }
                            td { (d.attempts) }
                            td { (d.last_error) }
                            td { (time(Some(d.created_at))) }
                        }
                    }
                }
                p { button #replay-selected type="submit" { "Replay selected" } }
            }
            form.row method="post" action="/console/dead-letters/purge" {
                (csrf(&session))
                div {
                    label for="confirm" { "Type purge to delete all " (dead.len()) " dead letters for good" }
                    input #confirm name="confirm" autocomplete="off";
                }
                button.danger #purge type="submit" { "Purge all" }
            }
        }
    };
    Ok(page("Dead letters", "/console/dead-letters", &session, body))
}

/// `GET /console/dead-letters/{id}`.
pub async fn inspect(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Markup, ConsoleError> {
    let id: DeadLetterId = id.parse().map_err(|_| ConsoleError::not_found("dead letter"))?;
    let d = state.payq.dead_letter(&id).await?;
    let payload = serde_json::to_string_pretty(&d.payload).unwrap_or_default();
    let body = html! {
        h1 { "Dead letter " code { (d.id) } }
        table #dead-letter {
            tr { th { "kind" } td { code { (d.kind) } } }
            tr { th { "key" } td { code { (d.key.as_deref().unwrap_or_default()) } } }
            tr { th { "message" } td { code { (d.message_id) } } }
            tr { th { "attempts" } td { (d.attempts) } }
            tr { th { "last error" } td { (d.last_error) } }
            tr { th { "dead-lettered" } td { (time(Some(d.created_at))) } }
        }
        h2 { "Payload" }
        pre #payload { (payload) }
        form method="post" action="/console/dead-letters/replay" {
            (csrf(&session))
            input type="hidden" name="id" value=(d.id);
            button #replay type="submit" { "Replay" }
        }
    };
    Ok(page("Dead letter", "/console/dead-letters", &session, body))
}

/// `POST /console/dead-letters/replay` with one or more `id`s: each is due again now.
pub async fn replay(State(state): State<AppState>, form: CheckedForm) -> Result<Response, ConsoleError> {
    let CheckedForm { body, .. } = form;
    let ids = form_values(&body, "id");
    if ids.is_empty() {
        return Ok(Redirect::to("/console/dead-letters?refused=Select+at+least+one+dead+letter.").into_response());
    }
    let mut replayed = 0;
    for id in ids {
        let Ok(id) = id.parse::<DeadLetterId>() else { continue };
        match state.payq.replay_dead_letter(&id).await {
            Ok(_) => replayed += 1,
            Err(LookupError::NotFound(_)) => {} // replayed meanwhile
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Redirect::to(&format!("/console/dead-letters?replayed={replayed}")).into_response())
}

/// `POST /console/dead-letters/purge` with `confirm=purge`.
pub async fn purge(State(state): State<AppState>, form: CheckedForm) -> Result<Response, ConsoleError> {
    let CheckedForm { body, .. } = form;
    if form_value(&body, "confirm").as_deref() != Some("purge") {
        return Ok(
            Redirect::to("/console/dead-letters?refused=Nothing+purged%3A+type+purge+to+confirm.").into_response()
        );
    }
    let purged = state.payq.purge_dead_letters().await?;
    Ok(Redirect::to(&format!("/console/dead-letters?purged={purged}")).into_response())
}
