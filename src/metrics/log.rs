//! Log lines of the probe server on stderr, at most one a minute per kind, so a flood of bad
//! connections cannot flood the log. Nothing secret is ever passed here.

use std::io::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Shortest time between two lines of one kind.
const EVERY: Duration = Duration::from_secs(60);

/// One kind of log line.
#[derive(Debug)]
pub(crate) struct Throttle {
    what: &'static str,
    /// When the last line was written, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub(crate) fn new(what: &'static str) -> Throttle {
        Throttle {
            what,
            state: Mutex::new((None, 0)),
        }
    }

    /// Write `msg` unless a line of this kind went out less than a minute ago.
    pub(crate) fn log(&self, msg: &str) {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.0.is_some_and(|last| now.duration_since(last) < EVERY) {
            s.1 += 1;
            return;
        }
        let held = std::mem::take(&mut s.1);
        s.0 = Some(now);
        drop(s);
        let more = if held > 0 {
            format!(" ({held} more since the last line)")
        } else {
            String::new()
        };
        // Not eprintln!: a closed stderr must not panic the server.
        let _ = writeln!(
            std::io::stderr(),
            "stunmap serve: {}: {msg}{more}",
            self.what
        );
    }
}
