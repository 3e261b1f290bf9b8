//! The probe server's flags (flattened into `stunmap serve`) and the settings built from
//! them before the runtime starts (usage errors exit 64).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use probes::probe_server::allow::parse_cidr;
use probes::probe_server::request::valid_module_name;
use probes::probe_server::{AllowList, Auth};

use crate::exit::usage;

/// Environment variable holding the bearer token /probe and /metrics require.
pub(crate) const TOKEN_ENV: &str = "STUNMAP_PROBE_TOKEN";
/// Environment variable holding `USER:PASSWORD` for HTTP Basic authentication.
pub(crate) const BASIC_ENV: &str = "STUNMAP_PROBE_BASIC_AUTH";
/// Longest secret file read.
const MAX_SECRET_FILE: u64 = 4096;

/// Flags of the probe server (`serve --metrics`).
#[derive(Debug, clap::Args)]
pub(crate) struct ProbeArgs {
    /// Addresses /probe?target= may point a check at (CIDR or address; repeatable). Without
    /// it, anything but loopback, unspecified, link-local, multicast, broadcast and this
    /// host's own addresses; the most specific entry decides, so `--probe-allow
    /// 127.0.0.0/8` allows loopback (a lab) and `--probe-allow 0.0.0.0/0` does not.
    #[arg(long, value_name = "CIDR", requires = "metrics")]
    probe_allow: Vec<String>,
    /// Addresses /probe?target= may never point a check at (CIDR or address; repeatable).
    #[arg(long, value_name = "CIDR", requires = "metrics")]
    probe_deny: Vec<String>,
    /// Send the TURN credentials (--user) to a /probe?target= address of this module even
    /// when its profile does not publish that address (repeatable). Without it a target gets
    /// unauthenticated TURN checks: an authenticated Allocate lets whoever answers attack
    /// the password offline.
    #[arg(long, value_name = "MODULE", requires = "metrics")]
    probe_credentials_for: Vec<String>,
    /// File whose first line is a bearer token every request must carry
    /// (`Authorization: Bearer TOKEN`); or $STUNMAP_PROBE_TOKEN.
    #[arg(long, value_name = "FILE", requires = "metrics")]
    probe_token_file: Option<PathBuf>,
    /// File whose first line is USER:PASSWORD for HTTP Basic authentication; or
    /// $STUNMAP_PROBE_BASIC_AUTH. With a token too, either is accepted.
    #[arg(long, value_name = "FILE", requires = "metrics")]
    probe_basic_auth_file: Option<PathBuf>,
    /// Checks /probe runs at once, 1 to 64.
    #[arg(long, default_value_t = 4, value_name = "N", requires = "metrics",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    probe_concurrency: u16,
    /// /probe requests that may wait for a check slot, 0 to 1024; one more is answered 503.
    #[arg(long, default_value_t = 16, value_name = "N", requires = "metrics",
          value_parser = clap::value_parser!(u16).range(0..=1024))]
    probe_queue: u16,
    /// HTTP connections served at once on --metrics, 1 to 4096; more wait to be accepted.
    #[arg(long, default_value_t = 64, value_name = "N", requires = "metrics",
          value_parser = clap::value_parser!(u16).range(1..=4096))]
    metrics_max_connections: u16,
}

/// How many of what the server holds at once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Checks running.
    pub(crate) concurrency: usize,
    /// Requests waiting for a check slot.
    pub(crate) queue: usize,
    /// HTTP connections.
    pub(crate) connections: usize,
}

/// The probe server's policy, validated.
#[derive(Debug)]
pub(crate) struct Policy {
    pub(crate) allow: AllowList,
    pub(crate) auth: Auth,
    pub(crate) credentials_for: Vec<String>,
    pub(crate) limits: Limits,
}

/// A secret from its file flag or, without one, its environment variable (never a flag
/// value, so it shows in no process list).
fn secret(flag: &str, file: Option<&PathBuf>, env: &str) -> Result<Option<String>> {
    match file {
        Some(f) => crate::cmd::common::read_first_line(flag, f, MAX_SECRET_FILE)
            .map(|l| Some(l.trim().to_string())),
        None => Ok(std::env::var(env).ok().filter(|v| !v.trim().is_empty())),
    }
}

impl ProbeArgs {
    /// Check the flags against the modules there are.
    pub(crate) fn policy<T>(&self, modules: &BTreeMap<String, T>) -> Result<Policy> {
        let nets = |flag: &str, v: &[String]| -> Result<Vec<_>> {
            v.iter()
                .map(|s| parse_cidr(s).map_err(|e| usage(format!("{flag}: {e}"))))
                .collect()
        };
        let allow = AllowList::new(
            nets("--probe-allow", &self.probe_allow)?,
            nets("--probe-deny", &self.probe_deny)?,
        );
        for m in &self.probe_credentials_for {
            if !valid_module_name(m) || !modules.contains_key(m) {
                return Err(usage(format!(
                    "--probe-credentials-for {}: not a module (known: {})",
                    crate::report::doc::quoted(m),
                    modules.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let mut auth = Auth::none();
        if let Some(t) = secret(
            "--probe-token-file",
            self.probe_token_file.as_ref(),
            TOKEN_ENV,
        )? {
            auth = auth
                .with_bearer(&t)
                .map_err(|e| usage(format!("probe server token: {e}")))?;
        }
        if let Some(b) = secret(
            "--probe-basic-auth-file",
            self.probe_basic_auth_file.as_ref(),
            BASIC_ENV,
        )? {
            auth = auth
                .with_basic(&b)
                .map_err(|e| usage(format!("probe server basic credentials: {e}")))?;
        }
        Ok(Policy {
            allow,
            auth,
            credentials_for: self.probe_credentials_for.clone(),
            limits: Limits {
                concurrency: usize::from(self.probe_concurrency),
                queue: usize::from(self.probe_queue),
                connections: usize::from(self.metrics_max_connections),
            },
        })
    }
}
