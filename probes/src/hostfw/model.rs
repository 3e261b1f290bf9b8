//! The small rule model every parser produces and the evaluator walks.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::{Family, PortRange};

/// Which tool the rules came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleSource {
    /// `iptables-save` (legacy or nf_tables backend).
    Iptables,
    /// `ip6tables-save`.
    Ip6tables,
    /// `nft -j list ruleset`.
    Nft,
}

impl fmt::Display for RuleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuleSource::Iptables => "iptables",
            RuleSource::Ip6tables => "ip6tables",
            RuleSource::Nft => "nft",
        })
    }
}

/// Address family of a table: which packets its chains see.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFamily {
    /// IPv4 only (`ip`, and every iptables table).
    Ip,
    /// IPv6 only (`ip6`, and every ip6tables table).
    Ip6,
    /// Both (`inet`).
    Inet,
    /// `arp`, `bridge`, `netdev`: never on the IP input path evaluated here.
    Other(String),
}

impl TableFamily {
    /// Whether packets of `family` traverse chains of this table.
    pub fn sees(&self, family: Family) -> bool {
        matches!(
            (self, family),
            (TableFamily::Ip, Family::Ipv4)
                | (TableFamily::Ip6, Family::Ipv6)
                | (TableFamily::Inet, _)
        )
    }
}

impl fmt::Display for TableFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableFamily::Ip => f.write_str("ip"),
            TableFamily::Ip6 => f.write_str("ip6"),
            TableFamily::Inet => f.write_str("inet"),
            TableFamily::Other(s) => f.write_str(s),
        }
    }
}

/// Netfilter hook a base chain is attached to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// Before routing.
    Prerouting,
    /// Packets for this host: the path evaluated here.
    Input,
    /// Routed packets.
    Forward,
    /// Locally generated packets.
    Output,
    /// After routing.
    Postrouting,
    /// Anything else (`ingress`, …).
    Other(String),
}

impl Hook {
    /// The hook an nft base chain names (`type filter hook input …`, the JSON `"hook"`).
    pub(crate) fn from_nft(s: &str) -> Hook {
        match s {
            "prerouting" => Hook::Prerouting,
            "input" => Hook::Input,
            "forward" => Hook::Forward,
            "output" => Hook::Output,
            "postrouting" => Hook::Postrouting,
            o => Hook::Other(o.to_owned()),
        }
    }
}

/// An nft base-chain priority written without spaces: a number, or a standard name with an
/// optional offset (`filter-10`, `mangle+5`; nft(8), "CHAIN PRIORITY"). A sign in first place
/// belongs to the number, not to an offset.
pub(crate) fn nft_priority(s: &str) -> Option<i32> {
    let (name, off) = match s.find(['+', '-']).filter(|&i| i > 0) {
        Some(i) => (s.get(..i)?, s.get(i..)?.parse::<i32>().ok()?),
        None => (s, 0),
    };
    let base = match name {
        "raw" => -300,
        "mangle" => -150,
        "dstnat" => -100,
        "filter" => 0,
        "security" => 50,
        "srcnat" => 100,
        n => n.parse().ok()?,
    };
    Some(base + off)
}

/// Verdict a base chain applies when no rule decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// `ACCEPT` / `policy accept`.
    Accept,
    /// `DROP` / `policy drop`.
    Drop,
}

/// Attachment of a base chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BaseChain {
    /// The hook.
    pub hook: Hook,
    /// Lower runs first. iptables tables use their fixed netfilter priorities.
    pub priority: i32,
    /// Default verdict.
    pub policy: Policy,
}

/// One chain of one table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Chain {
    /// Tool the chain came from.
    pub source: RuleSource,
    /// Table family.
    pub family: TableFamily,
    /// Table name (`filter`, `netbird`, …).
    pub table: String,
    /// Chain name.
    pub name: String,
    /// Set for base chains, `None` for chains reached only by jump/goto.
    pub base: Option<BaseChain>,
    /// Rules in evaluation order.
    pub rules: Vec<Rule>,
}

/// Where a rule sits, in the terms the user's tool prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RulePos {
    /// 1-based position in its chain (what `iptables -L --line-numbers` shows).
    pub index: usize,
    /// Line in the saved file (iptables-save).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// nftables rule handle (`nft -a`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
}

/// One rule: all matches must hold, then the action applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// The rule as the user's tool prints it.
    pub text: String,
    /// Position.
    pub pos: RulePos,
    /// Conditions, all of which must hold.
    pub matches: Vec<Match>,
    /// What happens when they do.
    pub action: RuleAction,
}

/// What a matching rule does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "target")]
pub enum RuleAction {
    /// Accept: leave this base chain.
    Accept,
    /// Drop silently.
    Drop,
    /// Drop and answer with an ICMP error or TCP reset.
    Reject,
    /// Back to the calling chain (in a base chain: the policy).
    Return,
    /// Evaluate another chain, then come back.
    Jump(String),
    /// Evaluate another chain without coming back.
    Goto(String),
    /// No verdict (counter, log, mark …): go on with the next rule.
    Continue,
    /// A target or statement this evaluator does not model; it may end evaluation.
    Unknown(String),
}

/// Interface name pattern: exact, or a prefix (`wt+` in iptables, `wt*` in nft).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IfName {
    /// Name or prefix.
    pub name: String,
    /// `true` when `name` is a prefix.
    pub prefix: bool,
}

impl IfName {
    /// The pattern `v` writes: the prefix before a trailing `wildcard` (`+` in iptables, `*` in
    /// nft), else the exact name.
    pub(crate) fn with_wildcard(v: &str, wildcard: char) -> IfName {
        match v.strip_suffix(wildcard) {
            Some(p) => IfName {
                name: p.to_owned(),
                prefix: true,
            },
            None => IfName {
                name: v.to_owned(),
                prefix: false,
            },
        }
    }

    /// Whether `iface` fits the pattern.
    pub fn fits(&self, iface: &str) -> bool {
        if self.prefix {
            iface.starts_with(&self.name)
        } else {
            iface == self.name
        }
    }
}

/// Layer-4 protocol as rules name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ICMP (1).
    Icmp,
    /// ICMPv6 (58).
    Icmpv6,
    /// Any other protocol number.
    Number(u8),
}

impl Proto {
    /// IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Icmp => 1,
            Proto::Icmpv6 => 58,
            Proto::Number(n) => n,
        }
    }

    /// Parse a name or number as iptables and nft print them.
    pub fn parse(s: &str) -> Option<Proto> {
        Some(match s.to_ascii_lowercase().as_str() {
            "tcp" | "6" => Proto::Tcp,
            "udp" | "17" => Proto::Udp,
            "icmp" | "1" => Proto::Icmp,
            "icmpv6" | "ipv6-icmp" | "58" => Proto::Icmpv6,
            other => Proto::Number(other.parse().ok()?),
        })
    }
}

/// Connection-tracking state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CtState {
    /// First packet of a connection: the only state evaluated here.
    New,
    /// Part of a known connection.
    Established,
    /// Related to a known connection (ICMP errors, FTP data).
    Related,
    /// Not valid for conntrack.
    Invalid,
    /// Exempted from tracking.
    Untracked,
}

impl CtState {
    /// Parse `NEW`, `established`, … (either case).
    pub fn parse(s: &str) -> Option<CtState> {
        Some(match s.to_ascii_lowercase().as_str() {
            "new" => CtState::New,
            "established" => CtState::Established,
            "related" => CtState::Related,
            "invalid" => CtState::Invalid,
            "untracked" => CtState::Untracked,
            _ => return None,
        })
    }
}

/// An address prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// A prefix; the host bits of `addr` are cleared. `None` if `len` is too long for the family.
    pub fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return None;
        }
        let bits = to_bits(addr) & mask(len, max);
        Some(Self {
            addr: from_bits(bits, addr.is_ipv4()),
            len,
        })
    }

    /// Parse `a.b.c.d/n`, `a::/n` or a bare address (host prefix).
    pub fn parse(s: &str) -> Option<Self> {
        match s.split_once('/') {
            Some((a, l)) => {
                let addr: IpAddr = a.parse().ok()?;
                let len = match l.parse::<u8>() {
                    Ok(n) => n,
                    // iptables-save can print a dotted mask for non-contiguous netmasks.
                    Err(_) => mask_len(l.parse().ok()?)?,
                };
                Self::new(addr, len)
            }
            None => {
                let addr: IpAddr = s.parse().ok()?;
                Self::new(addr, if addr.is_ipv4() { 32 } else { 128 })
            }
        }
    }

    /// Network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether this is an IPv4 prefix.
    pub fn is_v4(&self) -> bool {
        self.addr.is_ipv4()
    }

    fn max(&self) -> u8 {
        if self.is_v4() { 32 } else { 128 }
    }

    /// Whether every address of `other` is inside `self`.
    pub fn covers(&self, other: &Cidr) -> bool {
        self.is_v4() == other.is_v4()
            && self.len <= other.len
            && to_bits(other.addr) & mask(self.len, self.max()) == to_bits(self.addr)
    }

    /// Whether the two prefixes share at least one address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.covers(other) || other.covers(self)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn to_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_bits(b: u128, v4: bool) -> IpAddr {
    if v4 {
        // Only the low 32 bits are ever set for IPv4 prefixes.
        IpAddr::V4(u32::try_from(b & 0xffff_ffff).unwrap_or(0).into())
    } else {
        IpAddr::V6(b.into())
    }
}

fn mask(len: u8, max: u8) -> u128 {
    let all: u128 = if max == 32 { 0xffff_ffff } else { u128::MAX };
    if len == 0 {
        0
    } else {
        all & !all.checked_shr(u32::from(len)).unwrap_or(0)
    }
}

fn mask_len(m: IpAddr) -> Option<u8> {
    let (bits, max) = match m {
        IpAddr::V4(v) => (u128::from(u32::from(v)) << 96, 32u32),
        IpAddr::V6(v) => (u128::from(v), 128u32),
    };
    let ones = bits.leading_ones();
    // Contiguous masks only: the rest must be zero.
    if ones > max || bits.checked_shl(ones).unwrap_or(0) != 0 {
        return None;
    }
    u8::try_from(ones).ok()
}

/// One condition of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "match")]
pub enum Match {
    /// Input interface (`-i`, `iifname`, `iif`).
    InIface {
        /// Pattern.
        name: IfName,
        /// `!`.
        negated: bool,
    },
    /// Output interface: never set on the input path.
    OutIface {
        /// Pattern.
        name: IfName,
        /// `!`.
        negated: bool,
    },
    /// Source address in any of `nets`.
    Saddr {
        /// Prefixes.
        nets: Vec<Cidr>,
        /// `!`.
        negated: bool,
    },
    /// Destination address in any of `nets`.
    Daddr {
        /// Prefixes.
        nets: Vec<Cidr>,
        /// `!`.
        negated: bool,
    },
    /// Layer-4 protocol is one of `protos`.
    Protocol {
        /// Protocols.
        protos: Vec<Proto>,
        /// `!`.
        negated: bool,
    },
    /// Only packets of this IP family (implicit in `ip saddr …` inside an `inet` table).
    Family {
        /// The family.
        family: Family,
    },
    /// Destination port (implies the protocol when `proto` is set).
    Dport {
        /// Protocol the port belongs to; `None` for any transport (`th dport`, multiport after `-p`).
        proto: Option<Proto>,
        /// Ranges.
        ranges: Vec<PortRange>,
        /// `!`.
        negated: bool,
    },
    /// Source port.
    Sport {
        /// Protocol the port belongs to.
        proto: Option<Proto>,
        /// Ranges.
        ranges: Vec<PortRange>,
        /// `!`.
        negated: bool,
    },
    /// Conntrack state is one of `states`.
    CtState {
        /// States.
        states: Vec<CtState>,
        /// `!`.
        negated: bool,
    },
    /// ICMP / ICMPv6 type; implies the protocol.
    IcmpType {
        /// ICMPv6 rather than ICMP.
        v6: bool,
        /// Types (numbers); empty means any type.
        types: Vec<u8>,
        /// `!`.
        negated: bool,
    },
    /// `-m addrtype` / `fib … type`: the address is of one of these kinds.
    AddrType {
        /// Destination (`true`) or source address.
        dst: bool,
        /// Kinds in upper case: `LOCAL`, `UNICAST`, `BROADCAST`, `MULTICAST`, …
        kinds: Vec<String>,
        /// `!`.
        negated: bool,
    },
    /// Rate limit: matches the first packets of a burst, so a single new connection matches.
    Limit,
    /// A match this evaluator does not model: may or may not hold.
    Unknown {
        /// What it is, as the tool names it.
        what: String,
    },
}

/// All chains of all sources read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Ruleset {
    /// Chains; names are unique per (source, family, table).
    pub chains: Vec<Chain>,
}

impl Ruleset {
    /// Add every chain of `other`.
    pub fn extend(&mut self, other: Ruleset) {
        self.chains.extend(other.chains);
    }

    /// Whether any chain is attached to the input hook.
    pub fn has_input_chains(&self) -> bool {
        self.chains
            .iter()
            .any(|c| c.base.as_ref().is_some_and(|b| b.hook == Hook::Input))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_relations() {
        let vpn = Cidr::parse("100.64.0.0/10").unwrap();
        let host = Cidr::parse("100.64.0.5").unwrap();
        let any = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(vpn.covers(&host));
        assert!(any.covers(&vpn));
        assert!(!host.covers(&vpn));
        assert!(host.overlaps(&vpn));
        assert!(!Cidr::parse("10.0.0.0/8").unwrap().overlaps(&vpn));
        assert_eq!(
            Cidr::parse("100.64.1.2/10").unwrap().to_string(),
            "100.64.0.0/10"
        );
        assert_eq!(
            Cidr::parse("10.0.0.0/255.255.0.0").unwrap().prefix_len(),
            16
        );
        assert!(Cidr::parse("10.0.0.0/255.0.255.0").is_none());
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.covers(&Cidr::parse("fd12::1").unwrap()));
        assert!(!v6.overlaps(&vpn));
    }
}
