//! The terminal renderer: any [`Doc`] as plain text, the verdict first, sections in order,
//! tables as aligned columns. Graphics (port maps, charts) are HTML-only and left out.

use std::fmt::Write as _;

use super::doc::{Block, Cell, Doc, clean};

/// Width of the state column before the headline ("DEGRADED ").
const MARK_WIDTH: usize = 9;

fn cell_text(c: &Cell) -> String {
    match c {
        Cell::Text(t) => clean(t),
        Cell::Mark(m) => clean(&m.shout()),
    }
}

/// Render a document for a terminal.
pub(crate) fn render(doc: &Doc) -> String {
    let mut o = String::new();
    if let Some(p) = &doc.partial {
        let _ = writeln!(o, "INTERRUPTED: {}", clean(p));
    }
    match &doc.mark {
        Some(m) => {
            let _ = writeln!(
                o,
                "{:<MARK_WIDTH$} {}",
                clean(&m.word.to_uppercase()),
                clean(&doc.headline)
            );
            for line in &doc.summary {
                let _ = writeln!(o, "{:MARK_WIDTH$} {}", "", clean(line));
            }
        }
        None => {
            let _ = writeln!(o, "{}", clean(&doc.headline));
            for line in &doc.summary {
                let _ = writeln!(o, "  {}", clean(line));
            }
        }
    }
    for s in &doc.sections {
        let printable = s
            .blocks
            .iter()
            .any(|b| !matches!(b, Block::Bars(_) | Block::Ports { .. }));
        if !printable && s.mark.is_none() {
            continue;
        }
        let _ = writeln!(o);
        match &s.mark {
            Some(m) => {
                let _ = writeln!(o, "{}  {}", clean(&s.title), clean(&m.shout()));
            }
            None => {
                let _ = writeln!(o, "{}", clean(&s.title));
            }
        }
        for b in &s.blocks {
            block(&mut o, b);
        }
    }
    o
}

fn block(o: &mut String, b: &Block) {
    match b {
        Block::Fields(fields) => {
            let w = fields
                .iter()
                .map(|(k, _)| k.chars().count())
                .max()
                .unwrap_or(0);
            for (k, v) in fields {
                let _ = writeln!(o, "  {:<w$}  {}", clean(k), clean(v));
            }
        }
        Block::Table { rows, .. } => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| r.iter().map(cell_text).collect())
                .collect();
            let columns = cells.iter().map(Vec::len).max().unwrap_or(0);
            let widths: Vec<usize> = (0..columns)
                .map(|i| {
                    cells
                        .iter()
                        .filter_map(|r| r.get(i))
                        .map(|c| c.chars().count())
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            for r in &cells {
                let mut line = String::from(" ");
                for (i, c) in r.iter().enumerate() {
                    let last = i + 1 == r.len();
                    let w = widths.get(i).copied().unwrap_or(0);
                    line.push(' ');
                    if last {
                        line.push_str(c);
                    } else {
                        let _ = write!(line, "{c:<w$} ");
                    }
                }
                let _ = writeln!(o, "{}", line.trim_end());
            }
        }
        Block::Text(t) => {
            let _ = writeln!(o, "  {}", clean(t));
        }
        Block::List(items) => {
            for i in items {
                let _ = writeln!(o, "  - {}", clean(i));
            }
        }
        Block::Fixes(fixes) => {
            for (i, f) in fixes.iter().enumerate() {
                let _ = writeln!(o, "  {}. {}", i + 1, clean(&f.title));
                for c in &f.commands {
                    let _ = writeln!(o, "       {}", clean(c));
                }
                if let Some(c) = &f.caveat {
                    let _ = writeln!(o, "     note: {}", clean(c));
                }
            }
        }
        Block::Bars(_) | Block::Ports { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::doc::{Mark, Section, Tone};

    #[test]
    fn verdict_first_then_aligned_tables() {
        let mut d = Doc::new("stunmap test", "Direct P2P likely");
        d.mark = Some(Mark::new("ok", Tone::Good));
        d.summary.push("0.9 s, exit 0".into());
        d.push(
            Section::new("P2P (STUN)")
                .marked(Mark::new("blocked", Tone::Bad))
                .block(Block::Table {
                    header: vec!["check".into(), "state".into(), "detail".into()],
                    rows: vec![
                        vec![
                            "stun udp/3478".into(),
                            Mark::new("ok", Tone::Good).into(),
                            "answered".into(),
                        ],
                        vec![
                            "stun udp/80".into(),
                            Mark::new("blocked", Tone::Bad).into(),
                            "no answer".into(),
                        ],
                    ],
                }),
        );
        let text = render(&d);
        assert_eq!(
            text,
            "OK        Direct P2P likely\n          0.9 s, exit 0\n\nP2P (STUN)  BLOCKED\n  stun udp/3478  ok       answered\n  stun udp/80    BLOCKED  no answer\n"
        );
    }

    #[test]
    fn peer_text_cannot_reach_the_terminal_raw() {
        let mut d = Doc::new("t", "h");
        d.push(Section::new("s").block(Block::Fields(vec![(
            "server".into(),
            "evil\x1b[2J\x1b]0;title\x07".into(),
        )])));
        let text = render(&d);
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
    }
}
