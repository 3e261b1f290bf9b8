//! The async runtime of stunmap: the only crate with sockets, clocks and tasks.
//!
//! It drives the sans-IO probe machines of `probes` over batched UDP (`quinn-udp`: recvmmsg and
//! GRO on receive, GSO on send), routes replies to probes by STUN transaction id, keeps their
//! timers, enforces the run's limits (packet rate, in-flight cap, deadline) and reports events
//! as they happen. See ARCHITECTURE.md for the drive loop and its invariants.

pub mod bench;
pub mod captive;
pub mod clock;
pub mod connect;
pub mod control;
pub mod driver;
#[cfg(target_os = "linux")]
pub mod epoll;
pub mod fd;
pub mod ice;
#[cfg(target_os = "linux")]
pub mod mmsg;
pub mod netif;
pub mod pmtu;
pub mod portmap;
pub mod rate;
pub mod rendezvous;
pub mod route;
pub mod scan;
pub mod source;
pub mod stats;
pub mod stream;
#[cfg(target_os = "linux")]
pub mod syn;
#[cfg(not(target_os = "linux"))]
#[path = "syn_unsupported.rs"]
pub mod syn;
pub mod tcp;
pub mod udp;
#[cfg(windows)]
mod winsock;

pub use driver::{
    Cancel, CancelHandle, Counters, EngineError, Event, Limits, RunReport, SendPath, run, run_one,
};
pub use rate::Rate;
