//! Integration tests against real peers: `stunmap serve` and a real coturn, on loopback only.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "../support/mod.rs"]
mod support;

mod audit;
mod check;
mod common;
mod contrib;
mod control;
mod coturn_interop;
mod engine_runs;
mod explain;
mod host;
mod hostile;
mod lab_reference;
mod nat_cli;
mod nat_lab;
mod nat_loss_lab;
mod nat_more_lab;
mod nat_timing_lab;
mod not_probed;
mod pair;
mod pair_lab;
mod paths_lab;
mod probe_server;
mod prometheus;
mod serve_and_stun;
mod serve_limits;
#[cfg(unix)]
mod signals;
mod sweep_lab;
mod turn;
