//! The simulation loop: one simulated hour at a time, each user may lose a
//! device, need a recovery, or sign in; incidents add their effects. The
//! caller says which rollout exposure is in force for the hour (the
//! controller's current step), so users are served exactly what the
//! controller decided, with the controller's own hash.

use std::time::Duration;

use chrono::{DateTime, Utc};
use keyshift_rollout::assign::{self, Basis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::event::{Emitter, Served, Subject};
use crate::scenario::{Incident, Scenario};

/// The exposure in force: the rollout id, its hashing group and percent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    /// The rollout's id, put in each event's `rollout`.
    pub rollout_id: String,
    /// The hashing group users are assigned by (the controller's salt).
    pub group_id: String,
    /// The share of users exposed, in hundredths of a percent (1 % = 100).
    pub percent: Basis,
}

/// One simulated hour's events.
#[derive(Debug)]
pub struct Hour {
    /// The hour's start on the simulated clock.
    pub at: DateTime<Utc>,
    /// Hours since the simulation's start.
    pub index: u32,
    /// NDJSON lines, in the order they happened within each user.
    pub lines: Vec<String>,
    /// An ingest outage of the scenario: the events are held back.
    pub ingest_down: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub platform: usize,
    pub webauthn: bool,
    pub platform_auth: bool,
    pub conditional: bool,
    pub synced_keys: u8,
    pub bound_keys: u8,
    pub offers: u16,
    pub device: u32,
    pub probed: bool,
}

impl User {
    pub fn holder(&self) -> bool {
        self.synced_keys + self.bound_keys > 0
    }
}

/// A seeded, deterministic population and its clock.
#[derive(Debug)]
pub struct Simulator {
    pub(crate) scenario: Scenario,
    pub(crate) rng: StdRng,
    pub(crate) users: Vec<User>,
    pub(crate) emitter: Emitter,
    start: DateTime<Utc>,
    hour: u32,
    /// `(group_id, bucket per user)`: recomputed when the group changes.
    buckets: Option<(String, Vec<Basis>)>,
}

/// Share of a day's sign-ins in each UTC hour: a daily curve peaking in the
/// afternoon (the weights sum to 1).
fn diurnal(hour: u32) -> f64 {
    let x = 2.0 * std::f64::consts::PI * (f64::from(hour) - 9.0) / 24.0;
    (1.0 + 0.6 * x.sin()) / 24.0
}

impl Simulator {
    /// Builds the population of `scenario` with the simulation starting at
    /// `start` (rounded down to the hour by the caller if it wants whole
    /// hours).
    pub fn new(scenario: Scenario, start: DateTime<Utc>) -> Self {
        let mut rng = StdRng::seed_from_u64(scenario.seed);
        let total: f64 = scenario.population.platforms.iter().map(|p| p.share).sum();
        let b = &scenario.behaviour;
        let users = (0..scenario.population.users)
            .map(|_| {
                let mut x = rng.random::<f64>() * total;
                let mut platform = scenario.population.platforms.len() - 1;
                for (i, p) in scenario.population.platforms.iter().enumerate() {
                    if x < p.share {
                        platform = i;
                        break;
                    }
                    x -= p.share;
                }
                let p = &scenario.population.platforms[platform];
                let webauthn = rng.random_bool(p.webauthn);
                let platform_auth = webauthn && rng.random_bool(p.platform_authenticator);
                let holder = platform_auth && rng.random_bool(b.initial_holders);
                let synced = rng.random_bool(p.synced);
                User {
                    platform,
                    webauthn,
                    platform_auth,
                    conditional: webauthn && rng.random_bool(p.conditional_mediation),
                    synced_keys: u8::from(holder && synced),
                    bound_keys: u8::from(holder && !synced),
                    offers: 0,
                    device: 0,
                    probed: false,
                }
            })
            .collect();
        let prefix = format!("sim{}-", scenario.seed);
        let emitter = Emitter::new(&scenario.population.rp_id, &prefix);
        Self {
            scenario,
            rng,
            users,
            emitter,
            start,
            hour: 0,
            buckets: None,
        }
    }

    /// The scenario being simulated.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// When the first hour starts, on the simulated clock.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// The simulated time now: the start of the next hour to run.
    pub fn now(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::hours(i64::from(self.hour))
    }

    /// How many hours the scenario runs: `population.days` × 24.
    pub fn total_hours(&self) -> u32 {
        self.scenario.population.days * 24
    }

    /// Whether every hour of the scenario has run.
    pub fn done(&self) -> bool {
        self.hour >= self.total_hours()
    }

    /// Runs the next hour under `exposure` (`None`: no rollout field).
    pub fn next_hour(&mut self, exposure: Option<&Exposure>) -> Hour {
        let index = self.hour;
        let at = self.now();
        let offset = Duration::from_secs(u64::from(index) * 3600);
        self.hour += 1;
        if let Some(e) = exposure
            && self.buckets.as_ref().is_none_or(|(g, _)| *g != e.group_id)
        {
            let buckets = (0..self.users.len())
                .map(|u| assign::bucket(&e.group_id, &format!("u{u}")))
                .collect();
            self.buckets = Some((e.group_id.clone(), buckets));
        }
        let b = &self.scenario.behaviour;
        let p_session = (b.daily_active * (1.0 + b.second_sign_in) * diurnal(index % 24)).min(1.0);
        let p_loss = b.device_loss_per_user_year / 8760.0;
        let p_recovery = b.recoveries_per_user_year / 8760.0;
        let holder_factor = b.holder_recovery_factor;
        let regressions: Vec<(String, f64, String, bool)> = self
            .scenario
            .incidents
            .iter()
            .filter_map(|i| match i {
                Incident::BrowserRegression {
                    browser,
                    start,
                    duration,
                    error_rate,
                    error,
                    treatment_only,
                } if offset >= *start && duration.is_none_or(|d| offset < *start + d) => {
                    Some((browser.clone(), *error_rate, error.clone(), *treatment_only))
                }
                _ => None,
            })
            .collect();
        let mut lines = Vec::new();
        if index == 0 {
            self.history(at, &mut lines);
        }
        for u in 0..self.users.len() {
            let mut ctx = self.ctx(u, at, exposure);
            let browser = &self.scenario.population.platforms[self.users[u].platform].browser;
            ctx.regression = regressions
                .iter()
                .find(|(b, _, _, treatment_only)| {
                    b == browser && (ctx.treatment || !treatment_only)
                })
                .map(|(_, rate, error, _)| (*rate, error.clone()));
            if self.rng.random_bool(p_loss) {
                self.device_lost(u, &ctx, &mut lines);
            }
            let p = if self.users[u].holder() {
                p_recovery * holder_factor
            } else {
                p_recovery
            };
            if self.rng.random_bool(p) {
                let t = ctx.at + self.seconds_into_hour();
                let channel = self.pick_channel();
                let completion = self.scenario.behaviour.recovery_completion;
                self.recovery(u, &ctx, t, &channel, completion, &mut lines);
            }
            if self.rng.random_bool(p_session) {
                self.session(u, &ctx, &mut lines);
            }
        }
        self.bursts(offset, exposure, at, &mut lines);
        Hour {
            at,
            index,
            lines,
            ingest_down: self.scenario.ingest_down(offset),
        }
    }

    /// The enrolments of the users who already hold a passkey, dated in the
    /// half year before the start: without them the store would not know
    /// those users hold one (coverage, credential mix, at-risk holders).
    fn history(&mut self, start: DateTime<Utc>, lines: &mut Vec<String>) {
        let ctx = Ctx {
            at: start,
            served: None,
            treatment: false,
            regression: None,
        };
        for u in 0..self.users.len() {
            let (synced, bound) = (self.users[u].synced_keys, self.users[u].bound_keys);
            for is_synced in std::iter::repeat_n(true, synced.into())
                .chain(std::iter::repeat_n(false, bound.into()))
            {
                let at =
                    start - chrono::Duration::minutes(self.rng.random_range(60..180 * 24 * 60));
                let data = serde_json::json!({"credential": {
                    "backup_eligible": is_synced,
                    "backup_state": is_synced,
                    "authenticator_attachment": "platform",
                    "user_verified": true,
                }});
                self.emit(lines, u, &ctx, at, "enrollment.succeeded", None, data);
            }
        }
    }

    /// Recovery bursts of the hour, on accounts drawn at random.
    fn bursts(
        &mut self,
        offset: Duration,
        exposure: Option<&Exposure>,
        at: DateTime<Utc>,
        lines: &mut Vec<String>,
    ) {
        let bursts: Vec<(String, u32, f64)> = self
            .scenario
            .incidents
            .iter()
            .filter_map(|i| match i {
                Incident::RecoveryBurst {
                    channel,
                    start,
                    duration,
                    per_hour,
                    completion,
                } if offset >= *start && offset < *start + *duration => {
                    Some((channel.clone(), *per_hour, *completion))
                }
                _ => None,
            })
            .collect();
        for (channel, n, completion) in bursts {
            for _ in 0..n {
                let u = self.rng.random_range(0..self.users.len());
                let ctx = self.ctx(u, at, exposure);
                let t = at + self.seconds_into_hour();
                self.recovery(u, &ctx, t, &channel, completion, lines);
            }
        }
    }

    pub(crate) fn seconds_into_hour(&mut self) -> chrono::Duration {
        // Sessions start early enough to end within the hour they belong to.
        chrono::Duration::seconds(self.rng.random_range(0..3000))
    }

    /// User `u`'s variant under `exposure` (by the controller's hash), for
    /// an hour starting `at`; no incident yet.
    fn ctx<'a>(&self, u: usize, at: DateTime<Utc>, exposure: Option<&'a Exposure>) -> Ctx<'a> {
        let treatment = match (exposure, &self.buckets) {
            (Some(e), Some((_, buckets))) => assign::enabled(buckets[u], e.percent),
            _ => false,
        };
        Ctx {
            at,
            served: exposure.map(|e| Served {
                rollout_id: &e.rollout_id,
                treatment,
                percent: f64::from(e.percent) / 100.0,
            }),
            treatment,
            regression: None,
        }
    }

    /// Emits one event about user `u`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn emit(
        &mut self,
        out: &mut Vec<String>,
        u: usize,
        ctx: &Ctx<'_>,
        at: DateTime<Utc>,
        event_type: &str,
        attempt: Option<&str>,
        data: serde_json::Value,
    ) {
        let user = &self.users[u];
        let who = Subject {
            user: u32::try_from(u).unwrap_or(u32::MAX),
            device: user.device,
            platform: &self.scenario.population.platforms[user.platform],
            served: ctx.served,
        };
        self.emitter.emit(out, who, at, event_type, attempt, data);
    }
}

/// What holds for every user in one hour.
#[derive(Debug, Clone)]
pub(crate) struct Ctx<'a> {
    pub at: DateTime<Utc>,
    pub served: Option<Served<'a>>,
    pub treatment: bool,
    /// A browser regression hitting this user: error rate and name.
    pub regression: Option<(f64, String)>,
}

/// `(name, weight)` pick.
pub(crate) fn pick<'a>(rng: &mut StdRng, items: &'a [(String, f64)]) -> &'a str {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for (item, w) in items {
        if x < *w {
            return item;
        }
        x -= w;
    }
    items.last().map_or("", |(i, _)| i.as_str())
}
