//! `engine::ice::run_signalled` on paused (virtual) tokio time: signals carried both ways,
//! timers, the deadline, cancellation and the drain, exactly and without sleeping. The
//! machine is a toy that speaks the verbs; its datagrams go to a loopback socket that is
//! bound and read by the test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use engine::Cancel;
use engine::ice::run_signalled;
use probes::pair::session::Signalled;
use probes::stun::TransactionId;
use probes::{Ignored, LocalSocket, PrivateSockets, Probe, Transmit};
use tokio::sync::mpsc;

/// Sends one datagram at start, answers each signal n with n + 1, emits signal 100 at 1 s,
/// finishes at 3 s. With `cleanup`, cancellation keeps it running (forever unless `finish_in`).
struct Toy {
    dest: SocketAddr,
    start: Option<Instant>,
    local: Option<SocketAddr>,
    sent: bool,
    out: Vec<u32>,
    got: Vec<u32>,
    timer_fired: bool,
    done: bool,
    cleanup: bool,
    finish_in: Option<Duration>,
    cancelled_at: Option<Instant>,
    received: usize,
}

impl Toy {
    fn new(dest: SocketAddr) -> Self {
        Toy {
            dest,
            start: None,
            local: None,
            sent: false,
            out: Vec::new(),
            got: Vec::new(),
            timer_fired: false,
            done: false,
            cleanup: false,
            finish_in: None,
            cancelled_at: None,
            received: 0,
        }
    }
}

#[derive(Debug, PartialEq)]
struct ToyOut {
    got: Vec<u32>,
    at: Duration,
    received: usize,
    local: Option<SocketAddr>,
}

impl Probe for Toy {
    type Output = ToyOut;

    fn handle_input(
        &mut self,
        _now: Instant,
        _from: SocketAddr,
        _data: &[u8],
    ) -> Result<(), Ignored> {
        self.received += 1;
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        let start = *self.start.get_or_insert(now);
        if let Some(c) = self.cancelled_at {
            if self.finish_in.is_some_and(|d| now >= c + d) {
                self.done = true;
            }
            return;
        }
        if now >= start + Duration::from_secs(1) && !self.timer_fired {
            self.timer_fired = true;
            self.out.push(100);
        }
        if now >= start + Duration::from_secs(3) {
            self.done = true;
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.start.get_or_insert(now);
        if self.sent {
            return None;
        }
        self.sent = true;
        buf.extend_from_slice(b"toy");
        Some(first_datagram(self.dest))
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let start = self.start?;
        if let Some(c) = self.cancelled_at {
            return self.finish_in.map(|d| c + d);
        }
        Some(if self.timer_fired {
            start + Duration::from_secs(3)
        } else {
            start + Duration::from_secs(1)
        })
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn take_output(&mut self) -> Option<ToyOut> {
        let start = self.start?;
        Some(ToyOut {
            got: std::mem::take(&mut self.got),
            at: tokio::time::Instant::now().into_std() - start,
            received: self.received,
            local: self.local,
        })
    }

    fn cancel(&mut self, now: Instant) -> bool {
        self.cancelled_at = Some(now);
        self.cleanup
    }

    fn private_sockets(&self) -> Option<PrivateSockets> {
        Some(one_socket(self.dest))
    }

    fn handle_local_addr(&mut self, _socket: LocalSocket, addr: SocketAddr) {
        self.local = Some(addr);
    }
}

impl Signalled for Toy {
    type In = u32;
    type Out = u32;

    fn handle_signal(&mut self, _now: Instant, n: u32) {
        self.got.push(n);
        self.out.push(n + 1);
    }

    fn poll_signal(&mut self) -> Option<u32> {
        (!self.out.is_empty()).then(|| self.out.remove(0))
    }
}

/// The one datagram a toy sends, from its private socket 0 to `dest`.
fn first_datagram(dest: SocketAddr) -> Transmit {
    Transmit {
        destination: dest,
        local: LocalSocket::Private(0),
        transaction_id: TransactionId([0; 12]),
        attempt: 0,
    }
}

/// One private socket toward `dest`.
fn one_socket(dest: SocketAddr) -> PrivateSockets {
    PrivateSockets {
        count: 1,
        toward: dest,
    }
}

fn peer() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

#[tokio::test(start_paused = true)]
async fn signals_both_ways_and_the_machine_timer() {
    let (sock, dest) = peer();
    let (in_tx, in_rx) = mpsc::channel(8);
    let (out_tx, mut out_rx) = mpsc::channel(8);
    in_tx.send(7).await.unwrap();
    let run = run_signalled(
        Toy::new(dest),
        in_rx,
        out_tx,
        Cancel::never(),
        None,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let out = run.output.unwrap();
    assert_eq!(out.got, vec![7]);
    assert_eq!(out.at, Duration::from_secs(3));
    assert!(!run.interrupted && !run.deadline_reached);
    assert_eq!(run.datagrams_sent, 1);
    // The routed source IP toward loopback, with the bound port.
    assert_eq!(out.local.unwrap().ip(), dest.ip());
    let mut buf = [0u8; 16];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"toy");
    let mut signals = Vec::new();
    while let Ok(s) = out_rx.try_recv() {
        signals.push(s);
    }
    assert_eq!(signals, vec![8, 100]);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_stops_a_machine_without_cleanup_at_once() {
    let (_sock, dest) = peer();
    let (_in_tx, in_rx) = mpsc::channel::<u32>(8);
    let (out_tx, _out_rx) = mpsc::channel(8);
    let start = tokio::time::Instant::now();
    let run = run_signalled(
        Toy::new(dest),
        in_rx,
        out_tx,
        Cancel::never(),
        Some(Duration::from_millis(1500)),
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert!(run.deadline_reached && !run.interrupted);
    assert_eq!(start.elapsed(), Duration::from_millis(1500));
    assert_eq!(run.output.unwrap().at, Duration::from_millis(1500));
}

#[tokio::test(start_paused = true)]
async fn cancellation_drains_cleanup_for_at_most_the_drain_time() {
    let (_sock, dest) = peer();
    // Cleanup that finishes after 300 ms: the run ends then, with its output.
    let (handle, cancel) = Cancel::new();
    let (_in_tx, in_rx) = mpsc::channel::<u32>(8);
    let (out_tx, _out_rx) = mpsc::channel(8);
    let mut toy = Toy::new(dest);
    toy.cleanup = true;
    toy.finish_in = Some(Duration::from_millis(300));
    let start = tokio::time::Instant::now();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        handle.cancel();
    });
    let run = run_signalled(toy, in_rx, out_tx, cancel, None, Duration::from_secs(2))
        .await
        .unwrap();
    canceller.await.unwrap();
    assert!(run.interrupted);
    assert_eq!(start.elapsed(), Duration::from_millis(800));
    assert!(run.output.is_some());

    // Cleanup that never finishes: cut at the drain time.
    let (handle, cancel) = Cancel::new();
    let (_in_tx, in_rx) = mpsc::channel::<u32>(8);
    let (out_tx, _out_rx) = mpsc::channel(8);
    let mut toy = Toy::new(dest);
    toy.cleanup = true;
    let start = tokio::time::Instant::now();
    handle.cancel();
    let run = run_signalled(toy, in_rx, out_tx, cancel, None, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(run.interrupted);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

/// Sends one datagram, gives up at 100 ms unless an answer came first.
struct Patient {
    dest: SocketAddr,
    deadline: Option<Instant>,
    answered: Option<bool>,
}

impl Probe for Patient {
    type Output = bool;

    fn handle_input(&mut self, _: Instant, _: SocketAddr, _: &[u8]) -> Result<(), Ignored> {
        self.answered.get_or_insert(true);
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| now >= d) {
            self.answered.get_or_insert(false);
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        if self.deadline.is_some() {
            return None;
        }
        self.deadline = Some(now + Duration::from_millis(100));
        buf.extend_from_slice(b"ping");
        Some(first_datagram(self.dest))
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.deadline.filter(|_| self.answered.is_none())
    }

    fn is_done(&self) -> bool {
        self.answered.is_some()
    }

    fn take_output(&mut self) -> Option<bool> {
        self.answered
    }

    fn cancel(&mut self, _: Instant) -> bool {
        false
    }

    fn private_sockets(&self) -> Option<PrivateSockets> {
        Some(one_socket(self.dest))
    }
}

impl Signalled for Patient {
    type In = u32;
    type Out = u32;

    fn handle_signal(&mut self, _: Instant, _: u32) {}

    fn poll_signal(&mut self) -> Option<u32> {
        None
    }
}

/// Eight rounds of a late wake. The echo answers each request 50 ms after it, and the
/// runtime's thread is busy from 10 ms to 260 ms, so the answer (at 50 ms) and `Patient`'s
/// timer (at 100 ms) are both waiting when the loop runs again. `run` drives one `Patient` and
/// returns its output, which must be the answer. Real time and real loopback sockets (the
/// lateness is a blocked thread); eight rounds, since without the rule which of the two the
/// loop sees first is a coin toss.
async fn late_wake_rounds<Fut: Future<Output = Option<bool>>>(run: impl Fn(Patient) -> Fut) {
    const ROUNDS: usize = 8;
    let (sock, dest) = peer();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        for _ in 0..ROUNDS {
            let (n, from) = sock.recv_from(&mut buf).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            sock.send_to(&buf[..n], from).unwrap();
        }
    });
    for round in 0..ROUNDS {
        let blocker = tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            std::thread::sleep(Duration::from_millis(250));
        });
        let output = run(Patient {
            dest,
            deadline: None,
            answered: None,
        })
        .await;
        blocker.await.unwrap();
        assert_eq!(output, Some(true), "round {round}: judged silent");
    }
    echo.join().unwrap();
}

/// A signalled loop that wakes late finds both its timer due and an answer that arrived
/// before it: the answer counts, not the timeout.
#[tokio::test]
async fn an_answer_that_beat_the_timer_counts_after_a_late_wake() {
    late_wake_rounds(|probe| async move {
        let (_in_tx, in_rx) = mpsc::channel::<u32>(1);
        let (out_tx, _out_rx) = mpsc::channel(1);
        run_signalled(probe, in_rx, out_tx, Cancel::never(), None, Duration::ZERO)
            .await
            .unwrap()
            .output
    })
    .await;
}

/// The same late wake in the driver (`engine::run_one`), whose private sockets are read by
/// reader tasks: an answer already in the socket when the loop runs again counts, although
/// the reader task had no turn yet to queue it.
#[tokio::test]
async fn the_driver_counts_a_private_answer_that_beat_the_timer_after_a_late_wake() {
    late_wake_rounds(|probe| async move {
        engine::run_one(probe, None, Cancel::never())
            .await
            .unwrap()
            .0
    })
    .await;
}
