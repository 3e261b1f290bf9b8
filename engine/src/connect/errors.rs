//! Local errors of a connect sweep: an OS error's symbolic name, the `LocalError` a port ends
//! with, and whether an error means this host ran out of sockets.

use std::io;

use probes::sweep::LocalError;

/// The symbolic name of an OS error number (the ones a sweep meets; others read `E<n>`).
#[cfg(unix)]
pub fn errno_name(code: i32) -> String {
    let name = match code {
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ENOBUFS => "ENOBUFS",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ENETDOWN => "ENETDOWN",
        libc::EHOSTDOWN => "EHOSTDOWN",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EINVAL => "EINVAL",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::ENOPROTOOPT => "ENOPROTOOPT",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        #[cfg(any(target_os = "linux", target_os = "android"))]
        libc::ENONET => "ENONET",
        libc::EPROTO => "EPROTO",
        _ => return format!("E{code}"),
    };
    name.to_string()
}

/// The symbolic name of a Winsock error code (`WSAGetLastError`, which is what
/// [`io::Error::raw_os_error`] holds for a socket call on Windows; the ones a sweep meets,
/// others read `E<n>`).
#[cfg(windows)]
pub fn errno_name(code: i32) -> String {
    use windows_sys::Win32::Networking::WinSock as ws;
    let name = match code {
        ws::WSAEMFILE => "WSAEMFILE",
        ws::WSAENOBUFS => "WSAENOBUFS",
        ws::WSA_NOT_ENOUGH_MEMORY => "WSA_NOT_ENOUGH_MEMORY",
        ws::WSAEACCES => "WSAEACCES",
        ws::WSAENETUNREACH => "WSAENETUNREACH",
        ws::WSAEHOSTUNREACH => "WSAEHOSTUNREACH",
        ws::WSAENETDOWN => "WSAENETDOWN",
        ws::WSAEHOSTDOWN => "WSAEHOSTDOWN",
        ws::WSAEADDRNOTAVAIL => "WSAEADDRNOTAVAIL",
        ws::WSAEADDRINUSE => "WSAEADDRINUSE",
        ws::WSAECONNREFUSED => "WSAECONNREFUSED",
        ws::WSAECONNRESET => "WSAECONNRESET",
        ws::WSAETIMEDOUT => "WSAETIMEDOUT",
        ws::WSAEINVAL => "WSAEINVAL",
        ws::WSAEAFNOSUPPORT => "WSAEAFNOSUPPORT",
        ws::WSAENOPROTOOPT => "WSAENOPROTOOPT",
        ws::WSAEMSGSIZE => "WSAEMSGSIZE",
        ws::WSAEOPNOTSUPP => "WSAEOPNOTSUPP",
        ws::WSAENETRESET => "WSAENETRESET",
        ws::WSAENOTSOCK => "WSAENOTSOCK",
        ws::WSANOTINITIALISED => "WSANOTINITIALISED",
        _ => return format!("E{code}"),
    };
    name.to_string()
}

/// An OS error as a sweep reports it: its errno name and text.
pub fn local_error(e: &io::Error) -> LocalError {
    let message = match e.raw_os_error() {
        // The text without std's " (os error N)".
        Some(code) => {
            let full = io::Error::from_raw_os_error(code).to_string();
            full.split(" (os error").next().unwrap_or(&full).to_string()
        }
        None => e.to_string(),
    };
    LocalError {
        errno: e
            .raw_os_error()
            .map_or_else(|| format!("{:?}", e.kind()), errno_name),
        message,
    }
}

/// Whether an error means the process is out of descriptors (or the kernel of socket
/// memory): wait for one to come back rather than report the port.
#[cfg(unix)]
pub(crate) fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Whether an error means the process is out of sockets (or Winsock of buffer space): wait
/// for one to come back rather than report the port.
#[cfg(windows)]
pub(crate) fn out_of_descriptors(e: &io::Error) -> bool {
    use windows_sys::Win32::Networking::WinSock as ws;
    matches!(
        e.raw_os_error(),
        Some(ws::WSAEMFILE | ws::WSAENOBUFS | ws::WSA_NOT_ENOUGH_MEMORY)
    )
}
