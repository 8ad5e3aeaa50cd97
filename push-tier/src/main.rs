//! `push-tier`: the long-lived service that holds WebSocket connections (`/v1/ws`) and
//! delivers events from the bus.
//!
//! Today it serves sockets with replay from the timeline store and live delivery from the
//! in-process bus, so it is only useful on its own once a shared bus (Kafka) connects it to
//! the API functions; until then `local-runtime` (role `all`) runs API and push together.

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
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    let config = Config::from_env().map_err(anyhow::Error::msg)?;
    let listen = config.listen.clone();
    let queue = config.ws_queue;
    let (feige, memory_bus) = feige_store::build(config)
        .await
        .context("starting backends")?;
    let hub = Arc::new(Hub::new(queue));
    if let Some(bus) = &memory_bus {
        bus.attach(hub.clone() as Arc<dyn PushSink>);
    }
    let shutdown = CancellationToken::new();
    let router: Router<feige_core::Feige> = feige_push::router(PushContext {
        hub,
        shutdown: shutdown.clone(),
    })
    .merge(feige_api::health::router());
    let app = feige_api::finish(router, feige);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    println!(
        "feige push-tier listening on ws://{}",
        listener.local_addr()?
    );
    let stop = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        })
        .await?;
    Ok(())
}
