//! Windows Firewall as the NetSecurity cmdlets print it, one `ConvertTo-Json` document per
//! cmdlet, all from the policy in force (`-PolicyStore ActiveStore`: local rules merged with
//! Group Policy's):
//!
//! | source | command |
//! |---|---|
//! | rules | `Get-NetFirewallRule -PolicyStore ActiveStore \| Select-Object InstanceID, Name, DisplayName, Enabled, Direction, Action, Profile, PolicyStoreSourceType \| ConvertTo-Json -Depth 4` |
//! | address filters | `Get-NetFirewallAddressFilter -PolicyStore ActiveStore \| Select-Object InstanceID, LocalAddress, RemoteAddress \| ConvertTo-Json -Depth 4` |
//! | port filters | `Get-NetFirewallPortFilter -PolicyStore ActiveStore \| Select-Object InstanceID, Protocol, LocalPort, RemotePort \| ConvertTo-Json -Depth 4` |
//! | application filters | `Get-NetFirewallApplicationFilter -PolicyStore ActiveStore \| Select-Object InstanceID, Program \| ConvertTo-Json -Depth 4` |
//! | interface filters | `Get-NetFirewallInterfaceFilter -PolicyStore ActiveStore \| Select-Object InstanceID, InterfaceAlias \| ConvertTo-Json -Depth 4` |
//! | profiles | `Get-NetFirewallProfile -PolicyStore ActiveStore \| Select-Object Name, Enabled, DefaultInboundAction, AllowLocalFirewallRules \| ConvertTo-Json -Depth 4` |
//!
//! A rule's conditions are not properties of the rule: each kind lives in a filter object of
//! its own whose `InstanceID` is the rule's, so the rules are joined with their filters here.
//! The enums arrive as numbers (`Enabled` True 1 / False 2, `Direction` Inbound 1 / Outbound 2,
//! `Action` Allow 2 / Block 4, `Profile` flags Domain 1 / Private 2 / Public 4, 0 Any; the
//! profile's `Enabled` and `AllowLocalFirewallRules` are `GpoBoolean`s False 0 / True 1 /
//! NotConfigured 2); their names are read too. `-Depth 4` matters: at the default depth of 2,
//! multi-valued properties print as type names. The full `CimInstance` objects (without
//! `Select-Object`) parse as well; only the named properties are read.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::psjson::{self, is_any, list, number, text};
use super::windows::{WinRule, allow_of, enabled_of, inbound_of, profile_of};
use super::{HostFwError, InputFormat};

/// A rule as `Get-NetFirewallRule` prints it, before its filters are joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetRule {
    /// `InstanceID` (the key of its filters), else `Name`.
    pub id: String,
    /// `DisplayName`.
    pub display_name: String,
    /// `Enabled`.
    pub enabled: bool,
    /// `Direction` is Inbound.
    pub inbound: bool,
    /// `Action` is Allow.
    pub allow: bool,
    /// `Profile` in words.
    pub profile: String,
    /// `PolicyStoreSourceType` in words, when printed.
    pub policy_source: Option<String>,
}

/// The conditions of one rule, from the filter cmdlets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Conditions {
    local_address: Vec<String>,
    remote_address: Vec<String>,
    protocol: Option<String>,
    local_port: Vec<String>,
    program: Option<String>,
    interface_alias: Vec<String>,
}

/// Which filter cmdlet a document comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKind {
    /// `Get-NetFirewallAddressFilter`.
    Address,
    /// `Get-NetFirewallPortFilter`.
    Port,
    /// `Get-NetFirewallApplicationFilter`.
    Application,
    /// `Get-NetFirewallInterfaceFilter`.
    Interface,
}

impl FilterKind {
    fn format(self) -> InputFormat {
        match self {
            FilterKind::Address => InputFormat::NetFirewallAddressFilter,
            FilterKind::Port => InputFormat::NetFirewallPortFilter,
            FilterKind::Application => InputFormat::NetFirewallApplicationFilter,
            FilterKind::Interface => InputFormat::NetFirewallInterfaceFilter,
        }
    }
}

/// The filters read so far, by rule `InstanceID`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    by_id: HashMap<String, Conditions>,
    /// The kinds whose documents were read.
    read: Vec<FilterKind>,
}

impl Filters {
    /// Whether a document of `kind` was read.
    pub fn has(&self, kind: FilterKind) -> bool {
        self.read.contains(&kind)
    }

    /// Read one filter cmdlet's document.
    pub fn read(&mut self, kind: FilterKind, bytes: &[u8]) -> Result<(), HostFwError> {
        let format = kind.format();
        for (i, o) in psjson::objects(bytes, format)?.into_iter().enumerate() {
            let Some(id) = text(o.get("InstanceID")).filter(|s| !s.is_empty()) else {
                return Err(HostFwError::Shape {
                    format,
                    path: format!("[{i}]"),
                    detail: "missing InstanceID".into(),
                });
            };
            let c = self.by_id.entry(id).or_default();
            match kind {
                FilterKind::Address => {
                    c.local_address = list(o.get("LocalAddress"));
                    c.remote_address = list(o.get("RemoteAddress"));
                }
                FilterKind::Port => {
                    c.protocol = text(o.get("Protocol")).filter(|p| !is_any(p));
                    c.local_port = list(o.get("LocalPort"));
                }
                FilterKind::Application => {
                    c.program = text(o.get("Program")).filter(|p| !is_any(p));
                }
                FilterKind::Interface => c.interface_alias = list(o.get("InterfaceAlias")),
            }
        }
        if !self.read.contains(&kind) {
            self.read.push(kind);
        }
        Ok(())
    }
}

/// `PolicyStoreSourceType` in words.
fn policy_source(v: Option<&Value>) -> Option<String> {
    let n = match v? {
        Value::String(s) if s.parse::<u64>().is_err() => return Some(s.clone()),
        other => number(Some(other))?,
    };
    Some(
        match n {
            0 => "None",
            1 => "Local",
            2 => "GroupPolicy",
            3 => "Dynamic",
            4 => "Generated",
            5 => "Hardcoded",
            6 => "MDM",
            8 => "HostFirewallLocal",
            9 => "HostFirewallGroupPolicy",
            10 => "HostFirewallDynamic",
            11 => "HostFirewallMDM",
            _ => return Some(n.to_string()),
        }
        .to_owned(),
    )
}

/// Parse `Get-NetFirewallRule … | ConvertTo-Json`.
pub fn parse_rules(bytes: &[u8]) -> Result<Vec<NetRule>, HostFwError> {
    let format = InputFormat::NetFirewallRule;
    psjson::objects(bytes, format)?
        .into_iter()
        .enumerate()
        .map(|(i, o)| rule(&o).map_err(|detail| shape(format, i, detail)))
        .collect()
}

fn shape(format: InputFormat, i: usize, detail: &str) -> HostFwError {
    HostFwError::Shape {
        format,
        path: format!("[{i}]"),
        detail: detail.to_owned(),
    }
}

fn rule(o: &Map<String, Value>) -> Result<NetRule, &'static str> {
    let id = text(o.get("InstanceID"))
        .filter(|s| !s.is_empty())
        .or_else(|| text(o.get("Name")))
        .ok_or("missing InstanceID and Name")?;
    Ok(NetRule {
        display_name: text(o.get("DisplayName")).unwrap_or_else(|| id.clone()),
        id,
        enabled: enabled_of(o.get("Enabled"))?,
        inbound: inbound_of(o.get("Direction"))?,
        allow: allow_of(o.get("Action"))?,
        profile: profile_of(o.get("Profile")),
        policy_source: policy_source(o.get("PolicyStoreSourceType")),
    })
}

/// The rules with their filters joined, in the order of the rules. A rule without a filter
/// of a kind has no condition of that kind (what the cmdlets print for "Any").
pub fn join(rules: &[NetRule], filters: &Filters) -> Vec<WinRule> {
    let none = Conditions::default();
    rules
        .iter()
        .enumerate()
        .map(|(index, r)| {
            let c = filters.by_id.get(&r.id).unwrap_or(&none);
            WinRule {
                index,
                display_name: r.display_name.clone(),
                enabled: r.enabled,
                inbound: r.inbound,
                allow: r.allow,
                profile: r.profile.clone(),
                interface_alias: c.interface_alias.clone(),
                program: c.program.clone(),
                protocol: c.protocol.clone(),
                local_port: c.local_port.clone(),
                local_address: c.local_address.clone(),
                remote_address: c.remote_address.clone(),
                policy_source: r.policy_source.clone(),
            }
        })
        .collect()
}

/// What the firewall does with inbound traffic no rule matches (`DefaultInboundAction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultAction {
    /// Allowed.
    Allow,
    /// Blocked.
    Block,
    /// Not configured: Windows' default, block.
    NotConfigured,
}

/// One firewall profile (`Get-NetFirewallProfile`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WinProfile {
    /// `Name`: Domain, Private or Public.
    pub name: String,
    /// `Enabled`; `None` when not configured (Windows' default: on).
    pub enabled: Option<bool>,
    /// `DefaultInboundAction`.
    pub default_inbound: DefaultAction,
    /// `AllowLocalFirewallRules`: whether rules made on this host (NetBird's is one) are
    /// merged with Group Policy's; `None` when not configured (Windows' default: yes).
    pub allow_local_rules: Option<bool>,
}

impl WinProfile {
    /// Whether the firewall filters in this profile.
    pub fn is_on(&self) -> bool {
        self.enabled != Some(false)
    }

    /// Whether local rules apply in this profile.
    pub fn local_rules_apply(&self) -> bool {
        self.allow_local_rules != Some(false)
    }
}

/// A `GpoBoolean` (False 0, True 1, NotConfigured 2) or `True`/`False` text.
fn gpo_boolean(v: Option<&Value>) -> Result<Option<bool>, ()> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        other => match text(other).as_deref() {
            Some("0" | "False" | "false") => Ok(Some(false)),
            Some("1" | "True" | "true") => Ok(Some(true)),
            Some("2" | "NotConfigured") => Ok(None),
            _ => Err(()),
        },
    }
}

/// Parse `Get-NetFirewallProfile … | ConvertTo-Json`.
pub fn parse_profiles(bytes: &[u8]) -> Result<Vec<WinProfile>, HostFwError> {
    let format = InputFormat::NetFirewallProfile;
    psjson::objects(bytes, format)?
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            let name = text(o.get("Name"))
                .or_else(|| text(o.get("Profile")))
                .ok_or_else(|| shape(format, i, "missing Name"))?;
            let enabled = gpo_boolean(o.get("Enabled"))
                .map_err(|()| shape(format, i, "Enabled is not a GpoBoolean"))?;
            let allow_local_rules = gpo_boolean(o.get("AllowLocalFirewallRules"))
                .map_err(|()| shape(format, i, "AllowLocalFirewallRules is not a GpoBoolean"))?;
            let default_inbound = match text(o.get("DefaultInboundAction")).as_deref() {
                Some("2" | "Allow") => DefaultAction::Allow,
                Some("4" | "Block") => DefaultAction::Block,
                None | Some("0" | "NotConfigured") => DefaultAction::NotConfigured,
                Some(_) => return Err(shape(format, i, "DefaultInboundAction is not Allow/Block")),
            };
            Ok(WinProfile {
                name,
                enabled,
                default_inbound,
                allow_local_rules,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_enums_as_numbers_and_names() {
        let r = parse_rules(
            br#"[{"InstanceID":"A","Name":"A","DisplayName":"a","Enabled":1,"Direction":1,"Action":4,"Profile":6,"PolicyStoreSourceType":2},
                {"Name":"B","Enabled":"False","Direction":"Outbound","Action":"Allow","Profile":"Private, Public"}]"#,
        )
        .unwrap();
        assert_eq!(r[0].id, "A");
        assert!(r[0].enabled && r[0].inbound && !r[0].allow);
        assert_eq!(r[0].profile, "Private, Public");
        assert_eq!(r[0].policy_source.as_deref(), Some("GroupPolicy"));
        assert_eq!(r[1].id, "B");
        assert_eq!(r[1].display_name, "B");
        assert!(!r[1].enabled && !r[1].inbound && r[1].allow);
        assert_eq!(r[1].profile, "Private, Public");
        assert_eq!(r[1].policy_source, None);
        let e = parse_rules(br#"{"Name":"x","Enabled":1,"Direction":3,"Action":2}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Get-NetFirewallRule output: [0]: Direction is not Inbound/Outbound"
        );
        assert!(parse_rules(br#"[{"Enabled":1,"Direction":1,"Action":2}]"#).is_err());
    }

    #[test]
    fn filters_join_on_instance_id() {
        let rules = parse_rules(
            br#"[{"InstanceID":"nb","DisplayName":"Netbird","Enabled":1,"Direction":1,"Action":2,"Profile":0},
                {"InstanceID":"other","DisplayName":"Other","Enabled":1,"Direction":1,"Action":2,"Profile":0}]"#,
        )
        .unwrap();
        let mut f = Filters::default();
        f.read(
            FilterKind::Address,
            br#"{"InstanceID":"nb","LocalAddress":"100.92.1.7","RemoteAddress":"Any"}"#,
        )
        .unwrap();
        f.read(
            FilterKind::Port,
            br#"[{"InstanceID":"nb","Protocol":"Any","LocalPort":"Any"},
                {"InstanceID":"other","Protocol":"TCP","LocalPort":{"value":["80","443"],"Count":2}}]"#,
        )
        .unwrap();
        assert!(f.has(FilterKind::Port) && !f.has(FilterKind::Application));
        let w = join(&rules, &f);
        assert_eq!(w[0].local_address, ["100.92.1.7"]);
        assert!(w[0].all_traffic());
        assert_eq!(w[1].protocol.as_deref(), Some("TCP"));
        assert_eq!(w[1].local_port, ["80", "443"]);
        assert!(
            f.read(FilterKind::Address, br#"[{"LocalAddress":"Any"}]"#)
                .is_err()
        );
    }

    #[test]
    fn profiles() {
        let p = parse_profiles(
            br#"[{"Name":"Domain","Enabled":1,"DefaultInboundAction":4,"AllowLocalFirewallRules":0},
                {"Name":"Private","Enabled":0,"DefaultInboundAction":2,"AllowLocalFirewallRules":2},
                {"Profile":"Public","Enabled":"True","DefaultInboundAction":0}]"#,
        )
        .unwrap();
        assert!(p[0].is_on() && !p[0].local_rules_apply());
        assert_eq!(p[0].default_inbound, DefaultAction::Block);
        assert!(!p[1].is_on() && p[1].local_rules_apply());
        assert_eq!(p[1].default_inbound, DefaultAction::Allow);
        assert_eq!(p[2].name, "Public");
        assert_eq!(p[2].default_inbound, DefaultAction::NotConfigured);
        assert!(parse_profiles(br#"[{"Name":"x","Enabled":7}]"#).is_err());
    }
}
