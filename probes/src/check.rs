//! The verdict of `stunmap check`: the NAT classifier's verdict (with the TURN and relay
//! results as its relay paths), then what it cannot see — names that do not resolve, a control
//! plane that cannot be reached, STUN/TURN ports or parts of the TCP range that are blocked —
//! and the fixes, in the reference page's terms (nftables/UFW outbound rules for the STUN/TURN
//! endpoints, fail2ban allow-lists, the relay's wildcard name).
//!
//! A pure function of typed facts: the CLI measures and assembles, this module judges.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use serde::Serialize;

use crate::control::{Problem, ProblemKind};
use crate::finding::{Fix, Status};
use crate::nat::{Classification, Level};
use crate::profile::ServiceKind;

/// The state of a service from its rows: skipped rows do not count; all ok → ok, none ok →
/// blocked, anything between (degraded or uncertain rows among ok ones) → degraded.
pub fn combine(rows: impl Iterator<Item = Status>) -> Status {
    let (mut ok, mut partial, mut blocked) = (0, 0, 0);
    for s in rows {
        match s {
            Status::Ok => ok += 1,
            Status::Degraded | Status::Uncertain => partial += 1,
            Status::Blocked => blocked += 1,
            Status::Skipped => {}
        }
    }
    match (ok, partial, blocked) {
        (0, 0, 0) => Status::Skipped,
        (_, 0, 0) => Status::Ok,
        (0, 0, _) => Status::Blocked,
        _ => Status::Degraded,
    }
}

/// What the judge needs to know of one checked service.
#[derive(Clone, Debug)]
pub struct ServiceFacts {
    /// The profile's name for it.
    pub name: String,
    /// Its kind.
    pub kind: ServiceKind,
    /// Hosts as written in the profile.
    pub hosts: Vec<String>,
    /// Its state.
    pub state: Status,
    /// STUN/TURN UDP ports that were blocked.
    pub blocked_udp_ports: Vec<u16>,
    /// A TURN Allocate succeeded (or got its 401) on some transport.
    pub turn_answered: bool,
    /// Why the service is blocked, in the words of its first blocked row.
    pub blocked_detail: Option<String>,
    /// A relay row was skipped (a wildcard relay name).
    pub relay_skipped: bool,
    /// Why nothing of the service was probed, when its state is `Skipped`.
    pub not_probed: Option<String>,
}

impl ServiceFacts {
    /// Facts of a service with nothing found yet.
    pub fn new(
        name: impl Into<String>,
        kind: ServiceKind,
        hosts: Vec<String>,
        state: Status,
    ) -> Self {
        ServiceFacts {
            name: name.into(),
            kind,
            hosts,
            state,
            blocked_udp_ports: Vec::new(),
            turn_answered: false,
            blocked_detail: None,
            relay_skipped: false,
            not_probed: None,
        }
    }

    fn is(&self, k: ServiceKind) -> bool {
        self.kind == k
    }

    fn state(&self) -> Status {
        self.state
    }
}

/// What the judge needs to know of one TCP sample.
#[derive(Clone, Debug, Default)]
pub struct SampleFacts {
    /// The service.
    pub service: String,
    /// The host sampled.
    pub host: String,
    /// First port of the range.
    pub range_start: u16,
    /// Last port.
    pub range_end: u16,
    /// Ports sampled.
    pub sampled: usize,
    /// Of which dropped (filtered or unreachable).
    pub dropped: usize,
}

/// Everything the check measured, as the judge reads it.
#[derive(Clone, Copy, Debug)]
pub struct CheckFacts<'a> {
    /// Every name of the profile.
    pub names: &'a [String],
    /// The addresses each name resolved to (empty or absent: it did not resolve).
    pub resolved: &'a HashMap<String, Vec<IpAddr>>,
    /// The services, in profile order.
    pub services: &'a [ServiceFacts],
    /// The TCP samples.
    pub samples: &'a [SampleFacts],
    /// The NAT classification, when a STUN server could be probed.
    pub nat: Option<&'a Classification>,
    /// Control-plane problems that matter (not informational ones).
    pub control_problems: &'a [Problem],
}

/// The check's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckVerdict {
    /// `ok`, `degraded` or `blocked`.
    pub status: Status,
    /// The NAT classifier's level, after the port and control findings.
    pub level: Level,
    /// One line.
    pub headline: String,
    /// Why.
    pub reasons: Vec<String>,
    /// What to change, each once.
    pub fixes: Vec<Fix>,
}

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

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn udp_fix(service: &ServiceFacts, ports: &[u16], resolved: &HashMap<String, Vec<IpAddr>>) -> Fix {
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
            plural(ports.len()),
            port_list(ports)
        ),
        commands,
        caveat: Some(
            "If using fail2ban or similar, whitelist these endpoints too; STUN/TURN address lists are dynamic, so rules by name must be reloaded when the names resolve differently".into(),
        ),
    }
}

fn tcp_range_fix(sample: &SampleFacts, resolved: &HashMap<String, Vec<IpAddr>>) -> Fix {
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
            sample.host, sample.range_start, sample.range_end, sample.dropped, sample.sampled
        ),
        commands,
        caveat: None,
    }
}

/// Findings accumulate here while the rules run.
#[derive(Default)]
struct Findings {
    reasons: Vec<String>,
    /// Port findings, also appended to the headline.
    port_reasons: Vec<String>,
    fixes: Vec<Fix>,
}

/// Judge a finished check.
pub fn judge(facts: &CheckFacts<'_>) -> CheckVerdict {
    let mut f = Findings::default();
    let unresolved: Vec<&String> = facts
        .names
        .iter()
        .filter(|n| facts.resolved.get(*n).is_none_or(Vec::is_empty))
        .collect();
    let nothing_resolves = !facts.names.is_empty() && unresolved.len() == facts.names.len();
    names(&mut f, &unresolved);

    // The classifier's view of P2P and relays.
    let mut level = facts.nat.map_or(Level::Blocked, |c| c.verdict.level);
    if let Some(c) = facts.nat {
        f.reasons.extend(c.verdict.reasons.iter().cloned());
        f.fixes.extend(c.verdict.fixes.iter().cloned());
    } else if facts.services.iter().any(|s| s.is(ServiceKind::Stun)) && !nothing_resolves {
        f.reasons
            .push("no STUN server could be probed: NAT behaviour unknown".into());
    }
    // Without NAT measurements a working TURN service still means relay only.
    let turn_ok = facts
        .services
        .iter()
        .any(|s| s.is(ServiceKind::Turn) && s.turn_answered);
    if facts.nat.is_none() && turn_ok {
        level = Level::RelayOnly;
    }
    let mut status = match level {
        Level::Direct => Status::Ok,
        Level::Blocked => Status::Blocked,
        _ => Status::Degraded,
    };
    let mut headline = facts.nat.map(|c| c.verdict.headline.clone());
    control_plane(&mut f, facts, &mut status, &mut headline, nothing_resolves);
    for p in facts.control_problems {
        // Unresolved names already have their fix.
        if p.kind == ProblemKind::Dns && !unresolved.is_empty() {
            continue;
        }
        let fix = p.fix.as_ref();
        f.fixes.push(Fix {
            title: p.summary.clone(),
            commands: fix
                .map(|x| {
                    std::iter::once(x.title.clone())
                        .chain(x.commands.iter().cloned())
                        .collect()
                })
                .unwrap_or_default(),
            caveat: fix.and_then(|x| x.caveat.clone()),
        });
    }
    ports(&mut f, facts, &mut status);
    relays(&mut f, facts, &mut status);

    if !f.port_reasons.is_empty()
        && status != Status::Blocked
        && let Some(h) = &mut headline
    {
        h.push_str(", but ");
        h.push_str(&f.port_reasons.join("; "));
    }
    f.reasons.append(&mut f.port_reasons);
    // A service nothing was sent to is never counted as working.
    let probed = facts.services.iter().any(|s| s.state() != Status::Skipped);
    for s in facts.services {
        if s.state() == Status::Skipped && !s.is(ServiceKind::Relay) {
            f.reasons.push(format!(
                "{}: {}",
                s.name,
                s.not_probed.as_deref().unwrap_or("not probed")
            ));
        }
    }
    if !probed && !facts.services.is_empty() && !nothing_resolves {
        status = Status::Blocked;
        headline = Some(format!(
            "Not probed: nothing could be sent: {}",
            facts
                .services
                .iter()
                .filter_map(|s| s.not_probed.as_deref())
                .map(|d| d.trim_start_matches("not probed: "))
                .next()
                .unwrap_or("no service had an address to probe")
        ));
    }
    if nothing_resolves {
        status = Status::Blocked;
        headline = Some(format!(
            "Blocked: cannot resolve {} — no DNS answer (no route to the internet, or DNS is blocked)",
            facts.names.join(", ")
        ));
    }
    let headline = headline.unwrap_or_else(|| match status {
        Status::Ok => "OK: every check passed".into(),
        Status::Degraded => "Degraded: some checks failed".into(),
        _ => "Blocked: nothing answered".into(),
    });
    // Keep the level consistent with the status for readers of the JSON.
    if status == Status::Blocked {
        level = Level::Blocked;
    }
    let mut seen = HashSet::new();
    f.fixes.retain(|x| seen.insert(x.title.clone()));
    f.reasons.dedup();
    CheckVerdict {
        status,
        level,
        headline,
        reasons: f.reasons,
        fixes: f.fixes,
    }
}

fn names(f: &mut Findings, unresolved: &[&String]) {
    for n in unresolved {
        f.reasons.push(format!("cannot resolve {n}"));
    }
    if let Some(first) = unresolved.first() {
        f.fixes.push(Fix {
            title: format!(
                "Make {} resolvable: check the resolver in /etc/resolv.conf and the route to it, or a DNS filter blocking the name",
                unresolved
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            commands: vec![format!("nslookup {first}")],
            caveat: None,
        });
    }
}

/// Without management or signal, no peer connects at all.
fn control_plane(
    f: &mut Findings,
    facts: &CheckFacts<'_>,
    status: &mut Status,
    headline: &mut Option<String>,
    nothing_resolves: bool,
) {
    let mut dead: Vec<&str> = Vec::new();
    for s in facts.services {
        if (s.is(ServiceKind::Management) || s.is(ServiceKind::Signal))
            && s.state() == Status::Blocked
        {
            *status = Status::Blocked;
            f.reasons.push(format!(
                "{} cannot be used: {}",
                s.name,
                s.blocked_detail.as_deref().unwrap_or_default()
            ));
            dead.push(&s.name);
        }
    }
    if !dead.is_empty() && !nothing_resolves {
        *headline = Some(format!(
            "Blocked: the {} service{} cannot be reached, so peers cannot log in or connect",
            dead.join(" and "),
            plural(dead.len())
        ));
    }
}

/// Any blocked STUN/TURN port or part of the range makes the run degraded at best.
fn ports(f: &mut Findings, facts: &CheckFacts<'_>, status: &mut Status) {
    for s in facts.services {
        if !(s.is(ServiceKind::Stun) || s.is(ServiceKind::Turn)) {
            continue;
        }
        let mut blocked = s.blocked_udp_ports.clone();
        blocked.sort_unstable();
        blocked.dedup();
        if !blocked.is_empty() {
            f.port_reasons.push(format!(
                "{}: UDP port{} {} blocked",
                s.name,
                plural(blocked.len()),
                port_list(&blocked)
            ));
            f.fixes.push(udp_fix(s, &blocked, facts.resolved));
            if *status == Status::Ok {
                *status = Status::Degraded;
            }
        }
        if s.state() == Status::Degraded && *status == Status::Ok {
            *status = Status::Degraded;
        }
    }
    for sample in facts.samples {
        if sample.dropped > 0 {
            f.port_reasons.push(format!(
                "{}: {} of {} sampled TCP ports in {}-{} are dropped",
                sample.service,
                sample.dropped,
                sample.sampled,
                sample.range_start,
                sample.range_end
            ));
            f.fixes.push(tcp_range_fix(sample, facts.resolved));
            if *status == Status::Ok {
                *status = Status::Degraded;
            }
        }
    }
}

fn relays(f: &mut Findings, facts: &CheckFacts<'_>, status: &mut Status) {
    for s in facts.services {
        if s.is(ServiceKind::Relay) && s.state() == Status::Blocked && *status == Status::Ok {
            *status = Status::Degraded;
            f.reasons
                .push(format!("{}: the relay cannot be reached", s.name));
        }
    }
    if facts
        .services
        .iter()
        .any(|s| s.is(ServiceKind::Relay) && s.relay_skipped)
    {
        f.fixes.push(Fix {
            title: "Allow outbound TCP/443 to the relays by wildcard (*.relay.netbird.io) where the firewall supports it, to avoid interruptions when the management service moves a peer to another relay".into(),
            commands: vec!["netbird status -d   # shows the relay in use; check it with: stunmap check --relay NAME".into()],
            caveat: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(kind: ServiceKind, state: Status) -> ServiceFacts {
        ServiceFacts::new(
            kind.as_str(),
            kind,
            vec![format!("{}.example", kind.as_str())],
            state,
        )
    }

    /// A profile's one name, and what it resolved to: `ip`.
    fn one_name(name: &str, ip: &str) -> (Vec<String>, HashMap<String, Vec<IpAddr>>) {
        let resolved = HashMap::from([(name.to_string(), vec![ip.parse().unwrap()])]);
        (vec![name.to_string()], resolved)
    }

    /// The verdict on `services` and `samples` for `names`, with no NAT classification and no
    /// control-plane problems.
    fn judge_services(
        names: &[String],
        resolved: &HashMap<String, Vec<IpAddr>>,
        services: &[ServiceFacts],
        samples: &[SampleFacts],
    ) -> CheckVerdict {
        judge(&CheckFacts {
            names,
            resolved,
            services,
            samples,
            nat: None,
            control_problems: &[],
        })
    }

    #[test]
    fn nothing_resolving_is_blocked_whatever_else_ran() {
        let names = vec!["a.example".to_string(), "b.example".to_string()];
        let resolved = HashMap::new();
        let services = [service(ServiceKind::Turn, Status::Ok)];
        let v = judge_services(&names, &resolved, &services, &[]);
        assert_eq!(v.status, Status::Blocked);
        assert_eq!(v.level, Level::Blocked);
        assert!(v.headline.contains("cannot resolve a.example, b.example"));
    }

    #[test]
    fn a_dead_management_service_blocks_and_says_why() {
        let (names, resolved) = one_name("m.example", "192.0.2.1");
        let mut m = service(ServiceKind::Management, Status::Blocked);
        m.blocked_detail = Some("connect timed out".into());
        let services = [m, service(ServiceKind::Turn, Status::Ok)];
        let v = judge_services(&names, &resolved, &services, &[]);
        assert_eq!(v.status, Status::Blocked);
        assert!(
            v.reasons
                .iter()
                .any(|r| r == "management cannot be used: connect timed out")
        );
    }

    #[test]
    fn a_service_nothing_was_sent_to_is_not_ok() {
        let (names, resolved) = one_name("stun.example", "2001:db8::7");
        let mut s = service(ServiceKind::Stun, Status::Skipped);
        s.not_probed = Some("not probed: no route to stun.example (2001:db8::7)".into());
        let services = [s];
        let v = judge_services(&names, &resolved, &services, &[]);
        assert_eq!(v.status, Status::Blocked);
        assert!(v.headline.starts_with("Not probed"), "{}", v.headline);
        assert!(
            v.reasons
                .iter()
                .any(|r| r.contains("no route to stun.example"))
        );
    }

    #[test]
    fn blocked_ports_get_one_fix_that_names_every_port() {
        let (names, resolved) = one_name("stun.example", "192.0.2.7");
        let mut s = service(ServiceKind::Stun, Status::Degraded);
        s.hosts = vec!["stun.example".into()];
        s.blocked_udp_ports = vec![5555, 80, 80];
        let sample = SampleFacts {
            service: "turn".into(),
            host: "stun.example".into(),
            range_start: 443,
            range_end: 65535,
            sampled: 10,
            dropped: 3,
        };
        let services = [s];
        let samples = [sample];
        let v = judge_services(&names, &resolved, &services, &samples);
        let fix = v.fixes.iter().find(|f| f.title.contains("UDP")).unwrap();
        assert!(fix.title.contains("ports 80, 5555"), "{}", fix.title);
        assert!(
            fix.commands
                .iter()
                .any(|c| c.contains("daddr 192.0.2.7 udp dport { 80, 5555 }"))
        );
        assert!(
            v.fixes
                .iter()
                .any(|f| f.title.contains("ports 443-65535 (3 of 10"))
        );
    }
}
