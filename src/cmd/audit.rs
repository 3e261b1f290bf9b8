//! `stunmap audit turn:HOST[:PORT]`: audit one's own TURN server for relaying into the network
//! behind it (see `probes::turn::audit` and docs/audit.md). With credentials it asks for
//! permissions and channels toward loopback, private, link-local, metadata and multicast
//! addresses (and their IPv6 encodings) on an allocation of the server's default family, then
//! the IPv6 ones again on a second allocation that asks for IPv6 (over UDP from a second
//! socket, over TCP/TLS on a second connection); it sends no data to any of them and always
//! releases both allocations. It also reports the server's SOFTWARE, which transports answer,
//! and what an unauthenticated Allocate gets.
//!
//! A run in which no request toward a candidate was answered (no credentials, a refused or
//! unanswered Allocate) says "not tested" with the reason and exits 1: it found nothing
//! because it could test nothing.
//!
//! Credentials come as for `stunmap turn`: `--user` with `STUNMAP_TURN_PASSWORD` /
//! `--password-file`, or a TURN REST secret from `STUNMAP_TURN_SECRET` / `--secret-file`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use engine::stream::Security;
use probes::finding::{Severity, Status};
use probes::turn::allocate::{AllocateConfig, AllocateProbe, AllocateReport, AllocateStatus};
use probes::turn::audit::{
    AuditConfig, AuditProbe, AuditReport, NotTested, PeerOutcome, PeerResult, Unauthenticated,
};
use probes::turn::auth::Credentials;
use probes::turn::session::Release;
use probes::turn::uri::TurnUri;
use probes::{Family, Transport};
use serde::Serialize;

use super::turn::{AuthArgs, MAX_TIMEOUT_MS, mark, parse_uri, server_addr};
use crate::app::{Command, Ctx, OutputArgs, Report, ReportFiles, RunInfo};
use crate::exec::turn::{no_result, session_config};
use crate::exit::Outcome;
use crate::report::doc::{Block, Cell, Doc, FixItem, Mark, Section, Tone, columns, secs};
use crate::report::prom::{Writer, flag, run_facts};
use crate::report::words;

/// Flags of `stunmap audit`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit status: 0 relaying tested and nothing internal granted; 1 a finding of medium severity or
worse, an allocation not confirmed released, or relaying not tested (no credentials, the
allocation refused); 2 the server does not answer; 64 bad flags; 130 interrupted.")]
pub(crate) struct Args {
    /// The server to audit: turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT].
    /// Audit only servers you run or are allowed to test.
    #[arg(value_name = "URI")]
    uri: String,
    #[command(flatten)]
    auth: AuthArgs,
    /// Milliseconds a request may take, retransmissions included (1 to 60000).
    #[arg(long, default_value_t = 2000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_MS))]
    timeout: u64,
    /// Also try TLS on this port when listing the transports the server accepts.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    tls_port: Option<u16>,
    /// Skip the check of the other transports.
    #[arg(long)]
    no_transports: bool,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    files: ReportFiles,
}

/// One transport to list: where an unauthenticated Allocate goes.
#[derive(Debug)]
struct TransportTry {
    transport: Transport,
    port: u16,
    security: Security,
}

/// A planned audit.
#[derive(Debug)]
struct Audit {
    uri: TurnUri,
    credentials: Option<Credentials>,
    security: Security,
    timeout: Duration,
    transports: Vec<TransportTry>,
}

/// The transports listed: UDP and TCP on the URI's port, TLS there for turns:, and TLS on
/// `--tls-port`.
fn transport_tries(uri: &TurnUri, tls_port: Option<u16>) -> Vec<(Transport, u16)> {
    let mut tries = vec![(Transport::Udp, uri.port), (Transport::Tcp, uri.port)];
    if uri.transport == Transport::Tls {
        tries.push((Transport::Tls, uri.port));
    }
    if let Some(p) = tls_port
        && !tries.contains(&(Transport::Tls, p))
    {
        tries.push((Transport::Tls, p));
    }
    tries
}

/// The plan (pure: flags and files, no network).
fn plan(args: &Args) -> Result<Audit> {
    let uri = parse_uri(&args.uri)?;
    let transports = if args.no_transports {
        Vec::new()
    } else {
        transport_tries(&uri, args.tls_port)
            .into_iter()
            .map(|(transport, port)| {
                let mut u = uri.clone();
                u.transport = transport;
                u.secure = transport == Transport::Tls;
                u.port = port;
                Ok(TransportTry {
                    transport,
                    port,
                    security: args.auth.security(&u)?,
                })
            })
            .collect::<Result<_>>()?
    };
    Ok(Audit {
        credentials: args.auth.credentials()?,
        security: args.auth.security(&uri)?,
        uri,
        timeout: Duration::from_millis(args.timeout),
        transports,
    })
}

pub(crate) fn run(args: Args) -> Result<Outcome> {
    let audit = plan(&args)?;
    crate::app::run(audit, &args.output, &args.files, "steps")
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

/// The report of `stunmap audit` (schema `stunmap.audit/1`).
#[derive(Debug, Serialize)]
pub(crate) struct AuditOutput {
    uri: String,
    server: SocketAddr,
    authenticated: bool,
    /// ok (relaying tested, nothing of medium severity or worse), degraded (findings, an
    /// allocation not confirmed released, or relaying not tested), blocked (no answer).
    status: Status,
    /// Why relaying was not tested, when it was not: the findings then say nothing about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    not_tested: Option<NotTested>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_error: Option<String>,
    audit: Option<AuditReport>,
    transports: Vec<TransportCheck>,
}

impl Command for Audit {
    type Report = AuditOutput;

    async fn execute(self, ctx: Ctx) -> Result<AuditOutput> {
        let server = server_addr(&self.uri).await?;
        let transport = self.uri.transport;
        let authenticated = self.credentials.is_some();
        ctx.plan(1 + self.transports.len() as u64);
        ctx.status("auditing");
        let session = session_config(server, transport, self.credentials, self.timeout);
        let probe = AuditProbe::new(AuditConfig::new(session.clone()), crate::ids::source());
        let first = crate::exec::turn::run(
            probe,
            server,
            transport,
            self.security.clone(),
            ctx.cancel.clone(),
        )
        .await?;
        let mut stream_error = first.connection.stream_error.clone();
        let no_audit = first.output.is_none().then(|| no_result(&first));
        let mut audit = first.output;
        // Over TCP/TLS the IPv6 allocation needs a connection of its own (docs/audit.md,
        // step 6).
        if let Some(a) = audit
            .as_mut()
            .filter(|a| !ctx.stopped() && a.wants_ipv6_connection())
        {
            let config = AuditConfig {
                session,
                ipv6_only: true,
            };
            let second = crate::exec::turn::run(
                AuditProbe::new(config, crate::ids::source()),
                server,
                transport,
                self.security,
                ctx.cancel.clone(),
            )
            .await?;
            if let Some(e) = &second.connection.stream_error {
                stream_error.get_or_insert(format!("IPv6 allocation's connection: {e}"));
            }
            match second.output {
                Some(ipv6) => a.adopt_ipv6(ipv6),
                None => a.ipv6_connection_failed(&no_result(&second)),
            }
        }
        ctx.advance(1);
        let mut transports = Vec::new();
        for t in self.transports {
            if ctx.stopped() {
                break;
            }
            let addr = SocketAddr::new(server.ip(), t.port);
            let probe = AllocateProbe::new(
                AllocateConfig {
                    session: session_config(addr, t.transport, None, self.timeout),
                    exercise: false,
                },
                crate::ids::source(),
            );
            let r =
                crate::exec::turn::run(probe, addr, t.transport, t.security, ctx.cancel.clone())
                    .await?;
            let error = r
                .connection
                .stream_error
                .clone()
                .or_else(|| r.output.is_none().then(|| no_result(&r)));
            let status = r.output.map(|o: AllocateReport| o.status);
            let answers = matches!(
                status,
                Some(
                    AllocateStatus::Allocated
                        | AllocateStatus::AuthRequired
                        | AllocateStatus::Rejected { .. }
                )
            );
            transports.push(TransportCheck {
                transport: t.transport,
                port: t.port,
                answers,
                status,
                error,
            });
            ctx.advance(1);
        }
        let not_tested = match &audit {
            Some(a) => a.not_tested(),
            None => Some(NotTested::NoAnswer),
        };
        let mut out = AuditOutput {
            uri: self.uri.to_string(),
            server,
            authenticated,
            status: Status::Ok,
            not_tested,
            stream_error: stream_error.or(no_audit),
            audit,
            transports,
        };
        out.status = out.judge();
        Ok(out)
    }
}

impl AuditOutput {
    fn judge(&self) -> Status {
        let Some(a) = &self.audit else {
            return Status::Blocked;
        };
        if a.unauthenticated == Unauthenticated::Timeout && a.allocate.is_none() {
            return Status::Blocked;
        }
        if !a.release_is_clean() || a.worst().is_some_and(|s| s >= Severity::Medium) {
            return Status::Degraded;
        }
        if a.unauthenticated == Unauthenticated::Timeout && a.allocate == Some(PeerOutcome::Timeout)
        {
            return Status::Blocked;
        }
        if self.not_tested.is_some() {
            return Status::Degraded;
        }
        Status::Ok
    }
}

fn candidates(n: usize) -> String {
    if n == 1 {
        "1 candidate".into()
    } else {
        format!("{n} candidates")
    }
}

fn outcome_mark(o: &PeerOutcome) -> Mark {
    match o {
        PeerOutcome::Granted => Mark::new("granted", Tone::Bad),
        PeerOutcome::Refused { .. } => Mark::new("refused", Tone::Good),
        PeerOutcome::Timeout => Mark::new("no answer", Tone::Warn),
        PeerOutcome::NotTried => Mark::new("not tried", Tone::Neutral),
        PeerOutcome::Untestable { .. } => Mark::new("untestable", Tone::Neutral),
    }
}

fn outcome_detail(o: &PeerOutcome) -> String {
    match o {
        PeerOutcome::Refused { code, reason } => format!("{code} {reason}"),
        PeerOutcome::Untestable { reason } => reason.clone(),
        _ => String::new(),
    }
}

/// The section of the requests `kind` made toward the `family` allocation. Candidates of the
/// other family refused with 443 (Peer Address Family Mismatch, RFC 8656 §19) are counted on
/// one line; a group that could not be asked at all gives its reason once.
fn peers_section(
    kind: &str,
    family: Family,
    peers: &[PeerResult],
    ipv6_allocated: bool,
) -> Option<Section> {
    let group: Vec<&PeerResult> = peers.iter().filter(|p| p.relay_family == family).collect();
    if group.iter().all(|p| p.outcome == PeerOutcome::NotTried) {
        return None;
    }
    let mut sec = Section::new(format!("{kind} toward the {family} allocation"));
    if let Some(PeerOutcome::Untestable { reason }) = group.first().map(|p| &p.outcome)
        && group
            .iter()
            .all(|p| matches!(p.outcome, PeerOutcome::Untestable { .. }))
    {
        sec.push(Block::Text(format!(
            "{} untestable: {reason}",
            candidates(group.len())
        )));
        return Some(sec.marked(Mark::new("untestable", Tone::Neutral)));
    }
    let mismatch = |p: &PeerResult| {
        matches!(p.outcome, PeerOutcome::Refused { code: 443, .. })
            && Family::of_socket(&p.candidate.peer) != family
    };
    sec.push(Block::Table {
        header: columns(["peer", "category", "encoding", "answer", "detail"]),
        rows: group
            .iter()
            .filter(|p| !mismatch(p))
            .map(|p| {
                let c = &p.candidate;
                let mut detail = outcome_detail(&p.outcome);
                if let Some(b) = c.bypass {
                    detail = if detail.is_empty() {
                        format!("[{b}]")
                    } else {
                        format!("{detail} [{b}]")
                    };
                }
                vec![
                    Cell::from(c.peer.ip().to_string()),
                    Cell::from(c.category.to_string()),
                    Cell::from(c.encoding.to_string()),
                    Cell::from(outcome_mark(&p.outcome)),
                    Cell::from(detail),
                ]
            })
            .collect(),
    });
    let n = group.iter().filter(|p| mismatch(p)).count();
    if n > 0 {
        let why = if family == Family::Ipv4 && ipv6_allocated {
            "asked again toward the IPv6 allocation"
        } else {
            "this allocation cannot test them"
        };
        sec.push(Block::Text(format!(
            "{} of the other family: refused 443 ({why})",
            candidates(n)
        )));
    }
    Some(sec)
}

fn server_fields(r: &AuditOutput) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = Vec::new();
    let mut add = |k: &str, v: String| f.push((k.into(), v));
    if let Some(e) = &r.stream_error {
        add("stream", e.clone());
    }
    let Some(a) = &r.audit else {
        return f;
    };
    add("transport", a.transport.to_string());
    if let Some(s) = &a.software {
        add("software", s.clone());
    }
    if let Some(s) = &a.realm {
        add("realm", s.clone());
    }
    add(
        "binding",
        if a.binding_answered {
            "answered"
        } else {
            "no answer"
        }
        .into(),
    );
    add(
        "unauth alloc",
        match &a.unauthenticated {
            Unauthenticated::Challenge => "401 with REALM and NONCE (as it should)".into(),
            Unauthenticated::Allocated => "ALLOCATED WITHOUT CREDENTIALS (open relay)".into(),
            other => other.to_string(),
        },
    );
    if let Some(o) = &a.allocate {
        add("allocate", o.to_string());
    }
    if let Some(rel) = a.relayed {
        add("relayed", rel.to_string());
    }
    if let Some(o) = &a.allocate_ipv6 {
        let note = match o {
            PeerOutcome::Refused { code: 440, .. } => " (the server has no IPv6 relay address)",
            _ => "",
        };
        add("allocate v6", format!("{o}{note}"));
    }
    if let Some(rel) = a.relayed_ipv6 {
        add("relayed v6", rel.to_string());
    }
    if a.release != Release::NotNeeded || a.release_ipv6 == Release::NotNeeded {
        add("release", words::release(&a.release));
    }
    if a.release_ipv6 != Release::NotNeeded {
        add("release v6", words::release(&a.release_ipv6));
    }
    f
}

fn severity_tone(s: Severity) -> Tone {
    match s {
        Severity::Info | Severity::Low => Tone::Neutral,
        Severity::Medium => Tone::Warn,
        Severity::High | Severity::Critical => Tone::Bad,
    }
}

impl Report for AuditOutput {
    const SCHEMA: &'static str = "stunmap.audit/1";

    fn outcome(&self) -> Outcome {
        match self.status {
            Status::Ok => Outcome::Ok,
            Status::Degraded | Status::Uncertain | Status::Skipped => Outcome::Degraded,
            Status::Blocked => Outcome::Blocked,
        }
    }

    fn document(&self, run: &RunInfo) -> Doc {
        let worst = self.audit.as_ref().and_then(|a| {
            a.findings
                .first()
                .filter(|f| f.severity() >= Severity::Medium)
        });
        let (headline, mark_) = match (&self.audit, worst, &self.not_tested) {
            (None, _, _) => (
                format!(
                    "No audit: {}",
                    self.stream_error.as_deref().unwrap_or("no answer")
                ),
                mark(Status::Blocked),
            ),
            (Some(a), Some(f), _) => {
                let more = a
                    .findings
                    .iter()
                    .filter(|x| x.severity() >= Severity::Medium)
                    .count()
                    .saturating_sub(1);
                let mut h = f.finding.summary.clone();
                if more > 0 {
                    h.push_str(&format!(" (and {more} more findings)"));
                }
                (
                    h,
                    Mark::new(f.severity().as_str(), severity_tone(f.severity())),
                )
            }
            (Some(_), None, Some(why)) if self.status == Status::Blocked => (
                format!("No answer from the TURN server; relaying not tested ({why})"),
                mark(Status::Blocked),
            ),
            (Some(_), None, Some(why)) => (
                format!("Relaying not tested: {why}"),
                Mark::new("untested", Tone::Warn),
            ),
            (Some(a), None, None) if !a.release_is_clean() => (
                "No internal address relayed; an allocation was NOT confirmed released".into(),
                mark(Status::Degraded),
            ),
            (Some(a), None, None) => (
                format!(
                    "No internal address relayed ({} requests answered, none granted)",
                    a.peers_answered()
                ),
                mark(Status::Ok),
            ),
        };
        let mut doc = Doc::new("stunmap audit", headline);
        doc.mark = Some(mark_);
        doc.summary.push(format!(
            "{} ({}), {}, exit {}",
            self.uri,
            self.server,
            secs(run.elapsed_seconds),
            run.exit_code.code()
        ));
        if let Some(why) = &self.not_tested {
            let any_finding = self.audit.as_ref().is_some_and(|a| !a.findings.is_empty());
            doc.summary.push(if any_finding {
                "the findings below say nothing about relaying to internal addresses".into()
            } else {
                "nothing is known about relaying to internal addresses".into()
            });
            if *why == NotTested::NoCredentials {
                doc.summary.push(
                    "give credentials (--user with STUNMAP_TURN_PASSWORD, or a REST secret) to audit relaying"
                        .into(),
                );
            }
        }
        doc.push(Section::new("Server").block(Block::Fields(server_fields(self))));
        if let Some(a) = &self.audit {
            doc.push(
                Section::new("Findings").block(Block::Fixes(
                    a.findings
                        .iter()
                        .map(|f| {
                            let mut title = format!("[{}] {}", f.severity(), f.finding.summary);
                            if !f.peers.is_empty() {
                                title.push_str(&format!(" (granted: {})", f.peers.join(", ")));
                            }
                            FixItem::problem(title, f.fix())
                        })
                        .collect(),
                )),
            );
            let ipv6_allocated = a.allocate_ipv6 == Some(PeerOutcome::Granted);
            for family in [Family::Ipv4, Family::Ipv6] {
                for (kind, list) in [
                    ("CreatePermission", &a.permissions),
                    ("ChannelBind", &a.channel_binds),
                ] {
                    if let Some(s) = peers_section(kind, family, list, ipv6_allocated) {
                        doc.push(s);
                    }
                }
            }
        }
        doc.push(
            Section::new("Transports (unauthenticated Allocate)").block(Block::Table {
                header: columns(["transport", "port", "answer", "detail"]),
                rows: self
                    .transports
                    .iter()
                    .map(|t| {
                        let (m, detail) = match (&t.status, &t.error) {
                            (Some(AllocateStatus::AuthRequired), _) => {
                                (Mark::new("answers", Tone::Good), "401".to_string())
                            }
                            (Some(AllocateStatus::Allocated), _) => (
                                Mark::new("answers", Tone::Bad),
                                "allocated without credentials".into(),
                            ),
                            (Some(AllocateStatus::Rejected { code, reason }), _) => {
                                (Mark::new("answers", Tone::Good), format!("{code} {reason}"))
                            }
                            (_, Some(e)) => (Mark::new("no", Tone::Neutral), e.clone()),
                            _ => (Mark::new("no answer", Tone::Neutral), String::new()),
                        };
                        vec![
                            Cell::from(t.transport.as_str()),
                            Cell::from(t.port.to_string()),
                            Cell::from(m),
                            Cell::from(detail),
                        ]
                    })
                    .collect(),
            }),
        );
        doc
    }

    fn metrics(&self, run: &RunInfo, w: &mut Writer) -> bool {
        run_facts(w, "audit", run);
        let server = self.server.to_string();
        let l = [("server", server.as_str())];
        w.gauge(
            "stunmap_audit_relaying_tested",
            "1 when requests toward internal candidates were answered, so the findings cover relaying.",
            &l,
            flag(self.not_tested.is_none()),
        );
        w.family(
            "stunmap_audit_findings",
            "gauge",
            "Findings of the audit by severity.",
        );
        for s in [
            Severity::Critical,
            Severity::High,
            Severity::Medium,
            Severity::Low,
            Severity::Info,
        ] {
            let n = self.audit.as_ref().map_or(0, |a| {
                a.findings.iter().filter(|f| f.severity() == s).count()
            });
            w.sample(
                "stunmap_audit_findings",
                &[l[0], ("severity", s.as_str())],
                n as f64,
            );
        }
        if let Some(a) = &self.audit {
            w.family(
                "stunmap_audit_requests",
                "gauge",
                "Requests toward candidate peers by answer: granted, refused, timeout, untestable, not-tried.",
            );
            let all: Vec<&PeerResult> = a.permissions.iter().chain(&a.channel_binds).collect();
            for (word, pick) in [
                (
                    "granted",
                    (|o| matches!(o, PeerOutcome::Granted)) as fn(&PeerOutcome) -> bool,
                ),
                ("refused", |o| matches!(o, PeerOutcome::Refused { .. })),
                ("timeout", |o| matches!(o, PeerOutcome::Timeout)),
                ("untestable", |o| {
                    matches!(o, PeerOutcome::Untestable { .. })
                }),
                ("not-tried", |o| matches!(o, PeerOutcome::NotTried)),
            ] {
                let n = all.iter().filter(|p| pick(&p.outcome)).count();
                w.sample(
                    "stunmap_audit_requests",
                    &[l[0], ("answer", word)],
                    n as f64,
                );
            }
            w.gauge(
                "stunmap_audit_released",
                "1 when neither allocation can be left on the server.",
                &l,
                flag(a.release_is_clean()),
            );
            w.gauge(
                "stunmap_audit_open_relay",
                "1 when the server allocated without credentials.",
                &l,
                flag(a.unauthenticated == Unauthenticated::Allocated),
            );
        }
        true
    }
}
