//! Candidates between the ICE agent and the rendezvous messages (RFC 8445 §5.1).

use super::*;

pub(super) fn to_wire(c: &Candidate) -> Option<WireCandidate> {
    let kind = match c.kind() {
        IceKind::Host => CandidateKind::Host,
        IceKind::ServerReflexive => CandidateKind::Srflx,
        IceKind::Relayed => CandidateKind::Relay,
        IceKind::PeerReflexive => return None,
    };
    // The agent computes the foundation; it is the first field of the SDP form
    // ("candidate:<foundation> 1 udp ...", RFC 8839 §5.1).
    let sdp = c.to_sdp_string();
    let foundation = sdp
        .strip_prefix("candidate:")
        .and_then(|s| s.split(' ').next())
        .filter(|f| !f.is_empty() && f.len() <= 32)
        .unwrap_or("1")
        .to_owned();
    Some(WireCandidate {
        kind,
        address: c.addr(),
        priority: c.prio(),
        foundation,
    })
}

pub(super) fn from_wire(c: &WireCandidate) -> Candidate {
    let kind = match c.kind {
        CandidateKind::Host => IceKind::Host,
        CandidateKind::Srflx => IceKind::ServerReflexive,
        CandidateKind::Relay => IceKind::Relayed,
        CandidateKind::Prflx => IceKind::PeerReflexive,
    };
    Candidate::from_parts(
        c.foundation.clone(),
        1,
        Protocol::Udp,
        c.priority,
        c.address,
        kind,
        None,
        None,
        None,
    )
}
