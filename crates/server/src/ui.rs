//! `GET /_emulator/ui`: the dashboard, one HTML page with its style and script inlined,
//! compiled into the binary (nothing read from disk or fetched from elsewhere at run time).
//! It draws `/_emulator/topology` and redraws it on every `/_emulator/events` message.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};

static PAGE: LazyLock<String> = LazyLock::new(|| {
    include_str!("ui/page.html").replacen("/*STYLE*/", include_str!("ui/style.css"), 1).replacen(
        "/*SCRIPT*/",
        include_str!("ui/app.js"),
        1,
    )
});

/// The page may talk to this server only: inline style and script, requests to itself.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'";

pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE.as_str(),
    )
        .into_response()
}
