//! The pair session's TURN side: the allocation on UDP or TCP, its permissions, the relayed
//! data (Send/Data indications, RFC 8656 §11) and its release (Refresh with LIFETIME 0,
//! RFC 8656 §7.2) on every path.

use super::*;

/// 16 bytes for another id source, from two ids of `ids`.
pub(super) fn seed16(ids: &mut TransactionIdSource) -> [u8; 16] {
    let (a, b) = (ids.next_id().0, ids.next_id().0);
    let mut out = [0u8; 16];
    for (o, v) in out.iter_mut().zip(a.iter().chain(b.iter())) {
        *o = *v;
    }
    out
}

impl PairSession {
    pub(super) fn next_turn_request(&mut self) {
        let Some(t) = self.turn.as_mut() else { return };
        if !t.session.is_idle() || t.relayed.is_none() || self.phase == Phase::Releasing {
            return;
        }
        if let Some(peer) = t.permissions.pop_front() {
            t.session.start(Request::CreatePermission { peer });
        }
    }

    pub(super) fn begin_release(&mut self, now: Instant) {
        self.phase = Phase::Releasing;
        self.phase_until = None;
        let releasing = match self.turn.as_mut() {
            Some(t) if t.relayed.is_some() && !t.released => {
                t.permissions.clear();
                t.session.start(Request::Refresh { lifetime: 0 });
                true
            }
            Some(t) if t.allocating => {
                // An Allocate still outstanding may succeed late: wait for it, then release.
                true
            }
            _ => false,
        };
        if !releasing {
            self.finish(now);
        }
    }

    pub(super) fn on_turn_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<(), Ignored> {
        let Some(t) = self.turn.as_mut() else {
            return Err(Ignored::Unexpected);
        };
        if from != t.session.config().server {
            return Err(Ignored::UnexpectedSource);
        }
        let view = StunView::parse(data).map_err(Ignored::Malformed)?;
        if let Some(di) = DataIndication::from_view(&view) {
            let Some(relayed) = t.relayed else {
                return Err(Ignored::Unexpected);
            };
            let (peer, inner) = (di.peer, di.data.to_vec());
            return self.on_peer_datagram(now, relayed, peer, &inner);
        }
        let done = t.session.handle_response(now, from, &view)?;
        if let Some(c) = done {
            self.on_turn_completion(now, c.request, c.answer);
        }
        Ok(())
    }

    /// Bytes from the TURN stream (TCP); an empty chunk: the connection failed or closed.
    pub(super) fn on_turn_stream(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<(), Ignored> {
        let Some(t) = self.turn.as_mut() else {
            return Err(Ignored::Unexpected);
        };
        let Some(framer) = t.framer.as_mut() else {
            return Err(Ignored::Unexpected);
        };
        if data.is_empty() {
            self.on_turn_closed(now);
            return Ok(());
        }
        framer.push(data);
        let mut frames = Vec::new();
        let broken = loop {
            match framer.next_frame() {
                Ok(Some(Frame::Stun(b))) => frames.push(b),
                // No channel is bound: ChannelData cannot be for us.
                Ok(Some(Frame::ChannelData(_))) => {}
                Ok(None) => break false,
                Err(_) => break true,
            }
        };
        for f in frames {
            let _ = self.on_turn_datagram(now, from, &f);
        }
        if broken {
            self.on_turn_closed(now);
        }
        Ok(())
    }

    /// The TURN connection is gone: so is the allocation (RFC 8656 §3.1: over TCP the
    /// 5-tuple includes the connection).
    pub(super) fn on_turn_closed(&mut self, now: Instant) {
        let Some(t) = self.turn.as_mut() else { return };
        if t.framer.take().is_none() {
            return;
        }
        t.session.abandon();
        t.permissions.clear();
        if t.allocating {
            t.allocating = false;
            t.error = Some("the TURN connection closed before the allocation".into());
        } else if t.relayed.is_some() && !t.released {
            t.released = true;
            t.error.get_or_insert_with(|| {
                "the TURN connection closed (which ends the allocation)".into()
            });
        }
        if self.phase == Phase::Releasing {
            self.finish(now);
        } else {
            self.advance(now);
        }
    }

    pub(super) fn on_turn_completion(&mut self, now: Instant, request: Request, answer: Answer) {
        let Some(t) = self.turn.as_mut() else { return };
        match (request, answer) {
            (Request::Allocate, Answer::Success(s)) => {
                t.allocating = false;
                match s.relayed {
                    Some(r) if usable_address(&r) => {
                        t.relayed = Some(r);
                        if let Some(local) = t.local
                            && let Ok(c) = Candidate::relayed(r, local, "udp")
                        {
                            self.agent.add_local_candidate(c);
                        }
                    }
                    _ => t.error = Some("the allocation carried no usable relayed address".into()),
                }
            }
            (Request::Allocate, Answer::Error { code, reason, .. }) => {
                t.allocating = false;
                let mut reason = reason;
                reason.truncate(100);
                t.error = Some(format!("Allocate refused: {code} {reason}"));
            }
            (Request::Allocate, Answer::Timeout) => {
                t.allocating = false;
                t.error = Some("no answer to Allocate".into());
            }
            (Request::CreatePermission { peer }, Answer::Success(_)) => {
                t.permitted.push(peer.ip());
            }
            (Request::Refresh { lifetime: 0 }, answer) => {
                // 437: already gone. A timeout leaves it to expire on its own.
                t.released = matches!(answer, Answer::Success(_))
                    || matches!(answer, Answer::Error { code: 437, .. });
                if !t.released {
                    t.error
                        .get_or_insert_with(|| "the allocation was not confirmed released".into());
                }
                self.finish(now);
                return;
            }
            _ => {}
        }
        if self.phase == Phase::Releasing {
            // An Allocate that ended while releasing: give it back now, or finish.
            let allocated = self
                .turn
                .as_ref()
                .is_some_and(|t| t.relayed.is_some() && !t.released);
            if allocated {
                if let Some(t) = self.turn.as_mut() {
                    t.session.start(Request::Refresh { lifetime: 0 });
                }
            } else {
                self.finish(now);
            }
            return;
        }
        self.drain_agent(now);
        self.next_turn_request();
        self.advance(now);
    }
}
