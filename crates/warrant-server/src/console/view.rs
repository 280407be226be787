//! The console's layout and small pieces of markup shared by its pages.

use axum::http::StatusCode;
use axum::response::Html;
use maud::{html, Markup, DOCTYPE};
use warrant_core::{Capability, UnixTime};

use super::User;

/// The navigation: (path, label, what it needs; `None`: every signed-in user).
const NAV: &[(&str, &str, Option<Capability>)] = &[
    ("/console", "Overview", None),
    ("/console/agents", "Agents", None),
    ("/console/decisions", "Live decisions", Some(Capability::Read)),
    ("/console/approvals", "Approvals", None),
    ("/console/findings", "Findings", Some(Capability::Read)),
    ("/console/policies", "Policies", Some(Capability::Read)),
    ("/console/kill", "Kill switch", Some(Capability::Operate)),
];

/// A whole page: `title`, the navigation for `user` (none on the sign-in page) with
/// `current` marked, and `body`.
pub fn page(title: &str, user: Option<&User>, current: &str, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Warrant console" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "Warrant" }
                    @if let Some(user) = user {
                        nav aria-label="Console" {
                            ul {
                                @for (path, label, needs) in NAV {
                                    @if needs.is_none_or(|n| user.can(n)) {
                                        li {
                                            @if *path == current {
                                                a href=(path) aria-current="page" { (label) }
                                            } @else {
                                                a href=(path) { (label) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        div.who {
                            span #who { (user.principal().label()) " · " span.role { (user.principal().role_label()) } }
                            form method="post" action="/console/sign-out" {
                                (csrf(user))
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    Html(markup.into_string())
}

/// A page that sends the browser on to `url` (an identity provider's sign-in) with a
/// refresh, and a link for a browser that does not follow it. The sign-in form cannot
/// answer with a redirect: its page's `form-action 'self'` covers the redirects of the
/// form's submission too, so a browser would block the one to the provider.
pub fn continue_to(url: &str) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content={ "0;url=" (url) };
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Continuing to your identity provider · Warrant console" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body {
                main #main {
                    h1 { "Continuing to your identity provider" }
                    p { a #continue href=(url) { "Continue to sign in" } }
                }
            }
        }
    };
    Html(markup.into_string())
}

/// The hidden CSRF field of every form that changes something.
pub fn csrf(user: &User) -> Markup {
    html! { input type="hidden" name="csrf" value=(user.0.csrf); }
}

/// An error page.
pub fn failure(status: StatusCode, message: &str) -> Html<String> {
    page(
        status.canonical_reason().unwrap_or("Error"),
        None,
        "",
        html! {
            p.error role="alert" { (message) }
            p { a href="/console" { "Back to the console" } }
        },
    )
}

/// A time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn time(at: UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(at.0)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC")).ok()
        })
        .unwrap_or_else(|| at.0.to_string())
}

/// How long from `now` until `at`, as `4m 10s` (or `expired`).
pub fn left(now: UnixTime, at: UnixTime) -> String {
    let secs = at.0 - now.0;
    if secs <= 0 {
        return "expired".to_owned();
    }
    match secs {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// A status word as a badge.
pub fn badge(word: &str) -> Markup {
    html! { span class={ "badge " (word) } { (word) } }
}

/// Pretty-printed JSON in a `<pre>`.
pub fn json(value: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    html! { pre.json tabindex="0" { (text) } }
}

/// A line chart of `points` (oldest first) as an inline SVG drawn by the server, with a
/// text alternative.
pub fn sparkline(label: &str, points: &[f64], max: f64) -> Markup {
    let (w, h) = (240.0, 48.0);
    let n = points.len().max(2) as f64 - 1.0;
    let max = if max > 0.0 { max } else { 1.0 };
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", i as f64 * w / n, h - (v.clamp(0.0, max) / max) * (h - 4.0) - 2.0))
        .collect();
    html! {
        svg.spark viewBox={ "0 0 " (w) " " (h) } role="img" aria-label=(label) {
            title { (label) }
            polyline points=(path.join(" ")) {}
        }
    }
}
