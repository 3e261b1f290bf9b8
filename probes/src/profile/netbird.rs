//! NetBird's published endpoint list: a JSON array of `{Name, FQDNs[], IPv4, IPv6}` objects
//! without ports. The import is tolerant of what the published file really contains — key case,
//! a misspelt `FQDNss`, an address list given as one string (comma or space separated) or as an
//! array, empty strings — and strict about what it cannot guess: an entry whose service cannot
//! be told, or an address that does not parse, is an error naming the entry.
//!
//! Ports come from the seed profile (the embedded NetBird Cloud one): each entry is matched to a
//! seed service by its name (or its host names), takes that service's ports and transports, and
//! replaces its hosts and published addresses. Seed services the list does not mention stay.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde_json::Value;

use super::{Host, Profile, ProfileError, Service, ServiceKind};

fn bad(reason: impl Into<String>) -> ProfileError {
    ProfileError::Endpoints {
        reason: reason.into(),
    }
}

/// The `family` (`IPv4`, `IPv6`) addresses of entry `label`.
fn addresses<A: FromStr>(
    list: &[String],
    label: &str,
    family: &str,
) -> Result<Vec<A>, ProfileError> {
    list.iter()
        .map(|a| {
            a.parse().map_err(|_| {
                bad(format!(
                    "{label}: {family}: {a:?} is not an {family} address"
                ))
            })
        })
        .collect()
}

/// A key of `obj`, matched case-insensitively; `prefix` matches keys starting with it (so
/// `FQDNss` is found as `fqdn…`).
fn field<'a>(
    obj: &'a serde_json::Map<String, Value>,
    name: &str,
    prefix: bool,
) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| {
            let k = k.to_ascii_lowercase();
            if prefix {
                k.starts_with(name)
            } else {
                k == name
            }
        })
        .map(|(_, v)| v)
}

/// Strings of a value that is a string (split on commas and white space), an array of those,
/// or null.
fn strings(v: Option<&Value>, what: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut push = |s: &str| {
        out.extend(
            s.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|x| !x.is_empty())
                .map(str::to_string),
        )
    };
    match v {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => push(s),
        Some(Value::Array(a)) => {
            for x in a {
                match x {
                    Value::String(s) => push(s),
                    Value::Null => {}
                    other => return Err(format!("{what}: {other} is not a string")),
                }
            }
        }
        Some(other) => return Err(format!("{what}: {other} is neither a string nor a list")),
    }
    Ok(out)
}

/// Which seed service kind an entry is, from its name, else from its host names.
fn kind_of(name: &str, hosts: &[String]) -> Option<ServiceKind> {
    let by_word = |t: &str| {
        let t = t.to_ascii_lowercase();
        // "Relay (TURN)" is TURN: look for the protocol words first.
        if t.contains("turn") {
            Some(ServiceKind::Turn)
        } else if t.contains("stun") || t.contains("p2p") {
            Some(ServiceKind::Stun)
        } else if t.contains("signal") {
            Some(ServiceKind::Signal)
        } else if t.contains("management") || t.starts_with("api.") {
            Some(ServiceKind::Management)
        } else if t.contains("relay") {
            Some(ServiceKind::Relay)
        } else {
            None
        }
    };
    by_word(name).or_else(|| hosts.iter().find_map(|h| by_word(h)))
}

/// Import `json` onto `seed`. Returns the profile and notes on what was assumed.
pub fn import(json: &str, seed: &Profile) -> Result<(Profile, Vec<String>), ProfileError> {
    let v: Value = serde_json::from_str(json).map_err(|e| bad(format!("not JSON: {e}")))?;
    let entries = match &v {
        Value::Array(a) => a.as_slice(),
        // Tolerate a wrapper object holding the one array.
        Value::Object(o) => match o.values().find_map(Value::as_array) {
            Some(a) => a.as_slice(),
            None => return Err(bad("expected an array of endpoint objects")),
        },
        _ => return Err(bad("expected an array of endpoint objects")),
    };
    let mut notes = Vec::new();
    let mut imported: Vec<Service> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let Some(obj) = e.as_object() else {
            return Err(bad(format!("entry {i}: not an object")));
        };
        let name = field(obj, "name", false)
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string();
        let label = if name.is_empty() {
            format!("entry {i}")
        } else {
            format!("entry {i} ({name})")
        };
        let fqdns =
            strings(field(obj, "fqdn", true), "FQDNs").map_err(|r| bad(format!("{label}: {r}")))?;
        let v4 =
            strings(field(obj, "ipv4", false), "IPv4").map_err(|r| bad(format!("{label}: {r}")))?;
        let v6 =
            strings(field(obj, "ipv6", false), "IPv6").map_err(|r| bad(format!("{label}: {r}")))?;
        let Some(kind) = kind_of(&name, &fqdns) else {
            return Err(bad(format!(
                "{label}: cannot tell which service this is (expected a name with management, signal, STUN, TURN or relay)"
            )));
        };
        let Some(seed_service) = seed.of_kind(kind).next() else {
            return Err(bad(format!(
                "{label}: the seed profile has no {kind} service to take ports from"
            )));
        };
        let mut hosts = Vec::new();
        for f in &fqdns {
            let h = Host::parse(f).map_err(|r| bad(format!("{label}: FQDNs: {r}")))?;
            if matches!(h, Host::Wildcard(_)) && kind != ServiceKind::Relay {
                notes.push(format!(
                    "{label}: wildcard {h} skipped (only relays take wildcards)"
                ));
                continue;
            }
            hosts.push(h);
        }
        let ipv4: Vec<Ipv4Addr> = addresses(&v4, &label, "IPv4")?;
        let ipv6: Vec<Ipv6Addr> = addresses(&v6, &label, "IPv6")?;
        if hosts.is_empty() {
            // No name: probe the published addresses themselves.
            hosts.extend(ipv4.iter().map(|a| Host::Ip(IpAddr::V4(*a))));
            hosts.extend(ipv6.iter().map(|a| Host::Ip(IpAddr::V6(*a))));
        }
        if hosts.is_empty() {
            notes.push(format!("{label}: neither names nor addresses; skipped"));
            continue;
        }
        // Entries of one service merge (geo-distributed clusters are listed one by one).
        if let Some(s) = imported.iter_mut().find(|s| s.kind == kind) {
            for h in hosts {
                if !s.hosts.contains(&h) {
                    s.hosts.push(h);
                }
            }
            s.ipv4.extend(
                ipv4.into_iter()
                    .filter(|a| !s.ipv4.contains(a))
                    .collect::<Vec<_>>(),
            );
            s.ipv6.extend(
                ipv6.into_iter()
                    .filter(|a| !s.ipv6.contains(a))
                    .collect::<Vec<_>>(),
            );
        } else {
            imported.push(Service {
                hosts,
                ipv4,
                ipv6,
                ..seed_service.clone()
            });
        }
    }
    if imported.is_empty() {
        return Err(bad("no usable endpoint in the list"));
    }
    let mut services = Vec::new();
    for s in &seed.services {
        match imported.iter().position(|x| x.kind == s.kind) {
            Some(p) => services.push(imported.remove(p)),
            None => {
                notes.push(format!(
                    "{}: not in the list; kept from the {} profile",
                    s.name, seed.name
                ));
                services.push(s.clone());
            }
        }
    }
    let profile = Profile {
        name: format!("{}-imported", seed.name),
        description: Some(format!(
            "NetBird endpoint list on the ports of {}",
            seed.name
        )),
        services,
    };
    profile.validate()?;
    Ok((profile, notes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::PortRange;
    use crate::profile::netbird_cloud;

    // Shaped like the published list (names and addresses made up, documentation ranges).
    const LIST: &str = r#"[
      {"Name": "STUN", "FQDNs": ["stun.example.test"], "IPv4": "192.0.2.10, 192.0.2.11", "IPv6": ""},
      {"Name": "TURN", "FQDNss": ["turn.example.test"], "IPv4": ["192.0.2.20"], "IPv6": "2001:db8::20"},
      {"Name": "Relay", "FQDNs": ["eu.relay.example.test", "us.relay.example.test"], "IPv4": "", "IPv6": ""},
      {"name": "Relay", "fqdns": ["ap.relay.example.test"]}
    ]"#;

    #[test]
    fn tolerant_import_applies_seed_ports() {
        let seed = netbird_cloud().unwrap();
        let (p, notes) = import(LIST, &seed).unwrap();
        let stun = p.of_kind(ServiceKind::Stun).next().unwrap();
        assert_eq!(stun.hosts, vec![Host::Name("stun.example.test".into())]);
        assert_eq!(stun.udp.len(), 4);
        assert_eq!(stun.ipv4.len(), 2);
        assert!(stun.ipv6.is_empty());
        let turn = p.of_kind(ServiceKind::Turn).next().unwrap();
        assert_eq!(turn.hosts, vec![Host::Name("turn.example.test".into())]);
        assert_eq!(
            turn.tcp,
            vec![PortRange {
                start: 443,
                end: 65535
            }]
        );
        assert_eq!(turn.ipv6.len(), 1);
        let relay = p.of_kind(ServiceKind::Relay).next().unwrap();
        assert_eq!(relay.hosts.len(), 3);
        assert_eq!(relay.tcp, vec![PortRange::single(443)]);
        // Management and signal are not in the list: kept from the seed, and said so.
        assert!(p.of_kind(ServiceKind::Management).next().is_some());
        assert!(notes.iter().any(|n| n.contains("Management")), "{notes:?}");
    }

    #[test]
    fn errors_name_the_entry() {
        let seed = netbird_cloud().unwrap();
        let e = import(
            r#"[{"Name": "Mystery", "FQDNs": ["x.example.test"]}]"#,
            &seed,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("entry 0 (Mystery)"), "{e}");
        let e = import(
            r#"[{"Name": "STUN", "FQDNs": ["s.test"], "IPv4": "300.1.1.1"}]"#,
            &seed,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("IPv4") && e.contains("300.1.1.1"), "{e}");
        assert!(import("{", &seed).is_err());
        assert!(import("[]", &seed).is_err());
        assert!(
            import("[1]", &seed)
                .unwrap_err()
                .to_string()
                .contains("entry 0")
        );
    }
}
