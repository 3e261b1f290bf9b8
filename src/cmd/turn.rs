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
use engine::Cancel;
use engine::stream::{Security, StreamOptions, StreamRun, run_stream};
use engine::tcp::ConnectOutcome;
use probes::Transport;
use probes::turn::allocate::{AllocateConfig, AllocateProbe, AllocateReport, AllocateStatus};
use probes::turn::auth::{Credentials, Password, SharedSecret};
use probes::turn::session::{Release, SessionConfig};
use probes::turn::uri::{TurnUri, UriHost};
use probes::{LocalSocket, Retransmit};
use serde::Serialize;

use crate::exit::{Outcome, usage};
use crate::target::{FamilyChoice, resolve};

/// Environment variable holding the password of `--user`.
pub(crate) const PASSWORD_ENV: &str = "STUNMAP_TURN_PASSWORD";
/// Environment variable holding the TURN REST shared secret.
pub(crate) const SECRET_ENV: &str = "STUNMAP_TURN_SECRET";

/// Credential and TLS flags shared by `turn` and `relay`.
#[derive(Debug, clap::Args)]
pub(crate) struct AuthArgs {
    /// User name (long-term credentials; with a shared secret, the user part of the TURN REST
    /// user name EXPIRY:USER). The password comes from $STUNMAP_TURN_PASSWORD or
    /// --password-file, the REST secret from $STUNMAP_TURN_SECRET or --secret-file.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// File whose first line is the password of --user.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// File whose first line is the TURN REST shared secret (coturn static-auth-secret).
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// Validity of derived TURN REST credentials, seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    rest_ttl: u64,
    /// Extra CA certificates (PEM) trusted for turns:, besides the webpki roots.
    #[arg(long, value_name = "FILE")]
    pub(crate) ca_file: Option<PathBuf>,
}

fn first_line(path: &PathBuf, what: &str) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        usage(format!(
            "cannot read the {what} file {}: {e}",
            path.display()
        ))
    })?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

impl AuthArgs {
    /// The credentials the flags and environment describe (`None`: probe without).
    pub(crate) fn credentials(&self) -> Result<Option<Credentials>> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let secret = match &self.secret_file {
            Some(f) => Some(first_line(f, "secret")?),
            None => env(SECRET_ENV),
        };
        let password = match &self.password_file {
            Some(f) => Some(first_line(f, "password")?),
            None => env(PASSWORD_ENV),
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
        let host = match &uri.host {
            UriHost::Ip(ip) => ip.to_string(),
            UriHost::Name(n) => n.clone(),
        };
        Security::tls(&host, self.ca_file.as_deref()).map_err(|e| usage(e.to_string()))
    }
}

/// Parse a URI as a usage error when bad.
pub(crate) fn parse_uri(text: &str) -> Result<TurnUri> {
    TurnUri::parse(text).map_err(|e| usage(e.to_string()))
}

/// The server's address (the first of the host's addresses).
pub(crate) async fn server_addr(uri: &TurnUri) -> Result<SocketAddr> {
    let host = match &uri.host {
        UriHost::Ip(ip) => ip.to_string(),
        UriHost::Name(n) => n.clone(),
    };
    let ips = resolve(&host, FamilyChoice::Any).await?;
    let ip = ips.first().copied().context("the host has no address")?;
    Ok(SocketAddr::new(ip, uri.port))
}

/// The session settings for `transport`: UDP retransmits on the RFC 8489 schedule capped at
/// `timeout`; streams send once and wait `timeout`.
pub(crate) fn session_config(
    server: SocketAddr,
    transport: Transport,
    credentials: Option<Credentials>,
    timeout: Duration,
) -> SessionConfig {
    let local = if transport.is_stream() {
        LocalSocket::Default
    } else {
        LocalSocket::Private(0)
    };
    let mut c = SessionConfig::new(server, transport, local);
    c.credentials = credentials;
    c.retransmit = if transport.is_stream() {
        Retransmit {
            rto: timeout,
            rc: 1,
            rm: 1,
            deadline: Some(timeout),
        }
    } else {
        Retransmit {
            deadline: Some(timeout),
            ..Retransmit::default()
        }
    };
    c
}

/// Flags of `stunmap turn`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The server: turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT] (RFC 7065).
    #[arg(value_name = "URI")]
    uri: String,
    #[command(flatten)]
    auth: AuthArgs,
    /// Milliseconds a request may take (retransmissions included) before it counts as lost.
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    timeout: u64,
    /// LIFETIME to request, seconds (RFC 8656 §7.1); the allocation is released at the end
    /// anyway.
    #[arg(long, value_name = "SECS")]
    lifetime: Option<u32>,
    /// Only Allocate and release; skip the CreatePermission and ChannelBind checks.
    #[arg(long)]
    no_exercise: bool,
    /// Machine-readable output (schema `stunmap.turn/1`).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    schema: &'static str,
    uri: String,
    server: SocketAddr,
    transport: Transport,
    interrupted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect: Option<ConnectOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_error: Option<String>,
    result: Option<AllocateReport>,
}

pub(crate) fn run(args: Args) -> Result<Outcome> {
    let uri = parse_uri(&args.uri)?;
    if args.timeout == 0 {
        return Err(usage("--timeout must be at least 1 ms"));
    }
    let credentials = args.auth.credentials()?;
    let security = args.auth.security(&uri)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = server_addr(&uri).await?;
        let (handle, cancel) = Cancel::new();
        engine::driver::cancel_on_signals(handle);
        let timeout = Duration::from_millis(args.timeout);
        let mut session = session_config(server, uri.transport, credentials, timeout);
        session.lifetime = args.lifetime;
        let probe = AllocateProbe::new(
            AllocateConfig {
                session,
                exercise: !args.no_exercise,
            },
            crate::ids::source(),
        );
        let mut report = Report {
            schema: "stunmap.turn/1",
            uri: uri.to_string(),
            server,
            transport: uri.transport,
            interrupted: false,
            connect: None,
            tls: None,
            stream_error: None,
            result: None,
        };
        if uri.transport.is_stream() {
            let run: StreamRun<AllocateReport> =
                run_stream(probe, server, security, StreamOptions::default(), cancel).await;
            report.interrupted = run.interrupted;
            report.connect = Some(run.connect);
            report.tls = run.tls;
            report.stream_error = run.error;
            report.result = run.output;
        } else {
            let (result, r) = engine::run_one(probe, None, cancel).await?;
            report.interrupted = r.interrupted;
            report.result = result;
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_human(&report);
        }
        Ok(outcome(&report))
    })
}

fn outcome(r: &Report) -> Outcome {
    if r.interrupted {
        return Outcome::Interrupted;
    }
    let Some(res) = &r.result else {
        return Outcome::Blocked;
    };
    if !res.release.is_clean() {
        return Outcome::Degraded;
    }
    match res.status {
        AllocateStatus::Allocated | AllocateStatus::AuthRequired => Outcome::Ok,
        AllocateStatus::Rejected { .. } => Outcome::Degraded,
        AllocateStatus::Timeout | AllocateStatus::Cancelled => Outcome::Blocked,
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".into(),
        |d| format!("{:.2} ms", d.as_secs_f64() * 1e3),
    )
}

fn print_human(r: &Report) {
    println!("{} ({}, {})", r.uri, r.server, r.transport);
    if let Some(c) = &r.connect {
        println!("  connect      {c:?}");
    }
    if let Some(t) = &r.tls {
        println!("  tls          {t}");
    }
    if let Some(e) = &r.stream_error {
        println!("  stream       {e}");
    }
    let Some(res) = &r.result else {
        println!("  no answer");
        return;
    };
    let status = match &res.status {
        AllocateStatus::Allocated => "allocated".to_string(),
        AllocateStatus::AuthRequired => {
            "TURN server present (401 with REALM and NONCE); no credentials given".to_string()
        }
        AllocateStatus::Rejected { code, reason } => format!("rejected: {code} {reason}"),
        AllocateStatus::Timeout => "no answer".to_string(),
        AllocateStatus::Cancelled => "cancelled".to_string(),
    };
    println!("  status       {status}");
    if let Some(s) = &res.software {
        println!("  software     {s}");
    }
    if let Some(s) = &res.realm {
        println!("  realm        {s}");
    }
    if let Some(i) = res.integrity {
        println!("  integrity    {i:?}");
    }
    if let Some(a) = res.relayed {
        println!("  relayed      {a}");
    }
    if let Some(a) = res.mapped {
        println!("  mapped       {a}");
    }
    if let Some(l) = res.lifetime {
        println!("  lifetime     {l} s");
    }
    if res.allocate_rtt.is_some() {
        println!("  allocate rtt {}", secs(res.allocate_rtt));
    }
    if let Some(p) = &res.permission {
        println!("  permission   {p:?}");
    }
    if let Some(c) = &res.channel_bind {
        println!("  channel      {c:?}");
    }
    let release = match &res.release {
        Release::NotNeeded => "nothing to release".to_string(),
        Release::Released => "released (Refresh LIFETIME 0)".to_string(),
        Release::AlreadyGone => "released (server had already deleted it)".to_string(),
        Release::Failed { code, reason } => {
            format!("NOT RELEASED: {code} {reason} (it expires with its lifetime)")
        }
        Release::Timeout => "NOT CONFIRMED: no answer to Refresh LIFETIME 0".to_string(),
    };
    println!("  release      {release}");
}
