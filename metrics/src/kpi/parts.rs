//! The statements of a report as parts, each with the days of
//! `auth_events` it reads, and their results through the result cache
//! (`keyshift_store::result_cache`): a part whose days got no file since
//! its result was kept is not run again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use chrono::NaiveDate;
use datafusion::arrow::compute::concat_batches;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use keyshift_store::query::{collect, plan};
use keyshift_store::result_cache::{CachedResult, Digest32, PartitionPrints};
use keyshift_store::schema::EVENT_DATE;
use keyshift_store::{AUTH_EVENTS, ResultCache, Tables};
use tracing::{debug, warn};

use super::engine::{History, Sets, days, statement_with};
use super::request::KpiRequest;
use super::stages::SHARED;

/// One statement and the days of `auth_events` it reads: what its cached
/// result is keyed by.
#[derive(Debug, Clone)]
pub struct Part {
    /// The whole statement.
    pub sql: String,
    /// The first day read; `None` for statements that read `h` (every
    /// earlier day too).
    pub from: Option<NaiveDate>,
    /// The last day read.
    pub to: NaiveDate,
    /// Whether it reads a shared table (`a`, `u`, `q`, `c`), whose definitions
    /// are then part of its key too.
    pub shared: bool,
    /// Whether it reads `h` itself, from the report's history table
    /// ([`History::Table`]), which must then be there when it runs.
    pub reads_h: bool,
}

impl Part {
    /// The statement of `body` (a KPI's or a shared table's own SQL) for
    /// `req`, which decides the days it reads.
    pub fn new(req: &KpiRequest, body: &str, mode: Sets) -> Self {
        let (first, last) = days(req);
        // Fail safe: a body naming `h`, or a shared table made from it,
        // anywhere is taken to read all of history (a wider key is only
        // less reuse, never staleness).
        let reads_h = mentions(body, "h");
        let history = reads_h || SHARED.iter().any(|t| t.history && mentions(body, t.name));
        let from = if reads_h {
            History::Table
        } else {
            History::Scan
        };
        Self {
            from: (!history).then_some(first),
            to: last,
            shared: SHARED.iter().any(|t| mentions(body, t.name)),
            reads_h,
            sql: statement_with(req, body, mode, from),
        }
    }
}

/// Whether `name` occurs in `sql` as an identifier of its own, in any case.
pub fn mentions(sql: &str, name: &str) -> bool {
    sql.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|word| word.eq_ignore_ascii_case(name))
}

/// [`super::engine::statement`] as a [`Part`].
pub fn part(req: &KpiRequest, body: &str) -> Part {
    Part::new(req, body, Sets::Both)
}

/// The result cache and the snapshot's partition digests, when caching is
/// on, and the definition of the shared tables of this report.
pub(super) struct Cache {
    on: Option<(ResultCache, PartitionPrints)>,
    shared: String,
    /// Results [`Cache::has`] found, handed out by [`Cache::get`] without
    /// a second lookup (and so found again even if evicted meanwhile).
    found: Mutex<HashMap<Digest32, Arc<CachedResult>>>,
}

impl Cache {
    /// Without the digests (a snapshot whose files cannot be listed), the
    /// report runs uncached: the cache never fails a report.
    pub(super) fn new(cache: Option<ResultCache>, tables: &Tables) -> Self {
        let on = cache.and_then(|c| {
            match PartitionPrints::of(&tables.events, AUTH_EVENTS, EVENT_DATE) {
                Ok(prints) => Some((c, prints)),
                Err(e) => {
                    warn!(error = %e, "KPI report runs without the result cache");
                    None
                }
            }
        });
        Self {
            on,
            shared: String::new(),
            found: Mutex::new(HashMap::new()),
        }
    }

    /// Takes the report's shared tables: a statement over one gives what
    /// its statements give, so their definitions, chunks and merge are in
    /// its key.
    pub(super) fn share(&mut self, stages: &[super::stages::Stage]) {
        let mut shared = String::new();
        for stage in stages {
            for p in &stage.parts {
                shared.push_str(&p.sql);
            }
            shared.push_str(stage.merge.as_deref().unwrap_or_default());
        }
        self.shared = shared;
    }

    /// Whether the cache holds `part`'s result (which [`Cache::get`] then
    /// hands out). Only for parts that read no shared table: their keys do
    /// not change with [`Cache::share`].
    pub(super) fn has(&self, part: &Part) -> bool {
        if part.shared {
            return false;
        }
        let Some((cache, key)) = self.key(part) else {
            return false;
        };
        match cache.probe(&key) {
            Some(hit) => {
                lock(&self.found).insert(key, hit);
                true
            }
            None => false,
        }
    }

    /// The days of the snapshot that have files, oldest first; none when
    /// caching is off.
    pub(super) fn days(&self) -> Vec<NaiveDate> {
        self.on
            .as_ref()
            .map(|(_, prints)| prints.days().collect())
            .unwrap_or_default()
    }

    fn key(&self, part: &Part) -> Option<(&ResultCache, Digest32)> {
        let (cache, prints) = self.on.as_ref()?;
        let read = prints.range(part.from, part.to);
        Some(if part.shared {
            (
                cache,
                cache.key(&format!("{}\0{}", part.sql, self.shared), &read),
            )
        } else {
            (cache, cache.key(&part.sql, &read))
        })
    }

    pub(super) fn get(&self, part: &Part) -> Option<Arc<CachedResult>> {
        let (cache, key) = self.key(part)?;
        if let Some(hit) = lock(&self.found).get(&key) {
            return Some(hit.clone());
        }
        cache.get(&key)
    }

    /// Runs the part and keeps its result (as one batch that owns its
    /// rows: results are small, and a slice would be counted, and kept
    /// alive, with its whole parent buffer).
    pub(super) async fn compute(
        &self,
        ctx: &SessionContext,
        name: &str,
        part: &Part,
    ) -> keyshift_store::Result<Arc<CachedResult>> {
        let started = Instant::now();
        let df = plan(ctx, &part.sql).await?;
        let planned = started.elapsed();
        let schema = Arc::new(df.schema().as_arrow().clone());
        let batches = collect(ctx, df).await?;
        let one = concat_batches(&schema, &batches).map_err(DataFusionError::from)?;
        // Where a slow report spends its time: planning (the Delta scan's
        // file listing and pruning) or running.
        debug!(
            name,
            from = ?part.from,
            to = %part.to,
            plan_ms = planned.as_millis(),
            run_ms = (started.elapsed() - planned).as_millis(),
            rows = one.num_rows(),
            "KPI part computed"
        );
        let result = Arc::new(CachedResult {
            schema,
            batches: vec![one],
        });
        if let Some((cache, key)) = self.key(part) {
            cache.put(key, result.clone());
        }
        Ok(result)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A map of finished results: a panic while it was held leaves it whole.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kpi::request::checked;
    use crate::kpi::{CATALOG, funnel::FUNNELS};

    #[test]
    fn mentions_finds_whole_identifiers_in_any_case() {
        assert!(mentions("LEFT JOIN h ON x = h.user_key", "h"));
        assert!(mentions("from H", "h"));
        assert!(mentions("FROM e,\n h", "h"));
        assert!(!mentions("FROM held JOIN hh", "h"));
    }

    #[test]
    fn parts_read_the_reports_history_and_standalone_statements_scan_it() {
        use crate::kpi::engine::{HISTORY_TABLE, statement};
        let req = checked("from=2026-11-02T00:00:00Z&to=2026-11-20T00:00:00Z");
        let stages = super::super::stages::stages(&req, &["SELECT * FROM u"]);
        let u = &stages[0];
        // Three weeks and the totals, each cut at its own end.
        assert_eq!(u.parts.len(), 4);
        for p in &u.parts {
            assert!(p.reads_h && mentions(&p.sql, HISTORY_TABLE), "{}", p.sql);
        }
        assert!(u.parts[0].sql.contains(&format!(
            "FROM {HISTORY_TABLE} WHERE occurred_at < to_timestamp_micros(1794182400000000)"
        )));
        // What other engines run stands alone.
        assert!(!mentions(&u.whole, HISTORY_TABLE));
        let counts = Part::new(&req, "SELECT count(*) FROM e", Sets::Both);
        assert!(!counts.reads_h && !mentions(&counts.sql, HISTORY_TABLE));
        assert!(!mentions(
            &statement(&req, "SELECT * FROM h"),
            HISTORY_TABLE
        ));
    }

    #[test]
    fn every_statement_that_reads_history_is_keyed_by_all_of_it() {
        let req = checked("from=2026-11-02T00:00:00Z&to=2026-11-04T00:00:00Z");
        let bodies = CATALOG.iter().map(|k| (k.name, k.sql)).chain(
            FUNNELS
                .iter()
                .flat_map(|f| [(f.name, f.steps_sql), (f.name, f.exits_sql)]),
        );
        // What reads history: `h.column` (not `auth.…`, a string) or a
        // shared table made from `h`.
        let reads_history = |body: &str| {
            body.match_indices("h.").any(|(i, _)| {
                body[..i]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
            }) || body.contains(" h ")
                || body
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .windows(2)
                    .any(|w| matches!(w[0], "FROM" | "JOIN") && w[1] == "u")
        };
        let mut history = Vec::new();
        for (name, body) in bodies {
            if reads_history(body) {
                assert!(Part::new(&req, body, Sets::Both).from.is_none(), "{name}");
                history.push(name);
            }
        }
        assert_eq!(
            history,
            [
                "enrollment_rate",
                "coverage",
                "recovery_per_1k_users",
                "at_risk_holders",
                "enrollment",
                "enrollment"
            ]
        );
        // And the shared table they read is itself keyed by all of history.
        let stages = super::super::stages::stages(&req, &["SELECT * FROM u"]);
        assert!(stages[0].parts.iter().all(|p| p.from.is_none()));
    }
}
