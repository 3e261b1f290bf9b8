//! Interop with a real coturn (Debian package) on loopback: our client against coturn as a
//! STUN server, and coturn's own `turnutils_stunclient` against our `serve`.

use std::process::Command;

use crate::common::{coturn, free_port, have, json, serve, stunmap};

#[test]
fn our_client_against_coturn() {
    if !have("turnserver") {
        return;
    }
    let c = coturn(&[]);
    let out = stunmap(&[
        "stun",
        &format!("127.0.0.1:{}", c.port),
        "--count",
        "3",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = &json(&out)["targets"][0];
    assert_eq!(t["answered"], 3);
    assert!(t["software"].as_str().unwrap().starts_with("Coturn"), "{t}");
    assert!(t["mapped"][0].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(t["alg_suspected"], false);
}

#[test]
fn our_client_over_tcp_against_coturn() {
    if !have("turnserver") {
        return;
    }
    let c = coturn(&[]);
    let out = stunmap(&[
        "stun",
        "--tcp",
        &format!("127.0.0.1:{}", c.port),
        "--count",
        "1",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["targets"][0]["answered"], 1);
}

#[test]
fn coturn_client_against_our_serve() {
    if !have("turnutils_stunclient") {
        return;
    }
    let port = free_port("127.0.0.1");
    let _s = serve(&["--listen", &format!("127.0.0.1:{port}")]);
    let out = Command::new("timeout")
        .args([
            "10",
            "turnutils_stunclient",
            "-p",
            &port.to_string(),
            "127.0.0.1",
        ])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("UDP reflexive addr: 127.0.0.1:"), "{text}");
}

/// An independent TURN client (the `turnclient` crate, UDP with long-term credentials) as a
/// cross-check of stunmap's own: allocations through the same coturn, and the relay RTT the two
/// measure on the same path.
mod independent_client {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use futures::{SinkExt as _, StreamExt as _};
    use tokio::net::UdpSocket;
    use turnclient::{ChannelUsage, MessageFromTurnServer, MessageToTurnServer, TurnClient};

    use crate::common::{TurnAuth, coturn_lab, have, json, stunmap_env};

    /// What turnclient saw of its allocation.
    struct Allocation {
        client: TurnClient,
        relayed: SocketAddr,
        mapped: SocketAddr,
        software: Option<String>,
    }

    /// The next event that is not housekeeping, within `wait`.
    async fn next_event(c: &mut TurnClient, wait: Duration) -> MessageFromTurnServer {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let ev = tokio::time::timeout_at(deadline, c.next())
                .await
                .expect("turnclient: no event in time")
                .expect("turnclient: stream ended")
                .expect("turnclient: error");
            if !matches!(
                ev,
                MessageFromTurnServer::APacketIsReceivedAndAutomaticallyHandled
            ) {
                return ev;
            }
        }
    }

    async fn allocate(server: SocketAddr) -> Allocation {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut client = turnclient::TurnClientBuilder::new(server, "test".into(), "secret".into())
            .build_and_send_request(udp);
        match next_event(&mut client, Duration::from_secs(10)).await {
            MessageFromTurnServer::AllocationGranted {
                relay_address,
                mapped_address,
                server_software,
                ..
            } => Allocation {
                client,
                relayed: relay_address,
                mapped: mapped_address,
                software: server_software,
            },
            other => panic!("turnclient: not allocated: {other:?}"),
        }
    }

    /// Release the allocation (Refresh with LIFETIME 0) and wait for the server's answer.
    async fn release(mut c: TurnClient) {
        c.send(MessageToTurnServer::Disconnect).await.unwrap();
        loop {
            match next_event(&mut c, Duration::from_secs(10)).await {
                MessageFromTurnServer::Disconnected => return,
                MessageFromTurnServer::RecvFrom(..) => continue,
                other => panic!("turnclient: while releasing: {other:?}"),
            }
        }
    }

    /// Loop `count` payloads of `size` bytes, one every `interval`, through a channel to a peer
    /// on loopback that echoes each back through the relay; the round-trip times, in order.
    async fn relay_rtts(
        a: &mut Allocation,
        count: usize,
        size: usize,
        interval: Duration,
    ) -> Vec<Duration> {
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let peer_addr = peer.local_addr().unwrap();
        let echo = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            loop {
                let Ok((n, from)) = peer.recv_from(&mut buf).await else {
                    return;
                };
                let _ = peer.send_to(&buf[..n], from).await;
            }
        });
        a.client
            .send(MessageToTurnServer::AddPermission(
                peer_addr,
                ChannelUsage::WithChannel,
            ))
            .await
            .unwrap();
        match next_event(&mut a.client, Duration::from_secs(10)).await {
            MessageFromTurnServer::PermissionCreated(p) => assert_eq!(p, peer_addr),
            other => panic!("turnclient: no permission: {other:?}"),
        }
        let mut rtts = Vec::with_capacity(count);
        let mut tick = tokio::time::interval(interval);
        for i in 0..count {
            tick.tick().await;
            let mut payload = vec![0u8; size];
            payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let sent = Instant::now();
            a.client
                .send(MessageToTurnServer::SendTo(peer_addr, payload.clone()))
                .await
                .unwrap();
            loop {
                match next_event(&mut a.client, Duration::from_secs(2)).await {
                    MessageFromTurnServer::RecvFrom(from, data) if data == payload => {
                        assert_eq!(from, peer_addr);
                        rtts.push(sent.elapsed());
                        break;
                    }
                    // A late echo of an earlier payload, or a permission refresh.
                    MessageFromTurnServer::RecvFrom(..)
                    | MessageFromTurnServer::PermissionCreated(_) => continue,
                    other => panic!("turnclient: while relaying: {other:?}"),
                }
            }
        }
        echo.abort();
        rtts
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn ms(d: f64) -> String {
        format!("{:.3}", d * 1e3)
    }

    /// min, median, p90, p99, max in seconds.
    fn summary(rtts: &[Duration]) -> [f64; 5] {
        let mut s: Vec<f64> = rtts.iter().map(Duration::as_secs_f64).collect();
        s.sort_by(f64::total_cmp);
        let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
        [s[0], q(0.5), q(0.9), q(0.99), s[s.len() - 1]]
    }

    #[test]
    fn turnclient_and_stunmap_allocate_through_the_same_coturn() {
        if !have("turnserver") {
            return;
        }
        let lab = coturn_lab(TurnAuth::Static, false);
        let server: SocketAddr = format!("127.0.0.1:{}", lab.port).parse().unwrap();
        let rt = runtime();
        // turnclient's allocation stays while stunmap makes its own beside it.
        let theirs = rt.block_on(allocate(server));
        let out = stunmap_env(
            &[
                "turn",
                &format!("turn:{server}"),
                "--user",
                "test",
                "--json",
            ],
            &[("STUNMAP_TURN_PASSWORD", "secret")],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let j = json(&out);
        let ours = &j["result"];
        assert_eq!(ours["status"]["kind"], "allocated", "{j}");
        let our_relayed: SocketAddr = ours["relayed"].as_str().unwrap().parse().unwrap();
        let our_mapped: SocketAddr = ours["mapped"].as_str().unwrap().parse().unwrap();
        // Both relayed addresses are the server's, on different ports of its relay range.
        assert_eq!(theirs.relayed.ip(), our_relayed.ip());
        assert_ne!(theirs.relayed.port(), our_relayed.port());
        for p in [theirs.relayed.port(), our_relayed.port()] {
            assert!((49152..=65000).contains(&p), "relay port {p}");
        }
        // The same server seen the same way: the mapped address's IP and the SOFTWARE text.
        assert_eq!(theirs.mapped.ip(), our_mapped.ip());
        assert_eq!(theirs.software.as_deref(), ours["software"].as_str(), "{j}");
        assert!(theirs.software.as_deref().unwrap().starts_with("Coturn"));
        rt.block_on(release(theirs.client));
        // Two allocations, both released with LIFETIME 0 and deleted by the server.
        assert_eq!(lab.allocations_made(), 2, "{}", lab.log());
        lab.assert_no_allocations_left();
    }

    /// Relay RTT through the same coturn, measured by turnclient and by `stunmap relay`, same
    /// payload size and pace. `STUNMAP_CROSSCHECK_COUNT` sets the packets per tool (default
    /// 100); the two summaries are printed (BENCHMARKS.md quotes a run with 1000).
    #[test]
    fn relay_rtt_beside_turnclient() {
        if !have("turnserver") {
            return;
        }
        let count: usize = std::env::var("STUNMAP_CROSSCHECK_COUNT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100)
            .clamp(10, 10_000);
        let (size, rate) = (100, 100);
        let lab = coturn_lab(TurnAuth::Static, false);
        let server: SocketAddr = format!("127.0.0.1:{}", lab.port).parse().unwrap();
        let rt = runtime();
        let theirs = rt.block_on(async {
            let mut a = allocate(server).await;
            let rtts = relay_rtts(&mut a, count, size, Duration::from_secs(1) / rate).await;
            release(a.client).await;
            rtts
        });
        assert_eq!(theirs.len(), count);
        let out = stunmap_env(
            &[
                "relay",
                &format!("turn:{server}"),
                "--user",
                "test",
                "--transports",
                "udp",
                "--count",
                &count.to_string(),
                "--rate",
                &rate.to_string(),
                "--size",
                &size.to_string(),
                "--json",
            ],
            &[("STUNMAP_TURN_PASSWORD", "secret")],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let j = json(&out);
        let run = &j["runs"][0];
        assert_eq!(run["result"]["received"], count, "{run}");
        let r = &run["relay_rtt"];
        let ours = ["min", "median", "p90", "p99", "max"].map(|k| r[k].as_f64().unwrap());
        let t = summary(&theirs);
        eprintln!("relay RTT over UDP, {count} x {size} B at {rate}/s, ms: min median p90 p99 max");
        eprintln!("  turnclient:    {}", t.map(ms).join(" "));
        eprintln!("  stunmap relay: {}", ours.map(ms).join(" "));
        // Both measured a real round trip through the relay: positive, ordered, and on
        // loopback well under a second.
        for s in [t, ours] {
            assert!(s[0] > 0.0 && s.windows(2).all(|w| w[0] <= w[1]), "{s:?}");
            assert!(s[1] < 1.0, "{s:?}");
        }
        assert_eq!(lab.allocations_made(), 2);
        lab.assert_no_allocations_left();
    }
}
