//! The report of `stunmap check` (schema `stunmap.check/1`, docs/schema/check-v1.json): typed,
//! serializable values that every renderer reads.
//!
//! Every row carries a typed [`RowOutcome`] (the machine-readable result, `outcome` in the
//! JSON, with a `code`) and, beside it, `detail`: the same result in words, written by the
//! outcome's `Display`. Nothing secret is ever stored here: TURN user names, passwords and
//! secrets stay in the check's configuration.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use probes::control::assess::PathFacts;
use probes::control::dns::Lookup;
use probes::control::relay::QuicOutcome;
use probes::finding::Fix;
use probes::nat::{Classification, Level};
use probes::netbird::{PeerFinding, UriComparison};
use probes::profile::ServiceKind;
use probes::sweep::TcpState;
use serde::Serialize;

use crate::report::words;

/// The schema id written into every JSON report.
pub(crate) const SCHEMA: &str = "stunmap.check/1";

pub(crate) use probes::finding::Status;

/// What a row tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ProbeKind {
    /// A name lookup.
    Dns,
    /// A gRPC request over TLS (management, signal).
    Grpc,
    /// A WebSocket upgrade over TLS (relay).
    Websocket,
    /// A QUIC handshake (relay).
    Quic,
    /// A STUN Binding.
    Stun,
    /// A TURN Allocate.
    Turn,
    /// The TCP sample of a port range.
    TcpSample,
}

impl ProbeKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Dns => "dns",
            ProbeKind::Grpc => "grpc",
            ProbeKind::Websocket => "websocket",
            ProbeKind::Quic => "quic",
            ProbeKind::Stun => "stun",
            ProbeKind::Turn => "turn",
            ProbeKind::TcpSample => "tcp-sample",
        }
    }
}

pub(crate) use probes::Transport;

/// A row's transport in the JSON: the transport's name, or `dns` for a lookup (schema v1).
fn transport_or_dns<S: serde::Serializer>(t: &Option<Transport>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(t.map_or("dns", Transport::as_str))
}

/// Why a check did not run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "reason")]
pub(crate) enum NotRun {
    /// The run was stopped (signal or deadline) before it.
    Stopped,
    /// The host has no address at all (its name did not resolve).
    NoAddress {
        /// The host.
        host: String,
    },
    /// The host's addresses have no route from this machine (or only a family it lacks).
    NoRoute {
        /// The host.
        host: String,
        /// Its addresses.
        addresses: Vec<IpAddr>,
        /// What the routing table said.
        error: String,
    },
    /// A wildcard relay name: the management service hands out the real one.
    Wildcard {
        /// The pattern.
        pattern: String,
    },
    /// TLS could not be set up (a bad `--ca` file).
    TlsSetup {
        /// Why.
        message: String,
    },
    /// The engine could not run the probe (a socket could not be bound).
    Engine {
        /// Why.
        message: String,
    },
}

impl fmt::Display for NotRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotRun::Stopped => f.write_str("not finished: stopped"),
            NotRun::NoAddress { host } => write!(f, "not probed: {host} has no usable address"),
            NotRun::NoRoute {
                host,
                addresses,
                error,
            } => {
                let list: Vec<String> = addresses
                    .iter()
                    .map(ToString::to_string)
                    .filter(|a| a != host)
                    .collect();
                if list.is_empty() {
                    write!(f, "not probed: no route to {host}: {error}")
                } else {
                    write!(
                        f,
                        "not probed: no route to {host} ({}): {error}",
                        list.join(" ")
                    )
                }
            }
            NotRun::Wildcard { pattern } => write!(
                f,
                "{pattern} is a wildcard: the management service hands out the relay's name (`netbird status -d` shows it); check it with --relay NAME"
            ),
            NotRun::TlsSetup { message } => write!(f, "TLS setup: {message}"),
            NotRun::Engine { message } => write!(f, "not run: {message}"),
        }
    }
}

/// How a TCP connection attempt failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "how")]
pub(crate) enum ConnectFailure {
    /// RST.
    Refused,
    /// No answer: dropped.
    Timeout,
    /// ICMP unreachable or no route.
    Unreachable,
    /// Another error.
    Error {
        /// The OS's words.
        message: String,
    },
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectFailure::Refused => f.write_str("connection refused"),
            ConnectFailure::Timeout => f.write_str("connect timed out: dropped"),
            ConnectFailure::Unreachable => f.write_str("unreachable"),
            ConnectFailure::Error { message } => write!(f, "connect: {message}"),
        }
    }
}

/// The typed result of one row (`outcome` in the JSON; `code` names the variant).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "code")]
pub(crate) enum RowOutcome {
    /// A name resolved (or was given with `--resolve`).
    Resolved {
        /// The addresses.
        addresses: Vec<IpAddr>,
        /// They came from `--resolve`.
        overridden: bool,
    },
    /// A name did not resolve.
    Unresolved {
        /// The name.
        name: String,
        /// The A lookup.
        a: Lookup,
        /// The AAAA lookup.
        aaaa: Lookup,
    },
    /// A STUN server answered a Binding request.
    Answered {
        /// XOR-MAPPED-ADDRESS (else MAPPED-ADDRESS).
        mapped: Option<SocketAddr>,
    },
    /// A STUN server answered with an error response.
    ErrorResponse {
        /// ERROR-CODE.
        error_code: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// No answer to any retransmission.
    Silent,
    /// A TURN server did not answer the Allocate.
    NoAnswer,
    /// ICMP port unreachable.
    PortUnreachable,
    /// ICMP host/network unreachable or prohibited.
    Unreachable,
    /// The request could not be sent.
    SendFailed {
        /// Why.
        message: String,
    },
    /// A TURN server allocated.
    Allocated {
        /// XOR-RELAYED-ADDRESS.
        relayed: Option<SocketAddr>,
        /// The release was confirmed.
        released: bool,
    },
    /// A TURN server answered 401 with REALM and NONCE; no credentials were given.
    AuthRequired,
    /// A TURN server refused the Allocate.
    Rejected {
        /// ERROR-CODE.
        error_code: u16,
        /// Its reason phrase.
        reason: String,
        /// Whether an earlier allocation of the session was released (true when none).
        released: bool,
    },
    /// The TCP connection for STUN/TURN failed.
    ConnectFailed {
        /// How.
        failure: ConnectFailure,
    },
    /// Connected, but no TURN answer came over the stream.
    NoStreamAnswer {
        /// Why the stream ended, if known.
        error: Option<String>,
    },
    /// A control-plane endpoint's path (TCP, TLS, ALPN, gRPC or WebSocket).
    Control {
        /// What each step found.
        facts: Box<PathFacts>,
        /// gRPC (management, signal) or not (relay).
        grpc: bool,
    },
    /// A control-plane endpoint without a path to try.
    NotConnected {
        /// Why.
        why: String,
    },
    /// A QUIC handshake.
    Quic {
        /// What happened.
        outcome: QuicOutcome,
    },
    /// The TCP sample of a range.
    Sample {
        /// First port of the range.
        range_start: u16,
        /// Last port.
        range_end: u16,
        /// Ports sampled.
        sampled: usize,
        /// Open.
        open: usize,
        /// Refused by the server (a RST: the path is open).
        refused: usize,
        /// Filtered or unreachable.
        blocked: usize,
    },
    /// The check did not run.
    NotRun {
        /// Why.
        #[serde(flatten)]
        why: NotRun,
    },
}

impl fmt::Display for RowOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowOutcome::Resolved {
                addresses,
                overridden: true,
            } => write!(f, "{} (--resolve)", words::addresses(addresses)),
            RowOutcome::Resolved { addresses, .. } => f.write_str(&words::addresses(addresses)),
            RowOutcome::Unresolved { name, a, aaaa } => {
                let (ra, raaaa) = (words::lookup_failure(a), words::lookup_failure(aaaa));
                if ra == raaaa {
                    write!(f, "cannot resolve {name}: {ra}")
                } else {
                    write!(f, "cannot resolve {name}: A: {ra}; AAAA: {raaaa}")
                }
            }
            RowOutcome::Answered { mapped: Some(m) } => write!(f, "answered; public address {m}"),
            RowOutcome::Answered { mapped: None } => f.write_str("answered"),
            RowOutcome::ErrorResponse { error_code, reason } => {
                write!(f, "answered with error {error_code} {reason}")
            }
            RowOutcome::Silent => f.write_str(
                "no answer: dropped on the way (or nothing listens and ICMP is filtered)",
            ),
            RowOutcome::NoAnswer => f.write_str("no answer"),
            RowOutcome::PortUnreachable => {
                f.write_str("ICMP port unreachable: nothing listens, or a firewall rejects")
            }
            RowOutcome::Unreachable => {
                f.write_str("ICMP unreachable: no route, or administratively prohibited")
            }
            RowOutcome::SendFailed { message } => write!(f, "cannot send: {message}"),
            RowOutcome::Allocated { relayed, released } => {
                match relayed {
                    Some(a) => write!(f, "allocated (relayed address {a})")?,
                    None => f.write_str("allocated")?,
                }
                if *released {
                    f.write_str(" and released")
                } else {
                    f.write_str("; the allocation was NOT confirmed released")
                }
            }
            RowOutcome::AuthRequired => {
                f.write_str("TURN server present (401 with REALM and NONCE); no credentials given")
            }
            RowOutcome::Rejected {
                error_code,
                reason,
                released,
            } => {
                write!(f, "rejected: {error_code} {reason}")?;
                if !released {
                    f.write_str("; the allocation was NOT confirmed released")?;
                }
                Ok(())
            }
            RowOutcome::ConnectFailed { failure } => failure.fmt(f),
            RowOutcome::NoStreamAnswer { error } => {
                f.write_str("connected, no TURN answer")?;
                if let Some(e) = error {
                    write!(f, ": {e}")?;
                }
                Ok(())
            }
            RowOutcome::Control { facts, grpc } => {
                let role = if *grpc {
                    probes::control::Role::Management
                } else {
                    probes::control::Role::Relay
                };
                f.write_str(&words::path(role, facts))
            }
            RowOutcome::NotConnected { why } => write!(f, "not connected: {why}"),
            RowOutcome::Quic { outcome } => f.write_str(&words::quic(outcome)),
            RowOutcome::Sample {
                range_start,
                range_end,
                sampled,
                open,
                refused,
                blocked,
            } => write!(
                f,
                "{range_start}-{range_end}: {} of {sampled} sampled ports get through ({open} open, {refused} refused by the server, {blocked} filtered)",
                open + refused
            ),
            RowOutcome::NotRun { why } => why.fmt(f),
        }
    }
}

/// One row of a service's table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Row {
    /// What was tried.
    pub(crate) probe: ProbeKind,
    /// Transport (none for a DNS lookup; `dns` in the JSON).
    #[serde(serialize_with = "transport_or_dns")]
    pub(crate) transport: Option<Transport>,
    /// Port (none for DNS).
    pub(crate) port: Option<u16>,
    /// The name (or address) from the profile.
    pub(crate) host: String,
    /// The address contacted.
    pub(crate) address: Option<IpAddr>,
    /// How it went.
    pub(crate) state: Status,
    /// Round-trip or handshake time, seconds.
    pub(crate) rtt_seconds: Option<f64>,
    /// The typed result.
    pub(crate) outcome: RowOutcome,
    /// The result in words (the outcome's `Display`).
    pub(crate) detail: String,
}

impl Row {
    /// A row of `probe` over `transport` to `host`; `detail` is written from `outcome`.
    pub(crate) fn new(
        probe: ProbeKind,
        transport: impl Into<Option<Transport>>,
        host: impl Into<String>,
        state: Status,
        outcome: RowOutcome,
    ) -> Row {
        Row {
            probe,
            transport: transport.into(),
            port: None,
            host: host.into(),
            address: None,
            state,
            rtt_seconds: None,
            detail: outcome.to_string(),
            outcome,
        }
    }

    /// A row of `probe` over `transport` to `host` that was not run, and why: skipped.
    pub(crate) fn not_run(
        probe: ProbeKind,
        transport: impl Into<Option<Transport>>,
        host: impl Into<String>,
        why: NotRun,
    ) -> Row {
        Row::new(
            probe,
            transport,
            host,
            Status::Skipped,
            RowOutcome::NotRun { why },
        )
    }

    /// With its port.
    pub(crate) fn port(mut self, port: Option<u16>) -> Row {
        self.port = port;
        self
    }

    /// With the address contacted.
    pub(crate) fn address(mut self, address: Option<IpAddr>) -> Row {
        self.address = address;
        self
    }

    /// With a round-trip or handshake time.
    pub(crate) fn rtt(mut self, rtt: Option<std::time::Duration>) -> Row {
        self.rtt_seconds = rtt.map(|d| d.as_secs_f64());
        self
    }
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
    pub(crate) state: Status,
    /// The rows, in a stable order.
    pub(crate) checks: Vec<Row>,
}

/// One sampled TCP port.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct SampledPort {
    /// Port.
    pub(crate) port: u16,
    /// `open`, `refused`, `filtered`, `unreachable`.
    pub(crate) state: TcpState,
    /// A STUN server answered over the connection (a real TURN listener, not a middlebox).
    pub(crate) stun: bool,
    /// Connect time, seconds.
    pub(crate) connect_seconds: Option<f64>,
}

impl SampledPort {
    /// Whether the port lets traffic through (the server answered, even with a RST).
    pub(crate) fn passes(&self) -> bool {
        matches!(self.state, TcpState::Open | TcpState::Refused)
    }
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
    pub(crate) server: SocketAddr,
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
    pub(crate) status: Status,
    /// The NAT classifier's level (direct … blocked), after the port and control findings.
    pub(crate) level: Level,
    /// The process exit code this report gives.
    pub(crate) exit_code: crate::exit::Outcome,
    /// One line.
    pub(crate) headline: String,
    /// Why.
    pub(crate) reasons: Vec<String>,
}

/// Where the NetBird status came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub(crate) enum NetbirdSource {
    /// `--netbird-status FILE`.
    File {
        /// The file.
        path: String,
    },
    /// `--netbird-status -`.
    Stdin,
    /// `netbird status --json`, run by stunmap.
    Live {
        /// The `netbird` binary that ran.
        binary: String,
    },
}

impl fmt::Display for NetbirdSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetbirdSource::File { path } => write!(f, "netbird status from {path}"),
            NetbirdSource::Stdin => f.write_str("netbird status from standard input"),
            NetbirdSource::Live { binary } => write!(f, "`{binary} status --json`, read live"),
        }
    }
}

/// What the local NetBird client was given and reports, beside this run's measurements.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct NetbirdSection {
    /// Where the status came from.
    pub(crate) source: NetbirdSource,
    /// The daemon's version.
    pub(crate) daemon_version: Option<String>,
    /// The WireGuard port the client listens on.
    pub(crate) wireguard_port: Option<u16>,
    /// Every URI the client was given: NetBird's own flag beside stunmap's measurement.
    pub(crate) uris: Vec<UriComparison>,
    /// Every peer not connected directly, with the most likely reason and the fix.
    pub(crate) peers: Vec<PeerFinding>,
    /// What the import skipped or assumed.
    pub(crate) notes: Vec<String>,
}

/// How the probes of one address family were bound.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct BoundFamily {
    /// `IPv4` or `IPv6`.
    pub(crate) family: &'static str,
    /// The interface (SO_BINDTODEVICE).
    pub(crate) interface: Option<String>,
    /// The local address.
    pub(crate) address: Option<IpAddr>,
    /// The source port of the first socket.
    pub(crate) source_port: Option<u16>,
    /// Chosen by stunmap to avoid a tunnel (else given with --bind/--interface).
    pub(crate) automatic: bool,
}

/// The captive-portal request and its judgement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct PortalCheck {
    /// What was requested (`http://host/path`).
    pub(crate) url: String,
    /// The address asked.
    pub(crate) address: SocketAddr,
    /// What came back.
    pub(crate) http: probes::path::captive::HttpOutcome,
    /// The judgement.
    pub(crate) portal: probes::path::captive::Portal,
}

/// The MSS of a TCP connection to a relay path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct MssCheck {
    /// The server.
    pub(crate) server: SocketAddr,
    /// The MSS the connection settled on.
    pub(crate) mss: Option<u32>,
    /// The IP packet size that MSS allows before TCP options (MSS + 40 over IPv4, + 60 over
    /// IPv6).
    pub(crate) implied_mtu: Option<u32>,
    /// Why there is none.
    pub(crate) error: Option<String>,
}

/// WireGuard-sized datagrams through the TURN relay (with credentials).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct RelayPathCheck {
    /// The TURN server.
    pub(crate) server: SocketAddr,
    /// UDP payload per datagram (a full WireGuard packet for NetBird's 1280-byte inner MTU).
    pub(crate) payload: usize,
    /// Sent into the relay (Send indications to this host's own second socket).
    pub(crate) sent: u32,
    /// Came back intact.
    pub(crate) received: u32,
    /// Why nothing was measured.
    pub(crate) error: Option<String>,
}

/// The gateway: what it offers, what it says its external address is, and the proof.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct GatewaySection {
    /// The IPv4 gateway of the route to the STUN server.
    pub(crate) gateway: std::net::Ipv4Addr,
    /// NAT-PMP, PCP and UPnP IGD discovery.
    pub(crate) port_mapping: probes::nat::portmap::PortMapping,
    /// The gateway's external address by each protocol.
    pub(crate) external: probes::path::double_nat::GatewayExternal,
    /// One NAT or two.
    pub(crate) double_nat: probes::path::double_nat::NatLayers,
    /// The short-lived mapping, created, verified and deleted.
    pub(crate) mapping: Option<probes::path::mapping::MappingProof>,
}

/// The path facts of a check (docs/paths.md).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct PathsSection {
    /// Every STUN/TURN destination: its route, whether that is a tunnel, what was done.
    pub(crate) routes: Vec<probes::path::route::DestinationPath>,
    /// How the probes were bound, per family (absent: the routing table decided).
    pub(crate) binding: Vec<BoundFamily>,
    /// The captive-portal request.
    pub(crate) captive_portal: Option<PortalCheck>,
    /// Path MTU toward the STUN servers.
    pub(crate) path_mtu: Vec<probes::path::pmtu::PmtuReport>,
    /// The MSS toward the TURN server over TCP.
    pub(crate) tcp_mss: Option<MssCheck>,
    /// WireGuard-sized datagrams through the TURN relay.
    pub(crate) relay_path: Option<RelayPathCheck>,
    /// The gateway (with port mapping on; IPv4).
    pub(crate) gateway: Option<GatewaySection>,
    /// What the path facts mean, most severe first (also folded into the verdict).
    pub(crate) findings: Vec<probes::path::PathFinding>,
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

/// The whole report (the run facts — schema, times, interruption — come from the envelope).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct CheckReport {
    /// The profile.
    pub(crate) profile: ProfileInfo,
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
    /// The local NetBird client's view (with a NetBird status, live or from a file).
    pub(crate) netbird: Option<NetbirdSection>,
    /// The path facts: which way the probes went, a captive portal, the path MTU, the
    /// gateway (double NAT, a proven port mapping). docs/paths.md.
    pub(crate) paths: PathsSection,
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
