//! `stunmap pair --explain A.json B.json`: the model's prediction for two peers from their
//! `stunmap nat --json` reports (schema `stunmap.nat/1`), for when they cannot run at once.
//!
//! Only what the prediction needs is read: each family's `nat_type` (the pair table's input),
//! `public_address` and `udp.status`. IPv4 is preferred, as in the `pair` run; IPv6 is used
//! when a report has no IPv4 section.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::model::{Prediction, Side, describe};
use crate::nat::{NatType, PairOutcome, pair_outcome};

/// Largest report accepted, bytes (a `nat` report is a few kilobytes).
pub const MAX_REPORT: usize = 1024 * 1024;

/// Why a report could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExplainError {
    /// Over [`MAX_REPORT`].
    #[error("the report is larger than {MAX_REPORT} bytes")]
    TooLarge,
    /// Not JSON, or not the shape of a `nat` report.
    #[error("not a `stunmap nat --json` report: {0}")]
    NotANatReport(String),
    /// Another schema.
    #[error("schema {0:?} is not stunmap.nat/1")]
    Schema(String),
    /// Neither family was measured.
    #[error("the report has neither an IPv4 nor an IPv6 section")]
    NoFamily,
}

#[derive(Deserialize)]
struct NatJson {
    schema: String,
    ipv4: Option<FamilyJson>,
    ipv6: Option<FamilyJson>,
}

#[derive(Deserialize)]
struct FamilyJson {
    nat_type: NatType,
    public_address: Option<SocketAddr>,
}

/// What one report says about its host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerClass {
    /// The NAT class.
    pub nat: NatType,
    /// Its server-reflexive address.
    pub public_address: Option<SocketAddr>,
    /// Which family it came from.
    pub family: &'static str,
}

/// Read a `stunmap nat --json` report.
pub fn read_report(bytes: &[u8]) -> Result<PeerClass, ExplainError> {
    if bytes.len() > MAX_REPORT {
        return Err(ExplainError::TooLarge);
    }
    let r: NatJson = serde_json::from_slice(bytes).map_err(|e| {
        let mut s = e.to_string();
        s.truncate(120);
        ExplainError::NotANatReport(s)
    })?;
    if r.schema != "stunmap.nat/1" {
        let mut s = r.schema;
        s.truncate(40);
        return Err(ExplainError::Schema(s));
    }
    let (fam, family) = match (r.ipv4, r.ipv6) {
        (Some(f), _) => (f, "ipv4"),
        (None, Some(f)) => (f, "ipv6"),
        (None, None) => return Err(ExplainError::NoFamily),
    };
    Ok(PeerClass {
        nat: fam.nat_type,
        public_address: fam.public_address,
        family,
    })
}

/// The offline prediction for A and B.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Peer A.
    pub a: PeerClass,
    /// Peer B.
    pub b: PeerClass,
    /// The model's answer and its reasoning (`agrees` is always `None`: nothing was
    /// measured).
    pub prediction: Prediction,
}

/// Predict the pair offline.
pub fn explain(a: PeerClass, b: PeerClass) -> Explanation {
    let model = pair_outcome(a.nat, b.nat);
    let mut reasons = vec![
        format!("{} is {}", Side::A, describe(a.nat)),
        format!("{} is {}", Side::B, describe(b.nat)),
    ];
    reasons.push(match model {
        PairOutcome::Direct => "the pair table (docs/nat.md, measured in the lab) predicts direct: at least one direction of checks gets in and its answer back".into(),
        PairOutcome::Relayed => "the pair table (docs/nat.md, measured in the lab) predicts relayed: in neither direction do the checks get through both NATs".into(),
        PairOutcome::Uncertain => "the pair table cannot decide: a class is only partly known".into(),
    });
    Explanation {
        a,
        b,
        prediction: Prediction {
            model: Some(model),
            agrees: None,
            reasons,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASQ: &str = r#"{"schema":"stunmap.nat/1","ipv4":{"nat_type":{"kind":"udp","mapping":"endpoint-independent","filtering":"address-and-port-dependent"},"public_address":"198.18.0.1:4000"},"ipv6":null}"#;
    const SYM: &str = r#"{"schema":"stunmap.nat/1","ipv4":{"nat_type":{"kind":"udp","mapping":"address-and-port-dependent","filtering":"address-and-port-dependent"},"public_address":null}}"#;
    const V6_ONLY: &str =
        r#"{"schema":"stunmap.nat/1","ipv6":{"nat_type":{"kind":"udp-blocked"}}}"#;

    #[test]
    fn predicts_from_two_reports() {
        let a = read_report(MASQ.as_bytes()).unwrap();
        let b = read_report(SYM.as_bytes()).unwrap();
        assert_eq!(a.nat, NatType::PORT_RESTRICTED_CONE);
        assert_eq!(a.public_address, Some("198.18.0.1:4000".parse().unwrap()));
        let e = explain(a.clone(), b);
        assert_eq!(e.prediction.model, Some(PairOutcome::Relayed));
        assert_eq!(e.prediction.agrees, None);
        assert_eq!(e.prediction.reasons.len(), 3);
        let e = explain(a.clone(), a);
        assert_eq!(e.prediction.model, Some(PairOutcome::Direct));
        let v6 = read_report(V6_ONLY.as_bytes()).unwrap();
        assert_eq!(v6.family, "ipv6");
        assert_eq!(v6.nat, NatType::UdpBlocked);
    }

    #[test]
    fn refuses_what_is_not_a_nat_report() {
        assert!(matches!(
            read_report(b"garbage"),
            Err(ExplainError::NotANatReport(_))
        ));
        assert!(matches!(
            read_report(br#"{"schema":"stunmap.check/1"}"#),
            Err(ExplainError::Schema(_))
        ));
        assert_eq!(
            read_report(br#"{"schema":"stunmap.nat/1"}"#),
            Err(ExplainError::NoFamily)
        );
        assert_eq!(
            read_report(&vec![b' '; MAX_REPORT + 1]),
            Err(ExplainError::TooLarge)
        );
        assert!(
            read_report(br#"{"schema":"stunmap.nat/1","ipv4":{"nat_type":{"kind":"warp"}}}"#)
                .is_err()
        );
    }
}
