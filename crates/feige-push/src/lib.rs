//! Feige push: the `/v1/ws` WebSocket endpoint, the per-user socket [`hub::Hub`], the
//! replay-then-stream delivery loop of each socket ([`session`]), and, when several push nodes
//! share a Kafka bus, routing between them ([`route`], [`internal`]).

pub mod frames;
pub mod hub;
pub mod internal;
pub mod presence;
pub mod route;
pub mod session;

use axum::routing::get;
use axum::{Extension, Router};
use feige_core::Feige;
use feige_core::ports::PushSink;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub use hub::Hub;
pub use route::PushRouter;

/// What the WebSocket handler needs besides the application.
#[derive(Clone)]
pub struct PushContext {
    pub hub: Arc<Hub>,
    /// Where pushes raised by this node (kicks) and consumed from the bus go: the hub itself
    /// on a single node, the [`PushRouter`] when other nodes hold sockets too.
    pub sink: Arc<dyn PushSink>,
    /// Cancelled when the process shuts down: every socket is told to reconnect (1012).
    pub shutdown: CancellationToken,
    /// Every live socket session. Upgraded connections are not tracked by the HTTP server's
    /// graceful shutdown, so the process waits on this before it exits.
    pub sessions: tokio_util::task::TaskTracker,
}

impl PushContext {
    /// A single-node context: pushes go straight to `hub`.
    pub fn new(hub: Arc<Hub>, shutdown: CancellationToken) -> Self {
        let sink = hub.clone() as Arc<dyn PushSink>;
        PushContext { hub, sink, shutdown, sessions: tokio_util::task::TaskTracker::new() }
    }

    /// After the server stopped: waits (bounded) until every socket has sent its close frame.
    pub async fn drain(&self, within: std::time::Duration) {
        self.sessions.close();
        if tokio::time::timeout(within, self.sessions.wait()).await.is_err() {
            tracing::warn!(open = self.sessions.len(), "sockets still open after the drain timeout");
        }
    }
}

/// Starts the push side of a process: the hub and the presence heartbeat, and, when `shared`
/// (several processes consume one Kafka bus), the internal forwarding listener, this node's
/// entry in the node directory, and the router. Feed [`PushContext::sink`] from the bus.
pub async fn start(feige: &Feige, shared: bool, shutdown: CancellationToken) -> std::io::Result<PushContext> {
    let hub = Arc::new(Hub::new(&feige.config.node_id, feige.config.ws_queue));
    let mut ctx = PushContext::new(hub.clone(), shutdown.clone());
    let mut advertised = None;
    if shared {
        let secret = feige.internal_secret();
        let listen = &feige.config.internal_listen;
        let addr =
            internal::serve(listen, feige.config.internal_advertise.as_deref(), hub.clone(), &secret, shutdown.clone())
                .await?;
        presence::announce(feige, &addr).await;
        ctx.sink = Arc::new(PushRouter::new(feige.clone(), hub.clone()));
        advertised = Some(addr);
    }
    presence::spawn_heartbeat(feige.clone(), hub, advertised, shutdown);
    Ok(ctx)
}

/// The `/v1/ws` route.
pub fn router(ctx: PushContext) -> Router<Feige> {
    Router::new().route("/v1/ws", get(session::upgrade)).layer(Extension(ctx))
}
