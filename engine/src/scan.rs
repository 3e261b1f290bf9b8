//! Port sweeps: a TCP connect scan (with a STUN Binding over every open connection, to tell a
//! STUN/TURN listener from a port that merely accepts) and UDP Binding probes on connected
//! sockets, which see ICMP port-unreachable as `ECONNREFUSED` for exactly that port.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use probes::binding::{BindingConfig, BindingOutcome, BindingStatus, BindingTransaction};
use probes::stun::TransactionId;
use probes::sweep::{StunOverTcp, TcpPortResult, TcpState};
use probes::{Probe, Retransmit};

use tokio::task::JoinSet;

use crate::clock::now;
use crate::driver::Cancel;
use crate::rate::Rate;

pub use crate::connect::{ConnectSink, Connected, connect_many_blocking};

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

/// Connect to every port of `ports` on `ip`, at most `cfg.concurrency` at once and within the
/// descriptor budget, calling `on_result` as each finishes. Returns whether it was cancelled.
///
/// The connects run on a blocking thread that drives non-blocking sockets with `poll(2)`
/// (socket, connect, one shared poll, getsockopt, close: no per-socket event-loop
/// registration), which is what makes a large sweep fast. Open connections are handed back to
/// async tasks for the STUN check through a bounded channel, so descriptors stay bounded.
pub async fn tcp_scan(
    ip: IpAddr,
    ports: &[u16],
    cfg: TcpScanConfig,
    cancel: Cancel,
    mut new_tid: impl FnMut() -> TransactionId,
    mut on_result: impl FnMut(TcpPortResult),
) -> bool {
    // Sockets held at once: `window` connects in flight, one batch in the channel, one being
    // handed out, and up to `window` (plus one batch) STUN checks: 4·window within the budget.
    let budget = crate::fd::tcp_budget(cfg.concurrency.max(1).saturating_mul(4));
    let window = (budget / 4).max(1);
    // One sweeper thread per core (up to 4), each with every n-th port, its share of the window
    // and of the rate: the per-port cost is kernel work (socket, SYN, RST or SYN-ACK, close),
    // so more cores is what makes a large sweep faster.
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 4)
        .min(ports.len().max(1))
        .min(window);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(u16, Connected)>>(threads);
    let mut sweepers = Vec::with_capacity(threads);
    for t in 0..threads {
        let share: Vec<u16> = ports.iter().copied().skip(t).step_by(threads).collect();
        let sweep_cancel = cancel.clone();
        let tx = tx.clone();
        let rate = cfg.rate.map(|r| Rate {
            pps: (r.pps / threads as u32).max(1),
            burst: (r.burst / threads as u32).max(1),
        });
        let per_thread = (window / threads).max(1);
        let source = crate::source::effective();
        sweepers.push(tokio::task::spawn_blocking(move || {
            crate::source::scope_blocking(source, || {
                let mut sink = BatchSink {
                    batch: Vec::new(),
                    tx,
                };
                connect_many_blocking(
                    ip,
                    &share,
                    cfg.connect_timeout,
                    per_thread,
                    rate,
                    &crate::clock::Monotonic,
                    &sweep_cancel,
                    &mut sink,
                )
            })
        }));
    }
    drop(tx);
    let mut stun_set: JoinSet<TcpPortResult> = JoinSet::new();
    let mut channel_open = true;
    let mut pending: std::collections::VecDeque<(u16, Connected)> = Default::default();
    while channel_open || !stun_set.is_empty() || !pending.is_empty() {
        // Hand out what has arrived, keeping the STUN checks within the window.
        while stun_set.len() < window {
            let Some((port, c)) = pending.pop_front() else {
                break;
            };
            match c {
                Connected::Open { time, stream } => {
                    let addr = SocketAddr::new(ip, port);
                    match (cfg.stun, tokio::net::TcpStream::from_std(stream)) {
                        (true, Ok(stream)) => {
                            let tid = new_tid();
                            stun_set.spawn(stun_check(addr, stream, time, cfg.stun_timeout, tid));
                        }
                        _ => on_result(TcpPortResult {
                            port,
                            state: TcpState::Open,
                            connect_time: Some(time),
                            stun: StunOverTcp::NotTried,
                        }),
                    }
                }
                Connected::Closed { state, time } => on_result(TcpPortResult {
                    port,
                    state,
                    connect_time: time,
                    stun: StunOverTcp::NotTried,
                }),
            }
        }
        if !channel_open && stun_set.is_empty() && pending.is_empty() {
            break;
        }
        tokio::select! {
            msg = rx.recv(), if channel_open && pending.is_empty() => match msg {
                None => channel_open = false,
                Some(batch) => pending.extend(batch),
            },
            Some(r) = stun_set.join_next(), if !stun_set.is_empty() => {
                if let Ok(r) = r {
                    on_result(r);
                }
            }
        }
    }
    let mut cancelled = cancel.is_cancelled();
    for s in sweepers {
        cancelled |= matches!(s.await, Ok(true));
    }
    cancelled
}

/// Collects a poll turn's outcomes and sends them as one message (one wake-up of the async
/// side per turn instead of one per port).
struct BatchSink {
    batch: Vec<(u16, Connected)>,
    tx: tokio::sync::mpsc::Sender<Vec<(u16, Connected)>>,
}

impl ConnectSink for BatchSink {
    fn outcome(&mut self, port: u16, c: Connected) -> bool {
        self.batch.push((port, c));
        true
    }

    fn turn_done(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        self.tx
            .blocking_send(std::mem::take(&mut self.batch))
            .is_ok()
    }
}

async fn stun_check(
    addr: SocketAddr,
    stream: tokio::net::TcpStream,
    time: Duration,
    timeout: Duration,
    tid: TransactionId,
) -> TcpPortResult {
    let _ = stream.set_nodelay(true);
    let config = BindingConfig {
        retransmit: Retransmit {
            rto: timeout,
            rc: 1,
            rm: 1,
            deadline: Some(timeout),
        },
        ..BindingConfig::default()
    };
    let deadline = now() + timeout;
    let (outcome, _) =
        crate::tcp::exchange(stream, BindingTransaction::new(tid, addr, config), deadline).await;
    TcpPortResult {
        port: addr.port(),
        state: TcpState::Open,
        connect_time: Some(time),
        stun: match outcome.status {
            BindingStatus::Success(r) => StunOverTcp::Answered {
                software: r.software,
            },
            BindingStatus::Error { .. } => StunOverTcp::Answered { software: None },
            BindingStatus::Timeout => StunOverTcp::NoStun,
        },
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
    let sock = crate::source::tokio_udp_for(&dest)?;
    sock.connect(dest).await?;
    let mut tx = BindingTransaction::new(tid, dest, config);
    let mut out = Vec::with_capacity(128);
    let mut buf = [0u8; 2048];
    loop {
        let t_now = now();
        out.clear();
        while tx.poll_transmit(t_now, &mut out).is_some() {
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
            Err(_) => tx.handle_timeout(now()),
            Ok(Ok(n)) => {
                let _ = tx.handle_input(now(), dest, buf.get(..n).unwrap_or(&[]));
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
    use crate::connect::connect_error_state;

    /// A small window forces every socket through many ports: after refusals (reset by the
    /// second connect), next to listeners (open: handed out, replaced) and on the host's own
    /// address, where a socket must never be given its own source port.
    #[test]
    fn reused_sockets_tell_open_from_refused_on_loopback() {
        let ip: IpAddr = "127.77.31.9".parse().unwrap();
        let listeners: Vec<std::net::TcpListener> = (0..3)
            .map(|_| std::net::TcpListener::bind(SocketAddr::new(ip, 0)).unwrap())
            .collect();
        let open: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        let base = open[0].saturating_sub(100).max(1024);
        let mut ports: Vec<u16> = (base..base.saturating_add(300)).collect();
        ports.extend(&open);
        ports.sort_unstable();
        ports.dedup();
        let mut seen = std::collections::HashMap::new();
        let mut sink = |port: u16, c: Connected| {
            let (state, time) = match c {
                Connected::Open { time, .. } => (TcpState::Open, Some(time)),
                Connected::Closed { state, time } => (state, time),
            };
            assert!(seen.insert(port, (state, time)).is_none(), "{port} twice");
            true
        };
        let cancelled = connect_many_blocking(
            ip,
            &ports,
            Duration::from_secs(2),
            4,
            None,
            &crate::clock::Monotonic,
            &Cancel::never(),
            &mut sink,
        );
        assert!(!cancelled);
        assert_eq!(seen.len(), ports.len());
        for (port, (state, time)) in &seen {
            let expect = if open.contains(port) {
                TcpState::Open
            } else {
                TcpState::Refused
            };
            assert_eq!(*state, expect, "port {port}");
            assert!(time.is_some(), "port {port} has no time");
        }
    }

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
