//! `push-tier`: the long-lived service that holds WebSocket connections (`/v1/ws`) and
//! delivers events from the bus.
//!
//! It replays from the timeline store and delivers live events consumed from the bus
//! (`FEIGE_BUS_URL=kafka://…`, consumer group `FEIGE_KAFKA_GROUP`). Routing a user's events to
//! sockets held by *other* nodes (presence registry) is issue 5; until then run one node, or
//! `local-runtime` (role `all`) with API and push together.

use anyhow::Context;
use axum::Router;
use feige_core::Config;
use feige_core::ports::PushSink;
use feige_push::{Hub, PushContext};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Config::from_env().map_err(anyhow::Error::msg)?;
    let listen = config.listen.clone();
    let queue = config.ws_queue;
    let (feige, backends) = feige_backends::build(config).await.context("starting backends")?;
    let hub = Arc::new(Hub::new(queue));
    let shutdown = CancellationToken::new();
    feige_backends::deliver_pushes_to(&backends, hub.clone() as Arc<dyn PushSink>, shutdown.clone())
        .await
        .context("connecting to the bus")?;
    feige_push::presence::spawn_heartbeat(feige.clone(), hub.clone(), shutdown.clone());
    let ctx = PushContext::new(hub, shutdown.clone());
    let router: Router<feige_core::Feige> = feige_push::router(ctx.clone()).merge(feige_api::health::router());
    let app = feige_api::finish(router, feige);
    let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("binding {listen}"))?;
    println!("feige push-tier listening on ws://{}", listener.local_addr()?);
    let stop = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            wait_for_signal().await;
            stop.cancel();
        })
        .await?;
    ctx.drain(std::time::Duration::from_secs(10)).await;
    Ok(())
}

/// SIGTERM (what Kubernetes and ECS send) or Ctrl-C.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
