//! The dashboard at `/`: the board as one server-rendered page (problems,
//! every server, every app), readable without JavaScript; a small script
//! of our own (`/dashboard.js`, embedded like the page and its style)
//! fetches the page again every 5 s and swaps the board in place, and
//! counts down to reload windows. Every value is escaped by the template
//! engine (messages may quote what an app printed), and the page's
//! Content-Security-Policy allows only its own script and style.
//!
//! The recent commits, the events feed, the release histories and the
//! OPcache trends come from the board's journal. The feed is filtered by
//! `/?app=NAME&server=NAME` (links on every event), so filtering needs no
//! script either; the script fetches the same address.

use std::sync::OnceLock;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use handlebars::Handlebars;
use serde::Serialize;

use super::AppState;
use crate::board::{Event, Status};

mod actions;
mod charts;
pub mod console;
pub mod session;
mod view;

pub use view::Extras;
use view::View;

const PAGE: &str = include_str!("dashboard.html.hbs");
const SCRIPT: &str = include_str!("dashboard.js");
const STYLE: &str = include_str!("dashboard.css");

/// The events feed's filter: `/?app=NAME&server=NAME`, each optional.
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

impl Filter {
    pub(super) fn keeps(&self, event: &Event) -> bool {
        let matches = |wanted: &Option<String>, has: &Option<String>| {
            wanted.as_ref().is_none_or(|w| has.as_ref() == Some(w))
        };
        matches(&self.app, &event.app) && matches(&self.server, &event.server)
    }
}

fn templates() -> &'static Handlebars<'static> {
    static TEMPLATES: OnceLock<Handlebars<'static>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        // Not strict: fields the status leaves out when empty (a
        // problem's subject) render as nothing.
        let mut handlebars = Handlebars::new();
        // The template is ours and tested: it always registers.
        let _ = handlebars.register_template_string("page", PAGE);
        handlebars
    })
}

/// The page for `status` with the board's `extras`, its events feed
/// filtered by `filter`.
pub fn render(status: Status, extras: Extras, filter: Filter) -> Result<String, String> {
    templates()
        .render("page", &View::of(status, extras, filter))
        .map_err(|e| e.to_string())
}

/// Only this page's own script, style and requests.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(super) async fn page(State(state): State<AppState>, Query(filter): Query<Filter>) -> Response {
    let board = &state.board;
    match render(board.snapshot(), Extras::of(board), filter) {
        Ok(html) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CONTENT_SECURITY_POLICY, POLICY),
                (header::CACHE_CONTROL, "no-store"),
            ],
            html,
        )
            .into_response(),
        Err(e) => super::error(axum::http::StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

pub(super) async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

pub(super) async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_board_renders_and_every_value_is_escaped() {
        let mut status = Status {
            repo: "/srv/defs.git".into(),
            branch: "main".into(),
            ..Status::default()
        };
        status.fetch_error = Some("<script>alert(1)</script>".into());
        let html = render(status, Extras::default(), Filter::default()).expect("rendered");
        assert!(html.contains("No server seen yet."), "{html}");
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
    }
}
