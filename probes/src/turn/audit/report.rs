//! What the audit found: the server's answer to each request ([`PeerResult`]) and the findings
//! drawn from them, with their severity and the coturn setting that closes them.

use std::net::SocketAddr;

use super::candidates::{Candidate, Category, Encoding};
use crate::finding::{Finding, Fix, Severity};
use crate::turn::session::{Answer, Completion, Release};
use crate::{Family, Transport};

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
    pub(crate) fn from_completion(c: &Completion) -> Self {
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
    pub(crate) fn not_tried(candidate: Candidate, relay_family: Family) -> Self {
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

impl std::fmt::Display for PeerOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerOutcome::Granted => f.write_str("granted"),
            PeerOutcome::Refused { code, reason } => write!(f, "refused: {code} {reason}"),
            PeerOutcome::Timeout => f.write_str("no answer"),
            PeerOutcome::NotTried => f.write_str("not tried"),
            PeerOutcome::Untestable { reason } => write!(f, "untestable: {reason}"),
        }
    }
}

impl std::fmt::Display for Unauthenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unauthenticated::Challenge => f.write_str("401 with REALM and NONCE"),
            Unauthenticated::Allocated => f.write_str("allocated without credentials"),
            Unauthenticated::Error { code, reason, .. } => write!(f, "error {code} {reason}"),
            Unauthenticated::Timeout => f.write_str("no answer"),
            Unauthenticated::NotTried => f.write_str("not tried"),
        }
    }
}

/// Why the audit could not test relaying (see [`AuditReport::not_tested`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum NotTested {
    /// No credentials: only the unauthenticated checks ran (permissions need an allocation,
    /// RFC 8656 §10).
    NoCredentials,
    /// The authenticated Allocate was refused (wrong credentials, quota …).
    AllocationRefused {
        /// The code.
        code: u16,
        /// The reason phrase.
        reason: String,
    },
    /// The authenticated Allocate got no answer.
    NoAllocation,
    /// Stopped before a request toward a candidate was answered.
    Cancelled,
    /// Requests toward candidates were sent; none was answered.
    NoAnswer,
}

impl std::fmt::Display for NotTested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotTested::NoCredentials => {
                f.write_str("no credentials: only the unauthenticated checks ran")
            }
            NotTested::AllocationRefused { code, reason } => {
                write!(f, "the allocation was refused ({code} {reason})")
            }
            NotTested::NoAllocation => f.write_str("the Allocate got no answer"),
            NotTested::Cancelled => f.write_str("stopped before any candidate was answered"),
            NotTested::NoAnswer => f.write_str("no request toward a candidate was answered"),
        }
    }
}

/// What an audit finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditKind {
    /// The server allocates without credentials.
    OpenRelay,
    /// The unauthenticated Allocate got another answer than 401 with REALM and NONCE.
    NoChallenge,
    /// Requests toward candidates of one category were granted.
    PeersGranted,
    /// The server announces its SOFTWARE.
    Software,
}

impl std::fmt::Display for AuditKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuditKind::OpenRelay => "open relay",
            AuditKind::NoChallenge => "no credential challenge",
            AuditKind::PeersGranted => "peers granted",
            AuditKind::Software => "software announced",
        })
    }
}

/// One conclusion of the audit, with the coturn configuration that closes it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditFinding {
    /// What, how bad, and the fix.
    #[serde(flatten)]
    pub finding: Finding<AuditKind>,
    /// The category of the granted peers (`None` for findings not about peers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    /// The peers granted (text).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
}

impl AuditFinding {
    fn new(kind: AuditKind, severity: Severity, summary: String, fix: String) -> Self {
        AuditFinding {
            finding: Finding::new(kind, severity, summary).with_fix(Fix::new(fix)),
            category: None,
            peers: Vec::new(),
        }
    }

    /// How bad it is.
    pub fn severity(&self) -> Severity {
        self.finding.severity
    }

    /// The coturn configuration that closes it.
    pub fn fix(&self) -> Option<&Fix> {
        self.finding.fix.as_ref()
    }
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
    pub findings: Vec<AuditFinding>,
    /// Whether our (first) allocation was given back.
    pub release: Release,
    /// Whether the IPv6 allocation was given back.
    pub release_ipv6: Release,
    /// Cancelled (Ctrl-C, deadline).
    pub cancelled: bool,
    /// `permissions[..ipv6_from.0]` and `channel_binds[..ipv6_from.1]` are the first
    /// allocation's requests, the rest the IPv6 allocation's.
    #[serde(skip)]
    pub(crate) ipv6_from: (usize, usize),
}

impl AuditReport {
    /// The worst severity among the findings.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(AuditFinding::severity).max()
    }

    /// Whether neither allocation can be left on the server.
    pub fn release_is_clean(&self) -> bool {
        self.release.is_clean() && self.release_ipv6.is_clean()
    }

    /// The IPv6 allocation's requests: (permissions, channel binds).
    pub(crate) fn ipv6_requests_mut(&mut self) -> impl Iterator<Item = &mut PeerResult> {
        let (p, c) = self.ipv6_from;
        self.permissions
            .iter_mut()
            .skip(p)
            .chain(self.channel_binds.iter_mut().skip(c))
    }

    /// Take the IPv6 allocation from `ipv6`, the report of an audit run with
    /// [`AuditConfig::ipv6_only`](super::probe::AuditConfig::ipv6_only) (over TCP/TLS, on a
    /// connection of its own): its Allocate, relayed address, release and requests replace this
    /// report's IPv6 part, and the findings are drawn again from the whole.
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

    /// Over TCP/TLS, whether the IPv6 allocation (step 6 of the module docs) is still to be
    /// made, on a second connection: the first allocation was made and given back cleanly, or
    /// refused with 440 (an IPv6-only relay), nothing was cancelled, and the IPv6 one was not
    /// tried. As over UDP, never while the first allocation may still exist.
    pub fn wants_ipv6_connection(&self) -> bool {
        let first = matches!(
            self.allocate,
            Some(PeerOutcome::Granted | PeerOutcome::Refused { code: 440, .. })
        );
        self.transport.is_stream()
            && first
            && self.allocate_ipv6.is_none()
            && self.release.is_clean()
            && !self.cancelled
    }

    /// The second connection, for the IPv6 allocation, could not be used (`why`, in words):
    /// its candidates are untestable with that reason.
    pub fn ipv6_connection_failed(&mut self, why: &str) {
        let reason = format!(
            "the second {} connection, for the IPv6 allocation, failed: {why}",
            self.transport.as_str()
        );
        self.ipv6_untestable(&reason);
    }

    /// Requests toward candidates that got an answer (granted or refused): what the verdict
    /// on relaying rests on.
    pub fn peers_answered(&self) -> usize {
        self.permissions
            .iter()
            .chain(&self.channel_binds)
            .filter(|p| {
                matches!(
                    p.outcome,
                    PeerOutcome::Granted | PeerOutcome::Refused { .. }
                )
            })
            .count()
    }

    /// Why relaying was not tested at all (no request toward a candidate was answered), or
    /// `None` when it was. A report with no finding and this set says nothing about relaying.
    pub fn not_tested(&self) -> Option<NotTested> {
        if self.peers_answered() > 0 {
            return None;
        }
        if self.cancelled {
            return Some(NotTested::Cancelled);
        }
        Some(match &self.allocate {
            Some(PeerOutcome::Refused { code, reason }) => NotTested::AllocationRefused {
                code: *code,
                reason: reason.clone(),
            },
            Some(PeerOutcome::Timeout) => NotTested::NoAllocation,
            None if self.unauthenticated != Unauthenticated::Allocated => NotTested::NoCredentials,
            _ => NotTested::NoAnswer,
        })
    }

    /// Whether any request toward a candidate was granted.
    pub fn any_granted(&self) -> bool {
        self.permissions
            .iter()
            .chain(&self.channel_binds)
            .any(|p| p.outcome == PeerOutcome::Granted)
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
pub fn findings(r: &AuditReport) -> Vec<AuditFinding> {
    let mut out = Vec::new();
    if r.unauthenticated == Unauthenticated::Allocated {
        out.push(AuditFinding::new(
            AuditKind::OpenRelay,
            Severity::Critical,
            "allocates without credentials: an open relay for anyone".into(),
            "lt-cred-mech (or use-auth-secret with static-auth-secret) and a realm.".into(),
        ));
    }
    if let Unauthenticated::Error { code, .. } = &r.unauthenticated {
        out.push(AuditFinding::new(
            AuditKind::NoChallenge,
            Severity::Low,
            format!(
                "answers an unauthenticated Allocate with {code} instead of 401 with REALM and NONCE"
            ),
            "check the authentication settings (lt-cred-mech / use-auth-secret).".into(),
        ));
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
        out.push(AuditFinding {
            category: Some(cat),
            peers,
            ..AuditFinding::new(
                AuditKind::PeersGranted,
                severity_of(cat),
                describe(cat).to_string(),
                fix_for(cat, &granted),
            )
        });
    }
    if let Some(s) = &r.software {
        out.push(AuditFinding::new(
            AuditKind::Software,
            Severity::Info,
            format!("announces its software and version: {s}"),
            "no-software-attribute hides it (coturn).".into(),
        ));
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.severity()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_kinds_read_as_words() {
        let refused = PeerOutcome::Refused {
            code: 403,
            reason: "Forbidden IP".into(),
        };
        assert_eq!(refused.to_string(), "refused: 403 Forbidden IP");
        assert_eq!(PeerOutcome::NotTried.to_string(), "not tried");
        assert_eq!(
            Unauthenticated::Challenge.to_string(),
            "401 with REALM and NONCE"
        );
        assert_eq!(AuditKind::OpenRelay.to_string(), "open relay");
    }
    use crate::machine::Probe;
    use crate::stun::{
        Class, MessageType, MessageWriter, Method, StunView, TransactionIdSource, attr,
    };
    use crate::turn::audit::candidates::{CHANNEL_CANDIDATES, IPV6_CHANNEL_CANDIDATES, candidates};
    use crate::turn::audit::lab::*;
    use crate::turn::audit::probe::AuditProbe;
    use std::net::IpAddr;

    #[test]
    fn a_tcp_audit_adopts_the_ipv6_allocation_of_a_second_connection() {
        let (mut merged, mut lab) = first_connection_over_tcp(21);
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
    fn an_audit_without_an_allocation_says_relaying_was_not_tested() {
        // No credentials: the 401 is all there is.
        let mut p = AuditProbe::new(config(false), TransactionIdSource::new([23; 16]));
        let mut lab = Lab::new(coturn_default, Ipv6Relay::Grant);
        drive(&mut p, |_, b| lab.answer(V4, b), never);
        let r = p.take_output().unwrap();
        assert_eq!(r.unauthenticated, Unauthenticated::Challenge);
        assert_eq!(r.peers_answered(), 0);
        assert_eq!(r.not_tested(), Some(NotTested::NoCredentials));
        // A refused allocation: the reason names the answer.
        let mut refused = r.clone();
        refused.allocate = Some(PeerOutcome::Refused {
            code: 401,
            reason: "Unauthorized".into(),
        });
        assert_eq!(
            refused.not_tested().unwrap().to_string(),
            "the allocation was refused (401 Unauthorized)"
        );
        // A tested audit has no such reason.
        let mut p = AuditProbe::new(config(true), TransactionIdSource::new([24; 16]));
        let mut lab = Lab::new(coturn_default, Ipv6Relay::Grant);
        drive(&mut p, |l, b| lab.answer(l, b), never);
        let r = p.take_output().unwrap();
        assert!(r.peers_answered() > 0);
        assert_eq!(r.not_tested(), None);
    }

    #[test]
    fn the_ipv6_connection_is_wanted_only_after_a_clean_first_allocation_over_a_stream() {
        let (mut r, _) = first_connection_over_tcp(25);
        assert!(r.wants_ipv6_connection());
        r.release = Release::Timeout;
        assert!(!r.wants_ipv6_connection(), "the first may still exist");
        r.release = Release::Released;
        r.transport = Transport::Udp;
        assert!(!r.wants_ipv6_connection(), "UDP uses a second socket");
    }

    #[test]
    fn a_failed_second_connection_says_so_in_the_untestable_reason() {
        let (mut r, _) = first_connection_over_tcp(22);
        r.ipv6_untestable("second connection refused");
        let v6 = ipv6_requests(&r);
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
        assert_eq!(f.severity(), Severity::Critical);
        assert!(f.peers.iter().any(|s| s == "::ffff:127.0.0.1"), "{f:?}");
        assert!(f.fix().unwrap().title.contains("CVE-2026-27624"), "{f:?}");
        assert!(
            f.fix()
                .unwrap()
                .title
                .contains("::ffff:0.0.0.0-::ffff:255.255.255.255"),
            "{f:?}"
        );
        let private = r
            .findings
            .iter()
            .find(|f| f.category == Some(Category::Private))
            .unwrap();
        assert_eq!(private.severity(), Severity::High);
        assert!(private.peers.iter().any(|s| s == "10.0.0.1"));
        assert_eq!(r.release, Release::Released);
        assert_eq!(r.release_ipv6, Release::Released);
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
        assert_eq!(r.findings[0].severity(), Severity::Critical);
        assert_eq!(r.release, Release::Released);
        assert_eq!(r.release_ipv6, Release::Released);
        assert_eq!(methods(&sent, V4).last(), Some(&Method::REFRESH));
        assert_eq!(methods(&sent, V6).last(), Some(&Method::REFRESH));
        let own = own_relays(&r);
        assert_eq!(
            own,
            vec![(relayed, Family::Ipv4), (v6_relayed(), Family::Ipv6)]
        );
    }
}
