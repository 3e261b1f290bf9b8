//! The raw SYN sweep where it is not available: it needs Linux raw sockets (`IPPROTO_RAW`
//! sends with the IP header, `IPPROTO_TCP` reads every arriving segment with its header), which
//! other systems do not offer to a program (Windows refuses raw TCP sends). The connect sweep
//! ([`crate::scan::tcp_scan`]) works everywhere. The report type is the same as on Linux.

use std::io;
use std::net::IpAddr;

pub use probes::raw_sweep::{RawAnswer, RawReport};

use crate::connect::SharedPacing;
use crate::driver::Cancel;

/// Why `--raw` cannot run here, one line.
const UNSUPPORTED: &str = "the raw SYN sweep needs Linux raw sockets; without --raw the connect sweep runs on this system";

/// Whether a raw TCP socket can be opened here: never on this system.
pub fn check_privileges() -> Result<(), String> {
    Err(UNSUPPORTED.to_owned())
}

/// The raw SYN sweep: refused on this system (see [`check_privileges`]).
pub async fn syn_scan(
    _ip: IpAddr,
    _ports: &[u16],
    _pacing: SharedPacing,
    _cancel: Cancel,
    _progress: impl FnMut(u64),
) -> io::Result<RawReport> {
    Err(io::Error::new(io::ErrorKind::Unsupported, UNSUPPORTED))
}
