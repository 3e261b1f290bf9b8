//! A Windows Firewall rule export, produced on the Windows host (PowerShell, as Administrator):
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
//! out, a single object instead of an array, and UTF-16 files (Windows PowerShell's default).

use serde::Serialize;
use serde_json::Value;

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
}

fn port_covers(spec: &str, r: PortRange) -> bool {
    let (a, b) = spec.split_once('-').unwrap_or((spec, spec));
    match (a.trim().parse::<u16>(), b.trim().parse::<u16>()) {
        (Ok(lo), Ok(hi)) => lo <= r.start && r.end <= hi,
        _ => false,
    }
}

/// Decode UTF-8 (with or without BOM) or UTF-16 with a BOM.
fn decode(bytes: &[u8]) -> Option<String> {
    let utf16 = |le: bool, rest: &[u8]| {
        let units: Vec<u16> = rest
            .chunks(2)
            .map(|c| match (c.first(), c.get(1)) {
                (Some(&a), Some(&b)) => Some(if le {
                    u16::from_le_bytes([a, b])
                } else {
                    u16::from_be_bytes([a, b])
                }),
                _ => None,
            })
            .collect::<Option<_>>()?;
        String::from_utf16(&units).ok()
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => String::from_utf8(rest.to_vec()).ok(),
        [0xFF, 0xFE, rest @ ..] => utf16(true, rest),
        [0xFE, 0xFF, rest @ ..] => utf16(false, rest),
        _ => String::from_utf8(bytes.to_vec()).ok(),
    }
}

fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A value that means "no filter" in these exports.
fn is_any(s: &str) -> bool {
    s.is_empty() || s.eq_ignore_ascii_case("any")
}

fn list_of(v: Option<&Value>) -> Vec<String> {
    let items: Vec<String> = match v {
        Some(Value::Array(a)) => a.iter().filter_map(|x| text_of(Some(x))).collect(),
        Some(Value::String(s)) => s.split(',').map(|x| x.trim().to_owned()).collect(),
        Some(other) => text_of(Some(other)).into_iter().collect(),
        None => Vec::new(),
    };
    items.into_iter().filter(|s| !is_any(s)).collect()
}

/// Parse an export.
pub fn parse(bytes: &[u8]) -> Result<Vec<WinRule>, HostFwError> {
    let format = InputFormat::WindowsExport;
    let text = decode(bytes).ok_or(HostFwError::Encoding { format })?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| HostFwError::json(format, &e))?;
    let items: Vec<&Value> = match &doc {
        Value::Array(a) => a.iter().collect(),
        o @ Value::Object(_) => vec![o],
        _ => {
            return Err(HostFwError::Shape {
                format,
                path: "(top)".into(),
                detail: "expected an array of rules".into(),
            });
        }
    };
    let mut out = Vec::new();
    for (index, r) in items.into_iter().enumerate() {
        let path = format!("[{index}]");
        let shape = |detail: &str| HostFwError::Shape {
            format,
            path: path.clone(),
            detail: detail.to_owned(),
        };
        if !r.is_object() {
            return Err(shape("expected an object"));
        }
        let field = |k: &str| text_of(r.get(k)).ok_or_else(|| shape(&format!("missing {k}")));
        let enabled = match field("Enabled")?.as_str() {
            "True" | "true" | "1" => true,
            "False" | "false" | "2" => false,
            _ => return Err(shape("Enabled is not True/False")),
        };
        let inbound = match field("Direction")?.as_str() {
            "Inbound" | "1" => true,
            "Outbound" | "2" => false,
            _ => return Err(shape("Direction is not Inbound/Outbound")),
        };
        let allow = match field("Action")?.as_str() {
            "Allow" | "2" => true,
            "Block" | "4" => false,
            _ => return Err(shape("Action is not Allow/Block")),
        };
        let profile = match text_of(r.get("Profile")).as_deref() {
            None | Some("0") => "Any".to_owned(),
            Some("1") => "Domain".to_owned(),
            Some("2") => "Private".to_owned(),
            Some("4") => "Public".to_owned(),
            Some(p) => p.to_owned(),
        };
        let program = text_of(r.get("Program")).filter(|p| !is_any(p));
        let protocol = text_of(r.get("Protocol")).filter(|p| !is_any(p));
        out.push(WinRule {
            index,
            display_name: text_of(r.get("DisplayName")).unwrap_or_default(),
            enabled,
            inbound,
            allow,
            profile,
            interface_alias: list_of(r.get("InterfaceAlias")),
            program,
            protocol,
            local_port: list_of(r.get("LocalPort")),
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
}
