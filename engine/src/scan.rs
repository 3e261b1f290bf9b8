//! Port sweeps: a TCP connect scan (with a STUN Binding over every open connection, to tell a
//! STUN/TURN listener from a port that merely accepts) and UDP Binding probes on connected
//! sockets, which see ICMP port-unreachable as `ECONNREFUSED` for exactly that port.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use probes::binding::{BindingConfig, BindingOutcome, BindingStatus, BindingTransaction};
use probes::stun::TransactionId;
use probes::sweep::{StunOverTcp, TcpPortResult, TcpState};
use probes::{Probe, Retransmit};
use tokio::net::{TcpSocket, UdpSocket};
use tokio::task::JoinSet;

use crate::driver::Cancel;
use crate::rate::{Rate, TokenBucket};

/// How a TCP sweep runs.
#[derive(Clone, Copy, Debug)]
pub struct TcpScanConfig {
    /// How long a connect may take before the port counts as filtered. The kernel resends a SYN
    /// after 1 s, so values above 1 s give a dropped first SYN a second chance.
    pub connect_timeout: Duration,
    /// How long to wait for a STUN answer on an open port.
    pub stun_timeout: Duration,
    /// Connects in flight (capped further by the descriptor budget).
    pub concurrency: usize,
    /// SYN rate cap; `None` is unlimited.
    pub rate: Option<Rate>,
    /// Send a STUN Binding over open connections.
    pub stun: bool,
}

impl Default for TcpScanConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(1500),
            stun_timeout: Duration::from_millis(1000),
            concurrency: 512,
            rate: Some(Rate::POLITE),
            stun: true,
        }
    }
}

/// Classify a connect error: RST (or ICMP port unreachable) is refused; ICMP host/net
/// unreachable or administratively prohibited is unreachable; a timeout is filtered.
pub fn connect_error_state(e: &io::Error) -> TcpState {
    match e.kind() {
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => TcpState::Refused,
        io::ErrorKind::TimedOut => TcpState::Filtered,
        io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::PermissionDenied => TcpState::Unreachable,
        _ => match e.raw_os_error() {
            Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH) | Some(libc::EACCES) => {
                TcpState::Unreachable
            }
            _ => TcpState::Filtered,
        },
    }
}

async fn probe_tcp_port(addr: SocketAddr, cfg: TcpScanConfig, tid: TransactionId) -> TcpPortResult {
    let start = Instant::now();
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    };
    let mut result = TcpPortResult {
        port: addr.port(),
        state: TcpState::Filtered,
        connect_time: None,
        stun: StunOverTcp::NotTried,
    };
    let Ok(socket) = socket else {
        return result;
    };
    // Close with a reset rather than lingering in TIME_WAIT: a sweep opens many connections,
    // and an abortive close (SO_LINGER 0) never blocks.
    let _ = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO));
    let stream = match tokio::time::timeout(cfg.connect_timeout, socket.connect(addr)).await {
        Err(_) => return result,
        Ok(Err(e)) => {
            result.state = connect_error_state(&e);
            if result.state != TcpState::Filtered {
                result.connect_time = Some(start.elapsed());
            }
            return result;
        }
        Ok(Ok(s)) => s,
    };
    result.state = TcpState::Open;
    result.connect_time = Some(start.elapsed());
    if cfg.stun {
        let _ = stream.set_nodelay(true);
        let config = BindingConfig {
            retransmit: Retransmit {
                rto: cfg.stun_timeout,
                rc: 1,
                rm: 1,
                deadline: Some(cfg.stun_timeout),
            },
            ..BindingConfig::default()
        };
        let deadline = Instant::now() + cfg.stun_timeout;
        let (outcome, _) =
            crate::tcp::exchange(stream, BindingTransaction::new(tid, addr, config), deadline)
                .await;
        result.stun = match outcome.status {
            BindingStatus::Success(r) => StunOverTcp::Answered {
                software: r.software,
            },
            BindingStatus::Error { .. } => StunOverTcp::Answered { software: None },
            BindingStatus::Timeout => StunOverTcp::NoStun,
        };
    }
    result
}

/// Connect to every port of `ports` on `ip`, at most `cfg.concurrency` at once and within the
/// descriptor budget, calling `on_result` as each finishes. Returns whether it was cancelled.
pub async fn tcp_scan(
    ip: IpAddr,
    ports: &[u16],
    cfg: TcpScanConfig,
    cancel: Cancel,
    mut new_tid: impl FnMut() -> TransactionId,
    mut on_result: impl FnMut(TcpPortResult),
) -> bool {
    let window = crate::fd::tcp_budget(cfg.concurrency.max(1));
    let mut bucket = cfg.rate.map(|r| TokenBucket::new(r, Instant::now()));
    let mut set = JoinSet::new();
    let mut next = ports.iter();
    let mut exhausted = false;
    loop {
        if cancel.is_cancelled() {
            set.abort_all();
            return true;
        }
        while !exhausted && set.len() < window {
            if let Some(b) = bucket.as_mut() {
                let now = Instant::now();
                if !b.take(now) {
                    let at = b.ready_at(now);
                    if set.is_empty() {
                        tokio::time::sleep_until(at.into()).await;
                        continue;
                    }
                    break;
                }
            }
            match next.next() {
                Some(p) => {
                    set.spawn(probe_tcp_port(SocketAddr::new(ip, *p), cfg, new_tid()));
                }
                None => exhausted = true,
            }
        }
        if set.is_empty() {
            return false;
        }
        // Wake for a finished connect, or for the next token when the window has room.
        let room = !exhausted && set.len() < window;
        let token_wait = async {
            match bucket.as_mut() {
                Some(b) if room => {
                    tokio::time::sleep_until(b.ready_at(Instant::now()).into()).await
                }
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            r = set.join_next() => {
                if let Some(Ok(r)) = r {
                    on_result(r);
                }
                while let Some(r) = set.try_join_next() {
                    if let Ok(r) = r {
                        on_result(r);
                    }
                }
            }
            _ = token_wait => {}
        }
    }
}

/// How a UDP port answered.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum UdpPortOutcome {
    /// A STUN response came back.
    Answered {
        /// The transaction.
        binding: Box<BindingOutcome>,
    },
    /// No answer within the retransmission schedule: dropped somewhere, or nothing listens and
    /// ICMP is filtered.
    Silent,
    /// ICMP port unreachable: the host is reachable and nothing listens (or a firewall rejects
    /// with that ICMP type).
    PortUnreachable,
    /// ICMP host/network unreachable or administratively prohibited.
    Unreachable,
}

/// One Binding transaction to `dest` over a connected UDP socket, retransmitting per
/// `config.retransmit`; ICMP errors for that 5-tuple are seen as socket errors.
pub async fn udp_binding_connected(
    dest: SocketAddr,
    tid: TransactionId,
    config: BindingConfig,
) -> io::Result<UdpPortOutcome> {
    let sock = UdpSocket::bind(crate::udp::wildcard_for(&dest)).await?;
    sock.connect(dest).await?;
    let mut tx = BindingTransaction::new(tid, dest, config);
    let mut out = Vec::with_capacity(128);
    let mut buf = [0u8; 2048];
    loop {
        let now = Instant::now();
        out.clear();
        while tx.poll_transmit(now, &mut out).is_some() {
            match sock.send(&out).await {
                Ok(_) => {}
                Err(e) => {
                    if let Some(o) = icmp_outcome(&e) {
                        return Ok(o);
                    }
                }
            }
            out.clear();
        }
        let Some(wake) = tx.poll_timeout() else { break };
        match tokio::time::timeout_at(wake.into(), sock.recv(&mut buf)).await {
            Err(_) => tx.handle_timeout(Instant::now()),
            Ok(Ok(n)) => {
                let _ = tx.handle_input(Instant::now(), dest, buf.get(..n).unwrap_or(&[]));
            }
            Ok(Err(e)) => {
                if let Some(o) = icmp_outcome(&e) {
                    return Ok(o);
                }
            }
        }
        if tx.is_done() {
            break;
        }
    }
    Ok(match tx.take_output() {
        Some(b) if !matches!(b.status, BindingStatus::Timeout) => UdpPortOutcome::Answered {
            binding: Box::new(b),
        },
        _ => UdpPortOutcome::Silent,
    })
}

fn icmp_outcome(e: &io::Error) -> Option<UdpPortOutcome> {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Some(UdpPortOutcome::PortUnreachable),
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            Some(UdpPortOutcome::Unreachable)
        }
        _ if matches!(
            e.raw_os_error(),
            Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EACCES)
        ) =>
        {
            Some(UdpPortOutcome::Unreachable)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_map_to_states() {
        let e = |k| io::Error::from(k);
        assert_eq!(
            connect_error_state(&e(io::ErrorKind::ConnectionRefused)),
            TcpState::Refused
        );
        assert_eq!(
            connect_error_state(&e(io::ErrorKind::TimedOut)),
            TcpState::Filtered
        );
        assert_eq!(
            connect_error_state(&io::Error::from_raw_os_error(libc::EHOSTUNREACH)),
            TcpState::Unreachable
        );
        assert_eq!(
            connect_error_state(&io::Error::from_raw_os_error(libc::ENETUNREACH)),
            TcpState::Unreachable
        );
    }
}
