//! NetBird's own availability flag and error for each URI beside stunmap's measurement of the
//! same URI, with the disagreements called out.

use serde::{Deserialize, Serialize};

use super::status::Status;
use super::uri;

/// What stunmap found for a URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasuredState {
    /// It answered (Binding, Allocate, TLS/WebSocket, gRPC as the service needs).
    Ok,
    /// It did not answer, or answered with an error.
    Failed,
    /// Not probed in this run.
    NotTested,
}

impl std::fmt::Display for MeasuredState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MeasuredState::Ok => "ok",
            MeasuredState::Failed => "failed",
            MeasuredState::NotTested => "not tested",
        })
    }
}

/// One URI as stunmap measured it (the caller's input).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasuredUri {
    /// The URI or URL, as NetBird reports it or in any spelling that parses to the same
    /// scheme, host, port and transport.
    pub uri: String,
    /// The result.
    pub state: MeasuredState,
    /// One line (RTT, error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Whether the two views agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Agreement {
    /// Both say it works, or both say it does not.
    Agree,
    /// NetBird says available, stunmap could not reach it.
    NetbirdOnly,
    /// stunmap reached it, NetBird says unavailable.
    StunmapOnly,
    /// NetBird's check has not finished.
    Pending,
    /// stunmap did not probe it.
    NotMeasured,
}

impl std::fmt::Display for Agreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Agreement::Agree => "agree",
            Agreement::NetbirdOnly => "disagree: only NetBird reaches it",
            Agreement::StunmapOnly => "disagree: only stunmap reaches it",
            Agreement::Pending => "NetBird's check still running",
            Agreement::NotMeasured => "not measured by stunmap",
        })
    }
}

/// One row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UriComparison {
    /// The URI as NetBird reports it.
    pub uri: String,
    /// What it is: management, signal, stun, turn, relay.
    pub role: &'static str,
    /// NetBird's flag (connected / available).
    pub netbird_ok: bool,
    /// NetBird's error text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netbird_error: Option<String>,
    /// stunmap's result.
    pub measured: MeasuredState,
    /// stunmap's detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured_detail: Option<String>,
    /// Verdict.
    pub agreement: Agreement,
    /// What a disagreement means, one line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn same(a: &str, b: &str, bare: bool) -> bool {
    if a.trim().eq_ignore_ascii_case(b.trim()) {
        return true;
    }
    match (uri::parse(a, bare), uri::parse(b, bare)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn role(u: &str) -> &'static str {
    let l = u.trim().to_ascii_lowercase();
    if l.starts_with("stun") {
        "stun"
    } else if l.starts_with("turn") {
        "turn"
    } else if l.starts_with("rel") {
        "relay"
    } else {
        "other"
    }
}

/// Compare every URI of the status (management and signal included) with the measurements.
pub fn compare(st: &Status, measured: &[MeasuredUri]) -> Vec<UriComparison> {
    struct Row {
        uri: String,
        role: &'static str,
        ok: bool,
        checking: bool,
        error: Option<String>,
        bare: bool,
    }
    let mut rows = Vec::new();
    for (s, r) in [(&st.management, "management"), (&st.signal, "signal")] {
        if !s.url.is_empty() {
            rows.push(Row {
                uri: s.url.clone(),
                role: r,
                ok: s.connected,
                checking: false,
                error: s.error.clone(),
                bare: true,
            });
        }
    }
    for r in &st.relays {
        rows.push(Row {
            uri: r.uri.clone(),
            role: role(&r.uri),
            ok: r.available,
            checking: r.checking,
            error: r.error.clone(),
            bare: false,
        });
    }
    rows.into_iter()
        .map(|Row { uri: u, role, ok, checking, error, bare }| {
            let m = measured.iter().find(|m| same(&m.uri, &u, bare));
            let state = m.map_or(MeasuredState::NotTested, |m| m.state);
            let (agreement, note) = match (state, ok, checking) {
                (MeasuredState::NotTested, _, _) => (Agreement::NotMeasured, None),
                (_, _, true) => (Agreement::Pending, Some("NetBird's own check was still running".into())),
                (MeasuredState::Ok, true, _) | (MeasuredState::Failed, false, _) => (Agreement::Agree, None),
                (MeasuredState::Failed, true, _) => (
                    Agreement::NetbirdOnly,
                    Some("NetBird reached it and stunmap did not: a path stunmap's probe takes (port, transport, source address) is filtered, or it failed since NetBird checked".into()),
                ),
                (MeasuredState::Ok, false, _) => (
                    Agreement::StunmapOnly,
                    Some(format!(
                        "stunmap reached it and NetBird reports it unavailable{}: the client's own path differs (proxy, DNS, credentials) or the failure has passed",
                        error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
                    )),
                ),
            };
            UriComparison {
                uri: u,
                role,
                netbird_ok: ok,
                netbird_error: error,
                measured: state,
                measured_detail: m.and_then(|m| m.detail.clone()),
                agreement,
                note,
            }
        })
        .collect()
}

#[cfg(test)]
mod display_tests {
    use super::*;

    #[test]
    fn states_and_agreements_read_as_words() {
        assert_eq!(MeasuredState::NotTested.to_string(), "not tested");
        assert_eq!(
            Agreement::StunmapOnly.to_string(),
            "disagree: only stunmap reaches it"
        );
    }
}
