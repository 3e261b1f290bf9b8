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

/// Print a clap error; help and version exit 0, anything else is a usage error (64) printed
/// as one line ([`one_line`]).
pub(crate) fn clap_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("stunmap: {}", one_line(&e.render().to_string()));
            Outcome::Usage.into()
        }
    }
}

/// A clap error message on one line: the reason with the indented lines that continue it
/// (the names of missing arguments), then any tip in parentheses; the usage synopsis and
/// the pointer to `--help` are left out.
fn one_line(rendered: &str) -> String {
    let mut lines = rendered.lines();
    let mut out = lines
        .next()
        .unwrap_or("invalid arguments")
        .trim()
        .to_string();
    let mut continuing = true;
    for line in lines {
        let t = line.trim();
        if t.is_empty() {
            continuing = false;
        } else if let Some(tip) = t.strip_prefix("tip:") {
            out.push_str(&format!(" (tip: {})", tip.trim()));
        } else if continuing && line.starts_with(char::is_whitespace) {
            out.push(' ');
            out.push_str(t);
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn clap_errors_become_one_line() {
        assert_eq!(
            one_line(
                "error: unexpected argument '--password' found\n\n  tip: a similar argument \
                 exists: '--password-file'\n\nUsage: stunmap turn <URI>\n\nFor more \
                 information, try '--help'.\n"
            ),
            "error: unexpected argument '--password' found (tip: a similar argument exists: \
             '--password-file')"
        );
        assert_eq!(
            one_line(
                "error: the following required arguments were not provided:\n  <URI>\n\n\
                 Usage: stunmap turn <URI>\n"
            ),
            "error: the following required arguments were not provided: <URI>"
        );
        assert_eq!(one_line(""), "invalid arguments");
    }
}
