//! Feige push: the `/v1/ws` WebSocket endpoint, the per-user socket [`hub::Hub`], and the
//! replay-then-stream delivery loop of each socket ([`session`]).

pub mod frames;
pub mod hub;
pub mod presence;
pub mod session;

use axum::routing::get;
use axum::{Extension, Router};
use feige_core::Feige;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub use hub::Hub;

/// What the WebSocket handler needs besides the application.
#[derive(Clone)]
pub struct PushContext {
    pub hub: Arc<Hub>,
    /// Cancelled when the process shuts down: every socket is told to reconnect (1012).
    pub shutdown: CancellationToken,
    /// Every live socket session. Upgraded connections are not tracked by the HTTP server's
    /// graceful shutdown, so the process waits on this before it exits.
    pub sessions: tokio_util::task::TaskTracker,
}

impl PushContext {
    /// A context for `hub`, shut down by `shutdown`.
    pub fn new(hub: Arc<Hub>, shutdown: CancellationToken) -> Self {
        PushContext { hub, shutdown, sessions: tokio_util::task::TaskTracker::new() }
    }

    /// After the server stopped: waits (bounded) until every socket has sent its close frame.
    pub async fn drain(&self, within: std::time::Duration) {
        self.sessions.close();
        if tokio::time::timeout(within, self.sessions.wait()).await.is_err() {
            tracing::warn!(open = self.sessions.len(), "sockets still open after the drain timeout");
        }
    }
}

/// The `/v1/ws` route.
pub fn router(ctx: PushContext) -> Router<Feige> {
    Router::new().route("/v1/ws", get(session::upgrade)).layer(Extension(ctx))
}
