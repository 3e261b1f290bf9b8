//! A scripted TURN server and the settings the TURN probes' unit tests share.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::Transport;
use crate::machine::{LocalSocket, Retransmit};
use crate::stun::view::StunView;
use crate::stun::{Class, MessageType, MessageWriter, Method, TransactionIdSource, attr};
use crate::turn::auth::{Credentials, Integrity, LongTermKey, Password, PasswordAlgorithm};
use crate::turn::session::SessionConfig;

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
            let mut w =
                MessageWriter::new(out, MessageType::new(Class::ErrorResponse, ty.method), &tid);
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

/// Transaction ids for a test probe.
pub(crate) fn ids() -> TransactionIdSource {
    TransactionIdSource::new([7; 16])
}

/// A UDP session on private socket 0 with a short retransmission schedule (RTO 100 ms, 3
/// transmissions).
pub(crate) fn session_config(creds: Option<Credentials>) -> SessionConfig {
    let mut session = SessionConfig::new(server(), Transport::Udp, LocalSocket::Private(0));
    session.credentials = creds;
    session.retransmit = Retransmit {
        rto: Duration::from_millis(100),
        rc: 3,
        rm: 4,
        deadline: None,
    };
    session
}
