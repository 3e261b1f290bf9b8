//! From probe results to the report: each result becomes a row (typed outcome, state, RTT),
//! rows become services, and the judge in `probes::check` gives the verdict. Pure: no I/O, no
//! clock.

use std::collections::HashMap;
use std::net::IpAddr;

use engine::control::ControlReport;
use engine::scan::UdpPortOutcome;
use engine::stream::StreamRun;
use engine::tcp::ConnectOutcome;
use probes::binding::BindingStatus;
use probes::check::{CheckFacts, SampleFacts, ServiceFacts};
use probes::control::assess::PathFacts;
use probes::control::http::WsVerdict;
use probes::control::relay::QuicOutcome;
use probes::control::{EndpointReport, Problem, Role};
use probes::finding::{Finding, Severity};
use probes::nat::{Classification, RelayPaths};
use probes::profile::{Profile, ServiceKind};
use probes::sweep::{StunOverTcp, TcpPortResult, summarize_tcp};
use probes::turn::allocate::{AllocateReport, AllocateStatus};
use probes::turn::relay::RelayReport;

use probes::netbird::{Measured, MeasuredState, MeasuredUri};

use super::model::{
    CheckReport, ConnectFailure, NetbirdSection, NotRun, PathsSection, ProbeKind, ProfileInfo,
    RelayRtt, Row, RowOutcome, SampledPort, ServiceReport, Status, TcpSample, Transport, Verdict,
};
use super::plan::{NetbirdInput, SampleTarget, StunTarget, TurnStreamTarget, TurnUdpTarget};
use crate::exit::Outcome;
use probes::nat::NatPresence;
use probes::path::{PathFinding, PathKind};

/// The row of one STUN Binding (`None`: not run because the check was stopped).
pub(crate) fn stun_row(t: &StunTarget, r: Option<std::io::Result<UdpPortOutcome>>) -> Row {
    let (state, outcome, rtt) = match r {
        None => (
            Status::Skipped,
            RowOutcome::NotRun {
                why: NotRun::Stopped,
            },
            None,
        ),
        Some(Ok(UdpPortOutcome::Answered { binding })) => {
            let outcome = match &binding.status {
                BindingStatus::Success(r) => RowOutcome::Answered {
                    mapped: r.mapped_address(),
                },
                BindingStatus::Error { code, reason } => RowOutcome::ErrorResponse {
                    error_code: *code,
                    reason: reason.clone(),
                },
                BindingStatus::Timeout => RowOutcome::Answered { mapped: None },
            };
            (Status::Ok, outcome, binding.rtt)
        }
        Some(Ok(UdpPortOutcome::Silent)) => (Status::Blocked, RowOutcome::Silent, None),
        Some(Ok(UdpPortOutcome::PortUnreachable)) => {
            (Status::Blocked, RowOutcome::PortUnreachable, None)
        }
        Some(Ok(UdpPortOutcome::Unreachable)) => (Status::Blocked, RowOutcome::Unreachable, None),
        Some(Err(e)) => (
            Status::Blocked,
            RowOutcome::SendFailed {
                message: e.to_string(),
            },
            None,
        ),
    };
    Row::new(
        ProbeKind::Stun,
        Transport::Udp,
        t.host.clone(),
        state,
        outcome,
    )
    .port(Some(t.dest.port()))
    .address(Some(t.dest.ip()))
    .rtt(rtt)
}

/// Status and outcome of a finished Allocate.
fn allocate(r: &AllocateReport) -> (Status, RowOutcome) {
    let released = r.release.is_clean();
    let (mut state, outcome) = match &r.status {
        AllocateStatus::Allocated => (
            Status::Ok,
            RowOutcome::Allocated {
                relayed: r.relayed,
                released,
            },
        ),
        AllocateStatus::AuthRequired => (Status::Ok, RowOutcome::AuthRequired),
        AllocateStatus::Rejected { code, reason } => (
            Status::Degraded,
            RowOutcome::Rejected {
                error_code: *code,
                reason: reason.clone(),
                released,
            },
        ),
        AllocateStatus::Timeout => (Status::Blocked, RowOutcome::NoAnswer),
        AllocateStatus::Cancelled => (
            Status::Skipped,
            RowOutcome::NotRun {
                why: NotRun::Stopped,
            },
        ),
    };
    if !released && state != Status::Skipped {
        state = Status::Degraded;
    }
    (state, outcome)
}

/// The rows of the UDP Allocates of one address.
pub(crate) fn turn_udp_rows(
    t: &TurnUdpTarget,
    run: &Result<Vec<Option<AllocateReport>>, String>,
    stopped: bool,
) -> Vec<Row> {
    t.ports
        .iter()
        .enumerate()
        .map(|(k, port)| {
            let report = run
                .as_ref()
                .ok()
                .and_then(|v| v.get(k))
                .and_then(Option::as_ref);
            let (state, outcome, rtt) = match (report, run) {
                (Some(r), _) => {
                    let (s, o) = allocate(r);
                    (s, o, r.allocate_rtt)
                }
                (None, Err(e)) => (
                    Status::Skipped,
                    RowOutcome::NotRun {
                        why: NotRun::Engine { message: e.clone() },
                    },
                    None,
                ),
                (None, Ok(_)) if stopped => (
                    Status::Skipped,
                    RowOutcome::NotRun {
                        why: NotRun::Stopped,
                    },
                    None,
                ),
                (None, Ok(_)) => (Status::Blocked, RowOutcome::NoAnswer, None),
            };
            Row::new(
                ProbeKind::Turn,
                Transport::Udp,
                t.host.clone(),
                state,
                outcome,
            )
            .port(Some(*port))
            .address(Some(t.ip))
            .rtt(rtt)
        })
        .collect()
}

/// The server of the first allocation, where relay RTT is measured.
pub(crate) fn first_allocated(
    run: &Result<Vec<Option<AllocateReport>>, String>,
) -> Option<std::net::SocketAddr> {
    run.as_ref()
        .ok()?
        .iter()
        .flatten()
        .find(|r| r.status == AllocateStatus::Allocated)
        .map(|r| r.server)
}

/// The row of one TCP/TLS Allocate.
pub(crate) fn turn_stream_row(
    t: &TurnStreamTarget,
    run: &Result<StreamRun<AllocateReport>, String>,
) -> Row {
    let transport = if t.transport == Transport::Tls {
        Transport::Tls
    } else {
        Transport::Tcp
    };
    let (state, outcome, rtt) = match run {
        Err(message) => (
            Status::Skipped,
            RowOutcome::NotRun {
                why: NotRun::TlsSetup {
                    message: message.clone(),
                },
            },
            None,
        ),
        Ok(run) => match (&run.connect, &run.output) {
            (_, Some(r)) => {
                let (s, o) = allocate(r);
                (s, o, r.allocate_rtt)
            }
            (ConnectOutcome::Connected { .. }, None) => (
                Status::Blocked,
                RowOutcome::NoStreamAnswer {
                    error: run.error.clone(),
                },
                None,
            ),
            (c, None) => (
                Status::Blocked,
                RowOutcome::ConnectFailed {
                    failure: connect_failure(c),
                },
                None,
            ),
        },
    };
    Row::new(
        ProbeKind::Turn,
        transport,
        t.host.to_string(),
        state,
        outcome,
    )
    .port(Some(t.server.port()))
    .address(Some(t.server.ip()))
    .rtt(rtt)
}

fn connect_failure(c: &ConnectOutcome) -> ConnectFailure {
    match c {
        ConnectOutcome::Refused => ConnectFailure::Refused,
        ConnectOutcome::Timeout => ConnectFailure::Timeout,
        ConnectOutcome::Unreachable => ConnectFailure::Unreachable,
        ConnectOutcome::Error { message } => ConnectFailure::Error {
            message: message.clone(),
        },
        ConnectOutcome::Connected { .. } => ConnectFailure::Error {
            message: "connected".into(),
        },
    }
}

/// A sampled port as the report shows it.
pub(crate) fn sampled(r: &TcpPortResult) -> SampledPort {
    SampledPort {
        port: r.port,
        state: r.state,
        stun: matches!(r.stun, StunOverTcp::Answered { .. }),
        connect_seconds: r.connect_time.map(|d| d.as_secs_f64()),
    }
}

/// The row and the report section of one TCP sample.
pub(crate) fn sample(
    t: &SampleTarget,
    service: &str,
    seed: u64,
    results: &[TcpPortResult],
) -> (Row, TcpSample) {
    let (lo, hi) = t.range;
    let summary = summarize_tcp(lo, hi, results);
    let blocked = summary.filtered + summary.unreachable;
    let state = if results.is_empty() {
        Status::Skipped
    } else if blocked == 0 {
        Status::Ok
    } else if blocked == results.len() {
        Status::Blocked
    } else {
        Status::Degraded
    };
    let row = Row::new(
        ProbeKind::TcpSample,
        Transport::Tcp,
        t.host.clone(),
        state,
        RowOutcome::Sample {
            range_start: lo,
            range_end: hi,
            sampled: results.len(),
            open: summary.open,
            refused: summary.refused,
            blocked,
        },
    )
    .address(Some(t.ip));
    let sample = TcpSample {
        service: service.to_string(),
        host: t.host.clone(),
        address: t.ip,
        range_start: lo,
        range_end: hi,
        seed,
        open: summary.open,
        refused: summary.refused,
        filtered: summary.filtered,
        unreachable: summary.unreachable,
        summary: summary.text.clone(),
        ports: results.iter().map(sampled).collect(),
    };
    (row, sample)
}

fn path_state(p: &PathFacts, endpoint: &EndpointReport) -> Status {
    if p.failure.is_some() {
        return Status::Blocked;
    }
    endpoint.status
}

/// The rows of one control-plane endpoint.
pub(crate) fn control_rows(e: &EndpointReport) -> Vec<Row> {
    let probe = if e.role.is_grpc() {
        ProbeKind::Grpc
    } else {
        ProbeKind::Websocket
    };
    let mut rows = Vec::new();
    for p in &e.paths {
        let rtt = p.tls.as_ref().map(|t| t.handshake_time).or(p.connect_time);
        rows.push(
            Row::new(
                probe,
                Transport::Tls,
                e.name.clone(),
                path_state(p, e),
                RowOutcome::Control {
                    facts: Box::new(p.clone()),
                    grpc: e.role.is_grpc(),
                },
            )
            .port(Some(e.port))
            .address(p.address.map(|a| a.ip()))
            .rtt(rtt),
        );
    }
    if e.paths.is_empty() {
        let why = e
            .problems
            .first()
            .map(|p| p.summary.clone())
            .unwrap_or_else(|| format!("{} has no address", e.name));
        rows.push(
            Row::new(
                probe,
                Transport::Tls,
                e.name.clone(),
                Status::Blocked,
                RowOutcome::NotConnected { why },
            )
            .port(Some(e.port)),
        );
    }
    for q in &e.quic {
        let (state, rtt) = match &q.outcome {
            QuicOutcome::Connected { time, .. } => (Status::Ok, Some(*time)),
            _ => (Status::Blocked, None),
        };
        // A relay reached over WebSocket works without QUIC: degraded, not blocked.
        let state = if state == Status::Blocked && e.status != Status::Blocked {
            Status::Degraded
        } else {
            state
        };
        rows.push(
            Row::new(
                ProbeKind::Quic,
                Transport::Quic,
                e.name.clone(),
                state,
                RowOutcome::Quic {
                    outcome: q.outcome.clone(),
                },
            )
            .port(Some(q.address.port()))
            .address(Some(q.address.ip()))
            .rtt(rtt),
        );
    }
    rows
}

/// The control report's rows per service, its problems that matter, and whether any relay
/// WebSocket upgraded.
pub(crate) fn control(
    report: &ControlReport,
    services: &[usize],
) -> (Vec<(usize, Row)>, Vec<Problem>, Option<bool>) {
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut relay_ws: Option<bool> = None;
    for (e, i) in report.endpoints.iter().zip(services.iter()) {
        if e.role == Role::Relay {
            let ok = e.paths.iter().any(|p| {
                p.websocket
                    .as_ref()
                    .is_some_and(|w| matches!(w.verdict, Some(WsVerdict::Upgraded)))
            });
            relay_ws = Some(relay_ws.unwrap_or(false) || ok);
        }
        rows.extend(control_rows(e).into_iter().map(|r| (*i, r)));
        problems.extend(
            e.problems
                .iter()
                .filter(|p| p.severity != Severity::Info)
                .cloned(),
        );
    }
    (rows, problems, relay_ws)
}

/// The relay paths the classifier weighs: which TURN transports allocated (or answered 401),
/// and whether a relay's WebSocket upgraded.
pub(crate) fn relay_paths(rows: &[(usize, Row)], relay_ws: Option<bool>) -> RelayPaths {
    let any = |t: Transport| -> Option<bool> {
        let v: Vec<bool> = rows
            .iter()
            .filter(|(_, r)| r.probe == ProbeKind::Turn && r.transport == Some(t))
            .filter(|(_, r)| r.state != Status::Skipped)
            .map(|(_, r)| r.state == Status::Ok)
            .collect();
        (!v.is_empty()).then(|| v.iter().any(|x| *x))
    };
    RelayPaths {
        turn_udp: any(Transport::Udp),
        turn_tcp: any(Transport::Tcp),
        turn_tls: any(Transport::Tls),
        relay_tcp443: relay_ws,
    }
}

/// The relay RTT section of one TURN service.
pub(crate) fn relay_rtt(
    service: &str,
    server: std::net::SocketAddr,
    run: Result<Option<RelayReport>, String>,
) -> RelayRtt {
    let mut report = RelayRtt {
        service: service.to_string(),
        transport: Transport::Udp,
        server,
        sent: 0,
        received: 0,
        rtt: None,
        direct_median_seconds: None,
        error: None,
    };
    match run {
        Err(e) => report.error = Some(e),
        Ok(None) => report.error = Some("the relay probe did not finish".into()),
        Ok(Some(res)) => {
            report.sent = res.sent;
            report.received = res.received;
            report.rtt = engine::stats::summarize(&res.samples());
            report.direct_median_seconds = engine::stats::summarize(&res.direct).map(|d| d.median);
            if report.rtt.is_none() {
                report.error = Some(match &res.status {
                    AllocateStatus::Allocated => "no packet came back through the relay".into(),
                    AllocateStatus::Rejected { code, reason } => {
                        format!("allocation rejected: {code} {reason}")
                    }
                    AllocateStatus::AuthRequired => "the server asked for credentials".into(),
                    AllocateStatus::Timeout => "the allocation got no answer".into(),
                    AllocateStatus::Cancelled => "stopped".into(),
                });
            }
        }
    }
    report
}

fn order(probe: ProbeKind) -> u8 {
    match probe {
        ProbeKind::Dns => 0,
        ProbeKind::Grpc | ProbeKind::Websocket => 1,
        ProbeKind::Quic => 2,
        ProbeKind::Stun => 3,
        ProbeKind::Turn => 4,
        ProbeKind::TcpSample => 5,
    }
}

/// The services of the profile with their rows in a stable order and their states.
pub(crate) fn services(profile: &Profile, rows: Vec<(usize, Row)>) -> Vec<ServiceReport> {
    let mut services: Vec<ServiceReport> = profile
        .services
        .iter()
        .map(|s| ServiceReport {
            name: s.name.clone(),
            kind: s.kind,
            hosts: s.hosts.iter().map(ToString::to_string).collect(),
            state: Status::Skipped,
            checks: Vec::new(),
        })
        .collect();
    for (i, row) in rows {
        if let Some(s) = services.get_mut(i) {
            s.checks.push(row);
        }
    }
    for s in &mut services {
        s.checks.sort_by(|a, b| {
            (order(a.probe), a.port, a.address, &a.host).cmp(&(
                order(b.probe),
                b.port,
                b.address,
                &b.host,
            ))
        });
        // DNS is a step towards the real checks: a name that resolves proves nothing about
        // the service, so when nothing else ran the service was not probed (skipped), unless
        // a lookup failed (blocked).
        let main: Vec<Status> = s
            .checks
            .iter()
            .filter(|r| r.probe != ProbeKind::Dns && r.state != Status::Skipped)
            .map(|r| r.state)
            .collect();
        s.state = if !main.is_empty() {
            probes::check::combine(main.into_iter())
        } else if s.checks.iter().any(|r| r.state == Status::Blocked) {
            Status::Blocked
        } else {
            Status::Skipped
        };
    }
    services
}

/// What the judge reads of a service.
fn facts(s: &ServiceReport) -> ServiceFacts {
    let mut f = ServiceFacts::new(s.name.clone(), s.kind, s.hosts.clone(), s.state);
    f.blocked_udp_ports = s
        .checks
        .iter()
        .filter(|r| {
            r.transport == Some(Transport::Udp)
                && matches!(r.probe, ProbeKind::Stun | ProbeKind::Turn)
                && r.state == Status::Blocked
        })
        .filter_map(|r| r.port)
        .collect();
    f.turn_answered = s
        .checks
        .iter()
        .any(|r| r.probe == ProbeKind::Turn && r.state == Status::Ok);
    f.blocked_detail = s
        .checks
        .iter()
        .find(|r| r.state == Status::Blocked)
        .map(|r| r.detail.clone());
    f.relay_skipped =
        s.kind == ServiceKind::Relay && s.checks.iter().any(|r| r.state == Status::Skipped);
    if s.state == Status::Skipped {
        f.not_probed = s
            .checks
            .iter()
            .find(|r| r.state == Status::Skipped)
            .map(|r| r.detail.clone());
    }
    f
}

/// Everything measured, judged.
pub(crate) struct Parts {
    /// Where the profile came from.
    pub(crate) source: String,
    /// The rows.
    pub(crate) rows: Vec<(usize, Row)>,
    /// The TCP samples.
    pub(crate) samples: Vec<TcpSample>,
    /// The NAT classification.
    pub(crate) nat: Option<Classification>,
    /// Relay RTT.
    pub(crate) relay_rtt: Vec<RelayRtt>,
    /// Control-plane problems that matter.
    pub(crate) control_problems: Vec<Problem>,
    /// Addresses per name.
    pub(crate) resolved: HashMap<String, Vec<IpAddr>>,
    /// Notes.
    pub(crate) notes: Vec<String>,
    /// A signal stopped the run.
    pub(crate) interrupted: bool,
    /// The NetBird status the profile came from.
    pub(crate) netbird: Option<NetbirdInput>,
    /// The path facts, judged ([`paths`]).
    pub(crate) paths: PathsSection,
}

/// The report.
pub(crate) fn report(profile: &Profile, parts: Parts) -> CheckReport {
    let services = services(profile, parts.rows);
    let mut samples = parts.samples;
    samples.sort_by_key(|s| (s.service.clone(), s.range_start));
    let service_facts: Vec<ServiceFacts> = services.iter().map(facts).collect();
    let sample_facts: Vec<SampleFacts> = samples
        .iter()
        .map(|s| SampleFacts {
            service: s.service.clone(),
            host: s.host.clone(),
            range_start: s.range_start,
            range_end: s.range_end,
            sampled: s.ports.len(),
            dropped: s.ports.iter().filter(|p| !p.passes()).count(),
        })
        .collect();
    let names = profile.names();
    let mut v = probes::check::judge(&CheckFacts {
        names: &names,
        resolved: &parts.resolved,
        services: &service_facts,
        samples: &sample_facts,
        nat: parts.nat.as_ref(),
        control_problems: &parts.control_problems,
    });
    probes::path::apply(&mut v, &parts.paths.findings);
    let exit_code = if parts.interrupted {
        Outcome::Interrupted
    } else {
        match v.status {
            Status::Ok => Outcome::Ok,
            Status::Degraded => Outcome::Degraded,
            _ => Outcome::Blocked,
        }
    };
    let netbird = parts
        .netbird
        .as_ref()
        .map(|input| netbird(input, &services, parts.nat.as_ref()));
    let mut notes = parts.notes;
    let mut seen = std::collections::HashSet::new();
    notes.retain(|n| seen.insert(n.clone()));
    CheckReport {
        profile: ProfileInfo {
            name: profile.name.clone(),
            source: parts.source,
            description: profile.description.clone(),
        },
        verdict: Verdict {
            status: v.status,
            level: v.level,
            exit_code,
            headline: v.headline,
            reasons: v.reasons,
        },
        services,
        tcp_samples: samples,
        nat: parts.nat,
        relay_rtt: parts.relay_rtt,
        netbird,
        paths: parts.paths,
        fixes: v.fixes,
        notes,
    }
}

/// Judge the path facts: the double NAT (the gateway's external address against the public
/// one the NAT tests or any STUN row saw), then one finding per fact, most severe first.
pub(crate) fn paths(p: &mut PathsSection, nat: Option<&Classification>, rows: &[(usize, Row)]) {
    let public_v4 = nat
        .and_then(|c| c.ipv4.as_ref())
        .and_then(|f| f.public_address)
        .map(|a| a.ip())
        .or_else(|| {
            rows.iter().find_map(|(_, r)| match &r.outcome {
                RowOutcome::Answered { mapped: Some(m) } if m.is_ipv4() => Some(m.ip()),
                _ => None,
            })
        });
    let nat_present = nat.and_then(|c| c.ipv4.as_ref()).map(|f| match f.nat {
        NatPresence::Present => Some(true),
        NatPresence::Absent => Some(false),
        NatPresence::Unknown => None,
    });
    let mut findings: Vec<PathFinding> = Vec::new();
    if let Some(c) = &p.captive_portal
        && let Some(fix) = c.portal.fix()
    {
        findings.push(
            Finding::new(
                PathKind::CaptivePortal,
                Severity::Critical,
                c.portal.to_string(),
            )
            .with_fix(fix),
        );
    }
    if let Some((sev, line, fix)) = probes::path::route::finding(&p.routes) {
        let f = Finding::new(PathKind::Tunnel, sev, line);
        findings.push(match fix {
            Some(x) => f.with_fix(x),
            None => f,
        });
    }
    for r in &p.path_mtu {
        let (sev, line, fix) = probes::path::pmtu::judge(r);
        let f = Finding::new(PathKind::PathMtu, sev, line);
        findings.push(match fix {
            Some(x) => f.with_fix(x),
            None => f,
        });
    }
    if let Some(r) = &p.relay_path
        && r.error.is_none()
        && r.sent > 0
    {
        let line = format!(
            "{} of {} WireGuard-sized datagrams ({} bytes of payload) came back through the TURN relay {}",
            r.received, r.sent, r.payload, r.server
        );
        let f = if r.received == 0 {
            // The relay RTT's small datagrams came back on the same relay (the check runs only
            // then), so the size is what is lost.
            Finding::new(
                PathKind::PathMtu,
                Severity::Medium,
                format!(
                    "{line}, while small ones did: full-size WireGuard packets are lost on the relay path"
                ),
            )
            .with_fix(probes::finding::Fix::new(
                "Lower NetBird's MTU until full packets pass the relay (netbird up --mtu 1200 leaves 80 bytes more of room), and let ICMP \"fragmentation needed\" through on the way to the relay",
            ))
        } else {
            Finding::new(PathKind::PathMtu, Severity::Info, line)
        };
        findings.push(f);
    }
    if let Some(g) = &mut p.gateway {
        g.double_nat =
            probes::path::double_nat::judge(&g.external, public_v4, nat_present.flatten());
        if let Some((sev, line, fix)) = probes::path::double_nat::finding(&g.double_nat) {
            findings.push(Finding::new(PathKind::DoubleNat, sev, line).with_fix(fix));
        }
        if let Some(m) = &g.mapping {
            let (sev, line, fix) = probes::path::mapping::judge(m);
            let f = Finding::new(PathKind::PortMapping, sev, line);
            findings.push(match fix {
                Some(x) => f.with_fix(x),
                None => f,
            });
        }
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    p.findings = findings;
}

/// The URI a row measured, in NetBird's spelling (`stun:host:port`, `turn:…?transport=udp`,
/// `turns:…`, `rels://host:port`, `https://host:port`).
fn row_uri(kind: ServiceKind, r: &Row) -> Option<String> {
    let port = r.port?;
    let host = &r.host;
    Some(match (kind, r.probe, r.transport) {
        (_, ProbeKind::Stun, _) => format!("stun:{host}:{port}"),
        (_, ProbeKind::Turn, Some(Transport::Udp)) => format!("turn:{host}:{port}?transport=udp"),
        (_, ProbeKind::Turn, Some(Transport::Tcp)) => format!("turn:{host}:{port}?transport=tcp"),
        (_, ProbeKind::Turn, Some(Transport::Tls)) => format!("turns:{host}:{port}?transport=tcp"),
        (ServiceKind::Relay, ProbeKind::Websocket, _) => format!("rels://{host}:{port}"),
        (ServiceKind::Management | ServiceKind::Signal, ProbeKind::Grpc, _) => {
            format!("https://{host}:{port}")
        }
        _ => return None,
    })
}

/// What this run measured of each URI: ok when any row of it worked, failed when every row that
/// ran failed, not tested otherwise.
fn measured_uris(services: &[ServiceReport]) -> Vec<MeasuredUri> {
    let mut out: Vec<(String, Vec<&Row>)> = Vec::new();
    for s in services {
        for r in &s.checks {
            let Some(uri) = row_uri(s.kind, r) else {
                continue;
            };
            match out.iter_mut().find(|(u, _)| *u == uri) {
                Some((_, rows)) => rows.push(r),
                None => out.push((uri, vec![r])),
            }
        }
    }
    out.into_iter()
        .map(|(uri, rows)| {
            let ran: Vec<&Row> = rows
                .iter()
                .copied()
                .filter(|r| r.state != Status::Skipped)
                .collect();
            let ok = ran
                .iter()
                .find(|r| matches!(r.state, Status::Ok | Status::Degraded));
            let state = match (ok, ran.first()) {
                (Some(_), _) => MeasuredState::Ok,
                (None, Some(_)) => MeasuredState::Failed,
                (None, None) => MeasuredState::NotTested,
            };
            let detail = ok
                .or(ran.first())
                .or(rows.first())
                .map(|r| r.detail.clone());
            MeasuredUri { uri, state, detail }
        })
        .collect()
}

/// Whether any row of `probe` worked (`None` when none ran).
fn any_worked(services: &[ServiceReport], probe: ProbeKind) -> Option<bool> {
    let ran: Vec<Status> = services
        .iter()
        .flat_map(|s| &s.checks)
        .filter(|r| r.probe == probe && r.state != Status::Skipped)
        .map(|r| r.state)
        .collect();
    (!ran.is_empty()).then(|| {
        ran.iter()
            .any(|s| matches!(s, Status::Ok | Status::Degraded))
    })
}

/// The NetBird section: the client's URIs beside this run's measurement of them, and its
/// relayed or unconnected peers explained with this network's NAT class and open paths.
fn netbird(
    input: &NetbirdInput,
    services: &[ServiceReport],
    nat: Option<&Classification>,
) -> NetbirdSection {
    let nat_type = nat.and_then(|c| c.ipv4.as_ref().or(c.ipv6.as_ref()).map(|r| r.nat_type));
    let relay = services.iter().filter(|s| s.kind == ServiceKind::Relay);
    let relay_states: Vec<Status> = relay
        .map(|s| s.state)
        .filter(|s| *s != Status::Skipped)
        .collect();
    let measured = Measured {
        nat: nat_type,
        stun_udp: any_worked(services, ProbeKind::Stun),
        turn_ok: any_worked(services, ProbeKind::Turn),
        relay_ok: (!relay_states.is_empty()).then(|| {
            relay_states
                .iter()
                .any(|s| matches!(s, Status::Ok | Status::Degraded))
        }),
    };
    let st = &input.status;
    NetbirdSection {
        source: input.source.clone(),
        daemon_version: st.daemon_version.clone(),
        wireguard_port: st.wireguard_port,
        uris: probes::netbird::compare::compare(st, &measured_uris(services)),
        peers: probes::netbird::peers::explain(st, &measured, None),
        notes: input.notes.clone(),
    }
}
