//! The NAT test of one address family as probes of one engine run: the RFC 5780 discovery
//! against the family's first server and the multi-server comparison over all of them, side by
//! side. [`FamilyProbe`] is either of the two, so one run drives both; it forwards every
//! [`Probe`] verb, the ones with default bodies included (a probe that cares which socket an
//! answer arrived on, or that has something to release when cancelled, must be told).

use std::net::SocketAddr;
use std::time::Instant;

use super::discovery::{DiscoveryConfig, DiscoveryMeasurements, NatDiscovery};
use super::measurements::FamilyMeasurements;
use super::multi::{MultiMeasurements, MultiServer};
use crate::machine::{Ignored, LocalSocket, PrivateSockets, Probe, Retransmit, Transmit};
use crate::stun::TransactionIdSource;

/// One of the probes of a family's NAT test (generic only so tests can look inside).
#[derive(Debug)]
pub enum FamilyProbe<D = NatDiscovery, M = MultiServer> {
    /// The RFC 5780 tests against one server.
    Discovery(D),
    /// Mapped addresses compared across servers.
    Multi(M),
}

/// What a [`FamilyProbe`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FamilyOutput<D = DiscoveryMeasurements, M = MultiMeasurements> {
    /// From [`FamilyProbe::Discovery`].
    Discovery(D),
    /// From [`FamilyProbe::Multi`].
    Multi(M),
}

impl FamilyProbe {
    /// The two probes for the servers of one family: the discovery against the first (it
    /// should send OTHER-ADDRESS) and the comparison over all, both on the `retransmit`
    /// schedule, each with its own stream of transaction ids from `ids`. `None` without a
    /// server.
    pub fn both(
        servers: &[SocketAddr],
        retransmit: Retransmit,
        hairpinning: bool,
        ids: &mut TransactionIdSource,
    ) -> Option<[FamilyProbe; 2]> {
        let first = *servers.first()?;
        let config = DiscoveryConfig {
            retransmit,
            hairpinning,
            ..DiscoveryConfig::new(first)
        };
        Some([
            FamilyProbe::Discovery(NatDiscovery::new(config, ids.fork())),
            FamilyProbe::Multi(MultiServer::new(servers, retransmit, ids.fork())),
        ])
    }
}

impl FamilyMeasurements {
    /// Put a finished probe's output in its place.
    pub fn record(&mut self, output: FamilyOutput) {
        match output {
            FamilyOutput::Discovery(m) => self.discovery = Some(m),
            FamilyOutput::Multi(m) => self.multi = Some(m),
        }
    }
}

/// `$p` bound to the inner probe, whichever it is.
macro_rules! inner {
    ($self:expr, $p:ident => $e:expr) => {
        match $self {
            FamilyProbe::Discovery($p) => $e,
            FamilyProbe::Multi($p) => $e,
        }
    };
}

impl<D: Probe, M: Probe> Probe for FamilyProbe<D, M> {
    type Output = FamilyOutput<D::Output, M::Output>;

    fn handle_input(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), Ignored> {
        inner!(self, p => p.handle_input(now, from, data))
    }

    fn handle_input_on(
        &mut self,
        now: Instant,
        socket: LocalSocket,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<(), Ignored> {
        inner!(self, p => p.handle_input_on(now, socket, from, data))
    }

    fn handle_timeout(&mut self, now: Instant) {
        inner!(self, p => p.handle_timeout(now))
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        inner!(self, p => p.poll_transmit(now, buf))
    }

    fn poll_timeout(&self) -> Option<Instant> {
        inner!(self, p => p.poll_timeout())
    }

    fn is_done(&self) -> bool {
        inner!(self, p => p.is_done())
    }

    fn take_output(&mut self) -> Option<Self::Output> {
        match self {
            FamilyProbe::Discovery(p) => p.take_output().map(FamilyOutput::Discovery),
            FamilyProbe::Multi(p) => p.take_output().map(FamilyOutput::Multi),
        }
    }

    fn cancel(&mut self, now: Instant) -> bool {
        inner!(self, p => p.cancel(now))
    }

    fn private_sockets(&self) -> Option<PrivateSockets> {
        inner!(self, p => p.private_sockets())
    }

    fn handle_local_addr(&mut self, socket: LocalSocket, addr: SocketAddr) {
        inner!(self, p => p.handle_local_addr(socket, addr))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::nat::sim::{t0, test_ids};
    use crate::stun::TransactionId;

    /// A probe that writes down every verb it is given, and answers each in a way no default
    /// body would (so a verb the wrapper left to its default shows).
    #[derive(Debug)]
    struct Recorder {
        calls: Vec<String>,
        /// What `poll_timeout` says.
        next: Instant,
    }

    impl Recorder {
        fn new(next: Instant) -> Self {
            Self {
                calls: Vec::new(),
                next,
            }
        }
    }

    const TOWARD: &str = "192.0.2.1:3478";

    impl Probe for Recorder {
        type Output = usize;

        fn handle_input(&mut self, _: Instant, _: SocketAddr, _: &[u8]) -> Result<(), Ignored> {
            self.calls.push("handle_input".into());
            Err(Ignored::Late)
        }

        fn handle_input_on(
            &mut self,
            _: Instant,
            socket: LocalSocket,
            _: SocketAddr,
            _: &[u8],
        ) -> Result<(), Ignored> {
            self.calls.push(format!("handle_input_on {socket:?}"));
            Err(Ignored::Unexpected)
        }

        fn handle_timeout(&mut self, _: Instant) {
            self.calls.push("handle_timeout".into());
        }

        fn poll_transmit(&mut self, _: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
            self.calls.push("poll_transmit".into());
            buf.push(1);
            Some(Transmit {
                destination: TOWARD.parse().unwrap(),
                local: LocalSocket::Private(3),
                transaction_id: TransactionId([3; 12]),
                attempt: 2,
            })
        }

        fn poll_timeout(&self) -> Option<Instant> {
            Some(self.next)
        }

        fn is_done(&self) -> bool {
            true
        }

        fn take_output(&mut self) -> Option<usize> {
            self.calls.push("take_output".into());
            Some(self.calls.len())
        }

        fn cancel(&mut self, _: Instant) -> bool {
            self.calls.push("cancel".into());
            true
        }

        fn private_sockets(&self) -> Option<PrivateSockets> {
            Some(PrivateSockets {
                count: 5,
                toward: TOWARD.parse().unwrap(),
            })
        }

        fn handle_local_addr(&mut self, socket: LocalSocket, addr: SocketAddr) {
            self.calls
                .push(format!("handle_local_addr {socket:?} {addr}"));
        }
    }

    /// Every verb, through the wrapper; returns what the inner probe saw.
    fn exercise(
        mut p: FamilyProbe<Recorder, Recorder>,
        now: Instant,
    ) -> (Vec<String>, Option<usize>) {
        let from: SocketAddr = TOWARD.parse().unwrap();
        let local: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        assert_eq!(p.handle_input(now, from, b"x"), Err(Ignored::Late));
        assert_eq!(
            p.handle_input_on(now, LocalSocket::Private(1), from, b"x"),
            Err(Ignored::Unexpected),
            "handle_input_on reaches the inner probe, not the default body"
        );
        p.handle_timeout(now);
        let mut buf = Vec::new();
        let t = p.poll_transmit(now, &mut buf).unwrap();
        assert_eq!(
            (t.local, t.attempt, buf.as_slice()),
            (LocalSocket::Private(3), 2, &[1][..])
        );
        assert_eq!(p.poll_timeout(), Some(now + Duration::from_secs(7)));
        assert!(p.is_done());
        assert!(p.cancel(now), "cancel reaches the inner probe");
        assert_eq!(p.private_sockets().map(|s| s.count), Some(5));
        p.handle_local_addr(LocalSocket::Private(0), local);
        let out = p.take_output();
        let calls = match p {
            FamilyProbe::Discovery(r) | FamilyProbe::Multi(r) => r.calls,
        };
        let out = out.map(|o| match o {
            FamilyOutput::Discovery(n) | FamilyOutput::Multi(n) => n,
        });
        (calls, out)
    }

    #[test]
    fn every_verb_reaches_the_inner_probe() {
        let expected = [
            "handle_input",
            "handle_input_on Private(1)",
            "handle_timeout",
            "poll_transmit",
            "cancel",
            "handle_local_addr Private(0) 10.0.0.2:4000",
            "take_output",
        ];
        let now = t0();
        let next = now + Duration::from_secs(7);
        for p in [
            FamilyProbe::Discovery(Recorder::new(next)),
            FamilyProbe::Multi(Recorder::new(next)),
        ] {
            let (calls, out) = exercise(p, now);
            assert_eq!(calls, expected);
            assert_eq!(out, Some(expected.len()));
        }
    }

    #[test]
    fn both_probes_of_a_family_and_their_outputs_in_place() {
        let servers: Vec<SocketAddr> =
            vec!["192.0.2.10:3478".parse().unwrap(), TOWARD.parse().unwrap()];
        let mut ids = test_ids();
        let retransmit = DiscoveryConfig::DEFAULT_RETRANSMIT;
        let [d, m] = FamilyProbe::both(&servers, retransmit, false, &mut ids).unwrap();
        assert!(matches!(d, FamilyProbe::Discovery(_)));
        assert!(matches!(m, FamilyProbe::Multi(_)));
        // The discovery asks the first server, from its private sockets.
        let toward = d.private_sockets().map(|s| s.toward);
        assert_eq!(toward, servers.first().copied());
        assert!(FamilyProbe::both(&[], retransmit, false, &mut ids).is_none());

        let mut fam = FamilyMeasurements::default();
        fam.record(FamilyOutput::Multi(MultiMeasurements::default()));
        fam.record(FamilyOutput::Discovery(DiscoveryMeasurements {
            server: servers.first().copied(),
            ..DiscoveryMeasurements::default()
        }));
        assert_eq!(fam.multi, Some(MultiMeasurements::default()));
        assert_eq!(
            fam.discovery.and_then(|d| d.server),
            servers.first().copied()
        );
    }
}
