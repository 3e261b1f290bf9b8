//! Cancellation: a handle that cancels, the token a run watches (awaitable), and the signal
//! hook.

use std::sync::Arc;

use tokio::sync::watch;

/// Cancels a run from elsewhere (a signal handler, a test).
#[derive(Clone, Debug)]
pub struct CancelHandle(Arc<watch::Sender<bool>>);

/// The run's side of a [`CancelHandle`].
#[derive(Clone, Debug)]
pub struct Cancel(watch::Receiver<bool>);

impl CancelHandle {
    /// Request cancellation.
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }
}

impl Cancel {
    /// A connected pair.
    pub fn new() -> (CancelHandle, Cancel) {
        let (tx, rx) = watch::channel(false);
        (CancelHandle(Arc::new(tx)), Cancel(rx))
    }

    /// A token that never fires.
    pub fn never() -> Cancel {
        Cancel::new().1
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once cancellation is requested (at once if it already was); never, if every
    /// [`CancelHandle`] is dropped without cancelling. Cancel-safe: use it in `select!`.
    pub async fn cancelled(&self) {
        let mut rx = self.0.clone();
        if rx.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Cancel on SIGINT or SIGTERM (Unix) / Ctrl-C elsewhere. Must be called inside a runtime.
pub fn cancel_on_signals(handle: CancelHandle) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        handle.cancel();
    });
}
