//! Security products registered with Windows Security Center: third-party firewalls and
//! antivirus suites, which filter traffic on their own and whose rules no Windows Firewall
//! cmdlet shows. Read from WMI (`root/SecurityCenter2`, Windows client editions only):
//!
//! ```powershell
//! Get-CimInstance -Namespace root/SecurityCenter2 -ClassName FirewallProduct |
//!   Select-Object displayName, instanceGuid, pathToSignedProductExe, pathToSignedReportingExe, productState, timestamp |
//!   ConvertTo-Json -Depth 4
//! ```
//!
//! and the same for `AntiVirusProduct`. Windows Firewall itself is never listed as a
//! `FirewallProduct`; Microsoft Defender Antivirus is listed as an `AntiVirusProduct`.

use serde::Serialize;

use super::psjson::{self, number, text};
use super::{HostFwError, InputFormat};

/// Which Security Center class a product was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductKind {
    /// `FirewallProduct`.
    Firewall,
    /// `AntiVirusProduct`.
    Antivirus,
}

impl std::fmt::Display for ProductKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProductKind::Firewall => "firewall",
            ProductKind::Antivirus => "antivirus",
        })
    }
}

/// A product's engine state, bits 12–15 of `productState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineState {
    /// 0x0000.
    Off,
    /// 0x1000.
    On,
    /// 0x2000.
    Snoozed,
    /// 0x3000.
    Expired,
    /// Any other value.
    Unknown,
}

impl std::fmt::Display for EngineState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EngineState::Off => "off",
            EngineState::On => "on",
            EngineState::Snoozed => "snoozed",
            EngineState::Expired => "expired",
            EngineState::Unknown => "state unknown",
        })
    }
}

/// `productState` decoded.
///
/// Microsoft does not document this value (vendors report through an API under NDA, Security
/// Center exposes the sum). The layout used here is the one found by observation and used by
/// the PowerShell tip "Identifying Antivirus Engine State" (Idera PowerTips, 7 Sep 2020) and
/// neophob.com's "WMI Query Windows SecurityCenter2" (2010): bits 16–23 are the
/// `WSC_SECURITY_PROVIDER` flags of the product (firewall 1, auto-update 2, antivirus 4,
/// antispyware 8 …, the enum documented in `wscapi.h`), bits 12–15 the engine state (0 off,
/// 1 on, 2 snoozed, 3 expired), bits 8–11 the owner (1: Microsoft), bits 4–7 the signature
/// status (0 up to date, 1 out of date). Examples: 397568 = 0x061100 (Microsoft Defender, on,
/// up to date), 393472 = 0x060100 (the same, off), 266240 = 0x041000 (a third-party
/// antivirus, on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ProductState {
    /// The raw value.
    pub raw: u32,
    /// Engine state.
    pub engine: EngineState,
    /// Signatures up to date.
    pub up_to_date: bool,
    /// Owned by Microsoft (Defender), not a third party.
    pub microsoft: bool,
    /// The `WSC_SECURITY_PROVIDER` flags.
    pub providers: u8,
}

impl ProductState {
    /// Decode `productState`.
    pub fn decode(raw: u32) -> ProductState {
        ProductState {
            raw,
            engine: match (raw >> 12) & 0xF {
                0 => EngineState::Off,
                1 => EngineState::On,
                2 => EngineState::Snoozed,
                3 => EngineState::Expired,
                _ => EngineState::Unknown,
            },
            up_to_date: (raw >> 4) & 0xF == 0,
            microsoft: (raw >> 8) & 0xF == 1,
            providers: ((raw >> 16) & 0xFF) as u8,
        }
    }

    /// Whether the product includes a firewall (`WSC_SECURITY_PROVIDER_FIREWALL`).
    pub fn has_firewall(&self) -> bool {
        self.providers & 1 != 0
    }
}

/// One registered product.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecurityProduct {
    /// The class it was read from.
    pub kind: ProductKind,
    /// `displayName`.
    pub name: String,
    /// `pathToSignedProductExe`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `productState`, decoded.
    pub state: ProductState,
}

impl SecurityProduct {
    /// Whether the product's engine runs.
    pub fn is_on(&self) -> bool {
        self.state.engine == EngineState::On
    }

    /// Microsoft's own product (Defender), which does not filter traffic beside Windows
    /// Firewall.
    pub fn is_microsoft(&self) -> bool {
        self.state.microsoft
            || self.name.starts_with("Windows Defender")
            || self.name.starts_with("Microsoft Defender")
    }

    /// The vendor as NetBird's firewall page names it, when the page names it as a common
    /// cause (Symantec Endpoint Protection, McAfee, Kaspersky, ESET, CrowdStrike Falcon; their
    /// current brand names too).
    pub fn named_cause(&self) -> Option<&'static str> {
        named_cause(&self.name)
    }
}

/// The page's vendor for a product or process name.
pub fn named_cause(name: &str) -> Option<&'static str> {
    let n = name.to_ascii_lowercase();
    [
        ("symantec", "Symantec Endpoint Protection"),
        ("broadcom", "Symantec Endpoint Protection"),
        ("norton", "Symantec Endpoint Protection"),
        ("mcafee", "McAfee"),
        ("trellix", "McAfee"),
        ("kaspersky", "Kaspersky"),
        ("eset", "ESET"),
        ("crowdstrike", "CrowdStrike Falcon"),
        ("falcon", "CrowdStrike Falcon"),
    ]
    .iter()
    .find(|(k, _)| {
        n.split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| w == *k)
    })
    .map(|(_, v)| *v)
}

/// Parse one class's `Get-CimInstance … | ConvertTo-Json`.
pub fn parse(bytes: &[u8], kind: ProductKind) -> Result<Vec<SecurityProduct>, HostFwError> {
    let format = InputFormat::SecurityCenter;
    psjson::objects(bytes, format)?
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            let shape = |detail: &str| HostFwError::Shape {
                format,
                path: format!("[{i}]"),
                detail: detail.to_owned(),
            };
            let name = text(o.get("displayName")).ok_or_else(|| shape("missing displayName"))?;
            let raw = number(o.get("productState"))
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| shape("productState is not a 32-bit number"))?;
            Ok(SecurityProduct {
                kind,
                name,
                path: text(o.get("pathToSignedProductExe")).filter(|p| !p.is_empty()),
                state: ProductState::decode(raw),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_state_bits() {
        let d = ProductState::decode(397_568);
        assert_eq!(d.engine, EngineState::On);
        assert!(d.up_to_date && d.microsoft);
        assert_eq!(d.providers, 6);
        let d = ProductState::decode(393_472);
        assert_eq!(d.engine, EngineState::Off);
        let d = ProductState::decode(266_256);
        assert_eq!(d.engine, EngineState::On);
        assert!(!d.up_to_date && !d.microsoft);
        let d = ProductState::decode(0x0001_2000);
        assert_eq!(d.engine, EngineState::Snoozed);
        assert!(d.has_firewall());
        assert_eq!(ProductState::decode(0x7000).engine, EngineState::Unknown);
    }

    #[test]
    fn names_on_the_page() {
        assert_eq!(
            named_cause("Kaspersky Endpoint Security for Windows"),
            Some("Kaspersky")
        );
        assert_eq!(named_cause("ESET Security"), Some("ESET"));
        assert_eq!(named_cause("Reset Tool"), None);
        assert_eq!(
            named_cause("CrowdStrike Falcon Sensor"),
            Some("CrowdStrike Falcon")
        );
        assert_eq!(named_cause("Windows Defender"), None);
    }

    #[test]
    fn errors() {
        assert!(parse(br#"[{"productState":1}]"#, ProductKind::Firewall).is_err());
        assert!(
            parse(
                br#"[{"displayName":"x","productState":-5}]"#,
                ProductKind::Firewall
            )
            .is_err()
        );
        assert!(
            parse(
                br#"[{"displayName":"x","productState":99999999999}]"#,
                ProductKind::Firewall
            )
            .is_err()
        );
        assert!(parse(b"", ProductKind::Antivirus).unwrap().is_empty());
    }
}
