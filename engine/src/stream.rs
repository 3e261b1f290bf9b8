//! Drive ONE sans-IO [`Probe`] over a TCP or TLS connection (TURN over TCP/TLS, RFC 8656 §3.1,
//! RFC 6062 §2 for the framing).
//!
//! Transmits on [`LocalSocket::Default`] go down the stream as they are (the probe already
//! padded ChannelData to four bytes, RFC 8656 §12.5); transmits on [`LocalSocket::Private`]
//! leave from plain UDP sockets bound for the probe (a relay benchmark's peer socket). What
//! arrives on the stream is cut into STUN messages and ChannelData messages by
//! [`probes::turn::channel::StreamFramer`] and handed to the probe as coming from the server.
//!
//! Every write is bounded by `io_timeout`; reads wait at most until the probe's next timeout;
//! the connection and the TLS handshake each have `connect_timeout`. Cancellation
//! ([`Cancel`]) asks the probe to `cancel`; a probe with cleanup to do (a TURN allocation to
//! release) keeps running for at most `drain`. If the stream breaks, the probe is told to
//! cancel and its timers are fast-forwarded without I/O so it still produces its output (with
//! the failure visible in it, e.g. a release that timed out).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use probes::turn::channel::StreamFramer;
use probes::{LocalSocket, Probe};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::clock::now;
use crate::driver::Cancel;
use crate::tcp::ConnectOutcome;
use crate::udp::routed_source;

/// Errors preparing a stream run (bad TLS settings). What happens on the wire is reported in
/// [`StreamRun`], not as an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The extra CA file could not be read or holds no certificate.
    #[error("cannot use CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The TLS configuration was refused by rustls.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The host is not a valid TLS server name.
    #[error("{host:?} is not a valid TLS server name")]
    ServerName {
        /// The host.
        host: String,
    },
}

/// Plain TCP or TLS.
#[derive(Clone, Debug)]
pub enum Security {
    /// TCP.
    Plain,
    /// TLS over TCP, verified against `config`'s roots for `server_name`.
    Tls {
        /// The name (or IP) the certificate must match.
        server_name: ServerName<'static>,
        /// rustls client configuration.
        config: Arc<rustls::ClientConfig>,
    },
}

/// The certificates of the PEM file at `path` (at least one), or why not.
pub(crate) fn pem_certificates(
    path: &std::path::Path,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate in the file".into());
    }
    Ok(certs)
}

impl Security {
    /// TLS with the webpki roots plus, optionally, the certificates of a PEM file (a private
    /// CA, or a self-signed server certificate in a lab), using ring.
    pub fn tls(host: &str, extra_ca: Option<&std::path::Path>) -> Result<Self, StreamError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = extra_ca {
            let err = |reason: String| StreamError::CaFile {
                path: path.display().to_string(),
                reason,
            };
            let certs = pem_certificates(path).map_err(err)?;
            for c in certs {
                roots.add(c).map_err(|e| err(e.to_string()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = ServerName::try_from(host.to_string())
            .map_err(|_| StreamError::ServerName { host: host.into() })?;
        Ok(Security::Tls {
            server_name,
            config: Arc::new(config),
        })
    }
}

/// Timeouts of a stream run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamOptions {
    /// TCP connect, and separately the TLS handshake.
    pub connect_timeout: Duration,
    /// Each write.
    pub io_timeout: Duration,
    /// After cancellation, how long a probe with cleanup may keep running.
    pub drain: Duration,
    /// Cap on the whole run (then it stops as if cancelled).
    pub deadline: Option<Duration>,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(5),
            drain: Duration::from_secs(2),
            deadline: None,
        }
    }
}

/// What a stream run produced.
#[derive(Debug)]
pub struct StreamRun<O> {
    /// The probe's output (`None` when it could not finish, e.g. no connection).
    pub output: Option<O>,
    /// How the connection went.
    pub connect: ConnectOutcome,
    /// TLS version and cipher suite, when TLS.
    pub tls: Option<String>,
    /// Why the stream ended early, if it did.
    pub error: Option<String>,
    /// Cancelled (Ctrl-C).
    pub interrupted: bool,
    /// The global deadline was reached.
    pub deadline_reached: bool,
}

/// How long a cancelled run waits for the stream's shutdown (TLS close_notify, FIN).
const SHUTDOWN_WHEN_STOPPED: Duration = Duration::from_millis(100);

/// Iterations allowed when fast-forwarding a probe whose stream broke.
const FAST_FORWARD_STEPS: usize = 1000;

/// Run `probe` over a new connection to `server`.
pub async fn run_stream<P: Probe>(
    mut probe: P,
    server: SocketAddr,
    security: Security,
    opts: StreamOptions,
    cancel: Cancel,
) -> StreamRun<P::Output> {
    let start = now();
    let mut run = StreamRun {
        output: None,
        connect: ConnectOutcome::Timeout,
        tls: None,
        error: None,
        interrupted: false,
        deadline_reached: false,
    };
    // The connection and the handshake end at once on cancellation: nothing was allocated
    // yet, so there is nothing to clean up.
    let connect = tokio::time::timeout(opts.connect_timeout, crate::source::connect_tcp(server));
    let tcp = tokio::select! {
        r = connect => match r {
            Err(_) => return run,
            Ok(Err(e)) => {
                run.connect = ConnectOutcome::from_error(&e);
                return run;
            }
            Ok(Ok(s)) => s,
        },
        _ = cancel.cancelled() => {
            run.interrupted = true;
            run.error = Some("stopped while connecting".into());
            return run;
        }
    };
    run.connect = ConnectOutcome::Connected {
        time: now().saturating_duration_since(start),
    };
    let _ = tcp.set_nodelay(true);
    if let Ok(local) = tcp.local_addr() {
        probe.handle_local_addr(LocalSocket::Default, local);
    }
    match security {
        Security::Plain => drive(probe, server, tcp, opts, cancel, start, run).await,
        Security::Tls {
            server_name,
            config,
        } => {
            let connector = tokio_rustls::TlsConnector::from(config);
            let handshake =
                tokio::time::timeout(opts.connect_timeout, connector.connect(server_name, tcp));
            let handshake = tokio::select! {
                r = handshake => r,
                _ = cancel.cancelled() => {
                    run.interrupted = true;
                    run.error = Some("stopped during the TLS handshake".into());
                    return run;
                }
            };
            match handshake {
                Err(_) => {
                    run.error = Some("TLS handshake timed out".into());
                    run
                }
                Ok(Err(e)) => {
                    run.error = Some(format!("TLS handshake failed: {e}"));
                    run
                }
                Ok(Ok(tls)) => {
                    let (_, conn) = tls.get_ref();
                    run.tls = Some(
                        format!(
                            "{:?} {:?}",
                            conn.protocol_version()
                                .map_or_else(|| "?".to_string(), |v| format!("{v:?}")),
                            conn.negotiated_cipher_suite()
                                .map_or_else(|| "?".to_string(), |c| format!("{:?}", c.suite()))
                        )
                        .replace('"', ""),
                    );
                    drive(probe, server, tls, opts, cancel, start, run).await
                }
            }
        }
    }
}

struct UdpDatagram {
    from: SocketAddr,
    data: Vec<u8>,
}

async fn bind_private<P: Probe>(
    probe: &mut P,
    tx: &mpsc::Sender<UdpDatagram>,
) -> io::Result<Vec<(Arc<UdpSocket>, tokio::task::JoinHandle<()>)>> {
    let mut out = Vec::new();
    let Some(req) = probe.private_sockets() else {
        return Ok(out);
    };
    let source = routed_source(&req.toward).ok();
    for n in 0..req.count {
        let sock = Arc::new(crate::source::tokio_udp_for(&req.toward)?);
        let mut local = sock.local_addr()?;
        if let Some(ip) = source {
            local.set_ip(ip);
        }
        probe.handle_local_addr(LocalSocket::Private(n), local);
        let reader = sock.clone();
        let tx = tx.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                match reader.recv_from(&mut buf).await {
                    Ok((len, from)) => {
                        let data = buf.get(..len).unwrap_or(&[]).to_vec();
                        // A full queue drops the datagram: memory stays bounded.
                        let _ = tx.try_send(UdpDatagram { from, data });
                    }
                    // ICMP errors surface here; keep reading.
                    Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            }
        });
        out.push((sock, task));
    }
    Ok(out)
}

async fn drive<P: Probe, S: AsyncRead + AsyncWrite + Unpin>(
    mut probe: P,
    server: SocketAddr,
    stream: S,
    opts: StreamOptions,
    cancel: Cancel,
    start: Instant,
    mut run: StreamRun<P::Output>,
) -> StreamRun<P::Output> {
    let (tx, mut rx) = mpsc::channel::<UdpDatagram>(1024);
    let udp = match bind_private(&mut probe, &tx).await {
        Ok(s) => s,
        Err(e) => {
            run.error = Some(format!("cannot bind a UDP socket: {e}"));
            return run;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut framer = StreamFramer::new();
    let mut rbuf = vec![0u8; 65536];
    let mut out = Vec::with_capacity(2048);
    let deadline_at = opts.deadline.map(|d| start + d);
    let mut drain_until: Option<Instant> = None;
    let mut broken = false;
    loop {
        let t_now = now();
        if drain_until.is_none()
            && let Some(s) = crate::driver::stopping(&cancel, deadline_at, t_now)
        {
            run.interrupted = s.interrupted;
            run.deadline_reached = s.deadline_reached;
            if !probe.cancel(t_now) {
                break;
            }
            drain_until = Some(t_now + opts.drain);
        }
        if drain_until.is_some_and(|t| t_now >= t) {
            break;
        }
        if probe.poll_timeout().is_some_and(|t| t <= t_now) {
            probe.handle_timeout(t_now);
        }
        // Transmit everything due.
        loop {
            out.clear();
            let Some(t) = probe.poll_transmit(now(), &mut out) else {
                break;
            };
            match t.local {
                LocalSocket::Default => {
                    match tokio::time::timeout(opts.io_timeout, wr.write_all(&out)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            run.error = Some(format!("write failed: {e}"));
                            broken = true;
                        }
                        Err(_) => {
                            run.error = Some("write timed out".into());
                            broken = true;
                        }
                    }
                }
                LocalSocket::Private(n) => {
                    if let Some((sock, _)) = udp.get(usize::from(n)) {
                        let _ = sock.try_send_to(&out, t.destination);
                    }
                }
            }
            if broken {
                break;
            }
        }
        if broken || probe.is_done() {
            break;
        }
        let wake = probe.poll_timeout();
        let sleep = crate::clock::sleep_until_first(wake, deadline_at, drain_until);
        let draining = drain_until.is_some();
        tokio::select! {
            r = rd.read(&mut rbuf) => match r {
                Ok(0) => {
                    run.error = Some(format!(
                        "server closed the connection ({} bytes of an unfinished message)",
                        framer.buffered()
                    ));
                    broken = true;
                }
                Ok(n) => {
                    framer.push(rbuf.get(..n).unwrap_or(&[]));
                    loop {
                        match framer.next_frame() {
                            Ok(Some(frame)) => {
                                let _ = probe.handle_input(now(), server, frame.bytes());
                            }
                            Ok(None) => break,
                            Err(e) => {
                                run.error = Some(e.to_string());
                                broken = true;
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    run.error = Some(format!("read failed: {e}"));
                    broken = true;
                }
            },
            Some(d) = rx.recv() => {
                let _ = probe.handle_input(now(), d.from, &d.data);
            }
            _ = sleep => {}
            _ = cancel.cancelled(), if !draining => {}
        }
        if broken {
            break;
        }
    }
    if broken && !probe.is_done() {
        fast_forward(&mut probe);
    }
    for (_, task) in &udp {
        task.abort();
    }
    // A stopped run does not wait on a peer that does not read.
    let shutdown = if run.interrupted || run.deadline_reached {
        opts.io_timeout.min(SHUTDOWN_WHEN_STOPPED)
    } else {
        opts.io_timeout
    };
    let _ = tokio::time::timeout(shutdown, wr.shutdown()).await;
    run.output = probe.take_output();
    run
}

/// The stream is gone: cancel the probe and run its timers out without I/O, so it concludes
/// (reporting the requests that never got an answer).
fn fast_forward<P: Probe>(probe: &mut P) {
    let mut now = now();
    probe.cancel(now);
    let mut scratch = Vec::new();
    for _ in 0..FAST_FORWARD_STEPS {
        if probe.is_done() {
            return;
        }
        while probe.poll_transmit(now, &mut scratch).is_some() {
            scratch.clear();
        }
        match probe.poll_timeout() {
            Some(t) => now = now.max(t),
            None => now += Duration::from_secs(1),
        }
        probe.handle_timeout(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use probes::Ignored;
    use probes::machine::Transmit;
    use std::sync::{Arc, Mutex};

    type Log = Arc<Mutex<Vec<(&'static str, u128)>>>;

    /// A probe that ticks every `period` and never finishes by itself; `cleanup`: its cancel
    /// has work to do (it keeps ticking through the drain). Records when things happened.
    struct Ticker {
        t0: Instant,
        period: Duration,
        next: Instant,
        cleanup: bool,
        log: Log,
    }

    impl Ticker {
        fn new(period: Duration, cleanup: bool) -> (Self, Log) {
            let t0 = now();
            let log = Arc::new(Mutex::new(Vec::new()));
            let t = Ticker {
                t0,
                period,
                next: t0 + period,
                cleanup,
                log: log.clone(),
            };
            (t, log)
        }

        fn note(&self, what: &'static str, at: Instant) {
            self.log
                .lock()
                .unwrap()
                .push((what, (at - self.t0).as_millis()));
        }
    }

    impl Probe for Ticker {
        type Output = ();
        fn handle_input(&mut self, _: Instant, _: SocketAddr, _: &[u8]) -> Result<(), Ignored> {
            Ok(())
        }
        fn handle_timeout(&mut self, now: Instant) {
            self.note("tick", now);
            self.next = now + self.period;
        }
        fn poll_transmit(&mut self, _: Instant, _: &mut Vec<u8>) -> Option<Transmit> {
            None
        }
        fn poll_timeout(&self) -> Option<Instant> {
            Some(self.next)
        }
        fn is_done(&self) -> bool {
            false
        }
        fn take_output(&mut self) -> Option<()> {
            Some(())
        }
        fn cancel(&mut self, now: Instant) -> bool {
            self.note("cancel", now);
            self.cleanup
        }
    }

    fn server() -> SocketAddr {
        "192.0.2.1:3478".parse().unwrap()
    }

    /// `drive` of `probe` over `stream`, connected to the test server at `start`.
    async fn drive_connected(
        probe: Ticker,
        stream: tokio::io::DuplexStream,
        opts: StreamOptions,
        cancel: Cancel,
        start: Instant,
    ) -> StreamRun<()> {
        drive(probe, server(), stream, opts, cancel, start, connected()).await
    }

    fn connected() -> StreamRun<()> {
        StreamRun {
            output: None,
            connect: ConnectOutcome::Connected {
                time: Duration::ZERO,
            },
            tls: None,
            error: None,
            interrupted: false,
            deadline_reached: false,
        }
    }

    /// A cancel is seen when it happens (no polling interval): at 333 ms, between ticks.
    #[tokio::test(start_paused = true)]
    async fn cancellation_wakes_the_loop_at_once() {
        let (probe, log) = Ticker::new(Duration::from_millis(100), false);
        let (_peer, stream) = tokio::io::duplex(1024);
        let (handle, cancel) = Cancel::new();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(333)).await;
            handle.cancel();
        });
        let t0 = now();
        let run = drive_connected(probe, stream, StreamOptions::default(), cancel, t0).await;
        assert!(run.interrupted && !run.deadline_reached);
        assert_eq!(now() - t0, Duration::from_millis(333));
        assert_eq!(
            *log.lock().unwrap(),
            vec![("tick", 100), ("tick", 200), ("tick", 300), ("cancel", 333)]
        );
    }

    /// The deadline cancels at exactly its time; a probe with cleanup keeps its timers through
    /// the drain, which ends exactly `drain` later.
    #[tokio::test(start_paused = true)]
    async fn the_deadline_then_the_drain_end_the_run_exactly() {
        let (probe, log) = Ticker::new(Duration::from_millis(100), true);
        let (_peer, stream) = tokio::io::duplex(1024);
        let opts = StreamOptions {
            deadline: Some(Duration::from_millis(250)),
            drain: Duration::from_millis(500),
            ..StreamOptions::default()
        };
        let t0 = now();
        let run = drive_connected(probe, stream, opts, Cancel::never(), t0).await;
        assert!(run.deadline_reached && !run.interrupted);
        assert_eq!(now() - t0, Duration::from_millis(750));
        let log = log.lock().unwrap().clone();
        let mut want = vec![("tick", 100), ("tick", 200), ("cancel", 250)];
        want.extend((3..=7).map(|k| ("tick", k * 100)));
        assert_eq!(log, want);
    }

    /// The server closing the stream ends the run at that moment, with the reason.
    #[tokio::test(start_paused = true)]
    async fn a_closed_stream_ends_the_run_when_it_closes() {
        let (probe, _log) = Ticker::new(Duration::from_secs(10), false);
        let (peer, stream) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(40)).await;
            drop(peer);
        });
        let t0 = now();
        let run =
            drive_connected(probe, stream, StreamOptions::default(), Cancel::never(), t0).await;
        assert_eq!(now() - t0, Duration::from_millis(40));
        assert_eq!(
            run.error.as_deref(),
            Some("server closed the connection (0 bytes of an unfinished message)")
        );
    }
}
