//! Every source `stunmap host` reads: its name, the file `--from DIR` reads it from, the
//! command that produces it, and how its bytes become [`Inputs`]. The CLI runs the commands
//! (or reads the files); this module only parses, so a saved file and a live read go through
//! the same code.

use super::agents::{self, Process};
use super::diagnose::Inputs;
use super::netsecurity::{self, FilterKind, Filters, NetRule};
use super::wsc::{self, ProductKind, SecurityProduct};
use super::{HostFwError, firewalld, iptables_save, nft_json, ufw, windows};
use crate::Family;

/// One source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// `nft -j list ruleset`.
    Nft,
    /// `iptables-save`.
    Iptables,
    /// `ip6tables-save`.
    Ip6tables,
    /// `ufw status verbose`.
    Ufw,
    /// `firewall-cmd --get-zone-of-interface=IF`.
    Firewalld,
    /// The processes (`ps -eo pid=,args=` saved; `/proc` live).
    Processes,
    /// The merged PowerShell export of [`windows`].
    WindowsExport,
    /// `Get-NetFirewallRule`.
    WindowsRules,
    /// `Get-NetFirewallAddressFilter`.
    WindowsAddressFilters,
    /// `Get-NetFirewallPortFilter`.
    WindowsPortFilters,
    /// `Get-NetFirewallApplicationFilter`.
    WindowsApplicationFilters,
    /// `Get-NetFirewallInterfaceFilter`.
    WindowsInterfaceFilters,
    /// `Get-NetFirewallProfile`.
    WindowsProfiles,
    /// Security Center's `FirewallProduct`.
    WindowsFirewallProducts,
    /// Security Center's `AntiVirusProduct`.
    WindowsAntivirusProducts,
}

/// The Linux sources, in the order they are read.
pub const LINUX: [Source; 6] = [
    Source::Nft,
    Source::Iptables,
    Source::Ip6tables,
    Source::Ufw,
    Source::Firewalld,
    Source::Processes,
];

/// The Windows sources read live, in order (the merged export is a saved file only).
pub const WINDOWS: [Source; 8] = [
    Source::WindowsRules,
    Source::WindowsAddressFilters,
    Source::WindowsPortFilters,
    Source::WindowsApplicationFilters,
    Source::WindowsInterfaceFilters,
    Source::WindowsProfiles,
    Source::WindowsFirewallProducts,
    Source::WindowsAntivirusProducts,
];

/// Every source `--from DIR` looks for, in order: the Linux ones, the merged Windows export,
/// then the Windows ones read live.
// INVARIANT: evaluated at compile time: an index out of range fails the build, it cannot
// panic at run time.
#[allow(clippy::indexing_slicing)]
pub const SAVED: [Source; LINUX.len() + 1 + WINDOWS.len()] = {
    let mut out = [Source::WindowsExport; LINUX.len() + 1 + WINDOWS.len()];
    let mut i = 0;
    while i < LINUX.len() {
        out[i] = LINUX[i];
        i += 1;
    }
    let mut j = 0;
    while j < WINDOWS.len() {
        out[LINUX.len() + 1 + j] = WINDOWS[j];
        j += 1;
    }
    out
};

/// Processes read from one list, at most (a flood of processes cannot grow the report).
pub const MAX_PROCESSES: usize = 65_536;

impl Source {
    /// Short name, as the report's `sources[].name`.
    pub fn name(self) -> &'static str {
        match self {
            Source::Nft => "nft",
            Source::Iptables => "iptables",
            Source::Ip6tables => "ip6tables",
            Source::Ufw => "ufw",
            Source::Firewalld => "firewalld",
            Source::Processes => "processes",
            Source::WindowsExport => "windows",
            Source::WindowsRules => "windows-rules",
            Source::WindowsAddressFilters => "windows-address-filters",
            Source::WindowsPortFilters => "windows-port-filters",
            Source::WindowsApplicationFilters => "windows-application-filters",
            Source::WindowsInterfaceFilters => "windows-interface-filters",
            Source::WindowsProfiles => "windows-profiles",
            Source::WindowsFirewallProducts => "windows-firewall-products",
            Source::WindowsAntivirusProducts => "windows-antivirus-products",
        }
    }

    /// The file `--from DIR` reads.
    pub fn file(self) -> &'static str {
        match self {
            Source::Nft => "nft.json",
            Source::Iptables => "iptables-save.txt",
            Source::Ip6tables => "ip6tables-save.txt",
            Source::Ufw => "ufw-status.txt",
            Source::Firewalld => "firewalld-zone.txt",
            Source::Processes => "processes.txt",
            Source::WindowsExport => "windows-firewall.json",
            Source::WindowsRules => "windows-rules.json",
            Source::WindowsAddressFilters => "windows-address-filters.json",
            Source::WindowsPortFilters => "windows-port-filters.json",
            Source::WindowsApplicationFilters => "windows-application-filters.json",
            Source::WindowsInterfaceFilters => "windows-interface-filters.json",
            Source::WindowsProfiles => "windows-profiles.json",
            Source::WindowsFirewallProducts => "windows-firewall-products.json",
            Source::WindowsAntivirusProducts => "windows-antivirus-products.json",
        }
    }

    /// The PowerShell pipeline that prints a Windows source (`None` for the others). Each is
    /// one cmdlet, its properties and `ConvertTo-Json -Depth 4`, in the policy in force.
    pub fn powershell(self) -> Option<&'static str> {
        Some(match self {
            Source::WindowsRules => {
                "Get-NetFirewallRule -PolicyStore ActiveStore | Select-Object InstanceID, Name, DisplayName, Enabled, Direction, Action, Profile, PolicyStoreSourceType | ConvertTo-Json -Depth 4"
            }
            Source::WindowsAddressFilters => {
                "Get-NetFirewallAddressFilter -PolicyStore ActiveStore | Select-Object InstanceID, LocalAddress, RemoteAddress | ConvertTo-Json -Depth 4"
            }
            Source::WindowsPortFilters => {
                "Get-NetFirewallPortFilter -PolicyStore ActiveStore | Select-Object InstanceID, Protocol, LocalPort, RemotePort | ConvertTo-Json -Depth 4"
            }
            Source::WindowsApplicationFilters => {
                "Get-NetFirewallApplicationFilter -PolicyStore ActiveStore | Select-Object InstanceID, Program | ConvertTo-Json -Depth 4"
            }
            Source::WindowsInterfaceFilters => {
                "Get-NetFirewallInterfaceFilter -PolicyStore ActiveStore | Select-Object InstanceID, InterfaceAlias | ConvertTo-Json -Depth 4"
            }
            Source::WindowsProfiles => {
                "Get-NetFirewallProfile -PolicyStore ActiveStore | Select-Object Name, Enabled, DefaultInboundAction, AllowLocalFirewallRules | ConvertTo-Json -Depth 4"
            }
            Source::WindowsFirewallProducts => {
                "Get-CimInstance -Namespace root/SecurityCenter2 -ClassName FirewallProduct | Select-Object displayName, instanceGuid, pathToSignedProductExe, pathToSignedReportingExe, productState, timestamp | ConvertTo-Json -Depth 4"
            }
            Source::WindowsAntivirusProducts => {
                "Get-CimInstance -Namespace root/SecurityCenter2 -ClassName AntiVirusProduct | Select-Object displayName, instanceGuid, pathToSignedProductExe, pathToSignedReportingExe, productState, timestamp | ConvertTo-Json -Depth 4"
            }
            _ => return None,
        })
    }

    /// How to capture the source for `--from DIR`, as a shell or PowerShell line.
    pub fn capture(self) -> String {
        match self {
            Source::Nft => "sudo nft -j list ruleset > nft.json".into(),
            Source::Iptables => "sudo iptables-save > iptables-save.txt".into(),
            Source::Ip6tables => "sudo ip6tables-save > ip6tables-save.txt".into(),
            Source::Ufw => "sudo ufw status verbose > ufw-status.txt".into(),
            Source::Firewalld => {
                "sudo firewall-cmd --get-zone-of-interface=wt0 > firewalld-zone.txt 2>&1".into()
            }
            Source::Processes => "ps -eo pid=,args= > processes.txt".into(),
            Source::WindowsExport => "the merged export in docs/host.md".into(),
            s => format!(
                "{} | Out-File -Encoding utf8 {}",
                s.powershell().unwrap_or_default(),
                s.file()
            ),
        }
    }
}

/// Sources read so far, before the Windows rules are joined with their filters.
#[derive(Clone, Debug, Default)]
pub struct Collected {
    inputs: Inputs,
    rules: Option<Vec<NetRule>>,
    filters: Filters,
    products: Option<Vec<SecurityProduct>>,
}

impl Collected {
    /// Parse one source's bytes.
    pub fn add(&mut self, source: Source, bytes: &[u8]) -> Result<(), HostFwError> {
        let text = || String::from_utf8_lossy(bytes).into_owned();
        let i = &mut self.inputs;
        match source {
            Source::Nft => i.nft = Some(nft_json::parse(&text())?),
            Source::Iptables => i.iptables = Some(iptables_save::parse(&text(), Family::Ipv4)?),
            Source::Ip6tables => i.ip6tables = Some(iptables_save::parse(&text(), Family::Ipv6)?),
            Source::Ufw => i.ufw = Some(ufw::parse(&text())?),
            Source::Firewalld => i.firewalld = Some(firewalld::parse(&text())?),
            Source::Processes => {
                i.processes = Some(agents::parse_ps(&text(), MAX_PROCESSES));
            }
            Source::WindowsExport => i.windows = Some(windows::parse(bytes)?),
            Source::WindowsRules => self.rules = Some(netsecurity::parse_rules(bytes)?),
            Source::WindowsAddressFilters => self.filters.read(FilterKind::Address, bytes)?,
            Source::WindowsPortFilters => self.filters.read(FilterKind::Port, bytes)?,
            Source::WindowsApplicationFilters => {
                self.filters.read(FilterKind::Application, bytes)?;
            }
            Source::WindowsInterfaceFilters => self.filters.read(FilterKind::Interface, bytes)?,
            Source::WindowsProfiles => {
                i.windows_profiles = Some(netsecurity::parse_profiles(bytes)?);
            }
            Source::WindowsFirewallProducts => self
                .products
                .get_or_insert_with(Vec::new)
                .extend(wsc::parse(bytes, ProductKind::Firewall)?),
            Source::WindowsAntivirusProducts => self
                .products
                .get_or_insert_with(Vec::new)
                .extend(wsc::parse(bytes, ProductKind::Antivirus)?),
        }
        Ok(())
    }

    /// The process list of a live scan.
    pub fn set_processes(&mut self, processes: Vec<Process>) {
        self.inputs.processes = Some(processes);
    }

    /// Filter kinds missing beside the rules (their conditions are then taken as "any").
    pub fn missing_filters(&self) -> Vec<Source> {
        if self.rules.is_none() {
            return Vec::new();
        }
        [
            (FilterKind::Address, Source::WindowsAddressFilters),
            (FilterKind::Port, Source::WindowsPortFilters),
            (FilterKind::Application, Source::WindowsApplicationFilters),
            (FilterKind::Interface, Source::WindowsInterfaceFilters),
        ]
        .into_iter()
        .filter(|(k, _)| !self.filters.has(*k))
        .map(|(_, s)| s)
        .collect()
    }

    /// Forget the cmdlets' rules (their filters could not all be read: judging them without
    /// their conditions could call a TCP-only rule an allow-all).
    pub fn drop_windows_rules(&mut self) {
        self.rules = None;
    }

    /// Everything read, with the cmdlets' rules joined to their filters (they replace a merged
    /// export read beside them).
    pub fn finish(self) -> Inputs {
        let mut inputs = self.inputs;
        if let Some(rules) = &self.rules {
            inputs.windows = Some(netsecurity::join(rules, &self.filters));
        }
        if self.products.is_some() {
            inputs.security_products = self.products;
        }
        inputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_is_the_linux_sources_the_export_then_the_windows_sources_each_once() {
        let (linux, rest) = SAVED.split_at(LINUX.len());
        assert_eq!(linux, LINUX);
        assert_eq!(rest.first(), Some(&Source::WindowsExport));
        assert_eq!(rest.get(1..), Some(&WINDOWS[..]));
        let files: std::collections::HashSet<&str> = SAVED.iter().map(|s| s.file()).collect();
        assert_eq!(files.len(), SAVED.len());
    }
}
