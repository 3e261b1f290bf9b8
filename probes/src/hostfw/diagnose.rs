//! From parsed inputs to findings, each with its verdict, the deciding rule and the fix.
//!
//! Kernel rules (iptables, nftables) decide verdicts. UFW's status and firewalld's zone explain
//! them and choose the fix; on their own (no kernel rules read) they are reported as blocking
//! when they would block, since nothing better is known.

use serde::Serialize;

use super::agents::{FoundAgent, Process};
use super::eval::{Evaluation, IfaceSpec, L4, Packet, PacketVerdict, evaluate};
use super::firewalld::ZoneOfInterface;
use super::iptables_save::{Backend, Dump};
use super::model::{Cidr, RuleSource, Ruleset, TableFamily};
use super::netsecurity::{DefaultAction, WinProfile};
use super::ufw::UfwStatus;
use super::windows::WinRule;
use super::wsc::{ProductKind, SecurityProduct};
use crate::finding::{Fix, Status};
use crate::{Family, PortRange};

/// What the user asked about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Tunnel interface (`wt0`).
    pub interface: String,
    /// VPN subnet (`100.64.0.0/10`).
    pub subnet: Cidr,
    /// Service port used for the TCP and UDP probes over the tunnel.
    pub service_port: u16,
    /// WireGuard port range for the flat-network check (49152–65535).
    pub wg_range: PortRange,
    /// WireGuard's default port (51820).
    pub wg_port: u16,
    /// Physical interface peers reach this host on, if known.
    pub uplink: Option<String>,
    /// Peers reach this host without NAT: dropped WireGuard UDP blocks P2P.
    pub flat_network: bool,
}

/// Everything read, already parsed.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// `iptables-save`.
    pub iptables: Option<Dump>,
    /// `ip6tables-save`.
    pub ip6tables: Option<Dump>,
    /// `nft -j list ruleset`.
    pub nft: Option<Ruleset>,
    /// `ufw status verbose`.
    pub ufw: Option<UfwStatus>,
    /// `firewall-cmd --get-zone-of-interface`.
    pub firewalld: Option<ZoneOfInterface>,
    /// Windows Firewall rules (the NetSecurity cmdlets joined, or a merged export).
    pub windows: Option<Vec<WinRule>>,
    /// Windows Firewall profiles (`Get-NetFirewallProfile`).
    pub windows_profiles: Option<Vec<WinProfile>>,
    /// Products registered with Windows Security Center (`FirewallProduct`,
    /// `AntiVirusProduct`).
    pub security_products: Option<Vec<SecurityProduct>>,
    /// This host's processes (Linux), to recognise endpoint security agents.
    pub processes: Option<Vec<Process>>,
}

/// What a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// New inbound traffic on the tunnel interface from the VPN subnet.
    Tunnel,
    /// WireGuard UDP arriving on the physical interface (flat networks).
    FlatNetworkUdp,
    /// UFW's own view.
    Ufw,
    /// firewalld's zone for the tunnel interface.
    FirewalldZone,
    /// Windows: inbound allow rule for the tunnel interface or the NetBird program.
    WindowsInterfaceRule,
    /// Windows: inbound UDP rule for P2P on flat networks.
    WindowsP2pRule,
    /// Windows Firewall's profiles: on or off, default inbound action, local rules applied.
    WindowsProfiles,
    /// Third-party security software: a product registered with Windows Security Center, or
    /// an endpoint agent running on Linux. Its own filtering shows in no OS firewall source.
    SecuritySoftware,
    /// Nothing could be evaluated.
    NoRules,
}

/// One finding of the diagnosis: a packet path or a firewall manager's configuration, how it
/// fares, the deciding rule and the fix.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FirewallFinding {
    /// Kind.
    pub kind: FindingKind,
    /// What was checked, in words.
    pub subject: String,
    /// Status.
    pub status: Status,
    /// Packet verdict (kernel-rule findings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<PacketVerdict>,
    /// The deciding rule or policy, as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deciding: Option<String>,
    /// Rules that left the verdict undecided.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uncertain_rules: Vec<String>,
    /// Full evaluation (kernel-rule findings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,
    /// The fix, when something blocks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<Fix>,
}

impl FirewallFinding {
    fn plain(
        kind: FindingKind,
        subject: String,
        status: Status,
        deciding: Option<String>,
        fix: Option<Fix>,
    ) -> Self {
        FirewallFinding {
            kind,
            subject,
            status,
            verdict: None,
            deciding,
            uncertain_rules: Vec::new(),
            evaluation: None,
            fix,
        }
    }
}

/// The report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Tunnel interface.
    pub interface: String,
    /// VPN subnet.
    pub subnet: Cidr,
    /// Findings in order.
    pub findings: Vec<FirewallFinding>,
    /// Whether any finding blocks traffic.
    pub blocked: bool,
    /// The products Windows Security Center lists, when read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_products: Vec<SecurityProduct>,
    /// Endpoint agents found running (Linux), or named on netfilter tables and chains.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoint_agents: Vec<FoundAgent>,
}

/// Which manager to phrase the fix for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Manager {
    Ufw,
    Firewalld,
    Nft,
    Iptables,
}

fn manager(inputs: &Inputs, rs: &Ruleset) -> Manager {
    let ufw_chains = rs.chains.iter().any(|c| c.name.starts_with("ufw-"));
    if inputs.ufw.as_ref().is_some_and(|u| u.active) || ufw_chains {
        Manager::Ufw
    } else if matches!(
        inputs.firewalld,
        Some(ZoneOfInterface::Zone(_) | ZoneOfInterface::NoZone)
    ) || rs.chains.iter().any(|c| c.table == "firewalld")
    {
        Manager::Firewalld
    } else if rs.chains.iter().any(|c| c.source == RuleSource::Nft) {
        Manager::Nft
    } else {
        Manager::Iptables
    }
}

fn trusted_zone_fix(iface: &str) -> String {
    format!(
        "sudo firewall-cmd --permanent --zone=trusted --add-interface={iface} && sudo firewall-cmd --reload"
    )
}

fn tunnel_fix(m: Manager, eval: &Evaluation, o: &Options) -> Fix {
    let i = &o.interface;
    let command = match m {
        // An explicit UFW deny decided: UFW appends new rules, so the allow must go above it.
        Manager::Ufw
            if eval
                .deciding
                .as_ref()
                .is_some_and(|d| d.chain.starts_with("ufw-user-")) =>
        {
            format!(
                "sudo ufw insert 1 allow in on {i}   (UFW rules apply in order: the allow must come before the deny)"
            )
        }
        Manager::Ufw => format!(
            "sudo ufw allow in on {i}   (or, narrower: sudo ufw allow in on {i} from {})",
            o.subnet
        ),
        Manager::Firewalld => trusted_zone_fix(i),
        Manager::Nft | Manager::Iptables => {
            accept_command(eval, &format!("iifname \"{i}\""), &format!("-i {i}"))
        }
    };
    Fix {
        title: format!("Accept new inbound traffic on {i}"),
        commands: vec![command],
        caveat: Some(format!(
            "{i} only carries traffic already authenticated and decrypted by WireGuard; this opens no port to the internet"
        )),
    }
}

/// The fix for WireGuard UDP to `r` on the physical interface. It is built from the ports the
/// finding is about, so the rule it offers always covers them (the default port's finding gets a
/// rule for that port, not the ephemeral range).
fn flat_fix(m: Manager, eval: &Evaluation, r: PortRange) -> Fix {
    // iptables and UFW write ranges `start:end`, firewalld and nft `start-end`; one port is just the port.
    let colon = if r.start == r.end {
        r.start.to_string()
    } else {
        format!("{}:{}", r.start, r.end)
    };
    let dash = r.to_string();
    let command = match m {
        Manager::Ufw => format!("sudo ufw allow in proto udp to any port {colon}"),
        Manager::Firewalld => format!(
            "sudo firewall-cmd --permanent --add-port={dash}/udp && sudo firewall-cmd --reload"
        ),
        Manager::Nft | Manager::Iptables => accept_command(
            eval,
            &format!("udp dport {dash}"),
            &format!("-p udp --dport {colon}"),
        ),
    };
    let scope = if r.start == r.end {
        format!("UDP port {} from anyone who can reach this host", r.start)
    } else {
        format!("UDP to every port in {dash} from anyone who can reach this host")
    };
    Fix {
        title: if r.start == r.end {
            format!(
                "Accept inbound WireGuard UDP to port {} (flat networks)",
                r.start
            )
        } else {
            format!("Accept inbound WireGuard UDP to ports {dash} (flat networks)")
        },
        commands: vec![command],
        caveat: Some(format!(
            "only needed when peers reach this host without NAT (flat office network, routed VLAN). It accepts \
             {scope}: Linux cannot scope the rule to the NetBird process as Windows can. Weigh it against staying \
             on the relay."
        )),
    }
}

/// The command that accepts what `nft_match` (in nft's words) and `ipt_match` (iptables'
/// options) select: a rule inserted at the top of the base chain that blocked, else of INPUT.
fn accept_command(eval: &Evaluation, nft_match: &str, ipt_match: &str) -> String {
    blocking_base(eval).map_or_else(
        || format!("sudo iptables -I INPUT {ipt_match} -j ACCEPT"),
        |(src, fam, table, chain)| match src {
            RuleSource::Nft => {
                format!("sudo nft insert rule {fam} {table} {chain} {nft_match} accept")
            }
            RuleSource::Iptables => {
                format!("sudo iptables -t {table} -I {chain} {ipt_match} -j ACCEPT")
            }
            RuleSource::Ip6tables => {
                format!("sudo ip6tables -t {table} -I {chain} {ipt_match} -j ACCEPT")
            }
        },
    )
}

/// The base chain that blocked: where an accept rule has to go.
fn blocking_base(eval: &Evaluation) -> Option<(RuleSource, TableFamily, String, String)> {
    let step = eval
        .chains
        .iter()
        .find(|s| s.verdict.blocks())
        .or_else(|| {
            eval.chains
                .iter()
                .find(|s| s.verdict == PacketVerdict::Uncertain)
        })?;
    Some((
        step.decided_by.source,
        step.decided_by.family.clone(),
        step.table.clone(),
        step.base_chain.clone(),
    ))
}

/// Merge the kernel rule sources, dropping the nft view of tables iptables-nft owns (its `xt`
/// expressions are opaque there; the iptables-save view of the same rules is exact).
pub fn combined_ruleset(inputs: &Inputs) -> Ruleset {
    let mut rs = Ruleset::default();
    let mut owned: Vec<(TableFamily, String)> = Vec::new();
    for (dump, fam) in [
        (&inputs.iptables, TableFamily::Ip),
        (&inputs.ip6tables, TableFamily::Ip6),
    ] {
        if let Some(d) = dump {
            if d.backend == Backend::NfTables {
                owned.extend(d.tables.iter().map(|t| (fam.clone(), t.clone())));
            }
            rs.extend(d.ruleset.clone());
        }
    }
    if let Some(n) = &inputs.nft {
        let mut n = n.clone();
        n.chains
            .retain(|c| !owned.iter().any(|(f, t)| *f == c.family && *t == c.table));
        rs.extend(n);
    }
    rs
}

fn status_of(v: PacketVerdict) -> Status {
    match v {
        PacketVerdict::Accept => Status::Ok,
        PacketVerdict::Drop | PacketVerdict::Reject => Status::Blocked,
        PacketVerdict::Uncertain => Status::Uncertain,
    }
}

fn kernel_finding(
    kind: FindingKind,
    subject: String,
    eval: Evaluation,
    fix: impl FnOnce(&Evaluation) -> Fix,
    advisory: bool,
) -> FirewallFinding {
    let mut status = status_of(eval.verdict);
    if advisory && status == Status::Blocked {
        status = Status::Degraded;
    }
    let deciding = Some(match &eval.deciding {
        Some(d) => d.to_string(),
        None => "no chain on the input hook: nothing filters".to_owned(),
    });
    let fix = (status != Status::Ok).then(|| fix(&eval));
    FirewallFinding {
        kind,
        subject,
        status,
        verdict: Some(eval.verdict),
        deciding,
        uncertain_rules: eval
            .uncertain_rules
            .iter()
            .map(ToString::to_string)
            .collect(),
        evaluation: Some(eval),
        fix,
    }
}

/// Run every check the inputs allow.
pub fn diagnose(inputs: &Inputs, o: &Options) -> Report {
    let mut findings = Vec::new();
    let rs = combined_ruleset(inputs);
    let have_kernel =
        inputs.iptables.is_some() || inputs.ip6tables.is_some() || inputs.nft.is_some();
    let m = manager(inputs, &rs);
    let family = if o.subnet.is_v4() {
        Family::Ipv4
    } else {
        Family::Ipv6
    };
    let any = Cidr::new(o.subnet.addr(), 0).unwrap_or(o.subnet);
    let i = &o.interface;

    if have_kernel {
        let tunnel = |l4: L4| Packet::within(family, IfaceSpec::Named(i.clone()), o.subnet, l4);
        let sp = PortRange::single(o.service_port);
        for (what, l4) in [
            ("ping (ICMP echo)".to_owned(), L4::Echo),
            (
                format!("TCP to port {}", o.service_port),
                L4::Tcp { dport: sp },
            ),
            (
                format!("UDP to port {}", o.service_port),
                L4::Udp { dport: sp },
            ),
        ] {
            let eval = evaluate(&rs, &tunnel(l4));
            let subject = format!("new inbound {what} on {i} from {}", o.subnet);
            findings.push(kernel_finding(
                FindingKind::Tunnel,
                subject,
                eval,
                |e| tunnel_fix(m, e, o),
                false,
            ));
        }
        let uplink = match &o.uplink {
            Some(u) => IfaceSpec::Named(u.clone()),
            None => IfaceSpec::Unnamed {
                not: vec![i.clone(), "lo".to_owned()],
            },
        };
        let on = o
            .uplink
            .clone()
            .unwrap_or_else(|| "the physical interface".to_owned());
        let wg_default = PortRange::single(o.wg_port);
        for ports in [wg_default, o.wg_range] {
            let pkt = Packet::within(family, uplink.clone(), any, L4::Udp { dport: ports });
            let eval = evaluate(&rs, &pkt);
            let subject =
                format!("new inbound WireGuard UDP to port {ports} on {on} (flat network, no NAT)");
            findings.push(kernel_finding(
                FindingKind::FlatNetworkUdp,
                subject,
                eval,
                |e| flat_fix(m, e, ports),
                !o.flat_network,
            ));
        }
    }

    if let Some(u) = &inputs.ufw {
        findings.push(ufw_finding(u, o, have_kernel));
    }
    if let Some(z) = &inputs.firewalld {
        findings.push(firewalld_finding(z, o, have_kernel));
    }
    if let Some(w) = &inputs.windows {
        findings.extend(windows_findings(w, inputs.windows_profiles.as_deref(), o));
    } else if let Some(p) = &inputs.windows_profiles {
        findings.push(profiles_finding(p));
    }
    if findings.is_empty() {
        findings.push(FirewallFinding::plain(
            FindingKind::NoRules,
            "no firewall source was read".to_owned(),
            Status::Skipped,
            None,
            None,
        ));
    }
    let mut security_products = Vec::new();
    if let Some(products) = &inputs.security_products {
        findings.extend(product_findings(products, o));
        security_products = products.clone();
    }
    let endpoint_agents = super::agents::detect(inputs.processes.as_deref().unwrap_or(&[]), &rs);
    findings.extend(agent_findings(
        &endpoint_agents,
        inputs.processes.is_some(),
        o,
    ));
    let blocked = findings.iter().any(|f| f.status == Status::Blocked);
    Report {
        interface: o.interface.clone(),
        subnet: o.subnet,
        findings,
        blocked,
        security_products,
        endpoint_agents,
    }
}

fn ufw_finding(u: &UfwStatus, o: &Options, have_kernel: bool) -> FirewallFinding {
    let i = &o.interface;
    let subject = format!("UFW rules for {i}");
    if !u.active {
        return FirewallFinding::plain(
            FindingKind::Ufw,
            "UFW is inactive".to_owned(),
            Status::Ok,
            None,
            None,
        );
    }
    // The first rule that concerns the tunnel's traffic: one on the interface, or one from any
    // source / the VPN subnet without an interface.
    let concerns = |r: &&super::ufw::UfwRule| {
        let iface_ok = r.interface().is_none_or(|x| x == i);
        let from_ok = r.from.starts_with("Anywhere")
            || Cidr::parse(&r.from).is_some_and(|c| c.overlaps(&o.subnet));
        let to_all = r.to.starts_with("Anywhere");
        iface_ok && from_ok && to_all && (r.allows_in() || r.denies_in())
    };
    let first = u.rules.iter().find(concerns);
    let default_deny = u.default_incoming.as_deref().is_none_or(|d| d != "allow");
    let blocked_status = if have_kernel {
        Status::Degraded
    } else {
        Status::Blocked
    };
    let fix = Some(
        Fix::new(format!("Allow inbound traffic on {i} in UFW")).command(format!(
            "sudo ufw allow in on {i}   (or, narrower: sudo ufw allow in on {i} from {})",
            o.subnet
        )),
    );
    match first {
        Some(r) if r.allows_in() => FirewallFinding::plain(
            FindingKind::Ufw,
            subject,
            Status::Ok,
            Some(format!(
                "ufw rule [{}] (line {}): {}",
                r.number, r.line, r.text
            )),
            None,
        ),
        Some(r) => FirewallFinding::plain(
            FindingKind::Ufw,
            format!("{subject}: a deny rule comes before any allow for {i}"),
            blocked_status,
            Some(format!(
                "ufw rule [{}] (line {}): {}",
                r.number, r.line, r.text
            )),
            Some(
                Fix::new(format!("Put an allow rule for {i} above UFW's deny rule")).command(
                    format!(
                        "sudo ufw insert 1 allow in on {i}   (UFW rules are evaluated in order; put the allow above the deny)"
                    ),
                ),
            ),
        ),
        None if default_deny => FirewallFinding::plain(
            FindingKind::Ufw,
            format!(
                "{subject}: none; default incoming policy is {}",
                u.default_incoming.as_deref().unwrap_or("deny")
            ),
            blocked_status,
            Some("ufw default policy (incoming)".to_owned()),
            fix,
        ),
        None => FirewallFinding::plain(
            FindingKind::Ufw,
            subject,
            Status::Ok,
            Some("ufw default policy allow (incoming)".into()),
            None,
        ),
    }
}

fn firewalld_finding(z: &ZoneOfInterface, o: &Options, have_kernel: bool) -> FirewallFinding {
    let i = &o.interface;
    let blocked_status = if have_kernel {
        Status::Degraded
    } else {
        Status::Blocked
    };
    let fix =
        Some(Fix::new(format!("Put {i} in firewalld's trusted zone")).command(trusted_zone_fix(i)));
    match z {
        ZoneOfInterface::Zone(name) if name == "trusted" => FirewallFinding::plain(
            FindingKind::FirewalldZone,
            format!("firewalld zone of {i}: trusted"),
            Status::Ok,
            None,
            None,
        ),
        ZoneOfInterface::Zone(name) => FirewallFinding::plain(
            FindingKind::FirewalldZone,
            format!("firewalld zone of {i}: {name} (only that zone's services are accepted)"),
            blocked_status,
            Some(format!("firewalld zone {name}")),
            fix,
        ),
        ZoneOfInterface::NoZone => FirewallFinding::plain(
            FindingKind::FirewalldZone,
            format!("firewalld zone of {i}: none, so the default zone applies"),
            blocked_status,
            Some("firewalld default zone".to_owned()),
            fix,
        ),
        ZoneOfInterface::NotRunning => FirewallFinding::plain(
            FindingKind::FirewalldZone,
            "firewalld is not running".to_owned(),
            Status::Skipped,
            None,
            None,
        ),
    }
}

/// The NetBird program's path on Windows, as NetBird's documentation gives it.
const NETBIRD_EXE_WINDOWS: &str = "C:\\Program Files\\NetBird\\netbird.exe";
/// The NetBird program's path on Linux.
const NETBIRD_EXE_LINUX: &str = "/usr/bin/netbird";

mod products;
mod windows;
use products::{agent_findings, product_findings};
use windows::{profiles_finding, windows_findings};
