//! Routing pushes across push nodes.
//!
//! Any node may consume a push from Kafka (partitions are spread over the consumer group), but
//! the user's sockets may be on other nodes, several devices on several nodes. The
//! [`PushRouter`] looks the users of a batch up in the presence registry (one pipelined round
//! trip), queues what is for this node's sockets directly on the [`Hub`], and forwards the rest
//! to each node that holds a socket of those users: one HTTP request per node per batch over a
//! kept-alive connection (see [`crate::internal`]). The cost of a push therefore depends on how
//! many nodes hold *its user's* sockets, never on how many nodes there are.
//!
//! Push is the fast path and sync is the truth: a push that cannot be forwarded (the node died,
//! the registry is down) is counted and dropped, and the client gets it when it reconnects with
//! `since`. A node that failed is skipped for [`DOWN_FOR`] so a dead peer cannot stall the
//! consumer batch after batch while its presence entries expire.

use crate::hub::Hub;
use feige_core::model::Push;
use feige_core::ports::PushSink;
use feige_core::{Feige, UserId};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a looked-up node address is reused.
const ADDR_CACHE: Duration = Duration::from_secs(5);
/// How long a node that failed a forward is skipped.
pub const DOWN_FOR: Duration = Duration::from_secs(5);
/// Per-request limit of a forward (connecting included).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// The path a node takes forwarded pushes on.
pub const FORWARD_PATH: &str = "/internal/v1/push";

/// The push sink of a node in a multi-node push tier.
pub struct PushRouter {
    feige: Feige,
    hub: Arc<Hub>,
    http: reqwest::Client,
    secret: String,
    addrs: Mutex<HashMap<String, (String, Instant)>>,
    down: Mutex<HashMap<String, Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PushRouter {
    /// A router delivering to `hub` (this node) and forwarding to the other nodes.
    pub fn new(feige: Feige, hub: Arc<Hub>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(FORWARD_TIMEOUT)
            .connect_timeout(Duration::from_secs(1))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let secret = feige.internal_secret();
        PushRouter { feige, hub, http, secret, addrs: Mutex::default(), down: Mutex::default() }
    }

    /// The address of `node`: cached, or from the registry (`fresh` skips the cache).
    async fn addr(&self, node: &str, fresh: bool) -> Option<String> {
        if !fresh
            && let Some((addr, at)) = lock(&self.addrs).get(node)
            && at.elapsed() < ADDR_CACHE
        {
            return Some(addr.clone());
        }
        match self.feige.ports.presence.node_addrs(&[node.to_owned()]).await {
            Ok(mut addrs) => {
                let addr = addrs.pop().flatten()?;
                lock(&self.addrs).insert(node.to_owned(), (addr.clone(), Instant::now()));
                Some(addr)
            }
            Err(e) => {
                tracing::warn!(node, error = %e, "push routing: node directory unavailable");
                None
            }
        }
    }

    fn is_down(&self, node: &str) -> bool {
        let mut down = lock(&self.down);
        match down.get(node) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                down.remove(node);
                false
            }
            None => false,
        }
    }

    /// Sends `batch` to `node`; one retry with a fresh address (the node may have restarted
    /// elsewhere). Returns whether the node took it.
    async fn forward(&self, node: &str, batch: &[Push]) -> bool {
        let events = batch.len() as u64;
        if self.is_down(node) {
            metrics::counter!("feige_push_forwarded_total", "outcome" => "skipped_down").increment(events);
            return false;
        }
        for attempt in 0..2 {
            let Some(addr) = self.addr(node, attempt > 0).await else {
                metrics::counter!("feige_push_forwarded_total", "outcome" => "unknown_node").increment(events);
                return false;
            };
            let sent = self
                .http
                .post(format!("http://{addr}{FORWARD_PATH}"))
                .bearer_auth(&self.secret)
                .json(batch)
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => {
                    metrics::counter!("feige_push_forwarded_total", "outcome" => "ok").increment(events);
                    return true;
                }
                Ok(resp) => tracing::warn!(node, %addr, status = %resp.status(), "push forward refused"),
                Err(e) => tracing::warn!(node, %addr, error = %e, "push forward failed"),
            }
        }
        lock(&self.down).insert(node.to_owned(), Instant::now() + DOWN_FOR);
        metrics::counter!("feige_push_forwarded_total", "outcome" => "failed").increment(events);
        false
    }
}

#[async_trait::async_trait]
impl PushSink for PushRouter {
    async fn deliver(&self, pushes: &[Push]) {
        // This node's sockets first: the hub ignores users without a socket here, so this also
        // covers a socket whose presence entry is not written yet.
        self.hub.deliver_local(pushes);

        let mut users: Vec<UserId> = pushes.iter().map(Push::user_id).collect();
        users.sort_unstable();
        users.dedup();
        let nodes = match self.feige.ports.presence.nodes_of(&users).await {
            Ok(nodes) => nodes,
            Err(e) => {
                tracing::warn!(error = %e, pushes = pushes.len(), "push routing: presence unavailable");
                metrics::counter!("feige_push_route_errors_total").increment(1);
                return;
            }
        };
        let me = self.hub.node();
        let where_: HashMap<UserId, &Vec<String>> = users.iter().copied().zip(nodes.iter()).collect();
        let mut remote: BTreeMap<&str, Vec<Push>> = BTreeMap::new();
        for push in pushes {
            for node in where_.get(&push.user_id()).into_iter().flat_map(|n| n.iter()) {
                if node != me {
                    remote.entry(node.as_str()).or_default().push(push.clone());
                }
            }
        }
        futures::future::join_all(remote.iter().map(|(node, batch)| self.forward(node, batch))).await;
    }
}
