//! `GET /probe`: one check of a module's profile, in blackbox_exporter's manner.
//!
//! A request passes, in order: the module (400 if unknown), the target's allow-list (403,
//! decided against this host's interface addresses read now), the TURN credential rule
//! (`probes::probe_server::credentials`), then the queue: at most `--probe-concurrency`
//! checks run and `--probe-queue` requests wait; one more is answered 503 at once, and a
//! wait longer than the scrape budget is answered 503 too. A client that leaves (its
//! connection closed: hyper drops the request's future) takes its check with it: a queued
//! request is withdrawn before it starts, a running check is interrupted (its probes stop
//! and clean up, TURN allocations are released) and its slot freed.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{Response, StatusCode};
use probes::control::ResolveOverride;
use probes::probe_server::allow::Local;
use probes::probe_server::request::probe_budget;
use probes::probe_server::{CredentialUse, Decision, ProbeQuery};
use tokio::time::Instant;

use super::MetricsServer;
use super::counters::{Abandoned, Held};
use super::http::{Body, exposition, text};
use crate::app::{Ctx, Stop};
use crate::check::plan::CheckConfig;
use crate::report::prom::{Format, Writer, flag};

/// A budget left after the queue shorter than this is not worth starting a check for.
const MIN_BUDGET: Duration = Duration::from_millis(100);

/// One module of the server.
#[derive(Debug)]
pub(crate) struct Module {
    /// The check template (the target, when given, is added as overrides per request).
    pub(crate) cfg: CheckConfig,
    /// The addresses its profile publishes for its TURN services.
    pub(crate) published: Vec<IpAddr>,
    /// `--probe-credentials-for` names it.
    pub(crate) credentials_for_target: bool,
}

/// Counts a request as abandoned at `stage` when dropped while armed; interrupts its check
/// if it had one.
struct Abandon<'a> {
    server: &'a MetricsServer,
    stage: Abandoned,
    check: Option<Stop>,
    armed: bool,
}

impl<'a> Abandon<'a> {
    fn new(server: &'a MetricsServer, stage: Abandoned, check: Option<Stop>) -> Abandon<'a> {
        Abandon {
            server,
            stage,
            check,
            armed: true,
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if self.armed {
            if let Some(stop) = &self.check {
                stop.interrupt();
            }
            self.server.counters.cancelled(self.stage);
        }
    }
}

fn unavailable(server: &MetricsServer, reason: &'static str, msg: &str) -> Response<Body> {
    server.counters.refused(reason);
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, msg);
    r.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("5"),
    );
    r
}

/// How a wait for a check slot ended.
enum Waited {
    Slot(tokio::sync::OwnedSemaphorePermit),
    Stopping,
    Timeout,
}

/// This host's addresses, as the allow-list wants them.
fn local() -> std::io::Result<Local> {
    let all = engine::netif::local_addresses()?;
    Ok(Local {
        addresses: all.iter().map(|a| a.address).collect(),
        broadcasts: all.iter().filter_map(|a| a.broadcast).collect(),
    })
}

/// Answer one `/probe`.
pub(crate) async fn run(
    server: &Arc<MetricsServer>,
    q: ProbeQuery,
    scrape_timeout: Option<Duration>,
    format: Format,
) -> Response<Body> {
    let arrived = Instant::now();
    let name = q.module.unwrap_or_else(|| server.default_module.clone());
    let Some(module) = server.modules.get(&name) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown module {}; known: {}",
                crate::report::doc::quoted(&name),
                server.module_list()
            ),
        );
    };
    let mut cfg = module.cfg.clone();
    if let Some(ip) = q.target {
        let local = match local() {
            Ok(l) => l,
            // Without this host's addresses the rule cannot be applied: refuse.
            Err(e) => {
                return unavailable(
                    server,
                    "no-local-addresses",
                    &format!("cannot read this host's addresses ({e}); no target is allowed"),
                );
            }
        };
        if let Decision::Denied(why) = server.policy.allow.decide(ip, &local) {
            server.counters.refused(why.as_str());
            return text(
                StatusCode::FORBIDDEN,
                format!("target {ip} refused: {why} (see --probe-allow)"),
            );
        }
        // Every name of the profile is pointed at the target (like --resolve).
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
    let credentials = CredentialUse::decide(
        cfg.credentials.is_some(),
        q.target,
        &module.published,
        module.credentials_for_target,
    );
    if !credentials.sends() {
        cfg.credentials = None;
    }
    if credentials == CredentialUse::Withheld {
        cfg.notes.push(credentials.to_string());
    }

    // The queue: a ticket to wait, then a slot to run.
    let Ok(ticket) = server.admission.clone().try_acquire_owned() else {
        return unavailable(
            server,
            "queue-full",
            "too many /probe requests waiting; try again later",
        );
    };
    let budget = scrape_timeout.map(probe_budget);
    let waiting = Abandon::new(server, Abandoned::Queued, None);
    let queued = Held::new(server, |c| &c.queued);
    let wait = server.slots.clone().acquire_owned();
    let waited = tokio::select! {
        r = async {
            let got = match budget {
                Some(b) => tokio::time::timeout(b.saturating_sub(arrived.elapsed()), wait).await,
                None => Ok(wait.await),
            };
            match got {
                Ok(Ok(slot)) => Waited::Slot(slot),
                Ok(Err(_)) => Waited::Stopping,
                Err(_) => Waited::Timeout,
            }
        } => r,
        _ = server.stopping.cancel.cancelled() => Waited::Stopping,
    };
    let slot = match waited {
        Waited::Slot(s) => s,
        Waited::Stopping => {
            waiting.disarm();
            return unavailable(server, "stopping", "the server is stopping");
        }
        Waited::Timeout => {
            waiting.disarm();
            return unavailable(
                server,
                "queue-timeout",
                "no check slot became free within the scrape timeout",
            );
        }
    };
    // Let the connection look at its socket first: a client that left while this request
    // waited withdraws it here, before its check starts.
    tokio::task::yield_now().await;
    drop(queued);
    waiting.disarm();
    if let Some(b) = budget {
        let left = b.saturating_sub(arrived.elapsed());
        if left < MIN_BUDGET {
            return unavailable(
                server,
                "queue-timeout",
                "the scrape timeout ran out while waiting for a check slot",
            );
        }
        cfg.deadline = cfg.deadline.min(left);
    }

    let stop = Stop::detached(Some(cfg.deadline));
    let running = Abandon::new(server, Abandoned::Running, Some(stop.clone()));
    let s = server.clone();
    let check_stop = stop.clone();
    let mut task = tokio::spawn(async move {
        let _slot = slot;
        let _ticket = ticket;
        s.counters.started.fetch_add(1, Ordering::Relaxed);
        let _running = Held::new(&s, |c| &c.running);
        let start = Instant::now();
        let started_unix = crate::app::unix_now();
        let ctx = Ctx::detached(check_stop);
        let report = crate::check::run(cfg, &ctx).await;
        let info = crate::app::run_info(&ctx, started_unix, &report);
        (report, info, start.elapsed().as_secs_f64())
    });
    let joined = tokio::select! {
        r = &mut task => r,
        _ = server.stopping.cancel.cancelled() => {
            stop.interrupt();
            (&mut task).await
        }
    };
    running.disarm();
    let Ok((report, info, took)) = joined else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "the check failed");
    };
    let result = report.verdict.status.as_str();
    server.counters.finished(&name, result, took);

    let mut w = Writer::default();
    w.gauge(
        "probe_success",
        "1 when the check's verdict is ok, as blackbox_exporter's probe_success.",
        &[],
        flag(report.verdict.status == crate::check::model::Status::Ok),
    );
    w.gauge(
        "probe_duration_seconds",
        "How long the probe took.",
        &[],
        took,
    );
    if credentials != CredentialUse::NoCredentials {
        w.gauge(
            "stunmap_turn_credentials_withheld",
            "1 when the TURN checks ran without the configured credentials: the target is an address the module's profile does not publish (see --probe-credentials-for).",
            &[("profile", report.profile.name.as_str())],
            flag(!credentials.sends()),
        );
    }
    crate::check::render::metrics(&mut w, &report, &info);
    exposition(w, format)
}
