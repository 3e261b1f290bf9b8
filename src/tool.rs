//! Running a local tool (a firewall dump for `stunmap host`, `netbird status --json` for
//! `stunmap check`) under a deadline: stdin closed, stdout and stderr read on threads up to a
//! cap each (so the deadline holds even if the tool never closes its pipes), and the tool killed
//! when the deadline passes or the run is stopped.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A tool that ended by itself.
#[derive(Debug)]
pub(crate) struct Ran {
    /// How it exited.
    pub(crate) status: ExitStatus,
    /// What it printed, up to the cap.
    pub(crate) stdout: Vec<u8>,
    /// What it printed on stderr, up to the cap.
    pub(crate) stderr: Vec<u8>,
}

/// Why a tool gave no output.
#[derive(Debug)]
pub(crate) enum NotRan {
    /// It could not be started.
    Spawn(std::io::Error),
    /// Its output pipes could not be had (it was killed).
    NoPipes,
    /// The run was stopped (it was killed).
    Stopped,
    /// It was still running at the deadline (it was killed).
    TimedOut,
    /// Waiting for it failed.
    Wait(std::io::Error),
    /// Reading its output failed.
    Read,
}

/// The first line of a tool's error output that says something, printable and short (200
/// characters).
pub(crate) fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

/// Run `program args` for at most `timeout` (and until `stop` is set), reading up to
/// `stdout_cap` bytes of its output and `stderr_cap` of its error output.
pub(crate) fn run(
    program: &Path,
    args: &[&str],
    stdout_cap: u64,
    stderr_cap: u64,
    timeout: Duration,
    stop: &AtomicBool,
) -> Result<Ran, NotRan> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NotRan::Spawn)?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(NotRan::NoPipes);
    };
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.take(stdout_cap).read_to_end(&mut buf).map(|_| buf)
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.take(stderr_cap).read_to_end(&mut buf);
        buf
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if stop.load(Ordering::Relaxed) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(NotRan::Stopped);
            }
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(NotRan::TimedOut);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(NotRan::Wait(e)),
        }
    };
    let (Ok(Ok(stdout)), Ok(stderr)) = (out.join(), err.join()) else {
        return Err(NotRan::Read);
    };
    Ok(Ran {
        status,
        stdout,
        stderr,
    })
}
