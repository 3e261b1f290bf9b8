//! Engine runs shared by several commands (so one command never imports another's module).

pub(crate) mod nat;
pub(crate) mod turn;
