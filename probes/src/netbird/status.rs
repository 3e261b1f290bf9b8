//! The status a NetBird client reports, from either of its two printed forms:
//!
//! - `netbird status --json`: the `OutputOverview` of NetBird's `client/status/status.go`
//!   (`peers.details[]` with `connectionType`, `iceCandidateType.local/remote`,
//!   `iceCandidateEndpoint`, `relayAddress`; `management`, `signal`, `relays.details[]` with
//!   `uri`, `available`, `error`; `wireguardPort`, `daemonVersion`, …);
//! - the `status.txt` of a debug bundle: the text of `netbird status -d` (`Peers detail:`, one
//!   block per peer, then `Management:`, `Signal:`, `Relays:`, `Wireguard port:` …), possibly
//!   several snapshots one after the other (`netbird debug for` writes a post-up and a pre-down
//!   one); the last is read.
//!
//! Both become one [`Status`]. Reading is tolerant: unknown fields are ignored, a missing or
//! mistyped field leaves its default and adds a note. Public keys are kept only to match log
//! lines and are never serialized or printed.

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use super::NetbirdError;
use super::uri::{self, NbUri, Scheme, Transport};
use crate::PortRange;
use crate::profile::{Host, Profile, Service, ServiceKind};
use text::parse_text;

mod text;

/// Largest status read (a status of thousands of peers is well under 4 MiB).
pub const MAX_STATUS_BYTES: usize = 4 << 20;
/// Most peers kept; the rest are counted in a note.
pub const MAX_PEERS: usize = 10_000;
/// Most relay/STUN/TURN URIs kept.
pub const MAX_URIS: usize = 64;
/// Longest string kept from a field (longer ones are cut, with a note).
const MAX_FIELD: usize = 512;

/// Which printed form was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatusFormat {
    /// `netbird status --json`.
    Json,
    /// `netbird status -d` (the debug bundle's `status.txt`).
    DetailText,
}

/// Management or signal connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServerState {
    /// URL as reported (`https://api.netbird.io:443`).
    pub url: String,
    /// Whether the client is connected.
    pub connected: bool,
    /// NetBird's error text, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One STUN/TURN server or relay with NetBird's own availability.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RelayState {
    /// URI as reported (`stun:…`, `turn:…?transport=udp`, `rels://…`).
    pub uri: String,
    /// NetBird's availability flag.
    pub available: bool,
    /// NetBird's probe has not finished ("Checking...").
    pub checking: bool,
    /// NetBird's error text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Relay transport NetBird ended up on (newer versions: `quic`, `ws`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
}

/// How a peer is connected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum ConnectionType {
    /// Direct WireGuard over an ICE pair.
    P2p,
    /// Through a relay (NetBird relay, or TURN).
    Relayed,
    /// Not connected (`-`).
    None,
    /// A value this build does not know.
    Other(String),
}

impl fmt::Display for ConnectionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionType::P2p => f.write_str("direct (P2P)"),
            ConnectionType::Relayed => f.write_str("relayed"),
            ConnectionType::None => f.write_str("not connected"),
            ConnectionType::Other(o) => f.write_str(o),
        }
    }
}

impl ConnectionType {
    fn parse(s: &str) -> ConnectionType {
        match s.trim() {
            "P2P" | "p2p" => ConnectionType::P2p,
            "Relayed" | "relayed" => ConnectionType::Relayed,
            "" | "-" => ConnectionType::None,
            o => ConnectionType::Other(cut(o)),
        }
    }
}

/// ICE candidate type, RFC 8445 §5.1.1 (`-` or empty when ICE has no selected pair).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum CandidateType {
    /// A local interface address.
    Host,
    /// Server reflexive: the NAT's mapping as a STUN server saw it.
    Srflx,
    /// Peer reflexive: learnt from a connectivity check.
    Prflx,
    /// A TURN relayed address.
    Relay,
    /// None reported.
    None,
    /// A value this build does not know.
    Other(String),
}

impl CandidateType {
    /// Parse NetBird's (pion's) spelling.
    pub fn parse(s: &str) -> CandidateType {
        match s.trim().to_ascii_lowercase().as_str() {
            "host" => CandidateType::Host,
            "srflx" | "server-reflexive" => CandidateType::Srflx,
            "prflx" | "peer-reflexive" => CandidateType::Prflx,
            "relay" | "relayed" => CandidateType::Relay,
            "" | "-" => CandidateType::None,
            _ => CandidateType::Other(cut(s.trim())),
        }
    }

    /// Whether a type is known.
    pub fn is_some(&self) -> bool {
        !matches!(self, CandidateType::None)
    }
}

impl fmt::Display for CandidateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CandidateType::Host => "host",
            CandidateType::Srflx => "srflx",
            CandidateType::Prflx => "prflx",
            CandidateType::Relay => "relay",
            CandidateType::None => "-",
            CandidateType::Other(o) => o,
        })
    }
}

/// A peer's WireGuard public key: used to match log lines, never shown.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PeerKey(String);

impl PeerKey {
    /// Wrap a key.
    pub fn new(k: &str) -> PeerKey {
        PeerKey(k.trim().to_owned())
    }

    /// The key, for matching only.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeerKey(<not shown>)")
    }
}

/// How NetBird reports a peer connected: the connection type, the selected ICE pair and the
/// relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerLink {
    /// Connection type.
    pub connection_type: ConnectionType,
    /// Local ICE candidate type of the selected pair.
    pub ice_local: CandidateType,
    /// Remote ICE candidate type of the selected pair.
    pub ice_remote: CandidateType,
    /// Local candidate endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_local: Option<String>,
    /// Remote candidate endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_remote: Option<String>,
    /// Relay server address (`rels://…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_address: Option<String>,
}

/// One peer of the status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerState {
    /// Peer name (FQDN); the NetBird IP when there is none.
    pub fqdn: String,
    /// NetBird IP.
    pub netbird_ip: String,
    /// `Connected`, `Connecting`, `Idle`, `Disconnected` …
    pub status: String,
    /// How it is connected (serialized as fields of the peer's own).
    #[serde(flatten)]
    pub link: PeerLink,
    /// Networks routed through this peer.
    pub networks: Vec<String>,
    /// Public key (not serialized).
    #[serde(skip)]
    pub key: PeerKey,
}

impl PeerState {
    /// Whether NetBird reports it connected.
    pub fn connected(&self) -> bool {
        self.status.eq_ignore_ascii_case("connected")
    }
}

/// What the client reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Which form was read.
    pub format: StatusFormat,
    /// Daemon version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemon_version: Option<String>,
    /// CLI version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cli_version: Option<String>,
    /// `Connected`, `NeedsLogin` … (JSON only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemon_status: Option<String>,
    /// Management.
    pub management: ServerState,
    /// Signal.
    pub signal: ServerState,
    /// STUN/TURN servers and relays.
    pub relays: Vec<RelayState>,
    /// This peer's NetBird address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netbird_ip: Option<String>,
    /// WireGuard listen port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wireguard_port: Option<u16>,
    /// Kernel WireGuard (true) or userspace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_interface: Option<bool>,
    /// Networks this peer routes for others.
    pub networks: Vec<String>,
    /// Peers.
    pub peers: Vec<PeerState>,
}

/// Cut a peer-controlled string to a sane length (on a char boundary).
fn cut(s: &str) -> String {
    if s.len() <= MAX_FIELD {
        return s.to_owned();
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut o = s.get(..end).unwrap_or("").to_owned();
    o.push('…');
    o
}

fn opt(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty() && t != "-").then(|| cut(t))
}

/// Read a status: JSON if it starts with `{`, else the detail text. Notes say what was missing
/// or assumed.
pub fn parse(bytes: &[u8]) -> Result<(Status, Vec<String>), NetbirdError> {
    if bytes.len() > MAX_STATUS_BYTES {
        return Err(NetbirdError::TooLarge {
            what: "status".into(),
            size: bytes.len() as u64,
            max: MAX_STATUS_BYTES as u64,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| NetbirdError::NotStatus {
        reason: "not UTF-8 text".into(),
    })?;
    let text = text.trim_start_matches('\u{feff}');
    if text.trim_start().starts_with('{') {
        parse_json(text)
    } else {
        parse_text(text)
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

struct Reader<'a> {
    notes: &'a mut Vec<String>,
}

impl Reader<'_> {
    fn field<'v>(&mut self, o: &'v Map<String, Value>, path: &str, key: &str) -> Option<&'v Value> {
        match o.get(key) {
            None => {
                self.notes.push(format!("{path}{key}: missing"));
                None
            }
            Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    fn string(&mut self, o: &Map<String, Value>, path: &str, key: &str) -> String {
        match self.field(o, path, key) {
            None => String::new(),
            Some(Value::String(s)) => cut(s),
            Some(other) => {
                self.notes.push(format!(
                    "{path}{key}: expected a string, got {}",
                    kind(other)
                ));
                String::new()
            }
        }
    }

    fn boolean(&mut self, o: &Map<String, Value>, path: &str, key: &str) -> Option<bool> {
        match self.field(o, path, key) {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                self.notes.push(format!(
                    "{path}{key}: expected true/false, got {}",
                    kind(other)
                ));
                None
            }
        }
    }

    fn object<'v>(
        &mut self,
        o: &'v Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Option<&'v Map<String, Value>> {
        match self.field(o, path, key) {
            None => None,
            Some(Value::Object(m)) => Some(m),
            Some(other) => {
                self.notes.push(format!(
                    "{path}{key}: expected an object, got {}",
                    kind(other)
                ));
                None
            }
        }
    }

    /// What `read` makes of each object of `o.<section>.details` (with its index there), for
    /// the first `max` of them: more (`what`, for the note) are noted and not read, and an
    /// entry that is not an object is noted and skipped.
    fn details<T>(
        &mut self,
        o: &Map<String, Value>,
        section: &str,
        what: &str,
        max: usize,
        mut read: impl FnMut(&mut Self, usize, &Map<String, Value>) -> T,
    ) -> Vec<T> {
        let mut out = Vec::new();
        let Some(s) = self.object(o, "", section) else {
            return out;
        };
        let details = self.array(s, &format!("{section}."), "details");
        for (i, d) in details.iter().enumerate() {
            if out.len() >= max {
                self.notes.push(format!(
                    "{section}.details: {} {what}; the first {max} are read",
                    details.len()
                ));
                break;
            }
            let Some(m) = d.as_object() else {
                self.notes
                    .push(format!("{section}.details[{i}]: not an object"));
                continue;
            };
            out.push(read(self, i, m));
        }
        out
    }

    /// An array; `null` (Go's nil slice) is an empty one.
    fn array<'v>(&mut self, o: &'v Map<String, Value>, path: &str, key: &str) -> &'v [Value] {
        match o.get(key) {
            None => {
                self.notes.push(format!("{path}{key}: missing"));
                &[]
            }
            Some(Value::Null) => &[],
            Some(Value::Array(a)) => a,
            Some(other) => {
                self.notes
                    .push(format!("{path}{key}: expected a list, got {}", kind(other)));
                &[]
            }
        }
    }

    fn strings(&mut self, o: &Map<String, Value>, path: &str, key: &str) -> Vec<String> {
        self.array(o, path, key)
            .iter()
            .filter_map(Value::as_str)
            .take(MAX_URIS * 16)
            .map(cut)
            .collect()
    }

    fn server(&mut self, o: &Map<String, Value>, key: &str) -> ServerState {
        let Some(m) = self.object(o, "", key) else {
            return ServerState::default();
        };
        let path = format!("{key}.");
        ServerState {
            url: self.string(m, &path, "url"),
            connected: self.boolean(m, &path, "connected").unwrap_or(false),
            error: opt(&self.string(m, &path, "error")),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn parse_json(text: &str) -> Result<(Status, Vec<String>), NetbirdError> {
    let v: Value = serde_json::from_str(text).map_err(|e| NetbirdError::NotStatus {
        reason: format!("invalid JSON at line {}, column {}", e.line(), e.column()),
    })?;
    let Value::Object(top) = v else {
        return Err(NetbirdError::NotStatus {
            reason: "JSON is not an object".into(),
        });
    };
    // Another program's JSON: none of the status's own top-level keys.
    if !["peers", "management", "signal", "relays", "daemonVersion"]
        .iter()
        .any(|k| top.contains_key(*k))
    {
        return Err(NetbirdError::NotStatus {
            reason: "JSON without peers, management, signal or relays".into(),
        });
    }
    let mut notes = Vec::new();
    let mut r = Reader { notes: &mut notes };
    let management = r.server(&top, "management");
    let signal = r.server(&top, "signal");
    let relays = r.details(&top, "relays", "entries", MAX_URIS, |r, i, m| {
        let path = format!("relays.details[{i}].");
        let uri = r.string(m, &path, "uri");
        let available = r.boolean(m, &path, "available").unwrap_or(false);
        let error = opt(&r.string(m, &path, "error"));
        // `transport` is newer and optional (omitempty): no note when absent.
        let transport = m.get("transport").and_then(Value::as_str).and_then(opt);
        let checking = !available
            && error
                .as_deref()
                .is_some_and(|e| e.to_ascii_lowercase().contains("in progress"));
        RelayState {
            uri,
            available,
            checking,
            error,
            transport,
        }
    });
    let peers = r.details(&top, "peers", "peers", MAX_PEERS, |r, i, m| {
        json_peer(r, m, i)
    });
    let wireguard_port = match top.get("wireguardPort") {
        None => {
            r.notes.push("wireguardPort: missing".into());
            None
        }
        Some(v) => match v.as_u64().and_then(|n| u16::try_from(n).ok()) {
            Some(0) => None,
            Some(p) => Some(p),
            None => {
                r.notes.push(format!("wireguardPort: {v} is not a port"));
                None
            }
        },
    };
    let daemon_version = opt(&r.string(&top, "", "daemonVersion"));
    // Older versions have no daemonStatus/cliVersion: read them without a note.
    let cli_version = top.get("cliVersion").and_then(Value::as_str).and_then(opt);
    let daemon_status = top
        .get("daemonStatus")
        .and_then(Value::as_str)
        .and_then(opt);
    let netbird_ip = top.get("netbirdIp").and_then(Value::as_str).and_then(opt);
    let kernel_interface = top.get("usesKernelInterface").and_then(Value::as_bool);
    let networks = match top.get("networks") {
        Some(Value::Array(_)) => r.strings(&top, "", "networks"),
        // Versions before "networks" called them "routes".
        _ => match top.get("routes") {
            Some(Value::Array(_)) => r.strings(&top, "", "routes"),
            _ => Vec::new(),
        },
    };
    Ok((
        Status {
            format: StatusFormat::Json,
            daemon_version,
            cli_version,
            daemon_status,
            management,
            signal,
            relays,
            netbird_ip,
            wireguard_port,
            kernel_interface,
            networks,
            peers,
        },
        notes,
    ))
}

fn json_peer(r: &mut Reader<'_>, m: &Map<String, Value>, i: usize) -> PeerState {
    let path = format!("peers.details[{i}].");
    let pair = |r: &mut Reader<'_>, key: &str| -> (String, String) {
        match r.object(m, &path, key) {
            None => (String::new(), String::new()),
            Some(o) => {
                let p = format!("{path}{key}.");
                (r.string(o, &p, "local"), r.string(o, &p, "remote"))
            }
        }
    };
    let (il, ir) = pair(r, "iceCandidateType");
    let (el, er) = pair(r, "iceCandidateEndpoint");
    let netbird_ip = r.string(m, &path, "netbirdIp");
    let mut fqdn = r.string(m, &path, "fqdn");
    if fqdn.is_empty() {
        fqdn.clone_from(&netbird_ip);
    }
    let networks = match m.get("networks") {
        Some(Value::Array(_)) | Some(Value::Null) | None => {
            if m.contains_key("networks") {
                r.strings(m, &path, "networks")
            } else if m.contains_key("routes") {
                r.strings(m, &path, "routes")
            } else {
                Vec::new()
            }
        }
        Some(other) => {
            r.notes.push(format!(
                "{path}networks: expected a list, got {}",
                kind(other)
            ));
            Vec::new()
        }
    };
    PeerState {
        fqdn,
        netbird_ip,
        status: r.string(m, &path, "status"),
        link: PeerLink {
            connection_type: ConnectionType::parse(&r.string(m, &path, "connectionType")),
            ice_local: CandidateType::parse(&il),
            ice_remote: CandidateType::parse(&ir),
            endpoint_local: opt(&el),
            endpoint_remote: opt(&er),
            relay_address: opt(&r.string(m, &path, "relayAddress")),
        },
        networks,
        key: PeerKey::new(m.get("publicKey").and_then(Value::as_str).unwrap_or("")),
    }
}

// ---------------------------------------------------------------------------------------------
// Profile

/// A profile built from what the client was given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetbirdProfile {
    /// The services.
    pub profile: Profile,
    /// The WireGuard port the client listens on (drives the host-firewall analysis).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wireguard_port: Option<u16>,
    /// What was skipped or assumed.
    pub notes: Vec<String>,
}

fn add_port(v: &mut Vec<PortRange>, p: u16) {
    let r = PortRange::single(p);
    if !v.contains(&r) {
        v.push(r);
    }
}

/// The profile of what this client was really given: management and signal from their URLs,
/// STUN/TURN servers and relays from `relays`. Published addresses are carried over from
/// `seed` (the embedded NetBird Cloud profile) for hosts it names.
pub fn to_profile(st: &Status, seed: &Profile) -> Result<NetbirdProfile, NetbirdError> {
    let mut notes = Vec::new();
    // (kind, host) -> service
    let mut services: Vec<Service> = Vec::new();
    let mut upsert = |kind: ServiceKind, host: &Host, f: &mut dyn FnMut(&mut Service)| {
        let idx = match services
            .iter()
            .position(|s| s.kind == kind && s.hosts.first() == Some(host))
        {
            Some(i) => i,
            None => {
                let published = seed
                    .of_kind(kind)
                    .find(|s| s.hosts.contains(host))
                    .map(|s| (s.ipv4.clone(), s.ipv6.clone()))
                    .unwrap_or_default();
                let label = match kind {
                    ServiceKind::Management => "Management",
                    ServiceKind::Signal => "Signal",
                    ServiceKind::Stun => "P2P (STUN)",
                    ServiceKind::Turn => "Relay (TURN)",
                    ServiceKind::Relay => "Relay",
                };
                services.push(Service {
                    name: format!("{label} {host}"),
                    kind,
                    hosts: vec![host.clone()],
                    udp: Vec::new(),
                    tcp: Vec::new(),
                    tls: Vec::new(),
                    ipv4: published.0,
                    ipv6: published.1,
                });
                services.len() - 1
            }
        };
        if let Some(s) = services.get_mut(idx) {
            f(s);
        }
    };
    for (kind, state, what) in [
        (ServiceKind::Management, &st.management, "management"),
        (ServiceKind::Signal, &st.signal, "signal"),
    ] {
        if state.url.is_empty() {
            notes.push(format!("{what}: no URL reported"));
            continue;
        }
        match uri::parse(&state.url, true) {
            Ok(u) if matches!(u.scheme, Scheme::Https | Scheme::Http) => {
                if u.scheme == Scheme::Http {
                    notes.push(format!(
                        "{what}: {} is plain HTTP; probed as TLS",
                        state.url
                    ));
                }
                upsert(kind, &u.host, &mut |s| add_port(&mut s.tcp, u.port));
            }
            Ok(_) => notes.push(format!(
                "{what}: {} is not an http(s) URL; skipped",
                state.url
            )),
            Err(e) => notes.push(format!("{what}: {e}; skipped")),
        }
    }
    for r in &st.relays {
        let u: NbUri = match uri::parse(&r.uri, false) {
            Ok(u) => u,
            Err(e) => {
                notes.push(format!("relays: {e}; skipped"));
                continue;
            }
        };
        match u.scheme {
            Scheme::Stun => upsert(ServiceKind::Stun, &u.host, &mut |s| {
                add_port(&mut s.udp, u.port)
            }),
            Scheme::Stuns => notes.push(format!("{}: STUN over TLS is not probed; skipped", r.uri)),
            Scheme::Turn => upsert(ServiceKind::Turn, &u.host, &mut |s| match u.transport {
                Some(Transport::Tcp) => add_port(&mut s.tcp, u.port),
                _ => add_port(&mut s.udp, u.port),
            }),
            Scheme::Turns => upsert(ServiceKind::Turn, &u.host, &mut |s| {
                if !s.tls.contains(&u.port) {
                    s.tls.push(u.port);
                }
            }),
            Scheme::Rels => upsert(ServiceKind::Relay, &u.host, &mut |s| {
                add_port(&mut s.tcp, u.port)
            }),
            Scheme::Rel => {
                notes.push(format!(
                    "{}: plain-WebSocket relay (no TLS); stunmap probes relays over TLS, so its result may differ",
                    r.uri
                ));
                upsert(ServiceKind::Relay, &u.host, &mut |s| {
                    add_port(&mut s.tcp, u.port)
                });
            }
            Scheme::Https | Scheme::Http => {
                notes.push(format!(
                    "relays: {} is not a STUN/TURN/relay URI; skipped",
                    r.uri
                ));
            }
        }
    }
    // Peers' relay addresses name relays the client was handed for them.
    for p in &st.peers {
        if let Some(a) = &p.link.relay_address
            && let Ok(u) = uri::parse(a, false)
            && matches!(u.scheme, Scheme::Rels | Scheme::Rel)
        {
            upsert(ServiceKind::Relay, &u.host, &mut |s| {
                add_port(&mut s.tcp, u.port)
            });
        }
    }
    if services.is_empty() {
        return Err(NetbirdError::NotStatus {
            reason: "the status names no management, signal, STUN, TURN or relay endpoint".into(),
        });
    }
    let profile = Profile {
        name: "netbird-status".into(),
        description: Some(match &st.daemon_version {
            Some(v) => format!("what NetBird {v} reports it was given"),
            None => "what the NetBird client reports it was given".into(),
        }),
        services,
    };
    profile.validate().map_err(|e| NetbirdError::NotStatus {
        reason: format!("profile from the status is not usable: {e}"),
    })?;
    if st.wireguard_port.is_none() {
        notes.push("no WireGuard port reported; the host-firewall analysis assumes 51820".into());
    }
    Ok(NetbirdProfile {
        profile,
        wireguard_port: st.wireguard_port,
        notes,
    })
}
