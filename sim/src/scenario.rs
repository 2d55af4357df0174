//! Scenario files: a population, its behaviour, the incidents that happen to
//! it, and the rollout the demo's controller runs over it. The shipped
//! scenarios live in `config/scenarios/` and are compiled in, so
//! `--scenario healthy` works from any directory; a path loads a file.

use std::time::Duration;

use keyshift_rollout::RolloutConfig;
use serde::Deserialize;

use crate::behaviour::Behaviour;
use crate::{Result, SimError};

/// The scenarios shipped with keyshift: `(name, TOML)`.
pub const SHIPPED: [(&str, &str); 5] = [
    (
        "healthy",
        include_str!("../../config/scenarios/healthy.toml"),
    ),
    (
        "browser-regression",
        include_str!("../../config/scenarios/browser-regression.toml"),
    ),
    (
        "recovery-attack",
        include_str!("../../config/scenarios/recovery-attack.toml"),
    ),
    (
        "no-support",
        include_str!("../../config/scenarios/no-support.toml"),
    ),
    (
        "stale-pipeline",
        include_str!("../../config/scenarios/stale-pipeline.toml"),
    ),
];

/// Recovery channels and methods schema v1 accepts.
const CHANNELS: [&str; 6] = [
    "email",
    "sms",
    "recovery_code",
    "second_authenticator",
    "helpdesk",
    "identity_verification",
];
const METHODS: [&str; 7] = [
    "passkey",
    "password",
    "password_otp",
    "magic_link",
    "recovery_code",
    "federated",
    "other",
];

/// A scenario: who is simulated, how they behave, what goes wrong, and the
/// rollouts of the demo.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A shipped scenario this one starts from: its tables are merged key
    /// by key, and a list given here (platforms, incidents, rollouts)
    /// replaces the base's.
    #[serde(default)]
    pub base: Option<String>,
    /// The scenario's name; a shipped one's is its name in [`SHIPPED`].
    pub name: String,
    /// One line: what happens.
    pub summary: String,
    /// What the scenario is meant to show: the controller's expected
    /// reaction and where to see it.
    pub expect: String,
    /// Seeds the random generator (default 42): the same seed gives the
    /// same events.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Who is simulated.
    pub population: Population,
    /// The model's rates; each one not given keeps its default.
    #[serde(default)]
    pub behaviour: Behaviour,
    /// What goes wrong, and when (nothing by default).
    #[serde(default)]
    pub incidents: Vec<Incident>,
    /// The rollouts the demo's controller runs (the `[[rollout.rollouts]]`
    /// of a keyshift configuration). `keyshift simulate` reads their state
    /// from the server instead.
    #[serde(default)]
    pub rollouts: Vec<RolloutConfig>,
}

fn default_seed() -> u64 {
    42
}

/// The users of one relying party.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Population {
    /// The relying party every event is for.
    pub rp_id: String,
    /// How many users (at least 1).
    pub users: u32,
    /// Simulated days.
    pub days: u32,
    /// The slices the users are split into (at least one with a positive
    /// share).
    pub platforms: Vec<Platform>,
}

/// One OS/browser/form-factor slice of the users.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// The events' `client.os`.
    pub os: String,
    /// The events' `client.os_version`; `None` leaves it out.
    #[serde(default)]
    pub os_version: Option<String>,
    /// The events' `client.browser`.
    pub browser: String,
    /// The events' `client.browser_version`; `None` leaves it out.
    #[serde(default)]
    pub browser_version: Option<String>,
    /// `desktop`, `mobile`, `tablet` or `other`.
    pub form_factor: String,
    /// Share of the users (the shares are normalised).
    pub share: f64,
    /// Users whose browser has WebAuthn at all.
    #[serde(default = "one")]
    pub webauthn: f64,
    /// Users with a platform authenticator (who can create a passkey here).
    #[serde(default = "one")]
    pub platform_authenticator: f64,
    /// Users whose browser offers conditional mediation (autofill UI).
    #[serde(default = "one")]
    pub conditional_mediation: f64,
    /// Passkeys created here that are synced (BE flag set).
    pub synced: f64,
    /// This platform's passkey error rate; default `behaviour.passkey_error`.
    #[serde(default)]
    pub passkey_error: Option<f64>,
    /// The capability probe reports a platform authenticator that is not
    /// there (old Android WebViews): the relying party offers passkeys to
    /// users who cannot create one.
    #[serde(default)]
    pub misreports_support: bool,
}

fn one() -> f64 {
    1.0
}

/// Something that happens to the population (or to the pipeline) for a
/// while. `start` is counted from the simulation's start.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Incident {
    /// Passkey ceremonies on one browser fail far more often.
    BrowserRegression {
        /// The `client.browser` affected.
        browser: String,
        /// When it begins, counted from the simulation's start.
        #[serde(with = "humantime_serde")]
        start: Duration,
        /// How long it lasts; `None`: to the end of the simulation.
        #[serde(with = "humantime_serde", default)]
        duration: Option<Duration>,
        /// Passkey error rate meanwhile (0..1), unless the platform's own is
        /// higher.
        error_rate: f64,
        /// The DOMException name of those errors.
        error: String,
        /// Only users exposed to the rollout (the new default path) hit it.
        #[serde(default = "yes")]
        treatment_only: bool,
    },
    /// Recovery starts through one channel against many accounts.
    RecoveryBurst {
        /// The recovery channel, one of schema v1's.
        channel: String,
        /// When it begins, counted from the simulation's start.
        #[serde(with = "humantime_serde")]
        start: Duration,
        /// How long it lasts.
        #[serde(with = "humantime_serde")]
        duration: Duration,
        /// Recovery starts per hour, each against a user drawn at random.
        per_hour: u32,
        /// Attacker-driven recoveries mostly fail.
        completion: f64,
    },
    /// The pipeline stops receiving events; they arrive late, in one go,
    /// when it is back.
    IngestOutage {
        /// When it begins, counted from the simulation's start.
        #[serde(with = "humantime_serde")]
        start: Duration,
        /// How long it lasts.
        #[serde(with = "humantime_serde")]
        duration: Duration,
    },
}

fn yes() -> bool {
    true
}

impl Scenario {
    /// A shipped scenario by name, or a scenario file by path.
    pub fn load(name_or_path: &str) -> Result<Self> {
        if let Some((name, text)) = SHIPPED.iter().find(|(n, _)| *n == name_or_path) {
            return Self::parse(name, text);
        }
        let looks_like_path = name_or_path.contains('/') || name_or_path.ends_with(".toml");
        if !looks_like_path {
            return Err(SimError::UnknownScenario {
                name: name_or_path.to_owned(),
                known: SHIPPED.map(|(n, _)| n).join(", "),
            });
        }
        let text = std::fs::read_to_string(name_or_path).map_err(|source| SimError::Read {
            path: name_or_path.to_owned(),
            source,
        })?;
        Self::parse(name_or_path, &text)
    }

    /// Parses and validates a scenario; every problem is reported at once.
    pub fn parse(name: &str, text: &str) -> Result<Self> {
        let parse_error = |e| SimError::Parse {
            name: name.to_owned(),
            source: Box::new(e),
        };
        let value: toml::Table = toml::from_str(text).map_err(parse_error)?;
        let value = resolve(name, value, 0)?;
        let s = Scenario::deserialize(value).map_err(parse_error)?;
        let errors = s.validate();
        if errors.is_empty() {
            Ok(s)
        } else {
            Err(SimError::Invalid {
                name: name.to_owned(),
                errors,
            })
        }
    }

    /// Every problem with the scenario, one sentence each; empty if it is valid.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let p = &self.population;
        if p.users == 0 || p.days == 0 {
            errors.push("population: users and days must be at least 1".to_owned());
        }
        if p.platforms.is_empty() || p.platforms.iter().map(|x| x.share).sum::<f64>() <= 0.0 {
            errors.push("population.platforms: at least one with a positive share".to_owned());
        }
        for (i, x) in p.platforms.iter().enumerate() {
            for (name, v) in [
                ("share", x.share),
                ("webauthn", x.webauthn),
                ("platform_authenticator", x.platform_authenticator),
                ("conditional_mediation", x.conditional_mediation),
                ("synced", x.synced),
                ("passkey_error", x.passkey_error.unwrap_or(0.0)),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    errors.push(format!(
                        "population.platforms[{i}].{name} = {v}: not in 0..1"
                    ));
                }
            }
            if !["desktop", "mobile", "tablet", "other"].contains(&x.form_factor.as_str()) {
                errors.push(format!(
                    "population.platforms[{i}].form_factor {:?}: desktop, mobile, tablet or other",
                    x.form_factor
                ));
            }
        }
        self.behaviour.validate(&mut errors);
        for (c, _) in &self.behaviour.recovery_channels {
            if !CHANNELS.contains(&c.as_str()) {
                errors.push(format!(
                    "behaviour.recovery_channels: {c:?} is not one of {CHANNELS:?}"
                ));
            }
        }
        for (m, _) in &self.behaviour.fallback_to {
            if !METHODS.contains(&m.as_str()) || m == "passkey" {
                errors.push(format!(
                    "behaviour.fallback_to: {m:?} is not a fallback method"
                ));
            }
        }
        for (i, inc) in self.incidents.iter().enumerate() {
            match inc {
                Incident::BrowserRegression { error_rate, .. }
                    if !(0.0..=1.0).contains(error_rate) =>
                {
                    errors.push(format!("incidents[{i}].error_rate: not in 0..1"));
                }
                Incident::RecoveryBurst {
                    channel,
                    completion,
                    ..
                } => {
                    if !CHANNELS.contains(&channel.as_str()) {
                        errors.push(format!(
                            "incidents[{i}].channel {channel:?}: one of {CHANNELS:?}"
                        ));
                    }
                    if !(0.0..=1.0).contains(completion) {
                        errors.push(format!("incidents[{i}].completion: not in 0..1"));
                    }
                }
                _ => {}
            }
        }
        for r in &self.rollouts {
            if r.rp_id != p.rp_id {
                errors.push(format!(
                    "rollout {}: rp_id {:?} is not the population's {:?}",
                    r.id, r.rp_id, p.rp_id
                ));
            }
            r.validate(&mut errors);
        }
        errors
    }

    /// Whether the pipeline is down at `offset` from the start.
    pub fn ingest_down(&self, offset: Duration) -> bool {
        self.incidents.iter().any(|i| match i {
            Incident::IngestOutage { start, duration } => {
                offset >= *start && offset < *start + *duration
            }
            _ => false,
        })
    }
}

/// `table` merged over its base (and the base's base, up to 4 levels).
fn resolve(name: &str, table: toml::Table, depth: usize) -> Result<toml::Table> {
    let Some(base) = table.get("base").and_then(toml::Value::as_str) else {
        return Ok(table);
    };
    if depth >= 4 {
        return Err(SimError::Invalid {
            name: name.to_owned(),
            errors: vec![format!("base {base:?}: more than 4 levels of bases")],
        });
    }
    let Some((_, base_text)) = SHIPPED.iter().find(|(n, _)| *n == base) else {
        return Err(SimError::UnknownScenario {
            name: base.to_owned(),
            known: SHIPPED.map(|(n, _)| n).join(", "),
        });
    };
    let base_table: toml::Table = toml::from_str(base_text).map_err(|e| SimError::Parse {
        name: base.to_owned(),
        source: Box::new(e),
    })?;
    let mut merged = resolve(base, base_table, depth + 1)?;
    merge(&mut merged, table);
    Ok(merged)
}

/// Merges `over` into `base`: tables key by key, anything else replaced.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_scenario_parses_and_validates() {
        for (name, _) in SHIPPED {
            let s = Scenario::load(name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.name, name, "the file's name field matches its name");
            assert!(!s.rollouts.is_empty(), "{name}: the demo needs a rollout");
        }
    }

    #[test]
    fn a_base_is_merged_and_lists_are_replaced() {
        let s = Scenario::load("no-support").expect("no-support");
        assert_eq!(s.population.users, 20_000, "from the base");
        assert_eq!(s.population.platforms.len(), 5, "its own list");
        assert_eq!(s.rollouts.len(), 1, "the base's rollout");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = Scenario::parse("x", "base = \"healthy\"\nname = \"x\"\nspeed = 3\n")
            .expect_err("unknown key")
            .to_string();
        assert!(e.contains("speed"), "{e}");
    }

    #[test]
    fn unknown_names_list_the_shipped_ones() {
        let e = Scenario::load("nope").expect_err("unknown").to_string();
        assert!(e.contains("healthy") && e.contains("stale-pipeline"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = "base = \"healthy\"\nname = \"broken\"\n\
                    [population]\nusers = 0\n[behaviour]\ndaily_active = 3.0\n";
        match Scenario::parse("broken", text) {
            Err(SimError::Invalid { errors, .. }) => {
                assert!(
                    errors.iter().any(|e| e.contains("users and days")),
                    "{errors:?}"
                );
                assert!(
                    errors.iter().any(|e| e.contains("daily_active")),
                    "{errors:?}"
                );
            }
            other => panic!("expected invalid, got {other:?}"),
        }
    }
}
