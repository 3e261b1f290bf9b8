//! Port mapping protocols a gateway may offer: NAT-PMP (RFC 6886), PCP (RFC 6887) and UPnP
//! Internet Gateway Device (SSDP discovery, then the device description). A client that asks
//! the gateway for a mapping gets a port that is endpoint-independent and unfiltered, which
//! makes an otherwise hard NAT traversable. This module holds the codecs and the result types;
//! `engine::portmap` does the I/O.
//!
//! Only requests without side effects are built: NAT-PMP's external address request (opcode
//! 0), PCP's ANNOUNCE (opcode 0), an SSDP M-SEARCH and an HTTP GET of the description. No
//! mapping is created on the gateway.
//!
//! Every parser takes untrusted bytes from the LAN and returns an error rather than panicking.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

/// The gateway's NAT-PMP and PCP port, RFC 6886 §3.1 and RFC 6887 §19.1.
pub const PCP_PORT: u16 = 5351;
/// The SSDP multicast group and port (UPnP Device Architecture 1.1 §1.3).
pub const SSDP_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 255, 250), 1900);
/// The device type searched for.
pub const IGD_DEVICE: &str = "urn:schemas-upnp-org:device:InternetGatewayDevice:1";

/// Why a port-mapping reply could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PortmapError {
    /// Shorter than the fixed part of the message.
    #[error("too short: {len} bytes")]
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// Not the version this parser reads.
    #[error("version {version}")]
    Version {
        /// The version byte.
        version: u8,
    },
    /// A request, or a response to another opcode.
    #[error("unexpected opcode {opcode}")]
    Opcode {
        /// The opcode byte.
        opcode: u8,
    },
    /// A PCP message whose length is not a multiple of 4 or exceeds 1100 bytes (RFC 6887 §7).
    #[error("bad PCP length {len}")]
    PcpLength {
        /// Bytes received.
        len: usize,
    },
    /// Not an HTTP/1.x response head with a status code.
    #[error("not an HTTP response")]
    NotHttp,
    /// An HTTP status other than 200.
    #[error("HTTP status {status}")]
    HttpStatus {
        /// The status code.
        status: u16,
    },
    /// An SSDP answer without a LOCATION header.
    #[error("no LOCATION header")]
    NoLocation,
    /// A LOCATION that is not `http://<IP literal>[:port]/…`.
    #[error("unusable LOCATION URL")]
    BadLocation,
}

// ---------------------------------------------------------------------------------------------
// NAT-PMP, RFC 6886

/// The external address request, RFC 6886 §3.2: version 0, opcode 0.
pub const NATPMP_EXTERNAL_REQUEST: [u8; 2] = [0, 0];

/// A NAT-PMP external address response, RFC 6886 §3.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NatPmpExternal {
    /// Result code, RFC 6886 §3.5 (0 = success).
    pub result: u16,
    /// Seconds since the gateway's port-mapping table was (re)initialised.
    pub epoch: u32,
    /// The gateway's external IPv4 address; `None` unless the result is success.
    pub external: Option<Ipv4Addr>,
}

/// Read an external address response. A non-zero result code may come with only the first 8
/// bytes (the rest is undefined, RFC 6886 §3.5).
pub fn parse_natpmp_external(b: &[u8]) -> Result<NatPmpExternal, PortmapError> {
    let (&[version, opcode, r0, r1, e0, e1, e2, e3], rest) = split8(b)?;
    if version != 0 {
        return Err(PortmapError::Version { version });
    }
    if opcode != 128 {
        return Err(PortmapError::Opcode { opcode });
    }
    let result = u16::from_be_bytes([r0, r1]);
    let epoch = u32::from_be_bytes([e0, e1, e2, e3]);
    let external = match (result, rest) {
        (0, [a, b, c, d, ..]) => Some(Ipv4Addr::new(*a, *b, *c, *d)),
        (0, _) => return Err(PortmapError::TooShort { len: b.len() }),
        _ => None,
    };
    Ok(NatPmpExternal {
        result,
        epoch,
        external,
    })
}

fn split8(b: &[u8]) -> Result<(&[u8; 8], &[u8]), PortmapError> {
    b.split_first_chunk::<8>()
        .ok_or(PortmapError::TooShort { len: b.len() })
}

/// What a NAT-PMP result code means, RFC 6886 §3.5.
pub fn natpmp_result_text(code: u16) -> &'static str {
    match code {
        0 => "success",
        1 => "unsupported version",
        2 => "not authorized/refused",
        3 => "network failure",
        4 => "out of resources",
        5 => "unsupported opcode",
        _ => "unknown result code",
    }
}

// ---------------------------------------------------------------------------------------------
// PCP, RFC 6887

/// PCP's version number, RFC 6887 §7.
pub const PCP_VERSION: u8 = 2;
/// The ANNOUNCE opcode, RFC 6887 §14.1.
pub const PCP_ANNOUNCE: u8 = 0;

/// An ANNOUNCE request, RFC 6887 §7.1 and §14.1: the 24-byte common header, requested
/// lifetime 0, and the client's address (IPv4 as an IPv4-mapped IPv6 address, §5).
pub fn pcp_announce_request(client: IpAddr) -> [u8; 24] {
    let mut b = [0u8; 24];
    let ip = match client {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let [v, op, ..] = &mut b;
    *v = PCP_VERSION;
    *op = PCP_ANNOUNCE;
    if let Some(slot) = b.get_mut(8..24) {
        slot.copy_from_slice(&ip.octets());
    }
    b
}

/// A PCP answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum PcpReply {
    /// A PCP response header, RFC 6887 §7.2.
    Pcp {
        /// The opcode answered (R bit removed).
        opcode: u8,
        /// Result code, RFC 6887 §7.4 (0 = success).
        result: u8,
        /// Lifetime in seconds.
        lifetime: u32,
        /// The server's epoch time.
        epoch: u32,
    },
    /// A NAT-PMP server's "unsupported version" (a version-0 message): it speaks only NAT-PMP
    /// (RFC 6887 §9).
    NatPmpOnly {
        /// Its result code (1 = unsupported version).
        result: u16,
    },
}

/// Read a PCP response (or the NAT-PMP answer to a PCP request).
pub fn parse_pcp_response(b: &[u8]) -> Result<PcpReply, PortmapError> {
    match b.first() {
        None => return Err(PortmapError::TooShort { len: 0 }),
        Some(0) => {
            let [_, opcode, r0, r1, ..] = *b else {
                return Err(PortmapError::TooShort { len: b.len() });
            };
            if opcode < 128 {
                return Err(PortmapError::Opcode { opcode });
            }
            return Ok(PcpReply::NatPmpOnly {
                result: u16::from_be_bytes([r0, r1]),
            });
        }
        Some(&PCP_VERSION) => {}
        Some(&version) => return Err(PortmapError::Version { version }),
    }
    if b.len() < 24 {
        return Err(PortmapError::TooShort { len: b.len() });
    }
    if b.len() % 4 != 0 || b.len() > 1100 {
        return Err(PortmapError::PcpLength { len: b.len() });
    }
    let [_, r_op, _, result, l0, l1, l2, l3, e0, e1, e2, e3, ..] = *b else {
        return Err(PortmapError::TooShort { len: b.len() });
    };
    if r_op & 0x80 == 0 {
        // A request (R bit clear), for instance our own reflected back.
        return Err(PortmapError::Opcode { opcode: r_op });
    }
    Ok(PcpReply::Pcp {
        opcode: r_op & 0x7f,
        result,
        lifetime: u32::from_be_bytes([l0, l1, l2, l3]),
        epoch: u32::from_be_bytes([e0, e1, e2, e3]),
    })
}

/// What a PCP result code means, RFC 6887 §7.4.
pub fn pcp_result_text(code: u8) -> &'static str {
    match code {
        0 => "SUCCESS",
        1 => "UNSUPP_VERSION",
        2 => "NOT_AUTHORIZED",
        3 => "MALFORMED_REQUEST",
        4 => "UNSUPP_OPCODE",
        5 => "UNSUPP_OPTION",
        6 => "MALFORMED_OPTION",
        7 => "NETWORK_FAILURE",
        8 => "NO_RESOURCES",
        9 => "UNSUPP_PROTOCOL",
        10 => "USER_EX_QUOTA",
        11 => "CANNOT_PROVIDE_EXTERNAL",
        12 => "ADDRESS_MISMATCH",
        13 => "EXCESSIVE_REMOTE_PEERS",
        _ => "unknown result code",
    }
}

// ---------------------------------------------------------------------------------------------
// UPnP IGD: SSDP and the device description

/// An SSDP search for Internet Gateway Devices (UPnP Device Architecture 1.1 §1.3.2), asking
/// for answers within `mx` seconds (1–5).
pub fn ssdp_search(mx: u8) -> String {
    format!(
        "M-SEARCH * HTTP/1.1\r\nHOST: {SSDP_GROUP}\r\nMAN: \"ssdp:discover\"\r\nMX: {}\r\nST: {IGD_DEVICE}\r\n\r\n",
        mx.clamp(1, 5)
    )
}

/// The parts of an SSDP search answer stunmap uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsdpAnswer<'a> {
    /// LOCATION: the device description URL.
    pub location: &'a str,
    /// ST: the search target answered.
    pub st: Option<&'a str>,
    /// SERVER: OS, UPnP version and product.
    pub server: Option<&'a str>,
}

/// Read an SSDP answer: `HTTP/1.1 200 OK` and headers (names are case-insensitive).
pub fn parse_ssdp_answer(b: &[u8]) -> Result<SsdpAnswer<'_>, PortmapError> {
    let text = std::str::from_utf8(b).map_err(|_| PortmapError::NotHttp)?;
    let (status, headers) = http_head(text)?;
    if status != 200 {
        return Err(PortmapError::HttpStatus { status });
    }
    let location = header(headers, "location").ok_or(PortmapError::NoLocation)?;
    Ok(SsdpAnswer {
        location,
        st: header(headers, "st"),
        server: header(headers, "server"),
    })
}

/// The status code and the header block of an HTTP/1.x response head.
fn http_head(text: &str) -> Result<(u16, &str), PortmapError> {
    let (line, rest) = text.split_once("\r\n").unwrap_or((text, ""));
    let mut parts = line.split_whitespace();
    let version = parts.next().ok_or(PortmapError::NotHttp)?;
    if !version.starts_with("HTTP/1.") {
        return Err(PortmapError::NotHttp);
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(PortmapError::NotHttp)?;
    let headers = rest.split("\r\n\r\n").next().unwrap_or("");
    Ok((status, headers))
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// An `http://` URL with a literal IP: stunmap never resolves names from LAN answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host and port.
    pub addr: SocketAddr,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// Parse `http://IP[:port][/path]` (IPv6 in brackets); port 80 by default.
pub fn parse_http_url(url: &str) -> Result<HttpUrl, PortmapError> {
    let rest = url
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("http://"))
        .and_then(|_| url.get(7..))
        .ok_or(PortmapError::BadLocation)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("/")),
        None => (rest, "/"),
    };
    let addr = if let Ok(a) = authority.parse::<SocketAddr>() {
        a
    } else if let Ok(ip) = authority.parse::<Ipv4Addr>() {
        SocketAddr::new(IpAddr::V4(ip), 80)
    } else if let Some(ip) = authority
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .and_then(|a| a.parse::<Ipv6Addr>().ok())
    {
        SocketAddr::new(IpAddr::V6(ip), 80)
    } else {
        return Err(PortmapError::BadLocation);
    };
    if path.bytes().any(|c| c.is_ascii_control() || c == b' ') {
        return Err(PortmapError::BadLocation);
    }
    Ok(HttpUrl {
        addr,
        path: path.to_owned(),
    })
}

/// An HTTP/1.1 GET that closes the connection after the answer.
pub fn http_get(url: &HttpUrl) -> String {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: stunmap\r\n\r\n",
        url.path, url.addr
    )
}

/// The body of an HTTP response with status 200 (chunked bodies are returned with their chunk
/// lines, which the service scan below tolerates).
pub fn http_body(b: &[u8]) -> Result<&[u8], PortmapError> {
    let head_end = b
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(PortmapError::NotHttp)?;
    let head = b.get(..head_end).ok_or(PortmapError::NotHttp)?;
    let head = std::str::from_utf8(head).map_err(|_| PortmapError::NotHttp)?;
    let (status, _) = http_head(head)?;
    if status != 200 {
        return Err(PortmapError::HttpStatus { status });
    }
    Ok(b.get(head_end + 4..).unwrap_or(&[]))
}

/// A WAN connection service found in a device description.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IgdService {
    /// `urn:schemas-upnp-org:service:WANIPConnection:1` and the like.
    pub service_type: String,
    /// Its controlURL (for SOAP actions).
    pub control_url: Option<String>,
}

/// The WANIPConnection and WANPPPConnection services of a device description: a scan of each
/// `<service>` element for `<serviceType>` and `<controlURL>`, not an XML parser (the
/// description is plain, namespace-prefix-free UPnP XML in practice).
pub fn igd_services(xml: &[u8]) -> Vec<IgdService> {
    let text = String::from_utf8_lossy(xml);
    let mut out = Vec::new();
    let mut rest: &str = &text;
    while let Some(start) = rest.find("<service>") {
        let after = rest.get(start + "<service>".len()..).unwrap_or("");
        let (body, next) = match after.find("</service>") {
            Some(end) => (
                after.get(..end).unwrap_or(""),
                after.get(end + "</service>".len()..).unwrap_or(""),
            ),
            None => (after, ""),
        };
        if let Some(ty) = element(body, "serviceType") {
            let wan = ty.contains(":service:WANIPConnection:")
                || ty.contains(":service:WANPPPConnection:");
            if wan && ty.starts_with("urn:schemas-upnp-org:") {
                out.push(IgdService {
                    service_type: ty.to_owned(),
                    control_url: element(body, "controlURL").map(str::to_owned),
                });
            }
        }
        rest = next;
    }
    out
}

fn element<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = body.find(&open)? + open.len();
    let tail = body.get(start..)?;
    let end = tail.find(&close)?;
    Some(tail.get(..end)?.trim())
}

// ---------------------------------------------------------------------------------------------
// The default gateway

/// The IPv4 default gateway from the text of Linux's `/proc/net/route`: the first line with
/// destination and mask 0 and the RTF_GATEWAY flag. Addresses there are the kernel's `u32`
/// printed in hex in host byte order, so the bytes in memory order are the address.
pub fn default_gateway_from_proc_route(text: &str) -> Option<Ipv4Addr> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let hex = |i: usize| f.get(i).and_then(|v| u32::from_str_radix(v, 16).ok());
        let (dest, gw, flags, mask) = (hex(1)?, hex(2)?, hex(3)?, hex(7)?);
        let default =
            dest == 0 && mask == 0 && flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY;
        (default && gw != 0).then(|| Ipv4Addr::from(gw.to_ne_bytes()))
    })
}

// ---------------------------------------------------------------------------------------------
// Results

/// What one of NAT-PMP or PCP said.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum ProtocolStatus {
    /// Not tried (no IPv4 gateway, or switched off).
    #[default]
    NotTested,
    /// The gateway answered with success.
    Available {
        /// The external address it reported (NAT-PMP; PCP's ANNOUNCE carries none).
        external: Option<IpAddr>,
        /// The server's epoch (seconds since its mapping state was reset).
        epoch: u32,
    },
    /// The gateway answered with an error.
    Refused {
        /// The result code.
        code: u16,
        /// What it means.
        meaning: &'static str,
    },
    /// A NAT-PMP-only gateway answered the PCP request (PCP unsupported, NAT-PMP is).
    NatPmpOnly,
    /// ICMP port unreachable: nothing listens on the port.
    Unreachable,
    /// No answer in time.
    NoAnswer,
    /// Answers that could not be read.
    Malformed,
}

impl ProtocolStatus {
    /// Whether the gateway offers the protocol.
    pub fn available(&self) -> bool {
        matches!(self, ProtocolStatus::Available { .. })
    }
}

/// What UPnP IGD discovery found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum UpnpStatus {
    /// Not tried.
    #[default]
    NotTested,
    /// An Internet Gateway Device with a WAN connection service.
    Available {
        /// Its description URL.
        location: String,
        /// SERVER header of the SSDP answer.
        server: Option<String>,
        /// WANIPConnection / WANPPPConnection services.
        services: Vec<IgdService>,
    },
    /// The device answered but its description has no WAN connection service.
    NoWanService {
        /// Its description URL.
        location: String,
    },
    /// The description could not be fetched or read.
    DescriptionFailed {
        /// Its description URL.
        location: String,
        /// Why.
        reason: String,
    },
    /// No gateway answered the SSDP search.
    NoAnswer,
}

impl UpnpStatus {
    /// Whether an IGD with a WAN connection service was found.
    pub fn available(&self) -> bool {
        matches!(self, UpnpStatus::Available { .. })
    }
}

/// Port mapping on the default gateway: what each protocol said.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortMapping {
    /// The IPv4 default gateway asked; `None` when there is none.
    pub gateway: Option<Ipv4Addr>,
    /// NAT-PMP, RFC 6886.
    pub nat_pmp: ProtocolStatus,
    /// PCP, RFC 6887.
    pub pcp: ProtocolStatus,
    /// UPnP IGD.
    pub upnp: UpnpStatus,
    /// SSDP answers ignored because they came from, or pointed to, a host other than the
    /// gateway.
    pub ignored_answers: u32,
}

impl PortMapping {
    /// Whether any protocol offers port mapping.
    pub fn available(&self) -> bool {
        self.nat_pmp.available() || self.pcp.available() || self.upnp.available()
    }

    /// Whether the gateway said it cannot map to a public address: NAT-PMP's "network
    /// failure" (RFC 6886 §3.5), which miniupnpd, for one, sends when its own external address
    /// is private or reserved (double NAT). Mappings from such a gateway do not reach peers.
    pub fn gateway_has_no_public_address(&self) -> bool {
        matches!(self.nat_pmp, ProtocolStatus::Refused { code: 3, .. })
    }

    /// Available and not known to be useless (see
    /// [`PortMapping::gateway_has_no_public_address`]).
    pub fn usable(&self) -> bool {
        self.available() && !self.gateway_has_no_public_address()
    }

    /// The protocols available, by name.
    pub fn protocols(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.nat_pmp.available() {
            v.push("NAT-PMP");
        }
        if self.pcp.available() {
            v.push("PCP");
        }
        if self.upnp.available() {
            v.push("UPnP IGD");
        }
        v
    }

    /// The external address NAT-PMP reported.
    pub fn external_address(&self) -> Option<IpAddr> {
        match self.nat_pmp {
            ProtocolStatus::Available { external, .. } => external,
            _ => None,
        }
    }

    /// The status of NAT-PMP from its external address response.
    pub fn nat_pmp_status(r: &NatPmpExternal) -> ProtocolStatus {
        if r.result == 0 {
            ProtocolStatus::Available {
                external: r.external.map(IpAddr::V4),
                epoch: r.epoch,
            }
        } else {
            ProtocolStatus::Refused {
                code: r.result,
                meaning: natpmp_result_text(r.result),
            }
        }
    }

    /// The status of PCP from its answer to ANNOUNCE.
    pub fn pcp_status(r: &PcpReply) -> ProtocolStatus {
        match *r {
            PcpReply::Pcp {
                result: 0, epoch, ..
            } => ProtocolStatus::Available {
                external: None,
                epoch,
            },
            PcpReply::Pcp { result, .. } => ProtocolStatus::Refused {
                code: u16::from(result),
                meaning: pcp_result_text(result),
            },
            PcpReply::NatPmpOnly { .. } => ProtocolStatus::NatPmpOnly,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natpmp_external_address_round_trip() {
        assert_eq!(NATPMP_EXTERNAL_REQUEST, [0, 0]);
        let ok = [0, 128, 0, 0, 0, 0, 1, 0, 198, 18, 0, 1];
        let r = parse_natpmp_external(&ok).unwrap();
        assert_eq!(r.result, 0);
        assert_eq!(r.epoch, 256);
        assert_eq!(r.external, Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert!(PortMapping::nat_pmp_status(&r).available());
        // An error may be 8 bytes long.
        let refused = parse_natpmp_external(&[0, 128, 0, 2, 0, 0, 0, 9]).unwrap();
        assert_eq!(refused.external, None);
        assert_eq!(
            PortMapping::nat_pmp_status(&refused),
            ProtocolStatus::Refused {
                code: 2,
                meaning: "not authorized/refused"
            }
        );
        assert_eq!(
            parse_natpmp_external(&[0, 128, 0, 0, 0, 0, 0, 1]),
            Err(PortmapError::TooShort { len: 8 })
        );
        assert_eq!(
            parse_natpmp_external(&[0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
            Err(PortmapError::Opcode { opcode: 0 })
        );
        assert_eq!(
            parse_natpmp_external(&[2, 128, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
            Err(PortmapError::Version { version: 2 })
        );
        assert!(parse_natpmp_external(&[]).is_err());
    }

    #[test]
    fn pcp_announce_layout() {
        let b = pcp_announce_request("100.64.0.2".parse().unwrap());
        assert_eq!(b[0], 2);
        assert_eq!(b[1], 0, "R bit clear, opcode ANNOUNCE");
        assert_eq!(&b[4..8], &[0, 0, 0, 0], "lifetime 0");
        assert_eq!(
            &b[8..24],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 100, 64, 0, 2]
        );
    }

    #[test]
    fn pcp_responses() {
        let mut r = [0u8; 24];
        r[0] = 2;
        r[1] = 0x80;
        r[3] = 0;
        r[8..12].copy_from_slice(&77u32.to_be_bytes());
        let p = parse_pcp_response(&r).unwrap();
        assert_eq!(
            p,
            PcpReply::Pcp {
                opcode: 0,
                result: 0,
                lifetime: 0,
                epoch: 77
            }
        );
        assert!(PortMapping::pcp_status(&p).available());
        r[3] = 2;
        assert_eq!(
            PortMapping::pcp_status(&parse_pcp_response(&r).unwrap()),
            ProtocolStatus::Refused {
                code: 2,
                meaning: "NOT_AUTHORIZED"
            }
        );
        // A NAT-PMP-only server's "unsupported version".
        let n = parse_pcp_response(&[0, 128, 0, 1, 0, 0, 0, 5]).unwrap();
        assert_eq!(n, PcpReply::NatPmpOnly { result: 1 });
        assert_eq!(PortMapping::pcp_status(&n), ProtocolStatus::NatPmpOnly);
        // Our own request reflected, odd lengths, junk.
        let req = pcp_announce_request("10.0.0.1".parse().unwrap());
        assert!(matches!(
            parse_pcp_response(&req),
            Err(PortmapError::Opcode { .. })
        ));
        assert!(matches!(
            parse_pcp_response(&r[..22]),
            Err(PortmapError::TooShort { .. })
        ));
        let mut long = r.to_vec();
        long.push(0);
        assert!(matches!(
            parse_pcp_response(&long),
            Err(PortmapError::PcpLength { .. })
        ));
        assert!(parse_pcp_response(&[7; 24]).is_err());
        assert!(parse_pcp_response(&[]).is_err());
    }

    #[test]
    fn ssdp_search_and_answer() {
        let s = ssdp_search(9);
        assert!(s.starts_with("M-SEARCH * HTTP/1.1\r\n"));
        assert!(s.contains("HOST: 239.255.255.250:1900\r\n"));
        assert!(s.contains("MAN: \"ssdp:discover\"\r\n"));
        assert!(s.contains("MX: 5\r\n"));
        assert!(s.ends_with("\r\n\r\n"));
        let answer = b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nst: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nUSN: uuid:x::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\nSERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\nLocation:  http://100.64.0.1:5000/rootDesc.xml \r\n\r\n";
        let a = parse_ssdp_answer(answer).unwrap();
        assert_eq!(a.location, "http://100.64.0.1:5000/rootDesc.xml");
        assert_eq!(a.st, Some(IGD_DEVICE));
        assert_eq!(a.server, Some("Debian/12 UPnP/1.1 MiniUPnPd/2.3.1"));
        assert_eq!(
            parse_ssdp_answer(b"HTTP/1.1 200 OK\r\nST: x\r\n\r\n"),
            Err(PortmapError::NoLocation)
        );
        assert_eq!(
            parse_ssdp_answer(b"NOTIFY * HTTP/1.1\r\n\r\n"),
            Err(PortmapError::NotHttp)
        );
        assert!(parse_ssdp_answer(&[0xff, 0xfe]).is_err());
        assert!(parse_ssdp_answer(b"").is_err());
    }

    #[test]
    fn urls_need_literal_ips() {
        let u = parse_http_url("http://100.64.0.1:5000/rootDesc.xml").unwrap();
        assert_eq!(u.addr, "100.64.0.1:5000".parse().unwrap());
        assert_eq!(u.path, "/rootDesc.xml");
        assert_eq!(
            parse_http_url("HTTP://100.64.0.1").unwrap().addr,
            "100.64.0.1:80".parse().unwrap()
        );
        assert_eq!(
            parse_http_url("http://[fe80::1]:49000/igd.xml")
                .unwrap()
                .path,
            "/igd.xml"
        );
        assert_eq!(parse_http_url("http://[fd00::1]/").unwrap().addr.port(), 80);
        for bad in [
            "https://100.64.0.1/",
            "http://router.lan/desc.xml",
            "http://100.64.0.1:99999/",
            "http://100.64.0.1/a b",
            "http://100.64.0.1/a\r\nX: y",
            "",
            "http:/",
        ] {
            assert!(parse_http_url(bad).is_err(), "{bad}");
        }
        let g = http_get(&u);
        assert!(g.starts_with("GET /rootDesc.xml HTTP/1.1\r\nHost: 100.64.0.1:5000\r\n"));
    }

    #[test]
    fn description_scan_finds_wan_services() {
        let xml = br#"<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><device>
<deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType><controlURL>/ctl/L3F</controlURL></service></serviceList>
<deviceList><device><deviceList><device><serviceList>
<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><controlURL>/ctl/IPConn</controlURL></service>
<service> <serviceType> urn:schemas-upnp-org:service:WANPPPConnection:1 </serviceType></service>
</serviceList></device></deviceList></device></deviceList></device></root>"#;
        let s = igd_services(xml);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(
            s[0].service_type,
            "urn:schemas-upnp-org:service:WANIPConnection:2"
        );
        assert_eq!(s[0].control_url.as_deref(), Some("/ctl/IPConn"));
        assert_eq!(s[1].control_url, None);
        assert!(igd_services(b"<root><service><serviceType>").is_empty());
        assert!(igd_services(&[0xff; 64]).is_empty());
        let http = b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n\r\n<root/>";
        assert_eq!(http_body(http).unwrap(), b"<root/>");
        assert_eq!(
            http_body(b"HTTP/1.1 404 Not Found\r\n\r\n"),
            Err(PortmapError::HttpStatus { status: 404 })
        );
        assert!(http_body(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn gateway_from_proc_net_route() {
        let gw = u32::from_ne_bytes([100, 64, 0, 1]);
        let net = u32::from_ne_bytes([100, 64, 0, 0]);
        let mask = u32::from_ne_bytes([255, 255, 255, 0]);
        let text = format!(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             lan0\t{net:08X}\t00000000\t0001\t0\t0\t0\t{mask:08X}\t0\t0\t0\n\
             lan0\t00000000\t{gw:08X}\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        );
        assert_eq!(
            default_gateway_from_proc_route(&text),
            Some(Ipv4Addr::new(100, 64, 0, 1))
        );
        // No default route, a route that is down, junk.
        let header = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n";
        let down = format!("{header}eth0\t00000000\t{gw:08X}\t0002\t0\t0\t0\t00000000\n");
        assert_eq!(default_gateway_from_proc_route(&down), None);
        assert_eq!(default_gateway_from_proc_route(header), None);
        assert_eq!(default_gateway_from_proc_route("x\ny z\n"), None);
    }

    #[test]
    fn summary() {
        let mut p = PortMapping::default();
        assert!(!p.available());
        p.upnp = UpnpStatus::Available {
            location: "http://100.64.0.1:5000/rootDesc.xml".into(),
            server: None,
            services: Vec::new(),
        };
        p.nat_pmp = ProtocolStatus::Available {
            external: Some("198.18.0.1".parse().unwrap()),
            epoch: 1,
        };
        assert!(p.available());
        assert_eq!(p.protocols(), vec!["NAT-PMP", "UPnP IGD"]);
        assert_eq!(p.external_address(), Some("198.18.0.1".parse().unwrap()));
    }
}
