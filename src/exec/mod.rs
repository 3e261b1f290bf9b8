//! Engine calls more than one command makes the same way.

pub(crate) mod turn;
