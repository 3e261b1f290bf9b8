//! Peer pairs: whether two hosts get a direct path.
//!
//! [`pair_outcome`] models ICE (RFC 8445) hole punching between two NATs described by their
//! RFC 4787 mapping (§4.1) and filtering (§5) behaviours; see its docs for the rules.

use std::fmt;

use super::behaviour::{Filtering, Mapping, NatType};

/// Whether two peers get a direct path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairOutcome {
    /// ICE connectivity checks succeed in at least one direction.
    Direct,
    /// No direction works: the pair goes through the relay.
    Relayed,
    /// Depends on behaviour that was not measured.
    Uncertain,
}

impl fmt::Display for PairOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PairOutcome::Direct => "direct",
            PairOutcome::Relayed => "relayed",
            PairOutcome::Uncertain => "uncertain",
        })
    }
}

/// Whether `me` and `peer` can punch a direct UDP path, following ICE (RFC 8445) over NATs
/// described by RFC 4787.
///
/// The model: each side knows the other's server-reflexive address (its mapping toward the
/// STUN server, RFC 8445 §5.1.1.2) and both send connectivity checks to it, retransmitting, so
/// each side's outbound checks have opened its own filter by the time the other's arrive
/// (RFC 8445 §7.2.5.4; RFC 4787 §4.1 on why endpoint-independent mapping makes this work). A
/// check from X to Y succeeds when both
/// 1. Y's NAT lets X's check in through the mapping Y's server-reflexive address names:
///    always with EIF; with ADF only if Y is EIM (only then did Y's own checks leave through
///    that mapping); with APDF only if Y is EIM *and* X is EIM (X's check must come from the
///    very address Y sent to);
/// 2. X's NAT lets Y's answer in: with EIF or ADF always (X sent to Y's IP from that mapping;
///    the NAT is assumed to use one external IP, RFC 4787 §4.1 REQ-2 "paired" pooling); with
///    APDF only if Y is EIM (the answer must come from the address X sent to).
///
/// The pair is direct if either direction succeeds; UDP blocked on either side means relay.
/// Unknown behaviour is expanded into every class it could be: the outcome is `Uncertain`
/// when the possibilities disagree. Port prediction (guessing the next APDM port) is not
/// modelled: NetBird's ICE does not rely on it.
pub fn pair_outcome(me: NatType, peer: NatType) -> PairOutcome {
    let (
        NatType::Udp {
            mapping: ma,
            filtering: fa,
        },
        NatType::Udp {
            mapping: mb,
            filtering: fb,
        },
    ) = (me, peer)
    else {
        return PairOutcome::Relayed;
    };
    let (mut direct, mut relayed) = (false, false);
    for &a in ma.possible() {
        for &b in fa.possible() {
            for &c in mb.possible() {
                for &d in fb.possible() {
                    if punches((a, b), (c, d)) {
                        direct = true;
                    } else {
                        relayed = true;
                    }
                }
            }
        }
    }
    match (direct, relayed) {
        (true, false) => PairOutcome::Direct,
        (false, true) => PairOutcome::Relayed,
        _ => PairOutcome::Uncertain,
    }
}

fn punches(x: (Mapping, Filtering), y: (Mapping, Filtering)) -> bool {
    check_succeeds(x, y) || check_succeeds(y, x)
}

/// X sends a check to Y's server-reflexive address and gets the answer (rules 1 and 2 above).
/// Only called with definite classes.
fn check_succeeds(x: (Mapping, Filtering), y: (Mapping, Filtering)) -> bool {
    let x_eim = x.0 == Mapping::EndpointIndependent;
    let y_eim = y.0 == Mapping::EndpointIndependent;
    let check_gets_in = match y.1 {
        Filtering::AddressDependent => y_eim,
        Filtering::AddressAndPortDependent => y_eim && x_eim,
        Filtering::EndpointIndependent | Filtering::Unknown => true,
    };
    let answer_gets_back = match x.1 {
        Filtering::AddressAndPortDependent => y_eim,
        Filtering::EndpointIndependent | Filtering::AddressDependent | Filtering::Unknown => true,
    };
    check_gets_in && answer_gets_back
}

/// A row of the peer-pair table.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerRow {
    /// The peer's type.
    pub peer: NatType,
    /// Its usual name.
    pub label: String,
    /// Direct or relayed.
    pub outcome: PairOutcome,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_as_words() {
        let words: Vec<String> = [
            PairOutcome::Direct,
            PairOutcome::Relayed,
            PairOutcome::Uncertain,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(words, ["direct", "relayed", "uncertain"]);
    }

    #[test]
    fn pair_table_every_row() {
        use PairOutcome::{Direct as D, Relayed as R};
        let t = [
            NatType::OPEN,
            NatType::RESTRICTED_CONE,
            NatType::PORT_RESTRICTED_CONE,
            NatType::ADDRESS_DEPENDENT,
            NatType::SYMMETRIC,
            NatType::UdpBlocked,
        ];
        // rows: me; columns: peer (same order as `t`)
        let expected = [
            [D, D, D, D, D, R], // open / full cone: everyone with UDP reaches it
            [D, D, D, D, D, R], // restricted cone: lets a symmetric peer's new port in
            [D, D, D, R, R, R], // port-restricted: only with EIM peers
            [D, D, R, R, R, R], // ADM: needs an EIM peer that filters by address at most
            [D, D, R, R, R, R], // symmetric: same
            [R, R, R, R, R, R], // UDP blocked: always relay
        ];
        for (i, me) in t.iter().enumerate() {
            for (j, peer) in t.iter().enumerate() {
                assert_eq!(
                    pair_outcome(*me, *peer),
                    expected[i][j],
                    "me {me}, peer {peer}"
                );
                assert_eq!(
                    pair_outcome(*me, *peer),
                    pair_outcome(*peer, *me),
                    "symmetric"
                );
            }
        }
        assert_eq!(NatType::TABLE.map(|(t, _)| t), t);
    }

    #[test]
    fn pair_with_unknowns_is_uncertain_only_when_it_matters() {
        let eim_unknown = NatType::udp(Mapping::EndpointIndependent, Filtering::Unknown);
        // Against an EIM peer every filtering works.
        assert_eq!(
            pair_outcome(eim_unknown, NatType::PORT_RESTRICTED_CONE),
            PairOutcome::Direct
        );
        // Against a symmetric peer it depends on the filtering.
        assert_eq!(
            pair_outcome(eim_unknown, NatType::SYMMETRIC),
            PairOutcome::Uncertain
        );
        let varies = NatType::udp(
            Mapping::VariesByDestination,
            Filtering::AddressAndPortDependent,
        );
        assert_eq!(
            pair_outcome(varies, NatType::SYMMETRIC),
            PairOutcome::Relayed
        );
        let unknown = NatType::udp(Mapping::Unknown, Filtering::Unknown);
        assert_eq!(pair_outcome(unknown, NatType::OPEN), PairOutcome::Direct);
        assert_eq!(
            pair_outcome(unknown, NatType::SYMMETRIC),
            PairOutcome::Uncertain
        );
    }

    #[test]
    fn apdm_with_permissive_filtering_still_punches_to_an_address_filtering_peer() {
        // Rule 1 with EIF on one side, rule 2 with ADF on the other: the model is not a lookup
        // table of the common cases.
        let a = NatType::udp(
            Mapping::AddressAndPortDependent,
            Filtering::EndpointIndependent,
        );
        let b = NatType::udp(
            Mapping::AddressAndPortDependent,
            Filtering::AddressDependent,
        );
        assert_eq!(pair_outcome(a, b), PairOutcome::Direct);
    }
}
