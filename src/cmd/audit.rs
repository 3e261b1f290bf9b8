//! `stunmap audit turn:HOST[:PORT]`: audit one's own TURN server for relaying into the network
//! behind it (see `probes::turn::audit` and docs/audit.md). With credentials it asks for
//! permissions and channels toward loopback, private, link-local, metadata and multicast
//! addresses (and their IPv6 encodings) on an allocation of the server's default family, then
//! the IPv6 ones again on a second allocation that asks for IPv6 (over UDP from a second
//! socket, over TCP/TLS on a second connection); it sends no data to any of them and always
//! releases both allocations. It also reports the server's SOFTWARE, which transports answer,
//! and what an unauthenticated Allocate gets.
//!
//! Credentials come as for `stunmap turn`: `--user` with `STUNMAP_TURN_PASSWORD` /
//! `--password-file`, or a TURN REST secret from `STUNMAP_TURN_SECRET` / `--secret-file`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, bail};
use engine::Cancel;
use engine::stream::{Security, StreamOptions, run_stream};
use engine::tcp::ConnectOutcome;
use probes::Probe;
use probes::finding::Severity;
use probes::turn::allocate::{AllocateConfig, AllocateProbe, AllocateReport, AllocateStatus};
use probes::turn::audit::{
    AuditConfig, AuditProbe, AuditReport, PeerOutcome, PeerResult, Unauthenticated,
};
use probes::turn::auth::Credentials;
use probes::turn::session::Release;
use probes::turn::uri::TurnUri;
use probes::{Family, Transport};
use serde::Serialize;

use super::turn::{AuthArgs, parse_uri, server_addr, session_config};
use crate::exit::{Outcome, usage};

/// Flags of `stunmap audit`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The server to audit: turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT].
    /// Audit only servers you run or are allowed to test.
    #[arg(value_name = "URI")]
    uri: String,
    #[command(flatten)]
    auth: AuthArgs,
    /// Milliseconds a request may take (retransmissions included).
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    timeout: u64,
    /// Also try TLS on this port when listing the transports the server accepts.
    #[arg(long, value_name = "PORT")]
    tls_port: Option<u16>,
    /// Skip the check of the other transports.
    #[arg(long)]
    no_transports: bool,
    /// Machine-readable output (schema `stunmap.audit/1`).
    #[arg(long)]
    json: bool,
}

/// Whether a transport answered an unauthenticated Allocate.
#[derive(Debug, Serialize)]
struct TransportCheck {
    transport: Transport,
    port: u16,
    /// Any STUN answer (401, success, another error).
    answers: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<AllocateStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    schema: &'static str,
    uri: String,
    server: SocketAddr,
    interrupted: bool,
    authenticated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_error: Option<String>,
    audit: Option<AuditReport>,
    transports: Vec<TransportCheck>,
}

/// Run one probe over `transport` and return its output and the stream error, if any.
async fn run_probe<P>(
    probe: P,
    transport: Transport,
    server: SocketAddr,
    security: Security,
    cancel: Cancel,
) -> Result<(Option<P::Output>, bool, Option<String>)>
where
    P: Probe,
{
    if transport.is_stream() {
        let run = run_stream(probe, server, security, StreamOptions::default(), cancel).await;
        return Ok((run.output, run.interrupted, run.error));
    }
    let (out, r) = engine::run_one(probe, None, cancel).await?;
    Ok((out, r.interrupted, None))
}

/// Whether the audit made its first allocation (and gave it back) or was refused it with 440
/// (an IPv6-only relay), and the IPv6 allocation is still to be made: over TCP/TLS, on a
/// second connection. As over UDP, never while the first allocation may still exist.
fn wants_ipv6_connection(a: &AuditReport) -> bool {
    let first = matches!(
        a.allocate,
        Some(PeerOutcome::Granted | PeerOutcome::Refused { code: 440, .. })
    );
    first && a.allocate_ipv6.is_none() && a.release.is_clean() && !a.cancelled
}

fn connect_text(c: &ConnectOutcome) -> String {
    match c {
        ConnectOutcome::Connected { .. } => "no result".into(),
        ConnectOutcome::Refused => "connection refused".into(),
        ConnectOutcome::Timeout => "connection timed out".into(),
        ConnectOutcome::Unreachable => "unreachable".into(),
        ConnectOutcome::Error { message, .. } => message.clone(),
    }
}

fn transport_uri(uri: &TurnUri, transport: Transport, port: u16) -> TurnUri {
    let mut u = uri.clone();
    u.transport = transport;
    u.secure = transport == Transport::Tls;
    u.port = port;
    u
}

pub(crate) fn run(args: Args) -> Result<Outcome> {
    let uri = parse_uri(&args.uri)?;
    if args.timeout == 0 {
        return Err(usage("--timeout must be at least 1 ms"));
    }
    let credentials: Option<Credentials> = args.auth.credentials()?;
    let security = args.auth.security(&uri)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = server_addr(&uri).await?;
        let (handle, cancel) = Cancel::new();
        engine::driver::cancel_on_signals(handle);
        let timeout = Duration::from_millis(args.timeout);
        let authenticated = credentials.is_some();
        let session = session_config(server, uri.transport, credentials, timeout);
        let probe = AuditProbe::new(AuditConfig::new(session.clone()), crate::ids::source());
        let (mut audit, mut interrupted, mut stream_error) = run_probe(
            probe,
            uri.transport,
            server,
            security.clone(),
            cancel.clone(),
        )
        .await?;
        // Over TCP/TLS the IPv6 allocation needs a connection of its own (docs/audit.md, step 6).
        if let Some(a) = audit
            .as_mut()
            .filter(|a| uri.transport.is_stream() && !interrupted && wants_ipv6_connection(a))
        {
            let config = AuditConfig {
                session,
                ipv6_only: true,
            };
            let probe = AuditProbe::new(config, crate::ids::source());
            let run = run_stream(
                probe,
                server,
                security,
                StreamOptions::default(),
                cancel.clone(),
            )
            .await;
            interrupted |= run.interrupted;
            match run.output {
                Some(ipv6) => a.adopt_ipv6(ipv6),
                None => {
                    let why = run
                        .error
                        .clone()
                        .unwrap_or_else(|| connect_text(&run.connect));
                    a.ipv6_untestable(&format!(
                        "the second {} connection, for the IPv6 allocation, failed: {why}",
                        uri.transport.as_str()
                    ));
                }
            }
            if let Some(e) = run.error {
                stream_error.get_or_insert(format!("IPv6 allocation's connection: {e}"));
            }
        }
        let mut report = Report {
            schema: "stunmap.audit/1",
            uri: uri.to_string(),
            server,
            interrupted,
            authenticated,
            stream_error,
            audit,
            transports: Vec::new(),
        };
        if !args.no_transports && !report.interrupted {
            let mut tries = vec![(Transport::Udp, uri.port), (Transport::Tcp, uri.port)];
            if uri.transport == Transport::Tls {
                tries.push((Transport::Tls, uri.port));
            }
            if let Some(p) = args.tls_port
                && !tries.contains(&(Transport::Tls, p))
            {
                tries.push((Transport::Tls, p));
            }
            for (transport, port) in tries {
                let u = transport_uri(&uri, transport, port);
                let security = args.auth.security(&u)?;
                let addr = SocketAddr::new(server.ip(), port);
                let session = session_config(addr, transport, None, timeout);
                let probe = AllocateProbe::new(
                    AllocateConfig {
                        session,
                        exercise: false,
                    },
                    crate::ids::source(),
                );
                let (out, interrupted, error): (Option<AllocateReport>, _, _) =
                    run_probe(probe, transport, addr, security, cancel.clone()).await?;
                let status = out.map(|o| o.status);
                let answers = matches!(
                    status,
                    Some(
                        AllocateStatus::Allocated
                            | AllocateStatus::AuthRequired
                            | AllocateStatus::Rejected { .. }
                    )
                );
                report.transports.push(TransportCheck {
                    transport,
                    port,
                    answers,
                    status,
                    error,
                });
                if interrupted {
                    report.interrupted = true;
                    break;
                }
            }
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_human(&report);
        }
        outcome(&report)
    })
}

fn outcome(r: &Report) -> Result<Outcome> {
    if r.interrupted {
        return Ok(Outcome::Interrupted);
    }
    let Some(a) = &r.audit else {
        bail!("the audit produced no result");
    };
    if !a.release_is_clean() {
        return Ok(Outcome::Degraded);
    }
    if a.unauthenticated == Unauthenticated::Timeout {
        return Ok(Outcome::Blocked);
    }
    // A granted internal peer (or an open relay) is what the audit exists to find: exit 1.
    Ok(match a.worst() {
        Some(s) if s >= Severity::Medium => Outcome::Degraded,
        _ => Outcome::Ok,
    })
}

fn outcome_text(o: &PeerOutcome) -> String {
    match o {
        PeerOutcome::Granted => "GRANTED".into(),
        PeerOutcome::Refused { code, reason } => format!("refused {code} {reason}"),
        PeerOutcome::Timeout => "no answer".into(),
        PeerOutcome::NotTried => "not tried".into(),
        PeerOutcome::Untestable { reason } => format!("untestable: {reason}"),
    }
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::Ipv4 => "IPv4",
        Family::Ipv6 => "IPv6",
    }
}

/// The requests `peers` made toward the `family` allocation. Candidates of the other family
/// refused with 443 (Peer Address Family Mismatch, RFC 8656 §19) are counted on one line; a
/// group that could not be asked at all prints its reason once.
fn print_peers(title: &str, family: Family, peers: &[PeerResult], ipv6_allocated: bool) {
    let group: Vec<&PeerResult> = peers.iter().filter(|p| p.relay_family == family).collect();
    if group.iter().all(|p| p.outcome == PeerOutcome::NotTried) {
        return;
    }
    println!("  {title} toward the {} allocation", family_name(family));
    if let Some(PeerOutcome::Untestable { reason }) = group.first().map(|p| &p.outcome)
        && group
            .iter()
            .all(|p| matches!(p.outcome, PeerOutcome::Untestable { .. }))
    {
        println!("    {} untestable: {reason}", candidates(group.len()));
        return;
    }
    let mismatch = |p: &PeerResult| {
        matches!(p.outcome, PeerOutcome::Refused { code: 443, .. })
            && Family::of_socket(&p.candidate.peer) != family
    };
    for p in group.iter().filter(|p| !mismatch(p)) {
        let c = &p.candidate;
        let bypass = c.bypass.map(|b| format!(" [{b}]")).unwrap_or_default();
        println!(
            "    {:<28} {:<15} {:<16} {}{bypass}",
            c.peer.ip().to_string(),
            format!("{:?}", c.category),
            format!("{:?}", c.encoding),
            outcome_text(&p.outcome)
        );
    }
    let n = group.iter().filter(|p| mismatch(p)).count();
    if n > 0 {
        let why = if family == Family::Ipv4 && ipv6_allocated {
            "asked again toward the IPv6 allocation below"
        } else {
            "this allocation cannot test them"
        };
        println!(
            "    {} of the other family: refused 443 ({why})",
            candidates(n)
        );
    }
}

fn candidates(n: usize) -> String {
    if n == 1 {
        "1 candidate".into()
    } else {
        format!("{n} candidates")
    }
}

fn release_text(r: &Release) -> String {
    match r {
        Release::NotNeeded => "clean (nothing was allocated)".into(),
        Release::Released | Release::AlreadyGone => "clean".into(),
        Release::Failed { code, reason } => {
            format!("NOT CONFIRMED: {code} {reason} (the allocation expires with its lifetime)")
        }
        Release::Timeout => {
            "NOT CONFIRMED: no answer (the allocation expires with its lifetime)".into()
        }
    }
}

fn print_human(r: &Report) {
    println!("audit {} ({})", r.uri, r.server);
    if let Some(e) = &r.stream_error {
        println!("  stream       {e}");
    }
    let Some(a) = &r.audit else {
        println!("  no result");
        return;
    };
    if let Some(s) = &a.software {
        println!("  software     {s}");
    }
    if let Some(s) = &a.realm {
        println!("  realm        {s}");
    }
    println!(
        "  binding      {}",
        if a.binding_answered {
            "answered"
        } else {
            "no answer"
        }
    );
    let unauth = match &a.unauthenticated {
        Unauthenticated::Challenge => "401 with REALM and NONCE (as it should)".to_string(),
        Unauthenticated::Allocated => "ALLOCATED WITHOUT CREDENTIALS (open relay)".to_string(),
        Unauthenticated::Error { code, reason, .. } => format!("{code} {reason}"),
        Unauthenticated::Timeout => "no answer".to_string(),
        Unauthenticated::NotTried => "not tried".to_string(),
    };
    println!("  unauth alloc {unauth}");
    if !r.authenticated && a.unauthenticated != Unauthenticated::Allocated {
        println!("  peers        not tested: give credentials (--user …) to audit relaying");
    }
    if let Some(o) = &a.allocate {
        println!("  allocate     {}", outcome_text(o));
    }
    if let Some(rel) = a.relayed {
        println!("  relayed      {rel}");
    }
    if let Some(o) = &a.allocate_ipv6 {
        let note = match o {
            PeerOutcome::Refused { code: 440, .. } => " (server has no IPv6 relay address)",
            _ => "",
        };
        println!("  allocate v6  {}{note}", outcome_text(o));
    }
    if let Some(rel) = a.relayed_ipv6 {
        println!("  relayed v6   {rel}");
    }
    let ipv6_allocated = a.allocate_ipv6 == Some(PeerOutcome::Granted);
    for family in [Family::Ipv4, Family::Ipv6] {
        print_peers("CreatePermission", family, &a.permissions, ipv6_allocated);
        print_peers("ChannelBind", family, &a.channel_binds, ipv6_allocated);
    }
    for t in &r.transports {
        let what = match (&t.status, &t.error) {
            (Some(AllocateStatus::AuthRequired), _) => "answers (401)".to_string(),
            (Some(AllocateStatus::Allocated), _) => {
                "answers (allocated without credentials)".into()
            }
            (Some(AllocateStatus::Rejected { code, .. }), _) => format!("answers ({code})"),
            (_, Some(e)) => format!("no ({e})"),
            _ => "no answer".to_string(),
        };
        println!(
            "  transport    {:<4} {:<5} {what}",
            t.transport.as_str(),
            t.port
        );
    }
    if a.findings.is_empty() {
        println!("  findings     none");
    }
    for f in &a.findings {
        println!("  {:?}: {}", f.severity(), f.finding.summary);
        if !f.peers.is_empty() {
            println!("      granted: {}", f.peers.join(", "));
        }
        println!("      fix: {}", f.fix().map_or("", |x| x.title.as_str()));
    }
    if a.release != Release::NotNeeded || a.release_ipv6 == Release::NotNeeded {
        println!("  release      {}", release_text(&a.release));
    }
    if a.release_ipv6 != Release::NotNeeded {
        println!("  release v6   {}", release_text(&a.release_ipv6));
    }
    if a.cancelled {
        println!("  (cancelled: partial results)");
    }
}
