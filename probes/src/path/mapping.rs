//! A port mapping that is proven to work: ask the gateway for a short-lived UDP mapping of the
//! probe's own socket (PCP MAP, RFC 6887 §11; NAT-PMP, RFC 6886 §3.3; or UPnP IGD
//! `AddPortMapping`), check from outside that unsolicited traffic now reaches that socket, and
//! delete the mapping again — on success, on failure and when the run is stopped.
//!
//! "The gateway answered the protocol" says little: the mapping may sit on a router behind
//! another NAT, or the gateway may not honour it. The proof is a Binding request from the
//! mapped socket carrying CHANGE-REQUEST (change IP and port, RFC 5780 §7.2) and
//! RESPONSE-PORT set to the mapped external port (RFC 5780 §7.5): the server answers from its
//! alternate address — an endpoint the socket never sent to — to the external port of the
//! mapping. Only a working mapping lets that answer in.
//!
//! The machine is sans-IO: it says what to send ([`Step`]: a datagram to the gateway's port
//! 5351, an HTTP request to the UPnP control URL, a STUN datagram from the mapped socket) and
//! takes the answers; `engine::portmap::prove_mapping` does the I/O. No mapping is requested
//! unless the proof can be made (the STUN server answers and has an alternate address).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::finding::{Fix, Severity};
use crate::stun::attr::ChangeRequest;
use crate::stun::view::StunView;
use crate::stun::{Class, MessageType, MessageWriter, Method, TransactionId, TransactionIdSource};
use crate::wire::upnp::{self, HttpUrl, SoapAction, SoapReply};
use crate::wire::{natpmp, pcp};

/// The protocol used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapProtocol {
    /// PCP MAP.
    Pcp,
    /// NAT-PMP.
    NatPmp,
    /// UPnP IGD `AddPortMapping` on a WAN connection service.
    Upnp {
        /// The service's control URL.
        control: HttpUrl,
        /// Its service type.
        service_type: String,
    },
}

impl MapProtocol {
    /// Its name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            MapProtocol::Pcp => "PCP",
            MapProtocol::NatPmp => "NAT-PMP",
            MapProtocol::Upnp { .. } => "UPnP IGD",
        }
    }
}

/// How a proof is run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingConfig {
    /// The protocol.
    pub protocol: MapProtocol,
    /// The gateway.
    pub gateway: Ipv4Addr,
    /// The mapped socket's LAN address and port.
    pub internal: SocketAddrV4,
    /// Lifetime asked for, seconds (short: the mapping is deleted at once anyway, and a
    /// gateway that never deletes lets it expire soon).
    pub lifetime: u32,
    /// The STUN server (it must send OTHER-ADDRESS and honour CHANGE-REQUEST and
    /// RESPONSE-PORT).
    pub stun: SocketAddr,
    /// The gateway's external address from NAT-PMP, if known (NAT-PMP's mapping answer has
    /// none).
    pub gateway_external: Option<Ipv4Addr>,
    /// Wait for an answer (doubled per try for the gateway, RFC 6886 §3.1).
    pub rto: Duration,
    /// Tries per exchange.
    pub attempts: u8,
    /// PCP's mapping nonce (random, from the caller).
    pub nonce: [u8; 12],
}

/// What to send next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A NAT-PMP or PCP datagram to the gateway's port 5351.
    Gateway(Vec<u8>),
    /// An HTTP request to the UPnP control URL; its whole answer goes to
    /// [`MappingProbe::handle_soap`].
    Soap {
        /// The control URL's host and port.
        to: SocketAddr,
        /// The request.
        request: Vec<u8>,
    },
    /// A STUN datagram from the mapped socket.
    Stun {
        /// Where to.
        to: SocketAddr,
        /// The bytes.
        bytes: Vec<u8>,
    },
}

/// How the mapping request went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum MapResult {
    /// Not asked for: the proof could not have been made.
    NotRequested {
        /// Why.
        why: String,
    },
    /// The gateway created the mapping.
    Created {
        /// The external port.
        external_port: u16,
        /// The external address, when the gateway said.
        external_ip: Option<IpAddr>,
        /// The lifetime granted, seconds.
        lifetime: u32,
    },
    /// The gateway refused.
    Refused {
        /// Its result or error code.
        code: u16,
        /// What it means.
        meaning: String,
    },
    /// No answer (a delete is sent anyway, in case only the answer was lost).
    NoAnswer,
}

/// Whether unsolicited traffic reached the mapped socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum Verification {
    /// The server's answer from its alternate address arrived on the mapped socket.
    Reached {
        /// The address it came from.
        from: SocketAddr,
    },
    /// It never arrived.
    NotReached,
    /// Not tried.
    NotTried {
        /// Why.
        why: String,
    },
}

/// Whether the mapping is gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum Deletion {
    /// The gateway confirmed the deletion.
    Confirmed,
    /// It did not (no answer, an error); the mapping expires by itself.
    Unconfirmed {
        /// Why.
        why: String,
    },
    /// Nothing was created.
    NotNeeded,
}

/// The proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MappingProof {
    /// "PCP", "NAT-PMP" or "UPnP IGD".
    pub protocol: &'static str,
    /// The gateway.
    pub gateway: Ipv4Addr,
    /// The mapped socket.
    pub internal: SocketAddrV4,
    /// Lifetime asked for, seconds.
    pub requested_lifetime: u32,
    /// The socket's public address before the mapping (from the STUN server).
    pub mapped_before: Option<SocketAddr>,
    /// The STUN server's alternate address.
    pub other_address: Option<SocketAddr>,
    /// The request.
    pub result: MapResult,
    /// The proof.
    pub verification: Verification,
    /// The deletion.
    pub deletion: Deletion,
    /// Stopped before the end.
    pub interrupted: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// A Binding to the STUN server: the mapped address before, and OTHER-ADDRESS.
    Learn,
    /// The mapping request.
    Map,
    /// The proof.
    Verify,
    /// The deletion.
    Delete,
    /// Over.
    Done,
}

/// The machine (see the module docs).
#[derive(Debug)]
pub struct MappingProbe {
    cfg: MappingConfig,
    ids: TransactionIdSource,
    phase: Phase,
    tries: u8,
    /// A datagram or request is to be sent.
    send: bool,
    /// An HTTP exchange is in flight (no timer: the engine answers every request).
    soap_pending: bool,
    due: Option<Instant>,
    tid: TransactionId,
    proof: MappingProof,
    /// The mapping request was sent (a delete is owed unless the gateway refused).
    requested: bool,
}

impl MappingProbe {
    /// A proof with `cfg`; transaction ids from `ids`.
    pub fn new(cfg: MappingConfig, mut ids: TransactionIdSource) -> MappingProbe {
        let tid = ids.next_id();
        let proof = MappingProof {
            protocol: cfg.protocol.name(),
            gateway: cfg.gateway,
            internal: cfg.internal,
            requested_lifetime: cfg.lifetime,
            mapped_before: None,
            other_address: None,
            result: MapResult::NotRequested {
                why: "not reached".into(),
            },
            verification: Verification::NotTried {
                why: "no mapping".into(),
            },
            deletion: Deletion::NotNeeded,
            interrupted: false,
        };
        MappingProbe {
            cfg,
            ids,
            phase: Phase::Learn,
            tries: 0,
            send: true,
            soap_pending: false,
            due: None,
            tid,
            proof,
            requested: false,
        }
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.tries = 0;
        self.send = phase != Phase::Done;
        self.due = None;
        self.tid = self.ids.next_id();
    }

    /// No mapping is requested because the STUN server `failed` (what it did, in words): the
    /// mapping could not be proven.
    fn unproven(&mut self, failed: &str) {
        self.proof.result = MapResult::NotRequested {
            why: format!(
                "the STUN server {} {failed}: the mapping could not be proven, so none was made",
                self.cfg.stun
            ),
        };
        self.enter(Phase::Done);
    }

    fn wait(&self) -> Duration {
        match self.phase {
            // RFC 6886 §3.1: the wait doubles with each try.
            Phase::Map | Phase::Delete => {
                self.cfg.rto * (1u32 << self.tries.saturating_sub(1).min(4))
            }
            _ => self.cfg.rto,
        }
    }

    /// The next thing to send, if any.
    pub fn poll(&mut self, now: Instant) -> Option<Step> {
        if !self.send || self.phase == Phase::Done || self.soap_pending {
            return None;
        }
        self.send = false;
        self.tries += 1;
        let step = match self.phase {
            Phase::Learn => self.stun_request(None),
            Phase::Verify => {
                let port = match self.proof.result {
                    MapResult::Created { external_port, .. } => external_port,
                    _ => 0,
                };
                self.stun_request(Some(port))
            }
            Phase::Map | Phase::Delete => self.gateway_step(self.phase == Phase::Map)?,
            Phase::Done => return None,
        };
        if matches!(step, Step::Soap { .. }) {
            self.soap_pending = true;
            self.due = None;
        } else {
            self.due = Some(now + self.wait());
        }
        Some(step)
    }

    fn stun_request(&self, response_port: Option<u16>) -> Step {
        let mut bytes = Vec::with_capacity(64);
        let mut w = MessageWriter::new(&mut bytes, MessageType::BINDING_REQUEST, &self.tid);
        if let Some(port) = response_port {
            w.change_request(ChangeRequest {
                change_ip: true,
                change_port: true,
            });
            w.response_port(port);
        }
        w.fingerprint();
        w.finish();
        Step::Stun {
            to: self.cfg.stun,
            bytes,
        }
    }

    fn gateway_step(&mut self, create: bool) -> Option<Step> {
        let internal = self.cfg.internal;
        let lifetime = if create { self.cfg.lifetime } else { 0 };
        match &self.cfg.protocol {
            MapProtocol::NatPmp => {
                let ext = if create { internal.port() } else { 0 };
                Some(Step::Gateway(
                    natpmp::map_request(internal.port(), ext, lifetime).to_vec(),
                ))
            }
            MapProtocol::Pcp => Some(Step::Gateway(
                pcp::map_request(
                    IpAddr::V4(*internal.ip()),
                    self.cfg.nonce,
                    internal.port(),
                    internal.port(),
                    lifetime,
                )
                .to_vec(),
            )),
            MapProtocol::Upnp {
                control,
                service_type,
            } => {
                let action = if create {
                    SoapAction::AddPortMapping {
                        external_port: internal.port(),
                        internal_port: internal.port(),
                        client: *internal.ip(),
                        lease: lifetime,
                    }
                } else {
                    let external_port = match self.proof.result {
                        MapResult::Created { external_port, .. } => external_port,
                        _ => internal.port(),
                    };
                    SoapAction::DeletePortMapping { external_port }
                };
                match upnp::soap_request(control, service_type, &action) {
                    Ok(request) => Some(Step::Soap {
                        to: control.addr,
                        request,
                    }),
                    Err(e) => {
                        self.gateway_failed(format!("cannot build the SOAP request: {e}"));
                        None
                    }
                }
            }
        }
    }

    /// When to call [`MappingProbe::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Done {
            None
        } else {
            self.due
        }
    }

    /// A datagram on the mapped socket.
    pub fn handle_stun(&mut self, from: SocketAddr, bytes: &[u8]) -> bool {
        if !matches!(self.phase, Phase::Learn | Phase::Verify) {
            return false;
        }
        let Ok(view) = StunView::parse(bytes) else {
            return false;
        };
        let ty = view.message_type();
        if view.transaction_id() != self.tid || ty.method != Method::BINDING {
            return false;
        }
        match self.phase {
            Phase::Learn => {
                if ty.class != Class::SuccessResponse {
                    self.proof.result = MapResult::NotRequested {
                        why: "the STUN server answered the Binding with an error".into(),
                    };
                    self.enter(Phase::Done);
                    return true;
                }
                self.proof.mapped_before = view
                    .xor_mapped_address()
                    .or_else(|| view.mapped_address())
                    .and_then(Result::ok);
                self.proof.other_address = view.other_address().and_then(Result::ok);
                match self.proof.other_address {
                    Some(other) if other.ip() != self.cfg.stun.ip() => self.enter(Phase::Map),
                    _ => self.unproven("has no alternate address (RFC 5780 OTHER-ADDRESS)"),
                }
            }
            Phase::Verify => {
                if ty.class != Class::SuccessResponse {
                    self.proof.verification = Verification::NotTried {
                        why: "the STUN server refused CHANGE-REQUEST/RESPONSE-PORT".into(),
                    };
                } else if Some(from) == self.proof.other_address
                    || Some(from.ip()) == self.proof.other_address.map(|o| o.ip())
                {
                    self.proof.verification = Verification::Reached { from };
                } else {
                    // An answer from the primary address proves nothing: the server ignored
                    // CHANGE-REQUEST.
                    self.proof.verification = Verification::NotTried {
                        why: format!(
                            "the STUN server answered from {from}, not its alternate address: it does not honour CHANGE-REQUEST"
                        ),
                    };
                }
                self.enter(Phase::Delete);
            }
            _ => {}
        }
        true
    }

    /// A datagram from the gateway's port 5351.
    pub fn handle_gateway(&mut self, bytes: &[u8]) -> bool {
        if !matches!(self.phase, Phase::Map | Phase::Delete) {
            return false;
        }
        let create = self.phase == Phase::Map;
        let parsed: Option<(u16, String, u16, Option<IpAddr>, u32)> = match &self.cfg.protocol {
            MapProtocol::NatPmp => natpmp::parse_map(bytes).ok().map(|m| {
                (
                    m.result,
                    natpmp::result_text(m.result).to_string(),
                    m.external_port,
                    self.cfg.gateway_external.map(IpAddr::V4),
                    m.lifetime,
                )
            }),
            MapProtocol::Pcp => pcp::parse_map(bytes)
                .ok()
                .filter(|m| {
                    m.nonce == self.cfg.nonce && m.internal_port == self.cfg.internal.port()
                })
                .map(|m| {
                    (
                        u16::from(m.result),
                        pcp::result_text(m.result).to_string(),
                        m.external_port,
                        Some(m.external).filter(|ip| !ip.is_unspecified()),
                        m.lifetime,
                    )
                }),
            MapProtocol::Upnp { .. } => None,
        };
        let Some((code, meaning, external_port, external_ip, lifetime)) = parsed else {
            return false;
        };
        // A late answer to the creation while deleting (after a cancel) is not the deletion's.
        if !create && code == 0 && lifetime != 0 {
            return false;
        }
        self.gateway_answer(create, code, meaning, external_port, external_ip, lifetime);
        true
    }

    /// The answer (or failure) of the HTTP exchange of a UPnP action.
    pub fn handle_soap(&mut self, answer: Result<Vec<u8>, String>) {
        if !self.soap_pending {
            return;
        }
        self.soap_pending = false;
        let create = self.phase == Phase::Map;
        match answer.map(|b| upnp::parse_soap_reply(&b)) {
            Ok(Ok(SoapReply::Ok { .. })) => {
                let port = self.cfg.internal.port();
                let ip = self.cfg.gateway_external.map(IpAddr::V4);
                self.gateway_answer(create, 0, "success".into(), port, ip, self.cfg.lifetime);
            }
            Ok(Ok(SoapReply::Fault { code, description })) => {
                let code = code.unwrap_or(0);
                let meaning = description.unwrap_or_else(|| "SOAP fault".into());
                self.gateway_answer(create, code.max(1), meaning, 0, None, 0);
            }
            Ok(Err(e)) => self.gateway_failed(format!("unreadable answer: {e}")),
            Err(e) => self.gateway_failed(e),
        }
    }

    fn gateway_answer(
        &mut self,
        create: bool,
        code: u16,
        meaning: String,
        external_port: u16,
        external_ip: Option<IpAddr>,
        lifetime: u32,
    ) {
        if create {
            self.requested = true;
            if code == 0 && external_port != 0 {
                self.proof.result = MapResult::Created {
                    external_port,
                    external_ip,
                    lifetime,
                };
                self.proof.deletion = Deletion::Unconfirmed {
                    why: "not deleted yet".into(),
                };
                self.enter(Phase::Verify);
            } else {
                // Refused: nothing exists, nothing to delete.
                self.proof.result = MapResult::Refused { code, meaning };
                self.proof.deletion = Deletion::NotNeeded;
                self.proof.verification = Verification::NotTried {
                    why: "the gateway refused the mapping".into(),
                };
                self.enter(Phase::Done);
            }
        } else {
            self.proof.deletion = if code == 0 {
                Deletion::Confirmed
            } else {
                Deletion::Unconfirmed {
                    why: format!("the gateway answered the deletion with {code} ({meaning})"),
                }
            };
            self.enter(Phase::Done);
        }
    }

    /// An exchange with the gateway failed for good (no answer, unusable answers).
    fn gateway_failed(&mut self, why: String) {
        match self.phase {
            Phase::Map => {
                self.proof.result = MapResult::NoAnswer;
                self.proof.verification = Verification::NotTried {
                    why: format!("no mapping: {why}"),
                };
                // The request may have been taken and only the answer lost: delete anyway.
                self.requested = true;
                self.proof.deletion = Deletion::Unconfirmed {
                    why: "not deleted yet".into(),
                };
                self.enter(Phase::Delete);
            }
            Phase::Delete => {
                self.proof.deletion = Deletion::Unconfirmed { why };
                self.enter(Phase::Done);
            }
            _ => self.enter(Phase::Done),
        }
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.due.is_none_or(|d| now < d) || self.phase == Phase::Done {
            return;
        }
        self.due = None;
        if self.tries < self.cfg.attempts {
            self.send = true;
            return;
        }
        match self.phase {
            Phase::Learn => self.unproven("did not answer"),
            Phase::Verify => {
                self.proof.verification = Verification::NotReached;
                self.enter(Phase::Delete);
            }
            Phase::Map | Phase::Delete => {
                let why = match self.phase {
                    Phase::Map => "no answer from the gateway".to_string(),
                    _ => "the gateway did not answer the deletion".to_string(),
                };
                self.gateway_failed(why);
            }
            Phase::Done => {}
        }
    }

    /// Stop: a mapping that may exist is deleted first (keep driving until
    /// [`MappingProbe::is_done`]); anything else ends now.
    pub fn cancel(&mut self) {
        self.proof.interrupted = true;
        match self.phase {
            Phase::Learn => {
                self.proof.result = MapResult::NotRequested {
                    why: "stopped".into(),
                };
                self.enter(Phase::Done);
            }
            Phase::Map | Phase::Verify => {
                if matches!(self.proof.verification, Verification::NotTried { .. })
                    && self.phase == Phase::Verify
                {
                    self.proof.verification = Verification::NotTried {
                        why: "stopped".into(),
                    };
                }
                if self.phase == Phase::Map {
                    self.proof.result = MapResult::NoAnswer;
                }
                self.requested = true;
                self.soap_pending = false;
                self.enter(Phase::Delete);
            }
            Phase::Delete | Phase::Done => {}
        }
    }

    /// Whether the machine is done.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The proof so far (final once done).
    pub fn proof(&self) -> &MappingProof {
        &self.proof
    }
}

/// The protocol to map with, from what discovery found: PCP, then NAT-PMP, then UPnP IGD
/// (the first WAN connection service whose control URL is on the gateway itself).
pub fn protocol_for(pm: &crate::nat::portmap::PortMapping) -> Option<MapProtocol> {
    if pm.pcp.available() {
        return Some(MapProtocol::Pcp);
    }
    if pm.nat_pmp.available() {
        return Some(MapProtocol::NatPmp);
    }
    let gw = pm.gateway?;
    let crate::nat::portmap::UpnpStatus::Available {
        location, services, ..
    } = &pm.upnp
    else {
        return None;
    };
    let desc = upnp::parse_http_url(location).ok()?;
    services.iter().find_map(|s| {
        let control = upnp::control_url(&desc, s.control_url.as_deref()?).ok()?;
        (control.addr.ip() == IpAddr::V4(gw)).then(|| MapProtocol::Upnp {
            control,
            service_type: s.service_type.clone(),
        })
    })
}

/// The verdict on a proof: severity, one line, and the fix.
pub fn judge(p: &MappingProof) -> (Severity, String, Option<Fix>) {
    let proto = p.protocol;
    let gw = p.gateway;
    let (sev, mut line, fix) = match (&p.result, &p.verification) {
        (MapResult::NotRequested { why }, _) => (
            Severity::Info,
            format!("port mapping not tried on {gw}: {why}"),
            None,
        ),
        (MapResult::Refused { code, meaning }, _) => (
            Severity::Low,
            format!(
                "the gateway {gw} refused a {proto} mapping ({code}: {meaning}): NetBird's own mappings will be refused too"
            ),
            None,
        ),
        (MapResult::NoAnswer, _) => (
            Severity::Low,
            format!("the gateway {gw} did not answer a {proto} mapping request"),
            None,
        ),
        (MapResult::Created { external_port, .. }, Verification::Reached { from }) => (
            Severity::Info,
            format!(
                "a {proto} mapping on {gw} works: unsolicited traffic from {from} reached this host through external port {external_port}, so peers can connect directly even where the NAT maps per destination"
            ),
            None,
        ),
        (
            MapResult::Created {
                external_port,
                external_ip,
                ..
            },
            Verification::NotReached,
        ) => (
            Severity::Medium,
            format!(
                "the gateway {gw} created a {proto} mapping (external {}:{external_port}), but unsolicited traffic to it never arrived: a second NAT or a firewall beyond the gateway drops it, so port mapping does not help here",
                external_ip
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "?".into())
            ),
            Some(Fix::new(
                "Port mapping works only on the NAT that faces the internet: if the router is behind another router or a carrier NAT, put the first one in bridge mode or ask the carrier for a public address; otherwise NetBird relays this host's connections",
            )),
        ),
        (MapResult::Created { .. }, Verification::NotTried { why }) => (
            Severity::Info,
            format!("the gateway {gw} created a {proto} mapping; not proven: {why}"),
            None,
        ),
    };
    if let Deletion::Unconfirmed { why } = &p.deletion {
        line.push_str(&format!(
            "; the deletion was not confirmed ({why}): the gateway drops the mapping when its lifetime ends{}",
            match p.result {
                MapResult::Created { lifetime, .. } => format!(" ({lifetime} s)"),
                _ => format!(" ({} s asked)", p.requested_lifetime),
            }
        ));
        return (sev.max(Severity::Medium), line, fix);
    }
    (sev, line, fix)
}

#[cfg(test)]
mod tests;
