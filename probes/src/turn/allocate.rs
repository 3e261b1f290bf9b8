//! The TURN control session (one request at a time, with the long-term credential mechanism)
//! and the Allocate probe built on it.
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
//!
//! [`AllocateProbe`] runs Allocate (RFC 8656 §7), optionally CreatePermission (§10) and
//! ChannelBind (§12) toward its own reflexive address, and always ends with Refresh LIFETIME 0
//! (§8) when an allocation was made — on success, on error and on cancellation. A leaked
//! allocation would hold a relay port on the server for its whole lifetime.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::TidSource;
use super::auth::{
    Credentials, Integrity, IntegrityKind, LongTermKey, NONCE_COOKIE, PasswordAlgorithm,
    choose_algorithm,
};
use crate::machine::{Ignored, LocalSocket, PrivateSockets, Probe, Retransmit, Transmit};
use crate::stun::view::{Fingerprint, StunView};
use crate::stun::{Class, MessageType, MessageWriter, Method, TransactionId, attr};
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
    ids: TidSource,
    auth: Option<Auth>,
    pending: Option<Pending>,
    software: Option<String>,
    realm: Option<String>,
    stale_nonces: u32,
    rejected_integrity: u32,
}

impl TurnSession {
    /// A session with no request outstanding.
    pub fn new(config: SessionConfig, ids: TidSource) -> Self {
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
        let first = p.first_sent?;
        let r = &self.config.retransmit;
        let give_up = r.give_up_after();
        match r.offset(p.attempts) {
            Some(at) if p.attempts < r.rc && at < give_up => first.checked_add(at),
            _ => first.checked_add(give_up),
        }
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
        if p.authenticated {
            if let (Some(a), Some(c)) = (&self.auth, &self.config.credentials) {
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
        if p.authenticated {
            if let Some(a) = &self.auth {
                match a.key.verify(view.as_bytes()) {
                    Integrity::Valid => {}
                    Integrity::Absent if !success => {}
                    Integrity::Absent | Integrity::Invalid => {
                        self.rejected_integrity = self.rejected_integrity.saturating_add(1);
                        return Err(Ignored::BadIntegrity);
                    }
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
            } else if code == 438 && p.nonce_retries < MAX_NONCE_RETRIES {
                if let (Some(a), Some(nonce)) = (self.auth.as_mut(), view.nonce()) {
                    self.stale_nonces = self.stale_nonces.saturating_add(1);
                    a.nonce = nonce.to_vec();
                    self.restart(p.authenticated, p.nonce_retries.saturating_add(1));
                    return Ok(None);
                }
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
    fn from_completion(c: &Completion) -> Self {
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
    pub fn new(config: AllocateConfig, ids: TidSource) -> Self {
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
        if self.phase != Phase::Done || self.output_taken {
            return None;
        }
        self.output_taken = true;
        Some(self.report.clone())
    }

    /// Cancellation: an allocation that exists is released at once; an Allocate still in
    /// flight is waited for (the server may have made the allocation) and released if it
    /// succeeds; otherwise there is nothing to clean up.
    fn private_sockets(&self) -> Option<PrivateSockets> {
        private_sockets_for(self.session.config())
    }

    fn cancel(&mut self, _now: Instant) -> bool {
        self.report.cancelled = true;
        match self.phase {
            Phase::Allocating => !self.session.is_idle(),
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
pub(crate) mod tests {
    use super::*;
    use crate::turn::auth::Password;

    pub(crate) const USER: &str = "test";
    pub(crate) const PASS: &str = "secret";
    pub(crate) const REALM: &[u8] = b"lab";

    pub(crate) fn server() -> SocketAddr {
        "192.0.2.1:3478".parse().unwrap()
    }

    pub(crate) fn creds() -> Credentials {
        Credentials::new(USER, Password::new(PASS))
    }

    /// A scripted TURN server for tests: checks MESSAGE-INTEGRITY with the right key, answers
    /// 401 to unauthenticated requests, 438 when told to, and success otherwise.
    #[derive(Debug)]
    pub(crate) struct FakeServer {
        pub(crate) nonce: Vec<u8>,
        pub(crate) stale_next: u32,
        pub(crate) password: &'static str,
        pub(crate) allocated: bool,
        pub(crate) relayed: SocketAddr,
        pub(crate) mapped: SocketAddr,
        pub(crate) log: Vec<(Method, Option<u16>)>,
        pub(crate) fail_allocate: Option<u16>,
        pub(crate) sign: bool,
    }

    impl FakeServer {
        pub(crate) fn new() -> Self {
            Self {
                nonce: b"n1".to_vec(),
                stale_next: 0,
                password: PASS,
                allocated: false,
                relayed: "192.0.2.1:50000".parse().unwrap(),
                mapped: "203.0.113.9:40000".parse().unwrap(),
                log: Vec::new(),
                fail_allocate: None,
                sign: true,
            }
        }

        fn key(&self) -> LongTermKey {
            LongTermKey::derive(
                &Credentials::new(USER, Password::new(self.password)),
                REALM,
                PasswordAlgorithm::Md5,
            )
        }

        /// Answer one request (None for indications).
        pub(crate) fn answer(&mut self, req: &[u8]) -> Option<Vec<u8>> {
            let v = StunView::parse(req).unwrap();
            let ty = v.message_type();
            if ty.class != Class::Request {
                return None;
            }
            let tid = v.transaction_id();
            let mut out = Vec::new();
            let err = |out: &mut Vec<u8>, code: u16, nonce: &[u8], key: Option<&LongTermKey>| {
                let mut w = MessageWriter::new(
                    out,
                    MessageType::new(Class::ErrorResponse, ty.method),
                    &tid,
                );
                w.error_code(code, "err");
                w.attr(attr::REALM, REALM);
                w.attr(attr::NONCE, nonce);
                w.software("fake");
                if let Some(k) = key {
                    w.attr_over_message(attr::MESSAGE_INTEGRITY, 20, |m| k.hmac_sha1(m));
                }
                w.fingerprint();
            };
            if ty.method == Method::BINDING {
                let mut w = MessageWriter::new(
                    &mut out,
                    MessageType::new(Class::SuccessResponse, ty.method),
                    &tid,
                );
                w.xor_address(attr::XOR_MAPPED_ADDRESS, &self.mapped);
                w.fingerprint();
                self.log.push((ty.method, None));
                return Some(out);
            }
            if !v.has_message_integrity() {
                self.log.push((ty.method, Some(401)));
                err(&mut out, 401, &self.nonce.clone(), None);
                return Some(out);
            }
            if self.key().verify(req) != Integrity::Valid {
                self.log.push((ty.method, Some(401)));
                err(&mut out, 401, &self.nonce.clone(), None);
                return Some(out);
            }
            if self.stale_next > 0 || v.nonce() != Some(&self.nonce[..]) {
                self.stale_next = self.stale_next.saturating_sub(1);
                self.nonce.push(b'x');
                self.log.push((ty.method, Some(438)));
                err(&mut out, 438, &self.nonce.clone(), None);
                return Some(out);
            }
            let key = self.key();
            if ty.method == Method::ALLOCATE {
                if let Some(code) = self.fail_allocate {
                    self.log.push((ty.method, Some(code)));
                    err(&mut out, code, &self.nonce.clone(), Some(&key));
                    return Some(out);
                }
                self.allocated = true;
            }
            if ty.method == Method::REFRESH && v.lifetime() == Some(0) {
                if !self.allocated {
                    self.log.push((ty.method, Some(437)));
                    err(&mut out, 437, &self.nonce.clone(), Some(&key));
                    return Some(out);
                }
                self.allocated = false;
            }
            self.log.push((ty.method, None));
            let mut w = MessageWriter::new(
                &mut out,
                MessageType::new(Class::SuccessResponse, ty.method),
                &tid,
            );
            if ty.method == Method::ALLOCATE {
                w.xor_address(attr::XOR_RELAYED_ADDRESS, &self.relayed);
                w.xor_address(attr::XOR_MAPPED_ADDRESS, &self.mapped);
                w.u32_attr(attr::LIFETIME, 600);
            }
            if ty.method == Method::REFRESH {
                w.u32_attr(attr::LIFETIME, v.lifetime().unwrap_or(600));
            }
            w.software("fake");
            if self.sign {
                w.attr_over_message(attr::MESSAGE_INTEGRITY, 20, |m| key.hmac_sha1(m));
            }
            w.fingerprint();
            Some(out)
        }
    }

    #[allow(clippy::disallowed_methods)]
    pub(crate) fn t0() -> Instant {
        Instant::now()
    }

    pub(crate) fn config(creds: Option<Credentials>) -> AllocateConfig {
        let mut session = SessionConfig::new(server(), Transport::Udp, LocalSocket::Private(0));
        session.credentials = creds;
        session.retransmit = Retransmit {
            rto: Duration::from_millis(100),
            rc: 3,
            rm: 4,
            deadline: None,
        };
        AllocateConfig {
            session,
            exercise: true,
        }
    }

    /// Run a probe against the fake server on simulated time, with `lose` deciding whether
    /// the n-th datagram (either way) is dropped. Returns the output.
    pub(crate) fn drive(
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

    fn ids() -> TidSource {
        TidSource::new([7; 16])
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
        let mut p = AllocateProbe::new(config(Some(creds())), ids());
        let out = drive(&mut p, &mut srv, None, |_| false);
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
        let mut p = AllocateProbe::new(config(Some(creds())), ids());
        let out = drive(&mut p, &mut srv, None, |_| false);
        assert_eq!(out.status, AllocateStatus::Allocated);
        assert_eq!(out.stale_nonce_retries, 2);
        assert_eq!(out.release, Release::Released);

        let mut srv = FakeServer::new();
        srv.stale_next = 100;
        let mut p = AllocateProbe::new(config(Some(creds())), ids());
        let out = drive(&mut p, &mut srv, None, |_| false);
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
            let mut p = AllocateProbe::new(config(Some(creds())), ids());
            let out = drive(&mut p, &mut srv, None, |_| false);
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
        let mut p = AllocateProbe::new(config(Some(creds())), ids());
        let out = drive(&mut p, &mut srv, None, |_| false);
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

    #[test]
    fn modern_nonce_with_password_algorithms_uses_sha256() {
        let mut s = TurnSession::new(config(Some(creds())).session, ids());
        s.start(Request::Allocate);
        let t = t0();
        let mut buf = Vec::new();
        let tx = s.poll_transmit(t, &mut buf).unwrap();
        let mut r = Vec::new();
        let mut w = MessageWriter::new(
            &mut r,
            MessageType::new(Class::ErrorResponse, Method::ALLOCATE),
            &tx.transaction_id,
        );
        w.error_code(401, "Unauthorized");
        w.attr(attr::REALM, REALM);
        w.attr(attr::NONCE, b"obMatJos2AAABxyz");
        w.attr(attr::PASSWORD_ALGORITHMS, &[0, 1, 0, 0, 0, 2, 0, 0]);
        w.finish();
        let v = StunView::parse(&r).unwrap();
        assert_eq!(s.handle_response(t, server(), &v), Ok(None));
        assert_eq!(
            s.auth_mode(),
            Some((IntegrityKind::Sha256, PasswordAlgorithm::Sha256))
        );
        buf.clear();
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
        let mut config = config(Some(creds())).session;
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
        let mut s = TurnSession::new(config_default(), ids());
        s.start(Request::Allocate);
        buf.clear();
        s.poll_transmit(t, &mut buf).unwrap();
        assert_eq!(family(&buf), None);
    }

    fn config_default() -> SessionConfig {
        config(Some(creds())).session
    }

    #[test]
    fn nul_padding_in_a_reason_phrase_is_dropped() {
        let mut s = TurnSession::new(config_default(), ids());
        s.start(Request::Binding);
        let t = t0();
        let mut buf = Vec::new();
        let tx = s.poll_transmit(t, &mut buf).unwrap();
        let mut r = Vec::new();
        let mut w = MessageWriter::new(
            &mut r,
            MessageType::new(Class::ErrorResponse, Method::BINDING),
            &tx.transaction_id,
        );
        w.error_code(440, "Unsupported address family\0\0");
        w.finish();
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
