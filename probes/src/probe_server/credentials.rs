//! Whether a `/probe` check may authenticate to the TURN servers it reaches.
//!
//! An authenticated Allocate carries USERNAME and a MESSAGE-INTEGRITY keyed by the password
//! under a REALM and NONCE the server chooses (RFC 8489 §9.2): whoever answers can run an
//! offline dictionary attack on the password. So the probe's TURN credentials go only to
//! servers the module's profile names: its host names as resolved, its literal addresses and
//! the addresses it publishes for its TURN services (`ipv4`, `ipv6`). A `target` parameter
//! points every name at an address the requester chose; then the credentials are withheld,
//! unless the target is one the profile publishes or the operator allowed it for that module
//! (`--probe-credentials-for MODULE`). Withheld, the TURN checks still run: a 401 with REALM
//! and NONCE proves a TURN server is there.

use std::fmt;
use std::net::IpAddr;

use crate::profile::{Host, Profile, ServiceKind};

/// What a check does with the TURN credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialUse {
    /// None are configured.
    NoCredentials,
    /// No target: the profile's own names and addresses.
    Profile,
    /// The target is an address the profile publishes for a TURN service.
    Published,
    /// The operator allowed credentials toward any allowed target for this module.
    Permitted,
    /// Withheld: the target is an address the profile does not publish.
    Withheld,
}

impl CredentialUse {
    /// Decide for one check.
    pub fn decide(
        have_credentials: bool,
        target: Option<IpAddr>,
        published: &[IpAddr],
        permitted: bool,
    ) -> CredentialUse {
        match target {
            _ if !have_credentials => CredentialUse::NoCredentials,
            None => CredentialUse::Profile,
            Some(t)
                if published
                    .iter()
                    .any(|p| p.to_canonical() == t.to_canonical()) =>
            {
                CredentialUse::Published
            }
            Some(_) if permitted => CredentialUse::Permitted,
            Some(_) => CredentialUse::Withheld,
        }
    }

    /// Whether the credentials are sent.
    pub fn sends(self) -> bool {
        matches!(
            self,
            CredentialUse::Profile | CredentialUse::Published | CredentialUse::Permitted
        )
    }

    /// A short name (a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialUse::NoCredentials => "none",
            CredentialUse::Profile => "profile",
            CredentialUse::Published => "published",
            CredentialUse::Permitted => "permitted",
            CredentialUse::Withheld => "withheld",
        }
    }
}

impl fmt::Display for CredentialUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CredentialUse::NoCredentials => "no TURN credentials are configured",
            CredentialUse::Profile => "TURN credentials go to the profile's own servers",
            CredentialUse::Published => {
                "TURN credentials sent: the target is an address the profile publishes"
            }
            CredentialUse::Permitted => {
                "TURN credentials sent to the target: allowed for this module by --probe-credentials-for"
            }
            CredentialUse::Withheld => {
                "TURN credentials withheld: the target is not an address the profile publishes (allow with --probe-credentials-for MODULE); the TURN checks ran unauthenticated"
            }
        })
    }
}

/// The addresses a profile publishes for its TURN services: literal hosts and the `ipv4` and
/// `ipv6` lists.
pub fn published_turn_addresses(profile: &Profile) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = profile
        .services
        .iter()
        .filter(|s| s.kind == ServiceKind::Turn)
        .flat_map(|s| {
            let literal = s.hosts.iter().filter_map(|h| match h {
                Host::Ip(ip) => Some(ip.to_canonical()),
                Host::Name(_) | Host::Wildcard(_) => None,
            });
            literal
                .chain(s.ipv4.iter().map(|a| IpAddr::V4(*a)))
                .chain(s.ipv6.iter().map(|a| IpAddr::V6(*a).to_canonical()))
                .collect::<Vec<_>>()
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn credentials_follow_the_profile() {
        let published = [ip("198.51.100.7")];
        let d = |t: Option<&str>, permitted| {
            CredentialUse::decide(true, t.map(ip), &published, permitted)
        };
        assert_eq!(d(None, false), CredentialUse::Profile);
        assert_eq!(d(Some("198.51.100.7"), false), CredentialUse::Published);
        assert_eq!(
            d(Some("::ffff:198.51.100.7"), false),
            CredentialUse::Published
        );
        assert_eq!(d(Some("127.0.0.1"), false), CredentialUse::Withheld);
        assert_eq!(d(Some("127.0.0.1"), true), CredentialUse::Permitted);
        assert!(!CredentialUse::Withheld.sends());
        assert!(CredentialUse::Permitted.sends());
        assert_eq!(
            CredentialUse::decide(false, Some(ip("127.0.0.1")), &published, true),
            CredentialUse::NoCredentials
        );
    }

    #[test]
    fn published_addresses_are_the_turn_services() {
        let p = Profile::from_toml(
            r#"version = 1
name = "lab"
[[service]]
name = "STUN"
kind = "stun"
hosts = ["192.0.2.1"]
udp = [3478]
[[service]]
name = "TURN"
kind = "turn"
hosts = ["turn.lab.test", "192.0.2.2"]
udp = [3478]
ipv4 = ["192.0.2.3"]
"#,
        )
        .unwrap();
        assert_eq!(
            published_turn_addresses(&p),
            vec![ip("192.0.2.2"), ip("192.0.2.3")]
        );
    }
}
