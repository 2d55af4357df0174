//! The built-in status page (`GET /`): one HTML page, its script and its
//! stylesheet, compiled into the binary. The page reads only the JSON API
//! (`/v1/rollouts`, `/v1/kpis`, `/v1/funnel`) with the viewer's token, so it
//! shows exactly what that token may read; the assets themselves hold no
//! data and need none.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("../status/index.html");
const SCRIPT: &str = include_str!("../status/app.js");
const STYLE: &str = include_str!("../status/style.css");

/// Same-origin only: no inline script, nothing from elsewhere.
const CSP: &str = "default-src 'self'; img-src 'self' data:; script-src 'self'; \
                   style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// `GET /` (the page), `/status/app.js` and `/status/style.css`, with a same-origin
/// content security policy; no token needed.
pub fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/status/app.js", get(script))
        .route("/status/style.css", get(style))
}

async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX)
}

async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE)
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_assets() {
        for (name, text) in [
            ("index.html", INDEX),
            ("app.js", SCRIPT),
            ("style.css", STYLE),
        ] {
            for forbidden in ["http://", "https://", "//cdn", "<script>"] {
                let hits: Vec<&str> = text
                    .lines()
                    .filter(|l| l.contains(forbidden) && !l.contains("www.w3.org/2000/svg"))
                    .collect();
                assert!(hits.is_empty(), "{name} has {forbidden:?}: {hits:?}");
            }
        }
        assert!(INDEX.contains(r#"<script src="/status/app.js" defer></script>"#));
        assert!(INDEX.contains(r#"href="/status/style.css""#));
    }
}
