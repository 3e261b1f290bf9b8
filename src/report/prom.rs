//! Prometheus text exposition format (version 0.0.4): the writer every report's metrics go
//! through (node_exporter's textfile collector, `stunmap serve --metrics`'s `/probe`).
//!
//! Names follow Prometheus' conventions: a `stunmap_` prefix, base units in the name
//! (`_seconds`, `_ratio`), `_info` for constant-1 series that carry labels, states as one
//! series per state (0 or 1), and labels for what varies (service, kind, probe, transport,
//! port). Every family has HELP and TYPE lines; `promtool check metrics` runs on it in CI.

use std::fmt::Write as _;

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

/// The facts of a run every command's metrics start with, labelled by the command: its exit
/// code, how long it ran, when it started, and whether it was stopped early.
pub(crate) fn run_facts(w: &mut Writer, command: &str, run: &crate::app::RunInfo) {
    let l = [("command", command)];
    w.family(
        "stunmap_run_exit_code",
        "gauge",
        "Exit code of the run (0 ok, 1 degraded, 2 blocked, 130 interrupted).",
    );
    w.sample("stunmap_run_exit_code", &l, f64::from(run.exit_code.code()));
    w.family(
        "stunmap_run_duration_seconds",
        "gauge",
        "How long the run took.",
    );
    w.sample("stunmap_run_duration_seconds", &l, run.elapsed_seconds);
    w.family(
        "stunmap_run_timestamp_seconds",
        "gauge",
        "When the run started, seconds since the Unix epoch.",
    );
    w.sample(
        "stunmap_run_timestamp_seconds",
        &l,
        run.started_unix_seconds,
    );
    w.family(
        "stunmap_run_interrupted",
        "gauge",
        "1 when the run was stopped early (signal or deadline): partial results.",
    );
    w.sample(
        "stunmap_run_interrupted",
        &l,
        if run.partial() { 1.0 } else { 0.0 },
    );
}

/// 1 for true, 0 for false.
pub(crate) fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
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
