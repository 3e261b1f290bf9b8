//! Profiles: what `stunmap check` probes — the services of a P2P VPN deployment, each with its
//! names, ports, transports and published addresses.
//!
//! A profile is written in TOML (docs/profiles.md) and parsed strictly: unknown keys, bad ports,
//! bad addresses and services that cannot be checked are errors that name the field. NetBird
//! Cloud's profile is embedded ([`netbird_cloud`]); NetBird's published endpoint list (JSON) can
//! be imported onto it ([`netbird`]).

pub mod netbird;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::PortRange;

/// The embedded NetBird Cloud profile, as TOML.
pub const NETBIRD_CLOUD_TOML: &str = include_str!("../../profiles/netbird-cloud.toml");

/// The only profile format version this build reads.
pub const VERSION: u32 = 1;

/// Why a profile could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// Not TOML, or a key of the wrong type or unknown (the message names the key and line).
    #[error("profile is not valid: {message}")]
    Toml {
        /// The TOML parser's message.
        message: String,
    },
    /// A field has a value that cannot be used.
    #[error("{field}: {reason}")]
    Invalid {
        /// Path of the field, e.g. `service[2].udp[1]`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The NetBird endpoint list is not usable JSON.
    #[error("endpoint list: {reason}")]
    Endpoints {
        /// What is wrong.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ProfileError {
    ProfileError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The `family` (`IPv4`, `IPv6`) addresses of the list at `field`; an error names the entry.
fn addresses<A: FromStr>(
    list: &[String],
    field: &str,
    family: &str,
) -> Result<Vec<A>, ProfileError> {
    list.iter()
        .enumerate()
        .map(|(j, a)| {
            a.trim().parse().map_err(|_| {
                invalid(
                    format!("{field}[{j}]"),
                    format!("{a:?} is not an {family} address"),
                )
            })
        })
        .collect()
}

/// What a service is; it decides which checks run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// Management: gRPC over TLS on TCP.
    Management,
    /// Signal: gRPC over TLS on TCP.
    Signal,
    /// STUN: Binding requests on UDP ports (and the NAT behaviour tests).
    Stun,
    /// TURN: Allocate on UDP, TCP and TLS ports; the TCP range is sampled.
    Turn,
    /// Relay: WebSocket over TLS on TCP, QUIC on UDP of the same port.
    Relay,
}

impl ServiceKind {
    /// Lower-case name, as in the TOML file and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Management => "management",
            ServiceKind::Signal => "signal",
            ServiceKind::Stun => "stun",
            ServiceKind::Turn => "turn",
            ServiceKind::Relay => "relay",
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host as written in a profile.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub enum Host {
    /// A DNS name.
    Name(String),
    /// An IP literal: no lookup.
    Ip(IpAddr),
    /// `*.example.net`: many names, none probed unless named on the command line.
    Wildcard(String),
}

impl From<Host> for String {
    fn from(h: Host) -> String {
        h.to_string()
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

impl Host {
    /// Parse a name, an IP literal (IPv6 with or without brackets) or `*.name`.
    pub fn parse(s: &str) -> Result<Host, String> {
        let s = s.trim();
        let unbracketed = s
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(s);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        if let Some(rest) = s.strip_prefix("*.") {
            check_dns_name(rest)?;
            return Ok(Host::Wildcard(rest.to_ascii_lowercase()));
        }
        check_dns_name(s)?;
        Ok(Host::Name(s.trim_end_matches('.').to_ascii_lowercase()))
    }

    /// The name to resolve, for names.
    pub fn name(&self) -> Option<&str> {
        match self {
            Host::Name(n) => Some(n),
            _ => None,
        }
    }
}

/// RFC 1035 §2.3.1 preferred syntax, loosened for underscores (seen in real names): labels of
/// 1-63 letters, digits, hyphens, underscores; at most 253 characters.
fn check_dns_name(s: &str) -> Result<(), String> {
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{s:?} is not a host name or IP address"));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("{s:?} is not a host name or IP address"));
        }
    }
    Ok(())
}

/// One service of a profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Service {
    /// Display name (the reference page's: "Management", "P2P (STUN)", …).
    pub name: String,
    /// What it is.
    pub kind: ServiceKind,
    /// Names or addresses serving it.
    pub hosts: Vec<Host>,
    /// UDP ports.
    pub udp: Vec<PortRange>,
    /// TCP ports (TURN: the range the TCP sample is drawn from).
    pub tcp: Vec<PortRange>,
    /// TURN over TLS ports (`turns:`).
    pub tls: Vec<u16>,
    /// Published IPv4 addresses (DNS answers outside the list are flagged).
    pub ipv4: Vec<Ipv4Addr>,
    /// Published IPv6 addresses.
    pub ipv6: Vec<Ipv6Addr>,
}

impl Service {
    /// The published addresses, both families.
    pub fn published(&self) -> Vec<IpAddr> {
        self.ipv4
            .iter()
            .map(|a| IpAddr::V4(*a))
            .chain(self.ipv6.iter().map(|a| IpAddr::V6(*a)))
            .collect()
    }
}

/// A whole profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// Short name (metric label, `/probe?module=`).
    pub name: String,
    /// One line.
    pub description: Option<String>,
    /// The services, in file order.
    pub services: Vec<Service>,
}

// The file as written; strict: unknown keys are errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    version: u32,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, rename = "service")]
    services: Vec<RawService>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: String,
    kind: ServiceKind,
    hosts: Vec<String>,
    #[serde(default)]
    udp: Vec<RawPort>,
    #[serde(default)]
    tcp: Vec<RawPort>,
    #[serde(default)]
    tls: Vec<u16>,
    #[serde(default)]
    ipv4: Vec<String>,
    #[serde(default)]
    ipv6: Vec<String>,
}

/// `443` or `"443"` or `"443-65535"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawPort {
    Number(i64),
    Text(String),
}

fn ports(field: &str, raw: &[RawPort]) -> Result<Vec<PortRange>, ProfileError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, p) in raw.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let r = match p {
            RawPort::Number(n) => match u16::try_from(*n) {
                Ok(p) if p > 0 => PortRange::single(p),
                _ => return Err(invalid(f, format!("{n} is not a port (1-65535)"))),
            },
            RawPort::Text(t) => PortRange::parse(t).map_err(|e| invalid(f, e))?,
        };
        out.push(r);
    }
    Ok(out)
}

impl Profile {
    /// Parse and validate a TOML profile.
    pub fn from_toml(text: &str) -> Result<Profile, ProfileError> {
        let raw: RawProfile = toml::from_str(text).map_err(|e| ProfileError::Toml {
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        if raw.version != VERSION {
            return Err(invalid(
                "version",
                format!(
                    "version {} is not supported (this build reads {VERSION})",
                    raw.version
                ),
            ));
        }
        let mut services = Vec::with_capacity(raw.services.len());
        for (i, s) in raw.services.into_iter().enumerate() {
            let at = |f: &str| format!("service[{i}].{f}");
            let mut hosts = Vec::new();
            for (j, h) in s.hosts.iter().enumerate() {
                hosts.push(Host::parse(h).map_err(|e| invalid(at(&format!("hosts[{j}]")), e))?);
            }
            let ipv4: Vec<Ipv4Addr> = addresses(&s.ipv4, &at("ipv4"), "IPv4")?;
            let ipv6: Vec<Ipv6Addr> = addresses(&s.ipv6, &at("ipv6"), "IPv6")?;
            for (j, p) in s.tls.iter().enumerate() {
                if *p == 0 {
                    return Err(invalid(at(&format!("tls[{j}]")), "0 is not a port"));
                }
            }
            let service = Service {
                name: s.name,
                kind: s.kind,
                hosts,
                udp: ports(&at("udp"), &s.udp)?,
                tcp: ports(&at("tcp"), &s.tcp)?,
                tls: s.tls,
                ipv4,
                ipv6,
            };
            validate_service(&service, i)?;
            services.push(service);
        }
        let p = Profile {
            name: raw.name,
            description: raw.description,
            services,
        };
        p.validate()?;
        Ok(p)
    }

    /// Whole-profile rules (also applied to imported and command-line profiles).
    pub fn validate(&self) -> Result<(), ProfileError> {
        if self.name.trim().is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(invalid(
                "name",
                format!(
                    "{:?}: use letters, digits, '-', '_' and '.' (it becomes a metric label)",
                    self.name
                ),
            ));
        }
        if self.services.is_empty() {
            return Err(invalid(
                "service",
                "a profile needs at least one [[service]]",
            ));
        }
        for (i, s) in self.services.iter().enumerate() {
            validate_service(s, i)?;
            if self.services.iter().take(i).any(|o| o.name == s.name) {
                return Err(invalid(
                    format!("service[{i}].name"),
                    format!("{:?} is used twice", s.name),
                ));
            }
        }
        Ok(())
    }

    /// Services of one kind.
    pub fn of_kind(&self, kind: ServiceKind) -> impl Iterator<Item = &Service> {
        self.services.iter().filter(move |s| s.kind == kind)
    }

    /// Every DNS name in the profile (not IP literals, not wildcards), once each.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .services
            .iter()
            .flat_map(|s| s.hosts.iter().filter_map(|h| h.name().map(str::to_string)))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

fn validate_service(s: &Service, i: usize) -> Result<(), ProfileError> {
    let at = |f: &str| format!("service[{i}].{f}");
    if s.name.trim().is_empty() {
        return Err(invalid(at("name"), "empty"));
    }
    if s.hosts.is_empty() {
        return Err(invalid(at("hosts"), "at least one host name or address"));
    }
    for (j, h) in s.hosts.iter().enumerate() {
        if matches!(h, Host::Wildcard(_)) && s.kind != ServiceKind::Relay {
            return Err(invalid(
                at(&format!("hosts[{j}]")),
                format!("wildcard {h} is only allowed for relay services"),
            ));
        }
    }
    let none = |f: &str, v: bool| -> Result<(), ProfileError> {
        if v {
            Err(invalid(
                at(f),
                format!("a {} service has no {f} ports", s.kind),
            ))
        } else {
            Ok(())
        }
    };
    match s.kind {
        ServiceKind::Management | ServiceKind::Signal | ServiceKind::Relay => {
            if s.tcp.is_empty() {
                return Err(invalid(
                    at("tcp"),
                    format!("a {} service needs a TCP port", s.kind),
                ));
            }
            if let Some((j, r)) = s.tcp.iter().enumerate().find(|(_, r)| !r.is_single()) {
                return Err(invalid(
                    at(&format!("tcp[{j}]")),
                    format!("{r}: a {} service takes single ports, not ranges", s.kind),
                ));
            }
            none("udp", !s.udp.is_empty())?;
            none("tls", !s.tls.is_empty())?;
        }
        ServiceKind::Stun => {
            if s.udp.is_empty() {
                return Err(invalid(at("udp"), "a stun service needs UDP ports"));
            }
            none("tcp", !s.tcp.is_empty())?;
            none("tls", !s.tls.is_empty())?;
        }
        ServiceKind::Turn => {
            if s.udp.is_empty() && s.tcp.is_empty() && s.tls.is_empty() {
                return Err(invalid(
                    at("udp"),
                    "a turn service needs UDP, TCP or TLS ports",
                ));
            }
        }
    }
    // UDP ports are probed one by one: keep the list short.
    let udp_ports: u32 = s.udp.iter().map(PortRange::count).sum();
    if udp_ports > 64 {
        return Err(invalid(
            at("udp"),
            format!("{udp_ports} UDP ports; at most 64 are probed (use `stunmap sweep` for more)"),
        ));
    }
    Ok(())
}

/// The embedded NetBird Cloud profile.
pub fn netbird_cloud() -> Result<Profile, ProfileError> {
    Profile::from_toml(NETBIRD_CLOUD_TOML)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn embedded_profile_has_every_endpoint_of_the_reference_page() {
        let p = netbird_cloud().unwrap();
        assert_eq!(p.name, "netbird-cloud");
        let by = |k| p.of_kind(k).next().unwrap();
        let m = by(ServiceKind::Management);
        assert_eq!(m.hosts, vec![Host::Name("api.netbird.io".into())]);
        assert_eq!(m.tcp, vec![PortRange::single(443)]);
        assert_eq!(m.ipv4.len(), 7);
        assert_eq!(m.ipv6.len(), 7);
        let s = by(ServiceKind::Signal);
        assert_eq!(s.hosts, vec![Host::Name("signal.netbird.io".into())]);
        assert_eq!(s.ipv4, m.ipv4);
        let stun = by(ServiceKind::Stun);
        let udp: Vec<u16> = stun.udp.iter().flat_map(PortRange::ports).collect();
        assert_eq!(udp, vec![80, 443, 3478, 5555]);
        let turn = by(ServiceKind::Turn);
        let udp: Vec<u16> = turn.udp.iter().flat_map(PortRange::ports).collect();
        assert_eq!(udp, vec![80, 443]);
        assert_eq!(
            turn.tcp,
            vec![PortRange {
                start: 443,
                end: 65535
            }]
        );
        let relay = by(ServiceKind::Relay);
        assert_eq!(relay.hosts, vec![Host::Wildcard("relay.netbird.io".into())]);
        assert_eq!(
            p.names(),
            vec![
                "api.netbird.io",
                "signal.netbird.io",
                "stun.netbird.io",
                "turn.netbird.io"
            ]
        );
    }

    fn err(text: &str) -> String {
        Profile::from_toml(text).unwrap_err().to_string()
    }

    const HEAD: &str = "version = 1\nname = \"x\"\n";

    #[test]
    fn errors_name_the_field() {
        // A service after HEAD, and what its error must name.
        for (service, want) in [
            (
                "name = \"s\"\nkind = \"stun\"\nhosts = [\"a.test\"]\nudp = [\"3478\", \"70000\"]\n",
                "service[0].udp[1]",
            ),
            (
                "name = \"s\"\nkind = \"stun\"\nhosts = [\"a.test\"]\nudp = [3478]\nbogus = 1\n",
                "bogus",
            ),
            (
                "name = \"s\"\nkind = \"stun\"\nhosts = [\"bad host!\"]\nudp = [3478]\n",
                "service[0].hosts[0]",
            ),
            (
                "name = \"s\"\nkind = \"management\"\nhosts = [\"a.test\"]\ntcp = [\"1-2\"]\n",
                "service[0].tcp[0]",
            ),
            (
                "name = \"s\"\nkind = \"stun\"\nhosts = [\"*.a.test\"]\nudp = [1]\n",
                "wildcard",
            ),
            (
                "name = \"s\"\nkind = \"stun\"\nhosts = [\"a.test\"]\nudp = [1]\nipv4 = [\"::1\"]\n",
                "service[0].ipv4[0]",
            ),
            (
                "name = \"s\"\nkind = \"quux\"\nhosts = [\"a.test\"]\n",
                "quux",
            ),
        ] {
            let e = err(&format!("{HEAD}[[service]]\n{service}"));
            assert!(e.contains(want), "{e}");
        }
        let e = err("version = 2\nname = \"x\"\n");
        assert!(e.contains("version"), "{e}");
        let e = err(HEAD);
        assert!(e.contains("at least one"), "{e}");
    }

    #[test]
    fn ports_and_hosts_parse() {
        assert_eq!(PortRange::parse("443-65535").unwrap().count(), 65093);
        assert!(PortRange::parse("9-3").is_err());
        assert!(PortRange::parse("0").is_err());
        assert_eq!(
            Host::parse("[::1]").unwrap(),
            Host::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            Host::parse("Stun.Example.NET.").unwrap(),
            Host::Name("stun.example.net".into())
        );
    }

    #[test]
    fn self_hosted_template_parses() {
        let p = Profile::from_toml(include_str!("../../../examples/self-hosted.toml")).unwrap();
        assert!(p.of_kind(ServiceKind::Turn).next().is_some());
        assert!(p.of_kind(ServiceKind::Relay).next().is_some());
    }
}
