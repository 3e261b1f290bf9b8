//! The NAT measurements on the engine, shared by `stunmap nat`, `check` and `pair`: one
//! [`FamilyRun`] per address family (the RFC 5780 tests and the multi-server comparison on
//! one RTT-adaptive schedule, `probes::nat::timing`), each on `engine::ice::run_signalled`
//! with a TCP round trip to the same server measured beside it and handed in as a signal, so
//! that a path where UDP is silent is judged on a measured RTT; and the binding lifetime.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Result;
use engine::{Cancel, Event, Limits};
use probes::Retransmit;
use probes::nat::lifetime::{BindingLifetime, LifetimeConfig, LifetimeMeasurements};
use probes::nat::{FamilyConfig, FamilyMeasurements, FamilyRun, Measurements, TcpRtt, Timing};
use tokio::sync::mpsc;

/// Ports a TCP round trip is timed on besides the server's own: 443 is the one most egress
/// firewalls pass (and TURN/TLS and the relay listen on).
const TCP_RTT_PORTS: [u16; 1] = [443];

/// The family's run to completion, the budget, or cancellation; with the TCP round trip timed
/// beside it.
async fn family(
    servers: Vec<SocketAddr>,
    timing: Timing,
    hairpin: bool,
    cancel: Cancel,
    ids: probes::stun::TransactionIdSource,
) -> Result<Option<(FamilyMeasurements, bool)>> {
    let Some(first) = servers.first().copied() else {
        return Ok(None);
    };
    let config = FamilyConfig {
        servers: servers.clone(),
        timing,
        hairpinning: hairpin,
        ..FamilyConfig::new(servers.clone())
    };
    let Some(probe) = FamilyRun::new(config, ids) else {
        return Ok(None);
    };
    let (hint_tx, hint_rx) = mpsc::channel(4);
    let (out_tx, _out_rx) = mpsc::channel(1);
    // The machine ends itself at the budget; the engine's deadline is only a backstop.
    let run = engine::ice::run_signalled(
        probe,
        hint_rx,
        out_tx,
        cancel.clone(),
        Some(timing.budget + Duration::from_secs(1)),
        Duration::ZERO,
    );
    // Stops with the run (the JoinSet aborts the connects still waiting).
    let tcp = async move {
        let mut ports = vec![first.port()];
        ports.extend(TCP_RTT_PORTS.iter().filter(|p| **p != first.port()));
        let mut tries = tokio::task::JoinSet::new();
        for port in ports {
            let dest = SocketAddr::new(first.ip(), port);
            tries.spawn(engine::tcp::connect_only(dest, timing.budget));
        }
        // The first round trip is enough.
        while let Some(r) = tries.join_next().await {
            if let Ok((outcome, rtt)) = r
                && outcome.is_round_trip()
            {
                let _ = hint_tx.send(TcpRtt(rtt)).await;
                break;
            }
        }
        std::future::pending::<std::convert::Infallible>().await
    };
    let run = tokio::select! {
        r = run => r,
        never = tcp => match never {},
    };
    let run = run?;
    let mut fam = FamilyMeasurements::default();
    if let Some(out) = run.output {
        fam.record(out);
    }
    fam.local_addresses = local_addresses(&fam, &servers);
    Ok(Some((fam, run.interrupted)))
}

/// Measure NAT behaviour toward `servers` (already resolved), both families at once; the
/// measurements and whether a signal stopped the run.
pub(crate) async fn measure(
    servers: &[SocketAddr],
    timing: Timing,
    hairpin: bool,
    cancel: Cancel,
) -> Result<(Measurements, bool)> {
    let mut ids = crate::ids::source();
    let of = |v4: bool| -> Vec<SocketAddr> {
        servers
            .iter()
            .copied()
            .filter(|s| s.is_ipv4() == v4)
            .collect()
    };
    let (v4, v6) = tokio::join!(
        family(of(true), timing, hairpin, cancel.clone(), ids.fork()),
        family(of(false), timing, hairpin, cancel.clone(), ids.fork()),
    );
    let (v4, v6) = (v4?, v6?);
    let interrupted = [&v4, &v6].iter().any(|f| f.as_ref().is_some_and(|f| f.1));
    let m = Measurements {
        ipv4: v4.map(|f| f.0),
        ipv6: v6.map(|f| f.0),
        ..Measurements::default()
    };
    Ok((m, interrupted))
}

/// Measure the binding lifetime (RFC 5780 §4.6) toward the first server of each family, up to
/// `max_idle`; returns (IPv4, IPv6).
pub(crate) async fn measure_lifetime(
    servers: &[SocketAddr],
    max_idle: Duration,
    rto: Duration,
    cancel: Cancel,
) -> Result<(Option<LifetimeMeasurements>, Option<LifetimeMeasurements>)> {
    let retransmit = Retransmit {
        rto,
        ..LifetimeConfig::DEFAULT_RETRANSMIT
    };
    let firsts: Vec<SocketAddr> = [true, false]
        .into_iter()
        .filter_map(|v4| servers.iter().copied().find(|s| s.is_ipv4() == v4))
        .collect();
    let probes = firsts.iter().map(|s| {
        let cfg = LifetimeConfig {
            retransmit,
            ..LifetimeConfig::new(*s, max_idle)
        };
        BindingLifetime::new(cfg, crate::ids::source())
    });
    let (mut v4, mut v6) = (None, None);
    let limits = Limits {
        // The longest idle time, then one silent schedule for its trigger, with room.
        deadline: Some(max_idle + retransmit.give_up_after() * 2 + Duration::from_secs(2)),
        ..Limits::default()
    };
    engine::run(probes, limits, cancel, |ev| {
        if let Event::Finished { output, .. } = ev {
            if output.server.is_ipv4() {
                v4 = Some(output);
            } else {
                v6 = Some(output);
            }
        }
    })
    .await?;
    Ok((v4, v6))
}

/// The host's source addresses toward the servers (what the OS routes from), used to tell
/// "no NAT" (mapped address is our own) from a NAT.
fn local_addresses(fam: &FamilyMeasurements, servers: &[SocketAddr]) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = servers
        .iter()
        .filter_map(|s| engine::udp::routed_source(s).ok())
        .collect();
    if let Some(d) = &fam.discovery {
        ips.extend(d.local_mapping.map(|a| a.ip()));
    }
    ips.retain(|ip| !ip.is_unspecified());
    ips.sort();
    ips.dedup();
    ips
}
