//! The audit probe: its configuration, its phases and its two allocations (see the module docs
//! of [`audit`](super)).

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use super::candidates::{
    CHANNEL_CANDIDATES, Candidate, Category, Encoding, IPV6_CHANNEL_CANDIDATES, candidates,
};
use super::report::{AuditReport, PeerOutcome, PeerResult, Unauthenticated, findings};
use crate::Family;
use crate::machine::{Ignored, LocalSocket, PrivateSockets, Probe, Transmit};
use crate::stun::TransactionIdSource;
use crate::stun::view::StunView;
use crate::turn::session::{
    Answer, Completion, Release, Request, SessionConfig, TurnSession, private_sockets_for,
};

/// Why the IPv6 candidates are not asked on the audit's TCP or TLS connection (see the module
/// docs): a caller that opens a second connection replaces these entries with
/// [`AuditReport::adopt_ipv6`].
const UNTESTABLE_OVER_STREAM: &str = "over TCP/TLS the IPv6 allocation needs a second \
    connection, which was not made";

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
                let channel = crate::turn::channel::CHANNEL_MIN.saturating_add(n);
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
        crate::turn::take_report(
            self.phase == Phase::Done,
            &mut self.output_taken,
            &self.report,
        )
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
    /// for (the server may have made it) and released — over UDP; over TCP/TLS the closed
    /// connection takes it along (see
    /// [`SessionConfig::waits_for_allocate_on_cancel`](crate::turn::session::SessionConfig::waits_for_allocate_on_cancel)).
    fn cancel(&mut self, _now: Instant) -> bool {
        self.report.cancelled = true;
        match self.phase {
            Phase::Binding => {
                self.finish();
                false
            }
            Phase::UnauthAllocate | Phase::Allocate
                if !self.session_ref().config().waits_for_allocate_on_cancel() =>
            {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Severity;
    use crate::stun::Method;
    use crate::turn::audit::lab::*;
    use crate::turn::testkit::{FakeServer, server};

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
        let own = own_relays(&r);
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
        assert_eq!(f.severity(), Severity::Critical);
        assert_eq!(r.worst(), Some(Severity::Critical));
        assert!(f.peers.iter().any(|s| s == mapped), "{f:?}");
        assert!(f.fix().unwrap().title.contains("CVE-2026-27624"), "{f:?}");
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
        let v6 = ipv6_requests(&r);
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
}
