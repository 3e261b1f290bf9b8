//! `stunmap nat` through a lossy router: 10 % of the UDP datagrams the router forwards are
//! dropped at random, in each direction (nft `numgen random mod 100 < 10 drop`), in every mode
//! of the lab. `STUNMAP_LOSS_RUNS` runs per mode (20 unless set, at most 200), five at a time
//! in the same client namespace (each on its own sockets); at least 95 % of them (19 of 20)
//! must reach the classes the mode has without loss (`nat_lab::expected`). docs/nat.md
//! records the counts of a full run.

use std::time::Instant;

use crate::common::bin;
use crate::nat_lab::{concluded, expected, nat_json};
use crate::support::lab::{Lab, LabError, NatMode, report_skip};

const LOSS_PERCENT: u32 = 10;
const AT_ONCE: usize = 5;

fn runs() -> usize {
    std::env::var("STUNMAP_LOSS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .clamp(1, 200)
}

fn lossy(mode: NatMode) {
    let mut lab = match Lab::new(mode) {
        Ok(lab) => lab,
        Err(LabError::Skip(why)) => return report_skip(&format!("nat_loss_lab {mode:?}"), &why),
        Err(e) => panic!("{e}"),
    };
    lab.add_udp_loss(LOSS_PERCENT).expect("loss rule");
    let listen = lab.start_reflector(bin()).expect("reflector");
    let want = expected(mode);
    let total = runs();
    let start = Instant::now();
    let (mut right, mut slowest) = (0usize, 0f64);
    let mut wrong = Vec::new();
    let mut done = 0;
    while done < total {
        let batch = AT_ONCE.min(total - done);
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..batch)
                .map(|_| s.spawn(|| nat_json(&lab, &listen, &["--no-portmap"])))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (v, _) in results {
            slowest = slowest.max(v["timing"]["verdict_seconds"].as_f64().unwrap_or(f64::NAN));
            let got = concluded(&v);
            if got == want {
                right += 1;
            } else {
                wrong.push(format!("{got:?}"));
            }
        }
        done += batch;
    }
    eprintln!(
        "{mode:?} at {LOSS_PERCENT} % UDP loss each way: {right} of {total} right, slowest verdict {slowest:.2} s, {:.1} s for all",
        start.elapsed().as_secs_f64()
    );
    assert!(
        right * 20 >= total * 19,
        "{mode:?}: only {right} of {total} right at {LOSS_PERCENT} % loss; wrong: {wrong:#?}"
    );
}

#[test]
fn masquerade_at_ten_percent_loss() {
    lossy(NatMode::Masquerade);
}

#[test]
fn random_fully_at_ten_percent_loss() {
    lossy(NatMode::MasqueradeRandomFully);
}

#[test]
fn full_cone_at_ten_percent_loss() {
    lossy(NatMode::FullCone);
}

#[test]
fn restricted_cone_at_ten_percent_loss() {
    lossy(NatMode::RestrictedCone);
}

#[test]
fn home_router_at_ten_percent_loss() {
    lossy(NatMode::HomeRouter);
}

#[test]
fn no_nat_at_ten_percent_loss() {
    lossy(NatMode::NoNat);
}

#[test]
fn udp_blocked_at_ten_percent_loss() {
    lossy(NatMode::UdpBlockedTcp443Open);
}

#[test]
fn udp_only_to_3478_at_ten_percent_loss() {
    lossy(NatMode::UdpOnly3478);
}
