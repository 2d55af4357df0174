//! keyshift sim: a seeded population of one relying party that emits
//! schema-v1 auth events, hour by simulated hour.
//!
//! - [`scenario`]: scenario files (population, behaviour, incidents, the
//!   demo's rollout) and the shipped ones.
//! - [`behaviour`]: the model's rates, defaults cited from the domain brief.
//! - [`simulator`]: the clock, the population, the exposure in force.
//! - `ceremonies`: what a user does (sign-in, enrollment, recovery).
//! - [`event`]: the NDJSON lines.
//!
//! Everything here is pure: no I/O, no wall clock. The same scenario, seed,
//! start time and exposures give the same lines. Sending them (HTTP, Kafka,
//! a file) is the caller's business.

pub mod behaviour;
mod ceremonies;
mod error;
pub mod event;
pub mod scenario;
pub mod simulator;

pub use error::{Result, SimError};
pub use scenario::Scenario;
pub use simulator::{Exposure, Hour, Simulator};

#[cfg(test)]
mod tests;
