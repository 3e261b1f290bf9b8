//! `stunmap check`: the whole probe on a profile, in three parts —
//! [`plan`] (pure: names to resolve, then every probe from the addresses found),
//! [`exec`] (the engine calls, one per kind of probe), and [`assemble`] (pure: results into
//! rows, services and the report, judged by `probes::check`). [`model`] is the report,
//! [`render`] its document and metrics. [`run`] ties them together: DNS first, then every
//! section at once under the run's cancel token.

pub(crate) mod assemble;
pub(crate) mod exec;
pub(crate) mod model;
pub(crate) mod plan;
pub(crate) mod render;

use std::sync::Arc;

use engine::control::ControlReport;
use engine::scan::UdpPortOutcome;
use engine::stream::StreamRun;
use probes::nat::{Measurements, classify};
use probes::sweep::TcpPortResult;
use probes::turn::allocate::AllocateReport;
use tokio::task::JoinSet;

use crate::app::{Command, Ctx, Flavor};
use model::{CheckReport, Event, RelayRtt, Row};
use plan::{CheckConfig, SampleTarget, StunTarget, TurnStreamTarget, TurnUdpTarget};

/// A planned check.
#[derive(Debug)]
pub(crate) struct Check(pub(crate) CheckConfig);

impl Command for Check {
    type Report = CheckReport;
    const FLAVOR: Flavor = Flavor::MultiThread;

    fn deadline(&self) -> Option<std::time::Duration> {
        Some(self.0.deadline)
    }

    async fn execute(self, ctx: Ctx) -> anyhow::Result<CheckReport> {
        Ok(run(self.0, &ctx).await)
    }
}

/// What one task of the check hands back.
#[allow(clippy::large_enum_variant)]
enum Done {
    Control(Result<ControlReport, String>, Vec<usize>),
    Stun(StunTarget, Option<std::io::Result<UdpPortOutcome>>),
    Nat(Result<Measurements, String>),
    TurnUdp(
        TurnUdpTarget,
        Result<Vec<Option<AllocateReport>>, String>,
        Option<RelayRtt>,
        Option<model::RelayPathCheck>,
    ),
    TurnStream(TurnStreamTarget, Result<StreamRun<AllocateReport>, String>),
    Sample(SampleTarget, Vec<TcpPortResult>),
    Portal(model::PortalCheck),
    Pmtu(
        std::net::SocketAddr,
        Result<probes::path::pmtu::PmtuReport, String>,
    ),
    Mss(model::MssCheck),
    Gateway(model::GatewaySection),
}

/// The service name of index `i`.
fn service_name(cfg: &CheckConfig, i: usize) -> String {
    cfg.profile
        .services
        .get(i)
        .map(|s| s.name.clone())
        .unwrap_or_default()
}

/// Emit a row's event and count it.
fn emit(ctx: &Ctx, cfg: &CheckConfig, i: usize, row: &Row) {
    ctx.advance(1);
    if ctx.wants_events() {
        ctx.event(&Event::Check {
            service: service_name(cfg, i),
            row: row.clone(),
        });
    }
}

fn phase(ctx: &Ctx, phase: &'static str) {
    ctx.status(format!("({phase} done)"));
    ctx.event(&Event::Phase {
        phase,
        elapsed_seconds: ctx.elapsed().as_secs_f64(),
    });
}

/// Run the whole check.
pub(crate) async fn run(cfg: CheckConfig, ctx: &Ctx) -> CheckReport {
    let cfg = Arc::new(cfg);
    ctx.event(&Event::Start {
        schema: model::SCHEMA,
        profile: cfg.profile.name.clone(),
        planned: cfg.profile.services.len(),
    });
    let reach = exec::reach(&cfg, plan::names(&cfg.profile, &cfg.relays)).await;
    let plan = plan::plan(&cfg, &reach);
    ctx.plan((plan.rows.len() + plan.size()) as u64);
    let mut rows: Vec<(usize, Row)> = Vec::new();
    for (i, row) in plan.rows.clone() {
        emit(ctx, &cfg, i, &row);
        rows.push((i, row));
    }
    phase(ctx, "dns");
    // Which way the probes go, decided before anything is sent: every section runs under the
    // binding chosen here (the user's, or the physical interface when a route goes into a
    // VPN tunnel).
    let routes = exec::routes(&cfg, &plan.paths);
    let mut tasks = spawn(&cfg, ctx, &plan, &routes);

    let mut control = None;
    let mut nat = None;
    let mut samples = Vec::new();
    let mut relay_rtt = Vec::new();
    let mut paths = model::PathsSection {
        routes: routes.paths.clone(),
        binding: routes.bound.clone(),
        ..model::PathsSection::default()
    };
    let mut notes = cfg.notes.clone();
    notes.extend(plan.notes.iter().cloned());
    let stopped = || ctx.stopped();
    while let Some(r) = tasks.join_next().await {
        let Ok(done) = r else {
            notes.push("a check task failed; its rows are missing".into());
            continue;
        };
        let mut add = |i: usize, row: Row| {
            emit(ctx, &cfg, i, &row);
            rows.push((i, row));
        };
        match done {
            Done::Stun(t, r) => add(t.service, assemble::stun_row(&t, r)),
            Done::TurnUdp(t, run, rtt, relay_path) => {
                for row in assemble::turn_udp_rows(&t, &run, stopped()) {
                    add(t.service, row);
                }
                relay_rtt.extend(rtt);
                if paths.relay_path.is_none() {
                    paths.relay_path = relay_path;
                }
            }
            Done::TurnStream(t, run) => add(t.service, assemble::turn_stream_row(&t, &run)),
            Done::Sample(t, results) => {
                let (row, sample) =
                    assemble::sample(&t, &service_name(&cfg, t.service), cfg.seed, &results);
                add(t.service, row);
                samples.push(sample);
            }
            Done::Control(Ok(report), services) => control = Some((report, services)),
            Done::Control(Err(e), _) => notes.push(format!("control checks: {e}")),
            Done::Nat(Ok(m)) => nat = Some(m),
            Done::Nat(Err(e)) => notes.push(format!("NAT tests: {e}")),
            Done::Portal(p) => paths.captive_portal = Some(p),
            Done::Pmtu(_, Ok(r)) => paths.path_mtu.push(r),
            Done::Pmtu(server, Err(e)) => notes.push(format!("path MTU to {server}: {e}")),
            Done::Mss(m) => paths.tcp_mss = Some(m),
            Done::Gateway(g) => paths.gateway = Some(g),
        }
    }
    let mut control_problems = Vec::new();
    let mut relay_ws = None;
    if let Some((report, services)) = &control {
        let (control_rows, problems, ws) = assemble::control(report, services);
        for (i, row) in control_rows {
            emit(ctx, &cfg, i, &row);
            rows.push((i, row));
        }
        control_problems = problems;
        relay_ws = ws;
    }
    let relay = assemble::relay_paths(&rows, relay_ws);
    let nat = nat.map(|mut m| {
        m.relay = relay;
        classify(&m)
    });
    assemble::paths(&mut paths, nat.as_ref(), &rows);
    if ctx.deadline_reached() {
        notes.push(format!(
            "the deadline ({} s) stopped the run: some checks are missing",
            cfg.deadline.as_secs()
        ));
    }
    assemble::report(
        &cfg.profile,
        assemble::Parts {
            source: cfg.source.clone(),
            rows,
            samples,
            nat,
            relay_rtt,
            control_problems,
            resolved: exec::resolved_addresses(&reach),
            notes,
            interrupted: ctx.interrupted(),
            netbird: cfg.netbird.clone(),
            paths,
        },
    )
}

/// The least time the gateway gets to answer the port-mapping requests, from the start of the
/// check (NAT-PMP and PCP answer within a LAN round trip; miniupnpd answers an SSDP search in
/// about 70 ms).
const GATEWAY_MIN_WAIT: std::time::Duration = std::time::Duration::from_millis(300);

/// Start every section of the plan at once, each under the source binding `routes` chose.
fn spawn(
    cfg: &Arc<CheckConfig>,
    ctx: &Ctx,
    plan: &plan::Plan,
    routes: &exec::RouteOutcome,
) -> JoinSet<Done> {
    let mut tasks = Sections {
        set: JoinSet::new(),
        bind: routes.bind,
    };
    // Which STUN servers answered a small Binding: the path MTU search waits for it.
    let heard = exec::Heard::default();
    // Round trips to the hosts, shared by the rows (a silent path is judged on them).
    let host = exec::HostRtt::default();
    // The gateway's port-mapping answers are taken while the NAT tests run; once those are
    // done (and the gateway had GATEWAY_MIN_WAIT), its waits end too.
    let (settle_handle, mut settle) = engine::Cancel::new();
    if plan.nat_servers.is_empty() {
        settle = ctx.cancel.clone();
    }
    let shared = Shared {
        heard: heard.clone(),
        host: host.clone(),
        settle,
    };
    spawn_paths(cfg, ctx, plan, routes, &shared, &mut tasks);
    if !plan.control.endpoints.is_empty() {
        let (cfg, ctx, p) = (cfg.clone(), ctx.clone(), plan.control.clone());
        tasks.spawn(async move {
            let services = p.services.clone();
            let r = exec::control(&cfg, p, &ctx.cancel).await;
            phase(&ctx, "control");
            Done::Control(r, services)
        });
    }
    for t in plan.stun.iter().cloned() {
        let (cfg, ctx, host, heard) = (cfg.clone(), ctx.clone(), host.clone(), heard.clone());
        tasks.spawn(async move {
            let r = exec::stun(&cfg, t.dest, &host, &ctx.cancel).await;
            heard.set(
                t.dest,
                matches!(r, Some(Ok(UdpPortOutcome::Answered { .. }))),
            );
            Done::Stun(t, r)
        });
    }
    if !plan.nat_servers.is_empty() {
        let (cfg, ctx, servers) = (cfg.clone(), ctx.clone(), plan.nat_servers.clone());
        tasks.spawn(async move {
            let r = exec::nat(&cfg, &servers, &ctx.cancel).await;
            phase(&ctx, "nat");
            tokio::time::sleep(GATEWAY_MIN_WAIT.saturating_sub(ctx.elapsed())).await;
            settle_handle.cancel();
            Done::Nat(r)
        });
    }
    for t in plan.turn_udp.iter().cloned() {
        let (cfg, ctx, host) = (cfg.clone(), ctx.clone(), host.clone());
        tasks.spawn(async move {
            let run = exec::turn_udp(&cfg, &t, &host, &ctx.cancel).await;
            let rtt = match (assemble::first_allocated(&run), cfg.credentials.clone()) {
                (Some(server), Some(creds)) if !ctx.stopped() => {
                    let r = exec::relay_rtt(&cfg, server, creds, &ctx.cancel).await;
                    phase(&ctx, "relay-rtt");
                    Some(assemble::relay_rtt(
                        &service_name(&cfg, t.service),
                        server,
                        r,
                    ))
                }
                _ => None,
            };
            // The relay path: WireGuard-sized datagrams through an allocation, once the relay
            // RTT's small ones came back (so a loss is the size's, not the relay's).
            let small_passed = rtt.as_ref().is_some_and(|r| r.received > 0);
            let relay_path = match (assemble::first_allocated(&run), cfg.credentials.clone()) {
                (Some(server), Some(creds)) if cfg.paths.pmtu && small_passed && !ctx.stopped() => {
                    let r = exec::relay_path(&cfg, server, creds, &ctx.cancel).await;
                    phase(&ctx, "relay-path");
                    Some(r)
                }
                _ => None,
            };
            Done::TurnUdp(t, run, rtt, relay_path)
        });
    }
    for t in plan.turn_stream.iter().cloned() {
        let (cfg, ctx, host) = (cfg.clone(), ctx.clone(), host.clone());
        tasks.spawn(async move {
            let run = exec::turn_stream(&cfg, &t, &host, &ctx.cancel).await;
            Done::TurnStream(t, run)
        });
    }
    for t in plan.samples.iter().cloned() {
        let (cfg, ctx) = (cfg.clone(), ctx.clone());
        tasks.spawn(async move {
            let service = service_name(&cfg, t.service);
            let results = exec::sample(&cfg, &t, &ctx.cancel, |r| {
                ctx.advance(1);
                if ctx.wants_events() {
                    ctx.event(&Event::TcpPort {
                        service: service.clone(),
                        port: assemble::sampled(r),
                    });
                }
            })
            .await;
            phase(&ctx, "tcp-sample");
            Done::Sample(t, results)
        });
    }
    tasks.set
}

/// The check's tasks: each one spawned under the run's source binding.
struct Sections {
    set: JoinSet<Done>,
    bind: engine::source::SourceBind,
}

impl Sections {
    fn spawn(&mut self, fut: impl std::future::Future<Output = Done> + Send + 'static) {
        self.set.spawn(engine::source::scope(self.bind, fut));
    }
}

/// What the sections tell each other while they run.
struct Shared {
    /// Which STUN servers answered (the path MTU search waits for it).
    heard: exec::Heard,
    /// Round trips to the hosts (a silent path is judged on them).
    host: exec::HostRtt,
    /// Fires when the NAT tests are done: the gateway's discovery stops waiting.
    settle: engine::Cancel,
}

/// The path checks: the portal request, the PMTU searches, the MSS, the gateway.
fn spawn_paths(
    cfg: &Arc<CheckConfig>,
    ctx: &Ctx,
    plan: &plan::Plan,
    routes: &exec::RouteOutcome,
    shared: &Shared,
    tasks: &mut Sections,
) {
    let Shared {
        heard,
        host,
        settle,
    } = shared;
    if let Some(t) = plan.paths.portal.clone() {
        let cfg = cfg.clone();
        tasks.spawn(async move { Done::Portal(exec::portal(&cfg, &t).await) });
    }
    for server in plan.paths.pmtu.iter().copied() {
        let (cfg, ctx, heard) = (cfg.clone(), ctx.clone(), heard.clone());
        // A server with a STUN row of its own is searched once that row has answered: one
        // that is silent to a small request would only make every size wait out its tries.
        let gated = plan.stun.iter().any(|t| t.dest == server);
        tasks.spawn(async move {
            if gated && !heard.answered(server).await {
                return Done::Pmtu(
                    server,
                    Err("not measured: the server answered no small Binding request".into()),
                );
            }
            let r = exec::pmtu(&cfg, server, &ctx.cancel).await;
            phase(&ctx, "path-mtu");
            Done::Pmtu(server, r)
        });
    }
    if !plan.paths.mss.is_empty() {
        let (cfg, ctx, servers, host) = (
            cfg.clone(),
            ctx.clone(),
            plan.paths.mss.clone(),
            host.clone(),
        );
        tasks.spawn(async move { Done::Mss(exec::mss(&cfg, &servers, &host, &ctx.cancel).await) });
    }
    if cfg.paths.portmap
        && let Some(gw) = routes.gateway_v4
    {
        let (cfg, ctx, stun, settle) = (
            cfg.clone(),
            ctx.clone(),
            plan.paths.mapping_stun,
            settle.clone(),
        );
        tasks.spawn(async move {
            let o = exec::GatewayOptions::of(&cfg);
            let g = exec::gateway(o, gw, stun, settle, &ctx.cancel).await;
            phase(&ctx, "gateway");
            Done::Gateway(g)
        });
    }
}
