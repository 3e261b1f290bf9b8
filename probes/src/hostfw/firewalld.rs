//! `firewall-cmd --get-zone-of-interface=IF` output: a zone name, or `no zone`.

use serde::Serialize;

use super::{HostFwError, InputFormat};

/// What firewalld said about the interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "zone")]
pub enum ZoneOfInterface {
    /// The interface is bound to this zone.
    Zone(String),
    /// Not bound: it gets the default zone (usually `public`).
    NoZone,
    /// firewalld is not running.
    NotRunning,
}

/// Parse the output (stdout and stderr together are fine).
pub fn parse(text: &str) -> Result<ZoneOfInterface, HostFwError> {
    let Some((n, line)) = text.lines().enumerate().find(|(_, l)| !l.trim().is_empty()) else {
        return Err(HostFwError::Syntax {
            format: InputFormat::FirewalldZone,
            line: 1,
            detail: "empty".into(),
        });
    };
    let line = line.trim();
    if line == "no zone" {
        return Ok(ZoneOfInterface::NoZone);
    }
    if line.contains("not running") {
        return Ok(ZoneOfInterface::NotRunning);
    }
    let valid = !line.is_empty()
        && line
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c));
    if !valid {
        return Err(HostFwError::Syntax {
            format: InputFormat::FirewalldZone,
            line: n + 1,
            detail: format!(
                "expected a zone name or \"no zone\", got {:?}",
                line.chars().take(60).collect::<String>()
            ),
        });
    }
    Ok(ZoneOfInterface::Zone(line.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones() {
        assert_eq!(
            parse("trusted\n").unwrap(),
            ZoneOfInterface::Zone("trusted".into())
        );
        assert_eq!(parse("no zone\n").unwrap(), ZoneOfInterface::NoZone);
        assert_eq!(
            parse("FirewallD is not running\n").unwrap(),
            ZoneOfInterface::NotRunning
        );
        assert!(parse("").is_err());
        assert!(parse("\nError: INVALID_INTERFACE: x y\n").is_err());
    }
}
