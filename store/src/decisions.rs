//! The `rollout_decisions` table: the rollout controller's event log.
//!
//! One row per decision, appended by the process's writer task in its own
//! Delta commit. Each append carries a `txn` action (app id
//! `keyshift-rollout-<id>`, version = the decision's sequence number) and is
//! refused unless the table's recorded version is exactly the previous one:
//! a second controller writing the same rollout is fenced by the table
//! itself, whichever process it runs in.

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, TimeZone, Utc};
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{
    DataType, Field, Float64Type, Int32Type, Int64Type, Schema, SchemaRef, TimeUnit,
    TimestampMicrosecondType,
};
use deltalake::arrow::record_batch::RecordBatch;

use crate::{ROLLOUT_DECISIONS, Result, StoreError};

/// One decision as stored. The rollout crate owns the meaning; here it is
/// columns.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    /// The rollout this decision belongs to, as configured.
    pub rollout_id: String,
    /// Position in the rollout's log: 1, 2, 3…; also the version of the
    /// `txn` action that fences the append.
    pub seq: i64,
    /// When the controller (or the operator) made the decision.
    pub decided_at: DateTime<Utc>,
    /// `start`, `advance`, `hold`, `rollback`, `abort`, `complete`, `pause`,
    /// `resume`, `promote` or `config_changed`.
    pub action: String,
    /// A hold reason (`stale_data`, `dwell`…), an operator's reason or what
    /// triggered the action; `None` when there was none.
    pub reason: Option<String>,
    /// Who decided: `controller`, or the operator.
    pub actor: String,
    /// The rollout's phase after this decision: `running`, `paused`,
    /// `completed` or `aborted`.
    pub phase: String,
    /// Exposure before the decision, in percent (0–100, two decimals).
    pub from_percent: f64,
    /// Exposure after the decision, in percent (0–100, two decimals).
    pub to_percent: f64,
    /// Index of the configured step before the decision (0 is the first);
    /// `None` at 0 %.
    pub from_step: Option<i32>,
    /// Index of the configured step after the decision (0 is the first);
    /// `None` at 0 %.
    pub to_step: Option<i32>,
    /// Hash of the rollout's configuration the decision was made under.
    pub config_hash: String,
    /// The salt users are hashed with, fixed when the rollout started.
    pub group_id: String,
    /// The ingest watermark the evaluation saw; `None` for decisions that
    /// were not evaluations, or when no watermark was known yet.
    pub watermark: Option<DateTime<Utc>>,
    /// Start of the evaluated window (when the current step began); `None`
    /// for decisions that were not evaluations.
    pub window_start: Option<DateTime<Utc>>,
    /// End of the evaluated window (the watermark, at most the decision
    /// time); `None` for decisions that were not evaluations.
    pub window_end: Option<DateTime<Utc>>,
    /// JSON: the consecutive-breach counters after this decision.
    pub breaches: String,
    /// JSON: everything the decision was based on.
    pub evidence: String,
}

/// The `txn` app id that orders one rollout's decisions.
pub fn decision_app_id(rollout_id: &str) -> String {
    format!("keyshift-rollout-{rollout_id}")
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    Arc::new(Schema::new(vec![
        s("rollout_id", false),
        Field::new("seq", DataType::Int64, false),
        Field::new("decided_at", ts(), false),
        s("action", false),
        s("reason", true),
        s("actor", false),
        s("phase", false),
        Field::new("from_percent", DataType::Float64, false),
        Field::new("to_percent", DataType::Float64, false),
        Field::new("from_step", DataType::Int32, true),
        Field::new("to_step", DataType::Int32, true),
        s("config_hash", false),
        s("group_id", false),
        Field::new("watermark", ts(), true),
        Field::new("window_start", ts(), true),
        Field::new("window_end", ts(), true),
        s("breaches", false),
        s("evidence", false),
    ]))
});

/// The Arrow schema of the `rollout_decisions` table, one column per field of
/// [`DecisionRecord`]; timestamps in microseconds, UTC.
pub fn rollout_decisions_schema() -> SchemaRef {
    SCHEMA.clone()
}

/// The records as one batch of [`rollout_decisions_schema`]; fails only when
/// Arrow refuses the columns (a bug).
pub fn decisions_to_batch(records: &[DecisionRecord]) -> Result<RecordBatch> {
    let n = records.len();
    let mut str_cols: Vec<StringBuilder> = (0..9).map(|_| StringBuilder::new()).collect();
    let mut seq = Int64Builder::with_capacity(n);
    let stamp = || TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let (mut decided, mut watermark, mut wstart, mut wend) = (stamp(), stamp(), stamp(), stamp());
    let (mut from_p, mut to_p) = (
        Float64Builder::with_capacity(n),
        Float64Builder::with_capacity(n),
    );
    let (mut from_s, mut to_s) = (
        Int32Builder::with_capacity(n),
        Int32Builder::with_capacity(n),
    );
    let micros = |t: &Option<DateTime<Utc>>| t.map(|t| t.timestamp_micros());
    for r in records {
        str_cols[0].append_value(&r.rollout_id);
        str_cols[1].append_value(&r.action);
        str_cols[2].append_option(r.reason.as_deref());
        str_cols[3].append_value(&r.actor);
        str_cols[4].append_value(&r.phase);
        str_cols[5].append_value(&r.config_hash);
        str_cols[6].append_value(&r.group_id);
        str_cols[7].append_value(&r.breaches);
        str_cols[8].append_value(&r.evidence);
        seq.append_value(r.seq);
        decided.append_value(r.decided_at.timestamp_micros());
        watermark.append_option(micros(&r.watermark));
        wstart.append_option(micros(&r.window_start));
        wend.append_option(micros(&r.window_end));
        from_p.append_value(r.from_percent);
        to_p.append_value(r.to_percent);
        from_s.append_option(r.from_step);
        to_s.append_option(r.to_step);
    }
    let mut s: Vec<ArrayRef> = str_cols
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    let mut take = |i: usize| std::mem::replace(&mut s[i], Arc::new(StringBuilder::new().finish()));
    let cols: Vec<ArrayRef> = vec![
        take(0),
        Arc::new(seq.finish()),
        Arc::new(decided.finish()),
        take(1),
        take(2),
        take(3),
        take(4),
        Arc::new(from_p.finish()),
        Arc::new(to_p.finish()),
        Arc::new(from_s.finish()),
        Arc::new(to_s.finish()),
        take(5),
        take(6),
        Arc::new(watermark.finish()),
        Arc::new(wstart.finish()),
        Arc::new(wend.finish()),
        take(7),
        take(8),
    ];
    RecordBatch::try_new(rollout_decisions_schema(), cols)
        .map_err(StoreError::arrow(ROLLOUT_DECISIONS))
}

fn bad(what: &str) -> StoreError {
    StoreError::Decode(format!("{ROLLOUT_DECISIONS}: {what}"))
}

/// Reads decisions back from query results (any column order; the columns
/// of [`rollout_decisions_schema`] must all be there).
pub fn decisions_from_batches(batches: &[RecordBatch]) -> Result<Vec<DecisionRecord>> {
    let mut out = Vec::new();
    for b in batches {
        let col = |name: &str| -> Result<ArrayRef> {
            let c = b
                .column_by_name(name)
                .ok_or_else(|| bad(&format!("missing column {name}")))?;
            // Scans may return string views or dictionary strings.
            match c.data_type() {
                DataType::Utf8View | DataType::LargeUtf8 | DataType::Dictionary(_, _) => {
                    cast(c, &DataType::Utf8).map_err(|e| bad(&e.to_string()))
                }
                _ => Ok(c.clone()),
            }
        };
        let strs: Vec<ArrayRef> = [
            "rollout_id",
            "action",
            "reason",
            "actor",
            "phase",
            "config_hash",
            "group_id",
            "breaches",
            "evidence",
        ]
        .iter()
        .map(|n| col(n))
        .collect::<Result<_>>()?;
        let s = |i: usize, row: usize| -> Option<String> {
            let a = strs[i].as_string_opt::<i32>()?;
            (!a.is_null(row)).then(|| a.value(row).to_owned())
        };
        let seq = col("seq")?;
        let seq = seq
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| bad("seq"))?;
        let stamps: Vec<ArrayRef> = ["decided_at", "watermark", "window_start", "window_end"]
            .iter()
            .map(|n| col(n))
            .collect::<Result<_>>()?;
        let t = |i: usize, row: usize| -> Option<DateTime<Utc>> {
            let a = stamps[i].as_primitive_opt::<TimestampMicrosecondType>()?;
            if a.is_null(row) {
                return None;
            }
            Utc.timestamp_micros(a.value(row)).single()
        };
        let floats: Vec<ArrayRef> = ["from_percent", "to_percent"]
            .iter()
            .map(|n| col(n))
            .collect::<Result<_>>()?;
        let f = |i: usize, row: usize| -> f64 {
            floats[i]
                .as_primitive_opt::<Float64Type>()
                .map_or(0.0, |a| a.value(row))
        };
        let steps: Vec<ArrayRef> = ["from_step", "to_step"]
            .iter()
            .map(|n| col(n))
            .collect::<Result<_>>()?;
        let st = |i: usize, row: usize| -> Option<i32> {
            let a = steps[i].as_primitive_opt::<Int32Type>()?;
            (!a.is_null(row)).then(|| a.value(row))
        };
        for row in 0..b.num_rows() {
            out.push(DecisionRecord {
                rollout_id: s(0, row).ok_or_else(|| bad("rollout_id"))?,
                seq: seq.value(row),
                decided_at: t(0, row).ok_or_else(|| bad("decided_at"))?,
                action: s(1, row).unwrap_or_default(),
                reason: s(2, row),
                actor: s(3, row).unwrap_or_default(),
                phase: s(4, row).unwrap_or_default(),
                from_percent: f(0, row),
                to_percent: f(1, row),
                from_step: st(0, row),
                to_step: st(1, row),
                config_hash: s(5, row).unwrap_or_default(),
                group_id: s(6, row).unwrap_or_default(),
                watermark: t(1, row),
                window_start: t(2, row),
                window_end: t(3, row),
                breaches: s(7, row).unwrap_or_else(|| "{}".to_owned()),
                evidence: s(8, row).unwrap_or_else(|| "{}".to_owned()),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_a_batch() {
        let at = Utc
            .timestamp_micros(1_790_000_000_000_000)
            .single()
            .expect("time");
        let r = DecisionRecord {
            rollout_id: "pk".into(),
            seq: 3,
            decided_at: at,
            action: "hold".into(),
            reason: Some("stale_data".into()),
            actor: "controller".into(),
            phase: "running".into(),
            from_percent: 5.0,
            to_percent: 5.0,
            from_step: Some(1),
            to_step: Some(1),
            config_hash: "abc".into(),
            group_id: "pk".into(),
            watermark: None,
            window_start: Some(at),
            window_end: Some(at),
            breaches: "{}".into(),
            evidence: "{\"x\":1}".into(),
        };
        let batch = decisions_to_batch(std::slice::from_ref(&r)).expect("batch");
        let back = decisions_from_batches(&[batch]).expect("decode");
        assert_eq!(back, vec![r]);
    }
}
