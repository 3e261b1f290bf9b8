//! The vocabulary every judge in this crate speaks: how something went ([`Status`]), how much a
//! finding matters ([`Severity`]), what to change ([`Fix`]), and the finding itself
//! ([`Finding`]: a typed kind, a severity, a sentence and the fix).
//!
//! The control-plane assessment, the TURN audit, the host-firewall diagnosis and the NAT
//! verdict all use these, so a renderer that shows one shows them all.

use std::fmt;

/// How something went: an endpoint, a path, a rule check. Ordered best to worst, so the worst
/// of several is their `max`; `Skipped` and `Uncertain` rank between `Ok` and `Degraded`, as
/// nothing is known to be broken.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// It works.
    Ok,
    /// Not checked: nothing to check, not asked, or not possible from here.
    Skipped,
    /// It depends on something that could not be decided from what was seen.
    Uncertain,
    /// It works, but not fully: through a fallback, with TLS inspection, or blocked only in
    /// some setups (a firewall rule that matters on flat networks only).
    Degraded,
    /// It does not work.
    Blocked,
}

impl Status {
    /// The word used in JSON and text: `ok`, `degraded`, `blocked`, `uncertain`, `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Degraded => "degraded",
            Status::Blocked => "blocked",
            Status::Uncertain => "uncertain",
            Status::Skipped => "skipped",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much a finding matters, least first. Connectivity findings use `Info` (clients work
/// normally), `Medium` (they work worse or through a fallback) and `High` (they cannot use
/// the thing); security findings use the whole scale.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Worth knowing; nothing is wrong.
    Info,
    /// A small exposure or a deviation without consequences.
    Low,
    /// Works worse, or abuse is possible with limited reach.
    Medium,
    /// Does not work, or the network behind a server is reachable.
    High,
    /// A server itself or its cloud credentials are reachable, or anyone may use it.
    Critical,
}

impl Severity {
    /// The word used in JSON and text: `info`, `low`, `medium`, `high`, `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A suggested change: what to do, example commands or configuration lines, and what it costs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fix {
    /// What to do, in a sentence.
    pub title: String,
    /// Commands or configuration lines that do it (nftables, UFW, firewalld, PowerShell,
    /// coturn settings); may be empty when the title says all.
    pub commands: Vec<String>,
    /// What it costs or when not to do it (`null` in JSON when nothing).
    pub caveat: Option<String>,
}

impl Fix {
    /// A fix that is only a sentence.
    pub fn new(title: impl Into<String>) -> Fix {
        Fix {
            title: title.into(),
            commands: Vec::new(),
            caveat: None,
        }
    }

    /// The same with a command (or configuration line) added.
    pub fn command(mut self, command: impl Into<String>) -> Fix {
        self.commands.push(command.into());
        self
    }

    /// The same with its caveat.
    pub fn caveat(mut self, caveat: impl Into<String>) -> Fix {
        self.caveat = Some(caveat.into());
        self
    }
}

/// One conclusion of a judge: what it is about (`kind`, a typed code of the judge's own), how
/// much it matters, a sentence for people, and the fix when there is one.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Finding<K> {
    /// What it is about.
    pub kind: K,
    /// How much it matters.
    pub severity: Severity,
    /// What was found, in a sentence.
    pub summary: String,
    /// What to change, when something should change.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fix: Option<Fix>,
}

impl<K> Finding<K> {
    /// A finding without a fix.
    pub fn new(kind: K, severity: Severity, summary: impl Into<String>) -> Finding<K> {
        Finding {
            kind,
            severity,
            summary: summary.into(),
            fix: None,
        }
    }

    /// The same with its fix.
    pub fn with_fix(mut self, fix: Fix) -> Finding<K> {
        self.fix = Some(fix);
        self
    }
}

impl<K> fmt::Display for Finding<K> {
    /// `severity: summary`, then the fix's title after ` — fix: ` when there is one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.severity, self.summary)?;
        if let Some(fix) = &self.fix {
            write!(f, " — fix: {}", fix.title)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_for_people_and_json_agree() {
        let statuses = [
            Status::Ok,
            Status::Skipped,
            Status::Uncertain,
            Status::Degraded,
            Status::Blocked,
        ];
        for s in statuses {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{s}\""),
                "{s:?}"
            );
        }
        let shown: Vec<String> = statuses.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["ok", "skipped", "uncertain", "degraded", "blocked"]);
        assert!(statuses.windows(2).all(|w| w[0] < w[1]), "best first");
        let severities = [
            Severity::Info,
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ];
        let shown: Vec<String> = severities.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["info", "low", "medium", "high", "critical"]);
        for s in severities {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!(severities.windows(2).all(|w| w[0] < w[1]), "least first");
    }

    #[test]
    fn a_fix_serializes_with_a_null_caveat_and_a_finding_reads_as_a_sentence() {
        let fix = Fix::new("Allow UDP 3478").command("ufw allow out 3478/udp");
        let json = serde_json::to_value(&fix).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "title": "Allow UDP 3478",
                "commands": ["ufw allow out 3478/udp"],
                "caveat": null
            })
        );
        let finding = Finding::new("dns", Severity::High, "the name does not resolve");
        assert_eq!(finding.to_string(), "high: the name does not resolve");
        assert!(serde_json::to_value(&finding).unwrap().get("fix").is_none());
        let finding = finding.with_fix(fix.caveat("opens the port to everyone"));
        assert_eq!(
            finding.to_string(),
            "high: the name does not resolve — fix: Allow UDP 3478"
        );
        let back: Finding<String> =
            serde_json::from_value(serde_json::to_value(&finding).unwrap()).unwrap();
        assert_eq!(back.fix, finding.fix);
    }
}
