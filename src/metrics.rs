//! `stunmap serve --metrics ADDR`: a probe server for fleets, in the manner of Prometheus'
//! blackbox_exporter. `GET /probe?module=NAME&target=ADDR` runs a whole check of the module's
//! profile (with every profile name pointed at ADDR when a target is given) and answers with
//! its metrics plus `probe_success` and `probe_duration_seconds`; `GET /metrics` exposes
//! stunmap's own counters (probes run, by result; the reflector's requests). A branch-office
//! probe is then one more scrape job of an existing Prometheus.
//!
//! The HTTP side is deliberately small: one request per connection, GET only, a bounded head,
//! timeouts on reading and writing. Probes run at most [`MAX_CONCURRENT`] at once.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use probes::control::ResolveOverride;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Semaphore};

use crate::check::plan::CheckConfig;
use crate::report::prom::Writer;
use crate::serve::ServeStats;

/// Checks running at once; further /probe requests wait (and Prometheus' scrape timeout bounds
/// the wait).
pub(crate) const MAX_CONCURRENT: usize = 4;
/// Longest request head read.
const MAX_HEAD: usize = 8192;

/// Results of the probes run, by module and status.
#[derive(Debug, Default)]
struct Counters {
    probes: Mutex<BTreeMap<(String, &'static str), u64>>,
    probe_seconds: Mutex<BTreeMap<String, f64>>,
    http_requests: AtomicU64,
}

/// Everything the server needs.
pub(crate) struct MetricsServer {
    /// Module name → check template (its profile; the target, when given, is added as
    /// overrides per request).
    pub(crate) modules: BTreeMap<String, CheckConfig>,
    /// The reflector's counters, when it runs beside.
    pub(crate) reflector: Option<Arc<ServeStats>>,
    started: f64,
    counters: Counters,
    slots: Semaphore,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("modules", &self.modules.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    pub(crate) fn new(
        modules: BTreeMap<String, CheckConfig>,
        reflector: Option<Arc<ServeStats>>,
    ) -> Self {
        MetricsServer {
            modules,
            reflector,
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            counters: Counters::default(),
            slots: Semaphore::new(MAX_CONCURRENT),
        }
    }
}

/// Serve HTTP on `listener` until the future is dropped.
pub(crate) async fn run(listener: TcpListener, server: Arc<MetricsServer>) -> Result<()> {
    loop {
        let (stream, _) = listener.accept().await.context("accepting")?;
        let server = server.clone();
        tokio::spawn(async move {
            let _ = handle(stream, &server).await;
        });
    }
}

/// Bind `addr` for the metrics server.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for --metrics"))
}

struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

fn text(status: &'static str, body: impl Into<String>) -> Response {
    Response {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.into(),
    }
}

fn exposition(body: String) -> Response {
    Response {
        status: "200 OK",
        content_type: "text/plain; version=0.0.4; charset=utf-8",
        body,
    }
}

async fn handle(mut stream: TcpStream, server: &MetricsServer) -> Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(buf.get(..n).unwrap_or(&[]));
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() > MAX_HEAD {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .context("request head timeout")??;
    server
        .counters
        .http_requests
        .fetch_add(1, Ordering::Relaxed);
    let response = respond(&String::from_utf8_lossy(&head), server).await;
    let out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        response.status,
        response.content_type,
        response.body.len(),
        response.body
    );
    tokio::time::timeout(Duration::from_secs(10), stream.write_all(out.as_bytes()))
        .await
        .context("write timeout")??;
    let _ = stream.shutdown().await;
    Ok(())
}

/// Decode `%XX` and `+` in a query component.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn query(q: &str) -> Option<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    for part in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        m.insert(percent_decode(k)?, percent_decode(v)?);
    }
    Some(m)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn respond(head: &str, server: &MetricsServer) -> Response {
    let mut first = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    if method != "GET" {
        return text("405 Method Not Allowed", "GET only\n");
    }
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/metrics" => exposition(self_metrics(server).await),
        "/probe" => {
            let Some(params) = query(q) else {
                return text("400 Bad Request", "bad query string\n");
            };
            // Prometheus says how long it will wait; finish a little before.
            let budget = header(head, "X-Prometheus-Scrape-Timeout-Seconds")
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v > 1.0)
                .map(|v| Duration::from_secs_f64(v - 0.5));
            probe(server, &params, budget).await
        }
        "/" => text(
            "200 OK",
            format!(
                "stunmap {}\n/probe?module=NAME[&target=ADDR]  run a check (modules: {})\n/metrics  stunmap's own counters\n",
                env!("CARGO_PKG_VERSION"),
                server
                    .modules
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        _ => text("404 Not Found", "not found: try /probe or /metrics\n"),
    }
}

async fn probe(
    server: &MetricsServer,
    params: &BTreeMap<String, String>,
    budget: Option<Duration>,
) -> Response {
    let module = params
        .get("module")
        .map(String::as_str)
        .unwrap_or("netbird-cloud");
    let Some(template) = server.modules.get(module) else {
        return text(
            "400 Bad Request",
            format!(
                "unknown module {module:?}; known: {}\n",
                server
                    .modules
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    };
    let mut cfg = template.clone();
    if let Some(t) = params.get("target").filter(|t| !t.is_empty()) {
        // The target is an address; every name of the profile is pointed at it (like --resolve).
        let t = t.trim_start_matches('[').trim_end_matches(']');
        let Ok(ip) = t.parse::<IpAddr>() else {
            return text(
                "400 Bad Request",
                format!("target {t:?} is not an IP address\n"),
            );
        };
        cfg.overrides = cfg
            .profile
            .names()
            .into_iter()
            .map(|name| ResolveOverride {
                name,
                port: None,
                address: ip,
            })
            .collect();
    }
    if let Some(b) = budget {
        cfg.deadline = cfg.deadline.min(b.max(Duration::from_secs(1)));
    }
    let Ok(_slot) = server.slots.acquire().await else {
        return text("503 Service Unavailable", "shutting down\n");
    };
    let start = Instant::now();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let ctx = crate::app::Ctx::detached(crate::app::Stop::detached(Some(cfg.deadline)));
    let report = crate::check::run(cfg, &ctx).await;
    let info = crate::app::run_info(&ctx, started_unix, &report);
    let took = start.elapsed().as_secs_f64();
    let result = report.verdict.status.as_str();
    *server
        .counters
        .probes
        .lock()
        .await
        .entry((module.to_string(), result))
        .or_default() += 1;
    *server
        .counters
        .probe_seconds
        .lock()
        .await
        .entry(module.to_string())
        .or_default() += took;
    let mut w = Writer::default();
    w.family(
        "probe_success",
        "gauge",
        "1 when the check's verdict is ok, as blackbox_exporter's probe_success.",
    );
    w.sample(
        "probe_success",
        &[],
        if report.verdict.status == crate::check::model::Status::Ok {
            1.0
        } else {
            0.0
        },
    );
    w.family(
        "probe_duration_seconds",
        "gauge",
        "How long the probe took.",
    );
    w.sample("probe_duration_seconds", &[], took);
    crate::check::render::metrics(&mut w, &report, &info);
    exposition(w.finish())
}

async fn self_metrics(server: &MetricsServer) -> String {
    let mut w = Writer::default();
    w.family(
        "stunmap_build_info",
        "gauge",
        "stunmap's version, as a label; always 1.",
    );
    w.sample(
        "stunmap_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    w.family(
        "stunmap_start_time_seconds",
        "gauge",
        "When this server started, seconds since the Unix epoch.",
    );
    w.sample("stunmap_start_time_seconds", &[], server.started);
    w.family(
        "stunmap_http_requests_total",
        "counter",
        "HTTP requests served on the metrics address.",
    );
    w.sample(
        "stunmap_http_requests_total",
        &[],
        server.counters.http_requests.load(Ordering::Relaxed) as f64,
    );
    w.family(
        "stunmap_probes_total",
        "counter",
        "Checks run through /probe, by module and verdict status.",
    );
    {
        let probes = server.counters.probes.lock().await;
        for module in server.modules.keys() {
            for result in ["ok", "degraded", "blocked"] {
                let n = probes.get(&(module.clone(), result)).copied().unwrap_or(0);
                w.sample(
                    "stunmap_probes_total",
                    &[("module", module), ("result", result)],
                    n as f64,
                );
            }
        }
    }
    w.family(
        "stunmap_probe_seconds_total",
        "counter",
        "Time spent running checks through /probe, by module.",
    );
    {
        let secs = server.counters.probe_seconds.lock().await;
        for module in server.modules.keys() {
            w.sample(
                "stunmap_probe_seconds_total",
                &[("module", module)],
                secs.get(module).copied().unwrap_or(0.0),
            );
        }
    }
    if let Some(s) = &server.reflector {
        w.family(
            "stunmap_reflector_requests_total",
            "counter",
            "STUN Binding requests the reflector answered, by transport.",
        );
        w.sample(
            "stunmap_reflector_requests_total",
            &[("transport", "udp")],
            s.udp_requests.load(Ordering::Relaxed) as f64,
        );
        w.sample(
            "stunmap_reflector_requests_total",
            &[("transport", "tcp")],
            s.tcp_requests.load(Ordering::Relaxed) as f64,
        );
        w.family(
            "stunmap_reflector_dropped_total",
            "counter",
            "UDP datagrams the reflector dropped (not STUN, or not answerable).",
        );
        w.sample(
            "stunmap_reflector_dropped_total",
            &[],
            s.udp_dropped.load(Ordering::Relaxed) as f64,
        );
        w.family(
            "stunmap_reflector_tcp_connections_total",
            "counter",
            "TCP connections the reflector accepted.",
        );
        w.sample(
            "stunmap_reflector_tcp_connections_total",
            &[],
            s.tcp_connections.load(Ordering::Relaxed) as f64,
        );
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn query_strings_decode() {
        let q = query("module=netbird-cloud&target=%5B%3A%3A1%5D&x").unwrap();
        assert_eq!(q.get("module").unwrap(), "netbird-cloud");
        assert_eq!(q.get("target").unwrap(), "[::1]");
        assert_eq!(q.get("x").unwrap(), "");
        assert!(query("a=%zz").is_none());
    }

    #[test]
    fn scrape_timeout_header_is_found() {
        let head =
            "GET /probe HTTP/1.1\r\nHost: x\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n";
        assert_eq!(
            header(head, "x-prometheus-scrape-timeout-seconds"),
            Some("10")
        );
    }
}
