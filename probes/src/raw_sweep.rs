//! The raw SYN sweep's pure parts: the SYNs it sends, which answers belong to them, and what
//! the answers' IP headers say about who sent them. `engine::syn` owns the sockets and
//! threads and calls these.
//!
//! Answers are matched without per-port state: every SYN's sequence number is a keyed hash
//! of its port ([`seq_for`]), so a SYN-ACK or RST must acknowledge `seq + 1` (RFC 9293
//! §3.10.7.3) and an ICMP error must quote the same sequence number (RFC 792 quotes the first
//! 8 bytes of the TCP header).
//!
//! A reset injected by a middlebox usually arrives with another TTL than the target's own
//! packets: the target's SYN-ACKs and RSTs leave with one initial TTL and cross the same
//! hops, so a RST whose TTL no SYN-ACK shows came from elsewhere ([`judge_resets`]). The IP
//! identification is kept with every answer for the report.

use std::fmt;
use std::net::Ipv4Addr;

use crate::sweep::{TcpPortResult, TcpState};
use crate::wire::ip::{ICMP_PORT_UNREACHABLE, IcmpUnreachableRepr, TcpFlags, TcpSegmentRepr};

/// What the raw sweep found (`engine::syn::syn_scan`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RawReport {
    /// Per-port results (no STUN check in raw mode); a report that moved them elsewhere
    /// leaves this empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<TcpPortResult>,
    /// Every answer with its IP header fields.
    pub answers: Vec<RawAnswer>,
    /// TTLs of SYN-ACKs, distinct, ascending.
    pub syn_ack_ttls: Vec<u8>,
    /// TTLs of RSTs, distinct, ascending.
    pub rst_ttls: Vec<u8>,
    /// Ports whose RST came with a TTL no SYN-ACK had: likely injected on the path.
    pub injected_suspects: Vec<u16>,
    /// Senders of the ICMP errors that answered SYNs, distinct, ascending: the target itself,
    /// or a router or firewall on the path.
    pub icmp_sources: Vec<Ipv4Addr>,
    /// Sentences for the report.
    pub notes: Vec<String>,
    /// Stopped by a signal or the deadline (the unanswered ports are not probed).
    pub interrupted: bool,
}

/// One answer to a SYN of the sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RawAnswer {
    /// Target port.
    pub port: u16,
    /// SYN-ACK (open) or RST (refused).
    pub syn_ack: bool,
    /// The code of an ICMP destination unreachable (RFC 792) that answered instead of the
    /// target: 3 port unreachable counts as refused, the others (network or host unreachable,
    /// administratively prohibited, …) as unreachable. `syn_ack` is false then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp: Option<u8>,
    /// IP TTL of the answer.
    pub ttl: u8,
    /// IP identification field of the answer.
    pub ip_id: u16,
}

impl RawAnswer {
    /// The port state the answer means.
    pub fn state(&self) -> TcpState {
        match (self.syn_ack, self.icmp) {
            (true, _) => TcpState::Open,
            (false, None | Some(ICMP_PORT_UNREACHABLE)) => TcpState::Refused,
            (false, Some(_)) => TcpState::Unreachable,
        }
    }

    /// A TCP reset (not a SYN-ACK, not an ICMP error).
    pub fn is_reset(&self) -> bool {
        !self.syn_ack && self.icmp.is_none()
    }
}

/// A keyed sequence number per port, so answers can be matched without per-port state.
pub fn seq_for(key: u32, port: u16) -> u32 {
    let mut x = u64::from(key) << 16 | u64::from(port);
    x = (x ^ (x >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x = (x ^ (x >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    (x ^ (x >> 33)) as u32
}

/// One sweep's identity: from `src:sport` to `target`, sequence numbers keyed by `key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynSweep {
    /// Our address.
    pub src: Ipv4Addr,
    /// The swept host.
    pub target: Ipv4Addr,
    /// The one source port of every SYN.
    pub sport: u16,
    /// Keys [`seq_for`].
    pub key: u32,
}

impl SynSweep {
    /// The SYN to `port`.
    pub fn syn(&self, port: u16) -> TcpSegmentRepr {
        TcpSegmentRepr::syn(
            self.src,
            self.target,
            self.sport,
            port,
            seq_for(self.key, port),
        )
    }

    /// A SYN-ACK or RST from the target to our port that acknowledges one of our SYNs.
    pub fn match_tcp(&self, seg: &TcpSegmentRepr) -> Option<RawAnswer> {
        if seg.src != self.target || seg.dport != self.sport || !seg.flags.has(TcpFlags::ACK) {
            return None;
        }
        if seg.ack != seq_for(self.key, seg.sport).wrapping_add(1) {
            return None;
        }
        let syn_ack = seg.flags.is_syn_ack();
        (syn_ack || seg.flags.is_rst()).then_some(RawAnswer {
            port: seg.sport,
            syn_ack,
            icmp: None,
            ttl: seg.ttl,
            ip_id: seg.ip_id,
        })
    }

    /// An ICMP destination unreachable (from the target or any router) quoting one of our
    /// SYNs.
    pub fn match_icmp(&self, e: &IcmpUnreachableRepr) -> Option<RawAnswer> {
        let q = &e.quoted;
        if q.dst != self.target || q.sport != self.sport || q.seq != seq_for(self.key, q.dport) {
            return None;
        }
        Some(RawAnswer {
            port: q.dport,
            syn_ack: false,
            icmp: Some(e.code),
            ttl: e.ttl,
            ip_id: e.ip_id,
        })
    }
}

/// What the resets' TTLs say, against the SYN-ACKs'.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResetJudgement {
    /// TTLs of SYN-ACKs, distinct, ascending.
    pub syn_ack_ttls: Vec<u8>,
    /// TTLs of RSTs, distinct, ascending.
    pub rst_ttls: Vec<u8>,
    /// Ports whose RST came with a TTL no SYN-ACK had: likely injected on the path.
    pub injected_suspects: Vec<u16>,
    /// The finding, if any.
    pub finding: Option<ResetFinding>,
}

/// A finding about who sends the resets.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResetFinding {
    /// Some resets have a TTL no SYN-ACK has.
    Injected {
        /// How many resets.
        count: usize,
        /// The resets' TTLs.
        rst_ttls: Vec<u8>,
        /// The SYN-ACKs' TTLs.
        syn_ack_ttls: Vec<u8>,
    },
    /// No SYN-ACK to compare with, but the resets carry several TTLs.
    SeveralSenders {
        /// The resets' TTLs.
        rst_ttls: Vec<u8>,
    },
}

impl fmt::Display for ResetFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResetFinding::Injected {
                count,
                rst_ttls,
                syn_ack_ttls,
            } => write!(
                f,
                "{count} resets arrived with TTL {rst_ttls:?} while the target's SYN-ACKs have \
                 TTL {syn_ack_ttls:?}: resets are likely injected by a device on the path, not \
                 sent by the target"
            ),
            ResetFinding::SeveralSenders { rst_ttls } => write!(
                f,
                "resets arrived with several TTLs {rst_ttls:?}: more than one device answers for \
                 the target"
            ),
        }
    }
}

/// Compare the TTLs of the SYN-ACKs and RSTs among `answers` (ICMP errors take no part).
pub fn judge_resets(answers: &[RawAnswer]) -> ResetJudgement {
    let mut syn: Vec<u8> = answers
        .iter()
        .filter(|a| a.syn_ack)
        .map(|a| a.ttl)
        .collect();
    let mut rst: Vec<u8> = answers
        .iter()
        .filter(|a| a.is_reset())
        .map(|a| a.ttl)
        .collect();
    syn.sort_unstable();
    syn.dedup();
    rst.sort_unstable();
    rst.dedup();
    let injected_suspects: Vec<u16> = if syn.is_empty() {
        Vec::new()
    } else {
        answers
            .iter()
            .filter(|a| a.is_reset() && !syn.contains(&a.ttl))
            .map(|a| a.port)
            .collect()
    };
    let finding = if !injected_suspects.is_empty() {
        Some(ResetFinding::Injected {
            count: injected_suspects.len(),
            rst_ttls: rst.clone(),
            syn_ack_ttls: syn.clone(),
        })
    } else if rst.len() > 1 {
        Some(ResetFinding::SeveralSenders {
            rst_ttls: rst.clone(),
        })
    } else {
        None
    };
    ResetJudgement {
        syn_ack_ttls: syn,
        rst_ttls: rst,
        injected_suspects,
        finding,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip::QuotedTcp;

    fn answer(port: u16, syn_ack: bool, icmp: Option<u8>, ttl: u8) -> RawAnswer {
        RawAnswer {
            port,
            syn_ack,
            icmp,
            ttl,
            ip_id: 0,
        }
    }

    #[test]
    fn reset_with_foreign_ttl_is_flagged() {
        let j = judge_resets(&[
            answer(443, true, None, 60),
            answer(444, false, None, 60),
            answer(8000, false, None, 63),
            // An ICMP error from a router is no reset: not in the TTL comparison.
            answer(9000, false, Some(13), 61),
        ]);
        assert_eq!(j.injected_suspects, vec![8000]);
        assert_eq!(j.syn_ack_ttls, vec![60]);
        assert_eq!(j.rst_ttls, vec![60, 63]);
        let note = j.finding.unwrap().to_string();
        assert!(
            note.starts_with("1 resets arrived with TTL [60, 63]"),
            "{note}"
        );
        assert!(note.contains("injected"));
    }

    #[test]
    fn without_syn_acks_several_reset_ttls_are_noted_and_one_is_not() {
        let j = judge_resets(&[answer(1, false, None, 60), answer(2, false, None, 52)]);
        assert!(j.injected_suspects.is_empty());
        assert_eq!(
            j.finding,
            Some(ResetFinding::SeveralSenders {
                rst_ttls: vec![52, 60]
            })
        );
        assert_eq!(judge_resets(&[answer(1, false, None, 60)]).finding, None);
        assert_eq!(judge_resets(&[]), ResetJudgement::default());
    }

    fn sweep() -> SynSweep {
        SynSweep {
            src: Ipv4Addr::new(192, 0, 2, 1),
            target: Ipv4Addr::new(198, 51, 100, 7),
            sport: 40000,
            key: 0x5eed,
        }
    }

    #[test]
    fn only_answers_that_acknowledge_our_syn_match() {
        let s = sweep();
        let syn = s.syn(443);
        let mut reply = TcpSegmentRepr::syn(s.target, s.src, 443, s.sport, 1);
        reply.flags = TcpFlags(TcpFlags::RST | TcpFlags::ACK);
        reply.ack = syn.seq.wrapping_add(1);
        reply.ttl = 64;
        let a = s.match_tcp(&reply).unwrap();
        assert_eq!(
            (a.port, a.syn_ack, a.state()),
            (443, false, TcpState::Refused)
        );
        reply.flags = TcpFlags(TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!(s.match_tcp(&reply).unwrap().state(), TcpState::Open);
        // Another ack number, another port of ours, another sender, no ACK bit.
        for bad in [
            TcpSegmentRepr { ack: 7, ..reply },
            TcpSegmentRepr {
                dport: 40001,
                ..reply
            },
            TcpSegmentRepr {
                src: Ipv4Addr::new(203, 0, 113, 9),
                ..reply
            },
            TcpSegmentRepr {
                flags: TcpFlags(TcpFlags::RST),
                ..reply
            },
        ] {
            assert_eq!(s.match_tcp(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn icmp_unreachable_quoting_our_syn_is_an_answer() {
        let s = sweep();
        let router = Ipv4Addr::new(198, 51, 100, 1);
        let error = |syn: &TcpSegmentRepr, code: u8| {
            let mut b = [0u8; IcmpUnreachableRepr::LEN];
            let repr = IcmpUnreachableRepr {
                from: router,
                to: s.src,
                ttl: 61,
                ip_id: 0x1234,
                code,
                quoted: QuotedTcp::parse(&QuotedTcp::of(syn)).unwrap(),
            };
            repr.emit(&QuotedTcp::of(syn), &mut b);
            IcmpUnreachableRepr::parse(&b).unwrap()
        };
        let a = s.match_icmp(&error(&s.syn(443), 13)).unwrap();
        assert_eq!(a.port, 443);
        assert_eq!(a.icmp, Some(13));
        assert_eq!((a.ttl, a.ip_id, a.syn_ack), (61, 0x1234, false));
        assert_eq!(a.state(), TcpState::Unreachable);
        assert_eq!(
            s.match_icmp(&error(&s.syn(80), ICMP_PORT_UNREACHABLE))
                .unwrap()
                .state(),
            TcpState::Refused
        );
        // A quote of someone else's SYN: another source port, another target, a wrong
        // sequence number.
        let ours = s.syn(443);
        for other in [
            TcpSegmentRepr {
                sport: 40001,
                ..ours
            },
            TcpSegmentRepr {
                dst: router,
                ..ours
            },
            TcpSegmentRepr { seq: 7, ..ours },
        ] {
            assert_eq!(s.match_icmp(&error(&other, 13)), None);
        }
    }
}
