//! Metrics of the read API, and the `/metrics` exposition of the registry.

use keyshift_store::metrics::Registrar;
use prometheus::{Encoder, HistogramVec, Registry, TextEncoder};

/// The read API's metrics: SQL and KPI request times by outcome.
#[derive(Debug, Clone)]
pub struct ApiMetrics {
    sql_seconds: HistogramVec,
    kpi_seconds: HistogramVec,
}

impl ApiMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let r = Registrar::new(registry);
        let sql_seconds = r.histogram_vec(
            "keyshift_sql_query_seconds",
            "SQL API query time by outcome (ok, client_error, busy, timeout, error).",
            &[0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
            &["outcome"],
        )?;
        let kpi_seconds = r.histogram_vec(
            "keyshift_kpi_request_seconds",
            "KPI report time by endpoint (kpis, funnel) and outcome \
                 (ok, client_error, busy, timeout, error).",
            &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0],
            &["endpoint", "outcome"],
        )?;
        Ok(Self {
            sql_seconds,
            kpi_seconds,
        })
    }

    /// Metrics bound to a private registry, for tests and tools.
    pub fn unregistered() -> Self {
        Self::new(&Registry::new()).unwrap_or_else(|e| unreachable!("fresh registry: {e}"))
    }

    pub(crate) fn sql(&self, outcome: &'static str, seconds: f64) {
        self.sql_seconds
            .with_label_values(&[outcome])
            .observe(seconds);
    }
}

impl ApiMetrics {
    pub(crate) fn kpi(&self, endpoint: &'static str, outcome: &'static str, seconds: f64) {
        self.kpi_seconds
            .with_label_values(&[endpoint, outcome])
            .observe(seconds);
    }
}

/// The bounded outcome label of an API result.
pub(crate) fn outcome<T>(r: &keyshift_http::ApiResult<T>) -> &'static str {
    use keyshift_http::ApiError;
    match r {
        Ok(_) => "ok",
        Err(ApiError::Timeout(_)) => "timeout",
        Err(ApiError::TooManyRequests { .. }) => "busy",
        Err(e) if e.status().is_client_error() => "client_error",
        Err(_) => "error",
    }
}

/// The registry in Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut buf) {
        tracing::error!(error = %e, "encoding metrics");
    }
    String::from_utf8(buf).unwrap_or_default()
}
