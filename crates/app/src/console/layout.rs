//! The console's page shell (navigation, sign-out, flash messages) and the small pieces
//! every page uses: status badges, times, money, the form token.

use super::session::Session;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use payq_domain::Timestamp;

/// The navigation entries: path and label.
const NAV: [(&str, &str); 5] = [
    ("/console", "Overview"),
    ("/console/orders", "Orders"),
    ("/console/dead-letters", "Dead letters"),
    ("/console/reconciliation", "Reconciliation"),
    ("/console/merchants", "Merchants"),
];

/// A whole page: `here` is the navigation entry to highlight.
pub fn page(title: &str, here: &str, session: &Session, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · payq console" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body {
                header {
                    span.brand { "payq" }
                    @for (path, label) in NAV {
                        a href=(path) class=[(path == here).then_some("here")] { (label) }
                    }
                    form method="post" action="/console/logout" {
                        (csrf(session))
                        button type="submit" { "Sign out" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The page before signing in.
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · payq console" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body { (body) }
        }
    }
}

/// The hidden form field against cross-site requests.
pub fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// A status as a coloured badge.
pub fn status(s: &str) -> Markup {
    html! { span class={ "status " (s) } { (s) } }
}

/// A time, or a dash.
pub fn time(t: Option<Timestamp>) -> Markup {
    match t {
        Some(t) => html! { time datetime=(t.to_rfc3339()) { (t.to_rfc3339()) } },
        None => html! { span.muted { "—" } },
    }
}

/// Minor units as `12.34 CNY`.
pub fn money(minor: i64, currency: impl std::fmt::Display) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    format!("{sign}{}.{:02} {currency}", minor.unsigned_abs() / 100, minor.unsigned_abs() % 100)
}

/// A message that the last action worked (`ok`) or did not.
pub fn flash(message: Option<&str>, ok: bool) -> Markup {
    match message {
        Some(m) if ok => html! { div.flash role="status" { (m) } },
        Some(m) => html! { div.error role="alert" { (m) } },
        None => PreEscaped(String::new()),
    }
}
