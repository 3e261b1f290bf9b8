//! One self-contained HTML page: the verdict, an SVG map of the UDP ports and the sampled TCP
//! range (allowed / blocked), RTT charts per service, the tables and the fixes. No scripts, no
//! external resources: it can be mailed or archived as it is.

use std::fmt::Write as _;

use crate::check::model::{CheckReport, State};
use crate::check::run::passes;

/// Escape text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn color(s: State) -> &'static str {
    match s {
        State::Ok => "#2e7d32",
        State::Degraded => "#ef8f00",
        State::Blocked => "#c62828",
        State::Skipped => "#9e9e9e",
    }
}

fn port_color(state: &str) -> &'static str {
    match state {
        "open" => "#2e7d32",
        "refused" => "#81c784",
        "filtered" => "#c62828",
        _ => "#ef8f00",
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:72em;color:#222}\
h1{font-size:1.4em}.verdict{padding:1em;border-radius:6px;color:#fff;font-size:1.2em}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:left;font-size:.9em}\
.st{font-weight:bold}code{background:#f4f4f4;padding:0 .3em}svg text{font-size:11px;font-family:sans-serif}";

/// UDP ports of STUN/TURN rows and the TCP samples, as one SVG.
fn port_map(r: &CheckReport) -> String {
    let width = 960.0_f64;
    let mut body = String::new();
    let mut y = 20.0_f64;
    let mut drawn = 0usize;
    // UDP: one box per (service, address, port).
    let udp: Vec<_> = r
        .rows()
        .filter(|(_, row)| {
            matches!(row.probe, "stun" | "turn")
                && row.transport == crate::check::model::Transport::Udp
                && row.port.is_some()
        })
        .collect();
    if !udp.is_empty() {
        let _ = write!(
            body,
            r#"<text x="0" y="{y}">UDP ports (STUN/TURN): green answered, red blocked</text>"#
        );
        y += 8.0;
        for (i, (s, row)) in udp.iter().enumerate() {
            let x = (i % 12) as f64 * 78.0;
            let yy = y + (i / 12) as f64 * 34.0;
            let port = row.port.unwrap_or(0);
            let _ = write!(
                body,
                r##"<g class="udp-port" data-port="{port}" data-state="{st}"><rect x="{x}" y="{yy}" width="72" height="26" rx="3" fill="{c}"><title>{title}</title></rect><text x="{tx}" y="{ty}" fill="#fff">{kind} {port}</text></g>"##,
                st = row.state.as_str(),
                c = color(row.state),
                title = esc(&format!(
                    "{} {} {}:{port} {}: {}",
                    s.name,
                    row.probe,
                    row.address.map(|a| a.to_string()).unwrap_or_default(),
                    row.state.as_str(),
                    row.detail
                )),
                tx = x + 6.0,
                ty = yy + 17.0,
                kind = row.probe,
            );
            drawn += 1;
        }
        y += ((udp.len().saturating_sub(1)) / 12 + 1) as f64 * 34.0 + 16.0;
    }
    // TCP: each sampled range as a strip, each sampled port a tick at its place in the range.
    for t in &r.tcp_samples {
        let span = f64::from(t.range_end) - f64::from(t.range_start) + 1.0;
        let _ = write!(
            body,
            r#"<text x="0" y="{y}">TCP {}-{} to {} ({}): {} sampled ports, dark green open, light green refused by the server, red filtered</text>"#,
            t.range_start,
            t.range_end,
            esc(&t.host),
            t.address,
            t.ports.len()
        );
        y += 8.0;
        let _ = write!(
            body,
            r##"<rect x="0" y="{y}" width="{width}" height="30" fill="#eee"/>"##
        );
        for p in &t.ports {
            let x = (f64::from(p.port) - f64::from(t.range_start)) / span * (width - 4.0);
            let _ = write!(
                body,
                r#"<rect class="tcp-port" data-port="{port}" data-state="{st}" data-allowed="{ok}" x="{x:.1}" y="{y}" width="4" height="30" fill="{c}"><title>TCP {port}: {st}{stun}</title></rect>"#,
                port = p.port,
                st = p.state,
                ok = passes(p.state),
                c = port_color(p.state),
                stun = if p.stun { ", STUN answered" } else { "" },
            );
            drawn += 1;
        }
        let _ = write!(
            body,
            r#"<text x="0" y="{}">{}</text><text x="{}" y="{}" text-anchor="end">{}</text>"#,
            y + 44.0,
            t.range_start,
            width,
            y + 44.0,
            t.range_end
        );
        y += 64.0;
    }
    if drawn == 0 {
        let _ = write!(
            body,
            r#"<text x="0" y="{y}">No port was probed (nothing resolved, or the profile has no STUN/TURN ports).</text>"#
        );
        y += 10.0;
    }
    format!(
        r#"<svg id="port-map" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" viewBox="0 0 {width} {h}" role="img" aria-label="port map" data-ports="{drawn}">{body}</svg>"#,
        h = y + 10.0
    )
}

/// Horizontal bars of the RTTs of one service's rows.
fn rtt_chart(rows: &[(String, f64, State)]) -> String {
    let max = rows.iter().map(|(_, v, _)| *v).fold(0.0_f64, f64::max);
    if rows.is_empty() || max <= 0.0 {
        return String::new();
    }
    let bar_w = 560.0;
    let mut body = String::new();
    for (i, (label, v, st)) in rows.iter().enumerate() {
        let y = i as f64 * 20.0;
        let w = (v / max * bar_w).max(1.0);
        let _ = write!(
            body,
            r##"<text x="0" y="{ty}">{l}</text><rect x="300" y="{y}" width="{w:.1}" height="14" fill="{c}"/><text x="{tx:.1}" y="{ty}">{ms:.2} ms</text>"##,
            ty = y + 11.0,
            l = esc(label),
            c = color(*st),
            tx = 306.0 + w,
            ms = v * 1e3,
        );
    }
    format!(
        r#"<svg class="rtt-chart" xmlns="http://www.w3.org/2000/svg" width="960" height="{h}">{body}</svg>"#,
        h = rows.len() as f64 * 20.0 + 4.0
    )
}

/// Render the page.
pub(crate) fn render(r: &CheckReport) -> String {
    let v = &r.verdict;
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>stunmap check: {}</title><style>{STYLE}</style></head><body>",
        esc(v.status.as_str())
    );
    let _ = write!(
        o,
        r#"<h1>stunmap check — profile {} ({})</h1><div id="verdict" class="verdict" data-status="{st}" style="background:{c}"><span class="st">{ST}</span> {h}</div><p>exit code {code}, {el:.1} s, stunmap {ver}</p>"#,
        esc(&r.profile.name),
        esc(&r.profile.source),
        st = v.status.as_str(),
        c = color(v.status),
        ST = v.status.as_str().to_uppercase(),
        h = esc(&v.headline),
        code = v.exit_code,
        el = r.elapsed_seconds,
        ver = esc(r.stunmap_version),
    );
    if r.interrupted || r.deadline_reached {
        o.push_str("<p><strong>Stopped early: partial results.</strong></p>");
    }
    o.push_str("<h2>Port map</h2>");
    o.push_str(&port_map(r));
    for s in &r.services {
        let _ = write!(
            o,
            r#"<h2>{} <span style="color:{}">{}</span></h2>"#,
            esc(&s.name),
            color(s.state),
            s.state.as_str()
        );
        let rtts: Vec<(String, f64, State)> = s
            .checks
            .iter()
            .filter_map(|c| {
                c.rtt_seconds.map(|v| {
                    (
                        format!(
                            "{} {}{} {}",
                            c.probe,
                            c.transport.as_str(),
                            c.port.map(|p| format!("/{p}")).unwrap_or_default(),
                            c.address.map(|a| a.to_string()).unwrap_or_default()
                        ),
                        v,
                        c.state,
                    )
                })
            })
            .collect();
        o.push_str(&rtt_chart(&rtts));
        o.push_str("<table><tr><th>check</th><th>host</th><th>address</th><th>state</th><th>RTT</th><th>detail</th></tr>");
        for c in &s.checks {
            let _ = write!(
                o,
                r#"<tr><td>{} {}{}</td><td>{}</td><td>{}</td><td style="color:{}">{}</td><td>{}</td><td>{}</td></tr>"#,
                c.probe,
                c.transport.as_str(),
                c.port.map(|p| format!("/{p}")).unwrap_or_default(),
                esc(&c.host),
                c.address.map(|a| a.to_string()).unwrap_or_default(),
                color(c.state),
                c.state.as_str(),
                c.rtt_seconds
                    .map(|x| format!("{:.2} ms", x * 1e3))
                    .unwrap_or_default(),
                esc(&c.detail)
            );
        }
        o.push_str("</table>");
    }
    if let Some(n) = &r.nat {
        let _ = write!(o, "<h2>NAT</h2><p>{}</p><ul>", esc(&n.verdict.headline));
        for f in [&n.ipv4, &n.ipv6].into_iter().flatten() {
            let _ = write!(
                o,
                "<li>{:?}: {}</li>",
                f.family,
                esc(&f.nat_type.to_string())
            );
        }
        o.push_str("</ul>");
    }
    if !r.relay_rtt.is_empty() {
        o.push_str("<h2>Relay RTT</h2><ul>");
        for x in &r.relay_rtt {
            let text = match &x.rtt {
                Some(s) => format!(
                    "median {:.2} ms, p90 {:.2} ms ({} of {} back)",
                    s.median * 1e3,
                    s.p90 * 1e3,
                    x.received,
                    x.sent
                ),
                None => x.error.clone().unwrap_or_default(),
            };
            let _ = write!(
                o,
                "<li>{} {} {}: {}</li>",
                esc(&x.service),
                x.transport.as_str(),
                x.server,
                esc(&text)
            );
        }
        o.push_str("</ul>");
    }
    if !v.reasons.is_empty() {
        o.push_str("<h2>Why</h2><ul>");
        for x in &v.reasons {
            let _ = write!(o, "<li>{}</li>", esc(x));
        }
        o.push_str("</ul>");
    }
    if !r.fixes.is_empty() {
        o.push_str("<h2>Fixes</h2><ol>");
        for f in &r.fixes {
            let _ = write!(o, "<li>{}", esc(&f.title));
            for c in &f.commands {
                let _ = write!(o, "<br><code>{}</code>", esc(c));
            }
            if let Some(c) = &f.caveat {
                let _ = write!(o, "<br><em>{}</em>", esc(c));
            }
            o.push_str("</li>");
        }
        o.push_str("</ol>");
    }
    if !r.notes.is_empty() {
        o.push_str("<h2>Notes</h2><ul>");
        for n in &r.notes {
            let _ = write!(o, "<li>{}</li>", esc(n));
        }
        o.push_str("</ul>");
    }
    o.push_str("</body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
