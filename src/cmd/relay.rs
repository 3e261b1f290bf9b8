//! `stunmap relay` (in progress).

use anyhow::Result;

use crate::exit::Outcome;

/// Flags of `stunmap relay`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) fn run(_args: Args) -> Result<Outcome> {
    Ok(Outcome::Internal)
}
