//! The HTML renderer: any [`Doc`] as one self-contained page (no scripts, no external
//! resources: it can be mailed or archived as it is), with SVG port maps and bar charts where
//! a report has them.

use std::fmt::Write as _;

use super::doc::{Bar, Block, Cell, Doc, LaneStyle, PortLane, Tone, clean};

/// Escape text for HTML element content and attribute values (after [`clean`]).
pub(crate) fn esc(s: &str) -> String {
    let s = clean(s);
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

fn color(t: Tone) -> &'static str {
    match t {
        Tone::Good => "#2e7d32",
        Tone::Warn => "#ef8f00",
        Tone::Bad => "#c62828",
        Tone::Neutral => "#757575",
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:72em;color:#222}\
h1{font-size:1.4em}.verdict{padding:1em;border-radius:6px;color:#fff;font-size:1.2em}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:left;font-size:.9em}\
.st{font-weight:bold}code{background:#f4f4f4;padding:0 .3em}svg text{font-size:11px;font-family:sans-serif}";

/// Render a document as a page.
pub(crate) fn render(doc: &Doc) -> String {
    let mut o = String::new();
    let word = doc.mark.as_ref().map_or("", |m| m.word.as_str());
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}: {}</title><style>{STYLE}</style></head><body>",
        esc(&doc.title),
        esc(if word.is_empty() { &doc.headline } else { word })
    );
    let _ = write!(o, "<h1>{}</h1>", esc(&doc.title));
    match &doc.mark {
        Some(m) => {
            let _ = write!(
                o,
                r#"<div id="verdict" class="verdict" data-status="{st}" style="background:{c}"><span class="st">{up}</span> {h}</div>"#,
                st = esc(&m.word),
                c = color(m.tone),
                up = esc(&m.word.to_uppercase()),
                h = esc(&doc.headline),
            );
        }
        None => {
            let _ = write!(o, r#"<p id="verdict">{}</p>"#, esc(&doc.headline));
        }
    }
    for line in &doc.summary {
        let _ = write!(o, "<p>{}</p>", esc(line));
    }
    if let Some(p) = &doc.partial {
        let _ = write!(o, "<p><strong>Stopped early: {}</strong></p>", esc(p));
    }
    for s in &doc.sections {
        match &s.mark {
            Some(m) => {
                let _ = write!(
                    o,
                    r#"<h2>{} <span style="color:{}">{}</span></h2>"#,
                    esc(&s.title),
                    color(m.tone),
                    esc(&m.word)
                );
            }
            None => {
                let _ = write!(o, "<h2>{}</h2>", esc(&s.title));
            }
        }
        for b in &s.blocks {
            block(&mut o, b);
        }
    }
    o.push_str("</body></html>\n");
    o
}

fn block(o: &mut String, b: &Block) {
    match b {
        Block::Fields(fields) => {
            o.push_str("<table>");
            for (k, v) in fields {
                let _ = write!(o, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
            }
            o.push_str("</table>");
        }
        Block::Table { header, rows } => {
            o.push_str("<table><tr>");
            for h in header {
                let _ = write!(o, "<th>{}</th>", esc(h));
            }
            o.push_str("</tr>");
            for r in rows {
                o.push_str("<tr>");
                for c in r {
                    match c {
                        Cell::Text(t) => {
                            let _ = write!(o, "<td>{}</td>", esc(t));
                        }
                        Cell::Mark(m) => {
                            let _ = write!(
                                o,
                                r#"<td style="color:{}">{}</td>"#,
                                color(m.tone),
                                esc(&m.word)
                            );
                        }
                    }
                }
                o.push_str("</tr>");
            }
            o.push_str("</table>");
        }
        Block::Text(t) => {
            let _ = write!(o, "<p>{}</p>", esc(t));
        }
        Block::List(items) => {
            o.push_str("<ul>");
            for i in items {
                let _ = write!(o, "<li>{}</li>", esc(i));
            }
            o.push_str("</ul>");
        }
        Block::Fixes(fixes) => {
            o.push_str("<ol>");
            for f in fixes {
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
        Block::Bars(bars) => o.push_str(&bar_chart(bars)),
        Block::Ports { id, lanes } => o.push_str(&port_map(id, lanes)),
    }
}

/// Horizontal bars of times.
fn bar_chart(bars: &[Bar]) -> String {
    let max = bars.iter().map(|b| b.seconds).fold(0.0_f64, f64::max);
    if bars.is_empty() || max <= 0.0 || !max.is_finite() {
        return String::new();
    }
    let bar_w = 560.0;
    let mut body = String::new();
    for (i, b) in bars.iter().enumerate() {
        let y = i as f64 * 20.0;
        let w = (b.seconds / max * bar_w).max(1.0);
        let _ = write!(
            body,
            r##"<text x="0" y="{ty}">{l}</text><rect x="300" y="{y}" width="{w:.1}" height="14" fill="{c}"/><text x="{tx:.1}" y="{ty}">{ms:.2} ms</text>"##,
            ty = y + 11.0,
            l = esc(&b.label),
            c = color(b.tone),
            tx = 306.0 + w,
            ms = b.seconds * 1e3,
        );
    }
    format!(
        r#"<svg class="rtt-chart" xmlns="http://www.w3.org/2000/svg" width="960" height="{h}">{body}</svg>"#,
        h = bars.len() as f64 * 20.0 + 4.0
    )
}

/// Ports as one SVG: boxes for a few ports, strips with ticks for sampled ranges.
fn port_map(id: &str, lanes: &[PortLane]) -> String {
    let width = 960.0_f64;
    let mut body = String::new();
    let mut y = 20.0_f64;
    let mut drawn = 0usize;
    for lane in lanes {
        let _ = write!(body, r#"<text x="0" y="{y}">{}</text>"#, esc(&lane.label));
        y += 8.0;
        match lane.style {
            LaneStyle::Boxes => {
                for (i, p) in lane.ports.iter().enumerate() {
                    let x = (i % 12) as f64 * 78.0;
                    let yy = y + (i / 12) as f64 * 34.0;
                    let _ = write!(
                        body,
                        r##"<g class="udp-port" data-port="{port}" data-state="{st}"><rect x="{x}" y="{yy}" width="72" height="26" rx="3" fill="{c}"><title>{title}</title></rect><text x="{tx}" y="{ty}" fill="#fff">{label}</text></g>"##,
                        port = p.port,
                        st = esc(&p.mark.word),
                        c = color(p.mark.tone),
                        title = esc(&p.title),
                        tx = x + 6.0,
                        ty = yy + 17.0,
                        label = esc(&p.label),
                    );
                    drawn += 1;
                }
                y += ((lane.ports.len().saturating_sub(1)) / 12 + 1) as f64 * 34.0 + 16.0;
            }
            LaneStyle::Ticks { start, end } => {
                let span = (f64::from(end) - f64::from(start) + 1.0).max(1.0);
                let _ = write!(
                    body,
                    r##"<rect x="0" y="{y}" width="{width}" height="30" fill="#eee"/>"##
                );
                for p in &lane.ports {
                    let x = (f64::from(p.port) - f64::from(start)) / span * (width - 4.0);
                    let _ = write!(
                        body,
                        r#"<rect class="tcp-port" data-port="{port}" data-state="{st}" data-allowed="{ok}" x="{x:.1}" y="{y}" width="4" height="30" fill="{c}"><title>{title}</title></rect>"#,
                        port = p.port,
                        st = esc(&p.mark.word),
                        ok = matches!(p.mark.tone, Tone::Good),
                        c = color(p.mark.tone),
                        title = esc(&p.title),
                    );
                    drawn += 1;
                }
                let _ = write!(
                    body,
                    r#"<text x="0" y="{ly}">{start}</text><text x="{width}" y="{ly}" text-anchor="end">{end}</text>"#,
                    ly = y + 44.0,
                );
                y += 64.0;
            }
        }
    }
    if drawn == 0 {
        let _ = write!(body, r#"<text x="0" y="{y}">No port was probed.</text>"#);
        y += 10.0;
    }
    format!(
        r#"<svg id="{id}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" viewBox="0 0 {width} {h}" role="img" aria-label="port map" data-ports="{drawn}">{body}</svg>"#,
        id = esc(id),
        h = y + 10.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::doc::{Mark, Section};

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn the_verdict_carries_its_status() {
        let mut d = Doc::new("stunmap nat", "Relay only");
        d.mark = Some(Mark::new("degraded", Tone::Warn));
        d.push(Section::new("<script>").block(Block::Text("x".into())));
        let page = render(&d);
        assert!(page.contains(r#"id="verdict" class="verdict" data-status="degraded""#));
        assert!(page.contains("&lt;script&gt;") && !page.contains("<script>"));
    }
}
