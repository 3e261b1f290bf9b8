//! Where the probes' packets leave from: a local address, an interface, a source port.
//!
//! By default every socket the engine opens is bound to the wildcard address and the kernel's
//! routing table picks the interface. A [`SourceBind`] changes that per address family: bind to
//! a local address (`--bind`), to an interface (`SO_BINDTODEVICE`, `--interface`; Linux, needs
//! root or `CAP_NET_RAW`), and give the first socket of a run a fixed source port
//! (`--source-port`, e.g. WireGuard's 51820, to see how the NAT treats that port).
//!
//! The binding in force is looked up when a socket is made, in this order: a scope set with
//! [`scope`] around a future (tokio task-local: `check` runs each section under the binding it
//! chose for that family), a scope set with [`scope_blocking`] on an OS thread (the sweeps'
//! blocking threads), then the process default set once with [`install`] (the one-shot
//! commands). Nothing is bound when none is set. A socket opened with a binding that the host
//! cannot honour fails with the OS's error, which [`SourceBind::check`] turns into one line
//! before anything is sent.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;

use socket2::{Domain, Protocol, Socket, Type};

/// An interface name as the kernel keeps it (at most 15 bytes, `IFNAMSIZ - 1`): a `Copy`
/// value so a [`SourceBind`] can ride in the engine's `Limits`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IfName {
    len: u8,
    bytes: [u8; 15],
}

impl IfName {
    /// A valid interface name: 1 to 15 bytes, no `/`, NUL or whitespace (the kernel's rules
    /// for a name, `dev_valid_name`).
    pub fn new(name: &str) -> Option<IfName> {
        let b = name.as_bytes();
        if b.is_empty()
            || b.len() > 15
            || name == "."
            || name == ".."
            || b.iter()
                .any(|c| *c == b'/' || *c == 0 || c.is_ascii_whitespace())
        {
            return None;
        }
        let mut bytes = [0u8; 15];
        bytes.get_mut(..b.len())?.copy_from_slice(b);
        Some(IfName {
            len: b.len() as u8,
            bytes,
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        let b = self.bytes.get(..usize::from(self.len)).unwrap_or(&[]);
        std::str::from_utf8(b).unwrap_or("")
    }
}

impl fmt::Debug for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for IfName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// How one address family's sockets are bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LocalBind {
    /// The local address (its family must match).
    pub ip: Option<IpAddr>,
    /// The interface (`SO_BINDTODEVICE`).
    pub device: Option<IfName>,
    /// The source port of the first socket a run opens for this family.
    pub port: Option<u16>,
}

impl LocalBind {
    /// Nothing set: the wildcard address, the routing table's interface, an ephemeral port.
    pub fn is_default(&self) -> bool {
        self.ip.is_none() && self.device.is_none() && self.port.is_none()
    }
}

/// The binding of both address families.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SourceBind {
    /// IPv4 sockets.
    pub v4: LocalBind,
    /// IPv6 sockets.
    pub v6: LocalBind,
}

/// Why a binding cannot be used, in one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// No interface of that name.
    #[error("--interface {name}: no such interface on this host")]
    NoInterface {
        /// The name given.
        name: String,
    },
    /// `SO_BINDTODEVICE` was refused.
    #[error("--interface {name}: binding to an interface needs root or CAP_NET_RAW ({source})")]
    DeviceNotPermitted {
        /// The interface.
        name: String,
        /// The OS's error.
        source: io::Error,
    },
    /// The address is not one of this host's.
    #[error("--bind {ip}: this host has no such address")]
    NoSuchAddress {
        /// The address.
        ip: IpAddr,
    },
    /// The source port is taken.
    #[error(
        "--source-port {port}: UDP port {port} is in use on this host (a WireGuard interface listening on it? `ss -ulpn 'sport = :{port}'` shows the owner)"
    )]
    PortInUse {
        /// The port.
        port: u16,
    },
    /// Another OS error.
    #[error("cannot bind {what}: {source}")]
    Other {
        /// What was bound.
        what: String,
        /// The OS's error.
        source: io::Error,
    },
}

impl SourceBind {
    /// Nothing bound in either family.
    pub fn is_default(&self) -> bool {
        self.v4.is_default() && self.v6.is_default()
    }

    /// The family of `dest`.
    pub fn for_dest(&self, dest: &SocketAddr) -> &LocalBind {
        if dest.is_ipv4() { &self.v4 } else { &self.v6 }
    }

    /// The family `v4` (true) or IPv6.
    pub fn family(&self, v4: bool) -> &LocalBind {
        if v4 { &self.v4 } else { &self.v6 }
    }

    /// Mutable access to one family.
    pub fn family_mut(&mut self, v4: bool) -> &mut LocalBind {
        if v4 { &mut self.v4 } else { &mut self.v6 }
    }

    /// Open (and close again) a socket of every bound family with its address, interface and
    /// port, so a binding the host cannot honour fails here in one line instead of in the
    /// middle of a run: an interface that does not exist, no permission for
    /// `SO_BINDTODEVICE`, an address the host does not have, a port in use.
    pub fn check(&self) -> Result<(), BindError> {
        for v4 in [true, false] {
            let b = self.family(v4);
            if b.is_default() {
                continue;
            }
            if let Some(dev) = b.device
                && interface_index(dev.as_str()).is_none()
            {
                return Err(BindError::NoInterface {
                    name: dev.to_string(),
                });
            }
            let probe = if v4 {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
            } else {
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)
            };
            // A family whose only setting is an address of the other family is not bound.
            if b.device.is_none() && b.port.is_none() && b.ip.is_some_and(|ip| ip.is_ipv4() != v4) {
                continue;
            }
            match udp_socket(b, &probe, true) {
                // A host without IPv6 (or IPv4) at all: nothing of that family will be sent.
                Err(BindError::Other { source, .. })
                    if source.raw_os_error() == Some(libc::EAFNOSUPPORT) => {}
                Err(e) => return Err(e),
                Ok(_) => {}
            }
        }
        Ok(())
    }
}

/// The kernel's index of interface `name`, if it exists.
pub fn interface_index(name: &str) -> Option<u32> {
    #[cfg(unix)]
    {
        let c = std::ffi::CString::new(name).ok()?;
        // SAFETY: a NUL-terminated string that outlives the call.
        let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
        (i != 0).then_some(i)
    }
    #[cfg(not(unix))]
    {
        let _ = name;
        None
    }
}

fn classify(b: &LocalBind, e: io::Error, what: &str) -> BindError {
    match e.raw_os_error() {
        Some(libc::EADDRNOTAVAIL) if b.ip.is_some() => BindError::NoSuchAddress {
            ip: b.ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        },
        Some(libc::EADDRINUSE) if b.port.is_some() => BindError::PortInUse {
            port: b.port.unwrap_or(0),
        },
        _ => BindError::Other {
            what: what.to_string(),
            source: e,
        },
    }
}

/// Apply the interface of `b` to `sock` (Linux `SO_BINDTODEVICE`).
fn bind_device(sock: &Socket, b: &LocalBind) -> Result<(), BindError> {
    let Some(dev) = b.device else { return Ok(()) };
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        sock.bind_device(Some(dev.as_str().as_bytes()))
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENODEV) => BindError::NoInterface {
                    name: dev.to_string(),
                },
                Some(libc::EPERM | libc::EACCES) => BindError::DeviceNotPermitted {
                    name: dev.to_string(),
                    source: e,
                },
                _ => BindError::Other {
                    what: format!("to interface {dev}"),
                    source: e,
                },
            })
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = sock;
        Err(BindError::Other {
            what: format!("to interface {dev}"),
            source: io::Error::new(
                io::ErrorKind::Unsupported,
                "binding to an interface is supported on Linux only",
            ),
        })
    }
}

/// The local address to bind for `dest`'s family under `b`.
fn local_addr(b: &LocalBind, dest: &SocketAddr, with_port: bool) -> SocketAddr {
    let ip =
        b.ip.filter(|ip| ip.is_ipv4() == dest.is_ipv4())
            .unwrap_or(match dest {
                SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            });
    let port = if with_port { b.port.unwrap_or(0) } else { 0 };
    SocketAddr::new(ip, port)
}

/// A UDP socket of `dest`'s family bound as `b` says (the port only when `with_port`), non-
/// blocking, IPv6 sockets v6-only.
pub fn udp_socket(b: &LocalBind, dest: &SocketAddr, with_port: bool) -> Result<Socket, BindError> {
    let what = |local: &SocketAddr| format!("a UDP socket on {local}");
    let local = local_addr(b, dest, with_port);
    let sock = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| classify(b, e, &what(&local)))?;
    if local.is_ipv6() {
        sock.set_only_v6(true)
            .map_err(|e| classify(b, e, &what(&local)))?;
    }
    sock.set_nonblocking(true)
        .map_err(|e| classify(b, e, &what(&local)))?;
    bind_device(&sock, b)?;
    sock.bind(&local.into())
        .map_err(|e| classify(b, e, &what(&local)))?;
    Ok(sock)
}

/// An unconnected TCP socket of `dest`'s family with `b`'s interface and address (never its
/// port: the source port is for UDP), non-blocking.
pub fn tcp_socket(b: &LocalBind, dest: &SocketAddr) -> Result<Socket, BindError> {
    let local = local_addr(b, dest, false);
    let what = format!("a TCP socket on {local}");
    let sock = Socket::new(
        Domain::for_address(local),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(|e| classify(b, e, &what))?;
    sock.set_nonblocking(true)
        .map_err(|e| classify(b, e, &what))?;
    bind_device(&sock, b)?;
    if b.ip.is_some_and(|ip| ip.is_ipv4() == dest.is_ipv4()) {
        sock.bind(&local.into())
            .map_err(|e| classify(b, e, &what))?;
    }
    Ok(sock)
}

fn to_io(e: BindError) -> io::Error {
    match e {
        BindError::Other { source, .. } | BindError::DeviceNotPermitted { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

/// Connect a TCP stream to `dest` from the binding in force (plain `connect` when none).
pub async fn connect_tcp(dest: SocketAddr) -> io::Result<tokio::net::TcpStream> {
    let b = *effective().for_dest(&dest);
    if b.device.is_none() && b.ip.is_none_or(|ip| ip.is_ipv4() != dest.is_ipv4()) {
        return tokio::net::TcpStream::connect(dest).await;
    }
    let sock = tcp_socket(&b, &dest).map_err(to_io)?;
    let std: std::net::TcpStream = sock.into();
    tokio::net::TcpSocket::from_std_stream(std)
        .connect(dest)
        .await
}

/// A tokio UDP socket for `dest`'s family from the binding in force, ephemeral port.
pub fn tokio_udp_for(dest: &SocketAddr) -> io::Result<tokio::net::UdpSocket> {
    let b = *effective().for_dest(dest);
    let sock = udp_socket(&b, dest, false).map_err(to_io)?;
    tokio::net::UdpSocket::from_std(sock.into())
}

/// A std UDP socket for `dest`'s family from the binding in force, ephemeral port.
pub(crate) fn std_udp_for(dest: &SocketAddr, with_port: bool) -> io::Result<std::net::UdpSocket> {
    let b = *effective().for_dest(dest);
    let sock = udp_socket(&b, dest, with_port).map_err(to_io)?;
    Ok(sock.into())
}

// ---------------------------------------------------------------------------------------------
// The binding in force

static DEFAULT: OnceLock<SourceBind> = OnceLock::new();

tokio::task_local! {
    static SCOPED: SourceBind;
}

thread_local! {
    static THREAD: Cell<Option<SourceBind>> = const { Cell::new(None) };
}

/// Set the process's default binding (once; later calls are ignored and return false). For
/// one-shot commands: everything the process opens afterwards uses it.
pub fn install(bind: SourceBind) -> bool {
    DEFAULT.set(bind).is_ok()
}

/// Run `fut` with `bind` in force for every socket it opens (on this task).
pub async fn scope<F: std::future::Future>(bind: SourceBind, fut: F) -> F::Output {
    SCOPED.scope(bind, fut).await
}

/// Run `f` on this OS thread with `bind` in force (the blocking sweeps' threads).
pub fn scope_blocking<T>(bind: SourceBind, f: impl FnOnce() -> T) -> T {
    let before = THREAD.with(|c| c.replace(Some(bind)));
    let out = f();
    THREAD.with(|c| c.set(before));
    out
}

/// The binding in force here: the task's scope, the thread's scope, else the process default.
pub fn effective() -> SourceBind {
    if let Ok(b) = SCOPED.try_with(|b| *b) {
        return b;
    }
    if let Some(b) = THREAD.with(Cell::get) {
        return b;
    }
    DEFAULT.get().copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernels_rules() {
        assert_eq!(IfName::new("wt0").unwrap().as_str(), "wt0");
        assert_eq!(
            IfName::new("a-fifteen-byte1").unwrap().as_str(),
            "a-fifteen-byte1"
        );
        for bad in ["", "sixteen-bytes-xx", "a/b", "a b", ".", "..", "a\0"] {
            assert!(IfName::new(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn scopes_nest_and_fall_back() {
        let mut b = SourceBind::default();
        b.v4.port = Some(51820);
        assert!(effective().is_default());
        let inner = scope_blocking(b, effective);
        assert_eq!(inner.v4.port, Some(51820));
        assert!(effective().is_default());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let seen = rt.block_on(scope(b, async { effective() }));
        assert_eq!(seen, b);
    }

    #[test]
    fn bad_bindings_are_one_line_errors() {
        let mut b = SourceBind::default();
        b.v4.device = IfName::new("nosuchif0");
        let e = b.check().unwrap_err().to_string();
        assert_eq!(e, "--interface nosuchif0: no such interface on this host");
        let mut b = SourceBind::default();
        b.v4.ip = Some("192.0.2.77".parse().unwrap());
        let e = b.check().unwrap_err().to_string();
        assert_eq!(e, "--bind 192.0.2.77: this host has no such address");
        // A port in use: hold one, then ask for it.
        let held = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let mut b = SourceBind::default();
        b.v4.port = Some(port);
        let e = b.check().unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("--source-port {port}: UDP port {port} is in use")),
            "{e}"
        );
        // Loopback and a free port are fine.
        let mut b = SourceBind::default();
        b.v4.ip = Some("127.0.0.1".parse().unwrap());
        assert!(b.check().is_ok());
    }
}
