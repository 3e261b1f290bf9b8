//! The probe-private sockets of a run: bound when a probe is admitted, read by a reader task
//! each and, before timers fire, directly by the loop.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use probes::{LocalSocket, Probe};
use tokio::sync::mpsc;

use super::{Driver, EngineError, Event, RECV_TURNS, Slot, SlotKey};
use crate::udp::{UdpEndpoint, routed_source};

/// Depth of the queue from private-socket readers; datagrams beyond it are dropped (and a
/// flood cannot grow memory).
pub(super) const PRIVATE_QUEUE: usize = 1024;

/// A datagram that arrived on a probe-private socket.
pub(super) struct PrivateDatagram {
    pub(super) key: SlotKey,
    pub(super) socket: LocalSocket,
    pub(super) from: SocketAddr,
    pub(super) data: Vec<u8>,
}

/// The private socket `n` of a probe whose private sockets go `toward` there, as `bound`:
/// the probe is told its address (with the routed `source_ip` where there is one, as a
/// wildcard-bound socket does not know its own).
pub(crate) fn private_socket<P: Probe + ?Sized>(
    probe: &mut P,
    n: u8,
    toward: &SocketAddr,
    source_ip: Option<std::net::IpAddr>,
    bound: io::Result<UdpEndpoint>,
) -> Result<Arc<UdpEndpoint>, EngineError> {
    let ep = bound.map_err(EngineError::bind_on(crate::udp::wildcard_for(toward)))?;
    let mut local = ep.local_addr();
    if let Some(ip) = source_ip {
        local.set_ip(ip);
    }
    probe.handle_local_addr(LocalSocket::Private(n), local);
    Ok(Arc::new(ep))
}

impl<P: Probe, F: FnMut(Event<P::Output>)> Driver<P, F> {
    /// Bind the private sockets `slot`'s probe asks for and start their readers.
    pub(super) fn open_private(
        &mut self,
        key: SlotKey,
        slot: &mut Slot<P>,
    ) -> Result<(), EngineError> {
        let Some(req) = slot.probe.private_sockets() else {
            return Ok(());
        };
        let mut private = Vec::with_capacity(usize::from(req.count));
        let source_ip = routed_source(&req.toward).ok();
        for n in 0..req.count {
            let first = self.take_port(req.toward.is_ipv4());
            let bound = UdpEndpoint::bound_for(&req.toward, first);
            let ep = private_socket(&mut slot.probe, n, &req.toward, source_ip, bound)?;
            let task = spawn_private_reader(ep.clone(), key, n, self.private_tx.clone());
            private.push((ep, task));
        }
        slot.private = private.into_boxed_slice();
        self.with_private.push(key);
        Ok(())
    }

    /// What already waits in the private sockets, read now instead of when their reader
    /// tasks get a turn (see [`crate::udp::read_waiting`]).
    pub(super) fn receive_private(&mut self, now: Instant) {
        if self.with_private.is_empty() {
            return;
        }
        let Some(mut rb) = self.recv_buf.take() else {
            return;
        };
        for key in self.with_private.clone() {
            let Some(slot) = self.slot(key) else {
                continue;
            };
            let sockets: Vec<Arc<UdpEndpoint>> =
                slot.private.iter().map(|(ep, _)| ep.clone()).collect();
            for (n, ep) in (0u8..).zip(&sockets) {
                crate::udp::read_waiting(ep, &mut rb, RECV_TURNS, |from, data| {
                    self.counters.datagrams_received += 1;
                    self.dispatch(now, key, LocalSocket::Private(n), from, data);
                });
            }
        }
        self.recv_buf = Some(rb);
    }

    pub(super) fn deliver_private(&mut self, now: Instant, p: PrivateDatagram) {
        self.counters.datagrams_received += 1;
        self.dispatch(now, p.key, p.socket, p.from, &p.data);
    }
}

fn spawn_private_reader(
    ep: Arc<UdpEndpoint>,
    key: SlotKey,
    n_sock: u8,
    tx: mpsc::Sender<PrivateDatagram>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        crate::udp::read_all(&ep, |from, data| {
            // A full queue drops the datagram: a flood cannot grow memory.
            let _ = tx.try_send(PrivateDatagram {
                key,
                socket: LocalSocket::Private(n_sock),
                from,
                data: data.to_vec(),
            });
            true
        })
        .await;
    })
}
