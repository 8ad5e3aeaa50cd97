//! In-process backends for one process: sequences, revocations, rate limits and the bus.
//! Sequences start cold after a restart and are re-initialised from the timeline's
//! high-water mark (see `feige_core::timeline::next_seq`); revocations are re-seeded from the
//! session table at start (`Feige::restore_revocations`).

use async_trait::async_trait;
use feige_core::ids::UserId;
use feige_core::model::{Push, Seq};
use feige_core::ports::{EventBus, Presence, Probe, PushSink, RateLimiter, Revocation, Revocations, SeqAllocator};
use feige_core::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 100_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sequences, revocations and rate-limit windows in process memory.
#[derive(Default)]
pub struct MemoryCache {
    seqs: Mutex<HashMap<UserId, Seq>>,
    revoked: Mutex<HashMap<String, Instant>>,
    /// Set once the revocations were re-seeded from the session table.
    warm: AtomicBool,
    windows: Mutex<HashMap<String, (u64, u32)>>,
    presence: Mutex<HashMap<UserId, HashMap<String, Instant>>>,
    nodes: Mutex<HashMap<String, (String, Instant)>>,
}

#[async_trait]
impl SeqAllocator for MemoryCache {
    async fn allocate(&self, user: UserId, n: u64) -> Result<Option<Seq>> {
        Ok(lock(&self.seqs).get_mut(&user).map(|s| {
            *s += n;
            *s
        }))
    }

    async fn allocate_each(&self, users: &[UserId]) -> Result<Vec<Option<Seq>>> {
        let mut seqs = lock(&self.seqs);
        Ok(users
            .iter()
            .map(|u| {
                seqs.get_mut(u).map(|s| {
                    *s += 1;
                    *s
                })
            })
            .collect())
    }

    async fn init(&self, user: UserId, floor: Seq) -> Result<()> {
        let mut seqs = lock(&self.seqs);
        let s = seqs.entry(user).or_insert(floor);
        *s = (*s).max(floor);
        Ok(())
    }
}

#[async_trait]
impl Revocations for MemoryCache {
    async fn revoke(&self, sid: &str, ttl_secs: u64) -> Result<()> {
        let mut revoked = lock(&self.revoked);
        let now = Instant::now();
        if revoked.len() >= SWEEP_AT {
            revoked.retain(|_, until| *until > now);
        }
        revoked.insert(sid.to_owned(), now + Duration::from_secs(ttl_secs));
        Ok(())
    }

    async fn check(&self, sid: &str) -> Result<Revocation> {
        if lock(&self.revoked).get(sid).is_some_and(|until| *until > Instant::now()) {
            Ok(Revocation::Revoked)
        } else if self.warm.load(Ordering::Acquire) {
            Ok(Revocation::Valid)
        } else {
            Ok(Revocation::Cold)
        }
    }

    async fn mark_warm(&self) -> Result<()> {
        self.warm.store(true, Ordering::Release);
        Ok(())
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[async_trait]
impl RateLimiter for MemoryCache {
    async fn hit(&self, key: &str, limit: u32, window_secs: u64) -> Result<()> {
        let window_secs = window_secs.max(1);
        let now = unix_secs();
        let window = now / window_secs;
        let mut windows = lock(&self.windows);
        if windows.len() >= SWEEP_AT {
            windows.retain(|_, (w, _)| *w == window);
        }
        let slot = windows.entry(key.to_owned()).or_insert((window, 0));
        if slot.0 != window {
            *slot = (window, 0);
        }
        if slot.1 >= limit {
            let retry_after_secs = (window + 1) * window_secs - now;
            return Err(Error::RateLimited { retry_after_secs: retry_after_secs.max(1) });
        }
        slot.1 += 1;
        Ok(())
    }
}

#[async_trait]
impl Presence for MemoryCache {
    async fn set_online(&self, node: &str, users: &[UserId], ttl_secs: u64) -> Result<()> {
        let until = Instant::now() + Duration::from_secs(ttl_secs);
        let mut presence = lock(&self.presence);
        for u in users {
            presence.entry(*u).or_default().insert(node.to_owned(), until);
        }
        Ok(())
    }

    async fn set_offline(&self, node: &str, user: UserId) -> Result<()> {
        let mut presence = lock(&self.presence);
        if let Some(nodes) = presence.get_mut(&user) {
            nodes.remove(node);
            if nodes.is_empty() {
                presence.remove(&user);
            }
        }
        Ok(())
    }

    async fn nodes_of(&self, users: &[UserId]) -> Result<Vec<Vec<String>>> {
        let now = Instant::now();
        let presence = lock(&self.presence);
        Ok(users
            .iter()
            .map(|u| {
                let mut nodes: Vec<String> = presence
                    .get(u)
                    .map(|n| n.iter().filter(|(_, until)| **until > now).map(|(n, _)| n.clone()).collect())
                    .unwrap_or_default();
                nodes.sort();
                nodes
            })
            .collect())
    }

    async fn announce_node(&self, node: &str, addr: &str, ttl_secs: u64) -> Result<()> {
        let until = Instant::now() + Duration::from_secs(ttl_secs);
        lock(&self.nodes).insert(node.to_owned(), (addr.to_owned(), until));
        Ok(())
    }

    async fn node_addrs(&self, nodes: &[String]) -> Result<Vec<Option<String>>> {
        let now = Instant::now();
        let known = lock(&self.nodes);
        Ok(nodes.iter().map(|n| known.get(n).filter(|(_, until)| *until > now).map(|(addr, _)| addr.clone())).collect())
    }
}

#[async_trait]
impl Probe for MemoryCache {
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

/// The in-process event bus: hands every push straight to the attached sinks (the socket
/// hub of this process).
#[derive(Default)]
pub struct MemoryBus {
    sinks: RwLock<Vec<Arc<dyn PushSink>>>,
}

impl MemoryBus {
    /// Adds a consumer of every push published from now on.
    pub fn attach(&self, sink: Arc<dyn PushSink>) {
        self.sinks.write().unwrap_or_else(|p| p.into_inner()).push(sink);
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn publish(&self, pushes: &[Push]) -> Result<()> {
        let sinks = self.sinks.read().unwrap_or_else(|p| p.into_inner()).clone();
        for sink in sinks {
            sink.deliver(pushes).await;
        }
        Ok(())
    }
}

#[async_trait]
impl Probe for MemoryBus {
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
