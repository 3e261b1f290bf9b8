//! The rendezvous protocol: how two `stunmap pair` runs find each other through
//! `stunmap serve --rendezvous` and exchange offers and reports. No traffic between the
//! peers ever passes through it.
//!
//! # Frames
//!
//! Over TCP (optionally TLS), each message is one frame:
//!
//! ```text
//! length: u32, big endian (of what follows, at most MAX_FRAME)
//! mac:    32 bytes, HMAC-SHA256(key, "stunmap-pair/1" || direction || json)
//! json:   {"seq": n, "msg": {"type": ...}}
//! ```
//!
//! `direction` is `C` for client→server and `S` for server→client, so a frame cannot be
//! reflected back to its sender.
//!
//! # Keys and replay
//!
//! The operator gives the server and every peer one shared secret. Each room has its own key,
//! `room_key = HMAC-SHA256(secret, "stunmap-pair room\0" || room)`. A connection opens with
//! the client's `hello` (a random client nonce, signed with the room key); the server answers
//! `welcome` with its own random nonce, and from then on both directions sign with
//! `session_key = HMAC-SHA256(room_key, "session" || client_nonce || server_nonce)`, the
//! server's `welcome` included. Sequence numbers start at 0 in each direction and must
//! increase by one. A recorded frame is therefore worthless on another connection (another
//! server nonce, another key) and cannot be replayed or reordered on its own. Nothing is
//! seated in a room before the client's `join`, which needs the session key: a replayed
//! `hello` gets a `welcome` and nothing else.
//!
//! A wrong secret on the client shows up at once: the server cannot verify the `hello`
//! (refusal `wrong-secret`), and the client cannot verify the `welcome` either. A `refused`
//! frame is acted on even when its MAC does not verify (a server with another secret cannot
//! sign it for us); it can only make the client stop.
//!
//! # Bounds
//!
//! Frames are at most [`MAX_FRAME`] bytes; a connection may send at most [`MAX_MESSAGES`];
//! the server holds at most [`MAX_ROOMS`] rooms of two peers each, and a room expires
//! [`ROOM_TTL`] after it was opened. The I/O layer adds a handshake deadline
//! ([`HANDSHAKE_TIMEOUT`]) and a connection cap.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::model::{Invalid, Offer, SideReport};

type HmacSha256 = Hmac<Sha256>;

/// Protocol version in `hello`.
pub const VERSION: u32 = 1;
/// Largest frame body (MAC and JSON), bytes.
pub const MAX_FRAME: usize = 32 * 1024;
/// MAC length, bytes.
pub const MAC_LEN: usize = 32;
/// Nonce length, bytes.
pub const NONCE_LEN: usize = 16;
/// Rooms a server holds at once.
pub const MAX_ROOMS: usize = 64;
/// Longest room name.
pub const MAX_ROOM_NAME: usize = 64;
/// A room's life from its opening: both peers must have run their test by then.
pub const ROOM_TTL: Duration = Duration::from_secs(300);
/// Time a new connection has for `hello` and `join`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames one client may send on one connection (a run needs five).
pub const MAX_MESSAGES: u32 = 32;
/// Shortest secret accepted.
pub const MIN_SECRET: usize = 16;

const LABEL: &[u8] = b"stunmap-pair/1";

/// The shared secret. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct RoomSecret(Vec<u8>);

impl fmt::Debug for RoomSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RoomSecret(redacted)")
    }
}

impl RoomSecret {
    /// A secret of at least [`MIN_SECRET`] bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, RendezvousError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_SECRET {
            return Err(RendezvousError::ShortSecret);
        }
        Ok(Self(bytes))
    }

    fn room_key(&self, room: &str) -> Key {
        Key(hmac(&self.0, &[b"stunmap-pair room\0", room.as_bytes()]))
    }
}

/// A derived key. Its `Debug` shows nothing of it.
#[derive(Clone)]
struct Key([u8; 32]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(redacted)")
    }
}

impl Key {
    fn session(&self, client: &Nonce, server: &Nonce) -> Key {
        Key(hmac(&self.0, &[b"session", &client.0, &server.0]))
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // HMAC takes keys of any length; the error branch cannot happen.
    if let Ok(mut m) = HmacSha256::new_from_slice(key) {
        for p in parts {
            m.update(p);
        }
        out.copy_from_slice(&m.finalize().into_bytes());
    }
    out
}

fn verify(key: &Key, dir: u8, json: &[u8], mac: &[u8]) -> bool {
    HmacSha256::new_from_slice(&key.0).is_ok_and(|mut m| {
        m.update(LABEL);
        m.update(&[dir]);
        m.update(json);
        m.verify_slice(mac).is_ok()
    })
}

const TO_SERVER: u8 = b'C';
const TO_CLIENT: u8 = b'S';

/// A random nonce (drawn by the caller), hex in JSON.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Nonce(pub [u8; NONCE_LEN]);

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({self})")
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl Serialize for Nonce {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Nonce {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bad = || serde::de::Error::custom("bad nonce");
        if s.len() != NONCE_LEN * 2 {
            return Err(bad());
        }
        let mut out = [0u8; NONCE_LEN];
        for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
            let hex = std::str::from_utf8(pair).map_err(|_| bad())?;
            *o = u8::from_str_radix(hex, 16).map_err(|_| bad())?;
        }
        Ok(Nonce(out))
    }
}

/// Why the server refused (or closed) a connection. Each has a one-line `Display`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Refusal {
    /// The client's `hello` or a later frame did not verify: another secret.
    #[error("wrong secret (the rendezvous could not verify this peer's messages)")]
    WrongSecret,
    /// Two peers are in the room already.
    #[error("the room is full (two peers are in it already)")]
    RoomFull,
    /// The server holds its maximum number of rooms.
    #[error("the rendezvous has too many open rooms; try again later")]
    TooManyRooms,
    /// The room name is empty, too long, or has characters other than letters, digits, `-`,
    /// `_` and `.`.
    #[error("bad room name")]
    BadRoomName,
    /// Another protocol version.
    #[error("protocol version not supported")]
    Version,
    /// A frame that is not a valid message in this state, or a message the peer cannot use.
    #[error("bad message")]
    BadMessage,
    /// The room's time ran out.
    #[error("the room expired")]
    Expired,
    /// The server is at its connection cap.
    #[error("the rendezvous is busy; try again later")]
    Busy,
    /// The connection sent more frames than a run needs.
    #[error("too many messages on one connection")]
    TooManyMessages,
    /// The handshake took too long.
    #[error("handshake timed out")]
    Timeout,
}

/// Messages from the peers to each other, carried by the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type", content = "body")]
pub enum PeerMsg {
    /// ICE credentials and candidates.
    Offer(Offer),
    /// This side's findings, at the end.
    Report(Box<SideReport>),
}

impl PeerMsg {
    /// Check a received message.
    pub fn validate(&self) -> Result<(), Invalid> {
        match self {
            PeerMsg::Offer(o) => o.validate(),
            PeerMsg::Report(r) => r.validate(),
        }
    }
}

/// Client → server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum ClientMsg {
    /// Opens the connection.
    Hello {
        /// [`VERSION`].
        version: u32,
        /// The room.
        room: String,
        /// Client nonce.
        nonce: Nonce,
    },
    /// Take a seat in the room.
    Join,
    /// For the other peer.
    Signal {
        /// The message.
        body: PeerMsg,
    },
    /// Leaving.
    Bye,
}

/// Server → client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum ServerMsg {
    /// The server's nonce; signed with the session key.
    Welcome {
        /// Server nonce.
        nonce: Nonce,
    },
    /// Seated. `first`: the room was empty (this peer controls, side A).
    Joined {
        /// First in the room.
        first: bool,
    },
    /// The other peer is in the room.
    PeerJoined,
    /// From the other peer.
    Signal {
        /// The message.
        body: PeerMsg,
    },
    /// The other peer left.
    PeerLeft,
    /// Refused; the server closes the connection.
    Refused {
        /// Why.
        reason: Refusal,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope<M> {
    seq: u64,
    msg: M,
}

/// Errors of a rendezvous client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RendezvousError {
    /// The secret is shorter than [`MIN_SECRET`] bytes.
    #[error("the pair secret must be at least {MIN_SECRET} bytes")]
    ShortSecret,
    /// The room name is not acceptable.
    #[error("bad room name (1-{MAX_ROOM_NAME} characters: letters, digits, '-', '_', '.')")]
    BadRoomName,
    /// The server refused.
    #[error("the rendezvous refused: {0}")]
    Refused(Refusal),
    /// The server's messages do not verify under our secret.
    #[error("the rendezvous's answer does not verify: it has another pair secret")]
    WrongSecret,
    /// Bytes that are not this protocol.
    #[error("the rendezvous does not speak the stunmap pair protocol ({0})")]
    NotRendezvous(&'static str),
    /// A valid frame out of place (out of sequence, wrong state).
    #[error("rendezvous protocol error: {0}")]
    Protocol(&'static str),
    /// The other peer sent something unusable.
    #[error("the peer sent an unusable message: {0}")]
    BadPeerMessage(Invalid),
}

/// Errors of the frame reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix is over [`MAX_FRAME`] (or this is not the protocol at all: "HTTP"
    /// reads as 1.2 GB).
    #[error("frame of {len} bytes (at most {MAX_FRAME})")]
    TooLarge {
        /// The announced length.
        len: usize,
    },
    /// Shorter than a MAC.
    #[error("frame of {len} bytes is too short")]
    TooShort {
        /// The announced length.
        len: usize,
    },
}

/// Reassembles frames from a byte stream; holds at most one frame.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes to read before the next frame can complete (for bounded reads).
    pub fn wanted(&self) -> usize {
        match self.announced() {
            Some(len) => (4 + len).saturating_sub(self.buf.len()).max(1),
            None => 4 - self.buf.len().min(4),
        }
    }

    fn announced(&self) -> Option<usize> {
        let b: [u8; 4] = self.buf.get(..4)?.try_into().ok()?;
        Some(u32::from_be_bytes(b) as usize)
    }

    /// Append received bytes. Call [`FrameReader::next_frame`] until it returns `None` before
    /// pushing more; the caller reads at most [`FrameReader::wanted`] bytes at a time, so the
    /// buffer never exceeds one frame.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame body (MAC and JSON), if one is there.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(len) = self.announced() else {
            return Ok(None);
        };
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge { len });
        }
        if len < MAC_LEN + 2 {
            return Err(FrameError::TooShort { len });
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let rest = self.buf.split_off(4 + len);
        let mut frame = std::mem::replace(&mut self.buf, rest);
        frame.drain(..4);
        Ok(Some(frame))
    }
}

fn seal<M: Serialize>(key: &Key, dir: u8, seq: u64, msg: &M) -> Vec<u8> {
    // Serializing these types cannot fail (no maps with non-string keys, no custom errors).
    let json = serde_json::to_vec(&Envelope { seq, msg }).unwrap_or_default();
    let mut m = [0u8; 32];
    if let Ok(mut h) = HmacSha256::new_from_slice(&key.0) {
        h.update(LABEL);
        h.update(&[dir]);
        h.update(&json);
        m.copy_from_slice(&h.finalize().into_bytes());
    }
    let len = (MAC_LEN + json.len()) as u32;
    let mut out = Vec::with_capacity(4 + MAC_LEN + json.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&m);
    out.extend_from_slice(&json);
    out
}

fn split(body: &[u8]) -> Option<(&[u8], &[u8])> {
    (body.len() > MAC_LEN).then(|| body.split_at(MAC_LEN))
}

/// Whether `room` is an acceptable room name.
pub fn valid_room(room: &str) -> bool {
    (1..=MAX_ROOM_NAME).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

// ---------------------------------------------------------------------------------------------
// Client

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientState {
    Start,
    HelloSent,
    Welcomed,
    JoinSent,
    Joined,
    Closed,
}

/// What the server told the client.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    /// The server knows the secret; send [`ClientConn::join`] next.
    Welcome,
    /// Seated; `first` means this peer controls (side A).
    Joined {
        /// First in the room.
        first: bool,
    },
    /// The other peer is there.
    PeerJoined,
    /// From the other peer (validated).
    Peer(PeerMsg),
    /// The other peer left.
    PeerLeft,
}

/// The client side of one rendezvous connection.
#[derive(Debug)]
pub struct ClientConn {
    room: String,
    room_key: Key,
    nonce: Nonce,
    session: Option<Key>,
    seq_out: u64,
    seq_in: u64,
    state: ClientState,
}

impl ClientConn {
    /// A connection to `room`, with a random `nonce` from the caller.
    pub fn new(secret: &RoomSecret, room: &str, nonce: Nonce) -> Result<Self, RendezvousError> {
        if !valid_room(room) {
            return Err(RendezvousError::BadRoomName);
        }
        Ok(Self {
            room: room.to_owned(),
            room_key: secret.room_key(room),
            nonce,
            session: None,
            seq_out: 0,
            seq_in: 0,
            state: ClientState::Start,
        })
    }

    fn send(&mut self, msg: &ClientMsg) -> Vec<u8> {
        let key = self.session.as_ref().unwrap_or(&self.room_key);
        let f = seal(key, TO_SERVER, self.seq_out, msg);
        self.seq_out = self.seq_out.saturating_add(1);
        f
    }

    /// The first frame.
    pub fn hello(&mut self) -> Vec<u8> {
        self.state = ClientState::HelloSent;
        let msg = ClientMsg::Hello {
            version: VERSION,
            room: self.room.clone(),
            nonce: self.nonce,
        };
        self.send(&msg)
    }

    /// The `join` frame, after [`ClientEvent::Welcome`].
    pub fn join(&mut self) -> Result<Vec<u8>, RendezvousError> {
        if self.state != ClientState::Welcomed {
            return Err(RendezvousError::Protocol("join before welcome"));
        }
        self.state = ClientState::JoinSent;
        Ok(self.send(&ClientMsg::Join))
    }

    /// A frame carrying `msg` to the other peer.
    pub fn signal(&mut self, msg: PeerMsg) -> Result<Vec<u8>, RendezvousError> {
        if self.state != ClientState::Joined {
            return Err(RendezvousError::Protocol("signal before joined"));
        }
        Ok(self.send(&ClientMsg::Signal { body: msg }))
    }

    /// The `bye` frame (the connection is done).
    pub fn bye(&mut self) -> Vec<u8> {
        self.state = ClientState::Closed;
        self.send(&ClientMsg::Bye)
    }

    /// A frame body from the server.
    pub fn handle_frame(&mut self, body: &[u8]) -> Result<ClientEvent, RendezvousError> {
        let (mac, json) = split(body).ok_or(RendezvousError::NotRendezvous("short frame"))?;
        let env: Envelope<ServerMsg> = serde_json::from_slice(json)
            .map_err(|_| RendezvousError::NotRendezvous("not a message"))?;
        if let ServerMsg::Refused { reason } = env.msg {
            // Acted on unverified: see the module docs.
            self.state = ClientState::Closed;
            return Err(RendezvousError::Refused(reason));
        }
        if let ServerMsg::Welcome { nonce } = env.msg {
            if self.state != ClientState::HelloSent {
                return Err(RendezvousError::Protocol("unexpected welcome"));
            }
            let session = self.room_key.session(&self.nonce, &nonce);
            if !verify(&session, TO_CLIENT, json, mac) {
                return Err(RendezvousError::WrongSecret);
            }
            if env.seq != 0 {
                return Err(RendezvousError::Protocol("out of sequence"));
            }
            self.session = Some(session);
            self.seq_in = 1;
            self.state = ClientState::Welcomed;
            return Ok(ClientEvent::Welcome);
        }
        let Some(session) = &self.session else {
            return Err(RendezvousError::Protocol("message before welcome"));
        };
        if !verify(session, TO_CLIENT, json, mac) {
            return Err(RendezvousError::WrongSecret);
        }
        if env.seq != self.seq_in {
            return Err(RendezvousError::Protocol(
                "out of sequence (replayed or lost)",
            ));
        }
        self.seq_in = self.seq_in.saturating_add(1);
        match env.msg {
            ServerMsg::Joined { first } if self.state == ClientState::JoinSent => {
                self.state = ClientState::Joined;
                Ok(ClientEvent::Joined { first })
            }
            ServerMsg::PeerJoined if self.state == ClientState::Joined => {
                Ok(ClientEvent::PeerJoined)
            }
            ServerMsg::PeerLeft if self.state == ClientState::Joined => Ok(ClientEvent::PeerLeft),
            ServerMsg::Signal { body } if self.state == ClientState::Joined => {
                body.validate().map_err(RendezvousError::BadPeerMessage)?;
                Ok(ClientEvent::Peer(body))
            }
            _ => Err(RendezvousError::Protocol("unexpected message")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerState {
    AwaitHello,
    AwaitJoin,
    Joined,
    Closed,
}

/// What a client asked of the server.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerEvent {
    /// A valid `hello`: answer with [`ServerConn::welcome`].
    Hello,
    /// Seat this connection in its room ([`Rooms::join`]).
    Join {
        /// The room.
        room: String,
    },
    /// Forward to the other peer (validated).
    Signal(PeerMsg),
    /// The client is leaving.
    Bye,
}

/// The server side of one connection.
#[derive(Debug)]
pub struct ServerConn {
    secret: RoomSecret,
    nonce: Nonce,
    room: Option<String>,
    key: Option<Key>,
    seq_in: u64,
    seq_out: u64,
    received: u32,
    state: ServerState,
}

impl ServerConn {
    /// A new connection; `nonce` is the server's random nonce for it.
    pub fn new(secret: RoomSecret, nonce: Nonce) -> Self {
        Self {
            secret,
            nonce,
            room: None,
            key: None,
            seq_in: 0,
            seq_out: 0,
            received: 0,
            state: ServerState::AwaitHello,
        }
    }

    /// The room, once `hello` named it.
    pub fn room(&self) -> Option<&str> {
        self.room.as_deref()
    }

    /// Whether the client has joined.
    pub fn is_joined(&self) -> bool {
        self.state == ServerState::Joined
    }

    /// A frame body from the client. An error is a refusal to send (with
    /// [`ServerConn::seal`]) before closing.
    pub fn handle_frame(&mut self, body: &[u8]) -> Result<ServerEvent, Refusal> {
        let r = self.handle(body);
        if r.is_err() {
            self.state = ServerState::Closed;
        }
        r
    }

    fn handle(&mut self, body: &[u8]) -> Result<ServerEvent, Refusal> {
        self.received = self.received.saturating_add(1);
        if self.received > MAX_MESSAGES {
            return Err(Refusal::TooManyMessages);
        }
        let (mac, json) = split(body).ok_or(Refusal::BadMessage)?;
        let env: Envelope<ClientMsg> =
            serde_json::from_slice(json).map_err(|_| Refusal::BadMessage)?;
        match (self.state, env.msg) {
            (
                ServerState::AwaitHello,
                ClientMsg::Hello {
                    version,
                    room,
                    nonce,
                },
            ) => {
                if version != VERSION {
                    return Err(Refusal::Version);
                }
                if !valid_room(&room) {
                    return Err(Refusal::BadRoomName);
                }
                let room_key = self.secret.room_key(&room);
                if !verify(&room_key, TO_SERVER, json, mac) {
                    return Err(Refusal::WrongSecret);
                }
                if env.seq != 0 {
                    return Err(Refusal::BadMessage);
                }
                self.key = Some(room_key.session(&nonce, &self.nonce));
                self.room = Some(room);
                self.seq_in = 1;
                self.state = ServerState::AwaitJoin;
                Ok(ServerEvent::Hello)
            }
            (ServerState::AwaitHello, _) => Err(Refusal::BadMessage),
            (state, msg) => {
                let Some(key) = &self.key else {
                    return Err(Refusal::BadMessage);
                };
                if !verify(key, TO_SERVER, json, mac) {
                    return Err(Refusal::WrongSecret);
                }
                if env.seq != self.seq_in {
                    return Err(Refusal::BadMessage);
                }
                self.seq_in = self.seq_in.saturating_add(1);
                match (state, msg) {
                    (ServerState::AwaitJoin, ClientMsg::Join) => {
                        self.state = ServerState::Joined;
                        Ok(ServerEvent::Join {
                            room: self.room.clone().unwrap_or_default(),
                        })
                    }
                    (ServerState::Joined, ClientMsg::Signal { body }) => {
                        body.validate().map_err(|_| Refusal::BadMessage)?;
                        Ok(ServerEvent::Signal(body))
                    }
                    (_, ClientMsg::Bye) => {
                        self.state = ServerState::Closed;
                        Ok(ServerEvent::Bye)
                    }
                    _ => Err(Refusal::BadMessage),
                }
            }
        }
    }

    /// The `welcome` frame (after [`ServerEvent::Hello`]).
    pub fn welcome(&mut self) -> Vec<u8> {
        let msg = ServerMsg::Welcome { nonce: self.nonce };
        self.seal(&msg)
    }

    /// A frame carrying `msg` to this client. Before the handshake (a refusal of a bad
    /// `hello`) it is signed with a key the client cannot have; see the module docs.
    pub fn seal(&mut self, msg: &ServerMsg) -> Vec<u8> {
        let key = match &self.key {
            Some(k) => k.clone(),
            None => Key([0; 32]),
        };
        let f = seal(&key, TO_CLIENT, self.seq_out, msg);
        self.seq_out = self.seq_out.saturating_add(1);
        f
    }
}

/// A connection's id in the room table.
pub type ConnId = u64;

#[derive(Debug)]
struct Room {
    opened: Instant,
    members: Vec<ConnId>,
}

/// Seated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seat {
    /// The room was empty.
    pub first: bool,
    /// The other peer, if already there.
    pub peer: Option<ConnId>,
}

/// The server's rooms: at most `max_rooms`, two peers each, each expiring `ttl` after it
/// opened.
#[derive(Debug)]
pub struct Rooms {
    rooms: HashMap<String, Room>,
    max_rooms: usize,
    ttl: Duration,
}

impl Default for Rooms {
    fn default() -> Self {
        Self::new(MAX_ROOMS, ROOM_TTL)
    }
}

impl Rooms {
    /// A table with its bounds.
    pub fn new(max_rooms: usize, ttl: Duration) -> Self {
        Self {
            rooms: HashMap::new(),
            max_rooms,
            ttl,
        }
    }

    /// Rooms open.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Whether no room is open.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// Seat `conn` in `room`, opening it if needed.
    pub fn join(&mut self, now: Instant, room: &str, conn: ConnId) -> Result<Seat, Refusal> {
        self.expire(now);
        if let Some(r) = self.rooms.get_mut(room) {
            if r.members.contains(&conn) {
                return Err(Refusal::BadMessage);
            }
            if r.members.len() >= 2 {
                return Err(Refusal::RoomFull);
            }
            let peer = r.members.first().copied();
            r.members.push(conn);
            return Ok(Seat { first: false, peer });
        }
        if self.rooms.len() >= self.max_rooms {
            return Err(Refusal::TooManyRooms);
        }
        self.rooms.insert(
            room.to_owned(),
            Room {
                opened: now,
                members: vec![conn],
            },
        );
        Ok(Seat {
            first: true,
            peer: None,
        })
    }

    /// The other peer of `conn` in `room`.
    pub fn peer(&self, room: &str, conn: ConnId) -> Option<ConnId> {
        self.rooms
            .get(room)?
            .members
            .iter()
            .copied()
            .find(|m| *m != conn)
    }

    /// The room `conn` sits in.
    pub fn room_of(&self, conn: ConnId) -> Option<&str> {
        self.rooms
            .iter()
            .find(|(_, r)| r.members.contains(&conn))
            .map(|(name, _)| name.as_str())
    }

    /// `conn` left `room`; returns the peer to tell. An empty room closes.
    pub fn leave(&mut self, room: &str, conn: ConnId) -> Option<ConnId> {
        let r = self.rooms.get_mut(room)?;
        r.members.retain(|m| *m != conn);
        let peer = r.members.first().copied();
        if r.members.is_empty() {
            self.rooms.remove(room);
        }
        peer
    }

    /// Close the rooms whose time ran out; returns their members.
    pub fn expire(&mut self, now: Instant) -> Vec<ConnId> {
        let ttl = self.ttl;
        let mut gone = Vec::new();
        self.rooms.retain(|_, r| {
            let keep = now.saturating_duration_since(r.opened) < ttl;
            if !keep {
                gone.extend(r.members.iter().copied());
            }
            keep
        });
        gone
    }

    /// When the next room expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.rooms.values().map(|r| r.opened + self.ttl).min()
    }
}

#[cfg(test)]
mod tests;
