//! The TURN control session: one request at a time to one server, with the long-term
//! credential mechanism. [`AllocateProbe`](super::allocate::AllocateProbe),
//! [`RelayProbe`](super::relay::RelayProbe) and [`AuditProbe`](super::audit::AuditProbe) build
//! on it.
//!
//! [`TurnSession`] sends a request, retransmits it over UDP on the RFC 8489 §6.2.1 schedule
//! (once over TCP/TLS, §6.2.2), and handles authentication itself:
//! - a 401 carrying REALM and NONCE to an unauthenticated request, when credentials are
//!   configured, is answered by the same request with USERNAME, REALM, NONCE and
//!   MESSAGE-INTEGRITY (RFC 8489 §9.2.3–§9.2.4), or MESSAGE-INTEGRITY-SHA256 with
//!   PASSWORD-ALGORITHM(S) when the NONCE carries the RFC 8489 §9.2 nonce cookie and the server
//!   lists its PASSWORD-ALGORITHMS;
//! - a 438 (Stale Nonce) is retried with the new NONCE, at most [`MAX_NONCE_RETRIES`] times
//!   per request (RFC 8489 §9.2.5);
//! - once the key is known, every response to an authenticated request must carry a valid
//!   MESSAGE-INTEGRITY(-SHA256) if it is a success; a wrong one on any response is ignored as
//!   if never received (RFC 8489 §9.2.5). Error responses without integrity are accepted: a
//!   server cannot sign a 401 for a wrong password, and a forged error can only make a probe
//!   report failure, never a relay that does not exist.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::auth::{
    Credentials, Integrity, IntegrityKind, LongTermKey, NONCE_COOKIE, PasswordAlgorithm,
    choose_algorithm,
};
use crate::machine::{Ignored, LocalSocket, PrivateSockets, Retransmit, Transmit};
use crate::stun::view::{Fingerprint, StunView};
use crate::stun::{
    Class, MessageType, MessageWriter, Method, TransactionId, TransactionIdSource, attr,
};
use crate::{Family, Transport};

/// Retries after 438 (Stale Nonce) for one request before giving up.
pub const MAX_NONCE_RETRIES: u8 = 3;

/// REQUESTED-TRANSPORT value for UDP relaying (protocol 17), RFC 8656 §18.8.
const UDP_PROTOCOL: u8 = 17;

/// How a session talks to its server.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The TURN server.
    pub server: SocketAddr,
    /// UDP, TCP or TLS (decides retransmission and ChannelData padding).
    pub transport: Transport,
    /// The local socket requests leave from (a private socket under `engine::run`; `Default`
    /// is the stream under `engine::stream`).
    pub local: LocalSocket,
    /// Credentials; `None` stops at the server's 401, which still proves a TURN server.
    pub credentials: Option<Credentials>,
    /// Retransmission schedule (set `rc` to 1 on streams).
    pub retransmit: Retransmit,
    /// LIFETIME to ask for in Allocate (seconds), RFC 8656 §7.1; `None` takes the default.
    pub lifetime: Option<u32>,
    /// SOFTWARE, RFC 8489 §14.14.
    pub software: Option<&'static str>,
    /// REQUESTED-ADDRESS-FAMILY to put in Allocate, RFC 8656 §7.1 and §18.6; `None` leaves it
    /// out and the server allocates IPv4 (§7.2, step 7). Refresh never carries it: it is only
    /// for dual allocations there (§8.1), and this session makes single-family ones.
    pub requested_family: Option<Family>,
}

impl SessionConfig {
    /// A configuration with the usual defaults: RFC 8489 §6.2.1 retransmissions over UDP (one
    /// transmission with a 39.5 s timeout over a stream), stunmap's SOFTWARE.
    pub fn new(server: SocketAddr, transport: Transport, local: LocalSocket) -> Self {
        let retransmit = if transport.is_stream() {
            Retransmit {
                rto: Duration::from_millis(39_500),
                rc: 1,
                rm: 1,
                deadline: None,
            }
        } else {
            Retransmit::default()
        };
        Self {
            server,
            transport,
            local,
            credentials: None,
            retransmit,
            lifetime: None,
            software: Some(concat!("stunmap ", env!("CARGO_PKG_VERSION"))),
            requested_family: None,
        }
    }

    /// Whether an Allocate still unanswered when the probe is cancelled must be waited for.
    /// Over UDP the server may have made the allocation, and only a Refresh with LIFETIME 0
    /// (RFC 8656 §8) takes it back before its lifetime ends: wait, then release. Over TCP/TLS
    /// the allocation belongs to the connection, which the runner closes on cancellation, and
    /// the server deletes it with the connection (coturn 4.6.1 logs "TCP connection closed by
    /// client" and deletes the session at once): nothing is left behind to wait for.
    pub fn waits_for_allocate_on_cancel(&self) -> bool {
        !self.transport.is_stream()
    }

    /// A configuration whose every request ends within `timeout`: over UDP the RFC 8489
    /// §6.2.1 schedule cut at `timeout`, sent from private socket 0 (the engine binds it for
    /// the probe, so the session has a 5-tuple of its own); over TCP/TLS one transmission
    /// (§6.2.2: the stream retransmits) waited for `timeout`, on the stream itself.
    pub fn bounded(server: SocketAddr, transport: Transport, timeout: Duration) -> Self {
        let local = if transport.is_stream() {
            LocalSocket::Default
        } else {
            LocalSocket::Private(0)
        };
        let mut c = Self::new(server, transport, local);
        c.retransmit = if transport.is_stream() {
            Retransmit {
                rto: timeout,
                rc: 1,
                rm: 1,
                deadline: Some(timeout),
            }
        } else {
            Retransmit {
                deadline: Some(timeout),
                ..Retransmit::default()
            }
        };
        c
    }
}

/// A request the session can send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "method")]
pub enum Request {
    /// Binding, RFC 8489 §3 (unauthenticated; used for the direct-path RTT).
    Binding,
    /// Allocate, RFC 8656 §7.1 (UDP relaying).
    Allocate,
    /// Refresh, RFC 8656 §8.1; LIFETIME 0 deletes the allocation.
    Refresh {
        /// Seconds.
        lifetime: u32,
    },
    /// CreatePermission, RFC 8656 §10.1.
    CreatePermission {
        /// The peer whose IP is permitted.
        peer: SocketAddr,
    },
    /// ChannelBind, RFC 8656 §12.1.
    ChannelBind {
        /// 0x4000–0x4FFF.
        channel: u16,
        /// The peer bound to it.
        peer: SocketAddr,
    },
}

impl Request {
    fn method(&self) -> Method {
        match self {
            Request::Binding => Method::BINDING,
            Request::Allocate => Method::ALLOCATE,
            Request::Refresh { .. } => Method::REFRESH,
            Request::CreatePermission { .. } => Method::CREATE_PERMISSION,
            Request::ChannelBind { .. } => Method::CHANNEL_BIND,
        }
    }

    fn needs_auth(&self) -> bool {
        !matches!(self, Request::Binding)
    }
}

/// What a success response said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Success {
    /// XOR-RELAYED-ADDRESS, RFC 8656 §18.5.
    pub relayed: Option<SocketAddr>,
    /// XOR-MAPPED-ADDRESS, RFC 8489 §14.2.
    pub mapped: Option<SocketAddr>,
    /// LIFETIME, RFC 8656 §18.2 (seconds).
    pub lifetime: Option<u32>,
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Answer {
    /// A success response (authenticated when the request was).
    Success(Success),
    /// An error response, RFC 8489 §14.8.
    Error {
        /// 300–699 (0 when ERROR-CODE was missing or malformed).
        code: u16,
        /// Reason phrase, lossy UTF-8.
        reason: String,
        /// Whether the response carried REALM and NONCE (a 401 with both proves a TURN
        /// server that wants credentials).
        challenge: bool,
    },
    /// No acceptable response in time.
    Timeout,
}

/// A finished request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// What was asked.
    pub request: Request,
    /// The answer.
    pub answer: Answer,
    /// RTT of the last transaction of the request (see `binding` for Karn's rule).
    pub rtt: Option<Duration>,
    /// The response followed a retransmission.
    pub rtt_ambiguous: bool,
}

struct Auth {
    realm: Vec<u8>,
    nonce: Vec<u8>,
    key: LongTermKey,
    algorithm: PasswordAlgorithm,
    password_algorithms: Option<Vec<u8>>,
    integrity: IntegrityKind,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("realm", &String::from_utf8_lossy(&self.realm))
            .field("algorithm", &self.algorithm)
            .field("integrity", &self.integrity)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    tid: TransactionId,
    request: Request,
    authenticated: bool,
    attempts: u8,
    first_sent: Option<Instant>,
    last_sent: Option<Instant>,
    nonce_retries: u8,
}

/// The control side of one TURN client: one outstanding request at a time.
#[derive(Debug)]
pub struct TurnSession {
    config: SessionConfig,
    ids: TransactionIdSource,
    auth: Option<Auth>,
    pending: Option<Pending>,
    software: Option<String>,
    realm: Option<String>,
    stale_nonces: u32,
    rejected_integrity: u32,
}

impl TurnSession {
    /// A session with no request outstanding.
    pub fn new(config: SessionConfig, ids: TransactionIdSource) -> Self {
        Self {
            config,
            ids,
            auth: None,
            pending: None,
            software: None,
            realm: None,
            stale_nonces: 0,
            rejected_integrity: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Whether no request is outstanding.
    pub fn is_idle(&self) -> bool {
        self.pending.is_none()
    }

    /// The request outstanding, if any.
    pub fn pending_request(&self) -> Option<Request> {
        self.pending.map(|p| p.request)
    }

    /// Whether the outstanding request (if any) is authenticated.
    pub fn pending_authenticated(&self) -> bool {
        self.pending.is_some_and(|p| p.authenticated)
    }

    /// SOFTWARE of the server, from the first response that had it.
    pub fn software(&self) -> Option<&str> {
        self.software.as_deref()
    }

    /// REALM of the server.
    pub fn realm(&self) -> Option<&str> {
        self.realm.as_deref()
    }

    /// 438 answers received.
    pub fn stale_nonces(&self) -> u32 {
        self.stale_nonces
    }

    /// Responses ignored for missing or wrong integrity.
    pub fn rejected_integrity(&self) -> u32 {
        self.rejected_integrity
    }

    /// The integrity attribute and password algorithm in use, once authenticated.
    pub fn auth_mode(&self) -> Option<(IntegrityKind, PasswordAlgorithm)> {
        self.auth.as_ref().map(|a| (a.integrity, a.algorithm))
    }

    /// Whether `tid` is the outstanding request's.
    pub fn owns(&self, tid: &TransactionId) -> bool {
        self.pending.is_some_and(|p| p.tid == *tid)
    }

    /// Start `request`, replacing any outstanding one (whose late answer is then ignored).
    pub fn start(&mut self, request: Request) {
        self.pending = Some(Pending {
            tid: self.ids.next_id(),
            request,
            authenticated: request.needs_auth() && self.auth.is_some(),
            attempts: 0,
            first_sent: None,
            last_sent: None,
            nonce_retries: 0,
        });
    }

    /// Forget the outstanding request.
    pub fn abandon(&mut self) {
        self.pending = None;
    }

    fn restart(&mut self, authenticated: bool, nonce_retries: u8) {
        if let Some(p) = self.pending.as_mut() {
            p.tid = self.ids.next_id();
            p.authenticated = authenticated;
            p.attempts = 0;
            p.first_sent = None;
            p.last_sent = None;
            p.nonce_retries = nonce_retries;
        }
    }

    fn due(&self, p: &Pending) -> Option<Instant> {
        self.config.retransmit.next_due(p.first_sent?, p.attempts)
    }

    /// When the session next needs [`TurnSession::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        let p = self.pending.as_ref()?;
        p.first_sent?;
        self.due(p)
    }

    /// Give up on the outstanding request when its schedule ran out.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Completion> {
        let p = self.pending?;
        let first = p.first_sent?;
        if now.saturating_duration_since(first) < self.config.retransmit.give_up_after() {
            return None;
        }
        self.pending = None;
        Some(Completion {
            request: p.request,
            answer: Answer::Timeout,
            rtt: None,
            rtt_ambiguous: p.attempts > 1,
        })
    }

    /// Append the outstanding request to `buf` when a (re)transmission is due.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let p = self.pending?;
        let r = self.config.retransmit;
        let send = match p.first_sent {
            None => true,
            Some(first) => {
                p.attempts < r.rc
                    && self.due(&p).is_some_and(|d| now >= d)
                    && now.saturating_duration_since(first) < r.give_up_after()
            }
        };
        if !send {
            return None;
        }
        self.encode(&p, buf);
        if let Some(q) = self.pending.as_mut() {
            q.attempts = q.attempts.saturating_add(1);
            q.first_sent.get_or_insert(now);
            q.last_sent = Some(now);
        }
        Some(Transmit {
            destination: self.config.server,
            local: self.config.local,
            transaction_id: p.tid,
            attempt: p.attempts,
        })
    }

    fn encode(&self, p: &Pending, buf: &mut Vec<u8>) {
        let ty = MessageType::new(Class::Request, p.request.method());
        let mut w = MessageWriter::new(buf, ty, &p.tid);
        match p.request {
            Request::Binding => {}
            Request::Allocate => {
                w.attr(attr::REQUESTED_TRANSPORT, &[UDP_PROTOCOL, 0, 0, 0]);
                if let Some(f) = self.config.requested_family {
                    // RFC 8656 §18.6: the family byte, then 24 reserved zero bits.
                    w.attr(attr::REQUESTED_ADDRESS_FAMILY, &[f.stun_code(), 0, 0, 0]);
                }
                if let Some(l) = self.config.lifetime {
                    w.u32_attr(attr::LIFETIME, l);
                }
            }
            Request::Refresh { lifetime } => {
                w.u32_attr(attr::LIFETIME, lifetime);
            }
            Request::CreatePermission { peer } => {
                w.xor_address(attr::XOR_PEER_ADDRESS, &peer);
            }
            Request::ChannelBind { channel, peer } => {
                let [c0, c1] = channel.to_be_bytes();
                w.attr(attr::CHANNEL_NUMBER, &[c0, c1, 0, 0]);
                w.xor_address(attr::XOR_PEER_ADDRESS, &peer);
            }
        }
        if let Some(s) = self.config.software {
            w.software(s);
        }
        if p.authenticated
            && let (Some(a), Some(c)) = (&self.auth, &self.config.credentials)
        {
            w.attr(attr::USERNAME, c.username.as_bytes());
            w.attr(attr::REALM, &a.realm);
            w.attr(attr::NONCE, &a.nonce);
            if let Some(pa) = &a.password_algorithms {
                w.attr(attr::PASSWORD_ALGORITHMS, pa);
                let [a0, a1] = a.algorithm.code().to_be_bytes();
                w.attr(attr::PASSWORD_ALGORITHM, &[a0, a1, 0, 0]);
            }
            match a.integrity {
                IntegrityKind::Sha1 => {
                    w.attr_over_message(attr::MESSAGE_INTEGRITY, 20, |m| a.key.hmac_sha1(m))
                }
                IntegrityKind::Sha256 => {
                    w.attr_over_message(attr::MESSAGE_INTEGRITY_SHA256, 32, |m| {
                        a.key.hmac_sha256(m)
                    })
                }
            };
        }
        w.fingerprint();
        w.finish();
    }

    fn learn_auth(&mut self, view: &StunView<'_>) -> bool {
        let (Some(creds), Some(realm), Some(nonce)) =
            (&self.config.credentials, view.realm(), view.nonce())
        else {
            return false;
        };
        let offered = view
            .attributes()
            .find(|(k, _)| *k == attr::PASSWORD_ALGORITHMS)
            .map(|(_, v)| v);
        let modern = nonce.starts_with(NONCE_COOKIE);
        let (algorithm, password_algorithms, integrity) = match (
            modern,
            offered.and_then(|o| choose_algorithm(o).map(|a| (a, o))),
        ) {
            (true, Some((alg, raw))) => (alg, Some(raw.to_vec()), IntegrityKind::Sha256),
            (true, None) => (PasswordAlgorithm::Md5, None, IntegrityKind::Sha256),
            (false, _) => (PasswordAlgorithm::Md5, None, IntegrityKind::Sha1),
        };
        self.auth = Some(Auth {
            realm: realm.to_vec(),
            nonce: nonce.to_vec(),
            key: LongTermKey::derive(creds, realm, algorithm),
            algorithm,
            password_algorithms,
            integrity,
        });
        true
    }

    /// A STUN message from the server. `Ok(None)`: taken, the request goes on (an
    /// authentication round); `Ok(Some(_))`: the request finished.
    pub fn handle_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        view: &StunView<'_>,
    ) -> Result<Option<Completion>, Ignored> {
        let Some(p) = self.pending else {
            return Err(Ignored::Late);
        };
        if view.transaction_id() != p.tid {
            return Err(Ignored::UnknownTransaction);
        }
        let ty = view.message_type();
        if !matches!(ty.class, Class::SuccessResponse | Class::ErrorResponse) {
            return Err(Ignored::NotAResponse);
        }
        if ty.method != p.request.method() {
            return Err(Ignored::WrongMethod);
        }
        if from != self.config.server {
            return Err(Ignored::UnexpectedSource);
        }
        if view.fingerprint() == Fingerprint::Invalid {
            return Err(Ignored::BadFingerprint);
        }
        let success = ty.class == Class::SuccessResponse;
        if p.authenticated
            && let Some(a) = &self.auth
        {
            match a.key.verify(view.as_bytes()) {
                Integrity::Valid => {}
                Integrity::Absent if !success => {}
                Integrity::Absent | Integrity::Invalid => {
                    self.rejected_integrity = self.rejected_integrity.saturating_add(1);
                    return Err(Ignored::BadIntegrity);
                }
            }
        }
        if let Some(s) = view.software() {
            self.software
                .get_or_insert_with(|| String::from_utf8_lossy(s).into_owned());
        }
        if let Some(r) = view.realm() {
            self.realm = Some(String::from_utf8_lossy(r).into_owned());
        }
        let rtt = p.last_sent.map(|t| now.saturating_duration_since(t));
        let answer = if success {
            Answer::Success(Success {
                relayed: view.xor_relayed_address().and_then(Result::ok),
                mapped: view.xor_mapped_address().and_then(Result::ok),
                lifetime: view.lifetime(),
            })
        } else {
            let (code, reason) = match view.error_code() {
                // coturn counts NUL padding into the reason phrase ("…family\0\0"); a
                // phrase is UTF-8 text (RFC 8489 §14.8), so trailing NULs are dropped.
                Some(Ok(e)) => (
                    e.code,
                    String::from_utf8_lossy(e.reason)
                        .trim_end_matches('\0')
                        .to_string(),
                ),
                _ => (0, "missing ERROR-CODE".to_string()),
            };
            let challenge = view.realm().is_some() && view.nonce().is_some();
            if code == 401 && challenge && !p.authenticated && p.request.needs_auth() {
                if self.learn_auth(view) {
                    self.restart(true, p.nonce_retries);
                    return Ok(None);
                }
            } else if code == 438
                && p.nonce_retries < MAX_NONCE_RETRIES
                && let (Some(a), Some(nonce)) = (self.auth.as_mut(), view.nonce())
            {
                self.stale_nonces = self.stale_nonces.saturating_add(1);
                a.nonce = nonce.to_vec();
                self.restart(p.authenticated, p.nonce_retries.saturating_add(1));
                return Ok(None);
            }
            Answer::Error {
                code,
                reason,
                challenge,
            }
        };
        self.pending = None;
        Ok(Some(Completion {
            request: p.request,
            answer,
            rtt,
            rtt_ambiguous: p.attempts > 1,
        }))
    }
}

/// The private sockets a session on `LocalSocket::Private(n)` needs (sockets 0..=n).
pub(crate) fn private_sockets_for(config: &SessionConfig) -> Option<PrivateSockets> {
    match config.local {
        LocalSocket::Private(n) => Some(PrivateSockets {
            count: n.saturating_add(1),
            toward: config.server,
        }),
        LocalSocket::Default => None,
    }
}

/// The result of a CreatePermission or ChannelBind step.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum StepOutcome {
    /// Success.
    Ok {
        /// RTT, seconds.
        #[serde(with = "crate::serde_util::opt_secs")]
        rtt: Option<Duration>,
    },
    /// An error response.
    Error {
        /// The code.
        code: u16,
        /// The reason phrase.
        reason: String,
    },
    /// No answer.
    Timeout,
}

impl StepOutcome {
    pub(crate) fn from_completion(c: &Completion) -> Self {
        match &c.answer {
            Answer::Success(_) => StepOutcome::Ok { rtt: c.rtt },
            Answer::Error { code, reason, .. } => StepOutcome::Error {
                code: *code,
                reason: reason.clone(),
            },
            Answer::Timeout => StepOutcome::Timeout,
        }
    }
}

/// Whether the allocation was given back (RFC 8656 §8: Refresh with LIFETIME 0).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Release {
    /// No allocation was made.
    NotNeeded,
    /// The server confirmed the deletion.
    Released,
    /// 437: the server no longer had it (a retransmitted Refresh after the deletion).
    AlreadyGone,
    /// The server refused the Refresh: the allocation may still exist until its lifetime ends.
    Failed {
        /// The code.
        code: u16,
        /// The reason phrase.
        reason: String,
    },
    /// No answer: the allocation may still exist until its lifetime ends.
    Timeout,
}

impl Release {
    /// Whether nothing is left on the server.
    pub fn is_clean(&self) -> bool {
        matches!(
            self,
            Release::NotNeeded | Release::Released | Release::AlreadyGone
        )
    }

    pub(crate) fn from_completion(c: &Completion) -> Self {
        match &c.answer {
            Answer::Success(_) => Release::Released,
            Answer::Error { code: 437, .. } => Release::AlreadyGone,
            Answer::Error { code, reason, .. } => Release::Failed {
                code: *code,
                reason: reason.clone(),
            },
            Answer::Timeout => Release::Timeout,
        }
    }
}

impl std::fmt::Display for StepOutcome {
    /// `ok`, `ok (12.3 ms)`, `refused: 403 Forbidden`, `no answer`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepOutcome::Ok { rtt: None } => f.write_str("ok"),
            StepOutcome::Ok { rtt: Some(rtt) } => {
                write!(f, "ok ({:.1} ms)", rtt.as_secs_f64() * 1e3)
            }
            StepOutcome::Error { code, reason } => write!(f, "refused: {code} {reason}"),
            StepOutcome::Timeout => f.write_str("no answer"),
        }
    }
}

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Release::NotNeeded => f.write_str("nothing to release"),
            Release::Released => f.write_str("released"),
            Release::AlreadyGone => f.write_str("already gone (437)"),
            Release::Failed { code, reason } => write!(f, "release refused: {code} {reason}"),
            Release::Timeout => f.write_str("release not confirmed (no answer)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_sessions_end_within_their_timeout() {
        let server: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let t = Duration::from_millis(1500);
        let udp = SessionConfig::bounded(server, Transport::Udp, t);
        assert_eq!(udp.local, LocalSocket::Private(0));
        assert_eq!(udp.retransmit.rc, Retransmit::default().rc);
        assert_eq!(udp.retransmit.give_up_after(), t);
        for transport in [Transport::Tcp, Transport::Tls] {
            let s = SessionConfig::bounded(server, transport, t);
            assert_eq!(s.local, LocalSocket::Default);
            assert_eq!((s.retransmit.rc, s.retransmit.give_up_after()), (1, t));
        }
    }
    use crate::turn::testkit::{REALM, creds, ids, server, session_config, t0};

    /// A session with the test credentials that has sent `request` at `now`, and an error
    /// response to that request (`method`) with `code` and `reason`, then whatever `more` writes.
    fn answered_with_error(
        now: Instant,
        request: Request,
        method: Method,
        code: u16,
        reason: &str,
        more: impl FnOnce(&mut MessageWriter<'_>),
    ) -> (TurnSession, Vec<u8>) {
        let mut s = TurnSession::new(session_config(Some(creds())), ids());
        s.start(request);
        let mut buf = Vec::new();
        let tx = s.poll_transmit(now, &mut buf).unwrap();
        let mut r = Vec::new();
        let mut w = MessageWriter::new(
            &mut r,
            MessageType::new(Class::ErrorResponse, method),
            &tx.transaction_id,
        );
        w.error_code(code, reason);
        more(&mut w);
        w.finish();
        (s, r)
    }

    #[test]
    fn modern_nonce_with_password_algorithms_uses_sha256() {
        let t = t0();
        let (mut s, r) = answered_with_error(
            t,
            Request::Allocate,
            Method::ALLOCATE,
            401,
            "Unauthorized",
            |w| {
                w.attr(attr::REALM, REALM);
                w.attr(attr::NONCE, b"obMatJos2AAABxyz");
                w.attr(attr::PASSWORD_ALGORITHMS, &[0, 1, 0, 0, 0, 2, 0, 0]);
            },
        );
        let v = StunView::parse(&r).unwrap();
        assert_eq!(s.handle_response(t, server(), &v), Ok(None));
        assert_eq!(
            s.auth_mode(),
            Some((IntegrityKind::Sha256, PasswordAlgorithm::Sha256))
        );
        let mut buf = Vec::new();
        s.poll_transmit(t, &mut buf).unwrap();
        let v = StunView::parse(&buf).unwrap();
        let kinds: Vec<u16> = v.attributes().map(|(k, _)| k).collect();
        assert!(kinds.contains(&attr::PASSWORD_ALGORITHM));
        assert!(kinds.contains(&attr::MESSAGE_INTEGRITY_SHA256));
        assert!(!kinds.contains(&attr::MESSAGE_INTEGRITY));
        let key = LongTermKey::derive(&creds(), REALM, PasswordAlgorithm::Sha256);
        assert_eq!(key.verify(&buf), Integrity::Valid);
    }

    #[test]
    fn requested_family_goes_in_allocate_only() {
        let mut config = session_config(Some(creds()));
        config.requested_family = Some(Family::Ipv6);
        let mut s = TurnSession::new(config, ids());
        let t = t0();
        let family = |buf: &[u8]| {
            StunView::parse(buf)
                .unwrap()
                .attributes()
                .find(|(k, _)| *k == attr::REQUESTED_ADDRESS_FAMILY)
                .map(|(_, v)| v.to_vec())
        };
        s.start(Request::Allocate);
        let mut buf = Vec::new();
        s.poll_transmit(t, &mut buf).unwrap();
        assert_eq!(family(&buf), Some(vec![0x02, 0, 0, 0]));
        s.start(Request::Refresh { lifetime: 0 });
        buf.clear();
        s.poll_transmit(t, &mut buf).unwrap();
        assert_eq!(
            family(&buf),
            None,
            "RFC 8656 §8.1: only dual allocations name it"
        );
        // The default session names no family: the server's default (IPv4) applies.
        let mut s = TurnSession::new(session_config(Some(creds())), ids());
        s.start(Request::Allocate);
        buf.clear();
        s.poll_transmit(t, &mut buf).unwrap();
        assert_eq!(family(&buf), None);
    }

    #[test]
    fn outcomes_read_as_words() {
        let ok = StepOutcome::Ok {
            rtt: Some(Duration::from_micros(12_340)),
        };
        assert_eq!(ok.to_string(), "ok (12.3 ms)");
        let refused = StepOutcome::Error {
            code: 403,
            reason: "Forbidden".into(),
        };
        assert_eq!(refused.to_string(), "refused: 403 Forbidden");
        assert_eq!(StepOutcome::Timeout.to_string(), "no answer");
        assert_eq!(Release::Released.to_string(), "released");
        assert_eq!(
            Release::Timeout.to_string(),
            "release not confirmed (no answer)"
        );
    }

    #[test]
    fn nul_padding_in_a_reason_phrase_is_dropped() {
        let t = t0();
        let (mut s, r) = answered_with_error(
            t,
            Request::Binding,
            Method::BINDING,
            440,
            "Unsupported address family\0\0",
            |_| {},
        );
        let v = StunView::parse(&r).unwrap();
        let c = s.handle_response(t, server(), &v).unwrap().unwrap();
        assert_eq!(
            c.answer,
            Answer::Error {
                code: 440,
                reason: "Unsupported address family".into(),
                challenge: false
            }
        );
    }
}
