//! Findings from Windows Firewall: its rules toward NetBird and its profiles.

use super::*;

/// Whether a rule is one Group Policy's "apply local firewall rules: no" leaves out: made on
/// the host (or of unknown origin, which for NetBird's own rule means local).
pub(super) fn is_local_rule(r: &WinRule) -> bool {
    matches!(
        r.policy_source.as_deref(),
        None | Some("Local" | "HostFirewallLocal")
    )
}

pub(super) fn windows_findings(
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
pub(super) fn profiles_finding(profiles: &[WinProfile]) -> FirewallFinding {
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
