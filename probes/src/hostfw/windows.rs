//! Windows Firewall rules, the one model both Windows sources are read into: the rules and
//! filters the NetSecurity cmdlets print ([`super::netsecurity`], what `stunmap host` reads
//! live on Windows), and a merged export made by hand with one PowerShell pipeline (this
//! module's [`parse`], the older `windows-firewall.json` of `--from DIR`):
//!
//! ```powershell
//! Get-NetFirewallRule -PolicyStore ActiveStore | ForEach-Object {
//!   $i = $_ | Get-NetFirewallInterfaceFilter
//!   $a = $_ | Get-NetFirewallApplicationFilter
//!   $p = $_ | Get-NetFirewallPortFilter
//!   [pscustomobject]@{
//!     DisplayName = $_.DisplayName; Enabled = "$($_.Enabled)"; Direction = "$($_.Direction)"
//!     Action = "$($_.Action)"; Profile = "$($_.Profile)"
//!     InterfaceAlias = @($i.InterfaceAlias); Program = $a.Program
//!     Protocol = $p.Protocol; LocalPort = @($p.LocalPort)
//!   }
//! } | ConvertTo-Json -Depth 3 | Out-File -Encoding utf8 windows-firewall.json
//! ```
//!
//! `-PolicyStore ActiveStore` lists the rules in force, Group Policy ones included. The parser
//! also takes the raw enum numbers `ConvertTo-Json` prints when the `"$(…)"` conversions are left
//! out, a single object instead of an array, UTF-16 files (Windows PowerShell's default), and
//! `LocalAddress`/`RemoteAddress` when the export has them.

use serde::Serialize;
use serde_json::Value;

use super::model::Cidr;
use super::psjson::{self, is_any, list as list_of, text};
use super::{HostFwError, InputFormat};
use crate::PortRange;

/// One firewall rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WinRule {
    /// Position in the export (0-based).
    pub index: usize,
    /// DisplayName.
    pub display_name: String,
    /// Enabled.
    pub enabled: bool,
    /// Direction is Inbound.
    pub inbound: bool,
    /// Action is Allow (otherwise Block).
    pub allow: bool,
    /// Profile as exported (`Any`, `Domain, Private`, …).
    pub profile: String,
    /// Interface aliases; empty means any interface.
    pub interface_alias: Vec<String>,
    /// Program path; `None` means any program.
    pub program: Option<String>,
    /// Protocol (`UDP`, `TCP`, …); `None` means any.
    pub protocol: Option<String>,
    /// Local ports; empty means any.
    pub local_port: Vec<String>,
    /// Local addresses (`LocalAddress`); empty means any. NetBird's own rule names the
    /// tunnel's address here.
    pub local_address: Vec<String>,
    /// Remote addresses (`RemoteAddress`); empty means any.
    pub remote_address: Vec<String>,
    /// Where the rule comes from (`PolicyStoreSourceType`: "Local", "GroupPolicy", …), when
    /// the source says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_source: Option<String>,
}

impl WinRule {
    /// Whether the rule applies to interface `iface` (no interface filter counts).
    pub fn on_interface(&self, iface: &str) -> bool {
        self.interface_alias.is_empty()
            || self
                .interface_alias
                .iter()
                .any(|a| a.eq_ignore_ascii_case(iface))
    }

    /// Whether the rule names `iface` explicitly.
    pub fn names_interface(&self, iface: &str) -> bool {
        self.interface_alias
            .iter()
            .any(|a| a.eq_ignore_ascii_case(iface))
    }

    /// Whether the program filter is `exe` (file name, case-insensitive).
    pub fn is_program(&self, exe: &str) -> bool {
        self.program.as_deref().is_some_and(|p| {
            let base = p.rsplit(['\\', '/']).next().unwrap_or(p);
            base.eq_ignore_ascii_case(exe)
        })
    }

    /// Whether the rule covers UDP to every port of `range`.
    pub fn covers_udp(&self, range: PortRange) -> bool {
        let proto_ok = match self.protocol.as_deref() {
            None => true,
            Some(p) => p.eq_ignore_ascii_case("udp") || p == "17",
        };
        proto_ok
            && (self.local_port.is_empty() || self.local_port.iter().any(|p| port_covers(p, range)))
    }

    /// Any protocol, any port.
    pub fn all_traffic(&self) -> bool {
        self.protocol.is_none() && self.local_port.is_empty()
    }

    /// Whether a local address of the rule lies inside `subnet` (the VPN subnet: the rule is
    /// about the tunnel's own address, as NetBird's `localip=` rule is).
    pub fn local_address_in(&self, subnet: &Cidr) -> bool {
        self.local_address
            .iter()
            .filter_map(|a| AddressSpec::parse(a))
            .any(|a| a.within(subnet))
    }

    /// Whether the rule applies to traffic from every address of `subnet`: no remote address
    /// condition, or one that covers it. Keywords (`LocalSubnet`, `Internet`, …) are not
    /// known to cover it.
    pub fn remote_covers(&self, subnet: &Cidr) -> bool {
        self.any_remote(|a| a.covers(subnet))
    }

    /// Whether the rule applies to some traffic from `subnet`: no remote address condition,
    /// or an address that overlaps it. Keywords are not known to.
    pub fn remote_overlaps(&self, subnet: &Cidr) -> bool {
        self.any_remote(|a| a.overlaps(subnet))
    }

    /// Whether the rule has no remote address condition, or one of its remote addresses (of
    /// those [`AddressSpec::parse`] reads) `fits`.
    fn any_remote(&self, fits: impl Fn(&AddressSpec) -> bool) -> bool {
        self.remote_address.is_empty()
            || self
                .remote_address
                .iter()
                .filter_map(|a| AddressSpec::parse(a))
                .any(|a| fits(&a))
    }

    /// The rule in the words of its properties, for a finding's "decided by".
    pub fn describe(&self) -> String {
        let any = |v: &[String]| {
            if v.is_empty() {
                "Any".to_owned()
            } else {
                v.join(",")
            }
        };
        let mut s = format!(
            "rule #{} \"{}\" (Enabled={}, Direction={}, Action={}, Profile={}, InterfaceAlias={}, Program={}, Protocol={}, LocalPort={}",
            self.index,
            self.display_name,
            if self.enabled { "True" } else { "False" },
            if self.inbound { "Inbound" } else { "Outbound" },
            if self.allow { "Allow" } else { "Block" },
            self.profile,
            any(&self.interface_alias),
            self.program.as_deref().unwrap_or("Any"),
            self.protocol.as_deref().unwrap_or("Any"),
            any(&self.local_port),
        );
        if !self.local_address.is_empty() {
            s.push_str(&format!(", LocalAddress={}", self.local_address.join(",")));
        }
        if !self.remote_address.is_empty() {
            s.push_str(&format!(
                ", RemoteAddress={}",
                self.remote_address.join(",")
            ));
        }
        if let Some(src) = &self.policy_source {
            s.push_str(&format!(", PolicyStoreSourceType={src}"));
        }
        s.push(')');
        s
    }
}

/// One entry of an address filter: an address, a prefix (`/len` or, as Windows prints IPv4
/// prefixes, `/255.255.255.0`) or a range `a-b`. Keywords are not addresses (`None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AddressSpec {
    Prefix(Cidr),
    Range(std::net::IpAddr, std::net::IpAddr),
}

impl AddressSpec {
    fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Some((a, b)) = s.split_once('-') {
            let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            return Some(AddressSpec::Range(a, b));
        }
        if let Some((a, m)) = s.split_once('/') {
            let addr: std::net::IpAddr = a.trim().parse().ok()?;
            let len = match m.trim().parse::<u8>() {
                Ok(l) => l,
                Err(_) => mask_len(m.trim().parse().ok()?)?,
            };
            return Cidr::new(addr, len).map(AddressSpec::Prefix);
        }
        let addr: std::net::IpAddr = s.parse().ok()?;
        Cidr::new(addr, if addr.is_ipv4() { 32 } else { 128 }).map(AddressSpec::Prefix)
    }

    fn bounds(&self) -> (u128, u128, bool) {
        match self {
            AddressSpec::Prefix(c) => prefix_bounds(c),
            AddressSpec::Range(a, b) => (ip_num(*a), ip_num(*b), a.is_ipv4()),
        }
    }

    fn within(&self, subnet: &Cidr) -> bool {
        let (lo, hi, v4) = self.bounds();
        let (slo, shi, sv4) = prefix_bounds(subnet);
        v4 == sv4 && slo <= lo && hi <= shi
    }

    fn covers(&self, subnet: &Cidr) -> bool {
        let (lo, hi, v4) = self.bounds();
        let (slo, shi, sv4) = prefix_bounds(subnet);
        v4 == sv4 && lo <= slo && shi <= hi
    }

    fn overlaps(&self, subnet: &Cidr) -> bool {
        let (lo, hi, v4) = self.bounds();
        let (slo, shi, sv4) = prefix_bounds(subnet);
        v4 == sv4 && lo <= shi && slo <= hi
    }
}

fn ip_num(a: std::net::IpAddr) -> u128 {
    match a {
        std::net::IpAddr::V4(v) => u128::from(u32::from(v)),
        std::net::IpAddr::V6(v) => u128::from(v),
    }
}

fn prefix_bounds(c: &Cidr) -> (u128, u128, bool) {
    let bits = if c.is_v4() { 32 } else { 128 };
    let host = bits - u32::from(c.prefix_len());
    let lo = ip_num(c.addr());
    let span = if host >= 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    };
    (lo, lo.saturating_add(span), c.is_v4())
}

/// The prefix length of a contiguous IPv4 netmask.
fn mask_len(m: std::net::Ipv4Addr) -> Option<u8> {
    let bits = u32::from(m);
    let len = bits.leading_ones();
    (bits.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
}

fn port_covers(spec: &str, r: PortRange) -> bool {
    let (a, b) = spec.split_once('-').unwrap_or((spec, spec));
    match (a.trim().parse::<u16>(), b.trim().parse::<u16>()) {
        (Ok(lo), Ok(hi)) => lo <= r.start && r.end <= hi,
        _ => false,
    }
}

/// A two-valued enum field, written as a name or a number: `Ok(true)` for one of `yes`,
/// `Ok(false)` for one of `no`; `missing` and `other` are the errors for no value and for any
/// other value.
fn two_valued(
    v: Option<&Value>,
    yes: &[&str],
    no: &[&str],
    missing: &'static str,
    other: &'static str,
) -> Result<bool, &'static str> {
    match text(v) {
        Some(t) if yes.contains(&t.as_str()) => Ok(true),
        Some(t) if no.contains(&t.as_str()) => Ok(false),
        Some(_) => Err(other),
        None => Err(missing),
    }
}

/// `Enabled` (NetSecurity's `Enabled` enum: True 1, False 2), as text or number.
pub(crate) fn enabled_of(v: Option<&Value>) -> Result<bool, &'static str> {
    two_valued(
        v,
        &["True", "true", "1"],
        &["False", "false", "2"],
        "missing Enabled",
        "Enabled is not True/False",
    )
}

/// `Direction` (Inbound 1, Outbound 2): whether inbound.
pub(crate) fn inbound_of(v: Option<&Value>) -> Result<bool, &'static str> {
    two_valued(
        v,
        &["Inbound", "1"],
        &["Outbound", "2"],
        "missing Direction",
        "Direction is not Inbound/Outbound",
    )
}

/// `Action` (Allow 2, Block 4): whether it allows.
pub(crate) fn allow_of(v: Option<&Value>) -> Result<bool, &'static str> {
    two_valued(
        v,
        &["Allow", "2"],
        &["Block", "4"],
        "missing Action",
        "Action is not Allow/Block",
    )
}

/// `Profile`, a flags enum (Any 0, Domain 1, Private 2, Public 4), as Windows names it:
/// "Any", "Domain, Private". Text is kept as written.
pub(crate) fn profile_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => "Any".to_owned(),
            Some(bits) if bits & !7 == 0 => [(1, "Domain"), (2, "Private"), (4, "Public")]
                .iter()
                .filter(|(b, _)| bits & b != 0)
                .map(|(_, name)| *name)
                .collect::<Vec<_>>()
                .join(", "),
            _ => n.to_string(),
        },
        other => match text(other) {
            None => "Any".to_owned(),
            Some(p) if p.trim().is_empty() => "Any".to_owned(),
            Some(p) => p,
        },
    }
}

/// Parse an export.
pub fn parse(bytes: &[u8]) -> Result<Vec<WinRule>, HostFwError> {
    let format = InputFormat::WindowsExport;
    let mut out = Vec::new();
    for (index, r) in psjson::objects(bytes, format)?.into_iter().enumerate() {
        let shape = |detail: &str| HostFwError::Shape {
            format,
            path: format!("[{index}]"),
            detail: detail.to_owned(),
        };
        out.push(WinRule {
            index,
            display_name: text(r.get("DisplayName")).unwrap_or_default(),
            enabled: enabled_of(r.get("Enabled")).map_err(shape)?,
            inbound: inbound_of(r.get("Direction")).map_err(shape)?,
            allow: allow_of(r.get("Action")).map_err(shape)?,
            profile: profile_of(r.get("Profile")),
            interface_alias: list_of(r.get("InterfaceAlias")),
            program: text(r.get("Program")).filter(|p| !is_any(p)),
            protocol: text(r.get("Protocol")).filter(|p| !is_any(p)),
            local_port: list_of(r.get("LocalPort")),
            local_address: list_of(r.get("LocalAddress")),
            remote_address: list_of(r.get("RemoteAddress")),
            policy_source: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_object_numeric_enums_and_utf16() {
        let json = r#"{"DisplayName":"NetBird","Enabled":1,"Direction":1,"Action":2,"Profile":0,
                       "InterfaceAlias":"wt0","Program":"Any","Protocol":"Any","LocalPort":"Any"}"#;
        let mut bytes = vec![0xFF, 0xFE];
        for u in json.encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        let r = parse(&bytes).unwrap();
        assert_eq!(r.len(), 1);
        assert!(r[0].enabled && r[0].inbound && r[0].allow);
        assert!(r[0].names_interface("WT0"));
        assert!(r[0].all_traffic());
        assert_eq!(r[0].profile, "Any");
    }

    #[test]
    fn ports_and_programs() {
        let r = parse(
            br#"[{"DisplayName":"NetBird P2P","Enabled":"True","Direction":"Inbound","Action":"Allow","Profile":"Any",
                  "InterfaceAlias":["Any"],"Program":"C:\\Program Files\\Netbird\\netbird.exe","Protocol":"UDP",
                  "LocalPort":["49152-65535"]}]"#,
        )
        .unwrap();
        assert!(r[0].is_program("NetBird.exe"));
        assert!(r[0].covers_udp(PortRange {
            start: 49152,
            end: 65535
        }));
        assert!(r[0].covers_udp(PortRange::single(51820)));
        assert!(!r[0].covers_udp(PortRange {
            start: 1024,
            end: 65535
        }));
        assert!(r[0].on_interface("Ethernet"));
    }

    #[test]
    fn two_valued_fields_read_names_numbers_and_booleans() {
        use serde_json::json;
        assert_eq!(enabled_of(Some(&json!("True"))), Ok(true));
        assert_eq!(enabled_of(Some(&json!(false))), Ok(false));
        assert_eq!(enabled_of(Some(&json!(2))), Ok(false));
        assert_eq!(inbound_of(Some(&json!(1))), Ok(true));
        assert_eq!(inbound_of(Some(&json!("Outbound"))), Ok(false));
        assert_eq!(allow_of(Some(&json!("2"))), Ok(true));
        assert_eq!(allow_of(Some(&json!(4))), Ok(false));
        assert_eq!(allow_of(None), Err("missing Action"));
        assert_eq!(allow_of(Some(&json!([]))), Err("missing Action"));
        assert_eq!(
            inbound_of(Some(&json!("Both"))),
            Err("Direction is not Inbound/Outbound")
        );
        assert_eq!(
            allow_of(Some(&json!("allow"))),
            Err("Action is not Allow/Block")
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse(&[0xFF, 0xFE, 0x00]),
            Err(HostFwError::Encoding { .. })
        ));
        assert!(matches!(parse(b"[1]"), Err(HostFwError::Shape { .. })));
        let e = parse(
            br#"[{"DisplayName":"x","Enabled":"Maybe","Direction":"Inbound","Action":"Allow"}]"#,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Windows firewall export: [0]: Enabled is not True/False"
        );
        assert!(matches!(
            parse(b"[\n{"),
            Err(HostFwError::Json { line: 2, .. })
        ));
    }

    #[test]
    fn address_conditions() {
        let vpn = Cidr::parse("100.64.0.0/10").unwrap();
        let rule = |local: &[&str], remote: &[&str]| WinRule {
            index: 0,
            display_name: "r".into(),
            enabled: true,
            inbound: true,
            allow: true,
            profile: "Any".into(),
            interface_alias: Vec::new(),
            program: None,
            protocol: None,
            local_port: Vec::new(),
            local_address: local.iter().map(|s| s.to_string()).collect(),
            remote_address: remote.iter().map(|s| s.to_string()).collect(),
            policy_source: None,
        };
        assert!(rule(&["100.92.144.7"], &[]).local_address_in(&vpn));
        assert!(rule(&["100.100.0.0/255.255.0.0"], &[]).local_address_in(&vpn));
        assert!(!rule(&["10.0.0.1"], &[]).local_address_in(&vpn));
        assert!(!rule(&["LocalSubnet"], &[]).local_address_in(&vpn));
        assert!(rule(&[], &[]).remote_covers(&vpn));
        assert!(rule(&[], &["100.64.0.0/255.192.0.0"]).remote_covers(&vpn));
        assert!(rule(&[], &["100.0.0.0-100.200.255.255"]).remote_covers(&vpn));
        assert!(!rule(&[], &["100.64.0.0/16"]).remote_covers(&vpn));
        assert!(rule(&[], &["100.64.0.0/16"]).remote_overlaps(&vpn));
        assert!(!rule(&[], &["LocalSubnet"]).remote_overlaps(&vpn));
        assert!(!rule(&[], &["fd00::/8"]).remote_overlaps(&vpn));
        // A non-contiguous mask is no prefix.
        assert!(!rule(&["100.64.0.0/255.0.255.0"], &[]).local_address_in(&vpn));
        assert!(
            rule(&["100.92.144.7"], &[])
                .describe()
                .contains("LocalAddress=100.92.144.7")
        );
    }
}
