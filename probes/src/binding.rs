//! One STUN Binding transaction as a sans-IO state machine, RFC 8489 §6.
//!
//! The transaction sends a Binding request, retransmits it on the RFC 8489 §6.2.1 schedule
//! (over UDP), and ends with the first acceptable response or a timeout. RTT follows Karn's
//! algorithm (RFC 8489 §6.2.1 refers to RFC 6298): a response to a retransmitted request cannot
//! be matched to one transmission, so its RTT is measured from the latest transmission and
//! flagged `ambiguous`; statistics leave ambiguous samples out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::machine::{Ignored, LocalSocket, Probe, Retransmit, Transmit};
use crate::stun::attr::ChangeRequest;
use crate::stun::encode::BindingRequest;
use crate::stun::view::{Fingerprint, StunView};
use crate::stun::{Class, Method, TransactionId};

/// Which source addresses a response may come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceCheck {
    /// Only the address the request went to (RFC 8489 §6.3.1 for UDP).
    #[default]
    Destination,
    /// Any address: a CHANGE-REQUEST reply (RFC 5780 §4.4) legitimately comes from elsewhere.
    Any,
}

/// How a Binding transaction is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindingConfig {
    /// Retransmission schedule. Over a reliable transport set `rc` to 1.
    pub retransmit: Retransmit,
    /// SOFTWARE to send, RFC 8489 §14.14.
    pub software: Option<&'static str>,
    /// CHANGE-REQUEST flags, RFC 5780 §7.2.
    pub change_request: Option<ChangeRequest>,
    /// RESPONSE-PORT, RFC 5780 §7.5: ask the server to answer to this port on our IP (the
    /// response then arrives on whichever local socket owns that mapping).
    pub response_port: Option<u16>,
    /// Accepted response sources.
    pub source_check: SourceCheck,
    /// Local socket to send from.
    pub local: LocalSocket,
}

impl Default for BindingConfig {
    fn default() -> Self {
        Self {
            retransmit: Retransmit::default(),
            software: Some(concat!("stunmap ", env!("CARGO_PKG_VERSION"))),
            change_request: None,
            response_port: None,
            source_check: SourceCheck::Destination,
            local: LocalSocket::Default,
        }
    }
}

/// What a Binding success response said, RFC 8489 §14 and RFC 5780 §7.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BindingResponse {
    /// XOR-MAPPED-ADDRESS (RFC 8489 §14.2): the reflexive transport address.
    pub xor_mapped: Option<SocketAddr>,
    /// MAPPED-ADDRESS (RFC 8489 §14.1), sent by old servers; a value different from the
    /// XOR form betrays an ALG rewriting addresses in payloads.
    pub mapped: Option<SocketAddr>,
    /// OTHER-ADDRESS (RFC 5780 §7.4).
    pub other_address: Option<SocketAddr>,
    /// RESPONSE-ORIGIN (RFC 5780 §7.3).
    pub response_origin: Option<SocketAddr>,
    /// SOFTWARE (RFC 8489 §14.14), lossy UTF-8.
    pub software: Option<String>,
    /// Whether FINGERPRINT was present (a present-but-wrong one is never accepted).
    pub fingerprint: bool,
    /// A comprehension-required attribute the parser does not know (reported, not fatal).
    pub unknown_attribute: Option<u16>,
    /// XOR-MAPPED-ADDRESS or MAPPED-ADDRESS was present but could not be decoded (RFC 8489
    /// §14.1, §14.2): which one and why. Such an answer carries no mapping to trust.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub malformed_address: Option<String>,
}

impl BindingResponse {
    /// The reflexive address: XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS; none from a response
    /// whose address attribute is malformed.
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        if self.malformed_address.is_some() {
            return None;
        }
        self.xor_mapped.or(self.mapped)
    }
}

/// The first of XOR-MAPPED-ADDRESS and MAPPED-ADDRESS that is present and cannot be decoded.
fn malformed_address(view: &StunView<'_>) -> Option<String> {
    let bad = |name: &str, a: Option<Result<SocketAddr, crate::stun::view::ParseError>>| match a {
        Some(Err(e)) => Some(format!("{name}: {e}")),
        _ => None,
    };
    bad("XOR-MAPPED-ADDRESS", view.xor_mapped_address())
        .or_else(|| bad("MAPPED-ADDRESS", view.mapped_address()))
}

/// How a Binding transaction ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum BindingStatus {
    /// A success response.
    Success(BindingResponse),
    /// An error response, RFC 8489 §14.8.
    Error {
        /// 300–699 (0 when the ERROR-CODE attribute was missing or malformed).
        code: u16,
        /// Reason phrase, lossy UTF-8.
        reason: String,
    },
    /// No acceptable response before the schedule ran out.
    Timeout,
}

/// The result of one Binding transaction.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BindingOutcome {
    /// The transaction id used.
    #[serde(serialize_with = "crate::serde_util::display")]
    pub transaction_id: TransactionId,
    /// Where the request went.
    pub destination: SocketAddr,
    /// Where the accepted response came from.
    pub source: Option<SocketAddr>,
    /// Success, error or timeout.
    pub status: BindingStatus,
    /// Round-trip time (see the module docs for what it measures), seconds in JSON.
    #[serde(with = "crate::serde_util::opt_secs")]
    pub rtt: Option<Duration>,
    /// True when the response followed a retransmission (Karn's algorithm).
    pub rtt_ambiguous: bool,
    /// Transmissions made (1 + retransmissions).
    pub transmissions: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not yet sent.
    Idle,
    /// Sent `attempts` times, waiting.
    Waiting,
    /// Finished; output held or taken.
    Done,
}

/// A Binding transaction. Small on purpose (the engine keeps up to hundreds of thousands in
/// flight; BENCHMARKS.md has the measured bytes per transaction): the request is re-encoded on
/// each retransmission rather than stored, the configuration is shared, and the time of the
/// latest transmission is kept as an offset from the first.
#[derive(Debug)]
pub struct BindingTransaction {
    tid: TransactionId,
    destination: SocketAddr,
    config: Arc<BindingConfig>,
    state: State,
    attempts: u8,
    first_sent: Option<Instant>,
    /// Microseconds from `first_sent` to the latest transmission (saturating at ~71 minutes).
    last_sent_offset_us: u32,
    output: Option<Box<BindingOutcome>>,
}

impl BindingTransaction {
    /// A transaction to `destination` with the caller's random `tid` (RFC 8489 §5: uniformly
    /// random).
    pub fn new(tid: TransactionId, destination: SocketAddr, config: BindingConfig) -> Self {
        Self::with_shared_config(tid, destination, Arc::new(config))
    }

    /// The same with a configuration shared by many transactions (what a large run uses).
    pub fn with_shared_config(
        tid: TransactionId,
        destination: SocketAddr,
        config: Arc<BindingConfig>,
    ) -> Self {
        Self {
            tid,
            destination,
            config,
            state: State::Idle,
            attempts: 0,
            first_sent: None,
            last_sent_offset_us: 0,
            output: None,
        }
    }

    fn last_sent(&self) -> Option<Instant> {
        let first = self.first_sent?;
        first.checked_add(Duration::from_micros(u64::from(self.last_sent_offset_us)))
    }

    /// The transaction id.
    pub fn transaction_id(&self) -> TransactionId {
        self.tid
    }

    /// Where the request goes.
    pub fn destination(&self) -> SocketAddr {
        self.destination
    }

    fn finish(&mut self, status: BindingStatus, source: Option<SocketAddr>, now: Instant) {
        let ambiguous = self.attempts > 1;
        let rtt = match status {
            BindingStatus::Timeout => None,
            _ => self.last_sent().map(|t| now.saturating_duration_since(t)),
        };
        self.output = Some(Box::new(BindingOutcome {
            transaction_id: self.tid,
            destination: self.destination,
            source,
            status,
            rtt,
            rtt_ambiguous: ambiguous,
            transmissions: self.attempts,
        }));
        self.state = State::Done;
    }

    fn due(&self) -> Option<Instant> {
        self.config
            .retransmit
            .next_due(self.first_sent?, self.attempts)
    }
}

/// Whether `view` is a Binding response (success or error): the checks every Binding
/// transaction makes before it looks at the source address (RFC 8489 §6.3).
pub(crate) fn response_type(view: &StunView<'_>) -> Result<(), Ignored> {
    let ty = view.message_type();
    if !matches!(ty.class, Class::SuccessResponse | Class::ErrorResponse) {
        return Err(Ignored::NotAResponse);
    }
    if ty.method != Method::BINDING {
        return Err(Ignored::WrongMethod);
    }
    Ok(())
}

/// What a Binding response says, once [`response_type`] and the source check passed: the
/// FINGERPRINT check (RFC 8489 §14.7), then the success attributes (RFC 8489 §14, RFC 5780 §7)
/// or the ERROR-CODE (RFC 8489 §14.8).
pub(crate) fn response_status(view: &StunView<'_>) -> Result<BindingStatus, Ignored> {
    let fingerprint = match view.fingerprint() {
        Fingerprint::Invalid => return Err(Ignored::BadFingerprint),
        Fingerprint::Valid => true,
        Fingerprint::Absent => false,
    };
    let status = if view.message_type().class == Class::SuccessResponse {
        BindingStatus::Success(BindingResponse {
            xor_mapped: view.xor_mapped_address().and_then(Result::ok),
            mapped: view.mapped_address().and_then(Result::ok),
            other_address: view.other_address().and_then(Result::ok),
            response_origin: view.response_origin().and_then(Result::ok),
            software: view
                .software()
                .map(|s| String::from_utf8_lossy(s).into_owned()),
            fingerprint,
            unknown_attribute: view.unknown_comprehension_required(),
            malformed_address: malformed_address(view),
        })
    } else {
        match view.error_code() {
            Some(Ok(e)) => BindingStatus::Error {
                code: e.code,
                reason: String::from_utf8_lossy(e.reason).into_owned(),
            },
            _ => BindingStatus::Error {
                code: 0,
                reason: "missing ERROR-CODE".into(),
            },
        }
    };
    Ok(status)
}

impl Probe for BindingTransaction {
    type Output = BindingOutcome;

    fn handle_input(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), Ignored> {
        let view = StunView::parse(data).map_err(Ignored::Malformed)?;
        if view.transaction_id() != self.tid {
            return Err(Ignored::UnknownTransaction);
        }
        if self.state != State::Waiting {
            return Err(Ignored::Late);
        }
        response_type(&view)?;
        if self.config.source_check == SourceCheck::Destination && from != self.destination {
            return Err(Ignored::UnexpectedSource);
        }
        let status = response_status(&view)?;
        self.finish(status, Some(from), now);
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.state != State::Waiting {
            return;
        }
        let (Some(first), r) = (self.first_sent, &self.config.retransmit) else {
            return;
        };
        if now.saturating_duration_since(first) >= r.give_up_after() {
            self.finish(BindingStatus::Timeout, None, now);
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let send = match self.state {
            State::Idle => true,
            State::Waiting => {
                self.attempts < self.config.retransmit.rc
                    && self.due().is_some_and(|due| now >= due)
                    && self.first_sent.is_some_and(|f| {
                        now.saturating_duration_since(f) < self.config.retransmit.give_up_after()
                    })
            }
            State::Done => false,
        };
        if !send {
            return None;
        }
        BindingRequest {
            transaction_id: self.tid,
            software: self.config.software,
            change_request: self.config.change_request,
            response_port: self.config.response_port,
            fingerprint: true,
        }
        .encode(buf);
        let attempt = self.attempts;
        self.attempts = self.attempts.saturating_add(1);
        let first = *self.first_sent.get_or_insert(now);
        self.last_sent_offset_us =
            u32::try_from(now.saturating_duration_since(first).as_micros()).unwrap_or(u32::MAX);
        self.state = State::Waiting;
        Some(Transmit {
            destination: self.destination,
            local: self.config.local,
            transaction_id: self.tid,
            attempt,
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Idle | State::Done => None,
            State::Waiting => self.due(),
        }
    }

    fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn take_output(&mut self) -> Option<BindingOutcome> {
        self.output.take().map(|b| *b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::attr;
    use crate::stun::{MessageType, MessageWriter};

    fn server() -> SocketAddr {
        "192.0.2.10:3478".parse().unwrap()
    }

    fn reply(tid: TransactionId, mapped: SocketAddr) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_SUCCESS, &tid);
        w.xor_address(attr::XOR_MAPPED_ADDRESS, &mapped);
        w.address(attr::OTHER_ADDRESS, &"192.0.2.11:3479".parse().unwrap());
        w.software("peer");
        w.fingerprint();
        buf
    }

    fn quick() -> BindingConfig {
        BindingConfig {
            retransmit: Retransmit {
                rto: Duration::from_millis(100),
                rc: 3,
                rm: 4,
                deadline: None,
            },
            ..BindingConfig::default()
        }
    }

    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    /// A transaction `tid` to [`server`] with `cfg` whose first request went out at `now`, and
    /// that request.
    fn sent(tid: TransactionId, cfg: BindingConfig, now: Instant) -> (BindingTransaction, Vec<u8>) {
        let mut tx = BindingTransaction::new(tid, server(), cfg);
        let mut buf = Vec::new();
        tx.poll_transmit(now, &mut buf).unwrap();
        (tx, buf)
    }

    /// A success whose XOR-MAPPED-ADDRESS cannot be decoded is an answer without a mapping,
    /// and says why.
    #[test]
    fn a_malformed_mapped_address_is_no_mapping() {
        let t0 = t0();
        let tid = TransactionId([2; 12]);
        let (mut tx, _) = sent(tid, quick(), t0);
        let mut resp = Vec::new();
        let mut w = MessageWriter::new(&mut resp, MessageType::BINDING_SUCCESS, &tid);
        // Family 0x01 (IPv4) with a value of five bytes.
        w.attr(attr::XOR_MAPPED_ADDRESS, &[0, 1, 0x12, 0x34, 0x56]);
        w.address(attr::MAPPED_ADDRESS, &"203.0.113.9:4000".parse().unwrap());
        w.finish();
        tx.handle_input(t0 + Duration::from_millis(5), server(), &resp)
            .unwrap();
        let out = tx.take_output().unwrap();
        let BindingStatus::Success(r) = out.status else {
            panic!("{out:?}");
        };
        assert!(r.xor_mapped.is_none());
        assert_eq!(r.mapped_address(), None, "{r:?}");
        let why = r.malformed_address.unwrap();
        assert!(why.starts_with("XOR-MAPPED-ADDRESS: "), "{why}");
    }

    #[test]
    fn answered_on_first_try() {
        let t0 = t0();
        let tid = TransactionId([1; 12]);
        let mut tx = BindingTransaction::new(tid, server(), quick());
        let mut buf = Vec::new();
        let t = tx.poll_transmit(t0, &mut buf).unwrap();
        assert_eq!(t.attempt, 0);
        assert_eq!(t.destination, server());
        assert!(StunView::parse(&buf).is_ok());
        assert!(
            tx.poll_transmit(t0, &mut buf).is_none(),
            "nothing more is due yet"
        );
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_millis(100)));

        let mapped: SocketAddr = "203.0.113.5:40000".parse().unwrap();
        tx.handle_input(
            t0 + Duration::from_millis(42),
            server(),
            &reply(tid, mapped),
        )
        .unwrap();
        assert!(tx.is_done());
        assert_eq!(tx.poll_timeout(), None);
        let out = tx.take_output().unwrap();
        assert_eq!(out.rtt, Some(Duration::from_millis(42)));
        assert!(!out.rtt_ambiguous);
        assert_eq!(out.transmissions, 1);
        let BindingStatus::Success(r) = out.status else {
            panic!("not success")
        };
        assert_eq!(r.mapped_address(), Some(mapped));
        assert_eq!(r.other_address, Some("192.0.2.11:3479".parse().unwrap()));
        assert_eq!(r.software.as_deref(), Some("peer"));
        assert!(r.fingerprint);
        assert!(tx.take_output().is_none());
    }

    #[test]
    fn retransmits_on_schedule_then_times_out() {
        let t0 = t0();
        let mut tx = BindingTransaction::new(TransactionId([2; 12]), server(), quick());
        let mut buf = Vec::new();
        let mut sent_at = Vec::new();
        let mut now = t0;
        // Step simulated time 1 ms at a time; record when each transmission happens.
        for _ in 0..2000 {
            while let Some(t) = tx.poll_transmit(now, &mut buf) {
                sent_at.push(((now - t0).as_millis() as u64, t.attempt));
            }
            if tx.poll_timeout().is_some_and(|d| now >= d) {
                tx.handle_timeout(now);
            }
            if tx.is_done() {
                break;
            }
            now += Duration::from_millis(1);
        }
        // RTO 100, Rc 3: 0, 100, 300; give up Rm·RTO = 400 ms after the last: 700.
        assert_eq!(sent_at, vec![(0, 0), (100, 1), (300, 2)]);
        assert_eq!(now - t0, Duration::from_millis(700));
        let out = tx.take_output().unwrap();
        assert_eq!(out.status, BindingStatus::Timeout);
        assert_eq!(out.transmissions, 3);
        assert_eq!(out.rtt, None);
    }

    #[test]
    fn deadline_cuts_the_schedule_short() {
        let t0 = t0();
        let cfg = BindingConfig {
            retransmit: Retransmit {
                rto: Duration::from_millis(100),
                rc: 7,
                rm: 16,
                deadline: Some(Duration::from_millis(250)),
            },
            ..BindingConfig::default()
        };
        let mut tx = BindingTransaction::new(TransactionId([2; 12]), server(), cfg);
        let mut buf = Vec::new();
        assert!(tx.poll_transmit(t0, &mut buf).is_some());
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_millis(100)));
        assert!(
            tx.poll_transmit(t0 + Duration::from_millis(100), &mut buf)
                .is_some()
        );
        // Next would be at 300 ms, past the 250 ms deadline: the timeout is the deadline.
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_millis(250)));
        tx.handle_timeout(t0 + Duration::from_millis(250));
        assert!(tx.is_done());
        assert_eq!(tx.take_output().unwrap().transmissions, 2);
    }

    #[test]
    fn retransmitted_answer_is_ambiguous_and_timed_from_last_send() {
        let t0 = t0();
        let tid = TransactionId([3; 12]);
        let (mut tx, mut buf) = sent(tid, quick(), t0);
        tx.handle_timeout(t0 + Duration::from_millis(100));
        tx.poll_transmit(t0 + Duration::from_millis(100), &mut buf)
            .unwrap();
        let m: SocketAddr = "203.0.113.5:1".parse().unwrap();
        tx.handle_input(t0 + Duration::from_millis(130), server(), &reply(tid, m))
            .unwrap();
        let out = tx.take_output().unwrap();
        assert!(out.rtt_ambiguous);
        assert_eq!(out.rtt, Some(Duration::from_millis(30)));
        assert_eq!(out.transmissions, 2);
    }

    #[test]
    fn hostile_replies_are_ignored_and_the_transaction_still_completes() {
        let t0 = t0();
        let tid = TransactionId([4; 12]);
        let (mut tx, buf) = sent(tid, quick(), t0);
        let m: SocketAddr = "203.0.113.5:1".parse().unwrap();
        let good = reply(tid, m);

        assert!(matches!(
            tx.handle_input(t0, server(), b"junk"),
            Err(Ignored::Malformed(_))
        ));
        assert_eq!(
            tx.handle_input(t0, server(), &reply(TransactionId([5; 12]), m)),
            Err(Ignored::UnknownTransaction)
        );
        assert_eq!(
            tx.handle_input(t0, "192.0.2.99:3478".parse().unwrap(), &good),
            Err(Ignored::UnexpectedSource)
        );
        let mut bad_fp = good.clone();
        let n = bad_fp.len();
        bad_fp[n - 1] ^= 0xFF;
        assert_eq!(
            tx.handle_input(t0, server(), &bad_fp),
            Err(Ignored::BadFingerprint)
        );
        // The request itself reflected back is not a response.
        assert_eq!(
            tx.handle_input(t0, server(), &buf),
            Err(Ignored::NotAResponse)
        );
        assert!(!tx.is_done());

        tx.handle_input(t0, server(), &good).unwrap();
        assert_eq!(tx.handle_input(t0, server(), &good), Err(Ignored::Late));
        assert!(matches!(
            tx.take_output().unwrap().status,
            BindingStatus::Success(_)
        ));
    }

    #[test]
    fn error_response_is_reported() {
        let t0 = t0();
        let tid = TransactionId([6; 12]);
        let (mut tx, _) = sent(tid, quick(), t0);
        let mut e = Vec::new();
        let mut w = MessageWriter::new(&mut e, MessageType::BINDING_ERROR, &tid);
        w.error_code(420, "Unknown Attribute");
        w.fingerprint();
        tx.handle_input(t0, server(), &e).unwrap();
        assert_eq!(
            tx.take_output().unwrap().status,
            BindingStatus::Error {
                code: 420,
                reason: "Unknown Attribute".into()
            }
        );
    }

    #[test]
    fn change_request_reply_from_other_address_accepted_when_allowed() {
        let t0 = t0();
        let tid = TransactionId([7; 12]);
        let cfg = BindingConfig {
            change_request: Some(ChangeRequest {
                change_ip: true,
                change_port: true,
            }),
            source_check: SourceCheck::Any,
            ..quick()
        };
        let (mut tx, buf) = sent(tid, cfg, t0);
        let v = StunView::parse(&buf).unwrap();
        let cr = v
            .attributes()
            .find(|(k, _)| *k == attr::CHANGE_REQUEST)
            .unwrap()
            .1;
        assert_eq!(ChangeRequest::from_value(cr).unwrap().to_u32(), 6);
        let other: SocketAddr = "192.0.2.11:3479".parse().unwrap();
        tx.handle_input(t0, other, &reply(tid, "203.0.113.5:1".parse().unwrap()))
            .unwrap();
        assert_eq!(tx.take_output().unwrap().source, Some(other));
    }
}
