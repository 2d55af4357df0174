//! What the demo prints: a live status line while it runs (rewritten in
//! place on a terminal), a line per simulated day and per rollout decision,
//! and the closing summary with the evidence behind each decision.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use keyshift_rollout::RolloutConfig;
use keyshift_rollout::assign::format_percent;
use keyshift_rollout::controller::Snapshot;
use keyshift_rollout::decision::{Action, Decision};
use keyshift_sim::Scenario;

use super::kpis::HEADLINE;

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

fn per_k(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"))
}

fn show(kpi: &str, v: Option<f64>) -> String {
    if kpi.contains("per_1k") {
        per_k(v)
    } else {
        pct(v)
    }
}

/// "day 2 14:00" on the simulated clock.
fn when(start: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let d = t - start;
    format!(
        "day {} {:02}:{:02}",
        d.num_days(),
        d.num_hours() % 24,
        d.num_minutes() % 60
    )
}

/// Two holds for the same reason on the same guardrail and segment.
fn same_hold(a: &Decision, b: &Decision) -> bool {
    let trigger = |d: &Decision| {
        d.evidence
            .get("trigger")
            .map(|t| (t["guardrail"].clone(), t["segment"].clone()))
    };
    a.reason == b.reason && trigger(a) == trigger(b)
}

/// The live part: stderr.
pub struct Progress {
    tty: bool,
    start: DateTime<Utc>,
    days: u32,
    rollout: String,
    last_seq: i64,
    last_shown: Option<Decision>,
}

impl Progress {
    pub fn new(tty: bool, scenario: &Scenario, rollout: &str, start: DateTime<Utc>) -> Self {
        Self {
            tty,
            start,
            days: scenario.population.days,
            rollout: rollout.to_owned(),
            last_seq: 0,
            last_shown: None,
        }
    }

    fn line(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let clear = if self.tty { "\r\x1b[2K" } else { "" };
        let _ = writeln!(err, "{clear}{text}");
    }

    pub fn header(&mut self, scenario: &Scenario, data_dir: &Path, url: &str) {
        self.line(&format!(
            "keyshift demo: scenario {} (seed {}) — {}\n  {} users of {}, {} simulated days; data dir {}; API {url}",
            scenario.name,
            scenario.seed,
            scenario.summary,
            scenario.population.users,
            scenario.population.rp_id,
            scenario.population.days,
            data_dir.display(),
        ));
    }

    pub fn hour(
        &mut self,
        now: DateTime<Utc>,
        events: u64,
        elapsed: Duration,
        snapshot: Option<&Snapshot>,
    ) {
        let Some(s) = snapshot else { return };
        if let Some(d) = &s.last_decision {
            self.decision(d);
        }
        if self.tty {
            let rate = events as f64 / elapsed.as_secs_f64().max(0.001);
            let last = s
                .last_evaluation
                .as_ref()
                .map(|d| format!("{} {}", d.action.name(), d.reason.as_deref().unwrap_or("")))
                .unwrap_or_default();
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[2K{} / {} days │ {events} events, {rate:.0}/s │ {} {}% ({}) │ last evaluation: {last}",
                when(self.start, now),
                self.days,
                self.rollout,
                s.percent,
                s.state.phase.name(),
            );
            let _ = err.flush();
        }
    }

    /// Prints a decision the first time it is seen (a hold repeating the
    /// last printed one is not printed again).
    pub fn decision(&mut self, d: &Decision) {
        if d.seq <= self.last_seq {
            return;
        }
        self.last_seq = d.seq;
        if let Some(prev) = &self.last_shown
            && prev.action == Action::Hold
            && d.action == Action::Hold
            && same_hold(prev, d)
        {
            return;
        }
        self.last_shown = Some(d.clone());
        self.line(&format!(
            "  {}  {} {:<9} {:>5} → {:<5} {}",
            when(self.start, d.decided_at),
            self.rollout,
            d.action.name(),
            format!("{}%", format_percent(d.from_percent)),
            format!("{}%", format_percent(d.to_percent)),
            d.reason.as_deref().unwrap_or(""),
        ));
    }

    pub fn day(&mut self, day: u32, kpis: &Result<BTreeMap<String, Option<f64>>, String>) {
        let text = match kpis {
            Ok(k) => HEADLINE
                .iter()
                .map(|name| format!("{name} {}", show(name, k.get(*name).copied().flatten())))
                .collect::<Vec<_>>()
                .join(" · "),
            Err(e) => format!("KPIs unavailable: {e}"),
        };
        self.line(&format!("day {day} done │ {text}"));
    }

    pub fn finish(&mut self) {
        if self.tty {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }
}

/// The closing summary: stdout.
pub struct Summary<'a> {
    pub scenario: &'a Scenario,
    pub rollout: &'a RolloutConfig,
    pub data_dir: &'a Path,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub events: u64,
    pub late: u64,
    pub elapsed: Duration,
    pub decisions: &'a [Decision],
    pub by_variant: BTreeMap<(String, String), Option<f64>>,
    pub recovery_by_day: Vec<(DateTime<Utc>, Option<f64>)>,
}

impl Summary<'_> {
    pub fn render(&self) -> String {
        let mut o = String::new();
        let s = self.scenario;
        let _ = writeln!(
            o,
            "\n== keyshift demo: {} (seed {}) ==\n{} simulated days of {}: {} events in {:.1} s{}",
            s.name,
            s.seed,
            s.population.days,
            s.population.rp_id,
            self.events,
            self.elapsed.as_secs_f64(),
            if self.late > 0 {
                format!(" ({} of them late, after an ingest outage)", self.late)
            } else {
                String::new()
            },
        );
        let _ = writeln!(o, "Expected: {}", s.expect);
        self.decisions_section(&mut o);
        self.kpi_section(&mut o);
        self.next_steps(&mut o);
        o
    }

    fn decisions_section(&self, o: &mut String) {
        let last = self.decisions.last();
        let _ = writeln!(
            o,
            "\nRollout {} ({} on {}): {} at {}%",
            self.rollout.id,
            serde_json::to_value(self.rollout.stage)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            self.rollout.rp_id,
            last.map_or("not started", |d| d.phase.name()),
            last.map_or_else(|| "0".to_owned(), |d| format_percent(d.to_percent)),
        );
        let mut holds: BTreeMap<String, u32> = BTreeMap::new();
        // A guardrail hold repeats while the breach lasts (its counters
        // move, so each is recorded): show the first and the last of a run.
        let mut run: Option<(&Decision, &Decision, u32)> = None;
        for d in self.decisions {
            if d.action == Action::Hold {
                *holds
                    .entry(d.reason.clone().unwrap_or_default())
                    .or_default() += 1;
                if !matches!(d.reason.as_deref(), Some("guardrail" | "stale_data")) {
                    continue;
                }
                if let Some((first, _, n)) = run
                    && same_hold(first, d)
                {
                    run = Some((first, d, n + 1));
                    continue;
                }
            }
            self.close_run(o, run.take());
            self.decision_line(o, d);
            if d.action == Action::Hold {
                run = Some((d, d, 1));
            }
        }
        self.close_run(o, run);
        if !holds.is_empty() {
            let list: Vec<String> = holds.iter().map(|(r, n)| format!("{r} ×{n}")).collect();
            let _ = writeln!(o, "  recorded holds: {}", list.join(", "));
        }
    }

    fn decision_line(&self, o: &mut String, d: &Decision) {
        let _ = writeln!(
            o,
            "  {}  {:<9} {:>5} → {:<5} {}",
            when(self.start, d.decided_at),
            d.action.name(),
            format!("{}%", format_percent(d.from_percent)),
            format!("{}%", format_percent(d.to_percent)),
            d.reason.as_deref().unwrap_or(""),
        );
        if let Some(t) = d.evidence.get("trigger") {
            let arm = |a: &serde_json::Value| {
                format!(
                    "{}/{} ({})",
                    a["x"].as_u64().unwrap_or(0),
                    a["n"].as_u64().unwrap_or(0),
                    pct(a["rate"].as_f64())
                )
            };
            let _ = writeln!(
                o,
                "                evidence: {} on {}: treatment {}, control {}",
                t["metric"].as_str().unwrap_or(""),
                t["segment"].as_str().unwrap_or(""),
                arm(&t["treatment"]),
                arm(&t["control"]),
            );
        }
    }

    /// The end of a run of identical holds: how long it lasted.
    fn close_run(&self, o: &mut String, run: Option<(&Decision, &Decision, u32)>) {
        if let Some((_, last, n)) = run
            && n > 1
        {
            let _ = writeln!(
                o,
                "                … held {n} times in a row, the last at {}",
                when(self.start, last.decided_at)
            );
            if n > 2 {
                self.decision_line(o, last);
            }
        }
    }

    fn kpi_section(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "\nKPIs over the whole run ({} → {}, UTC):",
            self.start.to_rfc3339_opts(SecondsFormat::Secs, true),
            self.end.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        let _ = writeln!(
            o,
            "  {:<26} {:>10} {:>10} {:>10}",
            "kpi", "treatment", "control", "all"
        );
        for k in HEADLINE {
            let get = |g: &str| {
                show(
                    k,
                    self.by_variant
                        .get(&(k.to_owned(), g.to_owned()))
                        .copied()
                        .flatten(),
                )
            };
            let _ = writeln!(
                o,
                "  {k:<26} {:>10} {:>10} {:>10}",
                get("treatment"),
                get("control"),
                get("all")
            );
        }
        let days: Vec<String> = self
            .recovery_by_day
            .iter()
            .map(|(_, v)| per_k(*v))
            .collect();
        let _ = writeln!(
            o,
            "  recovery starts per 1,000 sign-ins, by day: {}",
            days.join("  ")
        );
    }

    fn next_steps(&self, o: &mut String) {
        let dir = self.data_dir.display();
        let rp = &self.scenario.population.rp_id;
        let from = self.start.to_rfc3339_opts(SecondsFormat::Secs, true);
        let to = self.end.to_rfc3339_opts(SecondsFormat::Secs, true);
        let _ = writeln!(o, "\nLook further:");
        let _ = writeln!(
            o,
            "  keyshift kpis --data-dir {dir} --rp-id {rp} --from {from} --to {to} --by variant"
        );
        let _ = writeln!(
            o,
            "  keyshift kpis --data-dir {dir} --rp-id {rp} --from {from} --to {to} --funnel"
        );
        let _ = writeln!(
            o,
            "  keyshift report --data-dir {dir} --rp-id {rp} --out {dir}/report   # cohorts, charts, CSV"
        );
        let _ = writeln!(
            o,
            "  keyshift sql --data-dir {dir} \"SELECT seq, decided_at, action, from_percent, to_percent, reason FROM rollout_decisions ORDER BY seq\""
        );
        let _ = writeln!(
            o,
            "  keyshift sql --data-dir {dir} \"SELECT client_browser, count(*) FROM auth_events WHERE event_type = 'auth.failed' GROUP BY 1 ORDER BY 2 DESC\""
        );
    }
}
