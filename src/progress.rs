//! Progress on long runs: an indicatif bar on a terminal (stderr), nothing in pipes, with
//! `--quiet`, or with machine-readable output on stdout.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar that may be hidden.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub(crate) fn new(total: u64, quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() || total < 50 {
            return Self { bar: None };
        }
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} probes (eta {eta})",
        ) {
            bar.set_style(style);
        }
        Self { bar: Some(bar) }
    }

    pub(crate) fn inc(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }

    /// Set the count of probes done (for runs that count elsewhere).
    pub(crate) fn set(&self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
