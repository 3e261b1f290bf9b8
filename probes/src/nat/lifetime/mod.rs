//! Binding lifetime (RFC 5780 §4.6) as one sans-IO probe: how long the NAT keeps an idle UDP
//! mapping. A keepalive has to be shorter than that, or the mapping, and with it a direct
//! WireGuard path, silently goes away (CGNATs commonly expire idle UDP in 30–60 s).
//!
//! # Method
//!
//! A mapping is opened with a Binding request to the server, left idle for a time T, and then
//! the server is asked to send something *to* it: a Binding request from another socket (the
//! trigger, [`TRIGGER_SOCKET`]) carrying RESPONSE-PORT (RFC 5780 §7.5) with the idle mapping's
//! external port. The server answers to that port on the request's source IP, which is the
//! NAT's; the answer arrives only if the NAT still holds the mapping. The answer comes from the
//! same server address the idle mapping once sent to, so even an address-and-port-dependent
//! filter lets it in while the mapping lives.
//!
//! Receiving the answer refreshes the mapping on most NATs (Linux conntrack does), so each
//! mapping is tested once. Instead of a binary search on one socket (which would take several
//! lifetimes one after the other), the probe opens one mapping per idle time at the start,
//! private sockets 0..n, and triggers each at its idle time: the run lasts about the lifetime
//! (or `max_idle`) plus one retransmission schedule. The idle times grow geometrically (×1.25
//! from 1 s), so the bound is within about 25 %. Once one idle time expires, the longer ones
//! are not triggered.
//!
//! Trial 0 has an idle time of zero: it checks that the server honours RESPONSE-PORT at all. A
//! server without RFC 5780 must reject the comprehension-required attribute with 420
//! (RFC 8489 §6.3.1); one that ignores it answers the trigger socket instead.
//!
//! # Why the trigger leaves from the shared socket
//!
//! The trigger is sent from the shared socket, so its answer can reach the probe two ways: on
//! the idle mapping's private socket (RESPONSE-PORT honoured, and the mapping still there) or
//! back on the shared socket (the server ignored RESPONSE-PORT). The engine says which
//! (`handle_input_on`): an answer on the shared socket is not evidence that the mapping lives
//! and is ignored, so such a server is seen as silence, which trial 0 turns into
//! "unsupported" instead of "every mapping lives".
//!
//! # Timing
//!
//! The idle time of a trial is measured from the arrival of the answer that opened the mapping
//! (the last packet through it) to the first transmission of the trigger. The mapping has then
//! been idle at least that long when the trigger's answer reaches the NAT, so an answer proves
//! a lifetime of at least the measured idle time. A trigger that gets no answer (after its
//! retransmissions, which guard against taking a loss for an expiry) bounds the lifetime from
//! above by its idle time plus one round trip.
//!
//! The `judge` submodule turns the trials into a [`BindingLifetimeResult`]: bounds and a
//! recommended keepalive.

mod judge;

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::binding::{
    BindingConfig, BindingOutcome, BindingStatus, BindingTransaction, SourceCheck,
};
use crate::machine::{Ignored, LocalSocket, PrivateSockets, Probe, Received, Retransmit, Transmit};
use crate::stun::{StunView, TransactionIdSource};

pub(crate) use judge::secs;
pub use judge::{
    BindingLifetimeResult, LifetimeUnknown, WIREGUARD_KEEPALIVE, binding_lifetime,
    recommended_keepalive,
};

/// The socket triggers leave from (see the module docs for why it is the shared one).
pub const TRIGGER_SOCKET: LocalSocket = LocalSocket::Default;

/// How the lifetime test runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LifetimeConfig {
    /// The server; it must support RESPONSE-PORT (RFC 5780 §7.5).
    pub server: SocketAddr,
    /// The longest idle time tried (`--lifetime-max`).
    pub max_idle: Duration,
    /// Retransmission of every request ([`LifetimeConfig::DEFAULT_RETRANSMIT`] unless the
    /// caller says otherwise).
    pub retransmit: Retransmit,
    /// SOFTWARE sent in requests.
    pub software: Option<&'static str>,
}

impl LifetimeConfig {
    /// Defaults for `server` and `max_idle`.
    pub fn new(server: SocketAddr, max_idle: Duration) -> Self {
        Self {
            server,
            max_idle,
            retransmit: Self::DEFAULT_RETRANSMIT,
            software: BindingConfig::default().software,
        }
    }

    /// The retransmission of every request: RTO 500 ms (RFC 8489 §6.2.1), 4 transmissions, a
    /// final wait of 4·RTO, so a silent trigger ends after 5.5 s. Shorter than RFC 8489's
    /// 39.5 s on purpose (silence is an expected answer), longer than the verdict's tests
    /// (this test runs for minutes anyway, and one trigger lost to a burst of loss would be
    /// read as an expiry).
    pub const DEFAULT_RETRANSMIT: Retransmit = Retransmit {
        rto: Duration::from_millis(500),
        rc: 4,
        rm: 4,
        deadline: None,
    };

    /// At most this many trials (private sockets).
    pub const MAX_TRIALS: usize = 48;
    /// The first idle time after the zero-idle control trial.
    pub const FIRST_IDLE: Duration = Duration::from_secs(1);
    /// Growth factor between idle times; raised when `max_idle` would need more than
    /// [`Self::MAX_TRIALS`] trials.
    pub const GROWTH: f64 = 1.25;

    /// The idle times tried: 0 (control), then 1 s growing by [`Self::GROWTH`] (rounded to
    /// 100 ms), and `max_idle` last.
    pub fn idle_times(&self) -> Vec<Duration> {
        let mut out = vec![Duration::ZERO];
        let max = self.max_idle;
        if max.is_zero() {
            return out;
        }
        let first = Self::FIRST_IDLE.as_secs_f64();
        let span = (max.as_secs_f64() / first).max(1.0);
        // Enough growth to fit: first·g^(MAX_TRIALS-2) ≥ max.
        let steps = (Self::MAX_TRIALS - 2) as f64;
        let growth = Self::GROWTH.max(span.powf(1.0 / steps));
        let mut t = first;
        while t < max.as_secs_f64() && out.len() < Self::MAX_TRIALS - 1 {
            let d = Duration::from_millis(((t * 10.0).round() as u64) * 100);
            if out.last().is_none_or(|l| *l < d) && d < max {
                out.push(d);
            }
            t *= growth;
        }
        out.push(max);
        out
    }
}

/// How one trial ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrialOutcome {
    /// The answer to the trigger arrived through the idle mapping: it was alive.
    Alive,
    /// No answer to the trigger: the mapping was gone (or the server does not honour
    /// RESPONSE-PORT; trial 0 tells).
    Expired,
    /// The trigger got an error response (it reached the probe only because the server
    /// answered to the RESPONSE-PORT).
    Error,
    /// The Binding that was to open the mapping got no answer.
    NotOpened,
    /// Not triggered: a shorter idle time had already expired, or the control failed.
    Skipped,
}

/// One idle time tried.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Trial {
    /// The planned idle time, seconds in JSON.
    #[serde(with = "crate::serde_util::secs")]
    pub planned_idle: Duration,
    /// Measured idle time: from the answer that opened the mapping to the trigger's first
    /// transmission, seconds in JSON.
    #[serde(with = "crate::serde_util::opt_secs")]
    pub idle: Option<Duration>,
    /// The mapping's external address.
    pub mapped: Option<SocketAddr>,
    /// Round-trip time of the Binding that opened the mapping, seconds in JSON.
    #[serde(with = "crate::serde_util::opt_secs")]
    pub rtt: Option<Duration>,
    /// What the trigger saw.
    pub outcome: TrialOutcome,
}

/// Everything the lifetime test saw.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LifetimeMeasurements {
    /// The server.
    pub server: SocketAddr,
    /// The longest idle time that was planned, seconds in JSON.
    #[serde(with = "crate::serde_util::secs")]
    pub max_idle: Duration,
    /// One per idle time, shortest first; trial 0 is the zero-idle control.
    pub trials: Vec<Trial>,
}

#[derive(Debug)]
enum Stage {
    /// The Binding that opens the mapping is running.
    Opening(BindingTransaction),
    /// Idle since `opened_at`; triggered at `opened_at + planned_idle`.
    Idle,
    /// The trigger is running; `first_sent` is its first transmission.
    Triggering(BindingTransaction),
    /// Finished.
    Done,
}

#[derive(Debug)]
struct Slot {
    trial: Trial,
    opened_at: Option<Instant>,
    stage: Stage,
}

/// The binding-lifetime probe. See the module docs.
pub struct BindingLifetime {
    config: LifetimeConfig,
    ids: TransactionIdSource,
    slots: Vec<Slot>,
    last_now: Option<Instant>,
    taken: bool,
}

impl fmt::Debug for BindingLifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BindingLifetime")
            .field("config", &self.config)
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl BindingLifetime {
    /// A lifetime test against `config.server`, with transaction ids from `ids`.
    pub fn new(config: LifetimeConfig, mut ids: TransactionIdSource) -> Self {
        let slots = config
            .idle_times()
            .into_iter()
            .enumerate()
            .map(|(i, planned_idle)| {
                let socket = LocalSocket::Private(u8::try_from(i).unwrap_or(u8::MAX));
                let cfg = BindingConfig {
                    retransmit: config.retransmit,
                    software: config.software,
                    local: socket,
                    ..BindingConfig::default()
                };
                Slot {
                    trial: Trial {
                        planned_idle,
                        idle: None,
                        mapped: None,
                        rtt: None,
                        outcome: TrialOutcome::Skipped,
                    },
                    opened_at: None,
                    stage: Stage::Opening(BindingTransaction::new(
                        ids.next_id(),
                        config.server,
                        cfg,
                    )),
                }
            })
            .collect();
        Self {
            config,
            ids,
            slots,
            last_now: None,
            taken: false,
        }
    }

    fn trigger_config(&self, response_port: u16) -> BindingConfig {
        BindingConfig {
            retransmit: self.config.retransmit,
            software: self.config.software,
            response_port: Some(response_port),
            source_check: SourceCheck::Destination,
            local: TRIGGER_SOCKET,
            ..BindingConfig::default()
        }
    }

    /// Move finished transactions on; start triggers that are due; stop what is pointless.
    fn advance(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            let Some(slot) = self.slots.get_mut(i) else {
                continue;
            };
            match &mut slot.stage {
                Stage::Opening(tx) if tx.is_done() => {
                    let out = tx.take_output();
                    match out.as_ref().and_then(success_mapped) {
                        Some(mapped) => {
                            slot.trial.mapped = Some(mapped);
                            slot.trial.rtt = out.and_then(|o| o.rtt);
                            slot.opened_at = Some(now);
                            slot.stage = Stage::Idle;
                        }
                        None => {
                            slot.trial.outcome = TrialOutcome::NotOpened;
                            slot.stage = Stage::Done;
                        }
                    }
                }
                Stage::Triggering(tx) if tx.is_done() => {
                    slot.trial.outcome = match tx.take_output().map(|o| o.status) {
                        Some(BindingStatus::Success(_)) => TrialOutcome::Alive,
                        Some(BindingStatus::Error { .. }) => TrialOutcome::Error,
                        Some(BindingStatus::Timeout) | None => TrialOutcome::Expired,
                    };
                    slot.stage = Stage::Done;
                }
                _ => {}
            }
        }
        // The control failed, or some idle time expired: longer ones are not worth waiting
        // for. Only mappings still idle are dropped; a trigger already running finishes.
        let control_failed = self.slots.first().is_some_and(|s| {
            matches!(
                s.trial.outcome,
                TrialOutcome::Expired | TrialOutcome::Error | TrialOutcome::NotOpened
            )
        });
        let first_expiry = self
            .slots
            .iter()
            .filter(|s| s.trial.outcome == TrialOutcome::Expired)
            .map(|s| s.trial.planned_idle)
            .min();
        for slot in &mut self.slots {
            let pointless =
                control_failed || first_expiry.is_some_and(|e| slot.trial.planned_idle > e);
            if pointless && matches!(slot.stage, Stage::Idle | Stage::Opening(_)) {
                slot.stage = Stage::Done;
                slot.trial.outcome = TrialOutcome::Skipped;
            }
        }
        // Start due triggers; the others wait until the control has shown that RESPONSE-PORT
        // works (normally one round trip: their idle times are measured, not assumed).
        let control_ok = self
            .slots
            .first()
            .is_some_and(|s| s.trial.outcome == TrialOutcome::Alive);
        for i in 0..self.slots.len() {
            if i > 0 && !control_ok {
                break;
            }
            let due = self.slots.get(i).and_then(|s| match s.stage {
                Stage::Idle => s
                    .opened_at
                    .map(|t| (t + s.trial.planned_idle, s.trial.mapped)),
                _ => None,
            });
            let Some((at, Some(mapped))) = due else {
                continue;
            };
            if now < at {
                continue;
            }
            let tx = BindingTransaction::new(
                self.ids.next_id(),
                self.config.server,
                self.trigger_config(mapped.port()),
            );
            if let Some(slot) = self.slots.get_mut(i) {
                slot.stage = Stage::Triggering(tx);
            }
        }
    }

    fn is_finished(&self) -> bool {
        self.slots.iter().all(|s| matches!(s.stage, Stage::Done))
    }
}

fn success_mapped(o: &BindingOutcome) -> Option<SocketAddr> {
    match &o.status {
        BindingStatus::Success(r) => r.mapped_address(),
        _ => None,
    }
}

impl Probe for BindingLifetime {
    type Output = LifetimeMeasurements;

    fn handle_input(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<(), Ignored> {
        self.last_now = Some(now);
        let tid = StunView::parse(data)
            .map_err(Ignored::Malformed)?
            .transaction_id();
        let tx = self.slots.iter_mut().find_map(|s| match &mut s.stage {
            Stage::Opening(tx) | Stage::Triggering(tx) if tx.transaction_id() == tid => Some(tx),
            _ => None,
        });
        let Some(tx) = tx else {
            return Err(Ignored::UnknownTransaction);
        };
        let r = tx.handle_input(now, from, data);
        self.advance(now);
        r
    }

    fn handle_input_on(&mut self, now: Instant, received: Received<'_>) -> Result<(), Ignored> {
        let Received { socket, from, data } = received;
        // A trigger's answer on the shared socket means the server ignored RESPONSE-PORT: it
        // says nothing about the idle mapping (see the module docs).
        if socket == LocalSocket::Default {
            let tid = StunView::parse(data)
                .map_err(Ignored::Malformed)?
                .transaction_id();
            let is_trigger = self
                .slots
                .iter()
                .any(|s| matches!(&s.stage, Stage::Triggering(tx) if tx.transaction_id() == tid));
            if is_trigger {
                return Err(Ignored::UnexpectedSource);
            }
        }
        self.handle_input(now, from, data)
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.last_now = Some(now);
        for slot in &mut self.slots {
            if let Stage::Opening(tx) | Stage::Triggering(tx) = &mut slot.stage {
                tx.handle_timeout(now);
            }
        }
        self.advance(now);
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.last_now = Some(now);
        for slot in &mut self.slots {
            match &mut slot.stage {
                Stage::Opening(tx) => {
                    if let Some(t) = tx.poll_transmit(now, buf) {
                        return Some(t);
                    }
                }
                Stage::Triggering(tx) => {
                    if let Some(t) = tx.poll_transmit(now, buf) {
                        if t.attempt == 0 {
                            slot.trial.idle =
                                slot.opened_at.map(|o| now.saturating_duration_since(o));
                        }
                        return Some(t);
                    }
                }
                Stage::Idle | Stage::Done => {}
            }
        }
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut due_now = false;
        let control_ok = self
            .slots
            .first()
            .is_some_and(|s| s.trial.outcome == TrialOutcome::Alive);
        for (i, slot) in self.slots.iter().enumerate() {
            let t = match &slot.stage {
                Stage::Opening(tx) | Stage::Triggering(tx) => {
                    let t = tx.poll_timeout();
                    // Created but not sent yet: due at once.
                    due_now |= t.is_none() && !tx.is_done();
                    t
                }
                // Waiting for the control is waiting for an input, not a time.
                Stage::Idle if i > 0 && !control_ok => None,
                Stage::Idle => slot.opened_at.map(|o| o + slot.trial.planned_idle),
                Stage::Done => None,
            };
            next = match (next, t) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        match (due_now, self.last_now) {
            (true, Some(now)) => Some(next.map_or(now, |n| n.min(now))),
            _ => next,
        }
    }

    fn is_done(&self) -> bool {
        self.is_finished()
    }

    fn take_output(&mut self) -> Option<LifetimeMeasurements> {
        if !self.is_finished() || self.taken {
            return None;
        }
        self.taken = true;
        Some(LifetimeMeasurements {
            server: self.config.server,
            max_idle: self.config.max_idle,
            trials: self.slots.iter().map(|s| s.trial.clone()).collect(),
        })
    }

    fn private_sockets(&self) -> Option<PrivateSockets> {
        Some(PrivateSockets {
            count: u8::try_from(self.slots.len()).unwrap_or(u8::MAX),
            toward: self.config.server,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::judge::{BindingLifetimeResult, LifetimeUnknown, binding_lifetime};
    use super::*;
    use crate::nat::sim::{Filter, Map, NatSpec, Net, PRIMARY, ServerQuirks, World, t0, test_ids};

    fn fast(max: u64) -> LifetimeConfig {
        LifetimeConfig {
            retransmit: Retransmit {
                rto: Duration::from_millis(200),
                rc: 3,
                rm: 4,
                deadline: None,
            },
            ..LifetimeConfig::new(PRIMARY.parse().unwrap(), Duration::from_secs(max))
        }
    }

    fn nat_with_lifetime(filter: Filter, life: Option<Duration>) -> Net {
        let mut spec = NatSpec::new(Map::Eim, filter);
        spec.lifetime = life;
        Net::Nat(spec)
    }

    fn run(
        net: Net,
        quirks: ServerQuirks,
        cfg: LifetimeConfig,
    ) -> (LifetimeMeasurements, Duration) {
        let mut probe = BindingLifetime::new(cfg, test_ids());
        World::new(net, quirks).run(&mut probe, t0())
    }

    #[test]
    fn idle_times_grow_geometrically_up_to_the_max() {
        let c = LifetimeConfig::new(PRIMARY.parse().unwrap(), Duration::from_secs(120));
        let t = c.idle_times();
        assert_eq!(t.first(), Some(&Duration::ZERO));
        assert_eq!(t.get(1), Some(&Duration::from_secs(1)));
        assert_eq!(t.last(), Some(&Duration::from_secs(120)));
        assert!(t.windows(2).all(|w| w[0] < w[1]), "{t:?}");
        for w in t.windows(2).skip(1) {
            let ratio = w[1].as_secs_f64() / w[0].as_secs_f64();
            assert!(ratio <= 1.3, "{t:?}");
        }
        assert!(t.len() <= LifetimeConfig::MAX_TRIALS);
        // A very long maximum still fits the socket budget.
        let long = LifetimeConfig::new(PRIMARY.parse().unwrap(), Duration::from_secs(3600));
        let t = long.idle_times();
        assert!(t.len() <= LifetimeConfig::MAX_TRIALS, "{}", t.len());
        assert_eq!(t.last(), Some(&Duration::from_secs(3600)));
    }

    #[test]
    fn finds_a_30_second_lifetime_in_about_30_seconds() {
        for filter in [Filter::Eif, Filter::Adf, Filter::Apdf] {
            let net = nat_with_lifetime(filter, Some(Duration::from_secs(30)));
            let (m, took) = run(net, ServerQuirks::default(), fast(120));
            let r = binding_lifetime(&m);
            let BindingLifetimeResult::Bounded {
                survives_at_least,
                expires_within,
                recommended_keepalive,
            } = r
            else {
                panic!("{filter:?}: {r:?} from {m:#?}");
            };
            assert!(survives_at_least <= Duration::from_secs(30), "{r:?}");
            assert!(survives_at_least >= Duration::from_secs(23), "{r:?}");
            assert!(expires_within >= Duration::from_secs(30), "{r:?}");
            assert!(expires_within <= Duration::from_secs(38), "{r:?}");
            assert!(recommended_keepalive < survives_at_least);
            assert!(
                recommended_keepalive.as_secs_f64() <= survives_at_least.as_secs_f64() * 2.0 / 3.0
            );
            // The run stops soon after the first expiry, not at the 120 s maximum.
            assert!(took < Duration::from_secs(45), "{took:?}");
            assert!(
                m.trials
                    .iter()
                    .any(|t| t.outcome == TrialOutcome::Skipped && t.planned_idle > expires_within),
                "longer idle times are not triggered"
            );
        }
    }

    #[test]
    fn a_short_lifetime_like_the_lab() {
        let net = nat_with_lifetime(Filter::Apdf, Some(Duration::from_secs(4)));
        let (m, _) = run(net, ServerQuirks::default(), fast(10));
        match binding_lifetime(&m) {
            BindingLifetimeResult::Bounded {
                survives_at_least,
                expires_within,
                ..
            } => {
                assert!(survives_at_least <= Duration::from_secs(4));
                assert!(survives_at_least >= Duration::from_secs(3));
                assert!(expires_within >= Duration::from_secs(4));
                assert!(expires_within <= Duration::from_secs(5));
            }
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn a_mapping_that_outlives_the_maximum() {
        let net = nat_with_lifetime(Filter::Apdf, None);
        let (m, took) = run(net, ServerQuirks::default(), fast(20));
        assert_eq!(
            binding_lifetime(&m),
            BindingLifetimeResult::AtLeast {
                survives_at_least: m.trials.last().unwrap().idle.unwrap(),
                recommended_keepalive: Duration::from_secs(13),
            }
        );
        assert!(m.trials.iter().all(|t| t.outcome == TrialOutcome::Alive));
        assert!(took >= Duration::from_secs(20) && took < Duration::from_secs(22));
    }

    #[test]
    fn one_lost_trigger_is_not_an_expiry() {
        let q = ServerQuirks {
            drop_first_from_default: true,
            ..ServerQuirks::default()
        };
        let net = nat_with_lifetime(Filter::Apdf, Some(Duration::from_secs(30)));
        let (m, _) = run(net, q, fast(10));
        assert!(matches!(
            binding_lifetime(&m),
            BindingLifetimeResult::AtLeast { .. }
        ));
    }

    #[test]
    fn a_server_ignoring_response_port_is_not_believed() {
        // It answers the trigger socket; the answer lands on the shared socket, not the mapping, so the control
        // fails instead of every mapping looking alive.
        let q = ServerQuirks {
            ignore_response_port: true,
            ..ServerQuirks::default()
        };
        let net = nat_with_lifetime(Filter::Apdf, Some(Duration::from_secs(30)));
        let (m, took) = run(net, q, fast(120));
        assert_eq!(
            binding_lifetime(&m),
            BindingLifetimeResult::Unknown {
                reason: LifetimeUnknown::ResponsePortUnsupported
            }
        );
        assert!(
            took < Duration::from_secs(5),
            "gives up after the control: {took:?}"
        );
        assert!(
            m.trials
                .iter()
                .skip(1)
                .all(|t| t.outcome == TrialOutcome::Skipped)
        );
    }

    #[test]
    fn a_server_rejecting_response_port_is_unsupported() {
        let q = ServerQuirks {
            reject_response_port: true,
            ..ServerQuirks::default()
        };
        let net = nat_with_lifetime(Filter::Eif, None);
        let (m, _) = run(net, q, fast(30));
        assert!(matches!(
            binding_lifetime(&m),
            BindingLifetimeResult::Unknown { .. }
        ));
    }

    #[test]
    fn udp_blocked_gives_no_mapping() {
        let (m, _) = run(Net::UdpBlocked, ServerQuirks::default(), fast(30));
        assert_eq!(
            binding_lifetime(&m),
            BindingLifetimeResult::Unknown {
                reason: LifetimeUnknown::NoMapping
            }
        );
    }

    #[test]
    fn without_inbound_refresh_the_answer_still_proves_the_idle_time() {
        let mut spec = NatSpec::new(Map::Eim, Filter::Apdf);
        spec.lifetime = Some(Duration::from_secs(12));
        spec.inbound_refresh = false;
        let (m, _) = run(Net::Nat(spec), ServerQuirks::default(), fast(60));
        let BindingLifetimeResult::Bounded {
            survives_at_least,
            expires_within,
            ..
        } = binding_lifetime(&m)
        else {
            panic!("{m:#?}")
        };
        assert!(survives_at_least <= Duration::from_secs(12));
        assert!(expires_within >= Duration::from_secs(12));
    }
}
