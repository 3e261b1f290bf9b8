//! Measuring the selected pair: echo packets (our own small format, tagged so they cannot be
//! mistaken for STUN or WireGuard) for RTT percentiles and loss over `--duration`.

use super::*;

pub(super) fn echo_packet(kind: u8, token: u64, seq: u32) -> [u8; ECHO_LEN] {
    let mut p = [0u8; ECHO_LEN];
    p[..4].copy_from_slice(&ECHO_MAGIC);
    p[4] = kind;
    p[8..16].copy_from_slice(&token.to_be_bytes());
    p[16..20].copy_from_slice(&seq.to_be_bytes());
    p
}

pub(super) fn parse_echo(data: &[u8]) -> Option<(u8, u64, u32)> {
    let p: &[u8; ECHO_LEN] = data.try_into().ok()?;
    let (head, rest) = p.split_first_chunk::<4>()?;
    if *head != ECHO_MAGIC {
        return None;
    }
    let (&[kind, _, _, _], rest) = rest.split_first_chunk::<4>()?;
    let (token, rest) = rest.split_first_chunk::<8>()?;
    let seq: [u8; 4] = rest.try_into().ok()?;
    Some((kind, u64::from_be_bytes(*token), u32::from_be_bytes(seq)))
}

impl PairSession {
    pub(super) fn begin_measuring(&mut self, now: Instant) {
        self.phase = Phase::Measuring;
        let stop = now + self.config.duration;
        self.echo.stop_at = Some(stop);
        self.echo.next_at = Some(now);
        self.phase_until = Some(stop + self.config.echo_linger);
    }

    pub(super) fn on_echo(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        kind: u8,
        token: u64,
        seq: u32,
    ) -> Result<(), Ignored> {
        // Only addresses that took part in authenticated checks.
        let known = self
            .flows
            .get(&(local, from))
            .is_some_and(|f| f.requests_received > 0 || f.responses_received > 0);
        if !known {
            return Err(Ignored::UnexpectedSource);
        }
        match kind {
            ECHO_REQUEST => {
                let reply = echo_packet(ECHO_REPLY, token, seq).to_vec();
                self.queue_from(local, from, reply);
                Ok(())
            }
            ECHO_REPLY if token == self.token => match self.echo.sent.remove(&seq) {
                Some(t) => {
                    self.echo.samples.push(now.saturating_duration_since(t));
                    Ok(())
                }
                None => Err(Ignored::Late),
            },
            _ => Err(Ignored::Unexpected),
        }
    }

    pub(super) fn echo_due(&mut self, now: Instant) {
        if self.phase != Phase::Measuring {
            return;
        }
        let (Some(next), Some(stop)) = (self.echo.next_at, self.echo.stop_at) else {
            return;
        };
        if now < next {
            return;
        }
        if now >= stop || self.echo.sent.len() >= MAX_ECHOES {
            self.echo.next_at = None;
            return;
        }
        let Some(n) = self.nominated else { return };
        let seq = self.echo.next_seq;
        self.echo.next_seq = seq.saturating_add(1);
        self.echo.sent.insert(seq, now);
        let p = echo_packet(ECHO_REQUEST, self.token, seq).to_vec();
        self.queue_from(n.source, n.destination, p);
        self.echo.next_at = Some(next + self.config.echo_interval).filter(|t| *t < stop);
    }
}
