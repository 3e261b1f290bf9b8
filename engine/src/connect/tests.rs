use super::*;
use crate::clock::{ManualClock, Monotonic};
use std::collections::HashMap;

/// What a port does on each of its tries: answer `state` after a delay, or nothing.
type Plan = Vec<Option<(u64, TcpState)>>;

/// A network on virtual time: `wait` moves the clock to the first answer due or to the
/// end of the wait, never blocking. It has `sockets` descriptors to give out.
struct SimNet<'a> {
    clock: &'a ManualClock,
    plans: HashMap<u16, Plan>,
    tries: HashMap<u16, usize>,
    t0: Instant,
    /// (port, try, when it was started, ms).
    starts: Vec<(u16, usize, u128)>,
    sleeps: Vec<Duration>,
    sockets: usize,
}

impl<'a> SimNet<'a> {
    fn new(clock: &'a ManualClock, plans: &[(u16, Plan)], sockets: usize) -> Self {
        Self {
            clock,
            plans: plans.iter().cloned().collect(),
            tries: HashMap::new(),
            t0: clock.now(),
            starts: Vec::new(),
            sleeps: Vec::new(),
            sockets,
        }
    }
}

/// A connect in flight: its port and when its answer is due.
type SimConn = (u16, Option<Instant>);

impl Connector for SimNet<'_> {
    type Conn = SimConn;

    fn start(&mut self, port: u16) -> Started<SimConn> {
        if self.sockets == 0 {
            return Started::NoSocket(local_error(&io::Error::from_raw_os_error(libc::EMFILE)));
        }
        let now = self.clock.now();
        let n = self.tries.entry(port).or_default();
        let this = *n;
        *n += 1;
        self.starts.push((port, this, (now - self.t0).as_millis()));
        let answer = self
            .plans
            .get(&port)
            .and_then(|p| p.get(this).copied().flatten());
        match answer {
            Some((0, state)) => Started::Done(Decided::Answered {
                state,
                how: Answer::Direct,
                error: None,
            }),
            Some((ms, _)) => {
                self.sockets -= 1;
                Started::InFlight((port, Some(now + Duration::from_millis(ms))))
            }
            None => {
                self.sockets -= 1;
                Started::InFlight((port, None))
            }
        }
    }

    fn wait(
        &mut self,
        flight: &[InFlight<SimConn>],
        wait: Duration,
        ready: &mut Vec<bool>,
    ) -> io::Result<()> {
        let limit = self.clock.now() + wait;
        let first = flight
            .iter()
            .filter_map(|f| f.conn.1)
            .filter(|&t| t <= limit)
            .min();
        self.clock.set(first.unwrap_or(limit));
        let now = self.clock.now();
        ready.clear();
        ready.extend(flight.iter().map(|f| f.conn.1.is_some_and(|t| t <= now)));
        Ok(())
    }

    fn sleep(&mut self, d: Duration) {
        self.sleeps.push(d);
        self.clock.advance(d);
    }

    fn finish(&mut self, f: &InFlight<SimConn>) -> Finished {
        let this = self.tries.get(&f.port).copied().unwrap_or(1) - 1;
        let state = self
            .plans
            .get(&f.port)
            .and_then(|p| p.get(this).copied().flatten())
            .map_or(TcpState::Filtered, |a| a.1);
        let how = if state == TcpState::Unreachable {
            Answer::Icmp
        } else {
            Answer::Direct
        };
        Finished::Closed {
            state,
            how: Some(how),
            error: None,
            reset: true,
        }
    }

    fn conclude(&mut self, _: SimConn, how: Finished) -> Decided {
        self.sockets += 1;
        match how {
            Finished::Closed {
                state, how, error, ..
            } => Decided::closed(state, how, error),
            _ => Decided::Silent,
        }
    }

    fn abort(&mut self, _: SimConn) {
        self.sockets += 1;
    }
}

/// What the sink heard: (port, state, time ms, tries, when heard ms, errno).
type Heard = Vec<(u16, TcpState, Option<u128>, u8, u128, Option<String>)>;

struct Run {
    heard: Heard,
    starts: Vec<(u16, usize, u128)>,
    sleeps: Vec<Duration>,
    cancelled: bool,
    pacing: PacingSummary,
}

fn run_with(
    plans: &[(u16, Plan)],
    ports: &[u16],
    window: usize,
    cfg: PacingConfig,
    sockets: usize,
) -> Run {
    let clock = ManualClock::new(Monotonic.now());
    let t0 = clock.now();
    let mut net = SimNet::new(&clock, plans, sockets);
    let shared = SharedPacing::new(cfg, t0);
    let mut pacer = ConnectPacer::new(shared.clone());
    let mut heard = Vec::new();
    let mut sink = |port: u16, c: Connected| {
        let (state, time, tries, error) = match c {
            Connected::Open { time, tries, .. } => (TcpState::Open, Some(time), tries, None),
            Connected::Closed {
                state,
                time,
                tries,
                error,
            } => (state, time, tries, error.map(|e| e.errno)),
        };
        let at = (clock.now() - t0).as_millis();
        heard.push((port, state, time.map(|t| t.as_millis()), tries, at, error));
        true
    };
    let cancelled = sweep(
        &mut net,
        &clock,
        ports,
        window,
        &mut pacer,
        &Cancel::never(),
        &mut sink,
    );
    Run {
        heard,
        starts: net.starts,
        sleeps: net.sleeps,
        cancelled,
        pacing: shared.summary(),
    }
}

/// A fast fixed rate: the bucket never holds a connect back.
fn free(timeout_ms: u64) -> PacingConfig {
    PacingConfig::fixed(10_000_000, Duration::from_millis(timeout_ms))
}

fn answers(state: TcpState, ms: u64) -> Plan {
    vec![Some((ms, state)); 2]
}

#[test]
fn silent_ports_get_a_second_try_before_new_ports_and_then_count_as_filtered() {
    let r = run_with(&[], &[1, 2, 3], 2, free(1000), 64);
    assert!(!r.cancelled);
    // No answer ever: the initial timeout throughout; a resend goes ahead of port 3.
    assert_eq!(
        r.starts,
        vec![
            (1, 0, 0),
            (2, 0, 0),
            (1, 1, 1000),
            (2, 1, 1000),
            (3, 0, 2000),
            (3, 1, 3000)
        ]
    );
    let f = TcpState::Filtered;
    assert_eq!(
        r.heard,
        vec![
            (1, f, None, 2, 2000, None),
            (2, f, None, 2, 2000, None),
            (3, f, None, 2, 4000, None)
        ]
    );
    assert_eq!(r.pacing.resends, 3);
}

#[test]
fn the_timeout_follows_measured_round_trips_also_for_tries_already_in_flight() {
    // Port 1 answers in 5 ms; ports 2 and 3 never do. Their first tries started with the
    // initial 1 s wait, and expire at the 100 ms minimum once port 1's answer is in.
    let plans = [(1, answers(TcpState::Refused, 5))];
    let r = run_with(&plans, &[1, 2, 3], 8, free(1000), 64);
    let f = TcpState::Filtered;
    let mut heard = r.heard.clone();
    heard.sort_unstable();
    assert_eq!(
        heard,
        vec![
            (1, TcpState::Refused, Some(5), 1, 5, None),
            (2, f, None, 2, 200, None),
            (3, f, None, 2, 200, None)
        ]
    );
    assert_eq!(r.pacing.rtt_samples, 1);
    assert_eq!(r.pacing.timeout, Duration::from_millis(100));
}

#[test]
fn a_fixed_rate_spaces_connects_and_answers_are_timed_from_their_own_try() {
    let r = TcpState::Refused;
    let plans: Vec<_> = (1..=4).map(|p| (p, answers(r, 5))).collect();
    let run = run_with(
        &plans,
        &[1, 2, 3, 4],
        16,
        PacingConfig::fixed(10, Duration::from_secs(1)),
        64,
    );
    let at: Vec<_> = run.starts.iter().map(|s| (s.0, s.2)).collect();
    assert_eq!(at, vec![(1, 0), (2, 100), (3, 200), (4, 300)]);
    assert_eq!(
        run.heard,
        vec![
            (1, r, Some(5), 1, 5, None),
            (2, r, Some(5), 1, 105, None),
            (3, r, Some(5), 1, 205, None),
            (4, r, Some(5), 1, 305, None)
        ]
    );
}

#[test]
fn a_port_that_answers_only_the_resend_is_loss_and_halves_the_rate() {
    // Port 7's first SYN is lost, its second refused; the others refuse at once.
    let mut plans: Vec<(u16, Plan)> = (1..=6)
        .map(|p| (p, answers(TcpState::Refused, 2)))
        .collect();
    plans.push((7, vec![None, Some((2, TcpState::Refused))]));
    let run = run_with(
        &plans,
        &[1, 2, 3, 4, 5, 6, 7],
        16,
        PacingConfig::fixed(1000, Duration::from_secs(1)),
        64,
    );
    let seven = run.heard.iter().find(|h| h.0 == 7).unwrap();
    assert_eq!((seven.1, seven.2, seven.3), (TcpState::Refused, Some(2), 2));
    assert_eq!(run.pacing.loss_backoffs, 1);
    assert_eq!(run.pacing.final_pps, 500);
}

#[test]
fn the_polite_default_starts_at_250_per_second_and_grows_while_ports_answer() {
    let r = TcpState::Refused;
    let ports: Vec<u16> = (1..=400).collect();
    let plans: Vec<_> = ports.iter().map(|&p| (p, answers(r, 1))).collect();
    let run = run_with(
        &plans,
        &ports,
        64,
        PacingConfig::polite(Duration::from_secs(1)),
        1024,
    );
    assert_eq!(run.heard.len(), 400);
    // The first 12 go at once (a bucket of 50 ms at 250/s), the next ones spaced by the
    // rate, which the answers raise.
    let at: Vec<u128> = run.starts.iter().map(|s| s.2).collect();
    assert!(at[..12].iter().all(|&t| t == 0), "{at:?}");
    assert!(at[12] >= 1, "{at:?}");
    assert_eq!(run.pacing.peak_pps, 4000);
    // Far faster than 400 ports at 250/s (1.6 s).
    assert!(*at.last().unwrap() < 700, "{at:?}");
}

#[test]
fn without_descriptors_ports_wait_for_one_then_report_the_error() {
    // One socket: every port still gets its turn, one after the other.
    let plans: Vec<_> = (1..=3)
        .map(|p| (p, answers(TcpState::Refused, 10)))
        .collect();
    let run = run_with(&plans, &[1, 2, 3], 8, free(1000), 1);
    let mut states: Vec<_> = run.heard.iter().map(|h| (h.0, h.1, h.4)).collect();
    states.sort_unstable();
    let r = TcpState::Refused;
    assert_eq!(states, vec![(1, r, 10), (2, r, 20), (3, r, 30)]);
    // None at all: each port waits STARVED_LIMIT once, then the error is reported.
    let run = run_with(&plans, &[1, 2], 8, free(1000), 0);
    let e = Some("EMFILE".to_string());
    assert_eq!(
        run.heard,
        vec![
            (1, TcpState::Error, None, 0, 2000, e.clone()),
            (2, TcpState::Error, None, 0, 2000, e)
        ]
    );
    assert!(run.sleeps.iter().all(|&s| s == STARVED_RETRY));
    assert_eq!(run.sleeps.len(), 100);
}

#[test]
fn every_port_ends_exactly_once_whatever_the_network_does() {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut plans = Vec::new();
    let ports: Vec<u16> = (1..=300).collect();
    for &p in &ports {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let one = |v: u64| match v % 5 {
            0 => None,
            1 => Some((v % 300, TcpState::Refused)),
            2 => Some((0, TcpState::Refused)),
            3 => Some((v % 900, TcpState::Unreachable)),
            _ => Some((v % 50, TcpState::Refused)),
        };
        plans.push((p, vec![one(x), one(x >> 8)]));
    }
    for (window, sockets) in [(1, 1), (7, 3), (64, 1024)] {
        let run = run_with(
            &plans,
            &ports,
            window,
            PacingConfig::polite(Duration::from_millis(800)),
            sockets,
        );
        let mut seen: Vec<u16> = run.heard.iter().map(|h| h.0).collect();
        seen.sort_unstable();
        assert_eq!(seen, ports, "window {window}");
        for h in &run.heard {
            assert!((1..=MAX_TRIES).contains(&h.3), "{h:?}");
        }
    }
}

#[test]
fn a_cancel_stops_the_sweep_before_any_connect() {
    let clock = ManualClock::new(Monotonic.now());
    let mut net = SimNet::new(&clock, &[], 8);
    let mut pacer = ConnectPacer::new(SharedPacing::new(free(1000), clock.now()));
    let (handle, cancel) = Cancel::new();
    handle.cancel();
    let mut sink = |_: u16, _: Connected| -> bool { panic!("no connect after a cancel") };
    assert!(sweep(
        &mut net,
        &clock,
        &[1, 2],
        4,
        &mut pacer,
        &cancel,
        &mut sink
    ));
    assert!(net.starts.is_empty());
}

#[test]
fn poll_waits_end_at_the_earliest_deadline_or_token_and_never_exceed_the_cap() {
    let t0 = Monotonic.now();
    let ms = Duration::from_millis;
    let shared = SharedPacing::new(PacingConfig::fixed(20, ms(1500)), t0);
    let mut p = ConnectPacer::new(shared);
    assert_eq!(p.grant(t0, 5), 1);
    assert_eq!(p.grant(t0, 5), 0);
    assert_eq!(p.token_wait(t0), ms(50));
    // The window is full: only the deadline counts (far off: capped).
    assert_eq!(p.poll_wait(t0, t0, false), MAX_POLL_WAIT);
    assert_eq!(p.poll_wait(t0 + ms(1460), t0, false), ms(40));
    assert_eq!(p.poll_wait(t0 + ms(1600), t0, false), Duration::ZERO);
    // More may start: the next token is sooner.
    assert_eq!(p.poll_wait(t0 + ms(20), t0, true), ms(30));
    assert!(!p.expired(t0, t0 + ms(1499)));
    assert!(p.expired(t0, t0 + ms(1500)));
    // A slow rate never makes a sleep longer than the cap.
    let mut slow = ConnectPacer::new(SharedPacing::new(PacingConfig::fixed(1, ms(1500)), t0));
    assert_eq!(slow.grant(t0, 1), 1);
    assert_eq!(slow.token_wait(t0), MAX_POLL_WAIT);
}

#[test]
fn os_errors_are_named() {
    let e = local_error(&io::Error::from_raw_os_error(libc::EMFILE));
    assert_eq!(e.errno, "EMFILE");
    assert_eq!(e.message, "Too many open files");
    assert_eq!(errno_name(libc::ENETUNREACH), "ENETUNREACH");
    assert_eq!(errno_name(9999), "E9999");
    let d = immediate_outcome(&io::Error::from_raw_os_error(libc::EACCES));
    assert!(
        matches!(
            d,
            Decided::Local {
                state: TcpState::Error,
                ..
            }
        ),
        "{d:?}"
    );
    let d = immediate_outcome(&io::Error::from_raw_os_error(libc::ENETUNREACH));
    assert!(
        matches!(&d, Decided::Local { state: TcpState::Error, error } if error.errno == "ENETUNREACH"),
        "{d:?}"
    );
    let d = immediate_outcome(&io::Error::from_raw_os_error(libc::ECONNREFUSED));
    assert!(
        matches!(
            d,
            Decided::Answered {
                state: TcpState::Refused,
                ..
            }
        ),
        "{d:?}"
    );
    let (s, how, e) = later_outcome(&io::Error::from_raw_os_error(libc::EHOSTUNREACH));
    assert_eq!((s, how), (TcpState::Unreachable, Some(Answer::Icmp)));
    assert_eq!(e.unwrap().errno, "EHOSTUNREACH");
}
