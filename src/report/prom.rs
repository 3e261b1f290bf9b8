//! Prometheus text exposition format (version 0.0.4) of a check report, for node_exporter's
//! textfile collector and for `stunmap serve --metrics`'s `/probe`.
//!
//! Names follow Prometheus' conventions: a `stunmap_` prefix, base units in the name
//! (`_seconds`, `_ratio`), `_info` for constant-1 series that carry labels, states as one
//! series per state (0 or 1), and labels for what varies (service, kind, probe, transport,
//! port). Every family has HELP and TYPE lines; `promtool check metrics` runs on it in CI.

use std::fmt::Write as _;

use crate::check::model::{CheckReport, State};

/// Escape a label value: backslash, double quote and newline.
fn esc(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

/// A float in the format's syntax.
fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// Collects metric families in order, each with its HELP and TYPE once.
#[derive(Default)]
pub(crate) struct Writer {
    out: String,
    declared: Vec<&'static str>,
}

impl Writer {
    pub(crate) fn family(&mut self, name: &'static str, kind: &str, help: &str) {
        if self.declared.contains(&name) {
            return;
        }
        self.declared.push(name);
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.out, "{name}");
        if !labels.is_empty() {
            let body: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
                .collect();
            let _ = write!(self.out, "{{{}}}", body.join(","));
        }
        let _ = writeln!(self.out, " {}", num(value));
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

fn bool01(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

const STATES: [State; 4] = [State::Ok, State::Degraded, State::Blocked, State::Skipped];

/// Append the report's metrics to `w`.
pub(crate) fn write(w: &mut Writer, r: &CheckReport) {
    let profile = r.profile.name.as_str();
    let p = [("profile", profile)];
    w.family(
        "stunmap_check_success",
        "gauge",
        "1 when the check's verdict is ok (a direct P2P path is healthy), else 0.",
    );
    w.sample(
        "stunmap_check_success",
        &p,
        bool01(r.verdict.status == State::Ok),
    );
    w.family(
        "stunmap_check_status",
        "gauge",
        "The check's verdict: one series per status, 1 for the current one.",
    );
    for s in [State::Ok, State::Degraded, State::Blocked] {
        w.sample(
            "stunmap_check_status",
            &[("profile", profile), ("status", s.as_str())],
            bool01(r.verdict.status == s),
        );
    }
    w.family(
        "stunmap_check_exit_code",
        "gauge",
        "Exit code of the check (0 ok, 1 degraded, 2 blocked, 130 interrupted).",
    );
    w.sample(
        "stunmap_check_exit_code",
        &p,
        f64::from(r.verdict.exit_code),
    );
    w.family(
        "stunmap_check_duration_seconds",
        "gauge",
        "How long the check ran.",
    );
    w.sample("stunmap_check_duration_seconds", &p, r.elapsed_seconds);
    w.family(
        "stunmap_check_timestamp_seconds",
        "gauge",
        "When the check started, seconds since the Unix epoch.",
    );
    w.sample(
        "stunmap_check_timestamp_seconds",
        &p,
        r.started_unix_seconds,
    );
    w.family(
        "stunmap_check_interrupted",
        "gauge",
        "1 when the check was stopped early (signal or deadline): partial results.",
    );
    w.sample(
        "stunmap_check_interrupted",
        &p,
        bool01(r.interrupted || r.deadline_reached),
    );

    w.family(
        "stunmap_service_status",
        "gauge",
        "State of each service of the profile: one series per state, 1 for the current one.",
    );
    for s in &r.services {
        for st in STATES {
            w.sample(
                "stunmap_service_status",
                &[
                    ("profile", profile),
                    ("service", &s.name),
                    ("kind", s.kind.as_str()),
                    ("state", st.as_str()),
                ],
                bool01(s.state == st),
            );
        }
    }

    // Each family's samples must stay together: labels first, then one pass per family.
    let mut rows = Vec::new();
    for (s, row) in r.rows() {
        if row.state == State::Skipped || row.probe == "tcp-sample" {
            continue;
        }
        let labels: Vec<(&'static str, String)> = vec![
            ("profile", profile.to_string()),
            ("service", s.name.clone()),
            ("kind", s.kind.as_str().to_string()),
            ("probe", row.probe.to_string()),
            ("transport", row.transport.as_str().to_string()),
            ("host", row.host.clone()),
            (
                "address",
                row.address.map(|a| a.to_string()).unwrap_or_default(),
            ),
            ("port", row.port.map(|p| p.to_string()).unwrap_or_default()),
        ];
        rows.push((labels, row));
    }
    w.family(
        "stunmap_probe_success",
        "gauge",
        "1 when a check of a service on a transport and port worked (ok or degraded), 0 when blocked; skipped checks are absent.",
    );
    for (labels, row) in &rows {
        let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        w.sample(
            "stunmap_probe_success",
            &l,
            bool01(matches!(row.state, State::Ok | State::Degraded)),
        );
    }
    if rows.iter().any(|(_, row)| row.rtt_seconds.is_some()) {
        w.family(
            "stunmap_probe_rtt_seconds",
            "gauge",
            "Round-trip or handshake time of a check: STUN/TURN transaction, TLS handshake, QUIC handshake, DNS answer.",
        );
    }
    for (labels, row) in &rows {
        if let Some(rtt) = row.rtt_seconds {
            let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            w.sample("stunmap_probe_rtt_seconds", &l, rtt);
        }
    }

    if !r.tcp_samples.is_empty() {
        w.family(
            "stunmap_tcp_sample_ports",
            "gauge",
            "Ports of the TCP sample by what the connect found (open, refused by the server, filtered, unreachable).",
        );
        for t in &r.tcp_samples {
            let range = format!("{}-{}", t.range_start, t.range_end);
            for (state, n) in [
                ("open", t.open),
                ("refused", t.refused),
                ("filtered", t.filtered),
                ("unreachable", t.unreachable),
            ] {
                w.sample(
                    "stunmap_tcp_sample_ports",
                    &[
                        ("profile", profile),
                        ("service", &t.service),
                        ("host", &t.host),
                        ("range", &range),
                        ("state", state),
                    ],
                    n as f64,
                );
            }
        }
        w.family(
            "stunmap_tcp_sample_range_ports",
            "gauge",
            "Size of the TCP port range the sample was drawn from.",
        );
        for t in &r.tcp_samples {
            let range = format!("{}-{}", t.range_start, t.range_end);
            w.sample(
                "stunmap_tcp_sample_range_ports",
                &[
                    ("profile", profile),
                    ("service", &t.service),
                    ("host", &t.host),
                    ("range", &range),
                ],
                f64::from(t.range_end) - f64::from(t.range_start) + 1.0,
            );
        }
    }

    if let Some(n) = &r.nat {
        w.family(
            "stunmap_nat_info",
            "gauge",
            "NAT behaviour per address family (RFC 4787 mapping and filtering), as labels; always 1.",
        );
        for f in [&n.ipv4, &n.ipv6].into_iter().flatten() {
            let family = match f.family {
                probes::Family::Ipv4 => "ipv4",
                probes::Family::Ipv6 => "ipv6",
            };
            let nat_type = f.nat_type.short();
            w.sample(
                "stunmap_nat_info",
                &[
                    ("profile", profile),
                    ("family", family),
                    ("nat_type", &nat_type),
                    ("mapping", f.mapping.map(|m| m.short()).unwrap_or("unknown")),
                    (
                        "filtering",
                        f.filtering.map(|x| x.short()).unwrap_or("unknown"),
                    ),
                ],
                1.0,
            );
        }
    }

    let labels_of = |x: &crate::check::model::RelayRtt| -> [(&'static str, String); 4] {
        [
            ("profile", profile.to_string()),
            ("service", x.service.clone()),
            ("transport", x.transport.as_str().to_string()),
            ("server", x.server.to_string()),
        ]
    };
    type Pick = fn(&engine::stats::RttSummary) -> f64;
    let rtt_families: [(&'static str, &str, Pick); 2] = [
        (
            "stunmap_relay_rtt_median_seconds",
            "Median round-trip time through a TURN allocation (relay RTT).",
            |s| s.median,
        ),
        (
            "stunmap_relay_rtt_p90_seconds",
            "90th percentile round-trip time through a TURN allocation.",
            |s| s.p90,
        ),
    ];
    for (name, help, pick) in rtt_families {
        if r.relay_rtt.iter().all(|x| x.rtt.is_none()) {
            break;
        }
        w.family(name, "gauge", help);
        for x in &r.relay_rtt {
            if let Some(s) = &x.rtt {
                let l = labels_of(x);
                let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
                w.sample(name, &l, pick(s));
            }
        }
    }
    if r.relay_rtt.iter().any(|x| x.sent > 0) {
        w.family(
            "stunmap_relay_loss_ratio",
            "gauge",
            "Fraction of packets looped through the relay that did not come back.",
        );
    }
    for x in &r.relay_rtt {
        if x.sent > 0 {
            let l = labels_of(x);
            let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
            w.sample(
                "stunmap_relay_loss_ratio",
                &l,
                f64::from(x.sent.saturating_sub(x.received)) / f64::from(x.sent),
            );
        }
    }
}

/// The report as a whole exposition.
pub(crate) fn render(r: &CheckReport) -> String {
    let mut w = Writer::default();
    write(&mut w, r);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let mut w = Writer::default();
        w.family("x_seconds", "gauge", "help");
        w.family("x_seconds", "gauge", "help");
        w.sample("x_seconds", &[("l", "v\"")], 0.5);
        assert_eq!(
            w.finish(),
            "# HELP x_seconds help\n# TYPE x_seconds gauge\nx_seconds{l=\"v\\\"\"} 0.5\n"
        );
    }
}
