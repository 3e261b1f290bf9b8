//! `stunmap serve --metrics ADDR`: a probe server for fleets, in the manner of Prometheus'
//! blackbox_exporter. `GET /probe?module=NAME&target=IP` runs a whole check of the module's
//! profile (with every profile name pointed at IP when a target is given) and answers with
//! its metrics plus `probe_success` and `probe_duration_seconds`; `GET /metrics` exposes
//! stunmap's own counters (checks run, queued, cancelled, refused; HTTP answers and
//! connections; the reflector's requests). A branch-office probe is then one more scrape job
//! of an existing Prometheus.
//!
//! A probe server sends traffic where a requester says, so it is built not to be turned
//! against its owner:
//! - [`http`]: hyper with its limits (head size and count, head timeout, a connection cap
//!   taken before `accept`, back-off on a failed `accept`, a write deadline); no error of
//!   one connection ends the server.
//! - `probes::probe_server`: every parameter and header has a range; optional bearer or Basic
//!   authorisation; the `target` allow-list (loopback, unspecified, link-local, multicast,
//!   broadcast and this host's own addresses refused unless allowed); TURN credentials only
//!   toward addresses the module's profile publishes, unless `--probe-credentials-for`.
//! - [`probe`]: a bounded queue (503 when full) and checks cancelled when their client
//!   leaves.
//!
//! Answers are the classic Prometheus text format, or OpenMetrics when the scraper asks for
//! it (`crate::report::prom`).

mod args;
mod counters;
mod http;
mod log;
mod probe;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use probes::probe_server::published_turn_addresses;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use args::Policy;
pub(crate) use args::ProbeArgs;
use probe::Module;

use crate::app::Stop;
use crate::check::plan::CheckConfig;
use crate::report::prom::Writer;
use crate::serve::ServeStats;

/// The module `/probe` runs without `module=`.
const DEFAULT_MODULE: &str = "netbird-cloud";

/// Everything the server needs.
pub(crate) struct MetricsServer {
    modules: BTreeMap<String, Module>,
    default_module: String,
    /// The reflector's counters, when it runs beside.
    reflector: Option<Arc<ServeStats>>,
    policy: Policy,
    started: f64,
    counters: counters::Counters,
    /// Tickets: checks running plus requests waiting.
    admission: Arc<Semaphore>,
    /// Checks running.
    slots: Arc<Semaphore>,
    /// Fired when the server stops: running checks are interrupted.
    stopping: Stop,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("modules", &self.modules.keys().collect::<Vec<_>>())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// A server for `modules` under the flags' policy (usage errors exit 64). Must be called
    /// inside the runtime.
    pub(crate) fn new(
        modules: BTreeMap<String, CheckConfig>,
        args: &ProbeArgs,
        reflector: Option<Arc<ServeStats>>,
    ) -> Result<Self> {
        let policy = args.policy(&modules)?;
        let default_module = if modules.contains_key(DEFAULT_MODULE) {
            DEFAULT_MODULE.to_string()
        } else {
            modules.keys().next().cloned().unwrap_or_default()
        };
        let modules = modules
            .into_iter()
            .map(|(name, cfg)| {
                let module = Module {
                    published: published_turn_addresses(&cfg.profile),
                    credentials_for_target: policy.credentials_for.contains(&name),
                    cfg,
                };
                (name, module)
            })
            .collect();
        let limits = policy.limits;
        Ok(MetricsServer {
            modules,
            default_module,
            reflector,
            policy,
            started: crate::app::unix_now(),
            counters: counters::Counters::default(),
            admission: Arc::new(Semaphore::new(limits.concurrency + limits.queue)),
            slots: Arc::new(Semaphore::new(limits.concurrency)),
            stopping: Stop::detached(None),
        })
    }

    fn module_list(&self) -> String {
        self.modules.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    fn index(&self) -> String {
        format!(
            "stunmap {}\n/probe?module=NAME[&target=IP]  run a check (modules: {})\n/metrics  stunmap's own counters",
            env!("CARGO_PKG_VERSION"),
            self.module_list()
        )
    }

    fn self_metrics(&self, w: &mut Writer) {
        let names: Vec<&str> = self.modules.keys().map(String::as_str).collect();
        counters::exposition(
            w,
            &self.counters,
            &names,
            self.started,
            self.reflector.as_deref(),
        );
    }

    /// The line `serve` prints when the server is up.
    pub(crate) fn banner(&self, addr: SocketAddr) -> String {
        format!(
            "stunmap serve: metrics on http://{addr}/metrics, probes on /probe?module={}{}",
            self.modules.keys().cloned().collect::<Vec<_>>().join("|"),
            if self.policy.auth.required() {
                " (authorisation required)"
            } else {
                ""
            }
        )
    }
}

/// Bind `addr` for the metrics server.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for --metrics"))
}

/// Serve HTTP on `listener` until `stop` fires, then finish what is open (a few seconds at
/// most). Never ends early: no error of a connection or of `accept` stops the server.
pub(crate) async fn run(listener: TcpListener, server: Arc<MetricsServer>, stop: engine::Cancel) {
    http::serve(listener, server, stop).await;
}
