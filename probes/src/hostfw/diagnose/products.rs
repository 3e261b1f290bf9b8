//! Findings from security software the OS firewall does not show: products registered with
//! Windows Security Center, endpoint agents running on Linux.

use super::*;

/// NetBird's firewall page's advice for a third-party product, for `product` on a host whose
/// NetBird program is `exe`.
pub(super) fn third_party_fix(product: &str, exe: &str, o: &Options) -> Fix {
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
pub(super) fn product_findings(products: &[SecurityProduct], o: &Options) -> Vec<FirewallFinding> {
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
pub(super) fn agent_findings(
    agents: &[FoundAgent],
    scanned: bool,
    o: &Options,
) -> Vec<FirewallFinding> {
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
        let page = crate::hostfw::wsc::named_cause(a.product)
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
                crate::hostfw::agents::AGENTS.len()
            )),
            None,
        ));
    }
    out
}
