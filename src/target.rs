//! Parsing and resolving targets given on the command line: `HOST`, `HOST:PORT`,
//! `HOST:PORT-PORT`, `[V6]:PORT[-PORT]`, `V4`, `[V6]`.

use std::net::{IpAddr, SocketAddr};

use anyhow::Result;

use crate::exit::usage;

/// A target as written: a host and an inclusive port range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TargetSpec {
    pub(crate) host: String,
    pub(crate) ports: (u16, u16),
}

/// Which address families the `-4`/`-6` flags select (not an address family itself: that is
/// [`probes::Family`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum FamilyChoice {
    #[default]
    Any,
    V4,
    V6,
}

impl FamilyChoice {
    pub(crate) fn from_flags(v4: bool, v6: bool) -> Self {
        match (v4, v6) {
            (true, false) => FamilyChoice::V4,
            (false, true) => FamilyChoice::V6,
            _ => FamilyChoice::Any,
        }
    }

    fn admits(self, ip: &IpAddr) -> bool {
        match self {
            FamilyChoice::Any => true,
            FamilyChoice::V4 => ip.is_ipv4(),
            FamilyChoice::V6 => ip.is_ipv6(),
        }
    }
}

/// Parse a port or an inclusive range `A-B`.
pub(crate) fn parse_ports(s: &str) -> Result<(u16, u16)> {
    let parse = |p: &str| -> Result<u16> {
        match p.trim().parse::<u16>() {
            Ok(0) | Err(_) => Err(usage(format!(
                "bad port {}: expected 1-65535",
                crate::report::doc::quoted(p)
            ))),
            Ok(n) => Ok(n),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse(a)?, parse(b)?);
            if a > b {
                return Err(usage(format!(
                    "bad port range {}: start after end",
                    crate::report::doc::quoted(s)
                )));
            }
            Ok((a, b))
        }
        None => {
            let p = parse(s)?;
            Ok((p, p))
        }
    }
}

impl TargetSpec {
    /// Parse `s`, using `default_port` when none is given.
    pub(crate) fn parse(s: &str, default_port: u16) -> Result<Self> {
        let s = s.trim();
        if s.is_empty() {
            return Err(usage("empty target"));
        }
        if let Some(rest) = s.strip_prefix('[') {
            let Some((host, tail)) = rest.split_once(']') else {
                return Err(usage(format!(
                    "bad target {}: missing ']'",
                    crate::report::doc::quoted(s)
                )));
            };
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(usage(format!(
                    "bad target {}: {} is not an IPv6 address",
                    crate::report::doc::quoted(s),
                    crate::report::doc::quoted(host)
                )));
            }
            let ports = match tail.strip_prefix(':') {
                Some(p) => parse_ports(p)?,
                None if tail.is_empty() => (default_port, default_port),
                None => {
                    return Err(usage(format!(
                        "bad target {}: junk after ']'",
                        crate::report::doc::quoted(s)
                    )));
                }
            };
            return Ok(Self {
                host: host.to_string(),
                ports,
            });
        }
        if s.parse::<std::net::Ipv6Addr>().is_ok() {
            return Ok(Self {
                host: s.to_string(),
                ports: (default_port, default_port),
            });
        }
        match s.rsplit_once(':') {
            Some((host, p)) => {
                if host.is_empty() || host.contains(':') {
                    return Err(usage(format!(
                        "bad target {}: write IPv6 addresses as [ADDR]:PORT",
                        crate::report::doc::quoted(s)
                    )));
                }
                Ok(Self {
                    host: host.to_string(),
                    ports: parse_ports(p)?,
                })
            }
            None => Ok(Self {
                host: s.to_string(),
                ports: (default_port, default_port),
            }),
        }
    }
}

/// Resolve a host to every address of the admitted families (IP literals need no lookup).
pub(crate) async fn resolve(host: &str, family: FamilyChoice) -> Result<Vec<IpAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        if !family.admits(&ip) {
            return Err(usage(format!(
                "{host} is not of the requested address family"
            )));
        }
        return Ok(vec![ip]);
    }
    let addrs = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| anyhow::anyhow!("cannot resolve {host}: {e}"))?;
    let mut ips: Vec<IpAddr> = addrs
        .map(|a: SocketAddr| a.ip())
        .filter(|ip| family.admits(ip))
        .collect();
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        anyhow::bail!("{host} has no address of the requested family");
    }
    Ok(ips)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let t = TargetSpec::parse("127.0.0.1:3478", 1).unwrap();
        assert_eq!((t.host.as_str(), t.ports), ("127.0.0.1", (3478, 3478)));
        let t = TargetSpec::parse("127.0.0.1:21000-21999", 1).unwrap();
        assert_eq!(t.ports, (21000, 21999));
        let t = TargetSpec::parse("[::1]:80-81", 1).unwrap();
        assert_eq!((t.host.as_str(), t.ports), ("::1", (80, 81)));
        let t = TargetSpec::parse("::1", 3478).unwrap();
        assert_eq!((t.host.as_str(), t.ports), ("::1", (3478, 3478)));
        let t = TargetSpec::parse("stun.example", 3478).unwrap();
        assert_eq!(t.ports, (3478, 3478));
    }

    #[test]
    fn bad_forms_are_usage_errors() {
        for bad in [
            "",
            "1.2.3.4:0",
            "1.2.3.4:70000",
            "1.2.3.4:9-3",
            "[::1",
            "[zz]:1",
            "::1:80x",
            ":80",
        ] {
            let e = TargetSpec::parse(bad, 3478).unwrap_err();
            assert!(
                e.downcast_ref::<crate::exit::UsageError>().is_some(),
                "{bad}: {e}"
            );
        }
    }
}
