//! The connect sweep's sockets on Windows: a non-blocking socket per port, one `WSAPoll` per
//! turn over every connect in flight.
//!
//! Unlike the Unix connector, sockets are not reused: Winsock documents no way to reset a
//! socket whose connect failed for another connect, so each try gets a fresh socket, closed
//! when it ends. Refusals are reported at the first RST ([`crate::winsock::tcp_fail_fast`]).
//! `WSAPoll` reports a failed connect (`POLLERR`/`POLLHUP`) from Windows 10 2004 on; on older
//! systems a refused port is seen only when its connect times out, and reads as filtered.
//! Local errors carry their Winsock code ([`super::errno_name`]).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::windows::io::AsRawSocket;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use windows_sys::Win32::Networking::WinSock::{
    POLLWRNORM, SOCKET, SOCKET_ERROR, WSAPOLLFD, WSAPoll,
};

use super::{Connector, Decided, Finished, InFlight, Started, immediate_outcome};

/// The real network on Windows: one-shot non-blocking sockets and `WSAPoll`.
pub(super) struct WinConnector {
    ip: IpAddr,
    pollfds: Vec<WSAPOLLFD>,
}

impl WinConnector {
    /// For connects to `ip`, at most `window` in flight.
    pub(super) fn new(ip: IpAddr, window: usize) -> Self {
        WinConnector {
            ip,
            pollfds: Vec::with_capacity(window),
        }
    }
}

fn new_socket(ip: IpAddr) -> io::Result<Socket> {
    let s = Socket::new(
        Domain::for_address(SocketAddr::new(ip, 0)),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    s.set_nonblocking(true)?;
    // Best effort: without it a refusal may read as filtered.
    let _ = crate::winsock::tcp_fail_fast(&s);
    Ok(s)
}

fn open(s: Socket) -> Decided {
    // Close with a reset, not a lingering FIN (a sweep opens many connections).
    let _ = s.set_linger(Some(Duration::ZERO));
    Decided::Open(s.into())
}

impl Connector for WinConnector {
    type Conn = Socket;

    fn start(&mut self, port: u16) -> Started<Socket> {
        let s = match new_socket(self.ip) {
            Ok(s) => s,
            Err(e) => return Started::without_socket(&e),
        };
        let addr: socket2::SockAddr = SocketAddr::new(self.ip, port).into();
        match s.connect(&addr) {
            Ok(()) => Started::Done(open(s)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Started::InFlight(s),
            Err(e) => Started::Done(immediate_outcome(&e)),
        }
    }

    fn wait(
        &mut self,
        flight: &[InFlight<Socket>],
        wait: Duration,
        ready: &mut Vec<bool>,
    ) -> io::Result<()> {
        self.pollfds.clear();
        self.pollfds.extend(flight.iter().map(|f| WSAPOLLFD {
            fd: f.conn.as_raw_socket() as SOCKET,
            events: POLLWRNORM,
            revents: 0,
        }));
        let wait_ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        let count = u32::try_from(self.pollfds.len()).unwrap_or(u32::MAX);
        // SAFETY: `pollfds` is a live array of at least `count` WSAPOLLFD structs.
        let n = unsafe { WSAPoll(self.pollfds.as_mut_ptr(), count, wait_ms) };
        ready.clear();
        ready.extend(self.pollfds.iter().map(|p| p.revents != 0));
        if n == SOCKET_ERROR {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }

    fn finish(&mut self, f: &InFlight<Socket>) -> Finished {
        match f.conn.take_error() {
            Ok(Some(e)) | Err(e) => Finished::failed(&e, true),
            // Connected once the socket has a peer; otherwise still in progress.
            Ok(None) if f.conn.peer_addr().is_ok() => Finished::Open,
            Ok(None) => Finished::Pending,
        }
    }

    fn conclude(&mut self, conn: Socket, how: Finished) -> Decided {
        match how {
            Finished::Open => open(conn),
            // The socket is dropped (closed) in every other case.
            Finished::Closed {
                state, how, error, ..
            } => Decided::closed(state, how, error),
            // Expired on its last try: no answer in time. Dropping the socket aborts the
            // connect.
            Finished::Pending => Decided::Silent,
        }
    }

    fn abort(&mut self, conn: Socket) {
        // Closing the socket aborts the connect; the next try gets a fresh one.
        drop(conn);
    }
}
