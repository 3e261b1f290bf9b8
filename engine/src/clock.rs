//! The engine's one clock.
//!
//! Every async loop of the engine reads time through [`now`], which is tokio's clock
//! (`tokio::time::Instant`): the monotonic clock in normal runs, paused virtual time in tests
//! (`#[tokio::test(start_paused = true)]`), so retransmission schedules, pacing, deadlines and
//! drains are checked exactly without sleeping.
//!
//! Two sweeps run on OS threads that block in `poll(2)` (the TCP connect sweep and the raw SYN
//! shards), where tokio's timers cannot wake them. They take a [`Clock`] instead: the real
//! sweeps pass [`Monotonic`], and their timing decisions (when a connect times out, when a
//! token is due, how long to wait, when to resend) are pure functions of the instants the
//! clock gives, tested with [`ManualClock`] on virtual time. Both clocks count from the same
//! monotonic base in normal runs, so instants from either can be compared.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The current instant on the engine's clock (tokio's; virtual when a test paused it).
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Sleep until the earliest of `wake`, `deadline_at` (while the run has not begun to drain)
/// and `drain_until` (the end of the drain); forever when there is none of them.
pub(crate) async fn sleep_until_first(
    wake: Option<Instant>,
    deadline_at: Option<Instant>,
    drain_until: Option<Instant>,
) {
    let mut wake = wake;
    for t in [deadline_at.filter(|_| drain_until.is_none()), drain_until]
        .into_iter()
        .flatten()
    {
        wake = Some(wake.map_or(t, |w| w.min(t)));
    }
    match wake {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// A source of instants for code that runs on an OS thread instead of a tokio task.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The operating system's monotonic clock (what [`now`] reads when time is not paused).
#[derive(Clone, Copy, Debug, Default)]
pub struct Monotonic;

impl Clock for Monotonic {
    #[allow(clippy::disallowed_methods)] // INVARIANT: the one place the OS clock is read.
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to: virtual time for the timing logic of the OS-thread
/// sweeps.
#[derive(Debug)]
pub struct ManualClock {
    at: Mutex<Instant>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Instant) -> Self {
        Self {
            at: Mutex::new(start),
        }
    }

    /// Move the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut at = self
            .at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *at += d;
    }

    /// Move the clock to `t` (never backwards).
    pub fn set(&self, t: Instant) {
        let mut at = self
            .at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *at = (*at).max(t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self
            .at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Instant {
        (**self).now()
    }
}
