//! The command contract. Every reporting command is
//!
//! ```text
//! flags (clap, with the shared OutputArgs)  →  a plan (pure: validated values, no I/O)
//!   →  Command::execute on the engine, under one Ctx (cancel / deadline / events / progress)
//!   →  a typed Report (serde, a versioned schema)  →  one of the renderers in crate::report
//! ```
//!
//! [`run`] is the only place that builds a runtime, installs the signal path, writes report
//! files and prints: a command only plans, executes and describes its report.

pub(crate) mod output;
pub(crate) mod runtime;

use std::io::{IsTerminal as _, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use engine::Cancel;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::exit::Outcome;
use crate::report::doc::Doc;
use crate::report::prom;
pub(crate) use output::{OutputArgs, ReportFiles};
pub(crate) use runtime::{Flavor, Stop};

/// Facts about a run that every report carries (the top-level fields of every JSON report).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct RunInfo {
    /// The report's schema id ("stunmap.nat/1"); the file is docs/schema/<name>-v<N>.json.
    pub(crate) schema: &'static str,
    /// stunmap's version.
    pub(crate) stunmap_version: &'static str,
    /// Wall-clock start, seconds since the Unix epoch.
    pub(crate) started_unix_seconds: f64,
    /// Run time, seconds.
    pub(crate) elapsed_seconds: f64,
    /// Stopped by a signal: partial results.
    pub(crate) interrupted: bool,
    /// Stopped by the run's deadline: partial results.
    pub(crate) deadline_reached: bool,
    /// The process exit status this report gives.
    pub(crate) exit_code: Outcome,
}

impl RunInfo {
    /// Whether the results are partial.
    pub(crate) fn partial(&self) -> bool {
        self.interrupted || self.deadline_reached
    }
}

/// What a command reports.
pub(crate) trait Report: Serialize {
    /// Schema id written into the JSON ("stunmap.nat/1").
    const SCHEMA: &'static str;

    /// What the report concludes, as an exit status (interruption is the runner's business).
    fn outcome(&self) -> Outcome;

    /// The report for people; every human and HTML output comes from here.
    fn document(&self, run: &RunInfo) -> Doc;

    /// Append Prometheus metrics; false when this report has none.
    fn metrics(&self, _run: &RunInfo, _w: &mut prom::Writer) -> bool {
        false
    }
}

/// The JSON form of a report: the run facts, then the report's own fields.
#[derive(Debug, Serialize)]
pub(crate) struct Envelope<'a, R> {
    #[serde(flatten)]
    run: &'a RunInfo,
    #[serde(flatten)]
    report: &'a R,
}

impl<'a, R: Report> Envelope<'a, R> {
    pub(crate) fn new(run: &'a RunInfo, report: &'a R) -> Self {
        Envelope { run, report }
    }
}

/// The last NDJSON line: the whole report.
#[derive(Debug, Serialize)]
struct ReportEvent<'a, R> {
    event: &'static str,
    report: Envelope<'a, R>,
}

/// A command: planned from flags, executed under a [`Ctx`].
pub(crate) trait Command {
    /// What it reports.
    type Report: Report;

    /// The runtime it needs.
    const FLAVOR: Flavor = Flavor::CurrentThread;

    /// Stop the whole run after this long and report what was measured.
    fn deadline(&self) -> Option<Duration> {
        None
    }

    /// Run it. On cancellation (signal or deadline) a command returns what it has, promptly.
    async fn execute(self, ctx: Ctx) -> Result<Self::Report>;
}

/// Where events and progress go while a command runs.
struct Sink {
    ndjson: bool,
    bar: Option<ProgressBar>,
    lock: Mutex<()>,
}

/// What a running command gets: cancellation, events, progress.
#[derive(Clone)]
pub(crate) struct Ctx {
    /// Fires on the first SIGINT/SIGTERM or at the deadline: stop sending, clean up, return.
    pub(crate) cancel: Cancel,
    stop: Stop,
    sink: Arc<Sink>,
    started: tokio::time::Instant,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").finish_non_exhaustive()
    }
}

impl Ctx {
    fn new(stop: Stop, output: &OutputArgs, unit: &str) -> Ctx {
        let show =
            !output.quiet && !output.json && !output.ndjson && std::io::stderr().is_terminal();
        let bar = show.then(|| {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(&format!(
                "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit} {{msg}} (eta {{eta}})"
            )) {
                bar.set_style(style);
            }
            bar
        });
        Ctx {
            cancel: stop.cancel.clone(),
            stop,
            sink: Arc::new(Sink {
                ndjson: output.ndjson,
                bar,
                lock: Mutex::new(()),
            }),
            started: tokio::time::Instant::now(),
        }
    }

    /// A context for a run inside another program (a `/probe` request of `serve --metrics`,
    /// `stunmap demo`): no bar, no events, the caller's stop.
    pub(crate) fn detached(stop: Stop) -> Ctx {
        Ctx::new(
            stop,
            &OutputArgs {
                quiet: true,
                ..OutputArgs::default()
            },
            "",
        )
    }

    /// Emit an event (one NDJSON line with `--ndjson`, nothing otherwise).
    pub(crate) fn event<E: Serialize>(&self, e: &E) {
        if !self.sink.ndjson {
            return;
        }
        if let Ok(line) = serde_json::to_string(e) {
            let _guard = self.sink.lock.lock();
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    /// Whether events are being written (a command may skip building them otherwise).
    pub(crate) fn wants_events(&self) -> bool {
        self.sink.ndjson
    }

    /// Grow the progress total by `n` units.
    pub(crate) fn plan(&self, n: u64) {
        if let Some(b) = &self.sink.bar {
            b.inc_length(n);
        }
    }

    /// `n` units done.
    pub(crate) fn advance(&self, n: u64) {
        if let Some(b) = &self.sink.bar {
            b.inc(n);
        }
    }

    /// Set the progress message.
    pub(crate) fn status(&self, msg: impl Into<std::borrow::Cow<'static, str>>) {
        if let Some(b) = &self.sink.bar {
            b.set_message(msg);
        }
    }

    /// Time since the run started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether the run was asked to stop (signal or deadline).
    pub(crate) fn stopped(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Whether a signal (not the deadline) stopped the run.
    pub(crate) fn interrupted(&self) -> bool {
        self.stop.reason.interrupted()
    }

    /// Whether the deadline stopped the run.
    pub(crate) fn deadline_reached(&self) -> bool {
        self.stop.reason.deadline_reached()
    }

    fn finish_progress(&self) {
        if let Some(b) = &self.sink.bar {
            b.finish_and_clear();
        }
    }
}

/// Now, seconds since the Unix epoch.
pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The run facts of a finished run.
pub(crate) fn run_info<R: Report>(ctx: &Ctx, started_unix: f64, report: &R) -> RunInfo {
    let interrupted = ctx.interrupted();
    let deadline_reached = ctx.deadline_reached();
    let outcome = if interrupted {
        Outcome::Interrupted
    } else {
        report.outcome()
    };
    RunInfo {
        schema: R::SCHEMA,
        stunmap_version: env!("CARGO_PKG_VERSION"),
        started_unix_seconds: started_unix,
        elapsed_seconds: ctx.elapsed().as_secs_f64(),
        interrupted,
        deadline_reached,
        exit_code: outcome,
    }
}

/// The document of a report, marked partial when the run was stopped early.
pub(crate) fn document<R: Report>(run: &RunInfo, report: &R) -> Doc {
    let mut doc = report.document(run);
    if run.interrupted {
        doc.partial = Some("stopped by a signal; partial results follow".into());
    } else if run.deadline_reached {
        doc.partial = Some("the run's deadline was reached; partial results follow".into());
    }
    doc
}

/// The Prometheus exposition of a report, if it has metrics.
pub(crate) fn metrics<R: Report>(run: &RunInfo, report: &R) -> Option<String> {
    let mut w = prom::Writer::default();
    report.metrics(run, &mut w).then(|| w.finish())
}

/// Run a command to its report, write the report files, print the report, and give the exit
/// status.
pub(crate) fn run<C: Command>(
    cmd: C,
    output: &OutputArgs,
    files: &ReportFiles,
    unit: &str,
) -> Result<Outcome> {
    files.check()?;
    let rt = runtime::build(C::FLAVOR)?;
    let started_unix = unix_now();
    let (report, ctx) = rt.block_on(async {
        let stop = Stop::install(cmd.deadline());
        let ctx = Ctx::new(stop, output, unit);
        let report = cmd.execute(ctx.clone()).await;
        (report, ctx)
    });
    // Work a stopped command left behind (a blocking loop finishing its bounded run, a
    // cleanup past its drain time) must not hold the report back.
    rt.shutdown_background();
    ctx.finish_progress();
    let report = report?;
    let info = run_info(&ctx, started_unix, &report);
    // Files first (a scheduled run's textfile), then stdout; a failed write still prints the
    // report and then fails the run.
    let mut write_error = None;
    if let Some(path) = &files.prom {
        match metrics(&info, &report) {
            Some(text) => {
                if let Err(e) = output::write_atomically(path, &text) {
                    write_error = Some(e.context(format!("--prom {}", path.display())));
                }
            }
            None => {
                write_error = Some(anyhow::anyhow!(
                    "--prom {}: this report has no metrics",
                    path.display()
                ))
            }
        }
    }
    if let Some(path) = &files.html {
        let page = crate::report::html::render(&document(&info, &report));
        if let Err(e) = output::write_atomically(path, &page) {
            write_error = Some(e.context(format!("--html {}", path.display())));
        }
    }
    print(output, &info, &report)?;
    if let Some(e) = write_error {
        return Err(e);
    }
    Ok(info.exit_code)
}

/// Print a finished report in the form the flags ask for.
pub(crate) fn print<R: Report>(output: &OutputArgs, info: &RunInfo, report: &R) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let envelope = Envelope::new(info, report);
    if output.json {
        serde_json::to_writer_pretty(&mut out, &envelope)?;
        writeln!(out)?;
    } else if output.ndjson {
        serde_json::to_writer(
            &mut out,
            &ReportEvent {
                event: "report",
                report: envelope,
            },
        )?;
        writeln!(out)?;
    } else {
        out.write_all(crate::report::human::render(&document(info, report)).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}
