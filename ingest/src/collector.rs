//! The HTTP collector: `POST /v1/events`.
//!
//! Accepts a JSON array (or a single object) or NDJSON
//! (`Content-Type: application/x-ndjson`). Its sink is either the store
//! (embedded: 200 only once the accepted events and the rejections are
//! committed) or Kafka (`keyshift collector --brokers`: 200 only once the
//! broker acknowledged every message, see [`crate::kafka::Forwarder`]). On
//! 503 the client retries with the same event ids and loses nothing.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, header};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use keyshift_http::{ApiError, ApiResult, Authenticator, Principal, read_body};
use keyshift_store::{ErrorKind, Source, new_error_id};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::Semaphore;
use tracing::error;

use crate::kafka::Forwarder;
use crate::kafka::forward::ForwardSummary;
use crate::metrics::{IngestMetrics, RequestOutcome};
use crate::pipeline::{IngestSummary, Input, Pipeline};
use crate::{IngestConfig, IngestError};

/// Where accepted requests go.
#[derive(Debug, Clone)]
enum Sink {
    Store(Arc<Pipeline>),
    Kafka(Arc<Forwarder>),
}

/// What the collector's handler shares: the sink for accepted requests, the token check,
/// and the slots that bound the requests processed at once (`ingest.max_inflight_requests`).
#[derive(Debug, Clone)]
pub struct CollectorState {
    sink: Sink,
    auth: Arc<Authenticator>,
    inflight: Arc<Semaphore>,
}

impl CollectorState {
    /// The embedded collector: requests are committed to the store.
    pub fn store(pipeline: Arc<Pipeline>, auth: Arc<Authenticator>) -> Self {
        let permits = pipeline.config().max_inflight_requests;
        Self {
            sink: Sink::Store(pipeline),
            auth,
            inflight: Arc::new(Semaphore::new(permits)),
        }
    }

    /// The Kafka-mode collector: requests are produced to the topic.
    pub fn kafka(forwarder: Arc<Forwarder>, auth: Arc<Authenticator>) -> Self {
        let permits = forwarder.config().max_inflight_requests;
        Self {
            sink: Sink::Kafka(forwarder),
            auth,
            inflight: Arc::new(Semaphore::new(permits)),
        }
    }

    fn config(&self) -> &IngestConfig {
        match &self.sink {
            Sink::Store(p) => p.config(),
            Sink::Kafka(f) => f.config(),
        }
    }

    fn metrics(&self) -> &IngestMetrics {
        match &self.sink {
            Sink::Store(p) => p.metrics(),
            Sink::Kafka(f) => f.metrics(),
        }
    }
}

/// The response body of `POST /v1/events`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    /// Embedded collector: what was committed to the store.
    Stored(IngestSummary),
    /// Kafka mode: what was produced and acknowledged by the broker.
    Forwarded(ForwardSummary),
}

impl FromRef<CollectorState> for Arc<Authenticator> {
    fn from_ref(s: &CollectorState) -> Self {
        s.auth.clone()
    }
}

/// The collector's route, `POST /v1/events`, answered through `state`'s sink.
pub fn router(state: CollectorState) -> Router {
    Router::new()
        .route("/v1/events", post(post_events))
        .with_state(state)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Ndjson,
}

fn body_kind(headers: &HeaderMap) -> ApiResult<BodyKind> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyKind::Json);
    };
    let ct = ct.to_str().unwrap_or_default();
    let mime = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" | "" => Ok(BodyKind::Json),
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/jsonlines" => Ok(BodyKind::Ndjson),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "content type {other:?} is not accepted; send application/json (an array of events) \
             or application/x-ndjson (one event per line)"
        ))),
    }
}

fn too_many(n: usize, max: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "{n} events in one request; at most {max} are accepted"
    ))
}

/// Splits a body into items. A malformed NDJSON line is one rejected item; a
/// malformed JSON body is a 400 for the whole request (the caller records
/// the body as one rejected item).
fn parse_body(bytes: &[u8], kind: BodyKind, max_events: usize) -> ApiResult<Vec<Input>> {
    match kind {
        BodyKind::Ndjson => {
            let mut items = Vec::new();
            for line in bytes.split(|b| *b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if items.len() == max_events {
                    let total = bytes
                        .split(|b| *b == b'\n')
                        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                        .count();
                    return Err(too_many(total, max_events));
                }
                items.push(Input(line.to_vec()));
            }
            Ok(items)
        }
        BodyKind::Json => {
            let malformed =
                |e: serde_json::Error| ApiError::BadRequest(format!("malformed JSON body: {e}"));
            // One pass over the body: the first byte says which shape to read.
            match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'[') => {
                    let items: Vec<&RawValue> = serde_json::from_slice(bytes).map_err(malformed)?;
                    if items.len() > max_events {
                        return Err(too_many(items.len(), max_events));
                    }
                    Ok(items
                        .into_iter()
                        .map(|item| Input(item.get().as_bytes().to_vec()))
                        .collect())
                }
                Some(b'{') => {
                    let body: &RawValue = serde_json::from_slice(bytes).map_err(malformed)?;
                    Ok(vec![Input(body.get().as_bytes().to_vec())])
                }
                _ => {
                    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(malformed)?;
                    Err(ApiError::BadRequest(
                        "the body must be a JSON array of events, a single event object, or NDJSON"
                            .to_owned(),
                    ))
                }
            }
        }
    }
}

async fn post_events(
    State(state): State<CollectorState>,
    principal: Principal,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Outcome>> {
    let metrics = state.metrics().clone();
    let result = handle(state, principal, headers, body).await;
    metrics.request(match &result {
        Ok(_) => RequestOutcome::Ok,
        Err(ApiError::BadRequest(_) | ApiError::UnsupportedMediaType(_)) => {
            RequestOutcome::BadRequest
        }
        Err(ApiError::PayloadTooLarge(_)) => RequestOutcome::TooLarge,
        Err(ApiError::Unauthorized | ApiError::Forbidden(_)) => RequestOutcome::Unauthorized,
        Err(ApiError::Unavailable(_)) => RequestOutcome::Unavailable,
        Err(ApiError::Failed { bug: true, .. }) => RequestOutcome::Bug,
        Err(_) => RequestOutcome::Error,
    });
    result
}

async fn handle(
    state: CollectorState,
    principal: Principal,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Outcome>> {
    let kind = body_kind(&headers)?;
    // Wait for a slot before reading the body: waiting requests cost a socket,
    // not memory.
    let _permit = state
        .inflight
        .acquire()
        .await
        .map_err(|_| ApiError::Unavailable("shutting down".to_owned()))?;
    let cfg = state.config();
    let bytes = read_body(body, cfg.max_body_bytes).await?;
    let max_events = cfg.max_events_per_request;
    let keep = cfg.max_rejected_payload_bytes;
    let worker_failed = |e: crate::cpu::Lost| {
        let error_id = new_error_id();
        error!(error_id, error = %e, "request worker failed");
        ApiError::Failed {
            message: "the request failed inside keyshift; nothing was stored".to_owned(),
            error_id,
            bug: e.panicked,
        }
    };
    // Parsing and validating up to 5 MiB is CPU work: keep it off the
    // async workers, on the ingest threads (see `cpu`).
    match state.sink {
        Sink::Store(pipeline) => {
            let p = pipeline.clone();
            let (prepared, refused) = crate::cpu::run(move || {
                let now = Utc::now();
                match parse_body(&bytes, kind, max_events) {
                    Ok(inputs) => Ok((p.prepare(&principal, inputs, &Source::Http, now), None)),
                    // A body that is not JSON at all is refused as a whole
                    // and recorded like any other bad input: the body is
                    // one rejected item (a bounded, redacted copy).
                    Err(ApiError::BadRequest(message)) => {
                        let whole = vec![Input(bytes.to_vec())];
                        Ok((
                            p.prepare(&principal, whole, &Source::Http, now),
                            Some(message),
                        ))
                    }
                    Err(e) => Err(e),
                }
            })
            .await
            .map_err(worker_failed)??;
            let summary = pipeline
                .commit(prepared, "http")
                .await
                .map_err(|e| commit_error(&e, "the store could not commit"))?;
            match refused {
                Some(message) => Err(ApiError::BadRequest(message)),
                None => Ok(Json(Outcome::Stored(summary))),
            }
        }
        Sink::Kafka(forwarder) => {
            let f = forwarder.clone();
            let p = principal.clone();
            let (messages, summary, refused) = crate::cpu::run(move || {
                match parse_body(&bytes, kind, max_events) {
                    Ok(inputs) => {
                        let (messages, summary) = f.prepare(&p, inputs, Utc::now());
                        Ok((messages, summary, None))
                    }
                    // As with the store: the body is one bad input, which the
                    // ingest side records in rejected_events.
                    Err(ApiError::BadRequest(message)) => {
                        let whole = vec![Input(whole_body_message(&bytes, keep))];
                        let (messages, summary) = f.prepare(&p, whole, Utc::now());
                        Ok((messages, summary, Some(message)))
                    }
                    Err(e) => Err(e),
                }
            })
            .await
            .map_err(worker_failed)??;
            forwarder
                .send(&principal, messages)
                .await
                .map_err(|e| commit_error(&e, "the broker did not acknowledge every event"))?;
            forwarder
                .metrics()
                .events("http", "forwarded", summary.forwarded);
            match refused {
                Some(message) => Err(ApiError::BadRequest(message)),
                None => Ok(Json(Outcome::Forwarded(summary))),
            }
        }
    }
}

/// The message that carries a refused body to the ingest side: the body,
/// cut to `keep` bytes when longer (a Kafka message is limited, the stored
/// copy is cut there anyway). A cut body ends in `…`, so that it can never
/// turn into a valid document on the way (a cut after a complete JSON
/// value followed by garbage would otherwise parse).
fn whole_body_message(body: &[u8], keep: usize) -> Vec<u8> {
    if body.len() <= keep {
        return body.to_vec();
    }
    let mut cut = body[..keep].to_vec();
    cut.extend_from_slice("…".as_bytes());
    cut
}

/// The answer for events that were not stored: a retry with the same ids
/// when it can succeed (503), otherwise a 500 that tells the client not to
/// retry and names the log line with the cause.
fn commit_error(e: &IngestError, what: &str) -> ApiError {
    let kind = e.kind();
    if kind.is_retryable() {
        return ApiError::Unavailable(format!("{what}; retry with the same event ids: {e}"));
    }
    let error_id = match e.error_id() {
        Some(id) => id.to_owned(),
        None => {
            let id = new_error_id();
            error!(error_id = id, kind = kind.as_str(), error = %e, "events not stored");
            id
        }
    };
    let message = if kind == ErrorKind::Bug {
        "the events were not stored because of a keyshift bug; retrying will not help, \
         report the error id"
    } else {
        "the events were not stored and retrying will not help until an operator fixes \
         the store; see the log for the error id"
    };
    ApiError::Failed {
        message: message.to_owned(),
        error_id,
        bug: kind == ErrorKind::Bug,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::failed_commit;

    #[test]
    fn commit_errors_answer_by_kind() {
        for kind in ErrorKind::ALL {
            let e = failed_commit(kind, "abc");
            match (kind, commit_error(&e, "not committed")) {
                (ErrorKind::Conflict | ErrorKind::Transient, ApiError::Unavailable(text)) => {
                    assert!(text.contains("retry with the same event ids"), "{text}");
                }
                (ErrorKind::Fatal | ErrorKind::Bug, err @ ApiError::Failed { .. }) => {
                    let ApiError::Failed { error_id, bug, .. } = &err else {
                        unreachable!()
                    };
                    assert_eq!(error_id, "abc", "the writer's id, under which it logged");
                    assert_eq!(*bug, kind == ErrorKind::Bug);
                    assert!(!err.to_string().contains("retry with the same"), "{err}");
                }
                (kind, other) => panic!("{kind}: {other:?}"),
            }
        }
    }

    #[test]
    fn ndjson_lines_are_items_and_blank_lines_are_skipped() {
        let body = b"{\"a\":1}\n\n{oops\r\n{\"b\":2}\n";
        let items = parse_body(body, BodyKind::Ndjson, 10).expect("parse");
        assert_eq!(items.len(), 3);
        assert_eq!(items[1], Input(b"{oops".to_vec()));
    }

    #[test]
    fn limits_and_malformed_bodies() {
        assert!(matches!(
            parse_body(b"[1,2,3]", BodyKind::Json, 2),
            Err(ApiError::PayloadTooLarge(_))
        ));
        assert!(matches!(
            parse_body(b"1\n2\n3\n", BodyKind::Ndjson, 2),
            Err(ApiError::PayloadTooLarge(_))
        ));
        assert!(matches!(
            parse_body(b"[{", BodyKind::Json, 2),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_body(b"42", BodyKind::Json, 2),
            Err(ApiError::BadRequest(_))
        ));
        assert_eq!(
            parse_body(b" {} ", BodyKind::Json, 2).ok(),
            Some(vec![Input(b"{}".to_vec())])
        );
        assert_eq!(
            parse_body(b"[{\"a\": 1}, 2]", BodyKind::Json, 2).ok(),
            Some(vec![Input(b"{\"a\": 1}".to_vec()), Input(b"2".to_vec())])
        );
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert_eq!(body_kind(&h).ok(), Some(BodyKind::Json));
        h.insert(
            header::CONTENT_TYPE,
            "application/x-ndjson; charset=utf-8".parse().expect("hv"),
        );
        assert_eq!(body_kind(&h).ok(), Some(BodyKind::Ndjson));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().expect("hv"));
        assert!(body_kind(&h).is_err());
    }

    #[test]
    fn a_cut_refused_body_never_becomes_a_valid_document() {
        let event = br#"{"event_id":"e1"}"#;
        assert_eq!(whole_body_message(b"{oops", 256), b"{oops");
        // A complete event, then garbage past the cut: without the marker
        // the cut message would be a valid event.
        let mut body = event.to_vec();
        body.extend_from_slice(b" garbage");
        let message = whole_body_message(&body, event.len());
        assert!(
            keyshift_schemas::Doc::parse(&message).is_err(),
            "{}",
            String::from_utf8_lossy(&message)
        );
        assert!(message.ends_with("…".as_bytes()));
    }
}
