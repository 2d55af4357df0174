//! `keyshift simulate`: a scenario's relying party sending its events to a
//! collector, a Kafka topic or a file, on a compressed clock, serving each
//! user the rollout variant the controller decided.
//!
//! By default the simulation covers the scenario's days up to the last UTC
//! midnight (`--start` moves it), so no event is ever in the future and
//! simulated days are the KPIs' day buckets.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, DurationRound, Utc};
use keyshift_sim::{Exposure, Hour, Scenario, Simulator};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

mod sink;
pub use sink::Sink;

/// Which scenario, and what to override in it.
#[derive(Debug, Clone, clap::Args)]
pub struct ScenarioArgs {
    /// A shipped scenario (healthy, browser-regression, recovery-attack,
    /// no-support, stale-pipeline) or a scenario file (config/scenarios/).
    #[arg(long, default_value = "healthy")]
    pub scenario: String,
    /// Overrides the scenario's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Overrides the number of users (smaller: faster, noisier).
    #[arg(long)]
    pub users: Option<u32>,
    /// Overrides the number of simulated days.
    #[arg(long)]
    pub days: Option<u32>,
}

impl ScenarioArgs {
    /// Loads the scenario (shipped name or file), applies the overrides and
    /// validates the result, failing with every problem found.
    pub fn load(&self) -> anyhow::Result<Scenario> {
        let mut s = Scenario::load(&self.scenario)?;
        if let Some(seed) = self.seed {
            s.seed = seed;
        }
        if let Some(users) = self.users {
            s.population.users = users;
        }
        if let Some(days) = self.days {
            s.population.days = days;
        }
        let errors = s.validate();
        if !errors.is_empty() {
            bail!("scenario {}:\n  - {}", s.name, errors.join("\n  - "));
        }
        Ok(s)
    }
}

/// The options of `keyshift simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// The scenario to simulate and its overrides.
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    /// `http://host:port` (a keyshift collector), `kafka://host:port/topic`,
    /// a file path, or `-` for standard output.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub to: String,
    /// Bearer token for the collector and the rollout API.
    #[arg(long, env = "KEYSHIFT_TOKEN")]
    pub token: Option<String>,
    /// Where the users' assignments come from: a keyshift server whose
    /// `GET /v1/rollouts/{id}` is read every simulated hour [default: the
    /// `--to` URL when it is one].
    #[arg(long)]
    pub assign_from: Option<String>,
    /// Without a server: serve this fixed exposure (percent) instead.
    #[arg(long)]
    pub percent: Option<f64>,
    /// Simulated seconds per wall-clock second (1440: a day a minute);
    /// 0: as fast as the sink takes them.
    #[arg(long, default_value_t = 0.0)]
    pub speed: f64,
    /// First simulated hour, RFC 3339 [default: the last UTC midnight − the
    /// scenario's days].
    #[arg(long)]
    pub start: Option<String>,
}

/// The default start: whole UTC days (the KPIs' day buckets), ending at
/// the last midnight.
pub fn default_start(days: u32, now: DateTime<Utc>) -> DateTime<Utc> {
    let midnight = now.duration_trunc(chrono::Duration::days(1)).unwrap_or(now);
    midnight - chrono::Duration::days(i64::from(days))
}

/// Hands a simulated hour to the sink, holding it back while the
/// scenario's pipeline is down (the relying party buffers and delivers
/// late).
#[derive(Debug, Default)]
pub struct Delivery {
    backlog: Vec<String>,
    /// Events handed to the sink so far (late ones included).
    pub sent: u64,
    /// Events that were held back by an outage before being sent.
    pub late: u64,
}

impl Delivery {
    /// `true` when the hour (and any backlog) was delivered.
    pub async fn hour(&mut self, sink: &mut Sink, hour: Hour) -> anyhow::Result<bool> {
        if hour.ingest_down {
            self.late += hour.lines.len() as u64;
            self.backlog.extend(hour.lines);
            return Ok(false);
        }
        let mut lines = std::mem::take(&mut self.backlog);
        lines.extend(hour.lines);
        sink.send(&lines).await?;
        self.sent += lines.len() as u64;
        Ok(true)
    }

    /// Sends whatever an outage still holds (at the end of a run).
    pub async fn flush(&mut self, sink: &mut Sink) -> anyhow::Result<()> {
        let lines = std::mem::take(&mut self.backlog);
        if !lines.is_empty() {
            sink.send(&lines).await?;
            self.sent += lines.len() as u64;
        }
        Ok(())
    }
}

/// Reads the exposure in force from a keyshift server.
async fn fetch_exposure(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    rollout: &str,
) -> anyhow::Result<Option<Exposure>> {
    let url = format!("{}/v1/rollouts/{rollout}", base.trim_end_matches('/'));
    let mut req = client.get(&url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.with_context(|| format!("GET {url}"))?;
    if resp.status().as_u16() == 404 {
        return Ok(None);
    }
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("GET {url}: {status} {v}");
    }
    let percent = v["percent"].as_f64().unwrap_or(0.0);
    Ok(Some(Exposure {
        rollout_id: rollout.to_owned(),
        group_id: v["state"]["group_id"]
            .as_str()
            .unwrap_or(rollout)
            .to_owned(),
        percent: basis(percent),
    }))
}

/// Percent → hundredths of a percent.
pub fn basis(percent: f64) -> u32 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let b = (percent * 100.0).round().clamp(0.0, 10_000.0) as u32;
    b
}

/// What a `keyshift simulate` run did.
#[derive(Debug, serde::Serialize)]
pub struct SimulateReport {
    /// The scenario's name.
    pub scenario: String,
    /// The seed the run used (the scenario's, or `--seed`).
    pub seed: u64,
    /// The first simulated hour.
    pub start: DateTime<Utc>,
    /// Simulated hours run; fewer than the scenario's when interrupted.
    pub hours: u32,
    /// Events sent to the sink.
    pub events: u64,
    /// Of those, events held back by a simulated outage and sent late.
    pub late_events: u64,
    /// Wall-clock duration of the run, in seconds.
    pub seconds: f64,
}

impl std::fmt::Display for SimulateReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "scenario {} (seed {}): {} simulated hours from {}, {} events sent ({} of them late) in {:.1} s",
            self.scenario,
            self.seed,
            self.hours,
            self.start.to_rfc3339(),
            self.events,
            self.late_events,
            self.seconds
        )
    }
}

/// Runs the simulation `args` describes, hour by hour, paced by `--speed`,
/// until the scenario's days are done or `shutdown` is cancelled; whatever
/// an outage still holds is sent before it returns.
pub async fn run_simulate(
    args: &SimulateArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<SimulateReport> {
    let scenario = args.scenario.load()?;
    if !(args.speed.is_finite() && args.speed >= 0.0) {
        bail!("--speed must be 0 (unpaced) or a positive number");
    }
    let start = match &args.start {
        Some(s) => DateTime::parse_from_rfc3339(s)
            .with_context(|| format!("--start {s:?} is not RFC 3339"))?
            .with_timezone(&Utc),
        None => default_start(scenario.population.days, Utc::now()),
    };
    let rollout = scenario.rollouts.first().map(|r| r.id.clone());
    let assign_from = args.assign_from.clone().or_else(|| {
        (args.to.starts_with("http://") || args.to.starts_with("https://")).then(|| args.to.clone())
    });
    let fixed = match (args.percent, &rollout) {
        (Some(p), Some(id)) => Some(Exposure {
            rollout_id: id.clone(),
            group_id: id.clone(),
            percent: basis(p),
        }),
        _ => None,
    };
    let mut sink = Sink::open(&args.to, args.token.clone())?;
    let client = reqwest::Client::new();
    let (seed, name) = (scenario.seed, scenario.name.clone());
    let mut sim = Simulator::new(scenario, start);
    let mut delivery = Delivery::default();
    let began = Instant::now();
    while !sim.done() && !shutdown.is_cancelled() {
        let exposure = match (&fixed, &assign_from, &rollout) {
            (Some(e), _, _) => Some(e.clone()),
            (None, Some(base), Some(id)) => {
                fetch_exposure(&client, base, args.token.as_deref(), id).await?
            }
            _ => None,
        };
        let hour = sim.next_hour(exposure.as_ref());
        let index = hour.index;
        delivery.hour(&mut sink, hour).await?;
        if args.speed > 0.0 {
            let due = began + Duration::from_secs_f64(f64::from(index + 1) * 3600.0 / args.speed);
            tokio::select! {
                () = tokio::time::sleep_until(due.into()) => {}
                () = shutdown.cancelled() => {}
            }
        }
    }
    delivery.flush(&mut sink).await?;
    Ok(SimulateReport {
        scenario: name,
        seed,
        start,
        // Fewer than the scenario's when interrupted.
        hours: u32::try_from((sim.now() - start).num_hours()).unwrap_or(0),
        events: delivery.sent,
        late_events: delivery.late,
        seconds: began.elapsed().as_secs_f64(),
    })
}
