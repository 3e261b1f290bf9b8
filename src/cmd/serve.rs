//! `stunmap serve`.

use crate::exit::Outcome;

/// Flags of `stunmap serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) fn run(_args: Args) -> anyhow::Result<Outcome> {
    Err(crate::exit::usage("not built yet"))
}
