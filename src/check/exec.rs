//! The check's I/O: each function runs one kind of probe on the engine and returns its typed
//! result, nothing else (no rows, no words). Every call honours the run's cancel token.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use engine::source::SourceBind;
use probes::path::double_nat::{GatewayExternal, NatLayers};
use probes::path::mapping::{self, MappingConfig, MappingProof};
use probes::path::pmtu::{PmtuConfig, PmtuReport};
use probes::path::route::{self, DestinationPath, Egress, UserBinding};

use engine::control::{ControlConfig, ControlReport};
use engine::scan::{TcpScanConfig, UdpPortOutcome, tcp_scan, udp_binding_connected};
use engine::stream::{Security, StreamOptions, StreamRun, run_stream};
use engine::{Cancel, Limits, Rate};
use probes::Retransmit;
use probes::Transport;
use probes::binding::BindingConfig;
use probes::control::Timeouts;
use probes::nat::timing::RttEstimator;
use probes::nat::{Measurements, Timing};
use probes::profile::Host;
use probes::sweep::TcpPortResult;
use probes::turn::allocate::{AllocateConfig, AllocateProbe, AllocateReport, AllocateStatus};
use probes::turn::auth::Credentials;
use probes::turn::relay::{DataMode, RelayConfig, RelayProbe, RelayReport};

use super::model::{BoundFamily, GatewaySection, MssCheck, PortalCheck, RelayPathCheck};
use super::plan::{
    CheckConfig, ControlPlan, PathsPlan, PortalTarget, Reach, Resolved, SampleTarget,
    TurnStreamTarget, TurnUdpTarget,
};
use crate::exec::turn::session_config;

/// The NAT tests' whole budget in a check: the blind schedule at the default `--rto`
/// (5 × 200 ms) fits with room; a measured path ends far sooner.
const NAT_BUDGET: Duration = Duration::from_secs(2);

/// The first retransmission timeout of a UDP row (STUN Binding, TURN Allocate): with the
/// doubling of RFC 8489 §6.2.1 four transmissions fit in 700 ms, so a row cut short by a
/// measured silence ([`HostRtt::silence`]) has made at least four.
const UDP_RTO: Duration = Duration::from_millis(100);
/// Transmissions a UDP row makes before a measured silence may end it.
const UDP_TRANSMISSIONS: u8 = 4;
/// The kernel's first SYN retransmission (RFC 6298 §2.1's initial RTO of 1 s): a TCP connect
/// is judged dropped only after the second SYN had time to be answered.
const SYN_RETRANSMISSION: Duration = Duration::from_secs(1);

/// Round trips measured to the check's hosts while it runs (a TCP connect, a STUN answer), so
/// that a path to the same host that stays silent is judged in multiples of a measured RTT
/// (the rule of `probes::nat::timing`: five RTOs, the RTO between 100 ms and the step
/// timeout) instead of after the step timeout. Without a measured RTT a row waits its step
/// timeout, as before.
#[derive(Clone, Debug, Default)]
pub(crate) struct HostRtt(Arc<tokio::sync::watch::Sender<HashMap<IpAddr, RttEstimator>>>);

impl HostRtt {
    /// An unambiguous round trip to `ip`.
    pub(crate) fn sample(&self, ip: IpAddr, rtt: Duration) {
        self.0.send_modify(|m| m.entry(ip).or_default().sample(rtt));
    }

    /// The RTO toward `ip` by the rule of `probes::nat::timing`, if a round trip is measured.
    fn rto(&self, ip: IpAddr, cap: Duration) -> Option<Duration> {
        let rto = self.0.borrow().get(&ip).and_then(RttEstimator::rto)?;
        let timing = Timing::with_initial_rto(cap);
        Some(rto.clamp(timing.effective_floor(), timing.ceiling()))
    }

    /// When a row toward `ip` that started at `start` may be called silent: `at_least` after
    /// its start (its own transmissions) and five measured RTOs; `None` while nothing is
    /// measured.
    fn silent_at(
        &self,
        ip: IpAddr,
        start: tokio::time::Instant,
        at_least: Duration,
        cap: Duration,
    ) -> Option<tokio::time::Instant> {
        let rto = self.rto(ip, cap)?;
        Some(
            start
                + Timing::with_initial_rto(cap)
                    .silence(rto)
                    .max(at_least + rto),
        )
    }

    /// Resolves when a row toward `ip` that started at `start` has been silent long enough
    /// (see [`HostRtt::silent_at`]); never while nothing is measured.
    pub(crate) async fn silence(
        &self,
        ip: IpAddr,
        start: tokio::time::Instant,
        at_least: Duration,
        cap: Duration,
    ) {
        let mut rx = self.0.subscribe();
        loop {
            match self.silent_at(ip, start, at_least, cap) {
                Some(at) => tokio::select! {
                    () = tokio::time::sleep_until(at) => return,
                    r = rx.changed() => if r.is_err() {
                        tokio::time::sleep_until(at).await;
                        return;
                    },
                },
                None => {
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }
}

/// Which STUN servers answered a small Binding request, as each STUN row ends (`true`:
/// answered). A step that only makes sense toward a server that answers waits on it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Heard(Arc<tokio::sync::watch::Sender<HashMap<SocketAddr, bool>>>);

impl Heard {
    /// The STUN row toward `server` ended; `answered` says how.
    pub(crate) fn set(&self, server: SocketAddr, answered: bool) {
        self.0.send_modify(|m| {
            m.insert(server, answered);
        });
    }

    /// Whether `server`'s STUN row answered, once it has ended.
    pub(crate) async fn answered(&self, server: SocketAddr) -> bool {
        let mut rx = self.0.subscribe();
        match rx.wait_for(|m| m.contains_key(&server)).await {
            Ok(m) => m.get(&server).copied().unwrap_or(false),
            Err(_) => false,
        }
    }
}

/// Resolve one name: `--resolve` first, else the engine's own DNS client (A and AAAA).
async fn resolve_name(name: &str, ports: &[u16], cfg: &CheckConfig) -> Resolved {
    let given: Vec<IpAddr> = cfg
        .overrides
        .iter()
        .filter(|o| o.name.eq_ignore_ascii_case(name) && o.port.is_none_or(|p| ports.contains(&p)))
        .map(|o| o.address)
        .collect();
    if !given.is_empty() {
        return Resolved {
            addresses: given,
            lookups: None,
        };
    }
    let (v4, v6) = engine::control::lookup(name, &cfg.nameservers, cfg.timeout).await;
    let mut addresses: Vec<IpAddr> = v4.addresses().to_vec();
    addresses.extend_from_slice(v6.addresses());
    Resolved {
        addresses,
        lookups: Some((v4, v6)),
    }
}

/// Every name at once, then a route lookup for every address found.
pub(crate) async fn reach(cfg: &CheckConfig, names: BTreeMap<String, Vec<u16>>) -> Reach {
    let mut tasks = tokio::task::JoinSet::new();
    for (name, ports) in names {
        let cfg = cfg.clone();
        tasks.spawn(async move {
            let r = resolve_name(&name, &ports, &cfg).await;
            (name, r)
        });
    }
    let mut reach = Reach::default();
    while let Some(r) = tasks.join_next().await {
        if let Ok((name, r)) = r {
            reach.names.insert(name, r);
        }
    }
    let mut addresses: Vec<IpAddr> = reach
        .names
        .values()
        .flat_map(|r| r.addresses.iter().copied())
        .collect();
    addresses.extend(
        cfg.profile
            .services
            .iter()
            .flat_map(|s| &s.hosts)
            .filter_map(|h| match h {
                Host::Ip(ip) => Some(*ip),
                _ => None,
            }),
    );
    for ip in addresses {
        reach.routes.entry(ip).or_insert_with(|| {
            engine::udp::routed_source(&SocketAddr::new(ip, 3478))
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
    }
    reach
}

/// The control plane and relay checks.
pub(crate) async fn control(
    cfg: &CheckConfig,
    plan: ControlPlan,
    cancel: &Cancel,
) -> Result<ControlReport, String> {
    let control = ControlConfig {
        endpoints: plan.endpoints,
        overrides: cfg.overrides.clone(),
        nameservers: cfg.nameservers.clone(),
        published: plan.published,
        extra_roots: cfg.extra_roots.clone(),
        proxy: cfg.proxy.clone(),
        no_proxy: cfg.no_proxy.clone(),
        timeouts: Timeouts::uniform(cfg.timeout),
    };
    tokio::select! {
        r = engine::control::run(control) => r.map_err(|e| e.to_string()),
        _ = cancel.cancelled() => Err("stopped before the control checks finished".to_string()),
    }
}

/// One Binding on a connected UDP socket (ICMP errors for exactly this port come back);
/// silent once a measured RTT to the host says so ([`HostRtt`]), else after the step timeout.
pub(crate) async fn stun(
    cfg: &CheckConfig,
    dest: SocketAddr,
    host: &HostRtt,
    cancel: &Cancel,
) -> Option<std::io::Result<UdpPortOutcome>> {
    if cancel.is_cancelled() {
        return None;
    }
    let retransmit = Retransmit {
        rto: UDP_RTO.min(cfg.timeout),
        deadline: Some(cfg.timeout),
        ..Retransmit::default()
    };
    let own = retransmit
        .offset(UDP_TRANSMISSIONS - 1)
        .unwrap_or(cfg.timeout);
    let config = BindingConfig {
        retransmit,
        ..BindingConfig::default()
    };
    let start = tokio::time::Instant::now();
    let r = tokio::select! {
        r = udp_binding_connected(dest, crate::ids::one(), config) => r,
        () = host.silence(dest.ip(), start, own, cfg.timeout) => Ok(UdpPortOutcome::Silent),
        _ = cancel.cancelled() => return None,
    };
    if let Ok(UdpPortOutcome::Answered { binding }) = &r
        && let (Some(rtt), false) = (binding.rtt, binding.rtt_ambiguous)
    {
        host.sample(dest.ip(), rtt);
    }
    Some(r)
}

/// The RFC 5780 NAT tests toward the STUN servers, on the RTT-adaptive schedule
/// (`probes::nat::timing`): `--rto` is the blind RTO and the ceiling, the budget is
/// [`NAT_BUDGET`].
pub(crate) async fn nat(
    cfg: &CheckConfig,
    servers: &[SocketAddr],
    cancel: &Cancel,
) -> Result<Measurements, String> {
    let timing = Timing {
        budget: NAT_BUDGET.max(cfg.rto),
        ..Timing::with_initial_rto(cfg.rto)
    };
    crate::exec::nat::measure(servers, timing, cfg.hairpin, cancel.clone())
        .await
        .map(|(m, _)| m)
        .map_err(|e| e.to_string())
}

/// TURN Allocates over UDP to every port of one address at once; one report per port (`None`
/// where the probe did not finish: no answer), or why the engine could not run. A measured
/// silence ([`HostRtt`]) ends the run early, as cancellation does: what allocated is released.
pub(crate) async fn turn_udp(
    cfg: &CheckConfig,
    target: &TurnUdpTarget,
    host: &HostRtt,
    cancel: &Cancel,
) -> Result<Vec<Option<AllocateReport>>, String> {
    let probes: Vec<AllocateProbe> = target
        .ports
        .iter()
        .map(|p| {
            let mut session = session_config(
                SocketAddr::new(target.ip, *p),
                Transport::Udp,
                cfg.credentials.clone(),
                cfg.timeout,
            );
            session.retransmit.rto = UDP_RTO.min(cfg.timeout);
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
        max_in_flight: target.ports.len().max(1),
        deadline: Some(cfg.timeout * 3),
        drain: Duration::from_secs(2),
        ..Limits::default()
    };
    let mut results: Vec<Option<AllocateReport>> = vec![None; target.ports.len()];
    // The run's own token: the check's cancel, or the measured silence of the host.
    let (stop, run_cancel) = Cancel::new();
    let own = Retransmit {
        rto: UDP_RTO.min(cfg.timeout),
        ..Retransmit::default()
    }
    .offset(UDP_TRANSMISSIONS - 1)
    .unwrap_or(cfg.timeout);
    let start = tokio::time::Instant::now();
    let silenced = std::sync::atomic::AtomicBool::new(false);
    // Silent: stop the run, give what answered two RTOs to release, then let go of the rest
    // (nothing was heard from it, so it holds nothing). Cancelled: the engine's drain.
    let watch = async {
        tokio::select! {
            () = host.silence(target.ip, start, own, cfg.timeout) => {
                silenced.store(true, std::sync::atomic::Ordering::Relaxed);
                stop.cancel();
                let rto = host.rto(target.ip, cfg.timeout).unwrap_or(UDP_RTO);
                tokio::time::sleep(rto * 2).await;
            }
            _ = cancel.cancelled() => {
                stop.cancel();
                std::future::pending::<()>().await;
            }
        }
    };
    let run = engine::run(probes, limits, run_cancel, |ev| {
        if let engine::Event::Finished { probe, output } = ev
            && let Some(slot) = results.get_mut(probe)
        {
            *slot = Some(output);
        }
    });
    let report = tokio::select! {
        r = run => Some(r),
        () = watch => None,
    };
    if let Some(r) = report {
        r.map_err(|e| e.to_string())?;
    }
    // A probe the measured silence stopped was not answered: that is the finding, not an
    // interruption (the check's own cancel leaves it as stopped).
    if silenced.load(std::sync::atomic::Ordering::Relaxed) && !cancel.is_cancelled() {
        for r in results.iter_mut().flatten() {
            if r.status == AllocateStatus::Cancelled {
                r.status = AllocateStatus::Timeout;
            }
        }
    }
    Ok(results)
}

/// A TURN Allocate over TCP or TLS. A bare connect goes first: it times a round trip to the
/// host for the silent rows ([`HostRtt`]), and a connect that gets no answer is called dropped
/// once a measured RTT to the host (and the kernel's second SYN) says so, with nothing
/// allocated yet; then the Allocate runs on a connection of its own.
pub(crate) async fn turn_stream(
    cfg: &CheckConfig,
    target: &TurnStreamTarget,
    host: &HostRtt,
    cancel: &Cancel,
) -> Result<StreamRun<AllocateReport>, String> {
    let start = tokio::time::Instant::now();
    let probe_connect = async {
        let (outcome, took) = engine::tcp::connect_only(target.server, cfg.timeout).await;
        if outcome.is_round_trip() {
            host.sample(target.server.ip(), took);
        }
        outcome
    };
    let connect = tokio::select! {
        c = probe_connect => c,
        () = host.silence(target.server.ip(), start, SYN_RETRANSMISSION, cfg.timeout) => {
            engine::tcp::ConnectOutcome::Timeout
        }
        _ = cancel.cancelled() => engine::tcp::ConnectOutcome::Timeout,
    };
    if !matches!(connect, engine::tcp::ConnectOutcome::Connected { .. }) {
        return Ok(StreamRun {
            output: None,
            connect,
            tls: None,
            error: None,
            interrupted: cancel.is_cancelled(),
            deadline_reached: false,
        });
    }
    let security = if target.transport == Transport::Tls {
        let name = match &target.host {
            Host::Name(n) => n.clone(),
            _ => target.server.ip().to_string(),
        };
        Security::tls(&name, cfg.turn_ca.as_deref()).map_err(|e| e.to_string())?
    } else {
        Security::Plain
    };
    let session = session_config(
        target.server,
        target.transport,
        cfg.credentials.clone(),
        cfg.timeout,
    );
    let probe = AllocateProbe::new(
        AllocateConfig {
            session,
            exercise: false,
        },
        crate::ids::source(),
    );
    let opts = StreamOptions {
        connect_timeout: cfg.timeout,
        io_timeout: cfg.timeout,
        drain: Duration::from_secs(2),
        deadline: Some(cfg.timeout * 3),
    };
    Ok(run_stream(probe, target.server, security, opts, cancel.clone()).await)
}

/// The TCP sample of one range; `on_port` sees every port as it is known.
pub(crate) async fn sample(
    cfg: &CheckConfig,
    target: &SampleTarget,
    cancel: &Cancel,
    on_port: impl FnMut(&TcpPortResult),
) -> Vec<TcpPortResult> {
    let scan = TcpScanConfig {
        connect_timeout: cfg.timeout.min(Duration::from_millis(1500)),
        stun_timeout: cfg.timeout.min(Duration::from_millis(1000)),
        concurrency: 128,
        rate: Some(Rate {
            pps: cfg.rate,
            burst: Rate::POLITE.burst.max(cfg.rate / 10),
        }),
        stun: true,
    };
    let mut on_port = on_port;
    let mut results: Vec<TcpPortResult> = Vec::new();
    tcp_scan(
        target.ip,
        &target.ports,
        scan,
        cancel.clone(),
        crate::ids::one,
        |r| {
            on_port(&r);
            results.push(r);
        },
    )
    .await;
    results.sort_by_key(|r| r.port);
    results
}

/// Relay RTT through a real allocation on `server` (credentials required).
pub(crate) async fn relay_rtt(
    cfg: &CheckConfig,
    server: SocketAddr,
    creds: Credentials,
    cancel: &Cancel,
) -> Result<Option<RelayReport>, String> {
    let count = cfg.relay_count.max(1);
    let config = RelayConfig {
        session: session_config(server, Transport::Udp, Some(creds), cfg.timeout),
        peer_socket: 1,
        peer_probe: Some(server),
        count,
        interval: Duration::from_millis(20),
        size: 100,
        mode: DataMode::Channel,
        direct: 3,
        linger: Duration::from_millis(500),
    };
    let deadline = cfg.timeout * 3 + Duration::from_millis(20) * count;
    engine::run_one(
        RelayProbe::new(config, crate::ids::source()),
        Some(deadline),
        cancel.clone(),
    )
    .await
    .map(|(out, _)| out)
    .map_err(|e| e.to_string())
}

/// The lookups' addresses by name (for the fixes: rules by address, not by name).
pub(crate) fn resolved_addresses(reach: &Reach) -> HashMap<String, Vec<IpAddr>> {
    reach
        .names
        .iter()
        .map(|(k, v)| (k.clone(), v.addresses.clone()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The path checks (docs/paths.md)

/// What the route lookups decided before anything is sent.
#[derive(Debug, Default)]
pub(crate) struct RouteOutcome {
    /// Every destination's route and what was done.
    pub(crate) paths: Vec<DestinationPath>,
    /// The binding the sections run under (the user's, or the physical interface chosen).
    pub(crate) bind: SourceBind,
    /// The same, for the report.
    pub(crate) bound: Vec<BoundFamily>,
    /// The IPv4 gateway of the path to the first IPv4 STUN/TURN server.
    pub(crate) gateway_v4: Option<Ipv4Addr>,
}

/// The local NetBird client's address, from its status (`100.90.1.2/16`).
fn netbird_ip(cfg: &CheckConfig) -> Option<IpAddr> {
    let nb = cfg.netbird.as_ref()?.status.netbird_ip.as_deref()?;
    nb.split('/').next()?.trim().parse().ok()
}

/// Look up the route of every STUN/TURN destination; where it goes into a VPN tunnel (and
/// neither --bind nor --interface decides), choose the physical interface with a route to it
/// and bind that family's probes there — if the host lets us (SO_BINDTODEVICE needs root or
/// CAP_NET_RAW; else the probes follow the tunnel and the report says so).
pub(crate) fn routes(cfg: &CheckConfig, plan: &PathsPlan) -> RouteOutcome {
    let ifaces = engine::route::interfaces().unwrap_or_default();
    let nb = netbird_ip(cfg);
    let user = cfg.paths.bind;
    let mut bind = user;
    let mut auto = [false, false];
    let mut out = RouteOutcome::default();
    for (role, ip) in &plan.routes {
        let v4 = ip.is_ipv4();
        let fam = user.family(v4);
        let binding = UserBinding {
            interface: fam.device.map(|d| d.to_string()),
            address: fam.ip.filter(|a| a.is_ipv4() == v4),
        };
        let route = engine::route::lookup(*ip, None, &ifaces);
        let is_tunnel = route
            .interface
            .as_ref()
            .is_some_and(|i| route::tunnel_sign(i, nb).is_some());
        let alternative = if is_tunnel && !binding.is_set() {
            engine::route::default_route_interfaces(v4)
                .unwrap_or_default()
                .into_iter()
                .filter(|oif| Some(*oif) != route.interface.as_ref().map(|i| i.index))
                .filter(|oif| {
                    ifaces
                        .iter()
                        .find(|i| i.index == *oif)
                        .is_some_and(|i| route::tunnel_sign(i, nb).is_none())
                })
                .map(|oif| engine::route::lookup(*ip, Some(oif), &ifaces))
                .find(|r| r.interface.is_some() && r.error.is_none())
        } else {
            None
        };
        let mut egress = route::decide(
            &route,
            alternative.as_ref(),
            nb,
            &binding,
            cfg.paths.avoid_tunnel,
        );
        if let Egress::AvoidedTunnel {
            tunnel,
            via,
            source,
        } = &egress
        {
            let mut candidate = bind;
            let f = candidate.family_mut(v4);
            f.device = engine::source::IfName::new(via);
            f.ip = *source;
            let slot = if v4 { 0 } else { 1 };
            match candidate.check() {
                Ok(()) if !auto.get(slot).copied().unwrap_or(false) => {
                    bind = candidate;
                    if let Some(a) = auto.get_mut(slot) {
                        *a = true;
                    }
                }
                Ok(()) => {}
                Err(e) => {
                    egress = Egress::ThroughTunnel {
                        tunnel: tunnel.clone(),
                        why: route::ThroughTunnel::NotPermitted {
                            via: via.clone(),
                            error: e.to_string(),
                        },
                    };
                }
            }
        }
        if v4 && out.gateway_v4.is_none() && !matches!(egress, Egress::NoRoute { .. }) {
            let r = match egress {
                Egress::AvoidedTunnel { .. } => alternative.as_ref().unwrap_or(&route),
                _ => &route,
            };
            out.gateway_v4 = match r.gateway {
                Some(IpAddr::V4(g)) => Some(g),
                _ => None,
            };
        }
        out.paths.push(DestinationPath::new(
            *role,
            &route,
            alternative.as_ref(),
            nb,
            egress,
        ));
    }
    for (v4, family) in [(true, "IPv4"), (false, "IPv6")] {
        let f = bind.family(v4);
        let automatic = auto.get(usize::from(!v4)).copied().unwrap_or(false);
        if !f.is_default() {
            out.bound.push(BoundFamily {
                family,
                interface: f.device.map(|d| d.to_string()),
                address: f.ip.filter(|a| a.is_ipv4() == v4),
                source_port: f.port,
                automatic,
            });
        }
    }
    out.bind = bind;
    out
}

/// The captive-portal request.
pub(crate) async fn portal(cfg: &CheckConfig, t: &PortalTarget) -> PortalCheck {
    let timeout = cfg.timeout.min(Duration::from_secs(3));
    let http = engine::captive::http_get(t.addr, &t.host, &t.path, timeout).await;
    let portal = probes::path::captive::judge(&t.host, &http);
    let port = if t.addr.port() == 80 {
        String::new()
    } else {
        format!(":{}", t.addr.port())
    };
    PortalCheck {
        url: format!("http://{}{port}{}", t.host, t.path),
        address: t.addr,
        http,
        portal,
    }
}

/// The path MTU search toward one STUN server.
pub(crate) async fn pmtu(
    cfg: &CheckConfig,
    server: SocketAddr,
    cancel: &Cancel,
) -> Result<PmtuReport, String> {
    let rto = cfg
        .rto
        .clamp(Duration::from_millis(50), Duration::from_millis(500));
    let pcfg = PmtuConfig::new(server, rto);
    let limit = (cfg.timeout * 5).min(Duration::from_secs(20));
    engine::pmtu::search(pcfg, crate::ids::source(), limit, cancel)
        .await
        .map_err(|e| e.to_string())
}

/// The UDP payload of a full WireGuard packet for NetBird's default inner MTU: 1280 bytes of
/// inner packet + 32 of WireGuard (header and authentication tag).
pub(crate) const WIREGUARD_PAYLOAD: usize = 1312;

/// WireGuard-sized datagrams through a TURN allocation on `server`: ChannelData (RFC 8656 §12,
/// what a TURN client sends once its channel is bound: 4 bytes of overhead, so 1344-byte IP
/// packets to the server over IPv4) to this host's own second socket and back, a few of them.
/// Run after the relay RTT's small datagrams came back, so a loss here is the size's.
pub(crate) async fn relay_path(
    cfg: &CheckConfig,
    server: SocketAddr,
    creds: Credentials,
    cancel: &Cancel,
) -> RelayPathCheck {
    let config = RelayConfig {
        session: session_config(server, Transport::Udp, Some(creds), cfg.timeout),
        peer_socket: 1,
        peer_probe: Some(server),
        count: RELAY_PATH_COUNT,
        interval: Duration::from_millis(20),
        size: WIREGUARD_PAYLOAD,
        mode: DataMode::Channel,
        direct: 0,
        linger: Duration::from_millis(500),
    };
    let r = engine::run_one(
        RelayProbe::new(config, crate::ids::source()),
        Some(cfg.timeout * 3 + Duration::from_secs(1)),
        cancel.clone(),
    )
    .await;
    let mut out = RelayPathCheck {
        server,
        payload: WIREGUARD_PAYLOAD,
        sent: 0,
        received: 0,
        error: None,
    };
    match r {
        Ok((Some(rep), _)) => {
            out.sent = rep.sent;
            out.received = rep.received;
            if rep.sent == 0 {
                out.error = Some(format!("nothing sent through the relay: {}", rep.status));
            }
        }
        Ok((None, _)) => out.error = Some("interrupted".into()),
        Err(e) => out.error = Some(e.to_string()),
    }
    out
}

/// Datagrams of the relay-path check.
const RELAY_PATH_COUNT: u32 = 5;

/// The TCP MSS toward the TURN servers' TCP ports: each is connected at once and the first
/// connection made is measured. A connect that gets no answer ends as the TURN/TCP rows do
/// (the kernel's second SYN plus one measured RTO, [`HostRtt`]), else at the step timeout;
/// with no connection at all, the first server's error.
pub(crate) async fn mss(
    cfg: &CheckConfig,
    servers: &[SocketAddr],
    host: &HostRtt,
    cancel: &Cancel,
) -> MssCheck {
    let mut tries = tokio::task::JoinSet::new();
    let start = tokio::time::Instant::now();
    for (k, server) in servers.iter().copied().enumerate() {
        let (host, timeout) = (host.clone(), cfg.timeout);
        tries.spawn(engine::source::scope(engine::source::effective(), async move {
            let r = tokio::select! {
                r = engine::pmtu::tcp_mss(server, timeout) => r,
                () = host.silence(server.ip(), start, SYN_RETRANSMISSION, timeout) => Err(
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer to the connect"),
                ),
            };
            (k, server, r)
        }));
    }
    let mut first_error: Option<(usize, SocketAddr, String)> = None;
    loop {
        let next = tokio::select! {
            n = tries.join_next() => n,
            _ = cancel.cancelled() => None,
        };
        let Some(joined) = next else { break };
        let Ok((k, server, r)) = joined else { continue };
        let overhead = if server.is_ipv4() { 40 } else { 60 };
        match r {
            Ok(m) => {
                return MssCheck {
                    server,
                    mss: Some(m),
                    implied_mtu: Some(m + overhead),
                    error: None,
                };
            }
            Err(e) => {
                if first_error.as_ref().is_none_or(|(f, _, _)| k < *f) {
                    first_error = Some((k, server, e.to_string()));
                }
            }
        }
    }
    let (server, error) = match first_error {
        Some((_, s, e)) => (s, e),
        None => (
            servers
                .first()
                .copied()
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            "stopped".to_string(),
        ),
    };
    MssCheck {
        server,
        mss: None,
        implied_mtu: None,
        error: Some(error),
    }
}

/// How the gateway section runs (`check`'s flags; another command can fill it in too).
#[derive(Clone, Copy, Debug)]
pub(crate) struct GatewayOptions {
    /// Per-exchange timeout (the UPnP SOAP requests).
    pub(crate) timeout: Duration,
    /// Retransmission timeout of the mapping's exchanges.
    pub(crate) rto: Duration,
    /// Lifetime of the test mapping, seconds.
    pub(crate) lifetime: u32,
}

impl GatewayOptions {
    /// The options of a check.
    pub(crate) fn of(cfg: &CheckConfig) -> GatewayOptions {
        GatewayOptions {
            timeout: cfg.timeout,
            rto: cfg.rto,
            lifetime: cfg.paths.mapping_lifetime,
        }
    }
}

/// The gateway: port-mapping discovery, its external address (NAT-PMP, UPnP), and the proven
/// mapping toward `stun` (the double-NAT judgement needs the NAT tests and is made later, by
/// `assemble::paths`). The discovery's waits end when `settle` fires (the check's NAT tests
/// are done, or it was stopped). It takes only [`GatewayOptions`], not the whole check
/// configuration.
pub(crate) async fn gateway(
    o: GatewayOptions,
    gw: Ipv4Addr,
    stun: Option<SocketAddr>,
    settle: Cancel,
    cancel: &Cancel,
) -> GatewaySection {
    // `settle` ends the waits for answers early (what is in by then is kept).
    let pm =
        engine::portmap::probe_gateway(Some(gw), engine::portmap::DEFAULT_BUDGET, settle).await;
    let upnp = if cancel.is_cancelled() {
        None
    } else {
        engine::portmap::upnp_external(&pm, o.timeout.min(Duration::from_secs(2))).await
    };
    let mut external = GatewayExternal {
        gateway: Some(gw),
        nat_pmp: match pm.external_address() {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        },
        nat_pmp_no_public: pm.gateway_has_no_public_address(),
        pcp: None,
        upnp,
    };
    let mapping = match (mapping::protocol_for(&pm), stun) {
        (Some(protocol), Some(stun)) if !cancel.is_cancelled() => {
            let mcfg = MappingConfig {
                protocol,
                gateway: gw,
                internal: std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                lifetime: o.lifetime,
                stun,
                gateway_external: external.nat_pmp,
                rto: o
                    .rto
                    .clamp(Duration::from_millis(100), Duration::from_millis(500)),
                attempts: 3,
                nonce: *crate::ids::one().as_bytes(),
            };
            match engine::portmap::prove_mapping(
                mcfg,
                crate::ids::source(),
                cancel,
                Duration::from_secs(2),
            )
            .await
            {
                Ok(p) => Some(p),
                Err(e) => Some(MappingProof {
                    protocol: "none",
                    gateway: gw,
                    internal: std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                    requested_lifetime: o.lifetime,
                    mapped_before: None,
                    other_address: None,
                    result: mapping::MapResult::NotRequested {
                        why: format!("no socket for the mapping: {e}"),
                    },
                    verification: mapping::Verification::NotTried {
                        why: "no mapping".into(),
                    },
                    deletion: mapping::Deletion::NotNeeded,
                    interrupted: false,
                }),
            }
        }
        _ => None,
    };
    if let Some(p) = &mapping
        && p.protocol == "PCP"
        && let mapping::MapResult::Created { external_ip, .. } = &p.result
    {
        external.pcp = *external_ip;
    }
    GatewaySection {
        gateway: gw,
        port_mapping: pm,
        external,
        double_nat: NatLayers::Unknown {
            why: "not judged yet".into(),
        },
        mapping,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn heard_waits_for_the_row_and_says_how_it_ended() {
        let heard = Heard::default();
        let (a, b) = (
            SocketAddr::from(([192, 0, 2, 1], 3478)),
            SocketAddr::from(([192, 0, 2, 2], 3478)),
        );
        let waiter = tokio::spawn({
            let heard = heard.clone();
            async move { (heard.answered(a).await, heard.answered(b).await) }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        heard.set(b, false);
        heard.set(a, true);
        assert_eq!(waiter.await.unwrap(), (true, false));
    }
}
