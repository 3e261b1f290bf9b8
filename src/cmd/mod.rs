//! One module per subcommand: flags, the call into the engine, rendering.

pub(crate) mod host;
pub(crate) mod relay;
pub(crate) mod serve;
pub(crate) mod stun;
pub(crate) mod turn;
