//! `keyshift demo`: the embedded pipeline, the rollout controller and the
//! simulator in one process, on a fresh data dir, with no Kafka and no
//! Docker. The simulator posts each simulated hour to the collector over
//! loopback; the controller is ticked on the simulated clock after every
//! hour, and users are served the exposure it decided. Progress goes to
//! standard error, the summary to standard output.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use keyshift_ingest::IngestWatermark;
use keyshift_rollout::Controller;
use keyshift_sim::{Exposure, Simulator};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::simulate::{Delivery, ScenarioArgs, Sink, default_start};
use crate::{StartOptions, start_with};

mod kpis;
mod summary;

/// The options of `keyshift demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// The scenario to run and its overrides; its first rollout is the one
    /// the controller steers.
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    /// Keep the API (and the status page) up afterwards, until Ctrl-C.
    #[arg(long)]
    pub serve: bool,
    /// Listen address [default: 127.0.0.1:8080 with --serve, else a free
    /// loopback port].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// A new or empty directory [default: a new one under the system's
    /// temporary directory].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

fn fresh_dir(args: &DemoArgs, scenario: &str) -> anyhow::Result<PathBuf> {
    let dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!(
            "keyshift-demo-{scenario}-{}",
            Utc::now().format("%Y%m%dT%H%M%S")
        )),
    };
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} is not empty: the demo writes a fresh data dir (give a new --data-dir)",
            dir.display()
        );
    }
    Ok(dir)
}

/// The simulated clock the controller reads.
#[derive(Debug, Clone)]
struct SimClock(Arc<AtomicI64>);

impl SimClock {
    fn new(at: DateTime<Utc>) -> Self {
        Self(Arc::new(AtomicI64::new(at.timestamp_micros())))
    }
    fn set(&self, at: DateTime<Utc>) {
        self.0.store(at.timestamp_micros(), Ordering::Release);
    }
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.0.load(Ordering::Acquire)).unwrap_or_default()
    }
}

fn exposure_of(controller: &Controller, id: &str) -> Option<Exposure> {
    controller.snapshot(id).map(|s| Exposure {
        rollout_id: id.to_owned(),
        group_id: s.state.group_id.clone(),
        percent: s.state.percent,
    })
}

/// Runs the demo on `base` (which must not name Kafka brokers): the server
/// on a fresh data dir, the scenario's hours fed to it and the controller
/// ticked after each, progress on standard error and the summary written to
/// `out`. With `--serve` it then keeps serving until `shutdown` is cancelled.
pub async fn run_demo(
    base: Config,
    args: &DemoArgs,
    out: &mut (dyn Write + Send),
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let scenario = args.scenario.load()?;
    if base.kafka.brokers.is_some() {
        bail!("the demo runs on the embedded store only: unset kafka.brokers");
    }
    let Some(rollout) = scenario.rollouts.first().cloned() else {
        bail!(
            "scenario {} has no [[rollouts]] for the demo's controller",
            scenario.name
        );
    };
    let data_dir = fresh_dir(args, &scenario.name)?;
    let mut config = base;
    config.server.data_dir = data_dir.clone();
    config.server.listen = args.listen.unwrap_or_else(|| {
        let port = if args.serve { 8080 } else { 0 };
        SocketAddr::from(([127, 0, 0, 1], port))
    });
    config.rollout.rollouts = scenario.rollouts.clone();

    let start = default_start(scenario.population.days, Utc::now());
    let clock = SimClock::new(start);
    let watermark = IngestWatermark::tracked();
    let options = StartOptions {
        clock: {
            let c = clock.clone();
            Arc::new(move || c.now())
        },
        watermark: Some(watermark.clone()),
        run_controller: false,
        ..StartOptions::default()
    };
    let running = start_with(config.clone(), shutdown.clone(), options).await?;
    let base_url = format!("http://{}", running.addr);
    let controller = running
        .controller
        .clone()
        .context("the controller did not start")?;
    let mut sink = Sink::open(&base_url, None)?;
    let client = reqwest::Client::new();
    let mut progress = summary::Progress::new(
        std::io::stderr().is_terminal(),
        &scenario,
        &rollout.id,
        start,
    );
    progress.header(&scenario, &data_dir, &base_url);
    if let Some(d) = controller
        .snapshot(&rollout.id)
        .and_then(|s| s.last_decision)
    {
        progress.decision(&d);
    }

    let mut sim = Simulator::new(scenario.clone(), start);
    let mut delivery = Delivery::default();
    let began = Instant::now();
    while !sim.done() {
        if shutdown.is_cancelled() {
            bail!("interrupted");
        }
        let exposure = exposure_of(&controller, &rollout.id);
        let hour = sim.next_hour(exposure.as_ref());
        let end = hour.at + chrono::Duration::hours(1);
        let index = hour.index;
        if delivery.hour(&mut sink, hour).await? {
            watermark.advance_to(end);
        }
        clock.set(end);
        controller.tick(end).await?;
        let snapshot = controller.snapshot(&rollout.id);
        progress.hour(end, delivery.sent, began.elapsed(), snapshot.as_ref());
        if (index + 1).is_multiple_of(24) {
            let day_kpis = kpis::headline(
                &client,
                &base_url,
                &rollout.rp_id,
                end - chrono::Duration::days(1),
                end,
            )
            .await;
            progress.day((index + 1) / 24, &day_kpis);
        }
    }
    delivery.flush(&mut sink).await?;
    let end = sim.now();
    // Everything sent is committed and nothing more is coming: the store
    // is complete up to now (what `--serve` and the status page report).
    watermark.advance_to(Utc::now());
    let elapsed = began.elapsed();
    let decisions = controller.decisions(&rollout.id).await?;
    let report = summary::Summary {
        scenario: &scenario,
        rollout: &rollout,
        data_dir: &data_dir,
        start,
        end,
        events: delivery.sent,
        late: delivery.late,
        elapsed,
        decisions: &decisions,
        by_variant: kpis::by_variant(&client, &base_url, &rollout.rp_id, start, end).await?,
        recovery_by_day: kpis::recovery_by_day(&client, &base_url, &rollout.rp_id, start, end)
            .await?,
    };
    progress.finish();
    write!(out, "{}", report.render())?;
    if args.serve {
        writeln!(
            out,
            "\nServing the API until Ctrl-C: {base_url}/  (status page), {base_url}/v1/kpis, {base_url}/v1/rollouts, {base_url}/metrics"
        )?;
        out.flush()?;
        return running.wait().await;
    }
    running.stop().await
}
