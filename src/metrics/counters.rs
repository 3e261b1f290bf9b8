//! The probe server's own counters and their `/metrics` exposition.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::report::prom::Writer;
use crate::serve::ServeStats;

/// Why a check was abandoned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Abandoned {
    /// While waiting for a slot.
    Queued,
    /// While running.
    Running,
}

impl Abandoned {
    fn as_str(self) -> &'static str {
        match self {
            Abandoned::Queued => "queued",
            Abandoned::Running => "running",
        }
    }
}

/// Every counter; updated from connection and check tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Completed checks by (module, verdict status).
    probes: Mutex<BTreeMap<(String, &'static str), u64>>,
    probe_seconds: Mutex<BTreeMap<String, f64>>,
    /// Answers by HTTP status.
    responses: Mutex<BTreeMap<u16, u64>>,
    /// Refused targets by reason, refused requests by cause.
    refused: Mutex<BTreeMap<&'static str, u64>>,
    cancelled: Mutex<BTreeMap<Abandoned, u64>>,
    pub(crate) started: AtomicU64,
    pub(crate) running: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) connections_open: AtomicU64,
    pub(crate) connections: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    pub(crate) connection_errors: AtomicU64,
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K) {
    *m.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(k)
        .or_default() += 1;
}

impl Counters {
    pub(crate) fn finished(&self, module: &str, result: &'static str, seconds: f64) {
        bump(&self.probes, (module.to_string(), result));
        *self
            .probe_seconds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(module.to_string())
            .or_default() += seconds;
    }

    pub(crate) fn response(&self, status: u16) {
        bump(&self.responses, status);
    }

    pub(crate) fn refused(&self, reason: &'static str) {
        bump(&self.refused, reason);
    }

    pub(crate) fn cancelled(&self, stage: Abandoned) {
        bump(&self.cancelled, stage);
    }
}

/// A gauge held up while a value lives: +1 now, -1 on drop.
#[derive(Debug)]
pub(crate) struct Held(Arc<super::MetricsServer>, fn(&Counters) -> &AtomicU64);

impl Held {
    pub(crate) fn new(server: &Arc<super::MetricsServer>, g: fn(&Counters) -> &AtomicU64) -> Held {
        g(&server.counters).fetch_add(1, Ordering::Relaxed);
        Held(server.clone(), g)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        (self.1)(&self.0.counters).fetch_sub(1, Ordering::Relaxed);
    }
}

fn load(a: &AtomicU64) -> f64 {
    a.load(Ordering::Relaxed) as f64
}

/// `/metrics`: the server's own counters.
pub(crate) fn exposition(
    w: &mut Writer,
    c: &Counters,
    modules: &[&str],
    started: f64,
    reflector: Option<&ServeStats>,
) {
    w.gauge(
        "stunmap_build_info",
        "stunmap's version, as a label; always 1.",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    w.gauge(
        "stunmap_start_time_seconds",
        "When this server started, seconds since the Unix epoch.",
        &[],
        started,
    );
    w.family(
        "stunmap_http_requests_total",
        "counter",
        "HTTP requests answered on the metrics address, by status code.",
    );
    {
        let responses = c.responses.lock().unwrap_or_else(PoisonError::into_inner);
        for (code, n) in responses.iter() {
            w.sample(
                "stunmap_http_requests_total",
                &[("code", &code.to_string())],
                *n as f64,
            );
        }
    }
    w.counter(
        "stunmap_http_connections_total",
        "HTTP connections accepted on the metrics address.",
        &[],
        load(&c.connections),
    );
    w.gauge(
        "stunmap_http_connections",
        "HTTP connections open now (at most --metrics-max-connections).",
        &[],
        load(&c.connections_open),
    );
    w.counter(
        "stunmap_http_accept_errors_total",
        "Failed accepts on the metrics address (e.g. out of file descriptors); the server backs off and goes on.",
        &[],
        load(&c.accept_errors),
    );
    w.counter(
        "stunmap_http_connection_errors_total",
        "HTTP connections that ended in an error (malformed request, header timeout, reset).",
        &[],
        load(&c.connection_errors),
    );
    w.family(
        "stunmap_probes_total",
        "counter",
        "Checks run through /probe to their end, by module and verdict status.",
    );
    {
        let probes = c.probes.lock().unwrap_or_else(PoisonError::into_inner);
        for module in modules {
            for result in ["ok", "degraded", "blocked"] {
                let n = probes
                    .get(&((*module).to_string(), result))
                    .copied()
                    .unwrap_or(0);
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
        let secs = c
            .probe_seconds
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for module in modules {
            w.sample(
                "stunmap_probe_seconds_total",
                &[("module", module)],
                secs.get(*module).copied().unwrap_or(0.0),
            );
        }
    }
    w.counter(
        "stunmap_probes_started_total",
        "Checks that started running for /probe requests.",
        &[],
        load(&c.started),
    );
    w.gauge(
        "stunmap_probes_running",
        "Checks running now (at most --probe-concurrency).",
        &[],
        load(&c.running),
    );
    w.gauge(
        "stunmap_probes_queued",
        "/probe requests waiting for a check slot now (at most --probe-queue).",
        &[],
        load(&c.queued),
    );
    w.family(
        "stunmap_probes_cancelled_total",
        "counter",
        "/probe requests whose client left (or whose server stopped) before the answer, by where the check was: queued (never started) or running (stopped early).",
    );
    {
        let cancelled = c.cancelled.lock().unwrap_or_else(PoisonError::into_inner);
        for stage in [Abandoned::Queued, Abandoned::Running] {
            w.sample(
                "stunmap_probes_cancelled_total",
                &[("stage", stage.as_str())],
                cancelled.get(&stage).copied().unwrap_or(0) as f64,
            );
        }
    }
    w.family(
        "stunmap_probes_refused_total",
        "counter",
        "/probe requests refused before a check ran, by reason: the target's class (loopback, own-address, not-allowed, ...), queue-full, queue-timeout.",
    );
    {
        let refused = c.refused.lock().unwrap_or_else(PoisonError::into_inner);
        for (reason, n) in refused.iter() {
            w.sample(
                "stunmap_probes_refused_total",
                &[("reason", reason)],
                *n as f64,
            );
        }
    }
    if let Some(s) = reflector {
        w.counter(
            "stunmap_reflector_requests_total",
            "STUN Binding requests the reflector answered, by transport.",
            &[("transport", "udp")],
            load(&s.udp_requests),
        );
        w.sample(
            "stunmap_reflector_requests_total",
            &[("transport", "tcp")],
            load(&s.tcp_requests),
        );
        w.counter(
            "stunmap_reflector_dropped_total",
            "UDP datagrams the reflector dropped (not STUN, or not answerable).",
            &[],
            load(&s.udp_dropped),
        );
        w.counter(
            "stunmap_reflector_tcp_connections_total",
            "TCP connections the reflector accepted.",
            &[],
            load(&s.tcp_connections),
        );
    }
}
