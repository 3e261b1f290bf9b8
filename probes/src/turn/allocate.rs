//! The Allocate probe (`stunmap turn`): [`AllocateProbe`] runs Allocate (RFC 8656 §7) on a
//! [`TurnSession`], optionally CreatePermission (§10) and ChannelBind (§12) toward its own
//! reflexive address, and always ends with Refresh LIFETIME 0 (§8) when an allocation was made
//! — on success, on error and on cancellation. A leaked allocation would hold a relay port on
//! the server for its whole lifetime.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::auth::{IntegrityKind, PasswordAlgorithm};
use super::session::{
    Answer, Completion, Release, Request, SessionConfig, StepOutcome, TurnSession,
    private_sockets_for,
};
use crate::Transport;
use crate::machine::{Ignored, PrivateSockets, Probe, Transmit};
use crate::stun::TransactionIdSource;
use crate::stun::view::StunView;

/// How Allocate ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum AllocateStatus {
    /// An allocation was made (and then released, see [`AllocateReport::release`]).
    Allocated,
    /// No credentials were given and the server answered 401 with REALM and NONCE: a TURN
    /// server that wants the long-term credential mechanism is there.
    AuthRequired,
    /// The server refused: 401 (wrong credentials), 437 (allocation mismatch), 486 (quota),
    /// 508 (insufficient capacity), … RFC 8656 §7.2, §19.
    Rejected {
        /// The code.
        code: u16,
        /// The reason phrase.
        reason: String,
    },
    /// No answer.
    Timeout,
    /// Cancelled before an answer.
    Cancelled,
}

impl std::fmt::Display for AllocateStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AllocateStatus::Allocated => f.write_str("allocated"),
            AllocateStatus::AuthRequired => f.write_str("credentials required (401)"),
            AllocateStatus::Rejected { code, reason } => write!(f, "rejected: {code} {reason}"),
            AllocateStatus::Timeout => f.write_str("no answer"),
            AllocateStatus::Cancelled => f.write_str("cancelled"),
        }
    }
}

/// What an Allocate probe found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AllocateReport {
    /// The server.
    pub server: SocketAddr,
    /// The transport.
    pub transport: Transport,
    /// How Allocate ended.
    pub status: AllocateStatus,
    /// SOFTWARE, RFC 8489 §14.14.
    pub software: Option<String>,
    /// REALM, RFC 8489 §14.9.
    pub realm: Option<String>,
    /// Whether credentials were sent.
    pub authenticated: bool,
    /// The integrity attribute used (MESSAGE-INTEGRITY or -SHA256).
    pub integrity: Option<IntegrityKind>,
    /// The password algorithm used.
    pub password_algorithm: Option<PasswordAlgorithm>,
    /// XOR-RELAYED-ADDRESS.
    pub relayed: Option<SocketAddr>,
    /// XOR-MAPPED-ADDRESS.
    pub mapped: Option<SocketAddr>,
    /// LIFETIME granted, seconds.
    pub lifetime: Option<u32>,
    /// RTT of the final Allocate transaction, seconds.
    #[serde(with = "crate::serde_util::opt_secs")]
    pub allocate_rtt: Option<Duration>,
    /// 438 answers that were retried.
    pub stale_nonce_retries: u32,
    /// Responses ignored because their integrity was missing or wrong.
    pub rejected_integrity: u32,
    /// CreatePermission toward the reflexive address, when exercised.
    pub permission: Option<StepOutcome>,
    /// ChannelBind toward the reflexive address, when exercised.
    pub channel_bind: Option<StepOutcome>,
    /// Whether the allocation was released.
    pub release: Release,
    /// The probe was cancelled (Ctrl-C, deadline).
    pub cancelled: bool,
}

/// How the Allocate probe runs.
#[derive(Clone, Debug)]
pub struct AllocateConfig {
    /// The session.
    pub session: SessionConfig,
    /// After a successful Allocate, also try CreatePermission and ChannelBind (channel
    /// 0x4000) toward the client's own reflexive address.
    pub exercise: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Allocating,
    Permission,
    ChannelBind,
    Releasing,
    Done,
}

/// The Allocate probe, see the module docs.
#[derive(Debug)]
pub struct AllocateProbe {
    session: TurnSession,
    exercise: bool,
    phase: Phase,
    report: AllocateReport,
    output_taken: bool,
}

impl AllocateProbe {
    /// A probe; `ids` supplies its transaction ids.
    pub fn new(config: AllocateConfig, ids: TransactionIdSource) -> Self {
        let report = AllocateReport {
            server: config.session.server,
            transport: config.session.transport,
            status: AllocateStatus::Timeout,
            software: None,
            realm: None,
            authenticated: false,
            integrity: None,
            password_algorithm: None,
            relayed: None,
            mapped: None,
            lifetime: None,
            allocate_rtt: None,
            stale_nonce_retries: 0,
            rejected_integrity: 0,
            permission: None,
            channel_bind: None,
            release: Release::NotNeeded,
            cancelled: false,
        };
        let mut session = TurnSession::new(config.session, ids);
        session.start(Request::Allocate);
        Self {
            session,
            exercise: config.exercise,
            phase: Phase::Allocating,
            report,
            output_taken: false,
        }
    }

    fn release(&mut self) {
        self.session.start(Request::Refresh { lifetime: 0 });
        self.phase = Phase::Releasing;
    }

    fn on_completion(&mut self, c: Completion) {
        match self.phase {
            Phase::Allocating => {
                self.report.authenticated = self.session.auth_mode().is_some();
                match &c.answer {
                    Answer::Success(s) => {
                        self.report.status = AllocateStatus::Allocated;
                        self.report.relayed = s.relayed;
                        self.report.mapped = s.mapped;
                        self.report.lifetime = s.lifetime;
                        self.report.allocate_rtt = c.rtt;
                        match s.mapped {
                            Some(peer) if self.exercise && !self.report.cancelled => {
                                self.session.start(Request::CreatePermission { peer });
                                self.phase = Phase::Permission;
                            }
                            _ => self.release(),
                        }
                    }
                    Answer::Error {
                        code,
                        reason,
                        challenge,
                    } => {
                        self.report.status = if *code == 401
                            && *challenge
                            && self.session.config().credentials.is_none()
                        {
                            AllocateStatus::AuthRequired
                        } else {
                            AllocateStatus::Rejected {
                                code: *code,
                                reason: reason.clone(),
                            }
                        };
                        self.phase = Phase::Done;
                    }
                    Answer::Timeout => {
                        self.report.status = if self.report.cancelled {
                            AllocateStatus::Cancelled
                        } else {
                            AllocateStatus::Timeout
                        };
                        self.phase = Phase::Done;
                    }
                }
            }
            Phase::Permission => {
                self.report.permission = Some(StepOutcome::from_completion(&c));
                match (self.report.mapped, &c.answer) {
                    (Some(peer), Answer::Success(_)) => {
                        self.session.start(Request::ChannelBind {
                            channel: super::channel::CHANNEL_MIN,
                            peer,
                        });
                        self.phase = Phase::ChannelBind;
                    }
                    _ => self.release(),
                }
            }
            Phase::ChannelBind => {
                self.report.channel_bind = Some(StepOutcome::from_completion(&c));
                self.release();
            }
            Phase::Releasing => {
                self.report.release = Release::from_completion(&c);
                self.phase = Phase::Done;
            }
            Phase::Done => {}
        }
        self.sync_report();
    }

    fn sync_report(&mut self) {
        self.report.software = self.session.software().map(str::to_string);
        self.report.realm = self.session.realm().map(str::to_string);
        if let Some((i, a)) = self.session.auth_mode() {
            self.report.integrity = Some(i);
            self.report.password_algorithm = Some(a);
        }
        self.report.stale_nonce_retries = self.session.stale_nonces();
        self.report.rejected_integrity = self.session.rejected_integrity();
        if self.phase == Phase::Done && self.report.status == AllocateStatus::Allocated {
            // A release that never finished is a failure to report, not a success.
            if self.report.release == Release::NotNeeded {
                self.report.release = Release::Timeout;
            }
        }
    }
}

impl Probe for AllocateProbe {
    type Output = AllocateReport;

    fn handle_input(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), Ignored> {
        let view = StunView::parse(data).map_err(Ignored::Malformed)?;
        if self.phase == Phase::Done {
            return Err(Ignored::Late);
        }
        if let Some(c) = self.session.handle_response(now, from, &view)? {
            self.on_completion(c);
        }
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Some(c) = self.session.handle_timeout(now) {
            self.on_completion(c);
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        if self.phase == Phase::Done {
            return None;
        }
        self.session.poll_transmit(now, buf)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Done {
            return None;
        }
        self.session.poll_timeout()
    }

    fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    fn take_output(&mut self) -> Option<AllocateReport> {
        super::take_report(
            self.phase == Phase::Done,
            &mut self.output_taken,
            &self.report,
        )
    }

    fn private_sockets(&self) -> Option<PrivateSockets> {
        private_sockets_for(self.session.config())
    }

    /// Cancellation: an allocation that exists is released at once; over UDP an Allocate
    /// still in flight is waited for (the server may have made the allocation) and released
    /// if it succeeds; over TCP/TLS it is not (see
    /// [`SessionConfig::waits_for_allocate_on_cancel`]); otherwise there is nothing to clean
    /// up.
    fn cancel(&mut self, _now: Instant) -> bool {
        self.report.cancelled = true;
        match self.phase {
            Phase::Allocating if self.session.config().waits_for_allocate_on_cancel() => {
                !self.session.is_idle()
            }
            Phase::Allocating => {
                // Over a stream: the closed connection takes any allocation with it.
                self.session.abandon();
                self.report.status = AllocateStatus::Cancelled;
                self.phase = Phase::Done;
                self.sync_report();
                false
            }
            Phase::Permission | Phase::ChannelBind => {
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
    use crate::stun::{Method, TransactionId};
    use crate::turn::auth::Credentials;
    use crate::turn::session::MAX_NONCE_RETRIES;
    use crate::turn::testkit::{FakeServer, creds, ids, server, session_config, t0};

    fn config(creds: Option<Credentials>) -> AllocateConfig {
        AllocateConfig {
            session: session_config(creds),
            exercise: true,
        }
    }

    /// Run a probe against the fake server on simulated time, with `lose` deciding whether
    /// the n-th datagram (either way) is dropped. Returns the output.
    /// An allocation with credentials, driven against `srv` to its end with nothing lost or
    /// cancelled.
    fn run_signed(srv: &mut FakeServer) -> AllocateReport {
        let mut p = AllocateProbe::new(config(Some(creds())), ids());
        drive(&mut p, srv, None, |_| false)
    }

    fn drive(
        probe: &mut AllocateProbe,
        srv: &mut FakeServer,
        cancel_at: Option<usize>,
        lose: impl Fn(usize) -> bool,
    ) -> AllocateReport {
        let t0 = t0();
        let mut now = t0;
        let mut n = 0usize;
        let mut steps = 0usize;
        while !probe.is_done() {
            steps += 1;
            assert!(steps < 10_000, "probe does not finish");
            if cancel_at == Some(steps) {
                probe.cancel(now);
            }
            let mut buf = Vec::new();
            while let Some(t) = probe.poll_transmit(now, &mut buf) {
                assert_eq!(t.destination, server());
                n += 1;
                let req = std::mem::take(&mut buf);
                if lose(n) {
                    continue;
                }
                if let Some(resp) = srv.answer(&req) {
                    n += 1;
                    if !lose(n) {
                        let _ = probe.handle_input(now + Duration::from_millis(5), server(), &resp);
                    }
                }
            }
            now += Duration::from_millis(10);
            if probe.poll_timeout().is_some_and(|t| t <= now) {
                probe.handle_timeout(now);
            }
        }
        probe.take_output().unwrap()
    }

    #[test]
    fn allocate_with_credentials_exercises_and_releases() {
        let mut srv = FakeServer::new();
        let mut p = AllocateProbe::new(config(Some(creds())), ids());
        let out = drive(&mut p, &mut srv, None, |_| false);
        assert_eq!(out.status, AllocateStatus::Allocated);
        assert_eq!(out.relayed, Some(srv.relayed));
        assert_eq!(out.mapped, Some(srv.mapped));
        assert_eq!(out.lifetime, Some(600));
        assert_eq!(out.software.as_deref(), Some("fake"));
        assert_eq!(out.realm.as_deref(), Some("lab"));
        assert_eq!(out.integrity, Some(IntegrityKind::Sha1));
        assert!(matches!(out.permission, Some(StepOutcome::Ok { .. })));
        assert!(matches!(out.channel_bind, Some(StepOutcome::Ok { .. })));
        assert_eq!(out.release, Release::Released);
        assert!(!srv.allocated);
        assert_eq!(
            srv.log,
            vec![
                (Method::ALLOCATE, Some(401)),
                (Method::ALLOCATE, None),
                (Method::CREATE_PERMISSION, None),
                (Method::CHANNEL_BIND, None),
                (Method::REFRESH, None),
            ]
        );
        // A finished probe is done for good.
        assert!(p.take_output().is_none());
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn statuses_read_as_words() {
        let rejected = AllocateStatus::Rejected {
            code: 486,
            reason: "Allocation Quota Reached".into(),
        };
        assert_eq!(
            rejected.to_string(),
            "rejected: 486 Allocation Quota Reached"
        );
        assert_eq!(AllocateStatus::Allocated.to_string(), "allocated");
        assert_eq!(
            AllocateStatus::AuthRequired.to_string(),
            "credentials required (401)"
        );
        assert_eq!(
            IntegrityKind::Sha256.to_string(),
            "MESSAGE-INTEGRITY-SHA256"
        );
        assert_eq!(PasswordAlgorithm::Sha256.to_string(), "SHA-256");
    }

    #[test]
    fn without_credentials_a_401_challenge_means_auth_required() {
        let mut srv = FakeServer::new();
        let mut p = AllocateProbe::new(config(None), ids());
        let out = drive(&mut p, &mut srv, None, |_| false);
        assert_eq!(out.status, AllocateStatus::AuthRequired);
        assert_eq!(out.software.as_deref(), Some("fake"));
        assert_eq!(out.release, Release::NotNeeded);
        assert!(!out.authenticated);
    }

    #[test]
    fn wrong_password_is_a_401_rejection() {
        let mut srv = FakeServer::new();
        srv.password = "other";
        let out = run_signed(&mut srv);
        assert!(
            matches!(out.status, AllocateStatus::Rejected { code: 401, .. }),
            "{out:?}"
        );
        assert_eq!(out.release, Release::NotNeeded);
        assert!(out.authenticated);
    }

    #[test]
    fn stale_nonce_is_retried_then_gives_up() {
        let mut srv = FakeServer::new();
        srv.stale_next = 2;
        let out = run_signed(&mut srv);
        assert_eq!(out.status, AllocateStatus::Allocated);
        assert_eq!(out.stale_nonce_retries, 2);
        assert_eq!(out.release, Release::Released);

        let mut srv = FakeServer::new();
        srv.stale_next = 100;
        let out = run_signed(&mut srv);
        assert!(matches!(
            out.status,
            AllocateStatus::Rejected { code: 438, .. }
        ));
        assert_eq!(out.stale_nonce_retries, u32::from(MAX_NONCE_RETRIES));
    }

    #[test]
    fn server_errors_are_reported_with_code_and_reason() {
        for code in [437, 486, 508] {
            let mut srv = FakeServer::new();
            srv.fail_allocate = Some(code);
            let out = run_signed(&mut srv);
            assert_eq!(
                out.status,
                AllocateStatus::Rejected {
                    code,
                    reason: "err".into()
                }
            );
        }
    }

    #[test]
    fn unsigned_success_is_ignored_then_times_out() {
        let mut srv = FakeServer::new();
        srv.sign = false;
        let out = run_signed(&mut srv);
        assert_eq!(out.status, AllocateStatus::Timeout);
        assert_eq!(
            out.rejected_integrity, 3,
            "every retransmission's answer was ignored"
        );
    }

    #[test]
    fn lost_refresh_answer_then_437_counts_as_released() {
        let mut srv = FakeServer::new();
        let mut p = AllocateProbe::new(config(Some(creds())), ids());
        // Datagrams: 1-2 Allocate/401, 3-4 Allocate ok, 5-6 permission, 7-8 bind, 9 refresh,
        // 10 its answer (lost), 11 retransmission, 12 answer 437.
        let out = drive(&mut p, &mut srv, None, |n| n == 10);
        assert_eq!(out.release, Release::AlreadyGone);
        assert!(out.release.is_clean());
        assert!(!srv.allocated);
    }

    #[test]
    fn cancel_mid_run_still_releases() {
        let mut srv = FakeServer::new();
        let mut p = AllocateProbe::new(config(Some(creds())), ids());
        // Lose the permission answer so the probe sits in Permission, then cancel.
        let out = drive(&mut p, &mut srv, Some(3), |n| n == 6);
        assert!(out.cancelled);
        assert_eq!(out.status, AllocateStatus::Allocated);
        assert!(out.release.is_clean(), "{:?}", out.release);
        assert!(!srv.allocated);
    }

    #[test]
    fn cancel_while_allocate_is_in_flight_waits_and_releases() {
        let mut srv = FakeServer::new();
        let mut p = AllocateProbe::new(config(Some(creds())), ids());
        let t = t0();
        let mut buf = Vec::new();
        let tx = p.poll_transmit(t, &mut buf).unwrap();
        let r = srv.answer(&buf).unwrap();
        p.handle_input(t, server(), &r).unwrap();
        buf.clear();
        p.poll_transmit(t, &mut buf).unwrap();
        assert_ne!(tx.transaction_id, TransactionId::peek(&buf).unwrap());
        // The authenticated Allocate is out; cancel now.
        assert!(
            p.cancel(t),
            "an Allocate in flight may create an allocation"
        );
        let r = srv.answer(&buf).unwrap();
        assert!(srv.allocated);
        p.handle_input(t, server(), &r).unwrap();
        let out = drive(&mut p, &mut srv, None, |_| false);
        assert_eq!(out.release, Release::Released);
        assert!(out.permission.is_none(), "no exercise after cancel");
        assert!(!srv.allocated);
    }

    #[test]
    fn over_a_stream_an_allocate_in_flight_is_not_waited_for() {
        let mut session = session_config(Some(creds()));
        session.transport = Transport::Tcp;
        session.local = crate::machine::LocalSocket::Default;
        let mut p = AllocateProbe::new(
            AllocateConfig {
                session,
                exercise: true,
            },
            ids(),
        );
        let t = t0();
        let mut buf = Vec::new();
        p.poll_transmit(t, &mut buf).unwrap();
        assert!(!p.cancel(t), "the closed connection ends the allocation");
        assert!(p.is_done());
        let out = p.take_output().unwrap();
        assert_eq!(out.status, AllocateStatus::Cancelled);
        assert_eq!(out.release, Release::NotNeeded);
        assert!(out.cancelled);
    }

    #[test]
    fn forged_integrity_is_ignored() {
        let mut srv = FakeServer::new();
        let mut p = AllocateProbe::new(config(Some(creds())), ids());
        let t = t0();
        let mut buf = Vec::new();
        p.poll_transmit(t, &mut buf).unwrap();
        let r = srv.answer(&buf).unwrap();
        p.handle_input(t, server(), &r).unwrap();
        buf.clear();
        p.poll_transmit(t, &mut buf).unwrap();
        let mut r = srv.answer(&buf).unwrap();
        // Flip a bit of the relayed address: MESSAGE-INTEGRITY no longer matches.
        r[30] ^= 1;
        // Re-seal FINGERPRINT so only integrity catches it.
        let n = r.len();
        let crc = crc32fast::hash(&r[..n - 8]) ^ crate::stun::FINGERPRINT_XOR;
        r[n - 4..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(p.handle_input(t, server(), &r), Err(Ignored::BadIntegrity));
        assert!(!p.is_done());
    }
}
