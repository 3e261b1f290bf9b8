//! The TURN relay audit: does a TURN server let its users reach addresses behind it?
//!
//! A TURN server relays to whatever peer a client names in XOR-PEER-ADDRESS. One that grants
//! permissions toward its own loopback, the private network it sits in or a cloud metadata
//! service is an open door into that network for anyone holding credentials (and NetBird
//! hands TURN credentials to every peer). [`AuditProbe`] asks, and only asks:
//!
//! 1. an unauthenticated Binding and an unauthenticated Allocate: a TURN server should answer
//!    the Allocate with 401 and REALM/NONCE (RFC 8489 §9.2.4); a success means an open relay;
//! 2. with credentials, one Allocate of the server's default family (RFC 8656 §7; IPv4, §7.2
//!    step 7);
//! 3. one CreatePermission (RFC 8656 §10) per candidate peer in [`candidates`] — loopback,
//!    the unspecified address, private, shared (CGNAT), link-local and cloud-metadata
//!    addresses, multicast, the server's own relayed address, and the IPv6 encodings of IPv4
//!    addresses that bypassed real deny lists (coturn CVE-2020-26262: `0.0.0.0`, `::`, `::1`;
//!    CVE-2026-27624: IPv4-mapped `::ffff:127.0.0.1`, `::ffff:0.0.0.0`) — recording granted,
//!    refused (403 Forbidden, 443 Peer Address Family Mismatch, …) or no answer;
//! 4. ChannelBind (RFC 8656 §12.1) for a few of them, because servers check the two requests
//!    in different code paths;
//! 5. Refresh with LIFETIME 0 (RFC 8656 §8), always, also when cancelled;
//! 6. then a second allocation with REQUESTED-ADDRESS-FAMILY IPv6 (RFC 8656 §7.1, §18.6), one
//!    CreatePermission toward it per IPv6 candidate (and its own relayed address), ChannelBind
//!    for `::ffff:127.0.0.1`, and its release. Toward an IPv4 allocation a server answers IPv6
//!    peers with 443 (RFC 8656 §19), so only this allocation puts the IPv6 forms to the test.
//!    A 440 Address Family not Supported (§7.2 step 7, §7.4) means the server has no IPv6
//!    relay address: those candidates are then reported untestable with that reason. The
//!    second allocation is made when the first was granted and released cleanly, or refused
//!    with 440 (an IPv6-only relay).
//!
//! Every request says which allocation it went to ([`PeerResult::relay_family`]); a grant
//! counts the same toward either.
//!
//! It never sends a Send indication or ChannelData: a permission is a promise of the server,
//! and nothing reaches the candidate addresses. The verdict per category, with its severity and
//! the coturn setting that closes it, is in [`AuditReport::findings`].
//!
//! # The second allocation's 5-tuple
//!
//! RFC 8656 lets a client allocate again on a 5-tuple once its allocation is deleted (a
//! Refresh with LIFETIME 0 deletes it at once, §8.2). coturn 4.6.1 does not: it drops a
//! released allocation about a second later, answers an Allocate on the same 5-tuple before
//! that with 437 Allocation Mismatch (§7.2 step 2), and over TCP then closes the connection.
//! §7.4 tells a client that gets 437 to pick another client transport address, so the IPv6
//! allocation is sent from a second private UDP socket (`LocalSocket::Private(n + 1)` beside
//! the session's `Private(n)`): no waiting on a server's clean-up timer. A 437 there (a stale
//! 5-tuple) is recorded as the IPv6 allocation's answer and not retried.
//!
//! Over TCP and TLS a probe has one connection, and a second 5-tuple means a second
//! connection, which only the caller can open. So the full audit there marks the IPv6
//! candidates untestable, and the caller runs a second probe with [`AuditConfig::ipv6_only`]
//! over a new connection: that probe makes only the IPv6 allocation (RFC 8656 §7.1, §18.6) on
//! its one transport, asks the IPv6 candidates and the ChannelBind toward it exactly as above,
//! and releases it (Refresh LIFETIME 0, §8) also on errors and when cancelled; everything else
//! in its report stays not tried. [`AuditReport::adopt_ipv6`] puts its results in place of the
//! untestable entries and draws the findings again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::time::Instant;

use super::session::{
    Answer, Completion, Release, Request, SessionConfig, TurnSession, private_sockets_for,
};
use crate::machine::{Ignored, LocalSocket, PrivateSockets, Probe, Transmit};
use crate::stun::TransactionIdSource;
use crate::stun::view::StunView;
use crate::{Family, Transport};

/// The port put in XOR-PEER-ADDRESS (permissions ignore it, RFC 8656 §9; ChannelBind binds it).
/// 9 is "discard": nothing is ever sent there anyway.
pub const PEER_PORT: u16 = 9;

/// What a candidate peer address reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// The server's own loopback (127.0.0.0/8, ::1), including the unspecified address, which
    /// the kernel delivers to the local host (coturn CVE-2020-26262).
    Loopback,
    /// Cloud instance metadata (169.254.169.254, fd00:ec2::254): credentials of the host.
    CloudMetadata,
    /// RFC 1918 private IPv4 and RFC 4193 unique-local IPv6: the network behind the server.
    Private,
    /// RFC 6598 shared address space (100.64.0.0/10): carrier NAT, and NetBird's overlay.
    SharedCgnat,
    /// Link-local (169.254.0.0/16, fe80::/10).
    LinkLocal,
    /// Multicast (224.0.0.0/4, ff00::/8).
    Multicast,
    /// The server's own relayed address: relaying to itself (loops, amplification).
    OwnRelay,
}

/// How the candidate's address is written on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// The address in its own family.
    Plain,
    /// The unspecified address of its family (0.0.0.0, ::).
    Unspecified,
    /// An IPv4 address as IPv4-mapped IPv6 (::ffff:a.b.c.d, RFC 4291 §2.5.5.2).
    Ipv4Mapped,
    /// An IPv4 address as deprecated IPv4-compatible IPv6 (::a.b.c.d, RFC 4291 §2.5.5.1).
    Ipv4Compatible,
    /// An IPv4 address behind the NAT64 well-known prefix (64:ff9b::/96, RFC 6052).
    Nat64,
}

/// One peer address the audit asks for.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Candidate {
    /// The address put in XOR-PEER-ADDRESS.
    pub peer: SocketAddr,
    /// What it reaches if relayed.
    pub category: Category,
    /// How it is encoded.
    pub encoding: Encoding,
    /// A known server bug this form bypassed, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bypass: Option<&'static str>,
}

fn cand(
    ip: IpAddr,
    category: Category,
    encoding: Encoding,
    bypass: Option<&'static str>,
) -> Candidate {
    Candidate {
        peer: SocketAddr::new(ip, PEER_PORT),
        category,
        encoding,
        bypass,
    }
}

const CVE_2020_26262: &str = "CVE-2020-26262";
const CVE_2026_27624: &str = "CVE-2026-27624";

/// The fixed candidate list (the server's relayed address is added once known).
pub fn candidates() -> Vec<Candidate> {
    use Category::*;
    use Encoding::*;
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    let mapped = |a, b, c, d| IpAddr::V6(Ipv4Addr::new(a, b, c, d).to_ipv6_mapped());
    let compat = |a, b, c, d| IpAddr::V6(Ipv4Addr::new(a, b, c, d).to_ipv6_compatible());
    let v6 = |s: [u16; 8]| {
        IpAddr::V6(Ipv6Addr::new(
            s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
        ))
    };
    vec![
        cand(v4(127, 0, 0, 1), Loopback, Plain, None),
        cand(v4(127, 1, 2, 3), Loopback, Plain, None),
        cand(v4(0, 0, 0, 0), Loopback, Unspecified, Some(CVE_2020_26262)),
        cand(
            v6([0, 0, 0, 0, 0, 0, 0, 1]),
            Loopback,
            Plain,
            Some(CVE_2020_26262),
        ),
        cand(v6([0; 8]), Loopback, Unspecified, Some(CVE_2020_26262)),
        cand(
            mapped(127, 0, 0, 1),
            Loopback,
            Ipv4Mapped,
            Some(CVE_2026_27624),
        ),
        cand(
            mapped(0, 0, 0, 0),
            Loopback,
            Ipv4Mapped,
            Some(CVE_2026_27624),
        ),
        cand(compat(127, 0, 0, 1), Loopback, Ipv4Compatible, None),
        cand(
            v6([0x64, 0xff9b, 0, 0, 0, 0, 0x7f00, 1]),
            Loopback,
            Nat64,
            None,
        ),
        cand(v4(169, 254, 169, 254), CloudMetadata, Plain, None),
        cand(
            mapped(169, 254, 169, 254),
            CloudMetadata,
            Ipv4Mapped,
            Some(CVE_2026_27624),
        ),
        cand(
            v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]),
            CloudMetadata,
            Plain,
            None,
        ),
        cand(v4(10, 0, 0, 1), Private, Plain, None),
        cand(v4(172, 16, 0, 1), Private, Plain, None),
        cand(v4(192, 168, 0, 1), Private, Plain, None),
        cand(
            mapped(10, 0, 0, 1),
            Private,
            Ipv4Mapped,
            Some(CVE_2026_27624),
        ),
        cand(v6([0xfd00, 0, 0, 0, 0, 0, 0, 1]), Private, Plain, None),
        cand(v4(100, 64, 0, 1), SharedCgnat, Plain, None),
        cand(v4(169, 254, 0, 1), LinkLocal, Plain, None),
        cand(v6([0xfe80, 0, 0, 0, 0, 0, 0, 1]), LinkLocal, Plain, None),
        cand(v4(224, 0, 0, 1), Multicast, Plain, None),
        cand(v6([0xff02, 0, 0, 0, 0, 0, 0, 1]), Multicast, Plain, None),
    ]
}

/// Candidates also tried with ChannelBind on the first allocation (indices into
/// [`candidates`]): plain loopback, the IPv4-mapped loopback and the metadata address.
const CHANNEL_CANDIDATES: [usize; 3] = [0, 5, 9];

/// Candidates tried with ChannelBind on the IPv6 allocation: the IPv4-mapped loopback.
const IPV6_CHANNEL_CANDIDATES: [usize; 1] = [5];

/// Why the IPv6 candidates are not asked on the audit's TCP or TLS connection (see the module
/// docs): a caller that opens a second connection replaces these entries with
/// [`AuditReport::adopt_ipv6`].
const UNTESTABLE_OVER_STREAM: &str = "over TCP/TLS the IPv6 allocation needs a second \
    connection, which was not made";

/// What the server said to one request toward a candidate.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum PeerOutcome {
    /// A success response: the server would relay there.
    Granted,
    /// An error response (403 Forbidden is the usual refusal, RFC 8656 §10.2; 443 Peer
    /// Address Family Mismatch for the other family).
    Refused {
        /// The code.
        code: u16,
        /// The reason phrase.
        reason: String,
    },
    /// No answer in time.
    Timeout,
    /// Not asked (no allocation, or cancelled first).
    NotTried,
    /// Could not be asked: no allocation of the family it needs could be made (the server has
    /// no IPv6 relay address, …).
    Untestable {
        /// Why, in words; the answer to the Allocate itself is in the report.
        reason: String,
    },
}

impl PeerOutcome {
    fn from_completion(c: &Completion) -> Self {
        match &c.answer {
            Answer::Success(_) => PeerOutcome::Granted,
            Answer::Error { code, reason, .. } => PeerOutcome::Refused {
                code: *code,
                reason: reason.clone(),
            },
            Answer::Timeout => PeerOutcome::Timeout,
        }
    }
}

/// One candidate, the allocation it was asked toward, and the answer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PeerResult {
    /// The candidate.
    #[serde(flatten)]
    pub candidate: Candidate,
    /// The family of the allocation the request was made on: the first allocation's (IPv4,
    /// or whatever family the server gave it) or the IPv6 one's.
    pub relay_family: Family,
    /// The answer.
    pub outcome: PeerOutcome,
}

impl PeerResult {
    fn not_tried(candidate: Candidate, relay_family: Family) -> Self {
        Self {
            candidate,
            relay_family,
            outcome: PeerOutcome::NotTried,
        }
    }
}

/// The answer to the unauthenticated Allocate.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Unauthenticated {
    /// 401 with REALM and NONCE: what a TURN server should say.
    Challenge,
    /// An allocation without credentials: an open relay.
    Allocated,
    /// Another error response.
    Error {
        /// The code.
        code: u16,
        /// The reason phrase.
        reason: String,
        /// Whether REALM and NONCE came with it.
        challenge: bool,
    },
    /// No answer.
    Timeout,
    /// Cancelled before an answer.
    NotTried,
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Minor exposure.
    Low,
    /// Abuse possible, limited reach.
    Medium,
    /// The network behind the server is reachable.
    High,
    /// The server itself or its cloud credentials are reachable, or anyone may relay.
    Critical,
}

/// One conclusion, with what to change.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// The category of the granted peers (`None` for findings not about peers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    /// What was found.
    pub summary: String,
    /// The peers granted (text).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// The coturn configuration that closes it.
    pub fix: String,
}

/// What the audit found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditReport {
    /// The server.
    pub server: SocketAddr,
    /// The transport the audit ran over.
    pub transport: Transport,
    /// SOFTWARE, RFC 8489 §14.14, from the first response that carried it.
    pub software: Option<String>,
    /// REALM.
    pub realm: Option<String>,
    /// The unauthenticated Binding request was answered.
    pub binding_answered: bool,
    /// The answer to the unauthenticated Allocate.
    pub unauthenticated: Unauthenticated,
    /// The authenticated Allocate (`None` without credentials or after an open-relay
    /// allocation).
    pub allocate: Option<PeerOutcome>,
    /// XOR-RELAYED-ADDRESS of our (first) allocation.
    pub relayed: Option<SocketAddr>,
    /// The Allocate with REQUESTED-ADDRESS-FAMILY IPv6 (RFC 8656 §18.6), made after the first
    /// allocation was released (`None`: not tried). A refusal with 440 means the server has no
    /// IPv6 relay address.
    pub allocate_ipv6: Option<PeerOutcome>,
    /// XOR-RELAYED-ADDRESS of the IPv6 allocation.
    pub relayed_ipv6: Option<SocketAddr>,
    /// One CreatePermission per candidate toward the first allocation, then one per IPv6
    /// candidate toward the IPv6 allocation (see [`PeerResult::relay_family`]).
    pub permissions: Vec<PeerResult>,
    /// ChannelBind for a few candidates, on either allocation.
    pub channel_binds: Vec<PeerResult>,
    /// Conclusions, worst first.
    pub findings: Vec<Finding>,
    /// Whether our (first) allocation was given back.
    pub release: Release,
    /// Whether the IPv6 allocation was given back.
    pub release_ipv6: Release,
    /// Cancelled (Ctrl-C, deadline).
    pub cancelled: bool,
    /// `permissions[..ipv6_from.0]` and `channel_binds[..ipv6_from.1]` are the first
    /// allocation's requests, the rest the IPv6 allocation's.
    #[serde(skip)]
    ipv6_from: (usize, usize),
}

impl AuditReport {
    /// The worst severity among the findings.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// Whether neither allocation can be left on the server.
    pub fn release_is_clean(&self) -> bool {
        self.release.is_clean() && self.release_ipv6.is_clean()
    }

    /// The IPv6 allocation's requests: (permissions, channel binds).
    fn ipv6_requests_mut(&mut self) -> impl Iterator<Item = &mut PeerResult> {
        let (p, c) = self.ipv6_from;
        self.permissions
            .iter_mut()
            .skip(p)
            .chain(self.channel_binds.iter_mut().skip(c))
    }

    /// Take the IPv6 allocation from `ipv6`, the report of an audit run with
    /// [`AuditConfig::ipv6_only`] (over TCP/TLS, on a connection of its own): its Allocate,
    /// relayed address, release and requests replace this report's IPv6 part, and the
    /// findings are drawn again from the whole.
    pub fn adopt_ipv6(&mut self, ipv6: AuditReport) {
        let (p, c) = self.ipv6_from;
        let (p6, c6) = ipv6.ipv6_from;
        self.permissions.truncate(p);
        self.permissions
            .extend(ipv6.permissions.into_iter().skip(p6));
        self.channel_binds.truncate(c);
        self.channel_binds
            .extend(ipv6.channel_binds.into_iter().skip(c6));
        self.allocate_ipv6 = ipv6.allocate_ipv6;
        self.relayed_ipv6 = ipv6.relayed_ipv6;
        self.release_ipv6 = ipv6.release_ipv6;
        self.cancelled |= ipv6.cancelled;
        if self.software.is_none() {
            self.software = ipv6.software;
        }
        if self.realm.is_none() {
            self.realm = ipv6.realm;
        }
        self.findings = findings(self);
    }

    /// Say why the IPv6 allocation's requests could not be asked (for instance: its own
    /// TCP/TLS connection failed). Requests already answered keep their answer.
    pub fn ipv6_untestable(&mut self, reason: &str) {
        for x in self.ipv6_requests_mut() {
            if matches!(
                x.outcome,
                PeerOutcome::NotTried | PeerOutcome::Untestable { .. }
            ) {
                x.outcome = PeerOutcome::Untestable {
                    reason: reason.to_string(),
                };
            }
        }
    }

    /// Whether any request toward a candidate was granted.
    pub fn any_granted(&self) -> bool {
        self.permissions
            .iter()
            .chain(&self.channel_binds)
            .any(|p| p.outcome == PeerOutcome::Granted)
    }
}

/// How the audit runs.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// The session (credentials optional: without them only the unauthenticated checks run).
    /// Its `requested_family` is not used: the first allocation names no family, the second
    /// asks for IPv6 from the next private socket (over UDP).
    pub session: SessionConfig,
    /// Run only the IPv6 allocation (step 6 of the module docs) on the session's own socket or
    /// connection: no unauthenticated checks, no first allocation. This is how the IPv6
    /// candidates are asked over TCP/TLS, on a second connection; without credentials nothing
    /// is sent.
    pub ipv6_only: bool,
}

impl AuditConfig {
    /// The whole audit over `session`.
    pub fn new(session: SessionConfig) -> Self {
        Self {
            session,
            ipv6_only: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Binding,
    UnauthAllocate,
    /// The current stage's Allocate.
    Allocate,
    Permission(usize),
    Channel(usize),
    Releasing,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Unauth,
    Auth,
    Ipv6,
}

/// The two allocations, one after the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// The server's default family (no REQUESTED-ADDRESS-FAMILY).
    First,
    /// REQUESTED-ADDRESS-FAMILY IPv6, from its own socket.
    Ipv6,
}

/// The audit probe, see the module docs.
#[derive(Debug)]
pub struct AuditProbe {
    unauth: TurnSession,
    auth: Option<TurnSession>,
    /// The IPv6 allocation's session (`None` over TCP/TLS, unless `ipv6_only`).
    ipv6: Option<TurnSession>,
    active: Which,
    stage: Stage,
    phase: Phase,
    /// The current stage's allocation exists and its release is not finished.
    allocated: bool,
    /// The first stage ended so that the IPv6 stage has something to test (an allocation was
    /// made, or refused with 440).
    ipv6_wanted: bool,
    /// `permissions[..perm_split]` go to the first allocation, the rest to the IPv6 one.
    perm_split: usize,
    /// The same for `channel_binds`.
    chan_split: usize,
    report: AuditReport,
    output_taken: bool,
}

/// Why the IPv6 candidates could not be asked, from the IPv6 Allocate's answer.
fn untestable_reason(answer: &Answer) -> String {
    match answer {
        Answer::Error {
            code: 440, reason, ..
        } => format!("server has no IPv6 relay address (IPv6 Allocate: 440 {reason})"),
        Answer::Error { code, reason, .. } => {
            format!("the IPv6 allocation was refused ({code} {reason})")
        }
        Answer::Timeout => "the IPv6 Allocate got no answer".to_string(),
        Answer::Success(_) => "no IPv6 allocation".to_string(),
    }
}

impl AuditProbe {
    /// A probe; `ids` supplies its transaction ids.
    pub fn new(config: AuditConfig, mut ids: TransactionIdSource) -> Self {
        let mut first = config.session.clone();
        first.requested_family = None;
        let mut unauth_config = first.clone();
        unauth_config.credentials = None;
        let auth = first
            .credentials
            .is_some()
            .then(|| TurnSession::new(first.clone(), ids.fork()));
        let ipv6_session = |local, ids: &mut TransactionIdSource| {
            let mut c = first.clone();
            c.local = local;
            c.requested_family = Some(Family::Ipv6);
            TurnSession::new(c, ids.fork())
        };
        // The IPv6 allocation leaves from the next private socket (see the module docs), or,
        // when it is all this probe does, from the session's own.
        let ipv6 = match (config.ipv6_only, first.transport.is_stream(), first.local) {
            (true, _, local) if first.credentials.is_some() => Some(ipv6_session(local, &mut ids)),
            (true, _, _) => None,
            (false, false, LocalSocket::Private(n)) => n
                .checked_add(1)
                .map(|next| ipv6_session(LocalSocket::Private(next), &mut ids)),
            _ => None,
        };
        let mut unauth = TurnSession::new(unauth_config, ids);
        if !config.ipv6_only {
            unauth.start(Request::Binding);
        }
        let all = candidates();
        let mut permissions: Vec<PeerResult> = all
            .iter()
            .map(|c| PeerResult::not_tried(c.clone(), Family::Ipv4))
            .collect();
        let perm_split = permissions.len();
        permissions.extend(
            all.iter()
                .filter(|c| c.peer.is_ipv6())
                .map(|c| PeerResult::not_tried(c.clone(), Family::Ipv6)),
        );
        let mut channel_binds: Vec<PeerResult> = CHANNEL_CANDIDATES
            .iter()
            .filter_map(|&i| all.get(i))
            .map(|c| PeerResult::not_tried(c.clone(), Family::Ipv4))
            .collect();
        let chan_split = channel_binds.len();
        channel_binds.extend(
            IPV6_CHANNEL_CANDIDATES
                .iter()
                .filter_map(|&i| all.get(i))
                .map(|c| PeerResult::not_tried(c.clone(), Family::Ipv6)),
        );
        let mut probe = Self {
            unauth,
            auth,
            ipv6,
            active: Which::Unauth,
            stage: Stage::First,
            phase: Phase::Binding,
            allocated: false,
            ipv6_wanted: false,
            perm_split,
            chan_split,
            report: AuditReport {
                server: config.session.server,
                transport: config.session.transport,
                software: None,
                realm: None,
                binding_answered: false,
                unauthenticated: Unauthenticated::NotTried,
                allocate: None,
                relayed: None,
                allocate_ipv6: None,
                relayed_ipv6: None,
                permissions,
                channel_binds,
                findings: Vec::new(),
                release: Release::NotNeeded,
                release_ipv6: Release::NotNeeded,
                cancelled: false,
                ipv6_from: (perm_split, chan_split),
            },
            output_taken: false,
        };
        if config.ipv6_only {
            probe.stage = Stage::Ipv6;
            if probe.ipv6.is_some() {
                probe.active = Which::Ipv6;
                probe.start(Phase::Allocate, Request::Allocate);
            } else {
                probe.finish();
            }
        }
        probe
    }

    fn session(&mut self) -> &mut TurnSession {
        match (self.active, self.auth.as_mut(), self.ipv6.as_mut()) {
            (Which::Auth, Some(s), _) | (Which::Ipv6, _, Some(s)) => s,
            _ => &mut self.unauth,
        }
    }

    fn session_ref(&self) -> &TurnSession {
        match (self.active, self.auth.as_ref(), self.ipv6.as_ref()) {
            (Which::Auth, Some(s), _) | (Which::Ipv6, _, Some(s)) => s,
            _ => &self.unauth,
        }
    }

    /// The permissions asked toward the current stage's allocation.
    fn permission_range(&self) -> Range<usize> {
        match self.stage {
            Stage::First => 0..self.perm_split,
            Stage::Ipv6 => self.perm_split..self.report.permissions.len(),
        }
    }

    /// The channel binds asked on the current stage's allocation.
    fn channel_range(&self) -> Range<usize> {
        match self.stage {
            Stage::First => 0..self.chan_split,
            Stage::Ipv6 => self.chan_split..self.report.channel_binds.len(),
        }
    }

    fn release_slot(&mut self) -> &mut Release {
        match self.stage {
            Stage::First => &mut self.report.release,
            Stage::Ipv6 => &mut self.report.release_ipv6,
        }
    }

    fn start(&mut self, phase: Phase, request: Request) {
        self.phase = phase;
        self.session().start(request);
    }

    fn finish(&mut self) {
        self.phase = Phase::Done;
        self.report.ipv6_from = (self.perm_split, self.chan_split);
        self.session().abandon();
        let allocated = self.allocated;
        let release = self.release_slot();
        if allocated && *release == Release::NotNeeded {
            // A release that never finished is a failure to report, not a success.
            *release = Release::Timeout;
        }
        self.report.findings = findings(&self.report);
    }

    fn release(&mut self) {
        if self.allocated {
            self.start(Phase::Releasing, Request::Refresh { lifetime: 0 });
        } else {
            self.stage_done();
        }
    }

    /// The current stage is over (its allocation, if any, released): go on to the IPv6
    /// allocation or finish. The IPv6 allocation is only made when the first one is known to
    /// be gone, so at most one of ours exists at a time.
    fn stage_done(&mut self) {
        let next = self.stage == Stage::First
            && self.ipv6_wanted
            && self.report.release.is_clean()
            && !self.report.cancelled;
        if !next {
            return self.finish();
        }
        self.stage = Stage::Ipv6;
        if self.ipv6.is_some() {
            self.active = Which::Ipv6;
            self.start(Phase::Allocate, Request::Allocate);
        } else {
            self.ipv6_untestable(UNTESTABLE_OVER_STREAM);
            self.finish();
        }
    }

    /// Mark the IPv6 stage's requests that were not asked as untestable.
    fn ipv6_untestable(&mut self, reason: &str) {
        self.report.ipv6_from = (self.perm_split, self.chan_split);
        for x in self.report.ipv6_requests_mut() {
            if x.outcome == PeerOutcome::NotTried {
                x.outcome = PeerOutcome::Untestable {
                    reason: reason.to_string(),
                };
            }
        }
    }

    /// Ask for the permission of candidate `i` (or the next step when `i` is past the
    /// current stage's candidates).
    fn permission(&mut self, i: usize) {
        if self.report.cancelled {
            return self.release();
        }
        let peer = self
            .report
            .permissions
            .get(i)
            .filter(|_| self.permission_range().contains(&i))
            .map(|p| p.candidate.peer);
        match peer {
            Some(peer) => self.start(Phase::Permission(i), Request::CreatePermission { peer }),
            None => self.channel(self.channel_range().start),
        }
    }

    fn channel(&mut self, i: usize) {
        if self.report.cancelled {
            return self.release();
        }
        let range = self.channel_range();
        let peer = self
            .report
            .channel_binds
            .get(i)
            .filter(|_| range.contains(&i))
            .map(|p| p.candidate.peer);
        // Channel numbers count from 0x4000 on each allocation (RFC 8656 §12: bindings are
        // per allocation).
        match (peer, u16::try_from(i.saturating_sub(range.start))) {
            (Some(peer), Ok(n)) => {
                let channel = super::channel::CHANNEL_MIN.saturating_add(n);
                self.start(Phase::Channel(i), Request::ChannelBind { channel, peer });
            }
            _ => self.release(),
        }
    }

    fn allocated_with(&mut self, relayed: Option<SocketAddr>) {
        self.allocated = true;
        // The family the server actually gave (the first allocation is IPv4 unless the server
        // ignores RFC 8656 §7.2 step 7): what each request of this stage is asked toward.
        let asked = match self.stage {
            Stage::First => Family::Ipv4,
            Stage::Ipv6 => Family::Ipv6,
        };
        let family = relayed.map_or(asked, |r| Family::of_socket(&r));
        let (perms, chans) = (self.permission_range(), self.channel_range());
        let r = &mut self.report;
        for p in r
            .permissions
            .iter_mut()
            .skip(perms.start)
            .take(perms.len())
            .chain(
                r.channel_binds
                    .iter_mut()
                    .skip(chans.start)
                    .take(chans.len()),
            )
        {
            p.relay_family = family;
        }
        match self.stage {
            Stage::First => {
                self.ipv6_wanted = true;
                self.report.relayed = relayed;
            }
            Stage::Ipv6 => self.report.relayed_ipv6 = relayed,
        }
        if let Some(r) = relayed {
            let own = PeerResult::not_tried(
                Candidate {
                    peer: r,
                    category: Category::OwnRelay,
                    encoding: Encoding::Plain,
                    bypass: None,
                },
                family,
            );
            // The last request of this stage's group. INVARIANT: a stage's range ends at or
            // before the end of the list, so `insert` cannot panic.
            self.report.permissions.insert(perms.end, own);
            if self.stage == Stage::First {
                self.perm_split = self.perm_split.saturating_add(1);
            }
        }
        self.permission(perms.start);
    }

    fn on_completion(&mut self, c: Completion) {
        match self.phase {
            Phase::Binding => {
                self.report.binding_answered = !matches!(c.answer, Answer::Timeout);
                if self.report.cancelled {
                    return self.finish();
                }
                self.start(Phase::UnauthAllocate, Request::Allocate);
            }
            Phase::UnauthAllocate => {
                self.report.unauthenticated = match &c.answer {
                    Answer::Success(_) => Unauthenticated::Allocated,
                    Answer::Error {
                        code: 401,
                        challenge: true,
                        ..
                    } => Unauthenticated::Challenge,
                    Answer::Error {
                        code,
                        reason,
                        challenge,
                    } => Unauthenticated::Error {
                        code: *code,
                        reason: reason.clone(),
                        challenge: *challenge,
                    },
                    Answer::Timeout => Unauthenticated::Timeout,
                };
                match (&c.answer, self.auth.is_some()) {
                    (Answer::Success(s), _) => {
                        // An open relay: audit it with the session that allocated.
                        self.allocated_with(s.relayed);
                    }
                    (Answer::Error { .. }, true) if !self.report.cancelled => {
                        self.active = Which::Auth;
                        self.start(Phase::Allocate, Request::Allocate);
                    }
                    _ => self.finish(),
                }
            }
            Phase::Allocate => {
                let outcome = PeerOutcome::from_completion(&c);
                match self.stage {
                    Stage::First => self.report.allocate = Some(outcome),
                    Stage::Ipv6 => self.report.allocate_ipv6 = Some(outcome),
                }
                match (&c.answer, self.stage) {
                    (Answer::Success(s), _) => self.allocated_with(s.relayed),
                    (Answer::Error { code: 440, .. }, Stage::First) => {
                        // No relay address of the default family: an IPv6-only relay still
                        // has its IPv6 candidates to answer for.
                        self.ipv6_wanted = true;
                        self.stage_done();
                    }
                    (answer, Stage::Ipv6) => {
                        self.ipv6_untestable(&untestable_reason(answer));
                        self.finish();
                    }
                    (_, Stage::First) => self.finish(),
                }
            }
            Phase::Permission(i) => {
                if let Some(p) = self.report.permissions.get_mut(i) {
                    p.outcome = PeerOutcome::from_completion(&c);
                }
                self.permission(i.saturating_add(1));
            }
            Phase::Channel(i) => {
                if let Some(p) = self.report.channel_binds.get_mut(i) {
                    p.outcome = PeerOutcome::from_completion(&c);
                }
                self.channel(i.saturating_add(1));
            }
            Phase::Releasing => {
                *self.release_slot() = Release::from_completion(&c);
                self.allocated = false;
                self.stage_done();
            }
            Phase::Done => {}
        }
        self.sync();
    }

    fn sync(&mut self) {
        let s = self.session_ref();
        let software = s.software().or(self.unauth.software()).map(str::to_string);
        let realm = s.realm().or(self.unauth.realm()).map(str::to_string);
        self.report.software = software;
        self.report.realm = realm;
        if self.phase == Phase::Done {
            self.report.findings = findings(&self.report);
        }
    }
}

impl Probe for AuditProbe {
    type Output = AuditReport;

    fn handle_input(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), Ignored> {
        let view = StunView::parse(data).map_err(Ignored::Malformed)?;
        if self.phase == Phase::Done {
            return Err(Ignored::Late);
        }
        if !self.session_ref().owns(&view.transaction_id()) {
            return Err(Ignored::UnknownTransaction);
        }
        if let Some(c) = self.session().handle_response(now, from, &view)? {
            self.on_completion(c);
        }
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Done {
            return;
        }
        if let Some(c) = self.session().handle_timeout(now) {
            self.on_completion(c);
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        if self.phase == Phase::Done {
            return None;
        }
        self.session().poll_transmit(now, buf)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Done {
            return None;
        }
        self.session_ref().poll_timeout()
    }

    fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    fn take_output(&mut self) -> Option<AuditReport> {
        if self.phase != Phase::Done || self.output_taken {
            return None;
        }
        self.output_taken = true;
        Some(self.report.clone())
    }

    /// Over UDP the session's socket and, for the IPv6 allocation, the next one.
    fn private_sockets(&self) -> Option<PrivateSockets> {
        match &self.ipv6 {
            Some(s) => private_sockets_for(s.config()),
            None => private_sockets_for(self.unauth.config()),
        }
    }

    /// Cancellation: no new candidate is asked and no new allocation made; an allocation that
    /// exists (the first or the IPv6 one) is released at once; an Allocate in flight is waited
    /// for (the server may have made it) and released.
    fn cancel(&mut self, _now: Instant) -> bool {
        self.report.cancelled = true;
        match self.phase {
            Phase::Binding => {
                self.finish();
                false
            }
            Phase::UnauthAllocate | Phase::Allocate => true,
            Phase::Permission(_) | Phase::Channel(_) => {
                self.release();
                true
            }
            Phase::Releasing => true,
            Phase::Done => false,
        }
    }
}

fn fix_for(category: Category, peers: &[&Candidate]) -> String {
    let bypass = peers
        .iter()
        .any(|c| c.bypass.is_some() || c.encoding != Encoding::Plain);
    let upgrade = if bypass {
        " The granted IPv6 forms of IPv4 addresses (IPv4-mapped, unspecified) bypass deny lists in \
         coturn before 4.9.0 (CVE-2026-27624, after CVE-2020-26262): upgrade coturn. Until then, \
         denied-peer-ip=::ffff:0.0.0.0-::ffff:255.255.255.255 refuses the whole IPv4-mapped range \
         (and denied-peer-ip=::-::ffff:ffff the unspecified, loopback and IPv4-compatible forms)."
    } else {
        ""
    };
    let base = match category {
        Category::Loopback => {
            "Remove allow-loopback-peers (coturn refuses loopback peers by default since 4.5.2) and add \
             denied-peer-ip=0.0.0.0-0.255.255.255, denied-peer-ip=127.0.0.0-127.255.255.255, \
             denied-peer-ip=::1, denied-peer-ip=::."
        }
        Category::CloudMetadata => {
            "denied-peer-ip=169.254.0.0-169.254.255.255 and denied-peer-ip=fd00:ec2::254 (or the whole \
             fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff range)."
        }
        Category::Private => {
            "denied-peer-ip=10.0.0.0-10.255.255.255, denied-peer-ip=172.16.0.0-172.31.255.255, \
             denied-peer-ip=192.168.0.0-192.168.255.255 and \
             denied-peer-ip=fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff; allowed-peer-ip for the \
             few internal hosts that must be reachable."
        }
        Category::SharedCgnat => "denied-peer-ip=100.64.0.0-100.127.255.255.",
        Category::LinkLocal => {
            "denied-peer-ip=169.254.0.0-169.254.255.255 and \
             denied-peer-ip=fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff."
        }
        Category::Multicast => "no-multicast-peers.",
        Category::OwnRelay => {
            "denied-peer-ip=<the server's own public and relay addresses> (relaying to itself)."
        }
    };
    format!("{base}{upgrade}")
}

fn severity_of(category: Category) -> Severity {
    match category {
        Category::Loopback | Category::CloudMetadata => Severity::Critical,
        Category::Private | Category::SharedCgnat | Category::LinkLocal => Severity::High,
        Category::OwnRelay | Category::Multicast => Severity::Medium,
    }
}

fn describe(category: Category) -> &'static str {
    match category {
        Category::Loopback => {
            "relays to the server's own loopback (local services, admin interfaces)"
        }
        Category::CloudMetadata => "relays to the cloud metadata service (instance credentials)",
        Category::Private => "relays into private networks behind the server",
        Category::SharedCgnat => "relays into the shared (CGNAT / overlay) range 100.64.0.0/10",
        Category::LinkLocal => "relays to link-local addresses",
        Category::Multicast => "relays to multicast groups",
        Category::OwnRelay => "relays to its own relayed address (loops, amplification)",
    }
}

/// The conclusions of a report, worst first.
pub fn findings(r: &AuditReport) -> Vec<Finding> {
    let mut out = Vec::new();
    if r.unauthenticated == Unauthenticated::Allocated {
        out.push(Finding {
            severity: Severity::Critical,
            category: None,
            summary: "allocates without credentials: an open relay for anyone".into(),
            peers: Vec::new(),
            fix: "lt-cred-mech (or use-auth-secret with static-auth-secret) and a realm.".into(),
        });
    }
    if let Unauthenticated::Error { code, .. } = &r.unauthenticated {
        out.push(Finding {
            severity: Severity::Low,
            category: None,
            summary: format!(
                "answers an unauthenticated Allocate with {code} instead of 401 with REALM and NONCE"
            ),
            peers: Vec::new(),
            fix: "check the authentication settings (lt-cred-mech / use-auth-secret).".into(),
        });
    }
    let mut cats: Vec<Category> = Vec::new();
    for p in r.permissions.iter().chain(&r.channel_binds) {
        if p.outcome == PeerOutcome::Granted && !cats.contains(&p.candidate.category) {
            cats.push(p.candidate.category);
        }
    }
    for cat in cats {
        let granted: Vec<&Candidate> = r
            .permissions
            .iter()
            .chain(&r.channel_binds)
            .filter(|p| p.outcome == PeerOutcome::Granted && p.candidate.category == cat)
            .map(|p| &p.candidate)
            .collect();
        let mut peers: Vec<String> = Vec::new();
        for c in &granted {
            let t = c.peer.ip().to_string();
            if !peers.contains(&t) {
                peers.push(t);
            }
        }
        out.push(Finding {
            severity: severity_of(cat),
            category: Some(cat),
            summary: describe(cat).to_string(),
            peers,
            fix: fix_for(cat, &granted),
        });
    }
    if let Some(s) = &r.software {
        out.push(Finding {
            severity: Severity::Info,
            category: None,
            summary: format!("announces its software and version: {s}"),
            peers: Vec::new(),
            fix: "no-software-attribute hides it (coturn).".into(),
        });
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::{Class, MessageType, MessageWriter, Method, attr};
    use crate::turn::testkit::{FakeServer, creds, server, t0};
    use std::time::Duration;

    const V4: LocalSocket = LocalSocket::Private(0);
    const V6: LocalSocket = LocalSocket::Private(1);

    fn config(with_creds: bool) -> AuditConfig {
        let mut session = SessionConfig::new(server(), Transport::Udp, V4);
        if with_creds {
            session.credentials = Some(creds());
        }
        AuditConfig::new(session)
    }

    fn v6_relayed() -> SocketAddr {
        "[2001:db8::1]:50000".parse().unwrap()
    }

    /// Drive `probe` against `answer` (told which local socket the request left from) on
    /// simulated time until done, calling `cancel` on the probe when `cancel_when` says so
    /// for a request just sent; returns every request sent, with its socket.
    fn drive(
        probe: &mut AuditProbe,
        mut answer: impl FnMut(LocalSocket, &[u8]) -> Option<Vec<u8>>,
        mut cancel_when: impl FnMut(LocalSocket, &StunView<'_>) -> bool,
    ) -> Vec<(LocalSocket, Vec<u8>)> {
        let mut now = t0();
        let mut sent = Vec::new();
        for _ in 0..1000 {
            if probe.is_done() {
                break;
            }
            let mut buf = Vec::new();
            if let Some(t) = probe.poll_transmit(now, &mut buf) {
                assert_eq!(t.destination, server());
                sent.push((t.local, buf.clone()));
                if cancel_when(t.local, &StunView::parse(&buf).unwrap()) {
                    assert!(probe.cancel(now) || probe.is_done());
                }
                if let Some(reply) = answer(t.local, &buf) {
                    let _ = probe.handle_input(now, server(), &reply);
                }
                continue;
            }
            match probe.poll_timeout() {
                Some(t) => {
                    now = t.max(now);
                    probe.handle_timeout(now);
                }
                None => break,
            }
            now += Duration::from_millis(1);
        }
        assert!(probe.is_done(), "probe did not finish");
        sent
    }

    fn never(_: LocalSocket, _: &StunView<'_>) -> bool {
        false
    }

    /// Cancel once `n` requests have been sent.
    fn after(n: usize) -> impl FnMut(LocalSocket, &StunView<'_>) -> bool {
        let mut count = 0;
        move |_, _| {
            count += 1;
            count == n
        }
    }

    /// What the fake server does with an Allocate that asks for IPv6.
    #[derive(Clone, Copy, Debug)]
    enum Ipv6Relay {
        /// An IPv6 relayed address.
        Grant,
        /// This error code.
        Refuse(u16),
    }

    /// A scripted dual-stack TURN server: one [`FakeServer`] per client 5-tuple (local socket),
    /// 443 for a peer of the other family than the allocation (RFC 8656 §19), 403 for peers
    /// `deny` says no to, and an IPv6 allocation as `ipv6` says.
    struct Lab {
        v4: FakeServer,
        v6: FakeServer,
        deny: Box<dyn Fn(IpAddr) -> bool>,
        /// (socket, Allocate carried REQUESTED-ADDRESS-FAMILY IPv6) per Allocate.
        allocates: Vec<(LocalSocket, bool)>,
    }

    impl Lab {
        fn new(deny: impl Fn(IpAddr) -> bool + 'static, ipv6: Ipv6Relay) -> Self {
            let mut v6 = FakeServer::new();
            v6.relayed = v6_relayed();
            if let Ipv6Relay::Refuse(code) = ipv6 {
                v6.fail_allocate = Some(code);
            }
            Self {
                v4: FakeServer::new(),
                v6,
                deny: Box::new(deny),
                allocates: Vec::new(),
            }
        }

        fn answer(&mut self, local: LocalSocket, req: &[u8]) -> Option<Vec<u8>> {
            let v = StunView::parse(req).unwrap();
            let m = v.message_type().method;
            let family = v
                .attributes()
                .find(|(k, _)| *k == attr::REQUESTED_ADDRESS_FAMILY)
                .map(|(_, val)| val.to_vec());
            let fake = match local {
                V4 => &mut self.v4,
                V6 => &mut self.v6,
                other => panic!("request from an unexpected socket {other:?}"),
            };
            if m == Method::ALLOCATE {
                self.allocates
                    .push((local, family.as_deref() == Some(&[2, 0, 0, 0][..])));
            }
            if (m == Method::CREATE_PERMISSION || m == Method::CHANNEL_BIND)
                && v.has_message_integrity()
            {
                let raw = v
                    .attributes()
                    .find(|(k, _)| *k == attr::XOR_PEER_ADDRESS)
                    .unwrap()
                    .1;
                let peer = attr::decode_xor_address(raw, &v.transaction_id()).unwrap();
                let refusal = if peer.is_ipv6() != fake.relayed.is_ipv6() {
                    Some((443, "Peer Address Family Mismatch"))
                } else if (self.deny)(peer.ip()) {
                    Some((403, "Forbidden IP"))
                } else {
                    None
                };
                if let Some((code, reason)) = refusal {
                    let mut out = Vec::new();
                    let mut w = MessageWriter::new(
                        &mut out,
                        MessageType::new(Class::ErrorResponse, m),
                        &v.transaction_id(),
                    );
                    w.error_code(code, reason);
                    w.fingerprint();
                    return Some(out);
                }
            }
            fake.answer(req)
        }
    }

    /// coturn 4.6.1's default policy: loopback refused, but not in its IPv4-mapped form.
    fn coturn_default(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v) => v.is_loopback() || v.is_unspecified(),
            IpAddr::V6(v) => v.is_loopback() || v.is_unspecified(),
        }
    }

    fn methods(sent: &[(LocalSocket, Vec<u8>)], on: LocalSocket) -> Vec<Method> {
        sent.iter()
            .filter(|(l, _)| *l == on)
            .map(|(_, b)| StunView::parse(b).unwrap().message_type().method)
            .collect()
    }

    fn all_methods(sent: &[(LocalSocket, Vec<u8>)]) -> Vec<Method> {
        sent.iter()
            .map(|(_, b)| StunView::parse(b).unwrap().message_type().method)
            .collect()
    }

    fn count(m: &[Method], which: Method) -> usize {
        m.iter().filter(|x| **x == which).count()
    }

    fn ipv6_candidates() -> usize {
        candidates().iter().filter(|c| c.peer.is_ipv6()).count()
    }

    fn result<'a>(list: &'a [PeerResult], peer: &str, family: Family) -> &'a PeerResult {
        let peer: IpAddr = peer.parse().unwrap();
        list.iter()
            .find(|p| p.candidate.peer.ip() == peer && p.relay_family == family)
            .unwrap_or_else(|| panic!("{peer} toward {family:?} missing"))
    }

    #[test]
    fn channel_candidates_are_the_ones_documented() {
        let c = candidates();
        let ips: Vec<String> = CHANNEL_CANDIDATES
            .iter()
            .map(|&i| c[i].peer.ip().to_string())
            .collect();
        assert_eq!(ips, ["127.0.0.1", "::ffff:127.0.0.1", "169.254.169.254"]);
        let ips: Vec<String> = IPV6_CHANNEL_CANDIDATES
            .iter()
            .map(|&i| c[i].peer.ip().to_string())
            .collect();
        assert_eq!(ips, ["::ffff:127.0.0.1"]);
    }

    #[test]
    fn a_server_that_denies_everything_has_no_peer_findings_and_is_released() {
        let mut p = AuditProbe::new(config(true), TransactionIdSource::new([3; 16]));
        let mut lab = Lab::new(|_| true, Ipv6Relay::Grant);
        let sent = drive(&mut p, |l, b| lab.answer(l, b), never);
        let r = p.take_output().unwrap();
        assert!(r.binding_answered);
        assert_eq!(r.unauthenticated, Unauthenticated::Challenge);
        assert_eq!(r.allocate, Some(PeerOutcome::Granted));
        assert_eq!(r.allocate_ipv6, Some(PeerOutcome::Granted));
        assert!(!r.any_granted(), "{r:#?}");
        assert_eq!(r.release, Release::Released);
        assert_eq!(r.release_ipv6, Release::Released);
        assert!(r.release_is_clean());
        assert_eq!(r.worst(), Some(Severity::Info)); // SOFTWARE "fake"
        // Every candidate asked toward the first allocation, plus its relayed address; every
        // IPv6 candidate toward the IPv6 one, plus its relayed address.
        let m4 = methods(&sent, V4);
        let m6 = methods(&sent, V6);
        assert_eq!(
            count(&m4, Method::CREATE_PERMISSION),
            candidates().len() + 1
        );
        assert_eq!(count(&m6, Method::CREATE_PERMISSION), ipv6_candidates() + 1);
        assert_eq!(count(&m4, Method::CHANNEL_BIND), CHANNEL_CANDIDATES.len());
        assert_eq!(
            count(&m6, Method::CHANNEL_BIND),
            IPV6_CHANNEL_CANDIDATES.len()
        );
        for p in &r.permissions {
            let other_family = p.candidate.peer.is_ipv6() != (p.relay_family == Family::Ipv6);
            let code = if other_family { 443 } else { 403 };
            assert!(
                matches!(p.outcome, PeerOutcome::Refused { code: c, .. } if c == code),
                "{p:?}"
            );
        }
        assert_eq!(m4.last(), Some(&Method::REFRESH));
        assert_eq!(m6.last(), Some(&Method::REFRESH));
        assert!(!lab.v4.allocated && !lab.v6.allocated);
        // Never any data toward a candidate.
        assert!(!all_methods(&sent).contains(&Method::SEND));
    }

    #[test]
    fn the_ipv6_allocation_follows_the_release_and_tests_the_mapped_forms() {
        // coturn 4.6.1's defaults: plain loopback refused, the IPv4-mapped form granted
        // (CVE-2026-27624) — but only an IPv6 allocation can show it.
        let mut p = AuditProbe::new(config(true), TransactionIdSource::new([9; 16]));
        let mut lab = Lab::new(coturn_default, Ipv6Relay::Grant);
        let sent = drive(&mut p, |l, b| lab.answer(l, b), never);
        let r = p.take_output().unwrap();
        // Order: the first allocation is released before anything leaves the second socket.
        let first_v6 = sent.iter().position(|(l, _)| *l == V6).unwrap();
        let last_v4 = sent.iter().rposition(|(l, _)| *l == V4).unwrap();
        assert!(last_v4 < first_v6);
        assert_eq!(
            StunView::parse(&sent[last_v4].1)
                .unwrap()
                .message_type()
                .method,
            Method::REFRESH
        );
        // REQUESTED-ADDRESS-FAMILY IPv6 on the second socket only (401 round, then signed).
        assert_eq!(
            lab.allocates,
            vec![
                (V4, false),
                (V4, false),
                (V4, false),
                (V6, true),
                (V6, true)
            ]
        );
        assert_eq!(r.allocate_ipv6, Some(PeerOutcome::Granted));
        assert_eq!(r.relayed, Some(lab.v4.relayed));
        assert_eq!(r.relayed_ipv6, Some(v6_relayed()));
        let mapped = "::ffff:127.0.0.1";
        assert!(matches!(
            result(&r.permissions, mapped, Family::Ipv4).outcome,
            PeerOutcome::Refused { code: 443, .. }
        ));
        assert_eq!(
            result(&r.permissions, mapped, Family::Ipv6).outcome,
            PeerOutcome::Granted
        );
        assert_eq!(
            result(&r.channel_binds, mapped, Family::Ipv6).outcome,
            PeerOutcome::Granted
        );
        assert!(matches!(
            result(&r.permissions, "::1", Family::Ipv6).outcome,
            PeerOutcome::Refused { code: 403, .. }
        ));
        // The IPv6 relayed address is a candidate of its own allocation.
        let own: Vec<_> = r
            .permissions
            .iter()
            .filter(|p| p.candidate.category == Category::OwnRelay)
            .map(|p| (p.candidate.peer, p.relay_family))
            .collect();
        assert_eq!(
            own,
            vec![(lab.v4.relayed, Family::Ipv4), (v6_relayed(), Family::Ipv6)]
        );
        // A grant toward the IPv6 allocation is a finding like any other.
        let f = r
            .findings
            .iter()
            .find(|f| f.category == Some(Category::Loopback))
            .unwrap();
        assert_eq!(f.severity, Severity::Critical);
        assert_eq!(r.worst(), Some(Severity::Critical));
        assert!(f.peers.iter().any(|s| s == mapped), "{f:?}");
        assert!(f.fix.contains("CVE-2026-27624"), "{f:?}");
        assert_eq!(r.release, Release::Released);
        assert_eq!(r.release_ipv6, Release::Released);
        assert!(!lab.v4.allocated && !lab.v6.allocated);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["relayed_ipv6"], "[2001:db8::1]:50000");
        assert_eq!(json["release_ipv6"]["kind"], "released");
        assert!(
            json["permissions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["peer"] == "[::ffff:127.0.0.1]:9"
                    && p["relay_family"] == "ipv6"
                    && p["outcome"]["kind"] == "granted")
        );
    }

    #[test]
    fn a_440_leaves_the_ipv6_candidates_untestable_with_the_reason() {
        let mut p = AuditProbe::new(config(true), TransactionIdSource::new([10; 16]));
        let mut lab = Lab::new(coturn_default, Ipv6Relay::Refuse(440));
        let sent = drive(&mut p, |l, b| lab.answer(l, b), never);
        let r = p.take_output().unwrap();
        assert_eq!(
            r.allocate_ipv6,
            Some(PeerOutcome::Refused {
                code: 440,
                reason: "err".into()
            })
        );
        assert_eq!(r.relayed_ipv6, None);
        assert_eq!(r.release_ipv6, Release::NotNeeded);
        assert_eq!(r.release, Release::Released);
        // Nothing but the Allocate (and its 401 round) on the second socket.
        assert_eq!(methods(&sent, V6), vec![Method::ALLOCATE, Method::ALLOCATE]);
        let v6: Vec<&PeerResult> = r
            .permissions
            .iter()
            .chain(&r.channel_binds)
            .filter(|p| p.relay_family == Family::Ipv6)
            .collect();
        assert_eq!(v6.len(), ipv6_candidates() + IPV6_CHANNEL_CANDIDATES.len());
        for p in v6 {
            match &p.outcome {
                PeerOutcome::Untestable { reason } => {
                    assert!(
                        reason.contains("server has no IPv6 relay address"),
                        "{reason}"
                    )
                }
                other => panic!("{other:?}"),
            }
        }
        // The first allocation's answers stand (its private and metadata grants included);
        // an untestable candidate is no finding.
        assert!(matches!(
            result(&r.permissions, "::ffff:127.0.0.1", Family::Ipv4).outcome,
            PeerOutcome::Refused { code: 443, .. }
        ));
        assert_eq!(
            result(&r.permissions, "10.0.0.1", Family::Ipv4).outcome,
            PeerOutcome::Granted
        );
        assert!(
            !r.findings
                .iter()
                .any(|f| f.category == Some(Category::Loopback)),
            "{:?}",
            r.findings
        );
        assert!(!lab.v4.allocated && !lab.v6.allocated);
    }

    #[test]
    fn a_437_on_the_ipv6_allocation_is_recorded_not_retried() {
        let mut p = AuditProbe::new(config(true), TransactionIdSource::new([11; 16]));
        let mut lab = Lab::new(coturn_default, Ipv6Relay::Refuse(437));
        let sent = drive(&mut p, |l, b| lab.answer(l, b), never);
        let r = p.take_output().unwrap();
        assert!(matches!(
            r.allocate_ipv6,
            Some(PeerOutcome::Refused { code: 437, .. })
        ));
        // One 401 round and one signed Allocate: no retry, no third socket.
        assert_eq!(methods(&sent, V6), vec![Method::ALLOCATE, Method::ALLOCATE]);
        assert!(sent.iter().all(|(l, _)| *l == V4 || *l == V6));
        assert_eq!(r.release_ipv6, Release::NotNeeded);
        assert!(r.release_is_clean());
        assert!(matches!(
            &result(&r.permissions, "::1", Family::Ipv6).outcome,
            PeerOutcome::Untestable { reason } if reason.contains("437")
        ));
    }

    #[test]
    fn cancel_while_the_ipv6_allocate_is_in_flight_still_releases_it() {
        let mut p = AuditProbe::new(config(true), TransactionIdSource::new([12; 16]));
        let mut lab = Lab::new(coturn_default, Ipv6Relay::Grant);
        // Cancel as the signed IPv6 Allocate leaves: the server makes the allocation anyway.
        let sent = drive(
            &mut p,
            |l, b| lab.answer(l, b),
            |l, v| {
                l == V6 && v.message_type().method == Method::ALLOCATE && v.has_message_integrity()
            },
        );
        let r = p.take_output().unwrap();
        assert!(r.cancelled);
        assert_eq!(r.allocate_ipv6, Some(PeerOutcome::Granted));
        assert_eq!(r.release_ipv6, Release::Released);
        assert_eq!(r.release, Release::Released);
        assert!(!lab.v6.allocated, "the IPv6 allocation was left behind");
        assert_eq!(
            methods(&sent, V6),
            vec![Method::ALLOCATE, Method::ALLOCATE, Method::REFRESH]
        );
        assert!(
            r.permissions
                .iter()
                .filter(|p| p.relay_family == Family::Ipv6)
                .all(|p| p.outcome == PeerOutcome::NotTried)
        );
    }

    #[test]
    fn cancel_among_the_ipv6_permissions_releases_the_ipv6_allocation() {
        let mut p = AuditProbe::new(config(true), TransactionIdSource::new([13; 16]));
        let mut lab = Lab::new(coturn_default, Ipv6Relay::Grant);
        let mut v6_perms = 0;
        let sent = drive(
            &mut p,
            |l, b| lab.answer(l, b),
            |l, v| {
                if l == V6 && v.message_type().method == Method::CREATE_PERMISSION {
                    v6_perms += 1;
                }
                v6_perms == 2
            },
        );
        let r = p.take_output().unwrap();
        assert!(r.cancelled);
        let m6 = methods(&sent, V6);
        assert_eq!(count(&m6, Method::CREATE_PERMISSION), 2);
        assert_eq!(count(&m6, Method::CHANNEL_BIND), 0);
        assert_eq!(m6.last(), Some(&Method::REFRESH));
        assert_eq!(r.release_ipv6, Release::Released);
        assert!(!lab.v4.allocated && !lab.v6.allocated);
    }

    #[test]
    fn a_lost_ipv6_release_is_reported_not_clean() {
        let mut p = AuditProbe::new(config(true), TransactionIdSource::new([14; 16]));
        let mut lab = Lab::new(coturn_default, Ipv6Relay::Grant);
        let sent = drive(
            &mut p,
            |l, b| {
                let refresh = StunView::parse(b).unwrap().message_type().method == Method::REFRESH;
                if l == V6 && refresh {
                    None
                } else {
                    lab.answer(l, b)
                }
            },
            never,
        );
        let r = p.take_output().unwrap();
        assert_eq!(r.release, Release::Released);
        assert_eq!(r.release_ipv6, Release::Timeout);
        assert!(!r.release_is_clean());
        assert!(
            count(&methods(&sent, V6), Method::REFRESH) > 1,
            "retransmitted"
        );
    }

    #[test]
    fn an_ipv6_only_relay_is_still_audited_for_its_ipv6_candidates() {
        // 440 to the default (IPv4) Allocate: no first allocation, but an IPv6 one.
        let mut p = AuditProbe::new(config(true), TransactionIdSource::new([15; 16]));
        let mut lab = Lab::new(coturn_default, Ipv6Relay::Grant);
        lab.v4.fail_allocate = Some(440);
        drive(&mut p, |l, b| lab.answer(l, b), never);
        let r = p.take_output().unwrap();
        assert!(matches!(
            r.allocate,
            Some(PeerOutcome::Refused { code: 440, .. })
        ));
        assert_eq!(r.release, Release::NotNeeded);
        assert_eq!(r.allocate_ipv6, Some(PeerOutcome::Granted));
        assert_eq!(r.release_ipv6, Release::Released);
        assert_eq!(
            result(&r.permissions, "::ffff:127.0.0.1", Family::Ipv6).outcome,
            PeerOutcome::Granted
        );
        assert_eq!(
            result(&r.permissions, "127.0.0.1", Family::Ipv4).outcome,
            PeerOutcome::NotTried
        );
    }

    #[test]
    fn a_refused_first_allocation_makes_no_second_one() {
        let mut p = AuditProbe::new(config(true), TransactionIdSource::new([16; 16]));
        let mut lab = Lab::new(coturn_default, Ipv6Relay::Grant);
        lab.v4.fail_allocate = Some(486);
        let sent = drive(&mut p, |l, b| lab.answer(l, b), never);
        let r = p.take_output().unwrap();
        assert_eq!(r.allocate_ipv6, None);
        assert!(methods(&sent, V6).is_empty());
    }

    #[test]
    fn over_tcp_the_ipv6_candidates_are_untestable_and_no_second_socket_is_asked_for() {
        let mut session = SessionConfig::new(server(), Transport::Tcp, LocalSocket::Default);
        session.credentials = Some(creds());
        let mut p = AuditProbe::new(
            AuditConfig::new(session),
            TransactionIdSource::new([17; 16]),
        );
        assert_eq!(p.private_sockets(), None);
        let mut fake = FakeServer::new();
        let sent = drive(&mut p, |_, b| fake.answer(b), never);
        let r = p.take_output().unwrap();
        assert!(sent.iter().all(|(l, _)| *l == LocalSocket::Default));
        assert_eq!(r.allocate_ipv6, None);
        assert_eq!(r.release, Release::Released);
        assert!(matches!(
            &result(&r.permissions, "::ffff:127.0.0.1", Family::Ipv6).outcome,
            PeerOutcome::Untestable { reason } if reason.contains("second connection")
        ));
    }

    /// The IPv6 allocation alone, over TCP (one connection, no private socket).
    fn ipv6_only_over_tcp() -> AuditProbe {
        let mut session = SessionConfig::new(server(), Transport::Tcp, LocalSocket::Default);
        session.credentials = Some(creds());
        let config = AuditConfig {
            session,
            ipv6_only: true,
        };
        AuditProbe::new(config, TransactionIdSource::new([19; 16]))
    }

    /// `lab` answering a probe that has one connection: everything must leave on it, and it
    /// plays the lab's IPv6 5-tuple.
    fn on_one_connection(lab: &mut Lab) -> impl FnMut(LocalSocket, &[u8]) -> Option<Vec<u8>> {
        move |l, b| {
            assert_eq!(l, LocalSocket::Default);
            lab.answer(V6, b)
        }
    }

    #[test]
    fn ipv6_only_over_tcp_allocates_ipv6_asks_the_ipv6_candidates_and_releases() {
        let mut p = ipv6_only_over_tcp();
        assert_eq!(p.private_sockets(), None);
        let mut lab = Lab::new(coturn_default, Ipv6Relay::Grant);
        let sent = drive(&mut p, on_one_connection(&mut lab), never);
        let r = p.take_output().unwrap();
        let m = all_methods(&sent);
        // No Binding, no unauthenticated or default-family Allocate: the 401 round and the
        // signed Allocate both ask for IPv6 (RFC 8656 §18.6).
        assert_eq!(m[..2], [Method::ALLOCATE, Method::ALLOCATE]);
        assert!(!m.contains(&Method::BINDING));
        assert_eq!(lab.allocates, vec![(V6, true), (V6, true)]);
        assert_eq!(count(&m, Method::CREATE_PERMISSION), ipv6_candidates() + 1);
        assert_eq!(
            count(&m, Method::CHANNEL_BIND),
            IPV6_CHANNEL_CANDIDATES.len()
        );
        assert_eq!(m.last(), Some(&Method::REFRESH));
        assert!(!m.contains(&Method::SEND));
        assert_eq!(r.unauthenticated, Unauthenticated::NotTried);
        assert!(!r.binding_answered);
        assert_eq!((r.allocate.clone(), r.relayed), (None, None));
        assert_eq!(r.release, Release::NotNeeded);
        assert_eq!(r.allocate_ipv6, Some(PeerOutcome::Granted));
        assert_eq!(r.relayed_ipv6, Some(v6_relayed()));
        assert_eq!(r.release_ipv6, Release::Released);
        assert!(r.release_is_clean());
        assert!(!lab.v6.allocated);
        assert_eq!(
            result(&r.permissions, "::ffff:127.0.0.1", Family::Ipv6).outcome,
            PeerOutcome::Granted
        );
        assert_eq!(
            result(&r.channel_binds, "::ffff:127.0.0.1", Family::Ipv6).outcome,
            PeerOutcome::Granted
        );
        assert!(matches!(
            result(&r.permissions, "::1", Family::Ipv6).outcome,
            PeerOutcome::Refused { code: 403, .. }
        ));
        assert!(matches!(
            result(&r.permissions, &v6_relayed().ip().to_string(), Family::Ipv6).outcome,
            PeerOutcome::Granted
        ));
        // The first allocation's part is left alone.
        assert!(
            r.permissions
                .iter()
                .chain(&r.channel_binds)
                .filter(|p| p.relay_family == Family::Ipv4)
                .all(|p| p.outcome == PeerOutcome::NotTried)
        );
        assert_eq!(r.worst(), Some(Severity::Critical));
    }

    #[test]
    fn ipv6_only_over_tcp_a_440_leaves_the_candidates_untestable() {
        let mut p = ipv6_only_over_tcp();
        let mut lab = Lab::new(coturn_default, Ipv6Relay::Refuse(440));
        let sent = drive(&mut p, on_one_connection(&mut lab), never);
        let r = p.take_output().unwrap();
        assert_eq!(all_methods(&sent), vec![Method::ALLOCATE, Method::ALLOCATE]);
        assert!(matches!(
            r.allocate_ipv6,
            Some(PeerOutcome::Refused { code: 440, .. })
        ));
        assert_eq!(r.release_ipv6, Release::NotNeeded);
        let v6: Vec<&PeerResult> = r
            .permissions
            .iter()
            .chain(&r.channel_binds)
            .filter(|p| p.relay_family == Family::Ipv6)
            .collect();
        assert_eq!(v6.len(), ipv6_candidates() + IPV6_CHANNEL_CANDIDATES.len());
        for p in v6 {
            assert!(
                matches!(&p.outcome, PeerOutcome::Untestable { reason }
                    if reason.contains("server has no IPv6 relay address")),
                "{p:?}"
            );
        }
        assert!(!r.any_granted());
    }

    #[test]
    fn ipv6_only_over_tcp_cancel_among_the_permissions_still_releases() {
        let mut p = ipv6_only_over_tcp();
        let mut lab = Lab::new(coturn_default, Ipv6Relay::Grant);
        let mut perms = 0;
        let sent = drive(&mut p, on_one_connection(&mut lab), |_, v| {
            if v.message_type().method == Method::CREATE_PERMISSION {
                perms += 1;
            }
            perms == 3
        });
        let r = p.take_output().unwrap();
        assert!(r.cancelled);
        let m = all_methods(&sent);
        assert_eq!(count(&m, Method::CREATE_PERMISSION), 3);
        assert_eq!(count(&m, Method::CHANNEL_BIND), 0);
        assert_eq!(m.last(), Some(&Method::REFRESH));
        assert_eq!(r.release_ipv6, Release::Released);
        assert!(!lab.v6.allocated, "the IPv6 allocation was left behind");
    }

    #[test]
    fn ipv6_only_over_tcp_cancel_during_the_allocate_still_releases() {
        let mut p = ipv6_only_over_tcp();
        let mut lab = Lab::new(coturn_default, Ipv6Relay::Grant);
        let sent = drive(&mut p, on_one_connection(&mut lab), |_, v| {
            v.message_type().method == Method::ALLOCATE && v.has_message_integrity()
        });
        let r = p.take_output().unwrap();
        assert!(r.cancelled);
        assert_eq!(
            all_methods(&sent),
            vec![Method::ALLOCATE, Method::ALLOCATE, Method::REFRESH]
        );
        assert_eq!(r.release_ipv6, Release::Released);
        assert!(!lab.v6.allocated);
    }

    #[test]
    fn ipv6_only_without_credentials_sends_nothing() {
        let session = SessionConfig::new(server(), Transport::Tcp, LocalSocket::Default);
        let config = AuditConfig {
            session,
            ipv6_only: true,
        };
        let mut p = AuditProbe::new(config, TransactionIdSource::new([20; 16]));
        assert!(p.is_done());
        assert_eq!(p.poll_transmit(t0(), &mut Vec::new()), None);
        let r = p.take_output().unwrap();
        assert_eq!(r.allocate_ipv6, None);
        assert!(r.release_is_clean());
    }

    #[test]
    fn a_tcp_audit_adopts_the_ipv6_allocation_of_a_second_connection() {
        let mut session = SessionConfig::new(server(), Transport::Tcp, LocalSocket::Default);
        session.credentials = Some(creds());
        let mut p = AuditProbe::new(
            AuditConfig::new(session),
            TransactionIdSource::new([21; 16]),
        );
        let mut lab = Lab::new(coturn_default, Ipv6Relay::Grant);
        drive(&mut p, |_, b| lab.answer(V4, b), never);
        let mut merged = p.take_output().unwrap();
        assert!(
            !merged
                .findings
                .iter()
                .any(|f| f.category == Some(Category::Loopback))
        );
        let mut p6 = ipv6_only_over_tcp();
        drive(&mut p6, on_one_connection(&mut lab), never);
        let ipv6 = p6.take_output().unwrap();
        let first_part: Vec<PeerResult> = merged
            .permissions
            .iter()
            .filter(|p| p.relay_family == Family::Ipv4)
            .cloned()
            .collect();
        merged.adopt_ipv6(ipv6);
        // The first allocation's answers stay, in front; the IPv6 ones follow, untestable no
        // more: the same shape as a UDP audit's report.
        assert_eq!(merged.permissions[..first_part.len()], first_part[..]);
        assert_eq!(
            merged.permissions.len(),
            candidates().len() + 1 + ipv6_candidates() + 1
        );
        assert_eq!(
            merged.channel_binds.len(),
            CHANNEL_CANDIDATES.len() + IPV6_CHANNEL_CANDIDATES.len()
        );
        assert!(
            merged
                .permissions
                .iter()
                .chain(&merged.channel_binds)
                .all(|p| !matches!(p.outcome, PeerOutcome::Untestable { .. })
                    && p.outcome != PeerOutcome::NotTried),
            "{merged:#?}"
        );
        assert_eq!(merged.unauthenticated, Unauthenticated::Challenge);
        assert_eq!(merged.allocate, Some(PeerOutcome::Granted));
        assert_eq!(merged.allocate_ipv6, Some(PeerOutcome::Granted));
        assert_eq!(merged.relayed_ipv6, Some(v6_relayed()));
        assert_eq!(merged.release, Release::Released);
        assert_eq!(merged.release_ipv6, Release::Released);
        // The findings are drawn from the merged report: the mapped loopback toward IPv6.
        let f = merged
            .findings
            .iter()
            .find(|f| f.category == Some(Category::Loopback))
            .unwrap();
        assert!(f.peers.iter().any(|s| s == "::ffff:127.0.0.1"), "{f:?}");
        assert_eq!(merged.findings, findings(&merged));
    }

    #[test]
    fn a_failed_second_connection_says_so_in_the_untestable_reason() {
        let mut session = SessionConfig::new(server(), Transport::Tcp, LocalSocket::Default);
        session.credentials = Some(creds());
        let mut p = AuditProbe::new(
            AuditConfig::new(session),
            TransactionIdSource::new([22; 16]),
        );
        let mut lab = Lab::new(coturn_default, Ipv6Relay::Grant);
        drive(&mut p, |_, b| lab.answer(V4, b), never);
        let mut r = p.take_output().unwrap();
        r.ipv6_untestable("second connection refused");
        let v6: Vec<&PeerResult> = r
            .permissions
            .iter()
            .chain(&r.channel_binds)
            .filter(|p| p.relay_family == Family::Ipv6)
            .collect();
        assert_eq!(v6.len(), ipv6_candidates() + IPV6_CHANNEL_CANDIDATES.len());
        for p in v6 {
            assert_eq!(
                p.outcome,
                PeerOutcome::Untestable {
                    reason: "second connection refused".into()
                }
            );
        }
        // The first allocation's requests (443 for the IPv6 candidates) are untouched.
        assert!(matches!(
            result(&r.permissions, "::1", Family::Ipv4).outcome,
            PeerOutcome::Refused { code: 443, .. }
        ));
    }

    #[test]
    fn over_udp_the_audit_asks_for_two_private_sockets() {
        let p = AuditProbe::new(config(true), TransactionIdSource::new([18; 16]));
        assert_eq!(
            p.private_sockets(),
            Some(PrivateSockets {
                count: 2,
                toward: server()
            })
        );
    }

    #[test]
    fn granted_loopback_and_mapped_forms_are_critical_with_the_upgrade_hint() {
        // Denies plain IPv4 loopback only: the mapped form slips through, as in CVE-2026-27624.
        let mut p = AuditProbe::new(config(true), TransactionIdSource::new([4; 16]));
        let mut lab = Lab::new(
            |ip| match ip {
                IpAddr::V4(v) => !v.is_private(),
                IpAddr::V6(_) => false,
            },
            Ipv6Relay::Grant,
        );
        drive(&mut p, |l, b| lab.answer(l, b), never);
        let r = p.take_output().unwrap();
        let f = &r.findings[0];
        assert_eq!(f.severity, Severity::Critical);
        assert!(f.peers.iter().any(|s| s == "::ffff:127.0.0.1"), "{f:?}");
        assert!(f.fix.contains("CVE-2026-27624"), "{f:?}");
        assert!(
            f.fix.contains("::ffff:0.0.0.0-::ffff:255.255.255.255"),
            "{f:?}"
        );
        let private = r
            .findings
            .iter()
            .find(|f| f.category == Some(Category::Private))
            .unwrap();
        assert_eq!(private.severity, Severity::High);
        assert!(private.peers.iter().any(|s| s == "10.0.0.1"));
        assert_eq!(r.release, Release::Released);
        assert_eq!(r.release_ipv6, Release::Released);
    }

    #[test]
    fn without_credentials_only_the_unauthenticated_checks_run() {
        let mut p = AuditProbe::new(config(false), TransactionIdSource::new([5; 16]));
        let mut fake = FakeServer::new();
        let sent = drive(&mut p, |_, b| fake.answer(b), never);
        let r = p.take_output().unwrap();
        assert_eq!(r.unauthenticated, Unauthenticated::Challenge);
        assert_eq!(r.allocate, None);
        assert_eq!(r.allocate_ipv6, None);
        assert_eq!(all_methods(&sent), vec![Method::BINDING, Method::ALLOCATE]);
        assert!(
            r.permissions
                .iter()
                .all(|p| p.outcome == PeerOutcome::NotTried)
        );
        assert_eq!(r.release, Release::NotNeeded);
        assert_eq!(r.release_ipv6, Release::NotNeeded);
    }

    #[test]
    fn cancel_mid_audit_stops_asking_and_releases() {
        let mut p = AuditProbe::new(config(true), TransactionIdSource::new([6; 16]));
        let mut lab = Lab::new(|_| false, Ipv6Relay::Grant);
        // Binding, unauth Allocate, Allocate (401), Allocate (auth), 2 permissions, cancel.
        let sent = drive(&mut p, |l, b| lab.answer(l, b), after(6));
        let r = p.take_output().unwrap();
        assert!(r.cancelled);
        assert_eq!(r.release, Release::Released);
        let m = all_methods(&sent);
        assert_eq!(m.last(), Some(&Method::REFRESH));
        assert!(count(&m, Method::CREATE_PERMISSION) <= 3);
        assert!(
            r.permissions
                .iter()
                .any(|p| p.outcome == PeerOutcome::NotTried)
        );
        // Cancelled before the IPv6 allocation: it is never made.
        assert!(methods(&sent, V6).is_empty());
        assert_eq!(r.allocate_ipv6, None);
        assert_eq!(r.release_ipv6, Release::NotNeeded);
    }

    #[test]
    fn a_silent_server_times_out_without_allocating() {
        let mut p = AuditProbe::new(config(true), TransactionIdSource::new([7; 16]));
        drive(&mut p, |_, _| None, never);
        let r = p.take_output().unwrap();
        assert!(!r.binding_answered);
        assert_eq!(r.unauthenticated, Unauthenticated::Timeout);
        assert_eq!(r.release, Release::NotNeeded);
        assert_eq!(r.allocate_ipv6, None);
    }

    #[test]
    fn an_open_relay_is_critical_and_still_released() {
        let mut p = AuditProbe::new(config(false), TransactionIdSource::new([8; 16]));
        let relayed: SocketAddr = "192.0.2.1:50000".parse().unwrap();
        let sent = drive(
            &mut p,
            |local, req| {
                let v = StunView::parse(req).unwrap();
                let ty = v.message_type();
                let mut out = Vec::new();
                let mut w = MessageWriter::new(
                    &mut out,
                    MessageType::new(Class::SuccessResponse, ty.method),
                    &v.transaction_id(),
                );
                if ty.method == Method::ALLOCATE {
                    let r = if local == V6 { v6_relayed() } else { relayed };
                    w.xor_address(attr::XOR_RELAYED_ADDRESS, &r);
                }
                w.fingerprint();
                Some(out)
            },
            never,
        );
        let r = p.take_output().unwrap();
        assert_eq!(r.unauthenticated, Unauthenticated::Allocated);
        assert_eq!(r.findings[0].severity, Severity::Critical);
        assert_eq!(r.release, Release::Released);
        assert_eq!(r.release_ipv6, Release::Released);
        assert_eq!(methods(&sent, V4).last(), Some(&Method::REFRESH));
        assert_eq!(methods(&sent, V6).last(), Some(&Method::REFRESH));
        let own: Vec<_> = r
            .permissions
            .iter()
            .filter(|p| p.candidate.category == Category::OwnRelay)
            .map(|p| (p.candidate.peer, p.relay_family))
            .collect();
        assert_eq!(
            own,
            vec![(relayed, Family::Ipv4), (v6_relayed(), Family::Ipv6)]
        );
    }
}
