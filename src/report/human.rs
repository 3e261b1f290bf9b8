//! The terminal report: the verdict first, then a compact table per service, the TCP sample,
//! NAT behaviour and relay RTT, then why and the fixes.

use std::fmt::Write as _;

use crate::check::model::{CheckReport, Row, State};

fn state_word(s: State) -> &'static str {
    match s {
        State::Ok => "ok",
        State::Degraded => "DEGRADED",
        State::Blocked => "BLOCKED",
        State::Skipped => "skipped",
    }
}

fn ms(s: f64) -> String {
    format!("{:.1} ms", s * 1e3)
}

fn what(r: &Row) -> String {
    if r.probe == r.transport.as_str() {
        return r.probe.to_string();
    }
    match r.port {
        Some(p) => format!("{} {}/{p}", r.probe, r.transport.as_str()),
        None => format!("{} {}", r.probe, r.transport.as_str()),
    }
}

fn target(r: &Row) -> String {
    match r.address {
        Some(a) if a.to_string() != r.host => format!("{} {a}", r.host),
        _ => r.host.clone(),
    }
}

/// Render the whole report.
pub(crate) fn render(r: &CheckReport) -> String {
    let mut o = String::new();
    let v = &r.verdict;
    if r.interrupted {
        let _ = writeln!(o, "INTERRUPTED: partial results follow");
    }
    let _ = writeln!(
        o,
        "{:<9} {}",
        state_word(v.status).to_uppercase(),
        v.headline
    );
    let _ = writeln!(
        o,
        "          profile {} ({}), {:.1} s, exit {}",
        r.profile.name, r.profile.source, r.elapsed_seconds, v.exit_code
    );
    for s in &r.services {
        let _ = writeln!(o);
        let _ = writeln!(o, "{}  {}", s.name, state_word(s.state));
        let w_what = s.checks.iter().map(|c| what(c).len()).max().unwrap_or(0);
        let w_target = s.checks.iter().map(|c| target(c).len()).max().unwrap_or(0);
        for c in &s.checks {
            let _ = writeln!(
                o,
                "  {:<w_what$}  {:<w_target$}  {:<8} {:>9}  {}",
                what(c),
                target(c),
                state_word(c.state),
                c.rtt_seconds.map(ms).unwrap_or_default(),
                c.detail
            );
        }
    }
    for t in &r.tcp_samples {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "TCP sample {} {}-{} ({} ports, seed {}): {} open, {} refused, {} filtered, {} unreachable",
            t.address,
            t.range_start,
            t.range_end,
            t.ports.len(),
            t.seed,
            t.open,
            t.refused,
            t.filtered,
            t.unreachable
        );
        let _ = writeln!(o, "  {}", t.summary);
    }
    if let Some(n) = &r.nat {
        let _ = writeln!(o);
        let _ = writeln!(o, "NAT  {}", n.verdict.headline);
        for f in [&n.ipv4, &n.ipv6].into_iter().flatten() {
            let _ = write!(o, "  {:?}: {}", f.family, f.nat_type);
            if let Some(a) = f.public_address {
                let _ = write!(o, ", public address {a}");
            }
            if let Some(m) = f.mapping {
                let _ = write!(o, ", mapping {}", m.short());
            }
            if let Some(fl) = f.filtering {
                let _ = write!(o, ", filtering {}", fl.short());
            }
            let _ = writeln!(o);
        }
    }
    if !r.relay_rtt.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "Relay RTT");
        for x in &r.relay_rtt {
            match &x.rtt {
                Some(s) => {
                    let _ = writeln!(
                        o,
                        "  {} {} {}: median {}, p90 {}, max {} ({} of {} back){}",
                        x.service,
                        x.transport.as_str(),
                        x.server,
                        ms(s.median),
                        ms(s.p90),
                        ms(s.max),
                        x.received,
                        x.sent,
                        x.direct_median_seconds
                            .map(|d| format!(", direct {}", ms(d)))
                            .unwrap_or_default()
                    );
                }
                None => {
                    let _ = writeln!(
                        o,
                        "  {} {} {}: {}",
                        x.service,
                        x.transport.as_str(),
                        x.server,
                        x.error.as_deref().unwrap_or("no result")
                    );
                }
            }
        }
    }
    if !v.reasons.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "Why:");
        for x in &v.reasons {
            let _ = writeln!(o, "  - {x}");
        }
    }
    if !r.fixes.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "Fixes:");
        for (i, f) in r.fixes.iter().enumerate() {
            let _ = writeln!(o, "  {}. {}", i + 1, f.title);
            for c in &f.commands {
                let _ = writeln!(o, "       {c}");
            }
            if let Some(c) = &f.caveat {
                let _ = writeln!(o, "     note: {c}");
            }
        }
    }
    if !r.notes.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "Notes:");
        for n in &r.notes {
            let _ = writeln!(o, "  - {n}");
        }
    }
    o
}
