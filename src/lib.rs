//! The `keyshift` application: configuration, the embedded server
//! (`keyshift run`), the shell SQL command and the benchmarks. `main.rs` only
//! parses the command line, loads the configuration, starts tracing and calls
//! into here.

pub mod app;
pub mod bench;
pub mod child;
pub mod config;
pub mod demo;
pub mod erase_cmd;
pub mod import;
pub mod kpis_cmd;
pub mod maintain_cmd;
pub mod report_cmd;
pub mod simulate;
pub mod sql_cmd;
pub mod synth;

#[cfg(test)]
mod readme_tests;

pub use app::{
    Clock, Running, StartOptions, run, run_collector, start, start_collector, start_with,
};
pub use config::{Config, Overrides};
