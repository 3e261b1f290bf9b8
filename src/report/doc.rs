//! The document every report is rendered from: a headline, summary lines and sections of
//! fields, tables, lists, fixes and graphics. [`human`](super::human) and
//! [`html`](super::html) render any `Doc`; a command only says what its report contains.
//!
//! Every string that reaches a renderer passes [`clean`]: control characters (terminal escape
//! sequences included) and bidirectional overrides become visible `\u{..}` escapes and a string
//! is cut at [`MAX_TEXT`] characters. Peer-controlled text (SOFTWARE, REALM, reason phrases,
//! certificate names) can therefore neither drive a terminal nor grow a report without bound;
//! HTML escaping comes on top in the HTML renderer.

use std::fmt::Write as _;

use probes::finding::{Fix, Status};

/// Longest string a renderer prints, in characters.
pub(crate) const MAX_TEXT: usize = 512;

/// How a state reads: its colour in HTML, its case on a terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tone {
    /// Works.
    Good,
    /// Works partly.
    Warn,
    /// Does not work.
    Bad,
    /// Not measured, informational.
    Neutral,
}

impl Tone {
    /// The tone of a status: ok good, degraded and uncertain warn, blocked bad, skipped
    /// neutral.
    pub(crate) fn of(s: Status) -> Tone {
        match s {
            Status::Ok => Tone::Good,
            Status::Degraded | Status::Uncertain => Tone::Warn,
            Status::Blocked => Tone::Bad,
            Status::Skipped => Tone::Neutral,
        }
    }
}

/// A state word with its tone ("ok", "blocked" …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mark {
    /// The word, lower case.
    pub(crate) word: String,
    /// Its tone.
    pub(crate) tone: Tone,
}

impl Mark {
    pub(crate) fn new(word: impl Into<String>, tone: Tone) -> Mark {
        Mark {
            word: word.into(),
            tone,
        }
    }

    /// A status in its own word ("ok", "skipped" …) and [`Tone::of`] it.
    pub(crate) fn of(s: Status) -> Mark {
        Mark::new(s.as_str(), Tone::of(s))
    }

    /// The word as a terminal shows it: problems in capitals, so they stand out in a table.
    pub(crate) fn shout(&self) -> String {
        match self.tone {
            Tone::Warn | Tone::Bad => self.word.to_uppercase(),
            Tone::Good | Tone::Neutral => self.word.clone(),
        }
    }
}

/// One cell of a table.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cell {
    /// Text.
    Text(String),
    /// A state.
    Mark(Mark),
}

impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Text(s)
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::Text(s.to_string())
    }
}

impl From<Mark> for Cell {
    fn from(m: Mark) -> Self {
        Cell::Mark(m)
    }
}

/// A table's column names.
pub(crate) fn columns<const N: usize>(names: [&str; N]) -> Vec<String> {
    names.map(String::from).to_vec()
}

/// A fix: what to change, the commands, and a caveat.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FixItem {
    /// What to do.
    pub(crate) title: String,
    /// Commands to paste.
    pub(crate) commands: Vec<String>,
    /// What to watch out for.
    pub(crate) caveat: Option<String>,
}

impl From<&Fix> for FixItem {
    fn from(f: &Fix) -> Self {
        FixItem {
            title: f.title.clone(),
            commands: f.commands.clone(),
            caveat: f.caveat.clone(),
        }
    }
}

impl FixItem {
    /// The fix `f` for one of several subjects: its title after the subject's name.
    pub(crate) fn about(subject: impl std::fmt::Display, f: &Fix) -> Self {
        FixItem {
            title: format!("{subject}: {}", f.title),
            ..FixItem::from(f)
        }
    }

    /// A problem titled `title`, with its fix (if any) as the first of the commands.
    pub(crate) fn problem(title: String, fix: Option<&Fix>) -> Self {
        FixItem {
            title,
            commands: fix
                .map(|f| {
                    std::iter::once(f.title.clone())
                        .chain(f.commands.iter().cloned())
                        .collect()
                })
                .unwrap_or_default(),
            caveat: fix.and_then(|f| f.caveat.clone()),
        }
    }
}

/// A bar of a bar chart (HTML only).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Bar {
    /// Label.
    pub(crate) label: String,
    /// Value in seconds.
    pub(crate) seconds: f64,
    /// Colour.
    pub(crate) tone: Tone,
}

/// How a lane of the port map draws its ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LaneStyle {
    /// One labelled box per port (a handful of UDP ports).
    Boxes,
    /// A strip over a port range, each port a tick at its place in it (a TCP sample).
    Ticks {
        /// First port of the range.
        start: u16,
        /// Last port of the range.
        end: u16,
    },
}

/// One port on the port map.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PortMark {
    /// The port.
    pub(crate) port: u16,
    /// Its state.
    pub(crate) mark: Mark,
    /// Short label drawn in a box ("stun 3478").
    pub(crate) label: String,
    /// Tooltip.
    pub(crate) title: String,
}

/// A lane of the port map (HTML only).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PortLane {
    /// What the lane shows.
    pub(crate) label: String,
    /// How it is drawn.
    pub(crate) style: LaneStyle,
    /// Its ports.
    pub(crate) ports: Vec<PortMark>,
}

/// One block of a section.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Block {
    /// Label/value lines, the labels aligned.
    Fields(Vec<(String, String)>),
    /// A table; the header shows in HTML (a terminal shows aligned columns only).
    Table {
        /// Column names.
        header: Vec<String>,
        /// Rows of cells.
        rows: Vec<Vec<Cell>>,
    },
    /// A paragraph.
    Text(String),
    /// A bulleted list.
    List(Vec<String>),
    /// Numbered fixes.
    Fixes(Vec<FixItem>),
    /// A bar chart of times (HTML only).
    Bars(Vec<Bar>),
    /// A port map (HTML only).
    Ports {
        /// Element id in the page.
        id: String,
        /// Lanes.
        lanes: Vec<PortLane>,
    },
}

/// A titled part of a report.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Section {
    /// Title.
    pub(crate) title: String,
    /// Its state, if it has one.
    pub(crate) mark: Option<Mark>,
    /// Content.
    pub(crate) blocks: Vec<Block>,
}

impl Section {
    pub(crate) fn new(title: impl Into<String>) -> Section {
        Section {
            title: title.into(),
            mark: None,
            blocks: Vec::new(),
        }
    }

    pub(crate) fn marked(mut self, mark: Mark) -> Section {
        self.mark = Some(mark);
        self
    }

    pub(crate) fn block(mut self, b: Block) -> Section {
        self.push(b);
        self
    }

    /// Add a block; empty lists, tables and field sets are left out.
    pub(crate) fn push(&mut self, b: Block) {
        let empty = match &b {
            Block::Fields(f) => f.is_empty(),
            Block::Table { rows, .. } => rows.is_empty(),
            Block::List(l) => l.is_empty(),
            Block::Fixes(f) => f.is_empty(),
            Block::Bars(b) => b.is_empty(),
            Block::Ports { lanes, .. } => lanes.is_empty(),
            Block::Text(t) => t.is_empty(),
        };
        if !empty {
            self.blocks.push(b);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

/// A whole report for people.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Doc {
    /// What ran ("stunmap nat").
    pub(crate) title: String,
    /// The verdict's state, first thing shown.
    pub(crate) mark: Option<Mark>,
    /// The verdict in one line.
    pub(crate) headline: String,
    /// Lines under the headline (what was checked, how long, the exit code).
    pub(crate) summary: Vec<String>,
    /// Stopped early: partial results.
    pub(crate) partial: Option<String>,
    /// The sections, in order.
    pub(crate) sections: Vec<Section>,
}

impl Doc {
    pub(crate) fn new(title: impl Into<String>, headline: impl Into<String>) -> Doc {
        Doc {
            title: title.into(),
            mark: None,
            headline: headline.into(),
            summary: Vec::new(),
            partial: None,
            sections: Vec::new(),
        }
    }

    /// Add a section unless it is empty.
    pub(crate) fn push(&mut self, s: Section) {
        if !s.is_empty() || s.mark.is_some() {
            self.sections.push(s);
        }
    }
}

/// The summary line of a report that reads files or dumps: `read: a, b` (or `read: nothing`).
pub(crate) fn read_line<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let read: Vec<&str> = names.into_iter().collect();
    if read.is_empty() {
        "read: nothing".into()
    } else {
        format!("read: {}", read.join(", "))
    }
}

/// `s` in double quotes, made safe to print by [`clean`]: how a user's or a peer's value is
/// echoed in an error message.
pub(crate) fn quoted(s: &str) -> String {
    format!("\"{}\"", clean(s))
}

/// `s` made safe to print: control characters and bidirectional controls escaped, cut at
/// [`MAX_TEXT`] characters (with "…" and the count left out).
pub(crate) fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_TEXT + 16));
    for (n, c) in s.chars().enumerate() {
        if n >= MAX_TEXT {
            let rest = s.chars().count().saturating_sub(n);
            let _ = write!(out, "… ({rest} more characters)");
            return out;
        }
        if c.is_control() || is_bidi_control(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Unicode bidirectional formatting characters (they reorder what a reader sees).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A time for people, the one time format of every report: microseconds below a
/// millisecond, milliseconds with one decimal below a second, else seconds ("40 µs",
/// "2.8 ms", "1.25 s").
pub(crate) fn secs(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        "-".into()
    } else if seconds < 1e-3 {
        format!("{:.0} µs", seconds * 1e6)
    } else if seconds < 1.0 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{seconds:.2} s")
    }
}

/// [`secs`] of a duration.
pub(crate) fn duration(d: std::time::Duration) -> String {
    secs(d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::quoted;

    #[test]
    fn quoted_values_are_cleaned_not_debug_escaped() {
        assert_eq!(quoted("eth0"), "\"eth0\"");
        assert_eq!(quoted("a\u{1b}]0;x\u{7}"), "\"a\\u{1b}]0;x\\u{7}\"");
        assert_eq!(quoted("\u{202e}rtl"), "\"\\u{202e}rtl\"");
    }

    use super::*;

    #[test]
    fn escape_sequences_and_bidi_controls_become_visible() {
        assert_eq!(clean("a\x1b]0;pwned\x07b"), "a\\u{1b}]0;pwned\\u{7}b");
        assert_eq!(clean("x\u{202e}y\nz"), "x\\u{202e}y\\u{a}z");
        assert_eq!(clean("plain ünïcode"), "plain ünïcode");
    }

    #[test]
    fn long_strings_are_cut() {
        let long = "A".repeat(65_400);
        let c = clean(&long);
        assert!(c.chars().count() < MAX_TEXT + 40, "{}", c.len());
        assert!(c.ends_with("(64888 more characters)"), "{c}");
    }

    #[test]
    fn times_read_as_people_write_them() {
        assert_eq!(secs(0.0028), "2.8 ms");
        assert_eq!(secs(0.000_04), "40 µs");
        assert_eq!(duration(std::time::Duration::from_millis(900)), "900.0 ms");
        assert_eq!(duration(std::time::Duration::from_millis(1250)), "1.25 s");
        assert_eq!(secs(f64::NAN), "-");
    }

    #[test]
    fn empty_blocks_are_left_out() {
        let mut s = Section::new("x");
        s.push(Block::List(Vec::new()));
        s.push(Block::Fields(Vec::new()));
        assert!(s.is_empty());
        s.push(Block::Text("t".into()));
        assert_eq!(s.blocks.len(), 1);
    }
}
