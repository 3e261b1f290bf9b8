//! Drive ONE sans-IO machine that also signals (the `stunmap pair` ICE session) on its
//! probe-private UDP sockets and the tokio clock, carrying its signalling messages to and from
//! channels (the rendezvous connection is on the other end).
//!
//! The loop is [`crate::driver::run`]'s, cut down to one machine: bind the sockets the
//! machine asks for (reporting each one's address with the routed source IP), then, each
//! turn, fire its timer, send what it transmits, forward its signals, and sleep until a
//! datagram, a signal, its timer, the deadline or cancellation. Cancellation asks the machine
//! to `cancel`; one with cleanup (a TURN allocation to release) keeps running for at most
//! `drain`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use probes::pair::session::Signalled;
use probes::{LocalSocket, Received};
use tokio::sync::mpsc;

use crate::driver::{Cancel, EngineError};
use crate::udp::{RecvBuffers, UdpEndpoint, routed_source};

/// Depth of the queue from the socket readers; a flood beyond it is dropped.
const QUEUE: usize = 1024;
/// Writes queued for the stream before it takes them (or connects).
const STREAM_QUEUE: usize = 256;
/// The reader id of the stream in the queue (private sockets are 0..255).
const STREAM: u8 = u8::MAX;
/// TCP connect and each write on the stream.
const STREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// Batches read straight from each private socket per loop turn (see [`take_arrived`]).
const RECV_TURNS: usize = 8;

/// How a signalled run ended.
#[derive(Debug)]
pub struct SignalledRun<O> {
    /// The machine's output (`None` if it was abandoned).
    pub output: Option<O>,
    /// Stopped by cancellation.
    pub interrupted: bool,
    /// Stopped by the deadline.
    pub deadline_reached: bool,
    /// Datagrams handed to the kernel.
    pub datagrams_sent: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Datagrams the machine did not take (junk, strays).
    pub ignored: u64,
    /// Sends that failed.
    pub send_errors: u64,
    /// Signals dropped because the channel was full or closed.
    pub signals_dropped: u64,
}

struct Readers(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Readers {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

fn clock_now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Run `probe` to completion, cancellation or `deadline`.
pub async fn run_signalled<P>(
    mut probe: P,
    mut inbox: mpsc::Receiver<P::In>,
    outbox: mpsc::Sender<P::Out>,
    cancel: Cancel,
    deadline: Option<Duration>,
    drain: Duration,
) -> Result<SignalledRun<P::Output>, EngineError>
where
    P: Signalled,
{
    let start = clock_now();
    let deadline_at = deadline.map(|d| start + d);
    let mut run = SignalledRun {
        output: None,
        interrupted: false,
        deadline_reached: false,
        datagrams_sent: 0,
        datagrams_received: 0,
        ignored: 0,
        send_errors: 0,
        signals_dropped: 0,
    };
    let mut sockets: Vec<Arc<UdpEndpoint>> = Vec::new();
    let (tx, mut rx) = mpsc::channel::<(u8, SocketAddr, Vec<u8>)>(QUEUE);
    let mut readers = Readers(Vec::new());
    if let Some(req) = probe.private_sockets() {
        let source_ip = routed_source(&req.toward).ok();
        for n in 0..req.count {
            let bound = UdpEndpoint::ephemeral_for(&req.toward);
            let ep = crate::driver::private_socket(&mut probe, n, &req.toward, source_ip, bound)?;
            readers.0.push(spawn_reader(ep.clone(), n, tx.clone()));
            sockets.push(ep);
        }
    }
    // A TCP stream the machine asked for (TURN over TCP): connected and read by a task of
    // its own, written through a bounded queue, so a slow connect stalls nothing else.
    let mut stream_tx: Option<mpsc::Sender<Vec<u8>>> = None;
    if let Some(server) = probe.stream_to() {
        let (wtx, wrx) = mpsc::channel::<Vec<u8>>(STREAM_QUEUE);
        stream_tx = Some(wtx);
        readers.0.push(spawn_stream(server, wrx, tx.clone()));
    }
    drop(tx);
    let mut buf = Vec::with_capacity(2048);
    let mut bufs = RecvBuffers::default();
    let mut drain_until: Option<Instant> = None;
    let mut inbox_open = true;
    loop {
        let now = clock_now();
        if drain_until.is_none()
            && let Some(s) = crate::driver::stopping(&cancel, deadline_at, now)
        {
            run.interrupted = s.interrupted;
            run.deadline_reached = s.deadline_reached;
            drain_until = Some(now + drain);
            if !probe.cancel(now) {
                forward_signals(&mut probe, &outbox, &mut run);
                run.output = probe.take_output();
                break;
            }
        }
        if drain_until.is_some_and(|t| now >= t) {
            forward_signals(&mut probe, &outbox, &mut run);
            run.output = probe.take_output();
            break;
        }
        take_arrived(&mut probe, &mut rx, &sockets, &mut bufs, &mut run);
        if probe.poll_timeout().is_some_and(|t| t <= now) {
            probe.handle_timeout(now);
        }
        loop {
            buf.clear();
            let Some(t) = probe.poll_transmit(now, &mut buf) else {
                break;
            };
            let ep = match t.local {
                LocalSocket::Private(n) => sockets.get(usize::from(n)),
                LocalSocket::Default => {
                    let queued = stream_tx
                        .as_ref()
                        .is_some_and(|w| w.try_send(buf.clone()).is_ok());
                    if queued {
                        run.datagrams_sent += 1;
                    } else {
                        run.send_errors += 1;
                    }
                    continue;
                }
            };
            let Some(ep) = ep else {
                run.send_errors += 1;
                continue;
            };
            match ep.send_to(t.destination, &buf).await {
                Ok(()) => run.datagrams_sent += 1,
                Err(_) => run.send_errors += 1,
            }
        }
        forward_signals(&mut probe, &outbox, &mut run);
        if probe.is_done() {
            run.output = probe.take_output();
            break;
        }
        let wake = probe
            .poll_timeout()
            .map(|t| t.max(now + Duration::from_millis(1)));
        let sleep = crate::clock::sleep_until_first(wake, deadline_at, drain_until);
        let draining = drain_until.is_some();
        tokio::select! {
            Some((n, from, data)) = rx.recv() => deliver(&mut probe, &mut run, n, from, &data),
            sig = inbox.recv(), if inbox_open => match sig {
                Some(s) => probe.handle_signal(clock_now(), s),
                None => inbox_open = false,
            },
            _ = sleep => {}
            _ = cancel.cancelled(), if !draining => {}
        }
    }
    drop(readers);
    Ok(run)
}

/// One datagram (or stream chunk, `n == STREAM`) to the machine.
fn deliver<P: Signalled>(
    probe: &mut P,
    run: &mut SignalledRun<P::Output>,
    n: u8,
    from: SocketAddr,
    data: &[u8],
) {
    run.datagrams_received += 1;
    let socket = if n == STREAM {
        LocalSocket::Default
    } else {
        LocalSocket::Private(n)
    };
    if probe
        .handle_input_on(clock_now(), Received { socket, from, data })
        .is_err()
    {
        run.ignored += 1;
    }
}

/// Hand the machine everything that has already arrived before any of its timers fires: what
/// the readers queued, then what still waits in the private sockets (a reader the scheduler
/// has not run yet has not read it). A loop that wakes late on a loaded host must not judge an
/// answer that came in time after the timeout it beat, as silence. Bounded per turn, so a
/// flood cannot hold the loop.
fn take_arrived<P: Signalled>(
    probe: &mut P,
    rx: &mut mpsc::Receiver<(u8, SocketAddr, Vec<u8>)>,
    sockets: &[Arc<UdpEndpoint>],
    bufs: &mut RecvBuffers,
    run: &mut SignalledRun<P::Output>,
) {
    for _ in 0..QUEUE {
        let Ok((n, from, data)) = rx.try_recv() else {
            break;
        };
        deliver(probe, run, n, from, &data);
    }
    for (n, ep) in (0u8..).zip(sockets) {
        crate::udp::read_waiting(ep, bufs, RECV_TURNS, |from, data| {
            deliver(probe, run, n, from, data);
        });
    }
}

fn forward_signals<P: Signalled>(
    probe: &mut P,
    outbox: &mpsc::Sender<P::Out>,
    run: &mut SignalledRun<P::Output>,
) {
    while let Some(s) = probe.poll_signal() {
        if outbox.try_send(s).is_err() {
            run.signals_dropped += 1;
        }
    }
}

fn spawn_reader(
    ep: Arc<UdpEndpoint>,
    n: u8,
    tx: mpsc::Sender<(u8, SocketAddr, Vec<u8>)>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        crate::udp::read_all(&ep, |from, data| {
            // A full queue drops the datagram (a flood cannot grow memory); a closed one ends
            // the reader.
            !(tx.try_send((n, from, data.to_vec())).is_err() && tx.is_closed())
        })
        .await;
    })
}

/// Connect to `server`, then copy the queue to the stream and the stream to the readers'
/// queue; an empty chunk tells the machine the connection failed or closed.
fn spawn_stream(
    server: SocketAddr,
    mut writes: mpsc::Receiver<Vec<u8>>,
    tx: mpsc::Sender<(u8, SocketAddr, Vec<u8>)>,
) -> tokio::task::JoinHandle<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::spawn(async move {
        let conn =
            tokio::time::timeout(STREAM_TIMEOUT, tokio::net::TcpStream::connect(server)).await;
        let Ok(Ok(stream)) = conn else {
            let _ = tx.send((STREAM, server, Vec::new())).await;
            return;
        };
        let _ = stream.set_nodelay(true);
        let (mut r, mut w) = stream.into_split();
        let reader = async {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let chunk = buf.get(..n).unwrap_or_default().to_vec();
                        if tx.send((STREAM, server, chunk)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        };
        let writer = async {
            while let Some(m) = writes.recv().await {
                match tokio::time::timeout(STREAM_TIMEOUT, w.write_all(&m)).await {
                    Ok(Ok(())) => {}
                    _ => return true,
                }
            }
            // The run is over: close quietly.
            false
        };
        let broken = tokio::select! {
            () = reader => true,
            b = writer => b,
        };
        if broken {
            let _ = tx.send((STREAM, server, Vec::new())).await;
        }
    })
}
