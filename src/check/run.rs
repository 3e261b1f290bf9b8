//! Running a check: DNS first, then every section at once — control plane and relay (TLS,
//! gRPC, WebSocket, QUIC), STUN on every UDP port, TURN Allocate on every UDP/TCP/TLS port, the
//! TCP sample of the TURN range, NAT behaviour — and relay RTT when credentials are given.
//! Each section has its own timeouts and the whole run a deadline; a section that cannot run
//! (no address, no credentials, a wildcard name) says so in its rows instead of failing the run.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use engine::control::{ControlConfig, ControlReport};
use engine::scan::{TcpScanConfig, UdpPortOutcome, tcp_scan, udp_binding_connected};
use engine::stream::{Security, StreamOptions, run_stream};
use engine::tcp::ConnectOutcome;
use engine::{Cancel, Limits, Rate};
use probes::Retransmit;
use probes::Transport as TurnTransport;
use probes::binding::{BindingConfig, BindingStatus};
use probes::control::assess::PathFacts;
use probes::control::dns::Lookup;
use probes::control::grpc::GrpcVerdict;
use probes::control::http::{ProxyUrl, WsVerdict};
use probes::control::relay::QuicOutcome;
use probes::control::{EndpointReport, EndpointSpec, ResolveOverride, Role, Timeouts};
use probes::finding::{Severity, Status};
use probes::nat::{Measurements, RelayPaths, classify};
use probes::profile::{Host, Profile, Service, ServiceKind};
use probes::sweep::{StunOverTcp, TcpPortResult, TcpState, sample_ports, summarize_tcp};
use probes::turn::allocate::{AllocateConfig, AllocateProbe, AllocateReport, AllocateStatus};
use probes::turn::auth::Credentials;
use probes::turn::relay::{DataMode, RelayConfig, RelayProbe};
use rustls::pki_types::CertificateDer;
use tokio::task::JoinSet;

use super::model::{
    CheckReport, Event, ProfileInfo, RelayRtt, Row, SampledPort, ServiceReport, State, TcpSample,
    Transport,
};
use super::verdict;
use crate::cmd::turn::session_config;

/// Everything a check needs.
#[derive(Clone)]
pub(crate) struct CheckConfig {
    /// What to probe.
    pub(crate) profile: Profile,
    /// Where it came from (for the report).
    pub(crate) source: String,
    /// `--resolve` overrides.
    pub(crate) overrides: Vec<ResolveOverride>,
    /// Resolvers.
    pub(crate) nameservers: Vec<SocketAddr>,
    /// TURN credentials (never reported).
    pub(crate) credentials: Option<Credentials>,
    /// Extra CA for `turns:`.
    pub(crate) turn_ca: Option<PathBuf>,
    /// Extra roots for the control plane.
    pub(crate) extra_roots: Vec<CertificateDer<'static>>,
    /// HTTP proxy for the control plane.
    pub(crate) proxy: Option<ProxyUrl>,
    /// NO_PROXY.
    pub(crate) no_proxy: Option<String>,
    /// Per-step timeout (DNS, connect, TLS, HTTP, QUIC, a STUN/TURN transaction).
    pub(crate) timeout: Duration,
    /// Ports in the TCP sample of a range.
    pub(crate) sample: usize,
    /// Seed of the sample.
    pub(crate) seed: u64,
    /// Packets (and SYNs) per second of the sample.
    pub(crate) rate: u32,
    /// The whole run's cap.
    pub(crate) deadline: Duration,
    /// Relay names to check besides the profile's (the relay management hands out).
    pub(crate) relays: Vec<String>,
    /// NAT test RTO.
    pub(crate) rto: Duration,
    /// Hairpinning test.
    pub(crate) hairpin: bool,
    /// Relay RTT packets per transport.
    pub(crate) relay_count: u32,
}

impl std::fmt::Debug for CheckConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckConfig")
            .field("profile", &self.profile.name)
            .field("credentials", &self.credentials.is_some())
            .finish_non_exhaustive()
    }
}

/// Where events go (NDJSON, progress bar); called from several tasks.
pub(crate) type Sink = Arc<dyn Fn(&Event) + Send + Sync>;

/// One resolved name.
#[derive(Clone, Debug)]
struct Resolved {
    addresses: Vec<IpAddr>,
    row_state: State,
    detail: String,
    time: Option<Duration>,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn lookup_reason(l: &Lookup) -> String {
    match l {
        Lookup::Resolved { .. } => "resolved".into(),
        Lookup::NoRecords { .. } => "no records".into(),
        Lookup::Failed { rcode, .. } => format!("{rcode:?}"),
        Lookup::Timeout => "timeout".into(),
        Lookup::Overridden { .. } => "--resolve".into(),
        Lookup::Error { message } => message.clone(),
    }
}

async fn resolve_name(name: &str, ports: &[u16], cfg: &CheckConfig) -> Resolved {
    let given: Vec<IpAddr> = cfg
        .overrides
        .iter()
        .filter(|o| o.name.eq_ignore_ascii_case(name) && o.port.is_none_or(|p| ports.contains(&p)))
        .map(|o| o.address)
        .collect();
    if !given.is_empty() {
        let list: Vec<String> = given.iter().map(ToString::to_string).collect();
        return Resolved {
            detail: format!("{} (--resolve)", list.join(" ")),
            addresses: given,
            row_state: State::Ok,
            time: None,
        };
    }
    let (v4, v6) = engine::control::lookup(name, &cfg.nameservers, cfg.timeout).await;
    let mut addresses: Vec<IpAddr> = v4.addresses().to_vec();
    addresses.extend_from_slice(v6.addresses());
    let time = [&v4, &v6]
        .iter()
        .filter_map(|l| match l {
            Lookup::Resolved { time, .. } => Some(*time),
            _ => None,
        })
        .min();
    if addresses.is_empty() {
        let reason = if lookup_reason(&v4) == lookup_reason(&v6) {
            lookup_reason(&v4)
        } else {
            format!("A: {}; AAAA: {}", lookup_reason(&v4), lookup_reason(&v6))
        };
        return Resolved {
            addresses,
            row_state: State::Blocked,
            detail: format!("cannot resolve {name}: {reason}"),
            time,
        };
    }
    let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    Resolved {
        addresses,
        row_state: State::Ok,
        detail: list.join(" "),
        time,
    }
}

/// The addresses to probe: the first of each family the host has a route for.
fn probe_addresses(addrs: &[IpAddr], port: u16, notes: &mut Vec<String>) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for v4 in [true, false] {
        let Some(ip) = addrs.iter().find(|a| a.is_ipv4() == v4) else {
            continue;
        };
        match engine::udp::routed_source(&SocketAddr::new(*ip, port)) {
            Ok(_) => out.push(*ip),
            Err(e) => notes.push(format!(
                "{ip}: no route for {} ({e}); that family is not probed",
                if v4 { "IPv4" } else { "IPv6" }
            )),
        }
    }
    out
}

/// Rows collected per service index, in arrival order (sorted at the end).
#[derive(Default)]
struct Collected {
    rows: Vec<(usize, Row)>,
}

struct Ctx {
    cfg: CheckConfig,
    sink: Sink,
    cancel: Cancel,
    start: Instant,
}

impl Ctx {
    fn emit_row(&self, service: &Service, row: &Row) {
        (self.sink)(&Event::Check {
            service: service.name.clone(),
            row: row.clone(),
        });
    }

    fn phase(&self, phase: &'static str) {
        (self.sink)(&Event::Phase {
            phase,
            elapsed_seconds: self.start.elapsed().as_secs_f64(),
        });
    }
}

/// Run the whole check.
pub(crate) async fn run(cfg: CheckConfig, cancel: Cancel, sink: Sink) -> CheckReport {
    let start = Instant::now();
    let started_unix_seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    // The deadline cancels everything still running; partial results are reported.
    let (deadline_handle, deadline_cancel) = Cancel::new();
    let deadline_hit = Arc::new(AtomicBool::new(false));
    {
        let hit = deadline_hit.clone();
        let limit = cfg.deadline;
        let mut user = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(limit) => hit.store(true, Ordering::SeqCst),
                _ = wait_cancel(&mut user) => {}
            }
            deadline_handle.cancel();
        });
    }
    let ctx = Arc::new(Ctx {
        cfg,
        sink,
        cancel: deadline_cancel,
        start,
    });
    let profile = ctx.cfg.profile.clone();
    let planned = plan_size(&profile, ctx.cfg.sample);
    (ctx.sink)(&Event::Start {
        schema: super::model::SCHEMA,
        profile: profile.name.clone(),
        planned,
    });
    let mut notes: Vec<String> = Vec::new();
    let mut collected = Collected::default();

    // DNS: every name once, all at once.
    let mut names: HashMap<String, Vec<u16>> = HashMap::new();
    for s in &profile.services {
        let ports: Vec<u16> = s
            .udp
            .iter()
            .chain(&s.tcp)
            .map(|r| r.start)
            .chain(s.tls.iter().copied())
            .collect();
        for h in &s.hosts {
            if let Some(n) = h.name() {
                names.entry(n.to_string()).or_default().extend(ports.iter());
            }
        }
    }
    for r in &ctx.cfg.relays {
        names.entry(r.clone()).or_default().push(443);
    }
    let mut dns_tasks = JoinSet::new();
    for (name, ports) in names {
        let ctx = ctx.clone();
        dns_tasks.spawn(async move {
            let r = resolve_name(&name, &ports, &ctx.cfg).await;
            (name, r)
        });
    }
    let mut resolved: HashMap<String, Resolved> = HashMap::new();
    while let Some(r) = dns_tasks.join_next().await {
        if let Ok((name, r)) = r {
            resolved.insert(name, r);
        }
    }
    for (i, s) in profile.services.iter().enumerate() {
        for h in &s.hosts {
            let Some(n) = h.name() else { continue };
            let Some(r) = resolved.get(n) else { continue };
            let row = Row {
                probe: "dns",
                transport: Transport::Dns,
                port: None,
                host: n.to_string(),
                address: None,
                state: r.row_state,
                rtt_seconds: r.time.map(secs),
                detail: r.detail.clone(),
            };
            ctx.emit_row(s, &row);
            collected.rows.push((i, row));
        }
    }
    ctx.phase("dns");
    let addresses_of = |h: &Host| -> Vec<IpAddr> {
        match h {
            Host::Ip(ip) => vec![*ip],
            Host::Name(n) => resolved
                .get(n.as_str())
                .map(|r| r.addresses.clone())
                .unwrap_or_default(),
            Host::Wildcard(_) => Vec::new(),
        }
    };

    let mut tasks: JoinSet<Section> = JoinSet::new();

    // Control plane and relay.
    let mut endpoints = Vec::new();
    let mut endpoint_service = Vec::new();
    let mut published = Vec::new();
    for (i, s) in profile.services.iter().enumerate() {
        let role = match s.kind {
            ServiceKind::Management => Role::Management,
            ServiceKind::Signal => Role::Signal,
            ServiceKind::Relay => Role::Relay,
            _ => continue,
        };
        let mut hosts: Vec<String> = Vec::new();
        for h in &s.hosts {
            match h {
                Host::Name(n) => hosts.push(n.clone()),
                Host::Ip(ip) => hosts.push(ip.to_string()),
                Host::Wildcard(_) if role == Role::Relay && !ctx.cfg.relays.is_empty() => {}
                Host::Wildcard(_) => {
                    let row = Row {
                        probe: "websocket",
                        transport: Transport::Tls,
                        port: s.tcp.first().map(|r| r.start),
                        host: h.to_string(),
                        address: None,
                        state: State::Skipped,
                        rtt_seconds: None,
                        detail: format!(
                            "{h} is a wildcard: the management service hands out the relay's name (`netbird status -d` shows it); check it with --relay NAME"
                        ),
                    };
                    ctx.emit_row(s, &row);
                    collected.rows.push((i, row));
                }
            }
        }
        if role == Role::Relay {
            hosts.extend(ctx.cfg.relays.iter().cloned());
        }
        for name in hosts {
            if let Some(n) = s.hosts.iter().find_map(Host::name).filter(|n| *n == name) {
                let p = s.published();
                if !p.is_empty() {
                    published.push((n.to_string(), p));
                }
            }
            for port in s.tcp.iter().map(|r| r.start) {
                endpoints.push(EndpointSpec {
                    role,
                    name: name.clone(),
                    port,
                });
                endpoint_service.push(i);
            }
        }
    }
    // Relay services without any entry still get one (the --relay names).
    if !ctx.cfg.relays.is_empty() && profile.of_kind(ServiceKind::Relay).next().is_none() {
        notes.push("--relay given but the profile has no relay service; ignored".into());
    }
    if !endpoints.is_empty() {
        let control = ControlConfig {
            endpoints: endpoints.clone(),
            overrides: ctx.cfg.overrides.clone(),
            nameservers: ctx.cfg.nameservers.clone(),
            published,
            extra_roots: ctx.cfg.extra_roots.clone(),
            proxy: ctx.cfg.proxy.clone(),
            no_proxy: ctx.cfg.no_proxy.clone(),
            timeouts: Timeouts::uniform(ctx.cfg.timeout),
        };
        let ctx2 = ctx.clone();
        tasks.spawn(async move {
            let mut cancel = ctx2.cancel.clone();
            let report = tokio::select! {
                r = engine::control::run(control) => r.map_err(|e| e.to_string()),
                _ = wait_cancel(&mut cancel) => Err("stopped before the control checks finished".to_string()),
            };
            ctx2.phase("control");
            Section::Control(report, endpoint_service)
        });
    }

    // STUN: every UDP port of every address; the NAT tests on the STUN servers.
    let mut nat_servers: Vec<SocketAddr> = Vec::new();
    for (i, s) in profile.services.iter().enumerate() {
        if s.kind != ServiceKind::Stun {
            continue;
        }
        let ports: Vec<u16> = s.udp.iter().flat_map(|r| r.ports()).collect();
        let nat_port = if ports.contains(&3478) {
            3478
        } else {
            ports.first().copied().unwrap_or(3478)
        };
        for h in &s.hosts {
            for ip in probe_addresses(&addresses_of(h), nat_port, &mut notes) {
                nat_servers.push(SocketAddr::new(ip, nat_port));
                for port in &ports {
                    let (ctx, host, port) = (ctx.clone(), h.to_string(), *port);
                    let service = s.clone();
                    tasks.spawn(async move {
                        let row = stun_row(&ctx, host, SocketAddr::new(ip, port)).await;
                        ctx.emit_row(&service, &row);
                        Section::Rows(vec![(i, row)])
                    });
                }
            }
        }
    }
    if !nat_servers.is_empty() {
        let ctx2 = ctx.clone();
        let servers = nat_servers.clone();
        tasks.spawn(async move {
            let r = crate::cmd::nat::measure(
                &servers,
                ctx2.cfg.rto,
                ctx2.cfg.hairpin,
                ctx2.cancel.clone(),
            )
            .await;
            ctx2.phase("nat");
            Section::Nat(r.map(|(m, _)| m).map_err(|e| e.to_string()))
        });
    }

    // TURN: Allocate on every UDP, TCP and TLS port; the TCP sample of each range.
    for (i, s) in profile.services.iter().enumerate() {
        if s.kind != ServiceKind::Turn {
            continue;
        }
        for h in &s.hosts {
            let first_port = s
                .udp
                .first()
                .or(s.tcp.first())
                .map(|r| r.start)
                .or(s.tls.first().copied())
                .unwrap_or(3478);
            let addrs = probe_addresses(&addresses_of(h), first_port, &mut notes);
            if addrs.is_empty() {
                let row = Row {
                    probe: "turn",
                    transport: Transport::Udp,
                    port: None,
                    host: h.to_string(),
                    address: None,
                    state: State::Skipped,
                    rtt_seconds: None,
                    detail: format!("not probed: {h} has no usable address"),
                };
                ctx.emit_row(s, &row);
                collected.rows.push((i, row));
                continue;
            }
            for ip in addrs {
                let udp: Vec<u16> = s.udp.iter().flat_map(|r| r.ports()).collect();
                if !udp.is_empty() {
                    let (ctx, service, host) = (ctx.clone(), s.clone(), h.to_string());
                    tasks.spawn(async move { turn_udp(&ctx, i, &service, host, ip, &udp).await });
                }
                // Allocate over TCP on each single port and the first port of each range, once.
                let mut stream_ports: Vec<(u16, TurnTransport)> = s
                    .tcp
                    .iter()
                    .map(|r| (r.start, TurnTransport::Tcp))
                    .chain(s.tls.iter().map(|p| (*p, TurnTransport::Tls)))
                    .collect();
                stream_ports.sort_by_key(|(p, t)| (*p, *t == TurnTransport::Tls));
                stream_ports.dedup();
                for (port, transport) in stream_ports {
                    let (ctx, service, host) = (ctx.clone(), s.clone(), h.clone());
                    tasks.spawn(async move {
                        let row =
                            turn_stream(&ctx, &host, SocketAddr::new(ip, port), transport).await;
                        ctx.emit_row(&service, &row);
                        Section::Rows(vec![(i, row)])
                    });
                }
            }
            // The sample: one address (IPv4 first), each range of more than one port.
            if let Some(ip) = probe_addresses(&addresses_of(h), first_port, &mut Vec::new())
                .first()
                .copied()
            {
                for r in s.tcp.iter().filter(|r| !r.is_single()) {
                    let (ctx, service, host, r) = (ctx.clone(), s.clone(), h.to_string(), *r);
                    tasks.spawn(async move {
                        tcp_sample(&ctx, i, &service, host, ip, r.start, r.end).await
                    });
                }
            }
        }
    }

    // Gather.
    let mut control: Option<ControlReport> = None;
    let mut control_services: Vec<usize> = Vec::new();
    let mut nat: Option<Measurements> = None;
    let mut samples: Vec<TcpSample> = Vec::new();
    let mut relay_rtt: Vec<RelayRtt> = Vec::new();
    let mut allocations: Vec<(TurnTransport, bool)> = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let Ok(section) = r else {
            notes.push("a check task failed; its rows are missing".into());
            continue;
        };
        match section {
            Section::Rows(rows) => collected.rows.extend(rows),
            Section::Turn {
                rows,
                answered,
                rtt,
            } => {
                for (_, row) in &rows {
                    let t = match row.transport {
                        Transport::Udp => TurnTransport::Udp,
                        Transport::Tls => TurnTransport::Tls,
                        _ => TurnTransport::Tcp,
                    };
                    allocations.push((t, row.state == State::Ok));
                }
                let _ = answered;
                collected.rows.extend(rows);
                relay_rtt.extend(rtt);
            }
            Section::Sample(row, sample) => {
                collected.rows.push(row);
                samples.push(sample);
            }
            Section::Control(Ok(report), services) => {
                control_services = services;
                control = Some(report);
            }
            Section::Control(Err(e), _) => notes.push(format!("control checks: {e}")),
            Section::Nat(Ok(m)) => nat = Some(m),
            Section::Nat(Err(e)) => notes.push(format!("NAT tests: {e}")),
        }
    }
    // TURN over TCP/TLS rows are pushed as plain rows: count them for the relay paths too.
    for (_, row) in &collected.rows {
        if row.probe == "turn" && row.transport != Transport::Udp {
            let t = if row.transport == Transport::Tls {
                TurnTransport::Tls
            } else {
                TurnTransport::Tcp
            };
            allocations.push((t, row.state == State::Ok));
        }
    }
    let mut control_problems = Vec::new();
    let mut relay_ws: Option<bool> = None;
    if let Some(report) = &control {
        for (e, i) in report.endpoints.iter().zip(control_services.iter()) {
            let Some(s) = profile.services.get(*i) else {
                continue;
            };
            if e.role == Role::Relay {
                let ok = e.paths.iter().any(|p| {
                    p.websocket
                        .as_ref()
                        .is_some_and(|w| matches!(w.verdict, Some(WsVerdict::Upgraded)))
                });
                relay_ws = Some(relay_ws.unwrap_or(false) || ok);
            }
            for row in control_rows(e) {
                ctx.emit_row(s, &row);
                collected.rows.push((*i, row));
            }
            for p in &e.problems {
                if p.severity != Severity::Info {
                    control_problems.push(p.clone());
                }
            }
        }
    }

    let any = |t: TurnTransport| -> Option<bool> {
        let v: Vec<bool> = allocations
            .iter()
            .filter(|(x, _)| *x == t)
            .map(|(_, ok)| *ok)
            .collect();
        (!v.is_empty()).then(|| v.iter().any(|x| *x))
    };
    let relay = RelayPaths {
        turn_udp: any(TurnTransport::Udp),
        turn_tcp: any(TurnTransport::Tcp),
        turn_tls: any(TurnTransport::Tls),
        relay_tcp443: relay_ws,
    };
    let nat = nat.map(|mut m| {
        m.relay = relay;
        classify(&m)
    });

    let mut services: Vec<ServiceReport> = profile
        .services
        .iter()
        .map(|s| ServiceReport {
            name: s.name.clone(),
            kind: s.kind,
            hosts: s.hosts.iter().map(ToString::to_string).collect(),
            state: State::Skipped,
            checks: Vec::new(),
        })
        .collect();
    for (i, row) in collected.rows {
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
        // DNS is a step towards the real checks: it decides the state only when nothing else ran.
        let main: Vec<State> = s
            .checks
            .iter()
            .filter(|r| r.probe != "dns" && r.state != State::Skipped)
            .map(|r| r.state)
            .collect();
        s.state = if main.is_empty() {
            State::combine(s.checks.iter().map(|r| r.state))
        } else {
            State::combine(main.into_iter())
        };
    }
    samples.sort_by_key(|s| (s.service.clone(), s.range_start));
    let interrupted = ctx.cancel.is_cancelled() && !deadline_hit.load(Ordering::SeqCst);
    let deadline_reached = deadline_hit.load(Ordering::SeqCst);
    if deadline_reached {
        notes.push(format!(
            "the deadline ({} s) stopped the run: some checks are missing",
            ctx.cfg.deadline.as_secs()
        ));
    }
    let (verdict, fixes) = verdict::judge(
        &profile,
        &services,
        &samples,
        nat.as_ref(),
        &control_problems,
        interrupted,
        &resolved
            .iter()
            .map(|(k, v)| (k.clone(), v.addresses.clone()))
            .collect(),
    );
    CheckReport {
        schema: super::model::SCHEMA,
        stunmap_version: env!("CARGO_PKG_VERSION"),
        profile: ProfileInfo {
            name: profile.name.clone(),
            source: ctx.cfg.source.clone(),
            description: profile.description.clone(),
        },
        started_unix_seconds,
        elapsed_seconds: start.elapsed().as_secs_f64(),
        interrupted,
        deadline_reached,
        verdict,
        services,
        tcp_samples: samples,
        nat,
        relay_rtt,
        fixes,
        notes,
    }
}

fn order(probe: &str) -> u8 {
    match probe {
        "dns" => 0,
        "grpc" | "websocket" => 1,
        "quic" => 2,
        "stun" => 3,
        "turn" => 4,
        "tcp-sample" => 5,
        _ => 6,
    }
}

async fn wait_cancel(c: &mut Cancel) {
    while !c.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Rough number of rows a profile gives (for the progress bar).
fn plan_size(p: &Profile, sample: usize) -> usize {
    p.services
        .iter()
        .map(|s| {
            let udp: usize = s.udp.iter().map(|r| r.count() as usize).sum();
            let tcp: usize = s
                .tcp
                .iter()
                .map(|r| if r.is_single() { 1 } else { 1 + sample })
                .sum();
            s.hosts.len() * (1 + udp + tcp + s.tls.len())
        })
        .sum()
}

/// What a task hands back (moved once per task: the size difference does not matter).
#[allow(clippy::large_enum_variant)]
enum Section {
    Rows(Vec<(usize, Row)>),
    Turn {
        rows: Vec<(usize, Row)>,
        answered: bool,
        rtt: Vec<RelayRtt>,
    },
    Sample((usize, Row), TcpSample),
    Control(Result<ControlReport, String>, Vec<usize>),
    Nat(Result<Measurements, String>),
}

async fn stun_row(ctx: &Ctx, host: String, dest: SocketAddr) -> Row {
    let config = BindingConfig {
        retransmit: Retransmit {
            rto: Duration::from_millis(250).min(ctx.cfg.timeout),
            deadline: Some(ctx.cfg.timeout),
            ..Retransmit::default()
        },
        ..BindingConfig::default()
    };
    let mut row = Row {
        probe: "stun",
        transport: Transport::Udp,
        port: Some(dest.port()),
        host,
        address: Some(dest.ip()),
        state: State::Blocked,
        rtt_seconds: None,
        detail: String::new(),
    };
    if ctx.cancel.is_cancelled() {
        row.state = State::Skipped;
        row.detail = "not run: stopped".into();
        return row;
    }
    match udp_binding_connected(dest, crate::ids::one(), config).await {
        Ok(UdpPortOutcome::Answered { binding }) => {
            row.state = State::Ok;
            row.rtt_seconds = binding.rtt.map(secs);
            row.detail = match &binding.status {
                BindingStatus::Success(r) => match r.mapped_address() {
                    Some(m) => format!("answered; public address {m}"),
                    None => "answered".into(),
                },
                BindingStatus::Error { code, reason } => {
                    format!("answered with error {code} {reason}")
                }
                BindingStatus::Timeout => "answered".into(),
            };
        }
        Ok(UdpPortOutcome::Silent) => {
            row.detail =
                "no answer: dropped on the way (or nothing listens and ICMP is filtered)".into()
        }
        Ok(UdpPortOutcome::PortUnreachable) => {
            row.detail = "ICMP port unreachable: nothing listens, or a firewall rejects".into()
        }
        Ok(UdpPortOutcome::Unreachable) => {
            row.detail = "ICMP unreachable: no route, or administratively prohibited".into()
        }
        Err(e) => row.detail = format!("cannot send: {e}"),
    }
    row
}

fn allocate_detail(r: &AllocateReport) -> (State, String) {
    let mut state = match r.status {
        AllocateStatus::Allocated | AllocateStatus::AuthRequired => State::Ok,
        AllocateStatus::Rejected { .. } => State::Degraded,
        AllocateStatus::Timeout => State::Blocked,
        AllocateStatus::Cancelled => State::Skipped,
    };
    let mut detail = match &r.status {
        AllocateStatus::Allocated => match r.relayed {
            Some(a) => format!("allocated (relayed address {a}) and released"),
            None => "allocated and released".into(),
        },
        AllocateStatus::AuthRequired => {
            "TURN server present (401 with REALM and NONCE); no credentials given".into()
        }
        AllocateStatus::Rejected { code, reason } => format!("rejected: {code} {reason}"),
        AllocateStatus::Timeout => "no answer".into(),
        AllocateStatus::Cancelled => "not finished: stopped".into(),
    };
    if !r.release.is_clean() {
        state = State::Degraded;
        detail.push_str("; the allocation was NOT confirmed released");
    }
    (state, detail)
}

async fn turn_udp(
    ctx: &Ctx,
    i: usize,
    service: &Service,
    host: String,
    ip: IpAddr,
    ports: &[u16],
) -> Section {
    let probes: Vec<AllocateProbe> = ports
        .iter()
        .map(|p| {
            let session = session_config(
                SocketAddr::new(ip, *p),
                TurnTransport::Udp,
                ctx.cfg.credentials.clone(),
                ctx.cfg.timeout,
            );
            AllocateProbe::new(
                AllocateConfig {
                    session,
                    exercise: false,
                },
                crate::ids::source(),
            )
        })
        .collect();
    let limits = Limits {
        rate: None,
        max_in_flight: ports.len().max(1),
        deadline: Some(ctx.cfg.timeout * 3),
        drain: Duration::from_secs(2),
        ..Limits::default()
    };
    let mut results: Vec<(usize, AllocateReport)> = Vec::new();
    let run = engine::run(probes, limits, ctx.cancel.clone(), |ev| {
        if let engine::Event::Finished { probe, output } = ev {
            results.push((probe, output));
        }
    })
    .await;
    let mut rows = Vec::new();
    let mut first_allocated: Option<SocketAddr> = None;
    for (k, port) in ports.iter().enumerate() {
        let mut row = Row {
            probe: "turn",
            transport: Transport::Udp,
            port: Some(*port),
            host: host.clone(),
            address: Some(ip),
            state: State::Blocked,
            rtt_seconds: None,
            detail: "no answer".into(),
        };
        match results.iter().find(|(p, _)| *p == k) {
            Some((_, r)) => {
                let (state, detail) = allocate_detail(r);
                row.state = state;
                row.detail = detail;
                row.rtt_seconds = r.allocate_rtt.map(secs);
                if r.status == AllocateStatus::Allocated && first_allocated.is_none() {
                    first_allocated = Some(r.server);
                }
            }
            None if run.is_err() => {
                row.state = State::Skipped;
                row.detail = format!(
                    "not run: {}",
                    run.as_ref()
                        .err()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                );
            }
            None if ctx.cancel.is_cancelled() => {
                row.state = State::Skipped;
                row.detail = "not finished: stopped".into();
            }
            None => {}
        }
        ctx.emit_row(service, &row);
        rows.push((i, row));
    }
    let answered = rows.iter().any(|(_, r)| r.state == State::Ok);
    let mut rtt = Vec::new();
    if let (Some(server), Some(creds)) = (first_allocated, ctx.cfg.credentials.clone()) {
        if !ctx.cancel.is_cancelled() {
            rtt.push(relay_rtt(ctx, service, server, creds).await);
            ctx.phase("relay-rtt");
        }
    }
    Section::Turn {
        rows,
        answered,
        rtt,
    }
}

async fn relay_rtt(
    ctx: &Ctx,
    service: &Service,
    server: SocketAddr,
    creds: Credentials,
) -> RelayRtt {
    let count = ctx.cfg.relay_count.max(1);
    let config = RelayConfig {
        session: session_config(server, TurnTransport::Udp, Some(creds), ctx.cfg.timeout),
        peer_socket: 1,
        peer_probe: Some(server),
        count,
        interval: Duration::from_millis(20),
        size: 100,
        mode: DataMode::Channel,
        direct: 3,
        linger: Duration::from_millis(500),
    };
    let deadline = ctx.cfg.timeout * 3 + Duration::from_millis(20) * count;
    let run = engine::run_one(
        RelayProbe::new(config, crate::ids::source()),
        Some(deadline),
        ctx.cancel.clone(),
    )
    .await;
    let (r, out) = match run {
        Ok((out, report)) => (Ok(report), out),
        Err(e) => (Err(e), None),
    };
    let mut report = RelayRtt {
        service: service.name.clone(),
        transport: Transport::Udp,
        server,
        sent: 0,
        received: 0,
        rtt: None,
        direct_median_seconds: None,
        error: None,
    };
    match (r, out) {
        (Err(e), _) => report.error = Some(e.to_string()),
        (Ok(_), None) => report.error = Some("the relay probe did not finish".into()),
        (Ok(_), Some(res)) => {
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
                    s => format!("{s:?}"),
                });
            }
        }
    }
    report
}

async fn turn_stream(ctx: &Ctx, host: &Host, server: SocketAddr, transport: TurnTransport) -> Row {
    let mut row = Row {
        probe: "turn",
        transport: if transport == TurnTransport::Tls {
            Transport::Tls
        } else {
            Transport::Tcp
        },
        port: Some(server.port()),
        host: host.to_string(),
        address: Some(server.ip()),
        state: State::Blocked,
        rtt_seconds: None,
        detail: String::new(),
    };
    let security = if transport == TurnTransport::Tls {
        let name = match host {
            Host::Name(n) => n.clone(),
            _ => server.ip().to_string(),
        };
        match Security::tls(&name, ctx.cfg.turn_ca.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                row.state = State::Skipped;
                row.detail = format!("TLS setup: {e}");
                return row;
            }
        }
    } else {
        Security::Plain
    };
    let session = session_config(
        server,
        transport,
        ctx.cfg.credentials.clone(),
        ctx.cfg.timeout,
    );
    let probe = AllocateProbe::new(
        AllocateConfig {
            session,
            exercise: false,
        },
        crate::ids::source(),
    );
    let opts = StreamOptions {
        connect_timeout: ctx.cfg.timeout,
        io_timeout: ctx.cfg.timeout,
        drain: Duration::from_secs(2),
        deadline: Some(ctx.cfg.timeout * 3),
    };
    let run = run_stream(probe, server, security, opts, ctx.cancel.clone()).await;
    match (&run.connect, &run.output) {
        (_, Some(r)) => {
            let (state, detail) = allocate_detail(r);
            row.state = state;
            row.detail = detail;
            row.rtt_seconds = r.allocate_rtt.map(secs);
        }
        (ConnectOutcome::Connected { .. }, None) => {
            row.detail = format!(
                "connected, no TURN answer{}",
                run.error.map(|e| format!(": {e}")).unwrap_or_default()
            )
        }
        (ConnectOutcome::Refused, None) => row.detail = "connection refused".into(),
        (ConnectOutcome::Timeout, None) => row.detail = "connect timed out: dropped".into(),
        (ConnectOutcome::Unreachable, None) => row.detail = "unreachable".into(),
        (ConnectOutcome::Error { message }, None) => row.detail = format!("connect: {message}"),
        #[allow(unreachable_patterns)]
        (_, None) => row.detail = "no answer".into(),
    }
    row
}

async fn tcp_sample(
    ctx: &Ctx,
    i: usize,
    service: &Service,
    host: String,
    ip: IpAddr,
    lo: u16,
    hi: u16,
) -> Section {
    let ports = sample_ports(lo, hi, ctx.cfg.sample, ctx.cfg.seed);
    let cfg = TcpScanConfig {
        connect_timeout: ctx.cfg.timeout.min(Duration::from_millis(1500)),
        stun_timeout: ctx.cfg.timeout.min(Duration::from_millis(1000)),
        concurrency: 128,
        rate: Some(Rate {
            pps: ctx.cfg.rate,
            burst: Rate::POLITE.burst.max(ctx.cfg.rate / 10),
        }),
        stun: true,
    };
    let mut results: Vec<TcpPortResult> = Vec::new();
    let sink = ctx.sink.clone();
    let name = service.name.clone();
    let mut ids = crate::ids::source();
    tcp_scan(
        ip,
        &ports,
        cfg,
        ctx.cancel.clone(),
        move || ids.next_id(),
        |r| {
            sink(&Event::TcpPort {
                service: name.clone(),
                port: sampled(&r),
            });
            results.push(r);
        },
    )
    .await;
    results.sort_by_key(|r| r.port);
    let summary = summarize_tcp(lo, hi, &results);
    let blocked = summary.filtered + summary.unreachable;
    let state = if results.is_empty() {
        State::Skipped
    } else if blocked == 0 {
        State::Ok
    } else if blocked == results.len() {
        State::Blocked
    } else {
        State::Degraded
    };
    let row = Row {
        probe: "tcp-sample",
        transport: Transport::Tcp,
        port: None,
        host: host.clone(),
        address: Some(ip),
        state,
        rtt_seconds: None,
        detail: format!(
            "{lo}-{hi}: {} of {} sampled ports get through ({} open, {} refused by the server, {} filtered)",
            summary.open + summary.refused,
            results.len(),
            summary.open,
            summary.refused,
            blocked,
        ),
    };
    ctx.emit_row(service, &row);
    ctx.phase("tcp-sample");
    let sample = TcpSample {
        service: service.name.clone(),
        host,
        address: ip,
        range_start: lo,
        range_end: hi,
        seed: ctx.cfg.seed,
        open: summary.open,
        refused: summary.refused,
        filtered: summary.filtered,
        unreachable: summary.unreachable,
        summary: summary.text.clone(),
        ports: results.iter().map(sampled).collect(),
    };
    Section::Sample((i, row), sample)
}

fn sampled(r: &TcpPortResult) -> SampledPort {
    SampledPort {
        port: r.port,
        state: r.state.name(),
        stun: matches!(r.stun, StunOverTcp::Answered { .. }),
        connect_seconds: r.connect_time.map(secs),
    }
}

/// Whether a sampled port lets traffic through (the server answered, even with a RST).
pub(crate) fn passes(state: &str) -> bool {
    state == TcpState::Open.name() || state == TcpState::Refused.name()
}

fn path_state(p: &PathFacts, endpoint: &EndpointReport) -> State {
    if p.failure.is_some() {
        return State::Blocked;
    }
    match endpoint.status {
        Status::Ok => State::Ok,
        Status::Degraded => State::Degraded,
        Status::Blocked => State::Blocked,
        // The control assessment gives only the three above.
        Status::Uncertain | Status::Skipped => State::Skipped,
    }
}

fn path_detail(role: Role, p: &PathFacts) -> String {
    let mut parts = Vec::new();
    if let Some(f) = &p.failure {
        parts.push(format!(
            "failed at {:?}{}: {}",
            f.step,
            if f.timeout { " (timeout)" } else { "" },
            f.reason
        ));
    }
    if let Some(tls) = &p.tls {
        parts.push(format!(
            "{} ALPN {}",
            tls.version,
            tls.alpn.as_deref().unwrap_or("none")
        ));
    }
    if let Some(t) = &p.trust {
        parts.push(probes::control::assess::trust_text(t));
    }
    match &p.grpc {
        Some(GrpcVerdict::Status { name, .. }) => parts.push(format!("gRPC answers ({name})")),
        Some(GrpcVerdict::NotGrpc { http_status, .. }) => {
            parts.push(format!("HTTP {http_status}, not gRPC"))
        }
        Some(GrpcVerdict::Failed { detail }) => parts.push(format!("gRPC failed: {detail}")),
        None => {}
    }
    if let Some(ws) = &p.websocket {
        let label = if role.is_grpc() {
            "WebSocket fallback"
        } else {
            "WebSocket"
        };
        match (&ws.verdict, &ws.failure) {
            (Some(WsVerdict::Upgraded), _) => parts.push(format!("{label} upgraded")),
            (Some(v), _) => parts.push(format!("{label}: {v:?}")),
            (None, Some(f)) => parts.push(format!("{label} failed: {}", f.reason)),
            (None, None) => {}
        }
    }
    if parts.is_empty() {
        "no result".into()
    } else {
        parts.join("; ")
    }
}

/// Rows of one control-plane endpoint.
fn control_rows(e: &EndpointReport) -> Vec<Row> {
    let probe = if e.role.is_grpc() {
        "grpc"
    } else {
        "websocket"
    };
    let mut rows = Vec::new();
    for p in &e.paths {
        rows.push(Row {
            probe,
            transport: Transport::Tls,
            port: Some(e.port),
            host: e.name.clone(),
            address: p.address.map(|a| a.ip()),
            state: path_state(p, e),
            rtt_seconds: p
                .tls
                .as_ref()
                .map(|t| secs(t.handshake_time))
                .or(p.connect_time.map(secs)),
            detail: path_detail(e.role, p),
        });
    }
    if e.paths.is_empty() {
        let why = e
            .problems
            .first()
            .map(|p| p.summary.clone())
            .unwrap_or_else(|| format!("{} has no address", e.name));
        rows.push(Row {
            probe,
            transport: Transport::Tls,
            port: Some(e.port),
            host: e.name.clone(),
            address: None,
            state: State::Blocked,
            rtt_seconds: None,
            detail: format!("not connected: {why}"),
        });
    }
    for q in &e.quic {
        let (state, rtt, detail) = match &q.outcome {
            QuicOutcome::Connected { time, datagrams } => (
                State::Ok,
                Some(secs(*time)),
                format!(
                    "QUIC ALPN nb-quic in {}{}",
                    ms(*time),
                    if *datagrams { "" } else { ", no datagrams" }
                ),
            ),
            QuicOutcome::AlpnRefused => (State::Blocked, None, "ALPN nb-quic refused".into()),
            QuicOutcome::Timeout => (State::Blocked, None, "no QUIC answer (UDP blocked?)".into()),
            QuicOutcome::Error { message } => (State::Blocked, None, format!("QUIC: {message}")),
        };
        rows.push(Row {
            probe: "quic",
            transport: Transport::Quic,
            port: Some(q.address.port()),
            host: e.name.clone(),
            address: Some(q.address.ip()),
            // A relay reached over WebSocket works without QUIC: degraded, not blocked.
            state: if state == State::Blocked && e.status != Status::Blocked {
                State::Degraded
            } else {
                state
            },
            rtt_seconds: rtt,
            detail,
        });
    }
    rows
}
