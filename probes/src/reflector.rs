//! The Binding server side (what `stunmap serve` answers), RFC 8489 §6.3 and RFC 5780 §6.
//!
//! A server has a primary address and, optionally, an alternate IP and an alternate port. The
//! four combinations are its sockets. A Binding request is answered with XOR-MAPPED-ADDRESS
//! (RFC 8489 §14.2). Attributes beyond it are sent only where they are needed, because every
//! byte of an answer to an unauthenticated datagram is a byte an attacker can reflect at a
//! spoofed source (RFC 8489 §16, security considerations):
//!
//! - RESPONSE-ORIGIN (RFC 5780 §7.3) and MAPPED-ADDRESS only when the server is configured for
//!   RFC 5780 (an alternate IP or an alternate port for this family): RFC 5780 §6 requires
//!   RESPONSE-ORIGIN from a server that offers the NAT behaviour discovery usage, and a plain
//!   RFC 8489 server sends neither. MAPPED-ADDRESS is what RFC 3489 clients read (RFC 8489
//!   §14.1); beside XOR-MAPPED-ADDRESS it lets a diagnostic client see a NAT ALG that rewrote
//!   the plain copy, which is what a discovery server is deployed for.
//! - OTHER-ADDRESS (RFC 5780 §7.4) when the alternate IP and port both exist (RFC 5780 §6).
//! - SOFTWARE (RFC 8489 §14.14) only when the caller passes a text.
//! - PADDING (RFC 5780 §7.6) when the request carried PADDING: the response is padded to the
//!   request's own length, so a client can measure the path MTU in both directions without the
//!   server amplifying anything (the RFC's SHOULD is the outgoing interface's MTU; the client's
//!   size is the one that can be measured). PADDING with RESPONSE-PORT is refused with 400
//!   (RFC 5780 §6.1).
//! - FINGERPRINT (RFC 8489 §14.7) when the request carried one: a client that multiplexes STUN
//!   with other traffic on its socket asks for it that way, and one that did not has no use for
//!   it.
//!
//! A CHANGE-REQUEST is honoured by answering from the changed socket (RFC 5780 §6.1), and a
//! RESPONSE-PORT by answering to that port on the client's IP (RFC 5780 §6.2, §7.5: the
//! binding-lifetime test of §4.6 relies on it). Anything that is not a well-formed Binding
//! request gets no answer; a request carrying unknown comprehension-required attributes gets a
//! 420 (RFC 8489 §6.3.1).
//!
//! [`limit`] holds the per-source answer limit the server applies on top (a request over it
//! gets no answer). Sizes of the answers, hence the amplification factor per family and
//! attribute set, are [`answer_len`].

pub mod limit;

use std::net::{IpAddr, SocketAddr};

use crate::stun::attr::{self, ChangeRequest};
use crate::stun::view::{Fingerprint, StunView};
use crate::stun::{Class, HEADER_LEN, MessageType, MessageWriter, Method};

/// Which of the server's sockets a reply leaves from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Alternate IP instead of the primary one.
    pub alt_ip: bool,
    /// Alternate port instead of the primary one.
    pub alt_port: bool,
}

/// The server's addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerAddrs {
    /// IP the request arrived on.
    pub primary_ip: IpAddr,
    /// Port the request arrived on.
    pub primary_port: u16,
    /// The alternate IP, RFC 5780 §6.
    pub alt_ip: Option<IpAddr>,
    /// The alternate port, RFC 5780 §6.
    pub alt_port: Option<u16>,
}

impl ServerAddrs {
    /// The socket address of `origin`, if the server has it.
    pub fn addr(&self, origin: Origin) -> Option<SocketAddr> {
        let ip = if origin.alt_ip {
            self.alt_ip?
        } else {
            self.primary_ip
        };
        let port = if origin.alt_port {
            self.alt_port?
        } else {
            self.primary_port
        };
        Some(SocketAddr::new(ip, port))
    }

    /// Whether this server offers RFC 5780 on this family (an alternate IP or port): then its
    /// answers carry RESPONSE-ORIGIN and MAPPED-ADDRESS (RFC 5780 §6).
    pub fn rfc5780(&self) -> bool {
        self.alt_ip.is_some() || self.alt_port.is_some()
    }

    /// OTHER-ADDRESS: the alternate IP with the alternate port, RFC 5780 §7.4.
    pub fn other_address(&self) -> Option<SocketAddr> {
        self.addr(Origin {
            alt_ip: true,
            alt_port: true,
        })
    }
}

/// What to do with a received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the bytes appended to the output buffer from socket `from` to `to`: the client's
    /// address, or its IP with the port of a RESPONSE-PORT (RFC 5780 §7.5). Over a stream the
    /// reply goes back on the connection whatever `to` says (RESPONSE-PORT concerns UDP).
    Reply {
        /// The server socket the reply leaves from.
        from: Origin,
        /// Where the reply goes.
        to: SocketAddr,
    },
    /// Send nothing.
    Drop(DropReason),
}

/// Why nothing was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Not a STUN message.
    Malformed,
    /// Not a Binding request (responses, indications, other methods).
    NotBindingRequest,
    /// FINGERPRINT present and wrong, RFC 8489 §14.7.
    BadFingerprint,
    /// CHANGE-REQUEST asks for an address this server does not have, RFC 5780 §6.1: answered
    /// with nothing rather than a misleading reply from the wrong socket.
    CannotChange,
}

/// Answer one datagram from `client` that arrived at `server`, appending any reply to `out`.
pub fn respond(
    data: &[u8],
    client: SocketAddr,
    server: &ServerAddrs,
    software: Option<&str>,
    out: &mut Vec<u8>,
) -> Action {
    let Ok(view) = StunView::parse(data) else {
        return Action::Drop(DropReason::Malformed);
    };
    let ty = view.message_type();
    if ty.class != Class::Request || ty.method != Method::BINDING {
        return Action::Drop(DropReason::NotBindingRequest);
    }
    let fingerprint = match view.fingerprint() {
        Fingerprint::Invalid => return Action::Drop(DropReason::BadFingerprint),
        Fingerprint::Valid => true,
        Fingerprint::Absent => false,
    };
    let tid = view.transaction_id();
    let finish = |w: &mut MessageWriter<'_>| {
        if let Some(s) = software {
            w.software(s);
        }
        if fingerprint {
            w.fingerprint();
        }
    };
    let origin_here = Origin {
        alt_ip: false,
        alt_port: false,
    };
    if let Some(unknown) = view.unknown_comprehension_required()
        && unknown != attr::CHANGE_REQUEST
    {
        let mut w = MessageWriter::new(out, MessageType::BINDING_ERROR, &tid);
        w.error_code(420, "Unknown Attribute");
        w.attr(attr::UNKNOWN_ATTRIBUTES, &unknown.to_be_bytes());
        finish(&mut w);
        return Action::Reply {
            from: origin_here,
            to: client,
        };
    }
    let padded = view.attributes().any(|(k, _)| k == attr::PADDING);
    // RFC 5780 §7.5: the port the response goes to, on the request's source IP. A value that
    // is not 4 bytes or names port 0 is refused with 400 (RFC 8489 §6.3.1 calls for 400 on a
    // malformed request), and so is RESPONSE-PORT with PADDING (RFC 5780 §6.1: a padded
    // answer sent elsewhere would be a reflection tool).
    let to = match view.response_port() {
        None => client,
        Some(Some(port)) if port != 0 && !padded => SocketAddr::new(client.ip(), port),
        Some(_) => {
            let mut w = MessageWriter::new(out, MessageType::BINDING_ERROR, &tid);
            w.error_code(400, "Bad Request");
            finish(&mut w);
            return Action::Reply {
                from: origin_here,
                to: client,
            };
        }
    };
    let change = view
        .attributes()
        .find(|(k, _)| *k == attr::CHANGE_REQUEST)
        .and_then(|(_, v)| ChangeRequest::from_value(v))
        .unwrap_or_default();
    let origin = Origin {
        alt_ip: change.change_ip,
        alt_port: change.change_port,
    };
    let Some(from) = server.addr(origin) else {
        return Action::Drop(DropReason::CannotChange);
    };
    let mut w = MessageWriter::new(out, MessageType::BINDING_SUCCESS, &tid);
    w.xor_address(attr::XOR_MAPPED_ADDRESS, &client);
    if server.rfc5780() {
        w.address(attr::MAPPED_ADDRESS, &client);
        w.address(attr::RESPONSE_ORIGIN, &from);
    }
    if let Some(other) = server.other_address() {
        w.address(attr::OTHER_ADDRESS, &other);
    }
    if padded {
        // What follows PADDING: its own header, SOFTWARE and FINGERPRINT (when sent).
        let tail = 4
            + software.map_or(0, |s| 4 + s.len().next_multiple_of(4))
            + if fingerprint { 8 } else { 0 };
        let pad = data.len().saturating_sub(w.len() + tail) & !3;
        w.attr(attr::PADDING, &vec![0u8; pad]);
    }
    finish(&mut w);
    Action::Reply { from: origin, to }
}

/// Which optional parts a success answer carries (what [`respond`] puts in, see the module
/// docs), for [`answer_len`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnswerShape {
    /// An alternate IP or port: MAPPED-ADDRESS and RESPONSE-ORIGIN (RFC 5780 §6).
    pub rfc5780: bool,
    /// Both alternates: OTHER-ADDRESS too (RFC 5780 §7.4).
    pub other_address: bool,
    /// Bytes of SOFTWARE text as encoded (0 for none).
    pub software: usize,
    /// FINGERPRINT, because the request had one.
    pub fingerprint: bool,
}

/// The size in bytes of the Binding success answer of this shape to a client of the family
/// of `ipv6`: the numerator of the reflector's amplification factor (the denominator being
/// the request, at least the 20-byte header).
pub fn answer_len(ipv6: bool, shape: AnswerShape) -> usize {
    // An address attribute: 4-byte TLV header, 4 bytes of family and port, the address.
    let address = 4 + 4 + if ipv6 { 16 } else { 4 };
    let mut n = HEADER_LEN + address;
    if shape.rfc5780 {
        n += 2 * address;
    }
    if shape.other_address {
        n += address;
    }
    if shape.software > 0 {
        n += 4 + shape.software.next_multiple_of(4);
    }
    if shape.fingerprint {
        n += 8;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::TransactionId;
    use crate::stun::encode::BindingRequest;

    fn server(alt: bool) -> ServerAddrs {
        ServerAddrs {
            primary_ip: "198.18.0.10".parse().unwrap(),
            primary_port: 3478,
            alt_ip: alt.then(|| "198.18.0.11".parse().unwrap()),
            alt_port: alt.then_some(3479),
        }
    }

    fn request(change: Option<ChangeRequest>) -> Vec<u8> {
        request_to(change, None)
    }

    fn request_to(change: Option<ChangeRequest>, response_port: Option<u16>) -> Vec<u8> {
        let mut b = Vec::new();
        BindingRequest {
            transaction_id: TransactionId([8; 12]),
            software: None,
            change_request: change,
            response_port,
            fingerprint: true,
        }
        .encode(&mut b);
        b
    }

    #[test]
    fn plain_request_gets_mapped_address_and_origin() {
        let client: SocketAddr = "100.64.0.2:5555".parse().unwrap();
        let mut out = Vec::new();
        let a = respond(&request(None), client, &server(true), Some("srv"), &mut out);
        assert_eq!(
            a,
            Action::Reply {
                from: Origin {
                    alt_ip: false,
                    alt_port: false
                },
                to: client
            }
        );
        let v = StunView::parse(&out).unwrap();
        assert_eq!(v.message_type(), MessageType::BINDING_SUCCESS);
        assert_eq!(v.transaction_id(), TransactionId([8; 12]));
        assert_eq!(v.xor_mapped_address(), Some(Ok(client)));
        assert_eq!(v.mapped_address(), Some(Ok(client)));
        assert_eq!(
            v.response_origin(),
            Some(Ok("198.18.0.10:3478".parse().unwrap()))
        );
        assert_eq!(
            v.other_address(),
            Some(Ok("198.18.0.11:3479".parse().unwrap()))
        );
        assert_eq!(v.fingerprint(), Fingerprint::Valid);
    }

    #[test]
    fn change_request_picks_the_socket_and_origin_says_so() {
        let client: SocketAddr = "100.64.0.2:5555".parse().unwrap();
        for (ip, port, from) in [
            (true, true, "198.18.0.11:3479"),
            (false, true, "198.18.0.10:3479"),
            (true, false, "198.18.0.11:3478"),
        ] {
            let mut out = Vec::new();
            let cr = ChangeRequest {
                change_ip: ip,
                change_port: port,
            };
            let a = respond(&request(Some(cr)), client, &server(true), None, &mut out);
            assert_eq!(
                a,
                Action::Reply {
                    from: Origin {
                        alt_ip: ip,
                        alt_port: port
                    },
                    to: client
                }
            );
            let v = StunView::parse(&out).unwrap();
            assert_eq!(v.response_origin(), Some(Ok(from.parse().unwrap())));
        }
    }

    #[test]
    fn response_port_redirects_the_reply_to_the_clients_ip() {
        // RFC 5780 §4.6: a second socket asks for the answer on the first socket's mapped port;
        // the reply leaves from the socket the request reached (no CHANGE-REQUEST).
        let client: SocketAddr = "100.64.0.2:5555".parse().unwrap();
        let mut out = Vec::new();
        let a = respond(
            &request_to(None, Some(40001)),
            client,
            &server(true),
            None,
            &mut out,
        );
        let here = Origin {
            alt_ip: false,
            alt_port: false,
        };
        assert_eq!(
            a,
            Action::Reply {
                from: here,
                to: "100.64.0.2:40001".parse().unwrap()
            }
        );
        let v = StunView::parse(&out).unwrap();
        assert_eq!(v.message_type(), MessageType::BINDING_SUCCESS);
        // XOR-MAPPED-ADDRESS still names the request's source.
        assert_eq!(v.xor_mapped_address(), Some(Ok(client)));

        // With CHANGE-REQUEST too: the origin follows CHANGE-REQUEST, the port RESPONSE-PORT.
        let cr = ChangeRequest {
            change_ip: false,
            change_port: true,
        };
        let a = respond(
            &request_to(Some(cr), Some(40001)),
            client,
            &server(true),
            None,
            &mut Vec::new(),
        );
        assert_eq!(
            a,
            Action::Reply {
                from: Origin {
                    alt_ip: false,
                    alt_port: true
                },
                to: "100.64.0.2:40001".parse().unwrap()
            }
        );
    }

    #[test]
    fn padding_is_answered_with_a_response_as_long_as_the_request() {
        for (req_len, software) in [(1472usize, None), (1000, Some("stunmap")), (40, None)] {
            let tid = TransactionId([3; 12]);
            let mut req = Vec::new();
            let mut w = MessageWriter::new(&mut req, MessageType::BINDING_REQUEST, &tid);
            w.attr(attr::PADDING, &vec![0; req_len.saturating_sub(32)]);
            w.fingerprint();
            w.finish();
            let mut out = Vec::new();
            let a = respond(
                &req,
                "100.64.0.2:4000".parse().unwrap(),
                &server(true),
                software,
                &mut out,
            );
            assert!(matches!(a, Action::Reply { .. }));
            let v = StunView::parse(&out).unwrap();
            assert!(v.attributes().any(|(k, _)| k == attr::PADDING));
            if req.len() >= 200 {
                assert_eq!(out.len(), req.len(), "software {software:?}");
            }
            assert!(out.len() <= req.len().max(200));
        }
        // PADDING with RESPONSE-PORT: 400, to the client itself.
        let tid = TransactionId([4; 12]);
        let mut req = Vec::new();
        let mut w = MessageWriter::new(&mut req, MessageType::BINDING_REQUEST, &tid);
        w.attr(attr::PADDING, &[0; 1000]);
        w.response_port(9999);
        w.fingerprint();
        w.finish();
        let mut out = Vec::new();
        let client: SocketAddr = "100.64.0.2:4000".parse().unwrap();
        let a = respond(&req, client, &server(true), None, &mut out);
        assert!(matches!(a, Action::Reply { to, .. } if to == client));
        assert_eq!(
            StunView::parse(&out).unwrap().message_type(),
            MessageType::BINDING_ERROR
        );
    }

    #[test]
    fn malformed_response_port_gets_400() {
        let client: SocketAddr = "100.64.0.2:5555".parse().unwrap();
        for value in [&[0u8, 0, 0, 0][..], &[1, 2][..]] {
            let mut b = Vec::new();
            let mut w = MessageWriter::new(
                &mut b,
                MessageType::BINDING_REQUEST,
                &TransactionId([3; 12]),
            );
            w.attr(attr::RESPONSE_PORT, value);
            w.finish();
            let mut out = Vec::new();
            let a = respond(&b, client, &server(true), None, &mut out);
            assert!(matches!(a, Action::Reply { to, .. } if to == client));
            let v = StunView::parse(&out).unwrap();
            assert_eq!(v.error_code().unwrap().unwrap().code, 400);
        }
    }

    #[test]
    fn without_alternate_no_other_address_and_change_is_refused() {
        let client: SocketAddr = "100.64.0.2:5555".parse().unwrap();
        let mut out = Vec::new();
        respond(&request(None), client, &server(false), None, &mut out);
        assert_eq!(StunView::parse(&out).unwrap().other_address(), None);
        let mut out = Vec::new();
        let cr = ChangeRequest {
            change_ip: true,
            change_port: false,
        };
        assert_eq!(
            respond(&request(Some(cr)), client, &server(false), None, &mut out),
            Action::Drop(DropReason::CannotChange)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn non_requests_and_junk_are_dropped() {
        let client: SocketAddr = "100.64.0.2:5555".parse().unwrap();
        let mut out = Vec::new();
        assert_eq!(
            respond(b"hello", client, &server(true), None, &mut out),
            Action::Drop(DropReason::Malformed)
        );
        let mut resp = Vec::new();
        respond(&request(None), client, &server(true), None, &mut resp);
        assert_eq!(
            respond(&resp, client, &server(true), None, &mut out),
            Action::Drop(DropReason::NotBindingRequest)
        );
        let mut bad = request(None);
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert_eq!(
            respond(&bad, client, &server(true), None, &mut out),
            Action::Drop(DropReason::BadFingerprint)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn unknown_required_attribute_gets_420() {
        let mut b = Vec::new();
        let mut w = MessageWriter::new(
            &mut b,
            MessageType::BINDING_REQUEST,
            &TransactionId([1; 12]),
        );
        w.attr(0x7ABC, &[0; 4]);
        w.finish();
        let mut out = Vec::new();
        respond(
            &b,
            "100.64.0.2:1".parse().unwrap(),
            &server(false),
            None,
            &mut out,
        );
        let v = StunView::parse(&out).unwrap();
        assert_eq!(v.error_code().unwrap().unwrap().code, 420);
    }

    fn plain_server() -> ServerAddrs {
        server(false)
    }

    fn header_only(tid: u8) -> Vec<u8> {
        let mut b = Vec::new();
        MessageWriter::new(
            &mut b,
            MessageType::BINDING_REQUEST,
            &TransactionId([tid; 12]),
        );
        b
    }

    #[test]
    fn a_plain_server_answers_with_xor_mapped_address_only() {
        let client: SocketAddr = "100.64.0.2:5555".parse().unwrap();
        let req = header_only(4);
        assert_eq!(req.len(), 20);
        let mut out = Vec::new();
        let a = respond(&req, client, &plain_server(), None, &mut out);
        assert!(matches!(a, Action::Reply { to, .. } if to == client));
        let v = StunView::parse(&out).unwrap();
        assert_eq!(v.xor_mapped_address(), Some(Ok(client)));
        assert_eq!(v.mapped_address(), None);
        assert_eq!(v.response_origin(), None);
        assert_eq!(v.other_address(), None);
        assert_eq!(v.software(), None);
        assert_eq!(v.fingerprint(), Fingerprint::Absent, "the request had none");
        assert_eq!(v.attribute_count(), 1);
        // 32 bytes for 20: the smallest answer there is.
        assert_eq!(out.len(), 32);
        assert_eq!(out.len(), answer_len(false, AnswerShape::default()));
    }

    #[test]
    fn fingerprint_and_software_only_when_asked_for() {
        let client: SocketAddr = "100.64.0.2:5555".parse().unwrap();
        let mut out = Vec::new();
        respond(&request(None), client, &plain_server(), None, &mut out);
        let v = StunView::parse(&out).unwrap();
        assert_eq!(v.fingerprint(), Fingerprint::Valid);
        assert_eq!(v.software(), None);
        let mut out = Vec::new();
        respond(
            &header_only(1),
            client,
            &plain_server(),
            Some("lab"),
            &mut out,
        );
        let v = StunView::parse(&out).unwrap();
        assert_eq!(v.software(), Some(&b"lab"[..]));
        assert_eq!(v.fingerprint(), Fingerprint::Absent);
    }

    #[test]
    fn an_alternate_port_alone_brings_response_origin_but_no_other_address() {
        let client: SocketAddr = "100.64.0.2:5555".parse().unwrap();
        let s = ServerAddrs {
            alt_ip: None,
            ..server(true)
        };
        assert!(s.rfc5780());
        let mut out = Vec::new();
        respond(&request(None), client, &s, None, &mut out);
        let v = StunView::parse(&out).unwrap();
        assert_eq!(
            v.response_origin(),
            Some(Ok("198.18.0.10:3478".parse().unwrap()))
        );
        assert_eq!(v.mapped_address(), Some(Ok(client)));
        assert_eq!(v.other_address(), None);
        // change-port works, change-IP cannot.
        let cr = |ip, port| {
            request(Some(ChangeRequest {
                change_ip: ip,
                change_port: port,
            }))
        };
        assert!(matches!(
            respond(&cr(false, true), client, &s, None, &mut Vec::new()),
            Action::Reply {
                from: Origin {
                    alt_ip: false,
                    alt_port: true
                },
                ..
            }
        ));
        assert_eq!(
            respond(&cr(true, false), client, &s, None, &mut Vec::new()),
            Action::Drop(DropReason::CannotChange)
        );
    }

    #[test]
    fn answer_len_is_the_size_respond_writes() {
        for (client, ipv6) in [
            ("100.64.0.2:5555".parse::<SocketAddr>().unwrap(), false),
            ("[2001:db8::2]:5555".parse().unwrap(), true),
        ] {
            let ip = |v4: &str, v6: &str| -> IpAddr {
                if ipv6 {
                    v6.parse().unwrap()
                } else {
                    v4.parse().unwrap()
                }
            };
            for (alt_ip, alt_port) in [(false, false), (false, true), (true, true)] {
                for software in [None, Some("stunmap 0.1.0")] {
                    for req in [header_only(2), request(None)] {
                        let s = ServerAddrs {
                            primary_ip: ip("198.18.0.10", "2001:db8::10"),
                            primary_port: 3478,
                            alt_ip: alt_ip.then(|| ip("198.18.0.11", "2001:db8::11")),
                            alt_port: alt_port.then_some(3479),
                        };
                        let mut out = Vec::new();
                        respond(&req, client, &s, software, &mut out);
                        let shape = AnswerShape {
                            rfc5780: alt_ip || alt_port,
                            other_address: alt_ip && alt_port,
                            software: software.map_or(0, str::len),
                            fingerprint: req.len() > 20,
                        };
                        assert_eq!(out.len(), answer_len(ipv6, shape), "{shape:?} {client}");
                    }
                }
            }
        }
        // The largest answer to the smallest request: IPv6 with RFC 5780, 116 bytes for 20.
        let full = AnswerShape {
            rfc5780: true,
            other_address: true,
            ..AnswerShape::default()
        };
        assert_eq!(answer_len(true, full), 116);
        assert_eq!(answer_len(false, full), 68);
    }
}
