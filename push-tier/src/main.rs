//! `push-tier`: the long-lived, horizontally scalable service that holds WebSocket connections
//! (`/v1/ws`) and delivers events from the bus.
//!
//! Any number of nodes run behind a load balancer, sharing one Kafka consumer group. A node
//! delivers what it consumes to its own sockets and forwards the rest to the nodes that hold
//! the user's other sockets (presence registry in Redis, node-to-node listener on
//! `FEIGE_INTERNAL_LISTEN`); see docs/push-tier.md. On SIGTERM it stops accepting, tells its
//! clients to reconnect (close 1012), drains, commits what it handed off and leaves the group.

use anyhow::Context;
use axum::Router;
use feige_core::Config;
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
    let (feige, backends) = feige_backends::build(config).await.context("starting backends")?;
    let shutdown = CancellationToken::new();
    let ctx = feige_push::start(&feige, backends.bus_is_shared(), shutdown.clone())
        .await
        .context("starting the push node")?;
    let feed = feige_backends::deliver_pushes_to(&backends, ctx.sink.clone(), shutdown.clone())
        .await
        .context("connecting to the bus")?;
    let router: Router<feige_core::Feige> = feige_push::router(ctx.clone()).merge(feige_api::health::router());
    let app = feige_api::finish(router, feige.clone());
    let listener = feige_api::bind(&listen).await.with_context(|| format!("binding {listen}"))?;
    // Tests and scripts read this line to find the port when FEIGE_LISTEN ends in :0.
    println!("feige push-tier listening on ws://{} (node {})", listener.local_addr()?, feige.config.node_id);
    let stop = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: closing sockets (1012), draining, committing offsets");
            stop.cancel();
        })
        .await?;
    ctx.drain(std::time::Duration::from_secs(10)).await;
    feed.finish().await;
    tracing::info!("stopped");
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
