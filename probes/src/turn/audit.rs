//! The TURN relay audit: does a TURN server let its users reach addresses behind it?
//!
//! A TURN server relays to whatever peer a client names in XOR-PEER-ADDRESS. One that grants
//! permissions toward its own loopback, the private network it sits in or a cloud metadata
//! service is an open door into that network for anyone holding credentials (and NetBird
//! hands TURN credentials to every peer). [`AuditProbe`] asks, and only asks:
//!
//! 1. an unauthenticated Binding and an unauthenticated Allocate: a TURN server should answer
//!    the Allocate with 401 and REALM/NONCE (RFC 8489 §9.2.4); a success means an open relay;
//! 2. with credentials, one Allocate (RFC 8656 §7);
//! 3. one CreatePermission (RFC 8656 §10) per candidate peer in [`candidates`] — loopback,
//!    the unspecified address, private, shared (CGNAT), link-local and cloud-metadata
//!    addresses, multicast, the server's own relayed address, and the IPv6 encodings of IPv4
//!    addresses that bypassed real deny lists (coturn CVE-2020-26262: `0.0.0.0`, `::`, `::1`;
//!    CVE-2026-27624: IPv4-mapped `::ffff:127.0.0.1`, `::ffff:0.0.0.0`) — recording granted,
//!    refused (403 Forbidden, 443 Peer Address Family Mismatch, …) or no answer;
//! 4. ChannelBind (RFC 8656 §12) for a few of them, because servers check the two requests in
//!    different code paths;
//! 5. Refresh with LIFETIME 0 (RFC 8656 §8), always, also when cancelled.
//!
//! It never sends a Send indication or ChannelData: a permission is a promise of the server,
//! and nothing reaches the candidate addresses. The verdict per category, with its severity and
//! the coturn setting that closes it, is in [`AuditReport::findings`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use super::TidSource;
use super::allocate::{
    Answer, Completion, Release, Request, SessionConfig, TurnSession, private_sockets_for,
};
use super::uri::TurnTransport;
use crate::machine::{Ignored, PrivateSockets, Probe, Transmit};
use crate::stun::view::StunView;

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

/// Candidates also tried with ChannelBind (indices into [`candidates`]): plain loopback, the
/// IPv4-mapped loopback and the metadata address.
const CHANNEL_CANDIDATES: [usize; 3] = [0, 5, 9];

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

/// One candidate and the answer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PeerResult {
    /// The candidate.
    #[serde(flatten)]
    pub candidate: Candidate,
    /// The answer.
    pub outcome: PeerOutcome,
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
    pub transport: TurnTransport,
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
    /// XOR-RELAYED-ADDRESS of our allocation.
    pub relayed: Option<SocketAddr>,
    /// One CreatePermission per candidate.
    pub permissions: Vec<PeerResult>,
    /// ChannelBind for a few candidates.
    pub channel_binds: Vec<PeerResult>,
    /// Conclusions, worst first.
    pub findings: Vec<Finding>,
    /// Whether our allocation was given back.
    pub release: Release,
    /// Cancelled (Ctrl-C, deadline).
    pub cancelled: bool,
}

impl AuditReport {
    /// The worst severity among the findings.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
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
    pub session: SessionConfig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Binding,
    UnauthAllocate,
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
}

/// The audit probe, see the module docs.
#[derive(Debug)]
pub struct AuditProbe {
    unauth: TurnSession,
    auth: Option<TurnSession>,
    active: Which,
    phase: Phase,
    allocated: bool,
    report: AuditReport,
    output_taken: bool,
}

impl AuditProbe {
    /// A probe; `ids` supplies its transaction ids.
    pub fn new(config: AuditConfig, mut ids: TidSource) -> Self {
        let mut unauth_config = config.session.clone();
        unauth_config.credentials = None;
        let auth = config.session.credentials.is_some().then(|| {
            // A second, independent id stream for the authenticated session.
            let a = ids.next_id().0;
            let b = ids.next_id().0;
            let mut seed = [0u8; 16];
            for (s, x) in seed.iter_mut().zip(a.iter().chain(b.iter())) {
                *s = *x;
            }
            TurnSession::new(config.session.clone(), TidSource::new(seed))
        });
        let mut unauth = TurnSession::new(unauth_config, ids);
        unauth.start(Request::Binding);
        let permissions = candidates()
            .into_iter()
            .map(|candidate| PeerResult {
                candidate,
                outcome: PeerOutcome::NotTried,
            })
            .collect::<Vec<_>>();
        let channel_binds = CHANNEL_CANDIDATES
            .iter()
            .filter_map(|&i| permissions.get(i))
            .map(|p| PeerResult {
                candidate: p.candidate.clone(),
                outcome: PeerOutcome::NotTried,
            })
            .collect();
        Self {
            unauth,
            auth,
            active: Which::Unauth,
            phase: Phase::Binding,
            allocated: false,
            report: AuditReport {
                server: config.session.server,
                transport: config.session.transport,
                software: None,
                realm: None,
                binding_answered: false,
                unauthenticated: Unauthenticated::NotTried,
                allocate: None,
                relayed: None,
                permissions,
                channel_binds,
                findings: Vec::new(),
                release: Release::NotNeeded,
                cancelled: false,
            },
            output_taken: false,
        }
    }

    fn session(&mut self) -> &mut TurnSession {
        match (self.active, self.auth.as_mut()) {
            (Which::Auth, Some(s)) => s,
            _ => &mut self.unauth,
        }
    }

    fn session_ref(&self) -> &TurnSession {
        match (self.active, self.auth.as_ref()) {
            (Which::Auth, Some(s)) => s,
            _ => &self.unauth,
        }
    }

    fn start(&mut self, phase: Phase, request: Request) {
        self.phase = phase;
        self.session().start(request);
    }

    fn finish(&mut self) {
        self.phase = Phase::Done;
        self.session().abandon();
        if self.allocated && self.report.release == Release::NotNeeded {
            // A release that never finished is a failure to report, not a success.
            self.report.release = Release::Timeout;
        }
        self.report.findings = findings(&self.report);
    }

    fn release(&mut self) {
        if self.allocated {
            self.start(Phase::Releasing, Request::Refresh { lifetime: 0 });
        } else {
            self.finish();
        }
    }

    /// Ask for the permission of candidate `i` (or the next step when `i` is past the end).
    fn permission(&mut self, i: usize) {
        if self.report.cancelled {
            return self.release();
        }
        match self.report.permissions.get(i) {
            Some(p) => {
                let peer = p.candidate.peer;
                self.start(Phase::Permission(i), Request::CreatePermission { peer });
            }
            None => self.channel(0),
        }
    }

    fn channel(&mut self, i: usize) {
        if self.report.cancelled {
            return self.release();
        }
        match (self.report.channel_binds.get(i), u16::try_from(i)) {
            (Some(p), Ok(n)) => {
                let peer = p.candidate.peer;
                let channel = super::channel::CHANNEL_MIN.saturating_add(n);
                self.start(Phase::Channel(i), Request::ChannelBind { channel, peer });
            }
            _ => self.release(),
        }
    }

    fn allocated_with(&mut self, relayed: Option<SocketAddr>) {
        self.allocated = true;
        self.report.relayed = relayed;
        if let Some(r) = relayed {
            self.report.permissions.push(PeerResult {
                candidate: Candidate {
                    peer: r,
                    category: Category::OwnRelay,
                    encoding: Encoding::Plain,
                    bypass: None,
                },
                outcome: PeerOutcome::NotTried,
            });
        }
        self.permission(0);
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
                self.report.allocate = Some(PeerOutcome::from_completion(&c));
                match &c.answer {
                    Answer::Success(s) => self.allocated_with(s.relayed),
                    _ => self.finish(),
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
                self.report.release = Release::from_completion(&c);
                self.finish();
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

    fn private_sockets(&self) -> Option<PrivateSockets> {
        private_sockets_for(self.unauth.config())
    }

    /// Cancellation: no new candidate is asked; an allocation that exists is released at
    /// once; an Allocate in flight is waited for (the server may have made it) and released.
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
         coturn before 4.9.0 (CVE-2026-27624, after CVE-2020-26262): upgrade coturn."
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
    use crate::LocalSocket;
    use crate::stun::{Class, MessageType, MessageWriter, Method, attr};
    use crate::turn::allocate::tests::{FakeServer, creds, server, t0};
    use std::time::Duration;

    fn config(with_creds: bool) -> AuditConfig {
        let mut session = SessionConfig::new(server(), TurnTransport::Udp, LocalSocket::Private(0));
        if with_creds {
            session.credentials = Some(creds());
        }
        AuditConfig { session }
    }

    /// Drive `probe` against `answer` until done; returns every request sent.
    fn drive(
        probe: &mut AuditProbe,
        mut answer: impl FnMut(&[u8]) -> Option<Vec<u8>>,
        cancel_after: Option<usize>,
    ) -> Vec<Vec<u8>> {
        let mut now = t0();
        let mut sent = Vec::new();
        for _ in 0..1000 {
            if probe.is_done() {
                break;
            }
            let mut buf = Vec::new();
            if let Some(_t) = probe.poll_transmit(now, &mut buf) {
                sent.push(buf.clone());
                if cancel_after == Some(sent.len()) {
                    assert!(probe.cancel(now) || probe.is_done());
                }
                if let Some(reply) = answer(&buf) {
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

    /// A FakeServer that refuses CreatePermission/ChannelBind toward peers `deny` says no to.
    fn policy_server(
        deny: impl Fn(IpAddr) -> bool + 'static,
    ) -> impl FnMut(&[u8]) -> Option<Vec<u8>> {
        let mut fake = FakeServer::new();
        move |req: &[u8]| {
            let v = StunView::parse(req).unwrap();
            let m = v.message_type().method;
            if (m == Method::CREATE_PERMISSION || m == Method::CHANNEL_BIND)
                && v.has_message_integrity()
            {
                let raw = v
                    .attributes()
                    .find(|(k, _)| *k == attr::XOR_PEER_ADDRESS)
                    .unwrap()
                    .1;
                let peer = attr::decode_xor_address(raw, &v.transaction_id()).unwrap();
                if deny(peer.ip()) {
                    let mut out = Vec::new();
                    let mut w = MessageWriter::new(
                        &mut out,
                        MessageType::new(Class::ErrorResponse, m),
                        &v.transaction_id(),
                    );
                    w.error_code(403, "Forbidden IP");
                    w.fingerprint();
                    return Some(out);
                }
            }
            fake.answer(req)
        }
    }

    fn methods(sent: &[Vec<u8>]) -> Vec<Method> {
        sent.iter()
            .map(|b| StunView::parse(b).unwrap().message_type().method)
            .collect()
    }

    #[test]
    fn a_server_that_denies_everything_has_no_peer_findings_and_is_released() {
        let mut p = AuditProbe::new(config(true), TidSource::new([3; 16]));
        let sent = drive(&mut p, policy_server(|_| true), None);
        let r = p.take_output().unwrap();
        assert!(r.binding_answered);
        assert_eq!(r.unauthenticated, Unauthenticated::Challenge);
        assert_eq!(r.allocate, Some(PeerOutcome::Granted));
        assert!(!r.any_granted(), "{r:#?}");
        assert_eq!(r.release, Release::Released);
        assert_eq!(r.worst(), Some(Severity::Info)); // SOFTWARE "fake"
        // Every candidate asked once, plus the relayed address; a few ChannelBinds.
        let m = methods(&sent);
        let perms = m
            .iter()
            .filter(|x| **x == Method::CREATE_PERMISSION)
            .count();
        assert_eq!(perms, candidates().len() + 1);
        assert!(
            r.permissions
                .iter()
                .all(|p| matches!(p.outcome, PeerOutcome::Refused { code: 403, .. }))
        );
        assert_eq!(m.last(), Some(&Method::REFRESH));
        // Never any data toward a candidate.
        assert!(!m.contains(&Method::SEND));
    }

    #[test]
    fn granted_loopback_and_mapped_forms_are_critical_with_the_upgrade_hint() {
        // Denies plain IPv4 loopback only: the mapped form slips through, as in CVE-2026-27624.
        let mut p = AuditProbe::new(config(true), TidSource::new([4; 16]));
        drive(
            &mut p,
            policy_server(|ip| match ip {
                IpAddr::V4(v) => !v.is_private(),
                IpAddr::V6(_) => false,
            }),
            None,
        );
        let r = p.take_output().unwrap();
        let f = &r.findings[0];
        assert_eq!(f.severity, Severity::Critical);
        assert!(f.peers.iter().any(|s| s == "::ffff:127.0.0.1"), "{f:?}");
        assert!(f.fix.contains("CVE-2026-27624"), "{f:?}");
        let private = r
            .findings
            .iter()
            .find(|f| f.category == Some(Category::Private))
            .unwrap();
        assert_eq!(private.severity, Severity::High);
        assert!(private.peers.iter().any(|s| s == "10.0.0.1"));
        assert_eq!(r.release, Release::Released);
    }

    #[test]
    fn without_credentials_only_the_unauthenticated_checks_run() {
        let mut p = AuditProbe::new(config(false), TidSource::new([5; 16]));
        let mut fake = FakeServer::new();
        let sent = drive(&mut p, |b| fake.answer(b), None);
        let r = p.take_output().unwrap();
        assert_eq!(r.unauthenticated, Unauthenticated::Challenge);
        assert_eq!(r.allocate, None);
        assert_eq!(methods(&sent), vec![Method::BINDING, Method::ALLOCATE]);
        assert!(
            r.permissions
                .iter()
                .all(|p| p.outcome == PeerOutcome::NotTried)
        );
        assert_eq!(r.release, Release::NotNeeded);
    }

    #[test]
    fn cancel_mid_audit_stops_asking_and_releases() {
        let mut p = AuditProbe::new(config(true), TidSource::new([6; 16]));
        // Binding, unauth Allocate, Allocate (401), Allocate (auth), 2 permissions, cancel.
        let sent = drive(&mut p, policy_server(|_| false), Some(6));
        let r = p.take_output().unwrap();
        assert!(r.cancelled);
        assert_eq!(r.release, Release::Released);
        let m = methods(&sent);
        assert_eq!(m.last(), Some(&Method::REFRESH));
        assert!(
            m.iter()
                .filter(|x| **x == Method::CREATE_PERMISSION)
                .count()
                <= 3
        );
        assert!(
            r.permissions
                .iter()
                .any(|p| p.outcome == PeerOutcome::NotTried)
        );
    }

    #[test]
    fn a_silent_server_times_out_without_allocating() {
        let mut p = AuditProbe::new(config(true), TidSource::new([7; 16]));
        drive(&mut p, |_| None, None);
        let r = p.take_output().unwrap();
        assert!(!r.binding_answered);
        assert_eq!(r.unauthenticated, Unauthenticated::Timeout);
        assert_eq!(r.release, Release::NotNeeded);
    }

    #[test]
    fn an_open_relay_is_critical_and_still_released() {
        let mut p = AuditProbe::new(config(false), TidSource::new([8; 16]));
        let relayed: SocketAddr = "192.0.2.1:50000".parse().unwrap();
        let sent = drive(
            &mut p,
            |req| {
                let v = StunView::parse(req).unwrap();
                let ty = v.message_type();
                let mut out = Vec::new();
                let mut w = MessageWriter::new(
                    &mut out,
                    MessageType::new(Class::SuccessResponse, ty.method),
                    &v.transaction_id(),
                );
                if ty.method == Method::ALLOCATE {
                    w.xor_address(attr::XOR_RELAYED_ADDRESS, &relayed);
                }
                w.fingerprint();
                Some(out)
            },
            None,
        );
        let r = p.take_output().unwrap();
        assert_eq!(r.unauthenticated, Unauthenticated::Allocated);
        assert_eq!(r.findings[0].severity, Severity::Critical);
        assert_eq!(r.release, Release::Released);
        assert_eq!(methods(&sent).last(), Some(&Method::REFRESH));
        let own = r.permissions.last().unwrap();
        assert_eq!(own.candidate.category, Category::OwnRelay);
        assert_eq!(own.candidate.peer, relayed);
    }
}
