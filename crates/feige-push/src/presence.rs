//! Keeping the presence registry (user → push nodes) true for this node: an entry when a
//! user's first socket opens here, removal when their last one closes, and a heartbeat that
//! refreshes every local user's entry well inside its TTL, so that a node that dies drops out
//! of the registry by itself. Registry trouble is logged, never fatal to a socket: push falls
//! back to sync.

use crate::hub::Hub;
use feige_core::{Feige, UserId};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a presence entry lives without a refresh.
pub const TTL_SECS: u64 = 30;
/// How often the heartbeat refreshes them.
pub const REFRESH: Duration = Duration::from_secs(10);

/// Marks `user` online on this node. An error means other nodes cannot route to this
/// socket: the caller closes it so the client reconnects (and replays) instead.
pub async fn online(feige: &Feige, user: UserId) -> feige_core::Result<()> {
    feige.ports.presence.set_online(&feige.config.node_id, &[user], TTL_SECS).await.inspect_err(|e| {
        tracing::warn!(%user, error = %e, "presence: could not register");
    })
}

/// Publishes where this node takes forwarded pushes.
pub async fn announce(feige: &Feige, addr: &str) {
    if let Err(e) = feige.ports.presence.announce_node(&feige.config.node_id, addr, TTL_SECS).await {
        tracing::warn!(%addr, error = %e, "presence: could not announce this node");
    }
}

/// Marks `user` offline on this node if no socket of theirs is left here.
pub async fn offline_if_gone(feige: &Feige, hub: &Hub, user: UserId) {
    if hub.sockets_of(user) == 0
        && let Err(e) = feige.ports.presence.set_offline(&feige.config.node_id, user).await
    {
        tracing::warn!(%user, error = %e, "presence: could not unregister");
    }
}

/// Refreshes every local user's presence (and this node's address, if it forwards) until
/// shutdown, then removes them all.
pub fn spawn_heartbeat(
    feige: Feige,
    hub: Arc<Hub>,
    advertised: Option<String>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let node = feige.config.node_id.clone();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => {
                    if let Some(addr) = &advertised {
                        announce(&feige, addr).await;
                    }
                    let users = hub.users();
                    if let Err(e) = feige.ports.presence.set_online(&node, &users, TTL_SECS).await {
                        tracing::warn!(error = %e, users = users.len(), "presence: heartbeat failed");
                    }
                }
                _ = shutdown.cancelled() => {
                    for user in hub.users() {
                        let _ = feige.ports.presence.set_offline(&node, user).await;
                    }
                    return;
                }
            }
        }
    })
}
