//! Verdicts on rulesets saved from the real tools (see `probes/tests/fixtures/hostfw/README.md`).

use super::diagnose::{Inputs, Options, Report, diagnose};
use super::eval::{Decider, PacketVerdict};
use super::model::{Cidr, RuleSource};
use super::{FindingKind, firewalld, iptables_save, nft_json, ufw, windows};
use crate::finding::Status;
use crate::{Family, PortRange};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/hostfw/",
            $name
        ))
    };
}

fn opts() -> Options {
    Options {
        interface: "wt0".into(),
        subnet: Cidr::parse("100.64.0.0/10").unwrap(),
        service_port: 8080,
        wg_range: PortRange {
            start: 49152,
            end: 65535,
        },
        wg_port: 51820,
        uplink: None,
        flat_network: false,
    }
}

fn ipt(text: &str) -> Option<iptables_save::Dump> {
    Some(iptables_save::parse(text, Family::Ipv4).unwrap())
}

/// Findings of a kind, in order: tunnel = [icmp, tcp, udp], flat = [51820, range].
fn of(r: &Report, kind: FindingKind) -> Vec<&super::FirewallFinding> {
    r.findings.iter().filter(|f| f.kind == kind).collect()
}

fn deciding(f: &super::FirewallFinding) -> &str {
    f.deciding.as_deref().unwrap()
}

#[test]
fn ufw_default_deny_drops_tunnel_tcp_by_input_policy() {
    let inputs = Inputs {
        iptables: ipt(fixture!("ufw-default-iptables-save.txt")),
        ufw: Some(ufw::parse(fixture!("ufw-default-status.txt")).unwrap()),
        ..Inputs::default()
    };
    let r = diagnose(&inputs, &opts());
    assert!(r.blocked);
    let t = of(&r, FindingKind::Tunnel);
    // UFW accepts ping in ufw-before-input (icmp type 8), and nothing else.
    assert_eq!(t[0].verdict, Some(PacketVerdict::Accept));
    assert!(
        deciding(t[0]).contains("chain ufw-before-input, rule 8"),
        "{}",
        deciding(t[0])
    );
    assert!(
        deciding(t[0]).ends_with("-A ufw-before-input -p icmp -m icmp --icmp-type 8 -j ACCEPT")
    );
    for f in &t[1..] {
        assert_eq!(f.verdict, Some(PacketVerdict::Drop));
        assert_eq!(
            deciding(f),
            "iptables table filter chain INPUT: policy DROP (no rule matched)"
        );
        assert!(f.fix.as_ref().unwrap().commands[0].starts_with("sudo ufw allow in on wt0"));
    }
    let flat = of(&r, FindingKind::FlatNetworkUdp);
    assert_eq!(flat.len(), 2);
    // Each fix names the ports its finding is about.
    for (f, ports) in flat.into_iter().zip(["51820", "49152:65535"]) {
        assert_eq!(f.verdict, Some(PacketVerdict::Drop));
        // Only a problem on flat networks unless --flat-network says so.
        assert_eq!(f.status, Status::Degraded);
        let fix = f.fix.as_ref().unwrap();
        assert_eq!(
            fix.commands[0],
            format!("sudo ufw allow in proto udp to any port {ports}")
        );
        assert!(fix.caveat.as_ref().unwrap().contains("cannot scope"));
    }
    assert_eq!(of(&r, FindingKind::Ufw)[0].status, Status::Degraded);
}

#[test]
fn ufw_allow_in_on_wt0_accepts() {
    let inputs = Inputs {
        iptables: ipt(fixture!("ufw-allow-wt0-iptables-save.txt")),
        ip6tables: Some(
            iptables_save::parse(fixture!("ufw-allow-wt0-ip6tables-save.txt"), Family::Ipv6)
                .unwrap(),
        ),
        ufw: Some(ufw::parse(fixture!("ufw-allow-wt0-status.txt")).unwrap()),
        ..Inputs::default()
    };
    let r = diagnose(&inputs, &opts());
    assert!(!r.blocked);
    let t = of(&r, FindingKind::Tunnel);
    for f in &t[1..] {
        assert_eq!(f.verdict, Some(PacketVerdict::Accept));
        assert_eq!(
            deciding(f),
            "iptables table filter chain ufw-user-input, rule 1 (line 100): -A ufw-user-input -i wt0 -j ACCEPT"
        );
        assert!(f.fix.is_none());
    }
    let u = of(&r, FindingKind::Ufw)[0];
    assert_eq!(u.status, Status::Ok);
    assert!(deciding(u).contains("Anywhere on wt0"));
}

#[test]
fn ufw_flat_network_rule_accepts_wireguard_udp() {
    let mut o = opts();
    o.flat_network = true;
    let inputs = Inputs {
        iptables: ipt(fixture!("ufw-flat-iptables-save.txt")),
        ..Inputs::default()
    };
    let r = diagnose(&inputs, &o);
    for f in of(&r, FindingKind::FlatNetworkUdp) {
        assert_eq!(f.verdict, Some(PacketVerdict::Accept), "{f:?}");
        assert!(
            deciding(f)
                .ends_with("-A ufw-user-input -p udp -m multiport --dports 49152:65535 -j ACCEPT")
        );
    }
    // The same host without the rule, on a flat network: blocking.
    let inputs = Inputs {
        iptables: ipt(fixture!("ufw-default-iptables-save.txt")),
        ..Inputs::default()
    };
    let r = diagnose(&inputs, &o);
    assert!(
        of(&r, FindingKind::FlatNetworkUdp)
            .iter()
            .all(|f| f.status == Status::Blocked)
    );
}

#[test]
fn ufw_deny_before_netbird_accept_wins() {
    let inputs = Inputs {
        iptables: ipt(fixture!("ufw-deny-before-netbird-iptables-save.txt")),
        ufw: Some(ufw::parse(fixture!("ufw-deny-before-netbird-status.txt")).unwrap()),
        ..Inputs::default()
    };
    let r = diagnose(&inputs, &opts());
    assert!(r.blocked);
    let tcp = of(&r, FindingKind::Tunnel)[1];
    assert_eq!(tcp.verdict, Some(PacketVerdict::Drop));
    assert!(
        deciding(tcp).ends_with("rule 1 (line 103): -A ufw-user-input -s 100.64.0.0/10 -j DROP"),
        "{}",
        deciding(tcp)
    );
    assert!(tcp.fix.as_ref().unwrap().commands[0].starts_with("sudo ufw insert 1 allow in on wt0"));
    // The NetBird accept is in INPUT after the jump into UFW's chains: never reached.
    let u = of(&r, FindingKind::Ufw)[0];
    assert!(deciding(u).contains("DENY IN"));
    assert!(u.fix.as_ref().unwrap().commands[0].starts_with("sudo ufw insert 1 allow in on wt0"));
    // From an unknown LAN source the deny may or may not match; both ways end in a drop.
    let flat = of(&r, FindingKind::FlatNetworkUdp)[0];
    assert_eq!(flat.verdict, Some(PacketVerdict::Drop));
    assert!(flat.uncertain_rules.is_empty());
}

#[test]
fn nft_drop_in_any_base_chain_wins_over_netbird_accept() {
    let inputs = Inputs {
        nft: Some(nft_json::parse(fixture!("nft-netbird-vs-inet-drop.json")).unwrap()),
        ..Inputs::default()
    };
    let r = diagnose(&inputs, &opts());
    assert!(r.blocked);
    let tcp = of(&r, FindingKind::Tunnel)[1];
    assert_eq!(tcp.verdict, Some(PacketVerdict::Drop));
    assert_eq!(
        deciding(tcp),
        "nft table inet filter chain input: policy drop (no rule matched)"
    );
    let ev = tcp.evaluation.as_ref().unwrap();
    // The NetBird chain (priority -1) accepted first; the inet chain (priority 0) dropped.
    assert_eq!(ev.chains.len(), 2);
    assert_eq!(ev.chains[0].verdict, PacketVerdict::Accept);
    assert_eq!(ev.chains[0].priority, -1);
    assert!(
        matches!(&ev.chains[0].decided_by.by, Decider::Rule { pos, .. } if pos.handle == Some(2))
    );
    assert_eq!(
        tcp.fix.as_ref().unwrap().commands[0],
        "sudo nft insert rule inet filter input iifname \"wt0\" accept"
    );
    // 51820 is inside the accepted 51000-51999; the whole ephemeral range only partly.
    let flat = of(&r, FindingKind::FlatNetworkUdp);
    assert_eq!(flat[0].verdict, Some(PacketVerdict::Accept));
    assert_eq!(flat[1].verdict, Some(PacketVerdict::Uncertain));
    assert!(flat[1].uncertain_rules[0].ends_with("udp dport 51000-51999 accept"));

    let fixed = Inputs {
        nft: Some(nft_json::parse(fixture!("nft-netbird-inet-fixed.json")).unwrap()),
        ..Inputs::default()
    };
    let r = diagnose(&fixed, &opts());
    let tcp = of(&r, FindingKind::Tunnel)[1];
    assert_eq!(tcp.verdict, Some(PacketVerdict::Accept));
    assert_eq!(
        deciding(tcp),
        "nft table inet filter chain input, rule 5 (handle 10): iifname \"wt0\" accept comment \"stunmap fix\""
    );
    assert!(!r.blocked);
}

#[test]
fn iptables_nft_tables_in_nft_json_are_opaque_but_reported_honestly() {
    // nft's view of UFW's rules (iptables-nft) hides conntrack/addrtype in `xt` expressions.
    let alone = Inputs {
        nft: Some(nft_json::parse(fixture!("ufw-default-nft.json")).unwrap()),
        ..Inputs::default()
    };
    let r = diagnose(&alone, &opts());
    let tcp = of(&r, FindingKind::Tunnel)[1];
    assert_eq!(tcp.verdict, Some(PacketVerdict::Uncertain));
    assert!(
        tcp.uncertain_rules
            .iter()
            .any(|u| u.contains("xt match conntrack")),
        "{:?}",
        tcp.uncertain_rules
    );
    // With iptables-save alongside, the exact iptables view replaces nft's copy of the same tables.
    let both = Inputs {
        nft: alone.nft.clone(),
        iptables: ipt(fixture!("ufw-default-iptables-save.txt")),
        ..Inputs::default()
    };
    let r = diagnose(&both, &opts());
    let tcp = of(&r, FindingKind::Tunnel)[1];
    assert_eq!(tcp.verdict, Some(PacketVerdict::Drop));
    assert!(
        tcp.evaluation
            .as_ref()
            .unwrap()
            .chains
            .iter()
            .all(|c| c.decided_by.source == RuleSource::Iptables)
    );
}

#[test]
fn firewalld_zone_findings() {
    let z = |t| Inputs {
        firewalld: Some(firewalld::parse(t).unwrap()),
        ..Inputs::default()
    };
    let r = diagnose(&z(fixture!("firewalld-zone-trusted.txt")), &opts());
    assert_eq!(r.findings[0].status, Status::Ok);
    let r = diagnose(&z(fixture!("firewalld-zone-public.txt")), &opts());
    assert_eq!(r.findings[0].status, Status::Blocked);
    assert_eq!(
        r.findings[0].fix.as_ref().unwrap().commands[0],
        "sudo firewall-cmd --permanent --zone=trusted --add-interface=wt0 && sudo firewall-cmd --reload"
    );
    let r = diagnose(&z(fixture!("firewalld-zone-none.txt")), &opts());
    assert!(r.findings[0].subject.contains("default zone"));
    assert!(r.blocked);
}

#[test]
fn windows_export_with_and_without_rule() {
    let w = |t: &str| Inputs {
        windows: Some(windows::parse(t.as_bytes()).unwrap()),
        ..Inputs::default()
    };
    let r = diagnose(&w(fixture!("windows-firewall-with-rule.json")), &opts());
    assert!(!r.blocked);
    assert!(
        r.findings.iter().all(|f| f.status == Status::Ok),
        "{:?}",
        r.findings
    );
    assert!(deciding(&r.findings[0]).contains("\"NetBird\""));
    assert!(deciding(&r.findings[1]).contains("netbird.exe"));

    let r = diagnose(&w(fixture!("windows-firewall-without-rule.json")), &opts());
    assert!(r.blocked);
    let f = &r.findings[0];
    assert!(f.subject.ends_with("exists but is disabled"));
    assert_eq!(
        f.fix.as_ref().unwrap().commands[0],
        "Enable-NetFirewallRule -DisplayName \"NetBird\""
    );
    assert_eq!(r.findings[1].status, Status::Degraded);
    let p2p = r.findings[1].fix.as_ref().unwrap();
    assert_eq!(
        p2p.title,
        "Add the NetBird P2P rule for inbound UDP 49152-65535"
    );
    assert!(p2p.commands[0].contains("-LocalPort 49152-65535"));
    assert!(p2p.commands[0].contains(" -Direction Inbound -Action Allow "));

    // No rule at all: the allow rule's PowerShell, and the rule text a finding quotes.
    let r = diagnose(&w("[]"), &opts());
    let fix = r.findings[0].fix.as_ref().unwrap();
    assert_eq!(fix.title, "Add an inbound allow rule for wt0");
    assert_eq!(
        fix.commands,
        [
            "New-NetFirewallRule -DisplayName \"NetBird\" -Direction Inbound -InterfaceAlias \"wt0\" -Action Allow"
        ]
    );
    let r = diagnose(&w(fixture!("windows-firewall-with-rule.json")), &opts());
    assert!(
        deciding(&r.findings[0]).contains(", Action=Allow,"),
        "{:?}",
        r.findings[0]
    );
}

#[test]
fn report_serializes() {
    let inputs = Inputs {
        iptables: ipt(fixture!("ufw-default-iptables-save.txt")),
        ..Inputs::default()
    };
    let v = serde_json::to_value(diagnose(&inputs, &opts())).unwrap();
    assert_eq!(v["findings"][1]["verdict"], "drop");
    assert_eq!(v["findings"][1]["evaluation"]["deciding"]["kind"], "policy");
    assert_eq!(v["subnet"], "100.64.0.0/10");
}

#[test]
fn flat_network_fix_covers_a_wireguard_port_outside_the_range() {
    // The port NetBird really listens on (`wireguardPort`) may lie outside 49152-65535: the fix
    // offered for it must open that port, not the range.
    let mut o = opts();
    o.wg_port = 41820;
    o.flat_network = true;
    let inputs = Inputs {
        iptables: ipt(
            "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
        ),
        ..Inputs::default()
    };
    let r = diagnose(&inputs, &o);
    let flat = of(&r, FindingKind::FlatNetworkUdp);
    assert!(
        flat[0].subject.contains("port 41820"),
        "{}",
        flat[0].subject
    );
    assert_eq!(
        flat[0].fix.as_ref().unwrap().commands[0],
        "sudo iptables -t filter -I INPUT -p udp --dport 41820 -j ACCEPT"
    );
    assert_eq!(
        flat[1].fix.as_ref().unwrap().commands[0],
        "sudo iptables -t filter -I INPUT -p udp --dport 49152:65535 -j ACCEPT"
    );
    assert!(flat.iter().all(|f| f.status == Status::Blocked));
}

/// A folder of saved sources, read as `stunmap host --from` reads it.
fn saved(dir: &str) -> Inputs {
    use super::sources::{Collected, SAVED};
    let root = format!("{}/tests/fixtures/hostfw/{dir}", env!("CARGO_MANIFEST_DIR"));
    let mut c = Collected::default();
    for s in SAVED {
        if let Ok(bytes) = std::fs::read(format!("{root}/{}", s.file())) {
            c.add(s, &bytes)
                .unwrap_or_else(|e| panic!("{}: {e}", s.file()));
        }
    }
    assert!(c.missing_filters().is_empty());
    c.finish()
}

#[test]
fn windows_cmdlets_netbird_rules_in_place() {
    let inputs = saved("windows-ok");
    assert_eq!(inputs.windows.as_ref().unwrap().len(), 10);
    let r = diagnose(&inputs, &opts());
    assert!(!r.blocked, "{:#?}", r.findings);
    let rule = &of(&r, FindingKind::WindowsInterfaceRule)[0];
    assert_eq!(rule.status, Status::Ok);
    // NetBird's own rule names the tunnel's address, not the interface.
    assert!(deciding(rule).contains("\"Netbird\""), "{}", deciding(rule));
    assert!(deciding(rule).contains("LocalAddress=100.92.144.7"));
    let p2p = &of(&r, FindingKind::WindowsP2pRule)[0];
    assert_eq!(p2p.status, Status::Ok);
    assert!(deciding(p2p).contains("netbird.exe"));
    let prof = &of(&r, FindingKind::WindowsProfiles)[0];
    assert_eq!(
        prof.subject,
        "Windows Firewall profiles: Domain on (inbound blocked by default), Private on (inbound blocked by default), Public on (inbound blocked by default)"
    );
    let sw = of(&r, FindingKind::SecuritySoftware);
    assert_eq!(sw.len(), 1);
    assert_eq!(sw[0].status, Status::Ok);
    assert!(
        sw[0].subject.starts_with("Windows Defender is on"),
        "{}",
        sw[0].subject
    );
    assert_eq!(r.security_products.len(), 1);
}

#[test]
fn windows_cmdlets_group_policy_block_rule_local_rules_and_eset() {
    let r = diagnose(&saved("windows-problems"), &opts());
    assert!(r.blocked);
    let rule = &of(&r, FindingKind::WindowsInterfaceRule)[0];
    assert_eq!(rule.status, Status::Blocked);
    assert!(
        rule.subject.ends_with("an enabled block rule overrides it"),
        "{}",
        rule.subject
    );
    assert!(deciding(rule).contains("PolicyStoreSourceType=GroupPolicy"));
    assert!(deciding(rule).contains("RemoteAddress=100.64.0.0/255.192.0.0"));
    // The P2P rule is local and Group Policy ignores local rules in the Domain profile.
    let p2p = &of(&r, FindingKind::WindowsP2pRule)[0];
    assert_eq!(p2p.status, Status::Degraded);
    assert!(
        p2p.subject
            .ends_with("a local rule, which Group Policy does not apply in the Domain profile"),
        "{}",
        p2p.subject
    );
    assert!(p2p.fix.as_ref().unwrap().commands[1].contains("Apply local firewall rules: Yes"));
    let sw = of(&r, FindingKind::SecuritySoftware);
    assert_eq!(sw.len(), 2, "{sw:#?}");
    assert_eq!(sw[0].status, Status::Uncertain);
    assert!(
        sw[0]
            .subject
            .contains("third-party firewall \"ESET Security\" is on")
    );
    assert!(
        sw[0]
            .subject
            .ends_with("NetBird's firewall page names ESET as a common cause")
    );
    let fix = sw[0].fix.as_ref().unwrap();
    assert_eq!(
        fix.title,
        "Test with ESET Security's firewall component disabled"
    );
    assert!(fix.commands[2].contains("C:\\Program Files\\NetBird\\netbird.exe"));
    assert!(fix.commands[2].contains("wt0"));
    // ESET's antivirus registration is the same product; Defender is off.
    assert_eq!(sw[1].status, Status::Skipped);
    assert!(
        sw[1]
            .subject
            .contains("\"Windows Defender\" is registered but off"),
        "{}",
        sw[1].subject
    );
}

#[test]
fn windows_firewall_off_everywhere_needs_no_rule() {
    let mut inputs = saved("windows-ok");
    for p in inputs.windows_profiles.as_mut().unwrap() {
        p.enabled = Some(false);
    }
    inputs.windows.as_mut().unwrap().clear();
    let r = diagnose(&inputs, &opts());
    assert!(!r.blocked);
    let rule = &of(&r, FindingKind::WindowsInterfaceRule)[0];
    assert_eq!(rule.status, Status::Skipped);
    assert!(rule.fix.is_none());
    assert_eq!(
        of(&r, FindingKind::WindowsProfiles)[0].subject,
        "Windows Firewall is off in every profile: it blocks nothing"
    );
}

#[test]
fn linux_agents_with_their_chains() {
    let mut inputs = Inputs {
        iptables: ipt(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KESL_INPUT - [0:0]\n-A INPUT -j KESL_INPUT\nCOMMIT\n",
        ),
        ..Inputs::default()
    };
    inputs.processes = Some(super::agents::parse_ps(
        "1 /sbin/init\n4242 /opt/kaspersky/kesl/libexec/kesl --daemon\n",
        100,
    ));
    let r = diagnose(&inputs, &opts());
    // The kernel findings come first, as before.
    assert_eq!(r.findings[0].kind, FindingKind::Tunnel);
    let sw = of(&r, FindingKind::SecuritySoftware);
    assert_eq!(sw.len(), 1);
    assert_eq!(sw[0].status, Status::Uncertain);
    assert!(
        sw[0]
            .subject
            .contains("Kaspersky Endpoint Security for Linux is running")
    );
    let d = deciding(sw[0]);
    assert!(d.contains("kesl (pid 4242)"), "{d}");
    assert!(d.contains("chain ip filter KESL_INPUT"), "{d}");
    assert!(d.contains("every 60 seconds"), "{d}");
    assert!(!r.blocked);
    assert_eq!(r.endpoint_agents.len(), 1);

    inputs.processes = Some(super::agents::parse_ps("1 /sbin/init\n", 100));
    let r = diagnose(&inputs, &opts());
    let sw = of(&r, FindingKind::SecuritySoftware);
    assert_eq!(sw.len(), 2);
    assert_eq!(sw[0].status, Status::Skipped);
    assert!(sw[0].subject.contains("which is not running"));
    assert_eq!(sw[1].subject, "no known endpoint security agent is running");
}
