//! What a check will do, decided before anything is sent: which names to resolve, then — from
//! the addresses and routes found — every probe of every section. Pure: the same profile,
//! configuration and [`Reach`] always give the same [`Plan`].

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use probes::control::dns::Lookup;
use probes::control::http::ProxyUrl;
use probes::control::{EndpointSpec, ResolveOverride, Role};
use probes::profile::{Host, Profile, ServiceKind};
use probes::sweep::sample_ports;
use probes::turn::auth::Credentials;
use rustls::pki_types::CertificateDer;

use super::model::{NotRun, ProbeKind, Row, RowOutcome, Status, Transport};

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
    /// Notes from loading the profile.
    pub(crate) notes: Vec<String>,
    /// The local NetBird client's status, when the profile came from it.
    pub(crate) netbird: Option<NetbirdInput>,
    /// The path checks: source binding, tunnel avoidance, portal, PMTU, port mapping.
    pub(crate) paths: PathOptions,
}

/// How the path checks run (docs/paths.md).
#[derive(Clone, Debug)]
pub(crate) struct PathOptions {
    /// `--bind` / `--interface` / `--source-port` (already checked against the host).
    pub(crate) bind: engine::source::SourceBind,
    /// Leave by the physical interface when a route goes into a VPN tunnel (off:
    /// `--via-tunnel`).
    pub(crate) avoid_tunnel: bool,
    /// Ask the gateway about port mapping and prove a short-lived mapping (off:
    /// `--no-portmap`).
    pub(crate) portmap: bool,
    /// Lifetime of the proven mapping, seconds.
    pub(crate) mapping_lifetime: u32,
    /// The path MTU search, the MSS and the relay-path check (off: `--no-pmtu`).
    pub(crate) pmtu: bool,
    /// The captive-portal request (off: `--no-portal`).
    pub(crate) portal: bool,
    /// `--portal-url`: the URL to request instead of `http://<management host>/`.
    pub(crate) portal_url: Option<PortalUrl>,
}

impl Default for PathOptions {
    fn default() -> Self {
        PathOptions {
            bind: engine::source::SourceBind::default(),
            avoid_tunnel: true,
            portmap: true,
            mapping_lifetime: 30,
            pmtu: true,
            portal: true,
            portal_url: None,
        }
    }
}

/// An `http://HOST[:PORT]/PATH` URL for the portal request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PortalUrl {
    /// The host (a name or an IP literal).
    pub(crate) host: Host,
    /// The port (80).
    pub(crate) port: u16,
    /// The path.
    pub(crate) path: String,
}

impl PortalUrl {
    /// Parse `http://HOST[:PORT][/PATH]` (no https: a portal intercepts plain HTTP).
    pub(crate) fn parse(s: &str) -> Result<PortalUrl, String> {
        let rest = s
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("http://"))
            .and_then(|_| s.get(7..))
            .ok_or_else(|| format!("{}: not an http:// URL", crate::report::doc::quoted(s)))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("/")),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| {
                format!("{}: unclosed [ in the host", crate::report::doc::quoted(s))
            })?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{}: bad port", crate::report::doc::quoted(s)))?,
        };
        let host =
            Host::parse(host).map_err(|e| format!("{}: {e}", crate::report::doc::quoted(s)))?;
        if path.bytes().any(|c| !c.is_ascii_graphic()) {
            return Err(format!(
                "{}: the path has spaces or control characters",
                crate::report::doc::quoted(s)
            ));
        }
        Ok(PortalUrl {
            host,
            port,
            path: path.to_string(),
        })
    }
}

/// A NetBird status the check compares itself with.
#[derive(Clone, Debug)]
pub(crate) struct NetbirdInput {
    /// The status.
    pub(crate) status: probes::netbird::Status,
    /// Where it came from.
    pub(crate) source: super::model::NetbirdSource,
    /// Notes of its import.
    pub(crate) notes: Vec<String>,
}

impl std::fmt::Debug for CheckConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckConfig")
            .field("profile", &self.profile.name)
            .field("credentials", &self.credentials.is_some())
            .finish_non_exhaustive()
    }
}

/// The names to resolve, each with the ports it is used on (a `--resolve NAME:PORT:ADDR`
/// applies to those ports only).
pub(crate) fn names(profile: &Profile, relays: &[String]) -> BTreeMap<String, Vec<u16>> {
    let mut names: BTreeMap<String, Vec<u16>> = BTreeMap::new();
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
    for r in relays {
        names.entry(r.clone()).or_default().push(443);
    }
    names
}

/// One resolved (or not) name.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Resolved {
    /// Its addresses, IPv4 first.
    pub(crate) addresses: Vec<IpAddr>,
    /// How the lookup went, or `None` when `--resolve` gave the addresses.
    pub(crate) lookups: Option<(Lookup, Lookup)>,
}

impl Resolved {
    /// The time to the first answer.
    fn time(&self) -> Option<Duration> {
        let (a, b) = self.lookups.as_ref()?;
        [a, b]
            .iter()
            .filter_map(|l| match l {
                Lookup::Resolved { time, .. } => Some(*time),
                _ => None,
            })
            .min()
    }
}

/// What the host can reach: the names' addresses and, for every address, whether a route
/// exists (the error when not).
#[derive(Clone, Debug, Default)]
pub(crate) struct Reach {
    /// Per name.
    pub(crate) names: HashMap<String, Resolved>,
    /// Per address: `Err` with the reason when the host has no route to it.
    pub(crate) routes: HashMap<IpAddr, Result<(), String>>,
}

impl Reach {
    fn addresses_of(&self, h: &Host) -> Vec<IpAddr> {
        match h {
            Host::Ip(ip) => vec![*ip],
            Host::Name(n) => self
                .names
                .get(n.as_str())
                .map(|r| r.addresses.clone())
                .unwrap_or_default(),
            Host::Wildcard(_) => Vec::new(),
        }
    }

    /// Why a host gives nothing to probe: no address, or no route to any of them.
    fn not_probed(&self, h: &Host) -> NotRun {
        let addresses = self.addresses_of(h);
        let error = addresses
            .iter()
            .find_map(|ip| self.routes.get(ip).and_then(|r| r.as_ref().err()).cloned());
        match error {
            Some(error) if !addresses.is_empty() => NotRun::NoRoute {
                host: h.to_string(),
                addresses,
                error,
            },
            _ => NotRun::NoAddress {
                host: h.to_string(),
            },
        }
    }

    /// The addresses to probe: the first of each family the host has a route for.
    fn probe_addresses(&self, h: &Host, notes: &mut Vec<String>) -> Vec<IpAddr> {
        let addrs = self.addresses_of(h);
        let mut out = Vec::new();
        for v4 in [true, false] {
            let Some(ip) = addrs.iter().find(|a| a.is_ipv4() == v4) else {
                continue;
            };
            match self.routes.get(ip) {
                Some(Err(e)) => notes.push(format!(
                    "{ip}: no route for {} ({e}); that family is not probed",
                    if v4 { "IPv4" } else { "IPv6" }
                )),
                _ => out.push(*ip),
            }
        }
        out
    }
}

/// The control-plane checks.
#[derive(Clone, Debug, Default)]
pub(crate) struct ControlPlan {
    /// Endpoints.
    pub(crate) endpoints: Vec<EndpointSpec>,
    /// The service index of each endpoint.
    pub(crate) services: Vec<usize>,
    /// Published addresses per name, to spot rewritten answers.
    pub(crate) published: Vec<(String, Vec<IpAddr>)>,
}

/// A STUN Binding to one port of one address.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StunTarget {
    /// Service index.
    pub(crate) service: usize,
    /// The host as in the profile.
    pub(crate) host: String,
    /// Where to.
    pub(crate) dest: SocketAddr,
}

/// TURN Allocates over UDP to every port of one address.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TurnUdpTarget {
    /// Service index.
    pub(crate) service: usize,
    /// The host as in the profile.
    pub(crate) host: String,
    /// The address.
    pub(crate) ip: IpAddr,
    /// The ports.
    pub(crate) ports: Vec<u16>,
}

/// A TURN Allocate over TCP or TLS.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TurnStreamTarget {
    /// Service index.
    pub(crate) service: usize,
    /// The host as in the profile (its name is the TLS server name).
    pub(crate) host: Host,
    /// Where to.
    pub(crate) server: SocketAddr,
    /// TCP or TLS.
    pub(crate) transport: Transport,
}

/// The TCP sample of one range.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SampleTarget {
    /// Service index.
    pub(crate) service: usize,
    /// The host as in the profile.
    pub(crate) host: String,
    /// The address.
    pub(crate) ip: IpAddr,
    /// The range.
    pub(crate) range: (u16, u16),
    /// The ports drawn from it.
    pub(crate) ports: Vec<u16>,
}

/// Every probe of a check.
#[derive(Clone, Debug, Default)]
pub(crate) struct Plan {
    /// Rows known before anything is sent: DNS answers, skipped checks.
    pub(crate) rows: Vec<(usize, Row)>,
    /// Control plane and relay.
    pub(crate) control: ControlPlan,
    /// STUN Bindings.
    pub(crate) stun: Vec<StunTarget>,
    /// The servers of the NAT tests (first STUN address per family and host).
    pub(crate) nat_servers: Vec<SocketAddr>,
    /// TURN over UDP.
    pub(crate) turn_udp: Vec<TurnUdpTarget>,
    /// TURN over TCP/TLS.
    pub(crate) turn_stream: Vec<TurnStreamTarget>,
    /// TCP samples.
    pub(crate) samples: Vec<SampleTarget>,
    /// The path checks.
    pub(crate) paths: PathsPlan,
    /// What the plan had to leave out, and why.
    pub(crate) notes: Vec<String>,
}

/// The path checks of a run (docs/paths.md).
#[derive(Clone, Debug, Default)]
pub(crate) struct PathsPlan {
    /// Destinations whose route is looked up before anything is sent: (role, address). The
    /// STUN and TURN servers: the paths a peer's WireGuard traffic takes.
    pub(crate) routes: Vec<(&'static str, IpAddr)>,
    /// The path MTU searches: the first STUN server of each family.
    pub(crate) pmtu: Vec<SocketAddr>,
    /// The TCP MSS: the TURN servers' TCP ports, the first that connects is measured.
    pub(crate) mss: Vec<SocketAddr>,
    /// The captive-portal request.
    pub(crate) portal: Option<PortalTarget>,
    /// The STUN server (IPv4) the proven port mapping uses.
    pub(crate) mapping_stun: Option<SocketAddr>,
}

/// Where the captive-portal request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PortalTarget {
    /// The address.
    pub(crate) addr: SocketAddr,
    /// The Host header (the name).
    pub(crate) host: String,
    /// The path.
    pub(crate) path: String,
}

impl Plan {
    /// Rows the plan will give (for the progress bar).
    pub(crate) fn size(&self) -> usize {
        let samples: usize = self.samples.iter().map(|s| 1 + s.ports.len()).sum();
        self.control.endpoints.len()
            + self.stun.len()
            + self.turn_udp.iter().map(|t| t.ports.len()).sum::<usize>()
            + self.turn_stream.len()
            + samples
    }
}

/// The DNS row of a name.
fn dns_row(name: &str, r: &Resolved) -> Row {
    let (state, outcome) = match &r.lookups {
        None => (
            Status::Ok,
            RowOutcome::Resolved {
                addresses: r.addresses.clone(),
                overridden: true,
            },
        ),
        Some(_) if !r.addresses.is_empty() => (
            Status::Ok,
            RowOutcome::Resolved {
                addresses: r.addresses.clone(),
                overridden: false,
            },
        ),
        Some((a, aaaa)) => (
            Status::Blocked,
            RowOutcome::Unresolved {
                name: name.to_string(),
                a: a.clone(),
                aaaa: aaaa.clone(),
            },
        ),
    };
    Row::new(ProbeKind::Dns, None, name, state, outcome).rtt(r.time())
}

/// Plan every probe of a check from what DNS and the routing table said.
pub(crate) fn plan(cfg: &CheckConfig, reach: &Reach) -> Plan {
    let mut plan = Plan::default();
    let profile = &cfg.profile;
    for (i, s) in profile.services.iter().enumerate() {
        for h in &s.hosts {
            let Some(n) = h.name() else { continue };
            if let Some(r) = reach.names.get(n) {
                plan.rows.push((i, dns_row(n, r)));
            }
        }
    }
    control(cfg, &mut plan);
    stun(cfg, reach, &mut plan);
    turn(cfg, reach, &mut plan);
    paths(cfg, reach, &mut plan);
    plan
}

/// The path checks: routes of every STUN/TURN address, the PMTU search toward the first STUN
/// server of each family, the MSS toward the first TURN TCP port (else the relay), the
/// portal request to the management host's port 80 (or `--portal-url`), and the STUN server
/// of the proven port mapping (the NAT tests' IPv4 server).
fn paths(cfg: &CheckConfig, reach: &Reach, plan: &mut Plan) {
    let o = &cfg.paths;
    let mut routes: Vec<(&'static str, IpAddr)> = Vec::new();
    for t in &plan.stun {
        routes.push(("STUN", t.dest.ip()));
    }
    for t in &plan.turn_udp {
        routes.push(("TURN", t.ip));
    }
    for t in &plan.turn_stream {
        routes.push(("TURN", t.server.ip()));
    }
    let mut seen = std::collections::HashSet::new();
    routes.retain(|(_, ip)| seen.insert(*ip));
    plan.paths.routes = routes;
    if o.pmtu {
        for v4 in [true, false] {
            if let Some(s) = plan.nat_servers.iter().find(|s| s.is_ipv4() == v4) {
                plan.paths.pmtu.push(*s);
            }
        }
        for t in &plan.turn_stream {
            if t.transport == Transport::Tcp && !plan.paths.mss.contains(&t.server) {
                plan.paths.mss.push(t.server);
            }
        }
    }
    if o.portmap {
        plan.paths.mapping_stun = plan.nat_servers.iter().find(|s| s.is_ipv4()).copied();
    }
    if o.portal {
        plan.paths.portal = portal_target(cfg, reach, &mut plan.notes);
    }
}

fn portal_target(
    cfg: &CheckConfig,
    reach: &Reach,
    notes: &mut Vec<String>,
) -> Option<PortalTarget> {
    let (host, port, path) = match &cfg.paths.portal_url {
        Some(u) => (u.host.clone(), u.port, u.path.clone()),
        None => {
            let m = cfg
                .profile
                .of_kind(ServiceKind::Management)
                .flat_map(|s| s.hosts.iter())
                .find(|h| !matches!(h, Host::Wildcard(_)))?;
            (m.clone(), 80, "/".to_string())
        }
    };
    let addr = match &host {
        Host::Ip(ip) => Some(*ip),
        Host::Name(n) => reach
            .names
            .get(n.as_str())
            .and_then(|r| r.addresses.first().copied())
            .or_else(|| {
                cfg.overrides
                    .iter()
                    .find(|o| o.name.eq_ignore_ascii_case(n))
                    .map(|o| o.address)
            }),
        Host::Wildcard(_) => None,
    };
    let Some(ip) = addr else {
        notes.push(format!("captive portal not checked: {host} has no address"));
        return None;
    };
    Some(PortalTarget {
        addr: SocketAddr::new(ip, port),
        host: host.to_string(),
        path,
    })
}

fn control(cfg: &CheckConfig, plan: &mut Plan) {
    let profile = &cfg.profile;
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
                Host::Wildcard(_) if role == Role::Relay && !cfg.relays.is_empty() => {}
                Host::Wildcard(_) => {
                    let row = Row::not_run(
                        ProbeKind::Websocket,
                        Transport::Tls,
                        h.to_string(),
                        NotRun::Wildcard {
                            pattern: h.to_string(),
                        },
                    )
                    .port(s.tcp.first().map(|r| r.start));
                    plan.rows.push((i, row));
                }
            }
        }
        if role == Role::Relay {
            hosts.extend(cfg.relays.iter().cloned());
        }
        for name in hosts {
            if let Some(n) = s.hosts.iter().find_map(Host::name).filter(|n| *n == name) {
                let p = s.published();
                if !p.is_empty() {
                    plan.control.published.push((n.to_string(), p));
                }
            }
            for port in s.tcp.iter().map(|r| r.start) {
                plan.control.endpoints.push(EndpointSpec {
                    role,
                    name: name.clone(),
                    port,
                });
                plan.control.services.push(i);
            }
        }
    }
    if !cfg.relays.is_empty() && profile.of_kind(ServiceKind::Relay).next().is_none() {
        plan.notes
            .push("--relay given but the profile has no relay service; ignored".into());
    }
}

/// STUN: every UDP port of every address; the NAT tests on the STUN servers.
fn stun(cfg: &CheckConfig, reach: &Reach, plan: &mut Plan) {
    for (i, s) in cfg.profile.services.iter().enumerate() {
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
            let addrs = reach.probe_addresses(h, &mut plan.notes);
            if addrs.is_empty() && !matches!(h, Host::Wildcard(_)) {
                let row = Row::not_run(
                    ProbeKind::Stun,
                    Transport::Udp,
                    h.to_string(),
                    reach.not_probed(h),
                );
                plan.rows.push((i, row));
            }
            for ip in addrs {
                plan.nat_servers.push(SocketAddr::new(ip, nat_port));
                for port in &ports {
                    plan.stun.push(StunTarget {
                        service: i,
                        host: h.to_string(),
                        dest: SocketAddr::new(ip, *port),
                    });
                }
            }
        }
    }
}

/// TURN: Allocate on every UDP port, on each single TCP/TLS port and the first port of each
/// range; the TCP sample of each range on one address (IPv4 first).
fn turn(cfg: &CheckConfig, reach: &Reach, plan: &mut Plan) {
    for (i, s) in cfg.profile.services.iter().enumerate() {
        if s.kind != ServiceKind::Turn {
            continue;
        }
        for h in &s.hosts {
            let addrs = reach.probe_addresses(h, &mut plan.notes);
            if addrs.is_empty() {
                let row = Row::not_run(
                    ProbeKind::Turn,
                    Transport::Udp,
                    h.to_string(),
                    reach.not_probed(h),
                );
                plan.rows.push((i, row));
                continue;
            }
            for ip in &addrs {
                let udp: Vec<u16> = s.udp.iter().flat_map(|r| r.ports()).collect();
                if !udp.is_empty() {
                    plan.turn_udp.push(TurnUdpTarget {
                        service: i,
                        host: h.to_string(),
                        ip: *ip,
                        ports: udp,
                    });
                }
                let mut stream_ports: Vec<(u16, Transport)> = s
                    .tcp
                    .iter()
                    .map(|r| (r.start, Transport::Tcp))
                    .chain(s.tls.iter().map(|p| (*p, Transport::Tls)))
                    .collect();
                stream_ports.sort_by_key(|(p, t)| (*p, *t == Transport::Tls));
                stream_ports.dedup();
                for (port, transport) in stream_ports {
                    plan.turn_stream.push(TurnStreamTarget {
                        service: i,
                        host: h.clone(),
                        server: SocketAddr::new(*ip, port),
                        transport,
                    });
                }
            }
            if let Some(ip) = addrs.first() {
                for r in s.tcp.iter().filter(|r| !r.is_single()) {
                    plan.samples.push(SampleTarget {
                        service: i,
                        host: h.to_string(),
                        ip: *ip,
                        range: (r.start, r.end),
                        ports: sample_ports(r.start, r.end, cfg.sample, cfg.seed),
                    });
                }
            }
        }
    }
}
