//! keyshift rollout: the controller that moves each relying party's
//! migration stage through its exposure steps.
//!
//! - [`assign`]: which users are exposed (Unleash-compatible hashing).
//! - [`config`]: rollouts, steps and guardrails as configured.
//! - [`stats`]: Wilson intervals, the always-valid confidence sequence for
//!   treatment − control, the sample-ratio-mismatch test.
//! - [`observe`]: what the store says about a rollout's window.
//! - [`evaluate`]: one evaluation, a pure function of config, state,
//!   observations and the clock.
//! - [`decision`]: decisions, the state they fold into, and the log.
//! - [`outcome`]: what an evaluation or operation concluded, before it is
//!   recorded.
//! - [`transition`]: which manual operation is allowed in which phase.
//! - [`controller`]: the running controller.
//! - [`kafka`]: decisions published to Kafka, fenced by a transactional id.
//! - [`api`]: `GET /v1/assign`, `/v1/rollouts…`.

pub mod api;
pub mod assign;
pub mod config;
pub mod controller;
pub mod decision;
mod error;
pub mod evaluate;
pub mod kafka;
pub mod lock;
pub mod metrics;
pub mod observe;
pub mod outcome;
pub mod stats;
pub mod transition;

pub use config::{RolloutConfig, RolloutSettings};
pub use controller::Controller;
pub use error::{Result, RolloutError};
