//! One module per subcommand: flags, the call into the engine, rendering.

pub(crate) mod audit;
pub(crate) mod bench;
pub(crate) mod check;
pub(crate) mod common;
pub(crate) mod control;
pub(crate) mod demo;
pub(crate) mod docs;
pub(crate) mod explain;
pub(crate) mod host;
pub(crate) mod nat;
pub(crate) mod pair;
pub(crate) mod relay;
pub(crate) mod serve;
pub(crate) mod stun;
pub(crate) mod sweep;
pub(crate) mod turn;
