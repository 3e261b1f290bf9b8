//! The `stunmap serve` runtime: STUN Binding reflector on UDP and TCP, on one port or a range,
//! optionally with an alternate IP and port for RFC 5780 tests. The protocol decisions are
//! `probes::reflector::respond`; this module only owns sockets.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use engine::udp::{RecvBuffers, UdpEndpoint};
use probes::reflector::{Action, Origin, ServerAddrs, respond};
use probes::stun::stream::StunStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// What to serve.
#[derive(Clone, Debug)]
pub(crate) struct ServeConfig {
    /// Primary listen IPs with their port ranges.
    pub(crate) listen: Vec<(IpAddr, (u16, u16))>,
    /// RFC 5780 alternate IP (per family it applies to the primary IP of the same family).
    pub(crate) alt_ip: Option<IpAddr>,
    /// RFC 5780 alternate port.
    pub(crate) alt_port: Option<u16>,
    /// Also serve STUN over TCP.
    pub(crate) tcp: bool,
    /// SOFTWARE attribute text.
    pub(crate) software: Option<String>,
    /// Concurrent TCP connections (bounds file descriptors).
    pub(crate) max_tcp: usize,
    /// Idle time after which a TCP connection is closed.
    pub(crate) tcp_idle: Duration,
}

/// Counters served as statistics.
#[derive(Debug, Default)]
pub(crate) struct ServeStats {
    pub(crate) udp_requests: AtomicU64,
    pub(crate) udp_dropped: AtomicU64,
    pub(crate) tcp_connections: AtomicU64,
    pub(crate) tcp_requests: AtomicU64,
}

impl ServeStats {
    /// The counters in one line.
    pub(crate) fn summary(&self) -> String {
        let get = |c: &AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        format!(
            "{} UDP requests answered, {} dropped, {} TCP connections, {} TCP requests",
            get(&self.udp_requests),
            get(&self.udp_dropped),
            get(&self.tcp_connections),
            get(&self.tcp_requests)
        )
    }
}

type SocketMap = HashMap<(IpAddr, u16), Arc<UdpEndpoint>>;

/// The sockets a config needs: `(ip, port)` for UDP (and TCP) listeners.
pub(crate) fn socket_addrs(cfg: &ServeConfig) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for (ip, (a, b)) in &cfg.listen {
        let alt_ip = cfg.alt_ip.filter(|alt| alt.is_ipv4() == ip.is_ipv4());
        let ips: Vec<IpAddr> = std::iter::once(*ip).chain(alt_ip).collect();
        for ip in ips {
            for port in (*a..=*b).chain(cfg.alt_port) {
                let s = SocketAddr::new(ip, port);
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
    }
    out
}

/// Bind everything, then serve until the future is dropped. `ready` receives the bound
/// addresses once all sockets are up.
pub(crate) async fn serve(
    cfg: ServeConfig,
    stats: Arc<ServeStats>,
    ready: impl FnOnce(&[SocketAddr]),
) -> Result<()> {
    let addrs = socket_addrs(&cfg);
    let per_socket = if cfg.tcp { 2 } else { 1 };
    let needed = addrs.len() as u64 * per_socket + cfg.max_tcp as u64 + 64;
    let limit = engine::fd::raise_nofile();
    if needed > limit {
        return Err(crate::exit::usage(format!(
            "{} listening sockets plus {} TCP connections need ~{needed} file descriptors but \
             RLIMIT_NOFILE is {limit}: serve fewer ports, lower --max-tcp, or listen on one port \
             and redirect the range to it with nftables (see `stunmap serve --help`)",
            addrs.len() * per_socket as usize,
            cfg.max_tcp
        )));
    }
    let mut sockets: SocketMap = HashMap::new();
    for a in &addrs {
        let ep = UdpEndpoint::bind(*a).with_context(|| format!("cannot bind UDP {a}"))?;
        sockets.insert((a.ip(), a.port()), Arc::new(ep));
    }
    let sockets = Arc::new(sockets);
    let mut tasks = tokio::task::JoinSet::new();
    let software: Option<Arc<str>> = cfg.software.as_deref().map(Arc::from);
    for a in &addrs {
        let server = server_addrs(&cfg, *a);
        tasks.spawn(udp_loop(
            *a,
            server,
            sockets.clone(),
            software.clone(),
            stats.clone(),
        ));
    }
    if cfg.tcp {
        let permits = Arc::new(Semaphore::new(cfg.max_tcp.max(1)));
        for a in &addrs {
            let listener = bind_tcp(*a).with_context(|| format!("cannot listen on TCP {a}"))?;
            tasks.spawn(tcp_accept(
                listener,
                *a,
                permits.clone(),
                software.clone(),
                stats.clone(),
                cfg.tcp_idle,
            ));
        }
    }
    ready(&addrs);
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            return Err(e.into());
        }
    }
    Ok(())
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    TcpListener::from_std(sock.into())
}

/// The RFC 5780 view from socket `here`: the alternate IP/port are whichever of the pair
/// `here` is not.
fn server_addrs(cfg: &ServeConfig, here: SocketAddr) -> ServerAddrs {
    let primary_ip_of_family = cfg
        .listen
        .iter()
        .map(|(ip, _)| *ip)
        .find(|ip| ip.is_ipv4() == here.is_ipv4())
        .unwrap_or(here.ip());
    let alt_ip = cfg
        .alt_ip
        .filter(|a| a.is_ipv4() == here.is_ipv4())
        .map(|alt| {
            if here.ip() == alt {
                primary_ip_of_family
            } else {
                alt
            }
        });
    let in_range = cfg
        .listen
        .iter()
        .find(|(ip, _)| ip.is_ipv4() == here.is_ipv4())
        .map(|(_, r)| *r);
    let alt_port = cfg.alt_port.and_then(|alt| {
        if here.port() == alt {
            // The alternate of the alternate port is the first primary port.
            in_range.map(|(a, _)| a)
        } else {
            Some(alt)
        }
    });
    ServerAddrs {
        primary_ip: here.ip(),
        primary_port: here.port(),
        alt_ip,
        alt_port,
    }
}

async fn udp_loop(
    here: SocketAddr,
    server: ServerAddrs,
    sockets: Arc<SocketMap>,
    software: Option<Arc<str>>,
    stats: Arc<ServeStats>,
) -> io::Result<()> {
    let Some(ep) = sockets.get(&(here.ip(), here.port())).cloned() else {
        return Ok(());
    };
    let mut bufs = RecvBuffers::default();
    let mut out = Vec::with_capacity(256);
    loop {
        ep.readable().await?;
        let n = match bufs.recv(&ep) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => continue,
        };
        for (client, data) in bufs.datagrams(n) {
            out.clear();
            match respond(data, client, &server, software.as_deref(), &mut out) {
                Action::Reply { from: origin, to } => {
                    stats.udp_requests.fetch_add(1, Ordering::Relaxed);
                    let from = reply_socket(&sockets, &server, origin).unwrap_or(&ep);
                    // A full send queue or an ICMP error for one client must not stop the
                    // server: the reply is dropped like any lost datagram.
                    let _ = from.try_send(to, &out, None);
                }
                Action::Drop(_) => {
                    stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

fn reply_socket<'a>(
    sockets: &'a SocketMap,
    server: &ServerAddrs,
    origin: Origin,
) -> Option<&'a Arc<UdpEndpoint>> {
    let a = server.addr(origin)?;
    sockets.get(&(a.ip(), a.port()))
}

async fn tcp_accept(
    listener: TcpListener,
    here: SocketAddr,
    permits: Arc<Semaphore>,
    software: Option<Arc<str>>,
    stats: Arc<ServeStats>,
    idle: Duration,
) -> io::Result<()> {
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return Ok(());
        };
        let (stream, client) = match listener.accept().await {
            Ok(x) => x,
            // EMFILE and friends: back off briefly instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        stats.tcp_connections.fetch_add(1, Ordering::Relaxed);
        let software = software.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp_conn(stream, client, here, software, stats, idle).await;
        });
    }
}

async fn tcp_conn(
    mut stream: TcpStream,
    client: SocketAddr,
    here: SocketAddr,
    software: Option<Arc<str>>,
    stats: Arc<ServeStats>,
    idle: Duration,
) -> io::Result<()> {
    // Over TCP a reply can only come back on the same connection: no alternate address, so a
    // CHANGE-REQUEST gets no answer (RFC 5780 §6.1 concerns UDP).
    let server = ServerAddrs {
        primary_ip: here.ip(),
        primary_port: here.port(),
        alt_ip: None,
        alt_port: None,
    };
    let _ = stream.set_nodelay(true);
    let mut framer = StunStream::new();
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    loop {
        let n = match tokio::time::timeout(idle, stream.read(&mut buf)).await {
            Err(_) | Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            Ok(Ok(n)) => n,
        };
        framer.push(buf.get(..n).unwrap_or(&[]));
        loop {
            let msg = match framer.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(_) => return Ok(()),
            };
            out.clear();
            if let Action::Reply { .. } =
                respond(&msg, client, &server, software.as_deref(), &mut out)
            {
                stats.tcp_requests.fetch_add(1, Ordering::Relaxed);
                stream.write_all(&out).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(alt: bool) -> ServeConfig {
        ServeConfig {
            listen: vec![("198.18.0.10".parse().unwrap(), (3478, 3480))],
            alt_ip: alt.then(|| "198.18.0.11".parse().unwrap()),
            alt_port: alt.then_some(3500),
            tcp: true,
            software: None,
            max_tcp: 8,
            tcp_idle: Duration::from_secs(1),
        }
    }

    #[test]
    fn sockets_cover_both_ips_and_the_alternate_port() {
        let a = socket_addrs(&cfg(true));
        assert_eq!(a.len(), 2 * 4);
        assert!(a.contains(&"198.18.0.11:3500".parse().unwrap()));
        assert_eq!(socket_addrs(&cfg(false)).len(), 3);
    }

    #[test]
    fn alternate_of_alternate_is_primary() {
        let c = cfg(true);
        let s = server_addrs(&c, "198.18.0.11:3500".parse().unwrap());
        assert_eq!(s.other_address(), Some("198.18.0.10:3478".parse().unwrap()));
        let s = server_addrs(&c, "198.18.0.10:3479".parse().unwrap());
        assert_eq!(s.other_address(), Some("198.18.0.11:3500".parse().unwrap()));
    }
}
