//! What the store says about a rollout: event counts per variant, platform
//! and browser in a window, and distinct users per variant. Two DataFusion
//! queries over `auth_events`; everything else is arithmetic in Rust.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::arrow::record_batch::RecordBatch;
use keyshift_store::{QueryEngine, StoreError};
use serde::Serialize;

use crate::config::{Breakdown, Metric};

/// Which side of the rollout an event's user was on, as the relying party recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// Exposed to the stage.
    Treatment,
    /// Not exposed; the baseline for relative guardrails.
    Control,
}

impl Variant {
    /// `"treatment"` or `"control"`, as in events and evidence.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Treatment => "treatment",
            Variant::Control => "control",
        }
    }
}

/// Event counts of one cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Events of any type.
    pub events: u64,
    /// `auth.started` events with method passkey.
    pub passkey_started: u64,
    /// `auth.failed` events with method passkey.
    pub passkey_failed: u64,
    /// `auth.fallback` events falling back from passkey.
    pub passkey_fallback: u64,
    /// `auth.started` events, any method.
    pub started: u64,
    /// `auth.succeeded` events, any method.
    pub succeeded: u64,
    /// `recovery.started` events.
    pub recoveries: u64,
    /// `enrollment.started` events.
    pub enrollment_started: u64,
    /// `enrollment.failed` events.
    pub enrollment_failed: u64,
    /// `support.contacted` events.
    pub support: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.events += o.events;
        self.passkey_started += o.passkey_started;
        self.passkey_failed += o.passkey_failed;
        self.passkey_fallback += o.passkey_fallback;
        self.started += o.started;
        self.succeeded += o.succeeded;
        self.recoveries += o.recoveries;
        self.enrollment_started += o.enrollment_started;
        self.enrollment_failed += o.enrollment_failed;
        self.support += o.support;
    }

    /// `(numerator, denominator)` of a metric. The numerator is capped at
    /// the denominator: a failure whose start fell before the window must
    /// not make a rate above 1.
    pub fn ratio(&self, metric: Metric) -> (u64, u64) {
        let (x, n) = match metric {
            Metric::PasskeyErrorRate => (self.passkey_failed, self.passkey_started),
            Metric::FallbackRate => (self.passkey_fallback, self.passkey_started),
            Metric::RecoveryRate => (self.recoveries, self.started),
            Metric::SignInSuccess => (self.succeeded, self.started),
            Metric::EnrollmentFailureRate => (self.enrollment_failed, self.enrollment_started),
            Metric::SupportContactRate => (self.support, self.started),
        };
        (x.min(n), n)
    }
}

/// The counts of one variant, platform and browser combination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// The variant the events were recorded under.
    pub variant: Variant,
    /// `client.os`, or `unknown` when absent.
    pub platform: String,
    /// `client.browser`, or `unknown` when absent.
    pub browser: String,
    /// The events counted in this cell.
    pub counts: Counts,
}

/// A rollout's data in one window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// One cell per variant, platform and browser seen, sorted in that order.
    pub cells: Vec<Cell>,
    /// Distinct users per variant: `[treatment, control]`.
    pub users: [u64; 2],
}

impl Observation {
    /// Counts of a variant, over everything or one segment.
    pub fn counts(&self, variant: Variant, segment: Option<(Breakdown, &str)>) -> Counts {
        let mut c = Counts::default();
        for cell in self.cells.iter().filter(|c| c.variant == variant) {
            let matches = match segment {
                None => true,
                Some((Breakdown::Platform, v)) => cell.platform == v,
                Some((Breakdown::Browser, v)) => cell.browser == v,
            };
            if matches {
                c.add(&cell.counts);
            }
        }
        c
    }

    /// The platforms or browsers seen in the window (either variant), sorted.
    pub fn segments(&self, b: Breakdown) -> BTreeSet<String> {
        self.cells
            .iter()
            .map(|c| match b {
                Breakdown::Platform => c.platform.clone(),
                Breakdown::Browser => c.browser.clone(),
            })
            .collect()
    }

    /// Events of the rollout in the window, both variants; 0 means no traffic.
    pub fn events(&self) -> u64 {
        self.cells.iter().map(|c| c.counts.events).sum()
    }

    /// Distinct users of a variant in the window.
    pub fn users(&self, variant: Variant) -> u64 {
        match variant {
            Variant::Treatment => self.users[0],
            Variant::Control => self.users[1],
        }
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Reads a rollout's window `[start, end)` from the store.
pub async fn observe(
    engine: &QueryEngine,
    rp_id: &str,
    rollout_id: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Observation, StoreError> {
    // event_date (the partition column) bounds the files read; occurred_at
    // the rows.
    let filter = format!(
        "rp_id = {} AND rollout_id = {} AND rollout_variant IN ('treatment', 'control') \
         AND occurred_at >= to_timestamp_micros({}) AND occurred_at < to_timestamp_micros({}) \
         AND event_date >= CAST({} AS DATE) AND event_date <= CAST({} AS DATE)",
        quote(rp_id),
        quote(rollout_id),
        start.timestamp_micros(),
        end.timestamp_micros(),
        quote(&start.date_naive().to_string()),
        quote(&end.date_naive().to_string()),
    );
    let count = |cond: &str| format!("CAST(sum(CASE WHEN {cond} THEN 1 ELSE 0 END) AS BIGINT)");
    let cells_sql = format!(
        "SELECT rollout_variant AS variant, \
                COALESCE(client_os, 'unknown') AS platform, \
                COALESCE(client_browser, 'unknown') AS browser, \
                CAST(count(*) AS BIGINT) AS events, \
                {} AS passkey_started, {} AS passkey_failed, {} AS passkey_fallback, \
                {} AS started, {} AS succeeded, {} AS recoveries, \
                {} AS enrollment_started, {} AS enrollment_failed, {} AS support \
         FROM auth_events WHERE {filter} GROUP BY 1, 2, 3",
        count("event_type = 'auth.started' AND method = 'passkey'"),
        count("event_type = 'auth.failed' AND method = 'passkey'"),
        count("event_type = 'auth.fallback' AND fallback_from = 'passkey'"),
        count("event_type = 'auth.started'"),
        count("event_type = 'auth.succeeded'"),
        count("event_type = 'recovery.started'"),
        count("event_type = 'enrollment.started'"),
        count("event_type = 'enrollment.failed'"),
        count("event_type = 'support.contacted'"),
    );
    let users_sql = format!(
        "SELECT rollout_variant AS variant, CAST(count(DISTINCT user_key) AS BIGINT) AS users \
         FROM auth_events WHERE {filter} GROUP BY 1"
    );
    let cells = engine.internal(&cells_sql).await?;
    let users = engine.internal(&users_sql).await?;
    let mut obs = Observation::default();
    for b in &cells.batches {
        let s = strings(b, &["variant", "platform", "browser"])?;
        let n = ints(
            b,
            &[
                "events",
                "passkey_started",
                "passkey_failed",
                "passkey_fallback",
                "started",
                "succeeded",
                "recoveries",
                "enrollment_started",
                "enrollment_failed",
                "support",
            ],
        )?;
        for row in 0..b.num_rows() {
            let Some(variant) = variant_of(&s[0][row]) else {
                continue;
            };
            let v = |i: usize| n[i][row];
            obs.cells.push(Cell {
                variant,
                platform: s[1][row].clone(),
                browser: s[2][row].clone(),
                counts: Counts {
                    events: v(0),
                    passkey_started: v(1),
                    passkey_failed: v(2),
                    passkey_fallback: v(3),
                    started: v(4),
                    succeeded: v(5),
                    recoveries: v(6),
                    enrollment_started: v(7),
                    enrollment_failed: v(8),
                    support: v(9),
                },
            });
        }
    }
    // Stable order: the evidence must not depend on how the scan split work.
    obs.cells.sort_by(|a, b| {
        (a.variant, &a.platform, &a.browser).cmp(&(b.variant, &b.platform, &b.browser))
    });
    for b in &users.batches {
        let s = strings(b, &["variant"])?;
        let n = ints(b, &["users"])?;
        for row in 0..b.num_rows() {
            match variant_of(&s[0][row]) {
                Some(Variant::Treatment) => obs.users[0] = n[0][row],
                Some(Variant::Control) => obs.users[1] = n[0][row],
                None => {}
            }
        }
    }
    Ok(obs)
}

fn variant_of(s: &str) -> Option<Variant> {
    match s {
        "treatment" => Some(Variant::Treatment),
        "control" => Some(Variant::Control),
        _ => None,
    }
}

fn decode(what: &str) -> StoreError {
    StoreError::Decode(format!("rollout observation: {what}"))
}

fn strings(b: &RecordBatch, names: &[&str]) -> Result<Vec<Vec<String>>, StoreError> {
    names
        .iter()
        .map(|n| {
            let col = b.column_by_name(n).ok_or_else(|| decode(n))?;
            let col = cast(col, &DataType::Utf8).map_err(|e| decode(&e.to_string()))?;
            let a = col.as_string_opt::<i32>().ok_or_else(|| decode(n))?;
            Ok((0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        String::new()
                    } else {
                        a.value(i).to_owned()
                    }
                })
                .collect())
        })
        .collect()
}

fn ints(b: &RecordBatch, names: &[&str]) -> Result<Vec<Vec<u64>>, StoreError> {
    names
        .iter()
        .map(|n| {
            let col = b.column_by_name(n).ok_or_else(|| decode(n))?;
            let col = cast(col, &DataType::Int64).map_err(|e| decode(&e.to_string()))?;
            let a = col
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| decode(n))?;
            Ok((0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        0
                    } else {
                        u64::try_from(a.value(i)).unwrap_or(0)
                    }
                })
                .collect())
        })
        .collect()
}
