//! `stunmap pair`: run a real ICE (RFC 8445) connection attempt between this host and a peer
//! that runs the same command, meeting through `stunmap serve --rendezvous`, and hold the NAT
//! peer-pair model to the result. `--explain` gives the model's prediction offline from two
//! `stunmap nat --json` reports.
//!
//! The room secret never comes from a flag value: `$STUNMAP_PAIR_SECRET` or
//! `--pair-secret-file`. It never appears in output.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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

use super::common;
use crate::app::{Command, Ctx, OutputArgs, Report, ReportFiles, RunInfo};
use crate::exit::{Outcome, usage};
use crate::report::doc::{Block, Cell, Doc, Mark, Section, Tone, columns, secs};
use crate::report::prom::{Writer, flag, run_facts};
use crate::target::{FamilyChoice, TargetSpec, resolve};

/// Environment variable holding the room secret.
pub(crate) const SECRET_ENV: &str = "STUNMAP_PAIR_SECRET";

/// Flags of `stunmap pair`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Run the same command on both hosts (either order; the second must start within --wait of \
the first). Both print the same result; exit 0 direct, 1 relayed only, 2 no path, \
64 bad usage, 70 rendezvous or environment error (down, refused, wrong secret, full room, the \
peer never came: nothing about the path was measured), 130 interrupted.

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
    #[command(flatten)]
    auth: super::turn::AuthArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    files: ReportFiles,
}

/// The report of a live `pair` run (schema `stunmap.pair/1`, mode live).
#[derive(Debug, Serialize)]
pub(crate) struct LiveReport {
    mode: &'static str,
    room: String,
    this_side: Side,
    /// Why the run stopped early.
    abort: Option<Abort>,
    #[serde(flatten)]
    result: PairResult,
    /// What else happened (the rendezvous connection failing mid-run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

/// The report of `pair --explain` (schema `stunmap.pair/1`, mode explain).
#[derive(Debug, Serialize)]
pub(crate) struct ExplainReport {
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

/// What a live run takes from its flags as they are, before and after the names are resolved.
struct Session {
    security: Security,
    room: String,
    secret: RoomSecret,
    duration: Duration,
    wait: Duration,
    timeout: Duration,
    rto: Duration,
}

/// What the run needs once the names are resolved.
struct Plan {
    rendezvous: SocketAddr,
    stun: Vec<SocketAddr>,
    turn: Option<TurnConfig>,
    session: Session,
}

/// A planned live run (pure: flags, the secret and credentials; the names are resolved when
/// it runs).
struct Live {
    rendezvous: TargetSpec,
    stun: Vec<TargetSpec>,
    turn: Option<(probes::turn::uri::TurnUri, probes::turn::auth::Credentials)>,
    session: Session,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("rendezvous", &self.rendezvous)
            .field("room", &self.session.room)
            .finish_non_exhaustive()
    }
}

fn in_range(name: &str, v: u64, lo: u64, hi: u64, unit: &str) -> Result<()> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(usage(format!("--{name} must be {lo} to {hi} {unit}")))
    }
}

/// The room secret: the first line of `file` (`--pair-secret-file`, read up to
/// [`common::MAX_SECRET_FILE`]), else [`SECRET_ENV`]. Without either the usage error starts with
/// `missing` ("no room secret").
pub(crate) fn load_secret(file: Option<&PathBuf>, missing: &str) -> Result<RoomSecret> {
    let text = match file {
        Some(f) => common::read_first_line("--pair-secret-file", f, common::MAX_SECRET_FILE)?,
        None => std::env::var(SECRET_ENV).map_err(|_| {
            usage(format!(
                "{missing}: set {SECRET_ENV} or give --pair-secret-file"
            ))
        })?,
    };
    RoomSecret::new(text.into_bytes()).map_err(|e| usage(e.to_string()))
}

pub(crate) fn run(args: Args) -> Result<Outcome> {
    if let Some(files) = &args.explain {
        let plan = PairExplain::plan(files)?;
        return crate::app::run(plan, &args.output, &args.files, "reports");
    }
    let live = plan(&args)?;
    crate::app::run(live, &args.output, &args.files, "steps")
}

/// The plan of a live run (pure).
fn plan(args: &Args) -> Result<Live> {
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
    let stun: Vec<TargetSpec> = args
        .stun
        .iter()
        .map(|s| TargetSpec::parse(s, 3478))
        .collect::<Result<_>>()?;
    if stun.iter().any(|s| s.ports.0 != s.ports.1) {
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
    let turn = match (turn_uri, credentials) {
        (Some(u), Some(c)) => Some((u, c)),
        (Some(_), None) => {
            return Err(usage(
                "--turn needs --user and a password (STUNMAP_TURN_PASSWORD or --password-file)",
            ));
        }
        (None, _) => None,
    };
    let secret = load_secret(args.pair_secret_file.as_ref(), "no room secret")?;
    let security = if args.tls {
        let name = args.tls_name.clone().unwrap_or_else(|| rv.host.clone());
        Security::tls(&name, args.auth.ca_file.as_deref()).map_err(|e| usage(e.to_string()))?
    } else {
        Security::Plain
    };
    Ok(Live {
        rendezvous: rv,
        stun,
        turn,
        session: Session {
            security,
            room,
            secret,
            duration: Duration::from_secs(args.duration),
            wait: Duration::from_secs(args.wait),
            timeout: Duration::from_secs(args.timeout),
            rto: Duration::from_millis(args.rto),
        },
    })
}

impl Command for Live {
    type Report = LiveReport;

    /// Rendezvous failures (down, refused, a wrong secret, a full room, a peer that never
    /// comes) are errors, exit 70: nothing about the path between the peers was measured.
    async fn execute(self, ctx: Ctx) -> Result<LiveReport> {
        let rv_ip = resolve(&self.rendezvous.host, FamilyChoice::Any)
            .await?
            .first()
            .copied()
            .context("the rendezvous host has no address")?;
        let mut stun = Vec::new();
        for s in &self.stun {
            for ip in resolve(&s.host, FamilyChoice::Any).await? {
                stun.push(SocketAddr::new(ip, s.ports.0));
            }
        }
        let turn = match self.turn {
            Some((u, c)) => Some(TurnConfig {
                server: super::turn::server_addr(&u).await?,
                transport: u.transport,
                credentials: c,
            }),
            None => None,
        };
        let plan = Plan {
            rendezvous: SocketAddr::new(rv_ip, self.rendezvous.ports.0),
            stun,
            turn,
            session: self.session,
        };
        live(plan, &ctx).await
    }
}

/// A planned `--explain`: the two reports, read and checked.
#[derive(Debug)]
struct PairExplain {
    a: probes::pair::explain::PeerClass,
    b: probes::pair::explain::PeerClass,
}

impl PairExplain {
    /// Read both reports (size-capped); a file that is not a `nat` report is a usage error.
    fn plan(files: &[PathBuf]) -> Result<PairExplain> {
        let read = |p: &PathBuf| -> Result<_> {
            let bytes =
                common::read_file("--explain", p, probes::pair::explain::MAX_REPORT as u64)?;
            read_report(&bytes).map_err(|e| usage(format!("{}: {e}", p.display())))
        };
        let (Some(a), Some(b)) = (files.first(), files.get(1)) else {
            return Err(usage("--explain takes two files"));
        };
        Ok(PairExplain {
            a: read(a)?,
            b: read(b)?,
        })
    }
}

impl Command for PairExplain {
    type Report = ExplainReport;

    async fn execute(self, _ctx: Ctx) -> Result<ExplainReport> {
        Ok(ExplainReport {
            mode: "explain",
            explanation: explain(self.a, self.b),
        })
    }
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

async fn live(plan: Plan, ctx: &Ctx) -> Result<LiveReport> {
    let cancel = ctx.cancel.clone();
    let (nat_tx, nat_rx) = watch::channel::<Option<NatSummary>>(None);
    let nat = {
        let (servers, rto, cancel) = (plan.stun.clone(), plan.session.rto, cancel.clone());
        async move {
            let s = discover(servers, rto, cancel).await;
            let _ = nat_tx.send(Some(s));
            // The result is read through the channel; this branch never ends the select.
            std::future::pending::<LiveReport>().await
        }
    };
    let main = run_pair(&plan, nat_rx, &cancel);
    let report = tokio::select! {
        r = main => r?,
        r = nat => r,
    };
    Ok(report)
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

fn interrupted_report(plan: &Plan, role: Role, nat: Option<NatSummary>) -> LiveReport {
    let mut local = SideReport::empty(role);
    local.interrupted = true;
    fill_nat(&mut local, nat);
    LiveReport {
        mode: "live",
        room: plan.session.room.clone(),
        this_side: Side::of(role),
        abort: Some(Abort::Interrupted),
        result: PairResult::merge(&local, None, &[]),
        notes: Vec::new(),
    }
}

async fn run_pair(
    plan: &Plan,
    mut nat_rx: watch::Receiver<Option<NatSummary>>,
    cancel: &Cancel,
) -> Result<LiveReport> {
    let s = &plan.session;
    let joined = tokio::select! {
        r = Client::join(plan.rendezvous, &s.security, &s.secret, &s.room, ClientTimeouts::default()) => Some(r),
        _ = cancel.cancelled() => None,
    };
    let Some(joined) = joined else {
        let nat = *nat_rx.borrow();
        return Ok(interrupted_report(plan, Role::Controlling, nat));
    };
    let (mut client, first) = joined.map_err(client_error)?;
    let role = if first {
        Role::Controlling
    } else {
        Role::Controlled
    };
    // Wait for the other peer.
    let waited = tokio::select! {
        r = tokio::time::timeout(plan.session.wait, async {
            loop {
                match client.recv().await {
                    Ok(ClientEvent::PeerJoined) => return Ok(()),
                    Ok(_) => continue,
                    Err(e) => return Err(e),
                }
            }
        }) => Some(r),
        _ = cancel.cancelled() => None,
    };
    match waited {
        None => {
            let nat = *nat_rx.borrow();
            client.bye().await;
            return Ok(interrupted_report(plan, role, nat));
        }
        Some(Err(_)) => {
            client.bye().await;
            return Err(anyhow!(
                "the peer did not join room {} within {} s",
                plan.session.room,
                plan.session.wait.as_secs()
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
    cfg.duration = plan.session.duration;
    cfg.connect_timeout = plan.session.timeout;
    cfg.retransmit.rto = plan.session.rto;
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
        return Ok(interrupted_report(plan, role, nat));
    };
    fill_nat(&mut local, nat);
    local.interrupted |= interrupted;
    let mut abort = abort;
    let mut notes = Vec::new();
    if let (Some(e), None) = (&link_error, &peer)
        && (abort.is_none() || abort == Some(Abort::PeerLeft))
    {
        notes.push(format!("the rendezvous connection failed: {e}"));
        abort = Some(Abort::PeerLeft);
    }
    let result = PairResult::merge(&local, peer.as_ref(), &peer_offer);
    Ok(LiveReport {
        mode: "live",
        room: plan.session.room.clone(),
        this_side: Side::of(role),
        abort,
        result,
        notes,
    })
}

// ---------------------------------------------------------------------------------------------
// The reports for people and for Prometheus

fn pair_word(m: probes::nat::PairOutcome) -> &'static str {
    match m {
        probes::nat::PairOutcome::Direct => "direct",
        probes::nat::PairOutcome::Relayed => "relayed",
        probes::nat::PairOutcome::Uncertain => "uncertain",
    }
}

fn outcome_mark(o: PairOutcomeLive) -> Mark {
    match o {
        PairOutcomeLive::Direct => Mark::new("direct", Tone::Good),
        PairOutcomeLive::Relayed => Mark::new("relayed", Tone::Warn),
        PairOutcomeLive::Failed => Mark::new("failed", Tone::Bad),
    }
}

fn side_label(side: Side, this: Side) -> String {
    if side == this {
        format!("{side} (this host)")
    } else {
        format!("{side}")
    }
}

/// Milliseconds as the one time format.
fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| secs(v / 1e3))
}

fn side_fields(v: &SideView) -> Vec<(String, String)> {
    let mut f = vec![(
        "NAT".to_string(),
        v.nat
            .map_or_else(|| "not measured".into(), |n| n.to_string()),
    )];
    if let Some(p) = v.public_address {
        f.push(("public address".into(), p.to_string()));
    }
    let cands: Vec<String> = v
        .candidates
        .iter()
        .map(|c| format!("{} {}", c.kind, c.address))
        .collect();
    if !cands.is_empty() {
        f.push(("candidates".into(), cands.join(", ")));
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
            (None, Some(e)) => format!("no relay: {e}"),
            (None, None) => "no relay".into(),
        };
        f.push(("TURN".into(), format!("{} {what}", t.server)));
    }
    if let Some(rtt) = &v.rtt {
        f.push((
            "RTT".into(),
            format!(
                "min {} / p50 {} / p90 {} / p99 {} / max {}, loss {:.1}% ({} sent)",
                ms(rtt.min_ms),
                ms(rtt.p50_ms),
                ms(rtt.p90_ms),
                ms(rtt.p99_ms),
                ms(rtt.max_ms),
                rtt.loss * 100.0,
                rtt.sent
            ),
        ));
    }
    if !v.reported {
        f.push(("report".into(), "did not arrive".into()));
    }
    f
}

impl Report for LiveReport {
    const SCHEMA: &'static str = "stunmap.pair/1";

    fn outcome(&self) -> Outcome {
        match self.result.outcome {
            PairOutcomeLive::Direct => Outcome::Ok,
            PairOutcomeLive::Relayed => Outcome::Degraded,
            PairOutcomeLive::Failed => Outcome::Blocked,
        }
    }

    fn document(&self, run: &RunInfo) -> Doc {
        let res = &self.result;
        let path = match (res.outcome, &res.selected) {
            (PairOutcomeLive::Direct | PairOutcomeLive::Relayed, Some(s)) => {
                format!("{} ↔ {}", s.a.kind, s.b.kind)
            }
            _ => "no candidate pair connected".into(),
        };
        let verdict = match (&res.prediction.model, res.prediction.agrees) {
            (Some(m), Some(true)) => format!("the model predicted {}: agrees", pair_word(*m)),
            (Some(m), Some(false)) => {
                format!("the model predicted {}: DISAGREES", pair_word(*m))
            }
            (Some(_), None) => "the model is uncertain for this pair".into(),
            (None, _) => "no model prediction (a NAT class is unknown)".into(),
        };
        let mut doc = Doc::new("stunmap pair", format!("{path}; {verdict}"));
        doc.mark = Some(outcome_mark(res.outcome));
        doc.summary.push(format!(
            "room {}, this host is side {}, {}, exit {}",
            self.room,
            self.this_side,
            secs(run.elapsed_seconds),
            run.exit_code.code()
        ));
        if let Some(a) = self.abort {
            let why = match a {
                Abort::NoOffer => "the peer sent no candidates in time",
                Abort::PeerLeft => "the peer left before the end",
                Abort::Interrupted => "interrupted",
            };
            doc.summary.push(format!("stopped early: {why}"));
        }
        if let Some(s) = &res.selected {
            let mut sec = Section::new("Selected pair");
            sec.push(Block::Table {
                header: columns(["side", "kind", "address"]),
                rows: [s.a, s.b]
                    .iter()
                    .map(|e| {
                        vec![
                            Cell::from(side_label(e.side, self.this_side)),
                            Cell::from(e.kind.to_string()),
                            Cell::from(e.address.to_string()),
                        ]
                    })
                    .collect(),
            });
            if let Some(t) = res.connect_seconds {
                sec.push(Block::Fields(vec![("time to connect".into(), secs(t))]));
            }
            doc.push(sec);
        }
        for (side, v) in [(Side::A, &res.a), (Side::B, &res.b)] {
            doc.push(
                Section::new(format!("Side {}", side_label(side, self.this_side)))
                    .block(Block::Fields(side_fields(v))),
            );
        }
        doc.push(
            Section::new("Checks that got no answer").block(Block::List(
                res.failed_checks
                    .iter()
                    .map(|f| {
                        format!(
                            "{} → {}: {} ({} sent)",
                            f.from, f.to, f.reason, f.requests_sent
                        )
                    })
                    .collect(),
            )),
        );
        let mut reasons = res.prediction.reasons.clone();
        if res.outcome == PairOutcomeLive::Relayed
            && res.selected.is_some_and(|s| {
                s.a.kind == CandidateKind::Relay && s.b.kind == CandidateKind::Relay
            })
        {
            reasons.push(
                "both ends used their relay: neither side's candidates reached the other".into(),
            );
        }
        doc.push(Section::new("Model (docs/nat.md)").block(Block::List(reasons)));
        doc.push(Section::new("Notes").block(Block::List(self.notes.clone())));
        doc
    }

    fn metrics(&self, run: &RunInfo, w: &mut Writer) -> bool {
        run_facts(w, "pair", run);
        let res = &self.result;
        let room = [("room", self.room.as_str())];
        w.family(
            "stunmap_pair_outcome",
            "gauge",
            "The live pair's outcome: one series per outcome, 1 for the current one.",
        );
        for (o, word) in [
            (PairOutcomeLive::Direct, "direct"),
            (PairOutcomeLive::Relayed, "relayed"),
            (PairOutcomeLive::Failed, "failed"),
        ] {
            w.sample(
                "stunmap_pair_outcome",
                &[room[0], ("outcome", word)],
                flag(res.outcome == o),
            );
        }
        if let Some(t) = res.connect_seconds {
            w.gauge(
                "stunmap_pair_connect_seconds",
                "From the start of the connectivity checks to the first nomination.",
                &room,
                t,
            );
        }
        let rtts: Vec<(&str, &probes::pair::model::RttStats)> = [("a", &res.a), ("b", &res.b)]
            .into_iter()
            .filter_map(|(s, v)| v.rtt.as_ref().map(|r| (s, r)))
            .collect();
        if !rtts.is_empty() {
            w.family(
                "stunmap_pair_rtt_median_seconds",
                "gauge",
                "Median RTT over the selected pair, measured from each side.",
            );
            for (side, r) in &rtts {
                if let Some(p50) = r.p50_ms {
                    w.sample(
                        "stunmap_pair_rtt_median_seconds",
                        &[room[0], ("side", side)],
                        p50 / 1e3,
                    );
                }
            }
            w.family(
                "stunmap_pair_loss_ratio",
                "gauge",
                "Fraction of echo requests over the selected pair without an answer.",
            );
            for (side, r) in &rtts {
                w.sample(
                    "stunmap_pair_loss_ratio",
                    &[room[0], ("side", side)],
                    r.loss,
                );
            }
        }
        true
    }
}

impl Report for ExplainReport {
    const SCHEMA: &'static str = "stunmap.pair/1";

    fn outcome(&self) -> Outcome {
        match self.explanation.prediction.model {
            Some(probes::nat::PairOutcome::Direct) => Outcome::Ok,
            _ => Outcome::Degraded,
        }
    }

    fn document(&self, run: &RunInfo) -> Doc {
        let e = &self.explanation;
        let (mark, headline) = match e.prediction.model {
            Some(probes::nat::PairOutcome::Direct) => (
                Mark::new("direct", Tone::Good),
                "the model predicts a direct (P2P) pair",
            ),
            Some(probes::nat::PairOutcome::Relayed) => (
                Mark::new("relayed", Tone::Warn),
                "the model predicts the pair relayed only",
            ),
            _ => (
                Mark::new("uncertain", Tone::Warn),
                "the model cannot tell for this pair",
            ),
        };
        let mut doc = Doc::new("stunmap pair --explain", headline);
        doc.mark = Some(mark);
        doc.summary.push(format!(
            "from two `stunmap nat` reports, nothing measured now, exit {}",
            run.exit_code.code()
        ));
        let side = |c: &probes::pair::explain::PeerClass| {
            let mut v = c.nat.to_string();
            if let Some(a) = c.public_address {
                v.push_str(&format!(", public address {a}"));
            }
            v
        };
        doc.push(Section::new("Sides").block(Block::Fields(vec![
            ("A".into(), side(&e.a)),
            ("B".into(), side(&e.b)),
        ])));
        doc.push(Section::new("Why").block(Block::List(e.prediction.reasons.clone())));
        doc
    }

    fn metrics(&self, run: &RunInfo, w: &mut Writer) -> bool {
        run_facts(w, "pair", run);
        w.family(
            "stunmap_pair_prediction",
            "gauge",
            "The model's prediction from two nat reports: one series per outcome.",
        );
        let model = self.explanation.prediction.model;
        for (o, word) in [
            (probes::nat::PairOutcome::Direct, "direct"),
            (probes::nat::PairOutcome::Relayed, "relayed"),
            (probes::nat::PairOutcome::Uncertain, "uncertain"),
        ] {
            w.sample(
                "stunmap_pair_prediction",
                &[("outcome", word)],
                flag(model == Some(o) || (model.is_none() && word == "uncertain")),
            );
        }
        true
    }
}
