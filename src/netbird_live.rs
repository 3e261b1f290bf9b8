//! The live NetBird status: `netbird status --json` run when the `netbird` CLI is on the PATH,
//! under a timeout and an output cap. `stunmap check` calls [`read_live_status`] unless told not
//! to (`--no-netbird`) or given a file (`--netbird-status`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use probes::netbird::status::{self, MAX_STATUS_BYTES, Status};

/// How long `netbird status --json` may take (it probes management, signal and every relay).
pub(crate) const LIVE_TIMEOUT: Duration = Duration::from_secs(15);

/// What happened, for the report's "source" line.
#[derive(Debug)]
pub(crate) enum Live {
    /// The status and the notes of its import.
    Read {
        /// Path of the `netbird` binary used.
        binary: PathBuf,
        /// The status.
        status: Box<Status>,
        /// Import notes.
        notes: Vec<String>,
    },
    /// No `netbird` on the PATH.
    NotInstalled,
    /// It ran and gave no usable status (daemon down, not logged in, timeout …): one line.
    Failed(String),
}

/// `netbird` on the PATH (`netbird.exe` on Windows), if any.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    std::env::split_paths(&path)
        .map(|d| d.join(&file))
        .find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Windows has no execute bit: a `.exe` file is a program.
#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

/// Run `netbird status --json` if the CLI is on the PATH and its daemon answers.
pub(crate) fn read_live_status() -> Live {
    let Some(binary) = find_on_path("netbird") else {
        return Live::NotInstalled;
    };
    read_with(&binary, LIVE_TIMEOUT)
}

/// Run `<binary> status --json` with a deadline; stdout is read up to the status cap.
pub(crate) fn read_with(binary: &Path, timeout: Duration) -> Live {
    use crate::tool::NotRan;
    let never = std::sync::atomic::AtomicBool::new(false);
    let args = ["status", "--json"];
    let ran = match crate::tool::run(
        binary,
        &args,
        MAX_STATUS_BYTES as u64 + 1,
        4096,
        timeout,
        &never,
    ) {
        Ok(r) => r,
        Err(NotRan::Spawn(e)) => return Live::Failed(format!("{}: {e}", binary.display())),
        Err(NotRan::NoPipes) => return Live::Failed("no stdout".into()),
        Err(NotRan::Wait(e)) => return Live::Failed(format!("waiting for netbird: {e}")),
        // `never` is never set.
        Err(NotRan::TimedOut | NotRan::Stopped) => {
            return Live::Failed(format!(
                "`netbird status --json` did not finish within {} s",
                timeout.as_secs()
            ));
        }
        Err(NotRan::Read) => return Live::Failed("reading netbird's output failed".into()),
    };
    let (exit, out) = (ran.status, ran.stdout);
    if !exit.success() {
        return Live::Failed(format!(
            "`netbird status --json` exited with {exit}: {}",
            crate::tool::first_line(&ran.stderr)
        ));
    }
    match status::parse(&out) {
        Ok((st, notes)) => Live::Read {
            binary: binary.to_owned(),
            status: Box::new(st),
            notes,
        },
        Err(e) => Live::Failed(format!("`netbird status --json`: {e}")),
    }
}

// The fake CLIs are shell scripts.
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::time::Instant;

    fn script(name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let p = std::env::temp_dir().join(format!("stunmap-nb-{name}-{}", std::process::id()));
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap_or_else(|e| unreachable!("{e}"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| unreachable!("{e}"));
        p
    }

    #[test]
    fn reads_a_fake_cli_and_bounds_a_hanging_one() {
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/netbird/status-newer-relayed-srflx.json"
        );
        let ok = script("ok", &format!("cat '{fixture}'"));
        match read_with(&ok, Duration::from_secs(10)) {
            Live::Read { status, .. } => assert_eq!(status.wireguard_port, Some(41820)),
            other => unreachable!("{other:?}"),
        }
        let down = script(
            "down",
            "echo 'Error: failed to connect to daemon' >&2; exit 1",
        );
        match read_with(&down, Duration::from_secs(10)) {
            Live::Failed(why) => assert!(why.contains("failed to connect to daemon"), "{why}"),
            other => unreachable!("{other:?}"),
        }
        let hang = script("hang", "exec sleep 30");
        let t = Instant::now();
        match read_with(&hang, Duration::from_millis(300)) {
            Live::Failed(why) => assert!(why.contains("did not finish"), "{why}"),
            other => unreachable!("{other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(10));
        let junk = script("junk", "echo not json");
        assert!(matches!(
            read_with(&junk, Duration::from_secs(10)),
            Live::Failed(_)
        ));
        for p in [ok, down, hang, junk] {
            let _ = std::fs::remove_file(p);
        }
    }
}
