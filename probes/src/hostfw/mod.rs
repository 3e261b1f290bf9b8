//! Host firewall diagnosis: does this host's own firewall let VPN traffic in?
//!
//! NetBird peers can show "Connected" and still not reach each other when the host firewall
//! drops what arrives on the tunnel interface (UFW's default-deny ahead of NetBird's rules,
//! firewalld putting `wt0` in a restrictive zone), or, on flat networks without NAT, the raw
//! WireGuard UDP arriving on the physical interface.
//!
//! This module reads what the tools print — `iptables-save`, `nft -j list ruleset` (and the text
//! of `nft list ruleset`, as a NetBird debug bundle holds it),
//! `ufw status verbose`, `firewall-cmd --get-zone-of-interface`, Windows Firewall's rules and
//! profiles as the NetSecurity cmdlets print them ([`netsecurity`], or a merged export,
//! [`windows`]) — into one small rule model ([`model`]), walks a described packet through the
//! input hook ([`eval`]), and turns the results into findings with the fix ([`diagnose`]).
//! Third-party security software, which filters beside the OS firewall and shows in none of
//! those, is reported from what Windows Security Center lists ([`wsc`]) and, on Linux, from the
//! endpoint agents running and the netfilter objects named after them ([`agents`]). It
//! performs no I/O: the caller hands in the text and the process list.

pub mod agents;
pub mod diagnose;
pub mod eval;
pub mod firewalld;
pub mod iptables_save;
pub mod model;
pub mod netsecurity;
pub mod nft_json;
pub mod nft_text;
mod psjson;
pub mod sources;
pub mod ufw;
pub mod windows;
pub mod wsc;

pub use diagnose::{FindingKind, FirewallFinding, Inputs, Options, Report, diagnose};
pub use eval::{Evaluation, Packet, PacketVerdict, evaluate};
pub use model::{Cidr, Ruleset};

use serde::Serialize;

/// The formats this module reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputFormat {
    /// `iptables-save` / `ip6tables-save` text.
    IptablesSave,
    /// `nft -j list ruleset`.
    NftJson,
    /// `nft list ruleset` text (`nft -a`, a NetBird bundle's `nftables.txt`).
    NftText,
    /// `ufw status verbose`.
    UfwStatus,
    /// `firewall-cmd --get-zone-of-interface=IF`.
    FirewalldZone,
    /// The PowerShell export documented in [`windows`].
    WindowsExport,
    /// `Get-NetFirewallRule … | ConvertTo-Json` ([`netsecurity`]).
    NetFirewallRule,
    /// `Get-NetFirewallAddressFilter … | ConvertTo-Json`.
    NetFirewallAddressFilter,
    /// `Get-NetFirewallPortFilter … | ConvertTo-Json`.
    NetFirewallPortFilter,
    /// `Get-NetFirewallApplicationFilter … | ConvertTo-Json`.
    NetFirewallApplicationFilter,
    /// `Get-NetFirewallInterfaceFilter … | ConvertTo-Json`.
    NetFirewallInterfaceFilter,
    /// `Get-NetFirewallProfile … | ConvertTo-Json`.
    NetFirewallProfile,
    /// `Get-CimInstance -Namespace root/SecurityCenter2 … | ConvertTo-Json` ([`wsc`]).
    SecurityCenter,
}

impl std::fmt::Display for InputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InputFormat::IptablesSave => "iptables-save output",
            InputFormat::NftJson => "nft JSON ruleset",
            InputFormat::NftText => "nft ruleset text",
            InputFormat::UfwStatus => "ufw status output",
            InputFormat::FirewalldZone => "firewall-cmd zone output",
            InputFormat::WindowsExport => "Windows firewall export",
            InputFormat::NetFirewallRule => "Get-NetFirewallRule output",
            InputFormat::NetFirewallAddressFilter => "Get-NetFirewallAddressFilter output",
            InputFormat::NetFirewallPortFilter => "Get-NetFirewallPortFilter output",
            InputFormat::NetFirewallApplicationFilter => "Get-NetFirewallApplicationFilter output",
            InputFormat::NetFirewallInterfaceFilter => "Get-NetFirewallInterfaceFilter output",
            InputFormat::NetFirewallProfile => "Get-NetFirewallProfile output",
            InputFormat::SecurityCenter => "Security Center (root/SecurityCenter2) output",
        })
    }
}

/// Why a saved ruleset could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostFwError {
    /// A line of a text format could not be understood.
    #[error("{format}, line {line}: {detail}")]
    Syntax {
        /// Format being read.
        format: InputFormat,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        detail: String,
    },
    /// A JSON document did not parse.
    #[error("{format}: invalid JSON at line {line}, column {column}: {detail}")]
    Json {
        /// Format being read.
        format: InputFormat,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        detail: String,
    },
    /// The JSON parsed but an element does not have the expected shape.
    #[error("{format}: {path}: {detail}")]
    Shape {
        /// Format being read.
        format: InputFormat,
        /// Where in the document (`nftables[12].rule.expr[0]`).
        path: String,
        /// What was expected.
        detail: String,
    },
    /// The bytes are not text in a supported encoding (UTF-8, UTF-16 with BOM).
    #[error("{format}: not UTF-8 or UTF-16 text")]
    Encoding {
        /// Format being read.
        format: InputFormat,
    },
}

impl HostFwError {
    pub(crate) fn json(format: InputFormat, e: &serde_json::Error) -> Self {
        HostFwError::Json {
            format,
            line: e.line(),
            column: e.column(),
            detail: e.to_string(),
        }
    }
}

#[cfg(test)]
mod fixture_tests;
