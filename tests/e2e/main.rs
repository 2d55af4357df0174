//! End-to-end tests: the real `keyshift` server on a loopback port, real
//! Delta tables in a temporary data dir, driven over HTTP like a client would.

mod collector;
mod common;
mod demo;
mod errors;
mod import;
mod interop;
mod isolation;
mod kafka;
mod kpi_holders;
mod kpi_rollups;
mod kpis;
mod lifecycle;
mod openapi;
mod prometheus;
mod prometheus_server;
mod report;
mod rollout;
mod s3;
mod security;
mod status_page;
