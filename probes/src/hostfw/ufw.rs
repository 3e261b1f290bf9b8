//! `ufw status verbose` (or plain `ufw status`).
//!
//! The kernel rules UFW generates are read from `iptables-save`; this file adds what only UFW
//! knows: whether it is active, its default incoming policy, and its rule list as the user wrote it.

use serde::Serialize;

use super::{HostFwError, InputFormat};

/// One line of UFW's rule table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UfwRule {
    /// 1-based position among the rules (`ufw status numbered`).
    pub number: usize,
    /// Line in the file.
    pub line: usize,
    /// "To" column (`Anywhere on wt0`, `22/tcp`).
    pub to: String,
    /// "Action" column (`ALLOW IN`, `DENY`, …).
    pub action: String,
    /// "From" column.
    pub from: String,
    /// The line as printed.
    pub text: String,
}

impl UfwRule {
    /// The interface in the "To" column (`… on wt0`).
    pub fn interface(&self) -> Option<&str> {
        self.to
            .split(" on ")
            .nth(1)
            .map(|s| s.trim_end_matches(" (v6)").trim())
    }

    /// Whether the rule allows incoming traffic.
    pub fn allows_in(&self) -> bool {
        self.action.starts_with("ALLOW") && !self.action.ends_with("OUT")
    }

    /// Whether the rule denies or rejects incoming traffic.
    pub fn denies_in(&self) -> bool {
        (self.action.starts_with("DENY")
            || self.action.starts_with("REJECT")
            || self.action.starts_with("LIMIT"))
            && !self.action.ends_with("OUT")
    }
}

/// The parsed status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UfwStatus {
    /// `Status: active`.
    pub active: bool,
    /// `deny`, `reject` or `allow`, from `Default: … (incoming)` (verbose output only).
    pub default_incoming: Option<String>,
    /// Rules in order.
    pub rules: Vec<UfwRule>,
}

/// Parse the output.
pub fn parse(text: &str) -> Result<UfwStatus, HostFwError> {
    let mut active = None;
    let mut default_incoming = None;
    let mut rules = Vec::new();
    let mut in_table = false;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let lineno = n + 1;
        if let Some(s) = line.strip_prefix("Status:") {
            active = Some(s.trim() == "active");
        } else if let Some(d) = line.strip_prefix("Default:") {
            default_incoming = d
                .split(',')
                .find(|p| p.contains("(incoming)"))
                .and_then(|p| p.split_whitespace().next())
                .map(str::to_owned);
        } else if line.starts_with("--") {
            in_table = true;
        } else if in_table && !line.trim().is_empty() {
            // Columns are separated by runs of two or more spaces.
            let cols: Vec<&str> = line
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            let (Some(to), Some(action), Some(from)) = (cols.first(), cols.get(1), cols.get(2))
            else {
                return Err(HostFwError::Syntax {
                    format: InputFormat::UfwStatus,
                    line: lineno,
                    detail: "rule line without To, Action and From columns".into(),
                });
            };
            rules.push(UfwRule {
                number: rules.len() + 1,
                line: lineno,
                to: (*to).to_owned(),
                action: (*action).to_owned(),
                from: from.split(" #").next().unwrap_or(from).trim().to_owned(),
                text: line.trim().to_owned(),
            });
        }
    }
    let Some(active) = active else {
        return Err(HostFwError::Syntax {
            format: InputFormat::UfwStatus,
            line: 1,
            detail: "no \"Status:\" line (is this `ufw status verbose` output?)".into(),
        });
    };
    Ok(UfwStatus {
        active,
        default_incoming,
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules() {
        let s = parse(
            "Status: active\nLogging: on (low)\nDefault: deny (incoming), allow (outgoing), disabled (routed)\n\
             New profiles: skip\n\nTo                         Action      From\n\
             --                         ------      ----\n\
             Anywhere on wt0            ALLOW IN    Anywhere                  \n\
             Anywhere                   DENY IN     100.64.0.0/10              # cgnat\n",
        )
        .unwrap();
        assert!(s.active);
        assert_eq!(s.default_incoming.as_deref(), Some("deny"));
        assert_eq!(s.rules[0].interface(), Some("wt0"));
        assert!(s.rules[0].allows_in());
        assert!(s.rules[1].denies_in());
        assert_eq!(s.rules[1].from, "100.64.0.0/10");
        assert!(!parse("Status: inactive\n").unwrap().active);
        assert!(parse("hello\n").is_err());
    }
}
