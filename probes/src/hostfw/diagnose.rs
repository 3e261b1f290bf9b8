//! From parsed inputs to findings, each with its verdict, the deciding rule and the fix.
//!
//! Kernel rules (iptables, nftables) decide verdicts. UFW's status and firewalld's zone explain
//! them and choose the fix; on their own (no kernel rules read) they are reported as blocking
//! when they would block, since nothing better is known.

use serde::Serialize;

use super::agents::{FoundAgent, Process};
use super::eval::{AddrSpec, Evaluation, IfaceSpec, L4, Packet, PacketVerdict, evaluate};
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
        Manager::Nft | Manager::Iptables => blocking_base(eval).map_or_else(
            || format!("sudo iptables -I INPUT -i {i} -j ACCEPT"),
            |(src, fam, table, chain)| match src {
                RuleSource::Nft => {
                    format!("sudo nft insert rule {fam} {table} {chain} iifname \"{i}\" accept")
                }
                RuleSource::Iptables => {
                    format!("sudo iptables -t {table} -I {chain} -i {i} -j ACCEPT")
                }
                RuleSource::Ip6tables => {
                    format!("sudo ip6tables -t {table} -I {chain} -i {i} -j ACCEPT")
                }
            },
        ),
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
        Manager::Nft | Manager::Iptables => blocking_base(eval).map_or_else(
            || format!("sudo iptables -I INPUT -p udp --dport {colon} -j ACCEPT"),
            |(src, fam, table, chain)| match src {
                RuleSource::Nft => {
                    format!("sudo nft insert rule {fam} {table} {chain} udp dport {dash} accept")
                }
                RuleSource::Iptables => {
                    format!("sudo iptables -t {table} -I {chain} -p udp --dport {colon} -j ACCEPT")
                }
                RuleSource::Ip6tables => {
                    format!("sudo ip6tables -t {table} -I {chain} -p udp --dport {colon} -j ACCEPT")
                }
            },
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
        let tunnel = |l4: L4| Packet {
            family,
            iif: IfaceSpec::Named(i.clone()),
            saddr: AddrSpec {
                within: o.subnet,
                local: false,
            },
            daddr: AddrSpec {
                within: o.subnet,
                local: true,
            },
            l4,
        };
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
            let pkt = Packet {
                family,
                iif: uplink.clone(),
                saddr: AddrSpec {
                    within: any,
                    local: false,
                },
                daddr: AddrSpec {
                    within: any,
                    local: true,
                },
                l4: L4::Udp { dport: ports },
            };
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

/// Whether a rule is one Group Policy's "apply local firewall rules: no" leaves out: made on
/// the host (or of unknown origin, which for NetBird's own rule means local).
fn is_local_rule(r: &WinRule) -> bool {
    matches!(
        r.policy_source.as_deref(),
        None | Some("Local" | "HostFirewallLocal")
    )
}

fn windows_findings(
    rules: &[WinRule],
    profiles: Option<&[WinProfile]>,
    o: &Options,
) -> Vec<FirewallFinding> {
    let i = &o.interface;
    let exe = "netbird.exe";
    let mut out = Vec::new();
    // For the tunnel: the interface, the NetBird program, or the tunnel's own address (what
    // NetBird's `Netbird` rule names, `localip=`), for any protocol and port.
    let about_tunnel = |r: &WinRule| {
        r.inbound
            && (r.names_interface(i) || r.is_program(exe) || r.local_address_in(&o.subnet))
            && r.all_traffic()
    };
    // Windows: an enabled block rule wins over any allow rule. One blocks the tunnel when it
    // is about the tunnel, or blocks everything from the VPN subnet on every interface.
    let blocks_tunnel = |r: &WinRule| {
        r.remote_overlaps(&o.subnet)
            && (about_tunnel(r)
                || (r.inbound
                    && r.on_interface(i)
                    && r.program.is_none()
                    && r.all_traffic()
                    && (r.local_address.is_empty() || r.local_address_in(&o.subnet))))
    };
    let block = rules
        .iter()
        .filter(|r| r.enabled && !r.allow)
        .find(|r| blocks_tunnel(r));
    let allow_for = |r: &&WinRule| about_tunnel(r) && r.remote_covers(&o.subnet);
    let allow = rules
        .iter()
        .filter(|r| r.enabled && r.allow)
        .find(allow_for);
    let disabled = rules
        .iter()
        .filter(|r| !r.enabled && r.allow)
        .find(allow_for);
    let fix = Fix::new(format!("Add an inbound allow rule for {i}")).command(format!(
        "New-NetFirewallRule -DisplayName \"NetBird\" -Direction Inbound -InterfaceAlias \"{i}\" -Action Allow"
    ));
    let subject = format!("Windows inbound allow rule for {i}, its address or {exe}");
    out.push(match (block, allow, disabled) {
        (Some(b), _, _) => FirewallFinding::plain(
            FindingKind::WindowsInterfaceRule,
            format!("{subject}: an enabled block rule overrides it"),
            Status::Blocked,
            Some(WinRule::describe(b)),
            Some(
                Fix::new(format!("Disable the block rule \"{}\"", b.display_name)).command(
                    format!(
                        "Disable or remove the block rule \"{}\" (check Group Policy if it comes back)",
                        b.display_name
                    ),
                ),
            ),
        ),
        (None, Some(a), _) => FirewallFinding::plain(
            FindingKind::WindowsInterfaceRule,
            subject,
            Status::Ok,
            Some(WinRule::describe(a)),
            None,
        ),
        (None, None, Some(d)) => FirewallFinding::plain(
            FindingKind::WindowsInterfaceRule,
            format!("{subject}: exists but is disabled"),
            Status::Blocked,
            Some(WinRule::describe(d)),
            Some(
                Fix::new(format!("Enable the rule \"{}\"", d.display_name)).command(format!(
                    "Enable-NetFirewallRule -DisplayName \"{}\"",
                    d.display_name
                )),
            ),
        ),
        (None, None, None) => FirewallFinding::plain(
            FindingKind::WindowsInterfaceRule,
            format!("{subject}: missing (Group Policy may have removed it)"),
            Status::Blocked,
            None,
            Some(fix),
        ),
    });
    // WireGuard's raw UDP arrives on the physical interface, to its address: a rule limited to
    // the tunnel's address (NetBird's own) does not cover it.
    let p2p = |r: &&WinRule| {
        r.inbound
            && r.allow
            && r.on_interface("")
            && r.local_address.is_empty()
            && (r.program.is_none() || r.is_program(exe))
            && r.covers_udp(o.wg_range)
    };
    let enabled = rules.iter().filter(|r| r.enabled).find(p2p);
    let disabled = rules.iter().filter(|r| !r.enabled).find(p2p);
    let status = if o.flat_network {
        Status::Blocked
    } else {
        Status::Degraded
    };
    let p2p_fix = Fix {
        title: format!(
            "Add the NetBird P2P rule for inbound UDP {}-{}",
            o.wg_range.start, o.wg_range.end
        ),
        commands: vec![format!(
            "New-NetFirewallRule -DisplayName \"NetBird P2P\" -Direction Inbound -Action Allow -Protocol UDP -LocalPort {}-{} -Program \"C:\\Program Files\\Netbird\\netbird.exe\"",
            o.wg_range.start, o.wg_range.end
        )],
        caveat: Some(
            "only needed when peers reach this host without NAT; scoped to the NetBird program"
                .to_owned(),
        ),
    };
    let subject = format!(
        "Windows inbound UDP {} rule for P2P on flat networks",
        o.wg_range
    );
    out.push(match (enabled, disabled) {
        (Some(r), _) => FirewallFinding::plain(
            FindingKind::WindowsP2pRule,
            subject,
            Status::Ok,
            Some(WinRule::describe(r)),
            None,
        ),
        (None, Some(r)) => FirewallFinding::plain(
            FindingKind::WindowsP2pRule,
            format!("{subject}: exists but is disabled"),
            status,
            Some(WinRule::describe(r)),
            Some(p2p_fix),
        ),
        (None, None) => FirewallFinding::plain(
            FindingKind::WindowsP2pRule,
            format!("{subject}: missing"),
            status,
            None,
            Some(p2p_fix),
        ),
    });
    let Some(profiles) = profiles else {
        return out;
    };
    let on: Vec<&WinProfile> = profiles.iter().filter(|p| p.is_on()).collect();
    if on.is_empty() && !profiles.is_empty() {
        // Nothing filters: no rule is needed and none can block.
        for f in &mut out {
            f.status = Status::Skipped;
            f.subject = format!("{}: not needed while Windows Firewall is off", f.subject);
            f.fix = None;
        }
    } else {
        // Group Policy can tell a profile to ignore rules made on the host, NetBird's among them.
        let ignoring: Vec<&str> = on
            .iter()
            .filter(|p| !p.local_rules_apply())
            .map(|p| p.name.as_str())
            .collect();
        if !ignoring.is_empty() {
            let profiles_text = ignoring.join(", ");
            for (f, rule) in out.iter_mut().zip([allow, enabled]) {
                let Some(r) = rule else { continue };
                if f.status != Status::Ok || !is_local_rule(r) {
                    continue;
                }
                f.status = if f.kind == FindingKind::WindowsP2pRule {
                    status
                } else {
                    Status::Blocked
                };
                f.subject = format!(
                    "{}: a local rule, which Group Policy does not apply in the {profiles_text} profile{}",
                    f.subject,
                    if ignoring.len() > 1 { "s" } else { "" }
                );
                f.fix = Some(Fix {
                    title: format!("Have Group Policy carry the rule \"{}\"", r.display_name),
                    commands: vec![
                        format!(
                            "Add the rule \"{}\" to the Group Policy object that configures Windows Defender Firewall, or",
                            r.display_name
                        ),
                        format!(
                            "in that GPO: Windows Defender Firewall with Advanced Security > Properties > {profiles_text} Profile > Settings: Customize > Rule merging: Apply local firewall rules: Yes"
                        ),
                    ],
                    caveat: Some(
                        "Group Policy is set by the domain's administrators; a change on this host is overwritten at the next policy refresh"
                            .to_owned(),
                    ),
                });
            }
        }
    }
    out.push(profiles_finding(profiles));
    out
}

/// The state of Windows Firewall's profiles, for the record.
fn profiles_finding(profiles: &[WinProfile]) -> FirewallFinding {
    let describe = |p: &WinProfile| {
        let mut s = format!("{} {}", p.name, if p.is_on() { "on" } else { "off" });
        if p.is_on() {
            s.push_str(match p.default_inbound {
                DefaultAction::Allow => " (inbound allowed by default)",
                DefaultAction::Block | DefaultAction::NotConfigured => {
                    " (inbound blocked by default)"
                }
            });
            if !p.local_rules_apply() {
                s.push_str(" (local rules not applied: Group Policy)");
            }
        }
        s
    };
    let all_off = !profiles.is_empty() && profiles.iter().all(|p| !p.is_on());
    let subject = if profiles.is_empty() {
        "Windows Firewall profiles: none listed".to_owned()
    } else if all_off {
        "Windows Firewall is off in every profile: it blocks nothing".to_owned()
    } else {
        format!(
            "Windows Firewall profiles: {}",
            profiles.iter().map(describe).collect::<Vec<_>>().join(", ")
        )
    };
    FirewallFinding::plain(
        FindingKind::WindowsProfiles,
        subject,
        if profiles.is_empty() {
            Status::Skipped
        } else {
            Status::Ok
        },
        Some("Get-NetFirewallProfile -PolicyStore ActiveStore".to_owned()),
        None,
    )
}

/// NetBird's firewall page's advice for a third-party product, for `product` on a host whose
/// NetBird program is `exe`.
fn third_party_fix(product: &str, exe: &str, o: &Options) -> Fix {
    Fix {
        title: format!("Test with {product}'s firewall component disabled"),
        commands: vec![
            format!(
                "Temporarily disable {product}'s firewall (network protection) component, not the whole product"
            ),
            "Test NetBird: ping a peer's NetBird address, or check `netbird status -d`".to_owned(),
            format!(
                "If that works, add an exception in {product} for the NetBird process ({exe}) or the {} interface, then turn the component back on",
                o.interface
            ),
        ],
        caveat: Some(
            "stunmap cannot read this product's own rules: the other findings cover only the OS firewall".to_owned(),
        ),
    }
}

/// The products Windows Security Center lists: a third-party firewall or security suite that
/// is on may filter NetBird's traffic where Windows Firewall allows it.
fn product_findings(products: &[SecurityProduct], o: &Options) -> Vec<FirewallFinding> {
    let mut out = Vec::new();
    let firewalls: Vec<&str> = products
        .iter()
        .filter(|p| p.kind == ProductKind::Firewall)
        .map(|p| p.name.as_str())
        .collect();
    for p in products {
        // A suite registers as a firewall and as an antivirus: one finding, the firewall's.
        if p.kind == ProductKind::Antivirus && firewalls.contains(&p.name.as_str()) {
            continue;
        }
        let page = p
            .named_cause()
            .map(|v| format!("; NetBird's firewall page names {v} as a common cause"))
            .unwrap_or_default();
        let deciding = Some(format!(
            "Windows Security Center: {} \"{}\", productState {} (0x{:06x}): {}{}{}",
            match p.kind {
                ProductKind::Firewall => "FirewallProduct",
                ProductKind::Antivirus => "AntiVirusProduct",
            },
            p.name,
            p.state.raw,
            p.state.raw,
            p.state.engine,
            if p.state.up_to_date {
                ", signatures up to date"
            } else {
                ", signatures out of date"
            },
            p.path
                .as_deref()
                .map(|x| format!(", {x}"))
                .unwrap_or_default(),
        ));
        let (subject, status, fix) = if !p.is_on() {
            (
                format!(
                    "{} {} \"{}\" is registered but {}",
                    if p.is_microsoft() {
                        "Microsoft"
                    } else {
                        "third-party"
                    },
                    p.kind,
                    p.name,
                    p.state.engine
                ),
                Status::Skipped,
                None,
            )
        } else if p.is_microsoft() {
            (
                format!(
                    "{} is on: an antivirus, it filters no traffic beside Windows Firewall",
                    p.name
                ),
                Status::Ok,
                None,
            )
        } else if p.kind == ProductKind::Firewall {
            (
                format!(
                    "third-party firewall \"{}\" is on: it filters traffic on its own, and its rules are not visible here{page}",
                    p.name
                ),
                Status::Uncertain,
                Some(third_party_fix(&p.name, NETBIRD_EXE_WINDOWS, o)),
            )
        } else {
            (
                format!(
                    "third-party security software \"{}\" is on: endpoint suites often filter traffic with a firewall component of their own{page}",
                    p.name
                ),
                Status::Uncertain,
                Some(third_party_fix(&p.name, NETBIRD_EXE_WINDOWS, o)),
            )
        };
        out.push(FirewallFinding::plain(
            FindingKind::SecuritySoftware,
            subject,
            status,
            deciding,
            fix,
        ));
    }
    if out.is_empty() {
        out.push(FirewallFinding::plain(
            FindingKind::SecuritySoftware,
            "Windows Security Center lists no firewall or antivirus product".to_owned(),
            Status::Ok,
            None,
            None,
        ));
    }
    out
}

/// Endpoint agents on Linux: running ones may filter traffic themselves (uncertain); netfilter
/// objects named after a product that is not running are noted (their rules are part of the
/// evaluation above).
fn agent_findings(agents: &[FoundAgent], scanned: bool, o: &Options) -> Vec<FirewallFinding> {
    let mut out = Vec::new();
    for a in agents {
        let mut deciding = Vec::new();
        if !a.processes.is_empty() {
            deciding.push(format!("running: {}", a.processes.join(", ")));
        }
        if !a.netfilter.is_empty() {
            deciding.push(format!(
                "netfilter objects named after it (a hint, not proof): {}",
                a.netfilter.join(", ")
            ));
        }
        if let Some(n) = a.note {
            deciding.push(n.to_owned());
        }
        let running = !a.processes.is_empty();
        let page = super::wsc::named_cause(a.product)
            .map(|v| format!("; NetBird's firewall page names {v} as a common cause"))
            .unwrap_or_default();
        let (subject, status, fix) = if running {
            (
                format!(
                    "endpoint security agent {} is running: it can filter traffic beside the OS firewall, and its own rules are not visible here{page}",
                    a.product
                ),
                Status::Uncertain,
                Some(third_party_fix(a.product, NETBIRD_EXE_LINUX, o)),
            )
        } else {
            (
                format!(
                    "netfilter tables or chains are named after {}, which is not running: their rules are evaluated above",
                    a.product
                ),
                Status::Skipped,
                None,
            )
        };
        out.push(FirewallFinding::plain(
            FindingKind::SecuritySoftware,
            subject,
            status,
            Some(deciding.join("; ")),
            fix,
        ));
    }
    if scanned && !agents.iter().any(|a| !a.processes.is_empty()) {
        out.push(FirewallFinding::plain(
            FindingKind::SecuritySoftware,
            "no known endpoint security agent is running".to_owned(),
            Status::Ok,
            Some(format!(
                "processes checked for {} products (docs/host.md lists them)",
                super::agents::AGENTS.len()
            )),
            None,
        ));
    }
    out
}
