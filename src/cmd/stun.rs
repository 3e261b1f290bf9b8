//! `stunmap stun`.

use crate::exit::Outcome;

/// Flags of `stunmap stun`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) fn run(_args: Args) -> anyhow::Result<Outcome> {
    Err(crate::exit::usage("not built yet"))
}
