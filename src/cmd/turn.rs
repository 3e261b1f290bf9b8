//! `stunmap turn`: probe one TURN server (RFC 8656) over UDP, TCP or TLS: is a TURN server
//! there (a 401 with REALM and NONCE proves it), do the credentials work, what relayed and
//! mapped addresses and lifetime does it grant, and — always — give the allocation back.
//!
//! Passwords and secrets are never taken on the command line: they come from
//! `STUNMAP_TURN_PASSWORD` / `STUNMAP_TURN_SECRET` or from files, and appear in no output.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use engine::stream::Security;
use probes::Transport;
use probes::finding::Status;
use probes::turn::allocate::{AllocateConfig, AllocateProbe, AllocateReport, AllocateStatus};
use probes::turn::auth::{Credentials, Password, SharedSecret};
use probes::turn::uri::{TurnUri, UriHost};
use serde::Serialize;

use super::common::{self, MAX_SECRET_FILE};
use crate::app::{Command, Ctx, OutputArgs, Report, ReportFiles, RunInfo};
use crate::exec::turn::{Connection, TurnRun, no_result, session_config};
use crate::exit::{Outcome, usage};
use crate::report::doc::{Doc, Mark, Section, Tone, duration};
use crate::report::prom::{Writer, flag, run_facts};
use crate::report::{doc::Block, words};
use crate::target::{FamilyChoice, resolve};

/// Environment variable holding the password of `--user`.
pub(crate) const PASSWORD_ENV: &str = "STUNMAP_TURN_PASSWORD";
/// Environment variable holding the TURN REST shared secret.
pub(crate) const SECRET_ENV: &str = "STUNMAP_TURN_SECRET";

/// The longest request timeout accepted, milliseconds.
pub(crate) const MAX_TIMEOUT_MS: u64 = 60_000;

/// Credential and TLS flags shared by `turn`, `relay`, `audit` and `pair`.
#[derive(Debug, clap::Args)]
pub(crate) struct AuthArgs {
    /// User name (long-term credentials; with a shared secret, the user part of the TURN REST
    /// user name EXPIRY:USER). The password comes from $STUNMAP_TURN_PASSWORD or
    /// --password-file, the REST secret from $STUNMAP_TURN_SECRET or --secret-file.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// File whose first line is the password of --user (at most 64 KiB).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// File whose first line is the TURN REST shared secret (coturn static-auth-secret; at
    /// most 64 KiB).
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// Validity of derived TURN REST credentials, seconds (1 to 31536000).
    #[arg(long, default_value_t = 3600, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    rest_ttl: u64,
    /// Extra CA certificates (PEM) trusted for turns:, besides the webpki roots.
    #[arg(long, value_name = "FILE")]
    pub(crate) ca_file: Option<PathBuf>,
}

impl AuthArgs {
    /// The credentials the flags and environment describe (`None`: probe without).
    pub(crate) fn credentials(&self) -> Result<Option<Credentials>> {
        let line = |flag: &str, f: &PathBuf| common::read_first_line(flag, f, MAX_SECRET_FILE);
        let secret = match &self.secret_file {
            Some(f) => Some(line("--secret-file", f)?),
            None => common::env(SECRET_ENV),
        };
        let password = match &self.password_file {
            Some(f) => Some(line("--password-file", f)?),
            None => common::env(PASSWORD_ENV),
        };
        let Some(user) = &self.user else {
            if self.secret_file.is_some() || self.password_file.is_some() {
                return Err(usage("--password-file and --secret-file need --user"));
            }
            return Ok(None);
        };
        match (secret, password) {
            (Some(_), Some(_)) => Err(usage(format!(
                "both a password and a REST secret are set; keep one ({PASSWORD_ENV}/--password-file or {SECRET_ENV}/--secret-file)"
            ))),
            (Some(secret), None) => {
                let secret =
                    SharedSecret::new(secret.into_bytes()).map_err(|e| usage(e.to_string()))?;
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .context("system clock before 1970")?
                    .as_secs();
                Credentials::rest(&secret, user, now.saturating_add(self.rest_ttl))
                    .map(Some)
                    .map_err(|e| usage(e.to_string()))
            }
            (None, Some(p)) => Ok(Some(Credentials::new(user.clone(), Password::new(p)))),
            (None, None) => Err(usage(format!(
                "--user needs a password ({PASSWORD_ENV} or --password-file) or a REST secret ({SECRET_ENV} or --secret-file)"
            ))),
        }
    }

    /// TLS settings for `uri`.
    pub(crate) fn security(&self, uri: &TurnUri) -> Result<Security> {
        if uri.transport != Transport::Tls {
            return Ok(Security::Plain);
        }
        Security::tls(&host_of(uri), self.ca_file.as_deref()).map_err(|e| usage(e.to_string()))
    }
}

fn host_of(uri: &TurnUri) -> String {
    match &uri.host {
        UriHost::Ip(ip) => ip.to_string(),
        UriHost::Name(n) => n.clone(),
    }
}

/// Parse a URI as a usage error when bad.
pub(crate) fn parse_uri(text: &str) -> Result<TurnUri> {
    TurnUri::parse(text).map_err(|e| usage(e.to_string()))
}

/// The server's address (the first of the host's addresses).
pub(crate) async fn server_addr(uri: &TurnUri) -> Result<SocketAddr> {
    let ips = resolve(&host_of(uri), FamilyChoice::Any).await?;
    let ip = ips.first().copied().context("the host has no address")?;
    Ok(SocketAddr::new(ip, uri.port))
}

/// Flags of `stunmap turn`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit status: 0 allocated and released, or a TURN server found (401) without credentials;
1 refused (wrong credentials, quota …) or the release not confirmed; 2 no answer;
64 bad flags; 130 interrupted.")]
pub(crate) struct Args {
    /// The server: turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT] (RFC 7065).
    #[arg(value_name = "URI")]
    uri: String,
    #[command(flatten)]
    auth: AuthArgs,
    /// Milliseconds a request may take (retransmissions included) before it counts as lost
    /// (1 to 60000).
    #[arg(long, default_value_t = 3000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_MS))]
    timeout: u64,
    /// LIFETIME to request, seconds (RFC 8656 §7.1; 1 to 86400); the allocation is released
    /// at the end anyway.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..=86_400))]
    lifetime: Option<u32>,
    /// Only Allocate and release; skip the CreatePermission and ChannelBind checks.
    #[arg(long)]
    no_exercise: bool,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    files: ReportFiles,
}

/// A planned TURN probe.
#[derive(Debug)]
struct Turn {
    uri: TurnUri,
    credentials: Option<Credentials>,
    security: Security,
    timeout: Duration,
    lifetime: Option<u32>,
    exercise: bool,
}

/// The plan of `stunmap turn` (pure: flags and files, no network).
fn plan(args: &Args) -> Result<Turn> {
    let uri = parse_uri(&args.uri)?;
    Ok(Turn {
        credentials: args.auth.credentials()?,
        security: args.auth.security(&uri)?,
        uri,
        timeout: Duration::from_millis(args.timeout),
        lifetime: args.lifetime,
        exercise: !args.no_exercise,
    })
}

pub(crate) fn run(args: Args) -> Result<Outcome> {
    let turn = plan(&args)?;
    crate::app::run(turn, &args.output, &args.files, "requests")
}

/// The report of `stunmap turn` (schema `stunmap.turn/1`).
#[derive(Debug, Serialize)]
pub(crate) struct TurnReport {
    uri: String,
    server: SocketAddr,
    transport: Transport,
    /// What the run shows: ok (allocated and released, or a TURN server asking for
    /// credentials), degraded (refused, or the release not confirmed), blocked (no answer),
    /// skipped (stopped before an answer).
    status: Status,
    #[serde(flatten)]
    connection: Connection,
    result: Option<AllocateReport>,
    /// Why there is no result, in words.
    #[serde(skip)]
    no_result: Option<String>,
}

impl Command for Turn {
    type Report = TurnReport;

    async fn execute(self, ctx: Ctx) -> Result<TurnReport> {
        let server = server_addr(&self.uri).await?;
        let transport = self.uri.transport;
        let mut session = session_config(server, transport, self.credentials, self.timeout);
        session.lifetime = self.lifetime;
        let probe = AllocateProbe::new(
            AllocateConfig {
                session,
                exercise: self.exercise,
            },
            crate::ids::source(),
        );
        ctx.status("allocating");
        let run: TurnRun<AllocateReport> =
            crate::exec::turn::run(probe, server, transport, self.security, ctx.cancel.clone())
                .await?;
        Ok(TurnReport {
            uri: self.uri.to_string(),
            server,
            transport,
            status: status(run.output.as_ref()),
            no_result: run.output.is_none().then(|| no_result(&run)),
            connection: run.connection,
            result: run.output,
        })
    }
}

/// What an Allocate probe's result shows.
fn status(result: Option<&AllocateReport>) -> Status {
    let Some(r) = result else {
        return Status::Blocked;
    };
    if !r.release.is_clean() {
        return Status::Degraded;
    }
    match r.status {
        AllocateStatus::Allocated | AllocateStatus::AuthRequired => Status::Ok,
        AllocateStatus::Rejected { .. } => Status::Degraded,
        AllocateStatus::Timeout => Status::Blocked,
        AllocateStatus::Cancelled => Status::Skipped,
    }
}

/// The mark of a TURN-style run's status: a skipped run reads "not probed".
pub(crate) fn mark(s: Status) -> Mark {
    let word = match s {
        Status::Skipped => "not probed",
        other => other.as_str(),
    };
    Mark::new(word, Tone::of(s))
}

fn headline(r: &TurnReport) -> String {
    let Some(res) = &r.result else {
        return format!(
            "No TURN answer: {}",
            r.no_result.as_deref().unwrap_or("no result")
        );
    };
    match &res.status {
        AllocateStatus::Allocated if res.release.is_clean() => {
            "Allocation granted and released".into()
        }
        AllocateStatus::Allocated => "Allocation granted; its release was NOT confirmed".into(),
        AllocateStatus::AuthRequired => {
            "TURN server present: it asks for credentials (401 with REALM and NONCE)".into()
        }
        AllocateStatus::Rejected { code, reason } => format!("Allocation refused: {code} {reason}"),
        AllocateStatus::Timeout => "No answer from the TURN server".into(),
        AllocateStatus::Cancelled => "Not probed: stopped before the server answered".into(),
    }
}

/// The fields of an Allocate result, shared with `relay`.
pub(crate) fn allocation_fields(res: &AllocateReport) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = vec![("status".into(), res.status.to_string())];
    let mut add = |k: &str, v: String| f.push((k.into(), v));
    if let Some(s) = &res.software {
        add("software", s.clone());
    }
    if let Some(s) = &res.realm {
        add("realm", s.clone());
    }
    if let Some(i) = res.integrity {
        add("integrity", i.to_string());
    }
    if let Some(a) = res.password_algorithm {
        add("password algorithm", a.to_string());
    }
    if let Some(a) = res.relayed {
        add("relayed", a.to_string());
    }
    if let Some(a) = res.mapped {
        add("mapped", a.to_string());
    }
    if let Some(l) = res.lifetime {
        add("lifetime", format!("{l} s"));
    }
    if let Some(t) = res.allocate_rtt {
        add("allocate rtt", duration(t));
    }
    if let Some(p) = &res.permission {
        add("permission", words::turn_step(p));
    }
    if let Some(c) = &res.channel_bind {
        add("channel", words::turn_step(c));
    }
    if res.stale_nonce_retries > 0 {
        add("stale nonces", res.stale_nonce_retries.to_string());
    }
    if res.rejected_integrity > 0 {
        add(
            "ignored",
            format!(
                "{} responses with a missing or wrong integrity",
                res.rejected_integrity
            ),
        );
    }
    add("release", words::release(&res.release));
    f
}

/// Connection lines of a TURN run over TCP/TLS (none over UDP).
pub(crate) fn connection_fields(c: &Connection) -> Vec<(String, String)> {
    let mut f = Vec::new();
    if let Some(c) = &c.connect {
        f.push(("connect".into(), words::connect(c)));
    }
    if let Some(t) = &c.tls {
        f.push(("tls".into(), t.clone()));
    }
    if let Some(e) = &c.stream_error {
        f.push(("stream".into(), e.clone()));
    }
    f
}

impl Report for TurnReport {
    const SCHEMA: &'static str = "stunmap.turn/1";

    fn outcome(&self) -> Outcome {
        match self.status {
            Status::Ok => Outcome::Ok,
            Status::Degraded | Status::Uncertain => Outcome::Degraded,
            // Stopped before an answer: the runner says 130; nothing was measured.
            Status::Blocked | Status::Skipped => Outcome::Blocked,
        }
    }

    fn document(&self, run: &RunInfo) -> Doc {
        let mut doc = Doc::new("stunmap turn", headline(self));
        doc.mark = Some(mark(self.status));
        doc.summary.push(format!(
            "{} ({}, {}), {}, exit {}",
            self.uri,
            self.server,
            self.transport,
            crate::report::doc::secs(run.elapsed_seconds),
            run.exit_code.code()
        ));
        let mut sec = Section::new("Allocation");
        sec.push(Block::Fields(connection_fields(&self.connection)));
        if let Some(res) = &self.result {
            sec.push(Block::Fields(allocation_fields(res)));
        }
        doc.push(sec);
        doc
    }

    fn metrics(&self, run: &RunInfo, w: &mut Writer) -> bool {
        run_facts(w, "turn", run);
        let server = self.server.to_string();
        let transport = self.transport.as_str();
        let l = [("server", server.as_str()), ("transport", transport)];
        w.family(
            "stunmap_turn_allocation_status",
            "gauge",
            "How Allocate ended: one series per status, 1 for the current one.",
        );
        let current = self.result.as_ref().map(|r| status_word(&r.status));
        for s in [
            "allocated",
            "auth-required",
            "rejected",
            "timeout",
            "cancelled",
        ] {
            let labels = [l[0], l[1], ("status", s)];
            w.sample(
                "stunmap_turn_allocation_status",
                &labels,
                flag(current == Some(s)),
            );
        }
        w.gauge(
            "stunmap_turn_released",
            "1 when no allocation can be left on the server (released, or none was made).",
            &l,
            flag(self.result.as_ref().is_none_or(|r| r.release.is_clean())),
        );
        if let Some(t) = self.result.as_ref().and_then(|r| r.allocate_rtt) {
            w.gauge(
                "stunmap_turn_allocate_rtt_seconds",
                "RTT of the final Allocate transaction.",
                &l,
                t.as_secs_f64(),
            );
        }
        true
    }
}

/// The JSON word of an Allocate status.
fn status_word(s: &AllocateStatus) -> &'static str {
    match s {
        AllocateStatus::Allocated => "allocated",
        AllocateStatus::AuthRequired => "auth-required",
        AllocateStatus::Rejected { .. } => "rejected",
        AllocateStatus::Timeout => "timeout",
        AllocateStatus::Cancelled => "cancelled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use probes::turn::session::Release;

    fn report(status: AllocateStatus, release: Release) -> TurnReport {
        let server: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        TurnReport {
            uri: "turn:192.0.2.1:3478?transport=udp".into(),
            server,
            transport: Transport::Udp,
            status: Status::Ok,
            connection: Connection::default(),
            no_result: None,
            result: Some(AllocateReport {
                server,
                transport: Transport::Udp,
                status,
                software: Some("evil\u{1b}]0;pwned\u{7}".into()),
                realm: None,
                authenticated: true,
                integrity: None,
                password_algorithm: None,
                relayed: None,
                mapped: None,
                lifetime: None,
                allocate_rtt: Some(Duration::from_micros(2800)),
                stale_nonce_retries: 0,
                rejected_integrity: 0,
                permission: None,
                channel_bind: None,
                release,
                cancelled: false,
            }),
        }
    }

    #[test]
    fn the_connection_facts_stand_at_the_top_of_the_json() {
        let mut r = report(AllocateStatus::Allocated, Release::Released);
        r.connection.tls = Some("TLSv1.3".into());
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["tls"], "TLSv1.3");
        // Unset facts are left out, and there is no nested object.
        assert!(
            v.get("connect").is_none() && v.get("stream_error").is_none(),
            "{v}"
        );
        assert!(v.get("connection").is_none(), "{v}");
    }

    #[test]
    fn statuses_follow_what_was_measured() {
        let r = report(AllocateStatus::Allocated, Release::Released);
        assert_eq!(status(r.result.as_ref()), Status::Ok);
        let r = report(AllocateStatus::Allocated, Release::Timeout);
        assert_eq!(status(r.result.as_ref()), Status::Degraded);
        let r = report(AllocateStatus::Cancelled, Release::NotNeeded);
        assert_eq!(status(r.result.as_ref()), Status::Skipped);
        assert_eq!(status(None), Status::Blocked);
    }

    #[test]
    fn the_document_has_words_and_one_time_format() {
        let mut r = report(AllocateStatus::Allocated, Release::Released);
        r.status = status(r.result.as_ref());
        let run = crate::app::RunInfo {
            schema: TurnReport::SCHEMA,
            stunmap_version: "0",
            started_unix_seconds: 0.0,
            elapsed_seconds: 0.5,
            interrupted: false,
            deadline_reached: false,
            exit_code: Outcome::Ok,
        };
        let text = crate::report::human::render(&r.document(&run));
        assert!(
            text.starts_with("OK        Allocation granted and released"),
            "{text}"
        );
        assert!(text.contains("allocate rtt  2.8 ms"), "{text}");
        assert!(
            !text.contains('\u{1b}') && !text.contains("Allocated"),
            "{text}"
        );
    }
}
