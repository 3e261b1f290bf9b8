//! The check's I/O: each function runs one kind of probe on the engine and returns its typed
//! result, nothing else (no rows, no words). Every call honours the run's cancel token.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use engine::control::{ControlConfig, ControlReport};
use engine::scan::{TcpScanConfig, UdpPortOutcome, tcp_scan, udp_binding_connected};
use engine::stream::{Security, StreamOptions, StreamRun, run_stream};
use engine::{Cancel, Limits, Rate};
use probes::Retransmit;
use probes::Transport;
use probes::binding::BindingConfig;
use probes::control::Timeouts;
use probes::nat::Measurements;
use probes::profile::Host;
use probes::sweep::TcpPortResult;
use probes::turn::allocate::{AllocateConfig, AllocateProbe, AllocateReport};
use probes::turn::auth::Credentials;
use probes::turn::relay::{DataMode, RelayConfig, RelayProbe, RelayReport};

use super::plan::{
    CheckConfig, ControlPlan, Reach, Resolved, SampleTarget, TurnStreamTarget, TurnUdpTarget,
};
use crate::exec::turn::session_config;

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

/// One Binding on a connected UDP socket (ICMP errors for exactly this port come back).
pub(crate) async fn stun(
    cfg: &CheckConfig,
    dest: SocketAddr,
    cancel: &Cancel,
) -> Option<std::io::Result<UdpPortOutcome>> {
    if cancel.is_cancelled() {
        return None;
    }
    let config = BindingConfig {
        retransmit: Retransmit {
            rto: Duration::from_millis(250).min(cfg.timeout),
            deadline: Some(cfg.timeout),
            ..Retransmit::default()
        },
        ..BindingConfig::default()
    };
    tokio::select! {
        r = udp_binding_connected(dest, crate::ids::one(), config) => Some(r),
        _ = cancel.cancelled() => None,
    }
}

/// The RFC 5780 NAT tests toward the STUN servers.
pub(crate) async fn nat(
    cfg: &CheckConfig,
    servers: &[SocketAddr],
    cancel: &Cancel,
) -> Result<Measurements, String> {
    crate::cmd::nat::measure(servers, cfg.rto, cfg.hairpin, cancel.clone())
        .await
        .map(|(m, _)| m)
        .map_err(|e| e.to_string())
}

/// TURN Allocates over UDP to every port of one address at once; one report per port (`None`
/// where the probe did not finish), or why the engine could not run.
pub(crate) async fn turn_udp(
    cfg: &CheckConfig,
    target: &TurnUdpTarget,
    cancel: &Cancel,
) -> Result<Vec<Option<AllocateReport>>, String> {
    let probes: Vec<AllocateProbe> = target
        .ports
        .iter()
        .map(|p| {
            let session = session_config(
                SocketAddr::new(target.ip, *p),
                Transport::Udp,
                cfg.credentials.clone(),
                cfg.timeout,
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
        max_in_flight: target.ports.len().max(1),
        deadline: Some(cfg.timeout * 3),
        drain: Duration::from_secs(2),
        ..Limits::default()
    };
    let mut results: Vec<Option<AllocateReport>> = vec![None; target.ports.len()];
    engine::run(probes, limits, cancel.clone(), |ev| {
        if let engine::Event::Finished { probe, output } = ev
            && let Some(slot) = results.get_mut(probe)
        {
            *slot = Some(output);
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(results)
}

/// A TURN Allocate over TCP or TLS.
pub(crate) async fn turn_stream(
    cfg: &CheckConfig,
    target: &TurnStreamTarget,
    cancel: &Cancel,
) -> Result<StreamRun<AllocateReport>, String> {
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
