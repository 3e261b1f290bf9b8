//! Integration tests against real peers: `stunmap serve` and a real coturn, on loopback only.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod coturn_interop;
mod engine_runs;
mod serve_and_stun;
mod turn;
