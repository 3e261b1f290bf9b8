//! `stunmap pair`: run a real ICE (RFC 8445) connection attempt between this host and a peer
//! that runs the same command, meeting through `stunmap serve --rendezvous`, and hold the NAT
//! peer-pair model to the result. `--explain` gives the model's prediction offline from two
//! `stunmap nat --json` reports.
//!
//! The room secret never comes from a flag value: `$STUNMAP_PAIR_SECRET` or
//! `--pair-secret-file`. It never appears in output.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use engine::Cancel;
use engine::rendezvous::{Client, ClientError, ClientTimeouts};
use engine::stream::Security;
use probes::Transport;
use probes::nat::{NatType, classify};
use probes::pair::explain::{Explanation, explain, read_report};
use probes::pair::model::{
    CandidateKind, Outcome as PairOutcomeLive, PairResult, Role, Side, SideReport, SideView,
};
use probes::pair::rendezvous::{ClientEvent, PeerMsg, RendezvousError, RoomSecret, valid_room};
use probes::pair::session::{Abort, Inbound, PairConfig, PairSession, SessionOutput, TurnConfig};
use rand::{Rng, RngCore};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::exit::{Outcome, usage};
use crate::target::{FamilyChoice, TargetSpec, resolve};

/// Environment variable holding the room secret.
pub(crate) const SECRET_ENV: &str = "STUNMAP_PAIR_SECRET";

/// Flags of `stunmap pair`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Run the same command on both hosts (either order; the second must start within --wait of \
the first). Both print the same result; exit 0 direct, 1 relayed only, 2 no path, \
64 bad usage, 70 rendezvous or environment error, 130 interrupted.

  export STUNMAP_PAIR_SECRET=$(cat /etc/stunmap/pair.secret)
  stunmap pair 203.0.113.5:7000 --room office-home --stun 203.0.113.5:3478

Offline, from two `stunmap nat --json` reports:

  stunmap pair --explain office.json home.json")]
pub(crate) struct Args {
    /// The rendezvous, HOST:PORT (`stunmap serve --rendezvous`).
    #[arg(value_name = "RENDEZVOUS", required_unless_present = "explain")]
    rendezvous: Option<String>,
    /// Room name, the same on both peers (1-64 letters, digits, '-', '_', '.').
    #[arg(long, required_unless_present = "explain")]
    room: Option<String>,
    /// STUN server, HOST[:PORT] (default port 3478; repeatable): NAT discovery (the first
    /// should support RFC 5780, like `stunmap serve --alt-address` or coturn with two IPs)
    /// and server-reflexive candidates.
    #[arg(long = "stun", value_name = "HOST[:PORT]")]
    stun: Vec<String>,
    /// TURN server for a relay candidate: turn:HOST[:PORT] (UDP) or
    /// turn:HOST[:PORT]?transport=tcp (TCP to the server, UDP from the relay); with --user.
    #[arg(long, value_name = "URI")]
    turn: Option<String>,
    /// File whose first line is the room secret (default: $STUNMAP_PAIR_SECRET).
    #[arg(long, value_name = "FILE")]
    pair_secret_file: Option<PathBuf>,
    /// Talk to the rendezvous over TLS (its certificate checked against the webpki roots and
    /// --ca-file).
    #[arg(long)]
    tls: bool,
    /// The name the rendezvous's certificate must carry (default: its host).
    #[arg(long, value_name = "NAME", requires = "tls")]
    tls_name: Option<String>,
    /// RTT/loss measurement over the selected pair, seconds (1-60).
    #[arg(long, default_value_t = 3, value_name = "SECS")]
    duration: u64,
    /// How long to wait for the other peer to join the room, seconds (1-600).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    wait: u64,
    /// How long the connectivity checks may take before the pair counts as failed, seconds
    /// (2-60).
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    timeout: u64,
    /// Initial retransmission timeout of the NAT discovery and gathering, milliseconds
    /// (10-5000).
    #[arg(long, default_value_t = 250, value_name = "MS")]
    rto: u64,
    /// Offline: the model's prediction from two `stunmap nat --json` reports.
    #[arg(long, num_args = 2, value_names = ["A.json", "B.json"])]
    explain: Option<Vec<PathBuf>>,
    /// Machine-readable output (schema `stunmap.pair/1`, docs/schema/pair-v1.json).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    auth: super::turn::AuthArgs,
}

/// The `pair` report.
#[derive(Debug, Serialize)]
struct Report {
    schema: &'static str,
    mode: &'static str,
    room: String,
    this_side: Side,
    interrupted: bool,
    elapsed_seconds: f64,
    /// Why the run stopped early.
    abort: Option<Abort>,
    #[serde(flatten)]
    result: PairResult,
}

#[derive(Debug, Serialize)]
struct ExplainReport {
    schema: &'static str,
    mode: &'static str,
    #[serde(flatten)]
    explanation: Explanation,
}

/// The NAT summary a side reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NatSummary {
    nat: Option<NatType>,
    public_address: Option<SocketAddr>,
}

struct Plan {
    rendezvous: SocketAddr,
    security: Security,
    room: String,
    secret: RoomSecret,
    stun: Vec<SocketAddr>,
    turn: Option<TurnConfig>,
    duration: Duration,
    wait: Duration,
    timeout: Duration,
    rto: Duration,
}

fn in_range(name: &str, v: u64, lo: u64, hi: u64, unit: &str) -> Result<()> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(usage(format!("--{name} must be {lo} to {hi} {unit}")))
    }
}

fn load_secret(file: Option<&PathBuf>) -> Result<RoomSecret> {
    let text = match file {
        Some(f) => {
            let t = std::fs::read_to_string(f).map_err(|e| {
                usage(format!(
                    "cannot read the pair secret file {}: {e}",
                    f.display()
                ))
            })?;
            t.lines().next().unwrap_or("").to_string()
        }
        None => std::env::var(SECRET_ENV).map_err(|_| {
            usage(format!(
                "no room secret: set {SECRET_ENV} or give --pair-secret-file"
            ))
        })?,
    };
    RoomSecret::new(text.into_bytes()).map_err(|e| usage(e.to_string()))
}

pub(crate) fn run(args: Args) -> Result<Outcome> {
    if let Some(files) = &args.explain {
        return run_explain(files, args.json);
    }
    in_range("duration", args.duration, 1, 60, "seconds")?;
    in_range("wait", args.wait, 1, 600, "seconds")?;
    in_range("timeout", args.timeout, 2, 60, "seconds")?;
    in_range("rto", args.rto, 10, 5000, "ms")?;
    let room = args.room.clone().unwrap_or_default();
    if !valid_room(&room) {
        return Err(usage(RendezvousError::BadRoomName.to_string()));
    }
    let rv = TargetSpec::parse(args.rendezvous.as_deref().unwrap_or(""), 0)?;
    if rv.ports.0 == 0 || rv.ports.0 != rv.ports.1 {
        return Err(usage("the rendezvous needs one port: HOST:PORT"));
    }
    let stun_specs: Vec<TargetSpec> = args
        .stun
        .iter()
        .map(|s| TargetSpec::parse(s, 3478))
        .collect::<Result<_>>()?;
    if stun_specs.iter().any(|s| s.ports.0 != s.ports.1) {
        return Err(usage("--stun takes single ports, not ranges"));
    }
    let turn_uri = args
        .turn
        .as_deref()
        .map(super::turn::parse_uri)
        .transpose()?;
    if turn_uri
        .as_ref()
        .is_some_and(|u| u.transport == Transport::Tls)
    {
        return Err(usage(
            "--turn: turns: (TLS) is not supported here; use turn:HOST[:PORT] or turn:HOST[:PORT]?transport=tcp",
        ));
    }
    let credentials = args.auth.credentials()?;
    if turn_uri.is_some() && credentials.is_none() {
        return Err(usage(
            "--turn needs --user and a password (STUNMAP_TURN_PASSWORD or --password-file)",
        ));
    }
    let secret = load_secret(args.pair_secret_file.as_ref())?;
    let security = if args.tls {
        let name = args.tls_name.clone().unwrap_or_else(|| rv.host.clone());
        Security::tls(&name, args.auth.ca_file.as_deref()).map_err(|e| usage(e.to_string()))?
    } else {
        Security::Plain
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let rv_ip = resolve(&rv.host, FamilyChoice::Any)
            .await?
            .first()
            .copied()
            .context("the rendezvous host has no address")?;
        let mut stun = Vec::new();
        for s in &stun_specs {
            for ip in resolve(&s.host, FamilyChoice::Any).await? {
                stun.push(SocketAddr::new(ip, s.ports.0));
            }
        }
        let turn = match (&turn_uri, credentials) {
            (Some(u), Some(c)) => Some(TurnConfig {
                server: super::turn::server_addr(u).await?,
                transport: u.transport,
                credentials: c,
            }),
            _ => None,
        };
        let plan = Plan {
            rendezvous: SocketAddr::new(rv_ip, rv.ports.0),
            security,
            room,
            secret,
            stun,
            turn,
            duration: Duration::from_secs(args.duration),
            wait: Duration::from_secs(args.wait),
            timeout: Duration::from_secs(args.timeout),
            rto: Duration::from_millis(args.rto),
        };
        live(plan, args.json).await
    })
}

fn run_explain(files: &[PathBuf], json: bool) -> Result<Outcome> {
    let read = |p: &PathBuf| -> Result<_> {
        let meta =
            std::fs::metadata(p).map_err(|e| usage(format!("cannot read {}: {e}", p.display())))?;
        if meta.len() > probes::pair::explain::MAX_REPORT as u64 {
            return Err(usage(format!(
                "{}: larger than a nat report can be",
                p.display()
            )));
        }
        let bytes =
            std::fs::read(p).map_err(|e| usage(format!("cannot read {}: {e}", p.display())))?;
        read_report(&bytes).map_err(|e| usage(format!("{}: {e}", p.display())))
    };
    let (Some(a), Some(b)) = (files.first(), files.get(1)) else {
        return Err(usage("--explain takes two files"));
    };
    let e = explain(read(a)?, read(b)?);
    let model = e.prediction.model;
    if json {
        let r = ExplainReport {
            schema: "stunmap.pair/1",
            mode: "explain",
            explanation: e,
        };
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "Prediction: {}",
            match model {
                Some(probes::nat::PairOutcome::Direct) => "direct",
                Some(probes::nat::PairOutcome::Relayed) => "relayed",
                _ => "uncertain",
            }
        );
        println!("  A  {}", e.a.nat);
        println!("  B  {}", e.b.nat);
        println!();
        println!("Why:");
        for r in &e.prediction.reasons {
            println!("  - {r}");
        }
    }
    Ok(match model {
        Some(probes::nat::PairOutcome::Direct) => Outcome::Ok,
        _ => Outcome::Degraded,
    })
}

/// NAT discovery toward `servers` (the `nat` probe without hairpinning), reduced to what a
/// side reports.
async fn discover(servers: Vec<SocketAddr>, rto: Duration, cancel: Cancel) -> NatSummary {
    let empty = NatSummary {
        nat: None,
        public_address: None,
    };
    if servers.is_empty() {
        return empty;
    }
    let v4 = servers.first().is_some_and(SocketAddr::is_ipv4);
    let timing = probes::nat::Timing::with_initial_rto(rto);
    let Ok((m, _)) = crate::exec::nat::measure(&servers, timing, false, cancel).await else {
        return empty;
    };
    let c = classify(&m);
    let fam = if v4 { c.ipv4 } else { c.ipv6 };
    match fam {
        Some(r) => NatSummary {
            nat: Some(r.nat_type),
            public_address: r.public_address,
        },
        None => empty,
    }
}

fn random_ice_chars(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| {
            let i = rng.random_range(0..ALPHABET.len());
            char::from(ALPHABET.get(i).copied().unwrap_or(b'A'))
        })
        .collect()
}

fn client_error(e: ClientError) -> anyhow::Error {
    anyhow!("{e}")
}

enum Bridge {
    Event(Result<ClientEvent, ClientError>),
    Out(Option<PeerMsg>),
}

async fn live(plan: Plan, json: bool) -> Result<Outcome> {
    let started = Instant::now();
    let (handle, mut cancel) = Cancel::new();
    engine::driver::cancel_on_signals(handle);
    let (nat_tx, nat_rx) = watch::channel::<Option<NatSummary>>(None);
    let nat = {
        let (servers, rto, cancel) = (plan.stun.clone(), plan.rto, cancel.clone());
        async move {
            let s = discover(servers, rto, cancel).await;
            let _ = nat_tx.send(Some(s));
            // The result is read through the channel; this branch never ends the select.
            std::future::pending::<Report>().await
        }
    };
    let main = run_pair(&plan, nat_rx, &mut cancel, started);
    let report = tokio::select! {
        r = main => r?,
        r = nat => r,
    };
    let interrupted = report.interrupted;
    let outcome = report.result.outcome;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report);
    }
    Ok(if interrupted {
        Outcome::Interrupted
    } else {
        match outcome {
            PairOutcomeLive::Direct => Outcome::Ok,
            PairOutcomeLive::Relayed => Outcome::Degraded,
            PairOutcomeLive::Failed => Outcome::Blocked,
        }
    })
}

fn empty_report(role: Role) -> SideReport {
    SideReport {
        role,
        nat: None,
        public_address: None,
        candidates: Vec::new(),
        nominated: None,
        connect_ms: None,
        checks: Vec::new(),
        rtt: None,
        turn: None,
        interrupted: false,
    }
}

async fn wait_nat(
    rx: &mut watch::Receiver<Option<NatSummary>>,
    cancel: &Cancel,
) -> Option<NatSummary> {
    if cancel.is_cancelled() {
        return *rx.borrow();
    }
    let done = tokio::time::timeout(Duration::from_secs(15), rx.wait_for(Option::is_some))
        .await
        .map(|r| r.map(|v| *v));
    match done {
        Ok(Ok(v)) => v,
        _ => *rx.borrow(),
    }
}

fn fill_nat(r: &mut SideReport, nat: Option<NatSummary>) {
    if let Some(n) = nat {
        r.nat = n.nat;
        r.public_address = n.public_address;
    }
}

fn interrupted_report(
    plan: &Plan,
    role: Role,
    started: Instant,
    nat: Option<NatSummary>,
) -> Report {
    let mut local = empty_report(role);
    local.interrupted = true;
    fill_nat(&mut local, nat);
    Report {
        schema: "stunmap.pair/1",
        mode: "live",
        room: plan.room.clone(),
        this_side: Side::of(role),
        interrupted: true,
        elapsed_seconds: started.elapsed().as_secs_f64(),
        abort: Some(Abort::Interrupted),
        result: PairResult::merge(&local, None, &[]),
    }
}

async fn run_pair(
    plan: &Plan,
    mut nat_rx: watch::Receiver<Option<NatSummary>>,
    cancel: &mut Cancel,
    started: Instant,
) -> Result<Report> {
    let joined = tokio::select! {
        r = Client::join(plan.rendezvous, &plan.security, &plan.secret, &plan.room, ClientTimeouts::default()) => Some(r),
        _ = cancelled(cancel) => None,
    };
    let Some(joined) = joined else {
        let nat = *nat_rx.borrow();
        return Ok(interrupted_report(plan, Role::Controlling, started, nat));
    };
    let (mut client, first) = joined.map_err(client_error)?;
    let role = if first {
        Role::Controlling
    } else {
        Role::Controlled
    };
    // Wait for the other peer.
    let waited = tokio::select! {
        r = tokio::time::timeout(plan.wait, async {
            loop {
                match client.recv().await {
                    Ok(ClientEvent::PeerJoined) => return Ok(()),
                    Ok(_) => continue,
                    Err(e) => return Err(e),
                }
            }
        }) => Some(r),
        _ = cancelled(cancel) => None,
    };
    match waited {
        None => {
            let nat = *nat_rx.borrow();
            client.bye().await;
            return Ok(interrupted_report(plan, role, started, nat));
        }
        Some(Err(_)) => {
            client.bye().await;
            return Err(anyhow!(
                "the peer did not join room {} within {} s",
                plan.room,
                plan.wait.as_secs()
            ));
        }
        Some(Ok(Err(e))) => return Err(client_error(e)),
        Some(Ok(Ok(()))) => {}
    }

    let route_toward = plan
        .stun
        .first()
        .copied()
        .or(plan.turn.as_ref().map(|t| t.server))
        .unwrap_or(plan.rendezvous);
    let mut cfg = PairConfig::new(role, route_toward);
    cfg.stun = plan.stun.clone();
    cfg.turn = plan.turn.clone();
    cfg.ufrag = random_ice_chars(8);
    cfg.pwd = random_ice_chars(24);
    let mut rng = rand::rng();
    cfg.tie_breaker = rng.next_u64();
    rng.fill_bytes(&mut cfg.seed);
    cfg.duration = plan.duration;
    cfg.connect_timeout = plan.timeout;
    cfg.retransmit.rto = plan.rto;
    let deadline = cfg.gather_timeout
        + cfg.offer_timeout
        + cfg.connect_timeout
        + cfg.settle
        + cfg.duration
        + cfg.echo_linger
        + cfg.report_timeout
        + Duration::from_secs(5);
    let session = PairSession::new(cfg);

    let (in_tx, in_rx) = mpsc::channel::<Inbound>(16);
    let (out_tx, mut out_rx) = mpsc::channel::<PeerMsg>(16);
    let drive = engine::ice::run_signalled(
        session,
        in_rx,
        out_tx,
        cancel.clone(),
        Some(deadline),
        Duration::from_secs(2),
    );
    let mut link_error: Option<ClientError> = None;
    let bridge = async {
        let mut link_up = true;
        loop {
            let step = tokio::select! {
                e = client.recv(), if link_up => Bridge::Event(e),
                m = out_rx.recv() => Bridge::Out(m),
            };
            match step {
                Bridge::Event(Ok(ClientEvent::Peer(m))) => {
                    let _ = in_tx.send(Inbound::Peer(m)).await;
                }
                Bridge::Event(Ok(ClientEvent::PeerLeft)) => {
                    let _ = in_tx.send(Inbound::PeerLeft).await;
                }
                Bridge::Event(Ok(_)) => {}
                Bridge::Event(Err(e)) => {
                    link_up = false;
                    link_error = Some(e);
                    let _ = in_tx.send(Inbound::PeerLeft).await;
                }
                Bridge::Out(None) => break,
                Bridge::Out(Some(mut m)) => {
                    if let PeerMsg::Report(r) = &mut m {
                        fill_nat(r, wait_nat(&mut nat_rx, cancel).await);
                    }
                    if link_up && let Err(e) = client.send(m).await {
                        link_up = false;
                        link_error = Some(e);
                        let _ = in_tx.send(Inbound::PeerLeft).await;
                    }
                }
            }
        }
    };
    let (run, ()) = tokio::join!(drive, bridge);
    let run = run?;
    client.bye().await;
    let interrupted = run.interrupted || cancel.is_cancelled();
    let nat = *nat_rx.borrow();
    let Some(SessionOutput {
        mut local,
        peer,
        peer_offer,
        abort,
    }) = run.output
    else {
        return Ok(interrupted_report(plan, role, started, nat));
    };
    fill_nat(&mut local, nat);
    local.interrupted |= interrupted;
    let mut abort = abort;
    if let (Some(e), None) = (&link_error, &peer)
        && (abort.is_none() || abort == Some(Abort::PeerLeft))
    {
        eprintln!("stunmap: the rendezvous connection failed: {e}");
        abort = Some(Abort::PeerLeft);
    }
    let result = PairResult::merge(&local, peer.as_ref(), &peer_offer);
    Ok(Report {
        schema: "stunmap.pair/1",
        mode: "live",
        room: plan.room.clone(),
        this_side: Side::of(role),
        interrupted,
        elapsed_seconds: started.elapsed().as_secs_f64(),
        abort,
        result,
    })
}

async fn cancelled(cancel: &mut Cancel) {
    while !cancel.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Human output

/// A peer-controlled string made safe for a terminal: control characters replaced, capped.
fn clean(s: &str) -> String {
    s.chars()
        .take(120)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

fn side_label(side: Side, this: Side) -> String {
    if side == this {
        format!("{side} (this host)")
    } else {
        format!("{side}")
    }
}

fn print_side(side: Side, this: Side, v: &SideView) {
    let nat = v
        .nat
        .map_or_else(|| "not measured".into(), |n| n.to_string());
    println!("  {:<14} NAT {nat}", side_label(side, this));
    if let Some(p) = v.public_address {
        println!("  {:<14} public address {p}", "");
    }
    let cands: Vec<String> = v
        .candidates
        .iter()
        .map(|c| format!("{} {}", c.kind, c.address))
        .collect();
    if !cands.is_empty() {
        println!("  {:<14} candidates {}", "", cands.join(", "));
    }
    if let Some(t) = &v.turn {
        let what = match (&t.relayed, &t.error) {
            (Some(r), _) => format!(
                "relay {r} ({})",
                match t.released {
                    Some(true) => "released",
                    Some(false) => "NOT confirmed released",
                    None => "released by that side after its report",
                }
            ),
            (None, Some(e)) => format!("no relay: {}", clean(e)),
            (None, None) => "no relay".into(),
        };
        println!("  {:<14} TURN {} {what}", "", t.server);
    }
    if !v.reported {
        println!("  {:<14} (its report did not arrive)", "");
    }
}

fn print_human(r: &Report) {
    let res = &r.result;
    if r.interrupted {
        println!("INTERRUPTED: partial results follow");
    }
    let head = match (res.outcome, &res.selected) {
        (PairOutcomeLive::Direct, Some(s)) => {
            format!("Direct: {} ↔ {}", s.a.kind, s.b.kind)
        }
        (PairOutcomeLive::Relayed, Some(s)) => {
            format!("Relayed: {} ↔ {}", s.a.kind, s.b.kind)
        }
        _ => "Failed: no candidate pair connected".into(),
    };
    let verdict = match (&res.prediction.model, res.prediction.agrees) {
        (Some(m), Some(true)) => format!("the model predicted {}: agrees", pair_word(*m)),
        (Some(m), Some(false)) => format!("the model predicted {}: DISAGREES", pair_word(*m)),
        (Some(_), None) => "the model is uncertain for this pair".into(),
        (None, _) => "no model prediction (a NAT class is unknown)".into(),
    };
    println!("{head} — {verdict}");
    if let Some(a) = r.abort {
        let why = match a {
            Abort::NoOffer => "the peer sent no candidates in time",
            Abort::PeerLeft => "the peer left before the end",
            Abort::Interrupted => "interrupted",
        };
        println!("  stopped early: {why}");
    }
    println!();
    if let Some(s) = &res.selected {
        println!("Selected pair");
        for e in [s.a, s.b] {
            println!(
                "  {:<14} {:<6} {}",
                side_label(e.side, r.this_side),
                e.kind.to_string(),
                e.address
            );
        }
    }
    if let Some(t) = res.connect_seconds {
        println!("Time to connect  {t:.3} s");
    }
    for (side, v) in [(Side::A, &res.a), (Side::B, &res.b)] {
        if let Some(rtt) = &v.rtt {
            println!(
                "RTT from {side}       min {} / p50 {} / p90 {} / p99 {} / max {} ms, loss {:.1} % ({} sent)",
                ms(rtt.min_ms),
                ms(rtt.p50_ms),
                ms(rtt.p90_ms),
                ms(rtt.p99_ms),
                ms(rtt.max_ms),
                rtt.loss * 100.0,
                rtt.sent
            );
        }
    }
    println!();
    println!("Sides");
    print_side(Side::A, r.this_side, &res.a);
    print_side(Side::B, r.this_side, &res.b);
    if !res.failed_checks.is_empty() {
        println!();
        println!("Checks that got no answer");
        for f in &res.failed_checks {
            println!(
                "  {} {} {} → {} {} {}: {} ({} sent)",
                f.from.side,
                f.from.kind,
                f.from.address,
                f.to.side,
                f.to.kind,
                f.to.address,
                f.reason,
                f.requests_sent
            );
        }
    }
    println!();
    println!("Model (docs/nat.md)");
    for reason in &res.prediction.reasons {
        println!("  - {reason}");
    }
    if res.outcome == PairOutcomeLive::Relayed
        && res
            .selected
            .is_some_and(|s| s.a.kind == CandidateKind::Relay && s.b.kind == CandidateKind::Relay)
    {
        println!("  - both ends used their relay: neither side's candidates reached the other");
    }
}

fn pair_word(m: probes::nat::PairOutcome) -> &'static str {
    match m {
        probes::nat::PairOutcome::Direct => "direct",
        probes::nat::PairOutcome::Relayed => "relayed",
        probes::nat::PairOutcome::Uncertain => "uncertain",
    }
}
