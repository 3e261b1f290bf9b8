//! `stunmap pair` between two real sites of the namespace lab (tests/support/lab2.rs): every
//! pair of router modes, each run on both sides at once against coturn (STUN with RFC 5780,
//! TURN: over UDP, over TCP from a site whose UDP is blocked) and `stunmap serve --rendezvous`. The measured outcomes are the table in docs/nat.md
//! ("The peer-pair matrix, measured"); the model must agree with every one of them.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::bin;
use crate::support::lab::{LabError, report_skip};
use crate::support::lab2::{Lab2, PUBLIC_1, RENDEZVOUS_PORT, Site, SiteMode, TURN_PORT};

const SECRET: &str = "lab-pair-secret-0123456789";

/// One live run on both sides: (A's JSON, B's JSON).
fn run_pair(a: Site, b: Site, extra: &[&str]) -> Result<(Value, Value), LabError> {
    let mut lab = Lab2::new(a, b)?;
    lab.start_coturn().map_err(LabError::Setup)?;
    lab.start_rendezvous(bin(), SECRET)
        .map_err(LabError::Setup)?;
    let rv = format!("{PUBLIC_1}:{RENDEZVOUS_PORT}");
    let stun = format!("{PUBLIC_1}:{TURN_PORT}");
    // TURN over UDP, or over TCP from a site whose UDP is blocked (as a client falls back).
    let turn = |site: Site| match site.mode {
        SiteMode::UdpBlocked => format!("turn:{PUBLIC_1}:{TURN_PORT}?transport=tcp"),
        _ => format!("turn:{PUBLIC_1}:{TURN_PORT}"),
    };
    let args_for = |site: Site| -> Vec<String> {
        let mut args: Vec<String> = [
            "timeout",
            "90",
            bin(),
            "pair",
            &rv,
            "--room",
            "matrix",
            "--stun",
            &stun,
            "--turn",
            &turn(site),
            "--user",
            "test",
            "--duration",
            "1",
            "--timeout",
            "8",
            "--rto",
            "150",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let sites = [a, b];
    let side = |i: usize, delay: Duration| {
        let args = args_for(sites[i]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = lab.command(&lab.client(i), &argv);
        cmd.env("STUNMAP_PAIR_SECRET", SECRET)
            .env("STUNMAP_TURN_PASSWORD", "secret");
        move || {
            thread::sleep(delay);
            cmd.output().expect("run stunmap pair")
        }
    };
    let ta = thread::spawn(side(0, Duration::ZERO));
    // B joins second, so A controls.
    let tb = thread::spawn(side(1, Duration::from_millis(300)));
    let (oa, ob) = (ta.join().unwrap(), tb.join().unwrap());
    let parse = |o: &std::process::Output, who: &str| -> Value {
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "{a:?} × {b:?}, side {who}: not JSON ({e}), status {:?}\nstdout: {}\nstderr: {}",
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
    };
    let (va, vb) = (parse(&oa, "A"), parse(&ob, "B"));
    // Exit status follows the outcome on both sides.
    for (o, v) in [(&oa, &va), (&ob, &vb)] {
        let want = match v["outcome"].as_str() {
            Some("direct") => 0,
            Some("relayed") => 1,
            _ => 2,
        };
        assert_eq!(o.status.code(), Some(want), "{v:#}");
    }
    Ok((va, vb))
}

/// Skip visibly (or fail under STUNMAP_LAB_REQUIRED) when the lab cannot run.
fn or_skip<T>(r: Result<T, LabError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(LabError::Skip(why)) => {
            report_skip(module_path!(), &why);
            None
        }
        Err(e) => panic!("{e}"),
    }
}

fn coturn_missing() -> bool {
    std::process::Command::new("turnserver")
        .arg("--version")
        .output()
        .is_err()
}

/// What the lab measured (docs/nat.md, "The peer-pair matrix, measured"); unordered pairs.
fn measured(a: SiteMode, b: SiteMode) -> &'static str {
    use SiteMode::*;
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    match (x, y) {
        (UdpBlocked, _) | (_, UdpBlocked) => "relayed",
        (Masquerade, RandomFully) | (RandomFully, RandomFully) => "relayed",
        _ => "direct",
    }
}

#[test]
fn every_pair_of_router_modes_matches_the_model() {
    if coturn_missing() {
        report_skip(module_path!(), "coturn (turnserver) not installed");
        return;
    }
    let start = Instant::now();
    let mut pairs = Vec::new();
    for (i, a) in SiteMode::ALL.iter().enumerate() {
        for b in SiteMode::ALL.iter().skip(i) {
            pairs.push((*a, *b));
        }
    }
    let handles: Vec<_> = pairs
        .iter()
        .map(|&(a, b)| thread::spawn(move || (a, b, run_pair(a.into(), b.into(), &[]))))
        .collect();
    let mut rows = Vec::new();
    for h in handles {
        let (a, b, r) = h.join().unwrap();
        let Some((va, vb)) = or_skip(r) else { return };
        rows.push((a, b, va, vb));
    }
    let mut table = String::from(
        "| site A × site B | outcome (measured) | selected pair (A ↔ B) | model | agrees |\n|---|---|---|---|---|\n",
    );
    let mut wrong = Vec::new();
    for (a, b, va, vb) in &rows {
        // Both sides print the same result.
        for k in ["outcome", "selected", "prediction", "failed_checks"] {
            assert_eq!(
                va[k], vb[k],
                "{a:?} × {b:?}: {k} differs\nA: {va:#}\nB: {vb:#}"
            );
        }
        // Each side gave its allocation back (over UDP, or over TCP where UDP is blocked).
        for v in [va, vb] {
            let me = v["this_side"].as_str().unwrap();
            let t = &v[me]["turn"];
            assert!(t["relayed"].is_string(), "{a:?} × {b:?}: no relay\n{v:#}");
            assert_eq!(t["released"], true, "{a:?} × {b:?}\n{v:#}");
        }
        let outcome = va["outcome"].as_str().unwrap_or("?");
        // In mode order: site A's end first, whichever side of the result it was.
        let (mine, theirs) = match va["this_side"].as_str() {
            Some("a") => ("a", "b"),
            _ => ("b", "a"),
        };
        let pair = match va["selected"].as_object() {
            Some(s) => format!(
                "{} ↔ {}",
                s[mine]["kind"].as_str().unwrap_or("?"),
                s[theirs]["kind"].as_str().unwrap_or("?")
            ),
            None => "-".into(),
        };
        let model = va["prediction"]["model"].as_str().unwrap_or("-");
        let agrees = &va["prediction"]["agrees"];
        table.push_str(&format!(
            "| {} × {} | {outcome} | {pair} | {model} | {agrees} |\n",
            a.name(),
            b.name()
        ));
        if outcome != measured(*a, *b) || agrees != &Value::Bool(true) {
            wrong.push(format!(
                "{a:?} × {b:?}: {outcome}, model {model}, agrees {agrees}\n{va:#}"
            ));
        }
    }
    eprintln!("{table}");
    eprintln!("matrix: {} pairs in {:?}", rows.len(), start.elapsed());
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn direct_is_still_found_through_a_lossy_router() {
    if coturn_missing() {
        report_skip(module_path!(), "coturn (turnserver) not installed");
        return;
    }
    let lossy = Site {
        mode: SiteMode::Masquerade,
        loss: 20,
    };
    let Some((va, vb)) = or_skip(run_pair(lossy, SiteMode::Masquerade.into(), &[])) else {
        return;
    };
    assert_eq!(va["outcome"], "direct", "{va:#}");
    assert_eq!(vb["outcome"], "direct", "{vb:#}");
    let loss = va["a"]["rtt"]["loss"].as_f64().unwrap();
    assert!(
        loss > 0.05 && loss < 0.6,
        "20 % each way through one router: {va:#}"
    );
}
