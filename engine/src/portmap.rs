//! Ask the IPv4 default gateway whether it maps ports on request: NAT-PMP (RFC 6886), PCP
//! (RFC 6887) and UPnP IGD (SSDP, then the device description over HTTP). The three run
//! concurrently under one time budget; the codecs and result types are
//! `probes::wire::{natpmp, pcp, upnp}` and the result types `probes::nat::portmap`. Nothing here creates a mapping.
//!
//! Only the gateway is believed: SSDP answers from other hosts, or pointing to a description
//! on another host, are counted and ignored (anyone on the LAN can answer a multicast search).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use probes::nat::portmap::{self, PortMapping, ProtocolStatus, UpnpStatus};
use probes::wire::natpmp::{self, EXTERNAL_REQUEST as NATPMP_EXTERNAL_REQUEST};
use probes::wire::pcp;
use probes::wire::upnp::{self, SSDP_GROUP};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

use crate::Cancel;

/// The whole budget of [`probe_gateway`] when the caller has no opinion: NAT-PMP and PCP
/// answer within a LAN round trip, and UPnP devices within MX = 1 s of the search.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(1200);

/// The description of a device is small (a few KiB); more is not read.
const MAX_DESCRIPTION: usize = 64 * 1024;

/// The IPv4 default gateway of this network namespace (Linux: `/proc/net/route`).
pub fn default_gateway_v4() -> Option<Ipv4Addr> {
    let text = std::fs::read_to_string("/proc/net/route").ok()?;
    portmap::default_gateway_from_proc_route(&text)
}

/// Ask the default gateway (or `gateway`, when given) about NAT-PMP, PCP and UPnP IGD, all
/// within `budget`; waits for answers end early when `settle` fires (the caller has its
/// verdict and wants what is in by then). A description already being fetched is finished.
pub async fn probe_gateway(
    gateway: Option<Ipv4Addr>,
    budget: Duration,
    settle: Cancel,
) -> PortMapping {
    let Some(gw) = gateway.or_else(default_gateway_v4) else {
        return PortMapping::default();
    };
    let deadline = Instant::now() + budget;
    let (nat_pmp, pcp, (upnp, ignored_answers)) = tokio::join!(
        nat_pmp(gw, deadline, &settle),
        pcp(gw, deadline, &settle),
        upnp(gw, deadline, &settle)
    );
    PortMapping {
        gateway: Some(gw),
        nat_pmp,
        pcp,
        upnp,
        ignored_answers,
    }
}

/// `fut` until `at` or until `settle` fires; `None` then.
async fn until<F: std::future::Future>(at: Instant, settle: &Cancel, fut: F) -> Option<F::Output> {
    tokio::select! {
        r = timeout_at(at, fut) => r.ok(),
        () = settle.cancelled() => None,
    }
}

/// Send `request` to the gateway's port 5351 with RFC 6886 §3.1's schedule (250 ms, doubling)
/// until an answer `status` accepts arrives (its status), the deadline passes or `settle`
/// fires (no answer, or malformed when only unreadable ones came).
async fn exchange(
    gw: Ipv4Addr,
    deadline: Instant,
    settle: &Cancel,
    request: impl Fn(IpAddr) -> Vec<u8>,
    status: impl Fn(&[u8]) -> Option<ProtocolStatus>,
) -> ProtocolStatus {
    let Ok(sock) = UdpSocket::bind("0.0.0.0:0").await else {
        return ProtocolStatus::NoAnswer;
    };
    // Connected: only the gateway's port 5351 is heard, and an ICMP port unreachable surfaces
    // as ECONNREFUSED.
    if sock
        .connect(SocketAddr::new(IpAddr::V4(gw), natpmp::PORT))
        .await
        .is_err()
    {
        return ProtocolStatus::Unreachable;
    }
    let local = sock
        .local_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let req = request(local);
    let mut wait = Duration::from_millis(250);
    let mut buf = [0u8; 1100];
    let mut malformed = false;
    loop {
        if let Err(e) = sock.send(&req).await {
            return status_of(&e);
        }
        let resend = (Instant::now() + wait).min(deadline);
        loop {
            match until(resend, settle, sock.recv(&mut buf)).await {
                None => break,
                Some(Err(e)) => return status_of(&e),
                Some(Ok(n)) => match status(buf.get(..n).unwrap_or(&[])) {
                    Some(s) => return s,
                    None => malformed = true,
                },
            }
        }
        if Instant::now() >= deadline || settle.is_cancelled() {
            return if malformed {
                ProtocolStatus::Malformed
            } else {
                ProtocolStatus::NoAnswer
            };
        }
        wait *= 2;
    }
}

fn status_of(e: &io::Error) -> ProtocolStatus {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        ProtocolStatus::Unreachable
    } else {
        ProtocolStatus::NoAnswer
    }
}

async fn nat_pmp(gw: Ipv4Addr, deadline: Instant, settle: &Cancel) -> ProtocolStatus {
    exchange(
        gw,
        deadline,
        settle,
        |_| NATPMP_EXTERNAL_REQUEST.to_vec(),
        |b| {
            natpmp::parse_external(b)
                .ok()
                .map(|r| PortMapping::nat_pmp_status(&r))
        },
    )
    .await
}

async fn pcp(gw: Ipv4Addr, deadline: Instant, settle: &Cancel) -> ProtocolStatus {
    exchange(
        gw,
        deadline,
        settle,
        |local| pcp::announce_request(local).to_vec(),
        |b| {
            pcp::parse_response(b)
                .ok()
                .map(|r| PortMapping::pcp_status(&r))
        },
    )
    .await
}

/// SSDP search, then the description of the first answer from the gateway.
async fn upnp(gw: Ipv4Addr, deadline: Instant, settle: &Cancel) -> (UpnpStatus, u32) {
    let mut ignored = 0;
    let Ok(sock) = UdpSocket::bind("0.0.0.0:0").await else {
        return (UpnpStatus::NoAnswer, ignored);
    };
    // UPnP Device Architecture 1.1 §1.3.2: TTL 2 by default.
    let _ = sock.set_multicast_ttl_v4(2);
    let search = upnp::ssdp_search(1);
    let mut buf = vec![0u8; 4096];
    // Two copies, 100 ms apart, against loss (UDA 1.1 suggests sending more than once).
    for copy in 0..2u8 {
        if settle.is_cancelled() {
            break;
        }
        if sock.send_to(search.as_bytes(), SSDP_GROUP).await.is_err() {
            return (UpnpStatus::NoAnswer, ignored);
        }
        let wait_until = if copy == 0 {
            (Instant::now() + Duration::from_millis(100)).min(deadline)
        } else {
            deadline
        };
        loop {
            let (n, from) = match until(wait_until, settle, sock.recv_from(&mut buf)).await {
                None | Some(Err(_)) => break,
                Some(Ok(x)) => x,
            };
            let Ok(answer) = upnp::parse_ssdp_answer(buf.get(..n).unwrap_or(&[])) else {
                continue;
            };
            let url = upnp::parse_http_url(answer.location);
            let from_gw = from.ip() == IpAddr::V4(gw);
            let Some(url) = url
                .ok()
                .filter(|u| from_gw && u.addr.ip() == IpAddr::V4(gw))
            else {
                ignored += 1;
                continue;
            };
            let location = answer.location.to_owned();
            let server = answer.server.map(str::to_owned);
            // The description gets its own second: the search may have used the budget.
            let fetch_deadline = deadline.max(Instant::now() + Duration::from_secs(1));
            let status = match fetch(&url, fetch_deadline).await {
                Ok(body) => {
                    let services = upnp::igd_services(&body);
                    if services.is_empty() {
                        UpnpStatus::NoWanService { location }
                    } else {
                        UpnpStatus::Available {
                            location,
                            server,
                            services,
                        }
                    }
                }
                Err(reason) => UpnpStatus::DescriptionFailed { location, reason },
            };
            return (status, ignored);
        }
    }
    (UpnpStatus::NoAnswer, ignored)
}

/// What a gateway's HTTP server sends until it closes the connection, cut once
/// [`MAX_DESCRIPTION`] bytes are in.
async fn read_answer(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut resp = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 || resp.len() >= MAX_DESCRIPTION {
            break;
        }
        resp.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
    }
    Ok(resp)
}

/// GET the description; the body, or why not.
async fn fetch(url: &upnp::HttpUrl, deadline: Instant) -> Result<Vec<u8>, String> {
    let work = async {
        let mut s = TcpStream::connect(url.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", url.addr))?;
        s.write_all(upnp::http_get(url).as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let resp = read_answer(&mut s).await?;
        upnp::http_body(&resp)
            .map(<[u8]>::to_vec)
            .map_err(|e| e.to_string())
    };
    timeout_at(deadline, work)
        .await
        .map_err(|_| "timed out".to_owned())?
}

// ---------------------------------------------------------------------------------------------
// The gateway's external address by UPnP, and the proven mapping

/// The gateway's external address by UPnP IGD `GetExternalIPAddress` on the first WAN
/// service of a discovery that found one: `Some(Some(ip))`, `Some(None)` when the gateway
/// answered with an empty (or non-IPv4) value, `None` when it could not be asked.
pub async fn upnp_external(pm: &PortMapping, timeout: Duration) -> Option<Option<Ipv4Addr>> {
    let gw = pm.gateway?;
    let UpnpStatus::Available {
        location, services, ..
    } = &pm.upnp
    else {
        return None;
    };
    let desc = upnp::parse_http_url(location).ok()?;
    let (control, service_type) = services.iter().find_map(|s| {
        let c = upnp::control_url(&desc, s.control_url.as_deref()?).ok()?;
        (c.addr.ip() == IpAddr::V4(gw)).then(|| (c, s.service_type.clone()))
    })?;
    let req = upnp::soap_request(
        &control,
        &service_type,
        &upnp::SoapAction::GetExternalIpAddress,
    )
    .ok()?;
    let answer = soap_exchange(control.addr, &req, timeout).await.ok()?;
    match upnp::parse_soap_reply(&answer).ok()? {
        upnp::SoapReply::Ok { external_ip } => {
            Some(external_ip.and_then(|t| t.trim().parse::<Ipv4Addr>().ok()))
        }
        upnp::SoapReply::Fault { .. } => None,
    }
}

/// One HTTP exchange with the gateway's control URL: the whole answer (at most 64 KiB).
async fn soap_exchange(
    to: SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let work = async {
        let mut s = crate::source::connect_tcp(to)
            .await
            .map_err(|e| format!("connect {to}: {e}"))?;
        s.write_all(request).await.map_err(|e| e.to_string())?;
        read_answer(&mut s).await
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// Create, prove and delete a short-lived mapping of a new UDP socket (see
/// `probes::path::mapping`). `cfg.internal` is filled in here with the socket's LAN address and
/// port. On `cancel` a mapping that may exist is deleted first (for at most `drain`); the
/// proof says what happened.
pub async fn prove_mapping(
    mut cfg: probes::path::mapping::MappingConfig,
    ids: probes::stun::TransactionIdSource,
    cancel: &crate::driver::Cancel,
    drain: Duration,
) -> io::Result<probes::path::mapping::MappingProof> {
    use probes::path::mapping::{MappingProbe, Step};

    let gw_addr = SocketAddr::new(IpAddr::V4(cfg.gateway), natpmp::PORT);
    let stun_sock = crate::source::tokio_udp_for(&cfg.stun)?;
    let port = stun_sock.local_addr()?.port();
    let lan = match crate::udp::routed_source(&gw_addr)? {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(_) => return Err(io::Error::other("no IPv4 source toward the gateway")),
    };
    cfg.internal = std::net::SocketAddrV4::new(lan, port);
    let gw_sock = crate::source::tokio_udp_for(&gw_addr)?;
    gw_sock.connect(gw_addr).await?;
    let soap_timeout = (cfg.rto * 4).max(Duration::from_secs(1));
    let mut m = MappingProbe::new(cfg, ids);
    let mut gw_buf = [0u8; 1100];
    let mut stun_buf = vec![0u8; 2048];
    let mut drain_until: Option<Instant> = None;
    while !m.is_done() {
        let t = Instant::now();
        if drain_until.is_some_and(|d| t >= d) {
            break;
        }
        if drain_until.is_none() && cancel.is_cancelled() {
            m.cancel();
            drain_until = Some(t + drain);
            continue;
        }
        if let Some(step) = m.poll(t.into_std()) {
            match step {
                Step::Gateway(b) => {
                    let _ = gw_sock.send(&b).await;
                }
                Step::Stun { to, bytes } => {
                    let _ = stun_sock.send_to(&bytes, to).await;
                }
                Step::Soap { to, request } => {
                    let r = soap_exchange(to, &request, soap_timeout).await;
                    m.handle_soap(r);
                }
            }
            continue;
        }
        let wake = m
            .poll_timeout()
            .map(Instant::from_std)
            .unwrap_or(t + Duration::from_millis(100));
        let wake = drain_until.map_or(wake, |d| wake.min(d));
        let draining = drain_until.is_some();
        tokio::select! {
            r = gw_sock.recv(&mut gw_buf) => {
                if let Ok(n) = r {
                    m.handle_gateway(gw_buf.get(..n).unwrap_or(&[]));
                }
            }
            r = stun_sock.recv_from(&mut stun_buf) => {
                if let Ok((n, from)) = r {
                    m.handle_stun(from, stun_buf.get(..n).unwrap_or(&[]));
                }
            }
            _ = tokio::time::sleep_until(wake) => m.handle_timeout(Instant::now().into_std()),
            _ = cancel.cancelled(), if !draining => {}
        }
    }
    Ok(m.proof().clone())
}
