//! Feige's HTTP actions as axum routers: one module per action, each exporting
//! `router() -> Router<Feige>` with full paths. The same routers run under `lambda_http` in
//! `functions/` (one binary per action) and merged in `local-runtime`.

pub mod auth;
pub mod conversations;
pub mod error;
pub mod extract;
pub mod groups;
pub mod health;
pub mod history;
pub mod messages;
pub mod metrics;
pub mod openapi;
pub mod sync;
pub mod users;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use feige_core::Feige;

pub use error::ApiError;

/// Every HTTP action and the health endpoints on one router (local-runtime, tests).
pub fn all_actions() -> Router<Feige> {
    Router::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(messages::router())
        .merge(sync::router())
        .merge(conversations::router())
        .merge(history::router())
        .merge(groups::router())
        .merge(health::router())
}

/// Wraps a router with what every Feige endpoint shares: the body limit, JSON 404/405,
/// request metrics and tracing, then binds the application state.
pub fn finish(router: Router<Feige>, feige: Feige) -> Router {
    let limit = feige.config.max_body_bytes;
    router
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(error::panicked))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(feige)
}

/// `finish(all_actions())`: the whole HTTP API.
pub fn app(feige: Feige) -> Router {
    finish(all_actions(), feige)
}

/// Pending connections the listening socket queues. tokio's `TcpListener::bind` uses 1024: a
/// reconnect storm overflows it and the dropped SYNs are retried only after a second.
const LISTEN_BACKLOG: u32 = 8192;

/// Binds a listener for `addr` (`host:port`) with a deep accept queue (the kernel caps it at
/// `net.core.somaxconn`).
pub async fn bind(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let sa = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr} resolves to nothing")))?;
    let socket = if sa.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(sa)?;
    socket.listen(LISTEN_BACKLOG)
}
