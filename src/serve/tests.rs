use super::*;
use probes::stun::encode::BindingRequest;
use probes::stun::{TransactionId, view::StunView};

fn cfg(alt: bool) -> ServeConfig {
    ServeConfig {
        listen: vec![("198.18.0.10".parse().unwrap(), (3478, 3480))],
        alt_ip: alt.then(|| "198.18.0.11".parse().unwrap()),
        alt_port: alt.then_some(3500),
        tcp: true,
        software: None,
        threads: 2,
        per_source: SourceRate::DEFAULT,
        tcp_limits: TcpLimits::DEFAULT,
    }
}

#[test]
fn sockets_cover_both_ips_and_the_alternate_port() {
    let a = socket_addrs(&cfg(true));
    assert_eq!(a.len(), 2 * 4);
    assert!(a.contains(&"198.18.0.11:3500".parse().unwrap()));
    assert_eq!(socket_addrs(&cfg(false)).len(), 3);
    // 8 addresses × 2 threads + 2 × 3 per thread, 8 listeners + 512 connections, 64.
    assert_eq!(fds_needed(&cfg(true), 8), 16 + 6 + 8 + 512 + 64);
}

#[test]
fn alternate_of_alternate_is_primary() {
    let c = cfg(true);
    let s = server_addrs(&c, "198.18.0.11:3500".parse().unwrap());
    assert_eq!(s.other_address(), Some("198.18.0.10:3478".parse().unwrap()));
    let s = server_addrs(&c, "198.18.0.10:3479".parse().unwrap());
    assert_eq!(s.other_address(), Some("198.18.0.11:3500".parse().unwrap()));
}

#[test]
fn every_origin_maps_to_a_socket_of_the_thread() {
    let c = cfg(true);
    let addrs = socket_addrs(&c);
    for here in &addrs {
        let p = SocketPlan::new(&c, &addrs, *here);
        for (alt_ip, alt_port) in [(false, false), (true, false), (false, true), (true, true)] {
            let origin = Origin { alt_ip, alt_port };
            let i = p.reply_socket(origin).unwrap();
            assert_eq!(Some(addrs[i]), p.server.addr(origin), "{here} {origin:?}");
        }
    }
    let c = cfg(false);
    let addrs = socket_addrs(&c);
    let p = SocketPlan::new(&c, &addrs, addrs[0]);
    assert_eq!(
        p.reply_socket(Origin {
            alt_ip: false,
            alt_port: false
        }),
        Some(0)
    );
    assert_eq!(
        p.reply_socket(Origin {
            alt_ip: true,
            alt_port: false
        }),
        None
    );
}

#[test]
fn backoff_doubles_to_a_second() {
    let mut b = Duration::ZERO;
    let mut seen = Vec::new();
    for _ in 0..10 {
        b = next_backoff(b);
        seen.push(b.as_millis());
    }
    assert_eq!(seen, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
    assert!(out_of_resources(&io::Error::from_raw_os_error(
        libc::EMFILE
    )));
    assert!(!out_of_resources(&io::Error::from_raw_os_error(
        libc::ECONNABORTED
    )));
}

fn shared(limits: TcpLimits) -> TcpShared {
    TcpShared {
        software: None,
        stats: Arc::default(),
        limits,
        sources: Mutex::new(HashMap::new()),
    }
}

fn request(tid: u8) -> Vec<u8> {
    let mut b = Vec::new();
    BindingRequest {
        transaction_id: TransactionId([tid; 12]),
        software: None,
        change_request: None,
        response_port: None,
        fingerprint: true,
    }
    .encode(&mut b);
    b
}

const CLIENT: &str = "100.64.0.2:40000";
const HERE: &str = "198.18.0.10:3478";

/// Run one connection over an in-memory stream on the paused clock; `client` drives the
/// other end. Returns how it ended and when (virtual time from the start).
async fn run<F, Fut>(limits: TcpLimits, buffer: usize, client: F) -> (ConnEnd, Duration)
where
    F: FnOnce(tokio::io::DuplexStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(buffer);
    let peer = tokio::spawn(client(theirs));
    let t0 = tokio::time::Instant::now();
    let s = shared(limits);
    let end = tcp_conn(ours, CLIENT.parse().unwrap(), HERE.parse().unwrap(), &s).await;
    peer.abort();
    (end, t0.elapsed())
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[tokio::test(start_paused = true)]
async fn answers_then_closes_when_idle() {
    let (end, at) = run(TcpLimits::DEFAULT, 4096, |mut s| async move {
        for i in 0..3 {
            s.write_all(&request(i)).await.unwrap();
            let mut b = [0u8; 256];
            let n = s.read(&mut b).await.unwrap();
            let v = StunView::parse(&b[..n]).unwrap();
            assert_eq!(v.transaction_id(), TransactionId([i; 12]));
            assert_eq!(v.xor_mapped_address(), Some(Ok(CLIENT.parse().unwrap())));
            tokio::time::sleep(secs(9)).await;
        }
        std::future::pending::<()>().await;
    })
    .await;
    // Three requests 9 s apart keep it open; 10 s after the last (at 18 s) it is closed.
    assert_eq!(end, ConnEnd::Idle);
    assert_eq!(at, secs(18 + 10));
}

#[tokio::test(start_paused = true)]
async fn trickled_bytes_do_not_extend_a_message() {
    let (end, at) = run(TcpLimits::DEFAULT, 4096, |mut s| async move {
        tokio::time::sleep(secs(3)).await;
        // A byte a second: the header alone would take 20 s.
        for b in request(1) {
            s.write_all(&[b]).await.unwrap();
            tokio::time::sleep(secs(1)).await;
        }
        std::future::pending::<()>().await;
    })
    .await;
    // Cut 5 s after the first byte (at 3 s), not 10 s after the last.
    assert_eq!(end, ConnEnd::MessageDeadline);
    assert_eq!(at, secs(3 + 5));
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_reads_is_cut_at_the_write_deadline() {
    // A tiny pipe: the answers fill it because the client never reads.
    let (end, at) = run(TcpLimits::DEFAULT, 64, |mut s| async move {
        for i in 0..=255u8 {
            s.write_all(&request(i)).await.unwrap();
        }
        std::future::pending::<()>().await;
    })
    .await;
    assert_eq!(end, ConnEnd::WriteDeadline);
    assert_eq!(at, secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_slow_but_whole_message_is_answered_and_junk_closes() {
    let (end, _) = run(TcpLimits::DEFAULT, 4096, |mut s| async move {
        let r = request(2);
        let (a, b) = r.split_at(10);
        s.write_all(a).await.unwrap();
        tokio::time::sleep(secs(4)).await;
        s.write_all(b).await.unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(StunView::parse(&buf[..n]).is_ok());
        s.write_all(&[0xFF; 20]).await.unwrap();
        std::future::pending::<()>().await;
    })
    .await;
    assert_eq!(end, ConnEnd::NotStun);
}

#[test]
fn a_source_gets_its_share_and_no_more() {
    let s = Arc::new(shared(TcpLimits {
        per_source: 2,
        ..TcpLimits::DEFAULT
    }));
    let a: IpAddr = "192.0.2.1".parse().unwrap();
    let b: IpAddr = "2001:db8::1".parse().unwrap();
    let b2: IpAddr = "2001:db8::2".parse().unwrap();
    let s1 = SourceSlot::take(&s, a).unwrap();
    let s2 = SourceSlot::take(&s, a).unwrap();
    assert!(SourceSlot::take(&s, a).is_none());
    let t1 = SourceSlot::take(&s, b).unwrap();
    let _t2 = SourceSlot::take(&s, b2).unwrap();
    assert!(SourceSlot::take(&s, b).is_none(), "one /64, one share");
    drop(s1);
    let _s3 = SourceSlot::take(&s, a).unwrap();
    drop((s2, t1));
    assert_eq!(s.sources.lock().unwrap().len(), 2);
}
