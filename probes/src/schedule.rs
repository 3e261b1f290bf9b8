//! [`Delayed`]: a probe that starts at a given time, so a run can pace repeated transactions
//! to one target (`--interval`) without the engine knowing about intervals.

use std::net::SocketAddr;
use std::time::Instant;

use crate::machine::{Ignored, LocalSocket, PrivateSockets, Probe, Received, Transmit};

/// Wraps a probe so it transmits nothing before `start`.
#[derive(Debug)]
pub struct Delayed<P> {
    start: Instant,
    inner: P,
}

impl<P> Delayed<P> {
    /// `inner`, held back until `start`.
    pub fn new(start: Instant, inner: P) -> Self {
        Self { start, inner }
    }

    /// The wrapped probe.
    pub fn inner(&self) -> &P {
        &self.inner
    }
}

impl<P: Probe> Probe for Delayed<P> {
    type Output = P::Output;

    fn handle_input(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), Ignored> {
        self.inner.handle_input(now, from, data)
    }

    fn handle_input_on(&mut self, now: Instant, received: Received<'_>) -> Result<(), Ignored> {
        self.inner.handle_input_on(now, received)
    }

    fn handle_timeout(&mut self, now: Instant) {
        if now >= self.start {
            self.inner.handle_timeout(now);
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        if now < self.start {
            return None;
        }
        self.inner.poll_transmit(now, buf)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.inner.poll_timeout() {
            Some(t) => Some(t.max(self.start)),
            // Not started yet: an idle probe has no timeout of its own.
            None if !self.inner.is_done() => Some(self.start),
            None => None,
        }
    }

    fn is_done(&self) -> bool {
        self.inner.is_done()
    }

    fn take_output(&mut self) -> Option<Self::Output> {
        self.inner.take_output()
    }

    fn cancel(&mut self, now: Instant) -> bool {
        self.inner.cancel(now)
    }

    fn private_sockets(&self) -> Option<PrivateSockets> {
        self.inner.private_sockets()
    }

    fn handle_local_addr(&mut self, socket: LocalSocket, addr: SocketAddr) {
        self.inner.handle_local_addr(socket, addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::{BindingConfig, BindingTransaction};
    use crate::stun::TransactionId;
    use std::time::Duration;

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn holds_back_until_start() {
        let t0 = Instant::now();
        let start = t0 + Duration::from_millis(300);
        let inner = BindingTransaction::new(
            TransactionId([1; 12]),
            "192.0.2.1:3478".parse().unwrap(),
            BindingConfig::default(),
        );
        let mut p = Delayed::new(start, inner);
        let mut buf = Vec::new();
        assert_eq!(p.poll_timeout(), Some(start));
        assert!(p.poll_transmit(t0, &mut buf).is_none());
        assert!(buf.is_empty());
        assert!(p.poll_transmit(start, &mut buf).is_some());
        assert_eq!(p.poll_timeout(), Some(start + Duration::from_millis(500)));
    }
}
