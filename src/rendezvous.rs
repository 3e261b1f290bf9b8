//! `stunmap serve --rendezvous`: where two `stunmap pair` runs meet. Flags, the secret and the
//! optional TLS certificate are checked before anything binds; the server itself is
//! `engine::rendezvous::serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use engine::rendezvous::{ServerLimits, ServerStats};
use probes::pair::rendezvous::{MAX_ROOMS, RoomSecret};

use crate::exit::usage;

/// The rendezvous flags of `stunmap serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct RendezvousArgs {
    /// Also run the `stunmap pair` rendezvous on TCP ADDR:PORT (only candidates and reports
    /// pass through it). The room secret comes from $STUNMAP_PAIR_SECRET or
    /// --pair-secret-file.
    #[arg(long, value_name = "ADDR:PORT")]
    rendezvous: Option<SocketAddr>,
    /// TLS certificate chain (PEM) for the rendezvous.
    #[arg(long, value_name = "FILE", requires = "key", requires = "rendezvous")]
    cert: Option<PathBuf>,
    /// TLS private key (PEM) for the rendezvous.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// File whose first line is the pair room secret.
    #[arg(long, value_name = "FILE", requires = "rendezvous")]
    pair_secret_file: Option<PathBuf>,
    /// Most connections the rendezvous holds at once (4-10000).
    #[arg(long, default_value_t = 256, value_name = "N", requires = "rendezvous")]
    rendezvous_max_connections: usize,
}

/// A checked rendezvous configuration.
pub(crate) struct Prepared {
    addr: SocketAddr,
    secret: RoomSecret,
    tls: Option<engine::rendezvous::TlsAcceptor>,
    limits: ServerLimits,
}

impl RendezvousArgs {
    /// Check the flags, read the secret and the certificate: `None` without --rendezvous.
    pub(crate) fn prepare(&self) -> Result<Option<Prepared>> {
        let Some(addr) = self.rendezvous else {
            return Ok(None);
        };
        if !(4..=10_000).contains(&self.rendezvous_max_connections) {
            return Err(usage("--rendezvous-max-connections must be 4 to 10000"));
        }
        let secret = crate::cmd::pair::load_secret(
            self.pair_secret_file.as_ref(),
            "--rendezvous needs a room secret",
        )?;
        let tls = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => {
                Some(engine::rendezvous::tls_acceptor(c, k).map_err(|e| usage(e.to_string()))?)
            }
            _ => None,
        };
        Ok(Some(Prepared {
            addr,
            secret,
            tls,
            limits: ServerLimits {
                max_connections: self.rendezvous_max_connections,
                max_rooms: MAX_ROOMS,
                ..ServerLimits::default()
            },
        }))
    }
}

impl Prepared {
    /// Bind, print the "listening" line, and serve until dropped.
    pub(crate) async fn run(self) -> Result<()> {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot listen on {} for the rendezvous: {e}", self.addr)
            })?;
        let shown = listener.local_addr()?;
        let _ = std::io::Write::write_fmt(
            &mut std::io::stderr(),
            format_args!(
                "stunmap serve: rendezvous on {shown}{}\n",
                if self.tls.is_some() { " (TLS)" } else { "" }
            ),
        );
        let stats = Arc::new(ServerStats::default());
        engine::rendezvous::serve(listener, self.secret, self.tls, self.limits, stats).await?;
        Ok(())
    }
}
