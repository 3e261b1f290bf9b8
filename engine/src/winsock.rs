//! The few Winsock controls the engine sets on Windows, in one place.

use std::io;
use std::os::windows::io::AsRawSocket;

use windows_sys::Win32::Networking::WinSock::{
    SIO_TCP_INITIAL_RTO, SIO_UDP_CONNRESET, SOCKET, SOCKET_ERROR,
    TCP_INITIAL_RTO_NO_SYN_RETRANSMISSIONS, TCP_INITIAL_RTO_PARAMETERS, WSAIoctl,
};

/// `WSAIoctl` with an input value and no output.
fn ioctl_in<T: Copy>(socket: &impl AsRawSocket, code: u32, value: &T) -> io::Result<()> {
    let len = u32::try_from(std::mem::size_of::<T>()).map_err(io::Error::other)?;
    let mut returned = 0u32;
    // SAFETY: `value` points to `len` readable bytes for the call; no output buffer, no
    // overlapped I/O, so nothing outlives the call.
    let r = unsafe {
        WSAIoctl(
            socket.as_raw_socket() as SOCKET,
            code,
            std::ptr::from_ref(value).cast(),
            len,
            std::ptr::null_mut(),
            0,
            &mut returned,
            std::ptr::null_mut(),
            None,
        )
    };
    if r == SOCKET_ERROR {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Stop reporting ICMP port unreachable as `WSAECONNRESET` on later receives of an unconnected
/// UDP socket (`SIO_UDP_CONNRESET` off). Without it one unreachable destination would fail the
/// next receive of a socket shared by many probes; Linux does not report ICMP errors on
/// unconnected sockets at all, so this gives the engine the same socket on both.
pub(crate) fn udp_ignore_connreset(socket: &impl AsRawSocket) -> io::Result<()> {
    let off: u32 = 0;
    ioctl_in(socket, SIO_UDP_CONNRESET, &off)
}

/// Report a refused connect at the first RST (`SIO_TCP_INITIAL_RTO` with no SYN
/// retransmissions). Windows otherwise answers a RST by resending the SYN and reports the
/// refusal only after its retries, about 2 s later (even on loopback), past a sweep's connect
/// timeout, so every closed port would read as filtered. The cost: a SYN dropped on the path
/// is not resent within the connect timeout.
pub(crate) fn tcp_fail_fast(socket: &impl AsRawSocket) -> io::Result<()> {
    let params = TCP_INITIAL_RTO_PARAMETERS {
        Rtt: TCP_INITIAL_RTO_NO_SYN_RETRANSMISSIONS,
        MaxSynRetransmissions: 0,
    };
    ioctl_in(socket, SIO_TCP_INITIAL_RTO, &params)
}
