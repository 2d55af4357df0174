//! `GET /openapi.json`: the OpenAPI 3.1 document of the whole HTTP API,
//! kept in `metrics/openapi/openapi.json`. The end-to-end test
//! `openapi::every_route_is_documented_and_exists` checks it against the
//! routes the server really has.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// The document, as served.
pub const DOCUMENT: &str = include_str!("../openapi/openapi.json");

/// `GET /openapi.json`, answering [`DOCUMENT`] as `application/json`; no token needed.
pub fn router() -> Router {
    Router::new().route("/openapi.json", get(serve))
}

async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_openapi_3_1_json() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["paths"]["/v1/kpis"]["get"].is_object());
    }
}
