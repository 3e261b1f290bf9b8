//! Progress on long runs: an indicatif bar on a terminal (stderr), nothing in pipes, with
//! `--quiet`, or with machine-readable output on stdout.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar that may be hidden.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    retransmits: std::cell::Cell<u64>,
}

impl Progress {
    pub(crate) fn new(total: u64, quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() || total < 50 {
            return Self {
                bar: None,
                retransmits: 0.into(),
            };
        }
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} probes, {msg} (eta {eta})",
        ) {
            bar.set_style(style);
        }
        bar.set_message("0 retransmitted");
        Self {
            bar: Some(bar),
            retransmits: 0.into(),
        }
    }

    pub(crate) fn inc(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }

    pub(crate) fn retransmit(&self) {
        if let Some(b) = &self.bar {
            let n = self.retransmits.get() + 1;
            self.retransmits.set(n);
            b.set_message(format!("{n} retransmitted"));
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
