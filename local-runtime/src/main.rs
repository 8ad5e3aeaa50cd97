//! `local-runtime`: every Feige HTTP action as axum routes plus the push tier, in one process,
//! on embedded backends by default (no service to install), or on MySQL, MongoDB, Redis and
//! Kafka when their URLs are set. Stops gracefully on SIGTERM or
//! Ctrl-C: sockets are told to reconnect (1012) and in-flight requests finish.

use anyhow::Context;
use clap::Parser;
use feige_core::Config;
use tokio_util::sync::CancellationToken;

/// Command-line flags; each mirrors an environment variable (see `.env.example`).
#[derive(Parser, Debug)]
#[command(version, about = "Feige all-in-one runtime: HTTP API + WebSocket push on one port")]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "FEIGE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Where embedded backends keep their files.
    #[arg(long, env = "FEIGE_DATA_DIR", default_value = "./data")]
    data_dir: String,
}

/// glibc's malloc cost 10–15% of the server under load (`_int_malloc`, `malloc_consolidate`,
/// arena locks in the issue-7 profiles); mimalloc's thread-local free lists avoid most of it.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = Config::from_lookup(|k| match k {
        "FEIGE_LISTEN" => Some(args.listen.clone()),
        "FEIGE_DATA_DIR" => Some(args.data_dir.clone()),
        other => std::env::var(other).ok().filter(|v| !v.is_empty()),
    })
    .map_err(anyhow::Error::msg)?;
    let listen = config.listen.clone();
    let role = config.role.clone();

    let (feige, backends) = feige_backends::build(config).await.context("starting backends")?;
    let shutdown = CancellationToken::new();
    let mut router = feige_api::all_actions();
    let mut push = None;
    if role == "all" {
        // With Kafka, other push nodes may share the bus: route between them.
        let ctx = feige_push::start(&feige, backends.bus_is_shared(), shutdown.clone())
            .await
            .context("starting the push side")?;
        let feed = feige_backends::deliver_pushes_to(&backends, ctx.sink.clone(), shutdown.clone())
            .await
            .context("connecting the push side to the bus")?;
        router = router.merge(feige_push::router(ctx.clone()));
        push = Some((ctx, feed));
    }
    let app = feige_api::finish(router, feige);

    let listener = feige_api::bind(&listen).await.with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find the port when FEIGE_LISTEN ends in :0.
    println!("feige local-runtime listening on http://{addr} (role {role})");
    tracing::info!(%addr, %role, "listening");

    let stop = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: closing sockets, finishing requests");
            stop.cancel();
        })
        .await?;
    if let Some((ctx, feed)) = push {
        ctx.drain(std::time::Duration::from_secs(10)).await;
        feed.finish().await;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
