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
}

/// The `/v1/ws` route.
pub fn router(ctx: PushContext) -> Router<Feige> {
    Router::new().route("/v1/ws", get(session::upgrade)).layer(Extension(ctx))
}
