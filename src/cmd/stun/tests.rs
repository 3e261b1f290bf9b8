use super::*;
use std::sync::{Arc, Mutex};

fn now() -> Instant {
    engine::clock::now()
}

fn targets(n: u16) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from(([192, 0, 2, 1], 3478 + i)))
        .collect()
}

type Done = Vec<(usize, bool)>;

/// Each transaction "takes" a per-target time on the paused clock; what started when, and
/// what ended how (`true`: a result, `false`: dropped in flight).
async fn rounds(
    schedule: TcpSchedule,
    cancel: Cancel,
    took: &'static [u64],
) -> (Vec<(u16, u128)>, Done, u128) {
    let t0 = now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let log = starts.clone();
    let transaction = move |t: SocketAddr| {
        let i = usize::from(t.port() - 3478);
        log.lock()
            .unwrap()
            .push((t.port() - 3478, (now() - t0).as_millis()));
        let d = Duration::from_millis(took[i]);
        async move { tokio::time::sleep(d).await }
    };
    let mut done = Vec::new();
    tcp_rounds(
        &targets(took.len() as u16),
        &schedule,
        &cancel,
        transaction,
        |i, r: Option<()>| done.push((i, r.is_some())),
    )
    .await;
    let starts = starts.lock().unwrap().clone();
    (starts, done, (now() - t0).as_millis())
}

/// Chunks of `concurrency` start when the one before has finished; round two starts
/// `interval` after round one's last answer.
#[tokio::test(start_paused = true)]
async fn tcp_rounds_follow_the_schedule_exactly() {
    let schedule = TcpSchedule {
        count: 2,
        interval: Duration::from_millis(500),
        concurrency: 2,
    };
    let (starts, done, end) = rounds(schedule, Cancel::never(), &[100, 300, 50]).await;
    assert_eq!(
        starts,
        vec![(0, 0), (1, 0), (2, 300), (0, 850), (1, 850), (2, 1150)]
    );
    let ended: Vec<usize> = done.iter().map(|(i, _)| *i).collect();
    assert_eq!(ended, vec![0, 1, 2, 0, 1, 2]);
    assert!(done.iter().all(|(_, r)| *r));
    assert_eq!(end, 1200);
}

/// A cancel ends the run when it comes: in the pause between rounds, or in the middle of
/// a chunk, whose transactions in flight are reported dropped.
#[tokio::test(start_paused = true)]
async fn tcp_rounds_stop_at_once_on_cancel() {
    let schedule = TcpSchedule {
        count: 2,
        interval: Duration::from_millis(500),
        concurrency: 2,
    };
    let (handle, cancel) = Cancel::new();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(360)).await;
        handle.cancel();
    });
    let (starts, done, end) = rounds(schedule, cancel, &[100, 300, 50]).await;
    assert_eq!(starts.len(), 3);
    assert_eq!(end, 360);
    assert_eq!(done, vec![(0, true), (1, true), (2, true)]);

    let (handle, cancel) = Cancel::new();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        handle.cancel();
    });
    let (starts, done, end) = rounds(schedule, cancel, &[100, 300, 50]).await;
    assert_eq!(starts, vec![(0, 0), (1, 0)]);
    assert_eq!(end, 200, "a transaction in flight does not hold the run");
    assert_eq!(done, vec![(0, true), (1, false)]);
}

/// The UDP rounds are held back on the engine's clock: every target's n-th transaction
/// leaves exactly n·interval after the start.
#[tokio::test(start_paused = true)]
async fn udp_rounds_leave_on_the_interval() {
    let silent: Vec<std::net::UdpSocket> = (0..2)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let dests: Vec<SocketAddr> = silent.iter().map(|s| s.local_addr().unwrap()).collect();
    let config = std::sync::Arc::new(BindingConfig {
        retransmit: Retransmit {
            rto: Duration::from_secs(5),
            rc: 1,
            rm: 1,
            deadline: Some(Duration::from_millis(50)),
        },
        ..BindingConfig::default()
    });
    let t0 = now();
    let probes = paced_bindings(&dests, 3, Duration::from_millis(200), t0, config);
    let limits = Limits {
        rate: None,
        ..Limits::default()
    };
    let mut sent = Vec::new();
    engine::run(probes, limits, Cancel::never(), |ev| {
        if let Event::Transmitted { probe, attempt: 0 } = ev {
            sent.push((probe, (now() - t0).as_millis()));
        }
    })
    .await
    .unwrap();
    sent.sort_unstable();
    assert_eq!(
        sent,
        vec![(0, 0), (1, 0), (2, 200), (3, 200), (4, 400), (5, 400)]
    );
}

fn outcome(status: BindingStatus) -> BindingOutcome {
    BindingOutcome {
        transaction_id: probes::stun::TransactionId([1; 12]),
        destination: targets(1)[0],
        source: None,
        status,
        rtt: Some(Duration::from_millis(3)),
        rtt_ambiguous: false,
        transmissions: 1,
    }
}

#[test]
fn a_malformed_answer_is_not_an_answer_and_unsent_is_not_silent() {
    let mut t = TargetReport::new(targets(1)[0], "udp");
    let bad = probes::binding::BindingResponse {
        malformed_address: Some("XOR-MAPPED-ADDRESS: too short".into()),
        ..Default::default()
    };
    assert_eq!(
        t.add(&outcome(BindingStatus::Success(bad))),
        TransactionResult::Malformed
    );
    t.finish(3, Some(StopReason::Deadline));
    assert_eq!(t.state, TargetState::Malformed);
    assert_eq!((t.answered, t.malformed, t.sent, t.not_sent), (0, 1, 1, 2));
    assert!(t.mapped.is_empty() && t.rtt.is_none());
    assert_eq!(t.not_probed_reason, Some(StopReason::Deadline));

    let mut never = TargetReport::new(targets(2)[1], "udp");
    never.finish(3, Some(StopReason::Interrupted));
    assert_eq!(never.state, TargetState::NotProbed);
    let r = StunReport {
        transport: "udp",
        count: 3,
        targets: vec![t, never],
        engine: None,
    };
    assert_eq!(r.outcome(), Outcome::Blocked);
}
