//! `stunmap serve`: a STUN Binding reflector to deploy at your own edge, so an egress can be
//! tested against a server you control (on the ports you choose).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use probes::reflector::limit::SourceRate;

use crate::exit::{Outcome, usage};
use crate::serve::{ServeConfig, ServeStats, TcpLimits, serve};
use crate::target::parse_ports;

/// Flags of `stunmap serve`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
A public reflector. A UDP answer goes to the request's source address, which anyone can forge, \
and is larger than the request (at least the 20-byte header). Answer sizes and the factor over \
a 20-byte request:

  answer carries                                     IPv4           IPv6
  XOR-MAPPED-ADDRESS (no --alt-*)                    32 B (1.6x)    44 B (2.2x)
  + MAPPED-ADDRESS, RESPONSE-ORIGIN (any --alt-*)    56 B (2.8x)    92 B (4.6x)
  + OTHER-ADDRESS (--alt-address and --alt-port)     68 B (3.4x)   116 B (5.8x)
  + SOFTWARE \"stunmap x.y.z\" (default on specific    +20 B          +20 B
    addresses, off on 0.0.0.0/[::])
  + FINGERPRINT, only when the request has one       +8 B on both sides

Each source (an IPv4 address, an IPv6 /64) gets at most --per-source-rate answers a second \
(default 200, bursts of --per-source-burst, 400); a request over it gets no answer, so a forged \
stream reaches its victim at under 32 KB/s. The table of sources has a fixed size (65536). STUN \
over TCP: at most --max-tcp connections (512), --max-tcp-per-source from one source (32), \
--tcp-idle seconds between whole messages (10), --tcp-message-timeout for one message (5), \
--tcp-write-timeout for one answer (5). See docs/serve.md.

A whole port range (e.g. 443-65535) needs a UDP socket per port and thread and a TCP listener \
per port. Rather than tens of thousands of sockets, listen on one port and let the kernel \
redirect the range to it:

  stunmap serve --listen 0.0.0.0:3478
  nft add table inet stunmap
  nft add chain inet stunmap pre '{ type nat hook prerouting priority dstnat; }'
  nft add rule inet stunmap pre udp dport 443-65535 redirect to :3478
  nft add rule inet stunmap pre tcp dport 443-65535 redirect to :3478

(Exclude the ports your host already serves, e.g. 22, from the rule.) A TCP sweep of such a \
range from one client holds up to its --concurrency connections at once: raise \
--max-tcp-per-source for it.")]
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
    /// SOFTWARE attribute in answers ("" for none). Default: "stunmap VERSION" when every
    /// --listen address is a specific one, none when one is a wildcard (0.0.0.0, [::]): a
    /// public reflector need not name itself, and the attribute adds 20 bytes to each answer.
    #[arg(long, value_name = "TEXT")]
    software: Option<String>,
    /// UDP worker threads, each with its own SO_REUSEPORT socket per address, 1 to 256
    /// (default: the number of cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    /// Answers per second to one source (an IPv4 address or an IPv6 /64) over UDP; requests
    /// beyond it get no answer. 1 to 10000000.
    #[arg(long, default_value_t = SourceRate::DEFAULT.per_second, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    per_source_rate: u32,
    /// Answers one source may get at once after a quiet spell, 1 to 10000000.
    #[arg(long, default_value_t = SourceRate::DEFAULT.burst, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    per_source_burst: u32,
    /// Concurrent TCP connections, 1 to 100000.
    #[arg(long, default_value_t = TcpLimits::DEFAULT.max as u32, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_tcp: u32,
    /// Concurrent TCP connections from one source (an IPv4 address or an IPv6 /64), 1 to
    /// 100000; a connection beyond it is reset at once.
    #[arg(long, default_value_t = TcpLimits::DEFAULT.per_source as u32, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_tcp_per_source: u32,
    /// Seconds a TCP connection may go without a whole STUN message (bytes of an unfinished
    /// one do not count), 1 to 3600.
    #[arg(long, default_value_t = TcpLimits::DEFAULT.idle.as_secs(), value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    tcp_idle: u64,
    /// Seconds one STUN message over TCP may take from its first byte to its last, 1 to 600.
    #[arg(long, default_value_t = TcpLimits::DEFAULT.message.as_secs(), value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=600))]
    tcp_message_timeout: u64,
    /// Seconds writing one answer over TCP may take (a client that does not read is cut),
    /// 1 to 600.
    #[arg(long, default_value_t = TcpLimits::DEFAULT.write.as_secs(), value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=600))]
    tcp_write_timeout: u64,
    /// Stop after this many seconds (for scripted tests and demos), 1 to 31536000.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    duration: Option<u64>,
    /// Serve HTTP on ADDR:PORT like Prometheus' blackbox_exporter: /probe?module=NAME&target=IP
    /// runs a check and answers with its metrics, /metrics has stunmap's own counters.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,
    /// A /probe module: NAME=PROFILE.toml (repeatable); `netbird-cloud` (the embedded profile)
    /// is always there.
    #[arg(long, value_name = "NAME=FILE", requires = "metrics")]
    module: Vec<String>,
    /// Timeout of each step of a /probe check, milliseconds (1 to 600000).
    #[arg(long, default_value_t = 2000, value_name = "MS", requires = "metrics",
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
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
        timeout: args.probe_timeout,
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
            return Err(usage(format!(
                "--module {}: expected NAME=PROFILE.toml",
                crate::report::doc::quoted(m)
            )));
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(usage(format!(
                "--module {}: NAME may hold letters, digits, '-', '_', '.'",
                crate::report::doc::quoted(m)
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
            "bad --listen {}: expected ADDR:PORT or ADDR:PORT-PORT",
            crate::report::doc::quoted(s)
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
    let wildcard = listen.iter().any(|(ip, _)| ip.is_unspecified());
    if (args.alt_port.is_some() || args.alt_address.is_some()) && wildcard {
        return Err(usage(
            "--alt-address and --alt-port need specific --listen addresses (not 0.0.0.0/[::]): \
             RFC 5780 answers name the address they leave from",
        ));
    }
    let software = match &args.software {
        Some(s) => (!s.is_empty()).then(|| s.clone()),
        None => (!wildcard).then(|| concat!("stunmap ", env!("CARGO_PKG_VERSION")).to_string()),
    };
    let threads = match args.threads {
        Some(n) => usize::from(n),
        None => std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(256),
    };
    let cfg = ServeConfig {
        listen,
        alt_ip: args.alt_address,
        alt_port: args.alt_port,
        tcp: !args.no_tcp,
        software,
        threads,
        per_source: SourceRate {
            per_second: args.per_source_rate,
            burst: args.per_source_burst,
        },
        tcp_limits: TcpLimits {
            max: args.max_tcp as usize,
            per_source: args.max_tcp_per_source as usize,
            idle: Duration::from_secs(args.tcp_idle),
            message: Duration::from_secs(args.tcp_message_timeout),
            write: Duration::from_secs(args.tcp_write_timeout),
        },
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
