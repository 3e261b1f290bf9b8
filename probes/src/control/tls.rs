//! What a TLS handshake showed: whom the chain is trusted by (or who intercepts it), and
//! whether the negotiated ALPN protocol is what the service needs.

use std::time::Duration;

use serde::Serialize;

use super::Role;
use crate::wire::x509::CertNames;

/// The result of verifying the chain against one set of roots (as the engine's verifier
/// reported it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum ChainCheck {
    /// The chain validates for the server name.
    Valid,
    /// The chain does not lead to any of these roots.
    UnknownIssuer,
    /// The chain is trusted but not valid for the server name.
    NameMismatch,
    /// A certificate has expired.
    Expired,
    /// A certificate is not yet valid.
    NotYetValid,
    /// Another reason, in the verifier's words.
    Other {
        /// The verifier's message.
        reason: String,
    },
}

/// The facts of one TLS handshake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TlsFacts {
    /// Time from the first ClientHello byte to the end of the handshake.
    #[serde(with = "crate::serde_util::secs")]
    pub handshake_time: Duration,
    /// Protocol version (`TLSv1_3`).
    pub version: String,
    /// Cipher suite (`TLS13_AES_128_GCM_SHA256`).
    pub cipher_suite: String,
    /// Negotiated ALPN protocol, if any (lossy UTF-8).
    pub alpn: Option<String>,
    /// The chain as presented, leaf first.
    pub chain: Vec<CertNames>,
    /// Verification against the public (webpki) roots.
    pub public_roots: ChainCheck,
    /// Verification against the roots given with `--ca`, when there are any.
    pub private_roots: Option<ChainCheck>,
}

/// Whom the server's chain is trusted by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
pub enum TrustVerdict {
    /// Valid against the public roots.
    Public {
        /// The issuer of the leaf.
        issuer: String,
    },
    /// Valid against a root given with `--ca` (a self-hosted server's private CA, or an
    /// inspection CA you chose to trust).
    PrivateCa {
        /// The issuer of the leaf.
        issuer: String,
    },
    /// Not valid against the public roots but signed by some other CA: something on the path
    /// re-signs TLS for this name.
    Inspection {
        /// The CA that signed the chain presented (the issuer of its last certificate).
        issuer: String,
    },
    /// A self-signed leaf that no root vouches for.
    SelfSigned {
        /// Its subject.
        subject: String,
    },
    /// A trusted chain for another name: a wrong server, or a captive portal.
    NameMismatch {
        /// The leaf's subject.
        subject: String,
    },
    /// A certificate is outside its validity period (or the local clock is wrong).
    Expired,
    /// Anything else the verifier refused.
    Invalid {
        /// Why.
        reason: String,
    },
}

impl TrustVerdict {
    /// Whether a client that trusts only the usual roots accepts the chain. NetBird pins no
    /// certificate: anything in the system's trust store is accepted.
    pub fn is_trusted(&self) -> bool {
        matches!(
            self,
            TrustVerdict::Public { .. } | TrustVerdict::PrivateCa { .. }
        )
    }
}

/// Decide whom the chain is trusted by.
pub fn trust_verdict(facts: &TlsFacts) -> TrustVerdict {
    let leaf_issuer = || {
        facts
            .chain
            .first()
            .map(|c| c.issuer.to_string())
            .unwrap_or_default()
    };
    if facts.public_roots == ChainCheck::Valid {
        return TrustVerdict::Public {
            issuer: leaf_issuer(),
        };
    }
    if facts.private_roots == Some(ChainCheck::Valid) {
        return TrustVerdict::PrivateCa {
            issuer: leaf_issuer(),
        };
    }
    let leaf = facts.chain.first();
    let subject = leaf.map(|c| c.subject.to_string()).unwrap_or_default();
    // The most telling check: if the private roots know the issuer, their reason counts.
    let check = match &facts.private_roots {
        Some(c) if *c != ChainCheck::UnknownIssuer => c,
        _ => &facts.public_roots,
    };
    match check {
        ChainCheck::UnknownIssuer => match (leaf, facts.chain.last()) {
            (Some(l), _) if l.self_issued && facts.chain.len() == 1 => {
                TrustVerdict::SelfSigned { subject }
            }
            (_, Some(top)) => TrustVerdict::Inspection {
                issuer: top.issuer.to_string(),
            },
            _ => TrustVerdict::Invalid {
                reason: "no certificate".to_string(),
            },
        },
        ChainCheck::NameMismatch => TrustVerdict::NameMismatch { subject },
        ChainCheck::Expired | ChainCheck::NotYetValid => TrustVerdict::Expired,
        ChainCheck::Other { reason } => TrustVerdict::Invalid {
            reason: reason.clone(),
        },
        ChainCheck::Valid => TrustVerdict::Public {
            issuer: leaf_issuer(),
        },
    }
}

/// Whether the negotiated application protocol suits the service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
pub enum AlpnVerdict {
    /// h2 for a gRPC service, http/1.1 for the relay's WebSocket.
    Ok,
    /// A gRPC service got http/1.1: the path (usually a proxy) cannot carry HTTP/2, so gRPC
    /// cannot pass.
    Http11Only,
    /// No ALPN at all: a proxy or server that strips it; gRPC clients that require h2 fail.
    NoAlpn,
    /// Something unexpected.
    Unexpected {
        /// The protocol.
        protocol: String,
    },
}

/// Judge the negotiated ALPN for a role.
pub fn alpn_verdict(role: Role, negotiated: Option<&str>) -> AlpnVerdict {
    match (role.is_grpc(), negotiated) {
        (true, Some("h2")) | (false, Some("http/1.1")) => AlpnVerdict::Ok,
        (true, Some("http/1.1")) => AlpnVerdict::Http11Only,
        // The relay's WebSocket works over HTTP/1.1 without ALPN too.
        (false, None) => AlpnVerdict::Ok,
        (true, None) => AlpnVerdict::NoAlpn,
        (_, Some(p)) => AlpnVerdict::Unexpected {
            protocol: p.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::x509::DistinguishedName;

    fn cert(subject: &str, issuer: &str) -> CertNames {
        let dn = |cn: &str| DistinguishedName {
            common_name: Some(cn.to_string()),
            organization: None,
        };
        CertNames {
            subject: dn(subject),
            issuer: dn(issuer),
            self_issued: subject == issuer,
        }
    }

    fn facts(public: ChainCheck, private: Option<ChainCheck>, chain: Vec<CertNames>) -> TlsFacts {
        TlsFacts {
            handshake_time: Duration::from_millis(5),
            version: "TLSv1_3".into(),
            cipher_suite: "TLS13_AES_128_GCM_SHA256".into(),
            alpn: Some("h2".into()),
            chain,
            public_roots: public,
            private_roots: private,
        }
    }

    #[test]
    fn trust() {
        let chain = vec![cert("api.netbird.io", "Corp Proxy CA")];
        assert!(matches!(
            trust_verdict(&facts(ChainCheck::Valid, None, chain.clone())),
            TrustVerdict::Public { .. }
        ));
        assert_eq!(
            trust_verdict(&facts(ChainCheck::UnknownIssuer, None, chain.clone())),
            TrustVerdict::Inspection {
                issuer: "Corp Proxy CA".into()
            }
        );
        assert!(matches!(
            trust_verdict(&facts(
                ChainCheck::UnknownIssuer,
                Some(ChainCheck::Valid),
                chain.clone()
            )),
            TrustVerdict::PrivateCa { .. }
        ));
        // The issuer named is the top of the chain presented.
        let two = vec![
            cert("api.netbird.io", "Proxy Sub CA"),
            cert("Proxy Sub CA", "Proxy Root"),
        ];
        assert_eq!(
            trust_verdict(&facts(ChainCheck::UnknownIssuer, None, two)),
            TrustVerdict::Inspection {
                issuer: "Proxy Root".into()
            }
        );
        let own = vec![cert("x", "x")];
        assert!(matches!(
            trust_verdict(&facts(ChainCheck::UnknownIssuer, None, own)),
            TrustVerdict::SelfSigned { .. }
        ));
        assert!(matches!(
            trust_verdict(&facts(
                ChainCheck::UnknownIssuer,
                Some(ChainCheck::NameMismatch),
                chain
            )),
            TrustVerdict::NameMismatch { .. }
        ));
    }

    #[test]
    fn alpn() {
        assert_eq!(alpn_verdict(Role::Signal, Some("h2")), AlpnVerdict::Ok);
        assert_eq!(
            alpn_verdict(Role::Management, Some("http/1.1")),
            AlpnVerdict::Http11Only
        );
        assert_eq!(alpn_verdict(Role::Management, None), AlpnVerdict::NoAlpn);
        assert_eq!(alpn_verdict(Role::Relay, None), AlpnVerdict::Ok);
    }
}
