//! One NAT test's Binding transaction (RFC 8489 §6) on the run's shared [`Schedule`]: it
//! retransmits one current RTO after its previous transmission, up to the schedule's count,
//! and gives up the final wait after the last one or at the budget, whichever comes first.
//! The answer is read as [`BindingTransaction`](crate::binding::BindingTransaction) reads it
//! (the same checks, the same [`BindingOutcome`]); only the timing differs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::timing::Schedule;
use crate::binding::{BindingOutcome, BindingStatus, SourceCheck, response_status, response_type};
use crate::machine::{Ignored, LocalSocket, Transmit};
use crate::stun::attr::ChangeRequest;
use crate::stun::encode::BindingRequest;
use crate::stun::{StunView, TransactionId};

/// What a test sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    /// Where to.
    pub(crate) destination: SocketAddr,
    /// From which socket.
    pub(crate) local: LocalSocket,
    /// CHANGE-REQUEST flags, RFC 5780 §7.2.
    pub(crate) change_request: Option<ChangeRequest>,
    /// Which sources an answer may come from.
    pub(crate) source_check: SourceCheck,
    /// SOFTWARE, RFC 8489 §14.14.
    pub(crate) software: Option<&'static str>,
}

/// A Binding transaction on the shared schedule.
#[derive(Debug)]
pub(crate) struct Transaction {
    tid: TransactionId,
    request: Request,
    sent: u8,
    first_sent: Option<Instant>,
    last_sent: Option<Instant>,
    outcome: Option<BindingOutcome>,
    done: bool,
    /// The budget ended it before its last transmission.
    cut: bool,
}

impl Transaction {
    pub(crate) fn new(tid: TransactionId, request: Request) -> Transaction {
        Transaction {
            tid,
            request,
            sent: 0,
            first_sent: None,
            last_sent: None,
            outcome: None,
            done: false,
            cut: false,
        }
    }

    pub(crate) fn transaction_id(&self) -> TransactionId {
        self.tid
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The socket the request leaves from (and its answers must arrive on).
    pub(crate) fn local(&self) -> LocalSocket {
        self.request.local
    }

    /// Whether the budget ended it early.
    pub(crate) fn was_cut(&self) -> bool {
        self.cut
    }

    /// Whether it has something to send at `now` (pacing aside).
    pub(crate) fn wants_transmit(&self, now: Instant, s: &Schedule) -> bool {
        if self.done || s.past_deadline(now) {
            return false;
        }
        match self.last_sent {
            None => true,
            Some(last) => self.sent < s.timing().transmissions && now >= last + s.rto(),
        }
    }

    /// When it next needs the caller once it has transmitted: the next transmission or the
    /// give-up, never past the budget. `None` when done or not yet sent (due at once).
    pub(crate) fn next_event(&self, s: &Schedule) -> Option<Instant> {
        if self.done {
            return None;
        }
        let last = self.last_sent?;
        let t = s.timing();
        let waits = if self.sent < t.transmissions {
            1
        } else {
            u32::from(t.final_wait.max(1))
        };
        let at = last + s.rto().saturating_mul(waits);
        Some(s.deadline().map_or(at, |d| at.min(d)))
    }

    /// Encode the next transmission into `buf` (the caller checked [`Self::wants_transmit`]).
    pub(crate) fn transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Transmit {
        BindingRequest {
            transaction_id: self.tid,
            software: self.request.software,
            change_request: self.request.change_request,
            response_port: None,
            fingerprint: true,
        }
        .encode(buf);
        let attempt = self.sent;
        self.sent = self.sent.saturating_add(1);
        self.first_sent.get_or_insert(now);
        self.last_sent = Some(now);
        Transmit {
            destination: self.request.destination,
            local: self.request.local,
            transaction_id: self.tid,
            attempt,
        }
    }

    /// Give up if the schedule says so: after the final wait, or at the budget.
    pub(crate) fn handle_timeout(&mut self, now: Instant, s: &Schedule) {
        if self.done {
            return;
        }
        if s.past_deadline(now) {
            self.cut = self.sent < s.timing().transmissions;
            self.finish(BindingStatus::Timeout, None, now);
            return;
        }
        if self.sent >= s.timing().transmissions && self.next_event(s).is_some_and(|at| now >= at) {
            self.finish(BindingStatus::Timeout, None, now);
        }
    }

    /// A datagram carrying this transaction's id arrived. Returns the RTT when it is a sample
    /// (answered before any retransmission: Karn's rule).
    pub(crate) fn handle_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        view: &StunView<'_>,
    ) -> Result<Option<Duration>, Ignored> {
        if view.transaction_id() != self.tid {
            return Err(Ignored::UnknownTransaction);
        }
        if self.done || self.sent == 0 {
            return Err(Ignored::Late);
        }
        response_type(view)?;
        if self.request.source_check == SourceCheck::Destination && from != self.request.destination
        {
            return Err(Ignored::UnexpectedSource);
        }
        let status = response_status(view)?;
        let sample = (self.sent == 1)
            .then(|| self.first_sent.map(|f| now.saturating_duration_since(f)))
            .flatten();
        self.finish(status, Some(from), now);
        Ok(sample)
    }

    fn finish(&mut self, status: BindingStatus, source: Option<SocketAddr>, now: Instant) {
        let rtt = match status {
            BindingStatus::Timeout => None,
            _ => self.last_sent.map(|t| now.saturating_duration_since(t)),
        };
        self.outcome = Some(BindingOutcome {
            transaction_id: self.tid,
            destination: self.request.destination,
            source,
            status,
            rtt,
            rtt_ambiguous: self.sent > 1,
            transmissions: self.sent,
        });
        self.done = true;
    }

    /// The outcome, once done (only once).
    pub(crate) fn take_outcome(&mut self) -> Option<BindingOutcome> {
        self.outcome.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::sim::t0;
    use crate::nat::timing::Timing;
    use crate::stun::attr;
    use crate::stun::{MessageType, MessageWriter};

    fn server() -> SocketAddr {
        "192.0.2.10:3478".parse().unwrap()
    }

    fn tx() -> Transaction {
        Transaction::new(
            TransactionId([7; 12]),
            Request {
                destination: server(),
                local: LocalSocket::Private(0),
                change_request: None,
                source_check: SourceCheck::Destination,
                software: None,
            },
        )
    }

    fn reply(tid: TransactionId) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_SUCCESS, &tid);
        w.xor_address(
            attr::XOR_MAPPED_ADDRESS,
            &"203.0.113.5:4000".parse().unwrap(),
        );
        w.fingerprint();
        buf
    }

    /// Step on simulated time, 1 ms at a time; the send times in ms and the give-up time.
    fn silent_run(
        s: &mut Schedule,
        mut tx: Transaction,
        change: Option<(u64, Duration)>,
    ) -> (Vec<u64>, u64) {
        let t0 = t0();
        s.start(t0);
        let mut buf = Vec::new();
        let mut sent = Vec::new();
        for ms in 0..10_000u64 {
            let now = t0 + Duration::from_millis(ms);
            if let Some((at, rtt)) = change
                && at == ms
            {
                s.udp_sample(rtt);
            }
            tx.handle_timeout(now, s);
            if tx.is_done() {
                return (sent, ms);
            }
            while tx.wants_transmit(now, s) {
                tx.transmit(now, &mut buf);
                sent.push(ms);
            }
        }
        panic!("never gave up");
    }

    #[test]
    fn blind_schedule_five_transmissions_one_rto_apart() {
        let mut s = Schedule::new(Timing::default());
        let (sent, gave_up) = silent_run(&mut s, tx(), None);
        assert_eq!(sent, vec![0, 500, 1000, 1500, 2000]);
        assert_eq!(gave_up, 2500);
    }

    #[test]
    fn a_measured_rtt_shortens_the_waits_at_once() {
        let mut s = Schedule::new(Timing::default());
        // A sub-millisecond answer from another test at 1 ms: the floor (100 ms) applies to
        // the retransmissions still to come.
        let (sent, gave_up) = silent_run(&mut s, tx(), Some((1, Duration::from_micros(300))));
        assert_eq!(sent, vec![0, 100, 200, 300, 400]);
        assert_eq!(gave_up, 500);
    }

    #[test]
    fn the_budget_cuts_a_test_short_and_says_so() {
        let mut s = Schedule::new(Timing {
            budget: Duration::from_millis(1200),
            ..Timing::default()
        });
        let mut t = tx();
        let t0 = t0();
        s.start(t0);
        let mut buf = Vec::new();
        t.transmit(t0, &mut buf);
        assert_eq!(t.next_event(&s), Some(t0 + Duration::from_millis(500)));
        t.handle_timeout(t0 + Duration::from_millis(500), &s);
        t.transmit(t0 + Duration::from_millis(500), &mut buf);
        t.transmit(t0 + Duration::from_millis(1000), &mut buf);
        // The next transmission would be at 1500 ms: the budget (1200 ms) comes first.
        assert_eq!(t.next_event(&s), Some(t0 + Duration::from_millis(1200)));
        assert!(!t.wants_transmit(t0 + Duration::from_millis(1200), &s));
        t.handle_timeout(t0 + Duration::from_millis(1200), &s);
        assert!(t.is_done() && t.was_cut());
        let o = t.take_outcome().unwrap();
        assert_eq!((o.status, o.transmissions), (BindingStatus::Timeout, 3));
    }

    #[test]
    fn answers_are_samples_only_before_a_retransmission() {
        let s = Schedule::new(Timing::default());
        let t0 = t0();
        let mut buf = Vec::new();
        let mut t = tx();
        t.transmit(t0, &mut buf);
        let r = reply(t.transaction_id());
        let view = StunView::parse(&r).unwrap();
        assert_eq!(
            t.handle_response(t0, "192.0.2.99:1".parse().unwrap(), &view),
            Err(Ignored::UnexpectedSource)
        );
        let sample = t.handle_response(t0 + Duration::from_millis(7), server(), &view);
        assert_eq!(sample, Ok(Some(Duration::from_millis(7))));
        assert_eq!(
            t.handle_response(t0, server(), &view),
            Err(Ignored::Late),
            "a duplicate"
        );
        let o = t.take_outcome().unwrap();
        assert!(matches!(o.status, BindingStatus::Success(_)));
        assert!(!o.rtt_ambiguous && s.rto() == Duration::from_millis(500));

        let mut again = tx();
        again.transmit(t0, &mut buf);
        again.transmit(t0 + Duration::from_millis(500), &mut buf);
        let sample = again.handle_response(t0 + Duration::from_millis(520), server(), &view);
        assert_eq!(sample, Ok(None), "Karn: after a retransmission, no sample");
        let o = again.take_outcome().unwrap();
        assert!(o.rtt_ambiguous);
        assert_eq!(o.rtt, Some(Duration::from_millis(20)));
    }
}
