//! TURN-style probes on the engine: the session settings every command uses, and the one
//! place that picks the runner by transport — over UDP the drive loop with the probe's own
//! private sockets (`engine::run_one`), over TCP or TLS one connection (`engine::stream`).

use std::net::SocketAddr;
use std::time::Duration;

use engine::stream::{Security, StreamOptions, run_stream};
use engine::tcp::ConnectOutcome;
use engine::{Cancel, EngineError};
use probes::turn::auth::Credentials;
use probes::turn::session::SessionConfig;
use probes::{Probe, Transport};
use serde::Serialize;

/// The session for `transport` with every request bounded by `timeout`
/// ([`SessionConfig::bounded`]) and the given credentials.
pub(crate) fn session_config(
    server: SocketAddr,
    transport: Transport,
    credentials: Option<Credentials>,
    timeout: Duration,
) -> SessionConfig {
    let mut c = SessionConfig::bounded(server, transport, timeout);
    c.credentials = credentials;
    c
}

/// What one TURN-style probe run produced, whatever the transport.
#[derive(Debug)]
pub(crate) struct TurnRun<O> {
    /// The probe's output (`None`: it could not finish, e.g. no connection).
    pub(crate) output: Option<O>,
    /// How its connection went.
    pub(crate) connection: Connection,
}

/// How a TURN-style run's connection went: all `None` over UDP. The reports that carry it
/// flatten it, so its fields stand in their JSON as in `TurnRun`.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Connection {
    /// How the connection went (TCP and TLS only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) connect: Option<ConnectOutcome>,
    /// TLS version and cipher suite (TLS only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls: Option<String>,
    /// Why the stream ended early (TCP and TLS only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stream_error: Option<String>,
}

/// Run `probe` against `server` over `transport`: UDP through the drive loop (the probe
/// binds private sockets and paces itself), TCP/TLS over one new connection with `security`.
/// A cancel stops it at once, apart from the cleanup the probe asks for (a TURN release),
/// which gets the runner's drain time.
pub(crate) async fn run<P: Probe>(
    probe: P,
    server: SocketAddr,
    transport: Transport,
    security: Security,
    cancel: Cancel,
) -> Result<TurnRun<P::Output>, EngineError> {
    if transport.is_stream() {
        let r = run_stream(probe, server, security, StreamOptions::default(), cancel).await;
        return Ok(TurnRun {
            output: r.output,
            connection: Connection {
                connect: Some(r.connect),
                tls: r.tls,
                stream_error: r.error,
            },
        });
    }
    let (output, _) = engine::run_one(probe, None, cancel).await?;
    Ok(TurnRun {
        output,
        connection: Connection::default(),
    })
}

/// Why a stream run has no result, in words: the stream's error, else how the connection
/// went.
pub(crate) fn no_result(run: &TurnRun<impl Sized>) -> String {
    if let Some(e) = &run.connection.stream_error {
        return e.clone();
    }
    match &run.connection.connect {
        Some(ConnectOutcome::Connected { .. }) | None => "no result".into(),
        Some(c) => crate::report::words::connect(c),
    }
}
