//! DNS over UDP to the configured resolvers: one A and one AAAA query, asked at once, each
//! retransmitted once (to the next nameserver when there is one) at half the timeout.

use std::net::SocketAddr;
use std::time::Duration;

use probes::control::dns::Lookup;
use probes::wire::dns::{Rcode, RecordType, encode_query, parse_response};

/// Nameservers from `/etc/resolv.conf`, port 53.
pub fn system_nameservers() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .map(|t| probes::control::dns::parse_resolv_conf(&t))
        .unwrap_or_default()
        .into_iter()
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Look up A and AAAA for `name`.
pub async fn lookup(name: &str, nameservers: &[SocketAddr], timeout: Duration) -> (Lookup, Lookup) {
    tokio::join!(
        query(name, RecordType::A, nameservers, timeout),
        query(name, RecordType::Aaaa, nameservers, timeout)
    )
}

async fn query(
    name: &str,
    qtype: RecordType,
    nameservers: &[SocketAddr],
    timeout: Duration,
) -> Lookup {
    let err = |message: String| Lookup::Error { message };
    let Some(first) = nameservers.first() else {
        return err("no nameserver configured".to_string());
    };
    let id: u16 = rand::random();
    let mut msg = Vec::with_capacity(64);
    if let Err(e) = encode_query(id, name, qtype, &mut msg) {
        return err(e.to_string());
    }
    // From the source binding in force (--bind/--interface), like every probe socket.
    let socket = match crate::source::tokio_udp_for(first) {
        Ok(s) => s,
        Err(e) => return err(e.to_string()),
    };
    let start = crate::clock::now();
    let deadline = start + timeout;
    let retransmit_at = start + timeout / 2;
    if let Err(e) = socket.send_to(&msg, first).await {
        return err(format!("send to {first}: {e}"));
    }
    let mut retransmitted = false;
    let mut buf = [0u8; 1500];
    loop {
        let wake = if retransmitted {
            deadline
        } else {
            retransmit_at
        };
        match tokio::time::timeout_at(wake.into(), socket.recv_from(&mut buf)).await {
            Err(_) if !retransmitted => {
                retransmitted = true;
                let next = nameservers.get(1).unwrap_or(first);
                let _ = socket.send_to(&msg, next).await;
            }
            Err(_) => return Lookup::Timeout,
            Ok(Err(e)) => return err(e.to_string()),
            Ok(Ok((n, from))) => {
                if !nameservers.contains(&from) {
                    continue;
                }
                let Ok(r) = parse_response(buf.get(..n).unwrap_or(&[])) else {
                    continue;
                };
                if r.id != id {
                    continue;
                }
                let time = crate::clock::now().saturating_duration_since(start);
                let mut r = r;
                r.addresses
                    .retain(|a| a.is_ipv4() == (qtype == RecordType::A));
                return match r.rcode {
                    Rcode::NoError if r.addresses.is_empty() => Lookup::NoRecords { time },
                    Rcode::NoError => Lookup::Resolved {
                        addresses: r.addresses,
                        time,
                    },
                    rcode => Lookup::Failed { rcode, time },
                };
            }
        }
    }
}
