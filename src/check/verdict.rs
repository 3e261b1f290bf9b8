//! The overall verdict of a check and its fixes: the NAT classifier's verdict (with the TURN
//! and relay results as its relay paths), then the findings it cannot see — names that do not
//! resolve, a control plane that cannot be reached, STUN/TURN ports or parts of the TCP range
//! that are blocked. Fixes use the reference page's terms (nftables/UFW outbound rules for the
//! STUN/TURN endpoints, fail2ban allow-lists, the relay's wildcard name).

use std::collections::HashMap;
use std::net::IpAddr;

use probes::control::Problem;
use probes::finding::Fix;
use probes::nat::{Classification, Level};
use probes::profile::{Profile, ServiceKind};

use super::model::{ServiceReport, State, TcpSample, Verdict};
use super::run::passes;

/// The nftables/UFW destination for a host: its addresses when known, else the name (nft
/// resolves names when the rule is loaded, as the reference page's example does).
fn dest(host: &str, resolved: &HashMap<String, Vec<IpAddr>>) -> Vec<String> {
    match resolved.get(host) {
        Some(a) if !a.is_empty() => a.iter().map(ToString::to_string).collect(),
        _ => vec![host.to_string()],
    }
}

fn nft_family(d: &str) -> &'static str {
    if d.contains(':') { "ip6" } else { "ip" }
}

fn port_list(ports: &[u16]) -> String {
    ports
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn udp_fix(service: &ServiceReport, ports: &[u16], resolved: &HashMap<String, Vec<IpAddr>>) -> Fix {
    let mut commands = Vec::new();
    for h in &service.hosts {
        for d in dest(h, resolved) {
            commands.push(format!(
                "nft add rule inet filter output {} daddr {d} udp dport {{ {} }} accept",
                nft_family(&d),
                port_list(ports)
            ));
            for p in ports {
                commands.push(format!("ufw allow out proto udp to {d} port {p}"));
            }
        }
    }
    Fix {
        title: format!(
            "Allow outbound UDP to the {} service ({}) on port{} {} on the perimeter and host firewalls",
            service.name,
            service.hosts.join(", "),
            if ports.len() == 1 { "" } else { "s" },
            port_list(ports)
        ),
        commands,
        caveat: Some(
            "If using fail2ban or similar, whitelist these endpoints too; STUN/TURN address lists are dynamic, so rules by name must be reloaded when the names resolve differently".into(),
        ),
    }
}

fn tcp_range_fix(sample: &TcpSample, resolved: &HashMap<String, Vec<IpAddr>>) -> Fix {
    let mut commands = Vec::new();
    for d in dest(&sample.host, resolved) {
        commands.push(format!(
            "nft add rule inet filter output {} daddr {d} tcp dport {}-{} accept",
            nft_family(&d),
            sample.range_start,
            sample.range_end
        ));
        commands.push(format!(
            "ufw allow out proto tcp to {d} port {}:{}",
            sample.range_start, sample.range_end
        ));
    }
    Fix {
        title: format!(
            "Allow outbound TCP to {} on ports {}-{} ({} of {} sampled ports were dropped)",
            sample.host,
            sample.range_start,
            sample.range_end,
            sample.filtered + sample.unreachable,
            sample.ports.len()
        ),
        commands,
        caveat: None,
    }
}

/// The verdict and fixes of a finished check.
pub(crate) fn judge(
    profile: &Profile,
    services: &[ServiceReport],
    samples: &[TcpSample],
    nat: Option<&Classification>,
    control_problems: &[Problem],
    interrupted: bool,
    resolved: &HashMap<String, Vec<IpAddr>>,
) -> (Verdict, Vec<Fix>) {
    let mut reasons: Vec<String> = Vec::new();
    // Port findings, also appended to the classifier's headline.
    let mut port_reasons: Vec<String> = Vec::new();
    let mut fixes: Vec<Fix> = Vec::new();

    // Names.
    let names = profile.names();
    let unresolved: Vec<&String> = names
        .iter()
        .filter(|n| resolved.get(*n).is_none_or(Vec::is_empty))
        .collect();
    let nothing_resolves = !names.is_empty() && unresolved.len() == names.len();
    for n in &unresolved {
        reasons.push(format!("cannot resolve {n}"));
    }
    if !unresolved.is_empty() {
        fixes.push(Fix {
            title: format!(
                "Make {} resolvable: check the resolver in /etc/resolv.conf and the route to it, or a DNS filter blocking the name",
                unresolved.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ),
            commands: vec![format!("nslookup {}", unresolved.first().map(|s| s.as_str()).unwrap_or(""))],
            caveat: None,
        });
    }

    // The classifier's view of P2P and relays.
    let mut level = match nat {
        Some(c) => c.verdict.level,
        None => Level::Blocked,
    };
    if let Some(c) = nat {
        reasons.extend(c.verdict.reasons.iter().cloned());
        fixes.extend(c.verdict.fixes.iter().cloned());
    } else if services.iter().any(|s| s.kind == ServiceKind::Stun) && !nothing_resolves {
        reasons.push("no STUN server could be probed: NAT behaviour unknown".into());
    }
    // Without NAT measurements a working TURN service still means relay only.
    let turn_ok = services
        .iter()
        .filter(|s| s.kind == ServiceKind::Turn)
        .any(|s| {
            s.checks
                .iter()
                .any(|r| r.probe == "turn" && r.state == State::Ok)
        });
    if nat.is_none() && turn_ok {
        level = Level::RelayOnly;
    }

    let mut status = match level {
        Level::Direct => State::Ok,
        Level::Blocked => State::Blocked,
        _ => State::Degraded,
    };
    let mut headline = nat.map(|c| c.verdict.headline.clone());

    // Control plane: without management or signal, no peer connects at all.
    let mut dead: Vec<&str> = Vec::new();
    for s in services {
        if matches!(s.kind, ServiceKind::Management | ServiceKind::Signal)
            && s.state == State::Blocked
        {
            status = State::Blocked;
            let why = s
                .checks
                .iter()
                .find(|r| r.state == State::Blocked)
                .map(|r| r.detail.clone())
                .unwrap_or_default();
            reasons.push(format!("{} cannot be used: {why}", s.name));
            dead.push(&s.name);
        }
    }
    if !dead.is_empty() && !nothing_resolves {
        headline = Some(format!(
            "Blocked: the {} service{} cannot be reached, so peers cannot log in or connect",
            dead.join(" and "),
            if dead.len() == 1 { "" } else { "s" }
        ));
    }
    for p in control_problems {
        // Unresolved names already have their fix above.
        if p.kind == probes::control::ProblemKind::Dns && !unresolved.is_empty() {
            continue;
        }
        fixes.push(Fix {
            title: p.summary.clone(),
            commands: p.fix.iter().map(|f| f.title.clone()).collect(),
            caveat: None,
        });
    }

    // Ports: any blocked STUN/TURN port or part of the range makes it degraded at best.
    for s in services {
        if !matches!(s.kind, ServiceKind::Stun | ServiceKind::Turn) {
            continue;
        }
        let blocked: Vec<u16> = {
            let mut v: Vec<u16> = s
                .checks
                .iter()
                .filter(|r| {
                    r.transport == super::model::Transport::Udp
                        && matches!(r.probe, "stun" | "turn")
                        && r.state == State::Blocked
                })
                .filter_map(|r| r.port)
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        if !blocked.is_empty() {
            port_reasons.push(format!(
                "{}: UDP port{} {} blocked",
                s.name,
                if blocked.len() == 1 { "" } else { "s" },
                port_list(&blocked)
            ));
            fixes.push(udp_fix(s, &blocked, resolved));
            if status == State::Ok {
                status = State::Degraded;
            }
        }
        if s.state == State::Degraded && status == State::Ok {
            status = State::Degraded;
        }
    }
    for sample in samples {
        let dropped = sample.ports.iter().filter(|p| !passes(p.state)).count();
        if dropped > 0 {
            port_reasons.push(format!(
                "{}: {dropped} of {} sampled TCP ports in {}-{} are dropped",
                sample.service,
                sample.ports.len(),
                sample.range_start,
                sample.range_end
            ));
            fixes.push(tcp_range_fix(sample, resolved));
            if status == State::Ok {
                status = State::Degraded;
            }
        }
    }
    for s in services {
        if s.kind == ServiceKind::Relay && s.state == State::Blocked && status == State::Ok {
            status = State::Degraded;
            reasons.push(format!("{}: the relay cannot be reached", s.name));
        }
    }
    if services
        .iter()
        .any(|s| s.kind == ServiceKind::Relay && s.checks.iter().any(|r| r.state == State::Skipped))
    {
        fixes.push(Fix {
            title: "Allow outbound TCP/443 to the relays by wildcard (*.relay.netbird.io) where the firewall supports it, to avoid interruptions when the management service moves a peer to another relay".into(),
            commands: vec!["netbird status -d   # shows the relay in use; check it with: stunmap check --relay NAME".into()],
            caveat: None,
        });
    }

    if !port_reasons.is_empty() && status != State::Blocked {
        if let Some(h) = &mut headline {
            h.push_str(", but ");
            h.push_str(&port_reasons.join("; "));
        }
    }
    reasons.extend(port_reasons);
    if nothing_resolves {
        status = State::Blocked;
        level = Level::Blocked;
        headline = Some(format!(
            "Blocked: cannot resolve {} — no DNS answer (no route to the internet, or DNS is blocked)",
            names.join(", ")
        ));
    }
    let headline = match headline {
        Some(h) => h,
        None => match status {
            State::Ok => "OK: every check passed".into(),
            State::Degraded => "Degraded: some checks failed".into(),
            _ => "Blocked: nothing answered".into(),
        },
    };
    // Keep the level consistent with the status for readers of the JSON.
    if status == State::Blocked {
        level = Level::Blocked;
    }
    let exit_code = if interrupted {
        130
    } else {
        match status {
            State::Ok => 0,
            State::Degraded => 1,
            _ => 2,
        }
    };
    let mut seen = std::collections::HashSet::new();
    fixes.retain(|f| seen.insert(f.title.clone()));
    reasons.dedup();
    (
        Verdict {
            status,
            level,
            exit_code,
            headline,
            reasons,
        },
        fixes,
    )
}
