//! Exit codes (documented in the README): 0 success, 1 degraded, 2 unreachable/blocked,
//! 64 usage error (EX_USAGE), 70 internal error (EX_SOFTWARE), 130 interrupted.

use std::process::ExitCode;

/// What a command concluded, as a process exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Everything asked for answered.
    Ok = 0,
    /// Partly working (some targets or ports failed, relay only).
    Degraded = 1,
    /// Nothing answered.
    Blocked = 2,
    /// Bad flags or arguments.
    Usage = 64,
    /// Stopped by SIGINT/SIGTERM; partial results were still printed (128 + SIGINT).
    Interrupted = 130,
    /// A bug or an environment failure.
    Internal = 70,
}

impl Outcome {
    /// The process exit status.
    pub(crate) fn code(self) -> u8 {
        self as u8
    }
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        ExitCode::from(o.code())
    }
}

/// Reports carry the exit status as its number (`"exit_code": 1`).
impl serde::Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

/// A usage error found after clap parsed the flags (bad target, bad range …): exits 64 with a
/// one-line reason.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Shorthand for returning a usage error from a command.
pub(crate) fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// Print a clap error; help and version exit 0, anything else is a usage error (64).
pub(crate) fn clap_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let _ = e.print();
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => ExitCode::SUCCESS,
        _ => Outcome::Usage.into(),
    }
}

/// Print an error from a command: usage errors exit 64, everything else 70.
pub(crate) fn report(e: &anyhow::Error) -> ExitCode {
    if let Some(u) = e.downcast_ref::<UsageError>() {
        eprintln!("stunmap: {u}");
        return Outcome::Usage.into();
    }
    eprintln!("stunmap: error: {e:#}");
    Outcome::Internal.into()
}
