//! The one runtime builder and the one signal path of every command.
//!
//! A run is stopped by the first SIGINT or SIGTERM (Ctrl-C elsewhere): the run's [`Cancel`]
//! fires, probes stop sending at once and run their cleanups (TURN deallocation) for at most
//! their drain time, and the command prints what it measured, marked interrupted, and exits
//! 130. A second signal, or a command whose cleanup outlives [`GRACE`], exits 130 at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use engine::{Cancel, CancelHandle};

use crate::exit::Outcome;

/// How long a command may take, after the first signal, to finish its cleanups and print its
/// partial report (engine probes drain for 2 s at most).
pub(crate) const GRACE: Duration = Duration::from_secs(4);

/// Which runtime a command runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// One thread: the drive loop and its helpers (a single task owns the hot path, so a
    /// second worker only adds wake-up latency).
    CurrentThread,
    /// Worker threads, one per core up to four: commands with many concurrent sections
    /// (check, control, serve).
    MultiThread,
}

/// Build the runtime of a command.
pub(crate) fn build(flavor: Flavor) -> std::io::Result<tokio::runtime::Runtime> {
    match flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Flavor::MultiThread => {
            let workers = std::thread::available_parallelism()
                .map_or(2, std::num::NonZero::get)
                .clamp(2, 4);
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
        }
    }
}

/// Why a run stopped early.
#[derive(Debug, Default)]
pub(crate) struct StopReason {
    signal: AtomicBool,
    deadline: AtomicBool,
}

impl StopReason {
    /// A signal stopped the run.
    pub(crate) fn interrupted(&self) -> bool {
        self.signal.load(Ordering::SeqCst)
    }

    /// The run's deadline stopped it.
    pub(crate) fn deadline_reached(&self) -> bool {
        self.deadline.load(Ordering::SeqCst) && !self.interrupted()
    }
}

/// The stop machinery of one run: a cancel token fired by the first signal or the deadline.
#[derive(Clone, Debug)]
pub(crate) struct Stop {
    handle: CancelHandle,
    /// The run's side.
    pub(crate) cancel: Cancel,
    /// Why it fired.
    pub(crate) reason: Arc<StopReason>,
}

impl Stop {
    /// Install the signal path and, if given, the deadline. Must be called inside the runtime.
    pub(crate) fn install(deadline: Option<Duration>) -> Stop {
        let (handle, cancel) = Cancel::new();
        let reason = Arc::new(StopReason::default());
        let stop = Stop {
            handle,
            cancel,
            reason,
        };
        // The handlers are registered here, before the command runs: a signal that arrives
        // while the command's first step is still busy is recorded, not lost (or fatal).
        let mut signals = Signals::register();
        {
            let s = stop.clone();
            tokio::spawn(async move {
                signals.recv().await;
                s.reason.signal.store(true, Ordering::SeqCst);
                s.handle.cancel();
                // A second signal, or cleanup that outlives the grace time, ends the process.
                tokio::select! {
                    _ = signals.recv() => {}
                    _ = tokio::time::sleep(GRACE) => {}
                }
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    b"stunmap: interrupted; cleanup did not finish in time\n",
                );
                std::process::exit(Outcome::Interrupted.code().into());
            });
        }
        if let Some(limit) = deadline {
            stop.arm_deadline(limit);
        }
        stop
    }

    /// A stop without the signal path, fired only by the deadline if one is given (a check
    /// run for one `/probe` request of `serve --metrics`). Must be called inside the runtime
    /// when a deadline is given.
    pub(crate) fn detached(deadline: Option<Duration>) -> Stop {
        let (handle, cancel) = Cancel::new();
        let stop = Stop {
            handle,
            cancel,
            reason: Arc::new(StopReason::default()),
        };
        if let Some(limit) = deadline {
            stop.arm_deadline(limit);
        }
        stop
    }

    /// Stop the run now, as a signal would (a `/probe` check whose client left, or whose
    /// server is stopping): probes stop sending and run their cleanups.
    pub(crate) fn interrupt(&self) {
        self.reason.signal.store(true, Ordering::SeqCst);
        self.handle.cancel();
    }

    fn arm_deadline(&self, limit: Duration) {
        let s = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(limit) => {
                    s.reason.deadline.store(true, Ordering::SeqCst);
                    s.handle.cancel();
                }
                _ = s.cancel.cancelled() => {}
            }
        });
    }
}

/// SIGINT and SIGTERM (Unix), or Ctrl-C elsewhere, registered with the OS at creation.
struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn register() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                streams: signal(SignalKind::interrupt())
                    .and_then(|i| Ok((i, signal(SignalKind::terminate())?)))
                    .ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    /// The next signal.
    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            match &mut self.streams {
                Some((int, term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                None => std::future::pending::<()>().await,
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
