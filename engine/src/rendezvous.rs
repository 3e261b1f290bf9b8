//! The sockets of the `stunmap pair` rendezvous ([`probes::pair::rendezvous`] has the
//! protocol): the client connection of a `pair` run, and the server `stunmap serve
//! --rendezvous` runs.
//!
//! Both read at most one frame at a time ([`FrameReader::wanted`]), so memory per connection
//! is bounded by [`MAX_FRAME`]; every write has a deadline. The server caps connections
//! (one beyond the cap gets a `busy` refusal and is closed), gives a new connection
//! [`HANDSHAKE_TIMEOUT`] to `hello` and `join`, closes a connection whose room expired, and
//! forwards each peer's messages to the other through a small bounded queue.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use probes::pair::rendezvous::{
    ClientConn, ClientEvent, ConnId, FrameError, FrameReader, HANDSHAKE_TIMEOUT, MAX_FRAME, Nonce,
    PeerMsg, Refusal, RendezvousError, RoomSecret, Rooms, ServerConn, ServerEvent, ServerMsg,
};
use rand::RngCore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use crate::stream::Security;

/// The server side of TLS.
pub type TlsAcceptor = tokio_rustls::TlsAcceptor;

/// Why the server's certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// The certificate file.
    #[error("--cert {path}: {reason}")]
    Cert {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The key file.
    #[error("--key {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the pair.
    #[error("--cert/--key: {0}")]
    Config(String),
}

/// A TLS acceptor from a PEM certificate chain and a PEM private key (ring).
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsSetupError> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let cerr = |reason: String| TlsSetupError::Cert {
        path: cert.display().to_string(),
        reason,
    };
    let certs = crate::stream::pem_certificates(cert).map_err(cerr)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsSetupError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsSetupError::Config(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A byte stream: TCP or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Errors of a rendezvous client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TCP connection failed.
    #[error("cannot connect to the rendezvous {addr}: {source}")]
    Connect {
        /// The server.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// A step took too long.
    #[error("the rendezvous {addr} did not {what} within {secs} s")]
    Timeout {
        /// The server.
        addr: SocketAddr,
        /// What it did not do.
        what: &'static str,
        /// The limit.
        secs: u64,
    },
    /// The TLS handshake failed.
    #[error("TLS with the rendezvous {addr} failed: {reason}")]
    Tls {
        /// The server.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The connection broke or closed.
    #[error("the rendezvous closed the connection")]
    Closed,
    /// Reading or writing failed.
    #[error("rendezvous connection error: {0}")]
    Io(#[from] io::Error),
    /// A frame that is not this protocol.
    #[error("the rendezvous does not speak the stunmap pair protocol ({0})")]
    Frame(FrameError),
    /// A protocol-level error or refusal.
    #[error("{0}")]
    Protocol(#[from] RendezvousError),
}

/// Time limits of a client connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// TCP connect, and separately the TLS handshake and each protocol step of the
    /// handshake (`welcome`, `joined`).
    pub connect: Duration,
    /// Each write.
    pub write: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            write: Duration::from_secs(5),
        }
    }
}

/// A joined client connection.
pub struct Client {
    addr: SocketAddr,
    io: Box<dyn Io>,
    reader: FrameReader,
    conn: ClientConn,
    timeouts: ClientTimeouts,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn nonce() -> Nonce {
    let mut n = [0u8; 16];
    rand::rng().fill_bytes(&mut n);
    Nonce(n)
}

impl Client {
    /// Connect to `addr`, say `hello`, verify the `welcome` and `join` `room`. Returns the
    /// client and whether this peer is the first in the room (it controls).
    pub async fn join(
        addr: SocketAddr,
        security: &Security,
        secret: &RoomSecret,
        room: &str,
        timeouts: ClientTimeouts,
    ) -> Result<(Client, bool), ClientError> {
        let conn = ClientConn::new(secret, room, nonce())?;
        let secs = timeouts.connect.as_secs().max(1);
        let tcp = tokio::time::timeout(timeouts.connect, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout {
                addr,
                what: "accept the connection",
                secs,
            })?
            .map_err(|source| ClientError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match security {
            Security::Plain => Box::new(tcp),
            Security::Tls {
                server_name,
                config,
            } => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let tls = tokio::time::timeout(
                    timeouts.connect,
                    connector.connect(server_name.clone(), tcp),
                )
                .await
                .map_err(|_| ClientError::Timeout {
                    addr,
                    what: "finish the TLS handshake",
                    secs,
                })?
                .map_err(|e| ClientError::Tls {
                    addr,
                    reason: e.to_string(),
                })?;
                Box::new(tls)
            }
        };
        let mut c = Client {
            addr,
            io,
            reader: FrameReader::new(),
            conn,
            timeouts,
            buf: vec![0; 4096],
        };
        let hello = c.conn.hello();
        c.write(&hello).await?;
        match c.step(timeouts.connect, "answer hello").await? {
            ClientEvent::Welcome => {}
            _ => return Err(RendezvousError::Protocol("expected welcome").into()),
        }
        let join = c.conn.join()?;
        c.write(&join).await?;
        match c.step(timeouts.connect, "answer join").await? {
            ClientEvent::Joined { first } => Ok((c, first)),
            _ => Err(RendezvousError::Protocol("expected joined").into()),
        }
    }

    async fn step(
        &mut self,
        limit: Duration,
        what: &'static str,
    ) -> Result<ClientEvent, ClientError> {
        let addr = self.addr;
        tokio::time::timeout(limit, self.recv())
            .await
            .map_err(|_| ClientError::Timeout {
                addr,
                what,
                secs: limit.as_secs().max(1),
            })?
    }

    async fn write(&mut self, frame: &[u8]) -> Result<(), ClientError> {
        let addr = self.addr;
        let secs = self.timeouts.write.as_secs().max(1);
        tokio::time::timeout(self.timeouts.write, async {
            self.io.write_all(frame).await?;
            self.io.flush().await
        })
        .await
        .map_err(|_| ClientError::Timeout {
            addr,
            what: "take our message",
            secs,
        })??;
        Ok(())
    }

    /// The next event from the server. Cancel-safe: bytes already read stay buffered.
    pub async fn recv(&mut self) -> Result<ClientEvent, ClientError> {
        loop {
            if let Some(body) = self.reader.next_frame().map_err(ClientError::Frame)? {
                return Ok(self.conn.handle_frame(&body)?);
            }
            let want = self.reader.wanted().min(self.buf.len());
            let buf = self.buf.get_mut(..want).unwrap_or_default();
            let n = self.io.read(buf).await?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.reader.push(buf.get(..n).unwrap_or_default());
        }
    }

    /// Send `msg` to the other peer.
    pub async fn send(&mut self, msg: PeerMsg) -> Result<(), ClientError> {
        let f = self.conn.signal(msg)?;
        self.write(&f).await
    }

    /// Say goodbye and close (errors ignored: the run is over).
    pub async fn bye(mut self) {
        let f = self.conn.bye();
        let _ = self.write(&f).await;
        let _ = self.io.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Server

/// Bounds of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections at once; one more is refused `busy`.
    pub max_connections: usize,
    /// Time for the TLS handshake, `hello` and `join`.
    pub handshake: Duration,
    /// Each write to a client.
    pub write: Duration,
    /// Rooms at once.
    pub max_rooms: usize,
    /// A room's life.
    pub room_ttl: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            handshake: HANDSHAKE_TIMEOUT,
            write: Duration::from_secs(5),
            max_rooms: probes::pair::rendezvous::MAX_ROOMS,
            room_ttl: probes::pair::rendezvous::ROOM_TTL,
        }
    }
}

/// Counters of the server.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections refused at the cap.
    pub busy: AtomicU64,
    /// Connections closed with a refusal (bad secret, full room, junk …).
    pub refused: AtomicU64,
    /// Peer messages forwarded.
    pub forwarded: AtomicU64,
}

#[derive(Debug)]
struct Hub {
    rooms: Rooms,
    conns: HashMap<ConnId, mpsc::Sender<ServerMsg>>,
}

/// Per-connection queue of messages from the other peer and the hub.
const CONN_QUEUE: usize = 8;

/// Serve the rendezvous on `listener` until the future is dropped.
pub async fn serve(
    listener: TcpListener,
    secret: RoomSecret,
    tls: Option<TlsAcceptor>,
    limits: ServerLimits,
    stats: Arc<ServerStats>,
) -> io::Result<()> {
    let hub = Arc::new(Mutex::new(Hub {
        rooms: Rooms::new(limits.max_rooms, limits.room_ttl),
        conns: HashMap::new(),
    }));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let expiry = tokio::spawn(expire_rooms(hub.clone()));
    let _guard = AbortOnDrop(expiry);
    let mut next_id: ConnId = 0;
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(x) => x,
            // Out of descriptors and the like: back off a little, keep serving.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        next_id = next_id.wrapping_add(1);
        let id = next_id;
        let permit = permits.clone().try_acquire_owned();
        let (hub, secret, tls, stats) = (hub.clone(), secret.clone(), tls.clone(), stats.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(permit) = permit else {
                stats.busy.fetch_add(1, Ordering::Relaxed);
                // Unauthenticated, like every refusal before a handshake.
                let mut conn = ServerConn::new(secret, Nonce([0; 16]));
                let f = conn.seal(&ServerMsg::Refused {
                    reason: Refusal::Busy,
                });
                let mut tcp = tcp;
                let _ = tokio::time::timeout(limits.write, tcp.write_all(&f)).await;
                return;
            };
            let io: Box<dyn Io> = match tls {
                None => Box::new(tcp),
                Some(acceptor) => {
                    match tokio::time::timeout(limits.handshake, acceptor.accept(tcp)).await {
                        Ok(Ok(t)) => Box::new(t),
                        _ => return,
                    }
                }
            };
            let _ = connection(io, id, hub.clone(), secret, limits, &stats).await;
            leave(&hub, id);
            drop(permit);
        });
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn expire_rooms(hub: Arc<Mutex<Hub>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = clock_now();
        let Ok(mut h) = hub.lock() else { return };
        for id in h.rooms.expire(now) {
            if let Some(tx) = h.conns.get(&id) {
                let _ = tx.try_send(ServerMsg::Refused {
                    reason: Refusal::Expired,
                });
            }
        }
    }
}

fn clock_now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Remove `id` from its room and tell the other peer.
fn leave(hub: &Mutex<Hub>, id: ConnId) {
    let Ok(mut h) = hub.lock() else { return };
    h.conns.remove(&id);
    let room = h.rooms.room_of(id).map(ToOwned::to_owned);
    if let Some(room) = room
        && let Some(peer) = h.rooms.leave(&room, id)
        && let Some(tx) = h.conns.get(&peer)
    {
        let _ = tx.try_send(ServerMsg::PeerLeft);
    }
}

enum Step {
    Read(io::Result<usize>),
    Queue(Option<ServerMsg>),
    HandshakeOver,
}

async fn connection(
    mut io: Box<dyn Io>,
    id: ConnId,
    hub: Arc<Mutex<Hub>>,
    secret: RoomSecret,
    limits: ServerLimits,
    stats: &ServerStats,
) -> io::Result<()> {
    let mut n = [0u8; 16];
    rand::rng().fill_bytes(&mut n);
    let mut conn = ServerConn::new(secret, Nonce(n));
    let (tx, mut rx) = mpsc::channel::<ServerMsg>(CONN_QUEUE);
    let mut tx = Some(tx);
    let mut reader = FrameReader::new();
    let mut buf = vec![0u8; 4096];
    let handshake_end = tokio::time::Instant::now() + limits.handshake;
    loop {
        // Frames already buffered first.
        loop {
            let body = match reader.next_frame() {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(_) => {
                    refuse(&mut io, &mut conn, Refusal::BadMessage, limits, stats).await;
                    return Ok(());
                }
            };
            match conn.handle_frame(&body) {
                Err(r) => {
                    refuse(&mut io, &mut conn, r, limits, stats).await;
                    return Ok(());
                }
                Ok(ServerEvent::Hello) => {
                    let f = conn.welcome();
                    write(&mut io, &f, limits).await?;
                }
                Ok(ServerEvent::Join { room }) => {
                    let seat = {
                        let Ok(mut h) = hub.lock() else {
                            return Ok(());
                        };
                        let seat = h.rooms.join(clock_now(), &room, id);
                        if let (Ok(s), Some(tx)) = (&seat, tx.take()) {
                            h.conns.insert(id, tx);
                            if let Some(peer) = s.peer.and_then(|p| h.conns.get(&p)) {
                                let _ = peer.try_send(ServerMsg::PeerJoined);
                            }
                        }
                        seat
                    };
                    match seat {
                        Ok(s) => {
                            let f = conn.seal(&ServerMsg::Joined { first: s.first });
                            write(&mut io, &f, limits).await?;
                            if s.peer.is_some() {
                                let f = conn.seal(&ServerMsg::PeerJoined);
                                write(&mut io, &f, limits).await?;
                            }
                        }
                        Err(r) => {
                            refuse(&mut io, &mut conn, r, limits, stats).await;
                            return Ok(());
                        }
                    }
                }
                Ok(ServerEvent::Signal(body)) => {
                    let Ok(h) = hub.lock() else { return Ok(()) };
                    let peer = conn
                        .room()
                        .and_then(|r| h.rooms.peer(r, id))
                        .and_then(|p| h.conns.get(&p));
                    // No peer yet: dropped (clients send only after `peer-joined`).
                    if let Some(p) = peer
                        && p.try_send(ServerMsg::Signal { body }).is_ok()
                    {
                        stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(ServerEvent::Bye) => return Ok(()),
            }
        }
        let joined = conn.is_joined();
        let step = tokio::select! {
            r = io.read(buf.get_mut(..reader.wanted().min(4096)).unwrap_or_default()) => Step::Read(r),
            m = rx.recv(), if joined => Step::Queue(m),
            _ = tokio::time::sleep_until(handshake_end), if !joined => Step::HandshakeOver,
        };
        match step {
            Step::Read(Ok(0)) | Step::Read(Err(_)) | Step::Queue(None) => return Ok(()),
            Step::Read(Ok(k)) => reader.push(buf.get(..k).unwrap_or_default()),
            Step::Queue(Some(msg)) => {
                let last = matches!(msg, ServerMsg::Refused { .. });
                let f = conn.seal(&msg);
                write(&mut io, &f, limits).await?;
                if last {
                    return Ok(());
                }
            }
            Step::HandshakeOver => {
                refuse(&mut io, &mut conn, Refusal::Timeout, limits, stats).await;
                return Ok(());
            }
        }
        debug_assert!(reader.buffered() <= 4 + MAX_FRAME);
    }
}

async fn write(io: &mut Box<dyn Io>, frame: &[u8], limits: ServerLimits) -> io::Result<()> {
    match tokio::time::timeout(limits.write, io.write_all(frame)).await {
        Ok(r) => r,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

async fn refuse(
    io: &mut Box<dyn Io>,
    conn: &mut ServerConn,
    reason: Refusal,
    limits: ServerLimits,
    stats: &ServerStats,
) {
    stats.refused.fetch_add(1, Ordering::Relaxed);
    let f = conn.seal(&ServerMsg::Refused { reason });
    let _ = write(io, &f, limits).await;
    let _ = tokio::time::timeout(limits.write, io.shutdown()).await;
}
