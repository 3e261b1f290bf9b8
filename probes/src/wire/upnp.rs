//! UPnP Internet Gateway Device discovery: the SSDP search and its answers (UPnP Device
//! Architecture 1.1 §1.3), the `http://` URL of the device description, the GET that fetches
//! it and the scan of the description for WAN connection services (§2.3; IGD 1.0/2.0
//! device templates); and the SOAP actions (§3.2) stunmap uses on such a service:
//! `GetExternalIPAddress`, and `AddPortMapping`/`DeletePortMapping` for the short-lived
//! mapping it creates, verifies and deletes at once.
//!
//! Every parser takes untrusted bytes from the LAN and returns an error rather than panicking.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

use super::{Layer, WireError};

/// The SSDP multicast group and port (UPnP Device Architecture 1.1 §1.3).
pub const SSDP_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 255, 250), 1900);
/// The device type searched for (UPnP IGD 1.0 device template).
pub const IGD_DEVICE: &str = "urn:schemas-upnp-org:device:InternetGatewayDevice:1";

const NOT_HTTP: WireError = WireError::Malformed {
    layer: Layer::Upnp,
    what: "HTTP response head",
};
const NO_LOCATION: WireError = WireError::Malformed {
    layer: Layer::Upnp,
    what: "answer without a LOCATION header",
};
const BAD_LOCATION: WireError = WireError::Malformed {
    layer: Layer::Upnp,
    what: "LOCATION URL",
};

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
pub fn parse_ssdp_answer(b: &[u8]) -> Result<SsdpAnswer<'_>, WireError> {
    let text = std::str::from_utf8(b).map_err(|_| NOT_HTTP)?;
    let (status, headers) = http_head(text)?;
    if status != 200 {
        return Err(unexpected_status(status));
    }
    let location = header(headers, "location").ok_or(NO_LOCATION)?;
    Ok(SsdpAnswer {
        location,
        st: header(headers, "st"),
        server: header(headers, "server"),
    })
}

/// The status code and the header block of an HTTP/1.x response head.
fn http_head(text: &str) -> Result<(u16, &str), WireError> {
    let (line, rest) = text.split_once("\r\n").unwrap_or((text, ""));
    let mut parts = line.split_whitespace();
    let version = parts.next().ok_or(NOT_HTTP)?;
    if !version.starts_with("HTTP/1.") {
        return Err(NOT_HTTP);
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(NOT_HTTP)?;
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
pub fn parse_http_url(url: &str) -> Result<HttpUrl, WireError> {
    let rest = url
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("http://"))
        .and_then(|_| url.get(7..))
        .ok_or(BAD_LOCATION)?;
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
        return Err(BAD_LOCATION);
    };
    if path.bytes().any(|c| c.is_ascii_control() || c == b' ') {
        return Err(BAD_LOCATION);
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
pub fn http_body(b: &[u8]) -> Result<&[u8], WireError> {
    let (status, body) = http_response(b)?;
    if status != 200 {
        return Err(unexpected_status(status));
    }
    Ok(body)
}

/// An HTTP response's status and the bytes after its head.
fn http_response(b: &[u8]) -> Result<(u16, &[u8]), WireError> {
    let head_end = b
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(NOT_HTTP)?;
    let head = b.get(..head_end).ok_or(NOT_HTTP)?;
    let head = std::str::from_utf8(head).map_err(|_| NOT_HTTP)?;
    let (status, _) = http_head(head)?;
    Ok((status, b.get(head_end + 4..).unwrap_or(&[])))
}

/// An HTTP status other than the one the exchange expects.
fn unexpected_status(status: u16) -> WireError {
    WireError::Unexpected {
        layer: Layer::Upnp,
        field: "HTTP status",
        value: u32::from(status),
    }
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
// SOAP control (UPnP Device Architecture 1.1 §3.2; IGD WANIPConnection:1/2 actions)

/// The control URL of a service: `control` from the description, relative to the
/// description's own URL or absolute with a literal IP (the caller checks it is the gateway).
pub fn control_url(description: &HttpUrl, control: &str) -> Result<HttpUrl, WireError> {
    let control = control.trim();
    if control
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("http://"))
    {
        return parse_http_url(control);
    }
    let path = if control.starts_with('/') {
        control.to_string()
    } else {
        // Relative to the description's directory.
        let dir = description.path.rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/{control}")
    };
    if path.bytes().any(|c| c.is_ascii_control() || c == b' ') {
        return Err(BAD_LOCATION);
    }
    Ok(HttpUrl {
        addr: description.addr,
        path,
    })
}

/// An action on a WAN connection service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SoapAction {
    /// `GetExternalIPAddress`.
    GetExternalIpAddress,
    /// `AddPortMapping` of UDP `external_port` to `client:internal_port` for `lease` seconds.
    AddPortMapping {
        /// External port.
        external_port: u16,
        /// Internal port.
        internal_port: u16,
        /// Internal client.
        client: Ipv4Addr,
        /// Lease, seconds.
        lease: u32,
    },
    /// `DeletePortMapping` of UDP `external_port`.
    DeletePortMapping {
        /// External port.
        external_port: u16,
    },
}

impl SoapAction {
    /// The action's name.
    pub fn name(&self) -> &'static str {
        match self {
            SoapAction::GetExternalIpAddress => "GetExternalIPAddress",
            SoapAction::AddPortMapping { .. } => "AddPortMapping",
            SoapAction::DeletePortMapping { .. } => "DeletePortMapping",
        }
    }

    fn arguments(&self) -> String {
        match self {
            SoapAction::GetExternalIpAddress => String::new(),
            SoapAction::AddPortMapping {
                external_port,
                internal_port,
                client,
                lease,
            } => format!(
                "<NewRemoteHost></NewRemoteHost><NewExternalPort>{external_port}</NewExternalPort><NewProtocol>UDP</NewProtocol><NewInternalPort>{internal_port}</NewInternalPort><NewInternalClient>{client}</NewInternalClient><NewEnabled>1</NewEnabled><NewPortMappingDescription>stunmap</NewPortMappingDescription><NewLeaseDuration>{lease}</NewLeaseDuration>"
            ),
            SoapAction::DeletePortMapping { external_port } => format!(
                "<NewRemoteHost></NewRemoteHost><NewExternalPort>{external_port}</NewExternalPort><NewProtocol>UDP</NewProtocol>"
            ),
        }
    }
}

/// A service type safe to put in a header and a body: the UPnP URN prefix and nothing but
/// letters, digits and `:.-_` (it comes from the device description).
fn safe_service_type(t: &str) -> bool {
    t.starts_with("urn:schemas-upnp-org:service:")
        && t.len() <= 128
        && t.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b':' | b'.' | b'-' | b'_'))
}

/// The HTTP POST of `action` on `service_type` at `url` (UDA 1.1 §3.2.1), closing the
/// connection after the answer.
pub fn soap_request(
    url: &HttpUrl,
    service_type: &str,
    action: &SoapAction,
) -> Result<Vec<u8>, WireError> {
    if !safe_service_type(service_type) {
        return Err(WireError::Malformed {
            layer: Layer::Upnp,
            what: "service type",
        });
    }
    let name = action.name();
    let body = format!(
        "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:{name} xmlns:u=\"{service_type}\">{}</u:{name}></s:Body></s:Envelope>\r\n",
        action.arguments()
    );
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nSOAPAction: \"{service_type}#{name}\"\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: stunmap\r\n\r\n",
        url.path,
        url.addr,
        body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    Ok(out)
}

/// What a SOAP action answered.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "reply")]
pub enum SoapReply {
    /// Success (HTTP 200); `NewExternalIPAddress` when the action returns it (empty when the
    /// gateway has none: WANIPConnection:2 §2.3.13).
    Ok {
        /// `NewExternalIPAddress`, trimmed; `None` when absent.
        external_ip: Option<String>,
    },
    /// A SOAP fault (HTTP 500) with the UPnP error.
    Fault {
        /// `errorCode` (718 ConflictInMappingEntry, 725 OnlyPermanentLeasesSupported, …).
        code: Option<u16>,
        /// `errorDescription`.
        description: Option<String>,
    },
}

/// Read the HTTP response of a SOAP action.
pub fn parse_soap_reply(b: &[u8]) -> Result<SoapReply, WireError> {
    let (status, body) = http_response(b)?;
    let body = String::from_utf8_lossy(body);
    let clip = |s: &str| s.chars().take(128).collect::<String>();
    match status {
        200 => Ok(SoapReply::Ok {
            external_ip: element(&body, "NewExternalIPAddress").map(clip),
        }),
        500 => Ok(SoapReply::Fault {
            code: element(&body, "errorCode").and_then(|c| c.parse().ok()),
            description: element(&body, "errorDescription").map(clip),
        }),
        other => Err(unexpected_status(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            Err(NO_LOCATION)
        );
        assert_eq!(
            parse_ssdp_answer(b"NOTIFY * HTTP/1.1\r\n\r\n"),
            Err(NOT_HTTP)
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
            Err(WireError::Unexpected {
                layer: Layer::Upnp,
                field: "HTTP status",
                value: 404
            })
        );
        assert!(http_body(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn soap_requests_and_replies() {
        let desc = parse_http_url("http://192.168.1.1:5000/rootDesc.xml").unwrap();
        let ctl = control_url(&desc, "/ctl/IPConn").unwrap();
        assert_eq!((ctl.addr, ctl.path.as_str()), (desc.addr, "/ctl/IPConn"));
        let rel = control_url(
            &parse_http_url("http://192.168.1.1/igd/desc.xml").unwrap(),
            "ctl",
        )
        .unwrap();
        assert_eq!(rel.path, "/igd/ctl");
        assert!(control_url(&desc, "http://10.0.0.9:80/x").is_ok());
        assert!(control_url(&desc, "/a b").is_err());
        let st = "urn:schemas-upnp-org:service:WANIPConnection:1";
        let add = SoapAction::AddPortMapping {
            external_port: 4000,
            internal_port: 4000,
            client: "192.168.1.2".parse().unwrap(),
            lease: 30,
        };
        let r = String::from_utf8(soap_request(&ctl, st, &add).unwrap()).unwrap();
        assert!(
            r.starts_with("POST /ctl/IPConn HTTP/1.1\r\nHost: 192.168.1.1:5000\r\n"),
            "{r}"
        );
        assert!(r.contains(&format!("SOAPAction: \"{st}#AddPortMapping\"\r\n")));
        assert!(r.contains("<NewInternalClient>192.168.1.2</NewInternalClient>"));
        assert!(r.contains("<NewLeaseDuration>30</NewLeaseDuration>"));
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        // A service type from a hostile description never reaches the request.
        assert!(soap_request(&ctl, "urn:schemas-upnp-org:service:X\r\nEvil: 1", &add).is_err());
        assert!(soap_request(&ctl, "urn:evil:service:x", &add).is_err());
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n\r\n<s:Envelope><s:Body><u:GetExternalIPAddressResponse><NewExternalIPAddress>11.0.0.1</NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>";
        assert_eq!(
            parse_soap_reply(ok).unwrap(),
            SoapReply::Ok {
                external_ip: Some("11.0.0.1".into())
            }
        );
        let empty = b"HTTP/1.1 200 OK\r\n\r\n<NewExternalIPAddress></NewExternalIPAddress>";
        assert_eq!(
            parse_soap_reply(empty).unwrap(),
            SoapReply::Ok {
                external_ip: Some(String::new())
            }
        );
        let fault = b"HTTP/1.1 500 Internal Server Error\r\n\r\n<s:Fault><detail><UPnPError><errorCode>718</errorCode><errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail></s:Fault>";
        assert_eq!(
            parse_soap_reply(fault).unwrap(),
            SoapReply::Fault {
                code: Some(718),
                description: Some("ConflictInMappingEntry".into())
            }
        );
        assert!(parse_soap_reply(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
        assert!(parse_soap_reply(b"garbage").is_err());
        assert!(parse_soap_reply(&[0xff; 100]).is_err());
    }
}
