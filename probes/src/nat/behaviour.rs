//! NAT behaviour, RFC 4787: the mapping (§4.1) and filtering (§5) classes and the
//! [`NatType`] a host shows to peers.

use std::fmt;

/// Mapping behaviour, RFC 4787 §4.1 (RFC 5780 §4.3 measures it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mapping {
    /// The same mapping for every destination (RFC 4787 REQ-1 asks for this).
    EndpointIndependent,
    /// A mapping per destination IP.
    AddressDependent,
    /// A mapping per destination IP and port ("symmetric").
    AddressAndPortDependent,
    /// Differs between destination IPs; the measurements cannot say whether the port matters.
    VariesByDestination,
    /// Not measured or not measurable with the servers at hand.
    Unknown,
}

/// Filtering behaviour, RFC 4787 §5 (RFC 5780 §4.4 measures it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Filtering {
    /// Anyone may send to an existing mapping ("full cone").
    EndpointIndependent,
    /// Only IPs the mapping has sent to ("restricted cone").
    AddressDependent,
    /// Only IP:port pairs the mapping has sent to ("port-restricted cone").
    AddressAndPortDependent,
    /// Not measured, or the server did not earn trust (see the module docs).
    Unknown,
}

impl Mapping {
    /// The RFC 4787 classes this value leaves open.
    pub fn possible(self) -> &'static [Mapping] {
        use Mapping::*;
        match self {
            EndpointIndependent => &[EndpointIndependent],
            AddressDependent => &[AddressDependent],
            AddressAndPortDependent => &[AddressAndPortDependent],
            VariesByDestination => &[AddressDependent, AddressAndPortDependent],
            Unknown => &[
                EndpointIndependent,
                AddressDependent,
                AddressAndPortDependent,
            ],
        }
    }

    /// Short name as in RFC 4787 (EIM, ADM, APDM).
    pub fn short(self) -> &'static str {
        match self {
            Mapping::EndpointIndependent => "EIM",
            Mapping::AddressDependent => "ADM",
            Mapping::AddressAndPortDependent => "APDM",
            Mapping::VariesByDestination => "ADM/APDM",
            Mapping::Unknown => "mapping unknown",
        }
    }
}

impl Filtering {
    /// The RFC 4787 classes this value leaves open.
    pub fn possible(self) -> &'static [Filtering] {
        use Filtering::*;
        match self {
            EndpointIndependent => &[EndpointIndependent],
            AddressDependent => &[AddressDependent],
            AddressAndPortDependent => &[AddressAndPortDependent],
            Unknown => &[
                EndpointIndependent,
                AddressDependent,
                AddressAndPortDependent,
            ],
        }
    }

    /// Short name as in RFC 4787 (EIF, ADF, APDF).
    pub fn short(self) -> &'static str {
        match self {
            Filtering::EndpointIndependent => "EIF",
            Filtering::AddressDependent => "ADF",
            Filtering::AddressAndPortDependent => "APDF",
            Filtering::Unknown => "filtering unknown",
        }
    }
}

/// What a host looks like to a peer trying to reach it, the input of
/// [`pair_outcome`](super::pair::pair_outcome).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum NatType {
    /// UDP to peers cannot get out: blocked entirely, or allowed only to a few service ports.
    UdpBlocked,
    /// UDP works. A host without NAT is `EndpointIndependent` mapping with its firewall's
    /// filtering (`EndpointIndependent` when nothing filters).
    Udp {
        /// Mapping behaviour.
        mapping: Mapping,
        /// Filtering behaviour.
        filtering: Filtering,
    },
}

impl NatType {
    /// Public address, nothing filtering (or a full-cone NAT: the same to peers).
    pub const OPEN: NatType =
        NatType::udp(Mapping::EndpointIndependent, Filtering::EndpointIndependent);
    /// EIM + ADF, "restricted cone".
    pub const RESTRICTED_CONE: NatType =
        NatType::udp(Mapping::EndpointIndependent, Filtering::AddressDependent);
    /// EIM + APDF, "port-restricted cone": Linux MASQUERADE, most home routers.
    pub const PORT_RESTRICTED_CONE: NatType = NatType::udp(
        Mapping::EndpointIndependent,
        Filtering::AddressAndPortDependent,
    );
    /// ADM + APDF.
    pub const ADDRESS_DEPENDENT: NatType = NatType::udp(
        Mapping::AddressDependent,
        Filtering::AddressAndPortDependent,
    );
    /// APDM + APDF, "symmetric": MASQUERADE --random-fully, many CGNATs and firewalls.
    pub const SYMMETRIC: NatType = NatType::udp(
        Mapping::AddressAndPortDependent,
        Filtering::AddressAndPortDependent,
    );

    /// A UDP-capable type.
    pub const fn udp(mapping: Mapping, filtering: Filtering) -> Self {
        NatType::Udp { mapping, filtering }
    }

    /// The representative peer types of the pair table, with their labels.
    pub const TABLE: [(NatType, &'static str); 6] = [
        (NatType::OPEN, "open / full cone (EIM+EIF)"),
        (NatType::RESTRICTED_CONE, "restricted cone (EIM+ADF)"),
        (
            NatType::PORT_RESTRICTED_CONE,
            "port-restricted cone (EIM+APDF)",
        ),
        (
            NatType::ADDRESS_DEPENDENT,
            "address-dependent mapping (ADM+APDF)",
        ),
        (NatType::SYMMETRIC, "symmetric (APDM+APDF)"),
        (NatType::UdpBlocked, "UDP blocked"),
    ];
}

impl NatType {
    /// The short form of RFC 4787 terms: `EIM+APDF`, `ADM/APDM+filtering unknown`,
    /// `UDP blocked` (what metric labels and the verdict's reasons use).
    pub fn short(self) -> String {
        match self {
            NatType::UdpBlocked => "UDP blocked".to_owned(),
            NatType::Udp { mapping, filtering } => {
                format!("{}+{}", mapping.short(), filtering.short())
            }
        }
    }
}

impl fmt::Display for Mapping {
    /// `endpoint-independent mapping (EIM)`, …, `mapping unknown`; [`Mapping::short`] is the
    /// abbreviation alone.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mapping::EndpointIndependent => "endpoint-independent mapping (EIM)",
            Mapping::AddressDependent => "address-dependent mapping (ADM)",
            Mapping::AddressAndPortDependent => "address-and-port-dependent mapping (APDM)",
            Mapping::VariesByDestination => "destination-dependent mapping (ADM or APDM)",
            Mapping::Unknown => "mapping unknown",
        })
    }
}

impl fmt::Display for Filtering {
    /// `endpoint-independent filtering (EIF)`, …, `filtering unknown`; [`Filtering::short`] is
    /// the abbreviation alone.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Filtering::EndpointIndependent => "endpoint-independent filtering (EIF)",
            Filtering::AddressDependent => "address-dependent filtering (ADF)",
            Filtering::AddressAndPortDependent => "address-and-port-dependent filtering (APDF)",
            Filtering::Unknown => "filtering unknown",
        })
    }
}

impl fmt::Display for NatType {
    /// The usual name of a representative type with its RFC 4787 terms
    /// (`port-restricted cone (EIM+APDF)`), else the terms (`APDM+EIF`, `EIM, filtering
    /// unknown`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((_, label)) = NatType::TABLE.iter().find(|(t, _)| t == self) {
            return f.write_str(label);
        }
        match *self {
            NatType::UdpBlocked => f.write_str("UDP blocked"),
            NatType::Udp {
                mapping: Mapping::Unknown,
                filtering: Filtering::Unknown,
            } => f.write_str("mapping and filtering unknown"),
            NatType::Udp {
                mapping: Mapping::Unknown,
                filtering,
            } => write!(f, "mapping unknown, {}", filtering.short()),
            NatType::Udp {
                mapping,
                filtering: Filtering::Unknown,
            } => write!(f, "{}, filtering unknown", mapping.short()),
            NatType::Udp { mapping, filtering } => {
                write!(f, "{}+{}", mapping.short(), filtering.short())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviour_reads_as_words_with_its_abbreviation() {
        assert_eq!(
            Mapping::EndpointIndependent.to_string(),
            "endpoint-independent mapping (EIM)"
        );
        assert_eq!(
            Mapping::VariesByDestination.to_string(),
            "destination-dependent mapping (ADM or APDM)"
        );
        assert_eq!(Mapping::Unknown.to_string(), "mapping unknown");
        assert_eq!(
            Filtering::AddressAndPortDependent.to_string(),
            "address-and-port-dependent filtering (APDF)"
        );
        assert_eq!(Filtering::AddressDependent.short(), "ADF");
        assert_eq!(Filtering::Unknown.to_string(), "filtering unknown");
    }

    #[test]
    fn nat_types_are_named_not_debug_printed() {
        assert_eq!(
            NatType::PORT_RESTRICTED_CONE.to_string(),
            "port-restricted cone (EIM+APDF)"
        );
        assert_eq!(NatType::SYMMETRIC.to_string(), "symmetric (APDM+APDF)");
        assert_eq!(NatType::UdpBlocked.to_string(), "UDP blocked");
        let odd = NatType::udp(
            Mapping::AddressAndPortDependent,
            Filtering::EndpointIndependent,
        );
        assert_eq!(odd.to_string(), "APDM+EIF");
        let half = NatType::udp(Mapping::EndpointIndependent, Filtering::Unknown);
        assert_eq!(half.to_string(), "EIM, filtering unknown");
        assert_eq!(half.short(), "EIM+filtering unknown");
        let none = NatType::udp(Mapping::Unknown, Filtering::Unknown);
        assert_eq!(none.to_string(), "mapping and filtering unknown");
        assert_eq!(NatType::OPEN.short(), "EIM+EIF");
        for (t, label) in NatType::TABLE {
            assert_eq!(t.to_string(), label);
            assert!(!t.to_string().contains("Udp"), "no Debug text: {t}");
        }
    }
}
