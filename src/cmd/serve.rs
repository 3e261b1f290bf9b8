//! `stunmap serve`: a STUN Binding reflector to deploy at your own edge, so an egress can be
//! tested against a server you control (on the ports you choose).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use crate::exit::{Outcome, usage};
use crate::serve::{ServeConfig, ServeStats, serve};
use crate::target::parse_ports;

/// Flags of `stunmap serve`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
A whole port range (e.g. 443-65535) needs two file descriptors per port. Rather than tens of \
thousands of sockets, listen on one port and let the kernel redirect the range to it:

  stunmap serve --listen 0.0.0.0:3478
  nft add table inet stunmap
  nft add chain inet stunmap pre '{ type nat hook prerouting priority dstnat; }'
  nft add rule inet stunmap pre udp dport 443-65535 redirect to :3478
  nft add rule inet stunmap pre tcp dport 443-65535 redirect to :3478

(Exclude the ports your host already serves, e.g. 22, from the rule.)")]
pub(crate) struct Args {
    /// ADDR:PORT or ADDR:PORT-PORT to listen on (repeat for IPv4 and IPv6), e.g.
    /// 0.0.0.0:3478, [::]:3478, 127.0.0.1:21000-21999.
    #[arg(
        long,
        required_unless_present_any = ["metrics", "rendezvous"],
        value_name = "ADDR:PORT[-PORT]"
    )]
    listen: Vec<String>,
    /// Second IP of this host for RFC 5780 (answers CHANGE-REQUEST and sends OTHER-ADDRESS
    /// when --alt-port is set too).
    #[arg(long, value_name = "ADDR2")]
    alt_address: Option<IpAddr>,
    /// Alternate port for RFC 5780.
    #[arg(long, value_name = "PORT2")]
    alt_port: Option<u16>,
    /// UDP only (no STUN over TCP listeners).
    #[arg(long)]
    no_tcp: bool,
    /// SOFTWARE attribute in responses ("" for none).
    #[arg(long, default_value = concat!("stunmap ", env!("CARGO_PKG_VERSION")))]
    software: String,
    /// Maximum concurrent TCP connections.
    #[arg(long, default_value_t = 512)]
    max_tcp: usize,
    /// Seconds before an idle TCP connection is closed.
    #[arg(long, default_value_t = 10)]
    tcp_idle: u64,
    /// Stop after this many seconds (for scripted tests and demos).
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// Serve HTTP on ADDR:PORT like Prometheus' blackbox_exporter: /probe?module=NAME&target=IP
    /// runs a check and answers with its metrics, /metrics has stunmap's own counters.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,
    /// A /probe module: NAME=PROFILE.toml (repeatable); `netbird-cloud` (the embedded profile)
    /// is always there.
    #[arg(long, value_name = "NAME=FILE", requires = "metrics")]
    module: Vec<String>,
    /// Timeout of each step of a /probe check, milliseconds.
    #[arg(long, default_value_t = 2000, value_name = "MS", requires = "metrics")]
    probe_timeout: u64,
    #[command(flatten)]
    probe: crate::metrics::ProbeArgs,
    #[command(flatten)]
    auth: super::turn::AuthArgs,
    #[command(flatten)]
    rendezvous: crate::rendezvous::RendezvousArgs,
}

/// The /probe modules: the embedded profile and every --module.
fn modules(args: &Args) -> Result<BTreeMap<String, crate::check::plan::CheckConfig>> {
    let tuning = super::check::TuningArgs {
        timeout: args.probe_timeout.max(1),
        ..super::check::TuningArgs::default()
    };
    let mut out = BTreeMap::new();
    // A probe server checks its modules, not the NetBird client that may run on its host.
    let embedded = super::check::SourceArgs {
        no_netbird: true,
        ..super::check::SourceArgs::default()
    };
    let cfg = super::check::build_config(&embedded, &tuning, &args.auth)?;
    out.insert(cfg.profile.name.clone(), cfg);
    for m in &args.module {
        let Some((name, file)) = m.split_once('=') else {
            return Err(usage(format!("--module {m:?}: expected NAME=PROFILE.toml")));
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(usage(format!(
                "--module {m:?}: NAME may hold letters, digits, '-', '_', '.'"
            )));
        }
        let src = super::check::SourceArgs {
            profile: Some(file.into()),
            no_netbird: true,
            ..super::check::SourceArgs::default()
        };
        let cfg = super::check::build_config(&src, &tuning, &args.auth)?;
        out.insert(name.to_string(), cfg);
    }
    Ok(out)
}

fn parse_listen(s: &str) -> Result<(IpAddr, (u16, u16))> {
    let bad = || {
        usage(format!(
            "bad --listen {s:?}: expected ADDR:PORT or ADDR:PORT-PORT"
        ))
    };
    let (ip, ports) = if let Some(rest) = s.strip_prefix('[') {
        let (ip, tail) = rest.split_once("]:").ok_or_else(bad)?;
        (ip, tail)
    } else {
        s.rsplit_once(':').ok_or_else(bad)?
    };
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    Ok((ip, parse_ports(ports)?))
}

pub(crate) fn run(args: Args) -> Result<Outcome> {
    let listen: Vec<_> = args
        .listen
        .iter()
        .map(|s| parse_listen(s))
        .collect::<Result<_>>()?;
    if let Some(alt) = args.alt_address {
        if !listen.iter().any(|(ip, _)| ip.is_ipv4() == alt.is_ipv4()) {
            return Err(usage(
                "--alt-address must be of the same family as a --listen address",
            ));
        }
        if listen
            .iter()
            .any(|(ip, _)| *ip == alt || ip.is_unspecified())
        {
            return Err(usage(
                "--alt-address needs a specific primary address (not 0.0.0.0/[::]) that differs from it",
            ));
        }
    }
    if let Some(p) = args.alt_port
        && (p == 0 || listen.iter().any(|(_, (a, b))| (*a..=*b).contains(&p)))
    {
        return Err(usage(
            "--alt-port must be a non-zero port outside the --listen range",
        ));
    }
    let cfg = ServeConfig {
        listen,
        alt_ip: args.alt_address,
        alt_port: args.alt_port,
        tcp: !args.no_tcp,
        software: (!args.software.is_empty()).then(|| args.software.clone()),
        max_tcp: args.max_tcp.max(1),
        tcp_idle: Duration::from_secs(args.tcp_idle.max(1)),
    };
    let rendezvous = args.rendezvous.prepare()?;
    let stats = Arc::new(ServeStats::default());
    let probe_server = match args.metrics {
        Some(_) => {
            let reflector = (!cfg.listen.is_empty()).then(|| stats.clone());
            let server =
                crate::metrics::MetricsServer::new(modules(&args)?, &args.probe, reflector)?;
            Some(Arc::new(server))
        }
        None => None,
    };
    let rt = crate::app::runtime::build(crate::app::Flavor::MultiThread)?;
    rt.block_on(async {
        // One signal path for every command: SIGINT/SIGTERM stop the server cleanly (exit
        // 130 with the counters on stderr); --duration is the run's deadline (exit 0).
        let stop = crate::app::Stop::install(args.duration.map(Duration::from_secs));
        let final_stats = stats.clone();
        // The probe server runs until the stop, then finishes what is open.
        let (metrics, metrics_msg) = match (args.metrics, probe_server) {
            (Some(addr), Some(server)) => {
                let listener = crate::metrics::bind(addr).await?;
                let msg = server.banner(listener.local_addr()?);
                let task = tokio::spawn(crate::metrics::run(listener, server, stop.cancel.clone()));
                (Some(task), Some(msg))
            }
            _ => (None, None),
        };
        // The reflector's "listening" line comes first (scripts wait for it), then this one.
        if cfg.listen.is_empty()
            && let Some(m) = &metrics_msg
        {
            // Not eprintln!: a closed stderr (a parent that read the first line) must not panic.
            let _ = writeln!(std::io::stderr(), "{m}");
        }
        let has_reflector = !cfg.listen.is_empty();
        let server = async move {
            if !has_reflector {
                return std::future::pending().await;
            }
            serve(cfg, stats, |addrs: &[SocketAddr]| {
                let shown: Vec<String> = addrs.iter().take(8).map(ToString::to_string).collect();
                let more = addrs.len().saturating_sub(8);
                eprintln!(
                    "stunmap serve: listening on {}{}",
                    shown.join(" "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                );
                if let Some(m) = &metrics_msg {
                    // Not eprintln!: a closed stderr (a parent that read the first line) must not panic.
                    let _ = writeln!(std::io::stderr(), "{m}");
                }
            })
            .await
        };
        let rendezvous = async move {
            match rendezvous {
                Some(r) => r.run().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = server => r?,
            r = rendezvous => r?,
            _ = stop.cancel.cancelled() => {}
        }
        if let Some(m) = metrics {
            let _ = m.await;
        }
        // Flushed as the last line, whatever stopped the server.
        let _ = writeln!(
            std::io::stderr(),
            "stunmap serve: stopped ({}); {}",
            if stop.reason.interrupted() {
                "signal"
            } else {
                "--duration reached"
            },
            final_stats.summary()
        );
        Ok(if stop.reason.interrupted() {
            Outcome::Interrupted
        } else {
            Outcome::Ok
        })
    })
}
