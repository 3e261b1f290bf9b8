//! `stunmap`: which NetBird paths are open from here, how the NAT maps and filters, and whether
//! peers will connect directly or only through a relay.

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

mod app;
mod check;
mod cmd;
mod exec;
mod exit;
mod ids;
mod metrics;
// Called by `stunmap check` once it reads the live status; until then only by its tests.
#[allow(dead_code)]
mod netbird_live;
mod rendezvous;
mod report;
mod serve;
mod target;
mod tool;

/// Packet-level STUN/TURN/relay probe engine.
#[derive(Debug, Parser)]
#[command(name = "stunmap", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole probe on a profile (NetBird Cloud by default): DNS, control plane and relay,
    /// every STUN/TURN port, the TCP sample, NAT behaviour and relay RTT, with the verdict first.
    Check(Box<cmd::check::Args>),
    /// The whole check against a lab stunmap starts on loopback (its own STUN reflector and,
    /// where coturn is installed, a TURN server): every section of the report, filled in.
    Demo(cmd::demo::Args),
    /// Probe STUN servers with Binding requests: mapped address, RTT, loss.
    Stun(cmd::stun::Args),
    /// Which UDP ports of a STUN/TURN server answer and which part of a TCP port range gets
    /// through (sampled or full), with middleboxes told apart from the server.
    Sweep(cmd::sweep::Args),
    /// NAT mapping/filtering behaviour (RFC 5780), gateway port mapping (NAT-PMP, PCP, UPnP),
    /// optionally the binding lifetime, and the P2P-vs-relay verdict.
    Nat(cmd::nat::Args),
    /// A live ICE test between this host and a peer running the same command (they meet
    /// through `stunmap serve --rendezvous`): direct, relayed or failed, the selected pair,
    /// RTT and loss, why checks failed, and whether the NAT pair model predicted it.
    Pair(Box<cmd::pair::Args>),
    /// Run a STUN Binding reflector (UDP and TCP) on one port or a range of ports, and
    /// optionally the `stunmap pair` rendezvous.
    Serve(Box<cmd::serve::Args>),
    /// Measure the engine on this machine: transactions/s against a raw sendmmsg loop, and
    /// memory per in-flight transaction (loopback only).
    Bench(cmd::bench::Args),
    /// Diagnose the host firewall: does inbound VPN traffic on the tunnel interface (and
    /// WireGuard UDP on flat networks) get through, which rule decides, and the fix.
    Host(cmd::host::Args),
    /// Check the control plane and relay over TCP/443 (and QUIC on UDP/443): DNS, TLS and
    /// interception, ALPN, gRPC, WebSocket, QUIC, HTTP proxies.
    Control(cmd::control::Args),
    /// Probe a TURN server: Allocate over UDP, TCP or TLS with long-term or REST credentials,
    /// then release the allocation.
    Turn(cmd::turn::Args),
    /// Benchmark relay latency through a real TURN allocation, per transport.
    Relay(cmd::relay::Args),
    /// Audit your own TURN server: which internal addresses (loopback, private, link-local,
    /// cloud metadata, their IPv6 encodings) it would relay to, its software, transports and
    /// unauthenticated answers, over an IPv4 and (over UDP) an IPv6 allocation. Sends no data
    /// to any of them; releases both allocations.
    Audit(cmd::audit::Args),
    /// Explain a `netbird debug bundle` (zip or folder), offline: why each peer is relayed or
    /// not connected, routes into the tunnel, and the host firewall from its iptables dump.
    Explain(cmd::explain::Args),
    /// Shell completion script on stdout (bash, zsh, fish, elvish, powershell); for packaging.
    #[command(hide = true)]
    Completions(cmd::docs::CompletionsArgs),
    /// Man pages (stunmap.1 and one per subcommand) into a directory; for packaging.
    #[command(hide = true)]
    Man(cmd::docs::ManArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return exit::clap_error(e),
    };
    let result = match cli.command {
        Command::Check(args) => cmd::check::run(*args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Stun(args) => cmd::stun::run(args),
        Command::Serve(args) => cmd::serve::run(*args),
        Command::Nat(args) => cmd::nat::run(args),
        Command::Pair(args) => cmd::pair::run(*args),
        Command::Sweep(args) => cmd::sweep::run(args),
        Command::Host(args) => cmd::host::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Control(args) => cmd::control::run(args),
        Command::Turn(args) => cmd::turn::run(args),
        Command::Relay(args) => cmd::relay::run(args),
        Command::Audit(args) => cmd::audit::run(args),
        Command::Explain(args) => cmd::explain::run(args),
        Command::Completions(args) => cmd::docs::completions(args, Cli::command()),
        Command::Man(args) => cmd::docs::man(args, Cli::command()),
    };
    match result {
        Ok(code) => code.into(),
        Err(e) => exit::report(&e),
    }
}
