//! Feige's cache on Redis: per-user sequence allocation, session revocation, rate-limit
//! windows and presence (user → push nodes), through one multiplexed connection (`ConnectionManager` reconnects by itself).
//!
//! Every key lives under a prefix (default `feige:`), so several deployments or tests can share
//! one Redis. Nothing here is the source of truth:
//! - sequences: a missing counter (flush, restart, eviction) makes `allocate` answer `None`; the
//!   caller re-initialises it from the timeline's durable high-water mark, so seqs never go
//!   backwards (see `feige_core::timeline`);
//! - revocations: a marker key says the revocation set was seeded from the session table; when
//!   it is gone (flush), `check` answers `Cold` and the caller re-seeds before trusting it.

use async_trait::async_trait;
use feige_core::ids::UserId;
use feige_core::model::Seq;
use feige_core::ports::{Presence, Probe, RateLimiter, Revocation, Revocations, SeqAllocator};
use feige_core::{Error, Result};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use std::time::Duration;

const BACKEND: &str = "cache";

fn unavailable(e: redis::RedisError) -> Error {
    Error::unavailable(BACKEND, e)
}

/// The Redis-backed cache.
#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    prefix: String,
    allocate: Script,
    init: Script,
    check: Script,
    hit: Script,
}

impl RedisCache {
    /// Connects to `redis://host:port[/db]` with the default key prefix `feige:`.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with_prefix(url, "feige:").await
    }

    /// Connects with a key prefix of one's own (tests, shared Redis).
    pub async fn connect_with_prefix(url: &str, prefix: &str) -> Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::bad_request("unsupported_backend", format!("FEIGE_CACHE_URL: {e}")))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(3))
            .set_response_timeout(Duration::from_secs(3))
            .set_number_of_retries(2);
        let conn = tokio::time::timeout(Duration::from_secs(5), ConnectionManager::new_with_config(client, config))
            .await
            .map_err(|_| Error::unavailable(BACKEND, "timed out connecting to Redis"))?
            .map_err(unavailable)?;
        Ok(RedisCache {
            conn,
            prefix: prefix.to_owned(),
            // INCRBY only an existing counter: a missing one must be re-initialised from the
            // durable high-water mark first.
            allocate: Script::new(
                "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) else return false end",
            ),
            // Raise, never lower.
            init: Script::new(
                "local cur = redis.call('GET', KEYS[1]) local floor = tonumber(ARGV[1]) \
                 if (not cur) or floor > tonumber(cur) then redis.call('SET', KEYS[1], floor) end return 1",
            ),
            // 1 revoked, 0 valid, -1 cold (the seeded marker is gone).
            check: Script::new(
                "if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end \
                 if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end return -1",
            ),
            // Fixed window: count, and set the expiry with the first hit.
            hit: Script::new(
                "local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end \
                 return {n, redis.call('TTL', KEYS[1])}",
            ),
        })
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }
}

#[async_trait]
impl SeqAllocator for RedisCache {
    async fn allocate(&self, user: UserId, n: u64) -> Result<Option<Seq>> {
        let mut conn = self.conn.clone();
        let v: Option<i64> = self
            .allocate
            .key(self.key(&format!("seq:{user}")))
            .arg(n)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(v.map(|v| v as Seq))
    }

    /// One pipeline (one round trip) for the whole fan-out.
    async fn allocate_each(&self, users: &[UserId]) -> Result<Vec<Option<Seq>>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for u in users {
            pipe.cmd("EVALSHA").arg(self.allocate.get_hash()).arg(1).arg(self.key(&format!("seq:{u}"))).arg(1);
        }
        let out: Vec<Option<i64>> = match pipe.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                // A restarted Redis forgot the script: load it and go again (nothing ran).
                let _: String = self.allocate.prepare_invoke().load_async(&mut conn).await.map_err(unavailable)?;
                pipe.query_async(&mut conn).await.map_err(unavailable)?
            }
            other => other.map_err(unavailable)?,
        };
        Ok(out.into_iter().map(|v| v.map(|v| v as Seq)).collect())
    }

    async fn init(&self, user: UserId, floor: Seq) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .init
            .key(self.key(&format!("seq:{user}")))
            .arg(floor)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl Revocations for RedisCache {
    async fn revoke(&self, sid: &str, ttl_secs: u64) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: () = conn.set_ex(self.key(&format!("revoked:{sid}")), 1, ttl_secs.max(1)).await.map_err(unavailable)?;
        Ok(())
    }

    async fn check(&self, sid: &str) -> Result<Revocation> {
        let mut conn = self.conn.clone();
        let v: i64 = self
            .check
            .key(self.key(&format!("revoked:{sid}")))
            .key(self.key("revocations-seeded"))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(match v {
            1 => Revocation::Revoked,
            0 => Revocation::Valid,
            _ => Revocation::Cold,
        })
    }

    async fn mark_warm(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: () = conn.set(self.key("revocations-seeded"), 1).await.map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl RateLimiter for RedisCache {
    async fn hit(&self, key: &str, limit: u32, window_secs: u64) -> Result<()> {
        let window_secs = window_secs.max(1);
        let mut conn = self.conn.clone();
        let (count, ttl): (u64, i64) = self
            .hit
            .key(self.key(&format!("rl:{key}")))
            .arg(window_secs)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if count > limit as u64 {
            return Err(Error::RateLimited { retry_after_secs: ttl.max(1) as u64 });
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    feige_core::now_ms()
}

/// Presence: one sorted set per user (`presence:<user>`), member = node id, score = the time the
/// entry expires (ms). Expired members are ignored on read and pruned on write; the key itself
/// expires with its newest member.
#[async_trait]
impl Presence for RedisCache {
    async fn set_online(&self, node: &str, users: &[UserId], ttl_secs: u64) -> Result<()> {
        if users.is_empty() {
            return Ok(());
        }
        let ttl_ms = ttl_secs.max(1) * 1000;
        let now = now_ms();
        let mut pipe = redis::pipe();
        for u in users {
            let key = self.key(&format!("presence:{u}"));
            pipe.zadd(&key, node, now + ttl_ms as i64).ignore();
            pipe.zrembyscore(&key, "-inf", now).ignore();
            pipe.pexpire(&key, ttl_ms as i64).ignore();
        }
        let mut conn = self.conn.clone();
        let _: () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn set_offline(&self, node: &str, user: UserId) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: () = conn.zrem(self.key(&format!("presence:{user}")), node).await.map_err(unavailable)?;
        Ok(())
    }

    async fn nodes_of(&self, users: &[UserId]) -> Result<Vec<Vec<String>>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut pipe = redis::pipe();
        for u in users {
            pipe.zrangebyscore(self.key(&format!("presence:{u}")), format!("({now}"), "+inf");
        }
        let mut conn = self.conn.clone();
        let mut out: Vec<Vec<String>> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        for nodes in &mut out {
            nodes.sort();
        }
        Ok(out)
    }

    /// `node:<id>` = address, with the TTL.
    async fn announce_node(&self, node: &str, addr: &str, ttl_secs: u64) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: () = conn.set_ex(self.key(&format!("node:{node}")), addr, ttl_secs.max(1)).await.map_err(unavailable)?;
        Ok(())
    }

    async fn node_addrs(&self, nodes: &[String]) -> Result<Vec<Option<String>>> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = nodes.iter().map(|n| self.key(&format!("node:{n}"))).collect();
        let mut conn = self.conn.clone();
        // MGET always answers an array, also for one key.
        let addrs: Vec<Option<String>> =
            redis::cmd("MGET").arg(&keys).query_async(&mut conn).await.map_err(unavailable)?;
        Ok(addrs)
    }
}

#[async_trait]
impl Probe for RedisCache {
    async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }
}
