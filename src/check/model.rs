//! The report of `stunmap check` (schema `stunmap.check/1`, docs/schema/check-v1.json): typed,
//! serializable values that every renderer (human, JSON, NDJSON, Prometheus, HTML) reads.
//!
//! Nothing secret is ever stored here: TURN user names, passwords and secrets stay in the
//! check's configuration.

use std::net::IpAddr;

use probes::finding::Fix;
use probes::nat::{Classification, Level};
use probes::profile::ServiceKind;
use serde::Serialize;

/// The schema id written into every JSON report.
pub(crate) const SCHEMA: &str = "stunmap.check/1";

/// How one check (or a whole service) went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum State {
    /// It works.
    Ok,
    /// It works partly, or only through a fallback.
    Degraded,
    /// It does not work.
    Blocked,
    /// Not checked (no credentials, a wildcard name, no route for the family, deadline).
    Skipped,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Degraded => "degraded",
            State::Blocked => "blocked",
            State::Skipped => "skipped",
        }
    }

    /// The state of a service from its rows: skipped rows do not count; all ok → ok, none ok →
    /// blocked (degraded rows count half).
    pub(crate) fn combine(rows: impl Iterator<Item = State>) -> State {
        let (mut ok, mut degraded, mut blocked) = (0, 0, 0);
        for s in rows {
            match s {
                State::Ok => ok += 1,
                State::Degraded => degraded += 1,
                State::Blocked => blocked += 1,
                State::Skipped => {}
            }
        }
        match (ok, degraded, blocked) {
            (0, 0, 0) => State::Skipped,
            (_, 0, 0) => State::Ok,
            (0, 0, _) => State::Blocked,
            _ => State::Degraded,
        }
    }
}

/// The transport a check used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Transport {
    /// A DNS lookup (UDP to the resolver).
    Dns,
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// QUIC over UDP.
    Quic,
}

impl Transport {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Transport::Dns => "dns",
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Quic => "quic",
        }
    }
}

/// One row of a service's table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Row {
    /// What was tried: `dns`, `stun`, `turn`, `grpc`, `websocket`, `quic`, `tcp-sample`.
    pub(crate) probe: &'static str,
    /// Transport.
    pub(crate) transport: Transport,
    /// Port (none for DNS).
    pub(crate) port: Option<u16>,
    /// The name (or address) from the profile.
    pub(crate) host: String,
    /// The address contacted.
    pub(crate) address: Option<IpAddr>,
    /// How it went.
    pub(crate) state: State,
    /// Round-trip or handshake time, seconds.
    pub(crate) rtt_seconds: Option<f64>,
    /// One line for people.
    pub(crate) detail: String,
}

/// One service of the profile, checked.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct ServiceReport {
    /// The profile's name for it ("P2P (STUN)").
    pub(crate) name: String,
    /// Its kind.
    pub(crate) kind: ServiceKind,
    /// Hosts as written in the profile.
    pub(crate) hosts: Vec<String>,
    /// Overall state.
    pub(crate) state: State,
    /// The rows, in a stable order.
    pub(crate) checks: Vec<Row>,
}

/// One sampled TCP port.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct SampledPort {
    /// Port.
    pub(crate) port: u16,
    /// `open`, `refused`, `filtered`, `unreachable`.
    pub(crate) state: &'static str,
    /// A STUN server answered over the connection (a real TURN listener, not a middlebox).
    pub(crate) stun: bool,
    /// Connect time, seconds.
    pub(crate) connect_seconds: Option<f64>,
}

/// The TCP sample of a TURN service's range.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct TcpSample {
    /// The service it belongs to.
    pub(crate) service: String,
    /// The host sampled.
    pub(crate) host: String,
    /// Its address.
    pub(crate) address: IpAddr,
    /// First port of the range.
    pub(crate) range_start: u16,
    /// Last port of the range.
    pub(crate) range_end: u16,
    /// Seed of the sample (repeat with `--seed`).
    pub(crate) seed: u64,
    /// Counts.
    pub(crate) open: usize,
    /// Counts.
    pub(crate) refused: usize,
    /// Counts.
    pub(crate) filtered: usize,
    /// Counts.
    pub(crate) unreachable: usize,
    /// The sweep's one-line summary.
    pub(crate) summary: String,
    /// Every port tried.
    pub(crate) ports: Vec<SampledPort>,
}

/// Relay round-trip time through a real allocation (needs credentials).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct RelayRtt {
    /// The TURN service.
    pub(crate) service: String,
    /// Transport.
    pub(crate) transport: Transport,
    /// The server.
    pub(crate) server: std::net::SocketAddr,
    /// Packets looped.
    pub(crate) sent: u32,
    /// Packets back.
    pub(crate) received: u32,
    /// Relay RTT, seconds.
    pub(crate) rtt: Option<engine::stats::RttSummary>,
    /// Direct RTT to the server, seconds (median).
    pub(crate) direct_median_seconds: Option<f64>,
    /// Why there is no RTT.
    pub(crate) error: Option<String>,
}

/// The verdict, first thing in every output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Verdict {
    /// `ok`, `degraded` or `blocked` (the exit code's meaning).
    pub(crate) status: State,
    /// The NAT classifier's level (direct … blocked), after the port and control findings.
    pub(crate) level: Level,
    /// The process exit code this report gives.
    pub(crate) exit_code: u8,
    /// One line.
    pub(crate) headline: String,
    /// Why.
    pub(crate) reasons: Vec<String>,
}

/// Where the profile came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct ProfileInfo {
    /// Its name.
    pub(crate) name: String,
    /// `embedded`, a file path, or `command line`.
    pub(crate) source: String,
    /// Its description.
    pub(crate) description: Option<String>,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct CheckReport {
    /// [`SCHEMA`].
    pub(crate) schema: &'static str,
    /// stunmap's version.
    pub(crate) stunmap_version: &'static str,
    /// The profile.
    pub(crate) profile: ProfileInfo,
    /// Wall-clock start, seconds since the Unix epoch.
    pub(crate) started_unix_seconds: f64,
    /// Run time.
    pub(crate) elapsed_seconds: f64,
    /// Stopped by a signal: partial results.
    pub(crate) interrupted: bool,
    /// Stopped by `--deadline`: partial results.
    pub(crate) deadline_reached: bool,
    /// The verdict.
    pub(crate) verdict: Verdict,
    /// One table per service, in profile order.
    pub(crate) services: Vec<ServiceReport>,
    /// The TCP samples (TURN ranges).
    pub(crate) tcp_samples: Vec<TcpSample>,
    /// NAT behaviour and the P2P verdict (none without a reachable STUN server).
    pub(crate) nat: Option<Classification>,
    /// Relay RTT (with credentials).
    pub(crate) relay_rtt: Vec<RelayRtt>,
    /// What to change, in the reference page's terms.
    pub(crate) fixes: Vec<Fix>,
    /// Notes on what was assumed or skipped.
    pub(crate) notes: Vec<String>,
}

impl CheckReport {
    /// Every row of every service.
    pub(crate) fn rows(&self) -> impl Iterator<Item = (&ServiceReport, &Row)> {
        self.services
            .iter()
            .flat_map(|s| s.checks.iter().map(move |r| (s, r)))
    }
}

/// What a running check reports as it goes (`--ndjson`, the progress bar).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub(crate) enum Event {
    /// The run started.
    Start {
        /// Schema of the events.
        schema: &'static str,
        /// The profile.
        profile: String,
        /// Checks planned (approximate: DNS decides the rest).
        planned: usize,
    },
    /// A row is known.
    Check {
        /// The service.
        service: String,
        /// The row.
        #[serde(flatten)]
        row: Row,
    },
    /// A sampled TCP port is known.
    TcpPort {
        /// The service.
        service: String,
        /// The port.
        #[serde(flatten)]
        port: SampledPort,
    },
    /// A phase finished (`dns`, `control`, `stun`, `turn`, `tcp-sample`, `nat`, `relay-rtt`).
    Phase {
        /// Its name.
        phase: &'static str,
        /// Seconds since the start.
        elapsed_seconds: f64,
    },
}
